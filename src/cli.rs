//! The `wgpt` command line. Each subcommand's arguments and its `run` live here or in the module
//! that owns the feature; `src/main.rs` only parses and dispatches.
//!
//! GPU selection flows one way: built-in defaults, then `WGPT_*` environment variables, then
//! flags (clap applies the last two), resolved once into a [`GpuOptions`] and logged. The flags
//! ([`GpuArgs`]) belong to the subcommands that open a GPU, under their own help heading, so
//! `wgpt tokenizer --help` does not offer options it would ignore.

use crate::bench::{self, MatmulBenchOptions};
use crate::gpu::adapters::{self, Backend};
use crate::gpu::{AutotuneMode, GpuContext, GpuOptions};
use crate::util::Rng;
use crate::validate::suite::{self, SuiteOptions};
use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(
    name = "wgpt",
    version,
    about = "GPT training where every hot operation is a WGSL compute shader",
    after_help = "GPU options (--backend, --adapter, --autotune; or WGPT_BACKEND, WGPT_ADAPTER, WGPT_AUTOTUNE) go after \
                  the commands that open a GPU: `wgpt validate --adapter 1`."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Adapter selection, flattened into every subcommand that touches the GPU (after the
/// subcommand: `wgpt validate --adapter 1`).
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "GPU options")]
pub struct GpuArgs {
    /// Graphics backend to search.
    #[arg(long, env = "WGPT_BACKEND", value_enum, ignore_case = true, default_value_t = Backend::Vulkan)]
    pub backend: Backend,
    /// Adapter to use: an index from `wgpt adapters` or a substring of its name.
    #[arg(long, env = "WGPT_ADAPTER")]
    pub adapter: Option<String>,
    /// Kernel-variant autotuning.
    #[arg(long, env = "WGPT_AUTOTUNE", value_enum, ignore_case = true, default_value_t = AutotuneMode::On)]
    pub autotune: AutotuneMode,
    /// Pretend storage bindings are at most this many bytes (forces chunking; for testing).
    #[arg(long, env = "WGPT_MAX_BINDING_BYTES")]
    pub max_binding_bytes: Option<u64>,
}

impl GpuArgs {
    pub fn resolve(&self) -> anyhow::Result<GpuOptions> {
        Ok(GpuOptions {
            backends: self.backend.backends(),
            adapter: self.adapter.clone(),
            max_binding_bytes: self.max_binding_bytes,
            autotune: self.autotune,
            ..GpuOptions::default()
        })
    }

