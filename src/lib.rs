//! wgpt: a trainer for nanochat-class GPT models whose every hot operation is a WGSL compute
//! shader scheduled through wgpu.
//!
//! Layout of the crate (every module below, in the order a training step meets them):
//! - [`gpu`]: adapter selection, the [`gpu::GpuContext`] that owns device, pipelines and buffers,
//!   the kernel table (`gpu::pipelines`), parameter structs (`gpu::immediates`), autotuning and
//!   the cooperative-matrix gate.
//! - [`kernels`]: launchers, one module per WGSL file in `shaders/`.
//! - [`reference`]: CPU references with the same names and argument order as [`kernels`], and the
//!   f64 reference model and optimizers.
//! - [`validate`]: the comparator, tolerances and the kernel-vs-reference suite.
//! - [`model`]: the GPT's shapes, parameters, memory plan, GPU model, inference engine and weights
//!   on disk.
//! - [`train`]: schedules, the GPU optimizer, checkpoints, the training loop and its report.
//! - [`data`], [`tokenizer`]: datasets, download and the batch loader; the BPE tokenizer.
//! - [`eval`]: CORE and MMLU evaluation (nanochat's `core_eval.py`): task files, few-shot draws,
//!   prompts and token spans on the CPU, batched scoring on the GPU (`wgpt eval`).
//! - [`config`]: run configuration (TOML, `--set` overrides, resolution).
//! - [`cli`], [`sample`], [`gpu_report`]: the `wgpt` command line and the commands that live
//!   outside their feature's module.
//! - [`bench`]: throughput measurements (`wgpt bench`, `cargo bench`).
//! - [`error`], [`util`], [`testing`]: the error type, small helpers, the GPU-test context.
//!
//! Conventions (as in llm.c): dimensions are B, T, C, H, D, V in Rust and WGSL alike; launchers
//! take outputs first, then inputs, then shapes and scalars; tensors are f32 row-major.

pub mod bench;
pub mod cli;
pub mod config;
pub mod data;
pub mod error;
pub mod eval;
pub mod gpu;
pub mod gpu_report;
pub mod kernels;
pub mod model;
pub mod reference;
pub mod sample;
pub mod shapes;
pub mod testing;
pub mod tokenizer;
pub mod train;
pub mod util;
pub mod validate;

pub use error::{Error, Result};
