//! Launcher for Muon (spec §3.3, `reference::muon::muon_step`) on one shape group: `shaders/muon.wgsl`
//! for momentum, norms, NorMuon and the update, the batched matmul for Polar Express.
//!
//! The K matrices of a group are processed together, in slices of `kk` matrices so that the
//! workspace stays bounded: each slice is every kernel below run once over kk stacked matrices
//! (batched GEMMs with the matrix index as the batch). Per slice, with s = min(R, C):
//!
//! | # | dispatch | what |
//! |---|---|---|
//! | 1 | `muon_momentum` | M ← μM + (1−μ)G, X ← (1−μ)G + μM |
//! | 2 | `muon_row_sumsq` | Σ X² per row (MuonEq needs rows, the Frobenius norm their sum) |
//! | 3 | `muon_pre_scale` | per-row factor: MuonEq (Plus) × 1/(1.01‖X‖ + 1e−6) |
//! | 4 | `muon_row_scale` | X ← diag(factor)·X |
//! | 5–24 | 5 × (Gram, `muon_poly_init`, A·A, product) | A = XXᵀ (R ≤ C, NT) or XᵀX (R > C, TN); B = bA + aI; B += cA·A (NN, β = 1); X' = B·X or X·B (NN) |
//! | 25 | `muon_row_sumsq` / `muon_col_sumsq` | Σ X² per row (R ≥ C) or column |
//! | 26 | `muon_post_scale` | Muon+ (Plus), NorMuon second moment and rescale → per-row/column factor |
//! | 27 | `muon_update` | U = X·factor; P ← P − lr_eff·U − lr_eff·wd·P·[U·P ≥ 0] |
//!
//! Folding Polar Express's a·X into B's diagonal ((B + aI)·X = aX + BX) makes each iteration one
//! product into the other of two ping-pong buffers, with no copy of X.
//!
//! Workspace ([`MuonWorkspace`], sizes from [`workspace_lens`]): x and y of kk·R·C, gram and poly of
//! kk·s², stats and scale of kk·max(R, C), for the largest slice of any group. Per-step values
//! (μ, lr_eff, lr_eff·wd, β2, 1/S for gradients scaled by the loss scale S) are read from a 5-word buffer ([`muon_scalars`]) the caller rewrites
//! before each submission; the Polar Express coefficients are constants of the recorded dispatches.

use crate::error::{Error, Result};
use crate::gpu::immediates::immediates;
use crate::gpu::{GpuContext, GpuTensor, Kernel, Overrides, Window};
use crate::kernels::grad_norm::guard_window;
use crate::kernels::launch::chunk_elems;
use crate::kernels::matmul::{matmul, Gemm};
use crate::kernels::{Stream, MAX_GRID};
use crate::reference::muon::{MuonVariant, MUON_BETA2, POLAR_EXPRESS};

/// Default bound on the elements of one slice (kk·R·C): 8 Mi elements, 32 MiB per workspace
/// matrix buffer. d12's (768, 768) group runs as 4 slices of 12 matrices, its 768×3072 groups as
/// 4 slices of 3: enough matrices per batched GEMM to fill a GPU, with 4 × 28 MiB of workspace
/// instead of 4 × 108 MiB for whole groups.
pub const SLICE_ELEMS: usize = 1 << 23;
/// f32 words per group in the per-step buffer (see [`muon_scalars`]).
pub const SCALAR_WORDS: usize = 5;

const WG_ELEMENTWISE: usize = 256;
/// Row sums: one workgroup per row of C ≤ a few thousand elements.
const WG_ROWS: usize = 64;
/// Per-matrix passes over R or C statistics.
const WG_MATRIX: usize = 256;

immediates! {
    pub struct MuonParams {
        kk: u32,
        rows: u32,
        cols: u32,
        flags: u32,
        off: [u32; 5],
        coef_a: f32,
        coef_b: f32,
        _pad0: u32,
    }
}

/// Matrices per slice for a group of k matrices of rows·cols elements under a bound of `cap`
/// elements: as many as fit (at least one), balanced so that every slice has the same count
/// except perhaps the last.
pub fn slice_matrices(k: usize, rc: usize, cap: usize) -> usize {
    let per = (cap / rc.max(1)).clamp(1, k.max(1));
    let slices = k.div_ceil(per);
    k.div_ceil(slices.max(1))
}

