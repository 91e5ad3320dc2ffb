//! The GPU runtime: adapter selection, the context that owns device, pipelines and buffers, tensor
//! views, and the variant autotuner.

pub mod adapters;
pub mod autotune;
pub mod context;
pub mod coop;
pub mod immediates;
pub mod pipelines;
pub mod tensor;

pub use autotune::AutotuneMode;
pub use context::{Dispatch, GpuContext, GpuOptions};
pub use pipelines::{Kernel, Overrides, Shader, Specialization};
pub use tensor::{DType, GpuTensor, Window};
