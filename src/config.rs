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
use std::fmt::Display;
use std::path::{Path, PathBuf};

/// The `[train]` table. Defaults are nanochat's base_train defaults; the seed run's values live in
/// `configs/rtx4070-d12.toml`. What each field means is in [`TRAIN_KEYS`] (one place, printed by
/// `wgpt config keys`; a unit test keeps its keys equal to these fields).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSpec {
    pub device_batch_size: usize,
    pub total_batch_size: usize,
    pub num_iterations: i64,
    pub target_flops: f64,
    pub target_param_data_ratio: f64,
    pub embedding_lr: f64,
    pub unembedding_lr: f64,
    pub matrix_lr: f64,
    pub scalar_lr: f64,
    pub lr_reference_batch: usize,
    pub smear_lr: f64,
    pub weight_decay: f64,
    pub warmup_steps: usize,
    pub warmdown_ratio: f64,
    pub final_lr_frac: f64,
    pub eval_every: i64,
    pub eval_tokens: usize,
    pub sample_every: i64,
    pub core_every: i64,
    pub core_max_per_task: i64,
    pub save_every: i64,
    pub seed: u64,
    pub muon: crate::reference::muon::MuonVariant,
    pub precision: Precision,
    pub initial_loss_scale: f64,
}

/// The `[train]` keys and what they mean.
pub const TRAIN_KEYS: &[KeyDoc] = &[
    KeyDoc::optional("device_batch_size", "Sequences per forward/backward pass (per micro-step), e.g. 8."),
    KeyDoc::optional(
        "total_batch_size",
        "Tokens per optimizer step; a multiple of device_batch_size · sequence_len (the quotient is the \
         gradient-accumulation count), e.g. 65536 = 8 · 2048 · 4.",
    ),
    KeyDoc::optional(
        "num_iterations",
        "Optimizer steps (the horizon), N >= 1; -1 derives it from target_flops, or else from \
         target_param_data_ratio. 0 is refused.",
    ),
    KeyDoc::optional(
        "target_flops",
        "Total training FLOPs to spend when num_iterations is -1 (horizon = target_flops / (FLOPs per token · \
         total_batch_size)); -1 = unused.",
    ),
    KeyDoc::optional(
        "target_param_data_ratio",
        "Training tokens per scaling parameter (matrices + lm_head), > 0: the horizon when num_iterations and \
         target_flops are both -1 (nanochat: 12).",
    ),
    KeyDoc::optional(
        "embedding_lr",
        "AdamW lr of the token embedding at lr_reference_batch (the value embeddings get half of it); \
         multiplied by √(total_batch_size / lr_reference_batch) and by the width factor (C/768)^-½. >= 0.",
    ),
    KeyDoc::optional("unembedding_lr", "AdamW lr of lm_head at lr_reference_batch, scaled as embedding_lr. >= 0."),
    KeyDoc::optional(
        "matrix_lr",
        "Muon lr of the transformer matrices at lr_reference_batch; multiplied by √(total_batch_size / \
         lr_reference_batch) (and per shape by √max(1, rows/cols)). >= 0.",
    ),
    KeyDoc::optional(
        "scalar_lr",
        "AdamW lr of the per-layer scalars at lr_reference_batch (x0 lambdas get it, residual lambdas 0.01 of it); \
         multiplied by √(total_batch_size / lr_reference_batch). >= 0.",
    ),
    KeyDoc::optional(
        "lr_reference_batch",
        "The batch (tokens) the lrs above were tuned at: every lr but the smear group's is multiplied by \
         √(total_batch_size / lr_reference_batch). nanochat tunes at 524,288 tokens (so the seed run's 65,536 \
         scales them by 0.354). A short run at a tiny batch can set its own batch here and take the lrs as they \
         are (configs/cpu-small.toml). The Muon weight decay keeps nanochat's rule at 524,288 whatever this is. >= 1.",
    ),
    KeyDoc::optional(
        "smear_lr",
        "The smear group's lr (smear gate, smear lambda, backout lambda). nanochat fixes it at 0.2 and, unlike \
         every other lr, does not scale it with the batch: at a small batch it is then far hotter than the rest \
         of the model (see configs/cpu-small.toml). >= 0.",
    ),
    KeyDoc::optional(
        "weight_decay",
        "Muon weight decay at the reference batch, scaled by batch and horizon (0.28 → 0.099 for the seed run), \
         then a cosine to 0 over the run. >= 0.",
    ),
    KeyDoc::optional(
        "warmup_steps",
        "Steps of linear lr warmup at the start (the lr multiplier goes 1/N, 2/N, … 1); 0 = none. Should not \
         exceed num_iterations.",
    ),
    KeyDoc::optional(
        "warmdown_ratio",
        "Fraction of the run, in [0, 1], over which the lr falls linearly to final_lr_frac at the end; 0 = no \
         warmdown.",
    ),
    KeyDoc::optional("final_lr_frac", "The lr multiplier the warmdown ends at, in [0, 1]."),
    KeyDoc::optional(
        "eval_every",
        "Validation bits-per-byte every N >= 1 steps (and at step 0 and the end); -1 = never. 0 is refused.",
    ),
    KeyDoc::optional(
        "eval_tokens",
        "Tokens per validation, >= 1; rounded down to whole device batches (device_batch_size · sequence_len), \
         at least one.",
    ),
    KeyDoc::optional("sample_every", "Samples every N >= 1 steps (and at the end); -1 = never. 0 is refused."),
    KeyDoc::optional(
        "core_every",
        "The CORE metric (nanochat's core_metric_every) every N >= 1 steps and at the end; -1 = never. 0 is \
         refused. Reads the CORE tasks from $WGPT_EVAL_DATA (default ../shared/data/eval).",
    ),
    KeyDoc::optional(
        "core_max_per_task",
        "Examples per CORE task during training (after nanochat's shuffle), N >= 1; -1 = all. 0 is refused.",
    ),
    KeyDoc::optional(
        "save_every",
        "Checkpoint every N >= 1 steps; -1 = only at the end (a run always saves at the end and when stopped). \
         0 is refused.",
    ),
    KeyDoc::optional("seed", "Seed for the parameter init (and anything else random)."),
    KeyDoc::optional("muon", "\"seed\": Muon as the seed run had it; \"plus\": nanochat HEAD's MuonEq + Muon+."),
    KeyDoc::optional(
        "precision",
        "\"f32\", \"f16\" or \"auto\". f16: every linear layer's three products (X·Wᵀ, dY·W, dYᵀ·X) take f16 \
         inputs and accumulate in f32 on the cooperative-matrix kernels, with dynamic loss scaling (GradScaler's: \
         2^16, ×2 after 2,000 clean steps, ×½ and the step skipped on an inf/NaN gradient); master weights, \
         gradients, optimizer state, norms, softmax and the residual stream stay f32; the products read f16 copies \
         of the weight matrices, made once per optimizer step. auto (the default): f16 on a GPU with cooperative \
         matrices, else f32, CPU drivers included (lavapipe's are emulated and 2.1× slower than its f32 kernels); \
         `--dry-run` says which and why.",
    ),
    KeyDoc::optional(
        "initial_loss_scale",
        "The f16 loss scale a run starts at (GradScaler's 65536): a power of two in [1, 2^48], so that dividing \
         the gradients by it is exact (AdamW divides v's increment by its square, which must stay a normal f32). Ignored in f32 (scale 1, and a non-finite gradient stops the run).",
    ),
];

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
            core_every: 2000,
            core_max_per_task: 500,
            save_every: -1,
            seed: 42,
            muon: crate::reference::muon::MuonVariant::Seed,
            precision: Precision::Auto,
            initial_loss_scale: 65536.0,
        }
    }
}

