//! `wgpt eval core` and `wgpt eval mmlu`: a checkpoint scored on the GPU.
//!
//! Everything on disk is read and checked first (the checkpoint, its tokenizer against the
//! model's vocabulary, every task file of the selection); the GPU is opened after.

use crate::cli::GpuArgs;
use crate::config::{MemorySpec, Precision};
use crate::eval::core::{check_max_per_task, evaluate_core, grade, pick_tasks, Prompting, TaskResult};
use crate::eval::mmlu::{mmlu_items, mmlu_subjects, MmluSplit, MMLU_DELIMITER, MMLU_FEWSHOT};
use crate::eval::scorer::{Scorer, DEFAULT_TOKENS_PER_PASS};
use crate::eval::tasks::TaskType;
use crate::eval::tasks::{core_tasks, load_items};
use crate::model::checkpoint::{load_meta, load_weights};
use crate::model::{GptConfig, ParamLayout};
use crate::sample::{resolve_checkpoint, tokenizer_path};
use crate::tokenizer::Tokenizer;
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Subcommand, Debug)]
pub enum EvalCommand {
    /// nanochat's CORE metric (DCLM): the CORE tasks present under --eval-data, per-task table
    /// and the mean centred accuracy.
    Core(CoreArgs),
    /// Base-model MMLU, 5-shot: the log-likelihood of each answer letter, 57 subjects.
    Mmlu(MmluArgs),
}

/// What both evaluations take.
#[derive(Args, Debug)]
pub struct ModelArgs {
    /// A run directory (uses checkpoints/latest), its checkpoints/ folder, or a step_NNNNNN directory.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// tokenizer.json to use instead of the one recorded in the checkpoint's meta.json.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// The evaluation data folder (core/, hellaswag/, mmlu/), e.g. ../shared/data/eval.
    #[arg(long, env = "WGPT_EVAL_DATA", default_value = "../shared/data/eval")]
    pub eval_data: PathBuf,
    /// What the products read: auto (f16 on a GPU with cooperative matrices), f32 or f16.
    #[arg(long, value_enum, default_value_t = Precision::Auto)]
    pub precision: Precision,
    /// Token slots per forward pass (rounded down to whole sequences of the model's length).
    #[arg(long, default_value_t = DEFAULT_TOKENS_PER_PASS)]
    pub tokens_per_pass: usize,
    /// Also write the results as JSON to this file (atomically).
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CoreArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Examples per task (after nanochat's Random(1337) shuffle); -1 = all.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub max_per_task: i64,
    /// Only these tasks (comma-separated labels, e.g. arc_easy,copa).
    #[arg(long, value_delimiter = ',')]
    pub tasks: Option<Vec<String>>,
}

#[derive(Args, Debug)]
pub struct MmluArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Questions per subject (in file order); -1 = all.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub max_per_subject: i64,
    /// Only these subjects (comma-separated, e.g. anatomy,astronomy).
    #[arg(long, value_delimiter = ',')]
    pub subjects: Option<Vec<String>>,
}

pub fn run(gpu: &GpuArgs, cmd: &EvalCommand) -> anyhow::Result<i32> {
    match cmd {
        EvalCommand::Core(args) => core(gpu, args),
        EvalCommand::Mmlu(args) => mmlu(gpu, args),
    }
}

/// `-1` (or any negative) is "all"; 0 is refused.
pub fn limit(flag: &str, n: i64) -> anyhow::Result<Option<usize>> {
    match n {
        n if n < 0 => Ok(None),
        0 => bail!("{flag} 0 would evaluate nothing; give a positive count, or -1 for all"),
        n => Ok(Some(n as usize)),
    }
}

/// A checkpoint and its tokenizer, checked against each other.
pub struct Loaded {
    pub dir: PathBuf,
    pub cfg: GptConfig,
    pub step: Option<u64>,
    pub tok: Tokenizer,
    pub tok_path: PathBuf,
    pub arena: Vec<f32>,
}

