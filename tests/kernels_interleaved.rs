//! Row-interleaved weights (eight rows per record, for batched passes) give bitwise the results
//! of the plain GGUF layout on every kernel table, for every batch size, thread count and row
//! range: the layouts are interchangeable, which is what keeps batch invariance whichever one a
//! pass uses.
//!
//! Runs on aarch64 under qemu too (the NEON tables use the scalar twins for this layout).

use edgespec::kernels::{matvec, ActKind, InterleavedData, KernelPool, Kernels, QuantizedActs, WeightMatrix};
use edgespec::quant::interleaved::interleave;
use edgespec::quant::{f32_to_f16, BlockQ5_0, BlockQ5_0x8, BlockQ8_0, BlockQ8_0x8, GgmlType};

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn normal(&mut self) -> f32 {
        let u = ((self.u64() >> 40) as f32 / (1u64 << 24) as f32).max(1e-7);
        let v = (self.u64() >> 40) as f32 / (1u64 << 24) as f32;
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }
    fn scale(&mut self) -> u16 {
        let v = 0.001 + 0.03 * ((self.u64() >> 40) as f32 / (1u64 << 24) as f32);
        f32_to_f16(if self.u64() & 1 == 1 { -v } else { v })
    }
}

/// Random blocks with every quant bit random, extremes included (Q8_0: −128 and 127).
fn q8_blocks(count: usize, rng: &mut Rng) -> Vec<BlockQ8_0> {
    (0..count)
        .map(|i| BlockQ8_0 {
            d: rng.scale(),
            qs: std::array::from_fn(|e| match (i + e) % 61 {
                0 => -128,
                1 => 127,
                _ => rng.u64() as i8,
            }),
        })
        .collect()
}

fn q5_blocks(count: usize, rng: &mut Rng) -> Vec<BlockQ5_0> {
    (0..count)
        .map(|_| BlockQ5_0 {
            d: rng.scale(),
            qh: (rng.u64() as u32).to_le_bytes(),
            qs: std::array::from_fn(|_| rng.u64() as u8),
        })
        .collect()
}

/// Columns with the activation quantizer's extremes (±127 after scaling) and zero blocks.
fn acts(n: usize, b: usize, rng: &mut Rng) -> Vec<f32> {
    let mut x: Vec<f32> = (0..n * b).map(|_| rng.normal()).collect();
    for (j, col) in x.chunks_exact_mut(n).enumerate() {
        match j % 4 {
            0 => col[..32].fill(0.0),
            1 => col.iter_mut().step_by(3).for_each(|v| *v = if *v < 0.0 { -100.0 } else { 100.0 }),
            _ => {}
        }
    }
    x
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// A matrix in both layouts.
struct Pair {
    ty: GgmlType,
    rows: usize,
    n: usize,
    plain: Vec<u8>,
    q5: Vec<BlockQ5_0x8>,
    q8: Vec<BlockQ8_0x8>,
}

impl Pair {
    fn new(ty: GgmlType, rows: usize, n: usize, rng: &mut Rng) -> Pair {
        let nb = n / 32;
        let (plain, q5, q8) = match ty {
            GgmlType::Q5_0 => {
                let b = q5_blocks(rows * nb, rng);
                (edgespec::quant::blocks_as_bytes(&b).to_vec(), interleave(&b, rows, nb).unwrap(), vec![])
            }
            _ => {
                let b = q8_blocks(rows * nb, rng);
                (edgespec::quant::blocks_as_bytes(&b).to_vec(), vec![], interleave(&b, rows, nb).unwrap())
            }
        };
        Pair { ty, rows, n, plain, q5, q8 }
    }
    fn plain(&self) -> WeightMatrix<'_> {
        WeightMatrix::new(self.ty, &self.plain, self.rows, self.n).unwrap()
    }
    fn interleaved(&self) -> WeightMatrix<'_> {
        let data = match self.ty {
            GgmlType::Q5_0 => InterleavedData::Q5_0(&self.q5),
            _ => InterleavedData::Q8_0(&self.q8),
        };
        WeightMatrix::interleaved(data, self.rows, self.n).unwrap()
    }
}