/// Workspace element counts for groups of (k, rows, cols) at slice bound `cap`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MuonWorkspaceLens {
    /// x and y: kk·R·C
    pub matrices: usize,
    /// gram and poly: kk·min(R, C)²
    pub gram: usize,
    /// stats and scale: kk·max(R, C)
    pub stats: usize,
}

pub fn workspace_lens(groups: &[(usize, usize, usize)], cap: usize) -> MuonWorkspaceLens {
    let mut l = MuonWorkspaceLens::default();
    for &(k, r, c) in groups {
        let kk = slice_matrices(k, r * c, cap);
        l.matrices = l.matrices.max(kk * r * c);
        l.gram = l.gram.max(kk * r.min(c) * r.min(c));
        l.stats = l.stats.max(kk * r.max(c));
    }
    l
}

/// Muon's scratch buffers (six separate buffers: wgpu binds a buffer either read-only or
/// read-write within one dispatch, and every step of the pipeline reads one and writes another).
#[derive(Clone, Debug)]
pub struct MuonWorkspace {
    pub x: GpuTensor,
    pub y: GpuTensor,
    pub gram: GpuTensor,
    pub poly: GpuTensor,
    pub stats: GpuTensor,
    pub scale: GpuTensor,
    /// The slice bound the buffers were sized for.
    pub cap: usize,
}

impl MuonWorkspace {
    /// Allocate a workspace for these groups (the optimizer takes its buffers from the memory
    /// plan instead, sized by the same [`workspace_lens`]).
    pub fn alloc(ctx: &GpuContext, groups: &[(usize, usize, usize)], cap: usize) -> Result<Self> {
        let l = workspace_lens(groups, cap);
        Ok(MuonWorkspace {
            x: ctx.tensor("muon.ws.x", l.matrices)?,
            y: ctx.tensor("muon.ws.y", l.matrices)?,
            gram: ctx.tensor("muon.ws.gram", l.gram)?,
            poly: ctx.tensor("muon.ws.poly", l.gram)?,
            stats: ctx.tensor("muon.ws.stats", l.stats)?,
            scale: ctx.tensor("muon.ws.scale", l.stats)?,
            cap,
        })
    }

    fn lens(&self) -> MuonWorkspaceLens {
        MuonWorkspaceLens {
            matrices: self.x.len().min(self.y.len()),
            gram: self.gram.len().min(self.poly.len()),
            stats: self.stats.len().min(self.scale.len()),
        }
    }
}

/// The per-step words of one group: μ, lr_eff = lr·√max(1, rows/cols), lr_eff·wd, NorMuon's β2,
/// and 1/S for gradients that arrive multiplied by the loss scale `grad_scale` = S (1 unscaled;
/// a power of two, so the momentum kernel's g·(1/S) is exact), each computed in f64 and rounded
/// once. `lr` and `weight_decay` are the scheduled group values.
pub fn muon_scalars(
    mu: f64,
    lr: f64,
    weight_decay: f64,
    rows: usize,
    cols: usize,
    grad_scale: f64,
) -> [f32; SCALAR_WORDS] {
    let lr_eff = lr * (rows as f64 / cols as f64).max(1.0).sqrt();
    [mu as f32, lr_eff as f32, (lr_eff * weight_decay) as f32, MUON_BETA2 as f32, (1.0 / grad_scale) as f32]
}

/// The window of a whole view.
fn whole<'t>(ctx: &GpuContext, t: &'t GpuTensor) -> Result<Window<'t>> {
    ctx.window(t, 0, t.len())
}

