//! The nanochat GPT: shape derivation ([`config`]), parameter inventory and arena layout
//! ([`params`]), the memory plan ([`memory`]), the model on the GPU with its recorded micro-step
//! ([`gpu`]), KV-cache inference ([`engine`]) and weights on disk in nanochat's names
//! ([`checkpoint`]).

pub mod checkpoint;
pub mod config;
pub mod engine;
pub mod gpu;
pub mod memory;
pub mod params;

pub use config::{GptConfig, ModelSpec};
pub use params::{BlockParams, OptGroup, ParamCounts, ParamLayout, ParamSpec, ParamTensors, ValueEmbedParams};
