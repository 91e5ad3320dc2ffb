//! Launchers for `shaders/attention.wgsl`: causal self-attention with a sliding window and grouped
//! KV heads, flash style (online softmax; the backward recomputes probabilities from the saved
//! log-sum-exp, so no T×T matrix ever exists).
//!
//! [`attention_forward`] and [`attention_backward`] mirror `reference::attention` name for name and
//! argument for argument (the [`Stream`] first). They check every shape and buffer before recording
//! anything, pick the tile configuration for the head size ([`AttnTiles::for_pass`]) and record one
//! dispatch per pass per batch chunk (batches are independent, so a tensor larger than one storage
//! binding is processed a few batch rows at a time).
//!
//! The backward is two passes and deterministic (no atomics): the dq pass also writes
//! Δ_t = ⟨dout_t, out_t⟩ into a (B, T, H) temporary that the dk/dv pass reads, taken from the
//! stream ([`Stream::scratch`]): the planned workspace in a training step, a fresh buffer otherwise.
//!
//! [`attention_decode`] is inference's one query row per head (the newest position) against a KV
//! cache, in two passes over blocks of 64 keys (flash-decoding), also without atomics.

use crate::error::{Error, Result};
use crate::gpu::coop::CoopStatus;
use crate::gpu::immediates::immediates;
use crate::gpu::tensor::window_slack;
use crate::gpu::{DType, GpuContext, GpuTensor, Kernel, Overrides, Window};
use crate::kernels::attention_coop::{self, CoopTiles};
use crate::kernels::{matmul_coop, Stream};
pub use crate::shapes::AttnShape;
use crate::shapes::MatmulPrecision;
use std::sync::Arc;

/// Largest head size the kernels' register tiles hold (D/4 ≤ 32 vec4 columns, two per invocation).
pub const MAX_HEAD_DIM: usize = 128;

/// Which entry point a tile configuration is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttnPass {
    Forward,
    BackwardDq,
    BackwardDkdv,
}

impl AttnPass {
    pub const ALL: [AttnPass; 3] = [AttnPass::Forward, AttnPass::BackwardDq, AttnPass::BackwardDkdv];

    /// The f32 (SIMT) entry point of attention.wgsl.
    pub fn kernel(self) -> Kernel {
        match self {
            AttnPass::Forward => Kernel::AttentionForward,
            AttnPass::BackwardDq => Kernel::AttentionBackwardDq,
            AttnPass::BackwardDkdv => Kernel::AttentionBackwardDkdv,
        }
    }

    /// The cooperative-matrix entry point of attention_coop.wgsl.
    pub fn coop_kernel(self) -> Kernel {
        match self {
            AttnPass::Forward => Kernel::AttentionCoopForward,
            AttnPass::BackwardDq => Kernel::AttentionCoopBackwardDq,
            AttnPass::BackwardDkdv => Kernel::AttentionCoopBackwardDkdv,
        }
    }

    /// Workgroup tiles kept by the pass: (BQ-row tiles, BK-row tiles, BQ×BK tiles); see the
    /// A_TILES / B_TILES / P_TILES comment in the shader.
    fn tile_counts(self) -> (u32, u32, u32) {
        match self {
            AttnPass::Forward => (1, 1, 1),
            AttnPass::BackwardDq => (2, 1, 1),
            AttnPass::BackwardDkdv => (2, 2, 2),
        }
    }
}

/// The override constants of one attention pipeline (names as in the shader).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnTiles {
    /// Query rows per tile.
    pub bq: u32,
    /// Keys per tile.
    pub bk: u32,
    /// Invocations per workgroup.
    pub nt: u32,
    /// Score rows and keys per invocation.
    pub s_tr: u32,
    pub s_tk: u32,
    /// Accumulator layout: vec4 column groups, rows and vec4 columns per invocation.
    pub o_cg: u32,
    pub o_tr: u32,
    pub o_tc: u32,
}

