//! `edgespec bench` with energy, end to end on a tiny synthetic model: a fake powercap tree whose
//! counter a thread advances like a CPU package would (a constant floor plus a share per second
//! of this process's CPU time, wrapping at a small limit), read by the real RAPL backend through
//! the real sampler; the report's J/token, tokens/J and provenance are checked in the JSON. And
//! without a meter: "energy: unavailable (reason)", never a number.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edgespec::bench::{self, BenchOptions, BenchReport, Suite};
use edgespec::decode::Strategy;
use edgespec::model::synthetic::{self, SyntheticSpec};
use edgespec::power::{PowerChoice, PowerEnv};
use edgespec::session::{Session, SessionOptions};

#[path = "common/power_env.rs"]
mod power_env;
use power_env::env_in;

/// One bench at a time: the fake counter charges this process's CPU time, so a bench running in
/// another test thread would show up as this one's energy.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("edgespec-bench-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const SUITE: &str = r#"
[[prompt]]
name = "copy"
kind = "grounded"
max_tokens = 12
text = "Repeat: the cat sat on the mat, the cat sat on the mat."

[[prompt]]
name = "story"
kind = "open"
max_tokens = 12
text = "Tell a story."
"#;

fn session(dir: &Path) -> Session {
    let path = dir.join("tiny.gguf");
    std::fs::write(&path, synthetic::build(&SyntheticSpec::llama(7)).unwrap()).unwrap();
    Session::load(&path, &SessionOptions { threads: Some(2), ctx: Some(256), ..Default::default() }).unwrap()
}

fn options(power: PowerChoice, env: PowerEnv, window_s: f64) -> BenchOptions {
    BenchOptions {
        strategies: vec![Strategy::Plain, Strategy::Lookup],
        reps: 3,
        warmup: 1,
        max_tokens: None,
        only: Vec::new(),
        power,
        power_env: Some(env),
        energy_window: Some(Duration::from_secs_f64(window_s)),
        vs_llama_cpp: false,
    }
}

fn run(s: &mut Session, opts: &BenchOptions) -> edgespec::Result<BenchReport> {
    let suite = Suite::from_toml("test", SUITE).unwrap();
    bench::run(s, &suite, opts, &mut |_| {})
}

/// Seconds of CPU time this process has used.
#[cfg(target_os = "linux")]
fn process_cpu_s() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock id and a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

const FLOOR_W: f64 = 2.0;
/// Joules per second of process CPU time.
const CPU_W: f64 = 20.0;
/// The counter's wrap limit: 60 J, about one wrap per test run.
const WRAP_UJ: u64 = 60_000_000;

/// Advance `energy_uj` every 2 ms until `stop`: FLOOR_W × wall + CPU_W × process CPU time, modulo
/// the wrap limit (written to a temporary file and renamed, so a reader never sees half a number).
#[cfg(target_os = "linux")]
fn counter_writer(zone: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let t0 = Instant::now();
        let cpu0 = process_cpu_s();
        let tmp = zone.join("energy_uj.tmp");
        let file = zone.join("energy_uj");
        while !stop.load(Ordering::Relaxed) {
            let joules = FLOOR_W * t0.elapsed().as_secs_f64() + CPU_W * (process_cpu_s() - cpu0);
            let uj = (joules * 1e6) as u64 % WRAP_UJ;
            std::fs::write(&tmp, format!("{uj}\n")).unwrap();
            std::fs::rename(&tmp, &file).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
    })
}

fn rel_close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * a.abs().max(b.abs()).max(1e-12)
}

