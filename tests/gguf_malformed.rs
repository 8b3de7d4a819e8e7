//! The malformed-GGUF corpus: every damaged file must give a clear `Format`/`Unsupported` error,
//! never a panic, and parsing must never allocate much more than the file itself, whatever lengths
//! the file claims.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use edgespec::gguf::{GgufFile, GgufWriter, MetaValue};
use edgespec::quant::GgmlType;
use edgespec::ErrorKind;

/// Counts live and peak heap bytes per thread, so each case measures only its own parse.
struct CountingAlloc;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let _ = LIVE.try_with(|l| {
                l.set(l.get() + layout.size());
                let _ = PEAK.try_with(|pk| pk.set(pk.get().max(l.get())));
            });
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        let _ = LIVE.try_with(|l| l.set(l.get().saturating_sub(layout.size())));
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Parse `bytes`, touching every value and tensor like a loader would; return the result and the
/// peak number of heap bytes the parse added (the input buffer itself excluded).
fn parse(bytes: &[u8]) -> (Result<(), edgespec::Error>, usize) {
    let input = bytes.to_vec();
    let base = LIVE.with(|l| l.get());
    PEAK.with(|p| p.set(base));
    let result = std::panic::catch_unwind(|| {
        let f = GgufFile::from_bytes(input)?;
        for (_, v) in f.metadata() {
            if let Some(a) = v.as_array() {
                for item in a.iter() {
                    item?;
                }
            }
        }
        for t in f.tensors() {
            assert_eq!(f.tensor_data(t).len() as u64, t.n_bytes);
        }
        Ok(())
    });
    let peak = PEAK.with(|p| p.get()) - base;
    match result {
        Ok(r) => (r, peak),
        Err(_) => panic!("the parser panicked"),
    }
}

/// Assert that `bytes` fails with `kind` and a message containing `needle`, within the memory cap.
#[track_caller]
fn assert_rejects(bytes: &[u8], kind: ErrorKind, needle: &str) {
    let (r, peak) = parse(bytes);
    let err = r.expect_err("malformed file was accepted");
    assert_eq!(err.kind(), kind, "wrong kind for: {err}");
    assert!(err.to_string().contains(needle), "message {:?} lacks {needle:?}", err.to_string());
    assert_alloc_bounded(bytes.len(), peak);
}

fn assert_alloc_bounded(file_len: usize, peak: usize) {
    // The index holds a few small maps and the names it parsed: never more than the file (plus a
    // small constant for the empty maps' first buckets).
    assert!(peak <= file_len + 4096, "parse allocated {peak} bytes for a {file_len}-byte file");
}

/// A small valid file: metadata of several kinds and two tensors.
fn valid() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.kv("general.architecture", "llama")
        .kv("llama.block_count", 1u32)
        .kv("tokenizer.ggml.tokens", MetaValue::strings(["a", "b", "c"]))
        .kv("tokenizer.ggml.scores", MetaValue::f32s([0.0, 1.0, 2.0]));
    w.tensor_f32("t0", &[4, 2], &[0.0; 8]).unwrap();
    w.tensor("t1", &[32], GgmlType::Q8_0, vec![1; 34]).unwrap();
    w.to_bytes().unwrap()
}

/// Raw little-endian builder for hand-made headers.
#[derive(Default)]
struct Raw(Vec<u8>);

impl Raw {
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Raw {
        let mut r = Raw::default();
        r.bytes(b"GGUF").u32(version).u64(n_tensors).u64(n_kv);
        r
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64).bytes(s.as_bytes())
    }
    fn kv_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.str(key).u32(4).u32(v)
    }
    fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(ty).u64(offset)
    }
    /// Pad to 32 bytes and append `n` zero bytes of tensor data.
    fn data(&mut self, n: usize) -> Vec<u8> {
        let mut v = self.0.clone();
        v.resize(v.len().next_multiple_of(32) + n, 0);
        v
    }
}

