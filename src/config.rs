//! Run configuration. It flows one way: a TOML file (`configs/*.toml`), then command-line
//! overrides (`--set section.key=value`), then one [`RunConfig::resolve`] that derives and checks
//! everything, then the resolved values are logged and saved with the run.
//!
//! ```toml
//! [model]      # shape: see ModelSpec
//! depth = 12
//! vocab_size = 32768
//! sequence_len = 2048
//! [train]      # batch, horizon, optimizer and schedule settings: see TrainSpec
//! device_batch_size = 8
//! total_batch_size = 65536
//! [memory]     # how activations are kept for the backward: see MemorySpec
//! recompute = "mlp"
//! ```

use crate::error::{Error, Result};
use crate::model::{GptConfig, ModelSpec};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The `[train]` table. Defaults are nanochat's base_train defaults; the seed run's values live in
/// `configs/rtx4070-d12.toml`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSpec {
    /// Sequences per forward/backward pass (per micro-step), e.g. 8.
    pub device_batch_size: usize,
    /// Tokens per optimizer step; a multiple of device_batch_size · sequence_len (the quotient is
    /// the gradient-accumulation count). e.g. 65536 = 8 · 2048 · 4.
    pub total_batch_size: usize,
    /// Optimizer steps; -1 derives it from target_flops or target_param_data_ratio.
    pub num_iterations: i64,
    /// Total training FLOPs to spend when num_iterations is -1 (-1 = unused).
    pub target_flops: f64,
    /// Tokens per scaling parameter when neither of the above is set (nanochat: 12).
    pub target_param_data_ratio: f64,
    pub embedding_lr: f64,
    pub unembedding_lr: f64,
    pub matrix_lr: f64,
    pub scalar_lr: f64,
    /// The batch the lrs above were tuned at: every lr but the smear group's is multiplied by
    /// √(total_batch_size / lr_reference_batch). nanochat tunes at 524,288 tokens (so the seed run's
    /// 65,536 scales them by 0.354). A short run at a tiny batch can set its own batch here and
    /// take the lrs as they are (configs/cpu-small.toml). The Muon weight decay keeps nanochat's
    /// rule at 524,288 whatever this is.
    pub lr_reference_batch: usize,
    /// The smear group's lr (smear gate, smear lambda, backout lambda). nanochat fixes it at 0.2
    /// and, unlike every other lr, does not scale it with the batch: at a small batch it is then
    /// far hotter than the rest of the model (see configs/cpu-small.toml).
    pub smear_lr: f64,
    /// Muon weight decay at the reference batch, scaled by batch and horizon (0.28 → 0.099 for
    /// the seed run).
    pub weight_decay: f64,
    pub warmup_steps: usize,
    pub warmdown_ratio: f64,
    pub final_lr_frac: f64,
    /// Validation bits-per-byte every this many steps (and at 0 and the end); -1 = never.
    pub eval_every: i64,
    /// Tokens per validation.
    pub eval_tokens: usize,
    /// Samples every this many steps (and at the end); -1 = never.
    pub sample_every: i64,
    /// Checkpoint every this many steps (always at the end); -1 = only at the end.
    pub save_every: i64,
    /// Seed for the parameter init (and anything else random).
    pub seed: u64,
    /// "seed": Muon as the seed run had it; "plus": nanochat HEAD's MuonEq + Muon+.
    pub muon: crate::reference::optim::MuonVariant,
}

impl Default for TrainSpec {
    fn default() -> Self {
        Self {
            device_batch_size: 32,
            total_batch_size: 524_288,
            num_iterations: -1,
            target_flops: -1.0,
            target_param_data_ratio: 12.0,
            embedding_lr: 0.3,
            unembedding_lr: 0.008,
            matrix_lr: 0.02,
            scalar_lr: 0.5,
            lr_reference_batch: 524_288,
            smear_lr: 0.2,
            weight_decay: 0.28,
            warmup_steps: 40,
            warmdown_ratio: 0.65,
            final_lr_frac: 0.05,
            eval_every: 250,
            eval_tokens: 80 * 524_288,
            sample_every: 2000,
            save_every: -1,
            seed: 42,
            muon: crate::reference::optim::MuonVariant::Seed,
        }
    }
}

