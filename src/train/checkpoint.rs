//! Training checkpoints: `<run>/checkpoints/step_NNNNNN/` holding
//! - `model.safetensors` — every parameter under nanochat's name (loads into nanochat unchanged),
//! - `optim.safetensors` — the optimizer state, by name,
//! - `meta.json` — nanochat's meta layout (`step`, `val_bpb`, `model_config`, `user_config`,
//!   `device_batch_size`, `max_seq_len`, `total_batch_size`, `dataloader_state_dict`,
//!   `loop_state`) plus wgpt's own fields, among them `files`: the byte length and checksum of
//!   the two safetensors files, so a torn or bit-flipped file is caught on load,
//!
//! and `<run>/checkpoints/latest` naming the newest complete one.
//!
//! Atomicity: a checkpoint is written into a hidden temporary directory, every file fsynced, the
//! directory renamed into place, and only then is `latest` replaced (itself atomically). A kill at
//! any moment leaves the previous checkpoint and `latest` intact; a half-written directory is
//! never named by `latest` and is removed by the next save. A save that fails (a full disk)
//! removes its temporary directory before returning the error, so the space is free again.
//!
//! Recovery ([`find_resumable`]): `--resume` takes the newest checkpoint that loads completely
//! (`latest` first, then every `step_*` from the newest down), saying which ones it passed over
//! and why; `--resume-from step_NNNNNN` names one.

use crate::error::{Error, Result};
use crate::model::checkpoint::{serialize_f32, weights_bytes, weights_from_bytes};
use crate::model::ParamLayout;
use crate::util::{checksum64, write_atomic};
use safetensors::SafeTensors;
use std::path::{Path, PathBuf};

/// A named f32 buffer of optimizer state.
pub type StateTensor = (String, Vec<f32>);

const MODEL_FILE: &str = "model.safetensors";
const OPTIM_FILE: &str = "optim.safetensors";
const META_FILE: &str = "meta.json";

pub fn checkpoints_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

pub fn step_name(step: usize) -> String {
    format!("step_{step:06}")
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::File { path: path.to_path_buf(), message: e.to_string() }
}

fn fsync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|f| f.sync_all()).map_err(|e| io(dir, e))
}

/// `WGPT_FAULT_DISK_BYTES=N`: a checkpoint save behaves as if the disk filled up after N bytes of
/// it (the file being written is left partial, the write fails with ENOSPC). Fault injection for
/// the tests of the full-disk path; a real small filesystem needs root, and a file-size rlimit
/// also breaks drivers that back device memory with files (Mesa 26 lavapipe).
fn fault_disk_bytes() -> Option<u64> {
    std::env::var("WGPT_FAULT_DISK_BYTES").ok().and_then(|v| v.trim().parse().ok())
}

/// Write `bytes` to a new file and fsync it; `written` counts this save's bytes so far.
fn write_synced(path: &Path, bytes: &[u8], written: &mut u64) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(|e| io(path, e))?;
    if let Some(limit) = fault_disk_bytes() {
        let room = limit.saturating_sub(*written) as usize;
        if room < bytes.len() {
            let _ = f.write_all(&bytes[..room]);
            *written = limit;
            return Err(io(path, std::io::Error::from_raw_os_error(libc::ENOSPC)));
        }
    }
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| io(path, e))?;
    *written += bytes.len() as u64;
    Ok(())
}

fn file_record(bytes: &[u8]) -> serde_json::Value {
    serde_json::json!({"bytes": bytes.len(), "checksum": format!("{:016x}", checksum64(bytes))})
}

