//! CPU references: the specification every GPU kernel is checked against.
//!
//! One module per kernel family, mirroring `crate::kernels`, with the same function names and
//! argument order (minus the stream; host values where the GPU reads a parameter from the arena).
//! Plain loops, no SIMD and no cleverness, with f64 accumulation so the reference's own rounding
//! error is negligible next to the kernel's.
//!
//! The model-level references are generic over [`Real`]: instantiated with f32 they check a GPU
//! kernel on the kernel's own inputs; instantiated with f64 they make up the reference model
//! ([`model`]), whose hand-written backward is checked against finite differences.
//!
//! Gradient convention (as llm.c): parameter gradients accumulate (`+=`), activation gradients
//! are written (`=`) unless a function says it accumulates.

pub mod adamw;
pub mod argmax;
pub mod attention;
pub mod cast;
pub mod cross_entropy;
pub mod elementwise;
pub mod embedding;
pub mod grad_norm;
pub mod matmul;
pub mod model;
pub mod muon;
pub mod reduce;
pub mod relu2;
pub mod residual;
pub mod rmsnorm;
pub mod rope;
pub mod smear;
pub mod ve_gate;

/// A float type a reference can read and write; all arithmetic happens in f64.
pub trait Real: Copy + Default + PartialEq + PartialOrd + std::fmt::Debug + Send + Sync + 'static {
    fn f(self) -> f64;
    fn of(x: f64) -> Self;
}

impl Real for f32 {
    fn f(self) -> f64 {
        self as f64
    }
    fn of(x: f64) -> Self {
        x as f32
    }
}

impl Real for f64 {
    fn f(self) -> f64 {
        self
    }
    fn of(x: f64) -> Self {
        x
    }
}

/// σ(x) = 1 / (1 + e^−x)
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}