/// `train.precision`: what the linear layers' products read (see [`TRAIN_KEYS`]).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f16 on a GPU with cooperative matrices, else f32 (`train::precision::resolve`). The
    /// default since issue 12's KJV runs: 300 steps in f16 stayed within 0.6% of f32's val bpb at
    /// every evaluation.
    #[default]
    Auto,
    F32,
    F16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Auto => "auto",
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        }
    }
}

/// What the backward gets from the forward.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
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

/// The `[memory]` table; what each field means is in [`MEMORY_KEYS`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MemorySpec {
    pub recompute: Recompute,
    pub logits_chunk_rows: usize,
}

/// The `[memory]` keys and what they mean.
pub const MEMORY_KEYS: &[KeyDoc] = &[
    KeyDoc::optional(
        "recompute",
        "What the backward recomputes instead of keeping: \"none\" (keep every activation: fastest, most \
         memory), \"mlp\" (the MLP's 4C-wide hidden layer, ≈ +6% FLOPs) or \"block\" (each whole block from its \
         input, ≈ +33% FLOPs).",
    ),
    KeyDoc::optional(
        "logits_chunk_rows",
        "Rows of logits materialised at once in the fused softcap/cross-entropy; 0 = choose so a chunk is at \
         most 256 MiB.",
    ),
];

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

/// One key of a config section, documented once: `wgpt config keys` prints these, a `--set` of
/// an unknown key lists them, and a unit test keeps each section's list equal to its struct's
/// serialized fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyDoc {
    pub key: &'static str,
    /// No default: the config file (or a `--set`) must give it.
    pub required: bool,
    pub meaning: &'static str,
}

impl KeyDoc {
    pub const fn optional(key: &'static str, meaning: &'static str) -> Self {
        KeyDoc { key, required: false, meaning }
    }

    pub const fn required(key: &'static str, meaning: &'static str) -> Self {
        KeyDoc { key, required: true, meaning }
    }
}

/// The sections of a config file in file order, each with its keys.
pub const SECTIONS: [(&str, &[KeyDoc]); 3] =
    [("model", crate::model::config::MODEL_KEYS), ("train", TRAIN_KEYS), ("memory", MEMORY_KEYS)];

/// The keys of `section`, or None for a section config files do not have.
pub fn section_keys(section: &str) -> Option<&'static [KeyDoc]> {
    SECTIONS.iter().find(|(s, _)| *s == section).map(|(_, k)| *k)
}

/// A section's default values as TOML, serialized from the `Default` impls (so they cannot drift
/// from what a file that omits a key gets). `[model]` has no default as a whole: its table holds
/// the optional keys that have a value when omitted (an unset `n_kv_head` is absent).
pub fn section_defaults(section: &str) -> toml::Table {
    match section {
        "model" => {
            let mut t = table_of(&ModelSpec::with_defaults(1, 2, 2));
            for k in crate::model::config::MODEL_KEYS.iter().filter(|k| k.required) {
                t.remove(k.key);
            }
            t
        }
        "train" => table_of(&TrainSpec::default()),
        "memory" => table_of(&MemorySpec::default()),
        _ => toml::Table::new(),
    }
}

/// A config section as a TOML table (every section struct serializes to one).
fn table_of<T: Serialize>(section: &T) -> toml::Table {
    match toml::Value::try_from(section) {
        Ok(toml::Value::Table(t)) => t,
        other => unreachable!("a config section serializes to a TOML table, got {other:?}"),
    }
}

