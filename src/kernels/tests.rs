//! Unit tests of kernel selection and of the activation quantizers (bit-exact across ISAs).

use super::acts::{q8_stride, ActKind, QuantizedActs};
use super::{choose, Isa, Kernels};
use crate::quant::{round_f16, BlockQ8_1, BlockQ8_K, QK, QK_K};

#[test]
fn env_override_picks_a_table_or_falls_back_to_the_best() {
    let available = Kernels::available();
    let best = *available.last().unwrap();
    assert_eq!(choose(&available, Some("scalar")).isa(), Isa::Scalar);
    assert_eq!(choose(&available, Some(" scalar\n")).isa(), Isa::Scalar);
    assert_eq!(choose(&available, None).isa(), best.isa());
    assert_eq!(choose(&available, Some("")).isa(), best.isa());
    assert_eq!(choose(&available, Some("no-such-isa")).isa(), best.isa());
    for k in &available {
        assert_eq!(choose(&available, Some(k.name())).isa(), k.isa());
        assert_eq!(Kernels::by_name(k.name()).unwrap().isa(), k.isa());
    }
    assert!(Kernels::by_name("no-such-isa").is_err());
}

/// Columns exercising the quantizers' corner cases: rounding ties, zero blocks, a largest
/// magnitude that occurs with both signs, large and small scales.
fn tricky_columns(n: usize) -> Vec<f32> {
    let mut x = Vec::new();
    let mut state = 0x1234_5678u32;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state as f32 / u32::MAX as f32) * 2.0 - 1.0
    };
    for col in 0..6 {
        for i in 0..n {
            let v = match col {
                0 => next(),
                1 => {
                    if i % QK == 0 {
                        127.0
                    } else {
                        (i % QK) as f32 - 15.5
                    }
                } // scale 1: x.5 ties
                2 => 0.0,
                3 => {
                    if i % 97 == 5 {
                        -7.0
                    } else if i % 97 == 60 {
                        7.0
                    } else {
                        next()
                    }
                }
                4 => next() * 3.0e4,
                _ => next() * 1.0e-3,
            };
            x.push(v);
        }
    }
    x
}

