//! Launchers for `shaders/matmul.wgsl`: C = α·op(A)·op(B) + β·C, f32, batched.
//!
//! [`matmul`] mirrors `reference::matmul::matmul` name for name and argument for argument (the
//! [`Stream`] first). It checks the shapes, splits the problem into chunks whose operands each fit
//! one storage binding, picks a kernel variant (autotuned per adapter and shape class, see
//! `gpu::autotune`) and records one dispatch per chunk.

use crate::error::{Error, Result};
use crate::gpu::autotune::{AutotuneMode, Choice};
use crate::gpu::tensor::window_slack;
use crate::gpu::{GpuContext, GpuTensor, Kernel, Overrides, Shader};
use crate::kernels::Stream;
use crate::util::Rng;

/// Shape and memory layout of one (batched) product. All sizes in elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gemm {
    /// A is stored K×M (read transposed) instead of M×K.
    pub trans_a: bool,
    /// B is stored N×K (read transposed) instead of K×N.
    pub trans_b: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub batch: usize,
    /// Row pitch of A, B and C as stored.
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
    /// Elements between consecutive matrices of a batch.
    pub stride_a: usize,
    pub stride_b: usize,
    pub stride_c: usize,
}

impl Gemm {
    /// A dense, unbatched product with the given layout.
    pub fn new(trans_a: bool, trans_b: bool, m: usize, n: usize, k: usize) -> Self {
        let lda = if trans_a { m } else { k };
        let ldb = if trans_b { k } else { n };
        Gemm {
            trans_a,
            trans_b,
            m,
            n,
            k,
            batch: 1,
            lda,
            ldb,
            ldc: n,
            stride_a: m * k,
            stride_b: k * n,
            stride_c: m * n,
        }
    }

    /// Linear-layer forward: Y (M×N) = X (M×K) · Wᵀ, W stored N×K as PyTorch keeps it.
    pub fn nt(m: usize, n: usize, k: usize) -> Self {
        Self::new(false, true, m, n, k)
    }

    /// Linear-layer input gradient: dX (M×N) = dY (M×K) · W (K×N).
    pub fn nn(m: usize, n: usize, k: usize) -> Self {
        Self::new(false, false, m, n, k)
    }

    /// Linear-layer weight gradient: dW (M×N) = dYᵀ · X, dY stored K×M, X stored K×N.
    pub fn tn(m: usize, n: usize, k: usize) -> Self {
        Self::new(true, false, m, n, k)
    }

    /// The same product over `batch` matrices packed back to back.
    pub fn batched(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }

    /// "NT", "NN", "TN" or "TT": how A and B are read.
    pub fn layout(&self) -> &'static str {
        match (self.trans_a, self.trans_b) {
            (false, true) => "NT",
            (false, false) => "NN",
            (true, false) => "TN",
            (true, true) => "TT",
        }
    }

    /// Whether the row pitches of A and B are multiples of 4 elements: with 4-aligned offsets,
    /// the precondition for the shader's vec4 loads.
    pub fn rows_vec4_aligned(&self) -> bool {
        self.lda.is_multiple_of(4) && self.ldb.is_multiple_of(4)
    }

    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64 * self.batch as f64
    }

    /// (rows, cols) of A and B as stored.
    fn a_stored(&self) -> (usize, usize) {
        if self.trans_a {
            (self.k, self.m)
        } else {
            (self.m, self.k)
        }
    }

    fn b_stored(&self) -> (usize, usize) {
        if self.trans_b {
            (self.n, self.k)
        } else {
            (self.k, self.n)
        }
    }

    /// Elements an operand buffer must hold: last matrix's last row's last element, plus one.
    pub fn a_len(&self) -> usize {
        let (r, c) = self.a_stored();
        (self.batch - 1) * self.stride_a + (r - 1) * self.lda + c
    }

    pub fn b_len(&self) -> usize {
        let (r, c) = self.b_stored();
        (self.batch - 1) * self.stride_b + (r - 1) * self.ldb + c
    }

    pub fn c_len(&self) -> usize {
        (self.batch - 1) * self.stride_c + (self.m - 1) * self.ldc + self.n
    }

    /// Reject impossible shapes with a message that says which number is wrong.
    pub fn check(&self, a_len: usize, b_len: usize, c_len: usize) -> Result<()> {
        let bad = |message: String| Err(Error::Shape { op: "matmul", message });
        if self.m == 0 || self.n == 0 || self.k == 0 || self.batch == 0 {
            return bad(format!("M, N, K and batch must be >= 1, got {self:?}"));
        }
        let (_, ac) = self.a_stored();
        let (_, bc) = self.b_stored();
        if self.lda < ac || self.ldb < bc || self.ldc < self.n {
            return bad(format!(
                "leading dimensions too small: lda {} < {ac}, ldb {} < {bc} or ldc {} < {}",
                self.lda, self.ldb, self.ldc, self.n
            ));
        }
        for (name, need, have) in [("A", self.a_len(), a_len), ("B", self.b_len(), b_len), ("C", self.c_len(), c_len)] {
            if have < need {
                return bad(format!("{name} has {have} elements but a {} {self:?} needs {need}", self.layout()));
            }
        }
        if self.a_len().max(self.b_len()).max(self.c_len()) > u32::MAX as usize {
            return bad("an operand exceeds 2^32 elements".into());
        }
        Ok(())
    }
}

