//! The validation suite: every GPU kernel (every variant of it) against its CPU reference on
//! random inputs, at shapes chosen to break kernels: 1×1×1, ragged sizes that are multiples of no
//! tile, exact tiles, GPT-2-size products, batches, views that start at odd offsets, and problems
//! larger than a storage binding (run on a second context whose binding limit is lowered on
//! purpose, so the chunked paths run on any adapter). Outputs are filled with NaN before every run.
//!
//! `wgpt validate` prints the rows as a table; `tests/kernels.rs` runs the same suite under
//! `cargo test` and fails on any failing row.

use super::{compare, elementwise_tolerance, matmul_tolerance, reduce_tolerance, Tol};
use crate::error::Result;
use crate::gpu::{GpuContext, GpuOptions, GpuTensor, Kernel};
use crate::kernels::matmul::{variant_tolerance, Gemm, MatmulPrecision, MatmulVariant, MATMUL_VARIANTS};
use crate::kernels::matmul_coop::{CoopVariant, COOP_VARIANTS};
use crate::kernels::{elementwise, matmul, reduce, Stream};
use crate::reference;
use crate::util::{fnv1a, Rng};
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct SuiteOptions {
    /// Every input derives from this seed (printed by `wgpt validate`; `--seed` replays it).
    pub seed: u64,
    /// Only run rows whose kernel name contains this.
    pub filter: Option<String>,
    /// Skip the GPT-size products (2048×768×768 and 2048×3072×768) for quick local iterations.
    pub quick: bool,
    /// Run every matmul variant at the GPT-size products too (`wgpt validate`). Without it only
    /// the two per-adapter defaults run there (`cargo test`, to keep CI short); every variant
    /// still runs at every other shape, ragged, batched and chunked ones included.
    pub all_variants_at_gpt_shapes: bool,
    /// Binding limit of the second context that exercises chunking.
    pub chunk_binding_bytes: u64,
    /// Run only each row name's first case (the shapes after it are skipped): a subset of the
    /// suite's rows, so a kernel these rows run is one the whole suite checks. For the test that
    /// every kernel has rows (`tests/kernels.rs`), which then takes ~20 s on lavapipe instead of
    /// the several minutes of the whole suite.
    pub first_case_only: bool,
}

impl SuiteOptions {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            filter: None,
            quick: false,
            all_variants_at_gpt_shapes: true,
            chunk_binding_bytes: 64 << 10,
            first_case_only: false,
        }
    }
}

/// One line of the table.
#[derive(Clone, Debug)]
pub struct Row {
    pub kernel: String,
    pub variant: String,
    pub shape: String,
    pub max_abs: f64,
    pub max_rel: f64,
    pub tol: Tol,
    pub pass: bool,
    /// The comparator's report for a failing row.
    pub detail: Option<String>,
    pub secs: f64,
    /// Why the row did not run (e.g. no cooperative matrices on this adapter). Such a row is
    /// neither passed nor failed: it is counted as not run.
    pub not_run: Option<String>,
    /// The kernels this row checks: those the suite's contexts ran since the previous row (exact
    /// when nothing else uses those contexts meanwhile), or for a row that did not run, those it
    /// would have run. `tests/kernels.rs` requires every `Kernel` to appear in some row.
    pub kernels: Vec<Kernel>,
}

impl Row {
    pub fn failed(&self) -> bool {
        !self.pass && self.not_run.is_none()
    }

    pub fn ran(&self) -> bool {
        self.not_run.is_none()
    }
}

pub fn header() -> String {
    format!(
        "{:<26} {:<36} {:<26} {:>11} {:>11} {:>16}  {}",
        "kernel", "variant", "shape", "max abs err", "max rel err", "tolerance", "result"
    )
}

pub fn format_row(r: &Row) -> String {
    if let Some(why) = &r.not_run {
        return format!(
            "{:<26} {:<36} {:<26} {:>11} {:>11} {:>16}  NOT RUN: {why}",
            r.kernel, r.variant, r.shape, "-", "-", "-"
        );
    }
    format!(
        "{:<26} {:<36} {:<26} {:>11.3e} {:>11.3e} {:>16}  {}",
        r.kernel,
        r.variant,
        r.shape,
        r.max_abs,
        r.max_rel,
        r.tol.to_string(),
        if r.pass { "PASS" } else { "FAIL" }
    )
}