    pub fn open(&self) -> anyhow::Result<GpuContext> {
        let opts = self.resolve()?;
        log::info!("gpu options: {opts:?}");
        Ok(GpuContext::new(&opts)?)
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List every adapter wgpu sees, with the features and limits wgpt cares about.
    Adapters {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        gpu: GpuArgs,
    },
    /// Check every GPU kernel against its CPU reference and print a table; exit 1 on any failure.
    Validate {
        #[command(flatten)]
        args: ValidateArgs,
        #[command(flatten)]
        gpu: GpuArgs,
    },
    /// Parameter counts, FLOPs per token and the training memory plan of a config.
    Info(InfoArgs),
    /// Train a model (nanochat's base_train): `cargo xtask train` trains configs/cpu-small.toml.
    #[command(after_help = "Every key --set accepts, with its default and meaning: `wgpt config keys` \
                            (`wgpt config keys --config FILE` also shows what FILE sets).")]
    Train {
        #[command(flatten)]
        args: crate::train::trainer::TrainArgs,
        #[command(flatten)]
        gpu: GpuArgs,
    },
    /// One forward and backward on given weights and batch; prints {"loss": …} as the last line.
    /// Exits 1 on non-finite weights (naming the tensor) or a non-finite loss.
    StepCheck {
        #[command(flatten)]
        args: StepCheckArgs,
        #[command(flatten)]
        gpu: GpuArgs,
    },
    /// Measure throughput.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
    /// Train, inspect and apply the BPE tokenizer.
    Tokenizer {
        #[command(subcommand)]
        cmd: crate::tokenizer::cli::TokenizerCommand,
    },
    /// Download and inspect datasets.
    Data {
        #[command(subcommand)]
        cmd: crate::data::cli::DataCommand,
    },
    /// Generate text from a checkpoint (KV-cache inference; greedy or temperature/top-k sampling).
    Sample {
        #[command(flatten)]
        args: crate::sample::SampleArgs,
        #[command(flatten)]
        gpu: GpuArgs,
    },
    /// Evaluate a checkpoint: nanochat's CORE metric, or base-model MMLU (5-shot).
    Eval {
        #[command(subcommand)]
        what: crate::eval::cli::EvalCommand,
        #[command(flatten)]
        gpu: GpuArgs,
    },
    /// Everything to measure when a real GPU is at hand: adapters, a quick validate, matmul,
    /// attention and a d12 micro-step (f32 and f16 linear layers), memory; writes DIR/gpu-report.md
    /// and DIR/gpu-report.json.
    GpuReport {
        #[command(flatten)]
        args: crate::gpu_report::GpuReportArgs,
        #[command(flatten)]
        gpu: GpuArgs,
    },
    /// Config files: the keys they and `--set` accept.
    Config {
        #[command(subcommand)]
        cmd: ConfigCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Every key of a config file (what `--set section.key=value` accepts), with its default and
    /// meaning.
    Keys(ConfigKeysArgs),
}

#[derive(Args, Debug)]
pub struct ConfigKeysArgs {
    /// Also show the values this config file sets, e.g. configs/cpu-small.toml.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// A config file, e.g. configs/rtx4070-d12.toml.
    #[arg(long)]
    pub config: std::path::PathBuf,
    /// Override a config value: --set train.device_batch_size=4 (repeatable; `wgpt config keys`
    /// lists the keys).
    #[arg(long = "set")]
    pub overrides: Vec<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct StepCheckArgs {
    /// Weights with nanochat's state-dict names (safetensors; f32, bf16 or f16).
    #[arg(long)]
    pub weights: std::path::PathBuf,
    /// A JSON with nanochat's `model_config` object (as in meta_*.json).
    #[arg(long)]
    pub meta: std::path::PathBuf,
    /// A safetensors file with `idx` and `targets`, int32 (or int64), shape B×T.
    #[arg(long)]
    pub batch: std::path::PathBuf,
    /// Write every parameter's gradient (of the mean loss) under the parameter's name.
    #[arg(long)]
    pub grads_out: Option<std::path::PathBuf>,
    /// What the backward recomputes (results agree to rounding).
    #[arg(long, value_enum, default_value_t = crate::config::Recompute::None)]
    pub recompute: crate::config::Recompute,
    /// Take K optimizer steps on the batch (no schedule: group lrs as nanochat's setup_optimizer
    /// builds them from the flags below, Muon momentum 0.95) and print the K losses as JSON.
    #[arg(long, default_value_t = 0)]
    pub steps: usize,
    #[arg(long, default_value_t = 0.02)]
    pub matrix_lr: f64,
    #[arg(long, default_value_t = 0.3)]
    pub embedding_lr: f64,
    #[arg(long, default_value_t = 0.008)]
    pub unembedding_lr: f64,
    #[arg(long, default_value_t = 0.5)]
    pub scalar_lr: f64,
    /// Muon's weight decay (AdamW's per-group decays are nanochat's constants).
    #[arg(long, default_value_t = 0.28)]
    pub weight_decay: f64,
    /// Muon variant.
    #[arg(long, value_enum, default_value_t = crate::reference::muon::MuonVariant::Seed)]
    pub muon: crate::reference::muon::MuonVariant,
}

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Replay a previous run's inputs (every run prints its seed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Only rows whose kernel name contains this (e.g. `matmul_nt`, `chunked`, `sum_squares`).
    #[arg(long)]
    pub filter: Option<String>,
    /// Skip the GPT-size products for a fast check.
    #[arg(long)]
    pub quick: bool,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// GFLOP/s of every matmul variant beside a CPU sgemm, on GPT shapes and 1024³.
    Matmul {
        #[command(flatten)]
        args: MatmulBenchArgs,
        #[command(flatten)]
        gpu: GpuArgs,
    },
    /// Tokenizer training and encoding (ours vs the tokenizers crate) and loader throughput.
    Data(crate::data::bench::DataBenchArgs),
    /// Flash-attention forward and backward: ms and effective GFLOP/s at the GPT shape.
    Attention {
        #[command(flatten)]
        args: AttentionBenchArgs,
        #[command(flatten)]
        gpu: GpuArgs,
    },
    /// What CORE costs for a config: tokens, padded slots, passes and forward FLOPs of every task
    /// as `wgpt eval core` batches them, the time at a given TFLOP/s, and (--passes) a measured rate.
    Core {
        #[command(flatten)]
        args: CoreBenchArgs,
        #[command(flatten)]
        gpu: GpuArgs,
    },
    /// One training micro-step (forward, head, backward) of a config: tokens/s and where the
    /// GPU time goes, per kernel, from timestamp queries.
    Step {
        #[command(flatten)]
        args: StepBenchArgs,
        #[command(flatten)]
        gpu: GpuArgs,
    },
}

#[derive(Args, Debug)]
pub struct CoreBenchArgs {
    /// A config file, e.g. configs/rtx4070-d12.toml.
    #[arg(long)]
    pub config: std::path::PathBuf,
    /// Override a config value (repeatable).
    #[arg(long = "set")]
    pub overrides: Vec<String>,
    /// The tokenizer to count tokens with (e.g. ../shared/data/tokenizers/gpt2_tokenizer.json).
    #[arg(long)]
    pub tokenizer: std::path::PathBuf,
    /// The evaluation data folder (core/, hellaswag/).
    #[arg(long, env = "WGPT_EVAL_DATA", default_value = "../shared/data/eval")]
    pub eval_data: std::path::PathBuf,
    /// Examples per task; -1 = all (the full CORE set).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub max_per_task: i64,
    /// Token slots per forward pass.
    #[arg(long, default_value_t = crate::eval::scorer::DEFAULT_TOKENS_PER_PASS)]
    pub tokens_per_pass: usize,
    /// Sustained model TFLOP/s for the estimate (default: the seed run's on the RTX 4070).
    #[arg(long, default_value_t = 49.0)]
    pub tflops: f64,
    /// Also run this many passes on the GPU and report the measured rate (0: count only, no GPU).
    #[arg(long, default_value_t = 0)]
    pub passes: usize,
}

#[derive(Args, Debug)]
pub struct StepBenchArgs {
    /// A config file, e.g. configs/cpu-small.toml.
    #[arg(long)]
    pub config: std::path::PathBuf,
    /// Override a config value: --set memory.recompute=block (repeatable; `wgpt config keys`
    /// lists the keys).
    #[arg(long = "set")]
    pub overrides: Vec<String>,
    /// Timed micro-steps after the warm-up (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
}

#[derive(Args, Debug)]
pub struct AttentionBenchArgs {
    #[arg(long, default_value_t = 1)]
    pub b: usize,
    #[arg(long, default_value_t = 2048)]
    pub t: usize,
    #[arg(long, default_value_t = 6)]
    pub h: usize,
    /// KV heads (default: H, no grouping).
    #[arg(long)]
    pub hkv: Option<usize>,
    #[arg(long, default_value_t = 128)]
    pub d: usize,
    /// Sliding windows to time, comma-separated (a window ≥ T − 1 is plain causal).
    #[arg(long, default_value = "2048,512")]
    pub windows: String,
    /// Timed runs per pass after the warm-up (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Precisions to time side by side, comma-separated: f32 (SIMT kernels) and f16 (cooperative
    /// matrices where the adapter uses them).
    #[arg(long, default_value = "f32,f16")]
    pub precision: String,
}

#[derive(Args, Debug)]
pub struct MatmulBenchArgs {
    /// Products to time as MxNxK (repeatable); default 1024x1024x1024, 2048x768x768, 2048x3072x768.
    #[arg(long = "shape")]
    pub shapes: Vec<String>,
    /// Layouts to time (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', ignore_case = true, default_value = "nt,nn,tn")]
    pub layouts: Vec<MatmulLayout>,
    /// Timed runs per variant after the warm-up (at least 3 always run).
    #[arg(long, default_value_t = 7)]
    pub reps: usize,
    /// Seconds after which a slow variant stops collecting samples beyond the first 3.
    #[arg(long, default_value_t = 3.0)]
    pub budget_secs: f64,
}

/// A matmul layout `bench matmul` can time, named as `Gemm::layout` names it (lowercase).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MatmulLayout {
    /// C = A·Bᵀ: a linear layer's forward.
    Nt,
    /// C = A·B: its input gradient.
    Nn,
    /// C = Aᵀ·B: its weight gradient.
    Tn,
}

pub fn parse_shape(s: &str) -> anyhow::Result<(usize, usize, usize)> {
    let parts: Vec<usize> = s
        .split(['x', 'X', '×'])
        .map(|p| p.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("shape `{s}`: expected MxNxK, e.g. 2048x768x768"))?;
    match parts[..] {
        [m, n, k] if m > 0 && n > 0 && k > 0 => Ok((m, n, k)),
        _ => bail!("shape `{s}`: expected three positive sizes MxNxK, e.g. 2048x768x768"),
    }
}

/// `f32,f16`: the precisions a bench times side by side (f16acc is a matmul-only variant).
pub fn parse_precisions(s: &str) -> anyhow::Result<Vec<crate::shapes::MatmulPrecision>> {
    use crate::shapes::MatmulPrecision;
    s.split(',')
        .map(|p| match p.trim() {
            "f32" => Ok(MatmulPrecision::F32),
            "f16" => Ok(MatmulPrecision::F16),
            other => bail!("--precision `{other}`: expected f32 or f16 (comma-separated, e.g. f32,f16)"),
        })
        .collect()
}

/// Run a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Adapters { json, gpu } => adapters_cmd(&gpu, json),
        Command::Validate { args, gpu } => validate_cmd(&gpu, &args),
        Command::Info(args) => info_cmd(&args),
        Command::Train { args, gpu } => {
            let command_line = std::env::args().collect::<Vec<_>>().join(" ");
            crate::train::trainer::run(&|| gpu.open(), &args, &command_line)
        }
        Command::StepCheck { args, gpu } => step_check_cmd(&gpu, &args),
        Command::Bench { what: BenchCommand::Core { args, gpu } } => {
            let rc = crate::config::RunConfig::load(&args.config, &args.overrides)?;
            let tok = crate::tokenizer::Tokenizer::from_file(&args.tokenizer)?;
            let root = &args.eval_data;
            let core = crate::eval::cli::data_dir(root, "core")?;
            let hella = root.join("hellaswag");
            let suite = crate::eval::tasks::core_tasks(&core, hella.is_dir().then_some(hella.as_path()))?;
            let opts = crate::bench::core::CoreBenchOptions {
                max_per_task: crate::eval::cli::limit("--max-per-task", args.max_per_task)?,
                tokens_per_pass: args.tokens_per_pass,
                tflops: args.tflops,
                passes: args.passes,
            };
            crate::eval::core::check_max_per_task(&suite.tasks.iter().collect::<Vec<_>>(), opts.max_per_task)?;
            let ctx = if args.passes > 0 { Some(gpu.open()?) } else { None };
            crate::bench::core::bench(ctx.as_ref(), &rc, &tok, &suite, &opts, &mut |l| println!("{l}"))?;
            Ok(0)
        }
        Command::Bench { what: BenchCommand::Step { args, gpu } } => {
            let rc = crate::config::RunConfig::load(&args.config, &args.overrides)?;
            let ctx = gpu.open()?;
            bench::step_bench(&ctx, &rc, args.steps, &mut |line| println!("{line}"))?;
            Ok(0)
        }
        Command::Bench { what: BenchCommand::Matmul { args, gpu } } => {
            let mut opts = MatmulBenchOptions::default();
            if !args.shapes.is_empty() {
                opts.shapes = args.shapes.iter().map(|s| parse_shape(s)).collect::<anyhow::Result<_>>()?;
            }
            opts.layouts = args.layouts.iter().map(|l| l.to_possible_value().unwrap().get_name().to_string()).collect();
            opts.reps = args.reps;
            opts.budget = Duration::from_secs_f64(args.budget_secs.max(0.0));
            let ctx = gpu.open()?;
            bench::matmul_bench(&ctx, &opts, &mut |line| println!("{line}"))?;
            Ok(0)
        }
        Command::Bench { what: BenchCommand::Attention { args, gpu } } => {
            let windows = args
                .windows
                .split(',')
                .map(|w| w.trim().parse::<usize>())
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("--windows `{}`: expected comma-separated sizes", args.windows))?;
            let opts = crate::bench::attention::AttnBenchOptions {
                b: args.b,
                t: args.t,
                h: args.h,
                hkv: args.hkv.unwrap_or(args.h),
                d: args.d,
                windows,
                reps: args.reps,
                precisions: parse_precisions(&args.precision)?,
            };
            let ctx = gpu.open()?;
            crate::bench::attention::bench(&ctx, &opts, &mut |line| println!("{line}"))?;
            Ok(0)
        }
        Command::Bench { what: BenchCommand::Data(args) } => {
            crate::data::bench::run(&args, &mut |line| println!("{line}"))?;
            Ok(0)
        }
        Command::Tokenizer { cmd } => crate::tokenizer::cli::run(cmd),
        Command::Data { cmd } => crate::data::cli::run(cmd),
        Command::Sample { args, gpu } => crate::sample::run(&gpu, &args),
        Command::Eval { what, gpu } => crate::eval::cli::run(&gpu, &what),
        Command::GpuReport { args, gpu } => {
            let ctx = gpu.open()?;
            crate::gpu_report::run(&ctx, &args)?;
            Ok(0)
        }
        Command::Config { cmd: ConfigCommand::Keys(args) } => config_keys_cmd(&args),
    }
}

