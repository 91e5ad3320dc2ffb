//! Training: schedules and hyperparameter transfer ([`schedule`]), the GPU optimizer
//! ([`optimizer`]), checkpoints ([`checkpoint`]), the loop ([`trainer`]), evaluation samples
//! ([`sampling`]), peak FLOPS for MFU ([`mfu`]), and the run report ([`report`], [`plot`]).

pub mod checkpoint;
pub mod mfu;
pub mod optimizer;
pub mod plot;
pub mod report;
pub mod rundir;
pub mod sampling;
pub mod schedule;
pub mod trainer;

pub use schedule::Hyper;
