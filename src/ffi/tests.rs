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