/// `wgpt config keys [--config FILE]`. The file is read as plain TOML, not resolved, so that a
/// file with a wrong or unknown key can still be inspected here.
fn config_keys_cmd(args: &ConfigKeysArgs) -> anyhow::Result<i32> {
    let table = match &args.config {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("--config {}", path.display()))?;
            let table: toml::Table =
                toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
            Some((path.as_path(), table))
        }
    };
    print!("{}", crate::config::keys_text(table.as_ref().map(|(p, t)| (*p, t))));
    Ok(0)
}

fn adapters_cmd(gpu: &GpuArgs, json: bool) -> anyhow::Result<i32> {
    let backends = gpu.backend.backends();
    let instance = adapters::create_instance(backends);
    let list = adapters::enumerate(&instance, backends);
    let mut reports: Vec<_> = list.iter().enumerate().map(|(i, a)| adapters::describe(i, a)).collect();
    // Which one a run would use, by the same rule GpuContext::new applies.
    let chosen = adapters::select(list, gpu.adapter.as_deref(), backends).ok().map(|a| a.get_info().name);
    // For that one, open a device and run the cooperative-matrix self-test: the final verdict.
    if let Some(name) = &chosen {
        if let Some(r) = reports.iter_mut().find(|r| &r.name == name) {
            r.cooperative_matrix_status = Some(match gpu.open() {
                Ok(ctx) => wgpt_coop_line(&ctx),
                Err(e) => format!("could not open the device to self-test: {e}"),
            });
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
        return Ok(if reports.is_empty() { 1 } else { 0 });
    }
    if reports.is_empty() {
        eprintln!("{}", crate::Error::NoAdapter { backends: format!("{backends:?}") });
        return Ok(1);
    }
    println!("{} adapter(s) on backend(s) {:?}:\n", reports.len(), backends);
    let mut marked = false;
    for r in &reports {
        let is_chosen = !marked && chosen.as_deref() == Some(r.name.as_str());
        marked |= is_chosen;
        println!("{}", adapters::format_report(r, is_chosen));
    }
    Ok(0)
}

fn wgpt_coop_line(ctx: &crate::gpu::GpuContext) -> String {
    crate::kernels::matmul_coop::coop_status(ctx).describe()
}

fn validate_cmd(gpu: &GpuArgs, args: &ValidateArgs) -> anyhow::Result<i32> {
    let seed = args.seed.unwrap_or_else(Rng::fresh_seed);
    let ctx = gpu.open()?;
    println!("adapter: {}", ctx.describe());
    println!("seed: {seed}   (replay with --seed {seed})");
    println!("matmul variants: {}", suite::matmul_variant_names(&ctx).join(", "));
    println!("outputs are filled with NaN before every run; pass = |got - want| <= atol + rtol*|want| everywhere\n");
    println!("{}", suite::header());
    let opts = SuiteOptions { filter: args.filter.clone(), quick: args.quick, ..SuiteOptions::new(seed) };
    let t0 = Instant::now();
    let rows = suite::run(&ctx, &opts, &mut |row| {
        println!("{}", suite::format_row(row));
        if let Some(d) = &row.detail {
            println!("    {}", d.replace('\n', "\n    "));
        }
    })?;
    let failed = rows.iter().filter(|r| r.failed()).count();
    let not_run = rows.iter().filter(|r| !r.ran()).count();
    println!(
        "\n{} rows, {} passed, {} failed, {} not run, {:.1} s (seed {seed})",
        rows.len(),
        rows.iter().filter(|r| r.pass).count(),
        failed,
        not_run,
        t0.elapsed().as_secs_f64()
    );
    println!("cooperative matrices: {}", wgpt_coop_line(&ctx));
    if rows.is_empty() {
        eprintln!("no rows matched the filter");
        return Ok(1);
    }
    Ok(if failed == 0 { 0 } else { 1 })
}

fn info_cmd(args: &InfoArgs) -> anyhow::Result<i32> {
    use crate::model::memory::Category;
    use crate::model::ParamCounts;
    let rc = crate::config::RunConfig::load(&args.config, &args.overrides)?;
    let m = &rc.model;
    let counts = ParamCounts::of(m);
    let plan = crate::train::memory_plan(&rc);
    let flops = m.flops_per_token();
    if args.json {
        let mem: serde_json::Map<String, serde_json::Value> =
            Category::ALL.iter().map(|&c| (c.name().to_string(), serde_json::json!(plan.bytes(c)))).collect();
        let v = serde_json::json!({
            "config": args.config,
            "model": m,
            "params": counts,
            "total_params": counts.total,
            "scaling_params": counts.scaling,
            "flops_per_token": flops,
            "device_batch_size": rc.train().device_batch_size,
            "grad_accum": rc.grad_accum,
            "recompute": rc.file.memory.recompute,
            "logits_chunk_rows": rc.logits_chunk_rows,
            "memory_bytes": mem,
            "memory_total_bytes": plan.total_bytes(),
            "memory_total_bytes_f32": crate::train::memory_plan_at(&rc, crate::kernels::matmul::MatmulPrecision::F32).total_bytes(),
            "memory_total_bytes_f16": crate::train::memory_plan_at(&rc, crate::kernels::matmul::MatmulPrecision::F16).total_bytes(),
            "memory_buffers": plan.entries,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    let n = |x: usize| {
        let s = x.to_string();
        let mut out = String::new();
        for (i, ch) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(ch);
        }
        out
    };
    println!("config: {}", args.config.display());
    println!(
        "model: depth {} · C {} · {} heads ({} KV) of {} · vocab {} (padded {}) · T {} · windows {}",
        m.n_layer,
        m.n_embd,
        m.n_head,
        m.n_kv_head,
        m.head_dim,
        m.vocab_size,
        m.padded_vocab,
        m.sequence_len,
        m.window_pattern
    );
    println!("parameters:");
    println!("  {:<24} {:>15}", "wte", n(counts.wte));
    println!("  {:<24} {:>15}", "value_embeds", n(counts.value_embeds));
    println!("  {:<24} {:>15}", "lm_head", n(counts.lm_head));
    println!("  {:<24} {:>15}", "transformer_matrices", n(counts.transformer_matrices));
    println!("  {:<24} {:>15}", "scalars", n(counts.scalars));
    println!("  {:<24} {:>15}", "total", n(counts.total));
    println!("  {:<24} {:>15}   (transformer_matrices + lm_head)", "scaling params", n(counts.scaling));
    println!("FLOPs per token (fwd+bwd): {} ({:.4e})", n(flops as usize), flops as f64);
    println!(
        "memory plan at device batch {} × {} (recompute = {:?}, logits chunk {} rows, train.precision = {}{}):",
        rc.train().device_batch_size,
        m.sequence_len,
        rc.file.memory.recompute,
        rc.logits_chunk_rows,
        rc.train().precision.name(),
        if rc.train().precision == crate::config::Precision::Auto { ", planned as f16" } else { "" }
    );
    print!("{}", plan.render());
    // The same run in the other precision, and the seed run's measured peak (PyTorch, bf16
    // autocast, d12 at device batch 16 × 2048 on the RTX 4070: seed-run-summary.txt).
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    let f32_plan = crate::train::memory_plan_at(&rc, crate::kernels::matmul::MatmulPrecision::F32);
    let f16_plan = crate::train::memory_plan_at(&rc, crate::kernels::matmul::MatmulPrecision::F16);
    println!(
        "  totals by precision: f32 {:.1} MiB · f16 {:.1} MiB (f32 master weights plus their f16 copies; v and \
         attention outputs kept in f16) · the seed run's peak 9,448.0 MiB",
        mib(f32_plan.total_bytes()),
        mib(f16_plan.total_bytes())
    );
    Ok(0)
}

fn step_check_cmd(gpu: &GpuArgs, args: &StepCheckArgs) -> anyhow::Result<i32> {
    use crate::config::MemorySpec;
    use crate::model::{checkpoint, gpu::GpuModel, ParamLayout};
    let recompute = args.recompute;
    // Everything from disk is read and checked before the GPU is touched.
    let (mut cfg, _) = checkpoint::load_meta(&args.meta)?;
    let layout = ParamLayout::new(&cfg);
    let arena = checkpoint::load_weights(&args.weights, &layout)?;
    // One NaN or infinity in the weights makes the loss NaN; name the tensors before the GPU is opened.
    let nonfinite: Vec<String> = layout
        .specs
        .iter()
        .zip(&layout.offsets)
        .filter_map(|(p, &o)| {
            let values = &arena[o..o + p.numel()];
            let first = values.iter().position(|x| !x.is_finite())?;
            let n = values.iter().filter(|x| !x.is_finite()).count();
            Some(format!(
                "{} {:?}: {n} of {} values are not finite (the first, element {first}, is {})",
                p.name,
                p.shape,
                p.numel(),
                values[first]
            ))
        })
        .collect();
    if !nonfinite.is_empty() {
        bail!(
            "{}: the weights hold non-finite values, so the loss cannot be finite:\n  {}\n  HINT: export the \
             weights again from a model whose parameters are finite (a wgpt checkpoint never holds a NaN)",
            args.weights.display(),
            nonfinite.join("\n  ")
        );
    }
    let tensors = checkpoint::load_i32(&args.batch)?;
    let get = |name: &str| {
        tensors.get(name).with_context(|| {
            format!("{}: no `{name}` tensor (expected idx and targets, int32 B×T)", args.batch.display())
        })
    };
    let (idx_shape, idx) = get("idx")?;
    let (tgt_shape, targets) = get("targets")?;
    if idx_shape.len() != 2 || idx_shape != tgt_shape {
        bail!("{}: idx {:?} and targets {:?} must both be B×T", args.batch.display(), idx_shape, tgt_shape);
    }
    let (b, t) = (idx_shape[0], idx_shape[1]);
    if t > cfg.sequence_len || t < 2 {
        bail!("batch T = {t} must be in [2, sequence_len = {}]", cfg.sequence_len);
    }
    // Windows stay those of the model's full context, as in nanochat; the batch may be shorter.
    cfg.sequence_len = t;
    let ctx = gpu.open()?;
    let mut model = GpuModel::new(&ctx, &cfg, b, &MemorySpec { recompute, logits_chunk_rows: 0 })?;
    model.write_params(&arena)?;
    model.set_batch(idx, targets, 1)?;
    if args.steps > 0 {
        use crate::train::optimizer::{Optimizer, StepScalars};
        let variant = args.muon;
        let mut opt = Optimizer::new(&ctx, &layout, variant)?;
        // nanochat's setup_optimizer: width scaling on the embedding/unembedding groups only.
        let dmodel = (cfg.n_embd as f64 / 768.0).powf(-0.5);
        let adamw_lr = [
            args.unembedding_lr * dmodel,
            args.embedding_lr * dmodel,
            args.embedding_lr * dmodel * 0.5,
            args.scalar_lr * 0.01,
            args.scalar_lr,
            0.2,
        ];
        let mut losses = Vec::with_capacity(args.steps);
        for k in 0..args.steps {
            model.zero_grads()?;
            let loss = model.forward_backward()?;
            if !loss.is_finite() {
                bail!("step {k}: {}", nonfinite_loss(loss, k > 0));
            }
            losses.push(loss);
            let sc = StepScalars {
                adamw_step: k as u64 + 1,
                adamw_lr,
                muon_lr: args.matrix_lr,
                muon_momentum: 0.95,
                muon_weight_decay: args.weight_decay,
                grad_scale: 1.0,
            };
            let mut s = model.stream();
            opt.step_with(&mut s, model.params(), model.grads(), &sc)?;
            s.run()?;
            let g = opt.grad_report()?;
            if g.nonfinite > 0 {
                bail!("step {k}: non-finite gradient in {:?}", opt.nonfinite_tensors(&g));
            }
        }
        println!("{}", serde_json::json!({ "losses": losses }));
        return Ok(0);
    }
    model.zero_grads()?;
    let loss = model.forward_backward()?;
    if !loss.is_finite() {
        bail!("{}", nonfinite_loss(loss, false));
    }
    if let Some(path) = &args.grads_out {
        let grads = model.read_grads()?;
        let named: Vec<(String, Vec<usize>, &[f32])> = layout
            .specs
            .iter()
            .zip(&layout.offsets)
            .map(|(p, &o)| (p.name.clone(), p.shape.clone(), &grads[o..o + p.numel()]))
            .collect();
        checkpoint::save_f32(path, &named, None)?;
        eprintln!("gradients written to {}", path.display());
    }
    println!("{}", serde_json::json!({ "loss": loss }));
    Ok(0)
}

/// Why a step-check loss is not finite: the weights were checked to be finite and the batch's ids
/// in range before the GPU ran, so it is the forward's arithmetic (or, after an update, the
/// optimizer's step) that overflowed.
fn nonfinite_loss(loss: f64, after_update: bool) -> String {
    let cause = if after_update {
        "the previous optimizer step left the weights non-finite or huge (the lrs are too large for them)"
    } else {
        "every weight is finite and every id in range, so the forward overflowed: weights of huge magnitude, or a \
         kernel wrong on this adapter"
    };
    format!(
        "the loss is not finite ({loss}): {cause}\n  HINT: check the weights' magnitudes, and run `wgpt validate` \
         to check every kernel against its CPU reference"
    )
}
