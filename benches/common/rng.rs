//! Reproducible pseudo-random values for the benchmarks (they need data, not statistics).

/// A normal-ish value from SplitMix64 and Box–Muller, advancing `state`.
pub fn rng_normal(state: &mut u64) -> f32 {
    let mut next = || {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
    };
    let (u, v) = (next().max(1e-7), next());
    (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
}
