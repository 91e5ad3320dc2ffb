//! Launchers for the matmul family: C = α·op(A)·op(B) + β·C, batched, C in f32. The SIMT kernels
//! of `shaders/matmul.wgsl` (f32 in, f32 accumulation) and the cooperative-matrix kernels of
//! `shaders/matmul_coop.wgsl` (f16 products on the tensor cores, see `kernels::matmul_coop`) are
//! variants of one family: same contract, same parameters, same chunking.
//!
//! [`matmul`] mirrors `reference::matmul::matmul` name for name and argument for argument (the
//! [`Stream`] first). It checks the shapes, splits the problem into chunks whose operands each fit
//! one storage binding, picks a kernel variant (autotuned per adapter and shape class, see
//! `gpu::autotune`) and records one dispatch per chunk. Which variants are candidates is decided
//! by the precision the caller accepts ([`Gemm::precision`]): an f32 product never silently gets
//! f16 inputs.

use crate::error::{Error, Result};
use crate::gpu::autotune::{AutotuneMode, Choice};
use crate::gpu::coop::CoopStatus;
use crate::gpu::immediates::immediates;
use crate::gpu::tensor::window_slack;
use crate::gpu::{DType, GpuContext, GpuTensor, Kernel, Overrides, Shader};
use crate::kernels::matmul_coop::{self, CoopVariant, COOP_VARIANTS};
use crate::kernels::Stream;
use crate::util::Rng;
use std::time::Instant;

pub use crate::shapes::{Gemm, MatmulPrecision};

/// One kernel of the family with its tuning parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatmulVariant {
    /// One output per invocation: the baseline.
    Naive,
    /// TM×TN outputs per invocation (4 or 8 each), vec4 loads, no workgroup memory; workgroup RX×RY.
    Register { rx: u32, ry: u32, tm: u32, tn: u32 },
    /// BM×BN workgroup tiles staged through workgroup memory in BK steps.
    Tiled { bm: u32, bn: u32, bk: u32 },
    /// BM×BN (128×128, 128×64) blocks, 8×8 register tiles, double-buffered k-major staging.
    Tiled8 { bm: u32, bn: u32, bk: u32 },
    /// Cooperative matrices, f16 products (`shaders/matmul_coop.wgsl`).
    Coop(CoopVariant),
}

/// Every f32 (SIMT) variant autotuning considers (those that fit the adapter's limits); the coop
/// ones are `kernels::matmul_coop::COOP_VARIANTS`, and [`all_variants`] is both.
pub const MATMUL_VARIANTS: &[MatmulVariant] = &[
    MatmulVariant::Naive,
    MatmulVariant::Register { rx: 8, ry: 8, tm: 4, tn: 4 },
    MatmulVariant::Register { rx: 16, ry: 16, tm: 4, tn: 4 },
    MatmulVariant::Register { rx: 8, ry: 8, tm: 8, tn: 4 },
    MatmulVariant::Register { rx: 8, ry: 8, tm: 4, tn: 8 },
    MatmulVariant::Register { rx: 8, ry: 8, tm: 8, tn: 8 },
    MatmulVariant::Register { rx: 16, ry: 4, tm: 8, tn: 8 },
    MatmulVariant::Tiled { bm: 32, bn: 32, bk: 16 },
    MatmulVariant::Tiled { bm: 64, bn: 64, bk: 8 },
    MatmulVariant::Tiled { bm: 64, bn: 64, bk: 16 },
    MatmulVariant::Tiled { bm: 64, bn: 64, bk: 32 },
    MatmulVariant::Tiled { bm: 128, bn: 64, bk: 8 },
    MatmulVariant::Tiled { bm: 64, bn: 128, bk: 8 },
    MatmulVariant::Tiled8 { bm: 128, bn: 128, bk: 8 },
    MatmulVariant::Tiled8 { bm: 128, bn: 128, bk: 16 },
    MatmulVariant::Tiled8 { bm: 128, bn: 64, bk: 8 },
    MatmulVariant::Tiled8 { bm: 128, bn: 64, bk: 16 },
    MatmulVariant::Tiled8 { bm: 64, bn: 128, bk: 8 },
];

/// Every variant of the family, f32 and coop.
pub fn all_variants() -> impl Iterator<Item = MatmulVariant> {
    MATMUL_VARIANTS.iter().copied().chain(COOP_VARIANTS.iter().map(|&v| MatmulVariant::Coop(v)))
}