/// One kernel of the family with its tuning parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatmulVariant {
    /// One output per invocation: the baseline.
    Naive,
    /// TM×TN outputs per invocation (4 or 8 each), vec4 loads, no workgroup memory; workgroup RX×RY.
    Register { rx: u32, ry: u32, tm: u32, tn: u32 },
    /// BM×BN workgroup tiles staged through workgroup memory in BK steps.
    Tiled { bm: u32, bn: u32, bk: u32 },
}

/// Every variant autotuning considers (those that fit the adapter's limits).
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
];

impl MatmulVariant {
    pub fn name(&self) -> String {
        match *self {
            MatmulVariant::Naive => "naive".into(),
            MatmulVariant::Register { rx, ry, tm, tn } => format!("register_{rx}x{ry}_t{tm}x{tn}"),
            MatmulVariant::Tiled { bm, bn, bk } => format!("tiled_{bm}x{bn}x{bk}"),
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        MATMUL_VARIANTS.iter().copied().find(|v| v.name() == name)
    }

    pub fn kernel(&self) -> Kernel {
        match self {
            MatmulVariant::Naive => Kernel::MatmulNaive,
            MatmulVariant::Register { .. } => Kernel::MatmulRegister,
            MatmulVariant::Tiled { .. } => Kernel::MatmulTiled,
        }
    }

    /// Whether the adapter can run it (invocations per workgroup, workgroup memory).
    pub fn fits(&self, limits: &wgpu::Limits) -> bool {
        let (x, y, shared) = match *self {
            MatmulVariant::Naive => (16, 16, 0),
            MatmulVariant::Register { rx, ry, .. } => (rx, ry, 0),
            MatmulVariant::Tiled { bm, bn, bk } => (bn / 4, bm / 4, bk * (bm + bn) * 4),
        };
        x * y <= limits.max_compute_invocations_per_workgroup
            && x <= limits.max_compute_workgroup_size_x
            && y <= limits.max_compute_workgroup_size_y
            && shared <= limits.max_compute_workgroup_storage_size
    }

    /// The variant used when autotuning is off: workgroup-memory tiles on GPUs, the barrier-free
    /// register kernel on CPU drivers.
    pub fn default_for(ctx: &GpuContext) -> Self {
        if ctx.is_cpu() {
            Self::CPU_DEFAULT
        } else {
            Self::GPU_DEFAULT
        }
    }

    /// The default on CPU drivers (lavapipe) and on GPUs, see [`MatmulVariant::default_for`].
    pub const CPU_DEFAULT: Self = MatmulVariant::Register { rx: 8, ry: 8, tm: 8, tn: 8 };
    pub const GPU_DEFAULT: Self = MatmulVariant::Tiled { bm: 64, bn: 64, bk: 16 };

    fn overrides(&self, g: &Gemm, aligned: bool) -> Overrides {
        let o = Overrides::new().flag("TRANS_A", g.trans_a).flag("TRANS_B", g.trans_b);
        match *self {
            MatmulVariant::Naive => o,
            MatmulVariant::Register { rx, ry, tm, tn } => o
                .flag("ALIGNED", aligned)
                .set("RX", rx as f64)
                .set("RY", ry as f64)
                .set("TM", tm as f64)
                .set("TN", tn as f64),
            MatmulVariant::Tiled { bm, bn, bk } => {
                o.flag("ALIGNED", aligned).set("BM", bm as f64).set("BN", bn as f64).set("BK", bk as f64)
            }
        }
    }

    fn workgroups(&self, m: usize, n: usize, batch: usize) -> [u32; 3] {
        let (tm, tn) = match *self {
            MatmulVariant::Naive => (16, 16),
            MatmulVariant::Register { rx, ry, tm, tn } => ((tm * ry) as usize, (tn * rx) as usize),
            MatmulVariant::Tiled { bm, bn, .. } => (bm as usize, bn as usize),
        };
        [n.div_ceil(tn) as u32, m.div_ceil(tm) as u32, batch as u32]
    }
}

/// Per-dispatch parameters; field order and sizes match `MatmulParams` in the shader.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct MatmulParams {
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

/// C = α·op(A)·op(B) + β·C with the variant autotuning (or the adapter default) picks.
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
    let variant = choose_variant(s.ctx, g)?;
    matmul_variant(s, variant, c, a, b, g, alpha, beta)
}

