//! Kernel tests: every instruction set against the scalar reference (bitwise), both against f32
//! within GGML's per-type error budgets, quantization round trips, batch invariance of the
//! batched mat-vec, and real GGUF tensors decoded like llama.cpp's gguf-py decodes them.
//!
//! The same file runs on aarch64 under qemu (`scripts/aarch64-test.sh`), where the tables are
//! scalar, NEON and NEON+dotprod.

use std::path::{Path, PathBuf};

use edgespec::gguf::{GgufFile, GgufWriter};
use edgespec::kernels::{matvec, matvec_many, ActKind, KernelPool, Kernels, QuantizedActs, WeightMatrix};
use edgespec::quant::{self, blocks_as_bytes, f32_to_bf16, f32_to_f16, GgmlType};
use half::f16;

/// SplitMix64: small, seedable, good enough for test data.
struct Rng(u64);

impl Rng {
    fn u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f32 {
        (self.u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn normal(&mut self) -> f32 {
        let (u, v) = (self.unit().max(1e-7), self.unit());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        std::array::from_fn(|_| self.u64() as u8)
    }
    fn scale(&mut self, signed: bool) -> u16 {
        let v = 0.001 + 0.03 * self.unit();
        f32_to_f16(if signed && self.u64() & 1 == 1 { -v } else { v })
    }
}

const WEIGHT_TYPES: [GgmlType; 13] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

/// Random but valid bytes for `rows × n` weights of type `ty` (all quant bits random, scales
/// finite).
fn random_weights(ty: GgmlType, rows: usize, n: usize, rng: &mut Rng) -> Vec<u8> {
    let blocks = rows * n / ty.block_size();
    let mut out = Vec::with_capacity(blocks * ty.type_size());
    for _ in 0..blocks {
        match ty {
            GgmlType::F32 => out.extend((rng.normal() * 0.1).to_le_bytes()),
            GgmlType::F16 => out.extend(f32_to_f16(rng.normal() * 0.1).to_le_bytes()),
            GgmlType::BF16 => out.extend(f32_to_bf16(rng.normal() * 0.1).to_le_bytes()),
            GgmlType::Q4_0 => {
                out.extend(blocks_as_bytes(&[quant::BlockQ4_0 { d: rng.scale(true), qs: rng.bytes() }]))
            }
            GgmlType::Q4_1 => out.extend(blocks_as_bytes(&[quant::BlockQ4_1 {
                d: rng.scale(false),
                m: rng.scale(true),
                qs: rng.bytes(),
            }])),
            GgmlType::Q5_0 => out.extend(blocks_as_bytes(&[quant::BlockQ5_0 {
                d: rng.scale(true),
                qh: rng.bytes(),
                qs: rng.bytes(),
            }])),
            GgmlType::Q5_1 => out.extend(blocks_as_bytes(&[quant::BlockQ5_1 {
                d: rng.scale(false),
                m: rng.scale(true),
                qh: rng.bytes(),
                qs: rng.bytes(),
            }])),
            GgmlType::Q8_0 => {
                let qs = rng.bytes::<32>().map(|b| b as i8);
                out.extend(blocks_as_bytes(&[quant::BlockQ8_0 { d: rng.scale(true), qs }]))
            }
            GgmlType::Q2_K => out.extend(blocks_as_bytes(&[quant::BlockQ2_K {
                scales: rng.bytes(),
                qs: rng.bytes(),
                d: rng.scale(false),
                dmin: rng.scale(false),
            }])),
            GgmlType::Q3_K => out.extend(blocks_as_bytes(&[quant::BlockQ3_K {
                hmask: rng.bytes(),
                qs: rng.bytes(),
                scales: rng.bytes(),
                d: rng.scale(true),
            }])),
            GgmlType::Q4_K => out.extend(blocks_as_bytes(&[quant::BlockQ4_K {
                d: rng.scale(false),
                dmin: rng.scale(false),
                scales: rng.bytes(),
                qs: rng.bytes(),
            }])),
            GgmlType::Q5_K => out.extend(blocks_as_bytes(&[quant::BlockQ5_K {
                d: rng.scale(false),
                dmin: rng.scale(false),
                scales: rng.bytes(),
                qh: rng.bytes(),
                qs: rng.bytes(),
            }])),
            GgmlType::Q6_K => out.extend(blocks_as_bytes(&[quant::BlockQ6_K {
                ql: rng.bytes(),
                qh: rng.bytes(),
                scales: rng.bytes::<16>().map(|b| b as i8),
                d: rng.scale(true),
            }])),
            other => panic!("no generator for {other}"),
        }
    }
    out
}

/// `b` columns of `n` activations: mostly normal, with edge cases mixed in (a zero block, exact
/// rounding ties, equal-magnitude opposite-sign extremes, large values).
fn random_acts(n: usize, b: usize, rng: &mut Rng) -> Vec<f32> {
    let mut x: Vec<f32> = (0..n * b).map(|_| rng.normal()).collect();
    for col in x.chunks_exact_mut(n) {
        match rng.u64() % 5 {
            0 if n >= 32 => col[..32].fill(0.0),
            1 if n >= 32 => {
                // amax = 127 makes the Q8 scale 1, so x.5 values are exact ties.
                col[0] = 127.0;
                for (i, v) in col[1..32].iter_mut().enumerate() {
                    *v = i as f32 - 15.5;
                }
            }
            2 if n >= 2 => {
                col[0] = -3.5;
                col[n - 1] = 3.5;
            }
            3 => col.iter_mut().for_each(|v| *v *= 1000.0),
            _ => {}
        }
    }
    x
}

/// Bytes held in 4-byte aligned storage (Q8_K and F32 blocks need 4-byte alignment; a `Vec<u8>`
/// promises only 1).
struct Aligned {
    words: Vec<f32>,
    len: usize,
}

impl Aligned {
    fn new(bytes: &[u8]) -> Self {
        let words = bytes
            .chunks(4)
            .map(|c| {
                let mut w = [0u8; 4];
                w[..c.len()].copy_from_slice(c);
                f32::from_le_bytes(w)
            })
            .collect();
        Aligned { words, len: bytes.len() }
    }
    fn bytes(&self) -> &[u8] {
        &blocks_as_bytes(&self.words)[..self.len]
    }
}

fn column(out: &[f32], rows: usize, j: usize) -> &[f32] {
    &out[j * rows..(j + 1) * rows]
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn quantized(kernels: &'static Kernels, x: &[f32], n: usize, b: usize, ty: GgmlType) -> QuantizedActs {
    let mut acts = QuantizedActs::new();
    acts.quantize(kernels, x, n, b, &[ActKind::for_weight(ty).unwrap()]).unwrap();
    acts
}

/// All rows of `w` against `b` columns with one table, single-threaded, as `rows × b`.
fn dot_all(kernels: &'static Kernels, w: &WeightMatrix<'_>, x: &[f32], b: usize) -> Vec<f32> {
    let acts = quantized(kernels, x, w.n(), b, w.ty());
    let mut out = vec![0f32; w.rows() * b];
    kernels.dot_rows(w, 0..w.rows(), &acts, &mut out).unwrap();
    out
}

fn shapes(ty: GgmlType) -> Vec<(usize, usize)> {
    match ty.block_size() {
        1 => vec![(3, 1), (5, 7), (4, 8), (9, 9), (2, 31), (17, 64), (3, 100)],
        32 => vec![(3, 32), (5, 64), (17, 96), (2, 224), (9, 256), (33, 288), (4, 576)],
        _ => vec![(3, 256), (17, 512), (2, 768)],
    }
}

#[test]
fn every_isa_matches_the_scalar_reference_bitwise() {
    let tables = Kernels::available();
    eprintln!("kernel tables on this CPU: {:?}", tables.iter().map(|k| k.name()).collect::<Vec<_>>());
    let mut rng = Rng(1);
    for ty in WEIGHT_TYPES {
        for (rows, n) in shapes(ty) {
            let data = Aligned::new(&random_weights(ty, rows, n, &mut rng));
            let w = WeightMatrix::new(ty, data.bytes(), rows, n).unwrap();
            for b in [1, 2, 3, 8, 16] {
                let x = random_acts(n, b, &mut rng);
                let want = dot_all(Kernels::scalar(), &w, &x, b);
                for k in &tables {
                    let got = dot_all(k, &w, &x, b);
                    assert_eq!(bits(&got), bits(&want), "{} {ty} rows={rows} n={n} b={b}", k.name());
                }
            }
        }
    }
}

#[test]
fn scalar_kernels_equal_the_block_level_reference() {
    // The kernels' activation layout must carry exactly the values GGML's Q8_0/Q8_1/Q8_K blocks
    // would: the scalar kernel and `quant::reference_dot` (which works on GGML blocks) agree.
    let mut rng = Rng(2);
    for ty in WEIGHT_TYPES {
        for (_, n) in shapes(ty) {
            let data = Aligned::new(&random_weights(ty, 1, n, &mut rng));
            let w = WeightMatrix::new(ty, data.bytes(), 1, n).unwrap();
            let x = random_acts(n, 1, &mut rng);
            let want = quant::reference_dot(ty, data.bytes(), &x).unwrap();
            for k in Kernels::available() {
                let got = dot_all(k, &w, &x, 1)[0];
                assert_eq!(got.to_bits(), want.to_bits(), "{} {ty} n={n}: {got} vs {want}", k.name());
            }
        }
    }
}

/// GGML's test vectors (tests/test-quantize-fns.cpp): `0.1 + 2·cos(i + offset)`.
fn ggml_vector(len: usize, offset: f32) -> Vec<f32> {
    (0..len).map(|i| 0.1 + 2.0 * (i as f32 + offset).cos()).collect()
}

/// GGML's reported dot-product error per type (|quantized dot − f32 dot| / length) with its test
/// vectors, as published with its test suite; F32 is exact up to rounding.
fn ggml_dot_budget(ty: GgmlType) -> f32 {
    match ty {
        GgmlType::F32 => 0.000001,
        GgmlType::F16 => 0.000010,
        GgmlType::BF16 => 0.000200,
        GgmlType::Q2_K => 0.004086,
        GgmlType::Q3_K => 0.017,
        GgmlType::Q4_K => 0.002425,
        GgmlType::Q5_K => 0.000740,
        GgmlType::Q6_K => 0.000952,
        GgmlType::Q4_0 => 0.001143,
        GgmlType::Q4_1 => 0.008,
        GgmlType::Q5_0 => 0.001353,
        GgmlType::Q5_1 => 0.00149,
        GgmlType::Q8_0 => 0.000092,
        other => panic!("no budget for {other}"),
    }
}

fn f32_dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&a, &b)| a as f64 * b as f64).sum()
}

