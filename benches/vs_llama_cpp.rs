//! edgespec beside llama.cpp on the same GGUF file: decode and prefill tokens per second, plus
//! edgespec's peak resident memory. Needs the `llama-cpp` feature:
//!
//! `cargo bench --features llama-cpp --bench vs_llama_cpp -- [--model NAME|PATH] [--threads 2]
//!  [--runs 5] [--decode 128] [--prefill 512] [--kv f16|q8_0]`
//!
//! `--kv` sets both programs' KV cache type (llama.cpp: `type_k`/`type_v`, with flash attention
//! for q8_0, which it needs for quantized values).
//!
//! Both programs run greedy decoding through the same kind of call: feed a prompt, then append
//! the argmax `n` times. llama.cpp is driven through `edgespec::reference` (a fresh context per
//! call), edgespec through its model API (a fresh cache per call). To take context set-up out of
//! the figures, each is measured as a difference of two calls:
//!
//! - decode: time(short prompt, 1 + N tokens) − time(short prompt, 1 token) → N decode steps;
//! - prefill: time(long prompt, 1 token) − time(short prompt, 1 token) → the extra prompt tokens;
//! - decode at a long context: time(long prompt, 1 + N) − time(long prompt, 1).
//!
//! Runs alternate between the two programs (the order flips every run) and the table shows
//! medians, so a noisy neighbour on a shared machine hits both alike. Peak RSS is read before
//! llama.cpp is loaded, so it is edgespec's alone.

use std::time::Instant;

use edgespec::kernels::KernelPool;
use edgespec::model::{ForwardPlan, KvType, Model, Workspace, MAX_BATCH};
use edgespec::reference::LlamaCppModel;
use edgespec::tokenizer::Tokenizer;

struct Args {
    model: String,
    threads: usize,
    runs: usize,
    decode: usize,
    prefill: usize,
    kv: KvType,
}

fn args() -> Args {
    let mut a = Args {
        model: "smollm2-135m".into(),
        threads: 2,
        runs: 5,
        decode: 128,
        prefill: 512,
        kv: KvType::F16,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let val = argv.get(i + 1).cloned().unwrap_or_default();
        let num = || val.parse::<usize>().unwrap_or_else(|_| panic!("{} needs a number", argv[i]));
        match argv[i].as_str() {
            "--model" => a.model = val.clone(),
            "--threads" => a.threads = num(),
            "--runs" => a.runs = num(),
            "--decode" => a.decode = num(),
            "--prefill" => a.prefill = num(),
            "--kv" => a.kv = KvType::from_name(&val).unwrap_or_else(|e| panic!("{e}")),
            _ => {
                i += 1; // `cargo bench` passes `--bench`; ignore what we do not know
                continue;
            }
        }
        i += 2;
    }
    a
}

/// A long prompt of ordinary prose, cut to `n` tokens.
fn long_prompt(tok: &Tokenizer, n: usize) -> Vec<u32> {
    let para = "The history of the city begins with a small settlement on the river, where traders \
                met to exchange grain, salt and cloth. Over the centuries the town grew into a \
                regional centre, with a cathedral, a university and a busy port. Its citizens \
                built bridges, paved the streets and wrote down their laws, and travellers \
                described the markets, the music and the food in long letters home. ";
    let mut ids = tok.encode(&para.repeat(n / 40 + 2), true, false);
    ids.truncate(n);
    ids
}

struct Ours<'a> {
    model: &'a Model,
    ws: Workspace,
    kv: KvType,
}

impl Ours<'_> {
    /// Fresh cache, prefill, then `n` argmax tokens; seconds.
    fn greedy(&mut self, prompt: &[u32], n: usize, ctx: usize) -> f64 {
        let t = Instant::now();
        let mut cache = self.model.new_cache(ctx, self.kv).unwrap();
        let logits = self.model.prefill(&mut self.ws, &mut cache, prompt, 0, MAX_BATCH).unwrap();
        let mut next = edgespec::sampling::argmax(logits).unwrap();
        for _ in 1..n {
            let pos = cache.len();
            let l = self.model.forward(&mut self.ws, &mut cache, &[next], &ForwardPlan::at(pos)).unwrap();
            next = edgespec::sampling::argmax(l).unwrap();
        }
        std::hint::black_box(next);
        t.elapsed().as_secs_f64()
    }
}