/// Collects rows; kernel families' case functions (here and in sibling modules) feed it.
pub(crate) struct Runner<'a> {
    pub(crate) opts: &'a SuiteOptions,
    rows: Vec<Row>,
    on_row: &'a mut dyn FnMut(&Row),
    /// The contexts the cases run on, asked after each row what ran for it.
    contexts: [&'a GpuContext; 2],
}

impl Runner<'_> {
    pub(crate) fn wants(&self, kernel: &str) -> bool {
        let done = self.opts.first_case_only && self.rows.iter().any(|r| r.ran() && r.kernel == kernel);
        !done && self.opts.filter.as_deref().is_none_or(|f| kernel.contains(f))
    }

    /// A generator seeded from the run seed and the case name.
    pub(crate) fn rng(&self, case: &str) -> Rng {
        Rng::new(self.opts.seed ^ fnv1a(case.as_bytes()))
    }

    /// What the contexts ran since the previous row.
    fn ran(&self) -> Vec<Kernel> {
        let mut ran: Vec<Kernel> = self.contexts.iter().flat_map(|c| c.take_ran()).collect();
        ran.sort();
        ran.dedup();
        ran
    }

    #[allow(clippy::too_many_arguments)]
    /// Compare and add a row (also printed through the callback).
    pub(crate) fn record(
        &mut self,
        kernel: &str,
        variant: &str,
        shape: &str,
        got: &[f32],
        want: &[f32],
        tol: Tol,
        secs: f64,
    ) {
        let kernels = self.ran();
        let (stats, pass) = match compare(got, want, tol) {
            Ok(s) => (s, true),
            Err(s) => (s, false),
        };
        let row = Row {
            kernel: kernel.to_string(),
            variant: variant.to_string(),
            shape: shape.to_string(),
            max_abs: stats.max_abs,
            max_rel: stats.max_rel,
            tol,
            pass,
            detail: (!pass).then(|| stats.to_string()),
            secs,
            not_run: None,
            kernels,
        };
        (self.on_row)(&row);
        self.rows.push(row);
    }

    /// Add a row that could not run here, saying why; `kernels` are those it would have run.
    pub(crate) fn record_not_run(&mut self, kernel: &str, variant: &str, shape: &str, why: &str, kernels: &[Kernel]) {
        let row = Row {
            kernel: kernel.to_string(),
            variant: variant.to_string(),
            shape: shape.to_string(),
            max_abs: 0.0,
            max_rel: 0.0,
            tol: Tol { atol: 0.0, rtol: 0.0 },
            pass: false,
            detail: None,
            secs: 0.0,
            not_run: Some(why.to_string()),
            kernels: kernels.to_vec(),
        };
        (self.on_row)(&row);
        self.rows.push(row);
    }
}

/// Run the suite on `ctx` (and on a second context with a lowered binding limit for the chunked
/// rows). Returns every row; the caller decides what a failure means.
pub fn run(ctx: &GpuContext, opts: &SuiteOptions, on_row: &mut dyn FnMut(&Row)) -> Result<Vec<Row>> {
    // The chunked paths: same kernels, a context that claims a 64 KiB binding limit.
    let chunk_opts = GpuOptions { max_binding_bytes: Some(opts.chunk_binding_bytes), ..ctx.options().clone() };
    let small = GpuContext::new(&chunk_opts)?;
    // Nothing the caller ran before is this suite's work.
    ctx.take_ran();
    let mut r = Runner { opts, rows: Vec::new(), on_row, contexts: [ctx, &small] };
    matmul_cases(ctx, &mut r, false)?;
    elementwise_cases(ctx, &mut r, false)?;
    reduce_cases(ctx, &mut r, false)?;
    super::attention_cases::attention_cases(ctx, &mut r, false)?;

    matmul_cases(&small, &mut r, true)?;
    elementwise_cases(&small, &mut r, true)?;
    reduce_cases(&small, &mut r, true)?;
    super::ops_cases::run(ctx, &small, &mut r)?;
    super::attention_cases::attention_cases(&small, &mut r, true)?;
    super::optim_cases::run(ctx, &small, &mut r)?;
    Ok(r.rows)
}

