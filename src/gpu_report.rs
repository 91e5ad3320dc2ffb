//! `wgpt gpu-report --out DIR` (`cargo xtask gpu-report`): the one command to run when a real GPU
//! is at hand. Everything lavapipe cannot show, in one pass sized to finish in a few minutes on an
//! H100-class card: the adapters and the cooperative-matrix verdict, a quick validate on that
//! driver (with the matmul family, coop rows included, at the d12 products), matmul throughput
//! at the d12 shapes (best f32 variant, best coop f16 variant, their ratio), attention, one d12
//! training micro-step in f32 and with `train.precision = "f16"` (tokens/s, per-kernel GPU time,
//! dispatches and host time per step), and the memory plan against what was allocated. Writes
//! `gpu-report.md` and `gpu-report.json` into DIR (atomically) and prints the markdown.

use crate::bench::{matmul_bench, step_bench, MatmulBenchOptions, MatmulBenchRow, StepBenchResult};
use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::gpu::{adapters, GpuContext};
use crate::kernels::matmul_coop::coop_status;
use crate::util::Rng;
use crate::validate::suite::{self, SuiteOptions};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug, Clone)]
pub struct GpuReportArgs {
    /// Folder for gpu-report.md and gpu-report.json (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// The model whose micro-step is timed.
    #[arg(long, default_value = "configs/rtx4070-d12.toml")]
    pub config: PathBuf,
    /// Override a config value for the step benchmark (repeatable), e.g. train.device_batch_size=4.
    #[arg(long = "set")]
    pub overrides: Vec<String>,
    /// Rows of the product M in the matmul benchmark: B·T of a d12 micro-step is 16,384; smaller
    /// is faster on a slow card.
    #[arg(long, default_value_t = 16384)]
    pub rows: usize,
}

/// A section's body: prints its lines through the callback it is given.
type SectionBody<'a> = &'a mut dyn FnMut(&mut dyn FnMut(&str)) -> Result<()>;

/// Collects one section's printed lines.
struct Section {
    title: String,
    lines: Vec<String>,
    secs: f64,
}

