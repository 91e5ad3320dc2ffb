//! Throughput measurements. Speed is measured here, never in tests: these machines are shared and
//! noisy, so every figure is printed beside a baseline measured in the same run (a ratio), after
//! a warm-up, as the median of several runs.

pub mod attention;
pub mod core;

use crate::error::Result;
use crate::gpu::GpuContext;
use crate::kernels::matmul::{self, median, Gemm, MatmulPrecision, MatmulVariant};
use crate::kernels::Stream;
use crate::train::mfu::{peak_flops, Precision};
use crate::util::Rng;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct MatmulBenchOptions {
    /// (M, N, K) products to time.
    pub shapes: Vec<(usize, usize, usize)>,
    /// Layouts to time: any of "nt", "nn", "tn".
    pub layouts: Vec<String>,
    /// Timed runs per variant (after one warm-up); fewer when a variant is slow, never < 3.
    pub reps: usize,
    /// Stop sampling a variant after this long once it has 3 samples.
    pub budget: Duration,
}

impl Default for MatmulBenchOptions {
    fn default() -> Self {
        Self {
            shapes: vec![(1024, 1024, 1024), (2048, 768, 768), (2048, 3072, 768)],
            layouts: vec!["nt".into(), "nn".into(), "tn".into()],
            reps: 7,
            budget: Duration::from_secs(3),
        }
    }
}

/// One measured line.
#[derive(Clone, Debug)]
pub struct MatmulBenchRow {
    pub shape: (usize, usize, usize),
    pub layout: String,
    pub variant: String,
    /// "f32", "f16" (f16 inputs, f32 accumulation) or "f16acc"; "cpu" for the sgemm line.
    pub precision: String,
    pub gflops: f64,
    pub samples: usize,
    /// Percent of the adapter's peak at the variant's precision, where the peak is known.
    pub peak_percent: Option<f64>,
}

fn gemm_for(layout: &str, (m, n, k): (usize, usize, usize)) -> Gemm {
    match layout {
        "nn" => Gemm::nn(m, n, k),
        "tn" => Gemm::tn(m, n, k),
        _ => Gemm::nt(m, n, k),
    }
}

/// Median GFLOP/s of `f` (which performs `flops` operations per call) after one warm-up.
fn sample(flops: f64, reps: usize, budget: Duration, mut f: impl FnMut() -> Result<Duration>) -> Result<(f64, usize)> {
    f()?;
    let start = Instant::now();
    let mut rates = Vec::new();
    while rates.len() < reps.max(3) && (rates.len() < 3 || start.elapsed() < budget) {
        let dt = f()?;
        rates.push(flops / dt.as_secs_f64() / 1e9);
    }
    Ok((median(&rates), rates.len()))
}

/// CPU sgemm through the `matrixmultiply` crate on all cores, same layout: the context figure.
pub fn cpu_sgemm_gflops(g: &Gemm, reps: usize, budget: Duration) -> Result<f64> {
    let mut rng = Rng::new(1);
    let a = rng.vec_uniform(g.a_len(), -1.0, 1.0);
    let b = rng.vec_uniform(g.b_len(), -1.0, 1.0);
    let mut c = vec![0.0f32; g.c_len()];
    // matrixmultiply takes a row stride and a column stride per operand, so a transposed
    // operand is just swapped strides.
    let (rsa, csa) = if g.trans_a { (1, g.lda as isize) } else { (g.lda as isize, 1) };
    let (rsb, csb) = if g.trans_b { (1, g.ldb as isize) } else { (g.ldb as isize, 1) };
    let (rate, _) = sample(g.flops(), reps, budget, || {
        let t0 = Instant::now();
        // SAFETY: the strides and sizes describe exactly the slices allocated above (g.a_len()
        // etc. are the extents of the strided matrices).
        unsafe {
            matrixmultiply::sgemm(
                g.m,
                g.k,
                g.n,
                1.0,
                a.as_ptr(),
                rsa,
                csa,
                b.as_ptr(),
                rsb,
                csb,
                0.0,
                c.as_mut_ptr(),
                g.ldc as isize,
                1,
            );
        }
        Ok(t0.elapsed())
    })?;
    Ok(rate)
}