#[cfg(target_os = "linux")]
#[test]
fn fake_rapl_drives_a_full_energy_report() {
    let _one = serial();
    let t = TempDir::new("rapl");
    let zone = t.0.join("powercap/intel-rapl:0");
    std::fs::create_dir_all(&zone).unwrap();
    std::fs::write(zone.join("name"), "package-0\n").unwrap();
    std::fs::write(zone.join("energy_uj"), "0\n").unwrap();
    std::fs::write(zone.join("max_energy_range_uj"), format!("{WRAP_UJ}\n")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = counter_writer(zone.clone(), stop.clone());
    let mut s = session(&t.0);
    let report = run(&mut s, &options(PowerChoice::Auto, env_in(&t.0), 0.4));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let report = report.unwrap();

    let e = &report.energy;
    assert!(e.available, "{:?}", e.unavailable_reason);
    assert_eq!(e.meter.as_deref(), Some("rapl"));
    assert_eq!(e.power_source.as_deref(), Some("package-0"));
    assert_eq!(e.scope.as_deref(), Some("cpu package"));
    assert_eq!(e.power_provenance.as_deref(), Some("measured counter"));
    assert!(!e.estimate);
    // The wrap limit of 60 J sets a 15 ms period (four polls per fastest wrap at 1 kW).
    assert!(rel_close(e.period_s.unwrap(), 0.015, 1e-9), "{:?}", e.period_s);
    let idle = e.idle.as_ref().unwrap();
    let idle_w = idle.average_w.unwrap();
    assert!(idle.duration_s >= 0.4, "{}", idle.duration_s);
    // The floor, plus the little CPU the writer and the sampler use while the model waits.
    assert!(idle_w > FLOOR_W * 0.9 && idle_w < FLOOR_W + 0.25 * CPU_W, "idle {idle_w} W");

    assert_eq!(e.strategies.len(), 2);
    for st in &e.strategies {
        assert_eq!(st.phases.iter().map(|p| p.phase).collect::<Vec<_>>(), ["prefill", "decode"]);
        for p in &st.phases {
            assert_eq!(p.reps.len(), 3, "{} {}", st.strategy, p.phase);
            for r in &p.reps {
                assert!(r.unavailable.is_none(), "{:?}", r.unavailable);
                assert!(r.tokens > 0 && r.duration_s > 0.0 && r.runs > 0);
                let energy = r.energy_j.unwrap();
                let w = r.average_w.unwrap();
                // Every figure follows from the energy, the tokens and the time.
                assert!(rel_close(w, energy / r.covered_s, 1e-9));
                assert!(rel_close(r.joules_per_token.unwrap(), energy / r.tokens as f64, 1e-9));
                assert!(rel_close(r.tokens_per_joule.unwrap(), r.tokens as f64 / energy, 1e-9));
                assert!(rel_close(r.tokens_per_s, r.tokens as f64 / r.duration_s, 1e-9));
                let above = r.above_idle_energy_j.unwrap();
                assert!(rel_close(above, energy - idle_w * r.covered_s, 1e-9));
                assert!(rel_close(r.above_idle_w.unwrap(), w - idle_w, 1e-9));
                if above > 0.0 {
                    assert!(rel_close(r.above_idle_tokens_per_joule.unwrap(), r.tokens as f64 / above, 1e-9));
                }
                assert_eq!(r.within_idle_noise, above < r.idle_noise_j.unwrap(), "{r:?}");
                // Windows shorter than the protocol's 10 s are flagged, never passed off.
                assert!(r.flags.iter().any(|f| f.contains("shorter than")), "{:?}", r.flags);
                assert!(w >= 0.0, "{w} W");
            }
            // Power between the floor and the floor plus two busy CPUs, in the median (the fake
            // counter's thread, when a loaded machine starves it, moves energy between phases).
            let w = p.average_w.unwrap();
            assert!(w > FLOOR_W * 0.8 && w < FLOOR_W + 2.2 * CPU_W, "{} {} {w} W", st.strategy, p.phase);
            let med = p.joules_per_token.unwrap();
            let mut v: Vec<f64> = p.reps.iter().map(|r| r.joules_per_token.unwrap()).collect();
            v.sort_by(f64::total_cmp);
            assert_eq!(med, v[1], "the median of three");
        }
        // Decoding keeps the CPUs busy: above the idle floor in the median (a repetition starved
        // by a busy machine may not be; the idle noise of this fake counter, advanced by a thread
        // a loaded machine schedules irregularly, is too large to test the flag against: its
        // rule is checked per repetition above).
        let d = &st.phases[1];
        assert!(d.average_w.unwrap() > idle_w, "{} decode {:?} W, idle {idle_w}", st.strategy, d.average_w);
        assert_eq!(d.within_idle_noise, d.reps.iter().filter(|r| r.within_idle_noise).count());
        // The decode window is at least the window asked for.
        for r in &d.reps {
            assert!(r.duration_s >= 0.4 * 0.9, "{}", r.duration_s);
        }
    }
    // The idle baseline and 2 strategies × 3 reps, each window after the previous one.
    assert_eq!(e.windows.len(), 7);
    assert_eq!(e.windows[0].label, "idle");
    assert!(e.windows.windows(2).all(|w| w[0].end_s <= w[1].start_s + 1e-9));
    assert!(!e.trace.is_empty() && e.trace.iter().all(|p| p.watts.is_finite() && p.watts >= 0.0));
    let traced: f64 = e.trace.iter().map(|p| p.watts * (p.end_s - p.start_s)).sum();
    assert!(traced > idle_w * 0.4, "the trace holds the run's energy: {traced} J");

    // The JSON carries the figures with their provenance.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["energy"]["power_provenance"], "measured counter");
    assert_eq!(json["energy"]["scope"], "cpu package");
    let rep0 = &json["energy"]["strategies"][0]["phases"][1]["reps"][0];
    let (jpt, tpj) = (rep0["joules_per_token"].as_f64().unwrap(), rep0["tokens_per_joule"].as_f64().unwrap());
    assert!(rel_close(jpt * tpj, 1.0, 1e-9), "{jpt} {tpj}");
    assert!(json["machine"]["kernels"].is_string() && json["machine"]["threads"] == 2);

    let md = report.to_markdown();
    assert!(md.contains("| plain | decode |") && md.contains("cpu package, measured counter"), "{md}");
    assert!(md.contains("idle baseline (model loaded)"), "{md}");
    let svg = bench::plot::svg(&report);
    assert!(svg.starts_with("<svg") && svg.contains("<polyline") && svg.contains("decode tokens per joule"));
    assert!(svg.trim_end().ends_with("</svg>"));
}

#[test]
fn without_a_meter_energy_is_unavailable_and_says_why() {
    let _one = serial();
    let t = TempDir::new("null");
    let mut s = session(&t.0);
    // Nothing under the fake roots: `auto` finds no meter, runs no energy window, invents nothing.
    let started = Instant::now();
    let report = run(&mut s, &options(PowerChoice::Auto, env_in(&t.0), 5.0)).unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "no idle baseline or window without a meter");
    let e = &report.energy;
    assert!(!e.available && e.strategies.is_empty() && e.trace.is_empty() && e.idle.is_none());
    let why = e.unavailable_reason.as_deref().unwrap();
    assert!(why.contains("no meter found") && why.contains("rapl"), "{why}");
    let md = report.to_markdown();
    assert!(md.contains(&format!("energy: unavailable ({why})")), "{md}");
    assert!(!md.contains("J/token") && !md.contains("tokens/J"), "{md}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["energy"]["available"], false);
    assert!(json["energy"]["power_provenance"].is_null());
    let svg = bench::plot::svg(&report);
    assert!(svg.contains("decode tokens per second") && svg.contains("energy: unavailable ("));

    let report = run(&mut s, &options(PowerChoice::None, env_in(&t.0), 5.0)).unwrap();
    assert_eq!(report.energy.unavailable_reason.as_deref(), Some("disabled by --power none"));

    // An explicit meter that is not there is an error before anything runs.
    let err = run(&mut s, &options(PowerChoice::Rapl, env_in(&t.0), 5.0)).unwrap_err();
    assert!(err.to_string().contains("--power rapl"), "{err}");
}

#[cfg(not(feature = "llama-cpp"))]
#[test]
fn vs_llama_cpp_without_the_feature_is_a_clear_error() {
    let _one = serial();
    let t = TempDir::new("nollama");
    let mut s = session(&t.0);
    let mut opts = options(PowerChoice::None, env_in(&t.0), 1.0);
    opts.vs_llama_cpp = true;
    let err = run(&mut s, &opts).unwrap_err();
    assert!(err.to_string().contains("built without the `llama-cpp` feature"), "{err}");
}

/// llama.cpp beside us on the real SmolLM2 (catalog cache), one prompt, one repetition.
#[cfg(feature = "llama-cpp")]
#[test]
fn vs_llama_cpp_reports_ratios_from_one_run() {
    let _one = serial();
    let path = edgespec::catalog::resolve_model("smollm2-135m").expect("pull smollm2-135m");
    let mut s =
        Session::load(&path, &SessionOptions { threads: Some(1), ctx: Some(512), ..Default::default() })
            .unwrap();
    let suite = Suite::load("default").unwrap();
    let opts = BenchOptions {
        strategies: vec![Strategy::Plain],
        reps: 1,
        warmup: 0,
        max_tokens: Some(24),
        only: vec!["chat-question".into()],
        vs_llama_cpp: true,
        ..Default::default()
    };
    let r = bench::run(&mut s, &suite, &opts, &mut |_| {}).unwrap();
    let l = r.llama_cpp.as_ref().unwrap();
    assert_eq!((l.threads, l.reps, l.prompts.len()), (1, 1, 1));
    let p = &l.prompts[0];
    assert!(p.generated_tokens >= 2 && p.generated_tokens <= 24, "{p:?}");
    assert_eq!(p.prompt_tokens, r.prompts[0].prompt_tokens);
    assert!(p.llama_decode_tokens_per_s > 0.0 && p.ours_decode_tokens_per_s > 0.0, "{p:?}");
    assert!((p.decode_ratio - p.ours_decode_tokens_per_s / p.llama_decode_tokens_per_s).abs() < 1e-9);
    assert_eq!(l.median_decode_ratio, p.decode_ratio);
    assert!(r.to_markdown().contains("ours / llama.cpp (median over prompts)"));
}
