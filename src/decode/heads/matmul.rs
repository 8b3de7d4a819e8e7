//! f32 matrix products for training draft heads (`tune`): the logits of a minibatch over the
//! reduced vocabulary and their gradient dominate training, so they get a blocked, parallel
//! product with an AVX2/FMA register tile where the CPU has it (a portable loop elsewhere).
//!
//! One primitive, [`matmul_nt`]: `C = A · Bᵀ` over row-major buffers, i.e. every row of `A`
//! dotted with every row of `B`. Other layouts go through [`transpose`].

use rayon::prelude::*;

/// Rows of `A` per parallel task (each task writes its own rows of `C`).
const MC: usize = 32;
/// Rows of `B` per block (a block stays in L2 while the task's rows of `A` pass over it).
const NC: usize = 64;
/// Length of the `k` blocks (so that a block of `A` rows and one of `B` rows fit in L2).
const KC: usize = 512;

/// `c = a · bᵀ`: `a` is `(m, k)`, `b` is `(n, k)`, `c` is `(m, n)`, all row-major; `m` is
/// `a.len() / k`. Parallel over blocks of rows of `a` on the current rayon pool.
///
/// # Panics
/// When the lengths do not match the shapes (training code passes buffers it sized itself).
pub fn matmul_nt(a: &[f32], b: &[f32], k: usize, c: &mut [f32], n: usize) {
    assert!(k > 0 && a.len().is_multiple_of(k) && b.len() == n * k, "matmul_nt: shapes");
    let m = a.len() / k;
    assert_eq!(c.len(), m * n, "matmul_nt: output shape");
    let simd = simd_available();
    c.par_chunks_mut(MC * n.max(1)).enumerate().for_each(|(blk, cc)| {
        let i0 = blk * MC;
        let rows = cc.len() / n.max(1);
        cc.iter_mut().for_each(|v| *v = 0.0);
        for k0 in (0..k).step_by(KC) {
            let k1 = (k0 + KC).min(k);
            for j0 in (0..n).step_by(NC) {
                let j1 = (j0 + NC).min(n);
                block(a, b, k, i0, rows, j0, j1, k0, k1, cc, n, simd);
            }
        }
    });
}

/// `out = inᵀ`: `input` is `(rows, cols)`, `out` is `(cols, rows)`.
pub fn transpose(input: &[f32], rows: usize, cols: usize, out: &mut [f32]) {
    assert!(input.len() == rows * cols && out.len() == rows * cols, "transpose: shapes");
    const T: usize = 32;
    for r0 in (0..rows).step_by(T) {
        for c0 in (0..cols).step_by(T) {
            for r in r0..(r0 + T).min(rows) {
                for c in c0..(c0 + T).min(cols) {
                    out[c * rows + r] = input[r * cols + c];
                }
            }
        }
    }
}

/// Rows `i0 .. i0 + rows` of `a` against rows `j0 .. j1` of `b` over `k0 .. k1`, added into `cc`
/// (the task's rows of `c`, each `n` long).
#[allow(clippy::too_many_arguments)]
fn block(
    a: &[f32],
    b: &[f32],
    k: usize,
    i0: usize,
    rows: usize,
    j0: usize,
    j1: usize,
    k0: usize,
    k1: usize,
    cc: &mut [f32],
    n: usize,
    simd: bool,
) {
    let arow = |i: usize| &a[(i0 + i) * k + k0..(i0 + i) * k + k1];
    let brow = |j: usize| &b[j * k + k0..j * k + k1];
    let mut i = 0;
    while i < rows {
        let mr = (rows - i).min(4);
        let mut j = j0;
        while j < j1 {
            let nr = (j1 - j).min(3);
            if simd && mr == 4 && nr == 3 {
                let out = tile_4x3(
                    [arow(i), arow(i + 1), arow(i + 2), arow(i + 3)],
                    [brow(j), brow(j + 1), brow(j + 2)],
                );
                for (r, vals) in out.iter().enumerate() {
                    for (s, v) in vals.iter().enumerate() {
                        cc[(i + r) * n + j + s] += v;
                    }
                }
            } else {
                for r in 0..mr {
                    for s in 0..nr {
                        cc[(i + r) * n + j + s] += dot(arow(i + r), brow(j + s));
                    }
                }
            }
            j += nr;
        }
        i += mr;
    }
}