/// Write a complete checkpoint for `step` and point `latest` at it. On failure nothing of this
/// save is left on disk (the previous checkpoints and `latest` are untouched).
pub fn save(
    run_dir: &Path,
    step: usize,
    layout: &ParamLayout,
    params: &[f32],
    optim: &[StateTensor],
    meta: &serde_json::Value,
) -> Result<PathBuf> {
    let root = checkpoints_dir(run_dir);
    std::fs::create_dir_all(&root).map_err(|e| io(&root, e))?;
    // Leftovers of an interrupted save are never referenced; clear them first.
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(".tmp-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let tmp = root.join(format!(".tmp-{}-{}", step_name(step), std::process::id()));
    let written = write_into(&tmp, layout, params, optim, meta);
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let dest = root.join(step_name(step));
    let placed = if dest.exists() {
        // Re-saving a step (a resumed run reaching it again): replace the old one whole.
        let old = root.join(format!(".tmp-old-{}-{}", step_name(step), std::process::id()));
        std::fs::rename(&dest, &old).map_err(|e| io(&dest, e))?;
        let r = std::fs::rename(&tmp, &dest).map_err(|e| io(&dest, e));
        let _ = std::fs::remove_dir_all(&old);
        r
    } else {
        std::fs::rename(&tmp, &dest).map_err(|e| io(&dest, e))
    };
    if let Err(e) = placed {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    fsync_dir(&root)?;
    write_atomic(&root.join("latest"), step_name(step).as_bytes()).map_err(|e| io(&root, e))?;
    Ok(dest)
}

fn write_into(
    tmp: &Path,
    layout: &ParamLayout,
    params: &[f32],
    optim: &[StateTensor],
    meta: &serde_json::Value,
) -> Result<()> {
    std::fs::create_dir_all(tmp).map_err(|e| io(tmp, e))?;
    let mut written = 0u64;
    let model_path = tmp.join(MODEL_FILE);
    let model = weights_bytes(&model_path, layout, params)?;
    write_synced(&model_path, &model, &mut written)?;
    let model_record = file_record(&model);
    drop(model);
    let optim_path = tmp.join(OPTIM_FILE);
    let named: Vec<(String, Vec<usize>, &[f32])> =
        optim.iter().map(|(n, v)| (n.clone(), vec![v.len()], v.as_slice())).collect();
    let optim_bytes = serialize_f32(&optim_path, &named, None)?;
    write_synced(&optim_path, &optim_bytes, &mut written)?;
    let mut meta = meta.clone();
    if let Some(obj) = meta.as_object_mut() {
        obj.insert(
            "files".into(),
            serde_json::json!({MODEL_FILE: model_record, OPTIM_FILE: file_record(&optim_bytes)}),
        );
    }
    drop(optim_bytes);
    let text = serde_json::to_string_pretty(&meta).unwrap();
    write_synced(&tmp.join(META_FILE), text.as_bytes(), &mut written)?;
    fsync_dir(tmp)
}

/// The newest checkpoint `latest` names, if it names one that has its meta file.
pub fn latest(run_dir: &Path) -> Result<Option<PathBuf>> {
    let root = checkpoints_dir(run_dir);
    let path = root.join("latest");
    match std::fs::read_to_string(&path) {
        Ok(name) => {
            let dir = root.join(name.trim());
            if dir.join(META_FILE).is_file() {
                Ok(Some(dir))
            } else {
                Err(Error::File { path, message: format!("names {} which is missing or incomplete", dir.display()) })
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&path, e)),
    }
}

/// Every `step_NNNNNN` directory of a run, newest (highest step) first.
pub fn list(run_dir: &Path) -> Vec<(usize, PathBuf)> {
    let mut v: Vec<(usize, PathBuf)> = std::fs::read_dir(checkpoints_dir(run_dir))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let step = name.strip_prefix("step_")?.parse::<usize>().ok()?;
            e.path().is_dir().then(|| (step, e.path()))
        })
        .collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.0));
    v
}

/// What a checkpoint directory holds.
pub struct Loaded {
    pub step: usize,
    pub params: Vec<f32>,
    pub optim: Vec<StateTensor>,
    pub meta: serde_json::Value,
}

/// Read a file and check it against the length and checksum meta.json recorded for it
/// (checkpoints from before the checksums were added are read unchecked).
fn read_checked(dir: &Path, name: &str, meta: &serde_json::Value) -> Result<Vec<u8>> {
    let path = dir.join(name);
    let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
    if let Some(rec) = meta.get("files").and_then(|f| f.get(name)) {
        let want_len = rec["bytes"].as_u64().unwrap_or(u64::MAX);
        if bytes.len() as u64 != want_len {
            return Err(Error::File {
                path,
                message: format!(
                    "is {} bytes, meta.json recorded {want_len}: the file is truncated or torn",
                    bytes.len()
                ),
            });
        }
        let got = format!("{:016x}", checksum64(&bytes));
        if rec["checksum"].as_str() != Some(got.as_str()) {
            return Err(Error::File {
                path,
                message: format!("checksum {got} differs from meta.json's {}: the file is corrupt", rec["checksum"]),
            });
        }
    }
    Ok(bytes)
}

/// Load a checkpoint completely: meta, weights (every tensor with its exact shape, all finite)
/// and optimizer state, each file checked against its recorded checksum.
pub fn load(dir: &Path, layout: &ParamLayout) -> Result<Loaded> {
    let mpath = dir.join(META_FILE);
    let text = std::fs::read_to_string(&mpath).map_err(|e| io(&mpath, e))?;
    let meta: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::File { path: mpath.clone(), message: format!("not JSON: {e}") })?;
    let step = meta["step"]
        .as_u64()
        .ok_or_else(|| Error::File { path: mpath.clone(), message: "has no `step`".into() })? as usize;
    let model_path = dir.join(MODEL_FILE);
    let params = weights_from_bytes(&model_path, &read_checked(dir, MODEL_FILE, &meta)?, layout)?;
    if let Some(i) = params.iter().position(|p| !p.is_finite()) {
        let name = layout.name_at(i);
        return Err(Error::File { path: model_path, message: format!("parameter {name} holds non-finite values") });
    }
    let opath = dir.join(OPTIM_FILE);
    let bytes = read_checked(dir, OPTIM_FILE, &meta)?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::File { path: opath.clone(), message: format!("not a safetensors file: {e}") })?;
    let mut optim: Vec<StateTensor> = st
        .tensors()
        .into_iter()
        .map(|(name, v)| {
            let vals = v.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            (name, vals)
        })
        .collect();
    optim.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Loaded { step, params, optim, meta })
}

