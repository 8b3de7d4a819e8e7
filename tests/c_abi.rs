//! The C ABI as a C program sees it: tests/c/abi_test.c is compiled with the system C compiler
//! against the libedgespec this build produced (shared and static), and run on a tiny model
//! written here. The README's C example (platforms/include/example.c) is compiled too, and the
//! header is checked to compile as C99 and C++.
//!
//! Set EDGESPEC_C_TEST_VALGRIND=1 to run the shared-library build under valgrind as well.

use std::path::{Path, PathBuf};
use std::process::Command;

use edgespec::model::synthetic::{self, SyntheticSpec};

/// Where cargo wrote libedgespec.{a,so} for this build: `target/<profile>/deps`, beside this
/// test's executable (cargo copies them up to `target/<profile>` only when the library itself is
/// what was asked for, as in `cargo build`, not when it is built for a test).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap().to_path_buf();
    for lib in ["libedgespec.a", shared_lib_name()] {
        assert!(deps.join(lib).exists(), "{} not found", deps.join(lib).display());
    }
    deps
}

fn shared_lib_name() -> &'static str {
    if cfg!(target_os = "macos") {
        "libedgespec.dylib"
    } else {
        "libedgespec.so"
    }
}

/// The loader's search path, set to this build's library directory when the C program runs:
/// cargo puts `target/<profile>` on it too, where an older `cargo build` may have left an older
/// libedgespec, and the variable wins over the program's rpath.
const LIBRARY_PATH_VAR: &str =
    if cfg!(target_os = "macos") { "DYLD_LIBRARY_PATH" } else { "LD_LIBRARY_PATH" };

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cc() -> String {
    std::env::var("CC").unwrap_or_else(|_| "cc".to_string())
}

/// Run `cmd`, failing the test with its output if it fails.
fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: cannot start {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} failed ({}):\n{stdout}\n{stderr}", out.status);
    stdout
}

/// A scratch directory for this test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgespec-c-abi-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Compile `sources` into `out`, linked against the shared library (`static_link` false) or the
/// static one.
fn compile(sources: &[PathBuf], out: &Path, static_link: bool) {
    let libs = lib_dir();
    let mut cmd = Command::new(cc());
    cmd.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-g"])
        .arg("-I")
        .arg(root().join("platforms/include"))
        .args(sources)
        .arg("-o")
        .arg(out);
    if static_link {
        cmd.arg(libs.join("libedgespec.a"));
        // What Rust's std needs from the system when linked statically (see
        // `rustc --print native-static-libs`); llama.cpp, when built in (`llama-cpp`, or left in
        // the archive by such a build: the file name has no feature hash), needs the C++ runtime.
        if cfg!(feature = "llama-cpp") || has_libstdcxx() {
            cmd.args(["-Wl,--as-needed", "-lstdc++", "-Wl,--no-as-needed"]);
        }
        cmd.args(["-lgcc_s", "-lutil", "-lrt", "-lpthread", "-lm", "-ldl", "-lc"]);
    } else {
        cmd.arg("-L").arg(&libs).arg("-ledgespec").arg(format!("-Wl,-rpath,{}", libs.display()));
        cmd.args(["-lpthread", "-lm"]);
    }
    run(&mut cmd, "compiling the C test");
}

/// Whether the C compiler can find the C++ runtime (`-print-file-name` echoes the bare name when
/// it cannot).
fn has_libstdcxx() -> bool {
    Command::new(cc())
        .arg("-print-file-name=libstdc++.so")
        .output()
        .is_ok_and(|o| Path::new(String::from_utf8_lossy(&o.stdout).trim()).is_absolute())
}

/// The tiny model, a malformed file and a path that does not exist.
fn fixtures(dir: &Path) -> [PathBuf; 3] {
    let model = dir.join("tiny-llama.gguf");
    // Seed 6: its greedy continuation of "hello world" changes letters (most seeds repeat one).
    let bytes = synthetic::build(&SyntheticSpec::llama(6)).unwrap();
    std::fs::write(&model, &bytes).unwrap();
    // A valid header whose metadata stops in the middle.
    let bad = dir.join("truncated.gguf");
    std::fs::write(&bad, &bytes[..200]).unwrap();
    [model, bad, dir.join("missing.gguf")]
}

fn c_test(static_link: bool) {
    let dir = scratch(if static_link { "static" } else { "shared" });
    let exe = dir.join("abi_test");
    compile(&[root().join("tests/c/abi_test.c")], &exe, static_link);
    let args = fixtures(&dir);
    let out = run(Command::new(&exe).args(&args).env(LIBRARY_PATH_VAR, lib_dir()), "the C ABI test");
    assert!(out.contains("all C ABI checks passed"), "{out}");
    if !static_link && std::env::var_os("EDGESPEC_C_TEST_VALGRIND").is_some() {
        let log = dir.join("valgrind.log");
        run(
            Command::new("valgrind")
                .args([
                    "--leak-check=full",
                    "--show-leak-kinds=definite,indirect",
                    "--errors-for-leak-kinds=definite,indirect",
                ])
                .args(["--error-exitcode=9", "--track-origins=yes"])
                .arg(format!("--log-file={}", log.display()))
                .arg(&exe)
                .args(&args)
                .env(LIBRARY_PATH_VAR, lib_dir()),
            "the C ABI test under valgrind",
        );
        eprintln!("{}", std::fs::read_to_string(&log).unwrap_or_default());
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_c_program_passes_against_the_shared_library() {
    c_test(false);
}

#[test]
fn the_c_program_passes_against_the_static_library() {
    c_test(true);
}

#[test]
fn the_readme_example_and_the_header_compile() {
    let dir = scratch("example");
    compile(&[root().join("platforms/include/example.c")], &dir.join("example"), false);
    // The header alone, as C99 and (where a C++ compiler is present) as C++.
    let probe = dir.join("probe.c");
    std::fs::write(
        &probe,
        "#include \"edgespec.h\"\nint main(void) { return edgespec_strategy_count() > 0 ? 0 : 1; }\n",
    )
    .unwrap();
    let include = root().join("platforms/include");
    run(
        Command::new(cc())
            .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only", "-I"])
            .arg(&include)
            .arg(&probe),
        "the header as C99",
    );
    if Command::new("c++").arg("--version").output().is_ok_and(|o| o.status.success()) {
        run(
            Command::new("c++")
                .args(["-x", "c++", "-std=c++11", "-Wall", "-Werror", "-fsyntax-only", "-I"])
                .arg(&include)
                .arg(&probe),
            "the header as C++",
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
