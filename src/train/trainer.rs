//! The training loop (`wgpt train`, `cargo xtask train`): nanochat's base_train (spec §4) on the
//! GPU model and optimizer.
//!
//! Order of a run:
//! 1. Resolve the config (TOML → `--set` overrides → one resolve) and the hyperparameters; print
//!    the resolved run (with `--dry-run`, stop here: nothing is allocated).
//! 2. Lock the run directory (one process per directory) and refuse what cannot run before
//!    touching the GPU: an earlier run's files under a fresh run, missing data or tokenizer, a
//!    tokenizer whose vocabulary disagrees with the model, a checkpoint that does not load
//!    completely (resume falls back to the newest one that does), a config change on resume that
//!    cannot work, weights (`--init-from`) that do not fit the config, a plan larger than the
//!    adapter's memory.
//! 3. Allocate the model and optimizer (exactly the memory plan), initialise or resume.
//! 4. For step = start … N: validation bits-per-byte when due, samples when due, a checkpoint
//!    when due, then (unless last) one optimizer step of `grad_accum` micro-batches, logged.
//! 5. Write report.md and its chart.
//!
//! Failure handling: a non-finite gradient is caught by the optimizer's norm pass before it
//! reaches any weight (the GPU skips the update), and the run stops naming the step, the tensors
//! and the last good checkpoint; a NaN never reaches a checkpoint. Every failure (non-finite
//! parameters at a save, a checkpoint or log that cannot be written) leaves the report, removes
//! partial files and names the last good checkpoint.
//!
//! Stopping: Ctrl-C or SIGTERM is acknowledged at once and takes effect at the next micro-batch or
//! evaluation batch. An interrupted accumulation is discarded (the checkpoint is the state before
//! that step, loader included); an interrupted evaluation is redone on resume. A second signal
//! kills the process.

use super::checkpoint;
use super::mfu::{mfu_percent, peak_flops, Precision};
use super::optimizer::Optimizer;
use super::precision::{LossScaler, ScaleVerdict};
use super::report::Report;
use super::rundir::{self, RunDir};
use super::Hyper;
use crate::config::RunConfig;
use crate::data::cli::DataArgs;
use crate::data::{Dataset, Loader, LoaderOptions, LoaderState, Split};
use crate::gpu::GpuContext;
use crate::model::gpu::{GpuModel, Pass};
use crate::model::memory::{Category, MemoryPlan};
use crate::model::{OptGroup, ParamLayout};
use crate::tokenizer::Tokenizer;
use anyhow::{anyhow, bail, Context};
use clap::Args;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[derive(Args, Debug, Clone, Default)]
pub struct TrainArgs {
    /// Config file. Default: configs/cpu-small.toml. Every key and its default: `wgpt config keys`.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override a config value: --set train.num_iterations=50 (repeatable; keys: `wgpt config keys`).
    #[arg(long = "set")]
    pub overrides: Vec<String>,
    #[command(flatten)]
    pub data: DataArgs,
    /// tokenizer.json (default: <base>/tokenizer/tokenizer.json; trained there first if missing
    /// and no path was given; a resumed run uses the copy in its run directory).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Run directory for metrics, checkpoints and the report (default: runs/<config name>).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Continue from the run directory's newest checkpoint that loads completely.
    #[arg(long)]
    pub resume: bool,
    /// Continue from this checkpoint of the run directory: step_NNNNNN, a step number or a path.
    #[arg(long, value_name = "STEP", conflicts_with = "resume")]
    pub resume_from: Option<String>,
    /// On resume, keep the weights and optimizer state but read the training data from its
    /// beginning (for a dataset that changed since the checkpoint).
    #[arg(long)]
    pub restart_data: bool,
    /// Start a fresh run (fresh optimizer, data and schedule) from the weights of a checkpoint
    /// directory: a wgpt step_NNNNNN, or a nanochat model as safetensors with its meta_*.json.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["resume", "resume_from"])]
    pub init_from: Option<PathBuf>,
    /// Move an earlier run's files out of the run directory (into archive/<time>/) and start over.
    #[arg(long, conflicts_with_all = ["resume", "resume_from"])]
    pub archive_old: bool,
    /// Print the resolved run and the memory plan, then exit without allocating anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Peak TFLOPS of the adapter at the precision the kernels use (f32), for MFU, when the
    /// built-in table does not know the card.
    #[arg(long)]
    pub peak_tflops: Option<f64>,
    /// Stop after this step as if interrupted (checkpoint + report), e.g. to test resumption.
    #[arg(long, hide = true)]
    pub stop_after: Option<usize>,
}