impl AttnTiles {
    /// The configuration for `pass` at head size `d` (a multiple of 4, ≤ 128).
    ///
    /// Sized for a discrete GPU within 32 KiB of workgroup memory (lavapipe's limit; NVIDIA has 48):
    /// at D = 128 a padded D-long f32 row is 528 bytes, so the tiles are forward 32 queries × 16
    /// keys (K and V take turns in one tile), dq 16 × 16 (V and K take turns), dk/dv 16 resident
    /// keys × 8 query rows (K, V, Q and dout all resident). At D ≤ 64 rows are half as long and
    /// each tile doubles along one side. 128 invocations in the forward, 64 in the backward
    /// passes, whose invocations carry two accumulators (dk/dv) or two score tiles (s and dP).
    pub fn for_pass(pass: AttnPass, d: usize) -> Self {
        let small = d <= 64;
        let (bq, bk, nt): (u32, u32, u32) = match (pass, small) {
            (AttnPass::Forward, false) => (32, 16, 128),
            (AttnPass::Forward, true) => (64, 16, 128),
            (AttnPass::BackwardDq, false) => (16, 16, 64),
            (AttnPass::BackwardDq, true) => (32, 16, 64),
            (AttnPass::BackwardDkdv, false) => (8, 16, 64),
            (AttnPass::BackwardDkdv, true) => (16, 32, 64),
        };
        // Scores: SK key columns of invocations (8, or more when there are too few rows), each
        // S_TK keys apart by SK; the rest of the invocations stack along the rows.
        let sk = (nt / bq).clamp(8, bk);
        let s_tk = bk / sk;
        let s_tr = bq / (nt / sk);
        // Accumulators: a power-of-two number of vec4 column groups (≤ 32, so ≤ 2 columns each at
        // D ≤ 128), the remaining invocations along the rows (queries, or keys in the dk/dv pass).
        let dv = (d / 4).max(1) as u32;
        let o_cg = 1u32 << (31 - dv.min(32).leading_zeros());
        let o_tc = dv.div_ceil(o_cg);
        let rows = if pass == AttnPass::BackwardDkdv { bk } else { bq };
        let o_tr = rows.div_ceil(nt / o_cg);
        AttnTiles { bq, bk, nt, s_tr, s_tk, o_cg, o_tr, o_tc }
    }

    /// Check the invariants the shader relies on instead of bounds checks (exact score tiling,
    /// register array sizes, one row-statistics owner per row, vec4 rows of the probability tile).
    fn check(&self, pass: AttnPass, d: usize) -> Result<()> {
        let sk = self.bk / self.s_tk.max(1);
        let ok = self.bq.is_multiple_of(4)
            && self.bk.is_multiple_of(4)
            && self.s_tk >= 1
            && self.s_tk <= 4
            && self.s_tr >= 1
            && self.s_tr <= 4
            && sk * self.s_tk == self.bk
            && self.nt.is_multiple_of(sk)
            && (self.nt / sk) * self.s_tr == self.bq
            && self.bq <= self.nt
            && self.o_cg >= 1
            && self.nt.is_multiple_of(self.o_cg)
            && self.o_tc <= 2
            && self.o_tr * self.o_tc <= 8
            && self.o_cg * self.o_tc >= (d / 4) as u32
            && (self.nt / self.o_cg) * self.o_tr >= if pass == AttnPass::BackwardDkdv { self.bk } else { self.bq };
        if !ok {
            return Err(Error::Shape { op: "attention", message: format!("inconsistent tiles {self:?} for D = {d}") });
        }
        Ok(())
    }

    /// Workgroup memory of the pass's pipeline in bytes, mirroring the shader's declarations.
    pub fn workgroup_bytes(&self, pass: AttnPass, d: usize) -> u64 {
        let (a, b, p) = pass.tile_counts();
        let dp = (d / 4 + 1) as u64; // padded row, in vec4
        let (bq, bk) = (self.bq as u64, self.bk as u64);
        16 * (a as u64 * bq * dp + b as u64 * bk * dp) + 4 * (p as u64 * bq * bk + 3 * bq)
    }

