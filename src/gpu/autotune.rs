//! Kernel-variant choice per adapter and shape class, timed on first use and cached on disk.
//!
//! The best kernel differs by device and shape: on lavapipe (Mesa 22 and 26 alike) the
//! double-buffered `tiled8` matmul runs about 2× faster than the register-blocked one, and which
//! tile shape wins moves with the product's shape; discrete GPUs differ again, and have the coop
//! kernels. Each kernel family lists its variants; the first time a shape class is met the
//! family times the variants that fit the adapter (after checking each against the CPU reference),
//! and the winner is remembered here, in memory and in `autotune.json` in the cache directory,
//! keyed by adapter name, backend and driver (as CubeCL does). `WGPT_AUTOTUNE=off` skips the timing
//! and uses each family's per-adapter default.
//!
//! Timing is what makes a first run slow, so the user is told (once per context, on stderr, so a
//! command's stdout stays what it was) that it is happening and where the result is kept, and gets
//! one line per class tuned. A context spends at most [`GpuOptions::autotune_budget`] timing
//! (`WGPT_AUTOTUNE_BUDGET_SECS`, default [`DEFAULT_BUDGET`]); classes met after that take the
//! family's default and are not cached, so a later run times them.
//!
//! [`GpuOptions::autotune_budget`]: super::GpuOptions::autotune_budget

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// `--autotune` (clap lists the choices) and `WGPT_AUTOTUNE` ([`AutotuneMode::parse`]) accept
/// the same names, from this one table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AutotuneMode {
    /// Time the candidates on first use of a shape class; cache the winner.
    #[value(aliases = ["1", "true", "yes"])]
    On,
    /// Use the family's default variant for this kind of adapter.
    #[value(aliases = ["0", "false", "no"])]
    Off,
}

impl AutotuneMode {
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim() {
            // Set but empty: as if unset.
            "" => Ok(AutotuneMode::On),
            s => <Self as clap::ValueEnum>::from_str(s, true)
                .map_err(|_| Error::Env { var: "WGPT_AUTOTUNE", message: format!("`{s}`: expected on or off") }),
        }
    }

    pub fn from_env() -> Result<Self> {
        match std::env::var("WGPT_AUTOTUNE") {
            Ok(v) => Self::parse(&v),
            Err(_) => Ok(AutotuneMode::On),
        }
    }
}

/// Timing allowed per context when `WGPT_AUTOTUNE_BUDGET_SECS` is not set. A full first run of
/// the cpu-small config tunes about fifteen classes; on a loaded two-core machine under lavapipe
/// that takes well under this, so the budget only stops a pathological case (a huge config, a
/// very slow driver) from spending minutes before the first step.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(60);

/// `WGPT_AUTOTUNE_BUDGET_SECS` (seconds, fractions allowed, 0 = time nothing), else
/// [`DEFAULT_BUDGET`].
pub fn budget_from_env() -> Result<Duration> {
    match std::env::var("WGPT_AUTOTUNE_BUDGET_SECS") {
        Ok(v) => parse_budget(&v),
        Err(_) => Ok(DEFAULT_BUDGET),
    }
}

pub fn parse_budget(s: &str) -> Result<Duration> {
    s.trim().parse::<f64>().ok().and_then(|x| Duration::try_from_secs_f64(x).ok()).ok_or_else(|| Error::Env {
        var: "WGPT_AUTOTUNE_BUDGET_SECS",
        message: format!("`{s}`: expected a number of seconds >= 0"),
    })
}

/// What autotuning decided for one shape class.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Choice {
    pub variant: String,
    /// Measured rate of every candidate that passed its check and was timed, in GFLOP/s (or GB/s
    /// for bandwidth-bound families), best first. Empty when the class was too small to time
    /// and the family's default was taken after its check.
    pub measured: Vec<(String, f64)>,
}

#[derive(Default, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    /// adapter key -> shape-class key -> choice
    adapters: BTreeMap<String, BTreeMap<String, Choice>>,
}

/// 2: matmul shape classes are keyed by the problem the tuner times (dimensions capped) with the
/// layout and precision first, and a choice may come from a shortened candidate list.
const CACHE_VERSION: u32 = 2;

type Reporter = Box<dyn Fn(&str) + Send + Sync>;