/// Reads the checkpoint and its tokenizer, and refuses a vocabulary mismatch (nothing on the GPU yet).
pub fn load(args: &ModelArgs) -> anyhow::Result<Loaded> {
    let dir = resolve_checkpoint(&args.checkpoint)?;
    let (cfg, meta) = load_meta(&dir.join("meta.json"))?;
    let tok_path = tokenizer_path(args.tokenizer.as_deref(), &dir, &meta)?;
    let tok = Tokenizer::from_file(&tok_path)?;
    tok.check_vocab_size(cfg.vocab_size).with_context(|| {
        format!("the tokenizer {} does not fit the checkpoint {}", tok_path.display(), dir.display())
    })?;
    tok.bos_id()?;
    let arena = load_weights(&dir.join("model.safetensors"), &ParamLayout::new(&cfg))?;
    Ok(Loaded { dir, cfg, step: meta["step"].as_u64(), tok, tok_path, arena })
}

/// The evaluation data folder's subfolder `name`, or an error that says how to point at it.
pub fn data_dir(root: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let d = root.join(name);
    if !d.is_dir() {
        bail!(
            "{} does not exist: the evaluation data is not where --eval-data points ({})\n  HINT: pass --eval-data \
             (or set WGPT_EVAL_DATA) to the folder holding core/, hellaswag/ and mmlu/, e.g. ../shared/data/eval",
            d.display(),
            root.display()
        );
    }
    Ok(d)
}

/// Opens the GPU and builds a scorer over the loaded weights.
pub fn describe(l: &Loaded) -> String {
    let step = l.step.map_or(String::new(), |s| format!(" (step {s})"));
    format!(
        "checkpoint: {}{step}\nmodel: depth {} · C {} · vocab {} · T {}; tokenizer {}",
        l.dir.display(),
        l.cfg.n_layer,
        l.cfg.n_embd,
        l.cfg.vocab_size,
        l.cfg.sequence_len,
        l.tok_path.display()
    )
}