/// What `wgpt config keys` prints: every key a config file and `--set` accept, by section, with
/// its default and meaning. With `file` (a config's path and its parsed table) each key the file
/// sets shows its value there, and keys the file sets that do not exist are listed at the end.
pub fn keys_text(file: Option<(&Path, &toml::Table)>) -> String {
    let mut s = String::from(
        "Every key of a config file. `--set section.key=value` overrides one: values in TOML syntax, a bare\n\
         word is a string (--set model.window_pattern=SSSL).\n",
    );
    if let Some((path, _)) = file {
        s += &format!("Values {} sets are shown after the default.\n", path.display());
    }
    let mut unknown = Vec::new();
    for (section, keys) in SECTIONS {
        s += &format!("\n[{section}]\n");
        let defaults = section_defaults(section);
        let set = file.and_then(|(_, t)| t.get(section)).and_then(|v| v.as_table());
        for k in keys {
            let default = match defaults.get(k.key) {
                Some(v) => format!(" = {v}"),
                None if k.required => "  (required)".into(),
                None => "  (unset by default)".into(),
            };
            let line = format!("  {section}.{}{default}", k.key);
            s += &match (set.and_then(|t| t.get(k.key)), file) {
                // The file's values in a column of their own, so they read as a second column.
                (Some(v), Some((path, _))) => format!("{line:<46}  {}: {v}\n", path.display()),
                _ => format!("{line}\n"),
            };
            for line in wrap(k.meaning, 92) {
                s += &format!("      {line}\n");
            }
        }
        if let Some(t) = set {
            unknown.extend(
                t.keys().filter(|k| !keys.iter().any(|d| d.key == k.as_str())).map(|k| format!("{section}.{k}")),
            );
        }
    }
    if let Some((path, t)) = file {
        unknown.extend(t.keys().filter(|k| section_keys(k).is_none()).cloned());
        if !unknown.is_empty() {
            s += &format!("\n{} also sets keys that do not exist: {}\n", path.display(), unknown.join(", "));
        }
    }
    s
}

/// `text` in lines of at most `width` characters, broken at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let line = lines.last_mut().unwrap();
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(word.to_string());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
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

    /// Parse, apply the overrides, resolve. A wrong type or an unknown key is blamed on where it
    /// was written: each override is checked against its field before it is merged, so whatever
    /// the merged table gets wrong is the file's.
    pub fn from_toml(text: &str, source: Option<&Path>, overrides: &[String]) -> Result<Self> {
        let name = source.map_or("<config>".to_string(), |p| p.display().to_string());
        let file_error = |e: &dyn Display| Error::Config { message: format!("{name}: {}", e.to_string().trim()) };
        let replaced = |o: &String| override_key(o).is_some_and(|k| k == ("model", "matmul"));
        let in_file = toml::from_str::<toml::Value>(text)
            .ok()
            .is_some_and(|v| v.get("model").and_then(|m| m.get("matmul")).is_some());
        if in_file || overrides.iter().any(replaced) {
            return Err(Error::Config {
                message: format!(
                    "{}: model.matmul was replaced by train.precision (\"f32\", \"f16\" or \"auto\"; f16 also scales \
                     the loss)\n  HINT: write `precision = \"f16\"` under [train] (or --set train.precision=f16)",
                    if in_file { name.as_str() } else { "--set" }
                ),
            });
        }
        let file: ConfigFile = if overrides.is_empty() {
            // Straight from the text, so an error points at the file's line and column.
            toml::from_str(text).map_err(|e| file_error(&e))?
        } else {
            let mut value: toml::Value = toml::from_str(text).map_err(|e| file_error(&e))?;
            for o in overrides {
                apply_override(&mut value, o)?;
            }
            // The merged value's errors name the key ("in `train.eval_every`").
            value.try_into().map_err(|e: toml::de::Error| file_error(&e))?
        };
        Self::resolve(file, source.map(Path::to_path_buf), overrides.to_vec())
    }

    /// Derive and check. Every refusal names the key, its value and where that came from, and says
    /// how to fix it. (What needs the horizon is checked, or warned about, in `Hyper::resolve`.)
    pub fn resolve(file: ConfigFile, source: Option<PathBuf>, overrides: Vec<String>) -> Result<Self> {
        let origin = Origin { source: source.as_deref(), overrides: &overrides, file: &file };
        let model = GptConfig::from_spec_with_origin(&file.model, &|key| origin.of(key))?;
        check_train(&file.train, &origin)?;
        let tr = &file.train;
        let per_step = tr.device_batch_size * model.sequence_len;
        if tr.total_batch_size == 0 || !tr.total_batch_size.is_multiple_of(per_step) {
            return Err(Error::Config {
                message: format!(
                    "train.total_batch_size {}{} is not a multiple of device_batch_size × sequence_len = {} × {} = \
                     {per_step}\n  HINT: use a multiple of {per_step}, e.g. {}",
                    tr.total_batch_size,
                    origin.of("train.total_batch_size"),
                    tr.device_batch_size,
                    model.sequence_len,
                    per_step * (tr.total_batch_size / per_step).max(1)
                ),
            });
        }
        let grad_accum = tr.total_batch_size / per_step;
        let logits_chunk_rows = file.memory.logits_chunk_rows(&model, tr.device_batch_size);
        Ok(RunConfig { source, overrides, file, model, grad_accum, logits_chunk_rows })
    }

    pub fn train(&self) -> &TrainSpec {
        &self.file.train
    }

    /// Where `key` (`section.name`) got its value, for a message: " (from --set KEY=VALUE)",
    /// " (in FILE)" or " (the default)".
    pub fn origin(&self, key: &str) -> String {
        Origin { source: self.source.as_deref(), overrides: &self.overrides, file: &self.file }.of(key)
    }

    /// The resolved configuration as TOML (written next to checkpoints and into the report).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(&self.file).unwrap_or_default()
    }
}