pub struct Autotuner {
    mode: AutotuneMode,
    file: Option<PathBuf>,
    adapter_key: String,
    choices: Mutex<BTreeMap<String, Choice>>,
    /// Choices read from the cache when the context opened: none means this adapter was never
    /// tuned here, which is what the first-run notice says.
    loaded: usize,
    budget: Duration,
    spent: Mutex<Duration>,
    announced: AtomicBool,
    budget_noted: AtomicBool,
    /// Where progress lines go; stderr unless [`Autotuner::set_reporter`] replaced it.
    reporter: Mutex<Option<Reporter>>,
}

impl Autotuner {
    pub fn new(mode: AutotuneMode, cache_dir: Option<PathBuf>, budget: Duration, info: &wgpu::AdapterInfo) -> Self {
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
        Self {
            mode,
            file,
            adapter_key,
            loaded: choices.len(),
            choices: Mutex::new(choices),
            budget,
            spent: Mutex::new(Duration::ZERO),
            announced: AtomicBool::new(false),
            budget_noted: AtomicBool::new(false),
            reporter: Mutex::new(None),
        }
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

    /// Every choice of this adapter whose class key starts with `prefix` (a family's classes that
    /// share a layout and precision), for seeding a new class's candidate list.
    pub fn choices_with_prefix(&self, prefix: &str) -> Vec<(String, Choice)> {
        let choices = self.choices.lock().unwrap();
        choices
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, c)| (k.clone(), c.clone()))
            .collect()
    }

    /// Send progress lines somewhere other than stderr (tests capture them).
    pub fn set_reporter(&self, f: impl Fn(&str) + Send + Sync + 'static) {
        *self.reporter.lock().unwrap() = Some(Box::new(f));
    }

    /// One progress line, to the reporter or stderr.
    pub fn say(&self, line: &str) {
        match &*self.reporter.lock().unwrap() {
            Some(f) => f(line),
            None => eprintln!("{line}"),
        }
    }

    /// Whether a new class may be timed now: autotuning is on and the budget is not spent. The
    /// first refusal says so, once.
    pub fn may_tune(&self) -> bool {
        if self.mode == AutotuneMode::Off {
            return false;
        }
        let spent = *self.spent.lock().unwrap();
        if spent < self.budget {
            return true;
        }
        if !self.budget_noted.swap(true, Ordering::SeqCst) {
            self.say(&format!(
                "  autotune budget spent ({:.0} s, WGPT_AUTOTUNE_BUDGET_SECS): the remaining shape classes use the \
                 adapter's default variant this run and are not cached, so a later run times them",
                self.budget.as_secs_f64()
            ));
        }
        false
    }

    /// Say, the first time a class is timed in this context, that timing is happening and where
    /// its results are kept.
    pub fn announce(&self) {
        if self.announced.swap(true, Ordering::SeqCst) {
            return;
        }
        let what = if self.loaded == 0 { "first run on this adapter" } else { "new shapes on this adapter" };
        let where_ = match &self.file {
            Some(f) => format!("cached in {}", f.display()),
            None => "not cached: no cache directory, set WGPT_CACHE_DIR".into(),
        };
        self.say(&format!("{what}: timing kernel variants ({where_})"));
    }

    /// Count `d` of timing against the budget.
    pub fn charge(&self, d: Duration) {
        *self.spent.lock().unwrap() += d;
    }

    /// Timing spent in this context so far.
    pub fn spent(&self) -> Duration {
        *self.spent.lock().unwrap()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_parses_seconds_and_refuses_the_rest() {
        assert_eq!(parse_budget("60").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_budget(" 0.5 ").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_budget("0").unwrap(), Duration::ZERO);
        for bad in ["-1", "soon", "", "inf", "NaN"] {
            let e = parse_budget(bad).unwrap_err().to_string();
            assert!(e.contains("WGPT_AUTOTUNE_BUDGET_SECS"), "{bad}: {e}");
        }
    }

    /// The environment's names are clap's (`--autotune`), aliases included, and a bad value is
    /// blamed on the variable, not on wgpu.
    #[test]
    fn autotune_mode_parses_the_flag_names_and_blames_the_variable() {
        for (s, want) in [
            ("on", AutotuneMode::On),
            ("OFF", AutotuneMode::Off),
            ("1", AutotuneMode::On),
            ("no", AutotuneMode::Off),
            ("", AutotuneMode::On),
        ] {
            assert_eq!(AutotuneMode::parse(s).unwrap(), want, "{s}");
        }
        let e = AutotuneMode::parse("sometimes").unwrap_err();
        assert!(matches!(e, Error::Env { var: "WGPT_AUTOTUNE", .. }), "{e:?}");
        assert_eq!(e.to_string(), "environment variable WGPT_AUTOTUNE: `sometimes`: expected on or off");
    }
}