/// The checkpoint a resumed run starts from, and the newer ones passed over (with why).
pub struct Resumable {
    pub dir: PathBuf,
    pub loaded: Loaded,
    pub skipped: Vec<(PathBuf, String)>,
}

/// `which`: `None` for the newest checkpoint that loads completely (and passes `check`), or a
/// `step_NNNNNN` name, a step number or a path for exactly that one.
pub fn find_resumable(
    run_dir: &Path,
    layout: &ParamLayout,
    which: Option<&str>,
    check: &dyn Fn(&Loaded) -> std::result::Result<(), String>,
) -> std::result::Result<Resumable, String> {
    let try_one = |dir: &Path| -> std::result::Result<Loaded, String> {
        let l = load(dir, layout).map_err(|e| e.to_string())?;
        check(&l)?;
        Ok(l)
    };
    if let Some(w) = which {
        let dir = if let Ok(n) = w.trim_start_matches("step_").parse::<usize>() {
            checkpoints_dir(run_dir).join(step_name(n))
        } else {
            PathBuf::from(w)
        };
        if !dir.is_dir() {
            let have: Vec<String> = list(run_dir).iter().map(|(s, _)| step_name(*s)).collect();
            return Err(format!(
                "--resume-from {w}: {} is not a checkpoint directory\n  HINT: {} has: {}",
                dir.display(),
                checkpoints_dir(run_dir).display(),
                if have.is_empty() { "no checkpoints".into() } else { have.join(", ") }
            ));
        }
        let loaded = try_one(&dir).map_err(|e| format!("--resume-from {w}: {e}"))?;
        return Ok(Resumable { dir, loaded, skipped: vec![] });
    }
    let mut order: Vec<PathBuf> = Vec::new();
    let mut skipped = Vec::new();
    match latest(run_dir) {
        Ok(Some(d)) => order.push(d),
        Ok(None) => {}
        Err(e) => skipped.push((checkpoints_dir(run_dir).join("latest"), e.to_string())),
    }
    for (_, d) in list(run_dir) {
        if !order.contains(&d) {
            order.push(d);
        }
    }
    if order.is_empty() {
        return Err(format!(
            "{} has no checkpoint (a run there stopped before it saved one, or none ran)\n  HINT: start over without \
             --resume, with --archive-old to move any earlier run's files aside",
            run_dir.display()
        ));
    }
    for dir in order {
        match try_one(&dir) {
            Ok(loaded) => return Ok(Resumable { dir, loaded, skipped }),
            Err(why) => skipped.push((dir, why)),
        }
    }
    let why: Vec<String> = skipped.iter().map(|(d, w)| format!("{}: {w}", d.display())).collect();
    Err(format!(
        "--resume: no checkpoint of {} loads completely:\n  {}\n  HINT: start a fresh run with --run-dir DIR (or \
         --archive-old to move this run's files aside)",
        run_dir.display(),
        why.join("\n  ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::GptConfig;

    #[test]
    fn save_load_latest_and_interrupted_saves() {
        let run = std::env::temp_dir().join(format!("wgpt-ckpt-run-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&run);
        let cfg = GptConfig::new(1, 1, 1, 32, 64, 8, "L").unwrap();
        let layout = ParamLayout::new(&cfg);
        let p = layout.init(1);
        assert!(latest(&run).unwrap().is_none());
        let optim = vec![("adamw.m".to_string(), vec![1.0, 2.0]), ("muon.momentum".to_string(), vec![3.0])];
        save(&run, 10, &layout, &p, &optim, &serde_json::json!({"step": 10})).unwrap();
        // A save killed half-way leaves a temporary directory behind and `latest` untouched.
        let junk = checkpoints_dir(&run).join(".tmp-step_000020-999");
        std::fs::create_dir_all(&junk).unwrap();
        std::fs::write(junk.join("model.safetensors"), b"partial").unwrap();
        let dir = latest(&run).unwrap().unwrap();
        assert!(dir.ends_with("step_000010"));
        let l = load(&dir, &layout).unwrap();
        assert_eq!(l.params, p);
        assert_eq!(l.optim, optim);
        assert_eq!(l.meta["step"], 10);
        // The next save clears the leftovers and moves `latest`; saving the same step again replaces it.
        save(&run, 20, &layout, &p, &optim, &serde_json::json!({"step": 20})).unwrap();
        assert!(!junk.exists());
        assert!(latest(&run).unwrap().unwrap().ends_with("step_000020"));
        save(&run, 20, &layout, &p, &optim, &serde_json::json!({"step": 21})).unwrap();
        assert_eq!(load(&latest(&run).unwrap().unwrap(), &layout).unwrap().meta["step"], 21);
        assert!(checkpoints_dir(&run).join("step_000010").is_dir(), "older checkpoints are kept");
        std::fs::remove_dir_all(&run).unwrap();
    }
}