/// A plain dot product, eight partial sums (vectorizable without reassociation).
pub fn dot(x: &[f32], y: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (xc, yc) = (x.chunks_exact(8), y.chunks_exact(8));
    let tail: f32 = xc.remainder().iter().zip(yc.remainder()).map(|(p, q)| p * q).sum();
    for (xs, ys) in xc.zip(yc) {
        for l in 0..8 {
            acc[l] += xs[l] * ys[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The 4 × 3 dots of `a`'s rows with `b`'s rows (all the same length).
fn tile_4x3(a: [&[f32]; 4], b: [&[f32]; 3]) -> [[f32; 3]; 4] {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: only called when `simd_available()` confirmed AVX2 and FMA.
        unsafe { x86::tile_4x3(a, b) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut out = [[0f32; 3]; 4];
        for (r, ar) in a.iter().enumerate() {
            for (s, bs) in b.iter().enumerate() {
                out[r][s] = dot(ar, bs);
            }
        }
        out
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// Twelve accumulators in registers, eight lanes at a time, a scalar tail.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; every slice must have `a[0].len()` elements.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile_4x3(a: [&[f32]; 4], b: [&[f32]; 3]) -> [[f32; 3]; 4] {
        let k = a[0].len();
        let len_ok = a.iter().all(|r| r.len() == k) && b.iter().all(|r| r.len() == k);
        let mut out = [[0f32; 3]; 4];
        if !len_ok {
            return out;
        }
        let mut acc = [[_mm256_setzero_ps(); 3]; 4];
        let full = k / 8 * 8;
        let mut p = 0;
        while p < full {
            // SAFETY: `p + 8 <= k` and every slice holds `k` floats.
            let b0 = _mm256_loadu_ps(b[0].as_ptr().add(p));
            let b1 = _mm256_loadu_ps(b[1].as_ptr().add(p));
            let b2 = _mm256_loadu_ps(b[2].as_ptr().add(p));
            for r in 0..4 {
                let x = _mm256_loadu_ps(a[r].as_ptr().add(p));
                acc[r][0] = _mm256_fmadd_ps(x, b0, acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(x, b1, acc[r][1]);
                acc[r][2] = _mm256_fmadd_ps(x, b2, acc[r][2]);
            }
            p += 8;
        }
        for r in 0..4 {
            for s in 0..3 {
                let tail: f32 = a[r][full..].iter().zip(&b[s][full..]).map(|(x, y)| x * y).sum();
                out[r][s] = hsum(acc[r][s]) + tail;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], k: usize) -> Vec<f32> {
        let (m, n) = (a.len() / k, b.len() / k);
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] as f64 * b[j * k + p] as f64).sum::<f64>() as f32;
            }
        }
        c
    }

    #[test]
    fn matmul_nt_matches_the_naive_product_on_ragged_shapes() {
        let mut seed = 7u32;
        let mut rnd = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        for (m, n, k) in [(1, 1, 1), (5, 7, 13), (37, 70, 600), (4, 3, 8), (66, 129, 1030)] {
            let a: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
            let b: Vec<f32> = (0..n * k).map(|_| rnd()).collect();
            let mut c = vec![f32::NAN; m * n];
            matmul_nt(&a, &b, k, &mut c, n);
            let want = naive(&a, &b, k);
            for (x, y) in c.iter().zip(&want) {
                assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{m}x{n}x{k}: {x} vs {y}");
            }
        }
    }

    #[test]
    fn transpose_swaps_rows_and_columns() {
        let a: Vec<f32> = (0..35).map(|v| v as f32).collect();
        let mut t = vec![0f32; 35];
        transpose(&a, 5, 7, &mut t);
        assert_eq!(t[3 * 5 + 2], a[2 * 7 + 3]);
        let mut back = vec![0f32; 35];
        transpose(&t, 7, 5, &mut back);
        assert_eq!(back, a);
    }
}
