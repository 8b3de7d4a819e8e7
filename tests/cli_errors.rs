//! Bad input and rough edges through the `edgespec` binary, as a user meets them: every bad value
//! a clear error with a non-zero exit (never a panic or an abort), warnings said once on stderr,
//! Ctrl-C stopping `run` during prefill and during decoding with exit code 130, and
//! `--mem-budget` choosing what fits or refusing with the budget that would.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use edgespec::model::synthetic::{self, SyntheticSpec};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("edgespec-clierr-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn model_file(name: &str, spec: &SyntheticSpec) -> PathBuf {
    let path = dir(name).join("tiny.gguf");
    std::fs::write(&path, synthetic::build(spec).unwrap()).unwrap();
    path
}

fn tiny(name: &str) -> PathBuf {
    model_file(name, &SyntheticSpec::llama(42))
}

/// A model slow enough on one thread that a long prompt's prefill and a long generation take
/// seconds (about 20 MB of weights), trained for a long context.
fn slow(name: &str) -> PathBuf {
    model_file(
        name,
        &SyntheticSpec {
            n_layers: 8,
            dim: 512,
            ffn_dim: 2048,
            n_heads: 8,
            n_kv_heads: 4,
            head_dim: 64,
            context_length: 16384,
            ..SyntheticSpec::llama(7)
        },
    )
}

fn edgespec() -> Command {
    Command::new(env!("CARGO_BIN_EXE_edgespec"))
}

fn run(model: &Path, args: &[&str]) -> Output {
    edgespec().arg("run").arg("-m").arg(model).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Neither a panic nor an abort: an error message and the given exit code.
fn assert_error(o: &Output, code: i32, says: &str) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(code), "{e}");
    assert!(e.contains(says), "expected `{says}` in: {e}");
    assert!(!e.contains("panicked") && !e.contains("memory allocation"), "{e}");
}

#[test]
fn huge_and_zero_contexts_are_errors() {
    let m = tiny("ctx");
    for ctx in ["1000000000000", "18446744073709551615"] {
        // 9: out of memory (the kind's code).
        assert_error(&run(&m, &["-p", "hi", "-n", "2", "--ctx", ctx]), 9, "tokens");
        let o = edgespec().args(["info", m.to_str().unwrap(), "--ctx", ctx]).output().unwrap();
        if ctx.len() > 15 {
            assert_error(&o, 9, "more memory than can be counted");
        } else {
            // A countable context: the figure, and that a session would be refused.
            assert!(o.status.success(), "{}", stderr(&o));
            assert!(String::from_utf8_lossy(&o.stdout).contains("a session would be refused"));
        }
        let mut child = edgespec()
            .args(["chat", "-m", m.to_str().unwrap(), "--ctx", ctx])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdin.take());
        assert_error(&child.wait_with_output().unwrap(), 9, "tokens");
    }
    assert_error(&run(&m, &["-p", "hi", "--ctx", "0"]), 1, "at least 1");
    let o = edgespec().args(["info", m.to_str().unwrap(), "--ctx", "0"]).output().unwrap();
    assert_error(&o, 1, "at least 1");
}

