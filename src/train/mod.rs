//! Training: schedules and hyperparameter transfer ([`schedule`]), the GPU optimizer ([`optimizer`]).

pub mod optimizer;
pub mod schedule;

pub use schedule::Hyper;