/// What the backward gets from the forward.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Recompute {
    /// Keep every activation the backward reads: fastest, most memory.
    None,
    /// Recompute the MLP's 4C-wide hidden layer (one c_fc matmul per layer, ≈ +6% FLOPs) instead
    /// of keeping it: the largest single activation.
    Mlp,
    /// Keep only each block's input and recompute the whole block in the backward (≈ +33% FLOPs).
    Block,
}

/// The `[memory]` table.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MemorySpec {
    pub recompute: Recompute,
    /// Rows of logits materialised at once in the fused softcap/cross-entropy (0 = choose so a
    /// chunk is at most 256 MiB).
    pub logits_chunk_rows: usize,
}

impl MemorySpec {
    /// Rows per cross-entropy chunk for a batch of `b` sequences: as set, or (0) as many as keep
    /// a chunk of f32 logits within 256 MiB; at least one row, never more than the batch.
    pub fn logits_chunk_rows(&self, model: &GptConfig, b: usize) -> usize {
        let rows = b * model.sequence_len;
        match self.logits_chunk_rows {
            0 => ((256usize << 20) / (4 * model.padded_vocab)).clamp(1, rows),
            r => r.clamp(1, rows),
        }
    }
}

impl Default for MemorySpec {
    fn default() -> Self {
        Self { recompute: Recompute::Mlp, logits_chunk_rows: 0 }
    }
}

/// A config file as written.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub model: ModelSpec,
    #[serde(default)]
    pub train: TrainSpec,
    #[serde(default)]
    pub memory: MemorySpec,
}

/// Everything a run uses, derived and checked.
#[derive(Clone, Debug, Serialize)]
pub struct RunConfig {
    /// Where it came from, for the log and the report.
    pub source: Option<PathBuf>,
    pub overrides: Vec<String>,
    pub file: ConfigFile,
    pub model: GptConfig,
    /// total_batch_size / (device_batch_size · sequence_len)
    pub grad_accum: usize,
    /// Rows of logits per cross-entropy chunk.
    pub logits_chunk_rows: usize,
}

impl RunConfig {
    /// Read a TOML file, apply `key=value` overrides (`section.key=value`, values in TOML syntax
    /// or bare strings), and resolve.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::File {
            path: path.to_path_buf(),
            message: format!("cannot read config: {e}\n  HINT: configs/ has rtx4070-d12.toml and cpu-small.toml"),
        })?;
        Self::from_toml(&text, Some(path), overrides)
    }

    pub fn from_toml(text: &str, source: Option<&Path>, overrides: &[String]) -> Result<Self> {
        let name = source.map_or("<config>".to_string(), |p| p.display().to_string());
        let mut value: toml::Value =
            toml::from_str(text).map_err(|e| Error::Config { message: format!("{name}: {e}") })?;
        for o in overrides {
            apply_override(&mut value, o)?;
        }
        let file: ConfigFile = value
            .try_into()
            .map_err(|e: toml::de::Error| Error::Config { message: format!("{name}: {}", e.to_string().trim()) })?;
        Self::resolve(file, source.map(Path::to_path_buf), overrides.to_vec())
    }

    /// Derive and check. Every refusal says which number is wrong and how to fix it.
    pub fn resolve(file: ConfigFile, source: Option<PathBuf>, overrides: Vec<String>) -> Result<Self> {
        let model = GptConfig::from_spec(&file.model)?;
        let tr = &file.train;
        let bad = |message: String| Err(Error::Config { message });
        if tr.device_batch_size == 0 {
            return bad("train.device_batch_size must be >= 1".into());
        }
        let per_step = tr.device_batch_size * model.sequence_len;
        if tr.total_batch_size == 0 || !tr.total_batch_size.is_multiple_of(per_step) {
            return bad(format!(
                "train.total_batch_size {} is not a multiple of device_batch_size × sequence_len = {} × {} = {per_step}\n  \
                 HINT: use a multiple of {per_step}, e.g. {}",
                tr.total_batch_size,
                tr.device_batch_size,
                model.sequence_len,
                per_step * (tr.total_batch_size / per_step).max(1)
            ));
        }
        let grad_accum = tr.total_batch_size / per_step;
        let logits_chunk_rows = file.memory.logits_chunk_rows(&model, tr.device_batch_size);
        Ok(RunConfig { source, overrides, file, model, grad_accum, logits_chunk_rows })
    }

    pub fn train(&self) -> &TrainSpec {
        &self.file.train
    }

    /// The resolved configuration as TOML (written next to checkpoints and into the report).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(&self.file).unwrap_or_default()
    }
}

