//! The training loop (`wgpt train`, `cargo xtask train`): nanochat's base_train (spec §4) on the
//! GPU model and optimizer.
//!
//! Order of a run:
//! 1. Resolve the config (TOML → `--set` overrides → one resolve) and the hyperparameters; print
//!    the resolved run (with `--dry-run`, stop here: nothing is allocated).
//! 2. Refuse what cannot run before touching the GPU: missing data or tokenizer, a tokenizer whose
//!    vocabulary disagrees with the model, a plan larger than the adapter's memory.
//! 3. Allocate the model and optimizer (exactly the memory plan), initialise or resume.
//! 4. For step = start … N: validation bits-per-byte when due, samples when due, a checkpoint
//!    when due, then (unless last) one optimizer step of `grad_accum` micro-batches, logged.
//! 5. Write report.md and its chart.
//!
//! Failure handling: a non-finite gradient is caught by the optimizer's norm pass before it
//! reaches any weight (the GPU skips the update), and the run stops naming the step, the tensors
//! and the last good checkpoint; a NaN never reaches a checkpoint. Ctrl-C finishes the current
//! step, saves a checkpoint and the report, and exits.

use super::checkpoint;
use super::mfu::{mfu_percent, peak_flops, Precision};
use super::optimizer::Optimizer;
use super::report::Report;
use super::Hyper;
use crate::config::RunConfig;
use crate::data::cli::DataArgs;
use crate::data::{Dataset, Loader, LoaderOptions, LoaderState, Split};
use crate::gpu::GpuContext;
use crate::model::gpu::GpuModel;
use crate::model::memory::MemoryPlan;
use crate::model::{OptGroup, ParamLayout};
use crate::tokenizer::Tokenizer;
use anyhow::{bail, Context};
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Config file. Default: configs/cpu-small.toml.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override a config value: --set train.num_iterations=50 (repeatable).
    #[arg(long = "set")]
    pub overrides: Vec<String>,
    #[command(flatten)]
    pub data: DataArgs,
    /// tokenizer.json (default: <base>/tokenizer/tokenizer.json; trained there first if missing
    /// and no path was given).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Run directory for metrics, checkpoints and the report (default: runs/<config name>).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Continue from the run directory's latest checkpoint.
    #[arg(long)]
    pub resume: bool,
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

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(sig: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
    // SAFETY: signal() is async-signal-safe. Back to the default action, so a second Ctrl-C (or
    // SIGTERM) kills the process at once.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
    }
}

/// Ctrl-C, or the SIGTERM a job scheduler or `kill` sends, sets a flag the loop checks after
/// every step (it then checkpoints, writes the report and exits); a second one kills as usual.
fn install_sigint() {
    #[cfg(unix)]
    unsafe {
        // SAFETY: the handler only stores to an atomic and resets its own disposition, both
        // async-signal-safe.
        libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_sigint as *const () as libc::sighandler_t);
    }
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
        "eval every {} steps on {} tokens; samples every {}; checkpoints every {} (and at the end)\n",
        tr.eval_every, tr.eval_tokens, tr.sample_every, tr.save_every
    );
    s += &format!(
        "memory plan (recompute = {:?}, logits chunk {} rows):\n{}",
        rc.file.memory.recompute,
        rc.logits_chunk_rows,
        plan.render()
    );
    s
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
    println!(
        "tokenizer: {} merges from {} documents ({} chars) → {}",
        summary.merges,
        summary.docs,
        summary.chars,
        json.display()
    );
    Ok(json)
}

