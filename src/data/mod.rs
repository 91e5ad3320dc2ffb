//! Everything between text on disk and the `(inputs, targets)` batches the trainer consumes
//! (nanochat `dataset.py` and `dataloader.py`, spec §5.1 and §5.3).
//!
//! - [`dataset`]: a data directory (or single file) of parquet shards (`shard_NNNNN.parquet`, one
//!   string column `text`), `.jsonl` (a `text` field per line) or `.txt` (one document per file, or
//!   documents separated by `--txt-delimiter`). With two or more files the last in sorted order is
//!   the validation split, as in nanochat; `--val-fraction` instead holds out the last fraction of
//!   documents (what a single-file corpus needs).
//! - [`loader`]: the BOS-aligned best-fit loader, tokenising on background threads, with an exact
//!   resume state.
//! - [`download`]: fetching nanochat's public shards (parallel, retried, resumable, verified).
//! - [`bench`]: `wgpt bench data`.
//!
//! The trainer's view (a later issue):
//!
//! ```no_run
//! # fn main() -> wgpt::Result<()> {
//! use std::sync::Arc;
//! use wgpt::data::{DataConfig, Dataset, Loader, LoaderOptions, LoaderState, Split};
//! use wgpt::tokenizer::Tokenizer;
//!
//! let dataset = Arc::new(Dataset::open(&DataConfig::new("base_data"))?);
//! let tokenizer = Arc::new(Tokenizer::from_file("tokenizer".as_ref())?);
//! tokenizer.check_vocab_size(32768)?; // the model's vocab_size
//! let saved: Option<LoaderState> = None; // from the checkpoint's meta when resuming
//! let opts = LoaderOptions::new(8, 2048); // B, T
//! let mut train = Loader::new(dataset.clone(), tokenizer.clone(), Split::Train, opts.clone(), saved)?;
//! let batch = train.next_batch()?; // inputs, targets: B*T i32 each, row-major
//! let state = train.state(); // serde; store it with the checkpoint
//! # let _ = (batch, state); Ok(()) }
//! ```

pub mod bench;
pub mod cli;
pub mod dataset;
pub mod download;
pub mod loader;
mod parquet_io;
mod text_io;

pub use dataset::{DataConfig, Dataset, DocReader, Format, Split};
pub use download::{download, DownloadOptions, RemoteDataset};
pub use loader::{Batch, Loader, LoaderOptions, LoaderState};
pub use parquet_io::{check_parquet_shard, write_text_parquet, ShardSummary};

use std::path::PathBuf;

/// Where downloaded shards and the trained tokenizer live by default: `$WGPT_BASE_DIR`, else
/// `~/.cache/wgpt` (nanochat's is `~/.cache/nanochat`).
pub fn base_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("WGPT_BASE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("wgpt")
}
