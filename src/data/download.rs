//! Fetch nanochat's pretraining shards (nanochat `dataset.py`, spec §5.1): shard indices
//! 0..N-1 plus the dataset's last shard (the validation split), over HTTPS, with parallel
//! workers, retries with exponential backoff, resume of partial files (HTTP Range), an
//! integrity check (the file must open as parquet with a `text` column and every row group must
//! decode) and an atomic rename, so `shard_NNNNN.parquet` only ever appears complete.
//!
//! A transfer in progress lives in `shard_NNNNN.parquet.partial` next to the target; the next
//! attempt (or the next run) continues it with `Range: bytes=<size>-`. A server that ignores the
//! range (200 instead of 206) restarts the file. Existing complete shards are verified and kept;
//! a corrupt one is reported, never deleted.
//!
//! A directory that does not exist yet is filled under a sibling staging name
//! (`<dir>.partial`) and renamed into place only once every shard is in it, so a failed download
//! never leaves a directory that a rerun (or the trainer's "is there data?" check) would take for
//! a dataset. The staging directory keeps the partial files for the next attempt to continue, and
//! is removed when it holds nothing worth continuing.

use super::parquet_io::check_parquet_shard;
use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// A public nanochat dataset on the Hugging Face hub (`--dataset`, whose names and aliases clap
/// reads from here).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RemoteDataset {
    /// `karpathy/fineweb-edu-100b-shuffle`: shards 0..=1822 (the legacy default).
    #[value(aliases = ["fineweb", "fineweb_edu"])]
    FinewebEdu,
    /// `karpathy/climbmix-400b-shuffle`: shards 0..=6542 (nanochat's default since 2026-03).
    Climbmix,
}

impl RemoteDataset {
    pub fn parse(s: &str) -> Result<Self> {
        <Self as clap::ValueEnum>::from_str(s, true).map_err(|_| Error::File {
            path: "--dataset".into(),
            message: format!("unknown dataset `{s}`; expected fineweb-edu or climbmix"),
        })
    }

    pub fn base_url(self) -> &'static str {
        match self {
            RemoteDataset::FinewebEdu => {
                "https://huggingface.co/datasets/karpathy/fineweb-edu-100b-shuffle/resolve/main"
            }
            RemoteDataset::Climbmix => "https://huggingface.co/datasets/karpathy/climbmix-400b-shuffle/resolve/main",
        }
    }

    /// Index of the last shard, which is the validation split.
    pub fn max_shard(self) -> usize {
        match self {
            RemoteDataset::FinewebEdu => 1822,
            RemoteDataset::Climbmix => 6542,
        }
    }

    /// nanochat's local directory name under its base directory.
    pub fn dir_name(self) -> &'static str {
        match self {
            RemoteDataset::FinewebEdu => "base_data",
            RemoteDataset::Climbmix => "base_data_climbmix",
        }
    }
}

/// nanochat's shard file name.
pub fn shard_name(index: usize) -> String {
    format!("shard_{index:05}.parquet")
}

#[derive(Clone, Debug)]
pub struct DownloadOptions {
    /// Train shards to fetch: indices 0..shards (clamped to `max_shard`).
    pub shards: usize,
    /// The validation shard, always fetched; e.g. 6542 for ClimbMix.
    pub max_shard: usize,
    /// URL of the directory holding `shard_NNNNN.parquet`.
    pub base_url: String,
    pub dir: PathBuf,
    /// Parallel transfers, e.g. 4.
    pub workers: usize,
    /// Tries per shard, e.g. 5.
    pub attempts: u32,
    /// Wait before retry k (from 1) is `backoff * 2^(k-1)`, e.g. 2 s, 4 s, 8 s, 16 s.
    pub backoff: Duration,
    /// A read that stalls this long fails the attempt (which a retry then resumes).
    pub read_timeout: Duration,
}

impl DownloadOptions {
    pub fn new(dataset: RemoteDataset, shards: usize, dir: PathBuf) -> Self {
        DownloadOptions {
            shards,
            max_shard: dataset.max_shard(),
            base_url: dataset.base_url().to_string(),
            dir,
            workers: 4,
            attempts: 5,
            backoff: Duration::from_secs(2),
            read_timeout: Duration::from_secs(30),
        }
    }

    /// The shard indices to fetch: 0..N plus the validation shard.
    pub fn indices(&self) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.shards.min(self.max_shard)).collect();
        v.push(self.max_shard);
        v
    }
}

/// What happened to each shard.
#[derive(Clone, Debug, Default)]
pub struct DownloadReport {
    /// Shards fetched (fully or by resuming) in this run.
    pub fetched: Vec<PathBuf>,
    /// Shards already complete on disk (verified).
    pub present: Vec<PathBuf>,
    /// Bytes received in this run.
    pub bytes: u64,
    /// Attempts that failed and were retried.
    pub retries: usize,
}

fn file_err(path: &Path, message: String) -> Error {
    Error::File { path: path.to_path_buf(), message }
}

/// Why one attempt failed, and whether another attempt can help.
struct AttemptError {
    message: String,
    retry: bool,
}