impl MatmulVariant {
    pub fn name(&self) -> String {
        match *self {
            MatmulVariant::Naive => "naive".into(),
            MatmulVariant::Register { rx, ry, tm, tn } => format!("register_{rx}x{ry}_t{tm}x{tn}"),
            MatmulVariant::Tiled { bm, bn, bk } => format!("tiled_{bm}x{bn}x{bk}"),
            MatmulVariant::Tiled8 { bm, bn, bk } => format!("tiled8_{bm}x{bn}x{bk}"),
            MatmulVariant::Coop(v) => v.name(),
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        all_variants().find(|v| v.name() == name)
    }

    pub fn kernel(&self) -> Kernel {
        match self {
            MatmulVariant::Naive => Kernel::MatmulNaive,
            MatmulVariant::Register { .. } => Kernel::MatmulRegister,
            MatmulVariant::Tiled { .. } => Kernel::MatmulTiled,
            MatmulVariant::Tiled8 { .. } => Kernel::MatmulTiled8,
            MatmulVariant::Coop(_) => Kernel::MatmulCoop,
        }
    }

    /// What the variant computes in: f32, or f16 inputs with f32 or f16 accumulation.
    pub fn precision(&self) -> MatmulPrecision {
        match self {
            MatmulVariant::Coop(v) => v.precision(),
            _ => MatmulPrecision::F32,
        }
    }

    /// Whether the adapter can run it (invocations per workgroup, workgroup memory; for coop
    /// variants the feature too, at whatever subgroup size they would be launched for).
    pub fn fits(&self, ctx: &GpuContext) -> bool {
        let limits = &ctx.limits;
        let (x, y, shared) = match *self {
            MatmulVariant::Naive => (16, 16, 0),
            MatmulVariant::Register { rx, ry, .. } => (rx, ry, 0),
            MatmulVariant::Tiled { bm, bn, bk } => (bn / 4, bm / 4, bk * (bm + bn) * 4),
            MatmulVariant::Tiled8 { bm, bn, bk } => {
                // Each invocation stages whole vec4s of both tiles, at most MAX_STAGE8 (4) each.
                let threads = (bm / 8) * (bn / 8);
                let share = |rows: u32| (bk * rows / 4).is_multiple_of(threads) && bk * rows / 4 / threads <= 4;
                if !(share(bm) && share(bn) && bk.is_multiple_of(4)) {
                    return false;
                }
                (bn / 8, bm / 8, 2 * bk * (bm + bn) * 4)
            }
            MatmulVariant::Coop(v) => return v.fits(ctx, matmul_coop::subgroup_size(ctx)),
        };
        x * y <= limits.max_compute_invocations_per_workgroup
            && x <= limits.max_compute_workgroup_size_x
            && y <= limits.max_compute_workgroup_size_y
            && shared <= limits.max_compute_workgroup_storage_size
    }

    /// Whether autotuning may pick it here: it fits, and a coop variant also has the tile size the
    /// adapter advertises, in use after the self-test (see `matmul_coop::coop_status`).
    pub fn usable(&self, ctx: &GpuContext) -> bool {
        match self {
            MatmulVariant::Coop(v) => match matmul_coop::coop_status(ctx) {
                CoopStatus::Available { tile, f16_accumulator, .. } => {
                    v.tile == *tile && (v.flush == 0 || *f16_accumulator) && self.fits(ctx)
                }
                CoopStatus::Unavailable(_) => false,
            },
            _ => self.fits(ctx),
        }
    }

    /// The variant used when autotuning is off, for a product accepting `precision` with operands
    /// stored as `operand`: workgroup-memory tiles on GPUs, the barrier-free register kernel on
    /// CPU drivers; the first usable coop variant when f16 is accepted and the adapter has them
    /// (required for f16 operands).
    pub fn default_for(ctx: &GpuContext, precision: MatmulPrecision, operand: DType) -> Result<Self> {
        if precision >= MatmulPrecision::F16 {
            let coop = COOP_VARIANTS
                .iter()
                .map(|&v| MatmulVariant::Coop(v))
                .find(|v| v.precision() == MatmulPrecision::F16 && v.usable(ctx));
            if let Some(v) = coop {
                return Ok(v);
            }
        }
        if operand == DType::F16 {
            return Err(no_coop_for_f16(ctx));
        }
        Ok(if ctx.is_cpu() { Self::CPU_DEFAULT } else { Self::GPU_DEFAULT })
    }

    /// The default on CPU drivers (lavapipe) and on GPUs, see [`MatmulVariant::default_for`].
    pub const CPU_DEFAULT: Self = MatmulVariant::Register { rx: 8, ry: 8, tm: 8, tn: 8 };
    pub const GPU_DEFAULT: Self = MatmulVariant::Tiled { bm: 64, bn: 64, bk: 16 };

    fn overrides(&self, g: &Gemm, aligned: bool) -> Overrides {
        let o = Overrides::new().flag("TRANS_A", g.trans_a).flag("TRANS_B", g.trans_b);
        match *self {
            MatmulVariant::Naive | MatmulVariant::Coop(_) => o,
            MatmulVariant::Register { rx, ry, tm, tn } => o
                .flag("ALIGNED", aligned)
                .set("RX", rx as f64)
                .set("RY", ry as f64)
                .set("TM", tm as f64)
                .set("TN", tn as f64),
            MatmulVariant::Tiled { bm, bn, bk } | MatmulVariant::Tiled8 { bm, bn, bk } => {
                o.flag("ALIGNED", aligned).set("BM", bm as f64).set("BN", bn as f64).set("BK", bk as f64)
            }
        }
    }

    fn workgroups(&self, m: usize, n: usize, batch: usize) -> [u32; 3] {
        let (tm, tn) = match *self {
            MatmulVariant::Naive => (16, 16),
            MatmulVariant::Register { rx, ry, tm, tn } => ((tm * ry) as usize, (tn * rx) as usize),
            MatmulVariant::Tiled { bm, bn, .. } | MatmulVariant::Tiled8 { bm, bn, .. } => (bm as usize, bn as usize),
            MatmulVariant::Coop(v) => (v.bm() as usize, v.bn() as usize),
        };
        [n.div_ceil(tn) as u32, m.div_ceil(tm) as u32, batch as u32]
    }
}

fn no_coop_for_f16(ctx: &GpuContext) -> Error {
    Error::Validation {
        context: "matmul".into(),
        message: format!(
            "f16 operands need the cooperative-matrix kernels, which this adapter does not use ({}); \
             keep the operands in f32",
            matmul_coop::coop_status(ctx).describe()
        ),
    }
}

/// How one product is launched: an f32 kernel, or a coop kernel for subgroups of a given size.
#[derive(Clone, Copy, Debug)]
enum Launch {
    Simt(MatmulVariant),
    Coop(CoopVariant, u32),
}

immediates! {
    /// Per-dispatch parameters; field order and sizes match `MatmulParams` in the shader.
    #[derive(Debug)]
    pub struct MatmulParams {
        m: u32,
        n: u32,
        k: u32,
        batch: u32,
        lda: u32,
        ldb: u32,
        ldc: u32,
        _pad0: u32,
        stride_a: u32,
        stride_b: u32,
        stride_c: u32,
        _pad1: u32,
        off_a: u32,
        off_b: u32,
        off_c: u32,
        _pad2: u32,
        alpha: f32,
        beta: f32,
        _pad3: u32,
        _pad4: u32,
    }
}

/// A sub-problem: batch range × M range × N range × K range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub b: (usize, usize),
    pub m: (usize, usize),
    pub n: (usize, usize),
    pub k: (usize, usize),
}

