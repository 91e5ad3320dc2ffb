//! Evaluation of base models, as nanochat's `core_eval.py` and `base_eval.py` do it, scored on the
//! GPU: the CPU half (task files, few-shot draws, prompts and token spans) reproduces nanochat
//! exactly and is tested without a device; the GPU half batches every sequence of a task through
//! the training model's forward kernels.
//!
//! - [`pyrandom`]: CPython's `random.Random` (shuffle, sample), bit for bit.
//! - [`tasks`]: the CORE task list (heavy.yaml, baselines CSV, the 22-task list) and item files.
//! - [`prompts`]: the Jinja templates, rendered by hand; token sequences, spans and cropping.
//! - [`scorer`]: batched scoring on the GPU (continuation losses and greedy matches).
//! - [`core`]: the CORE metric over a suite of tasks; [`mmlu`]: MMLU 5-shot items, scored on the
//!   multiple-choice path.
//! - [`cli`]: `wgpt eval core` and `wgpt eval mmlu`.

pub mod cli;
pub mod core;
pub mod mmlu;
pub mod prompts;
pub mod pyrandom;
pub mod scorer;
pub mod tasks;