#[test]
fn quantized_dots_stay_within_ggml_error_budgets() {
    const LEN: usize = 32 * 128;
    let pairs = [
        (ggml_vector(LEN, 0.0), ggml_vector(LEN, 1.0), 1.0f32),
        (
            (0..LEN).map(|i| i as f32 / LEN as f32).collect(),
            (0..LEN).map(|i| i as f32 / LEN as f32).collect(),
            2.0,
        ),
    ];
    // Types we can quantize: the whole pipeline (weights and activations quantized).
    for ty in [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
    ] {
        for (a, x, err_m) in &pairs {
            let data = Aligned::new(&quant::quantize(ty, a).unwrap());
            let w = WeightMatrix::new(ty, data.bytes(), 1, LEN).unwrap();
            let exact = f32_dot(a, x);
            for k in Kernels::available() {
                let got = dot_all(k, &w, x, 1)[0];
                let err = ((got as f64 - exact).abs() / LEN as f64) as f32;
                let budget = ggml_dot_budget(ty) * err_m + 0.00001;
                assert!(err <= budget, "{} {ty}: error {err} > budget {budget}", k.name());
            }
        }
    }
    // Every type, weights as stored: only the activation quantization separates the kernel from
    // an f32 dot with the dequantized weights, and rounding each activation to the nearest step
    // of its block (step = amax/127) bounds that gap by Σ|w_i|·step_i/2.
    let mut rng = Rng(3);
    let x = &pairs[0].1;
    for ty in WEIGHT_TYPES {
        let data = Aligned::new(&random_weights(ty, 1, LEN, &mut rng));
        let mut deq = vec![0f32; LEN];
        quant::dequantize(ty, data.bytes(), &mut deq).unwrap();
        let block = ActKind::for_weight(ty).unwrap().block_size();
        let bound: f64 = if block == 1 {
            1e-6 * deq.iter().zip(x).map(|(w, x)| (w * x).abs() as f64).sum::<f64>()
        } else {
            deq.chunks(block)
                .zip(x.chunks(block))
                .map(|(w, x)| {
                    let step = x.iter().fold(0f32, |m, v| m.max(v.abs())) as f64 / 127.0;
                    w.iter().map(|w| w.abs() as f64).sum::<f64>() * step / 2.0
                })
                .sum::<f64>()
                * 1.01
        };
        let w = WeightMatrix::new(ty, data.bytes(), 1, LEN).unwrap();
        let exact = f32_dot(&deq, x);
        for k in Kernels::available() {
            let got = dot_all(k, &w, x, 1)[0] as f64;
            assert!((got - exact).abs() <= bound, "{} {ty}: |{got} − {exact}| > {bound}", k.name());
        }
    }
}