/// Halve a chunk extent, keeping it a multiple of 4 while it is large (tile and vec4 friendly).
fn halve(x: usize) -> usize {
    let h = x.div_ceil(2);
    if h > 8 {
        h.div_ceil(4) * 4
    } else {
        h
    }
}

/// Split `g` so that every operand window of every chunk fits `limit` bytes (allowing `align`
/// bytes of start alignment and 16 of end rounding) and the batch fits the grid's z dimension.
/// Chunks along K accumulate: the launcher uses β for the first K chunk and 1 after it.
pub fn plan_chunks(g: &Gemm, limit: u64, align: u64, max_batch: usize) -> Result<Vec<Chunk>> {
    let slack = window_slack(align);
    let fits = |elems: usize| elems as u64 * 4 + slack <= limit;
    let span = |batch: usize, stride: usize, rows: usize, ld: usize, cols: usize| {
        (batch - 1) * stride + (rows - 1) * ld + cols
    };
    let (mut bc, mut mc, mut nc, mut kc) = (g.batch.min(max_batch), g.m, g.n, g.k);
    loop {
        let (ar, ac) = if g.trans_a { (kc, mc) } else { (mc, kc) };
        let (br, bcol) = if g.trans_b { (nc, kc) } else { (kc, nc) };
        let sa = span(bc, g.stride_a, ar, g.lda, ac);
        let sb = span(bc, g.stride_b, br, g.ldb, bcol);
        let sc = span(bc, g.stride_c, mc, g.ldc, nc);
        if fits(sa) && fits(sb) && fits(sc) {
            break;
        }
        if bc > 1 {
            bc = bc.div_ceil(2);
            continue;
        }
        // Shrink the stored-row dimension of the operand that overflows first: it divides the
        // span fastest. K is split last because K chunks cost an extra read-modify-write of C.
        let before = (mc, nc, kc);
        if !fits(sa) {
            if g.trans_a {
                if kc > 1 {
                    kc = halve(kc)
                } else {
                    mc = halve(mc)
                }
            } else if mc > 1 {
                mc = halve(mc)
            } else {
                kc = halve(kc)
            }
        } else if !fits(sb) {
            if g.trans_b {
                if nc > 1 {
                    nc = halve(nc)
                } else {
                    kc = halve(kc)
                }
            } else if kc > 1 {
                kc = halve(kc)
            } else {
                nc = halve(nc)
            }
        } else if mc > 1 {
            mc = halve(mc)
        } else {
            nc = halve(nc)
        }
        if before == (mc, nc, kc) {
            return Err(Error::Shape {
                op: "matmul",
                message: format!("cannot split {g:?} to fit a {limit}-byte binding (a single row exceeds it)"),
            });
        }
    }
    let ranges =
        |total: usize, step: usize| (0..total.div_ceil(step)).map(move |i| (i * step, ((i + 1) * step).min(total)));
    let mut chunks = Vec::new();
    for b in ranges(g.batch, bc) {
        for m in ranges(g.m, mc) {
            for n in ranges(g.n, nc) {
                for k in ranges(g.k, kc) {
                    chunks.push(Chunk { b, m, n, k });
                }
            }
        }
    }
    Ok(chunks)
}

/// C = α·op(A)·op(B) + β·C with the variant autotuning (or the adapter default) picks among those
/// whose precision `g.precision` accepts.
pub fn matmul(
    s: &mut Stream<'_>,
    c: &GpuTensor,
    a: &GpuTensor,
    b: &GpuTensor,
    g: &Gemm,
    alpha: f32,
    beta: f32,
) -> Result<()> {
    g.check(a.len(), b.len(), c.len())?;
    let operand = operand_dtype(g, c, a, b)?;
    let variant = choose_variant(s.ctx, g, operand)?;
    matmul_variant(s, variant, c, a, b, g, alpha, beta)
}

/// As [`matmul`], with an explicit kernel variant (validation and benchmarks use every one). A
/// coop variant is launched for the subgroup size its self-test chose (or the adapter's, where
/// coop is not in use: validation of gated-off and unadvertised configurations).
#[allow(clippy::too_many_arguments)]
pub fn matmul_variant(
    s: &mut Stream<'_>,
    variant: MatmulVariant,
    c: &GpuTensor,
    a: &GpuTensor,
    b: &GpuTensor,
    g: &Gemm,
    alpha: f32,
    beta: f32,
) -> Result<()> {
    let launch = match variant {
        MatmulVariant::Coop(v) => Launch::Coop(v, matmul_coop::subgroup_size(s.ctx)),
        v => Launch::Simt(v),
    };
    record(s, launch, c, a, b, g, alpha, beta)
}

/// A coop variant launched for subgroups of `sg` lanes, bypassing the coop status (the self-test
/// that decides the status uses it).
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_coop(
    s: &mut Stream<'_>,
    v: CoopVariant,
    sg: u32,
    c: &GpuTensor,
    a: &GpuTensor,
    b: &GpuTensor,
    g: &Gemm,
    alpha: f32,
    beta: f32,
) -> Result<()> {
    record(s, Launch::Coop(v, sg), c, a, b, g, alpha, beta)
}

/// The operands' storage as variant choice sees it: f16 when either of A and B is stored in f16
/// (only coop variants read f16, and a mixed product is tuned and cached with the f16 ones: the
/// staging of an f32 operand costs the same conversion either way), f32 when both are. C is
/// always f32; f16 storage implies f16 inputs.
fn operand_dtype(g: &Gemm, c: &GpuTensor, a: &GpuTensor, b: &GpuTensor) -> Result<DType> {
    let bad = |message: String| Err(Error::Shape { op: "matmul", message });
    if c.dtype() != DType::F32 {
        return bad("C must be f32".into());
    }
    let f16 = a.dtype() == DType::F16 || b.dtype() == DType::F16;
    if f16 && g.precision == MatmulPrecision::F32 {
        return bad("f16 operands given to a product that asks for f32 precision; set Gemm::precision to f16".into());
    }
    Ok(if f16 { DType::F16 } else { DType::F32 })
}