fn retryable(message: String) -> AttemptError {
    AttemptError { message, retry: true }
}

/// Download the shards; fails (after every worker finishes) if any shard could not be fetched.
/// `log_line` receives progress lines.
pub fn download(opts: &DownloadOptions, log_line: &(dyn Fn(&str) + Sync)) -> Result<DownloadReport> {
    let shards_failed = |failures: &[String], hint: &str| {
        file_err(
            &opts.dir,
            format!(
                "{} of {} shard(s) failed:\n  {}\n  HINT: {hint}",
                failures.len(),
                opts.indices().len(),
                failures.join("\n  ")
            ),
        )
    };
    let Some(staging) = staging_dir(&opts.dir).filter(|_| !opts.dir.exists()) else {
        return download_into(opts, log_line).map_err(|f| match f {
            Failure::Setup(e) => e,
            Failure::Shards(v) => {
                shards_failed(&v, "rerun the same command to resume; partial files (.partial) are kept and continued")
            }
        });
    };
    let staged = DownloadOptions { dir: staging.clone(), ..opts.clone() };
    let report = match download_into(&staged, log_line) {
        Ok(r) => r,
        Err(Failure::Setup(e)) => return Err(e),
        Err(Failure::Shards(v)) => {
            // Nothing to continue from (every request failed before a byte arrived): leave no
            // trace. Otherwise the next run resumes from what is kept.
            let hint = if holds_no_data(&staging) {
                let _ = std::fs::remove_dir_all(&staging);
                format!("nothing was created; rerun the same command when {} is reachable", opts.base_url)
            } else {
                format!(
                    "rerun the same command to resume: {} is created only once every shard has arrived, and \
                     what arrived so far is kept in {} and continued",
                    opts.dir.display(),
                    staging.display()
                )
            };
            return Err(shards_failed(&v, &hint));
        }
    };
    std::fs::rename(&staging, &opts.dir).map_err(|e| {
        file_err(&opts.dir, format!("cannot move the finished download from {} into place: {e}", staging.display()))
    })?;
    let parent = opts.dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if let Ok(d) = File::open(parent) {
        let _ = d.sync_all(); // persist the rename
    }
    let moved = |v: Vec<PathBuf>| -> Vec<PathBuf> {
        v.into_iter().map(|p| p.file_name().map_or(p.clone(), |n| opts.dir.join(n))).collect()
    };
    Ok(DownloadReport { fetched: moved(report.fetched), present: moved(report.present), ..report })
}

/// `<dir>.partial` beside `dir`; `None` for a path without a final name (`/`, `..`).
fn staging_dir(dir: &Path) -> Option<PathBuf> {
    let name = dir.file_name()?;
    let mut staged = name.to_os_string();
    staged.push(".partial");
    Some(dir.with_file_name(staged))
}

/// Whether a staging directory holds no byte worth resuming from.
fn holds_no_data(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .is_ok_and(|entries| entries.flatten().all(|e| e.metadata().is_ok_and(|m| m.is_file() && m.len() == 0)))
}

/// Why [`download_into`] failed: before any transfer, or these shards (one message each).
enum Failure {
    Setup(Error),
    Shards(Vec<String>),
}

/// [`download`] into `opts.dir` itself, which is created if missing.
fn download_into(
    opts: &DownloadOptions,
    log_line: &(dyn Fn(&str) + Sync),
) -> std::result::Result<DownloadReport, Failure> {
    std::fs::create_dir_all(&opts.dir).map_err(|e| {
        Failure::Setup(file_err(
            &opts.dir,
            format!("cannot create the download directory: {e}\n  HINT: pass a writable --dir"),
        ))
    })?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_per_read(Some(opts.read_timeout))
        .user_agent(format!("wgpt/{}", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    // Workers pop from the back: reverse so shards go out in ascending order.
    let queue = Mutex::new(opts.indices().into_iter().rev().collect::<Vec<_>>());
    let report = Mutex::new(DownloadReport::default());
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let retries = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..opts.workers.max(1) {
            s.spawn(|| loop {
                let Some(index) = queue.lock().unwrap().pop() else {
                    return;
                };
                match fetch_shard(&agent, opts, index, log_line, &retries) {
                    Ok((path, got, true)) => {
                        let mut r = report.lock().unwrap();
                        r.fetched.push(path);
                        r.bytes += got;
                    }
                    Ok((path, _, false)) => report.lock().unwrap().present.push(path),
                    Err(e) => failures.lock().unwrap().push(e.to_string()),
                }
            });
        }
    });
    let mut report = report.into_inner().unwrap();
    report.retries = retries.load(Ordering::Relaxed);
    report.fetched.sort();
    report.present.sort();
    let failures = failures.into_inner().unwrap();
    if !failures.is_empty() {
        return Err(Failure::Shards(failures));
    }
    Ok(report)
}

