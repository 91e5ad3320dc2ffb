//! The cooperative-matrix (tensor-core) members of the matmul family, `shaders/matmul_coop.wgsl`:
//! their variants, the shader specialisation per tile size and operand type, and the start-up
//! self-test that decides whether this adapter uses them at all ([`coop_status`]).
//!
//! They are launched through `kernels::matmul` like every other variant (`MatmulVariant::Coop`),
//! which chunks the problem, binds the windows and passes the same parameters.

use crate::error::Result;
use crate::gpu::coop::{CoopGate, CoopStatus};
use crate::gpu::{DType, GpuContext, Overrides, Specialization};
use crate::kernels::matmul::{matmul_variant, Gemm, MatmulPrecision, MatmulVariant};
use crate::kernels::Stream;
use crate::util::Rng;

/// Staged elements per invocation and operand the shader's register arrays hold (`MAX_STAGE`).
const MAX_STAGE: u32 = 32;
/// Halves of padding after each staged row (`PAD`).
const PAD: u32 = 8;

/// One coop kernel configuration: a workgroup of `wm`×`wn` subgroups, each owning 2×2 tiles of
/// `tile`×`tile`, so a `wm·2·tile` × `wn·2·tile` block of C, staged `bk` deep in K. `flush` = 0
/// accumulates in f32; otherwise in f16 over `flush` stages (a K block of `flush·bk`), then f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CoopVariant {
    pub tile: u32,
    pub wm: u32,
    pub wn: u32,
    pub bk: u32,
    pub flush: u32,
}

impl CoopVariant {
    pub const fn new(tile: u32, wm: u32, wn: u32, bk: u32) -> Self {
        Self { tile, wm, wn, bk, flush: 0 }
    }

    /// The same kernel accumulating in f16 over K blocks of `flush` stages.
    pub const fn f16_accumulate(self, flush: u32) -> Self {
        Self { flush, ..self }
    }

    pub fn bm(&self) -> u32 {
        self.wm * 2 * self.tile
    }

    pub fn bn(&self) -> u32 {
        self.wn * 2 * self.tile
    }

    /// K elements accumulated in f16 before each flush into f32 (0: f32 accumulation).
    pub fn f16_block(&self) -> u32 {
        self.flush * self.bk
    }

    pub fn precision(&self) -> MatmulPrecision {
        if self.flush == 0 {
            MatmulPrecision::F16
        } else {
            MatmulPrecision::F16Acc
        }
    }

    /// e.g. `coop16_64x64x32`, or `coop16_64x64x32_h64` accumulating in f16 over K blocks of 64.
    pub fn name(&self) -> String {
        let base = format!("coop{}_{}x{}x{}", self.tile, self.bm(), self.bn(), self.bk);
        if self.flush == 0 {
            base
        } else {
            format!("{base}_h{}", self.f16_block())
        }
    }

    /// Invocations per workgroup for subgroups of `sg` lanes.
    pub fn invocations(&self, sg: u32) -> u32 {
        self.wm * self.wn * sg
    }

    /// Bytes of workgroup memory: two f16 staging buffers per operand, and one f32 and one f16
    /// CT×CT scratch slot per subgroup plus a spare one (see the shader).
    pub fn workgroup_bytes(&self) -> u32 {
        let bkp = self.bk + PAD;
        let staging = 2 * (self.bm() + self.bn()) * bkp * 2;
        let slots = (self.wm * self.wn + 1) * self.tile * self.tile;
        staging + slots * (4 + 2)
    }

    /// Whether the adapter can run it with subgroups of `sg`: the coop feature (any advertised
    /// size: validation also runs unadvertised ones), invocations, workgroup memory, and a
    /// staging share per invocation that divides evenly and fits the registers.
    pub fn fits(&self, ctx: &GpuContext, sg: u32) -> bool {
        let needed =
            wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX | wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP;
        let wg = self.invocations(sg);
        let l = &ctx.limits;
        let share = |rows: u32| (rows * self.bk).is_multiple_of(wg) && rows * self.bk / wg <= MAX_STAGE;
        ctx.features.contains(needed)
            && sg > 0
            && wg <= l.max_compute_invocations_per_workgroup
            && wg <= l.max_compute_workgroup_size_x
            && self.workgroup_bytes() <= l.max_compute_workgroup_storage_size
            && self.bk.is_multiple_of(self.tile)
            && share(self.bm())
            && share(self.bn())
    }