#[test]
fn interleaved_rows_equal_the_plain_layout_bitwise_on_every_table() {
    let mut rng = Rng(21);
    for ty in [GgmlType::Q5_0, GgmlType::Q8_0] {
        // Row lengths of 1..9 groups of eight blocks and partial groups (896 = 28 blocks, the
        // Qwen2.5 width), and 8..40 rows.
        for (rows, n) in [(8, 32), (16, 96), (24, 256), (40, 288), (8, 896), (16, 224)] {
            let m = Pair::new(ty, rows, n, &mut rng);
            let (plain, inter) = (m.plain(), m.interleaved());
            assert!(inter.is_interleaved() && inter.bytes() == plain.bytes());
            for b in [1, 2, 3, 4, 5, 8, 9, 16] {
                let x = acts(n, b, &mut rng);
                let mut q = QuantizedActs::new();
                q.quantize(Kernels::scalar(), &x, n, b, &[ActKind::Q8]).unwrap();
                let mut want = vec![0f32; rows * b];
                Kernels::scalar().dot_rows(&plain, 0..rows, &q, &mut want).unwrap();
                for k in Kernels::available() {
                    let mut got = vec![0f32; rows * b];
                    k.dot_rows(&inter, 0..rows, &q, &mut got).unwrap();
                    assert_eq!(bits(&got), bits(&want), "{} {ty} rows={rows} n={n} b={b}", k.name());
                    // Ranges that start and end inside a group of eight.
                    let (r0, r1) = (3, rows - 2);
                    let mut part = vec![0f32; (r1 - r0) * b];
                    k.dot_rows(&inter, r0..r1, &q, &mut part).unwrap();
                    assert_eq!(
                        bits(&part),
                        bits(&want[r0 * b..r1 * b]),
                        "{} {ty} rows {r0}..{r1} b={b}",
                        k.name()
                    );
                }
            }
        }
    }
}

#[test]
fn interleaved_matvec_is_batch_and_thread_invariant() {
    let mut rng = Rng(4);
    for k in Kernels::available() {
        let pools: Vec<KernelPool> = [1, 2, 3]
            .iter()
            .map(|&t| KernelPool::with_kernels(Some(t), k).unwrap().with_min_parallel_work(0))
            .collect();
        for ty in [GgmlType::Q5_0, GgmlType::Q8_0] {
            let (rows, n) = (56, 224);
            let m = Pair::new(ty, rows, n, &mut rng);
            let (plain, inter) = (m.plain(), m.interleaved());
            let x = acts(n, 16, &mut rng);
            let mut q = QuantizedActs::with_capacity(n, 16);
            // Each column alone through the plain layout.
            let mut single = vec![0f32; rows * 16];
            for j in 0..16 {
                q.quantize(k, &x[j * n..(j + 1) * n], n, 1, &[ActKind::Q8]).unwrap();
                matvec(&pools[0], &plain, &q, &mut single[j * rows..(j + 1) * rows]).unwrap();
            }
            for b in 1..=16 {
                q.quantize(k, &x[..b * n], n, b, &[ActKind::Q8]).unwrap();
                for pool in &pools {
                    let mut out = vec![0f32; rows * b];
                    matvec(pool, &inter, &q, &mut out).unwrap();
                    assert_eq!(
                        bits(&out),
                        bits(&single[..rows * b]),
                        "{} {ty} b={b} {} threads",
                        k.name(),
                        pool.threads()
                    );
                }
            }
        }
    }
}

#[test]
fn interleaved_matrices_check_their_shapes() {
    let mut rng = Rng(9);
    let m = Pair::new(GgmlType::Q8_0, 16, 64, &mut rng);
    assert!(WeightMatrix::interleaved(InterleavedData::Q8_0(&m.q8), 12, 64).is_err());
    assert!(WeightMatrix::interleaved(InterleavedData::Q8_0(&m.q8), 16, 96).is_err());
    assert!(WeightMatrix::interleaved(InterleavedData::Q8_0(&m.q8[..3]), 16, 64).is_err());
    assert!(interleave::<BlockQ5_0x8>(&q5_blocks(12, &mut rng), 6, 2).is_err());
}
