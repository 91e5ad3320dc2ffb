//! CPU references: the specification every GPU kernel is checked against.
//!
//! One module per kernel family, mirroring `crate::kernels`, with the same function names and
//! argument order (minus the stream). Plain loops, no SIMD and no cleverness, with f64
//! accumulation so the reference's own rounding error is negligible next to the kernel's.

pub mod elementwise;
pub mod matmul;
pub mod reduce;
