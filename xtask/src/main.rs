//! `cargo xtask <task>`: a thin dispatcher over cargo (see matklad/cargo-xtask). All real logic
//! lives in the `wgpt` crate; this only builds it in release mode and forwards arguments, so
//! xtask itself has no dependencies and compiles in a second.

use std::env;
use std::path::PathBuf;
use std::process::{exit, Command};

const HELP: &str = "\
cargo xtask <task> [args...]

tasks:
  validate [--seed N] [--filter S] [--quick]   every GPU kernel vs its CPU reference; exits 1 on any failure
  adapters [--json]                            list the adapters wgpu sees, with features and limits
  bench matmul [--shape MxNxK] [--layouts ..]  GFLOP/s of every matmul variant beside a CPU sgemm
  test                                         the test suite (what CI runs: cargo test --workspace)
  <anything else>                              forwarded to the wgpt binary: cargo run --release -- <anything else>

Global options (after the task): --adapter NAME_OR_INDEX, --backend vulkan|metal|dx12|gl|all, --autotune on|off.
";

fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives one level below the root").to_path_buf()
}

fn cargo(args: &[&str], rest: &[String]) -> i32 {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let status = Command::new(cargo).current_dir(project_root()).args(args).args(rest).status().unwrap_or_else(|e| {
        eprintln!("xtask: could not run cargo: {e}");
        exit(2)
    });
    status.code().unwrap_or(1)
}

fn main() {
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
        // Everything else is a wgpt subcommand, built optimised: kernels validated at GPT shapes
        // and benchmarks must not measure a debug build.
        _ => cargo(&["run", "--release", "--quiet", "--bin", "wgpt", "--"], &args),
    };
    exit(code);
}
