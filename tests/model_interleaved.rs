//! A model read through row-interleaved copies of its Q8_0 matrices (mapped from the sidecar
//! file next to it, or built in memory) gives bitwise the logits of the plain layout, in every
//! batching; the sidecar is written once, reused, and rewritten when it does not match the model.

mod common;

use std::path::PathBuf;

use common::{assert_bitwise, logits_in_batches, session, tokens};
use edgespec::gguf::GgufFile;
use edgespec::model::synthetic::{self, SyntheticSpec};
use edgespec::model::{KvType, Model};
use edgespec::quant::GgmlType;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgespec-x8-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A llama-shaped model whose every matrix is Q8_0 (so every one has an interleaved form).
fn q8_spec(seed: u64) -> SyntheticSpec {
    let mut spec = SyntheticSpec::llama(seed);
    spec.weight_type = GgmlType::Q8_0;
    spec.out_type = GgmlType::Q8_0;
    spec.tied = false;
    spec
}

fn logits(model: &Model, seq: &[u32], k: usize) -> Vec<Vec<f32>> {
    let (mut ws, mut cache) = session(model, 2, 64, KvType::F16);
    logits_in_batches(model, &mut ws, &mut cache, seq, k)
}

#[test]
fn interleaved_layout_gives_the_plain_logits_bitwise_and_keeps_its_sidecar() {
    let dir = scratch("sidecar");
    let path = dir.join("tiny.gguf");
    std::fs::write(&path, synthetic::build(&q8_spec(3)).unwrap()).unwrap();

    let mut plain = Model::load(&path).unwrap();
    plain.set_interleaved(false).unwrap();
    assert_eq!(plain.interleaved_matrices().0, 0);
    let mut x8 = Model::load(&path).unwrap();
    x8.set_interleaved(true).unwrap();
    let (count, bytes) = x8.interleaved_matrices();
    // Two layers of seven matrices; the head's rows (the vocabulary) are not a multiple of 8, so
    // it keeps the plain layout (a model may mix the two).
    assert_ne!(plain.config().vocab_size % 8, 0);
    assert_eq!(count, 14, "every Q8_0 matrix of whole groups of eight rows interleaved");
    let side = x8.interleaved_sidecar().expect("mapped from a sidecar").to_path_buf();
    assert!(std::fs::metadata(&side).unwrap().len() as usize >= bytes);

    let seq = tokens(23, plain.config().vocab_size, 11);
    let want = logits(&plain, &seq, 1);
    for k in [1, 3, 8, 16] {
        assert_bitwise(&logits(&x8, &seq, k), &want, &format!("interleaved, batches of {k}"));
    }

    // Reused as it is on the next load.
    let written = std::fs::metadata(&side).unwrap().modified().unwrap();
    let mut again = Model::load(&path).unwrap();
    again.set_interleaved(true).unwrap();
    assert_eq!(again.interleaved_sidecar(), Some(side.as_path()));
    assert_eq!(std::fs::metadata(&side).unwrap().modified().unwrap(), written);
    assert_bitwise(&logits(&again, &seq, 5), &want, "interleaved from the reused sidecar");

    // A damaged sidecar is not trusted: rewritten, same logits.
    let mut damaged = std::fs::read(&side).unwrap();
    damaged[20] ^= 0xff;
    std::fs::write(&side, &damaged).unwrap();
    let mut fixed = Model::load(&path).unwrap();
    fixed.set_interleaved(true).unwrap();
    assert_ne!(std::fs::read(&side).unwrap(), damaged, "sidecar rewritten");
    assert_bitwise(&logits(&fixed, &seq, 4), &want, "interleaved after a rewrite");

    // Another model under the same name: its own sidecar, its own logits.
    drop((plain, x8, again, fixed));
    std::fs::write(&path, synthetic::build(&q8_spec(4)).unwrap()).unwrap();
    let mut other_plain = Model::load(&path).unwrap();
    other_plain.set_interleaved(false).unwrap();
    let mut other = Model::load(&path).unwrap();
    other.set_interleaved(true).unwrap();
    assert!(other.interleaved_sidecar().is_some());
    let want = logits(&other_plain, &seq, 1);
    assert_bitwise(&logits(&other, &seq, 8), &want, "a new model behind an old sidecar");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_model_without_a_path_interleaves_in_memory() {
    let bytes = synthetic::build(&q8_spec(5)).unwrap();
    let file = std::sync::Arc::new(GgufFile::from_bytes(bytes).unwrap());
    let mut plain = Model::from_file(file.clone()).unwrap();
    plain.set_interleaved(false).unwrap();
    let mut x8 = Model::from_file(file).unwrap();
    x8.set_interleaved(true).unwrap();
    assert_eq!(x8.interleaved_matrices().0, 14);
    assert!(x8.interleaved_sidecar().is_none());
    let seq = tokens(12, plain.config().vocab_size, 2);
    assert_bitwise(&logits(&x8, &seq, 6), &logits(&plain, &seq, 1), "interleaved in memory");
}
