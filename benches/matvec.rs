//! Mat-vec benchmark: weight bytes streamed per second for the SmolLM2-135M shapes at batch sizes
//! 1..16 and 1..2 threads, beside a plain memory-read probe (the roofline).
//!
//! `cargo bench --bench matvec` (optional args: `--threads 1,2,4`, `--batches 1,8`,
//! `--kernels scalar|avx2|neon|neon-dotprod`, `--mib 256`, `--runs 3`). Every cell is the median
//! of `--runs` sweeps, each cell of a sweep the median of 9 timings; `--stat min` takes the
//! fastest instead (and the best probe), the better estimate on a machine busy with other work.
//!
//! Decoding streams every weight of the model once per token, and the model (98 MB for SmolLM2
//! Q4_1) is far larger than the caches, so each matrix comes from DRAM. The benchmark reproduces
//! that: it cycles through enough copies of each matrix (`--mib`, default 256 MiB in total) that
//! none is still cached when it comes round again. "GB/s" is matrix bytes / time per mat-vec; the
//! probe reads a buffer of the same total size with the same thread count. A second table repeats
//! the main case with one copy (cache-hot), which shows the compute ceiling.

use std::hint::black_box;
use std::time::Instant;

use edgespec::kernels::{matvec, physical_cores, ActKind, KernelPool, Kernels, QuantizedActs, WeightMatrix};
use edgespec::quant::{self, GgmlType};

#[path = "common/rng.rs"]
mod rng;
use rng::rng_normal;

struct Args {
    runs: usize,
    threads: Vec<usize>,
    batches: Vec<usize>,
    kernels: &'static Kernels,
    mib: usize,
    /// Take the fastest timing instead of the median (on a machine shared with other work the
    /// fastest is the better estimate of the kernels' own speed).
    min: bool,
}

fn parse_list(s: &str) -> Vec<usize> {
    s.split(',').filter_map(|v| v.trim().parse().ok()).collect()
}

fn args() -> Args {
    let mut a = Args {
        runs: 3,
        threads: vec![1, 2],
        batches: vec![1, 2, 4, 8, 16],
        kernels: Kernels::get(),
        mib: 256,
        min: false,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let val = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--threads" => a.threads = parse_list(&val),
            "--batches" => a.batches = parse_list(&val),
            "--mib" => a.mib = val.parse().unwrap_or(a.mib),
            "--runs" => a.runs = val.parse().unwrap_or(a.runs).max(1),
            "--stat" => a.min = val == "min",
            "--kernels" => a.kernels = Kernels::by_name(&val).unwrap_or_else(|e| panic!("{e}")),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

/// Random blocks of a type the crate cannot quantize to (random quants, every block's leading
/// f16 scale set to 0.01): the kernels' speed does not depend on the values.
fn random_blocks(ty: GgmlType, elems: usize, state: &mut u64) -> Vec<u8> {
    let (bs, ts) = (ty.block_size(), ty.type_size());
    let mut bytes: Vec<u8> = (0..elems / bs * ts).map(|_| (rng_normal(state) * 1e4) as i64 as u8).collect();
    for blk in bytes.chunks_exact_mut(ts) {
        blk[..2].copy_from_slice(&0x211eu16.to_le_bytes());
    }
    bytes
}

/// `copies` back-to-back copies of one random `rows × n` matrix of type `ty`, each starting on a
/// 64-byte boundary (f32 storage keeps the bytes aligned for the block casts).
struct Copies {
    words: Vec<f32>,
    bytes: usize,
    stride: usize,
    copies: usize,
}

impl Copies {
    fn new(ty: GgmlType, rows: usize, n: usize, copies: usize) -> Copies {
        let mut s = 7u64;
        let src: Vec<f32> = (0..rows * n).map(|_| rng_normal(&mut s) * 0.05).collect();
        let mut one = quant::quantize(ty, &src).unwrap_or_else(|_| random_blocks(ty, rows * n, &mut s));
        let bytes = one.len();
        let stride = bytes.div_ceil(64) * 64;
        one.resize(stride, 0);
        let word = |c: &[u8]| f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        let mut words = Vec::with_capacity(stride / 4 * copies);
        for _ in 0..copies {
            words.extend(one.chunks_exact(4).map(word));
        }
        Copies { words, bytes, stride, copies }
    }

    fn get(&self, i: usize) -> &[u8] {
        let all = quant::blocks_as_bytes(&self.words);
        &all[i * self.stride..i * self.stride + self.bytes]
    }
}

/// CPU time this thread has run, in ns (Linux schedstat), if available.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat").ok()?.split_whitespace().next()?.parse().ok()
}

/// Whether timings report the fastest sample and run (`--stat min`) rather than the median.
static USE_MIN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Median (or, with `--stat min`, fastest) of `samples` timings (seconds) of `f`, each sample
/// running `f` `calls` times.
fn time_median(samples: usize, calls: usize, mut f: impl FnMut(usize)) -> f64 {
    let mut k = 0;
    for _ in 0..calls.min(8) {
        f(k);
        k += 1;
    }
    let mut t: Vec<f64> = (0..samples)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..calls {
                f(k);
                k += 1;
            }
            start.elapsed().as_secs_f64() / calls as f64
        })
        .collect();
    t.sort_by(|a, b| a.total_cmp(b));
    if USE_MIN.load(std::sync::atomic::Ordering::Relaxed) {
        t[0]
    } else {
        t[t.len() / 2]
    }
}