/// Record one kernel of muon.wgsl.
fn launch(
    s: &mut Stream<'_>,
    kernel: Kernel,
    wg: usize,
    windows: &[Window<'_>],
    mut params: MuonParams,
    groups: usize,
) -> Result<()> {
    for (o, w) in params.off.iter_mut().zip(windows) {
        *o = w.elem_offset;
    }
    let pipeline = s.ctx.pipeline(kernel, &Overrides::new().set("WG", wg as f64))?;
    let d = s.ctx.dispatch(kernel, pipeline, windows, &params, [groups.clamp(1, MAX_GRID) as u32, 1, 1])?;
    s.push(d);
    Ok(())
}

/// One Muon step on a group of `k` matrices of rows×cols stacked in `p`, `momentum` and `g`
/// (k·rows·cols each), with NorMuon's second moment in `second` (k·max(rows, cols): per row when
/// rows ≥ cols, else per column). `scalars` holds the group's [`muon_scalars`], `guard` one u32 that
/// skips the step when non-zero (a zero tensor to always step). Arguments follow
/// `reference::muon::muon_step`, with the per-step values in `scalars` instead of arguments.
#[allow(clippy::too_many_arguments)]
pub fn muon_step(
    s: &mut Stream<'_>,
    p: &GpuTensor,
    momentum: &GpuTensor,
    second: &GpuTensor,
    g: &GpuTensor,
    k: usize,
    rows: usize,
    cols: usize,
    variant: MuonVariant,
    ws: &MuonWorkspace,
    scalars: &GpuTensor,
    guard: &GpuTensor,
) -> Result<()> {
    let rc = rows * cols;
    let nsec = rows.max(cols);
    let shape = |message: String| Err(Error::Shape { op: "muon_step", message });
    if k == 0 || rc == 0 {
        return shape(format!("empty group: k {k}, {rows}×{cols}"));
    }
    if p.len() != k * rc || momentum.len() != k * rc || g.len() != k * rc || second.len() != k * nsec {
        return shape(format!(
            "k={k} of {rows}×{cols}: p {}, momentum {}, g {} (need {}), second {} (need {})",
            p.len(),
            momentum.len(),
            g.len(),
            k * rc,
            second.len(),
            k * nsec
        ));
    }
    if scalars.len() < SCALAR_WORDS || guard.len() != 1 {
        return shape(format!("scalars has {} words (need {SCALAR_WORDS}), guard {}", scalars.len(), guard.len()));
    }
    let ctx = s.ctx;
    let limit = chunk_elems(ctx);
    if rc > limit {
        return shape(format!("one {rows}×{cols} matrix exceeds a storage binding ({limit} elements)"));
    }
    let kk_max = slice_matrices(k, rc, ws.cap.min(limit));
    let small = rows.min(cols);
    let need = workspace_lens(&[(kk_max, rows, cols)], usize::MAX);
    let have = ws.lens();
    if need.matrices > have.matrices || need.gram > have.gram || need.stats > have.stats {
        return shape(format!("workspace {have:?} is smaller than a slice of {kk_max} matrices needs ({need:?})"));
    }
    let flags = u32::from(variant == MuonVariant::Plus);
    let tall = rows > cols;
    let per_row = rows >= cols;
    let wsc = scalars.view(0, SCALAR_WORDS);
    let wguard = guard_window(s, guard)?;
    let mut j0 = 0;
    while j0 < k {
        let kk = kk_max.min(k - j0);
        let n = kk * rc;
        let elem_groups = n.div_ceil(WG_ELEMENTWISE);
        let base =
            MuonParams { kk: kk as u32, rows: rows as u32, cols: cols as u32, flags, ..bytemuck::Zeroable::zeroed() };
        let (ps, gs, ms) = (p.view(j0 * rc, n), g.view(j0 * rc, n), momentum.view(j0 * rc, n));
        let ss = second.view(j0 * nsec, kk * nsec);
        let (mut cur, mut nxt) = (ws.x.view(0, n), ws.y.view(0, n));
        let gram = ws.gram.view(0, kk * small * small);
        let poly = ws.poly.view(0, kk * small * small);
        let stats = ws.stats.view(0, kk * nsec);
        let scale = ws.scale.view(0, kk * nsec);
        let row_stats = ws.stats.view(0, kk * rows);
        let row_scale = ws.scale.view(0, kk * rows);

        // 1–2: momentum and Nesterov into X.
        let w = [whole(ctx, &gs)?, whole(ctx, &ms)?, whole(ctx, &cur)?, whole(ctx, &wsc)?, wguard];
        launch(s, Kernel::MuonMomentum, WG_ELEMENTWISE, &w, base, elem_groups)?;
        // 4–5: MuonEq (Plus) and the Frobenius normalisation, as one factor per row.
        launch(s, Kernel::MuonRowSumsq, WG_ROWS, &[whole(ctx, &cur)?, whole(ctx, &row_stats)?], base, kk * rows)?;
        launch(s, Kernel::MuonPreScale, WG_MATRIX, &[whole(ctx, &row_stats)?, whole(ctx, &row_scale)?], base, kk)?;
        launch(
            s,
            Kernel::MuonRowScale,
            WG_ELEMENTWISE,
            &[whole(ctx, &row_scale)?, whole(ctx, &cur)?],
            base,
            elem_groups,
        )?;
        // 6: Polar Express on the smaller Gram side.
        let gram_gemm = if tall { Gemm::tn(cols, cols, rows) } else { Gemm::nt(rows, rows, cols) }.batched(kk);
        let square_gemm = Gemm::nn(small, small, small).batched(kk);
        for &(a, b, c) in &POLAR_EXPRESS {
            matmul(s, &gram, &cur, &cur, &gram_gemm, 1.0, 0.0)?;
            let pp = MuonParams { rows: small as u32, coef_a: a as f32, coef_b: b as f32, ..base };
            let groups = (kk * small * small).div_ceil(WG_ELEMENTWISE);
            launch(s, Kernel::MuonPolyInit, WG_ELEMENTWISE, &[whole(ctx, &gram)?, whole(ctx, &poly)?], pp, groups)?;
            matmul(s, &poly, &gram, &gram, &square_gemm, c as f32, 1.0)?;
            if tall {
                matmul(s, &nxt, &cur, &poly, &Gemm::nn(rows, cols, cols).batched(kk), 1.0, 0.0)?;
            } else {
                matmul(s, &nxt, &poly, &cur, &Gemm::nn(rows, cols, rows).batched(kk), 1.0, 0.0)?;
            }
            std::mem::swap(&mut cur, &mut nxt);
        }
        // 8–9: Muon+ (Plus), NorMuon.
        if per_row {
            launch(s, Kernel::MuonRowSumsq, WG_ROWS, &[whole(ctx, &cur)?, whole(ctx, &stats)?], base, kk * rows)?;
        } else {
            let groups = (kk * cols).div_ceil(WG_ELEMENTWISE);
            launch(s, Kernel::MuonColSumsq, WG_ELEMENTWISE, &[whole(ctx, &cur)?, whole(ctx, &stats)?], base, groups)?;
        }
        let w = [whole(ctx, &stats)?, whole(ctx, &ss)?, whole(ctx, &scale)?, whole(ctx, &wsc)?, wguard];
        launch(s, Kernel::MuonPostScale, WG_MATRIX, &w, base, kk)?;
        // 10: cautious weight decay and the update.
        let w = [whole(ctx, &cur)?, whole(ctx, &scale)?, whole(ctx, &ps)?, whole(ctx, &wsc)?, wguard];
        launch(s, Kernel::MuonUpdate, WG_ELEMENTWISE, &w, base, elem_groups)?;
        j0 += kk;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_are_balanced_and_bounded() {
        // d12 at the default bound.
        assert_eq!(slice_matrices(48, 768 * 768, SLICE_ELEMS), 12);
        assert_eq!(slice_matrices(12, 768 * 3072, SLICE_ELEMS), 3);
        assert_eq!(slice_matrices(6, 72, SLICE_ELEMS), 6);
        // A matrix larger than the bound still runs, alone.
        assert_eq!(slice_matrices(4, 100, 10), 1);
        for k in 1..40 {
            for cap in [1, 7, 64, 1000] {
                let kk = slice_matrices(k, 16, cap);
                assert!(kk >= 1 && kk <= k);
                assert!(kk * 16 <= cap.max(16), "k {k} cap {cap}: {kk}");
                // A smaller bound never needs a larger slice (the plan sizes for the default).
                assert!(slice_matrices(k, 16, cap / 2) <= kk);
            }
        }
    }
}