    /// Whether the adapter advertises this tile size (with f16 accumulation where it needs it).
    pub fn advertised(&self, ctx: &GpuContext) -> bool {
        ctx.coop_configs.iter().any(|c| c.size == self.tile && (self.flush == 0 || c.f16_accumulator))
    }

    pub(crate) fn overrides(&self, g: &Gemm, sg: u32) -> Overrides {
        Overrides::new()
            .flag("TRANS_A", g.trans_a)
            .flag("TRANS_B", g.trans_b)
            .set("WM", self.wm as f64)
            .set("WN", self.wn as f64)
            .set("SG", sg as f64)
            .set("BK", self.bk as f64)
            .flag("ACC16", self.flush > 0)
            .set("FLUSH", self.flush.max(1) as f64)
    }

    pub(crate) fn workgroups(&self, m: usize, n: usize, batch: usize) -> [u32; 3] {
        [n.div_ceil(self.bn() as usize) as u32, m.div_ceil(self.bm() as usize) as u32, batch as u32]
    }
}

/// Every coop variant, for both tile sizes; each adapter runs those that fit it. 8×8 (lavapipe):
/// 32×32 and 64×64 blocks; 16×16 (NVIDIA, AMD): 64×64, 128×64 and 64×128 blocks, and one 64×64
/// with a 16-deep stage that also fits a CPU driver's 8-wide subgroups. Each with f32
/// accumulation and one with f16 accumulation over K blocks of 64.
pub const COOP_VARIANTS: &[CoopVariant] = &[
    CoopVariant::new(8, 2, 2, 32),
    CoopVariant::new(8, 4, 4, 16),
    CoopVariant::new(8, 2, 2, 32).f16_accumulate(2),
    CoopVariant::new(8, 4, 4, 16).f16_accumulate(4),
    CoopVariant::new(16, 2, 2, 32),
    CoopVariant::new(16, 2, 2, 16),
    CoopVariant::new(16, 4, 2, 32),
    CoopVariant::new(16, 2, 4, 32),
    CoopVariant::new(16, 2, 2, 32).f16_accumulate(2),
    CoopVariant::new(16, 2, 2, 16).f16_accumulate(4),
    CoopVariant::new(16, 4, 2, 32).f16_accumulate(2),
];

/// The shader text for one tile size and the storage types of A and B (see the header of
/// matmul_coop.wgsl: WGSL cannot parameterise types).
pub fn specialization(tile: u32, a: DType, b: DType) -> Specialization {
    let elem = |d: DType| match d {
        DType::F32 => "f32",
        DType::F16 => "f16",
    };
    let ty = |scalar: &str, role: &str| format!("coop_mat{tile}x{tile}<{scalar}, {role}>");
    Specialization::new()
        .set("ElemA", elem(a))
        .set("ElemB", elem(b))
        .set("CT", format!("{tile}u"))
        .set("TileA", ty("f16", "A"))
        .set("TileB", ty("f16", "B"))
        .set("Acc", ty("f32", "C"))
        .set("Acc16", ty("f16", "C"))
}

/// Every (tile, A storage, B storage) specialisation, for the no-GPU shader checks.
pub fn all_specializations() -> Vec<(String, Specialization)> {
    let mut v = Vec::new();
    for tile in [8, 16] {
        for a in [DType::F32, DType::F16] {
            for b in [DType::F32, DType::F16] {
                v.push((format!("tile {tile}, A {a:?}, B {b:?}"), specialization(tile, a, b)));
            }
        }
    }
    v
}

/// What the linear layers (and attention's products) of a model run at `precision` compute in on
/// this adapter, for logs and reports, and whether that is the matrix units (the MFU peak to use).
pub fn describe_linear_layers(ctx: &GpuContext, precision: MatmulPrecision) -> (String, bool) {
    if precision == MatmulPrecision::F32 {
        return ("f32 (WGSL, SIMT)".into(), false);
    }
    match coop_status(ctx) {
        CoopStatus::Available { tile, .. } => (
            format!(
                "f16 inputs, f32 accumulation, cooperative matrices ({tile}×{tile}×{tile}); attention's \
                     Q·Kᵀ and P·V too (softmax in f32), v and attention outputs stored in f16"
            ),
            true,
        ),
        CoopStatus::Unavailable(why) => (format!("f32 (WGSL, SIMT): f16 products asked, but {why}"), false),
    }
}

