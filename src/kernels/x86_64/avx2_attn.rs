//! AVX2 attention kernels for grouped-query attention: the query heads that share a KV head
//! against its cached f16 rows, each row converted to f32 once for all of them.
//!
//! With one query at a time, every cached key and value is converted from f16 for each head of
//! the group (3 heads per KV head on SmolLM2, 4 on Gemma 3): the conversions cost as much as the
//! multiply-adds. Here a block of rows is converted once and multiplied into the accumulators of
//! up to three queries (sixteen registers: four keys × three queries, or two value chunks × three
//! outputs plus the converted chunks and weights). Each query's result is the same chain of fmas
//! in the same order as [`super::avx2_ops::dot_f16_rows`] / `axpy_f16_rows` give it alone, so the
//! results are bitwise equal to those (tested).

use core::arch::x86_64::*;

use half::f16;

use super::avx2::hsum;
use super::avx2_ops::{axpy_f16, dot_f16_f32, load_f16};

/// Queries handled together.
const GROUP: usize = 3;

/// `out[j·stride + i] = dot_f16_f32(row i, query j)` for the `xs.len() / n` queries of `xs` and
/// the `rows.len() / n` rows of `rows`.
///
/// # Safety
/// AVX2, FMA and F16C must be available; `n > 0`, `xs` and `rows` whole multiples of `n`, and
/// `out` long enough for every `j·stride + i`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_f16_rows_multi(rows: &[f16], xs: &[f32], n: usize, out: &mut [f32], stride: usize) {
    let g = xs.len() / n;
    let mut j = 0;
    while j < g {
        match g - j {
            1 => dot_group::<1>(rows, &xs[j * n..], n, out, j, stride),
            2 => dot_group::<2>(rows, &xs[j * n..], n, out, j, stride),
            _ => dot_group::<GROUP>(rows, &xs[j * n..], n, out, j, stride),
        }
        j += GROUP;
    }
}

/// [`dot_f16_rows_multi`] for queries `j0 .. j0 + Q` (`xs` starts at query `j0`).
// Always inlined, without features of its own: it takes those of its caller.
#[inline(always)]
unsafe fn dot_group<const Q: usize>(
    rows: &[f16],
    xs: &[f32],
    n: usize,
    out: &mut [f32],
    j0: usize,
    stride: usize,
) {
    let m = rows.len() / n;
    let full = n / 8 * 8;
    let mut r = 0;
    while r + 4 <= m {
        let p = rows.as_ptr().add(r * n);
        let mut acc = [[_mm256_setzero_ps(); 4]; Q];
        let mut i = 0;
        while i < full {
            let w = [
                _mm256_cvtph_ps(_mm_loadu_si128(p.add(i).cast())),
                _mm256_cvtph_ps(_mm_loadu_si128(p.add(n + i).cast())),
                _mm256_cvtph_ps(_mm_loadu_si128(p.add(2 * n + i).cast())),
                _mm256_cvtph_ps(_mm_loadu_si128(p.add(3 * n + i).cast())),
            ];
            for (q, acc) in acc.iter_mut().enumerate() {
                let xv = _mm256_loadu_ps(xs.as_ptr().add(q * n + i));
                for (acc, w) in acc.iter_mut().zip(w) {
                    *acc = _mm256_fmadd_ps(w, xv, *acc);
                }
            }
            i += 8;
        }
        if full < n {
            for (q, acc) in acc.iter_mut().enumerate() {
                let mut x8 = [0f32; 8];
                x8[..n - full].copy_from_slice(&xs[q * n + full..(q + 1) * n]);
                let xv = _mm256_loadu_ps(x8.as_ptr());
                for (k, acc) in acc.iter_mut().enumerate() {
                    let w = load_f16(&rows[(r + k) * n..(r + k + 1) * n], full, n - full);
                    *acc = _mm256_fmadd_ps(w, xv, *acc);
                }
            }
        }
        for (q, acc) in acc.iter().enumerate() {
            for (k, acc) in acc.iter().enumerate() {
                out[(j0 + q) * stride + r + k] = hsum(*acc);
            }
        }
        r += 4;
    }
    for r in r..m {
        for q in 0..Q {
            out[(j0 + q) * stride + r] = dot_f16_f32(&rows[r * n..(r + 1) * n], &xs[q * n..(q + 1) * n]);
        }
    }
}

/// `ys[j·n ..][..n] += Σ_i ws[j·stride + i]·(row i)` for the `ys.len() / n` outputs and the
/// `rows.len() / n` rows of `rows`, each bitwise equal to `axpy_f16_rows` on its own.
///
/// # Safety
/// AVX2, FMA and F16C must be available; `n > 0`, `ys` and `rows` whole multiples of `n`, and
/// `ws` long enough for every `j·stride + i`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn axpy_f16_rows_multi(ws: &[f32], rows: &[f16], n: usize, ys: &mut [f32], stride: usize) {
    let g = ys.len() / n;
    let mut j = 0;
    while j < g {
        let ys = &mut ys[j * n..];
        match g - j {
            1 => axpy_group::<1>(ws, rows, n, ys, j, stride),
            2 => axpy_group::<2>(ws, rows, n, ys, j, stride),
            _ => axpy_group::<GROUP>(ws, rows, n, ys, j, stride),
        }
        j += GROUP;
    }
}

/// [`axpy_f16_rows_multi`] for outputs `j0 .. j0 + Q` (`ys` starts at output `j0`).
// Always inlined, without features of its own: it takes those of its caller.
#[inline(always)]
unsafe fn axpy_group<const Q: usize>(
    ws: &[f32],
    rows: &[f16],
    n: usize,
    ys: &mut [f32],
    j0: usize,
    stride: usize,
) {
    let m = rows.len() / n;
    let full16 = n / 16 * 16;
    let mut c = 0;
    while c < full16 {
        let mut acc = [[_mm256_setzero_ps(); 2]; Q];
        for (q, acc) in acc.iter_mut().enumerate() {
            let y = ys.as_ptr().add(q * n + c);
            *acc = [_mm256_loadu_ps(y), _mm256_loadu_ps(y.add(8))];
        }
        for i in 0..m {
            let p = rows.as_ptr().add(i * n + c);
            let x = [
                _mm256_cvtph_ps(_mm_loadu_si128(p.cast())),
                _mm256_cvtph_ps(_mm_loadu_si128(p.add(8).cast())),
            ];
            for (q, acc) in acc.iter_mut().enumerate() {
                let a = _mm256_set1_ps(*ws.get_unchecked((j0 + q) * stride + i));
                acc[0] = _mm256_fmadd_ps(a, x[0], acc[0]);
                acc[1] = _mm256_fmadd_ps(a, x[1], acc[1]);
            }
        }
        for (q, acc) in acc.iter().enumerate() {
            let y = ys.as_mut_ptr().add(q * n + c);
            _mm256_storeu_ps(y, acc[0]);
            _mm256_storeu_ps(y.add(8), acc[1]);
        }
        c += 16;
    }
    if full16 < n {
        // The remaining columns row by row, with the same fma per element.
        for q in 0..Q {
            for i in 0..m {
                let w = ws[(j0 + q) * stride + i];
                axpy_f16(w, &rows[i * n + full16..(i + 1) * n], &mut ys[q * n + full16..(q + 1) * n]);
            }
        }
    }
}