#[test]
fn bad_flags_are_refused_and_odd_ones_said() {
    let m = tiny("flags");
    assert_error(&run(&m, &["-p", "hi", "--temp=-1"]), 1, "--temp must be 0 (greedy) or more");
    let o = run(&m, &["-p", "hi", "-n", "2", "--temp", "0", "--threads", "100000"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("logical CPUs here; using"), "{}", stderr(&o));
    // Above the 256 positions the tiny model was trained for: a warning, then the run.
    let o = run(&m, &["-p", "hi", "-n", "2", "--temp", "0", "--ctx", "1000"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("longer than the 256 this model was trained for"), "{}", stderr(&o));
    let o = run(&m, &["-p", "hi", "-n", "2", "--temp", "0", "--ctx", "200"]);
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
}

#[test]
fn output_that_cannot_be_written_is_an_error() {
    let m = tiny("full");
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else { return };
    let o = edgespec()
        .args(["run", "-m", m.to_str().unwrap(), "-p", "hi", "-n", "8", "--temp", "0"])
        .stdout(full.try_clone().unwrap())
        .output()
        .unwrap();
    assert_error(&o, 2, "cannot write the generated text");
    let o = edgespec().args(["info", m.to_str().unwrap()]).stdout(full).output().unwrap();
    assert_error(&o, 2, "cannot write to standard output");
}

#[test]
fn the_context_limit_is_said_and_one_token_has_no_rate() {
    let m = tiny("limit");
    let o = run(&m, &["-p", "hello", "-n", "100", "--temp", "0", "--ctx", "12"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "one line: {e}");
    assert!(e.contains("the context of 12 tokens is full"), "{e}");
    let o = run(&m, &["-p", "hello", "-n", "1", "--temp", "0", "--stats", "--power", "none"]);
    let e = stderr(&o);
    assert!(o.status.success() && e.contains("n/a") && !e.contains("(0.0 tok/s)"), "{e}");
}

#[test]
fn energy_without_a_meter_is_one_short_line_unless_verbose() {
    let m = tiny("energy");
    let json = m.with_file_name("s.json");
    let args = ["-p", "hi", "-n", "3", "--temp", "0", "--stats"];
    let o = run(&m, &[&args[..], &["--stats-json", json.to_str().unwrap()]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    if let Some(line) = e.lines().find(|l| l.starts_with("energy: unavailable")) {
        assert!(line.len() <= 140, "{line}");
        let stats: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert!(stats["energy_unavailable"].as_str().is_some_and(|s| !s.is_empty()), "{stats}");
        let o = run(&m, &[&args[..], &["--verbose"]].concat());
        let verbose = stderr(&o);
        let full = verbose.lines().find(|l| l.starts_with("energy: unavailable")).unwrap();
        assert!(!full.contains("--verbose"), "the reason itself: {full}");
        assert!(full.len() >= line.len());
    }
}

#[test]
fn a_prompt_file_dash_reads_standard_input() {
    let m = tiny("stdin");
    let want = run(&m, &["-p", "hello there", "-n", "6", "--temp", "0"]);
    let mut child = edgespec()
        .args(["run", "-m", m.to_str().unwrap(), "-f", "-", "-n", "6", "--temp", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hello there").unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout, want.stdout);
}

#[test]
fn damaged_tuning_files_are_said_once_and_ignored() {
    let m = tiny("damaged");
    let profile = edgespec::decode::heads::profile_path(&m);
    std::fs::write(&profile, "{ not json").unwrap();
    let o = run(&m, &["-p", "hello", "-n", "4", "--temp", "0", "--strategy", "auto"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stderr(&o).matches("damaged tuning profile").count(), 1, "{}", stderr(&o));
    // A profile that parses, and a damaged corpus beside it.
    std::fs::write(&profile, r#"{"speedup": 0.9, "self_spec_variants": 1}"#).unwrap();
    std::fs::write(edgespec::decode::corpus::corpus_path(&m), b"garbage").unwrap();
    let o = run(&m, &["-p", "hello", "-n", "4", "--temp", "0", "--strategy", "auto"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stderr(&o).matches("ignoring the corpus").count(), 1, "{}", stderr(&o));
}

fn chat(model: &Path, args: &[&str], input: &str) -> Output {
    let mut child = edgespec()
        .args(["chat", "-m", model.to_str().unwrap()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A chat refused at start exits without reading its input: the pipe may be closed by then.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    child.wait_with_output().unwrap()
}

#[test]
fn chat_checks_the_strategy_first_and_stats_follow_a_reset() {
    let m = tiny("chat");
    // No trained heads: refused before the first message (5: not found), not after it.
    let o = chat(&m, &["--strategy", "heads"], "hello\n");
    assert_error(&o, 5, "edgespec tune");
    assert!(!stderr(&o).contains("edgespec chat —"), "refused before the greeting: {}", stderr(&o));
    let o = chat(&m, &["-n", "1", "--temp", "0"], "hello\n/reset\n/stats\n/quit\n");
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    let after = &e[e.find("[conversation cleared]").unwrap()..];
    assert!(after.contains("[no reply yet]") && after.contains("context: 0 of"), "{e}");
}

#[test]
fn mem_budget_picks_what_fits_and_refuses_what_cannot() {
    // Heads of 32 values: a q8_0 cache is possible.
    let m = model_file(
        "budget",
        &SyntheticSpec { head_dim: 32, context_length: 4096, ..SyntheticSpec::llama(3) },
    );
    let size = std::fs::metadata(&m).unwrap().len();
    let info = |budget: &str| {
        edgespec().args(["info", m.to_str().unwrap(), "--mem-budget", budget]).output().unwrap()
    };
    // Plenty: the default context (the model's, capped at 4096) with f16.
    let o = info("1G");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        text.contains("context 4096 tokens, KV cache f16 (") && text.contains("within the budget"),
        "{text}"
    );
    // Tight: between what q8_0 and f16 need at 4096 tokens.
    let file = edgespec::gguf::GgufFile::open(&m).unwrap();
    let config = edgespec::model::ModelConfig::from_gguf(&file).unwrap();
    let arch = edgespec::model::ArchSpec::for_arch(&config.arch).unwrap();
    let need = |kv| edgespec::memory::session_need(&config, Some(&arch), size, 4096, kv).unwrap().total();
    let (f16, q8) = (need(edgespec::model::KvType::F16), need(edgespec::model::KvType::Q8_0));
    assert!(q8 < f16);
    let tight = format!("{}", (q8 + f16) / 2);
    let o = info(&tight);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(text.contains("KV cache q8_0") && text.contains("chosen to fit"), "{text}");
    // `run` says what it chose and runs with it.
    let json = m.with_file_name("b.json");
    let o = run(
        &m,
        &[
            "-p",
            "hi",
            "-n",
            "2",
            "--temp",
            "0",
            "--mem-budget",
            &tight,
            "--stats-json",
            json.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("memory budget") && stderr(&o).contains("KV cache q8_0"), "{}", stderr(&o));
    let stats: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(stats["kv_type"], "q8_0");
    // Less than the weights: refused, naming a budget that works.
    let o = run(&m, &["-p", "hi", "--mem-budget", &format!("{}", size / 2)]);
    assert_error(&o, 9, "a budget of ");
    let e = stderr(&o);
    let at = e.find("a budget of ").unwrap() + "a budget of ".len();
    let enough: String = e[at..].chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
    let o = info(&enough);
    assert!(o.status.success(), "{enough} is enough: {}", stderr(&o));
    // An explicit context that does not fit is refused, not shrunk.
    let o = run(&m, &["-p", "hi", "--ctx", "4096", "--kv-type", "f16", "--mem-budget", &tight]);
    assert_error(&o, 9, "shorter context");
    assert_error(&run(&m, &["-p", "hi", "--mem-budget", "lots"]), 2, "not a size");
    for cmd in ["chat", "bench"] {
        let o = edgespec().args([cmd, "--help"]).output().unwrap();
        assert!(String::from_utf8_lossy(&o.stdout).contains("--mem-budget"), "{cmd}");
    }
}

/// Start `run` on the slow model, wait for `ready` (true: the first generated bytes; false: a
/// moment into the prefill), send SIGINT, and return the output and how long the process took
/// to stop after the signal.
#[cfg(unix)]
fn interrupt_run(model: &Path, prompt: &str, n: &str, after_output: bool) -> (Output, Duration) {
    let mut child = edgespec()
        .args(["run", "-m", model.to_str().unwrap(), "-f", "-", "-n", n, "--temp", "0", "--threads", "1"])
        .args(["--ctx", "16384", "--strategy", "plain"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(prompt.as_bytes()).unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = vec![0u8; 1];
    if after_output {
        stdout.read_exact(&mut first).unwrap();
    } else {
        first.clear();
        std::thread::sleep(Duration::from_millis(2000));
    }
    let t0 = Instant::now();
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(rc, 0);
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).unwrap();
    let mut o = child.wait_with_output().unwrap();
    let took = t0.elapsed();
    first.extend(rest);
    o.stdout = first;
    (o, took)
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_run_during_prefill_with_exit_130() {
    let m = slow("sigint-prefill");
    // Byte-level tokens: about 12,000 prompt tokens, many seconds of prefill on one thread.
    let prompt = "the quick brown fox jumps over the lazy dog. ".repeat(270);
    let (o, took) = interrupt_run(&m, &prompt, "4", false);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(130), "{e}");
    assert!(e.contains("interrupted while processing the prompt"), "{e}");
    assert!(o.stdout.is_empty(), "nothing was generated");
    assert!(took < Duration::from_secs(5), "stopped between prefill chunks, not at the end: {took:?}");
    std::fs::remove_dir_all(m.parent().unwrap()).ok();
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_run_during_decoding_with_its_text_flushed() {
    let m = slow("sigint-decode");
    let (o, took) = interrupt_run(&m, "once upon a time", "100000", true);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(130), "{e}");
    assert!(e.contains("interrupted after"), "{e}");
    let n: usize = e.split("interrupted after ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!((1..100000).contains(&n), "{e}");
    assert!(!o.stdout.is_empty(), "the text generated so far reached stdout");
    assert!(took < Duration::from_secs(5), "{took:?}");
    std::fs::remove_dir_all(m.parent().unwrap()).ok();
}

#[cfg(unix)]
#[test]
fn ctrl_c_in_chat_stops_a_long_message_and_the_chat_goes_on() {
    let m = slow("sigint-chat");
    let mut child = edgespec()
        .args([
            "chat",
            "-m",
            m.to_str().unwrap(),
            "-n",
            "2",
            "--temp",
            "0",
            "--threads",
            "1",
            "--ctx",
            "16384",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let long = "the quick brown fox jumps over the lazy dog. ".repeat(270);
    stdin.write_all(format!("{long}\n").as_bytes()).unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let t0 = Instant::now();
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) }, 0);
    stdin.write_all(b"hi\n/stats\n/quit\n").unwrap();
    drop(stdin);
    let o = child.wait_with_output().unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{e}");
    assert!(e.contains("[stopped while reading your message"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(20), "the long message was not processed to the end");
    // The next message was answered after it.
    assert!(e.contains("context: ") && !e.contains("[no reply yet]"), "{e}");
    std::fs::remove_dir_all(m.parent().unwrap()).ok();
}