/// Fetch one shard. Returns (path, bytes received, whether it was fetched now).
fn fetch_shard(
    agent: &ureq::Agent,
    opts: &DownloadOptions,
    index: usize,
    log_line: &(dyn Fn(&str) + Sync),
    retries: &AtomicUsize,
) -> Result<(PathBuf, u64, bool)> {
    let name = shard_name(index);
    let path = opts.dir.join(&name);
    let partial = opts.dir.join(format!("{name}.partial"));
    if path.exists() {
        check_parquet_shard(&path).map_err(|e| {
            file_err(
                &path,
                format!(
                    "is on disk but fails the integrity check ({e})\n  HINT: delete it and rerun to fetch it again"
                ),
            )
        })?;
        log_line(&format!("{name}: already present"));
        return Ok((path, 0, false));
    }
    let url = format!("{}/{name}", opts.base_url.trim_end_matches('/'));
    let mut received = 0u64;
    let mut last = String::new();
    for attempt in 1..=opts.attempts.max(1) {
        if attempt > 1 {
            retries.fetch_add(1, Ordering::Relaxed);
            let wait = opts.backoff.saturating_mul(1u32 << (attempt - 2).min(16));
            log_line(&format!(
                "{name}: attempt {}/{} failed ({last}); retrying in {:.1} s",
                attempt - 1,
                opts.attempts,
                wait.as_secs_f64()
            ));
            std::thread::sleep(wait);
        }
        match attempt_once(agent, &url, &partial, &mut received) {
            Ok(()) => {}
            Err(e) if e.retry => {
                last = e.message;
                continue;
            }
            Err(e) => return Err(file_err(&path, format!("{url}: {}", e.message))),
        }
        // Complete: verify, then publish atomically.
        if let Err(e) = check_parquet_shard(&partial) {
            last = format!("downloaded file failed the integrity check: {e}");
            let _ = std::fs::remove_file(&partial); // bad bytes cannot be resumed; start over
            continue;
        }
        std::fs::rename(&partial, &path)
            .map_err(|e| file_err(&path, format!("cannot rename the finished download into place: {e}")))?;
        if let Ok(d) = File::open(&opts.dir) {
            let _ = d.sync_all(); // persist the rename
        }
        log_line(&format!("{name}: done ({} bytes this run)", received));
        return Ok((path, received, true));
    }
    let kept = std::fs::metadata(&partial).map_or(0, |m| m.len());
    let kept =
        if kept > 0 { format!("; {kept} bytes kept in {} for the next run", partial.display()) } else { String::new() };
    Err(file_err(&path, format!("{url}: giving up after {} attempts (last: {last}){kept}", opts.attempts)))
}

/// One request: continue `partial` from its current size. Ok when the server says the file is
/// complete.
fn attempt_once(
    agent: &ureq::Agent,
    url: &str,
    partial: &Path,
    received: &mut u64,
) -> std::result::Result<(), AttemptError> {
    let have = std::fs::metadata(partial).map_or(0, |m| m.len());
    let mut req = agent.get(url);
    if have > 0 {
        req = req.header("Range", format!("bytes={have}-"));
    }
    let mut resp = req.call().map_err(|e| retryable(format!("request failed: {e}")))?;
    let status = resp.status().as_u16();
    let total: Option<u64>;
    let append = match status {
        206 => {
            // Content-Range: bytes <start>-<end>/<total>
            let cr = resp.headers().get("content-range").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            let start = cr.strip_prefix("bytes ").and_then(|r| r.split('-').next()).and_then(|s| s.parse::<u64>().ok());
            total = cr.rsplit('/').next().and_then(|s| s.parse::<u64>().ok());
            if start != Some(have) {
                let _ = std::fs::remove_file(partial);
                return Err(retryable(format!("server answered range {have}- with `{cr}`; restarting the file")));
            }
            true
        }
        200 => {
            total = resp.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|s| s.parse().ok());
            false // the server ignored the range (or there was none): start from zero
        }
        416 if have > 0 => {
            // Nothing left past `have`: the partial file is already complete.
            return Ok(());
        }
        404 | 410 => {
            return Err(AttemptError {
                message: format!("HTTP {status}: no such shard\n  HINT: check --base-url and --shards (this dataset may have fewer shards)"),
                retry: false,
            })
        }
        400..=499 if status != 408 && status != 429 => {
            return Err(AttemptError { message: format!("HTTP {status}"), retry: false });
        }
        _ => return Err(retryable(format!("HTTP {status}"))),
    };
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(partial)
        .map_err(|e| AttemptError { message: format!("cannot write {}: {e}", partial.display()), retry: false })?;
    let mut reader = resp.body_mut().as_reader();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = if append { have } else { 0 };
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                // Keep what arrived; the next attempt resumes after it.
                let _ = file.sync_data();
                return Err(retryable(format!("connection lost after {size} bytes: {e}")));
            }
        };
        file.write_all(&buf[..n])
            .map_err(|e| AttemptError { message: format!("cannot write {}: {e}", partial.display()), retry: false })?;
        size += n as u64;
        *received += n as u64;
    }
    file.sync_all()
        .map_err(|e| AttemptError { message: format!("cannot sync {}: {e}", partial.display()), retry: false })?;
    if let Some(t) = total {
        if size != t {
            return Err(retryable(format!("connection closed at {size} of {t} bytes")));
        }
    }
    Ok(())
}
