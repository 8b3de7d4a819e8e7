//! Kernel tables side by side: every table this CPU offers, on the SmolLM2-135M shapes, timed in
//! interleaved rounds in one process, so a busy machine slows all of them alike.
//!
//! `cargo bench --bench kernel_ab -- [--batches 1,2,4,8,16] [--rounds 15] [--threads 1]`
//!
//! Weights are cache-hot (one copy, re-read every call): this isolates the arithmetic, which is
//! what bounds a verify pass of several tokens; `matvec` measures the cold, memory-bound case.
//! Each cell is the fastest round (a round times 32 calls), in µs per mat-vec, with the ratio to
//! b = 1 of the same table and, per table after the first, the ratio to the first table.

use std::hint::black_box;
use std::time::Instant;

use edgespec::kernels::{matvec, ActKind, KernelPool, Kernels, QuantizedActs, WeightMatrix};
use edgespec::quant::{self, GgmlType};

#[path = "common/rng.rs"]
mod rng;
use rng::rng_normal as normal;

fn list(s: &str) -> Vec<usize> {
    s.split(',').filter_map(|v| v.trim().parse().ok()).collect()
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let opt = |name: &str| argv.iter().position(|a| a == name).and_then(|i| argv.get(i + 1)).cloned();
    let batches = opt("--batches").map(|s| list(&s)).unwrap_or_else(|| vec![1, 2, 4, 8, 16]);
    let rounds: usize = opt("--rounds").and_then(|s| s.parse().ok()).unwrap_or(15);
    let threads: usize = opt("--threads").and_then(|s| s.parse().ok()).unwrap_or(1);
    let tables: Vec<&'static Kernels> =
        Kernels::available().into_iter().filter(|k| k.name() != "scalar").collect();
    let pools: Vec<KernelPool> =
        tables.iter().map(|k| KernelPool::with_kernels(Some(threads), k).expect("pool")).collect();
    println!(
        "tables {:?}, {threads} thread(s), cache-hot, fastest of {rounds} interleaved rounds",
        tables.iter().map(|k| k.name()).collect::<Vec<_>>()
    );
    let shapes = [
        ("ffn_down", GgmlType::Q4_1, 576, 1536),
        ("ffn_gate/up", GgmlType::Q4_1, 1536, 576),
        ("attn_q/o", GgmlType::Q4_1, 576, 576),
        ("output (rows/8)", GgmlType::Q8_0, 6144, 576),
    ];
    let max_b = batches.iter().copied().max().unwrap_or(1);
    for (label, ty, rows, n) in shapes {
        let mut s = 7u64;
        let src: Vec<f32> = (0..rows * n).map(|_| normal(&mut s) * 0.05).collect();
        let bytes = quant::quantize(ty, &src).expect("quantize weights");
        let words: Vec<f32> =
            bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let w = WeightMatrix::new(ty, quant::blocks_as_bytes(&words), rows, n).expect("matrix");
        let x: Vec<f32> = (0..n * max_b).map(|_| normal(&mut s)).collect();
        let mut acts = QuantizedActs::with_capacity(n, max_b);
        let mut out = vec![0f32; rows * max_b];
        // best[table][batch] in seconds.
        let mut best = vec![vec![f64::INFINITY; batches.len()]; tables.len()];
        for _ in 0..rounds {
            for (bi, &b) in batches.iter().enumerate() {
                for (ti, pool) in pools.iter().enumerate() {
                    acts.quantize(pool.kernels(), &x[..n * b], n, b, &[ActKind::Q8]).expect("quantize");
                    let out = &mut out[..rows * b];
                    matvec(pool, &w, &acts, out).expect("matvec");
                    let t = Instant::now();
                    for _ in 0..32 {
                        matvec(pool, &w, &acts, out).expect("matvec");
                        black_box(&out);
                    }
                    best[ti][bi] = best[ti][bi].min(t.elapsed().as_secs_f64() / 32.0);
                }
            }
        }
        println!("\n{label} [{n},{rows}] {ty}:");
        for (ti, k) in tables.iter().enumerate() {
            let mut line = format!("  {:<12}", k.name());
            for (bi, &b) in batches.iter().enumerate() {
                let (t, t1) = (best[ti][bi], best[ti][0]);
                line += &format!("  b={b} {:7.1} µs (×{:.2} b1", t * 1e6, t / t1);
                if ti > 0 {
                    line += &format!(", ×{:.2} {}", t / best[0][bi], tables[0].name());
                }
                line += ")";
            }
            println!("{line}");
        }
    }
}