/// As [`matmul`], with an explicit kernel variant (validation and benchmarks use every one).
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
    g.check(a.len(), b.len(), c.len())?;
    let ctx = s.ctx;
    if !variant.fits(&ctx.limits) {
        return Err(Error::Shape {
            op: "matmul",
            message: format!("variant {} does not fit this adapter", variant.name()),
        });
    }
    let align = ctx.limits.min_storage_buffer_offset_alignment as u64;
    let max_batch = ctx.limits.max_compute_workgroups_per_dimension as usize;
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
        let wa = a.window(a_lo, a_hi, align, ctx.max_binding_bytes())?;
        let wb = b.window(b_lo, b_hi, align, ctx.max_binding_bytes())?;
        let wc = c.window(c_lo, c_hi, align, ctx.max_binding_bytes())?;
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
        let pipeline = ctx.pipeline(variant.kernel(), &variant.overrides(g, aligned))?;
        let d = ctx.dispatch(
            variant.kernel(),
            pipeline,
            &[wa, wb, wc],
            bytemuck::bytes_of(&params),
            variant.workgroups(mc, nc, bc),
        )?;
        s.push(d);
    }
    Ok(())
}

// ---- autotuning --------------------------------------------------------------------------------

/// Shape classes share a choice: layout, alignment, batched or not, and each of M, N, K by its
/// power-of-two bucket. The shader's fingerprint is part of the key, so editing the kernel
/// invalidates old choices.
pub fn shape_class(g: &Gemm) -> String {
    let bucket = |x: usize| (x.max(16) as f64).log2().ceil() as u32;
    let aligned = g.rows_vec4_aligned();
    format!(
        "matmul/{:016x}/{}/{}/{}/m{}n{}k{}",
        crate::util::fnv1a(Shader::Matmul.source().as_bytes()),
        g.layout(),
        if aligned { "vec4" } else { "scalar" },
        if g.batch > 1 { "batched" } else { "single" },
        bucket(g.m),
        bucket(g.n),
        bucket(g.k)
    )
}

/// The variant for this product: the cached choice, a fresh tuning run, or the adapter default.
pub fn choose_variant(ctx: &GpuContext, g: &Gemm) -> Result<MatmulVariant> {
    if let Ok(v) = std::env::var("WGPT_MATMUL_VARIANT") {
        return MatmulVariant::parse(&v).filter(|v| v.fits(&ctx.limits)).ok_or_else(|| Error::Validation {
            context: "WGPT_MATMUL_VARIANT".into(),
            message: format!(
                "`{v}` is not a variant this adapter can run; choose from: {}",
                MATMUL_VARIANTS.iter().filter(|v| v.fits(&ctx.limits)).map(|v| v.name()).collect::<Vec<_>>().join(", ")
            ),
        });
    }
    if ctx.autotune.mode() == AutotuneMode::Off {
        return Ok(MatmulVariant::default_for(ctx));
    }
    let class = shape_class(g);
    if let Some(choice) = ctx.autotune.lookup(&class) {
        if let Some(v) = MatmulVariant::parse(&choice.variant) {
            return Ok(v);
        }
    }
    let choice = tune(ctx, g)?;
    log::info!("autotune {class}: {} ({:.1} GFLOP/s)", choice.variant, choice.measured[0].1);
    let v = MatmulVariant::parse(&choice.variant).expect("tuned variant is in the table");
    ctx.autotune.record(&class, choice);
    Ok(v)
}

