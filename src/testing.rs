//! Helpers for GPU tests: one shared context per test binary, and the no-adapter policy.
//!
//! A GPU test must run, not skip: without an adapter it fails with instructions, unless
//! `WGPT_ALLOW_NO_GPU=1` is set, in which case it prints that it skipped and passes.

use crate::gpu::{AutotuneMode, GpuContext, GpuOptions};
use std::sync::OnceLock;

/// Options for tests: the environment's adapter choice, autotuning off (tests exercise every
/// variant explicitly) and no on-disk cache.
pub fn test_options() -> GpuOptions {
    let mut o = GpuOptions::from_env().expect("bad WGPT_* environment");
    o.autotune = AutotuneMode::Off;
    o.cache_dir = None;
    o
}

/// The shared test context, or `None` when there is no adapter and `WGPT_ALLOW_NO_GPU=1`.
/// Panics (failing the test) when there is no adapter otherwise.
pub fn gpu() -> Option<&'static GpuContext> {
    static CTX: OnceLock<Option<GpuContext>> = OnceLock::new();
    CTX.get_or_init(|| match GpuContext::new(&test_options()) {
        Ok(ctx) => Some(ctx),
        Err(e) => {
            if std::env::var("WGPT_ALLOW_NO_GPU").is_ok_and(|v| v == "1") {
                eprintln!("SKIPPED: no usable GPU adapter ({e}); WGPT_ALLOW_NO_GPU=1 is set");
                None
            } else {
                panic!("GPU test needs an adapter: {e}\n  (set WGPT_ALLOW_NO_GPU=1 to skip GPU tests on purpose)");
            }
        }
    })
    .as_ref()
}