pub fn run(ctx: &GpuContext, args: &GpuReportArgs) -> Result<()> {
    let rc = RunConfig::load(&args.config, &args.overrides)?;
    std::fs::create_dir_all(&args.out).map_err(|e| Error::File {
        path: args.out.clone(),
        message: format!("cannot create the report folder: {e}"),
    })?;
    let t_all = Instant::now();
    let mut sections: Vec<Section> = Vec::new();
    let mut js = serde_json::Map::new();
    let mut section = |title: &str, f: SectionBody<'_>| -> Result<()> {
        let t0 = Instant::now();
        let mut lines = Vec::new();
        eprintln!("== {title}");
        f(&mut |l: &str| {
            eprintln!("{l}");
            lines.push(l.to_string());
        })?;
        sections.push(Section { title: title.to_string(), lines, secs: t0.elapsed().as_secs_f64() });
        Ok(())
    };

    // 1. Adapters.
    let mut adapter_json = Vec::new();
    section("Adapters", &mut |out| {
        let backends = ctx.options().backends;
        let instance = adapters::create_instance(backends);
        for (i, a) in adapters::enumerate(&instance, backends).iter().enumerate() {
            let mut r = adapters::describe(i, a);
            let chosen = r.name == ctx.info.name;
            if chosen {
                r.cooperative_matrix_status = Some(coop_status(ctx).describe());
            }
            for l in adapters::format_report(&r, chosen).lines() {
                out(l);
            }
            adapter_json.push(serde_json::to_value(&r).unwrap_or_default());
        }
        out(&format!("in use: {}", ctx.describe()));
        out(&format!("cooperative matrices: {}", coop_status(ctx).describe()));
        Ok(())
    })?;
    js.insert("adapters".into(), json!(adapter_json));
    js.insert("adapter".into(), json!(ctx.describe()));
    js.insert("cooperative_matrices".into(), json!(coop_status(ctx).describe()));

    // 2. Validate: every kernel at the quick shapes, then the matmul family (coop rows included)
    // at the d12 products with the per-adapter defaults.
    let seed = Rng::fresh_seed();
    let mut rows_all = Vec::new();
    section("Validate (quick, plus matmul at the GPT-size products)", &mut |out| {
        out(&format!("seed {seed}"));
        out(&suite::header());
        let mut print = |r: &suite::Row| out(&suite::format_row(r));
        let quick = SuiteOptions { quick: true, all_variants_at_gpt_shapes: false, ..SuiteOptions::new(seed) };
        let mut rows = suite::run(ctx, &quick, &mut print)?;
        let big = SuiteOptions {
            filter: Some("matmul".into()),
            all_variants_at_gpt_shapes: false,
            ..SuiteOptions::new(seed)
        };
        let more = suite::run(ctx, &big, &mut print)?;
        // The second pass repeats the quick matmul rows; keep only its GPT-size ones.
        rows.extend(more.into_iter().filter(|r| r.shape.starts_with("2048x")));
        let failed = rows.iter().filter(|r| r.failed()).count();
        let not_run = rows.iter().filter(|r| !r.ran()).count();
        out(&format!(
            "{} rows, {} passed, {failed} failed, {not_run} not run",
            rows.len(),
            rows.iter().filter(|r| r.pass).count()
        ));
        for r in rows.iter().filter(|r| r.failed()) {
            out(&format!("FAILED: {}\n    {}", suite::format_row(r), r.detail.as_deref().unwrap_or("")));
        }
        rows_all = rows;
        Ok(())
    })?;
    js.insert(
        "validate".into(),
        json!({
            "seed": seed,
            "rows": rows_all.len(),
            "passed": rows_all.iter().filter(|r| r.pass).count(),
            "failed": rows_all.iter().filter(|r| r.failed()).count(),
            "not_run": rows_all.iter().filter(|r| !r.ran()).count(),
            "failures": rows_all.iter().filter(|r| r.failed()).map(suite::format_row).collect::<Vec<_>>(),
            "coop_rows": rows_all.iter().filter(|r| r.variant.starts_with("coop")).map(|r| json!({
                "kernel": r.kernel, "variant": r.variant, "shape": r.shape, "max_abs": r.max_abs,
                "tol": r.tol.to_string(), "pass": r.pass, "not_run": r.not_run,
            })).collect::<Vec<_>>(),
        }),
    );

    // 3. Matmul at the d12 products (M = B·T rows): attention projections, MLP up and down.
    let mut mm: Vec<MatmulBenchRow> = Vec::new();
    section("Matmul at the d12 shapes", &mut |out| {
        let c = rc.model.n_embd;
        let opts = MatmulBenchOptions {
            shapes: vec![(args.rows, c, c), (args.rows, 4 * c, c), (args.rows, c, 4 * c)],
            layouts: vec!["nt".into(), "nn".into(), "tn".into()],
            reps: 5,
            budget: Duration::from_secs(1),
        };
        mm = matmul_bench(ctx, &opts, out)?;
        Ok(())
    })?;
    js.insert(
        "matmul".into(),
        json!(mm
            .iter()
            .map(|r| json!({
                "shape": format!("{}x{}x{}", r.shape.0, r.shape.1, r.shape.2), "layout": r.layout,
                "variant": r.variant, "precision": r.precision, "gflops": r.gflops, "peak_percent": r.peak_percent,
            }))
            .collect::<Vec<_>>()),
    );

    // 4. Attention at the d12 layer.
    let mut attn = Vec::new();
    section("Attention (d12 layer, device batch 1)", &mut |out| {
        let o = crate::bench::attention::AttnBenchOptions {
            h: rc.model.n_head,
            hkv: rc.model.n_kv_head,
            d: rc.model.head_dim,
            t: rc.model.sequence_len,
            windows: vec![rc.model.sequence_len, rc.model.sequence_len / 4],
            ..Default::default()
        };
        attn = crate::bench::attention::bench(ctx, &o, out)?;
        Ok(())
    })?;
    js.insert("attention".into(), json!(attn));

    // 5. One training micro-step of the config's model, f32 and with f16 linear layers.
    let mut steps: Vec<(String, StepBenchResult)> = Vec::new();
    for matmul in ["f32", "f16"] {
        let mut overrides = args.overrides.clone();
        overrides.push(format!("train.precision={matmul}"));
        let rc = RunConfig::load(&args.config, &overrides)?;
        section(&format!("Training micro-step, train.precision = {matmul}"), &mut |out| {
            steps.push((matmul.to_string(), step_bench(ctx, &rc, 3, out)?));
            Ok(())
        })?;
    }
    let seed_tps = 55_700.0;
    js.insert("step".into(), json!(steps.iter().map(|(m, r)| json!({"matmul": m, "result": r})).collect::<Vec<_>>()));

    // Memory: the plan (what `wgpt info` prints) against the bytes the model allocated.
    let mut memory = Vec::new();
    section("Memory plan against allocation", &mut |out| {
        for (m, r) in &steps {
            out(&format!(
                "train.precision = {m}: plan {:.1} MiB (without optimizer state), allocated {:.1} MiB, {}",
                r.plan_bytes as f64 / 1048576.0,
                r.allocated_bytes as f64 / 1048576.0,
                if r.plan_bytes == r.allocated_bytes { "equal" } else { "DIFFERENT" }
            ));
            memory.push(json!({"matmul": m, "plan_bytes": r.plan_bytes, "allocated_bytes": r.allocated_bytes}));
        }
        Ok(())
    })?;
    js.insert("memory".into(), json!(memory));
    js.insert("seconds".into(), json!(t_all.elapsed().as_secs_f64()));

    let md = markdown(ctx, &rc, &sections, &steps, seed_tps, t_all.elapsed().as_secs_f64());
    write(&args.out.join("gpu-report.md"), md.as_bytes())?;
    let text = serde_json::to_string_pretty(&serde_json::Value::Object(js)).unwrap_or_default();
    write(&args.out.join("gpu-report.json"), text.as_bytes())?;
    println!("{md}");
    eprintln!("wrote {} and gpu-report.json", args.out.join("gpu-report.md").display());
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::util::write_atomic(path, bytes)
        .map_err(|e| Error::File { path: path.to_path_buf(), message: format!("cannot write: {e}") })
}