#[allow(clippy::too_many_arguments)]
fn record(
    s: &mut Stream<'_>,
    launch: Launch,
    c: &GpuTensor,
    a: &GpuTensor,
    b: &GpuTensor,
    g: &Gemm,
    alpha: f32,
    beta: f32,
) -> Result<()> {
    g.check(a.len(), b.len(), c.len())?;
    let operand = operand_dtype(g, c, a, b)?;
    let ctx = s.ctx;
    let (name, fits) = match launch {
        Launch::Simt(v) => (v.name(), v.fits(ctx)),
        Launch::Coop(v, sg) => (v.name(), v.fits(ctx, sg)),
    };
    if !fits {
        let why = match launch {
            Launch::Coop(..) if !ctx.features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) => {
                "cooperative matrices are not available on this adapter"
            }
            _ => "it exceeds this adapter's limits",
        };
        return Err(Error::Shape { op: "matmul", message: format!("variant {name} cannot run: {why}") });
    }
    if let Launch::Simt(_) = launch {
        if operand == DType::F16 {
            return Err(Error::Shape {
                op: "matmul",
                message: format!("variant {name} reads f32 operands; f16 operands need a coop variant"),
            });
        }
    }
    let align = ctx.storage_align();
    let max_batch = ctx.limits.max_compute_workgroups_per_dimension as usize;
    // Chunks are planned as if every element took 4 bytes: exact for f32, conservative for f16.
    let chunks = plan_chunks(g, ctx.max_binding_bytes(), align, max_batch)?;
    for ch in chunks {
        let (bc, mc, nc, kc) = (ch.b.1 - ch.b.0, ch.m.1 - ch.m.0, ch.n.1 - ch.n.0, ch.k.1 - ch.k.0);
        // Flat element index where each operand's chunk starts, and one past where it ends.
        let a_lo = ch.b.0 * g.stride_a + if g.trans_a { ch.k.0 * g.lda + ch.m.0 } else { ch.m.0 * g.lda + ch.k.0 };
        let (ar, ac) = if g.trans_a { (kc, mc) } else { (mc, kc) };
        let a_hi = a_lo + (bc - 1) * g.stride_a + (ar - 1) * g.lda + ac;
        let b_lo = ch.b.0 * g.stride_b + if g.trans_b { ch.n.0 * g.ldb + ch.k.0 } else { ch.k.0 * g.ldb + ch.n.0 };
        let (br, bcol) = if g.trans_b { (nc, kc) } else { (kc, nc) };
        let b_hi = b_lo + (bc - 1) * g.stride_b + (br - 1) * g.ldb + bcol;
        let c_lo = ch.b.0 * g.stride_c + ch.m.0 * g.ldc + ch.n.0;
        let c_hi = c_lo + (bc - 1) * g.stride_c + (mc - 1) * g.ldc + nc;
        let wa = ctx.window(a, a_lo, a_hi)?;
        let wb = ctx.window(b, b_lo, b_hi)?;
        let wc = ctx.window(c, c_lo, c_hi)?;
        // vec4 loads are exact when every row of A and B starts on a multiple of 4 elements.
        let aligned = g.rows_vec4_aligned()
            && (bc == 1 || (g.stride_a.is_multiple_of(4) && g.stride_b.is_multiple_of(4)))
            && wa.elem_offset.is_multiple_of(4)
            && wb.elem_offset.is_multiple_of(4);
        let params = MatmulParams {
            m: mc as u32,
            n: nc as u32,
            k: kc as u32,
            batch: bc as u32,
            lda: g.lda as u32,
            ldb: g.ldb as u32,
            ldc: g.ldc as u32,
            stride_a: g.stride_a as u32,
            stride_b: g.stride_b as u32,
            stride_c: g.stride_c as u32,
            off_a: wa.elem_offset,
            off_b: wb.elem_offset,
            off_c: wc.elem_offset,
            alpha,
            beta: if ch.k.0 == 0 { beta } else { 1.0 },
            ..bytemuck::Zeroable::zeroed()
        };
        let (kernel, pipeline, grid) = match launch {
            Launch::Simt(v) => {
                (v.kernel(), ctx.pipeline(v.kernel(), &v.overrides(g, aligned))?, v.workgroups(mc, nc, bc))
            }
            Launch::Coop(v, sg) => (
                Kernel::MatmulCoop,
                ctx.pipeline_specialized(
                    Kernel::MatmulCoop,
                    &matmul_coop::specialization(v.tile, a.dtype(), b.dtype()),
                    &v.overrides(g, sg),
                )?,
                v.workgroups(mc, nc, bc),
            ),
        };
        let d = ctx.dispatch(kernel, pipeline, &[wa, wb, wc], &params, grid)?;
        s.push(d);
    }
    Ok(())
}

// ---- autotuning --------------------------------------------------------------------------------

/// Per-dimension caps of the problem a class is timed on, and so of the dimensions its key
/// distinguishes: two products that differ only above a cap would be timed on the same problem,
/// so they share one choice instead of being timed twice. On a GPU every dimension goes up to
/// 1024 (a 1024³ product takes a fraction of a millisecond there) and the batch to 8. On a CPU
/// driver the timing runs are what tuning costs, so K stops at 256 and the batch at 4: a shorter
/// reduction changes each workgroup's loop count, not how many workgroups share the cores, which
/// is what separates the tile shapes there (so M and N keep the 1024 cap).
#[derive(Clone, Copy, Debug)]
struct Caps {
    mn: usize,
    k: usize,
    batch: usize,
}

fn caps(ctx: &GpuContext) -> Caps {
    if ctx.is_cpu() {
        Caps { mn: 1024, k: 256, batch: 4 }
    } else {
        Caps { mn: 1024, k: 1024, batch: 8 }
    }
}

