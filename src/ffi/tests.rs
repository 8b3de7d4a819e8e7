//! The C ABI's contracts that need no C compiler (tests/c_abi.rs runs the C program): stable
//! codes and ids, the panic boundary, handles that may cross threads.

use std::ffi::CStr;

use super::*;
use crate::error::ErrorKind;

#[test]
fn status_codes_are_the_error_kind_codes() {
    let kinds = [
        ErrorKind::InvalidArgument,
        ErrorKind::Io,
        ErrorKind::Format,
        ErrorKind::Unsupported,
        ErrorKind::NotFound,
        ErrorKind::Network,
        ErrorKind::Checksum,
        ErrorKind::ContextOverflow,
        ErrorKind::OutOfMemory,
        ErrorKind::Cancelled,
        ErrorKind::Internal,
    ];
    for k in kinds {
        let status = EdgespecStatus::from(k);
        assert_eq!(status as i32, k.code(), "{k:?}");
        // SAFETY: a static string.
        let name = unsafe { CStr::from_ptr(edgespec_status_name(status as i32)) };
        assert_eq!(name.to_str().unwrap(), k.name());
    }
    // SAFETY: a static string.
    let ok = unsafe { CStr::from_ptr(edgespec_status_name(0)) };
    assert_eq!(ok.to_str().unwrap(), "ok");
}

#[test]
fn strategy_ids_follow_the_library_list() {
    let named = [
        (EdgespecStrategy::Plain, "plain"),
        (EdgespecStrategy::Lookup, "lookup"),
        (EdgespecStrategy::SelfSpec, "self-spec"),
        (EdgespecStrategy::EarlyExit, "early-exit"),
        (EdgespecStrategy::Lookahead, "lookahead"),
        (EdgespecStrategy::Auto, "auto"),
        (EdgespecStrategy::Heads, "heads"),
        (EdgespecStrategy::Eagle, "eagle"),
    ];
    assert!(edgespec_strategy_count() as usize >= named.len(), "strategies are only ever appended");
    for (id, name) in named {
        let p = edgespec_strategy_name(id as i32);
        // SAFETY: non-null static string (checked by the unwrap of as_ref).
        let got = unsafe { CStr::from_ptr(p.as_ref().map(|r| r as *const _).unwrap()) };
        assert_eq!(got.to_str().unwrap(), name);
        let mut back = -1;
        // SAFETY: valid C string and out pointer.
        let st = unsafe { edgespec_strategy_from_name(got.as_ptr(), &mut back) };
        assert_eq!((st, back), (EdgespecStatus::Ok, id as i32));
        let strategy = strategy_from_id(id as i32).unwrap();
        assert_eq!(edgespec_strategy_is_implemented(id as i32), strategy.is_implemented());
    }
    assert!(edgespec_strategy_name(-1).is_null());
    assert!(edgespec_strategy_name(edgespec_strategy_count()).is_null());
    assert!(!edgespec_strategy_is_implemented(edgespec_strategy_count()));
    let mut id = 0;
    // SAFETY: valid C string and out pointer.
    let st = unsafe { edgespec_strategy_from_name(c"warp".as_ptr(), &mut id) };
    assert_eq!(st, EdgespecStatus::InvalidArgument);
}

#[test]
fn a_panic_becomes_an_internal_status_with_a_message() {
    let st = guard(|| panic!("boom {}", 42));
    assert_eq!(st, EdgespecStatus::Internal);
    // SAFETY: the thread's last-error string.
    let msg = unsafe { CStr::from_ptr(edgespec_last_error()) }.to_str().unwrap().to_string();
    assert!(msg.contains("boom 42"), "{msg}");
    let st = guard(|| Err(crate::Error::not_found("no such thing")));
    assert_eq!(st, EdgespecStatus::NotFound);
    // SAFETY: as above.
    let msg = unsafe { CStr::from_ptr(edgespec_last_error()) }.to_str().unwrap().to_string();
    assert_eq!(msg, "not found: no such thing");
}

#[test]
fn handles_may_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<EdgespecModel>();
    send_sync::<EdgespecSession>();
}

#[test]
fn defaults_are_the_library_defaults() {
    let g = edgespec_generate_params_default().library_params().unwrap();
    assert_eq!(g, crate::session::GenerateParams::default());
    let greedy = edgespec_sampling_params_greedy();
    assert!(greedy.temperature <= 0.0);
    let mut bad = edgespec_generate_params_default();
    bad.sampling.top_p = 0.0;
    assert_eq!(bad.library_params().unwrap_err().kind(), ErrorKind::InvalidArgument);
    bad = edgespec_generate_params_default();
    bad.strategy = 1000;
    assert_eq!(bad.library_params().unwrap_err().kind(), ErrorKind::InvalidArgument);
}