/// GGML's RMSE measure: `sqrt(Σ(a − b)²) / len`.
fn ggml_rmse(a: &[f32], b: &[f32]) -> f32 {
    (a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>().sqrt() / a.len() as f64) as f32
}

#[test]
fn quantize_dequantize_round_trips() {
    const LEN: usize = 32 * 128;
    let src = ggml_vector(LEN, 0.0);
    let mut rng = Rng(4);
    let normal: Vec<f32> = (0..LEN * 4).map(|_| rng.normal()).collect();
    // (type, GGML's total-error bound on its vector, our bound on RMSE/σ for unit normals, which
    // follows from the step size: ≈ step/√12 with step ≈ 2·amax/levels).
    let cases = [
        (GgmlType::Q4_0, 0.002, 0.10),
        (GgmlType::Q4_1, 0.002, 0.10),
        (GgmlType::Q8_0, 0.002, 0.008),
        (GgmlType::Q8_1, 0.002, 0.008),
        (GgmlType::Q4_K, 0.002, 0.09),
        (GgmlType::Q6_K, 0.002, 0.025),
        (GgmlType::Q8_K, 0.002, 0.008),
        (GgmlType::F16, 0.00001, 0.001),
        (GgmlType::BF16, 0.0002, 0.005),
    ];
    for (ty, ggml_bound, normal_bound) in cases {
        let q = Aligned::new(&quant::quantize(ty, &src).unwrap());
        let mut back = vec![0f32; LEN];
        quant::dequantize(ty, q.bytes(), &mut back).unwrap();
        let e = ggml_rmse(&src, &back);
        assert!(e <= ggml_bound, "{ty}: GGML-vector error {e} > {ggml_bound}");
        let q = Aligned::new(&quant::quantize(ty, &normal).unwrap());
        let mut back = vec![0f32; normal.len()];
        quant::dequantize(ty, q.bytes(), &mut back).unwrap();
        let rmse = (normal.iter().zip(&back).map(|(a, b)| (a - b).powi(2)).sum::<f32>()
            / normal.len() as f32)
            .sqrt();
        eprintln!("{ty}: rmse/σ on unit normals {rmse:.5}, GGML-vector error {e:.6}");
        assert!(rmse <= normal_bound, "{ty}: rmse {rmse} > {normal_bound}");
    }
    assert!(quant::quantize(GgmlType::Q4_0, &src[..31]).is_err());
    assert!(quant::quantize(GgmlType::Q3_K, &src).is_err(), "no Q3_K quantizer");
}