/// Time every matmul variant the adapter can run on each shape and layout, print a block per
/// product with the CPU sgemm figure and the variant autotuning picks, and return the rows.
pub fn matmul_bench(
    ctx: &GpuContext,
    opts: &MatmulBenchOptions,
    out: &mut dyn FnMut(&str),
) -> Result<Vec<MatmulBenchRow>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    out(&format!("adapter: {}", ctx.describe()));
    out(&format!("cpu sgemm: matrixmultiply crate, {threads} thread(s)"));
    out(&format!("autotune: {:?}, cache {:?}", ctx.autotune.mode(), ctx.autotune.cache_file()));
    out("figures are GFLOP/s (2·M·N·K per product): median of the timed runs after one warm-up, variants timed round-robin");
    let mut rows = Vec::new();
    let mut summary = Vec::new();
    for &shape in &opts.shapes {
        for layout in &opts.layouts {
            let g = gemm_for(layout, shape);
            let mut rng = Rng::new(7);
            let ta = ctx.upload("bench A", &rng.vec_uniform(g.a_len(), -1.0, 1.0))?;
            let tb = ctx.upload("bench B", &rng.vec_uniform(g.b_len(), -1.0, 1.0))?;
            let tc = ctx.tensor("bench C", g.c_len())?;
            // What autotuning picks for an f32 product and for one that accepts f16 inputs.
            let pick = matmul::choose_variant(ctx, &g, crate::gpu::DType::F32)?;
            let g16 = g.with_precision(MatmulPrecision::F16);
            let pick16 = matmul::choose_variant(ctx, &g16, crate::gpu::DType::F32)?;
            out(&format!("\n{}x{}x{} {} (M×N×K, {})", shape.0, shape.1, shape.2, g.layout(), layout_role(layout)));
            // Record every variant, warm each up, then time them round-robin: on a shared, noisy
            // machine each variant then sees the same mix of load, so the ratios hold even when
            // the absolute figures drift. Coop variants run where the adapter has cooperative
            // matrices (also unadvertised sizes, labelled so), on f32 operands rounded while staged.
            let variants: Vec<MatmulVariant> = matmul::all_variants().filter(|v| v.fits(ctx)).collect();
            let mut recorded = Vec::new();
            for &v in &variants {
                let mut s = Stream::new(ctx);
                let gv = if v.precision() == MatmulPrecision::F32 { g } else { g.with_precision(v.precision()) };
                matmul::matmul_variant(&mut s, v, &tc, &ta, &tb, &gv, 1.0, 0.0)?;
                ctx.time(s.dispatches(), 1)?;
                recorded.push(s.dispatches().to_vec());
            }
            let mut rates: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
            let start = Instant::now();
            let mut round = 0;
            while round < opts.reps.max(3) && (round < 3 || start.elapsed() < opts.budget * variants.len() as u32) {
                for (i, d) in recorded.iter().enumerate() {
                    rates[i].push(g.flops() / ctx.time(d, 1)?.as_secs_f64() / 1e9);
                }
                round += 1;
            }
            let naive = variants.iter().position(|&v| v == MatmulVariant::Naive).map(|i| median(&rates[i]));
            let (mut best32, mut best16) = (None::<(String, f64)>, None::<(String, f64)>);
            let (mut picked, mut picked16) = (None, None);
            for (i, &v) in variants.iter().enumerate() {
                let rate = median(&rates[i]);
                let n = rates[i].len();
                if v == pick {
                    picked = Some(rate);
                }
                if v == pick16 {
                    picked16 = Some(rate);
                }
                let best = if v.precision() == MatmulPrecision::F32 { &mut best32 } else { &mut best16 };
                if best.as_ref().is_none_or(|b| rate > b.1) {
                    *best = Some((v.name(), rate));
                }
                let peak = peak_flops(
                    &ctx.info.name,
                    if v.precision() == MatmulPrecision::F32 { Precision::F32 } else { Precision::Bf16Dense },
                );
                let pct = peak.map(|p| 100.0 * rate * 1e9 / p);
                let ratio = naive.map_or(String::new(), |b| format!("{:>6.2}x naive", rate / b));
                let mut mark = String::new();
                if v == pick {
                    mark += "  <- autotune pick (f32)";
                }
                if v == pick16 && v != pick {
                    mark += "  <- autotune pick (f16 accepted)";
                }
                let adv = match v {
                    MatmulVariant::Coop(c) if !c.advertised(ctx) => " unadv.",
                    _ => "",
                };
                out(&format!(
                    "  {:<22} {:<6}{:<7} {:>9.2} {:>8} {ratio}{mark}   ({n} runs)",
                    v.name(),
                    v.precision().name(),
                    adv,
                    rate,
                    tflops_and_peak(rate, pct),
                ));
                rows.push(MatmulBenchRow {
                    shape,
                    layout: layout.clone(),
                    variant: v.name(),
                    precision: v.precision().name().into(),
                    gflops: rate,
                    samples: n,
                    peak_percent: pct,
                });
            }
            let cpu = cpu_sgemm_gflops(&g, opts.reps, opts.budget)?;
            out(&format!("  {:<22} {:<13} {:>9.2}", "cpu sgemm", "f32", cpu));
            rows.push(MatmulBenchRow {
                shape,
                layout: layout.clone(),
                variant: "cpu_sgemm".into(),
                precision: "cpu".into(),
                gflops: cpu,
                samples: 0,
                peak_percent: None,
            });
            summary.push(SummaryLine {
                shape,
                layout: g.layout(),
                pick: pick.name(),
                pick_rate: picked.unwrap_or(0.0),
                pick16: pick16.name(),
                pick16_rate: picked16.unwrap_or(0.0),
                best32,
                best16,
                cpu,
            });
        }
    }
    out("\nsummary (GFLOP/s; ratio = best f16-input variant / best f32 variant, same run)");
    out(&format!(
        "  {:<16} {:<6} {:<22} {:>9} {:<22} {:>9} {:>8} {:>10}",
        "shape", "layout", "best f32", "", "best coop f16", "", "ratio", "cpu sgemm"
    ));
    for l in &summary {
        let (n32, r32) = l.best32.clone().unwrap_or(("-".into(), 0.0));
        let (n16, r16) = l.best16.clone().unwrap_or(("(no coop)".into(), 0.0));
        let ratio = if r16 > 0.0 { format!("{:.2}x", r16 / r32.max(1e-12)) } else { "-".into() };
        out(&format!(
            "  {:<16} {:<6} {:<22} {:>9.2} {:<22} {:>9.2} {:>8} {:>10.2}",
            format!("{}x{}x{}", l.shape.0, l.shape.1, l.shape.2),
            l.layout,
            n32,
            r32,
            n16,
            r16,
            ratio,
            l.cpu
        ));
    }
    out("autotune picks:");
    for l in &summary {
        out(&format!(
            "  {:<16} {:<6} f32: {} ({:.2})   f16 accepted: {} ({:.2})",
            format!("{}x{}x{}", l.shape.0, l.shape.1, l.shape.2),
            l.layout,
            l.pick,
            l.pick_rate,
            l.pick16,
            l.pick16_rate
        ));
    }
    Ok(rows)
}

