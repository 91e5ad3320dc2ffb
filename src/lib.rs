//! wgpt: a trainer for nanochat-class GPT models whose every hot operation is a WGSL compute
//! shader scheduled through wgpu.
//!
//! Layout of the crate:
//! - [`gpu`]: adapter selection and the [`gpu::GpuContext`] that owns device, pipelines, buffers.
//! - [`kernels`]: launchers, one module per WGSL file in `shaders/`.
//! - [`reference`]: CPU references with the same names and argument order as [`kernels`].
//! - [`validate`]: the comparator, tolerances and the kernel-vs-reference suite.
//! - [`bench`]: throughput measurements (`wgpt bench`, `cargo bench`).
//!
//! Conventions (as in llm.c): dimensions are B, T, C, H, D, V in Rust and WGSL alike; launchers
//! take outputs first, then inputs, then shapes and scalars; tensors are f32 row-major.

pub mod bench;
pub mod cli;
pub mod config;
pub mod data;
pub mod error;
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