    fn overrides(&self, pass: AttnPass, d: usize, cpu: bool) -> Overrides {
        let (a, b, p) = pass.tile_counts();
        Overrides::new()
            .flag("RUNTIME_TRIPS", cpu)
            .set("D", d as f64)
            .set("BQ", self.bq as f64)
            .set("BK", self.bk as f64)
            .set("NT", self.nt as f64)
            .set("S_TR", self.s_tr as f64)
            .set("S_TK", self.s_tk as f64)
            .set("O_CG", self.o_cg as f64)
            .set("O_TR", self.o_tr as f64)
            .set("O_TC", self.o_tc as f64)
            .set("A_TILES", a as f64)
            .set("B_TILES", b as f64)
            .set("P_TILES", p as f64)
    }

    /// Workgroups along x for one (batch, KV head): query-row tiles, or key tiles for dk/dv.
    fn groups_x(&self, pass: AttnPass, t: usize, g: usize) -> usize {
        match pass {
            AttnPass::BackwardDkdv => t.div_ceil(self.bk as usize),
            _ => (t * g).div_ceil(self.bq as usize),
        }
    }
}

/// Which kernels one attention call runs: the f32 ones, or the coop ones for `tile`×`tile`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttnPlan {
    Simt,
    Coop { tile: u32, subgroup_size: u32 },
}

impl AttnPlan {
    /// The coop kernels when the caller accepts f16 products and the adapter uses cooperative
    /// matrices (`matmul_coop::coop_status`: gates and self-test), the f32 ones otherwise.
    pub fn for_shape(ctx: &GpuContext, shape: &AttnShape) -> Self {
        if shape.precision == MatmulPrecision::F32 {
            return AttnPlan::Simt;
        }
        match matmul_coop::coop_status(ctx) {
            CoopStatus::Available { tile, subgroup_size, .. } => {
                AttnPlan::Coop { tile: *tile, subgroup_size: *subgroup_size }
            }
            CoopStatus::Unavailable(_) => AttnPlan::Simt,
        }
    }

    /// The pass's kernel, pipeline and workgroups along x, checked against the adapter, for v and
    /// out stored as `v` and `out` (f16 storage: the coop kernels only).
    fn pipeline(
        self,
        ctx: &GpuContext,
        pass: AttnPass,
        dims: &AttnShape,
        v: DType,
        out: DType,
    ) -> Result<(Kernel, Arc<wgpu::ComputePipeline>, u32)> {
        let (d, t, g) = (dims.d, dims.t, dims.h / dims.hkv);
        match self {
            AttnPlan::Simt => {
                if v != DType::F32 || out != DType::F32 {
                    return Err(bad(format!(
                        "v is {v:?} and out {out:?}: only the cooperative-matrix kernels read f16 storage, and \
                         they do not run here ({}); pass f32 tensors",
                        if dims.precision == MatmulPrecision::F32 {
                            "the shape asks for f32 precision".to_string()
                        } else {
                            matmul_coop::coop_status(ctx).describe()
                        }
                    )));
                }
                let tiles = tiles_for(ctx, pass, d)?;
                let p = ctx.pipeline(pass.kernel(), &tiles.overrides(pass, d, ctx.is_cpu()))?;
                Ok((pass.kernel(), p, tiles.groups_x(pass, t, g) as u32))
            }
            AttnPlan::Coop { tile, subgroup_size } => {
                let tiles = CoopTiles::choose(pass, d, tile, subgroup_size, &ctx.limits).ok_or_else(|| {
                    bad(format!(
                        "no {tile}×{tile} coop tiling of {pass:?} at D = {d} fits this adapter's {} bytes of \
                         workgroup memory",
                        ctx.limits.max_compute_workgroup_storage_size
                    ))
                })?;
                let kernel = pass.coop_kernel();
                let spec = attention_coop::specialization(tile, v, out);
                let p = ctx.pipeline_specialized(kernel, &spec, &tiles.overrides(pass, d, ctx.is_cpu()))?;
                let x = match pass {
                    AttnPass::BackwardDkdv => t.div_ceil(tiles.bk as usize),
                    _ => (t * g).div_ceil(tiles.bq as usize),
                };
                Ok((kernel, p, x as u32))
            }
        }
    }
}