#[test]
fn kv_type_ids_reach_the_session_and_bad_ones_are_refused() {
    use crate::model::synthetic::{self, SyntheticSpec};
    use crate::model::KvType;
    let dir = std::env::temp_dir().join(format!("edgespec-ffi-kv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, spec: &SyntheticSpec| {
        let path = dir.join(name);
        std::fs::write(&path, synthetic::build(spec).unwrap()).unwrap();
        std::ffi::CString::new(path.to_str().unwrap()).unwrap()
    };
    let head32 = write("head32.gguf", &SyntheticSpec { head_dim: 32, ..SyntheticSpec::llama(3) });
    let head16 = write("head16.gguf", &SyntheticSpec::llama(3));
    let load = |path: &std::ffi::CString, kv_type: i32| {
        let p = EdgespecModelParams { n_ctx: 64, kv_type, ..edgespec_model_params_default() };
        let mut model = std::ptr::null_mut();
        // SAFETY: a valid path, params and out pointer.
        let status = unsafe { edgespec_model_load(path.as_ptr(), &p, &mut model) };
        (status, model)
    };
    for (id, ty) in KvType::ALL.iter().enumerate() {
        let (status, model) = load(&head32, id as i32);
        assert_eq!(status, EdgespecStatus::Ok, "{ty}");
        // SAFETY: a live handle from the load above.
        assert_eq!(unsafe { &*model }.options().kv_type, *ty);
        let mut session = std::ptr::null_mut();
        // SAFETY: as above; the out pointer is writable.
        assert_eq!(unsafe { edgespec_session_create(model, &mut session) }, EdgespecStatus::Ok, "{ty}");
        // SAFETY: handles from the calls above, freed once.
        unsafe {
            edgespec_session_free(session);
            edgespec_model_free(model);
        }
    }
    // 16-value heads are not whole Q8_0 blocks: the session cannot be made.
    let (status, model) = load(&head16, 2);
    assert_eq!(status, EdgespecStatus::Ok);
    let mut session = std::ptr::null_mut();
    // SAFETY: a live handle; writable out pointer.
    assert_eq!(unsafe { edgespec_session_create(model, &mut session) }, EdgespecStatus::InvalidArgument);
    assert!(session.is_null());
    // SAFETY: a live handle, freed once.
    unsafe { edgespec_model_free(model) };
    for bad in [-1, 3, 1000] {
        let (status, model) = load(&head32, bad);
        assert_eq!(status, EdgespecStatus::InvalidArgument, "kv_type {bad}");
        assert!(model.is_null());
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A session handle that may cross to the cancelling thread.
struct SendSession(*const EdgespecSession);
// SAFETY: edgespec_cancel may be called from any thread while the session lives.
unsafe impl Send for SendSession {}

#[test]
fn edgespec_cancel_stops_a_long_prefill_between_chunks() {
    use crate::model::synthetic::{self, SyntheticSpec};
    let dir = std::env::temp_dir().join(format!("edgespec-ffi-cancel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("slow.gguf");
    // Slow enough on one thread that thousands of prompt tokens take seconds.
    let spec = SyntheticSpec {
        n_layers: 8,
        dim: 512,
        ffn_dim: 2048,
        n_heads: 8,
        n_kv_heads: 4,
        head_dim: 64,
        context_length: 16384,
        ..SyntheticSpec::llama(7)
    };
    std::fs::write(&path, synthetic::build(&spec).unwrap()).unwrap();
    let cpath = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    let p = EdgespecModelParams { n_ctx: 16384, n_threads: 1, ..edgespec_model_params_default() };
    let (mut model, mut session) = (std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: valid path, params and out pointers.
    assert_eq!(unsafe { edgespec_model_load(cpath.as_ptr(), &p, &mut model) }, EdgespecStatus::Ok);
    // SAFETY: a live model; writable out pointer.
    assert_eq!(unsafe { edgespec_session_create(model, &mut session) }, EdgespecStatus::Ok);

    unsafe extern "C" fn count(_: *const std::ffi::c_char, _: usize, n: *mut std::ffi::c_void) -> bool {
        // SAFETY: `n` is the counter passed below, alive for the call.
        unsafe { *n.cast::<usize>() += 1 };
        true
    }
    let prompt = std::ffi::CString::new("the quick brown fox jumps over the lazy dog. ".repeat(270)).unwrap();
    let mut params = edgespec_generate_params_default();
    params.max_tokens = 4;
    params.sampling = edgespec_sampling_params_greedy();
    let handle = SendSession(session);
    let canceller = std::thread::spawn(move || {
        let h = handle;
        std::thread::sleep(std::time::Duration::from_millis(300));
        // SAFETY: the session outlives this thread (joined before it is freed).
        unsafe { edgespec_cancel(h.0) };
    });
    let mut pieces = 0usize;
    let t0 = std::time::Instant::now();
    // SAFETY: live session, NUL-terminated prompt, valid params; the callback gets our counter.
    let status = unsafe {
        edgespec_generate(session, prompt.as_ptr(), &params, Some(count), (&mut pieces as *mut usize).cast())
    };
    let took = t0.elapsed();
    canceller.join().unwrap();
    assert_eq!(status, EdgespecStatus::Cancelled);
    assert_eq!(pieces, 0, "cancelled before anything was generated");
    assert!(took < std::time::Duration::from_secs(4), "stopped between chunks, not at the end: {took:?}");
    let mut used = u32::MAX;
    // SAFETY: live session; writable out pointer.
    assert_eq!(unsafe { edgespec_session_context_used(session, &mut used) }, EdgespecStatus::Ok);
    assert_eq!(used, 0, "the context is as it was before the call");
    // The session goes on.
    let short = std::ffi::CString::new("hello").unwrap();
    // SAFETY: as above.
    let status = unsafe {
        edgespec_generate(session, short.as_ptr(), &params, Some(count), (&mut pieces as *mut usize).cast())
    };
    assert_eq!(status, EdgespecStatus::Ok);
    // SAFETY: handles from the calls above, freed once.
    unsafe {
        edgespec_session_free(session);
        edgespec_model_free(model);
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn device_ids_reach_the_session_and_the_gpu_writes_the_cpus_text() {
    use crate::model::synthetic::{self, SyntheticSpec};
    let dir = std::env::temp_dir().join(format!("edgespec-ffi-device-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tiny.gguf");
    std::fs::write(&path, synthetic::build(&SyntheticSpec::llama(5)).unwrap()).unwrap();
    let path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    let load = |device: i32| {
        let p = EdgespecModelParams { n_ctx: 64, device, ..edgespec_model_params_default() };
        let mut model = std::ptr::null_mut();
        // SAFETY: a valid path, params and out pointer.
        let status = unsafe { edgespec_model_load(path.as_ptr(), &p, &mut model) };
        (status, model)
    };
    for bad in [-1, 3, 1000] {
        let (status, model) = load(bad);
        assert_eq!(status, EdgespecStatus::InvalidArgument, "device {bad}");
        assert!(model.is_null());
    }
    unsafe extern "C" fn collect(
        piece: *const std::ffi::c_char,
        len: usize,
        out: *mut std::ffi::c_void,
    ) -> bool {
        // SAFETY: `piece` holds `len` bytes and `out` is the Vec passed below, alive for the call.
        unsafe {
            let bytes = std::slice::from_raw_parts(piece.cast::<u8>(), len);
            (*out.cast::<Vec<u8>>()).extend_from_slice(bytes);
        }
        true
    }
    // 12 greedy tokens after a fixed prompt, through the C API.
    let greedy_text = |session: *mut EdgespecSession| -> Vec<u8> {
        let mut params = edgespec_generate_params_default();
        params.max_tokens = 12;
        params.sampling = edgespec_sampling_params_greedy();
        let prompt = std::ffi::CString::new("a b c a b c a b").unwrap();
        let mut text: Vec<u8> = Vec::new();
        // SAFETY: a live session (the caller's), NUL-terminated prompt, valid params; the
        // callback gets our Vec.
        let status = unsafe {
            edgespec_generate(
                session,
                prompt.as_ptr(),
                &params,
                Some(collect),
                (&mut text as *mut Vec<u8>).cast(),
            )
        };
        assert_eq!(status, EdgespecStatus::Ok);
        text
    };
    // Greedy text on the CPU (0), and on the GPU (1) where this machine has an adapter.
    let gpu = cfg!(feature = "gpu") && !crate::info::devices_text().starts_with("no GPU");
    let devices: &[i32] = if gpu { &[0, 1, 2] } else { &[0, 2] };
    let mut texts = Vec::new();
    for &device in devices {
        let (status, model) = load(device);
        assert_eq!(status, EdgespecStatus::Ok, "device {device}");
        let mut session = std::ptr::null_mut();
        // SAFETY: a live handle; writable out pointer.
        assert_eq!(
            unsafe { edgespec_session_create(model, &mut session) },
            EdgespecStatus::Ok,
            "device {device}"
        );
        texts.push(greedy_text(session));
        // SAFETY: handles from the calls above, freed once.
        unsafe {
            edgespec_session_free(session);
            edgespec_model_free(model);
        }
    }
    assert!(!texts[0].is_empty());
    assert!(texts.iter().all(|t| *t == texts[0]), "the devices wrote different text");
    if gpu {
        // Two sessions of one GPU handle share its uploaded weights and still write the same text.
        let (status, model) = load(1);
        assert_eq!(status, EdgespecStatus::Ok);
        let (mut a, mut b) = (std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: a live handle; writable out pointers.
        unsafe {
            assert_eq!(edgespec_session_create(model, &mut a), EdgespecStatus::Ok);
            assert_eq!(edgespec_session_create(model, &mut b), EdgespecStatus::Ok);
        }
        // SAFETY: a live handle; the first session's model shares the handle's GPU copy.
        let handle = unsafe { &*model };
        assert!(handle.model().unwrap().on_gpu());
        for session in [a, b] {
            assert_eq!(greedy_text(session), texts[0], "a session sharing the GPU weights wrote other text");
        }
        // SAFETY: handles from the calls above, freed once.
        unsafe {
            edgespec_session_free(a);
            edgespec_session_free(b);
            edgespec_model_free(model);
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}