/// The subgroup sizes a coop kernel may be launched for on this adapter, the likeliest first:
/// the one size a driver reports when min = max (NVIDIA 32, lavapipe 8), else both ends.
fn candidate_subgroup_sizes(ctx: &GpuContext) -> Vec<u32> {
    let (lo, hi) = (ctx.info.subgroup_min_size, ctx.info.subgroup_max_size);
    if lo == hi {
        vec![lo]
    } else {
        vec![hi, lo]
    }
}

/// The subgroup size coop kernels are launched for: the self-tested one where coop is in use,
/// else the likeliest (validation of unadvertised or gated-off kernels).
pub fn subgroup_size(ctx: &GpuContext) -> u32 {
    match coop_status(ctx) {
        CoopStatus::Available { subgroup_size, .. } => *subgroup_size,
        CoopStatus::Unavailable(_) => candidate_subgroup_sizes(ctx)[0],
    }
}

/// Whether this adapter uses cooperative matrices, decided once per context: the static gates of
/// `gpu::coop`, then a self-test, a small ragged product of each layout against the f32 kernel
/// on the same f16-rounded inputs (outputs poisoned with NaN), for each candidate subgroup size.
/// The verdict is logged; `wgpt adapters` prints it.
pub fn coop_status(ctx: &GpuContext) -> &CoopStatus {
    ctx.coop_status_cell().get_or_init(|| {
        let status = match &ctx.coop_gate {
            CoopGate::Closed(why) => CoopStatus::Unavailable(why.clone()),
            // The self-test's dispatches are not the work of whoever first asked for the verdict
            // (a validation row must not be credited with them).
            CoopGate::Open { tile, f16_accumulator } => ctx.untracked(|| self_test(ctx, *tile, *f16_accumulator)),
        };
        log::info!("cooperative matrices: {}", status.describe());
        status
    })
}

fn self_test(ctx: &GpuContext, tile: u32, f16_accumulator: bool) -> CoopStatus {
    let mut last = String::new();
    for sg in candidate_subgroup_sizes(ctx) {
        let Some(v) = COOP_VARIANTS.iter().copied().find(|v| v.tile == tile && v.flush == 0 && v.fits(ctx, sg)) else {
            last = format!("no {tile}×{tile} variant fits this adapter's limits with subgroups of {sg}");
            continue;
        };
        match self_test_variant(ctx, v, sg) {
            Ok(()) => return CoopStatus::Available { tile, subgroup_size: sg, f16_accumulator },
            Err(e) => last = format!("self-test of {} with subgroups of {sg} failed: {e}", v.name()),
        }
    }
    CoopStatus::Unavailable(last)
}

/// `Err` with the comparator's report if `v` (launched for subgroups of `sg`) disagrees with the
/// f32 register kernel on the same f16-rounded inputs.
fn self_test_variant(ctx: &GpuContext, v: CoopVariant, sg: u32) -> Result<()> {
    let mut rng = Rng::new(0xC00F_5E1F);
    for (ta, tb) in [(false, true), (false, false), (true, false)] {
        let g = Gemm::new(ta, tb, 37, 45, 70).with_precision(MatmulPrecision::F16);
        let round = |x: Vec<f32>| x.into_iter().map(|x| half::f16::from_f32(x).to_f32()).collect::<Vec<_>>();
        let a = round(rng.vec_uniform(g.a_len(), -1.0, 1.0));
        let b = round(rng.vec_uniform(g.b_len(), -0.2, 0.2));
        let (ta_, tb_) = (ctx.upload("coop self-test A", &a)?, ctx.upload("coop self-test B", &b)?);
        let c_ref = ctx.upload("coop self-test C (f32)", &vec![f32::NAN; g.c_len()])?;
        let c = ctx.upload("coop self-test C", &vec![f32::NAN; g.c_len()])?;
        let mut s = Stream::new(ctx);
        let exact = Gemm { precision: MatmulPrecision::F32, ..g };
        matmul_variant(&mut s, MatmulVariant::CPU_DEFAULT, &c_ref, &ta_, &tb_, &exact, 1.0, 0.0)?;
        crate::kernels::matmul::record_coop(&mut s, v, sg, &c, &ta_, &tb_, &g, 1.0, 0.0)?;
        s.run()?;
        let (want, got) = (ctx.read(&c_ref)?, ctx.read(&c)?);
        let tol = crate::validate::matmul_coop_tolerance(g.k, v.f16_block());
        crate::validate::compare(&got, &want, tol).map_err(|report| crate::error::Error::Validation {
            context: format!("{} {}", v.name(), g.layout()),
            message: report.to_string(),
        })?;
    }
    Ok(())
}