/// Validation bits per byte over `steps` batches of a fresh val loader (spec §6): special-token
/// targets (0 bytes) are excluded from both sums.
pub fn eval_bpb(
    model: &mut GpuModel<'_>,
    ds: &Arc<Dataset>,
    tok: &Arc<Tokenizer>,
    steps: usize,
) -> anyhow::Result<f64> {
    let opts = LoaderOptions::new(model.b, model.t);
    let mut val = Loader::new(ds.clone(), tok.clone(), Split::Val, opts, None)?;
    let token_bytes = tok.token_bytes();
    let (mut nats, mut bytes) = (0.0f64, 0u64);
    for _ in 0..steps.max(1) {
        let batch = val.next_batch()?;
        model.set_batch(&batch.inputs, &batch.targets, 1)?;
        let mut s = model.stream();
        model.record_forward(&mut s)?;
        model.record_head(&mut s, false)?;
        s.run()?;
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
    Ok(if bytes == 0 { f64::INFINITY } else { nats / (std::f64::consts::LN_2 * bytes as f64) })
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
    let plan = MemoryPlan::for_run(&rc);
    let desc = describe_run(&rc, &hyper, &plan);
    println!("config: {} {}", config.display(), args.overrides.join(" "));
    print!("{desc}");
    if args.dry_run {
        println!("dry run: nothing allocated");
        return Ok(0);
    }
    let tr = rc.train().clone();
    let name = config.file_stem().and_then(|s| s.to_str()).unwrap_or("run").to_string();
    let run_dir = args.run_dir.clone().unwrap_or_else(|| PathBuf::from("runs").join(&name));

    // ---- everything that can be refused, refused before the GPU is touched -------------------
    let resume_from = if args.resume {
        let dir = checkpoint::latest(&run_dir)?.with_context(|| {
            format!("--resume: {} has no checkpoint\n  HINT: start without --resume", run_dir.display())
        })?;
        Some(dir)
    } else {
        if checkpoint::latest(&run_dir)?.is_some() {
            bail!(
                "{} already holds checkpoints\n  HINT: pass --resume to continue it, or --run-dir for a new run",
                run_dir.display()
            );
        }
        None
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
    let tok_path = ensure_tokenizer(args, &rc, &ds)?;
    let tok = Arc::new(Tokenizer::from_file(&tok_path)?);
    tok.check_vocab_size(rc.model.vocab_size)?;

    let ctx = ctx_opener()?;
    if let Some(mem) = crate::gpu::adapters::device_memory_bytes(&ctx.adapter) {
        if plan.total_bytes() > mem {
            bail!(
                "the memory plan needs {:.0} MiB but {} has {:.0} MiB\n  HINT: lower train.device_batch_size \
                 (gradient accumulation keeps the total batch) or set memory.recompute=block",
                plan.total_bytes() as f64 / 1048576.0,
                ctx.info.name,
                mem as f64 / 1048576.0
            );
        }
    }
    // MFU against the peak of the units the linear layers run on: the matrix units' f16 rate
    // with f32 accumulation when model.matmul = "f16" runs on cooperative matrices, else f32.
    let (linear, on_matrix_units) =
        crate::kernels::matmul_coop::describe_linear_layers(&ctx, rc.file.model.matmul.precision());
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
    let layout = ParamLayout::new(&rc.model);
    let mut model = GpuModel::for_run(&ctx, &rc)?;
    let mut opt = Optimizer::new(&ctx, &plan, &layout, tr.muon)?;
    let mut report = Report::new(&rc, &hyper, &desc, command_line, &ctx, &plan, &tok_path, &data_path);
    let mut start = 0usize;
    let mut loader_state: Option<LoaderState> = None;
    if let Some(dir) = &resume_from {
        let l = checkpoint::load(dir, &layout)?;
        model.write_params(&l.params)?;
        opt.load_state(&l.optim)?;
        start = l.meta["step"].as_u64().context("checkpoint meta has no step")? as usize;
        loader_state = Some(serde_json::from_value(l.meta["dataloader_state_dict"].clone()).context("loader state")?);
        report.restore(&l.meta["loop_state"]);
        println!("resumed from {} at step {start}", dir.display());
    } else {
        model.write_params(&layout.init(tr.seed))?;
        std::fs::create_dir_all(&run_dir).with_context(|| format!("create {}", run_dir.display()))?;
        std::fs::write(run_dir.join("config.toml"), rc.to_toml())?;
        std::fs::write(run_dir.join("command.txt"), format!("{command_line}\n"))?;
    }
    let opts = LoaderOptions::new(tr.device_batch_size, rc.model.sequence_len);
    let mut train = Loader::new(ds.clone(), tok.clone(), Split::Train, opts, loader_state)?;
    let mut metrics = std::fs::OpenOptions::new().create(true).append(true).open(run_dir.join("metrics.jsonl"))?;
    install_sigint();

    let n_it = hyper.num_iterations;
    let eval_steps = (tr.eval_tokens / (tr.device_batch_size * rc.model.sequence_len)).max(1);
    let due = |every: i64, step: usize| every > 0 && step.is_multiple_of(every as usize);
    let flops_per_token = rc.model.flops_per_token() as f64;
    let mut step = start;
    let mut stopped_early = false;
    // A checkpoint is always written after its step's evaluation and samples, so a resumed run
    // starts straight at the training step.
    let resumed = resume_from.is_some();
    let mut engine = None;
    loop {
        let last = step == n_it;
        let fresh = !(resumed && step == start);
        if fresh && tr.eval_every > 0 && (last || due(tr.eval_every, step)) {
            let t0 = Instant::now();
            let bpb = eval_bpb(&mut model, &ds, &tok, eval_steps)?;
            println!("step {step:05} | val bpb {bpb:.4} ({:.1} s)", t0.elapsed().as_secs_f64());
            writeln!(metrics, "{}", serde_json::json!({"step": step, "val_bpb": bpb}))?;
            report.eval(bpb);
        }
        if fresh && tr.sample_every > 0 && (last || (step > 0 && due(tr.sample_every, step))) {
            if engine.is_none() {
                // Built once and kept: its KV cache is reported on top of the training plan.
                engine = Some(super::sampling::engine_for(&ctx, &model)?);
            }
            let samples = super::sampling::samples(engine.as_mut().unwrap(), &tok)?;
            for s in &samples {
                println!("  {} →{}", s.prompt, s.completion);
            }
            writeln!(metrics, "{}", serde_json::json!({"step": step, "samples": samples}))?;
            report.samples(step, samples);
        }
        let stop = !last && (STOP.load(Ordering::SeqCst) || args.stop_after == Some(step));
        if fresh && (last || stop || (step > 0 && tr.save_every > 0 && due(tr.save_every, step))) {
            save(&run_dir, step, &layout, &model, &opt, &train, &rc, &report, &tok_path)?;
        }
        if stop {
            println!("stopped at step {step} (checkpoint saved; continue with --resume)");
            stopped_early = true;
            break;
        }
        if last {
            break;
        }
        // ---- one optimizer step ------------------------------------------------------------
        let t0 = Instant::now();
        let mut s = model.stream();
        model.zero_grads(&mut s)?;
        s.run()?;
        for _ in 0..rc.grad_accum {
            let batch = train.next_batch()?;
            model.set_batch(&batch.inputs, &batch.targets, rc.grad_accum)?;
            let mut s = model.stream();
            model.record_forward(&mut s)?;
            model.record_head(&mut s, true)?;
            model.record_backward(&mut s)?;
            s.run()?;
        }
        // nanochat logs the last micro-batch's loss.
        let loss = model.read_loss()?;
        let mut s = model.stream();
        opt.step(&mut s, model.params(), model.grads(), step, &hyper)?;
        s.run()?;
        let g = opt.grad_report()?;
        let dt = t0.elapsed().as_secs_f64();
        if g.nonfinite > 0 || !loss.is_finite() {
            let tensors = opt.nonfinite_tensors(&g);
            let last_good = checkpoint::latest(&run_dir)?.map_or("none".into(), |p| p.display().to_string());
            report.failure(step, &format!("non-finite gradient in {tensors:?} (loss {loss})"));
            report.write(&run_dir)?;
            bail!(
                "step {step}: non-finite gradient ({} values) in {:?}, loss {loss}. The update was skipped on the GPU; \
                 nothing was saved after it.\n  last good checkpoint: {last_good}\n  HINT: lower the learning rates \
                 (train.matrix_lr, train.embedding_lr) or check the data",
                g.nonfinite,
                tensors
            );
        }
        let tps = tr.total_batch_size as f64 / dt;
        let mfu = mfu_percent(flops_per_token, tps, peak);
        let lrm = hyper.lr_multiplier(step);
        let smooth = report.train_step(step, loss, dt, tps, mfu, g.norm());
        let remaining = (n_it - step - 1) as f64 * report.mean_dt();
        println!(
            "step {:05}/{n_it:05} ({:.2}%) | loss: {smooth:.6} | lrm: {lrm:.2} | dt: {:.2}ms | tok/sec: {:.0} | mfu: {} | \
             grad norm: {:.4} | epoch: {} | total time: {:.2}m | eta: {:.1}m",
            step,
            100.0 * step as f64 / n_it as f64,
            dt * 1e3,
            tps,
            mfu.map_or("n/a".into(), |m| format!("{m:.2}")),
            g.norm(),
            train.state().epoch,
            report.total_time() / 60.0,
            remaining / 60.0
        );
        writeln!(
            metrics,
            "{}",
            serde_json::json!({"step": step, "loss": loss, "smooth_loss": smooth, "lrm": lrm, "dt_ms": dt * 1e3,
                "tok_per_sec": tps, "mfu": mfu, "grad_norm": g.norm()})
        )?;
        step += 1;
    }
    report.finish(stopped_early, ctx.allocated_bytes());
    let path = report.write(&run_dir)?;
    println!("report: {}", path.display());
    Ok(0)
}

#[allow(clippy::too_many_arguments)]
fn save(
    run_dir: &Path,
    step: usize,
    layout: &ParamLayout,
    model: &GpuModel<'_>,
    opt: &Optimizer<'_>,
    train: &Loader,
    rc: &RunConfig,
    report: &Report,
    tok_path: &Path,
) -> anyhow::Result<()> {
    let params = model.read_params()?;
    if params.iter().any(|p| !p.is_finite()) {
        bail!("step {step}: parameters are not finite; refusing to checkpoint them");
    }
    let meta = serde_json::json!({
        "step": step,
        "val_bpb": report.last_bpb(),
        "model_config": rc.model.nanochat_json(),
        "user_config": rc.file,
        "device_batch_size": rc.train().device_batch_size,
        "max_seq_len": rc.model.sequence_len,
        "total_batch_size": rc.train().total_batch_size,
        "dataloader_state_dict": train.state(),
        "loop_state": report.loop_state(),
        "tokenizer": tok_path,
    });
    let dir = checkpoint::save(run_dir, step, layout, &params, &opt.state()?, &meta)?;
    println!("checkpoint: {}", dir.display());
    Ok(())
}
