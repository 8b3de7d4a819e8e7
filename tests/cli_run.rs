//! `edgespec run` and `edgespec chat` as a user runs them: stdout carries only generated text,
//! stats go to stderr and to a JSON file.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use edgespec::model::synthetic::{self, SyntheticSpec};

fn tiny_model_file(name: &str) -> PathBuf {
    model_file(name, &SyntheticSpec::llama(42))
}

fn model_file(name: &str, spec: &SyntheticSpec) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgespec-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tiny.gguf");
    std::fs::write(&path, synthetic::build(spec).unwrap()).unwrap();
    path
}

fn edgespec() -> Command {
    Command::new(env!("CARGO_BIN_EXE_edgespec"))
}

#[test]
fn run_prints_only_generated_text_and_writes_stats() {
    let model = tiny_model_file("run");
    let json = model.with_file_name("stats.json");
    let out = edgespec()
        .args(["run", "-m", model.to_str().unwrap(), "-p", "hello", "-n", "8", "--temp", "0", "--stats"])
        .args(["--stats-json", json.to_str().unwrap(), "--threads", "2", "--strategy", "plain"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Again with the default strategy (auto): the same bytes.
    let again = edgespec()
        .args(["run", "-m", model.to_str().unwrap(), "-p", "hello", "-n", "8", "--temp", "0"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, again.stdout, "greedy output is reproducible byte for byte");
    assert!(again.stderr.is_empty(), "no stats without --stats: {}", String::from_utf8_lossy(&again.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tok/s") && stderr.contains("peak RSS"), "{stderr}");
    let stats: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for key in [
        "strategy",
        "prompt_tokens",
        "generated_tokens",
        "prefill_tokens_per_s",
        "decode_tokens_per_s",
        "forward_passes",
        "drafted_tokens",
        "accepted_tokens",
        "mean_accepted_per_pass",
        "decode_passes",
        "passes_by_batch",
        "peak_rss_bytes",
    ] {
        assert!(stats.get(key).is_some(), "{key} missing from {stats}");
    }
    assert_eq!(stats["strategy"], "plain");
    assert_eq!(stats["device"], "cpu");
    assert_eq!(stats["prompt_tokens"], 5);
    assert_eq!(stats["drafted_tokens"], 0);
    std::fs::remove_dir_all(model.parent().unwrap()).ok();
}

#[test]
fn kv_type_picks_the_cache_and_refuses_what_it_cannot_store() {
    let model = model_file("kv", &SyntheticSpec { head_dim: 32, ..SyntheticSpec::llama(42) });
    let mut bytes = Vec::new();
    for ty in ["f16", "q8_0"] {
        let json = model.with_file_name(format!("{ty}.json"));
        let out = edgespec()
            .args(["run", "-m", model.to_str().unwrap(), "-p", "hello", "-n", "8", "--temp", "0"])
            .args(["--kv-type", ty, "--stats-json", json.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{ty}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(!out.stdout.is_empty(), "{ty}: no text");
        let stats: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(stats["kv_type"], ty);
        bytes.push(stats["kv_cache_bytes"].as_u64().unwrap());
    }
    assert!(bytes[1] * 100 <= bytes[0] * 54, "q8_0 {} vs f16 {} bytes", bytes[1], bytes[0]);
    let bad = edgespec()
        .args(["run", "-m", model.to_str().unwrap(), "-p", "hi", "--kv-type", "q4"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown KV cache type"));
    // 16-value heads are not whole Q8_0 blocks.
    let narrow = tiny_model_file("kv16");
    let out = edgespec()
        .args(["run", "-m", narrow.to_str().unwrap(), "-p", "hi", "--kv-type", "q8_0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("multiples of 32"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(model.parent().unwrap()).ok();
    std::fs::remove_dir_all(narrow.parent().unwrap()).ok();
}

#[test]
fn run_reads_a_prompt_file_and_refuses_other_strategies() {
    let model = tiny_model_file("file");
    let prompt = model.with_file_name("prompt.txt");
    std::fs::write(&prompt, "hello").unwrap();
    let m = model.to_str().unwrap();
    let from_file = edgespec()
        .args(["run", "-m", m, "-f", prompt.to_str().unwrap(), "-n", "6", "--temp", "0"])
        .output()
        .unwrap();
    let from_arg =
        edgespec().args(["run", "-m", m, "-p", "hello", "-n", "6", "--temp", "0"]).output().unwrap();
    assert!(from_file.status.success());
    assert_eq!(from_file.stdout, from_arg.stdout);

    // `lookup` and `lookahead` give plain decoding's text.
    for strategy in ["lookup", "lookahead"] {
        let look = edgespec()
            .args(["run", "-m", m, "-p", "hello", "-n", "6", "--temp", "0", "--strategy", strategy])
            .output()
            .unwrap();
        assert!(look.status.success(), "{strategy}");
        assert_eq!(look.stdout, from_arg.stdout, "{strategy}");
    }
    let out = edgespec().args(["run", "-m", m]).output().unwrap();
    assert!(!out.status.success(), "a prompt is required");
    let out = edgespec().args(["run", "-m", m, "-p", "x", "--top-p", "0"]).output().unwrap();
    assert!(!out.status.success());
    std::fs::remove_dir_all(model.parent().unwrap()).ok();
}

#[test]
fn chat_answers_turns_and_commands_from_a_pipe() {
    let model = tiny_model_file("chat");
    let mut child = edgespec()
        .args(["chat", "-m", model.to_str().unwrap(), "--temp", "0", "-n", "5"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hi\n/stats\nagain\n/reset\n/bogus\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("context:") && err.contains("[conversation cleared]"), "{err}");
    assert!(err.contains("unknown command /bogus"), "{err}");
    std::fs::remove_dir_all(model.parent().unwrap()).ok();
}

#[test]
fn smollm2_run_continues_sensibly() {
    let out = edgespec()
        .args(["run", "-p", "The capital of France is", "-n", "6", "--temp", "0", "--threads", "2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with(" Paris"), "{text:?}");
}

/// With a power meter (a fake powercap tree whose counter a thread advances), `run --stats-json`
/// carries the generation's energy; with `--power none` it carries none.
#[cfg(target_os = "linux")]
#[test]
fn run_reports_energy_when_a_meter_is_present() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    // The real model (cached for the other tests here): its 40 tokens take a few hundred
    // milliseconds, far longer than the fake counter's update interval, where a tiny random model
    // finishes in 3 ms and can end before the counter has moved at all.
    let m = "smollm2-135m";
    let dir = std::env::temp_dir().join(format!("edgespec-cli-{}-energy", std::process::id()));
    let zone = dir.join("powercap").join("intel-rapl:0");
    std::fs::create_dir_all(&zone).unwrap();
    std::fs::write(zone.join("name"), "package-0\n").unwrap();
    std::fs::write(zone.join("max_energy_range_uj"), "60000000\n").unwrap();
    std::fs::write(zone.join("energy_uj"), "0\n").unwrap();
    // 5 W: 5 µJ per µs, written every 2 ms through a rename (never half a number).
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (zone, stop) = (zone.clone(), stop.clone());
        std::thread::spawn(move || {
            let t0 = std::time::Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let uj = (t0.elapsed().as_micros() * 5) % 60_000_000;
                std::fs::write(zone.join("energy_uj.tmp"), format!("{uj}\n")).unwrap();
                std::fs::rename(zone.join("energy_uj.tmp"), zone.join("energy_uj")).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        })
    };
    let json = dir.join("energy.json");
    let out = edgespec()
        .args(["run", "-m", m, "-p", "hello", "-n", "40", "--temp", "0", "--stats"])
        .args(["--stats-json", json.to_str().unwrap()])
        .env("EDGESPEC_POWERCAP_ROOT", dir.join("powercap"))
        .output()
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stats: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(stats["power_source"], "package-0", "{stats}");
    assert_eq!(stats["power_provenance"], "measured counter");
    let (e, tpj) = (stats["energy_j"].as_f64().unwrap(), stats["tokens_per_j"].as_f64().unwrap());
    let n = stats["generated_tokens"].as_f64().unwrap();
    assert!(e > 0.0 && (tpj * e - n).abs() < 1e-6 * n, "{e} J, {tpj} tokens/J, {n} tokens");
    // At most 5 W over the run's own time (prefill + decode, plus a poll's slack).
    let secs = stats["prefill_s"].as_f64().unwrap() + stats["decode_s"].as_f64().unwrap();
    assert!(e <= 5.0 * (secs + 0.1), "{e} J in {secs} s");
    assert!(String::from_utf8_lossy(&out.stderr).contains("tokens/J (package-0, measured counter)"));

    let out = edgespec()
        .args(["run", "-m", m, "-p", "hello", "-n", "4", "--temp", "0", "--power", "none", "--stats"])
        .args(["--stats-json", json.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stats: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(stats.get("energy_j").is_none(), "no meter, no energy figures: {stats}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("energy: unavailable (disabled by --power none)"));

    // A counter that never moves (a run shorter than the meter's update interval) gives no
    // figure rather than 0 J and 0 tokens/J.
    std::fs::write(zone.join("energy_uj"), "1234\n").unwrap();
    let out = edgespec()
        .args(["run", "-m", m, "-p", "hello", "-n", "4", "--temp", "0", "--stats"])
        .args(["--stats-json", json.to_str().unwrap()])
        .env("EDGESPEC_POWERCAP_ROOT", dir.join("powercap"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let stats: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(stats.get("energy_j").is_none(), "a still counter, no energy figures: {stats}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("energy: unavailable (package-0 registered no energy"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn device_flag_picks_the_backend_and_the_text_stays_the_same() {
    let model = tiny_model_file("device");
    let json = model.with_file_name("stats.json");
    let bad = edgespec()
        .args(["run", "-m", model.to_str().unwrap(), "-p", "x", "--device", "tpu"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "a bad --device is a usage error");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("cpu, gpu or auto"));
    let devices = edgespec().args(["info", "--devices"]).output().unwrap();
    assert!(devices.status.success());
    let listing = String::from_utf8_lossy(&devices.stdout).to_string();
    let have_gpu = !listing.starts_with("no GPU adapter") && !listing.contains("no GPU backend");
    let adapters: Vec<&str> = listing.lines().filter(|l| l.contains(" — ")).collect();
    let only_software = !adapters.is_empty() && adapters.iter().all(|l| l.contains("(software"));
    let mut texts = Vec::new();
    for device in ["cpu", "auto", "gpu"] {
        let out = edgespec()
            .args(["run", "-m", model.to_str().unwrap(), "-p", "hello", "-n", "8", "--temp", "0"])
            .args(["--device", device, "--stats-json", json.to_str().unwrap()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        if device == "gpu" && !have_gpu {
            assert!(!out.status.success(), "--device gpu without an adapter must fail");
            continue;
        }
        assert!(out.status.success(), "--device {device}: {stderr}");
        let stats: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let ran = stats["device"].as_str().unwrap().to_string();
        match device {
            "gpu" => assert!(ran.starts_with("gpu"), "{ran}"),
            "cpu" => assert_eq!(ran, "cpu"),
            // `auto` never takes a software adapter (lavapipe): it says why it stayed on the CPU.
            _ if only_software => {
                assert_eq!(ran, "cpu");
                assert!(stderr.contains("--device auto"), "{stderr}");
            }
            _ => {}
        }
        texts.push(out.stdout);
    }
    assert!(texts.iter().all(|t| *t == texts[0]), "the backends wrote different text");
    std::fs::remove_dir_all(model.parent().unwrap()).ok();
}
