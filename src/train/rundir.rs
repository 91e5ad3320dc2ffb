//! The run directory: one process at a time, and one run's history in it.
//!
//! - [`RunDir::lock`] takes an exclusive `flock` on the directory itself for the life of the
//!   process. The kernel drops it when the process dies, however it dies, so a SIGKILL never
//!   leaves a stale lock; `.owner` (pid, start time, command) only says who holds it.
//! - A fresh run refuses a directory holding an earlier run's files ([`RunDir::check_fresh`]):
//!   appending to its `metrics.jsonl` would put two runs in one report. `--archive-old` moves
//!   them into `archive/<time>/` instead.
//! - A resumed run first cuts `metrics.jsonl` back to the checkpoint it resumes from
//!   ([`trim_metrics`]): rows written after that save, before the crash, belong to a history
//!   that no longer happened.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

/// Files a run writes at the top of its directory (plus `checkpoints/`).
pub const RUN_FILES: [&str; 8] = [
    "metrics.jsonl",
    "report.md",
    "report.svg",
    "config.toml",
    "command.txt",
    "tokenizer.json",
    "token_bytes.json",
    "trained_on.json",
];

pub struct RunDir {
    pub path: PathBuf,
    /// Held open for the lock; closing it (at exit, or when the process dies) releases it.
    _lock: std::fs::File,
}

impl RunDir {
    /// Create the directory if needed and lock it, or say which process holds it.
    pub fn lock(path: &Path, command_line: &str) -> anyhow::Result<RunDir> {
        std::fs::create_dir_all(path).with_context(|| format!("create the run directory {}", path.display()))?;
        let dir = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: flock on a descriptor we own; no memory is involved.
            let r = unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if r != 0 {
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                    let owner = std::fs::read_to_string(path.join(".owner")).unwrap_or_default();
                    let pid = owner
                        .lines()
                        .find_map(|l| l.strip_prefix("pid "))
                        .map_or("another process".to_string(), |p| format!("pid {p}"));
                    bail!(
                        "{} is in use by {pid}: another wgpt train is running in it\n  HINT: wait for it to finish, stop it \
                         (kill -INT {}), or pass --run-dir DIR for a separate run",
                        path.display(),
                        pid.trim_start_matches("pid ")
                    );
                }
                bail!("cannot lock {}: {err}", path.display());
            }
        }
        let owner = format!(
            "pid {}\nstarted {}\ncommand {command_line}\n",
            std::process::id(),
            super::report::humantime(std::time::SystemTime::now())
        );
        crate::util::write_atomic(&path.join(".owner"), owner.as_bytes())
            .with_context(|| format!("write {}", path.join(".owner").display()))?;
        Ok(RunDir { path: path.to_path_buf(), _lock: dir })
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.path.join(p)
    }

    /// The earlier run's files here, if any (checkpoints listed as `checkpoints/`).
    pub fn leftovers(&self) -> Vec<String> {
        let mut v: Vec<String> =
            RUN_FILES.iter().filter(|f| self.path.join(f).exists()).map(|f| f.to_string()).collect();
        if super::checkpoint::checkpoints_dir(&self.path).exists() {
            v.push("checkpoints/".into());
        }
        v
    }

    /// A fresh run starts on an empty directory: refuse one with an earlier run's files, or move
    /// them into `archive/<time>/` when `archive` is set.
    pub fn check_fresh(&self, archive: bool) -> anyhow::Result<()> {
        let old = self.leftovers();
        if old.is_empty() {
            return Ok(());
        }
        if archive {
            let dest = archive_dir(&self.path.join("archive"));
            std::fs::create_dir_all(&dest).with_context(|| format!("create {}", dest.display()))?;
            for f in &old {
                let name = f.trim_end_matches('/');
                std::fs::rename(self.path.join(name), dest.join(name))
                    .with_context(|| format!("move {} into {}", self.path.join(name).display(), dest.display()))?;
            }
            println!("archived the earlier run's {} into {}", old.join(", "), dest.display());
            return Ok(());
        }
        // A run killed before its first checkpoint leaves an empty checkpoints/: that is files
        // without a checkpoint (the message below), not something --resume can continue.
        if !super::checkpoint::list(&self.path).is_empty() {
            bail!(
                "{} already holds checkpoints\n  HINT: pass --resume to continue it, --run-dir DIR for a new run, or \
                 --archive-old to move the earlier run aside and start over here",
                self.path.display()
            );
        }
        bail!(
            "{} holds an earlier run's files ({}) but no checkpoint to resume from; a new run here would mix the two\n  \
             HINT: pass --run-dir DIR for a new run, or --archive-old to move those files into {}/archive/ and start over",
            self.path.display(),
            old.join(", "),
            self.path.display()
        );
    }
}

/// `<root>/20261202-093000` (UTC, sortable), with a `-2`, `-3`, … suffix if that exists.
fn archive_dir(root: &Path) -> PathBuf {
    let stamp = super::report::humantime(std::time::SystemTime::now());
    let digits: String = stamp.chars().filter(|c| c.is_ascii_digit()).collect();
    let (date, time) = digits.split_at(8.min(digits.len()));
    let mut dir = root.join(format!("{date}-{time}"));
    let mut n = 1;
    while dir.exists() {
        n += 1;
        dir = root.join(format!("{date}-{time}-{n}"));
    }
    dir
}

