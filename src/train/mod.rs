//! Training: schedules and hyperparameter transfer ([`schedule`]), peak FLOPS for MFU ([`mfu`]),
//! the report's chart ([`plot`]).

pub mod checkpoint;
pub mod mfu;
pub mod plot;
pub mod schedule;

pub use schedule::Hyper;