struct SummaryLine {
    shape: (usize, usize, usize),
    layout: &'static str,
    pick: String,
    pick_rate: f64,
    pick16: String,
    pick16_rate: f64,
    best32: Option<(String, f64)>,
    best16: Option<(String, f64)>,
    cpu: f64,
}

/// "12.3 TF 21%" above 1 TFLOP/s, else the percent alone (or nothing when the peak is unknown).
fn tflops_and_peak(gflops: f64, pct: Option<f64>) -> String {
    let p = pct.map_or(String::new(), |p| format!("{p:.0}%"));
    if gflops >= 1000.0 {
        format!("{:.1}TF {p}", gflops / 1000.0)
    } else {
        p
    }
}

fn layout_role(layout: &str) -> &'static str {
    match layout {
        "nn" => "input gradient dY·W",
        "tn" => "weight gradient dYᵀ·X",
        _ => "forward X·Wᵀ",
    }
}

/// What [`step_bench`] measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StepBenchResult {
    pub tokens: usize,
    pub dispatches: usize,
    /// Median wall time of one submitted micro-step.
    pub ms: f64,
    pub tokens_per_sec: f64,
    pub model_gflops: f64,
    /// Host time per micro-step of replaying the recorded step (encoding its dispatches into a
    /// command buffer and submitting it: what the trainer pays per micro-batch), and of recording
    /// it afresh (bind groups, variant choice), which the trainer does once.
    pub replay_host_ms: f64,
    pub record_ms: f64,
    /// What the linear layers ran in.
    pub linear_layers: String,
    /// Planned bytes of everything but the optimizer state, and what allocating the model took.
    pub plan_bytes: u64,
    pub allocated_bytes: u64,
    /// (kernel entry point, calls, GPU ms) from timestamps, largest first; empty without
    /// TIMESTAMP_QUERY_INSIDE_PASSES.
    pub kernels: Vec<(String, usize, f64)>,
}

