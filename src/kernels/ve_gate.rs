//! Launchers for `shaders/ve_gate.wgsl`, mirroring `reference::ve_gate`: the value-embedding gate
//! v += 3σ(⟨wg[h], u[n, 0:12]⟩)·ve and its gradient.
//!
//! wg is a view of the parameter arena; dwg a view of the gradient arena (accumulated). The
//! backward keeps one coefficient per (token, KV head) in the stream's scratch: size a model's
//! workspace with [`ve_gate_backward_scratch_len`].

use crate::error::{Error, Result};
use crate::gpu::immediates::immediates;
use crate::gpu::{GpuTensor, Kernel, Overrides};
use crate::kernels::launch::{expect_dims, expect_len, row_chunks, rows_window, whole_window, MAX_GROUPS_PER_DIM};
use crate::kernels::{reduce, Stream, MAX_GRID};
use crate::model::config::VE_GATE_CHANNELS;

const WG: usize = 256;

immediates! {
    /// Matches `VeGateParams` in the shader: shapes, then the element offsets of bindings 0..6.
    #[derive(Default)]
    pub struct VeGateParams {
        n: u32,
        c: u32,
        hkv: u32,
        d: u32,
        off: [u32; 6],
        _pad: [u32; 2],
    }
}

fn check(op: &'static str, n: usize, c: usize, hkv: usize, d: usize) -> Result<()> {
    expect_dims(op, &[("n", n), ("c", c), ("hkv", hkv), ("d", d)], (n * c).max(n * hkv * d))?;
    if c < VE_GATE_CHANNELS {
        return Err(Error::Shape { op, message: format!("the gate reads {VE_GATE_CHANNELS} channels of u; C = {c}") });
    }
    Ok(())
}

/// Invocations per (token, head) row of d in the backward: a power of two giving ~4 elements each.
fn threads_per_row(d: usize) -> usize {
    d.div_ceil(4).next_power_of_two().min(WG)
}

/// v[n, h, :] += 3σ(⟨wg[h, :], u[n, 0:12]⟩)·ve[n, h, :], in place. v, ve: (n, hkv, d); u: (n, c);
/// wg: (hkv, 12). v may not share a buffer with u, ve or wg.
#[allow(clippy::too_many_arguments)]
pub fn ve_gate_forward(
    s: &mut Stream<'_>,
    v: &GpuTensor,
    u: &GpuTensor,
    ve: &GpuTensor,
    wg: &GpuTensor,
    n: usize,
    c: usize,
    hkv: usize,
    d: usize,
) -> Result<()> {
    const OP: &str = "ve_gate_forward";
    check(OP, n, c, hkv, d)?;
    expect_len(OP, "v", v, n * hkv * d)?;
    expect_len(OP, "u", u, n * c)?;
    expect_len(OP, "ve", ve, n * hkv * d)?;
    expect_len(OP, "wg", wg, hkv * VE_GATE_CHANNELS)?;
    let ctx = s.ctx;
    let pipeline = ctx.pipeline(Kernel::VeGateForward, &Overrides::new().set("WG", WG as f64))?;
    let ww = whole_window(ctx, wg, 0, hkv * VE_GATE_CHANNELS)?;
    for (lo, hi) in row_chunks(ctx, OP, n, &[hkv * d, c], usize::MAX)? {
        let wv = rows_window(ctx, v, lo, hi, hkv * d)?;
        let wu = rows_window(ctx, u, lo, hi, c)?;
        let wve = rows_window(ctx, ve, lo, hi, hkv * d)?;
        let params = VeGateParams {
            n: (hi - lo) as u32,
            c: c as u32,
            hkv: hkv as u32,
            d: d as u32,
            off: [wv.elem_offset, wu.elem_offset, wve.elem_offset, ww.elem_offset, 0, 0],
            ..Default::default()
        };
        let groups = ((hi - lo) * hkv * d).div_ceil(WG).min(MAX_GRID) as u32;
        s.push(ctx.dispatch(Kernel::VeGateForward, pipeline.clone(), &[wv, wu, wve, ww], &params, [groups, 1, 1])?);
    }
    Ok(())
}