immediates! {
    /// Per-dispatch parameters; field order and sizes match `AttnParams` in the shader.
    #[derive(Debug, Default)]
    pub struct AttnParams {
        t: u32,
        h: u32,
        hkv: u32,
        window: u32,
        scale: f32,
        off_q: u32,
        off_k: u32,
        off_v: u32,
        off_o: u32,
        off_lse: u32,
        off_delta: u32,
        off_x: u32,
        off_g0: u32,
        off_g1: u32,
        one: u32,
        _pad0: u32,
    }
}

fn bad(message: String) -> Error {
    Error::Shape { op: "attention", message }
}

/// Dimensions and scale that every kernel of the family accepts.
fn check_dims(shape: &AttnShape) -> Result<AttnShape> {
    let AttnShape { b, t, h, hkv, d, scale, .. } = *shape;
    if b == 0 || t == 0 || h == 0 || hkv == 0 || d == 0 {
        return Err(bad(format!("B, T, H, Hkv and D must be >= 1, got B={b} T={t} H={h} Hkv={hkv} D={d}")));
    }
    if !h.is_multiple_of(hkv) {
        return Err(bad(format!("H = {h} is not a multiple of Hkv = {hkv}")));
    }
    if !d.is_multiple_of(4) || d > MAX_HEAD_DIM {
        return Err(bad(format!("head size D = {d} must be a multiple of 4 and at most {MAX_HEAD_DIM}")));
    }
    if !scale.is_finite() {
        return Err(bad(format!("scale must be finite, got {scale}")));
    }
    if shape.q_len() > u32::MAX as usize / 2 {
        return Err(bad(format!("B·T·H·D = {} exceeds the kernels' 32-bit indexing", shape.q_len())));
    }
    Ok(*shape)
}

/// `tensor` must hold exactly `len` f32 elements; tensors read as vec4 must start on a multiple of
/// 4. (v and out may also be f16: [`check_storage`].)
fn check_tensor(name: &str, tensor: &GpuTensor, len: usize, vec4: bool) -> Result<()> {
    if tensor.dtype() != DType::F32 {
        return Err(bad(format!("{name} is {:?}; attention reads and writes it as f32", tensor.dtype())));
    }
    check_storage(name, tensor, len, vec4)
}

/// As [`check_tensor`], any storage type (v and out: f32, or f16 for the coop kernels).
fn check_storage(name: &str, tensor: &GpuTensor, len: usize, vec4: bool) -> Result<()> {
    if tensor.len() != len {
        return Err(bad(format!("{name} has {} elements, the shape needs {len}", tensor.len())));
    }
    if vec4 && !tensor.offset().is_multiple_of(4) {
        return Err(bad(format!(
            "{name} starts at element {} of its buffer; attention reads D-long rows as vec4 and needs a \
             multiple of 4",
            tensor.offset()
        )));
    }
    Ok(())
}

/// wgpu refuses a dispatch that binds one buffer both read-only and read-write, and two written
/// tensors must not overlap: check before recording.
fn check_aliasing(written: &[(&str, &GpuTensor)], read: &[(&str, &GpuTensor)]) -> Result<()> {
    for (i, (wn, w)) in written.iter().enumerate() {
        for (rn, r) in read {
            if w.buffer() == r.buffer() {
                return Err(bad(format!(
                    "{wn} (written) and {rn} (read) share a buffer; a dispatch cannot bind one buffer both \
                     read-only and read-write"
                )));
            }
        }
        for (on, o) in &written[i + 1..] {
            let overlap = w.offset() < o.offset() + o.len() && o.offset() < w.offset() + w.len();
            if w.buffer() == o.buffer() && overlap {
                return Err(bad(format!("outputs {wn} and {on} overlap")));
            }
        }
    }
    Ok(())
}

