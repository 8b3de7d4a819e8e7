//! Round-trip tests: what the writer writes, the reader reads back exactly.

use super::*;
use crate::quant::GgmlType;

fn sample() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.kv("general.architecture", "llama")
        .kv("llama.block_count", 2u32)
        .kv("x.f32", 0.5f32)
        .kv("x.bool", true)
        .kv("x.i64", MetaValue::I64(-7))
        .kv("x.u8", MetaValue::U8(200))
        .kv("x.f64", MetaValue::F64(1.25))
        .kv("tokenizer.ggml.tokens", MetaValue::strings(["a", "bé", "<s>", ""]))
        .kv("tokenizer.ggml.scores", MetaValue::f32s([0.0, -1.5, 2.0, 3.0]))
        .kv(
            "x.nested",
            MetaValue::Array(ValueType::Array, vec![MetaValue::i32s([1, 2]), MetaValue::i32s([-3])]),
        );
    w.tensor_f32("a", &[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    w.tensor("b", &[64], GgmlType::Q4_1, vec![7u8; 40]).unwrap();
    w
}

#[test]
fn round_trip_metadata_and_tensors() {
    let bytes = sample().to_bytes().unwrap();
    let f = GgufFile::from_bytes(bytes).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.get_str("general.architecture").unwrap(), Some("llama"));
    assert_eq!(f.get_u64("llama.block_count").unwrap(), Some(2));
    assert_eq!(f.get_f32("x.f32").unwrap(), Some(0.5));
    assert_eq!(f.get_bool("x.bool").unwrap(), Some(true));
    assert_eq!(f.get("x.i64").and_then(|v| v.as_i64()), Some(-7));
    assert_eq!(f.get("x.u8"), Some(Value::U8(200)));
    assert_eq!(f.get("x.f64"), Some(Value::F64(1.25)));
    let toks = f.get_array("tokenizer.ggml.tokens").unwrap().unwrap();
    assert_eq!(toks.strings().unwrap(), vec!["a", "bé", "<s>", ""]);
    assert_eq!(
        f.get_array("tokenizer.ggml.scores").unwrap().unwrap().f32s().unwrap(),
        vec![0.0, -1.5, 2.0, 3.0]
    );
    let nested = f.get_array("x.nested").unwrap().unwrap();
    let inner: Vec<Vec<i64>> =
        nested.iter().map(|v| v.unwrap().as_array().unwrap().ints().unwrap()).collect();
    assert_eq!(inner, vec![vec![1, 2], vec![-3]]);
    // Wrong types are errors, missing keys are None.
    assert!(f.get_str("llama.block_count").is_err());
    assert_eq!(f.get_u64("missing").unwrap(), None);
    assert!(toks.f32s().is_err());

    let a = f.require_tensor("a").unwrap();
    assert_eq!(a.shape(), &[3, 2]);
    assert_eq!(a.ty, GgmlType::F32);
    let vals: Vec<f32> =
        f.tensor_data(a).chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(vals, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let b = f.tensor("b").unwrap();
    assert_eq!(b.n_bytes, 40);
    assert_eq!(b.offset % 32, 0);
    assert_eq!(f.tensor_data(b), &[7u8; 40][..]);
    assert!(f.require_tensor("c").is_err());
    assert_eq!(f.data_offset() % 32, 0);
}

#[test]
fn custom_alignment_is_written_and_honoured() {
    let w = sample().alignment(64).unwrap();
    let f = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
    assert_eq!(f.alignment(), 64);
    assert_eq!(f.get_u64("general.alignment").unwrap(), Some(64));
    for t in f.tensors() {
        assert_eq!((f.data_offset() + t.offset) % 64, 0);
    }
}

#[test]
fn writer_rejects_inconsistent_tensors() {
    let mut w = GgufWriter::new();
    assert!(w.tensor("x", &[33], GgmlType::Q4_0, vec![0; 18]).is_err());
    assert!(w.tensor("x", &[32], GgmlType::Q4_0, vec![0; 17]).is_err());
    assert!(w.tensor("x", &[0], GgmlType::F32, vec![]).is_err());
    assert!(w.tensor("x", &[32], GgmlType::Q4_0, vec![0; 18]).is_ok());
    assert!(w.tensor("x", &[32], GgmlType::Q4_0, vec![0; 18]).is_err());
    let mut w = GgufWriter::new();
    w.kv("bad", MetaValue::Array(ValueType::U32, vec![MetaValue::F32(1.0)]));
    assert!(w.to_bytes().is_err());
}

#[test]
fn open_maps_the_file() {
    let dir = std::env::temp_dir().join(format!("edgespec-gguf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.gguf");
    sample().write_file(&path).unwrap();
    let f = GgufFile::open(&path).unwrap();
    assert!(f.is_mapped());
    assert_eq!(f.tensors().len(), 2);
    let data = f.tensor_data(f.tensor("b").unwrap());
    // Zero copy: the tensor's bytes point into the map.
    let base = f.bytes().as_ptr() as usize;
    assert!(data.as_ptr() as usize >= base && (data.as_ptr() as usize) < base + f.bytes().len());
    std::fs::remove_dir_all(&dir).unwrap();
}