/// Read bandwidth of `words` with `threads` threads (each sums its share), GB/s, median of 7.
fn read_bandwidth(words: &[f32], threads: usize) -> f64 {
    let bytes = std::mem::size_of_val(words) as f64;
    let chunk = words.len().div_ceil(threads);
    let secs = time_median(7, 1, |_| {
        std::thread::scope(|s| {
            for part in words.chunks(chunk) {
                s.spawn(move || black_box(sum_words(part)));
            }
        });
    });
    bytes / secs / 1e9
}

/// Bit-sum with eight independent accumulators so the loop is bound by loads, not by latency.
fn sum_words(words: &[f32]) -> u32 {
    let mut acc = [0u32; 8];
    for c in words.chunks_exact(8) {
        for (a, v) in acc.iter_mut().zip(c) {
            *a = a.wrapping_add(v.to_bits());
        }
    }
    acc.iter().fold(0, |a, &b| a.wrapping_add(b))
}

struct Shape {
    label: &'static str,
    ty: GgmlType,
    n: usize,
    rows: usize,
}

const SHAPES: [Shape; 5] = [
    Shape { label: "ffn_gate/up [576,1536]", ty: GgmlType::Q4_1, n: 576, rows: 1536 },
    Shape { label: "ffn_down [1536,576]", ty: GgmlType::Q4_1, n: 1536, rows: 576 },
    Shape { label: "attn_q/o [576,576]", ty: GgmlType::Q4_1, n: 576, rows: 576 },
    Shape { label: "attn_k/v [576,192]", ty: GgmlType::Q4_1, n: 576, rows: 192 },
    Shape { label: "output [576,49152]", ty: GgmlType::Q8_0, n: 576, rows: 49152 },
];

/// Gemma 3 270M Q4_K_M shapes (hidden 640, FFN 2048): only in the compute-cost table.
const GEMMA_SHAPES: [Shape; 3] = [
    Shape { label: "gemma ffn_gate/up [640,2048]", ty: GgmlType::Q5_0, n: 640, rows: 2048 },
    Shape { label: "gemma ffn_down [2048,640]", ty: GgmlType::Q4_K, n: 2048, rows: 640 },
    Shape { label: "gemma ffn_down [2048,640]", ty: GgmlType::Q6_K, n: 2048, rows: 640 },
];

/// L2 size of CPU 0 in bytes, from sysfs (None where unknown).
fn l2_bytes() -> Option<usize> {
    let s = std::fs::read_to_string("/sys/devices/system/cpu/cpu0/cache/index2/size").ok()?;
    let s = s.trim();
    let (num, mul) = match s.strip_suffix('K') {
        Some(n) => (n, 1024),
        None => match s.strip_suffix('M') {
            Some(n) => (n, 1 << 20),
            None => (s, 1),
        },
    };
    num.parse::<usize>().ok().map(|v| v * mul)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if USE_MIN.load(std::sync::atomic::Ordering::Relaxed) {
        // Times: smaller is better. Callers pass bandwidths negated.
        v[0]
    } else {
        v[v.len() / 2]
    }
}