#[test]
fn activation_quantizers_are_bit_exact_across_isas_and_match_ggml_blocks() {
    let n = 2 * QK_K;
    let x = tricky_columns(n);
    let b = x.len() / n;
    let scalar = Kernels::scalar();
    let mut want = QuantizedActs::new();
    want.quantize(scalar, &x, n, b, &[ActKind::Q8, ActKind::Q8K]).unwrap();
    // The scalar layout carries exactly GGML's block values.
    let st = q8_stride(n);
    for (j, col) in x.chunks_exact(n).enumerate() {
        for (i, blk) in col.chunks_exact(QK).enumerate() {
            let g = BlockQ8_1::quantize(blk.try_into().unwrap());
            assert_eq!(&want.q8_qs_for_tests()[j * n + QK * i..][..QK], &g.qs[..], "col {j} block {i}");
            assert_eq!(want.q8_d_for_tests()[j * st + i], round_f16(crate::quant::f16_to_f32(g.d)));
            assert_eq!(want.q8_s_for_tests()[j * st + i], crate::quant::f16_to_f32(g.s));
        }
        for (i, blk) in col.chunks_exact(QK_K).enumerate() {
            let g = BlockQ8_K::quantize(blk.try_into().unwrap());
            assert_eq!(&want.k_qs_for_tests()[j * n + QK_K * i..][..QK_K], &g.qs[..]);
            assert_eq!(want.k_d_for_tests()[j * (n / QK_K) + i].to_bits(), g.d.to_bits());
            assert_eq!(&want.k_bsums_for_tests()[j * (n / 16) + 16 * i..][..16], &g.bsums[..]);
        }
    }
    // Ties really occurred and rounded away from zero (Q8) / to even (Q8_K).
    assert_eq!(want.q8_qs_for_tests()[n + 1], -15, "−14.5 rounds away from zero");
    for k in Kernels::available() {
        let mut got = QuantizedActs::new();
        got.quantize(k, &x, n, b, &[ActKind::Q8, ActKind::Q8K]).unwrap();
        assert_eq!(got.q8_qs_for_tests(), want.q8_qs_for_tests(), "{}", k.name());
        assert_eq!(bits(got.q8_d_for_tests()), bits(want.q8_d_for_tests()), "{}", k.name());
        assert_eq!(bits(got.q8_s_for_tests()), bits(want.q8_s_for_tests()), "{}", k.name());
        assert_eq!(got.q8_qsum_for_tests(), want.q8_qsum_for_tests(), "{}", k.name());
        assert_eq!(got.k_qs_for_tests(), want.k_qs_for_tests(), "{}", k.name());
        assert_eq!(bits(got.k_d_for_tests()), bits(want.k_d_for_tests()), "{}", k.name());
        assert_eq!(got.k_bsums_for_tests(), want.k_bsums_for_tests(), "{}", k.name());
    }
    // Q8 on columns of 18 blocks: whole groups of eight and a partial one (SIMD quantizers
    // take eight blocks at a time).
    let n = 18 * QK;
    let x = tricky_columns(n);
    let b = x.len() / n;
    let mut want = QuantizedActs::new();
    want.quantize(scalar, &x, n, b, &[ActKind::Q8]).unwrap();
    for k in Kernels::available() {
        let mut got = QuantizedActs::new();
        got.quantize(k, &x, n, b, &[ActKind::Q8]).unwrap();
        assert_eq!(got.q8_qs_for_tests(), want.q8_qs_for_tests(), "{} n={n}", k.name());
        assert_eq!(bits(got.q8_d_for_tests()), bits(want.q8_d_for_tests()), "{} n={n}", k.name());
        assert_eq!(bits(got.q8_s_for_tests()), bits(want.q8_s_for_tests()), "{} n={n}", k.name());
        assert_eq!(got.q8_qsum_for_tests(), want.q8_qsum_for_tests(), "{} n={n}", k.name());
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn quantized_acts_reuse_does_not_reallocate() {
    let k = Kernels::get();
    let mut acts = QuantizedActs::with_capacity(1536, 16);
    let ptrs = acts.buffer_ptrs_for_tests();
    let x = vec![0.5f32; 1536 * 16];
    for (n, b) in [(1536, 16), (512, 3), (256, 1), (1536, 8)] {
        acts.quantize(k, &x[..n * b], n, b, &[ActKind::Q8, ActKind::Q8K, ActKind::F32]).unwrap();
        assert_eq!(acts.buffer_ptrs_for_tests(), ptrs, "n={n} b={b}");
    }
}

#[test]
fn interleaved_q8_layout_transposes_whole_groups_and_pairs_the_tail() {
    // 19 blocks: two whole groups of eight, then a partial group of three: pair 0 (blocks 16,
    // 17), pair 1 (block 18 and zeros), zero pairs 2 and 3 (the stride rounds up to 24 blocks).
    let n = 19 * QK;
    let qs: Vec<i8> = (0..n).map(|i| (i % 251) as i8).collect();
    let mut out = vec![-1i8; q8_stride(n) * QK];
    super::acts::interleave_q8(&qs, &mut out);
    let elem = |blk: usize, e: usize| if blk < 19 { qs[blk * QK + e] } else { 0 };
    for g in 0..2 {
        for r in 0..8 {
            for k in 0..8 {
                for i in 0..4 {
                    let got = out[256 * g + 32 * r + 4 * k + i];
                    assert_eq!(got, elem(8 * g + k, 4 * r + i), "group {g} register {r} block {k} byte {i}");
                }
            }
        }
    }
    for p in 0..4 {
        for h in 0..2 {
            for k in 0..2 {
                for e in 0..16 {
                    let got = out[512 + 64 * p + 32 * h + 16 * k + e];
                    assert_eq!(got, elem(16 + 2 * p + k, 16 * h + e), "pair {p} half {h} block {k}");
                }
            }
        }
    }
    // Every table lays out every length as the scalar code does (whole groups, partial ones,
    // padding).
    for blocks in [1usize, 7, 8, 9, 16, 18, 19, 48, 57] {
        let n = blocks * QK;
        let qs: Vec<i8> = (0..n).map(|i| (i * 7 % 255) as i8).collect();
        let mut want = vec![-1i8; q8_stride(n) * QK];
        super::acts::interleave_q8(&qs, &mut want);
        for k in Kernels::available() {
            let mut got = vec![-1i8; q8_stride(n) * QK];
            k.interleave_q8(&qs, &mut got);
            assert_eq!(got, want, "{} with {blocks} blocks", k.name());
        }
    }
}

/// Values uniform in [−2, 2) from a seeded linear congruential generator.
fn uniform(seed: u32) -> impl FnMut() -> f32 {
    let mut state = seed;
    move || {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (state >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
    }
}

#[test]
fn attention_row_kernels_equal_one_row_at_a_time_bitwise() {
    use half::f16;
    let mut next = uniform(11);
    for k in Kernels::available() {
        for n in [1usize, 3, 8, 64, 72, 130, 256] {
            for m in [0usize, 1, 3, 4, 5, 8, 9, 12, 17, 21] {
                let rows: Vec<f16> = (0..m * n).map(|_| f16::from_f32(next())).collect();
                let x: Vec<f32> = (0..n).map(|_| next()).collect();
                let w: Vec<f32> = (0..m).map(|_| next()).collect();
                let mut got = vec![0f32; m];
                k.dot_f16_rows(&rows, &x, &mut got).unwrap();
                let want: Vec<f32> =
                    (0..m).map(|i| k.dot_f16_f32(&rows[i * n..(i + 1) * n], &x).unwrap()).collect();
                assert_eq!(bits(&got), bits(&want), "{} dot n={n} m={m}", k.name());
                let y0: Vec<f32> = (0..n).map(|_| next()).collect();
                let mut got = y0.clone();
                k.axpy_f16_rows(&w, &rows, &mut got).unwrap();
                let mut want = y0;
                for i in 0..m {
                    k.axpy_f16(w[i], &rows[i * n..(i + 1) * n], &mut want).unwrap();
                }
                assert_eq!(bits(&got), bits(&want), "{} axpy n={n} m={m}", k.name());
            }
        }
        let mut out = [0f32; 2];
        assert!(k.dot_f16_rows(&[f16::ZERO; 5], &[0.0; 2], &mut out).is_err());
        assert!(k.axpy_f16_rows(&[1.0; 2], &[f16::ZERO; 5], &mut out).is_err());
    }
}

/// Values across the ranges the activations see, odd lengths (every SIMD tail), the clamps of
/// the exponential and both signs of zero.
fn activation_inputs(len: usize, seed: u32) -> Vec<f32> {
    let mut state = seed | 1;
    (0..len)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let u = (state as f32 / u32::MAX as f32) * 2.0 - 1.0;
            match i % 7 {
                0 => u * 120.0, // past both clamps of exp
                1 => u * 1e-4,
                2 => -0.0,
                _ => u * 8.0,
            }
        })
        .collect()
}

#[test]
fn exponential_ops_are_bitwise_equal_on_every_table() {
    let scalar = Kernels::scalar();
    for k in Kernels::available() {
        for len in [0usize, 1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 576, 1536 + 5] {
            let gate = activation_inputs(len, 7 + len as u32);
            let up = activation_inputs(len, 99 + len as u32);
            for silu in [true, false] {
                let (mut want, mut got) = (gate.clone(), gate.clone());
                if silu {
                    scalar.silu_mul(&mut want, &up).unwrap();
                    k.silu_mul(&mut got, &up).unwrap();
                } else {
                    scalar.gelu_mul(&mut want, &up).unwrap();
                    k.gelu_mul(&mut got, &up).unwrap();
                }
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{} silu={silu} len {len}", k.name());
            }
            let (mut want, mut got) = (gate.clone(), gate.clone());
            crate::kernels::ops::softmax(&mut want);
            k.softmax(&mut got);
            assert!(
                got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{} softmax len {len}",
                k.name()
            );
        }
        let mut g = vec![1.0f32; 3];
        assert!(k.silu_mul(&mut g, &[1.0; 2]).is_err() && k.gelu_mul(&mut g, &[1.0; 4]).is_err());
    }
}

#[test]
fn gated_activations_stay_close_to_the_exact_functions() {
    let x = activation_inputs(4096, 3);
    for (i, &v) in x.iter().enumerate() {
        let exact_silu = f64::from(v) / (1.0 + (-f64::from(v)).exp());
        // GELU's argument is rounded to f32 as the function computes it (its rounding, amplified
        // by the exponential, is not the exponential's error).
        let z = 0.797_884_6f32 * v * (1.0 + 0.044715f32 * v * v);
        let exact_gelu = f64::from(v) / (1.0 + (-2.0 * f64::from(z)).exp());
        for (got, want) in
            [(crate::kernels::ops::silu(v), exact_silu), (crate::kernels::ops::gelu(v), exact_gelu)]
        {
            let err = (f64::from(got) - want).abs();
            assert!(err <= 1e-6 * want.abs() + 1e-30, "x[{i}] = {v}: {got} vs {want}");
        }
    }
}

/// Q8_0 blocks of `x` (a multiple of 32 values) as the KV cache stores them.
fn q8_blocks(x: &[f32]) -> Vec<crate::quant::BlockQ8_0> {
    x.chunks_exact(QK).map(|c| crate::quant::BlockQ8_0::quantize(c.try_into().unwrap())).collect()
}

/// A query quantized as attention quantizes it for a Q8_0 cache: quants and f16-rounded scales.
fn q8_query(x: &[f32]) -> (Vec<i8>, Vec<f32>) {
    let nb = x.len() / QK;
    let (mut qs, mut d, mut s, mut qsum) =
        (vec![0i8; x.len()], vec![0f32; nb], vec![0f32; nb], vec![0i32; nb]);
    Kernels::scalar().quantize_q8(x, &mut qs, &mut d, &mut s, &mut qsum);
    (qs, d)
}

#[test]
fn q8_cache_kernels_are_bitwise_equal_on_every_table_and_close_to_f32() {
    use crate::quant::f16_to_f32;
    let mut next = uniform(5);
    let scalar = Kernels::scalar();
    for n in [32usize, 64, 96, 128, 256] {
        let nb = n / QK;
        for m in [1usize, 3, 7, 8, 9, 16, 19] {
            let keys: Vec<f32> = (0..m * n).map(|_| next()).collect();
            let rows = q8_blocks(&keys);
            let q: Vec<f32> = (0..n).map(|_| next()).collect();
            let (qs, qd) = q8_query(&q);
            let mut want = vec![0f32; m];
            scalar.dot_q8_rows(&rows, &qs, &qd, &mut want).unwrap();
            for r in 0..m {
                // The integer part is exact: the score is Σ_b isum_b·d_k·d_q up to f32 rounding.
                let exact: f64 = (0..nb)
                    .map(|b| {
                        let blk = &rows[r * nb + b];
                        let isum: i64 =
                            blk.qs.iter().zip(&qs[b * QK..]).map(|(&a, &c)| a as i64 * c as i64).sum();
                        isum as f64 * f16_to_f32(blk.d) as f64 * qd[b] as f64
                    })
                    .sum();
                assert!((want[r] as f64 - exact).abs() <= 1e-5 * exact.abs().max(1.0), "n={n} m={m} r={r}");
                // And the quantized score is close to the f32 one (8 bits on both sides).
                let f: f32 = keys[r * n..(r + 1) * n].iter().zip(&q).map(|(a, b)| a * b).sum();
                assert!((want[r] - f).abs() <= 0.02 * n as f32, "n={n} m={m} r={r}: {} vs {f}", want[r]);
            }
            let w: Vec<f32> = (0..m).map(|_| next().abs()).collect();
            let y0: Vec<f32> = (0..n).map(|_| next()).collect();
            let mut y_want = y0.clone();
            scalar.axpy_q8_rows(&w, &rows, &mut y_want).unwrap();
            for (i, &y) in y_want.iter().enumerate() {
                let (b, e) = (i / QK, i % QK);
                let exact: f64 = y0[i] as f64
                    + (0..m)
                        .map(|r| {
                            let blk = &rows[r * nb + b];
                            w[r] as f64 * f16_to_f32(blk.d) as f64 * blk.qs[e] as f64
                        })
                        .sum::<f64>();
                assert!(
                    (y as f64 - exact).abs() <= 1e-5 * (m as f64 + exact.abs()),
                    "axpy n={n} m={m} i={i}"
                );
            }
            for k in Kernels::available() {
                let mut got = vec![0f32; m];
                k.dot_q8_rows(&rows, &qs, &qd, &mut got).unwrap();
                assert_eq!(bits(&got), bits(&want), "{} dot_q8_rows n={n} m={m}", k.name());
                let mut y = y0.clone();
                k.axpy_q8_rows(&w, &rows, &mut y).unwrap();
                assert_eq!(bits(&y), bits(&y_want), "{} axpy_q8_rows n={n} m={m}", k.name());
            }
        }
    }
}

#[test]
fn q8_cache_scores_do_not_saturate_at_the_extremes() {
    // Every quant at ±127: the largest i16 pair sums the SIMD paths form (2·127·127).
    let n = 64;
    let keys: Vec<f32> = (0..9 * n).map(|i| if i % 3 == 0 { -1.0 } else { 1.0 }).collect();
    let rows = q8_blocks(&keys);
    let q: Vec<f32> = (0..n).map(|i| if i % 3 == 0 { -2.0 } else { 2.0 }).collect();
    let (qs, qd) = q8_query(&q);
    assert!(qs.iter().all(|&v| v.abs() == 127) && rows.iter().all(|b| b.qs.iter().all(|&v| v.abs() == 127)));
    let mut want = vec![0f32; 9];
    Kernels::scalar().dot_q8_rows(&rows, &qs, &qd, &mut want).unwrap();
    let exact: f32 = keys[..n].iter().zip(&q).map(|(a, b)| a * b).sum();
    assert!((want[0] - exact).abs() < 1e-2 * exact.abs(), "{} vs {exact}", want[0]);
    for k in Kernels::available() {
        let mut got = vec![0f32; 9];
        k.dot_q8_rows(&rows, &qs, &qd, &mut got).unwrap();
        assert_eq!(bits(&got), bits(&want), "{}", k.name());
        // Shapes and the one quant the quantizer never makes are refused.
        assert!(k.dot_q8_rows(&rows, &qs[..32], &qd, &mut got).is_err());
        assert!(k.dot_q8_rows(&rows[..17], &qs, &qd, &mut got).is_err());
        let mut bad = qs.clone();
        bad[5] = i8::MIN;
        assert!(k.dot_q8_rows(&rows, &bad, &qd, &mut got).is_err());
        let mut y = vec![0f32; 48];
        assert!(k.axpy_q8_rows(&[1.0; 9], &rows, &mut y).is_err(), "48 values are not whole blocks");
        let mut y = vec![0f32; n];
        assert!(k.axpy_q8_rows(&[1.0; 8], &rows, &mut y).is_err(), "9 rows, 8 weights");
    }
}
