//! The CPU half of nanochat's CORE evaluation (the DCLM CORE metric) and of base-model MMLU:
//! loading the task files, drawing few-shot examples and rendering prompts exactly as nanochat's
//! `nanochat/core_eval.py` and `scripts/base_eval.py` do, and turning prompts into token sequences
//! with the spans to score. The GPU scoring lives elsewhere; everything here is deterministic CPU
//! work, so it is tested against CPython's and Jinja's outputs without a device.
//!
//! - [`pyrandom`]: CPython's `random.Random` (shuffle, sample), bit for bit.
//! - [`tasks`]: the CORE task list (heavy.yaml, baselines CSV, the 22-task list) and item files.
//! - [`prompts`]: the Jinja templates, rendered by hand; token sequences, spans and cropping.
//! - [`mmlu`]: MMLU 5-shot items from the Hendrycks CSVs, scored on the multiple-choice path.

pub mod mmlu;
pub mod prompts;
pub mod pyrandom;
pub mod tasks;