/// `section.key=value`: value parsed as a TOML value if it is one (numbers, booleans, quoted
/// strings), else taken as a bare string (so `model.window_pattern=SSSL` works).
fn apply_override(root: &mut toml::Value, spec: &str) -> Result<()> {
    let bad = |m: String| Error::Config { message: format!("override `{spec}`: {m}") };
    let (path, raw) = spec.split_once('=').ok_or_else(|| bad("expected section.key=value".into()))?;
    let parts: Vec<&str> = path.trim().split('.').collect();
    if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
        return Err(bad("expected section.key=value, e.g. train.device_batch_size=4".into()));
    }
    let value = match toml::from_str::<toml::Table>(&format!("v = {}", raw.trim())) {
        Ok(mut t) => t.remove("v").unwrap(),
        Err(_) => toml::Value::String(raw.trim().to_string()),
    };
    let table = root.as_table_mut().ok_or_else(|| bad("config is not a table".into()))?;
    let section = table.entry(parts[0]).or_insert_with(|| toml::Value::Table(Default::default()));
    section
        .as_table_mut()
        .ok_or_else(|| bad(format!("`{}` is not a section", parts[0])))?
        .insert(parts[1].to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_config(name: &str) -> RunConfig {
        RunConfig::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("configs").join(name), &[]).unwrap()
    }

    #[test]
    fn seed_run_config_resolves() {
        let c = repo_config("rtx4070-d12.toml");
        assert_eq!((c.model.n_layer, c.model.n_embd, c.model.n_head, c.model.sequence_len), (12, 768, 6, 2048));
        assert_eq!((c.train().device_batch_size, c.train().total_batch_size, c.grad_accum), (8, 65536, 4));
        assert_eq!(c.train().num_iterations, 10_000);
        assert_eq!(c.logits_chunk_rows, 2048);
        let small = repo_config("cpu-small.toml");
        assert_eq!(
            (small.model.n_layer, small.model.head_dim, small.model.vocab_size, small.model.sequence_len),
            (4, 64, 4096, 256)
        );
    }

    #[test]
    fn overrides_apply_before_resolve() {
        let text =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/rtx4070-d12.toml")).unwrap();
        let c = RunConfig::from_toml(
            &text,
            None,
            &["train.device_batch_size=4".into(), "model.window_pattern=SSSL".into()],
        )
        .unwrap();
        assert_eq!((c.train().device_batch_size, c.grad_accum), (4, 8));
        assert_eq!(c.model.windows[0], 512);
    }

    #[test]
    fn bad_configs_are_refused_with_the_numbers() {
        let base = "[model]\ndepth = 2\nhead_dim = 64\nvocab_size = 512\nsequence_len = 64\n";
        let e = RunConfig::from_toml(
            &format!("{base}[train]\ndevice_batch_size = 3\ntotal_batch_size = 1000\n"),
            None,
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("1000") && e.contains("192"), "{e}");
        let e =
            RunConfig::from_toml(&format!("{base}[train]\ndevice_bach_size = 3\n"), None, &[]).unwrap_err().to_string();
        assert!(e.contains("device_bach_size"), "{e}");
        let e = RunConfig::from_toml(base, None, &["nonsense".into()]).unwrap_err().to_string();
        assert!(e.contains("section.key=value"), "{e}");
        let e = RunConfig::from_toml(&format!("{base}[memory]\nrecompute = \"sometimes\"\n"), None, &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("sometimes"), "{e}");
    }
}