/// Upload, allowing a view that starts `pad` elements into its buffer (to test odd offsets).
pub(crate) fn upload_at(ctx: &GpuContext, label: &str, data: &[f32], pad: usize) -> Result<GpuTensor> {
    let t = ctx.tensor(label, data.len() + pad)?;
    let v = t.view(pad, data.len());
    ctx.write(&v, data)?;
    Ok(v)
}

struct MatmulCase {
    g: Gemm,
    alpha: f32,
    beta: f32,
    /// Element offsets of the A, B, C views inside their buffers.
    pads: [usize; 3],
}

fn matmul_cases(ctx: &GpuContext, r: &mut Runner<'_>, chunked: bool) -> Result<()> {
    let layouts: [(bool, bool); 3] = [(false, true), (false, false), (true, false)];
    for (ta, tb) in layouts {
        let g = |m, n, k| Gemm::new(ta, tb, m, n, k);
        let plain = |g: Gemm| MatmulCase { g, alpha: 1.0, beta: 0.0, pads: [0; 3] };
        let mut cases = Vec::new();
        if !chunked {
            cases.push(plain(g(1, 1, 1)));
            cases.push(plain(g(17, 33, 65)));
            cases.push(plain(g(64, 64, 64)));
            cases.push(plain(g(128, 96, 80)));
            cases.push(MatmulCase { g: g(17, 33, 65), alpha: 0.75, beta: -1.5, pads: [0; 3] });
            cases.push(MatmulCase { g: g(64, 64, 64), alpha: 1.0, beta: 1.0, pads: [0; 3] });
            cases.push(MatmulCase { g: g(33, 20, 64), alpha: 1.0, beta: 0.0, pads: [3, 5, 7] });
            cases.push(plain(g(17, 33, 65).batched(3)));
            cases.push(plain(g(256, 256, 64).batched(12)));
            cases.push(plain(g(64, 128, 256).batched(6)));
            if !r.opts.quick {
                cases.push(plain(g(2048, 768, 768)));
                cases.push(plain(g(2048, 3072, 768)));
            }
        } else {
            cases.push(plain(g(300, 200, 257)));
            cases.push(plain(g(24, 24, 5000)));
            cases.push(MatmulCase { g: g(150, 70, 190).batched(5), alpha: 0.5, beta: 2.0, pads: [1, 2, 3] });
        }
        let kernel = format!("matmul_{}{}", g(1, 1, 1).layout().to_lowercase(), if chunked { " chunked" } else { "" });
        if !r.wants(&kernel) {
            continue;
        }
        if !ctx.features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
            for v in coop_rows(ctx, false) {
                for storage in ["f32", "f16"] {
                    let label = format!("{} {storage} in", v.name());
                    r.record_not_run(
                        &kernel,
                        &label,
                        "all shapes",
                        "cooperative matrices not available on this adapter",
                        &[Kernel::MatmulCoop],
                    );
                }
            }
        }
        for case in cases {
            // Asked again per case for `first_case_only`.
            if !r.wants(&kernel) {
                break;
            }
            run_matmul_case(ctx, r, &kernel, &case)?;
        }
    }
    Ok(())
}