/// Power-of-two bucket of a dimension, 4 (≤ 16) and up.
fn bucket(x: usize) -> u32 {
    (x.max(16) as f64).log2().ceil() as u32
}

/// The part of a class key shared by every class of one layout, accepted precision and operand
/// storage: the classes a new one of the same group may take its short list from. Both shaders'
/// fingerprints are part of it, so editing a kernel invalidates old choices.
pub fn class_group(g: &Gemm, operand: DType) -> String {
    let fingerprint = crate::util::fnv1a(Shader::Matmul.source().as_bytes())
        ^ crate::util::fnv1a(Shader::MatmulCoop.source().as_bytes()).rotate_left(1);
    format!(
        "matmul/{:016x}/{}/{}{}/",
        fingerprint,
        g.layout(),
        g.precision.name(),
        if operand == DType::F16 { "-f16-storage" } else { "" },
    )
}

/// Shape classes share a choice: the group ([`class_group`]), alignment, batched or not, and each
/// of M, N, K by the power-of-two bucket of its capped value (see `Caps`).
pub fn shape_class(ctx: &GpuContext, g: &Gemm, operand: DType) -> String {
    let c = caps(ctx);
    format!(
        "{}{}/{}/m{}n{}k{}",
        class_group(g, operand),
        if g.rows_vec4_aligned() { "vec4" } else { "scalar" },
        if g.batch > 1 { "batched" } else { "single" },
        bucket(g.m.min(c.mn)),
        bucket(g.n.min(c.mn)),
        bucket(g.k.min(c.k)),
    )
}

/// Whether every product of the class is too small to time: m·n·k ≤ 2^18 by the bounds of its
/// buckets (0.5 MFLOP per matrix, e.g. Muon's 4×12 scalars' matrices or a 64×64×64 tile). On any
/// adapter such a dispatch costs about one launch whichever variant runs it, so timings rank
/// noise; the family's default is checked and taken.
fn too_small_to_time(g: &Gemm) -> bool {
    bucket(g.m) + bucket(g.n) + bucket(g.k) <= 18
}

/// The candidates for a product: variants that can run here (coop ones only where the adapter
/// uses them), no less precise than `g.precision` asks, and reading `operand` storage. A product
/// that accepts f16 runs on the f16 kernels wherever the adapter has them, even where an f32
/// kernel would be faster (on CPU drivers it often is): `train.precision = "f16"` means the
/// tensor-core path, so what is measured and validated in f16 is what trains in f16. The f32
/// kernels stand in only where no f16 kernel can run.
pub fn candidates(ctx: &GpuContext, g: &Gemm, operand: DType) -> Vec<MatmulVariant> {
    let admitted: Vec<MatmulVariant> = all_variants()
        .filter(|v| v.precision() <= g.precision)
        .filter(|v| operand == DType::F32 || matches!(v, MatmulVariant::Coop(_)))
        .filter(|v| v.usable(ctx))
        .collect();
    if g.precision >= MatmulPrecision::F16 && admitted.iter().any(|v| v.precision() >= MatmulPrecision::F16) {
        return admitted.into_iter().filter(|v| v.precision() >= MatmulPrecision::F16).collect();
    }
    admitted
}

/// The variant for this product: the cached choice, a fresh tuning run, or the adapter default.
/// `WGPT_MATMUL_VARIANT` forces one for every product whose precision admits it (so forcing a
/// coop variant never changes the f32 products, e.g. Muon's). Once the context's tuning budget is
/// spent, a new class gets the default without it being recorded, so a later run still tunes it.
pub fn choose_variant(ctx: &GpuContext, g: &Gemm, operand: DType) -> Result<MatmulVariant> {
    if let Some(forced) = ctx.forced_matmul_variant() {
        let storage_ok = operand == DType::F32 || matches!(forced, MatmulVariant::Coop(_));
        if forced.precision() <= g.precision && storage_ok {
            return Ok(forced);
        }
    }
    if ctx.autotune.mode() == AutotuneMode::Off {
        return MatmulVariant::default_for(ctx, g.precision, operand);
    }
    let class = shape_class(ctx, g, operand);
    if let Some(choice) = ctx.autotune.lookup(&class) {
        if let Some(v) = MatmulVariant::parse(&choice.variant).filter(|v| candidates(ctx, g, operand).contains(v)) {
            return Ok(v);
        }
    }
    if !ctx.autotune.may_tune() {
        return MatmulVariant::default_for(ctx, g.precision, operand);
    }
    ctx.autotune.announce();
    let t0 = Instant::now();
    let tuned = tune(ctx, g, operand);
    let took = t0.elapsed();
    ctx.autotune.charge(took);
    let tuned = tuned?;
    let rate = match tuned.choice.measured.first() {
        Some((_, r)) => format!("{r:.1} GFLOP/s, {} timed", tuned.choice.measured.len()),
        None => "too small to time: the adapter default, checked".into(),
    };
    ctx.autotune.say(&format!(
        "  tuned matmul {}: {} ({rate}) in {:.1} s",
        describe(g, operand),
        tuned.choice.variant,
        took.as_secs_f64()
    ));
    log::debug!("autotune {class}: {:?} (short list: {})", tuned.choice, tuned.short_list);
    ctx.autotune.record(&class, tuned.choice);
    Ok(tuned.variant)
}

/// `nt 2048x768x768 f32` (M×N×K), with the batch and f16 storage when there are any.
fn describe(g: &Gemm, operand: DType) -> String {
    let mut s = format!("{} {}x{}x{}", g.layout().to_ascii_lowercase(), g.m, g.n, g.k);
    if g.batch > 1 {
        s += &format!(" (batch {})", g.batch);
    }
    s += " ";
    s += g.precision.name();
    if operand == DType::F16 {
        s += " (f16 storage)";
    }
    s
}

/// The tolerance a variant is held to against the f64 reference of its precision (f16 variants:
/// on f16-rounded inputs), at reduction length `k`.
pub fn variant_tolerance(v: MatmulVariant, k: usize) -> crate::validate::Tol {
    match v {
        MatmulVariant::Coop(c) => crate::validate::matmul_coop_tolerance(k, c.f16_block()),
        _ => crate::validate::matmul_tolerance(k),
    }
}