/// Cut `metrics.jsonl` back to what a run resumed at `step` has already lived through: training
/// rows of steps before `step`, and evaluation/sample/event rows up to `step` (only before it when
/// `redo_evals_at_step`, i.e. the checkpoint was taken before its step's evaluation finished).
/// A torn last line (a kill mid-write) goes too. Returns how many rows were dropped.
pub fn trim_metrics(run_dir: &Path, step: usize, redo_evals_at_step: bool) -> anyhow::Result<usize> {
    let path = run_dir.join("metrics.jsonl");
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(0) };
    let mut kept = String::new();
    let mut dropped = 0;
    for line in text.lines() {
        let keep = serde_json::from_str::<serde_json::Value>(line).ok().is_some_and(|v| {
            let Some(s) = v["step"].as_u64().map(|s| s as usize) else { return false };
            if v.get("loss").is_some() {
                s < step
            } else if redo_evals_at_step {
                s < step || (s == step && v.get("event").is_some())
            } else {
                s <= step
            }
        });
        if keep {
            kept += line;
            kept += "\n";
        } else {
            dropped += 1;
        }
    }
    if dropped > 0 {
        crate::util::write_atomic(&path, kept.as_bytes()).with_context(|| format!("rewrite {}", path.display()))?;
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("wgpt-rundir-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_second_lock_is_refused_with_the_holders_pid_and_released_on_drop() {
        let d = scratch("lock");
        let a = RunDir::lock(&d, "first").unwrap();
        // flock locks belong to open file descriptions, so a second open in this process conflicts
        // exactly as a second process would.
        let e = RunDir::lock(&d, "second").err().unwrap().to_string();
        assert!(e.contains("in use by pid") && e.contains(&std::process::id().to_string()), "{e}");
        drop(a);
        let _b = RunDir::lock(&d, "third").unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_fresh_run_refuses_leftovers_or_archives_them() {
        let d = scratch("fresh");
        let r = RunDir::lock(&d, "t").unwrap();
        r.check_fresh(false).unwrap();
        std::fs::write(r.join("metrics.jsonl"), "{\"step\":0,\"loss\":1.0}\n").unwrap();
        let e = r.check_fresh(false).unwrap_err().to_string();
        assert!(e.contains("metrics.jsonl") && e.contains("--archive-old") && e.contains("--run-dir"), "{e}");
        r.check_fresh(true).unwrap();
        assert!(!r.join("metrics.jsonl").exists());
        let archived: Vec<_> = std::fs::read_dir(r.join("archive")).unwrap().flatten().collect();
        assert_eq!(archived.len(), 1);
        assert!(archived[0].path().join("metrics.jsonl").is_file());
        r.check_fresh(false).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// A run killed before its first checkpoint leaves an empty `checkpoints/`: a fresh start is
    /// told there is nothing to resume (not that checkpoints exist, which --resume would then deny)
    /// and --archive-old moves the leftovers aside.
    #[test]
    fn an_empty_checkpoints_folder_is_no_checkpoint() {
        let d = scratch("empty-ckpt");
        let r = RunDir::lock(&d, "t").unwrap();
        std::fs::create_dir_all(super::super::checkpoint::checkpoints_dir(&d)).unwrap();
        std::fs::write(r.join("metrics.jsonl"), "{\"step\":0,\"loss\":1.0}\n").unwrap();
        let e = r.check_fresh(false).unwrap_err().to_string();
        assert!(e.contains("no checkpoint to resume from") && e.contains("--archive-old"), "{e}");
        std::fs::create_dir_all(super::super::checkpoint::checkpoints_dir(&d).join("step_000001")).unwrap();
        let e = r.check_fresh(false).unwrap_err().to_string();
        assert!(e.contains("already holds checkpoints") && e.contains("--resume"), "{e}");
        r.check_fresh(true).unwrap();
        assert!(r.leftovers().is_empty());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn metrics_are_trimmed_to_the_resumed_checkpoint() {
        let d = scratch("trim");
        std::fs::create_dir_all(&d).unwrap();
        let rows = [
            r#"{"step":0,"val_bpb":3.0}"#,
            r#"{"step":0,"loss":5.0}"#,
            r#"{"step":1,"loss":4.0}"#,
            r#"{"step":2,"val_bpb":2.5}"#,
            r#"{"step":2,"samples":[]}"#,
            r#"{"step":2,"loss":3.5}"#,
            r#"{"step":3,"loss":3.0}"#,
            r#"{"step":3,"lo"#,
        ];
        std::fs::write(d.join("metrics.jsonl"), rows.join("\n")).unwrap();
        assert_eq!(trim_metrics(&d, 2, false).unwrap(), 3);
        let text = std::fs::read_to_string(d.join("metrics.jsonl")).unwrap();
        assert_eq!(text.lines().collect::<Vec<_>>(), rows[..5].to_vec());
        // A checkpoint taken when step 2's evaluation was interrupted: its evaluation is redone.
        assert_eq!(trim_metrics(&d, 2, true).unwrap(), 2);
        let text = std::fs::read_to_string(d.join("metrics.jsonl")).unwrap();
        assert_eq!(text.lines().collect::<Vec<_>>(), rows[..3].to_vec());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
