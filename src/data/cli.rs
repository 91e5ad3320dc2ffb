//! `wgpt data ...` and the dataset flags shared by every command that reads text.

use super::dataset::{DataConfig, Dataset, Format, Split};
use super::download::{download, DownloadOptions, RemoteDataset};
use super::parquet_io::check_parquet_shard;
use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where the documents come from (shared by `tokenizer train`, `data info`, ...).
#[derive(Args, Debug, Clone, Default)]
pub struct DataArgs {
    /// Data directory (shards; the last file is the validation split) or a single file. Default:
    /// $WGPT_DATA, else <base>/base_data_climbmix, else <base>/base_data (<base> = $WGPT_BASE_DIR
    /// or ~/.cache/wgpt).
    #[arg(long, env = "WGPT_DATA")]
    pub data: Option<PathBuf>,
    /// File format (default: by file extension).
    #[arg(long, value_enum, ignore_case = true)]
    pub format: Option<Format>,
    /// Split .txt files into documents at this string; \n, \r, \t and \\ are understood, e.g.
    /// '\n\n'. Default: each .txt file is one document.
    #[arg(long)]
    pub txt_delimiter: Option<String>,
    /// Parquet column / jsonl field holding the document text.
    #[arg(long, default_value = "text")]
    pub text_field: String,
    /// Hold out the last fraction of documents as the validation split (what a single-file corpus
    /// needs), instead of the last file.
    #[arg(long)]
    pub val_fraction: Option<f64>,
}

/// Turn the escapes a shell makes awkward (`\n`, `\r`, `\t`, `\\`) into characters.
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some(o) => {
                out.push('\\');
                out.push(o);
            }
            None => out.push('\\'),
        }
    }
    out
}

impl DataArgs {
    /// The data path, resolving the default as nanochat does (ClimbMix, else the legacy dir).
    pub fn path(&self) -> PathBuf {
        if let Some(p) = &self.data {
            return p.clone();
        }
        let base = super::base_dir();
        let climb = base.join(RemoteDataset::Climbmix.dir_name());
        let legacy = base.join(RemoteDataset::FinewebEdu.dir_name());
        if !climb.exists() && legacy.exists() {
            legacy
        } else {
            climb
        }
    }

    pub fn config(&self) -> crate::Result<DataConfig> {
        Ok(DataConfig {
            path: self.path(),
            format: self.format,
            txt_delimiter: self.txt_delimiter.as_deref().map(unescape),
            text_field: self.text_field.clone(),
            val_fraction: self.val_fraction,
        })
    }

    pub fn open(&self) -> crate::Result<Dataset> {
        let cfg = self.config()?;
        let ds = Dataset::open(&cfg)?;
        log::info!("data: {}", ds.describe());
        Ok(ds)
    }
}

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Fetch nanochat's pretraining shards 0..N-1 plus the validation shard (parallel, retried,
    /// resumable, verified).
    Download(DownloadArgs),
    /// Open a dataset, check every file and print its files, chunks and splits.
    Info {
        #[command(flatten)]
        data: DataArgs,
        /// Also decode every row group of every parquet shard (a full integrity check).
        #[arg(long)]
        verify: bool,
    },
}

#[derive(Args, Debug)]
pub struct DownloadArgs {
    /// Number of train shards (indices 0..N-1); the validation shard is always added.
    #[arg(long, short = 'n')]
    pub shards: usize,
    /// Which of nanochat's datasets.
    #[arg(long, value_enum, ignore_case = true, default_value_t = RemoteDataset::Climbmix)]
    pub dataset: RemoteDataset,
    /// Where the shards are served (default: the dataset's Hugging Face URL).
    #[arg(long)]
    pub base_url: Option<String>,
    /// Index of the validation shard (default: the dataset's last shard).
    #[arg(long)]
    pub max_shard: Option<usize>,
    /// Target directory (default: <base>/base_data_climbmix or <base>/base_data).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Parallel transfers.
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// Tries per shard.
    #[arg(long, default_value_t = 5)]
    pub attempts: u32,
    /// Seconds before the first retry; doubles each retry.
    #[arg(long, default_value_t = 2.0)]
    pub backoff_secs: f64,
}

pub fn run(cmd: DataCommand) -> anyhow::Result<i32> {
    match cmd {
        DataCommand::Download(a) => {
            let ds = a.dataset;
            let dir = a.dir.clone().unwrap_or_else(|| super::base_dir().join(ds.dir_name()));
            let mut opts = DownloadOptions::new(ds, a.shards, dir);
            if let Some(u) = a.base_url {
                opts.base_url = u;
            }
            if let Some(m) = a.max_shard {
                opts.max_shard = m;
            }
            opts.workers = a.workers;
            opts.attempts = a.attempts;
            opts.backoff = Duration::from_secs_f64(a.backoff_secs.max(0.0));
            println!(
                "downloading {} shard(s) from {} into {} with {} worker(s)",
                opts.indices().len(),
                opts.base_url,
                opts.dir.display(),
                opts.workers
            );
            let t0 = Instant::now();
            let report = download(&opts, &|line| println!("{line}"))?;
            println!(
                "done: {} fetched ({:.1} MB), {} already present, {} retried attempt(s), {:.1} s",
                report.fetched.len(),
                report.bytes as f64 / 1e6,
                report.present.len(),
                report.retries,
                t0.elapsed().as_secs_f64()
            );
            Ok(0)
        }
        DataCommand::Info { data, verify } => {
            let ds = Dataset::open(&data.config()?)?;
            println!("{}", ds.describe());
            for (i, f) in ds.files().iter().enumerate() {
                let role = if ds.units(Split::Val).iter().any(|u| u.file == i) && data.val_fraction.is_none() {
                    "  (val)"
                } else {
                    ""
                };
                println!(
                    "  {:>4}  {}  {:?}, {} chunk(s), {} document(s){role}",
                    i,
                    f.path.display(),
                    f.format,
                    f.chunk_docs.len(),
                    f.docs()
                );
                if verify && f.format == Format::Parquet {
                    let s = check_parquet_shard(&f.path).with_context(|| format!("verifying {}", f.path.display()))?;
                    println!("        verified: {} row group(s), {} row(s)", s.row_groups, s.rows);
                }
            }
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn unescape_handles_shell_escapes() {
        assert_eq!(super::unescape(r"\n\n"), "\n\n");
        assert_eq!(super::unescape(r"a\tb\\n\q"), "a\tb\\n\\q");
    }
}