/// Forward + head + backward of one micro-batch of `rc`'s model: tokens/s (median of `steps`
/// timed runs after a warm-up, each run one submission of the recorded step), the host time of
/// recording and encoding it, and the GPU time per kernel from timestamps written between
/// dispatches.
pub fn step_bench(
    ctx: &GpuContext,
    rc: &crate::config::RunConfig,
    steps: usize,
    out: &mut dyn FnMut(&str),
) -> Result<StepBenchResult> {
    use crate::model::gpu::GpuModel;
    use crate::model::gpu::Pass;
    use crate::model::ParamLayout;
    let m = &rc.model;
    let b = rc.train().device_batch_size;
    let n = b * m.sequence_len;
    let before = ctx.allocated_bytes();
    let mut model = GpuModel::for_run(ctx, rc)?;
    let allocated = ctx.allocated_bytes() - before;
    let plan_bytes = model.plan.total_bytes();
    model.write_params(&ParamLayout::new(m).init(rc.train().seed))?;
    let mut rng = Rng::new(1);
    let idx: Vec<i32> = (0..n).map(|_| (rng.next_u64() % m.vocab_size as u64) as i32).collect();
    let targets: Vec<i32> = (0..n).map(|_| (rng.next_u64() % m.vocab_size as u64) as i32).collect();
    model.set_batch(&idx, &targets, 1)?;
    // The micro-step the trainer runs, recorded once: the first recording builds pipelines and
    // (with autotuning on) tunes each shape class.
    let step = model.micro_step(Pass::Train)?;
    // The replays below read the f16 weight copies (under f16) as they are: make them first.
    model.refresh_weight_copies()?;
    // Host time per micro-step: replaying the recording (encode + submit, what the trainer
    // pays per micro-batch) beside recording it afresh (bind groups, variant choice: what every
    // micro-batch paid before the step was recorded once).
    let mut rec = Vec::new();
    let mut replay = Vec::new();
    for _ in 0..3 {
        let t0 = Instant::now();
        drop(model.record_micro_step(Pass::Train)?);
        rec.push(t0.elapsed().as_secs_f64());
        let t0 = Instant::now();
        ctx.submit(step);
        replay.push(t0.elapsed().as_secs_f64());
        ctx.wait()?;
    }
    let (record_ms, replay_host_ms) = (median(&rec) * 1e3, median(&replay) * 1e3);
    let (linear_layers, _) = crate::kernels::matmul_coop::describe_linear_layers(ctx, model.matmul);
    out(&format!("adapter: {}", ctx.describe()));
    out(&format!(
        "model: depth {} · C {} · {} heads of {} · vocab {} · T {} · device batch {} ({} tokens) · recompute {:?}",
        m.n_layer, m.n_embd, m.n_head, m.head_dim, m.vocab_size, m.sequence_len, b, n, rc.file.memory.recompute
    ));
    out(&format!("linear layers: {linear_layers}"));
    out(&format!(
        "{} dispatches per micro-step; plan {:.1} MiB without optimizer state, {:.1} MiB allocated for it",
        step.len(),
        plan_bytes as f64 / 1048576.0,
        allocated as f64 / 1048576.0
    ));
    out(&format!(
        "host time per micro-step: {replay_host_ms:.2} ms replaying the recorded step (encode + submit), \
         {record_ms:.2} ms to record it afresh (median of 3)"
    ));
    ctx.time(step, 1)?; // warm-up: pipelines, caches
    let mut secs: Vec<f64> = Vec::new();
    for _ in 0..steps.max(1) {
        secs.push(ctx.time(step, 1)?.as_secs_f64());
    }
    let dt = median(&secs);
    let tps = n as f64 / dt;
    let flops = m.flops_per_token() as f64 * tps;
    out(&format!(
        "forward+backward: {:.1} ms per micro-step, {:.0} tokens/s, {:.2} GFLOP/s of model FLOPs (median of {})",
        dt * 1e3,
        tps,
        flops / 1e9,
        secs.len()
    ));
    let mut result = StepBenchResult {
        tokens: n,
        dispatches: step.len(),
        ms: dt * 1e3,
        tokens_per_sec: tps,
        model_gflops: flops / 1e9,
        record_ms,
        replay_host_ms,
        linear_layers,
        plan_bytes,
        allocated_bytes: allocated,
        kernels: Vec::new(),
    };
    let Some(times) = ctx.profile(step)? else {
        out("per-kernel breakdown: the adapter has no TIMESTAMP_QUERY_INSIDE_PASSES");
        return Ok(result);
    };
    let mut by: std::collections::BTreeMap<&'static str, (usize, f64)> = Default::default();
    for (d, t) in step.iter().zip(&times) {
        let e = by.entry(d.kernel.entry()).or_default();
        e.0 += 1;
        e.1 += t.as_secs_f64();
    }
    let total: f64 = times.iter().map(|t| t.as_secs_f64()).sum();
    let mut rows: Vec<_> = by.into_iter().collect();
    rows.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
    out(&format!("per-kernel GPU time (timestamps; total {:.1} ms):", total * 1e3));
    out(&format!("  {:<30} {:>6} {:>11} {:>7}", "kernel", "calls", "ms", "share"));
    for (k, (calls, t)) in rows {
        out(&format!("  {:<30} {:>6} {:>11.2} {:>6.1}%", k, calls, t * 1e3, 100.0 * t / total));
        result.kernels.push((k.to_string(), calls, t * 1e3));
    }
    Ok(result)
}