fn markdown(
    ctx: &GpuContext,
    rc: &RunConfig,
    sections: &[Section],
    steps: &[(String, StepBenchResult)],
    seed_tps: f64,
    secs: f64,
) -> String {
    let mut s = String::from("# wgpt GPU report\n\n");
    s += &format!("- adapter: {}\n", ctx.describe());
    s += &format!("- cooperative matrices: {}\n", coop_status(ctx).describe());
    s += &format!("- model: `{}`\n", rc.source.as_ref().map_or("<config>".into(), |p| p.display().to_string()));
    for (m, r) in steps {
        s += &format!(
            "- micro-step, train.precision = {m}: {:.0} tok/s ({:.1}% of the seed run's {seed_tps:.0} on the RTX 4070), \
             {} dispatches, host {:.1} ms per replayed micro-step ({:.1} ms to record it once)\n",
            r.tokens_per_sec,
            100.0 * r.tokens_per_sec / seed_tps,
            r.dispatches,
            r.replay_host_ms,
            r.record_ms
        );
    }
    s += &format!("- total time: {secs:.0} s\n\n");
    for sec in sections {
        s += &format!("## {} ({:.0} s)\n\n```\n", sec.title, sec.secs);
        for l in &sec.lines {
            s += l;
            s.push('\n');
        }
        s += "```\n\n";
    }
    s
}