/// Tiles for `pass` at `d`, checked against the adapter.
fn tiles_for(ctx: &GpuContext, pass: AttnPass, d: usize) -> Result<AttnTiles> {
    let tiles = AttnTiles::for_pass(pass, d);
    tiles.check(pass, d)?;
    let need = tiles.workgroup_bytes(pass, d);
    let have = ctx.limits.max_compute_workgroup_storage_size as u64;
    if need > have || tiles.nt > ctx.limits.max_compute_invocations_per_workgroup {
        return Err(bad(format!(
            "{pass:?} at D = {d} needs {need} bytes of workgroup memory and {} invocations; the adapter \
             allows {have} and {}",
            tiles.nt, ctx.limits.max_compute_invocations_per_workgroup
        )));
    }
    Ok(tiles)
}

/// Batch ranges whose largest per-batch slab (T·H·D floats of q) fits one storage binding, and whose
/// count fits the grid's z dimension.
fn batch_chunks(ctx: &GpuContext, dims: &AttnShape) -> Result<Vec<(usize, usize)>> {
    let align = ctx.storage_align();
    let per_batch = (dims.t * dims.h * dims.d) as u64 * 4;
    let usable = ctx.max_binding_bytes().saturating_sub(window_slack(align));
    let per_chunk = (usable / per_batch) as usize;
    if per_chunk == 0 {
        return Err(bad(format!(
            "one batch row of q is {per_batch} bytes, more than a {}-byte storage binding",
            ctx.max_binding_bytes()
        )));
    }
    let per_chunk = per_chunk.min(ctx.limits.max_compute_workgroups_per_dimension as usize);
    Ok((0..dims.b.div_ceil(per_chunk)).map(|i| (i * per_chunk, ((i + 1) * per_chunk).min(dims.b))).collect())
}

/// out[b,t,h] = Σ_j softmax_j(scale · q[b,t,h]·k[b,j]) v[b,j];  lse[b,t,h] = ln Σ_j exp(scale · q·k_j)
/// over the keys t − window ≤ j ≤ t of KV head h / (H / Hkv).
pub fn attention_forward(
    s: &mut Stream<'_>,
    out: &GpuTensor,
    lse: &GpuTensor,
    q: &GpuTensor,
    k: &GpuTensor,
    v: &GpuTensor,
    shape: &AttnShape,
) -> Result<()> {
    let dims = check_dims(shape)?;
    let AttnShape { t, h, hkv, d, .. } = dims;
    check_storage("out", out, dims.q_len(), true)?;
    check_tensor("lse", lse, dims.lse_len(), false)?;
    check_tensor("q", q, dims.q_len(), true)?;
    check_tensor("k", k, dims.kv_len(), true)?;
    check_storage("v", v, dims.kv_len(), true)?;
    check_aliasing(&[("out", out), ("lse", lse)], &[("q", q), ("k", k), ("v", v)])?;
    let ctx = s.ctx;
    let plan = AttnPlan::for_shape(ctx, &dims);
    let (kernel, pipeline, groups_x) = plan.pipeline(ctx, AttnPass::Forward, &dims, v.dtype(), out.dtype())?;
    let chunks = batch_chunks(ctx, &dims)?;
    let (qb, kb, lb) = (t * h * d, t * hkv * d, t * h);
    for (b0, b1) in chunks {
        let wq = ctx.window(q, b0 * qb, b1 * qb)?;
        let wk = ctx.window(k, b0 * kb, b1 * kb)?;
        let wv = ctx.window(v, b0 * kb, b1 * kb)?;
        let wo = ctx.window(out, b0 * qb, b1 * qb)?;
        let wl = ctx.window(lse, b0 * lb, b1 * lb)?;
        let params = AttnParams {
            off_q: wq.elem_offset,
            off_k: wk.elem_offset,
            off_v: wv.elem_offset,
            off_o: wo.elem_offset,
            off_lse: wl.elem_offset,
            ..params(&dims)
        };
        let groups = [groups_x, hkv as u32, (b1 - b0) as u32];
        let dispatch = ctx.dispatch(kernel, pipeline.clone(), &[wq, wk, wv, wo, wl], &params, groups)?;
        s.push(dispatch);
    }
    Ok(())
}