#[test]
fn the_valid_file_parses() {
    let (r, peak) = parse(&valid());
    r.unwrap();
    assert_alloc_bounded(valid().len(), peak);
}

#[test]
fn truncation_at_every_offset_is_an_error() {
    let bytes = valid();
    let f = GgufFile::from_bytes(bytes.clone()).unwrap();
    let end_of_data =
        f.tensors().iter().map(|t| f.data_offset() + t.offset + t.n_bytes).max().unwrap() as usize;
    for cut in 0..end_of_data {
        let (r, peak) = parse(&bytes[..cut]);
        let err = r.expect_err(&format!("truncated at {cut} was accepted"));
        assert_eq!(err.kind(), ErrorKind::Format, "cut {cut}: {err}");
        assert_alloc_bounded(cut, peak);
    }
    // Only the trailing padding after the last tensor may be missing.
    for cut in end_of_data..=bytes.len() {
        parse(&bytes[..cut]).0.unwrap();
    }
}

#[test]
fn bad_magic_and_versions() {
    let mut b = valid();
    b[0] = b'X';
    assert_rejects(&b, ErrorKind::Format, "not a GGUF file");
    assert_rejects(b"GG", ErrorKind::Format, "not a GGUF file");
    for (v, kind, needle) in [
        (0u32, ErrorKind::Unsupported, "unknown GGUF version 0"),
        (1, ErrorKind::Unsupported, "version 1"),
        (4, ErrorKind::Unsupported, "unknown GGUF version 4"),
        (3u32.swap_bytes(), ErrorKind::Unsupported, "big-endian"),
    ] {
        let mut b = valid();
        b[4..8].copy_from_slice(&v.to_le_bytes());
        assert_rejects(&b, kind, needle);
    }
}

#[test]
fn huge_counts_and_lengths() {
    let huge = 1u64 << 40;
    assert_rejects(&Raw::header(3, huge, 0).data(0), ErrorKind::Format, "tensors");
    assert_rejects(&Raw::header(3, 0, huge).data(0), ErrorKind::Format, "metadata entries");
    // A key of 2^40 bytes.
    let mut r = Raw::header(3, 0, 1);
    r.u64(huge).bytes(b"abc");
    assert_rejects(&r.0, ErrorKind::Format, "limit");
    // A key just under the cap but longer than the file.
    let mut r = Raw::header(3, 0, 1);
    r.u64(1000).bytes(&[b'a'; 64]);
    assert_rejects(&r.0, ErrorKind::Format, "truncated");
    // A string value of 2^40 bytes.
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(8).u64(huge);
    assert_rejects(&r.0, ErrorKind::Format, "limit");
    // Arrays of 2^40 u8, strings and arrays.
    for elem in [0u32, 8, 9] {
        let mut r = Raw::header(3, 0, 1);
        r.str("k").u32(9).u32(elem).u64(huge).bytes(&[0; 64]);
        assert_rejects(&r.0, ErrorKind::Format, "elements");
    }
    // A tensor name of 2^40 bytes.
    let mut r = Raw::header(3, 1, 0);
    r.u64(huge);
    assert_rejects(&r.data(64), ErrorKind::Format, "tensor name");
}

#[test]
fn bad_metadata_values() {
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(13).u32(0);
    assert_rejects(&r.0, ErrorKind::Format, "unknown metadata value type 13");
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(9).u32(77).u64(1);
    assert_rejects(&r.0, ErrorKind::Format, "unknown metadata value type 77");
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(7).bytes(&[2]);
    assert_rejects(&r.0, ErrorKind::Format, "bool");
    let mut r = Raw::header(3, 0, 1);
    r.u64(2).bytes(&[0xff, 0xfe]).u32(4).u32(1);
    assert_rejects(&r.0, ErrorKind::Format, "not UTF-8");
    let mut r = Raw::header(3, 0, 2);
    r.kv_u32("k", 1).kv_u32("k", 2);
    assert_rejects(&r.0, ErrorKind::Format, "duplicate metadata key");
    // Arrays nested deeper than the cap.
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(9);
    for _ in 0..10 {
        r.u32(9).u64(1);
    }
    r.bytes(&[0; 64]);
    assert_rejects(&r.0, ErrorKind::Format, "nested");
    for bad in [0u32, 3, 1 << 30] {
        let mut r = Raw::header(3, 0, 1);
        r.kv_u32("general.alignment", bad);
        assert_rejects(&r.0, ErrorKind::Format, "alignment");
    }
}

