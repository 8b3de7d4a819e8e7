// Quantized weight rows against quantized activation columns, as the CPU reference computes
// them (quant/dot.rs): eight lanes per row, each lane adding its blocks' terms in block order
// with fused multiply-adds, the lanes folded in one fixed order. The sum for a (row, column)
// does not depend on how many columns the pass has, so results are batch invariant.
//
// Prepended by the host: `const QT: u32` (0 Q4_1, 1 Q5_0, 2 Q8_0, 3 Q4_K, 4 Q6_K) and
// `const STRIDE: u32` (words per block as uploaded, see gpu/weights.rs).
//
// p0 rows in this chunk, p1 blocks per row, p2 columns, p3 output offset (A), p4 output stride
// per column, p5 the chunk's first row, p6 activation quants, p7 scales, p8 sums (Q).

var<workgroup> red: array<f32, 1024>;

// The 32 values of legacy block `base` as 8 words of signed bytes (before any offset).
fn legacy_words(base: u32, k: u32) -> u32 {
    if (QT == 2u) {
        return W[base + 1u + k];
    }
    let q0 = select(2u, 1u, QT == 0u);
    var nib: u32;
    if (k < 4u) {
        nib = W[base + q0 + k] & 0x0f0f0f0fu;
    } else {
        nib = (W[base + q0 + k - 4u] >> 4u) & 0x0f0f0f0fu;
    }
    if (QT == 1u) {
        let h = (W[base + 1u] >> (4u * k)) & 0xfu;
        nib |= ((h & 1u) | ((h & 2u) << 7u) | ((h & 4u) << 14u) | ((h & 8u) << 21u)) << 4u;
    }
    return nib;
}

fn k_scale_byte(base: u32, j: u32) -> u32 {
    return (W[base + 1u + j / 4u] >> (8u * (j % 4u))) & 0xffu;
}

// Q4_K's 6-bit scale and min of 32-group `j` (GGML's packing).
fn k4_scale_min(base: u32, j: u32) -> vec2<i32> {
    if (j < 4u) {
        return vec2<i32>(i32(k_scale_byte(base, j) & 63u), i32(k_scale_byte(base, j + 4u) & 63u));
    }
    let s = (k_scale_byte(base, j + 4u) & 0xfu) | ((k_scale_byte(base, j - 4u) >> 6u) << 4u);
    let m = (k_scale_byte(base, j + 4u) >> 4u) | ((k_scale_byte(base, j) >> 6u) << 4u);
    return vec2<i32>(i32(s), i32(m));
}

fn q6_scale(base: u32, g: u32) -> i32 {
    return extractBits(bitcast<i32>(W[base + 48u + g / 4u]), 8u * (g % 4u), 8u);
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let rows = p(0u);
    let nb = p(1u);
    let b = p(2u);
    let lane = li % 8u;
    let rl = li / 8u;
    let row = wg.x * 8u + rl;
    var acc: array<f32, 16>;
    for (var c = 0u; c < 16u; c++) {
        acc[c] = 0.0;
    }
    if (row < rows) {
        if (QT < 3u) {
            for (var i = lane; i < nb; i += 8u) {
                let base = (row * nb + i) * STRIDE;
                var wq: array<u32, 8>;
                for (var k = 0u; k < 8u; k++) {
                    wq[k] = legacy_words(base, k);
                }
                let dw = f16_lo(W[base]);
                let mw = f16_hi(W[base]);
                for (var c = 0u; c < b; c++) {
                    let blk = c * nb + i;
                    var isum = 0i;
                    var asum = 0i;
                    for (var k = 0u; k < 8u; k++) {
                        let a = Q[p(6u) + blk * 8u + k];
                        isum += dot4(wq[k], a);
                        if (QT == 1u) {
                            asum += dot4(0x01010101u, a);
                        }
                    }
                    if (QT == 1u) {
                        isum -= 16i * asum;
                    }
                    let da = bitcast<f32>(Q[p(7u) + blk]);
                    acc[c] = fma_cpu(f32(isum), dw * da, acc[c]);
                    if (QT == 0u) {
                        acc[c] = fma_cpu(mw, bitcast<f32>(Q[p(8u) + blk]), acc[c]);
                    }
                }
            }
        } else {
            for (var i = 0u; i < nb; i++) {
                let base = (row * nb + i) * STRIDE;
                var wq: array<u32, 8>;
                var sc: array<i32, 8>;
                var c0: i32;
                var c1: i32;
                var d: f32;
                var dmin = 0.0;
                if (QT == 3u) {
                    for (var t = 0u; t < 8u; t++) {
                        wq[t] = (W[base + 4u + 8u * (t / 2u) + lane] >> (4u * (t & 1u))) & 0x0f0f0f0fu;
                        sc[t] = k4_scale_min(base, t).x;
                    }
                    let m = k4_scale_min(base, lane).y;
                    c0 = m;
                    c1 = m;
                    d = f16_lo(W[base]);
                    dmin = f16_hi(W[base]);
                } else {
                    for (var t = 0u; t < 8u; t++) {
                        let h = t / 4u;
                        let kk = t % 4u;
                        let lo = (W[base + 16u * h + 8u * (kk % 2u) + lane] >> (4u * (kk / 2u))) & 0x0f0f0f0fu;
                        let hi = ((W[base + 32u + 8u * h + lane] >> (2u * kk)) & 0x03030303u) << 4u;
                        wq[t] = lo | hi;
                        sc[t] = q6_scale(base, 2u * t + lane / 4u);
                    }
                    c0 = q6_scale(base, 2u * lane);
                    c1 = q6_scale(base, 2u * lane + 1u);
                    d = f16_lo(W[base + 52u]);
                }
                for (var c = 0u; c < b; c++) {
                    let blk = c * nb + i;
                    var isum = 0i;
                    for (var t = 0u; t < 8u; t++) {
                        isum += sc[t] * dot4(wq[t], Q[p(6u) + blk * 64u + 8u * t + lane]);
                    }
                    let bs0 = bitcast<i32>(Q[p(8u) + blk * 16u + 2u * lane]);
                    let bs1 = bitcast<i32>(Q[p(8u) + blk * 16u + 2u * lane + 1u]);
                    let corr = c0 * bs0 + c1 * bs1;
                    let da = bitcast<f32>(Q[p(7u) + blk]);
                    if (QT == 3u) {
                        acc[c] = fma_cpu(f32(isum), d * da, acc[c]);
                        acc[c] = fma_cpu(-f32(corr), dmin * da, acc[c]);
                    } else {
                        acc[c] = fma_cpu(f32(isum - 32i * corr), d * da, acc[c]);
                    }
                }
            }
        }
    }
    for (var c = 0u; c < 16u; c++) {
        red[li * 16u + c] = acc[c];
    }
    workgroupBarrier();
    if (row < rows) {
        for (var c = lane; c < b; c += 8u) {
            var l: array<f32, 8>;
            for (var k = 0u; k < 8u; k++) {
                l[k] = red[(rl * 8u + k) * 16u + c];
            }
            A[p(3u) + c * p(4u) + p(5u) + row] = fold8(l);
        }
    }
}
