//! The forward pass against a naive one written straight from the equations: every weight
//! dequantized to f64, no batching, no KV cache, no SIMD. The fast pass quantizes activations
//! to 8 bits before each mat-vec (as llama.cpp does), so the two agree closely, not bitwise; a
//! structural mistake (RoPE pairing, head grouping, window, norm placement) shows up as a gross
//! difference.

mod common;

use common::*;
use edgespec::gguf::GgufFile;
use edgespec::model::synthetic::{self, SyntheticSpec};
use edgespec::model::{KvType, ModelConfig};

struct Naive {
    c: ModelConfig,
    file: GgufFile,
}

impl Naive {
    fn t(&self, name: &str) -> Vec<f64> {
        let info = self.file.tensor(name).unwrap_or_else(|| panic!("{name}"));
        let mut out = vec![0f32; info.n_elements as usize];
        edgespec::quant::dequantize(info.ty, self.file.tensor_data(info), &mut out).unwrap();
        out.into_iter().map(f64::from).collect()
    }
    fn opt(&self, name: &str) -> Option<Vec<f64>> {
        self.file.tensor(name).map(|_| self.t(name))
    }
}

/// `w` (rows × n, row-major) · x.
fn matmul(w: &[f64], x: &[f64]) -> Vec<f64> {
    w.chunks_exact(x.len()).map(|r| r.iter().zip(x).map(|(a, b)| a * b).sum()).collect()
}

fn rmsnorm(x: &[f64], w: &[f64], eps: f64) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let s = 1.0 / (ms + eps).sqrt();
    x.iter().zip(w).map(|(v, w)| v * s * w).collect()
}

fn rope(x: &mut [f64], hd: usize, pos: usize, base: f64, neox: bool) {
    for head in x.chunks_exact_mut(hd) {
        for i in 0..hd / 2 {
            let theta = pos as f64 * base.powf(-2.0 * i as f64 / hd as f64);
            let (a, b) = if neox { (i, i + hd / 2) } else { (2 * i, 2 * i + 1) };
            let (x0, x1) = (head[a], head[b]);
            head[a] = x0 * theta.cos() - x1 * theta.sin();
            head[b] = x0 * theta.sin() + x1 * theta.cos();
        }
    }
}

fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
}

fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

