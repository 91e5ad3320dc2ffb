//! `cargo xtask <task>`: a thin dispatcher over cargo (see matklad/cargo-xtask). All real logic
//! lives in the `wgpt` crate; this only builds it in release mode and forwards arguments, so
//! xtask itself has no dependencies and compiles in a second. The one exception is `lavapipe`
//! (lavapipe.rs), which installs and enters a Mesa 26 root: it is about the environment the
//! binaries run in, not about wgpt.

mod lavapipe;

use std::env;
use std::path::PathBuf;
use std::process::{exit, Command};

const HELP: &str = "\
cargo xtask <task> [args...]

tasks:
  validate [--seed N] [--filter S] [--quick]   every GPU kernel vs its CPU reference; exits 1 on any failure
  adapters [--json]                            list the adapters wgpu sees, with features and limits
  bench matmul [--shape MxNxK] [--layouts ..]  GFLOP/s of every matmul variant beside a CPU sgemm
  test                                         the test suite: cargo test --workspace (CI runs it under lavapipe)
  gpu-report --out DIR [--config FILE]         on a real GPU: adapters, quick validate, matmul/attention/step
                                               benchmarks at d12, memory; DIR/gpu-report.md and .json
  lavapipe [--reinstall] [--print-root] -- CMD...
                                               run CMD against Mesa >= 26 lavapipe (cooperative matrices on the CPU),
                                               installed once into the cache; see cargo xtask lavapipe --help
  <anything else>                              forwarded to the wgpt binary: cargo run --release -- <anything else>
                                               (cargo's build progress shows on stderr)

GPU options, after the task, on the tasks that open a GPU (adapters, validate, bench, train, step-check, sample,
gpu-report): --adapter NAME_OR_INDEX, --backend vulkan|metal|dx12|gl|all, --autotune on|off
(or WGPT_ADAPTER, WGPT_BACKEND, WGPT_AUTOTUNE).
";

pub(crate) fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives one level below the root").to_path_buf()
}

/// Removes what `cargo run` sets for xtask itself (CARGO_MANIFEST_DIR=…/xtask, CARGO_PKG_*, …)
/// from a cargo started from here. Left in, it reaches build scripts: ring's reruns when
/// CARGO_MANIFEST_DIR changes, so every `cargo xtask` after a plain `cargo build` (and back)
/// rebuilt ring, rustls, ureq and wgpt.
pub(crate) fn scrub_cargo_run_env(cmd: &mut Command) -> &mut Command {
    for (k, _) in env::vars_os() {
        let Some(k) = k.to_str() else { continue };
        if k.starts_with("CARGO_PKG_")
            || matches!(
                k,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
            )
        {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn cargo(args: &[&str], rest: &[String]) -> i32 {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(cargo);
    let status =
        scrub_cargo_run_env(&mut cmd).current_dir(project_root()).args(args).args(rest).status().unwrap_or_else(|e| {
            eprintln!("xtask: could not run cargo: {e}");
            exit(2)
        });
    status.code().unwrap_or(1)
}

/// How a wgpt subcommand is run: built optimised (kernels validated at GPT shapes and benchmarks
/// must not measure a debug build). Not `--quiet`: a first release build takes minutes, and
/// without cargo's progress bar and `Compiling` lines it looks like a hang. Those go to stderr, so
/// what wgpt prints on stdout is unchanged.
const WGPT_RUN: &[&str] = &["run", "--release", "--bin", "wgpt", "--"];

fn main() {
    let args_os: Vec<std::ffi::OsString> = env::args_os().skip(1).collect();
    // These carry arbitrary commands (not necessarily UTF-8) and never build wgpt themselves.
    match args_os.first().and_then(|a| a.to_str()) {
        Some("lavapipe") => exit(lavapipe::main(&args_os[1..])),
        // Internal: cargo's target runner, and the step inside the private mount namespace.
        Some("lavapipe-run") => exit(lavapipe::run(&args_os[1..])),
        Some("lavapipe-enter") => exit(lavapipe::enter(&args_os[1..])),
        _ => {}
    }
    let args: Vec<String> = env::args().skip(1).collect();
    let Some(task) = args.first() else {
        eprint!("{HELP}");
        exit(2);
    };
    let code = match task.as_str() {
        "-h" | "--help" | "help" => {
            print!("{HELP}");
            0
        }
        "test" => cargo(&["test", "--workspace"], &args[1..]),
        // Everything else is a wgpt subcommand.
        _ => cargo(WGPT_RUN, &args),
    };
    exit(code);
}

#[cfg(test)]
mod tests {
    #[test]
    fn wgpt_runs_in_release_and_shows_the_build() {
        assert!(super::WGPT_RUN.contains(&"--release"));
        assert!(!super::WGPT_RUN.iter().any(|a| *a == "--quiet" || *a == "-q"), "{:?}", super::WGPT_RUN);
    }
}