#[test]
fn batched_matvec_is_batch_and_thread_invariant() {
    let mut rng = Rng(5);
    for k in Kernels::available() {
        // Every size splits across the pool (no single-thread shortcut), so chunking is exercised.
        let pools: Vec<KernelPool> = [1, 2, 3]
            .iter()
            .map(|&t| KernelPool::with_kernels(Some(t), k).unwrap().with_min_parallel_work(0))
            .collect();
        for ty in WEIGHT_TYPES {
            // 45 rows: several 16-row tiles and an odd last tile, split over 2 and 3 threads.
            let (rows, n) = (45, if ty.block_size() == 256 { 512 } else { 192 });
            let data = Aligned::new(&random_weights(ty, rows, n, &mut rng));
            let w = WeightMatrix::new(ty, data.bytes(), rows, n).unwrap();
            let x = random_acts(n, 16, &mut rng);
            // Each column alone (b = 1).
            let mut acts = QuantizedActs::with_capacity(n, 16);
            let mut single = vec![0f32; rows * 16];
            for j in 0..16 {
                acts.quantize(k, &x[j * n..(j + 1) * n], n, 1, &[w.act_kind()]).unwrap();
                matvec(&pools[0], &w, &acts, &mut single[j * rows..(j + 1) * rows]).unwrap();
            }
            for b in 1..=16 {
                acts.quantize(k, &x[..b * n], n, b, &[w.act_kind()]).unwrap();
                for pool in &pools {
                    let mut out = vec![0f32; rows * b];
                    matvec(pool, &w, &acts, &mut out).unwrap();
                    for j in 0..b {
                        assert_eq!(
                            bits(column(&out, rows, j)),
                            bits(column(&single, rows, j)),
                            "{} {ty}: column {j} of b={b} with {} threads differs from b=1",
                            k.name(),
                            pool.threads()
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn grouped_matvec_equals_one_matvec_per_matrix() {
    let mut rng = Rng(7);
    let k = Kernels::get();
    let n = 192;
    // A query, key and value projection of different heights and types, like a layer's.
    let specs = [(GgmlType::Q4_1, 45), (GgmlType::Q8_0, 16), (GgmlType::Q4_0, 7)];
    let data: Vec<Aligned> =
        specs.iter().map(|&(ty, rows)| Aligned::new(&random_weights(ty, rows, n, &mut rng))).collect();
    let ws: Vec<WeightMatrix<'_>> = specs
        .iter()
        .zip(&data)
        .map(|(&(ty, rows), d)| WeightMatrix::new(ty, d.bytes(), rows, n).unwrap())
        .collect();
    let refs: Vec<&WeightMatrix<'_>> = ws.iter().collect();
    for b in [1, 3, 8, 16] {
        let x = random_acts(n, b, &mut rng);
        let mut acts = QuantizedActs::with_capacity(n, b);
        acts.quantize(k, &x, n, b, &[ActKind::Q8]).unwrap();
        for threads in [1, 2, 3] {
            for min_work in [0, usize::MAX] {
                let pool =
                    KernelPool::with_kernels(Some(threads), k).unwrap().with_min_parallel_work(min_work);
                let mut want: Vec<Vec<f32>> = ws.iter().map(|w| vec![0f32; w.rows() * b]).collect();
                for (w, out) in ws.iter().zip(want.iter_mut()) {
                    matvec(&pool, w, &acts, out).unwrap();
                }
                let mut got: Vec<Vec<f32>> = ws.iter().map(|w| vec![f32::NAN; w.rows() * b]).collect();
                let mut outs: Vec<&mut [f32]> = got.iter_mut().map(|v| v.as_mut_slice()).collect();
                matvec_many(&pool, &refs, &acts, &mut outs).unwrap();
                for (m, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(bits(g), bits(w), "matrix {m}, b={b}, {threads} threads, min work {min_work}");
                }
            }
        }
    }
    let pool = KernelPool::new(Some(2)).unwrap();
    let x = random_acts(n, 1, &mut rng);
    let mut acts = QuantizedActs::with_capacity(n, 1);
    acts.quantize(k, &x, n, 1, &[ActKind::Q8]).unwrap();
    let mut short = [0f32; 3];
    let mut ok = [0f32; 45];
    assert!(
        matvec_many(&pool, &refs[..2], &acts, &mut [&mut ok[..]]).is_err(),
        "fewer outputs than matrices"
    );
    assert!(matvec_many(&pool, &refs[..1], &acts, &mut [&mut short[..]]).is_err(), "short output");
    assert!(matvec_many(&pool, &[], &acts, &mut []).is_err(), "an empty group");
}

#[test]
fn matvec_checks_shapes() {
    let mut rng = Rng(6);
    let data = Aligned::new(&random_weights(GgmlType::Q4_1, 4, 64, &mut rng));
    let w = WeightMatrix::new(GgmlType::Q4_1, data.bytes(), 4, 64).unwrap();
    assert!(WeightMatrix::new(GgmlType::Q4_1, data.bytes(), 5, 64).is_err());
    assert!(WeightMatrix::new(GgmlType::Q4_1, data.bytes(), 4, 48).is_err());
    assert!(WeightMatrix::new(GgmlType::IQ2_XS, data.bytes(), 1, 256).is_err());
    let pool = KernelPool::new(Some(2)).unwrap();
    let mut acts = QuantizedActs::new();
    let mut out = vec![0f32; 8];
    assert!(matvec(&pool, &w, &acts, &mut out).is_err(), "nothing quantized yet");
    let x = random_acts(64, 2, &mut rng);
    acts.quantize(pool.kernels(), &x, 64, 2, &[ActKind::Q8K]).ok();
    assert!(acts.quantize(pool.kernels(), &x, 64, 2, &[ActKind::Q8K]).is_err(), "64 is not a Q8_K multiple");
    acts.quantize(pool.kernels(), &x, 64, 2, &[ActKind::F32]).unwrap();
    assert!(matvec(&pool, &w, &acts, &mut out).is_err(), "wrong activation kind");
    acts.quantize(pool.kernels(), &x, 64, 2, &[ActKind::Q8]).unwrap();
    assert!(matvec(&pool, &w, &acts, &mut out[..7]).is_err(), "short output");
    matvec(&pool, &w, &acts, &mut out).unwrap();
    assert!(acts.quantize(pool.kernels(), &x, 32, 4, &[ActKind::Q8]).is_ok());
    assert!(matvec(&pool, &w, &acts, &mut out).is_err(), "n mismatch");
    assert!(acts.quantize(pool.kernels(), &vec![0.0; 64 * 17], 64, 17, &[ActKind::Q8]).is_err(), "b > 16");
}

#[test]
fn f16_vector_ops_match_across_isas() {
    let mut rng = Rng(7);
    for n in [1, 7, 8, 9, 64, 100, 256] {
        let a: Vec<f16> = (0..n).map(|_| f16::from_f32(rng.normal())).collect();
        let x: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
        let s = Kernels::scalar();
        let dot = s.dot_f16_f32(&a, &x).unwrap();
        let mut y0 = x.clone();
        s.axpy_f16(0.37, &a, &mut y0).unwrap();
        let mut h0 = vec![f16::ZERO; n];
        s.f32_to_f16(&x, &mut h0).unwrap();
        let mut f0 = vec![0f32; n];
        s.f16_to_f32(&a, &mut f0).unwrap();
        let exact: f64 = a.iter().zip(&x).map(|(a, x)| a.to_f64() * *x as f64).sum();
        assert!((dot as f64 - exact).abs() < 1e-5 * (n as f64), "{n}");
        for k in Kernels::available() {
            assert_eq!(k.dot_f16_f32(&a, &x).unwrap().to_bits(), dot.to_bits(), "{} dot n={n}", k.name());
            let mut y = x.clone();
            k.axpy_f16(0.37, &a, &mut y).unwrap();
            assert_eq!(bits(&y), bits(&y0), "{} axpy n={n}", k.name());
            let mut h = vec![f16::ZERO; n];
            k.f32_to_f16(&x, &mut h).unwrap();
            assert_eq!(h, h0, "{} f32→f16 n={n}", k.name());
            let mut f = vec![0f32; n];
            k.f16_to_f32(&a, &mut f).unwrap();
            assert_eq!(bits(&f), bits(&f0), "{} f16→f32 n={n}", k.name());
        }
        assert!(s.dot_f16_f32(&a, &x[..n - 1]).is_err());
    }
}

// ----------------------------------------------------------------------------------------------
// Against gguf-py (llama.cpp's own Python GGUF package) on real and generated files.
// ----------------------------------------------------------------------------------------------

/// Whether `python3` can import gguf and numpy; when it cannot, the tests below say so and pass,
/// unless EDGESPEC_REQUIRE_GGUF_PY=1 (CI sets it) makes that a failure.
fn gguf_py_available(test: &str) -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import gguf, numpy"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        let msg = format!("{test}: SKIPPED: python3 with the gguf and numpy packages is not available (pip install gguf numpy)");
        assert!(std::env::var("EDGESPEC_REQUIRE_GGUF_PY").as_deref() != Ok("1"), "{msg}");
        eprintln!("{msg}");
    }
    ok
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgespec-kernels-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Dequantize `specs` (tensor name, rows) of `path` with gguf-py, and with ours; compare.
/// Returns a line per tensor for the test log.
fn compare_with_gguf_py(path: &Path, specs: &[(String, usize)]) -> Vec<String> {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
    let dir = scratch_dir(&format!("gguf-py-{stem}"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gguf_py_dequant.py");
    let status = std::process::Command::new("python3")
        .arg(&script)
        .arg(path)
        .arg(&dir)
        .args(specs.iter().map(|(n, r)| format!("{n}:{r}")))
        .status()
        .unwrap();
    assert!(status.success(), "gguf_py_dequant.py failed on {}", path.display());
    let file = GgufFile::open(path).unwrap();
    let mut report = Vec::new();
    for (i, (name, rows)) in specs.iter().enumerate() {
        let info = file.tensor(name).unwrap();
        let n = info.shape()[0] as usize;
        let row_bytes = info.ty.row_bytes(n as u64).unwrap() as usize;
        let data = &file.tensor_data(info)[..rows * row_bytes];
        let mut ours = vec![0f32; rows * n];
        quant::dequantize(info.ty, data, &mut ours).unwrap();
        let theirs: Vec<f32> = std::fs::read(dir.join(format!("{i}.f32")))
            .unwrap()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(theirs.len(), ours.len(), "{name}");
        let differing = ours.iter().zip(&theirs).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
        let max_abs = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        report.push(format!(
            "{name} ({}, {rows}×{n}): {differing} of {} values differ in bits, max |Δ| {max_abs:e}",
            info.ty,
            ours.len()
        ));
        assert_eq!(
            differing, 0,
            "{name} ({}): ours differs from gguf-py in {differing} values (max |Δ| {max_abs})",
            info.ty
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    report
}

#[test]
fn every_format_decodes_like_gguf_py() {
    if !gguf_py_available("every_format_decodes_like_gguf_py") {
        return;
    }
    // One tensor per type, random bits, written with our own writer.
    let mut rng = Rng(8);
    let mut writer = GgufWriter::new();
    let mut specs = Vec::new();
    for ty in WEIGHT_TYPES {
        let (rows, n) = (3, if ty.block_size() == 256 { 512 } else { 96 });
        let name = format!("w.{}", ty.name().to_lowercase());
        writer.tensor(&name, &[n as u64, rows as u64], ty, random_weights(ty, rows, n, &mut rng)).unwrap();
        specs.push((name, rows));
    }
    let dir = scratch_dir("formats");
    let path = dir.join("formats.gguf");
    writer.write_file(&path).unwrap();
    for line in compare_with_gguf_py(&path, &specs) {
        eprintln!("{line}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A model file: `$VAR` if set, else `file_name` under $EDGESPEC_HOME/models,
/// ~/.cache/edgespec/models or /tmp/models (searched two levels deep).
fn find_model(var: &str, file_name: &str) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(var) {
        return Some(PathBuf::from(p));
    }
    let mut roots = Vec::new();
    if let Ok(h) = std::env::var("EDGESPEC_HOME") {
        roots.push(PathBuf::from(h).join("models"));
    }
    if let Ok(h) = std::env::var("HOME") {
        roots.push(PathBuf::from(h).join(".cache/edgespec/models"));
    }
    roots.push(PathBuf::from("/tmp/models"));
    for root in roots {
        let direct = root.join(file_name);
        if direct.is_file() {
            return Some(direct);
        }
        for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            let p = entry.path().join(file_name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

fn check_real_model(var: &str, file_name: &str) {
    let test = format!("real model {file_name}");
    if !gguf_py_available(&test) {
        return;
    }
    let Some(path) = find_model(var, file_name) else {
        let msg = format!("{test}: SKIPPED: not found (set {var} or put it in the model cache)");
        assert!(std::env::var("EDGESPEC_REQUIRE_MODELS").as_deref() != Ok("1"), "{msg}");
        eprintln!("{msg}");
        return;
    };
    let file = GgufFile::open(&path).unwrap();
    // Up to two tensors of each type, at most 256 rows each.
    let mut specs = Vec::new();
    let mut per_type = std::collections::BTreeMap::new();
    for info in file.tensors() {
        let count = per_type.entry(info.ty.id()).or_insert(0);
        if *count < 2 {
            *count += 1;
            let rows = info.shape().iter().skip(1).product::<u64>().max(1) as usize;
            specs.push((info.name.clone(), rows.min(256)));
        }
    }
    eprintln!("{test} at {}:", path.display());
    for line in compare_with_gguf_py(&path, &specs) {
        eprintln!("  {line}");
    }
}

#[test]
fn smollm2_tensors_decode_like_gguf_py() {
    check_real_model("EDGESPEC_SMOLLM2_GGUF", "SmolLM2-135M-Instruct.Q4_1.gguf");
}

#[test]
fn gemma3_tensors_decode_like_gguf_py() {
    check_real_model("EDGESPEC_GEMMA3_GGUF", "gemma-3-270m-q4_k_m.gguf");
}
