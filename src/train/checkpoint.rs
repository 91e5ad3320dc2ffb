//! Training checkpoints: `<run>/checkpoints/step_NNNNNN/` holding
//! - `model.safetensors` — every parameter under nanochat's name (loads into nanochat unchanged),
//! - `optim.safetensors` — the optimizer state, by name,
//! - `meta.json` — nanochat's meta layout (`step`, `val_bpb`, `model_config`, `user_config`,
//!   `device_batch_size`, `max_seq_len`, `total_batch_size`, `dataloader_state_dict`,
//!   `loop_state`) plus wgpt's own fields,
//!
//! and `<run>/checkpoints/latest` naming the newest complete one.
//!
//! Atomicity: a checkpoint is written into a hidden temporary directory, every file fsynced, the
//! directory renamed into place, and only then is `latest` replaced (itself atomically). A kill at
//! any moment leaves the previous checkpoint and `latest` intact; a half-written directory is
//! never named by `latest` and is removed by the next save.

use crate::error::{Error, Result};
use crate::model::checkpoint::{load_weights, save_f32, save_weights};
use crate::model::ParamLayout;
use crate::util::write_atomic;
use safetensors::SafeTensors;
use std::path::{Path, PathBuf};

/// A named f32 buffer of optimizer state.
pub type StateTensor = (String, Vec<f32>);

pub fn checkpoints_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

fn step_name(step: usize) -> String {
    format!("step_{step:06}")
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::File { path: path.to_path_buf(), message: e.to_string() }
}

fn fsync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|f| f.sync_all()).map_err(|e| io(dir, e))
}

/// Write a complete checkpoint for `step` and point `latest` at it.
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
    std::fs::create_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    save_weights(&tmp.join("model.safetensors"), layout, params)?;
    let named: Vec<(String, Vec<usize>, &[f32])> =
        optim.iter().map(|(n, v)| (n.clone(), vec![v.len()], v.as_slice())).collect();
    save_f32(&tmp.join("optim.safetensors"), &named, None)?;
    let text = serde_json::to_string_pretty(meta).unwrap();
    write_atomic(&tmp.join("meta.json"), text.as_bytes()).map_err(|e| io(&tmp, e))?;
    fsync_dir(&tmp)?;
    let dest = root.join(step_name(step));
    if dest.exists() {
        // Re-saving a step (a resumed run reaching it again): replace the old one whole.
        let old = root.join(format!(".tmp-old-{}-{}", step_name(step), std::process::id()));
        std::fs::rename(&dest, &old).map_err(|e| io(&dest, e))?;
        std::fs::rename(&tmp, &dest).map_err(|e| io(&dest, e))?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(&tmp, &dest).map_err(|e| io(&dest, e))?;
    }
    fsync_dir(&root)?;
    write_atomic(&root.join("latest"), step_name(step).as_bytes()).map_err(|e| io(&root, e))?;
    Ok(dest)
}

/// The newest complete checkpoint of a run directory, if any.
pub fn latest(run_dir: &Path) -> Result<Option<PathBuf>> {
    let root = checkpoints_dir(run_dir);
    let path = root.join("latest");
    match std::fs::read_to_string(&path) {
        Ok(name) => {
            let dir = root.join(name.trim());
            if dir.join("meta.json").is_file() {
                Ok(Some(dir))
            } else {
                Err(Error::File { path, message: format!("names {} which is missing or incomplete", dir.display()) })
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&path, e)),
    }
}

/// What a checkpoint directory holds.
pub struct Loaded {
    pub params: Vec<f32>,
    pub optim: Vec<StateTensor>,
    pub meta: serde_json::Value,
}

pub fn load(dir: &Path, layout: &ParamLayout) -> Result<Loaded> {
    let params = load_weights(&dir.join("model.safetensors"), layout)?;
    let opath = dir.join("optim.safetensors");
    let bytes = std::fs::read(&opath).map_err(|e| io(&opath, e))?;
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
    let mpath = dir.join("meta.json");
    let text = std::fs::read_to_string(&mpath).map_err(|e| io(&mpath, e))?;
    let meta =
        serde_json::from_str(&text).map_err(|e| Error::File { path: mpath, message: format!("not JSON: {e}") })?;
    Ok(Loaded { params, optim, meta })
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