/// Check every fitting variant against the CPU reference on a small ragged problem of the same
/// layout, then time the survivors on a representative problem of the class (each dimension
/// capped at 1024 so tuning stays short on slow drivers) and rank them.
pub fn tune(ctx: &GpuContext, g: &Gemm) -> Result<Choice> {
    let candidates: Vec<MatmulVariant> = MATMUL_VARIANTS.iter().copied().filter(|v| v.fits(&ctx.limits)).collect();
    let aligned = g.rows_vec4_aligned();
    let mut rng = Rng::new(0x5EED_0F7E57);

    // Correctness probe: ragged in every dimension relative to every tile size.
    let probe = {
        let (m, n, k) = if aligned { (68, 44, 36) } else { (67, 45, 35) };
        Gemm::new(g.trans_a, g.trans_b, m, n, k).batched(if g.batch > 1 { 2 } else { 1 })
    };
    let pa = rng.vec_uniform(probe.a_len(), -1.0, 1.0);
    let pb = rng.vec_uniform(probe.b_len(), -1.0, 1.0);
    let mut want = vec![0.0f32; probe.c_len()];
    crate::reference::matmul::matmul(&mut want, &pa, &pb, &probe, 1.0, 0.0);
    let (ta, tb, tc) =
        (ctx.upload("probe A", &pa)?, ctx.upload("probe B", &pb)?, ctx.tensor("probe C", probe.c_len())?);
    let tol = crate::validate::matmul_tolerance(probe.k);
    let mut passed = Vec::new();
    for &v in &candidates {
        ctx.write(&tc, &vec![f32::NAN; probe.c_len()])?;
        let mut s = Stream::new(ctx);
        matmul_variant(&mut s, v, &tc, &ta, &tb, &probe, 1.0, 0.0)?;
        s.run()?;
        let got = ctx.read(&tc)?;
        match crate::validate::compare(&got, &want, tol) {
            Ok(_) => passed.push(v),
            Err(report) => log::warn!("autotune: variant {} fails its reference check, excluded: {report}", v.name()),
        }
    }
    if passed.is_empty() {
        return Err(Error::Validation {
            context: "matmul autotune".into(),
            message: "no variant passed its reference check".into(),
        });
    }

    // Timing problem: the class's shape with each dimension capped.
    let mut t = Gemm::new(g.trans_a, g.trans_b, g.m.min(1024), g.n.min(1024), g.k.min(1024)).batched(g.batch.min(8));
    if !aligned {
        // Keep the class's alignment: a ragged leading dimension stays ragged.
        t = Gemm::new(g.trans_a, g.trans_b, t.m | 1, t.n | 1, t.k | 1).batched(t.batch);
    }
    let ta = ctx.upload("tune A", &rng.vec_uniform(t.a_len(), -1.0, 1.0))?;
    let tb = ctx.upload("tune B", &rng.vec_uniform(t.b_len(), -1.0, 1.0))?;
    let tc = ctx.tensor("tune C", t.c_len())?;
    let measure = |v: MatmulVariant| -> Result<f64> {
        let mut s = Stream::new(ctx);
        matmul_variant(&mut s, v, &tc, &ta, &tb, &t, 1.0, 0.0)?;
        let secs = ctx.time(s.dispatches(), 1)?.as_secs_f64();
        Ok(t.flops() / secs / 1e9)
    };
    // Warm up each survivor once, then take up to three samples, dropping any candidate more than
    // 1.5x slower than the leader after each round (as CubeCL does) so slow kernels cost little.
    let mut samples: Vec<(MatmulVariant, Vec<f64>)> = Vec::new();
    for &v in &passed {
        measure(v)?;
        samples.push((v, Vec::new()));
    }
    for _round in 0..3 {
        for (v, xs) in samples.iter_mut() {
            xs.push(measure(*v)?);
        }
        let best = samples.iter().map(|(_, xs)| median(xs)).fold(0.0, f64::max);
        samples.retain(|(_, xs)| median(xs) * 1.5 >= best);
    }
    let mut measured: Vec<(String, f64)> = samples.iter().map(|(v, xs)| (v.name(), median(xs))).collect();
    measured.sort_by(|x, y| y.1.total_cmp(&x.1));
    Ok(Choice { variant: measured[0].0.clone(), measured })
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

    #[test]
    fn shapes_are_checked() {
        let g = Gemm::nt(4, 5, 6);
        assert_eq!((g.a_len(), g.b_len(), g.c_len()), (24, 30, 20));
        assert!(g.check(24, 30, 20).is_ok());
        assert!(g.check(23, 30, 20).is_err());
        let tn = Gemm::tn(4, 5, 6).batched(3);
        assert_eq!(tn.a_len(), 2 * 24 + 5 * 4 + 4);
        assert_eq!(MatmulVariant::parse("tiled_64x64x16"), Some(MatmulVariant::Tiled { bm: 64, bn: 64, bk: 16 }));
        assert!(MATMUL_VARIANTS.iter().all(|v| MatmulVariant::parse(&v.name()) == Some(*v)));
    }
}
