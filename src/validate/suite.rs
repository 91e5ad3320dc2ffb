//! The validation suite: every GPU kernel (every variant of it) against its CPU reference on
//! random inputs, at shapes chosen to break kernels: 1×1×1, ragged sizes that are multiples of no
//! tile, exact tiles, GPT-2-size products, batches, views that start at odd offsets, and problems
//! larger than a storage binding (run on a second context whose binding limit is lowered on
//! purpose, so the chunked paths run on any adapter). Outputs are filled with NaN before every run.
//!
//! `wgpt validate` prints the rows as a table; `tests/kernels.rs` runs the same suite under
//! `cargo test` and fails on any failing row.

use super::{compare, Tol};
use crate::error::Result;
use crate::gpu::{GpuContext, GpuOptions, Kernel};
use crate::util::{fnv1a, Rng};

#[derive(Clone, Debug)]
pub struct SuiteOptions {
    /// Every input derives from this seed (printed by `wgpt validate`; `--seed` replays it).
    pub seed: u64,
    /// Only run rows whose kernel name contains this.
    pub filter: Option<String>,
    /// Skip the GPT-size products (2048×768×768 and 2048×3072×768) for quick local iterations.
    pub quick: bool,
    /// Run every matmul variant at the GPT-size products too (`wgpt validate`). Without it only
    /// the two per-adapter defaults run there (`cargo test`, to keep CI short), and the
    /// cooperative-matrix defaults only with the operand storage the model's f16 products use
    /// (f32 activations, f16 weights); every variant and storage still runs at every other
    /// shape, ragged, batched and chunked ones included.
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
    super::cases::run(ctx, &small, &mut r)?;
    Ok(r.rows)
}

/// The variant names the suite covers on this adapter (for the summary line).
pub fn matmul_variant_names(ctx: &GpuContext) -> Vec<String> {
    crate::kernels::matmul::all_variants().filter(|v| v.fits(ctx)).map(|v| v.name()).collect()
}
