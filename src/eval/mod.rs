//! Evaluation of a model on the GPU.

pub mod scorer;