fn params(dims: &AttnShape) -> AttnParams {
    AttnParams {
        t: dims.t as u32,
        h: dims.h as u32,
        hkv: dims.hkv as u32,
        // Any window ≥ T − 1 is plain causal; clamping keeps j + window inside u32 in the shader.
        window: dims.window.min(dims.t) as u32,
        scale: dims.scale,
        one: 1,
        ..Default::default()
    }
}

/// Gradients of q, k, v (written, not accumulated):
/// p_tj = exp(scale·q_t·k_j − lse_t), Δ_t = dout_t·out_t, ds_tj = p_tj (dout_t·v_j − Δ_t),
/// dq_t = scale Σ_j ds_tj k_j,  dk_j = scale Σ_t ds_tj q_t,  dv_j = Σ_t p_tj dout_t,
/// with dk and dv summed over the query heads that share a KV head. Δ (B·T·H floats) is the
/// stream's scratch ([`attention_backward_scratch_len`]).
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    s: &mut Stream<'_>,
    dq: &GpuTensor,
    dk: &GpuTensor,
    dv: &GpuTensor,
    dout: &GpuTensor,
    q: &GpuTensor,
    k: &GpuTensor,
    v: &GpuTensor,
    out: &GpuTensor,
    lse: &GpuTensor,
    shape: &AttnShape,
) -> Result<()> {
    const OP: &str = "attention_backward";
    let dims = check_dims(shape)?;
    let AttnShape { t, h, hkv, d, .. } = dims;
    check_tensor("dq", dq, dims.q_len(), true)?;
    check_tensor("dk", dk, dims.kv_len(), true)?;
    check_tensor("dv", dv, dims.kv_len(), true)?;
    check_tensor("dout", dout, dims.q_len(), true)?;
    check_tensor("q", q, dims.q_len(), true)?;
    check_tensor("k", k, dims.kv_len(), true)?;
    check_storage("v", v, dims.kv_len(), true)?;
    check_storage("out", out, dims.q_len(), true)?;
    check_tensor("lse", lse, dims.lse_len(), false)?;
    let ctx = s.ctx;
    let plan = AttnPlan::for_shape(ctx, &dims);
    // Pipelines first: an f16 v or out the plan cannot read is refused before the scratch is taken.
    let (k_dq, p_dq, x_dq) = plan.pipeline(ctx, AttnPass::BackwardDq, &dims, v.dtype(), out.dtype())?;
    let (k_kv, p_kv, x_kv) = plan.pipeline(ctx, AttnPass::BackwardDkdv, &dims, v.dtype(), out.dtype())?;
    let inputs = [("dout", dout), ("q", q), ("k", k), ("v", v), ("out", out), ("lse", lse)];
    check_aliasing(&[("dq", dq), ("dk", dk), ("dv", dv)], &inputs)?;
    // Refuse bad input before taking (or, without a workspace, allocating) the scratch.
    s.check_scratch(OP, dims.lse_len())?;
    let delta = &s.scratch(OP, dims.lse_len())?;
    // dq pass: writes dq and delta; dk/dv pass: writes dk and dv, reads delta.
    check_aliasing(&[("dq", dq), ("delta", delta), ("dk", dk), ("dv", dv)], &inputs)?;
    check_aliasing(&[("dk", dk), ("dv", dv)], &[("delta", delta)])?;
    let chunks = batch_chunks(ctx, &dims)?;
    let (qb, kb, lb) = (t * h * d, t * hkv * d, t * h);
    // All dq dispatches first, so every chunk's Δ exists before any dk/dv dispatch reads it (each
    // chunk only reads its own rows, but this keeps the ordering argument trivial).
    // The windows both passes bind for a chunk of batches: q, k, v, dout, lse, Δ.
    let common = |b0: usize, b1: usize| -> Result<[Window<'_>; 6]> {
        Ok([
            ctx.window(q, b0 * qb, b1 * qb)?,
            ctx.window(k, b0 * kb, b1 * kb)?,
            ctx.window(v, b0 * kb, b1 * kb)?,
            ctx.window(dout, b0 * qb, b1 * qb)?,
            ctx.window(lse, b0 * lb, b1 * lb)?,
            ctx.window(delta, b0 * lb, b1 * lb)?,
        ])
    };
    let base = |w: &[Window<'_>; 6]| AttnParams {
        off_q: w[0].elem_offset,
        off_k: w[1].elem_offset,
        off_v: w[2].elem_offset,
        off_o: w[3].elem_offset,
        off_lse: w[4].elem_offset,
        off_delta: w[5].elem_offset,
        ..params(&dims)
    };
    for &(b0, b1) in &chunks {
        let w = common(b0, b1)?;
        let wo = ctx.window(out, b0 * qb, b1 * qb)?;
        let wdq = ctx.window(dq, b0 * qb, b1 * qb)?;
        let p = AttnParams { off_x: wo.elem_offset, off_g0: wdq.elem_offset, ..base(&w) };
        let groups = [x_dq, hkv as u32, (b1 - b0) as u32];
        let [wq, wk, wv, wdo, wl, wd] = w;
        let windows = [wq, wk, wv, wdo, wl, wd, wo, wdq];
        s.push(ctx.dispatch(k_dq, p_dq.clone(), &windows, &p, groups)?);
    }
    for &(b0, b1) in &chunks {
        let w = common(b0, b1)?;
        let wdk = ctx.window(dk, b0 * kb, b1 * kb)?;
        let wdv = ctx.window(dv, b0 * kb, b1 * kb)?;
        let p = AttnParams { off_g0: wdk.elem_offset, off_g1: wdv.elem_offset, ..base(&w) };
        let groups = [x_kv, hkv as u32, (b1 - b0) as u32];
        let [wq, wk, wv, wdo, wl, wd] = w;
        let windows = [wq, wk, wv, wdo, wl, wd, wdk, wdv];
        s.push(ctx.dispatch(k_kv, p_kv.clone(), &windows, &p, groups)?);
    }
    Ok(())
}