/// Where each value of a config came from.
struct Origin<'a> {
    source: Option<&'a Path>,
    overrides: &'a [String],
    file: &'a ConfigFile,
}

impl Origin<'_> {
    /// The last `--set` of `key` (it is the one that took effect); else the file, when the value
    /// is not the default; else the default. A file that spells out a default is reported as the
    /// default, which is what the value is.
    fn of(&self, key: &str) -> String {
        let set = |o: &&String| override_key(o).is_some_and(|(s, k)| key.split_once('.') == Some((s, k)));
        if let Some(o) = self.overrides.iter().rev().find(set) {
            return format!(" (from --set {})", o.trim());
        }
        let Some((section, name)) = key.split_once('.') else { return String::new() };
        let values = match section {
            "model" => table_of(&self.file.model),
            "train" => table_of(&self.file.train),
            "memory" => table_of(&self.file.memory),
            _ => return String::new(),
        };
        if values.get(name) == section_defaults(section).get(name) {
            " (the default)".into()
        } else {
            match self.source {
                Some(p) => format!(" (in {})", p.display()),
                None => " (in the config)".into(),
            }
        }
    }

    /// `KEY = VALUE (ORIGIN) PROBLEM` and a hint: the shape of every range refusal.
    fn refuse(&self, key: &str, value: &dyn Display, problem: &str, hint: &str) -> Error {
        Error::Config { message: format!("{key} = {value}{} {problem}\n  HINT: {hint}", self.of(key)) }
    }
}

/// What is wrong with a number that had to be finite and non-negative.
fn not_finite_or_negative(v: f64) -> &'static str {
    if v.is_nan() {
        "is not a number"
    } else if v.is_infinite() {
        "is infinite"
    } else {
        "is negative"
    }
}

/// Every `[train]` value checked against its own range. (total_batch_size needs the model's
/// sequence length: `RunConfig::resolve` checks it.)
fn check_train(tr: &TrainSpec, origin: &Origin<'_>) -> Result<()> {
    let d = TrainSpec::default();
    for (key, v, default) in [
        ("train.embedding_lr", tr.embedding_lr, d.embedding_lr),
        ("train.unembedding_lr", tr.unembedding_lr, d.unembedding_lr),
        ("train.matrix_lr", tr.matrix_lr, d.matrix_lr),
        ("train.scalar_lr", tr.scalar_lr, d.scalar_lr),
        ("train.smear_lr", tr.smear_lr, d.smear_lr),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(origin.refuse(
                key,
                &v,
                &format!("{}; a learning rate must be finite and >= 0", not_finite_or_negative(v)),
                &format!("nanochat's is {default} (the default); 0 freezes the group"),
            ));
        }
    }
    let s = tr.initial_loss_scale;
    if !(s.is_finite() && (1.0..=crate::train::precision::MAX_SCALE).contains(&s) && s.log2().fract() == 0.0) {
        return Err(origin.refuse(
            "train.initial_loss_scale",
            &s,
            "is not a power of two in [1, 2^48]: unscaling the gradients must be exact",
            &format!("GradScaler's is {} (the default)", d.initial_loss_scale),
        ));
    }
    if !(tr.weight_decay.is_finite() && tr.weight_decay >= 0.0) {
        return Err(origin.refuse(
            "train.weight_decay",
            &tr.weight_decay,
            &format!("{}; a weight decay must be finite and >= 0", not_finite_or_negative(tr.weight_decay)),
            &format!("nanochat's is {} (the default); 0 turns Muon's weight decay off", d.weight_decay),
        ));
    }
    if !(0.0..=1.0).contains(&tr.warmdown_ratio) {
        return Err(origin.refuse(
            "train.warmdown_ratio",
            &tr.warmdown_ratio,
            "is outside [0, 1]: it is the fraction of the run over which the lr decays",
            &format!(
                "nanochat's is {} (the default); 0 disables the warmdown, 1 decays over the whole run",
                d.warmdown_ratio
            ),
        ));
    }
    if !(0.0..=1.0).contains(&tr.final_lr_frac) {
        return Err(origin.refuse(
            "train.final_lr_frac",
            &tr.final_lr_frac,
            "is outside [0, 1]: it is the fraction of the lr the warmdown ends at",
            &format!("nanochat's is {} (the default); 0 decays to zero, 1 keeps the lr flat", d.final_lr_frac),
        ));
    }
    // -1 is the only way to ask for a derived horizon: 0 used to mean it too, silently turning a
    // typo into nanochat's full-length run.
    if tr.num_iterations == 0 || tr.num_iterations < -1 {
        let problem = if tr.num_iterations == 0 {
            "would train for 0 steps"
        } else {
            "is negative, and -1 (derive the horizon) is the only negative value it takes"
        };
        return Err(origin.refuse(
            "train.num_iterations",
            &tr.num_iterations,
            problem,
            "set N >= 1 optimizer steps, or -1 to derive the horizon from train.target_flops or \
             train.target_param_data_ratio",
        ));
    }
    if tr.target_flops != -1.0 && !(tr.target_flops.is_finite() && tr.target_flops > 0.0) {
        let problem = if tr.target_flops.is_finite() {
            "is not a FLOP budget: it must be > 0, or -1 for unused"
        } else {
            "is not finite: it must be a FLOP budget > 0, or -1 for unused"
        };
        return Err(origin.refuse(
            "train.target_flops",
            &tr.target_flops,
            problem,
            "a budget such as 1e18 (used when train.num_iterations is -1), or -1 (the default)",
        ));
    }
    // The ratio also sizes the data budget D of the weight-decay transfer (D_ref / D), where 0 or
    // infinity would give NaN whatever sets the horizon: so it is checked even when unused.
    if !(tr.target_param_data_ratio.is_finite() && tr.target_param_data_ratio > 0.0) {
        return Err(origin.refuse(
            "train.target_param_data_ratio",
            &tr.target_param_data_ratio,
            "must be a finite number > 0 (training tokens per scaling parameter)",
            &format!(
                "nanochat's is {} (the default); to fix the horizon directly set train.num_iterations",
                d.target_param_data_ratio
            ),
        ));
    }
    if tr.lr_reference_batch == 0 {
        return Err(origin.refuse(
            "train.lr_reference_batch",
            &tr.lr_reference_batch,
            "would divide by zero: the lrs are scaled by √(total_batch_size / lr_reference_batch)",
            "nanochat's is 524288 (the default); set it to train.total_batch_size to take the lrs as given",
        ));
    }
    if tr.device_batch_size == 0 {
        return Err(origin.refuse(
            "train.device_batch_size",
            &tr.device_batch_size,
            "leaves a micro-step without a sequence",
            "e.g. 8; the gradient accumulation (total_batch_size / (device_batch_size · sequence_len)) keeps the \
             total batch",
        ));
    }
    // Periods: N >= 1 or -1. 0 meant "never" by accident (the loop tests `every > 0`), and nanochat
    // divides by it; refusing it keeps "never" one explicit spelling.
    for (key, v, never) in [
        ("train.eval_every", tr.eval_every, "-1 never evaluates"),
        ("train.sample_every", tr.sample_every, "-1 never samples"),
        ("train.core_every", tr.core_every, "-1 never runs CORE"),
        ("train.save_every", tr.save_every, "-1 saves only at the end"),
    ] {
        if v == 0 || v < -1 {
            return Err(origin.refuse(
                key,
                &v,
                "is not a period: it takes N >= 1 (every N steps) or -1",
                &format!("set N >= 1; {never}"),
            ));
        }
    }
    if tr.core_max_per_task == 0 || tr.core_max_per_task < -1 {
        return Err(origin.refuse(
            "train.core_max_per_task",
            &tr.core_max_per_task,
            "is not an example count",
            "set N >= 1 (nanochat's default is 500), or -1 for every example; to skip CORE set train.core_every=-1",
        ));
    }
    if tr.eval_tokens == 0 {
        return Err(origin.refuse(
            "train.eval_tokens",
            &tr.eval_tokens,
            "leaves a validation without a token",
            &format!(
                "e.g. {} (the default, 80 batches of 524288); to skip validation set train.eval_every=-1",
                d.eval_tokens
            ),
        ));
    }
    Ok(())
}

