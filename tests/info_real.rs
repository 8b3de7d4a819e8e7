//! The real default model through `info`: the figures the catalog promises, read from the file's
//! metadata and tensor table, without reading (or copying) the weights.

use std::process::Command;

use edgespec::catalog::resolve_model;
use edgespec::gguf::GgufFile;
use edgespec::info::{current_rss_bytes, ModelInfo};
use edgespec::quant::GgmlType;

#[test]
fn smollm2_info_matches_the_model_card() {
    let path = resolve_model("smollm2-135m").expect("pull smollm2-135m");
    let info = ModelInfo::gather(&path, Some(2048)).unwrap();
    let c = &info.config;
    assert_eq!(c.arch, "llama");
    assert_eq!((c.n_layers, c.dim, c.ffn_dim), (30, 576, 1536));
    assert_eq!((c.n_heads, c.n_kv_heads, c.head_dim), (9, 3, 64));
    assert_eq!(c.vocab_size, 49152);
    assert_eq!(info.tokenizer_vocab, 49152);
    assert_eq!(info.tokenizer_model.as_deref(), Some("gpt2"));
    assert!(info.chat_template);
    let counts: Vec<(GgmlType, usize)> = info.tensor_types.iter().map(|t| (t.0, t.1)).collect();
    assert_eq!(counts, vec![(GgmlType::Q4_1, 210), (GgmlType::Q8_0, 1), (GgmlType::F32, 61)]);
    // KV cache at 2048 positions: 30 layers × 2048 × 3 heads × (64 + 64) × 2 bytes.
    assert_eq!(c.kv_cache_bytes(2048), 30 * 2048 * 3 * 128 * 2);
}

#[test]
fn opening_maps_without_reading_the_weights() {
    let path = resolve_model("smollm2-135m").expect("pull smollm2-135m");
    let before = current_rss_bytes().unwrap_or(0);
    let file = GgufFile::open(&path).unwrap();
    let after = current_rss_bytes().unwrap_or(0);
    assert!(file.is_mapped());
    // The file is 98 MB; opening touches the header pages and the vocabulary only.
    let grown = after.saturating_sub(before);
    assert!(grown < 16 << 20, "opening grew RSS by {grown} bytes");
    let base = file.bytes().as_ptr() as usize;
    for t in file.tensors() {
        let p = file.tensor_data(t).as_ptr() as usize;
        assert!(
            p >= base && p + t.n_bytes as usize <= base + file.len() as usize,
            "{} not in the map",
            t.name
        );
    }
}

#[test]
fn the_cli_prints_the_summary() {
    let out = Command::new(env!("CARGO_BIN_EXE_edgespec")).args(["info", "smollm2-135m"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("llama: 30 blocks, embedding 576"), "{text}");
    assert!(text.contains("9 heads / 3 KV heads"), "{text}");
    assert!(text.contains("vocab 49152"), "{text}");
    assert!(text.contains("272: 210 Q4_1 + 1 Q8_0 + 61 F32"), "{text}");

    let out = Command::new(env!("CARGO_BIN_EXE_edgespec")).args(["info", "no-such-model"]).output().unwrap();
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("smollm2-135m"));
}
