//! Plain GGUF layout against row-interleaved records, side by side in one process, on the
//! Qwen2.5-0.5B matrices the interleaved layout covers (Q5_0 projections, the Q8_0 output head).
//!
//! `cargo bench --bench layout_ab -- [--batches 1,2,4,8,16] [--rounds 9] [--threads 2]
//! [--kernels avx512-vnni] [--cold] [--only plain|interleaved]` (`--only`: time one layout, e.g.
//! under `perf stat` to count cycles on a busy machine)
//!
//! Hot (default): one copy of each matrix, re-read every call (the arithmetic, which bounds a
//! verify pass). `--cold`: enough copies cycled (256 MiB) that each call streams from DRAM, as
//! decoding does. Each cell is the fastest of the interleaved rounds, in µs per mat-vec, with the
//! ratio interleaved / plain and each layout's ratio to its own b = 1.

use std::hint::black_box;
use std::time::Instant;

use edgespec::kernels::{matvec, ActKind, InterleavedData, KernelPool, Kernels, QuantizedActs, WeightMatrix};
use edgespec::quant::interleaved::interleave;
use edgespec::quant::{self, BlockQ5_0, BlockQ5_0x8, BlockQ8_0, BlockQ8_0x8, GgmlType};

#[path = "common/rng.rs"]
mod rng;
use rng::rng_normal as normal;

/// CPU time this thread has run, in seconds (`CLOCK_THREAD_CPUTIME_ID`), if available: with one
/// thread the bench times that, which a busy machine does not inflate.
fn thread_cpu_s() -> Option<f64> {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid, writable timespec for the call.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        (rc == 0).then_some(ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9)
    }
    #[cfg(not(unix))]
    None
}

fn list(s: &str) -> Vec<usize> {
    s.split(',').filter_map(|v| v.trim().parse().ok()).collect()
}

/// One matrix in both layouts, `copies` times.
struct Copies {
    plain: Vec<Vec<u8>>,
    q5: Vec<Vec<BlockQ5_0x8>>,
    q8: Vec<Vec<BlockQ8_0x8>>,
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let opt = |name: &str| argv.iter().position(|a| a == name).and_then(|i| argv.get(i + 1)).cloned();
    let batches = opt("--batches").map(|s| list(&s)).unwrap_or_else(|| vec![1, 2, 4, 8, 16]);
    let rounds: usize = opt("--rounds").and_then(|s| s.parse().ok()).unwrap_or(9);
    let threads: usize = opt("--threads").and_then(|s| s.parse().ok()).unwrap_or(2);
    let cold = argv.iter().any(|a| a == "--cold");
    let only = opt("--only");
    let kernels = match opt("--kernels") {
        Some(name) => Kernels::by_name(&name).expect("kernels"),
        None => Kernels::get(),
    };
    let pool = KernelPool::with_kernels(Some(threads), kernels).expect("pool");
    println!(
        "{}, {threads} thread(s), {}, fastest of {rounds} interleaved rounds (µs per mat-vec, {})",
        kernels.name(),
        if cold { "cold (256 MiB cycled)" } else { "cache-hot" },
        if threads == 1 && thread_cpu_s().is_some() { "thread CPU time" } else { "wall time" }
    );
    let shapes = [
        ("ffn_gate/up", GgmlType::Q5_0, 4864, 896),
        ("attn_q/o", GgmlType::Q5_0, 896, 896),
        ("output (rows/8)", GgmlType::Q8_0, 18992, 896),
    ];
    let max_b = batches.iter().copied().max().unwrap_or(1);
    for (label, ty, rows, n) in shapes {
        let mut s = 7u64;
        let src: Vec<f32> = (0..rows * n).map(|_| normal(&mut s) * 0.05).collect();
        // Q5_0 has no quantizer here: random quants, every scale 0.01 (speed does not depend on them).
        let bytes = quant::quantize(ty, &src).unwrap_or_else(|_| {
            let mut b: Vec<u8> =
                (0..rows * n / 32 * 22).map(|_| (normal(&mut s) * 1e4) as i64 as u8).collect();
            b.chunks_exact_mut(22).for_each(|blk| blk[..2].copy_from_slice(&0x211eu16.to_le_bytes()));
            b
        });
        let copies = if cold { ((256usize << 20) / bytes.len()).max(2) } else { 1 };
        let nb = n / 32;
        let mut c = Copies { plain: vec![], q5: vec![], q8: vec![] };
        for _ in 0..copies {
            match ty {
                GgmlType::Q5_0 => {
                    let b: &[BlockQ5_0] = quant::as_blocks(&bytes).expect("blocks");
                    c.q5.push(interleave(b, rows, nb).expect("interleave"));
                }
                _ => {
                    let b: &[BlockQ8_0] = quant::as_blocks(&bytes).expect("blocks");
                    c.q8.push(interleave(b, rows, nb).expect("interleave"));
                }
            }
            c.plain.push(bytes.clone());
        }
        let plain: Vec<WeightMatrix<'_>> =
            c.plain.iter().map(|d| WeightMatrix::new(ty, d, rows, n).expect("matrix")).collect();
        let inter: Vec<WeightMatrix<'_>> = (0..copies)
            .map(|i| {
                let data = match ty {
                    GgmlType::Q5_0 => InterleavedData::Q5_0(&c.q5[i]),
                    _ => InterleavedData::Q8_0(&c.q8[i]),
                };
                WeightMatrix::interleaved(data, rows, n).expect("interleaved matrix")
            })
            .collect();
        let x: Vec<f32> = (0..n * max_b).map(|_| normal(&mut s)).collect();
        let mut acts = QuantizedActs::with_capacity(n, max_b);
        let mut out = vec![0f32; rows * max_b];
        let mut best = vec![[f64::INFINITY; 2]; batches.len()];
        let calls = if cold { copies.max(8) } else { 32 };
        for _ in 0..rounds {
            for (bi, &b) in batches.iter().enumerate() {
                acts.quantize(kernels, &x[..n * b], n, b, &[ActKind::Q8]).expect("quantize");
                let out = &mut out[..rows * b];
                for (li, mats) in [&plain, &inter].into_iter().enumerate() {
                    if only.as_deref().is_some_and(|o| o != ["plain", "interleaved"][li]) {
                        continue;
                    }
                    matvec(&pool, &mats[0], &acts, out).expect("matvec");
                    let (t, cpu) = (Instant::now(), thread_cpu_s());
                    for i in 0..calls {
                        matvec(&pool, &mats[i % copies], &acts, out).expect("matvec");
                        black_box(&out);
                    }
                    let secs = match (threads, cpu, thread_cpu_s()) {
                        (1, Some(a), Some(b)) => b - a,
                        _ => t.elapsed().as_secs_f64(),
                    };
                    best[bi][li] = best[bi][li].min(secs / calls as f64);
                }
            }
        }
        println!("\n{label} [{n},{rows}] {ty}:");
        println!(
            "| b | plain µs | ×b1 | interleaved µs | ×b1 | inter/plain |\n|---:|---:|---:|---:|---:|---:|"
        );
        for (bi, &b) in batches.iter().enumerate() {
            let [p, q] = best[bi];
            let [p1, q1] = best[0];
            println!(
                "| {b} | {:.1} | {:.2} | {:.1} | {:.2} | {:.2} |",
                p * 1e6,
                p / p1,
                q * 1e6,
                q / q1,
                q / p
            );
        }
    }
}