/// The `(section, key)` an override names, trimmed; None unless it has the form `a.b=...`.
fn override_key(spec: &str) -> Option<(&str, &str)> {
    let (path, _) = spec.split_once('=')?;
    let (section, key) = path.split_once('.')?;
    let (section, key) = (section.trim(), key.trim());
    (!section.is_empty() && !key.is_empty() && !key.contains('.')).then_some((section, key))
}

/// `section.key=value`: value parsed as a TOML value if it is one (numbers, booleans, quoted
/// strings, nan, inf), else taken as a bare string (so `model.window_pattern=SSSL` works). The
/// section and key must exist and the value must have the key's type: each is refused here,
/// naming the override, not later as if the file held it.
fn apply_override(root: &mut toml::Value, spec: &str) -> Result<()> {
    let bad = |m: String| Error::Config { message: format!("--set {}: {m}", spec.trim()) };
    let (section, key) =
        override_key(spec).ok_or_else(|| bad("expected section.key=value, e.g. train.device_batch_size=4".into()))?;
    let sections = SECTIONS.map(|(s, _)| s).join(", ");
    let keys = section_keys(section).ok_or_else(|| {
        bad(format!(
            "there is no section `{section}`; the sections are {sections}\n  HINT: `wgpt config keys` lists every key"
        ))
    })?;
    let Some(doc) = keys.iter().find(|k| k.key == key) else {
        let guess = closest(key, keys).map_or(String::new(), |k| format!("; did you mean `{section}.{k}`?"));
        let names: Vec<&str> = keys.iter().map(|k| k.key).collect();
        return Err(bad(format!(
            "[{section}] has no key `{key}`{guess}\n  keys of [{section}]: {}\n  HINT: `wgpt config keys` lists \
             every key with its default and meaning",
            names.join(", ")
        )));
    };
    let raw = spec.split_once('=').map_or("", |(_, v)| v.trim());
    let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").unwrap(),
        Err(_) => toml::Value::String(raw.to_string()),
    };
    if let Err(e) = check_type(section, key, &value) {
        let default = section_defaults(section)
            .get(key)
            .map_or_else(|| if doc.required { "required".into() } else { "unset".into() }, |v| format!("default {v}"));
        return Err(bad(format!("{e}\n  HINT: {section}.{key} ({default}): {}", doc.meaning)));
    }
    let table = root.as_table_mut().ok_or_else(|| bad("the config is not a table".into()))?;
    let entry = table.entry(section).or_insert_with(|| toml::Value::Table(Default::default()));
    entry
        .as_table_mut()
        .ok_or_else(|| bad(format!("`{section}` in the config file is not a section")))?
        .insert(key.to_string(), value);
    Ok(())
}