/// dve = g·dv (written); with ds = ⟨dv_h, ve_h⟩·3σ(1 − σ): `du[n, 0:12] += Σ_h ds·wg[h]` and
/// `dwg[h] += Σ_n ds·u[n, 0:12]`. dve, du and dwg may not share a buffer with an input (dve and du
/// may share one). Uses `ve_gate_backward_scratch_len(n, hkv)` f32 of stream scratch.
#[allow(clippy::too_many_arguments)]
pub fn ve_gate_backward(
    s: &mut Stream<'_>,
    dve: &GpuTensor,
    du: &GpuTensor,
    dwg: &GpuTensor,
    dv: &GpuTensor,
    u: &GpuTensor,
    ve: &GpuTensor,
    wg: &GpuTensor,
    n: usize,
    c: usize,
    hkv: usize,
    d: usize,
) -> Result<()> {
    const OP: &str = "ve_gate_backward";
    check(OP, n, c, hkv, d)?;
    let kv = hkv * d;
    expect_len(OP, "dve", dve, n * kv)?;
    expect_len(OP, "du", du, n * c)?;
    expect_len(OP, "dwg", dwg, hkv * VE_GATE_CHANNELS)?;
    expect_len(OP, "dv", dv, n * kv)?;
    expect_len(OP, "u", u, n * c)?;
    expect_len(OP, "ve", ve, n * kv)?;
    expect_len(OP, "wg", wg, hkv * VE_GATE_CHANNELS)?;
    let ctx = s.ctx;
    let ds = s.scratch(OP, ve_gate_backward_scratch_len(n, hkv))?;
    let tpr = threads_per_row(d);
    let rows_per_group = WG / tpr;
    let o = Overrides::new().set("WG", WG as f64).set("TPR", tpr as f64);
    let p_rows = ctx.pipeline(Kernel::VeGateBackward, &o)?;
    let ww = whole_window(ctx, wg, 0, hkv * VE_GATE_CHANNELS)?;
    // Token chunks whose (token, head) rows fill at most 65,535 workgroups.
    let max_tok = (MAX_GROUPS_PER_DIM * rows_per_group / hkv).max(1);
    for (lo, hi) in row_chunks(ctx, OP, n, &[kv, hkv, c], max_tok)? {
        let windows = [
            rows_window(ctx, dve, lo, hi, kv)?,
            rows_window(ctx, &ds, lo, hi, hkv)?,
            rows_window(ctx, dv, lo, hi, kv)?,
            rows_window(ctx, u, lo, hi, c)?,
            rows_window(ctx, ve, lo, hi, kv)?,
            ww,
        ];
        let mut params =
            VeGateParams { n: (hi - lo) as u32, c: c as u32, hkv: hkv as u32, d: d as u32, ..Default::default() };
        for (o, w) in params.off.iter_mut().zip(&windows) {
            *o = w.elem_offset;
        }
        let groups = ((hi - lo) * hkv).div_ceil(rows_per_group) as u32;
        s.push(ctx.dispatch(Kernel::VeGateBackward, p_rows.clone(), &windows, &params, [groups, 1, 1])?);
    }
    let p_du = ctx.pipeline(Kernel::VeGateBackwardDu, &Overrides::new().set("WG", WG as f64))?;
    for (lo, hi) in row_chunks(ctx, OP, n, &[c, hkv], usize::MAX)? {
        let windows = [rows_window(ctx, du, lo, hi, c)?, rows_window(ctx, &ds, lo, hi, hkv)?, ww];
        let mut params =
            VeGateParams { n: (hi - lo) as u32, c: c as u32, hkv: hkv as u32, d: d as u32, ..Default::default() };
        for (o, w) in params.off.iter_mut().zip(&windows) {
            *o = w.elem_offset;
        }
        let groups = ((hi - lo) * VE_GATE_CHANNELS).div_ceil(WG).min(MAX_GRID) as u32;
        s.push(ctx.dispatch(Kernel::VeGateBackwardDu, p_du.clone(), &windows, &params, [groups, 1, 1])?);
    }
    reduce::weighted_cols(s, dwg, &ds, u, n, hkv, VE_GATE_CHANNELS, c, true)
}

/// F32 of stream scratch [`ve_gate_backward`] needs: one coefficient per (token, KV head).
pub fn ve_gate_backward_scratch_len(n: usize, hkv: usize) -> usize {
    n * hkv
}
