//! Training: schedules and hyperparameter transfer ([`schedule`]).

pub mod schedule;

pub use schedule::Hyper;