/// Whether `value` deserializes as `section.key`: tried in a table that is otherwise complete
/// and valid (the defaults, and placeholders for `[model]`'s required keys), so any error is this
/// value's. Returns serde's message with Rust's type names put in words.
fn check_type(section: &str, key: &str, value: &toml::Value) -> std::result::Result<(), String> {
    let mut probe = match section {
        "model" => table_of(&ModelSpec::with_defaults(1, 2, 2)),
        _ => section_defaults(section),
    };
    probe.insert(key.to_string(), value.clone());
    let probe = toml::Value::Table(probe);
    let result = match section {
        "model" => probe.try_into::<ModelSpec>().map(drop),
        "train" => probe.try_into::<TrainSpec>().map(drop),
        _ => probe.try_into::<MemorySpec>().map(drop),
    };
    result.map_err(|e| {
        // serde's first line says what was wrong; the rest ("in `key`") repeats what we print.
        let msg = e.to_string();
        let first = msg.lines().next().unwrap_or("").trim().to_string();
        const WORDS: [(&str, &str); 4] = [
            ("expected i64", "expected an integer"),
            ("expected usize", "expected an integer >= 0"),
            ("expected u64", "expected an integer >= 0"),
            ("expected f64", "expected a number"),
        ];
        WORDS.iter().fold(first, |m, (rust, words)| m.replace(rust, words))
    })
}