fn core(gpu: &GpuArgs, args: &CoreArgs) -> anyhow::Result<i32> {
    let max = limit("--max-per-task", args.max_per_task)?;
    let l = load(&args.model)?;
    let root = &args.model.eval_data;
    let core_dir = data_dir(root, "core")?;
    let hella = root.join("hellaswag");
    let suite = core_tasks(&core_dir, hella.is_dir().then_some(hella.as_path()))?;
    let tasks = pick_tasks(&suite, args.tasks.as_deref())?;
    check_max_per_task(&tasks, max)?;
    // Every selected file parses before the GPU is touched (errors name the file and line).
    for t in &tasks {
        load_items(t)?;
    }
    println!("{}", describe(&l));
    let ctx = gpu.open()?;
    let (mut scorer, precision) = open_scorer(&ctx, &l, &args.model)?;
    println!(
        "scoring: {precision} · {} token slots per pass · {} task(s), max {} examples each",
        scorer.tokens_per_pass(),
        tasks.len(),
        max.map_or("all".into(), |n| n.to_string())
    );
    println!("{}", TaskResult::header());
    let result = evaluate_core(&mut scorer, &l.tok, &tasks, &suite.missing, max, &mut |r| println!("{}", r.row()))?;
    let table = result.table();
    // The rows are already printed; the summary lines follow them.
    for line in table.lines().skip(result.tasks.len() + 1) {
        println!("{line}");
    }
    print_throughput(&scorer);
    if let Some(path) = &args.model.json {
        let st = scorer.stats;
        let v = serde_json::json!({
            "checkpoint": l.dir, "step": l.step, "precision": precision, "core": result.core,
            "max_per_task": result.max_per_task, "tasks": result.tasks, "missing": result.missing,
            "scoring": {"tokens": st.tokens, "padded": st.padded, "passes": st.passes, "seconds": st.seconds},
        });
        crate::util::write_atomic(path, serde_json::to_string_pretty(&v)?.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(0)
}

/// A scorer over the loaded weights on a freshly opened GPU.
fn open_scorer<'c>(
    ctx: &'c crate::gpu::GpuContext,
    l: &Loaded,
    args: &ModelArgs,
) -> anyhow::Result<(Scorer<'c>, &'static str)> {
    let precision = crate::train::precision::resolve(ctx, args.precision)?;
    let params = ctx.upload("params", &l.arena)?;
    let bos = l.tok.bos_id()?;
    let scorer =
        Scorer::new(ctx, &l.cfg, &MemorySpec::default(), precision.matmul, params, vec![], args.tokens_per_pass, bos)?;
    Ok((scorer, precision.name()))
}

fn print_throughput(scorer: &Scorer<'_>) {
    let st = scorer.stats;
    println!(
        "scored {} tokens ({} padded positions) in {} passes, {:.1} s on the GPU: {:.0} tokens/s",
        st.tokens,
        st.padded,
        st.passes,
        st.seconds,
        st.tokens as f64 / st.seconds.max(1e-9)
    );
}

/// `wgpt eval mmlu`: 5-shot MMLU (the subject's first five dev rows before each test question),
/// scored as multiple choice over the letters. Prints accuracy per subject, then over all
/// questions and the mean over subjects.
fn mmlu(gpu: &GpuArgs, args: &MmluArgs) -> anyhow::Result<i32> {
    let max = limit("--max-per-subject", args.max_per_subject)?;
    let l = load(&args.model)?;
    let dir = data_dir(&args.model.eval_data, "mmlu")?;
    let all = mmlu_subjects(&dir)?;
    let subjects: Vec<String> = match &args.subjects {
        None => all,
        Some(only) => {
            if let Some(bad) = only.iter().find(|s| !all.contains(s)) {
                bail!("--subjects: no MMLU subject `{bad}`; the subjects are: {}", all.join(", "));
            }
            only.clone()
        }
    };
    // Every file parses before the GPU is touched.
    let mut per_subject = Vec::with_capacity(subjects.len());
    for s in &subjects {
        let mut items = mmlu_items(&dir, s, MmluSplit::Test)?;
        if let Some(n) = max {
            items.truncate(n);
        }
        per_subject.push(items.into_iter().map(|(item, _)| item).collect::<Vec<_>>());
    }
    println!("{}", describe(&l));
    let ctx = gpu.open()?;
    let (mut scorer, precision) = open_scorer(&ctx, &l, &args.model)?;
    println!(
        "scoring: {precision} · {} token slots per pass · {} subject(s), 5-shot, max {} questions each",
        scorer.tokens_per_pass(),
        subjects.len(),
        max.map_or("all".into(), |n| n.to_string())
    );
    println!("{:<40} {:>9} {:>8} {:>8} {:>9}", "subject", "questions", "accuracy", "cropped", "seconds");
    let (mut right, mut total, mut accs) = (0usize, 0usize, Vec::new());
    let mut rows = Vec::new();
    for (subject, items) in subjects.iter().zip(per_subject) {
        let t0 = std::time::Instant::now();
        let how = Prompting {
            label: subject,
            task_type: TaskType::MultipleChoice,
            num_fewshot: MMLU_FEWSHOT,
            delimiter: MMLU_DELIMITER,
        };
        let g = grade(&mut scorer, &l.tok, &how, items)?;
        let n = g.correct.len();
        let k = g.correct.iter().filter(|&&c| c).count();
        let acc = k as f64 / n.max(1) as f64;
        let secs = t0.elapsed().as_secs_f64();
        println!("{subject:<40} {n:>9} {acc:>8.4} {:>8} {secs:>9.1}", g.cropped);
        rows.push(serde_json::json!({"subject": subject, "questions": n, "correct": k, "accuracy": acc,
            "cropped": g.cropped, "seconds": secs}));
        right += k;
        total += n;
        accs.push(acc);
    }
    let micro = right as f64 / total.max(1) as f64;
    let macro_ = accs.iter().sum::<f64>() / accs.len().max(1) as f64;
    println!(
        "MMLU 5-shot: {micro:.4} over {total} questions; {macro_:.4} mean over {} subjects (chance 0.25)",
        accs.len()
    );
    print_throughput(&scorer);
    if let Some(path) = &args.model.json {
        let st = scorer.stats;
        let v = serde_json::json!({
            "checkpoint": l.dir, "step": l.step, "precision": precision, "accuracy": micro,
            "mean_over_subjects": macro_, "questions": total, "subjects": rows,
            "scoring": {"tokens": st.tokens, "padded": st.padded, "passes": st.passes, "seconds": st.seconds},
        });
        crate::util::write_atomic(path, serde_json::to_string_pretty(&v)?.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(0)
}