fn main() {
    let args = args();
    USE_MIN.store(args.min, std::sync::atomic::Ordering::Relaxed);
    let kernels = args.kernels;
    println!(
        "kernels: {} (available: {:?}); physical cores: {}; L2 {}; copies cycle through {} MiB; {} runs",
        kernels.name(),
        Kernels::available().iter().map(|k| k.name()).collect::<Vec<_>>(),
        physical_cores(),
        l2_bytes().map(|b| format!("{} KiB", b / 1024)).unwrap_or_else(|| "unknown".into()),
        args.mib,
        args.runs
    );
    let pools: Vec<KernelPool> =
        args.threads.iter().map(|&t| KernelPool::with_kernels(Some(t), kernels).expect("pool")).collect();
    let max_b = args.batches.iter().copied().max().unwrap_or(1);

    // Matrices, each with enough copies to cycle through `mib` MiB.
    let sets: Vec<(&Shape, Copies)> = SHAPES
        .iter()
        .map(|shape| {
            let bytes = shape.ty.row_bytes(shape.n as u64).unwrap_or(0) as usize * shape.rows;
            let copies = (args.mib << 20).div_ceil(bytes).max(2);
            (shape, Copies::new(shape.ty, shape.rows, shape.n, copies))
        })
        .collect();
    let probe = vec![1.0f32; args.mib * (1 << 20) / 4];

    // secs[run][set][thread][batch]; roof[run][thread]. Runs repeat the whole sweep so that a
    // burst of noise on the shared machine hits one run, not one cell.
    let mut secs =
        vec![vec![vec![vec![0f64; args.batches.len()]; args.threads.len()]; sets.len()]; args.runs];
    let mut roof = vec![vec![0f64; args.threads.len()]; args.runs];
    for run in 0..args.runs {
        for (ti, &t) in args.threads.iter().enumerate() {
            roof[run][ti] = read_bandwidth(&probe, t);
        }
        for (si, (shape, mats)) in sets.iter().enumerate() {
            let views: Vec<WeightMatrix<'_>> = (0..mats.copies)
                .map(|i| WeightMatrix::new(shape.ty, mats.get(i), shape.rows, shape.n).expect("matrix"))
                .collect();
            let mut s = 11u64;
            let x: Vec<f32> = (0..shape.n * max_b).map(|_| rng_normal(&mut s)).collect();
            let mut acts = QuantizedActs::with_capacity(shape.n, max_b);
            let mut out = vec![0f32; shape.rows * max_b];
            for (ti, pool) in pools.iter().enumerate() {
                for (bi, &b) in args.batches.iter().enumerate() {
                    acts.quantize(kernels, &x[..shape.n * b], shape.n, b, &[views[0].act_kind()])
                        .expect("quantize");
                    let out = &mut out[..shape.rows * b];
                    let calls = mats.copies.clamp(4, 64);
                    // From one of the pool's workers, as the forward pass calls it (a call from
                    // outside would pay a cross-thread wake-up each time).
                    secs[run][si][ti][bi] = pool.install(|| {
                        time_median(9, calls, |k| {
                            matvec(pool, &views[k % views.len()], &acts, out).expect("matvec");
                        })
                    });
                }
            }
        }
    }
    drop(probe);

    // Bandwidth: larger is better, so negate for `median` (which takes the smallest with --stat min).
    let roof: Vec<f64> =
        (0..args.threads.len()).map(|ti| -median(roof.iter().map(|r| -r[ti]).collect())).collect();
    let stat = if args.min { "best" } else { "median" };
    print!("\nread bandwidth probe ({} MiB, {stat} of runs):", args.mib);
    for (t, r) in args.threads.iter().zip(&roof) {
        print!("  {t} thr {r:.2} GB/s");
    }
    println!("\n");
    println!(
        "| matrix (GGML [n, rows]) | type | MB | thr | {} | b=1 / probe |",
        args.batches.iter().map(|b| format!("b={b} GB/s (×b1)")).collect::<Vec<_>>().join(" | ")
    );
    println!("|---|---|---|---|{}---|", "---|".repeat(args.batches.len()));
    let mut verdicts = Vec::new();
    for (si, (shape, mats)) in sets.iter().enumerate() {
        for (ti, &t) in args.threads.iter().enumerate() {
            let cell: Vec<f64> = (0..args.batches.len())
                .map(|bi| median(secs.iter().map(|r| r[si][ti][bi]).collect()))
                .collect();
            let t1 = args.batches.iter().position(|&b| b == 1).map(|i| cell[i]);
            let cells: Vec<String> = cell
                .iter()
                .map(|&sec| {
                    let ratio = t1.map(|t1| format!(" (×{:.2})", sec / t1)).unwrap_or_default();
                    format!("{:.2}{ratio}", mats.bytes as f64 / sec / 1e9)
                })
                .collect();
            let of_roof = t1.map(|t1| mats.bytes as f64 / t1 / 1e9 / roof[ti]).unwrap_or(f64::NAN);
            println!(
                "| {} | {} | {:.2} | {t} | {} | {:.0}% |",
                shape.label,
                shape.ty,
                mats.bytes as f64 / 1e6,
                cells.join(" | "),
                of_roof * 100.0
            );
            if let (Some(t1), Some(b8)) = (t1, args.batches.iter().position(|&b| b == 8)) {
                if shape.n == 1536 && t == 2 {
                    verdicts.push(format!(
                        "{} {} 2 threads: b=8 costs {:.2}× b=1 (goal ≤ 1.5)",
                        shape.label,
                        shape.ty,
                        cell[b8] / t1
                    ));
                }
            }
            if l2_bytes().is_some_and(|l2| mats.bytes > l2) {
                verdicts.push(format!(
                    "{} {} {t} thr: b=1 streams {:.0}% of the read probe (goal ≥ 70%; matrix larger than L2)",
                    shape.label,
                    shape.ty,
                    of_roof * 100.0
                ));
            }
        }
    }
    println!();
    for v in verdicts {
        println!("{v}");
    }

    // CPU time (this thread's, from /proc/thread-self/schedstat) per mat-vec with one thread and
    // cold weights: the compute cost, which time slices lost to other processes do not inflate.
    // On an idle machine the wall time with t threads is about max(cpu / t, bytes / bandwidth).
    // Besides the SmolLM2 shapes, the Gemma 3 270M Q4_K_M types (Q5_0, Q4_K, Q6_K) are covered.
    if let (Some(pool), Some(_)) = (pools.iter().find(|p| p.threads() == 1), thread_cpu_ns()) {
        let gemma: Vec<(&Shape, Copies)> = GEMMA_SHAPES
            .iter()
            .map(|shape| {
                let bytes = shape.ty.row_bytes(shape.n as u64).unwrap_or(0) as usize * shape.rows;
                let copies = (args.mib << 20).div_ceil(bytes).max(2);
                (shape, Copies::new(shape.ty, shape.rows, shape.n, copies))
            })
            .collect();
        println!(
            "
compute cost, cold weights, 1 thread (CPU time per mat-vec; ns per weight block in brackets):"
        );
        println!(
            "| matrix (GGML [n, rows]) | type | {} |",
            args.batches.iter().map(|b| format!("b={b}")).collect::<Vec<_>>().join(" | ")
        );
        println!("|---|---|{}", "---|".repeat(args.batches.len()));
        for (shape, mats) in sets.iter().chain(&gemma) {
            let views: Vec<WeightMatrix<'_>> = (0..mats.copies)
                .map(|i| WeightMatrix::new(shape.ty, mats.get(i), shape.rows, shape.n).expect("matrix"))
                .collect();
            let mut s = 17u64;
            let x: Vec<f32> = (0..shape.n * max_b).map(|_| rng_normal(&mut s)).collect();
            let mut acts = QuantizedActs::with_capacity(shape.n, max_b);
            let mut out = vec![0f32; shape.rows * max_b];
            let blocks = (shape.rows * shape.n / shape.ty.block_size()) as f64;
            let mut cells = Vec::new();
            for &b in &args.batches {
                acts.quantize(kernels, &x[..shape.n * b], shape.n, b, &[views[0].act_kind()])
                    .expect("quantize");
                let out = &mut out[..shape.rows * b];
                let reps = ((2_000_000_000 / mats.bytes.max(1)) / b).clamp(10, 2000);
                let t0 = thread_cpu_ns().unwrap_or(0);
                for k in 0..reps {
                    matvec(pool, &views[k % views.len()], &acts, out).expect("matvec");
                }
                let ns = (thread_cpu_ns().unwrap_or(0) - t0) as f64 / reps as f64;
                cells.push(format!("{:.1} µs ({:.2})", ns / 1e3, ns / blocks));
            }
            println!("| {} | {} | {} |", shape.label, shape.ty, cells.join(" | "));
        }
    }

    // Cache-hot: the same single copy every call (the compute ceiling, not decoding reality).
    if let Some((shape, mats)) = sets.iter().find(|(s, _)| s.n == 1536) {
        println!("\ncache-hot {} {} (one copy, re-read every call):", shape.label, shape.ty);
        let w = WeightMatrix::new(shape.ty, mats.get(0), shape.rows, shape.n).expect("matrix");
        let mut s = 13u64;
        let x: Vec<f32> = (0..shape.n * max_b).map(|_| rng_normal(&mut s)).collect();
        let mut acts = QuantizedActs::with_capacity(shape.n, max_b);
        let mut out = vec![0f32; shape.rows * max_b];
        for (pool, &t) in pools.iter().zip(&args.threads) {
            let mut line = format!("  {t} thr:");
            let mut t1 = 0.0;
            for &b in &args.batches {
                acts.quantize(kernels, &x[..shape.n * b], shape.n, b, &[ActKind::Q8]).expect("quantize");
                let out = &mut out[..shape.rows * b];
                let secs =
                    pool.install(|| time_median(9, 64, |_| matvec(pool, &w, &acts, out).expect("matvec")));
                if b == 1 {
                    t1 = secs;
                }
                line += &format!("  b={b} {:.1} µs (×{:.2})", secs * 1e6, secs / t1);
            }
            println!("{line}");
        }
        // Quantizing the activations happens once per input vector, shared by all the matrices
        // that read it.
        let mut line = format!("  quantize {} activations:", shape.n);
        for &b in &args.batches {
            let secs = time_median(9, 64, |_| {
                acts.quantize(kernels, &x[..shape.n * b], shape.n, b, &[ActKind::Q8]).expect("quantize")
            });
            line += &format!("  b={b} {:.2} µs", secs * 1e6);
        }
        println!("{line}");
    }
}