fn run_matmul_case(ctx: &GpuContext, r: &mut Runner<'_>, kernel: &str, case: &MatmulCase) -> Result<()> {
    let g = &case.g;
    let mut shape =
        if g.batch > 1 { format!("{}x({}x{}x{})", g.batch, g.m, g.n, g.k) } else { format!("{}x{}x{}", g.m, g.n, g.k) };
    if case.beta != 0.0 || case.alpha != 1.0 {
        shape += &format!(" a={} b={}", case.alpha, case.beta);
    }
    if case.pads != [0; 3] {
        shape += " +off";
    }
    let mut rng = r.rng(&format!("{kernel} {shape}"));
    // Linear-layer scaling (see matmul_tolerance): A in [-1, 1], B in [-1, 1]/sqrt(K).
    let a = rng.vec_uniform(g.a_len(), -1.0, 1.0);
    let s = 1.0 / (g.k as f32).sqrt();
    let b = rng.vec_uniform(g.b_len(), -s, s);
    let c0 = if case.beta == 0.0 { vec![f32::NAN; g.c_len()] } else { rng.vec_uniform(g.c_len(), -1.0, 1.0) };
    let mut want = c0.clone();
    reference::matmul::matmul(&mut want, &a, &b, g, case.alpha, case.beta);
    let ta = upload_at(ctx, "A", &a, case.pads[0])?;
    let tb = upload_at(ctx, "B", &b, case.pads[1])?;
    let tc = upload_at(ctx, "C", &c0, case.pads[2])?;
    let gpt_size = g.m * g.n * g.k >= 1 << 30;
    let defaults = [MatmulVariant::CPU_DEFAULT, MatmulVariant::GPU_DEFAULT];
    let run_all = r.opts.all_variants_at_gpt_shapes || !gpt_size;
    for v in MATMUL_VARIANTS.iter().filter(|v| v.fits(ctx) && (run_all || defaults.contains(v))) {
        ctx.write(&tc, &c0)?;
        let t0 = Instant::now();
        let mut st = Stream::new(ctx);
        matmul::matmul_variant(&mut st, *v, &tc, &ta, &tb, g, case.alpha, case.beta)?;
        st.run()?;
        let got = ctx.read(&tc)?;
        r.record(kernel, &v.name(), &shape, &got, &want, matmul_tolerance(g.k), t0.elapsed().as_secs_f64());
    }
    if !ctx.features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
        return Ok(());
    }
    // The coop variants, on the same inputs, against the reference on f16-rounded inputs; with
    // the operands stored in f32 (rounded while staging) and in f16.
    let g16 = g.with_precision(MatmulPrecision::F16Acc);
    let mut want16 = c0.clone();
    reference::matmul::matmul(&mut want16, &a, &b, &g16, case.alpha, case.beta);
    let a16 = upload_at_f16(ctx, "A f16", &a, case.pads[0])?;
    let b16 = upload_at_f16(ctx, "B f16", &b, case.pads[1])?;
    for v in coop_rows(ctx, gpt_size && !r.opts.all_variants_at_gpt_shapes) {
        for (storage, ta, tb) in [("f32", &ta, &tb), ("f16", &a16, &b16)] {
            ctx.write(&tc, &c0)?;
            let t0 = Instant::now();
            let mut st = Stream::new(ctx);
            matmul::matmul_variant(&mut st, MatmulVariant::Coop(v), &tc, ta, tb, &g16, case.alpha, case.beta)?;
            st.run()?;
            let got = ctx.read(&tc)?;
            let unadvertised = if v.advertised(ctx) { "" } else { " (unadvertised)" };
            let label = format!("{} {storage} in{unadvertised}", v.name());
            let tol = variant_tolerance(MatmulVariant::Coop(v), g.k);
            r.record(kernel, &label, &shape, &got, &want16, tol, t0.elapsed().as_secs_f64());
        }
    }
    Ok(())
}

/// The coop variants the suite runs on this adapter: every one that fits, or with `defaults_only`
/// (the GPT-size products under `cargo test`, to keep CI short) the first f32-accumulating one of
/// each tile size (`wgpt validate` runs them all there).
fn coop_rows(ctx: &GpuContext, defaults_only: bool) -> Vec<CoopVariant> {
    let sg = crate::kernels::matmul_coop::subgroup_size(ctx);
    let fitting = COOP_VARIANTS.iter().copied().filter(|v| v.fits(ctx, sg));
    let mut out: Vec<CoopVariant> = Vec::new();
    for v in fitting {
        if !defaults_only || (v.flush == 0 && !out.iter().any(|o| o.tile == v.tile)) {
            out.push(v);
        }
    }
    if out.is_empty() && !ctx.features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
        // Name what would have run, for the not-run rows.
        let mut seen: Vec<CoopVariant> = Vec::new();
        for &v in COOP_VARIANTS {
            if !seen.iter().any(|o| o.tile == v.tile && (o.flush == 0) == (v.flush == 0)) {
                seen.push(v);
            }
        }
        return seen;
    }
    out
}

/// As [`upload_at`], stored as f16.
pub(crate) fn upload_at_f16(ctx: &GpuContext, label: &str, data: &[f32], pad: usize) -> Result<GpuTensor> {
    // f16 views written from the host must start on a 4-byte boundary: round the pad up to even.
    let pad = pad.next_multiple_of(2);
    let t = ctx.tensor_f16(label, data.len() + pad + 1)?;
    let v = t.view(pad, data.len());
    ctx.write(&v, data)?;
    Ok(v)
}

