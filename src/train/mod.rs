//! Training: schedules and hyperparameter transfer ([`schedule`]), the GPU optimizer ([`optimizer`]),
//! peak FLOPS for MFU ([`mfu`]), the report's chart ([`plot`]).

pub mod checkpoint;
pub mod mfu;
pub mod optimizer;
pub mod plot;
pub mod schedule;

pub use schedule::Hyper;