impl TrainArgs {
    fn resuming(&self) -> bool {
        self.resume || self.resume_from.is_some()
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
    const MSG: &[u8] =
        b"\nwgpt: stop requested: stopping after this micro-batch, then saving a checkpoint (Ctrl-C again to kill)\n";
    // SAFETY: write() and signal() are async-signal-safe. Back to the default action, so a second
    // Ctrl-C (or SIGTERM) kills the process at once.
    unsafe {
        libc::write(2, MSG.as_ptr().cast(), MSG.len());
        libc::signal(sig, libc::SIG_DFL);
    }
}

/// Ctrl-C, or the SIGTERM a job scheduler, `timeout` or `kill` sends, sets a flag the loop checks
/// before every micro-batch and every evaluation batch; a second one kills as usual.
fn install_signal_handlers() {
    STOP.store(false, Ordering::SeqCst);
    #[cfg(unix)]
    unsafe {
        // SAFETY: the handler only stores to an atomic, writes a constant message and resets its
        // own disposition, all async-signal-safe.
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

fn default_config() -> PathBuf {
    PathBuf::from("configs/cpu-small.toml")
}

/// The nanochat-style description of the resolved run (printed, and kept for the report).
pub fn describe_run(rc: &RunConfig, h: &Hyper, plan: &MemoryPlan) -> String {
    let m = &rc.model;
    let tr = rc.train();
    let layout = ParamLayout::new(m);
    let counts = crate::model::ParamCounts::of(m);
    let mut s = String::new();
    s += &format!(
        "model: depth {} · C {} · {} heads ({} KV) of {} · vocab {} · T {} · windows {}\n",
        m.n_layer, m.n_embd, m.n_head, m.n_kv_head, m.head_dim, m.vocab_size, m.sequence_len, m.window_pattern
    );
    s += &format!("parameters: {} total, {} scaling (matrices + lm_head)\n", counts.total, counts.scaling);
    s += &format!("FLOPs per token: {:e}\n", m.flops_per_token() as f64);
    s += &format!(
        "batch: {} tokens per step = {} × {} × {} micro-steps (grad accumulation)\n",
        tr.total_batch_size, tr.device_batch_size, m.sequence_len, rc.grad_accum
    );
    s += &format!(
        "horizon: {} iterations ({}), {} tokens, tokens:params {:.2}, {:.3e} FLOPs\n",
        h.num_iterations, h.horizon_source, h.total_tokens, h.tokens_per_param, h.total_flops
    );
    s += &format!(
        "lr scale: batch √({}/{}) = {:.6}, width (C/768)^-½ = {:.6}\n",
        tr.total_batch_size, tr.lr_reference_batch, h.batch_lr_scale, h.dmodel_lr_scale
    );
    s += "optimizer groups (effective base lr before the schedule):\n";
    for g in [
        OptGroup::Unembedding,
        OptGroup::Embedding,
        OptGroup::ValueEmbeds,
        OptGroup::Resid,
        OptGroup::X0,
        OptGroup::Smear,
    ] {
        let (b1, b2, wd) = super::optimizer::adamw_group_constants(g).unwrap();
        let n: usize = layout.specs.iter().filter(|p| p.group == g).map(|p| p.numel()).sum();
        s += &format!("  adamw {:<13} lr {:.7}  betas ({b1}, {b2})  wd {wd}  ({n} params)\n", g.name(), h.group_lr(g));
    }
    for grp in &layout.muon_groups {
        let lr_eff = h.lr_muon * (grp.rows as f64 / grp.cols as f64).max(1.0).sqrt();
        s += &format!(
            "  muon  {:>4}×{:<5} ×{:<3} lr {:.7} (lr·√max(1, rows/cols))\n",
            grp.rows,
            grp.cols,
            grp.members.len(),
            lr_eff
        );
    }
    s += &format!(
        "muon: {:?}, weight decay {:.7} (cosine to 0), momentum 0.85→0.97 over 400 steps, →0.90 in the warmdown\n",
        tr.muon, h.muon_weight_decay
    );
    s += &format!(
        "schedule: warmup {} steps, warmdown {} steps to {} of the lr\n",
        h.warmup_steps, h.warmdown_steps, h.final_lr_frac
    );
    s += &format!(
        "eval every {} steps on {} tokens; samples every {}; CORE every {} (at most {} examples per task); \
         checkpoints every {} (and at the end)\n",
        tr.eval_every, tr.eval_tokens, tr.sample_every, tr.core_every, tr.core_max_per_task, tr.save_every
    );
    s += &format!(
        "memory plan (recompute = {:?}, logits chunk {} rows):\n{}",
        rc.file.memory.recompute,
        rc.logits_chunk_rows,
        plan.render()
    );
    for w in &h.warnings {
        s += &format!("WARNING: {w}\n");
    }
    s
}

/// The CORE tasks under `$WGPT_EVAL_DATA` (default `../shared/data/eval`), every file parsed.
fn load_core_suite(tok: &Tokenizer) -> anyhow::Result<crate::eval::tasks::CoreSuite> {
    let root = std::env::var_os("WGPT_EVAL_DATA").map_or_else(|| PathBuf::from("../shared/data/eval"), PathBuf::from);
    let core = root.join("core");
    if !core.is_dir() {
        bail!(
            "train.core_every asks for the CORE metric, but {} does not exist\n  HINT: set WGPT_EVAL_DATA to the \
             evaluation data folder (holding core/ and hellaswag/, e.g. ../shared/data/eval), or set \
             train.core_every=-1 to train without CORE",
            core.display()
        );
    }
    tok.bos_id()?;
    let hella = root.join("hellaswag");
    let suite = crate::eval::tasks::core_tasks(&core, hella.is_dir().then_some(hella.as_path()))?;
    for t in &suite.tasks {
        crate::eval::tasks::load_items(t)?;
    }
    let missing: Vec<&str> = suite.missing.iter().map(|m| m.label.as_str()).collect();
    println!(
        "CORE: {} tasks from {}{}",
        suite.tasks.len(),
        root.display(),
        if missing.is_empty() { String::new() } else { format!(" (absent: {})", missing.join(", ")) }
    );
    Ok(suite)
}

/// Where the tokenizer is, training one first when there is none at the default location.
fn ensure_tokenizer(args: &TrainArgs, rc: &RunConfig, ds: &Dataset) -> anyhow::Result<PathBuf> {
    if let Some(p) = &args.tokenizer {
        if !p.is_file() {
            bail!(
                "--tokenizer {}: no such file\n  HINT: train one with `wgpt tokenizer train --vocab-size {}`",
                p.display(),
                rc.model.vocab_size
            );
        }
        return Ok(p.clone());
    }
    let dir = crate::data::base_dir().join("tokenizer");
    let path = dir.join("tokenizer.json");
    if path.is_file() {
        let tok = Tokenizer::from_file(&path)?;
        if tok.vocab_size() == rc.model.vocab_size {
            return Ok(path);
        }
        let dir = crate::data::base_dir().join(format!("tokenizer-{}", rc.model.vocab_size));
        let p2 = dir.join("tokenizer.json");
        if p2.is_file() {
            return Ok(p2);
        }
        return train_tokenizer(ds, rc.model.vocab_size, &dir);
    }
    train_tokenizer(ds, rc.model.vocab_size, &dir)
}

fn train_tokenizer(ds: &Dataset, vocab: usize, dir: &Path) -> anyhow::Result<PathBuf> {
    println!("no tokenizer yet: training a {vocab}-token BPE on the train split into {}", dir.display());
    let opts = crate::tokenizer::TrainOptions { vocab_size: vocab, ..Default::default() };
    let (tok, summary) = crate::tokenizer::train(ds.docs(Split::Train), &opts)?;
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let (json, _) = tok.save(dir)?;
    // What it was trained on, so every run that loads it can say so.
    crate::tokenizer::save_trained_on(dir, &ds.config().path, ds.fingerprint(), &summary)?;
    println!(
        "tokenizer: {} merges from {} documents ({} chars) → {}",
        summary.merges,
        summary.docs,
        summary.chars,
        json.display()
    );
    Ok(json)
}

/// One line on a tokenizer: where it is, its size and fingerprint, and what it was trained on.
fn describe_tokenizer(path: &Path, tok: &Tokenizer) -> String {
    let origin = crate::tokenizer::trained_on(path).unwrap_or_else(|| "trained on: not recorded".into());
    format!("{} · vocab {} · fingerprint {:016x} · {origin}", path.display(), tok.vocab_size(), tok.fingerprint())
}

/// Validation bits per byte over `steps` batches of a fresh val loader (spec §6): special-token
/// targets (0 bytes) are excluded from both sums. `None` when `stop` turned true between batches.
pub fn eval_bpb(
    model: &mut GpuModel<'_>,
    ds: &Arc<Dataset>,
    tok: &Arc<Tokenizer>,
    steps: usize,
    stop: &dyn Fn() -> bool,
) -> anyhow::Result<Option<f64>> {
    let opts = LoaderOptions::new(model.b, model.t);
    let mut val = Loader::new(ds.clone(), tok.clone(), Split::Val, opts, None)?;
    let token_bytes = tok.token_bytes();
    let (mut nats, mut bytes) = (0.0f64, 0u64);
    for i in 0..steps.max(1) {
        if i > 0 && stop() {
            println!("evaluation interrupted after {i} of {} batches", steps.max(1));
            return Ok(None);
        }
        let batch = val.next_batch()?;
        model.set_batch(&batch.inputs, &batch.targets, 1)?;
        model.run_micro_step(Pass::Eval)?;
        let losses = model.read_losses()?;
        for (l, &y) in losses.iter().zip(&batch.targets) {
            if y < 0 {
                continue;
            }
            let b = token_bytes[y as usize] as u64;
            if b > 0 {
                nats += *l as f64;
                bytes += b;
            }
        }
    }
    Ok(Some(if bytes == 0 { f64::INFINITY } else { nats / (std::f64::consts::LN_2 * bytes as f64) }))
}

/// Where a resumed run starts, read and checked completely before the GPU is opened.
struct Resume {
    dir: PathBuf,
    loaded: checkpoint::Loaded,
    /// The checkpoint was taken when its step's evaluation was interrupted: redo it first.
    redo_evals: bool,
}

/// Weights a fresh run starts from (`--init-from`).
struct InitFrom {
    params: Vec<f32>,
    /// What they are, for the log, the report and the checkpoints' meta.
    source: String,
}

/// Config keys whose change on resume cannot work: they shape the weights or the optimizer state.
fn frozen_on_resume(key: &str) -> bool {
    matches!(
        key,
        "model.depth" | "model.aspect_ratio" | "model.head_dim" | "model.n_kv_head" | "model.vocab_size" | "train.muon"
    )
}

/// `section.key: old → new` for every value that differs between two serialised config files.
fn config_changes(old: &serde_json::Value, new: &serde_json::Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let empty = serde_json::Map::new();
    let sections: std::collections::BTreeSet<&String> =
        old.as_object().unwrap_or(&empty).keys().chain(new.as_object().unwrap_or(&empty).keys()).collect();
    for sec in sections {
        let (o, n) = (old.get(sec).and_then(|v| v.as_object()), new.get(sec).and_then(|v| v.as_object()));
        let keys: std::collections::BTreeSet<&String> =
            o.unwrap_or(&empty).keys().chain(n.unwrap_or(&empty).keys()).collect();
        for k in keys {
            let a = o.and_then(|m| m.get(k)).cloned().unwrap_or(serde_json::Value::Null);
            let b = n.and_then(|m| m.get(k)).cloned().unwrap_or(serde_json::Value::Null);
            if a != b {
                out.push((format!("{sec}.{k}"), a.to_string(), b.to_string()));
            }
        }
    }
    out
}

/// Find the checkpoint to resume from and check it against the config; nothing touches the GPU.
fn find_resume(args: &TrainArgs, rc: &RunConfig, layout: &ParamLayout, run_dir: &Path) -> anyhow::Result<Resume> {
    let new_cfg = serde_json::to_value(&rc.file)?;
    // A config that cannot continue these checkpoints is the user's to fix, not a reason to fall
    // back to an older checkpoint: check it first, on the newest meta that reads.
    let newest_meta = checkpoint::list(run_dir).into_iter().find_map(|(_, d)| {
        let text = std::fs::read_to_string(d.join("meta.json")).ok()?;
        serde_json::from_str::<serde_json::Value>(&text).ok()
    });
    if let Some(meta) = &newest_meta {
        let frozen: Vec<String> = config_changes(&meta["user_config"], &new_cfg)
            .into_iter()
            .filter(|(k, _, _)| frozen_on_resume(k))
            .map(|(k, a, b)| format!("{k}: {a} → {b}"))
            .collect();
        if !frozen.is_empty() {
            bail!(
                "--resume: the config changes what the checkpoints hold:\n  {}\n  HINT: these describe the weights and \
                 the optimizer state; resume with the run's own values ({}) or start a new run (--run-dir, or \
                 --init-from a checkpoint to keep its weights)",
                frozen.join("\n  "),
                run_dir.join("config.toml").display()
            );
        }
    }
    let check = |l: &checkpoint::Loaded| -> Result<(), String> {
        if l.meta.get("dataloader_state_dict").is_none() {
            return Err("meta.json has no dataloader_state_dict".into());
        }
        serde_json::from_value::<LoaderState>(l.meta["dataloader_state_dict"].clone())
            .map_err(|e| format!("meta.json's dataloader_state_dict does not parse: {e}"))?;
        Ok(())
    };
    let r = checkpoint::find_resumable(run_dir, layout, args.resume_from.as_deref(), &check).map_err(|e| anyhow!(e))?;
    for (dir, why) in &r.skipped {
        println!("resume: passing over {}: {why}", dir.display());
    }
    if !r.skipped.is_empty() {
        println!("resume: using {}, the newest checkpoint that loads completely", r.dir.display());
    }
    let redo_evals = r.loaded.meta["resume_at"].as_str() == Some("eval");
    Ok(Resume { dir: r.dir, loaded: r.loaded, redo_evals })
}

/// `--init-from DIR`: a wgpt checkpoint (model.safetensors + meta.json) or a nanochat model
/// (model*.safetensors + meta*.json; of several, the highest step), checked against the config.
fn load_init_from(dir: &Path, rc: &RunConfig, layout: &ParamLayout) -> anyhow::Result<InitFrom> {
    let pick = |prefix: &str, ext: &str| -> Option<PathBuf> {
        let exact = dir.join(format!("{prefix}.{ext}"));
        if exact.is_file() {
            return Some(exact);
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                n.starts_with(prefix) && n.ends_with(&format!(".{ext}"))
            })
            .collect();
        // nanochat names them model_NNNNNN / meta_NNNNNN: the zero-padded step sorts.
        found.sort();
        found.pop()
    };
    if !dir.is_dir() {
        bail!("--init-from {}: not a directory\n  HINT: pass a checkpoint directory, e.g. runs/NAME/checkpoints/step_000300", dir.display());
    }
    let (Some(weights), Some(meta_path)) = (pick("model", "safetensors"), pick("meta", "json")) else {
        bail!(
            "--init-from {}: expected model.safetensors and meta.json (wgpt), or model_*.safetensors and meta_*.json \
             (nanochat) in it\n  HINT: a nanochat model_*.pt converts with safetensors.torch.save_file(torch.load(...))",
            dir.display()
        );
    };
    let (their_cfg, meta) = crate::model::checkpoint::load_meta(&meta_path)?;
    let params = crate::model::checkpoint::load_weights(&weights, layout).map_err(|e| {
        anyhow!(
            "--init-from: {e}\n  the checkpoint's meta ({}) describes: depth {} · C {} · {} heads ({} KV) · vocab {}; the \
             config: depth {} · C {} · {} heads ({} KV) · vocab {}",
            meta_path.display(),
            their_cfg.n_layer,
            their_cfg.n_embd,
            their_cfg.n_head,
            their_cfg.n_kv_head,
            their_cfg.vocab_size,
            rc.model.n_layer,
            rc.model.n_embd,
            rc.model.n_head,
            rc.model.n_kv_head,
            rc.model.vocab_size
        )
    })?;
    if let Some(i) = params.iter().position(|p| !p.is_finite()) {
        let name = layout.name_at(i);
        bail!("--init-from {}: parameter {name} holds non-finite values", weights.display());
    }
    let step = meta["step"].as_u64().map_or(String::new(), |s| format!(", step {s}"));
    let bpb = meta["val_bpb"].as_f64().map_or(String::new(), |b| format!(", val bpb {b:.4}"));
    let source = format!(
        "{} (meta {}{step}{bpb}; checksum {:016x})",
        weights.display(),
        meta_path.display(),
        crate::util::checksum64(bytemuck::cast_slice(&params))
    );
    Ok(InitFrom { params, source })
}

/// Everything a save needs besides the step.
struct SaveCtx<'a> {
    run_dir: &'a Path,
    layout: &'a ParamLayout,
    rc: &'a RunConfig,
    tok_path: &'a Path,
    tok_fingerprint: String,
    init_from: Option<&'a str>,
}

/// A failure that stops the run: write the report with it, and say what to do next.
fn fail(report: &mut Report, run_dir: &Path, step: usize, what: &str, hint: &str) -> anyhow::Error {
    report.failure(step, what);
    let written = match report.write(run_dir) {
        Ok(p) => format!("report: {}", p.display()),
        Err(e) => format!("the report could not be written either: {e}"),
    };
    let last_good = checkpoint::latest(run_dir).ok().flatten().map_or("none".into(), |p| p.display().to_string());
    anyhow!("step {step}: {what}\n  last good checkpoint: {last_good}\n  {written}\n  HINT: {hint}")
}

/// Append one row to metrics.jsonl; a failed write (a full disk) stops the run with a report.
fn log_row(
    metrics: &mut std::fs::File,
    row: serde_json::Value,
    report: &mut Report,
    run_dir: &Path,
    step: usize,
) -> anyhow::Result<()> {
    writeln!(metrics, "{row}").map_err(|e| {
        fail(
            report,
            run_dir,
            step,
            &format!("cannot append to {}: {e}", run_dir.join("metrics.jsonl").display()),
            "free space on that disk, then continue with --resume",
        )
    })
}

/// The terminal's view of the loop: a progress bar with the log lines above it, or (not a
/// terminal: a file, a pipe, CI) one plain line per step.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    every: usize,
}