/// Keys per block of the decode kernels' first pass (`DEC_BK` in the shader).
const DECODE_BLOCK: usize = 64;

/// f32 of stream scratch [`attention_decode`] uses at up to `max_len` cached positions: one
/// partial row (D values, then m and l padded to a vec4) per query head and block of 64 keys.
/// F32 of stream workspace [`attention_backward`] needs: Δ per query and head.
pub fn attention_backward_scratch_len(shape: &AttnShape) -> usize {
    shape.lse_len()
}

pub fn attention_decode_scratch_len(max_len: usize, h: usize, d: usize) -> usize {
    h * max_len.div_ceil(DECODE_BLOCK).max(1) * (d + 4)
}

/// One decode step: out[h] = Σ_j softmax_j(scale · q[h]·k_cache[j, h/G]) v_cache[j, h/G] for the
/// query at position `pos`, over cache rows pos − window ≤ j ≤ pos (G = H / Hkv). q and out are
/// (H, D); k_cache and v_cache are (rows, Hkv, D) with rows > pos (rows past pos are never read,
/// nor rows before the window). Two passes (per block of 64 keys, then a combine over blocks);
/// the partials take [`attention_decode_scratch_len`]`(pos + 1, h, d)` f32 of stream scratch,
/// which must not share a buffer with an operand. out may not share a buffer with q or the caches.
#[allow(clippy::too_many_arguments)]
pub fn attention_decode(
    s: &mut Stream<'_>,
    out: &GpuTensor,
    q: &GpuTensor,
    k_cache: &GpuTensor,
    v_cache: &GpuTensor,
    pos: usize,
    h: usize,
    hkv: usize,
    d: usize,
    window: usize,
    scale: f32,
) -> Result<()> {
    let dims = check_dims(&AttnShape { b: 1, t: 1, h, hkv, d, window, scale, precision: MatmulPrecision::F32 })?;
    let kvd = hkv * d;
    check_tensor("out", out, dims.q_len(), true)?;
    check_tensor("q", q, dims.q_len(), true)?;
    for (name, cache) in [("k_cache", k_cache), ("v_cache", v_cache)] {
        if !cache.len().is_multiple_of(kvd) || cache.len() / kvd <= pos {
            return Err(bad(format!(
                "{name} has {} elements; position {pos} needs at least {} rows of Hkv·D = {kvd}",
                cache.len(),
                pos + 1
            )));
        }
        check_tensor(name, cache, cache.len(), true)?;
    }
    check_aliasing(&[("out", out)], &[("q", q), ("k_cache", k_cache), ("v_cache", v_cache)])?;
    let lo = pos - pos.min(window);
    let nk = pos + 1 - lo;
    let nb = nk.div_ceil(DECODE_BLOCK);
    let part = s.scratch("attention_decode", attention_decode_scratch_len(nk, h, d))?;
    check_tensor("the partials scratch", &part, part.len(), true)?;
    check_aliasing(
        &[("the partials scratch", &part)],
        &[("q", q), ("k_cache", k_cache), ("v_cache", v_cache), ("out", out)],
    )?;
    let ctx = s.ctx;
    let overrides = Overrides::new().set("D", d as f64);
    let p_part = ctx.pipeline(Kernel::AttentionDecodePartial, &overrides)?;
    let p_comb = ctx.pipeline(Kernel::AttentionDecodeCombine, &overrides)?;
    let align = ctx.storage_align();
    let max = ctx.max_binding_bytes();
    let base = AttnParams { t: nk as u32, h: h as u32, hkv: hkv as u32, scale, one: 1, ..Default::default() };

    let wq = ctx.window(q, 0, q.len())?;
    let wk = k_cache.window(lo * kvd, (pos + 1) * kvd, align, max)?;
    let wv = v_cache.window(lo * kvd, (pos + 1) * kvd, align, max)?;
    let wp = ctx.window(&part, 0, part.len())?;
    let params = AttnParams {
        off_q: wq.elem_offset,
        off_k: wk.elem_offset,
        off_v: wv.elem_offset,
        off_g0: wp.elem_offset,
        ..base
    };
    let groups = [nb as u32, h as u32, 1];
    s.push(ctx.dispatch(Kernel::AttentionDecodePartial, p_part, &[wq, wk, wv, wp], &params, groups)?);

    let wp = ctx.window(&part, 0, part.len())?;
    let wo = ctx.window(out, 0, out.len())?;
    let params = AttnParams { off_o: wo.elem_offset, off_g0: wp.elem_offset, ..base };
    s.push(ctx.dispatch(Kernel::AttentionDecodeCombine, p_comb, &[wp, wo], &params, [h as u32, 1, 1])?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_are_consistent_for_every_head_size() {
        for pass in [AttnPass::Forward, AttnPass::BackwardDq, AttnPass::BackwardDkdv] {
            for d in (4..=MAX_HEAD_DIM).step_by(4) {
                let t = AttnTiles::for_pass(pass, d);
                t.check(pass, d).unwrap_or_else(|e| panic!("{pass:?} D={d}: {e}"));
                // Everything runs on lavapipe's 32 KiB.
                assert!(t.workgroup_bytes(pass, d) <= 32 << 10, "{pass:?} D={d}: {t:?}");
            }
        }
        // The GPT shape's forward: 32×16 tiles, 8 rows × one vec4 column per invocation.
        let f = AttnTiles::for_pass(AttnPass::Forward, 128);
        assert_eq!((f.bq, f.bk, f.o_cg, f.o_tr, f.o_tc), (32, 16, 32, 8, 1));
        assert_eq!(f.workgroup_bytes(AttnPass::Forward, 128), 16 * (32 * 33 + 16 * 33) + 4 * (32 * 16 + 96));
    }
}