/// The key nearest to `key` by edit distance, if it is near enough to be a typo of it.
fn closest(key: &str, keys: &[KeyDoc]) -> Option<&'static str> {
    let dist = |a: &str, b: &str| {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, &cb) in b.iter().enumerate() {
                let cur = row[j + 1];
                row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
                prev = cur;
            }
        }
        row[b.len()]
    };
    keys.iter().map(|k| (dist(key, k.key), k.key)).min().filter(|&(d, _)| d <= 3.max(key.len() / 4)).map(|(_, k)| k)
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
        let kjv = repo_config("kjv.toml");
        assert_eq!((kjv.model.n_layer, kjv.model.n_embd, kjv.model.sequence_len, kjv.grad_accum), (2, 128, 1024, 1));
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

    /// A small valid model for the refusal tests (head_dim 64 so C = 128, two query heads).
    const BASE: &str = "[model]\ndepth = 2\nhead_dim = 64\nvocab_size = 512\nsequence_len = 64\n";

    fn refusal(overrides: &[&str]) -> String {
        let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        match RunConfig::from_toml(BASE, Some(Path::new("configs/x.toml")), &o) {
            Ok(_) => panic!("{overrides:?} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn out_of_range_train_values_are_refused_naming_key_value_origin_and_fix() {
        for (set, shown, problem) in [
            ("train.embedding_lr=nan", "NaN", "is not a number"),
            ("train.unembedding_lr=-0.1", "-0.1", "is negative"),
            ("train.matrix_lr=inf", "inf", "is infinite"),
            ("train.scalar_lr=-1", "-1", "is negative"),
            ("train.smear_lr=nan", "NaN", "is not a number"),
            ("train.weight_decay=-0.5", "-0.5", "weight decay must be finite and >= 0"),
            ("train.weight_decay=inf", "inf", "is infinite"),
            ("train.warmdown_ratio=2", "2", "outside [0, 1]"),
            ("train.warmdown_ratio=-0.1", "-0.1", "outside [0, 1]"),
            ("train.warmdown_ratio=nan", "NaN", "outside [0, 1]"),
            ("train.final_lr_frac=1.5", "1.5", "outside [0, 1]"),
            ("train.final_lr_frac=-0.01", "-0.01", "outside [0, 1]"),
            ("train.num_iterations=0", "0", "0 steps"),
            ("train.num_iterations=-2", "-2", "-1 (derive the horizon) is the only negative value"),
            ("train.target_flops=nan", "NaN", "is not finite"),
            ("train.target_flops=inf", "inf", "is not finite"),
            ("train.target_flops=0", "0", "must be > 0, or -1"),
            ("train.target_flops=-5", "-5", "must be > 0, or -1"),
            ("train.target_param_data_ratio=0", "0", "finite number > 0"),
            ("train.target_param_data_ratio=-1", "-1", "finite number > 0"),
            ("train.target_param_data_ratio=inf", "inf", "finite number > 0"),
            ("train.lr_reference_batch=0", "0", "divide by zero"),
            ("train.eval_every=0", "0", "not a period"),
            ("train.eval_every=-2", "-2", "not a period"),
            ("train.sample_every=0", "0", "not a period"),
            ("train.save_every=0", "0", "not a period"),
            ("train.save_every=-3", "-3", "not a period"),
            ("train.eval_tokens=0", "0", "without a token"),
            ("train.device_batch_size=0", "0", "without a sequence"),
            ("train.initial_loss_scale=3", "3", "not a power of two in [1, 2^48]"),
            ("train.initial_loss_scale=0.5", "0.5", "not a power of two in [1, 2^48]"),
            ("train.initial_loss_scale=1e20", "100000000000000000000", "not a power of two in [1, 2^48]"),
            ("train.initial_loss_scale=inf", "inf", "not a power of two in [1, 2^48]"),
        ] {
            let key = set.split('=').next().unwrap();
            let e = refusal(&[set]);
            let head = format!("bad configuration: {key} = {shown} (from --set {set}) ");
            assert!(e.starts_with(&head), "{set}: expected `{head}…`, got\n{e}");
            assert!(e.contains(problem) && e.contains("\n  HINT: "), "{set}:\n{e}");
            // The same value written in the file is blamed on the file.
            let (section, name) = key.split_once('.').unwrap();
            let value = set.split_once('=').unwrap().1;
            let text = format!("{BASE}[{section}]\n{name} = {value}\n");
            let e = RunConfig::from_toml(&text, Some(Path::new("configs/x.toml")), &[]).unwrap_err().to_string();
            assert!(e.contains(&format!("{key} = {shown} (in configs/x.toml) ")), "{set} in the file:\n{e}");
        }
    }

    #[test]
    fn model_matmul_is_refused_with_a_pointer_to_train_precision() {
        let text = format!("{BASE}matmul = \"f16\"\n");
        let e = RunConfig::from_toml(&text, Some(Path::new("configs/x.toml")), &[]).unwrap_err().to_string();
        assert!(e.contains("configs/x.toml: model.matmul was replaced by train.precision"), "{e}");
        assert!(e.contains("HINT: write `precision = \"f16\"` under [train]"), "{e}");
        let e = refusal(&["model.matmul=f16"]);
        assert!(e.contains("--set: model.matmul was replaced by train.precision"), "{e}");
        let c = RunConfig::from_toml(BASE, None, &["train.precision=auto".into()]).unwrap();
        assert_eq!(c.train().precision, Precision::Auto);
        assert_eq!(RunConfig::from_toml(BASE, None, &[]).unwrap().train().precision, Precision::Auto);
    }

    #[test]
    fn boundary_values_are_accepted() {
        for set in [
            "train.warmdown_ratio=0",
            "train.warmdown_ratio=1",
            "train.final_lr_frac=0",
            "train.final_lr_frac=1",
            "train.matrix_lr=0",
            "train.weight_decay=0",
            "train.num_iterations=-1",
            "train.num_iterations=1",
            "train.target_flops=-1",
            "train.target_flops=1e18",
            "train.eval_every=-1",
            "train.eval_every=1",
            "train.sample_every=-1",
            "train.save_every=-1",
            "train.eval_tokens=1",
            "train.initial_loss_scale=1",
            "train.initial_loss_scale=281474976710656",
        ] {
            let o = [set.to_string(), "train.total_batch_size=16384".into(), "train.device_batch_size=2".into()];
            if let Err(e) = RunConfig::from_toml(BASE, None, &o) {
                panic!("{set} refused: {e}");
            }
        }
    }

    #[test]
    fn model_values_the_kernels_cannot_run_are_refused_up_front() {
        for (set, head, hint) in [
            ("model.head_dim=6", "model.head_dim = 6 (from --set model.head_dim=6) ", "128"),
            ("model.head_dim=256", "model.head_dim = 256 (from --set model.head_dim=256) ", "128"),
            ("model.n_kv_head=4", "model.n_kv_head = 4 (from --set model.n_kv_head=4) ", "use one of 1, 2"),
            ("model.n_kv_head=0", "model.n_kv_head = 0 (from --set model.n_kv_head=0) ", "use one of 1, 2"),
            ("model.depth=0", "model.depth = 0 (from --set model.depth=0) ", "12"),
            ("model.vocab_size=1", "model.vocab_size = 1 (from --set model.vocab_size=1) ", "tokenizer"),
            ("model.sequence_len=1", "model.sequence_len = 1 (from --set model.sequence_len=1) ", "2048"),
            ("model.window_pattern=LX", "model.window_pattern = \"LX\" (from --set model.window_pattern=LX) ", "SSSL"),
        ] {
            let e = refusal(&[set]);
            assert!(e.starts_with(&format!("bad configuration: {head}")), "{set}:\n{e}");
            assert!(e.split("HINT:").nth(1).is_some_and(|h| h.contains(hint)), "{set}:\n{e}");
        }
        // C = depth · aspect_ratio rounded up to head_dim: 1 · 8 → 8 channels, under the smear gate's 24.
        let e = refusal(&["model.depth=1", "model.aspect_ratio=8", "model.head_dim=8"]);
        assert!(e.contains("model.aspect_ratio = 8 (from --set model.aspect_ratio=8)") && e.contains("C = 8"), "{e}");
    }

    #[test]
    fn a_wrong_override_names_the_override_not_the_file() {
        let e = refusal(&["train.num_iterations=abc"]);
        assert!(
            e.starts_with(
                "bad configuration: --set train.num_iterations=abc: invalid type: string \"abc\", expected an integer"
            ),
            "{e}"
        );
        assert!(!e.contains("x.toml") && e.contains("HINT: train.num_iterations (default -1): Optimizer steps"), "{e}");
        let e = refusal(&["train.eval_tokens=-5"]);
        assert!(e.contains("--set train.eval_tokens=-5: invalid value: integer `-5`, expected an integer >= 0"), "{e}");
        let e = refusal(&["train.warmdown_ratio=much"]);
        assert!(e.contains("--set train.warmdown_ratio=much: invalid type: string \"much\", expected a number"), "{e}");
        let e = refusal(&["memory.recompute=sometimes"]);
        assert!(e.contains("--set memory.recompute=sometimes: unknown variant `sometimes`"), "{e}");
        let e = refusal(&["model.depth=deep"]);
        assert!(e.contains("--set model.depth=deep: invalid type") && e.contains("(required)"), "{e}");
        // Unknown keys list the section's keys and suggest the nearest.
        let e = refusal(&["train.num_iteration=5"]);
        assert!(e.contains("--set train.num_iteration=5: [train] has no key `num_iteration`"), "{e}");
        assert!(
            e.contains("did you mean `train.num_iterations`?") && e.contains("warmup_steps, warmdown_ratio"),
            "{e}"
        );
        assert!(e.contains("wgpt config keys"), "{e}");
        let e = refusal(&["memory.recompte=none"]);
        assert!(e.contains("did you mean `memory.recompute`?") && e.contains("recompute, logits_chunk_rows"), "{e}");
        let e = refusal(&["trian.seed=1"]);
        assert!(e.contains("--set trian.seed=1: there is no section `trian`; the sections are model, train, memory"));
        // With overrides, what the file gets wrong is still the file's, key included.
        let text = format!("{BASE}[train]\neval_every = \"often\"\n");
        let e = RunConfig::from_toml(&text, Some(Path::new("configs/x.toml")), &["train.seed=1".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("configs/x.toml: invalid type: string \"often\"") && e.contains("train.eval_every"), "{e}");
        // An override that fixes the file's value wins.
        let text = format!("{BASE}[train]\nwarmdown_ratio = 2\n");
        let c = RunConfig::from_toml(&text, None, &["train.warmdown_ratio=0.5".into()]).unwrap();
        assert_eq!(c.train().warmdown_ratio, 0.5);
        // The last of several overrides of a key is the one blamed.
        let e = refusal(&["train.warmdown_ratio=0.5", "train.warmdown_ratio=3"]);
        assert!(e.contains("(from --set train.warmdown_ratio=3)"), "{e}");
    }

    /// The documented keys are exactly the fields serde reads and writes, so `wgpt config keys`
    /// and the `--set` errors cannot list a key that does not exist or miss one that does.
    #[test]
    fn key_tables_match_the_structs() {
        let names = |t: toml::Table| t.keys().cloned().collect::<std::collections::BTreeSet<String>>();
        let documented = |keys: &[KeyDoc]| {
            let set: std::collections::BTreeSet<String> = keys.iter().map(|k| k.key.to_string()).collect();
            assert_eq!(set.len(), keys.len(), "a key is documented twice");
            set
        };
        assert_eq!(documented(TRAIN_KEYS), names(table_of(&TrainSpec::default())));
        assert_eq!(documented(MEMORY_KEYS), names(table_of(&MemorySpec::default())));
        // Every optional field set, so that none is skipped when serialized.
        let full = ModelSpec { n_kv_head: Some(1), ..ModelSpec::with_defaults(1, 2, 2) };
        let model = crate::model::config::MODEL_KEYS;
        assert_eq!(documented(model), names(table_of(&full)));
        assert!(TRAIN_KEYS.iter().chain(MEMORY_KEYS).all(|k| !k.required), "[train] and [memory] have defaults");
        // `required` is true exactly for the keys a [model] table cannot omit.
        for k in model {
            let mut t = table_of(&full);
            t.remove(k.key);
            let parsed = toml::Value::Table(t).try_into::<ModelSpec>();
            assert_eq!(parsed.is_err(), k.required, "model.{}: required is {}", k.key, k.required);
        }
        // with_defaults is what serde fills in for the omitted keys.
        let parsed: ModelSpec = toml::from_str("depth = 3\nvocab_size = 7\nsequence_len = 9\n").unwrap();
        assert_eq!(parsed, ModelSpec::with_defaults(3, 7, 9));
        for (section, keys) in SECTIONS {
            assert!(keys.iter().all(|k| !k.meaning.is_empty()), "{section}");
            let defaults = section_defaults(section);
            for k in keys {
                assert_eq!(defaults.contains_key(k.key), !k.required && k.key != "n_kv_head", "{section}.{}", k.key);
            }
        }
    }

    #[test]
    fn keys_text_lists_every_key_with_its_default_and_the_files_values() {
        let text = keys_text(None);
        for (section, keys) in SECTIONS {
            for k in keys {
                assert!(text.contains(&format!("\n  {section}.{}", k.key)), "{section}.{} missing", k.key);
            }
        }
        assert!(text.contains("\n  train.num_iterations = -1\n      Optimizer steps"), "{text}");
        assert!(text.contains("\n  model.depth  (required)\n"), "{text}");
        assert!(text.contains("\n  model.n_kv_head  (unset by default)\n"), "{text}");
        assert!(text.contains("\n  memory.recompute = \"mlp\"\n"), "{text}");
        assert!(text.lines().all(|l| l.chars().count() <= 100), "{text}");
        let table: toml::Table =
            toml::from_str("[model]\ndepth = 4\n[train]\nnum_iterations = 300\nbogus = 1\n").unwrap();
        let text = keys_text(Some((Path::new("configs/cpu-small.toml"), &table)));
        let line = |key: &str| text.lines().find(|l| l.starts_with(&format!("  {key} "))).unwrap_or("").to_string();
        let num = line("train.num_iterations");
        assert!(
            num.starts_with("  train.num_iterations = -1 ") && num.ends_with("  configs/cpu-small.toml: 300"),
            "{text}"
        );
        let depth = line("model.depth");
        assert!(
            depth.starts_with("  model.depth  (required) ") && depth.ends_with("  configs/cpu-small.toml: 4"),
            "{text}"
        );
        assert_eq!(line("train.seed"), "  train.seed = 42", "a key the file does not set shows only its default");
        assert!(text.contains("sets keys that do not exist: train.bogus"), "{text}");
    }
}