impl Progress {
    fn new(n_it: usize, start: usize) -> Progress {
        let bar = std::io::stdout().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(n_it as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} {msg}")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            b.set_position(start as u64);
            b
        });
        // On a terminal the bar shows every step; a permanent line every 5% keeps a history.
        Progress { bar, every: (n_it / 20).max(1) }
    }

    fn line(&self, s: &str) {
        match &self.bar {
            Some(b) => b.println(s),
            None => println!("{s}"),
        }
    }

    fn step(&self, step: usize, line: &str, short: &str) {
        match &self.bar {
            Some(b) => {
                b.set_position(step as u64 + 1);
                b.set_message(short.to_string());
                if step.is_multiple_of(self.every) {
                    b.println(line);
                }
            }
            None => println!("{line}"),
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// `12.3m`, or blank while unknown (no timed step yet).
fn eta(seconds: Option<f64>) -> String {
    seconds.map_or("—".into(), |s| if s < 90.0 { format!("{s:.0}s") } else { format!("{:.1}m", s / 60.0) })
}

/// Train. Returns the process exit code.
pub fn run(
    ctx_opener: &dyn Fn() -> anyhow::Result<GpuContext>,
    args: &TrainArgs,
    command_line: &str,
) -> anyhow::Result<i32> {
    let config = args.config.clone().unwrap_or_else(default_config);
    let rc = RunConfig::load(&config, &args.overrides)?;
    let hyper = Hyper::resolve(&rc)?;
    let plan = crate::train::memory_plan(&rc);
    let desc = describe_run(&rc, &hyper, &plan);
    println!("config: {} {}", config.display(), args.overrides.join(" "));
    print!("{desc}");
    if args.dry_run {
        // auto and f16 depend on the adapter: open it (allocating nothing) to say which and why.
        let asked = rc.train().precision;
        if asked == crate::config::Precision::F32 {
            println!("precision: train.precision = f32");
        } else {
            match ctx_opener() {
                Ok(ctx) => match super::precision::resolve(&ctx, asked) {
                    Ok(p) => println!("precision: {} (on {})", p.why, ctx.info.name),
                    Err(e) => println!("precision: {e}"),
                },
                Err(e) => println!(
                    "precision: train.precision = {}: decided when the run opens its adapter (none opened now: {e})",
                    asked.name()
                ),
            }
        }
        println!("dry run: nothing allocated");
        return Ok(0);
    }
    let tr = rc.train().clone();
    let name = config.file_stem().and_then(|s| s.to_str()).unwrap_or("run").to_string();
    let run_path = args.run_dir.clone().unwrap_or_else(|| PathBuf::from("runs").join(&name));
    let layout = ParamLayout::new(&rc.model);

    // ---- everything that can be refused, refused before the GPU is touched -------------------
    let run_dir = RunDir::lock(&run_path, command_line)?;
    let resume = if args.resuming() {
        Some(find_resume(args, &rc, &layout, &run_dir.path)?)
    } else {
        run_dir.check_fresh(args.archive_old)?;
        None
    };
    let init_from = match &args.init_from {
        Some(dir) => Some(load_init_from(dir, &rc, &layout)?),
        None => None,
    };
    let data_path = args.data.path();
    if !data_path.exists() {
        if args.data.data.is_some() {
            bail!("--data {}: no such file or directory", data_path.display());
        }
        // The default location is empty: fetch a couple of nanochat's shards (plus the
        // validation shard), as nanochat's speedrun does before training.
        println!("no data at {}: downloading 2 shards of nanochat's ClimbMix", data_path.display());
        let opts = crate::data::DownloadOptions::new(crate::data::RemoteDataset::Climbmix, 2, data_path.clone());
        if let Err(e) = crate::data::download(&opts, &|line| println!("{line}")) {
            bail!(
                "no training data at {} and the download failed: {e}\n  HINT: pass --data DIR (a directory of \
                 parquet/jsonl/txt files, e.g. ../shared/data/fineweb-edu/nanochat_shards), or run \
                 `wgpt data download --shards 8` where the network allows",
                data_path.display()
            );
        }
    }
    let ds = Arc::new(args.data.open()?);
    // A resumed run reads with the tokenizer it was trained with: the copy in its run directory.
    let run_tok = run_dir.join("tokenizer.json");
    let tok_path = if resume.is_some() && run_tok.is_file() {
        if let Some(given) = &args.tokenizer {
            let (a, b) = (Tokenizer::from_file(given)?, Tokenizer::from_file(&run_tok)?);
            if a.fingerprint() != b.fingerprint() {
                bail!(
                    "--tokenizer {} differs from the one this run was trained with ({}, fingerprint {:016x} vs {:016x})\n  \
                     HINT: drop --tokenizer to resume with the run's own copy",
                    given.display(),
                    run_tok.display(),
                    a.fingerprint(),
                    b.fingerprint()
                );
            }
        }
        run_tok.clone()
    } else {
        ensure_tokenizer(args, &rc, &ds)?
    };
    let tok = Arc::new(Tokenizer::from_file(&tok_path)?);
    tok.check_vocab_size(rc.model.vocab_size)?;
    println!("tokenizer: {}", describe_tokenizer(&tok_path, &tok));
    // CORE's task files, read and checked now (errors name the file and line), not at step 2000.
    let core_suite = if tr.core_every > 0 { Some(load_core_suite(&tok)?) } else { None };
    let core_max = crate::eval::cli::limit("train.core_max_per_task", tr.core_max_per_task)?;
    if let Some(suite) = &core_suite {
        crate::eval::core::check_max_per_task(&suite.tasks.iter().collect::<Vec<_>>(), core_max)
            .context("train.core_max_per_task")?;
    }
    let loader_state: Option<LoaderState> = match &resume {
        Some(r) if !args.restart_data => {
            Some(serde_json::from_value(r.loaded.meta["dataloader_state_dict"].clone()).context("loader state")?)
        }
        _ => None,
    };
    let opts = LoaderOptions::new(tr.device_batch_size, rc.model.sequence_len);
    // Checks the saved state against this dataset and tokenizer (before the GPU is opened).
    let mut train = Loader::new(ds.clone(), tok.clone(), Split::Train, opts, loader_state).map_err(|e| {
        anyhow!("{e}").context(format!("resuming the training data stream (of {})", data_path.display()))
    })?;

    let ctx = ctx_opener()?;
    if let Some(mem) = crate::gpu::adapters::device_memory_bytes(&ctx.adapter) {
        let fixed = plan.bytes(Category::Params) + plan.bytes(Category::Grads) + plan.bytes(Category::Optimizer);
        let mib = |b: u64| b as f64 / 1048576.0;
        if fixed > mem {
            bail!(
                "the parameters, gradients and optimizer state alone need {:.0} MiB but {} has {:.0} MiB\n  HINT: use a \
                 smaller model (model.depth, model.aspect_ratio); no batch size or recompute setting can help",
                mib(fixed),
                ctx.info.name,
                mib(mem)
            );
        }
        if plan.total_bytes() > mem {
            bail!(
                "the memory plan needs {:.0} MiB but {} has {:.0} MiB\n  HINT: lower train.device_batch_size \
                 (gradient accumulation keeps the total batch) or set memory.recompute=block",
                mib(plan.total_bytes()),
                ctx.info.name,
                mib(mem)
            );
        }
    }
    // MFU against the peak of the units the linear layers run on: the matrix units' f16 rate
    // with f32 accumulation when training in f16 (which runs on cooperative matrices), else f32.
    let precision = super::precision::resolve(&ctx, tr.precision)?;
    println!("precision: {}", precision.why);
    let (linear, on_matrix_units) = crate::kernels::matmul_coop::describe_linear_layers(&ctx, precision.matmul);
    println!("linear layers: {linear}");
    let peak_precision = if on_matrix_units { Precision::Bf16Dense } else { Precision::F32 };
    let peak = args.peak_tflops.map(|t| t * 1e12).or_else(|| peak_flops(&ctx.info.name, peak_precision));
    if peak.is_none() {
        println!(
            "MFU: n/a — peak FLOPS unknown for {} (pass --peak-tflops N, the card's {} TFLOPS)",
            ctx.info.name,
            if on_matrix_units { "dense f16 (f32 accumulation)" } else { "f32" }
        );
    }

    // ---- allocate exactly the plan; initialise or resume -------------------------------------
    let mut model = GpuModel::for_run(&ctx, &rc)?;
    let mut opt = Optimizer::new(&ctx, &layout, tr.muon)?;
    let mut report = Report::new(&rc, &hyper, &desc, command_line, &ctx, &precision, &plan, &tok_path, &data_path);
    let mut scaler = LossScaler::new(precision.is_f16(), tr.initial_loss_scale);
    report.set_tokenizer(&describe_tokenizer(&tok_path, &tok));
    report.set_data(&ds);
    let mut start = 0usize;
    let mut redo_evals = false;
    let metrics_path = run_dir.join("metrics.jsonl");
    let mut init_source = init_from.as_ref().map(|i| i.source.clone());
    let mut events: Vec<serde_json::Value> = Vec::new();
    if let Some(r) = &resume {
        let l = &r.loaded;
        model.write_params(&l.params)?;
        opt.load_state(&l.optim)?;
        start = l.step;
        redo_evals = r.redo_evals;
        report.restore(&l.meta["loop_state"]);
        // The scale and its counters continue where they were (a checkpoint from before loss
        // scaling, or of the other precision, starts the scaler afresh).
        match serde_json::from_value::<LossScaler>(l.meta["loss_scaler"].clone()) {
            Ok(saved) if saved.enabled == scaler.enabled => scaler = saved,
            _ if scaler.enabled => {
                println!("loss scale: starting at {} (the checkpoint has none for f16)", scaler.scale)
            }
            _ => {}
        }
        init_source = l.meta["init_from"].as_str().map(str::to_string);
        let dropped = rundir::trim_metrics(&run_dir.path, start, redo_evals)?;
        if dropped > 0 {
            println!("metrics.jsonl: dropped {dropped} rows logged after {} (before the stop)", r.dir.display());
        }
        let changes = config_changes(&l.meta["user_config"], &serde_json::to_value(&rc.file)?);
        if !changes.is_empty() {
            println!("config changed since {}:", r.dir.display());
            for (k, a, b) in &changes {
                println!("  {k}: {a} → {b}");
            }
        }
        println!(
            "resumed from {} at step {start}{}{}",
            r.dir.display(),
            if redo_evals { " (its evaluation was interrupted: redoing it)" } else { "" },
            if args.restart_data { "; the training data restarts from its beginning (--restart-data)" } else { "" }
        );
        events.push(serde_json::json!({
            "step": start, "event": "resume", "checkpoint": r.dir, "command": command_line,
            "config_changes": changes.iter().map(|(k, a, b)| format!("{k}: {a} → {b}")).collect::<Vec<_>>(),
            "passed_over": checkpoint::list(&run_dir.path).iter().filter(|(s, _)| *s > start).map(|(_, d)| d.clone()).collect::<Vec<_>>(),
            "restart_data": args.restart_data,
        }));
    } else if let Some(i) = &init_from {
        model.write_params(&i.params)?;
        println!("weights from {}", i.source);
        events.push(serde_json::json!({"step": 0, "event": "init_from", "source": i.source}));
    } else {
        model.write_params(&layout.init(tr.seed))?;
    }
    if resume.is_none() {
        // The run's own copy of its tokenizer: a later retraining of the default one cannot
        // change what a resumed run reads.
        tok.save(&run_dir.path)?;
        let record = tok_path.with_file_name(crate::tokenizer::TRAINED_ON_FILE);
        if record.is_file() {
            std::fs::copy(&record, run_dir.join(crate::tokenizer::TRAINED_ON_FILE))
                .with_context(|| format!("copy {} into the run directory", record.display()))?;
        }
    }
    report.set_init_from(init_source.as_deref());
    crate::util::write_atomic(&run_dir.join("config.toml"), rc.to_toml().as_bytes())?;
    let mut commands = std::fs::read_to_string(run_dir.join("command.txt")).unwrap_or_default();
    commands += &format!("{command_line}\n");
    crate::util::write_atomic(&run_dir.join("command.txt"), commands.as_bytes())?;
    let mut metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&metrics_path)
        .with_context(|| format!("open {}", metrics_path.display()))?;
    for e in events {
        log_row(&mut metrics, e, &mut report, &run_dir.path, start)?;
    }
    install_signal_handlers();
    let sctx = SaveCtx {
        run_dir: &run_dir.path,
        layout: &layout,
        rc: &rc,
        tok_path: &tok_path,
        tok_fingerprint: format!("{:016x}", tok.fingerprint()),
        init_from: init_source.as_deref(),
    };

    let n_it = hyper.num_iterations;
    let eval_steps = (tr.eval_tokens / (tr.device_batch_size * rc.model.sequence_len)).max(1);
    let due = |every: i64, step: usize| every > 0 && step.is_multiple_of(every as usize);
    let flops_per_token = rc.model.flops_per_token() as f64;
    let mut step = start;
    let mut stopped_early = false;
    let resumed = resume.is_some();
    let mut engine = None;
    let mut scorer = None;
    let progress = Progress::new(n_it, start);
    if let Some(b) = &progress.bar {
        // Kernel-timing lines (first use of a shape class) print above the bar, not through it.
        let b = b.clone();
        ctx.autotune.set_reporter(move |l| b.println(l));
    }
    loop {
        let last = step == n_it;
        // A checkpoint is written after its step's evaluation and samples, so a resumed run starts
        // straight at the training step, unless that evaluation was interrupted.
        let at_resume_point = resumed && step == start;
        let run_evals = !at_resume_point || redo_evals;
        let mut eval_interrupted = false;
        if run_evals && tr.eval_every > 0 && (last || due(tr.eval_every, step)) {
            let t0 = Instant::now();
            progress.line(&format!("step {step:05} | evaluating val bpb ({eval_steps} batches)"));
            match eval_bpb(&mut model, &ds, &tok, eval_steps, &stop_requested)? {
                Some(bpb) => {
                    progress.line(&format!("step {step:05} | val bpb {bpb:.4} ({:.1} s)", t0.elapsed().as_secs_f64()));
                    log_row(
                        &mut metrics,
                        serde_json::json!({"step": step, "val_bpb": bpb}),
                        &mut report,
                        sctx.run_dir,
                        step,
                    )?;
                    report.eval(step, bpb);
                }
                None => eval_interrupted = true,
            }
        }
        if run_evals && !eval_interrupted && tr.sample_every > 0 && (last || (step > 0 && due(tr.sample_every, step))) {
            if engine.is_none() {
                // Built once and kept: its KV cache is reported on top of the training plan.
                engine = Some(super::sampling::engine_for(&ctx, &model)?);
            }
            let samples = super::sampling::samples(engine.as_mut().unwrap(), &tok)?;
            for s in &samples {
                progress.line(&format!("  {} →{}", s.prompt, s.completion));
            }
            log_row(
                &mut metrics,
                serde_json::json!({"step": step, "samples": samples}),
                &mut report,
                sctx.run_dir,
                step,
            )?;
            report.samples(step, samples);
        }
        if run_evals && !eval_interrupted && tr.core_every > 0 && (last || (step > 0 && due(tr.core_every, step))) {
            let suite = core_suite.as_ref().expect("loaded when core_every > 0");
            if scorer.is_none() {
                // Built once, on the training model's weights and (idle between steps) buffers.
                scorer = Some(crate::eval::scorer::Scorer::new(
                    &ctx,
                    &rc.model,
                    &rc.file.memory,
                    model.matmul,
                    model.params().clone(),
                    model.named_buffers(),
                    crate::eval::scorer::DEFAULT_TOKENS_PER_PASS,
                    tok.bos_id()?,
                )?);
            }
            let t0 = Instant::now();
            let tasks: Vec<&crate::eval::tasks::TaskSpec> = suite.tasks.iter().collect();
            let per = core_max.map_or("all".to_string(), |n| n.to_string());
            progress.line(&format!("step {step:05} | CORE: {} tasks, at most {per} examples each", tasks.len()));
            let r = crate::eval::core::evaluate_core(
                scorer.as_mut().expect("made above"),
                &tok,
                &tasks,
                &suite.missing,
                core_max,
                &mut |t| progress.line(&format!("  {}", t.row())),
            )?;
            let secs = t0.elapsed().as_secs_f64();
            progress.line(&format!("step {step:05} | CORE {:.4} ({secs:.1} s)", r.core));
            log_row(
                &mut metrics,
                serde_json::json!({"step": step, "core_metric": r.core, "core_max_per_task": r.max_per_task,
                    "core": r.tasks, "core_missing": r.missing, "core_seconds": secs}),
                &mut report,
                sctx.run_dir,
                step,
            )?;
        }
        let stop = eval_interrupted || (!last && (stop_requested() || args.stop_after == Some(step)));
        let save_due = last || stop || (step > 0 && tr.save_every > 0 && due(tr.save_every, step));
        if (!at_resume_point || redo_evals) && save_due {
            let resume_at = if eval_interrupted { "eval" } else { "train" };
            save(&sctx, step, &model, &opt, &scaler, &train.state(), resume_at, &mut report, &progress)?;
        }
        if stop {
            progress.line(&format!("stopped at step {step} (checkpoint saved; continue with --resume)"));
            stopped_early = true;
            break;
        }
        if last {
            break;
        }
        // ---- one optimizer step ------------------------------------------------------------
        let t0 = Instant::now();
        // Where the data stream stood before this step: what a checkpoint of this step holds if
        // the step is interrupted between micro-batches.
        let state_before = train.state();
        model.zero_grads()?;
        let mut interrupted_at = None;
        for k in 0..rc.grad_accum {
            if k > 0 && stop_requested() {
                interrupted_at = Some(k);
                break;
            }
            let batch = train.next_batch()?;
            model.loss_scale = scaler.scale as f32;
            model.set_batch(&batch.inputs, &batch.targets, rc.grad_accum)?;
            model.run_micro_step(Pass::Train)?;
        }
        if let Some(k) = interrupted_at {
            progress.line(&format!(
                "step {step:05} | interrupted after {k} of {} micro-batches: discarded; the checkpoint holds the state \
                 before this step",
                rc.grad_accum
            ));
            save(&sctx, step, &model, &opt, &scaler, &state_before, "train", &mut report, &progress)?;
            progress.line(&format!("stopped at step {step} (checkpoint saved; continue with --resume)"));
            stopped_early = true;
            break;
        }
        // nanochat logs the last micro-batch's loss.
        let loss = model.read_loss()?;
        let mut s = model.stream();
        opt.step(&mut s, model.params(), model.grads(), step, &hyper, &scaler)?;
        s.run()?;
        let g = opt.grad_report()?;
        let dt = t0.elapsed().as_secs_f64();
        // A finite loss with non-finite gradients under loss scaling is an overflow of the scaled
        // backward: the GPU skipped the update; halve the scale and go on. A non-finite loss is
        // the forward's, which no scale can cure.
        let verdict = if loss.is_finite() { scaler.update(g.nonfinite) } else { ScaleVerdict::Fatal };
        if let ScaleVerdict::Skipped { new_scale } = verdict {
            let tensors = opt.nonfinite_tensors(&g);
            progress.line(&format!(
                "step {step:05} | skipped: {} non-finite gradient values (first in {}); loss scale → {new_scale} \
                 ({} skipped so far)",
                g.nonfinite,
                tensors.first().copied().unwrap_or("?"),
                scaler.skipped
            ));
            log_row(
                &mut metrics,
                serde_json::json!({"step": step, "event": "skipped_step", "nonfinite": g.nonfinite,
                    "tensors": tensors, "loss_scale": new_scale, "skipped_total": scaler.skipped}),
                &mut report,
                sctx.run_dir,
                step,
            )?;
            step += 1;
            continue;
        }
        if verdict == ScaleVerdict::Fatal {
            let tensors = opt.nonfinite_tensors(&g);
            // A non-finite loss came from the forward: name the first tensor that went wrong.
            let culprit = if loss.is_finite() { None } else { model.diagnose_forward()? };
            progress.finish();
            return Err(fail(
                &mut report,
                sctx.run_dir,
                step,
                &format!(
                    "non-finite gradient ({} values) in {tensors:?}, loss {loss}{}. The update was skipped on the GPU; \
                     nothing was saved after it.",
                    g.nonfinite,
                    if let Some(c) = &culprit {
                        format!(" (the forward pass went wrong first at {c}{})", if scaler.enabled {
                            "; no loss scale can cure that"
                        } else {
                            ""
                        })
                    } else if !loss.is_finite() && scaler.enabled {
                        " (the forward pass overflowed: no loss scale can cure that)".to_string()
                    } else if scaler.enabled {
                        format!(" at the minimum loss scale {}", scaler.scale)
                    } else {
                        String::new()
                    }
                ),
                "lower the learning rates (train.matrix_lr, train.embedding_lr) or check the data, then --resume \
                 (or --resume-from the last good checkpoint) with the new values",
            ));
        }
        let tps = tr.total_batch_size as f64 / dt;
        let mfu = mfu_percent(flops_per_token, tps, peak);
        let lrm = hyper.lr_multiplier(step);
        // The gradients carry the loss scale; the norm of the unscaled ones is what is logged.
        let grad_norm = g.norm() / scaler.scale;
        let smooth = report.train_step(step, loss, dt, tps, mfu, grad_norm);
        let remaining = report.mean_dt().map(|m| (n_it - step - 1) as f64 * m);
        let epoch = train.state().epoch;
        let mfu_s = mfu.map_or("n/a".into(), |m| format!("{m:.2}"));
        let line = format!(
            "step {:05}/{n_it:05} ({:.2}%) | loss: {smooth:.6} | lrm: {lrm:.2} | dt: {:.2}ms | tok/sec: {:.0} | mfu: {mfu_s} | \
             grad norm: {:.4} | epoch: {epoch} | total time: {:.2}m | eta: {}",
            step,
            100.0 * step as f64 / n_it as f64,
            dt * 1e3,
            tps,
            grad_norm,
            report.total_time() / 60.0,
            eta(remaining)
        );
        let short = format!("loss {smooth:.4} | {tps:.0} tok/s | mfu {mfu_s} | epoch {epoch} | eta {}", eta(remaining));
        progress.step(step, &line, &short);
        log_row(
            &mut metrics,
            serde_json::json!({"step": step, "loss": loss, "smooth_loss": smooth, "lrm": lrm, "dt_ms": dt * 1e3,
                "tok_per_sec": tps, "mfu": mfu, "grad_norm": grad_norm, "epoch": epoch,
                "loss_scale": scaler.enabled.then_some(scaler.scale)}),
            &mut report,
            sctx.run_dir,
            step,
        )?;
        step += 1;
    }
    progress.finish();
    report.finish(stopped_early, step, ctx.allocated_bytes());
    let path = report.write(sctx.run_dir)?;
    println!("report: {}", path.display());
    Ok(0)
}

/// Checkpoint `step` with the loader at `loader_state`. Non-finite parameters and a failed write
/// (a full disk) stop the run with a report; the failed save leaves no partial files.
#[allow(clippy::too_many_arguments)]
fn save(
    sc: &SaveCtx<'_>,
    step: usize,
    model: &GpuModel<'_>,
    opt: &Optimizer<'_>,
    scaler: &LossScaler,
    loader_state: &LoaderState,
    resume_at: &str,
    report: &mut Report,
    progress: &Progress,
) -> anyhow::Result<()> {
    let params = model.read_params()?;
    if let Some(i) = params.iter().position(|p| !p.is_finite()) {
        progress.finish();
        return Err(fail(
            report,
            sc.run_dir,
            step,
            &format!("parameters are not finite (first in {}); refusing to checkpoint them", sc.layout.name_at(i)),
            "the weights diverged although every gradient was finite: lower the learning rates (train.matrix_lr, \
             train.embedding_lr) and continue from the last good checkpoint with --resume-from",
        ));
    }
    let meta = serde_json::json!({
        "step": step,
        "val_bpb": report.last_bpb(),
        "model_config": sc.rc.model.nanochat_json(),
        "user_config": sc.rc.file,
        "device_batch_size": sc.rc.train().device_batch_size,
        "max_seq_len": sc.rc.model.sequence_len,
        "total_batch_size": sc.rc.train().total_batch_size,
        "dataloader_state_dict": loader_state,
        "loop_state": report.loop_state(),
        "loss_scaler": scaler,
        "resume_at": resume_at,
        "tokenizer": sc.tok_path,
        "tokenizer_fingerprint": sc.tok_fingerprint,
        "init_from": sc.init_from,
        "wgpt": super::report::build_info(),
    });
    let opt_state = opt.state()?;
    match checkpoint::save(sc.run_dir, step, sc.layout, &params, &opt_state, &meta) {
        Ok(dir) => {
            progress.line(&format!("checkpoint: {}", dir.display()));
            Ok(())
        }
        Err(e) => {
            progress.finish();
            let size = (4 * (params.len() + opt_state.iter().map(|(_, v)| v.len()).sum::<usize>())) as f64 / 1048576.0;
            Err(fail(
                report,
                sc.run_dir,
                step,
                &format!("could not write the checkpoint of step {step}: {e} (the partial checkpoint was removed)"),
                &format!(
                    "free space on the disk holding {} (a checkpoint takes {size:.0} MiB), then continue with --resume",
                    sc.run_dir.display()
                ),
            ))
        }
    }
}