/// What [`tune`] decided, and how.
pub struct Tuned {
    pub variant: MatmulVariant,
    pub choice: Choice,
    /// Whether the candidates came from the group's earlier choices (see [`tune`]).
    pub short_list: bool,
}

/// The short list for a new class: from every earlier class of the same group on this adapter,
/// its three fastest variants and any other that stayed within 1.5× of its winner (the ranking
/// rounds' cut); most wins first, then by rate relative to each winner. A variant that fell that
/// far behind on every neighbouring shape timed so far (same kernel family, layout and
/// precision) is not what wins this one, while every one that came close is re-timed here; the
/// top three are kept whatever their margin, so one noisy measurement on a loaded machine
/// cannot shrink the list to a single variant. A group with no timed class yet takes its list
/// from the other layouts' groups (same precision and storage); `None` when none of those has
/// one either, and then every candidate is timed: once per adapter, not once per layout.
/// How many of each earlier class's fastest variants a short list keeps regardless of margin.
pub const SHORT_LIST_TOP: usize = 3;

fn short_list(ctx: &GpuContext, g: &Gemm, operand: DType, all: &[MatmulVariant]) -> Option<Vec<MatmulVariant>> {
    let mut earlier = ctx.autotune.choices_with_prefix(&class_group(g, operand));
    if earlier.is_empty() {
        // A layout's first class: its siblings of the other layouts (same shaders, precision and
        // storage) rank the tile shapes alike, since on a given adapter what separates them is
        // occupancy and register pressure, which transposing an operand's reads barely moves.
        earlier = [(false, false), (false, true), (true, false), (true, true)]
            .into_iter()
            .flat_map(|(trans_a, trans_b)| {
                ctx.autotune.choices_with_prefix(&class_group(&Gemm { trans_a, trans_b, ..*g }, operand))
            })
            .collect();
    }
    let mut score: Vec<(MatmulVariant, usize, f64)> = Vec::new();
    for (_, c) in earlier {
        let Some(best) = c.measured.first().map(|m| m.1).filter(|b| *b > 0.0) else { continue };
        for (rank, (name, rate)) in c.measured.iter().enumerate() {
            let Some(v) = MatmulVariant::parse(name).filter(|v| all.contains(v)) else { continue };
            if rank >= SHORT_LIST_TOP && rate * 1.5 < best {
                continue;
            }
            let i = match score.iter().position(|s| s.0 == v) {
                Some(i) => i,
                None => {
                    score.push((v, 0, 0.0));
                    score.len() - 1
                }
            };
            score[i].1 += usize::from(*name == c.variant);
            score[i].2 += rate / best;
        }
    }
    if score.is_empty() {
        return None;
    }
    score.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.total_cmp(&a.2)));
    Some(score.into_iter().map(|s| s.0).collect())
}

