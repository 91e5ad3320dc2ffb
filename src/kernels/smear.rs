//! Launchers for `shaders/smear.wgsl`, mirroring `reference::smear`: nanochat's bigram smear
//! x_t = e_t + λσ(⟨w, e_t[0:24]⟩)·e_{t−1} and its gradient.
//!
//! w (smear_gate.weight, 24) and λ (smear_lambda) are views of the parameter arena; dw and dλ views
//! of the gradient arena (accumulated). The backward keeps two coefficients per row in the stream's
//! scratch: size a model's workspace with [`smear_backward_scratch_len`].

use crate::error::{Error, Result};
use crate::gpu::immediates::immediates;
use crate::gpu::{GpuTensor, Kernel, Overrides};
use crate::kernels::launch::{expect_dims, expect_len, row_chunks_halo, rows_window, whole_window, MAX_GROUPS_PER_DIM};
use crate::kernels::{reduce, Stream};
use crate::model::config::SMEAR_CHANNELS;

const WG: usize = 256;

immediates! {
    /// Matches `SmearParams` in the shader.
    #[derive(Default)]
    pub struct SmearParams {
        rows: u32,
        t_len: u32,
        c: u32,
        row_lo: u32,
        e_shift: u32,
        off_out: u32,
        off_coef: u32,
        off_sdg: u32,
        off_dout: u32,
        off_e: u32,
        off_w: u32,
        off_lambda: u32,
    }
}

fn check(op: &'static str, w: &GpuTensor, lambda: &GpuTensor, b: usize, t: usize, c: usize) -> Result<()> {
    expect_dims(op, &[("b", b), ("t", t), ("c", c)], b * t * c)?;
    if c < SMEAR_CHANNELS {
        return Err(Error::Shape { op, message: format!("the gate reads {SMEAR_CHANNELS} channels; C = {c}") });
    }
    expect_len(op, "w", w, SMEAR_CHANNELS)?;
    expect_len(op, "lambda", lambda, 1)
}

/// out = smear(e): `out_0 = e_0`, `out_t = e_t + λσ(⟨w, e_t[0:24]⟩)·e_{t−1}`, for b sequences of t rows
/// of c. out may not share a buffer with e, w or λ.
#[allow(clippy::too_many_arguments)]
pub fn smear_forward(
    s: &mut Stream<'_>,
    out: &GpuTensor,
    e: &GpuTensor,
    w: &GpuTensor,
    lambda: &GpuTensor,
    b: usize,
    t: usize,
    c: usize,
) -> Result<()> {
    const OP: &str = "smear_forward";
    check(OP, w, lambda, b, t, c)?;
    let rows = b * t;
    expect_len(OP, "out", out, rows * c)?;
    expect_len(OP, "e", e, rows * c)?;
    let ctx = s.ctx;
    let pipeline = ctx.pipeline(Kernel::SmearForward, &Overrides::new().set("WG", WG as f64))?;
    let ww = whole_window(ctx, w, 0, SMEAR_CHANNELS)?;
    let wl = whole_window(ctx, lambda, 0, 1)?;
    for (lo, hi) in row_chunks_halo(ctx, OP, rows, &[c], MAX_GROUPS_PER_DIM, 1)? {
        let e_lo = lo.saturating_sub(1);
        let wo = rows_window(ctx, out, lo, hi, c)?;
        let we = rows_window(ctx, e, e_lo, hi, c)?;
        let params = SmearParams {
            rows: (hi - lo) as u32,
            t_len: t as u32,
            c: c as u32,
            row_lo: lo as u32,
            e_shift: (lo - e_lo) as u32,
            off_out: wo.elem_offset,
            off_e: we.elem_offset,
            off_w: ww.elem_offset,
            off_lambda: wl.elem_offset,
            ..Default::default()
        };
        let groups = [(hi - lo) as u32, 1, 1];
        s.push(ctx.dispatch(Kernel::SmearForward, pipeline.clone(), &[wo, we, ww, wl], &params, groups)?);
    }
    Ok(())
}

/// de (written) = dout + g_{t+1}·dout_{t+1} + ds_t·w (first 24 channels); `dw += Σ_t ds_t·e_t[0:24]`;
/// dλ += Σ_t σ_t·dg_t, with dg_t = ⟨dout_t, e_{t−1}⟩ and ds_t = λσ_t(1 − σ_t)·dg_t. dw (24) and dλ
/// (1) may share a buffer (the gradient arena); no output may share a buffer with an input. Uses
/// `smear_backward_scratch_len(b, t)` f32 of stream scratch.
#[allow(clippy::too_many_arguments)]
pub fn smear_backward(
    s: &mut Stream<'_>,
    de: &GpuTensor,
    dw: &GpuTensor,
    dlambda: &GpuTensor,
    dout: &GpuTensor,
    e: &GpuTensor,
    w: &GpuTensor,
    lambda: &GpuTensor,
    b: usize,
    t: usize,
    c: usize,
) -> Result<()> {
    const OP: &str = "smear_backward";
    check(OP, w, lambda, b, t, c)?;
    let rows = b * t;
    expect_len(OP, "de", de, rows * c)?;
    expect_len(OP, "dw", dw, SMEAR_CHANNELS)?;
    expect_len(OP, "dlambda", dlambda, 1)?;
    expect_len(OP, "dout", dout, rows * c)?;
    expect_len(OP, "e", e, rows * c)?;
    let ctx = s.ctx;
    let scratch = s.scratch(OP, smear_backward_scratch_len(b, t))?;
    let (coef, sdg) = (scratch.view(0, rows), scratch.view(rows, rows));
    let pipeline = ctx.pipeline(Kernel::SmearBackward, &Overrides::new().set("WG", WG as f64))?;
    let ww = whole_window(ctx, w, 0, SMEAR_CHANNELS)?;
    let wl = whole_window(ctx, lambda, 0, 1)?;
    // e is read one row before and one row after the chunk, dout one row after.
    for (lo, hi) in row_chunks_halo(ctx, OP, rows, &[c], MAX_GROUPS_PER_DIM, 2)? {
        let e_lo = lo.saturating_sub(1);
        let end = (hi + 1).min(rows);
        let windows = [
            rows_window(ctx, de, lo, hi, c)?,
            rows_window(ctx, &coef, lo, hi, 1)?,
            rows_window(ctx, &sdg, lo, hi, 1)?,
            rows_window(ctx, dout, lo, end, c)?,
            rows_window(ctx, e, e_lo, end, c)?,
            ww,
            wl,
        ];
        let params = SmearParams {
            rows: (hi - lo) as u32,
            t_len: t as u32,
            c: c as u32,
            row_lo: lo as u32,
            e_shift: (lo - e_lo) as u32,
            off_out: windows[0].elem_offset,
            off_coef: windows[1].elem_offset,
            off_sdg: windows[2].elem_offset,
            off_dout: windows[3].elem_offset,
            off_e: windows[4].elem_offset,
            off_w: ww.elem_offset,
            off_lambda: wl.elem_offset,
        };
        let groups = [(hi - lo) as u32, 1, 1];
        s.push(ctx.dispatch(Kernel::SmearBackward, pipeline.clone(), &windows, &params, groups)?);
    }
    reduce::weighted_cols(s, dw, &coef, e, rows, 1, SMEAR_CHANNELS, c, true)?;
    reduce::sum_short(s, dlambda, &sdg, 1.0, true)
}

/// F32 of stream scratch [`smear_backward`] needs: two coefficients per row.
pub fn smear_backward_scratch_len(b: usize, t: usize) -> usize {
    2 * b * t
}
