//! Invariant 2 (docs/architecture.md): no allocation per token. A counting allocator shows that,
//! once a session is set up, decoding more tokens does not allocate more.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use edgespec::model::synthetic::SyntheticSpec;
use edgespec::model::{ForwardPlan, KvType, LogitRows};
use edgespec::sampling::SamplingParams;
use edgespec::session::{Flow, GenerateParams, Session, SessionOptions};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The counter is process-wide: the tests take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn forward_passes_do_not_allocate() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for spec in [SyntheticSpec::llama(1), SyntheticSpec::gemma3(1)] {
        let model = tiny(&spec);
        let (mut ws, mut cache) = session(&model, 2, 128, KvType::F16);
        let toks = tokens(40, model.config().vocab_size, 3);
        // Warm up, and give the pool's threads time to finish starting (a starting thread
        // allocates its name and stack guard, once).
        model.forward(&mut ws, &mut cache, &toks[..4], &ForwardPlan::at(0)).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let before = ALLOCS.load(Ordering::SeqCst);
        for (i, chunk) in toks[4..].chunks(3).enumerate() {
            let plan = ForwardPlan::at(4 + 3 * i).logits(LogitRows::All);
            model.forward(&mut ws, &mut cache, chunk, &plan).unwrap();
        }
        let after = ALLOCS.load(Ordering::SeqCst);
        assert_eq!(after - before, 0, "{}: {} allocations in 12 passes", spec.arch, after - before);
    }
}

#[test]
fn generating_more_tokens_does_not_allocate_more() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bytes = edgespec::model::synthetic::build(&SyntheticSpec::llama(2)).unwrap();
    let file = std::sync::Arc::new(edgespec::gguf::GgufFile::from_bytes(bytes).unwrap());
    let opts = SessionOptions { threads: Some(2), ctx: Some(256), ..Default::default() };
    let count = |n: usize| {
        let model = edgespec::model::Model::from_file(file.clone()).unwrap();
        let mut s = Session::new(model, &opts).unwrap();
        let p = GenerateParams {
            max_tokens: 1,
            sampling: SamplingParams { seed: 1, ..Default::default() },
            ..Default::default()
        };
        s.generate("warm up", &p, &mut |_| Flow::Continue).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let p = GenerateParams {
            max_tokens: n,
            sampling: SamplingParams { seed: 1, top_k: 0, ..Default::default() },
            ..Default::default()
        };
        let before = ALLOCS.load(Ordering::SeqCst);
        let st = s.generate("abc", &p, &mut |_| Flow::Continue).unwrap();
        (ALLOCS.load(Ordering::SeqCst) - before, st.generated_tokens)
    };
    let (few, n_few) = count(5);
    let (many, n_many) = count(60);
    assert!(n_many > n_few + 20, "the model stopped early ({n_many} tokens)");
    assert_eq!(many, few, "{few} allocations for {n_few} tokens, {many} for {n_many}");
}
