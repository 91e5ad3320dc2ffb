//! The nanochat GPT: shape derivation ([`config`]), parameter inventory and arena layout
//! ([`params`]).

pub mod checkpoint;
pub mod config;
pub mod engine;
pub mod gpu;
pub mod memory;
pub mod params;

pub use config::{GptConfig, ModelMatmul, ModelSpec};
pub use params::{BlockParams, OptGroup, ParamCounts, ParamLayout, ParamSpec, ParamTensors, ValueEmbedParams};
