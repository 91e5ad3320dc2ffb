//! The validation suite's rows, one file per kernel family (`cases/X.rs` checks `kernels::X`
//! against `reference::X`; `optimizer.rs` the optimizer that composes them), in the order
//! [`run`] gives. Each family's `cases(ctx, r, …)` records its rows through the [`Runner`].
//!
//! Model ops (cross-entropy, RMSNorm, embedding, rotary embeddings, ReLU², the residual lambda mix
//! and backout, smear and the value-embedding gate): one row per output per kernel direction, at a
//! tiny shape, ragged shapes (multiples of no workgroup size, views at odd offsets) and the model's
//! shapes (C = 768 over B·T = 2048 rows, heads of D = 128 and 64, vocab 32,768 and 1000 padded to
//! 1024), and on the small-binding context, shapes that force every chunked path.
//!
//! Inputs look like the model's: normalised activations O(1) (rows at magnitudes from 0.03 to 30
//! where a norm divides them out), parameters moved off their initial values (zero-initialised
//! lambdas would hide a wrong gradient), logits spread enough that the softcap saturates, token ids
//! skewed so that some tokens repeat hundreds of times. Written outputs are NaN before each run;
//! accumulated outputs start random and the reference accumulates onto the same values.
//!
//! Optimizer rows compare one step from the GPU's own f32 state: the f64 reference is run on the
//! state the kernel started from, so an error never compounds across steps and each row measures
//! exactly one step's rounding (the acceptance criterion is "per step").

mod adamw;
mod argmax;
mod attention;
mod cast;
mod cross_entropy;
mod elementwise;
mod embedding;
mod grad_norm;
mod matmul;
mod muon;
mod optimizer;
mod reduce;
mod relu2;
mod residual;
mod rmsnorm;
mod rope;
mod smear;
mod ve_gate;

use crate::error::Result;
use crate::gpu::{GpuContext, GpuTensor};
use crate::kernels::Stream;
use crate::util::Rng;
use crate::validate::suite::Runner;
use std::time::Instant;

/// Every row, on the normal context `ctx` and, for the chunked paths, on `small` (whose storage
/// binding limit is lowered to a few KiB). The order is the table's.
pub(crate) fn run(ctx: &GpuContext, small: &GpuContext, r: &mut Runner<'_>) -> Result<()> {
    matmul::cases(ctx, r, false)?;
    elementwise::cases(ctx, r, false)?;
    reduce::cases(ctx, r, false)?;
    cast::cases(ctx, r, false)?;
    attention::cases(ctx, r, false)?;

    matmul::cases(small, r, true)?;
    elementwise::cases(small, r, true)?;
    reduce::cases(small, r, true)?;
    cast::cases(small, r, true)?;
    for (c, chunked) in [(ctx, false), (small, true)] {
        cross_entropy::cases(c, r, chunked)?;
        argmax::cases(c, r, chunked)?;
        rmsnorm::cases(c, r, chunked)?;
        embedding::cases(c, r, chunked)?;
        rope::cases(c, r, chunked)?;
        relu2::cases(c, r, chunked)?;
        residual::cases(c, r, chunked)?;
        ve_gate::cases(c, r, chunked)?;
        smear::cases(c, r, chunked)?;
    }
    attention::cases(small, r, true)?;

    adamw::cases(ctx, r, "adamw")?;
    adamw::cases(small, r, "adamw chunked")?;
    grad_norm::cases(ctx, r, "grad_norm")?;
    grad_norm::cases(small, r, "grad_norm chunked")?;
    muon::cases(ctx, r, false)?;
    muon::cases(small, r, true)?;
    optimizer::cases(ctx, r)?;
    Ok(())
}

fn kernel_name(base: &str, chunked: bool) -> String {
    if chunked {
        format!("{base} chunked")
    } else {
        base.to_string()
    }
}

/// Record the launches `f` makes on a fresh stream, run them, and return the seconds it took.
fn timed(ctx: &GpuContext, f: impl FnOnce(&mut Stream<'_>) -> Result<()>) -> Result<f64> {
    let t0 = Instant::now();
    let mut s = Stream::new(ctx);
    f(&mut s)?;
    s.run()?;
    Ok(t0.elapsed().as_secs_f64())
}

/// Rows of `c` uniform values in [−1, 1], each row scaled by 10^u, u uniform in [−decades,
/// decades].
fn rows_at_scales(rng: &mut Rng, rows: usize, c: usize, decades: f32) -> Vec<f32> {
    let mut v = Vec::with_capacity(rows * c);
    for _ in 0..rows {
        let k = 10f32.powf(rng.uniform_f32(-decades, decades));
        v.extend((0..c).map(|_| k * rng.uniform_f32(-1.0, 1.0)));
    }
    v
}

fn max_abs(v: &[f32]) -> f64 {
    v.iter().fold(0.0f64, |m, &x| m.max((x as f64).abs()))
}

/// Roundings a term of a sum goes through when `len` terms are strided over `lanes` invocations
/// (a power of two) and the lanes' partials combined by a tree: the kernels' reduction shape.
fn tree_chain(len: usize, lanes: usize) -> usize {
    len.div_ceil(lanes) + lanes.trailing_zeros() as usize
}

/// Invocations per row of the row-reduction kernels (rmsnorm, ve_gate backward): mirrors their
/// launchers, a power of two giving each about 4 elements, at most 256.
fn lanes_per_row(len: usize) -> usize {
    len.div_ceil(4).next_power_of_two().min(256)
}

/// Token ids in [0, vocab), skewed towards small ids (u³ · vocab), so low ids repeat often.
fn skewed_tokens(rng: &mut Rng, n: usize, vocab: usize) -> Vec<i32> {
    (0..n).map(|_| ((rng.uniform().powi(3) * vocab as f64) as usize).min(vocab - 1) as i32).collect()
}

fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

fn f64s(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

fn f32s(x: &[f64]) -> Vec<f32> {
    x.iter().map(|&v| v as f32).collect()
}

/// `x / scale`, elementwise.
fn unit(x: &[f32], scale: f64) -> Vec<f32> {
    let s = scale.max(f64::MIN_POSITIVE);
    x.iter().map(|&v| (v as f64 / s) as f32).collect()
}

fn zero_guard(ctx: &GpuContext) -> Result<GpuTensor> {
    ctx.upload("guard", &[0.0])
}

/// A guard holding the count 1 (u32 bits).
fn set_guard(ctx: &GpuContext) -> Result<GpuTensor> {
    ctx.upload("guard", &[f32::from_bits(1)])
}

/// Upload, allowing a view that starts `pad` elements into its buffer (to test odd offsets).
fn upload_at(ctx: &GpuContext, label: &str, data: &[f32], pad: usize) -> Result<GpuTensor> {
    let t = ctx.tensor(label, data.len() + pad)?;
    let v = t.view(pad, data.len());
    ctx.write(&v, data)?;
    Ok(v)
}

/// As [`upload_at`], stored as f16.
fn upload_at_f16(ctx: &GpuContext, label: &str, data: &[f32], pad: usize) -> Result<GpuTensor> {
    // f16 views written from the host must start on a 4-byte boundary: round the pad up to even.
    let pad = pad.next_multiple_of(2);
    let t = ctx.tensor_f16(label, data.len() + pad + 1)?;
    let v = t.view(pad, data.len());
    ctx.write(&v, data)?;
    Ok(v)
}
