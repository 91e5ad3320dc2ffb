//! Kernel-variant choice per adapter and shape class, timed on first use and cached on disk.
//!
//! The best kernel differs by device: on lavapipe a barrier costs a thread switch, so a
//! register-blocked kernel without workgroup memory wins, while a discrete GPU wants tiles staged in
//! workgroup memory. Each kernel family lists its variants; the first time a shape class is met the
//! family times every variant that fits the adapter (after checking it against the CPU reference),
//! and the winner is remembered here, in memory and in `autotune.json` in the cache directory,
//! keyed by adapter name, backend and driver (as CubeCL does). `WGPT_AUTOTUNE=off` skips the timing
//! and uses each family's per-adapter default.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutotuneMode {
    /// Time the candidates on first use of a shape class; cache the winner.
    On,
    /// Use the family's default variant for this kind of adapter.
    Off,
}

impl AutotuneMode {
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "on" | "1" | "true" | "yes" => Ok(AutotuneMode::On),
            "off" | "0" | "false" | "no" => Ok(AutotuneMode::Off),
            _ => Err(Error::Validation {
                context: "WGPT_AUTOTUNE".into(),
                message: format!("`{s}`: expected on or off"),
            }),
        }
    }

    pub fn from_env() -> Result<Self> {
        match std::env::var("WGPT_AUTOTUNE") {
            Ok(v) => Self::parse(&v),
            Err(_) => Ok(AutotuneMode::On),
        }
    }
}

/// What autotuning decided for one shape class.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Choice {
    pub variant: String,
    /// Measured rate of every candidate that passed its check, in GFLOP/s (or GB/s for
    /// bandwidth-bound families), best first.
    pub measured: Vec<(String, f64)>,
}

#[derive(Default, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    /// adapter key -> shape-class key -> choice
    adapters: BTreeMap<String, BTreeMap<String, Choice>>,
}

const CACHE_VERSION: u32 = 1;

pub struct Autotuner {
    mode: AutotuneMode,
    file: Option<PathBuf>,
    adapter_key: String,
    choices: Mutex<BTreeMap<String, Choice>>,
}

impl Autotuner {
    pub fn new(mode: AutotuneMode, cache_dir: Option<PathBuf>, info: &wgpu::AdapterInfo) -> Self {
        let adapter_key = format!(
            "{} | {:?} | {:?} | {} | {} | {:04x}:{:04x}",
            info.name, info.backend, info.device_type, info.driver, info.driver_info, info.vendor, info.device
        );
        let file = cache_dir.map(|d| d.join("autotune.json"));
        let choices = file
            .as_ref()
            .and_then(|f| load(f).ok())
            .and_then(|mut c| c.adapters.remove(&adapter_key))
            .unwrap_or_default();
        Self { mode, file, adapter_key, choices: Mutex::new(choices) }
    }

    pub fn mode(&self) -> AutotuneMode {
        self.mode
    }

    pub fn adapter_key(&self) -> &str {
        &self.adapter_key
    }

    pub fn cache_file(&self) -> Option<&PathBuf> {
        self.file.as_ref()
    }

    pub fn lookup(&self, class: &str) -> Option<Choice> {
        self.choices.lock().unwrap().get(class).cloned()
    }

    /// Remember a choice and persist it. A cache that cannot be written costs only a re-tune next
    /// time, so write failures are logged, not returned.
    pub fn record(&self, class: &str, choice: Choice) {
        self.choices.lock().unwrap().insert(class.to_string(), choice.clone());
        if let Some(path) = &self.file {
            if let Err(e) = self.persist(path, class, choice) {
                log::warn!("could not write autotune cache {}: {e}", path.display());
            }
        }
    }

    fn persist(&self, path: &PathBuf, class: &str, choice: Choice) -> std::io::Result<()> {
        // Merge with what is on disk now: another process may have tuned other classes.
        let mut file = load(path).unwrap_or_default();
        file.version = CACHE_VERSION;
        file.adapters.entry(self.adapter_key.clone()).or_default().insert(class.to_string(), choice);
        let text = serde_json::to_string_pretty(&file).map_err(std::io::Error::other)?;
        crate::util::write_atomic(path, text.as_bytes())
    }
}

fn load(path: &PathBuf) -> std::io::Result<CacheFile> {
    let text = std::fs::read_to_string(path)?;
    let file: CacheFile = serde_json::from_str(&text).map_err(std::io::Error::other)?;
    if file.version != CACHE_VERSION {
        return Ok(CacheFile::default());
    }
    Ok(file)
}