/// Logits at every position of `tokens`.
fn naive_logits(n: &Naive, tokens: &[u32]) -> Vec<Vec<f64>> {
    let c = &n.c;
    let gemma = c.arch == "gemma3";
    let (dim, hd, nh, nkv) = (c.dim, c.head_dim, c.n_heads, c.n_kv_heads);
    let eps = c.rms_eps as f64;
    let emb = n.t("token_embd.weight");
    let mut keys: Vec<Vec<Vec<f64>>> = vec![Vec::new(); c.n_layers]; // [layer][pos] (nkv·hd)
    let mut vals: Vec<Vec<Vec<f64>>> = vec![Vec::new(); c.n_layers];
    let mut out = Vec::new();
    for (pos, &tok) in tokens.iter().enumerate() {
        let mut x: Vec<f64> = emb[tok as usize * dim..(tok as usize + 1) * dim].to_vec();
        if gemma {
            x.iter_mut().for_each(|v| *v *= (dim as f64).sqrt());
        }
        for l in 0..c.n_layers {
            let p = |s: &str| format!("blk.{l}.{s}");
            let h = rmsnorm(&x, &n.t(&p("attn_norm.weight")), eps);
            let mut q = matmul(&n.t(&p("attn_q.weight")), &h);
            let mut k = matmul(&n.t(&p("attn_k.weight")), &h);
            let mut v = matmul(&n.t(&p("attn_v.weight")), &h);
            for (buf, b) in [(&mut q, "attn_q.bias"), (&mut k, "attn_k.bias"), (&mut v, "attn_v.bias")] {
                if let Some(b) = n.opt(&p(b)) {
                    buf.iter_mut().zip(b).for_each(|(x, b)| *x += b);
                }
            }
            if let Some(w) = n.opt(&p("attn_q_norm.weight")) {
                q = q.chunks(hd).flat_map(|h| rmsnorm(h, &w, eps)).collect();
                let kw = n.t(&p("attn_k_norm.weight"));
                k = k.chunks(hd).flat_map(|h| rmsnorm(h, &kw, eps)).collect();
            }
            let local = gemma && l % 6 < 5;
            let base = if local { 10_000.0 } else { c.rope_base as f64 };
            let neox = c.arch != "llama";
            rope(&mut q, hd, pos, base, neox);
            rope(&mut k, hd, pos, base, neox);
            keys[l].push(k);
            vals[l].push(v);
            let lo = match (local, c.sliding_window) {
                (true, Some(w)) => (pos + 1).saturating_sub(w),
                _ => 0,
            };
            let mut att = vec![0f64; nh * hd];
            for head in 0..nh {
                let kvh = head / (nh / nkv);
                let qh = &q[head * hd..(head + 1) * hd];
                let scores: Vec<f64> = (lo..=pos)
                    .map(|t| {
                        let kt = &keys[l][t][kvh * hd..(kvh + 1) * hd];
                        qh.iter().zip(kt).map(|(a, b)| a * b).sum::<f64>() / (hd as f64).sqrt()
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for (j, t) in (lo..=pos).enumerate() {
                    let vt = &vals[l][t][kvh * hd..(kvh + 1) * hd];
                    for d in 0..hd {
                        att[head * hd + d] += e[j] / z * vt[d];
                    }
                }
            }
            let mut o = matmul(&n.t(&p("attn_output.weight")), &att);
            if let Some(w) = n.opt(&p("post_attention_norm.weight")) {
                o = rmsnorm(&o, &w, eps);
            }
            x.iter_mut().zip(&o).for_each(|(x, o)| *x += o);
            let h = rmsnorm(&x, &n.t(&p("ffn_norm.weight")), eps);
            let g = matmul(&n.t(&p("ffn_gate.weight")), &h);
            let u = matmul(&n.t(&p("ffn_up.weight")), &h);
            let act: Vec<f64> =
                g.iter().zip(&u).map(|(g, u)| if gemma { gelu(*g) * u } else { silu(*g) * u }).collect();
            let mut d = matmul(&n.t(&p("ffn_down.weight")), &act);
            if let Some(w) = n.opt(&p("post_ffw_norm.weight")) {
                d = rmsnorm(&d, &w, eps);
            }
            x.iter_mut().zip(&d).for_each(|(x, d)| *x += d);
        }
        let h = rmsnorm(&x, &n.t("output_norm.weight"), eps);
        let head = n.opt("output.weight").unwrap_or_else(|| emb.clone());
        out.push(matmul(&head, &h));
    }
    out
}

fn compare(spec: SyntheticSpec, n_tokens: usize) {
    let bytes = synthetic::build(&spec).unwrap();
    let file = GgufFile::from_bytes(bytes.clone()).unwrap();
    let naive = Naive { c: ModelConfig::from_gguf(&file).unwrap(), file };
    let model = tiny(&spec);
    let toks = tokens(n_tokens, model.config().vocab_size, 21);
    let expected = naive_logits(&naive, &toks);
    let (mut ws, mut cache) = session(&model, 2, 64, KvType::F32);
    let got = logits_in_batches(&model, &mut ws, &mut cache, &toks, 5);
    let mut worst = 0f64;
    for (pos, (e, g)) in expected.iter().zip(&got).enumerate() {
        let range = e.iter().cloned().fold(f64::MIN, f64::max) - e.iter().cloned().fold(f64::MAX, f64::min);
        let d = e.iter().zip(g).map(|(a, b)| (a - *b as f64).abs()).fold(0f64, f64::max);
        worst = worst.max(d / range);
        assert!(d < 0.05 * range, "{} position {pos}: max |Δ| {d} of a range {range}", spec.arch);
    }
    eprintln!("{}: worst |Δ|/range {worst:.4}", spec.arch);
}

#[test]
fn llama_matches_the_naive_forward() {
    compare(SyntheticSpec::llama(31), 20);
}

#[test]
fn gemma3_matches_the_naive_forward() {
    // 20 positions with a window of 4: local layers see only the last 4, the global one all.
    compare(SyntheticSpec::gemma3(32), 20);
}

#[test]
fn qwen3_matches_the_naive_forward() {
    let spec = SyntheticSpec { arch: "qwen3", qkv_bias: true, tied: false, ..SyntheticSpec::llama(33) };
    compare(spec, 12);
}

#[test]
fn f32_weights_match_tightly() {
    // With float weights the mat-vecs see f32 activations: only rounding order differs.
    use edgespec::quant::GgmlType::F32;
    let specs = [
        SyntheticSpec::llama(34),
        SyntheticSpec::gemma3(35),
        SyntheticSpec { arch: "qwen3", ..SyntheticSpec::llama(36) },
    ];
    for spec in specs {
        let spec = SyntheticSpec { weight_type: F32, out_type: F32, embed_type: F32, ..spec };
        let bytes = synthetic::build(&spec).unwrap();
        let file = GgufFile::from_bytes(bytes).unwrap();
        let naive = Naive { c: ModelConfig::from_gguf(&file).unwrap(), file };
        let model = tiny(&spec);
        let toks = tokens(10, model.config().vocab_size, 22);
        let expected = naive_logits(&naive, &toks);
        let (mut ws, mut cache) = session(&model, 2, 64, KvType::F32);
        let got = logits_in_batches(&model, &mut ws, &mut cache, &toks, 3);
        for (e, g) in expected.iter().zip(&got) {
            let d = e.iter().zip(g).map(|(a, b)| (a - *b as f64).abs()).fold(0f64, f64::max);
            assert!(d < 1e-3, "{}: max |Δ| {d}", spec.arch);
        }
    }
}