#[test]
fn bad_tensors() {
    let one = |dims: &[u64], ty: u32, offset: u64, data: usize| {
        let mut r = Raw::header(3, 1, 0);
        r.tensor("w", dims, ty, offset);
        r.data(data)
    };
    assert_rejects(&one(&[4], 4, 0, 64), ErrorKind::Format, "unknown tensor type id 4");
    assert_rejects(&one(&[4], 99, 0, 64), ErrorKind::Format, "unknown tensor type id 99");
    assert_rejects(&one(&[4, 0], 0, 0, 64), ErrorKind::Format, "zero dimension");
    assert_rejects(&one(&[], 0, 0, 64), ErrorKind::Format, "0 dimensions");
    assert_rejects(&one(&[1, 1, 1, 1, 1], 0, 0, 64), ErrorKind::Format, "5 dimensions");
    assert_rejects(&one(&[1 << 32, 1 << 32], 0, 0, 64), ErrorKind::Format, "overflow");
    assert_rejects(&one(&[1 << 62, 2], 0, 0, 64), ErrorKind::Format, "overflow");
    // Elements fit in u64 but bytes do not.
    assert_rejects(&one(&[1 << 62], 0, 0, 64), ErrorKind::Format, "overflow");
    assert_rejects(&one(&[33], 2, 0, 64), ErrorKind::Format, "block size");
    assert_rejects(&one(&[16], 0, 0, 63), ErrorKind::Format, "past the end");
    assert_rejects(&one(&[4], 0, 1 << 40, 64), ErrorKind::Format, "past the end");
    assert_rejects(&one(&[4], 0, u64::MAX - 30, 64), ErrorKind::Format, "alignment");
    assert_rejects(&one(&[4], 0, !31u64, 64), ErrorKind::Format, "past the end");
    assert_rejects(&one(&[4], 0, 8, 64), ErrorKind::Format, "multiple of the alignment");
    one(&[16], 0, 0, 64).as_slice().pipe_ok();

    // Overlapping and duplicate tensors.
    let mut r = Raw::header(3, 2, 0);
    r.tensor("a", &[16], 0, 0).tensor("b", &[8], 0, 32);
    assert_rejects(&r.data(128), ErrorKind::Format, "overlap");
    let mut r = Raw::header(3, 2, 0);
    r.tensor("a", &[8], 0, 0).tensor("a", &[8], 0, 32);
    assert_rejects(&r.data(128), ErrorKind::Format, "duplicate tensor name");
    let mut r = Raw::header(3, 2, 0);
    r.tensor("a", &[8], 0, 0).tensor("b", &[8], 0, 32);
    r.data(64).as_slice().pipe_ok();
}

trait PipeOk {
    fn pipe_ok(&self);
}

impl PipeOk for &[u8] {
    #[track_caller]
    fn pipe_ok(&self) {
        let (r, _) = parse(self);
        r.expect("valid file rejected");
    }
}

#[test]
fn every_single_byte_corruption_is_handled() {
    // Flip each header/metadata/tensor-info byte to a few values: each result is Ok or an Error,
    // never a panic, and never a large allocation.
    let bytes = valid();
    let f = GgufFile::from_bytes(bytes.clone()).unwrap();
    for i in 0..f.data_offset() as usize {
        for v in [0x00, 0xff, 0x80, 0x01, bytes[i] ^ 0x10] {
            let mut b = bytes.clone();
            b[i] = v;
            let (_, peak) = parse(&b);
            assert_alloc_bounded(b.len(), peak);
        }
    }
}