fn llama_greedy(m: &LlamaCppModel, prompt: &[u32], n: usize) -> f64 {
    let t = Instant::now();
    std::hint::black_box(m.greedy(prompt, n).unwrap());
    t.elapsed().as_secs_f64()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let a = args();
    let path = edgespec::catalog::resolve_model(&a.model).unwrap();
    let model = Model::load(&path).unwrap();
    let tok = Tokenizer::from_gguf(model.file()).unwrap();
    let short = tok.encode("The capital of France is", true, false);
    let long = long_prompt(&tok, a.prefill);
    let ctx = (a.prefill + a.decode + 16).max(short.len() + a.decode + 1);
    let pool = KernelPool::new(Some(a.threads)).unwrap();
    let mut ours = Ours { ws: Workspace::new(&model, pool, ctx).unwrap(), model: &model, kv: a.kv };

    // edgespec alone first: warm the page cache and read the peak RSS before llama.cpp loads.
    ours.greedy(&long, 1, ctx);
    ours.greedy(&short, a.decode + 1, ctx);
    let rss = edgespec::session::peak_rss_bytes().unwrap_or(0);
    let file = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let kv = model.new_cache(ctx, a.kv).unwrap().bytes() as u64;

    let llama = LlamaCppModel::load(&path, a.threads, ctx as u32).unwrap().with_kv_type(a.kv);
    llama_greedy(&llama, &short, 2);

    let (mut od, mut op, mut ld, mut lp) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut odl, mut ldl) = (Vec::new(), Vec::new());
    for run in 0..a.runs {
        let mut measure_ours = || {
            let base = ours.greedy(&short, 1, ctx);
            od.push(a.decode as f64 / (ours.greedy(&short, a.decode + 1, ctx) - base));
            let long_base = ours.greedy(&long, 1, ctx);
            op.push((long.len() - short.len()) as f64 / (long_base - base));
            odl.push(a.decode as f64 / (ours.greedy(&long, a.decode + 1, ctx) - long_base));
        };
        let mut measure_llama = || {
            let base = llama_greedy(&llama, &short, 1);
            ld.push(a.decode as f64 / (llama_greedy(&llama, &short, a.decode + 1) - base));
            let long_base = llama_greedy(&llama, &long, 1);
            lp.push((long.len() - short.len()) as f64 / (long_base - base));
            ldl.push(a.decode as f64 / (llama_greedy(&llama, &long, a.decode + 1) - long_base));
        };
        if run % 2 == 0 {
            measure_ours();
            measure_llama();
        } else {
            measure_llama();
            measure_ours();
        }
        eprintln!(
            "run {run}: decode {:.1} vs {:.1} tok/s, prefill {:.1} vs {:.1} tok/s, decode at {} {:.1} vs {:.1} \
             tok/s (edgespec vs llama.cpp)",
            od[run],
            ld[run],
            op[run],
            lp[run],
            long.len(),
            odl[run],
            ldl[run]
        );
    }
    let (od, ld, op, lp) = (median(&mut od), median(&mut ld), median(&mut op), median(&mut lp));
    let (odl, ldl) = (median(&mut odl), median(&mut ldl));
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "model {} ({:.1} MiB), {} threads, kernels {}, {} KV caches, {} runs (medians)",
        path.display(),
        mib(file),
        a.threads,
        edgespec::kernels::Kernels::get().name(),
        a.kv,
        a.runs
    );
    println!();
    println!("| | edgespec | llama.cpp | ratio |");
    println!("|---|---:|---:|---:|");
    println!(
        "| decode tok/s ({} tokens after a {}-token prompt) | {od:.1} | {ld:.1} | {:.2}× |",
        a.decode,
        short.len(),
        od / ld
    );
    println!("| prefill tok/s ({}-token prompt) | {op:.1} | {lp:.1} | {:.2}× |", long.len(), op / lp);
    println!(
        "| decode tok/s ({} tokens after the {}-token prompt) | {odl:.1} | {ldl:.1} | {:.2}× |",
        a.decode,
        long.len(),
        odl / ldl
    );
    println!();
    println!(
        "edgespec peak RSS {:.1} MiB; budget file + KV cache (ctx {ctx}) + 64 MiB = {:.1} MiB: {}",
        mib(rss),
        mib(file + kv + (64 << 20)),
        if rss <= file + kv + (64 << 20) { "within" } else { "OVER" }
    );
}
