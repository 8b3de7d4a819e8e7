//! Measures tokenizer load and encode/decode speed on a real model (run in release):
//!
//! ```text
//! cargo run --release --example tokenizer_speed -- MODEL.gguf [N_TOKENS]
//! ```
//!
//! The prompt is built from the test corpus's long passage, repeated and cut to about N tokens
//! (default 512); each figure is the median of many runs.

use std::time::{Duration, Instant};

use edgespec::gguf::GgufFile;
use edgespec::tokenizer::Tokenizer;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> edgespec::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: tokenizer_speed MODEL.gguf [N_TOKENS]");
    let n_tokens: usize = args.next().map(|s| s.parse().expect("N_TOKENS")).unwrap_or(512);

    let t0 = Instant::now();
    let file = GgufFile::open(&path)?;
    let t_open = t0.elapsed();
    let loads: Vec<Duration> = (0..5)
        .map(|_| {
            let t = Instant::now();
            let tok = Tokenizer::from_gguf(&file).expect("tokenizer");
            std::hint::black_box(&tok);
            t.elapsed()
        })
        .collect();
    let tok = Tokenizer::from_gguf(&file)?;

    let corpus: Vec<String> =
        serde_json::from_str(include_str!("../tests/data/tokenizer_corpus.json")).expect("corpus");
    let passage = corpus.iter().max_by_key(|s| s.len()).expect("corpus is not empty");
    let mut prompt = String::new();
    while tok.encode(&prompt, false, true).len() < n_tokens {
        prompt.push_str(passage);
    }
    // Cut to about n_tokens by decoding the first n_tokens tokens.
    let ids = tok.encode(&prompt, false, true);
    let prompt = tok.decode(&ids[..n_tokens.min(ids.len())], true)?;
    let ids = tok.encode(&prompt, false, true);

    let runs = 2000;
    let encode = median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(tok.encode(std::hint::black_box(&prompt), false, true));
                t.elapsed()
            })
            .collect(),
    );
    let decode = median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(tok.decode(std::hint::black_box(&ids), false).expect("decode"));
                t.elapsed()
            })
            .collect(),
    );
    println!("model            {path}");
    println!("vocabulary       {} tokens ({:?})", tok.n_vocab(), tok.kind());
    println!("open (mmap)      {:.2} ms", t_open.as_secs_f64() * 1e3);
    println!("tokenizer load   {:.2} ms (median of 5)", median(loads).as_secs_f64() * 1e3);
    println!("prompt           {} bytes, {} tokens", prompt.len(), ids.len());
    println!(
        "encode           {:.1} µs ({:.0} ns/token, median of {runs})",
        encode.as_secs_f64() * 1e6,
        encode.as_secs_f64() * 1e9 / ids.len() as f64
    );
    println!("decode           {:.1} µs (median of {runs})", decode.as_secs_f64() * 1e6);
    Ok(())
}