/// Check candidates against the CPU reference on a small ragged problem of the same layout, then
/// time the survivors on the class's problem (dimensions capped, see `Caps`) and rank them.
///
/// Which candidates: for a class too small to time, only the adapter default; for a class whose
/// group (layout, precision, storage), or failing that a sibling group of another layout,
/// already has timed classes on this adapter, the short list those give (`short_list`);
/// otherwise every candidate. The naive kernel is the baseline the
/// others improve on and is tried only if nothing else passes its check; likewise the rest of
/// the candidates are checked only if every one of a short list fails.
///
/// Timing: one untimed warm-up run; one screening run per candidate, after which any more than 2×
/// slower than the best so far is out (its rate is kept); then two more rounds for those left,
/// dropping any more than 1.5× behind the leader's median after each round (as CubeCL does), so a
/// slow kernel costs one run. A variant that accumulates in f16 must also pass its error check at
/// the class's K (capped at 1024), against the reference on the same rounded inputs.
pub fn tune(ctx: &GpuContext, g: &Gemm, operand: DType) -> Result<Tuned> {
    let all = candidates(ctx, g, operand);
    if all.is_empty() {
        // Only f16 operands without coop kernels have none; the default's error says why.
        return Err(match MatmulVariant::default_for(ctx, g.precision, operand) {
            Err(e) => e,
            Ok(_) => Error::Validation {
                context: "matmul autotune".into(),
                message: "no kernel variant can run this product on this adapter".into(),
            },
        });
    }
    let default = MatmulVariant::default_for(ctx, g.precision, operand).ok().filter(|d| all.contains(d));
    let tiny = too_small_to_time(g);
    let seeded = if tiny { None } else { short_list(ctx, g, operand, &all) };
    let first: Vec<MatmulVariant> = if tiny {
        default.into_iter().collect()
    } else if let Some(list) = &seeded {
        list.clone()
    } else {
        // Every candidate is screened once, so the order only decides which ones the 2× cut
        // spares the later rounds; the default goes first so its rate is always on record.
        default.into_iter().chain(all.iter().copied().filter(|v| Some(*v) != default)).collect()
    };
    let first: Vec<MatmulVariant> = first.into_iter().filter(|v| *v != MatmulVariant::Naive).collect();
    let rest: Vec<MatmulVariant> =
        all.iter().copied().filter(|v| !first.contains(v) && *v != MatmulVariant::Naive).collect();
    let last: Vec<MatmulVariant> = all.iter().copied().filter(|v| *v == MatmulVariant::Naive).collect();

    let aligned = g.rows_vec4_aligned();
    let mut rng = Rng::new(0x5EED_0F7E57);
    let upload = |label: &str, x: &[f32]| match operand {
        DType::F32 => ctx.upload(label, x),
        DType::F16 => ctx.upload_f16(label, x),
    };
    // The reference of each precision: on the inputs as given, or rounded to f16.
    let references = |g: &Gemm, a: &[f32], b: &[f32]| {
        let mut exact = vec![0.0f32; g.c_len()];
        crate::reference::matmul::matmul(&mut exact, a, b, &Gemm { precision: MatmulPrecision::F32, ..*g }, 1.0, 0.0);
        let mut rounded = vec![0.0f32; g.c_len()];
        crate::reference::matmul::matmul(&mut rounded, a, b, &Gemm { precision: MatmulPrecision::F16, ..*g }, 1.0, 0.0);
        (exact, rounded)
    };
    let run = |v: MatmulVariant, c: &GpuTensor, a: &GpuTensor, b: &GpuTensor, g: &Gemm| -> Result<Vec<f32>> {
        ctx.write(c, &vec![f32::NAN; g.c_len()])?;
        let mut s = Stream::new(ctx);
        matmul_variant(&mut s, v, c, a, b, g, 1.0, 0.0)?;
        s.run()?;
        ctx.read(c)
    };
    let check = |v: MatmulVariant, got: &[f32], refs: &(Vec<f32>, Vec<f32>), k: usize| {
        let want = if v.precision() == MatmulPrecision::F32 && operand == DType::F32 { &refs.0 } else { &refs.1 };
        crate::validate::compare(got, want, variant_tolerance(v, k)).map(|_| ())
    };
    // Inputs scaled as a linear layer's (A in [−1, 1], B by 1/√K), as the tolerances assume.
    let mut inputs = |p: &Gemm| {
        let s = 1.0 / (p.k as f32).sqrt();
        (rng.vec_uniform(p.a_len(), -1.0, 1.0), rng.vec_uniform(p.b_len(), -s, s))
    };

    // Correctness probe: ragged in every dimension relative to every tile size.
    let probe = {
        let (m, n, k) = if aligned { (68, 44, 36) } else { (67, 45, 35) };
        Gemm::new(g.trans_a, g.trans_b, m, n, k).batched(if g.batch > 1 { 2 } else { 1 }).with_precision(g.precision)
    };
    let (pa, pb) = inputs(&probe);
    let refs = references(&probe, &pa, &pb);
    let (ta, tb, tc) = (upload("probe A", &pa)?, upload("probe B", &pb)?, ctx.tensor("probe C", probe.c_len())?);
    let mut passed = Vec::new();
    for stage in [&first, &rest, &last] {
        for &v in stage {
            let t = Instant::now();
            let got = run(v, &tc, &ta, &tb, &probe)?;
            match check(v, &got, &refs, probe.k) {
                Ok(()) => passed.push(v),
                Err(report) => {
                    log::warn!("autotune: variant {} fails its reference check, excluded: {report}", v.name())
                }
            }
            // The first run of a variant includes building its pipeline: that is most of this.
            log::debug!("autotune: {} checked in {:.0} ms", v.name(), t.elapsed().as_secs_f64() * 1e3);
        }
        if !passed.is_empty() {
            break;
        }
    }

    // f16 accumulation: also held to its tolerance at the class's own K (capped), on a problem
    // narrow in M and N, since the error it guards against grows with K, not with M or N.
    if passed.iter().any(|v| v.precision() == MatmulPrecision::F16Acc) {
        let k = g.k.min(1024);
        let (m, n, k) = if aligned { (64, 64, k) } else { (63, 65, k | 1) };
        let p = Gemm::new(g.trans_a, g.trans_b, m, n, k).with_precision(g.precision);
        let (a, b) = inputs(&p);
        let refs = references(&p, &a, &b);
        let (ta, tb, tc) = (upload("f16acc A", &a)?, upload("f16acc B", &b)?, ctx.tensor("f16acc C", p.c_len())?);
        let mut kept = Vec::new();
        for v in passed {
            if v.precision() == MatmulPrecision::F16Acc {
                if let Err(report) = check(v, &run(v, &tc, &ta, &tb, &p)?, &refs, p.k) {
                    log::warn!(
                        "autotune: {} fails its f16-accumulation check at K = {}, excluded: {report}",
                        v.name(),
                        p.k
                    );
                    continue;
                }
            }
            kept.push(v);
        }
        passed = kept;
    }
    if passed.is_empty() {
        return Err(Error::Validation {
            context: "matmul autotune".into(),
            message: "no variant passed its reference check".into(),
        });
    }
    // A tiny class whose default passed: nothing to rank. (Had the default failed, the other
    // candidates passed instead and are timed like any class's.)
    if tiny && passed.len() == 1 && Some(passed[0]) == default {
        let v = passed[0];
        return Ok(Tuned { variant: v, choice: Choice { variant: v.name(), measured: Vec::new() }, short_list: false });
    }

    // Timing problem: the class's shape with each dimension capped; a ragged leading dimension
    // stays ragged.
    let c = caps(ctx);
    let mut t = Gemm::new(g.trans_a, g.trans_b, g.m.min(c.mn), g.n.min(c.mn), g.k.min(c.k))
        .batched(g.batch.min(c.batch))
        .with_precision(g.precision);
    if !aligned {
        t = Gemm::new(g.trans_a, g.trans_b, t.m | 1, t.n | 1, t.k | 1).batched(t.batch).with_precision(g.precision);
    }
    let (a_host, b_host) = inputs(&t);
    let ta = upload("tune A", &a_host)?;
    let tb = upload("tune B", &b_host)?;
    let tc = ctx.tensor("tune C", t.c_len())?;
    let measure = |v: MatmulVariant| -> Result<f64> {
        let mut s = Stream::new(ctx);
        matmul_variant(&mut s, v, &tc, &ta, &tb, &t, 1.0, 0.0)?;
        let secs = ctx.time(s.dispatches(), 1)?.as_secs_f64();
        Ok(t.flops() / secs / 1e9)
    };
    // One warm-up for the class (first touch of the buffers); each variant's pipeline was built
    // and run by its check.
    measure(passed[0])?;
    let mut samples: Vec<(MatmulVariant, Vec<f64>)> = Vec::new();
    let mut dropped: Vec<(String, f64)> = Vec::new();
    let mut best = 0.0f64;
    for &v in &passed {
        let r = measure(v)?;
        log::debug!("autotune: {} screened at {r:.2} GFLOP/s", v.name());
        if r * 2.0 < best {
            dropped.push((v.name(), r));
            continue;
        }
        best = best.max(r);
        samples.push((v, vec![r]));
    }
    samples.retain(|(v, xs)| {
        let keep = xs[0] * 2.0 >= best;
        if !keep {
            dropped.push((v.name(), xs[0]));
        }
        keep
    });
    for _round in 0..2 {
        if samples.len() < 2 {
            break;
        }
        for (v, xs) in samples.iter_mut() {
            xs.push(measure(*v)?);
        }
        let lead = samples.iter().map(|(_, xs)| median(xs)).fold(0.0, f64::max);
        samples.retain(|(v, xs)| {
            let keep = median(xs) * 1.5 >= lead;
            if !keep {
                dropped.push((v.name(), median(xs)));
            }
            keep
        });
    }
    // Survivors by their median, the others by the samples they were dropped on: all below the
    // leader when they were dropped, so the best rate is a survivor's except through noise.
    let mut measured: Vec<(String, f64)> = samples.iter().map(|(v, xs)| (v.name(), median(xs))).collect();
    measured.extend(dropped);
    measured.sort_by(|x, y| y.1.total_cmp(&x.1));
    let winner = MatmulVariant::parse(&measured[0].0).expect("measured variants are in the table");
    Ok(Tuned { variant: winner, choice: Choice { variant: winner.name(), measured }, short_list: seeded.is_some() })
}

pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    v[v.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunks tile the (batch, M, N, K) box exactly once, and every operand window of every chunk
    /// fits the limit, for every layout and for limits from generous to tiny.
    #[test]
    fn chunk_plan_covers_everything_within_the_limit() {
        let mut rng = Rng::new(3);
        for _ in 0..300 {
            let r = |rng: &mut Rng, hi: usize| 1 + (rng.next_u64() as usize % hi);
            let g = Gemm::new(
                rng.next_u64() & 1 == 1,
                rng.next_u64() & 1 == 1,
                r(&mut rng, 300),
                r(&mut rng, 300),
                r(&mut rng, 300),
            )
            .batched(r(&mut rng, 4));
            let limit = [1u64 << 30, 64 << 10, 8 << 10, 2 << 10][rng.next_u64() as usize % 4];
            let chunks = plan_chunks(&g, limit, 256, 65535).unwrap();
            let mut volume = 0usize;
            for c in &chunks {
                let (bc, mc, nc, kc) = (c.b.1 - c.b.0, c.m.1 - c.m.0, c.n.1 - c.n.0, c.k.1 - c.k.0);
                assert!(bc > 0 && mc > 0 && nc > 0 && kc > 0);
                volume += bc * mc * nc * kc;
                let (ar, ac) = if g.trans_a { (kc, mc) } else { (mc, kc) };
                let (br, bcol) = if g.trans_b { (nc, kc) } else { (kc, nc) };
                let spans = [
                    (bc - 1) * g.stride_a + (ar - 1) * g.lda + ac,
                    (bc - 1) * g.stride_b + (br - 1) * g.ldb + bcol,
                    (bc - 1) * g.stride_c + (mc - 1) * g.ldc + nc,
                ];
                for s in spans {
                    assert!(s as u64 * 4 + window_slack(256) <= limit, "{g:?} limit {limit}: span {s}");
                }
            }
            assert_eq!(volume, g.batch * g.m * g.n * g.k, "{g:?}");
            // Ranges are disjoint because they are a grid; spot-check ordering of K chunks.
            assert!(chunks.windows(2).all(|w| w[0] != w[1]));
        }
    }

    /// The validation suite's long-K chunked case (24×24×2100 under its 64 KiB context) splits
    /// every layout, as its comment says: nt into 6-row windows of M and N with K whole, nn into
    /// 6-row windows of M times four K chunks, tn into four K chunks; the last K chunk is ragged.
    #[test]
    fn the_long_k_validation_case_splits_every_layout() {
        let limit = crate::validate::suite::SuiteOptions::new(0).chunk_binding_bytes;
        let plan = |ta, tb| {
            let chunks = plan_chunks(&Gemm::new(ta, tb, 24, 24, 2100), limit, 256, 65535).unwrap();
            let distinct = |f: &dyn Fn(&Chunk) -> (usize, usize)| {
                chunks.iter().map(f).collect::<std::collections::BTreeSet<_>>().into_iter().collect::<Vec<_>>()
            };
            (distinct(&|c| c.m).len(), distinct(&|c| c.n).len(), distinct(&|c| c.k), chunks.len())
        };
        let k4 = vec![(0, 528), (528, 1056), (1056, 1584), (1584, 2100)];
        assert_eq!(plan(false, true), (4, 4, vec![(0, 2100)], 16), "nt");
        assert_eq!(plan(false, false), (4, 1, k4.clone(), 16), "nn");
        assert_eq!(plan(true, false), (1, 1, k4, 4), "tn");
    }

    #[test]
    fn shapes_are_checked() {
        let g = Gemm::nt(4, 5, 6);
        assert_eq!((g.a_len(), g.b_len(), g.c_len()), (24, 30, 20));
        assert!(g.check(24, 30, 20).is_ok());
        assert!(g.check(23, 30, 20).is_err());
        let tn = Gemm::tn(4, 5, 6).batched(3);
        assert_eq!(tn.a_len(), 2 * 24 + 5 * 4 + 4);
        assert_eq!(MatmulVariant::parse("tiled_64x64x16"), Some(MatmulVariant::Tiled { bm: 64, bn: 64, bk: 16 }));
        assert!(all_variants().all(|v| MatmulVariant::parse(&v.name()) == Some(v)));
        // Names are unique, so a cached choice means one kernel.
        let names: std::collections::BTreeSet<String> = all_variants().map(|v| v.name()).collect();
        assert_eq!(names.len(), all_variants().count());
    }
}