fn elementwise_cases(ctx: &GpuContext, r: &mut Runner<'_>, chunked: bool) -> Result<()> {
    let sizes: &[usize] = if chunked { &[100_003] } else { &[1, 7, 256, 1000, 65_537, 1_048_579] };
    let suffix = if chunked { " chunked" } else { "" };
    let tol = elementwise_tolerance();
    for &n in sizes {
        let shape = format!("n={n}");
        let mut rng = r.rng(&format!("elementwise{suffix} {n}"));
        let x = rng.vec_uniform(n, -1.0, 1.0);
        let y = rng.vec_uniform(n, -1.0, 1.0);
        let alpha = rng.uniform_f32(-2.0, 2.0);
        let nan = vec![f32::NAN; n];
        let tx = ctx.upload("x", &x)?;
        let ty = ctx.upload("y", &y)?;
        let tout = ctx.tensor("out", n)?;
        type Launch<'f> = &'f dyn Fn(&mut Stream<'_>) -> Result<()>;
        let mut check =
            |name: &str, init: &[f32], target: &GpuTensor, launch: Launch<'_>, want: Vec<f32>| -> Result<()> {
                let kernel = format!("{name}{suffix}");
                if !r.wants(&kernel) {
                    return Ok(());
                }
                ctx.write(target, init)?;
                let t0 = Instant::now();
                let mut st = Stream::new(ctx);
                launch(&mut st)?;
                st.run()?;
                let got = ctx.read(target)?;
                r.record(&kernel, "-", &shape, &got, &want, tol, t0.elapsed().as_secs_f64());
                Ok(())
            };
        let mut want = vec![0.0; n];
        reference::elementwise::fill(&mut want, alpha);
        check("fill", &nan, &tout, &|s| elementwise::fill(s, &tout, alpha), want)?;

        let mut want = vec![0.0; n];
        reference::elementwise::copy(&mut want, &x);
        check("copy", &nan, &tout, &|s| elementwise::copy(s, &tout, &tx), want)?;

        let mut want = vec![0.0; n];
        reference::elementwise::add(&mut want, &x, &y);
        check("add", &nan, &tout, &|s| elementwise::add(s, &tout, &tx, &ty), want)?;

        let mut want = x.clone();
        reference::elementwise::scale(&mut want, alpha);
        check("scale", &x, &tout, &|s| elementwise::scale(s, &tout, alpha), want)?;

        let mut want = y.clone();
        reference::elementwise::axpy(&mut want, alpha, &x);
        check("axpy", &y, &tout, &|s| elementwise::axpy(s, &tout, alpha, &tx), want)?;
    }
    Ok(())
}

fn reduce_cases(ctx: &GpuContext, r: &mut Runner<'_>, chunked: bool) -> Result<()> {
    let sizes: &[usize] = if chunked { &[100_003, 1_000_003] } else { &[0, 1, 255, 257, 100_003, 3_000_001] };
    let kernel = if chunked { "sum_squares chunked" } else { "sum_squares" };
    if !r.wants(kernel) {
        return Ok(());
    }
    for &n in sizes {
        let mut rng = r.rng(&format!("{kernel} {n}"));
        let x = rng.vec_uniform(n, -1.0, 1.0);
        let tx = ctx.upload("x", &x)?;
        let tout = ctx.upload("out", &[f32::NAN])?;
        let mut want = [0.0f32];
        reference::reduce::sum_squares(&mut want, &x);
        let t0 = Instant::now();
        let mut st = Stream::new(ctx);
        reduce::sum_squares(&mut st, &tout, &tx)?;
        st.run()?;
        let got = ctx.read(&tout)?;
        r.record(kernel, "-", &format!("n={n}"), &got, &want, reduce_tolerance(), t0.elapsed().as_secs_f64());
    }
    Ok(())
}

/// The variant names the suite covers on this adapter (for the summary line).
pub fn matmul_variant_names(ctx: &GpuContext) -> Vec<String> {
    crate::kernels::matmul::all_variants().filter(|v| v.fits(ctx)).map(|v| v.name()).collect()
}
