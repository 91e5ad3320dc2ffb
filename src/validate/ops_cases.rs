//! Validation cases for the model ops other than matmul and attention: cross-entropy, RMSNorm,
//! embedding, rotary embeddings, ReLU², the residual lambda mix and backout, smear and the
//! value-embedding gate. One row per output per kernel direction, at a tiny shape, ragged shapes
//! (multiples of no workgroup size, views at odd offsets) and the model's shapes (C = 768 over
//! B·T = 2048 rows, heads of D = 128 and 64, vocab 32,768 and 1000 padded to 1024), and on the
//! small-binding context, shapes that force every chunked path.
//!
//! Inputs look like the model's: normalised activations O(1) (rows at magnitudes from 0.03 to 30
//! where a norm divides them out), parameters moved off their initial values (zero-initialised
//! lambdas would hide a wrong gradient), logits spread enough that the softcap saturates, token ids
//! skewed so that some tokens repeat hundreds of times. Written outputs are NaN before each run;
//! accumulated outputs start random and the reference accumulates onto the same values.

use super::suite::{upload_at, Runner};
use super::{
    activation_tolerance, cross_entropy_grad_tolerance, cross_entropy_loss_tolerance, embedding_backward_tolerance,
    exact_tolerance, gate_tolerance, residual_tolerance, rmsnorm_backward_tolerance, rmsnorm_forward_tolerance,
    rope_tolerance, scalar_grad_tolerance,
};
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::kernels::embedding::{EmbeddingBuckets, GpuEmbeddingBuckets};
use crate::kernels::{activation, crossentropy, embedding, residual, rmsnorm, rope, smear, vegate, Stream};
use crate::model::config::{QK_SCALE, SMEAR_CHANNELS, SOFTCAP, VE_GATE_CHANNELS};
use crate::reference;
use crate::util::Rng;
use std::time::Instant;

/// All op families on the normal context, then their chunked paths on `small` (whose storage
/// binding limit is lowered to a few KiB).
pub(crate) fn run(ctx: &GpuContext, small: &GpuContext, r: &mut Runner<'_>) -> Result<()> {
    for (c, chunked) in [(ctx, false), (small, true)] {
        cross_entropy_cases(c, r, chunked)?;
        rmsnorm_cases(c, r, chunked)?;
        embedding_cases(c, r, chunked)?;
        rope_cases(c, r, chunked)?;
        relu2_cases(c, r, chunked)?;
        residual_cases(c, r, chunked)?;
        ve_gate_cases(c, r, chunked)?;
        smear_cases(c, r, chunked)?;
    }
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

/// Invocations per row of the row-reduction kernels (rmsnorm, vegate backward): mirrors their
/// launchers, a power of two giving each about 4 elements, at most 256.
fn lanes_per_row(len: usize) -> usize {
    len.div_ceil(4).next_power_of_two().min(256)
}

/// Token ids in [0, vocab), skewed towards small ids (u³ · vocab), so low ids repeat often.
fn skewed_tokens(rng: &mut Rng, n: usize, vocab: usize) -> Vec<i32> {
    (0..n).map(|_| ((rng.uniform().powi(3) * vocab as f64) as usize).min(vocab - 1) as i32).collect()
}

// ---- cross-entropy ------------------------------------------------------------------------------

struct CeCase {
    rows: usize,
    v: usize,
    vp: usize,
    /// Fraction of targets set to −1 (1.0: the all-ignored micro-batch).
    ignore: f64,
    grad: bool,
    pad: usize,
}

fn cross_entropy_cases(ctx: &GpuContext, r: &mut Runner<'_>, chunked: bool) -> Result<()> {
    let kernel = kernel_name("cross_entropy", chunked);
    if !r.wants(&kernel) {
        return Ok(());
    }
    let c = |rows, v, vp, ignore, grad, pad| CeCase { rows, v, vp, ignore, grad, pad };
    let cases = if chunked {
        vec![c(40, 1000, 1024, 0.1, true, 0), c(23, 3000, 3008, 0.0, true, 3)]
    } else {
        vec![
            c(1, 1, 1, 0.0, true, 0),
            c(1, 5, 64, 0.0, true, 0),
            c(7, 300, 320, 0.2, true, 5),
            c(33, 1000, 1024, 0.1, true, 0),
            c(16, 1000, 1024, 1.0, true, 0),
            c(16, 512, 512, 0.0, true, 0),
            c(24, 4096, 4096, 0.05, true, 0),
            c(64, 32768, 32768, 0.05, true, 0),
            c(20, 32768, 32768, 0.0, false, 0),
        ]
    };
    for cs in cases {
        let (rows, v, vp) = (cs.rows, cs.v, cs.vp);
        let mut shape = format!("{rows}x{v}/{vp}");
        if cs.ignore == 1.0 {
            shape += " all ignored";
        } else if cs.ignore > 0.0 {
            shape += " some -1";
        }
        if !cs.grad {
            shape += " loss only";
        }
        if cs.pad > 0 {
            shape += " +off";
        }
        let mut rng = r.rng(&format!("{kernel} {shape}"));
        // Logits N(0, 4²) with 1% of them far out (|z| up to 60) where the softcap saturates; the
        // padding columns hold NaN, which the kernel must never let into a loss or gradient.
        let mut z = vec![f32::NAN; rows * vp];
        for row in 0..rows {
            for col in 0..v {
                let far = rng.uniform() < 0.01;
                z[row * vp + col] = if far { rng.uniform_f32(-60.0, 60.0) } else { (rng.normal() * 4.0) as f32 };
            }
        }
        let targets: Vec<i32> =
            (0..rows).map(|_| if rng.uniform() < cs.ignore { -1 } else { (rng.uniform() * v as f64) as i32 }).collect();
        let valid = targets.iter().filter(|&&t| t >= 0).count();
        // 1/(valid targets), as the trainer computes it: +inf for the all-ignored micro-batch, which
        // must still give zero gradients (ignored rows never multiply by it), not NaN.
        let grad_scale = 1.0 / valid as f32;
        let mut want_loss = vec![0.0f32; rows];
        let mut want_dz = vec![0.0f32; rows * vp];
        reference::crossentropy::softcap_cross_entropy(
            &mut want_loss,
            cs.grad.then_some(want_dz.as_mut_slice()),
            &z,
            &targets,
            rows,
            v,
            vp,
            SOFTCAP,
            grad_scale,
        );
        let losses = upload_at(ctx, "losses", &vec![f32::NAN; rows], cs.pad)?;
        let logits = upload_at(ctx, "logits", &z, cs.pad)?;
        let tt = ctx.upload_i32("targets", &targets)?;
        let gs = ctx.upload("step scalars", &[grad_scale])?;
        let secs = timed(ctx, |s| {
            crossentropy::softcap_cross_entropy(s, &losses, cs.grad, &logits, &tt, rows, v, vp, SOFTCAP, &gs)
        })?;
        r.record(
            &kernel,
            "losses",
            &shape,
            &ctx.read(&losses)?,
            &want_loss,
            cross_entropy_loss_tolerance(v, SOFTCAP),
            secs,
        );
        if cs.grad {
            let tol = cross_entropy_grad_tolerance(v, SOFTCAP, grad_scale.min(1.0));
            r.record(&kernel, "dlogits", &shape, &ctx.read(&logits)?, &want_dz, tol, secs);
        } else {
            // Loss only: the logits must come back untouched (NaN padding included).
            r.record(&kernel, "logits kept", &shape, &ctx.read(&logits)?, &z, exact_tolerance(), secs);
        }
    }
    Ok(())
}

// ---- rmsnorm ------------------------------------------------------------------------------------

fn rmsnorm_cases(ctx: &GpuContext, r: &mut Runner<'_>, chunked: bool) -> Result<()> {
    let fwd = kernel_name("rmsnorm_forward", chunked);
    let bwd = kernel_name("rmsnorm_backward", chunked);
    if !r.wants(&fwd) && !r.wants(&bwd) {
        return Ok(());
    }
    // (rows, c, scale, accumulate, pad)
    let cases: Vec<(usize, usize, f32, bool, usize)> = if chunked {
        vec![(300, 100, 1.0, false, 0), (1000, 64, QK_SCALE, true, 3)]
    } else {
        vec![
            (1, 1, 1.0, false, 0),
            (1, 768, 1.0, false, 0),
            (37, 100, 1.0, true, 5),
            (2048, 768, 1.0, false, 0),
            (2048, 768, 1.0, true, 0),
            (2048 * 6, 128, QK_SCALE, false, 0),
            (2048 * 4, 64, QK_SCALE, true, 0),
            (333, 130, QK_SCALE, false, 7),
        ]
    };
    for (rows, c, scale, acc, pad) in cases {
        let shape =
            format!("{rows}x{c}{}{}", if scale != 1.0 { " x1.2" } else { "" }, if pad > 0 { " +off" } else { "" });
        let mut rng = r.rng(&format!("rmsnorm {chunked} {shape} {acc}"));
        // Forward: rows from 0.03 to 30 in magnitude, so rstd spans three decades.
        let inp = rows_at_scales(&mut rng, rows, c, 1.5);
        if r.wants(&fwd) && !acc {
            let mut want_out = vec![0.0f32; rows * c];
            let mut want_rstd = vec![0.0f32; rows];
            reference::rmsnorm::rmsnorm_forward(&mut want_out, &mut want_rstd, &inp, rows, c, scale);
            let ti = upload_at(ctx, "inp", &inp, pad)?;
            let to = upload_at(ctx, "out", &vec![f32::NAN; rows * c], pad + 1)?;
            let tr = upload_at(ctx, "rstd", &vec![f32::NAN; rows], pad)?;
            let secs = timed(ctx, |s| rmsnorm::rmsnorm_forward(s, &to, &tr, &ti, rows, c, scale))?;
            r.record(&fwd, "out", &shape, &ctx.read(&to)?, &want_out, rmsnorm_forward_tolerance(c), secs);
            r.record(&fwd, "rstd", &shape, &ctx.read(&tr)?, &want_rstd, rmsnorm_forward_tolerance(c), secs);
        }
        if r.wants(&bwd) {
            // Backward: rows within a factor 2 of unit scale (the forward covers the range of rstd;
            // the backward's error is relative to k = scale·rstd, see its tolerance).
            let inp = rows_at_scales(&mut rng, rows, c, 0.3);
            let mut rstd = vec![0.0f32; rows];
            reference::rmsnorm::rmsnorm_forward(&mut vec![0.0f32; rows * c], &mut rstd, &inp, rows, c, scale);
            let dout = rng.vec_uniform(rows * c, -1.0, 1.0);
            let dinp0 = if acc { rng.vec_uniform(rows * c, -1.0, 1.0) } else { vec![f32::NAN; rows * c] };
            let mut want = dinp0.clone();
            reference::rmsnorm::rmsnorm_backward(&mut want, &dout, &inp, &rstd, rows, c, scale, acc);
            let ti = upload_at(ctx, "inp", &inp, pad)?;
            let td = upload_at(ctx, "dinp", &dinp0, pad + 2)?;
            let tdo = upload_at(ctx, "dout", &dout, pad)?;
            let tr = upload_at(ctx, "rstd", &rstd, pad)?;
            let secs = timed(ctx, |s| rmsnorm::rmsnorm_backward(s, &td, &tdo, &ti, &tr, rows, c, scale, acc))?;
            let variant = if acc { "dinp +=" } else { "dinp" };
            let tol = rmsnorm_backward_tolerance(c, scale as f64 * max_abs(&rstd));
            r.record(&bwd, variant, &shape, &ctx.read(&td)?, &want, tol, secs);
        }
    }
    Ok(())
}

// ---- embedding ----------------------------------------------------------------------------------

fn embedding_cases(ctx: &GpuContext, r: &mut Runner<'_>, chunked: bool) -> Result<()> {
    let fwd = kernel_name("embedding_forward", chunked);
    let bwd = kernel_name("embedding_backward", chunked);
    if !r.wants(&fwd) && !r.wants(&bwd) {
        return Ok(());
    }
    // (n, vocab, w, pad)
    let cases: Vec<(usize, usize, usize, usize)> = if chunked {
        vec![(100, 500, 100, 0), (20, 37, 700, 3)]
    } else {
        vec![(1, 1, 1, 0), (37, 50, 100, 5), (2048, 32768, 768, 0), (4096, 4096, 256, 0), (2048, 1000, 64, 3)]
    };
    for (n, vocab, w, pad) in cases {
        let shape = format!("N={n} {vocab}x{w}{}", if pad > 0 { " +off" } else { "" });
        let mut rng = r.rng(&format!("embedding {chunked} {shape}"));
        let idx = skewed_tokens(&mut rng, n, vocab);
        let ti = ctx.upload_i32("idx", &idx)?;
        if r.wants(&fwd) {
            // wte init scale (N(0, 0.8²)); uniform is as good a test and much cheaper to draw.
            let table = rng.vec_uniform(vocab * w, -1.4, 1.4);
            let mut want = vec![0.0f32; n * w];
            reference::embedding::embedding_forward(&mut want, &table, &idx, n, w);
            let tt = upload_at(ctx, "table", &table, pad)?;
            let to = upload_at(ctx, "out", &vec![f32::NAN; n * w], pad + 1)?;
            let secs = timed(ctx, |s| embedding::embedding_forward(s, &to, &tt, &ti, n, w))?;
            r.record(&fwd, "out", &shape, &ctx.read(&to)?, &want, exact_tolerance(), secs);
        }
        if r.wants(&bwd) {
            let dout = rng.vec_uniform(n * w, -1.0, 1.0);
            let dtable0 = rng.vec_uniform(vocab * w, -1.0, 1.0);
            let mut want = dtable0.clone();
            reference::embedding::embedding_backward(&mut want, &dout, &idx, n, w);
            let buckets = EmbeddingBuckets::new(&idx);
            let longest = buckets.starts.windows(2).map(|p| (p[1] - p[0]) as usize).max().unwrap_or(0);
            let gb = GpuEmbeddingBuckets::upload(ctx, &buckets)?;
            let td = upload_at(ctx, "dtable", &dtable0, pad)?;
            let tdo = upload_at(ctx, "dout", &dout, pad + 2)?;
            let secs = timed(ctx, |s| embedding::embedding_backward(s, &td, &tdo, &gb, n, w))?;
            let variant = format!("dtable += ({longest} max)");
            let tol = embedding_backward_tolerance(longest, max_abs(&dout));
            r.record(&bwd, &variant, &shape, &ctx.read(&td)?, &want, tol, secs);
        }
    }
    Ok(())
}

// ---- rope ---------------------------------------------------------------------------------------

fn rope_cases(ctx: &GpuContext, r: &mut Runner<'_>, chunked: bool) -> Result<()> {
    let fwd = kernel_name("rope_forward", chunked);
    let bwd = kernel_name("rope_backward", chunked);
    if !r.wants(&fwd) && !r.wants(&bwd) {
        return Ok(());
    }
    // (n, t_len, pos0, nh, d, pad)
    let cases: Vec<(usize, usize, usize, usize, usize, usize)> = if chunked {
        vec![(300, 100, 0, 2, 64, 0), (150, 50, 7, 3, 130, 1)]
    } else {
        vec![
            (1, 1, 0, 1, 2, 0),
            (111, 37, 5, 3, 64, 3),
            (2048, 1024, 0, 6, 128, 0),
            (2048, 2048, 0, 1, 128, 0),
            (512, 256, 1000, 4, 64, 0),
        ]
    };
    for (n, t_len, pos0, nh, d, pad) in cases {
        let mut shape = format!("N={n} T={t_len} {nh}x{d}");
        if pos0 > 0 {
            shape += &format!(" pos0={pos0}");
        }
        if pad > 0 {
            shape += " +off";
        }
        let mut rng = r.rng(&format!("rope {chunked} {shape}"));
        let (cos64, sin64) = reference::rope::rope_tables(pos0 + t_len, d);
        let cos: Vec<f32> = cos64.iter().map(|&v| v as f32).collect();
        let sin: Vec<f32> = sin64.iter().map(|&v| v as f32).collect();
        let tc = upload_at(ctx, "cos", &cos, pad)?;
        let ts = upload_at(ctx, "sin", &sin, 0)?;
        for (kernel, forward) in [(&fwd, true), (&bwd, false)] {
            if !r.wants(kernel) {
                continue;
            }
            let x = rng.vec_uniform(n * nh * d, -3.0, 3.0);
            let mut want = x.clone();
            let tx = upload_at(ctx, "x", &x, pad + 1)?;
            let secs = if forward {
                reference::rope::rope_forward(&mut want, &cos, &sin, n, t_len, pos0, nh, d);
                timed(ctx, |s| rope::rope_forward(s, &tx, &tc, &ts, n, t_len, pos0, nh, d))?
            } else {
                reference::rope::rope_backward(&mut want, &cos, &sin, n, t_len, pos0, nh, d);
                timed(ctx, |s| rope::rope_backward(s, &tx, &tc, &ts, n, t_len, pos0, nh, d))?
            };
            let variant = if forward { "x (in place)" } else { "dx (in place)" };
            r.record(kernel, variant, &shape, &ctx.read(&tx)?, &want, rope_tolerance(max_abs(&x)), secs);
        }
    }
    Ok(())
}

// ---- relu² --------------------------------------------------------------------------------------

fn relu2_cases(ctx: &GpuContext, r: &mut Runner<'_>, chunked: bool) -> Result<()> {
    let fwd = kernel_name("relu2_forward", chunked);
    let bwd = kernel_name("relu2_backward", chunked);
    if !r.wants(&fwd) && !r.wants(&bwd) {
        return Ok(());
    }
    let sizes: &[(usize, usize)] =
        if chunked { &[(100_003, 0)] } else { &[(1, 0), (1000, 3), (65_537, 0), (2048 * 3072, 0)] };
    for &(n, pad) in sizes {
        let shape = format!("n={n}{}", if pad > 0 { " +off" } else { "" });
        let mut rng = r.rng(&format!("relu2 {chunked} {shape}"));
        let inp = rng.vec_uniform(n, -3.0, 3.0);
        let ti = upload_at(ctx, "inp", &inp, pad)?;
        if r.wants(&fwd) {
            let mut want = vec![0.0f32; n];
            reference::activation::relu2_forward(&mut want, &inp);
            let to = upload_at(ctx, "out", &vec![f32::NAN; n], pad + 1)?;
            let secs = timed(ctx, |s| activation::relu2_forward(s, &to, &ti))?;
            r.record(&fwd, "out", &shape, &ctx.read(&to)?, &want, activation_tolerance(), secs);
        }
        if r.wants(&bwd) {
            let dout = rng.vec_uniform(n, -1.0, 1.0);
            let mut want = vec![0.0f32; n];
            reference::activation::relu2_backward(&mut want, &dout, &inp);
            let tdo = upload_at(ctx, "dout", &dout, 0)?;
            let td = upload_at(ctx, "dinp", &vec![f32::NAN; n], pad + 2)?;
            let secs = timed(ctx, |s| activation::relu2_backward(s, &td, &tdo, &ti))?;
            r.record(&bwd, "dinp", &shape, &ctx.read(&td)?, &want, activation_tolerance(), secs);
        }
    }
    Ok(())
}

// ---- residual lambda mix and backout ------------------------------------------------------------

fn residual_cases(ctx: &GpuContext, r: &mut Runner<'_>, chunked: bool) -> Result<()> {
    let names = ["lambda_mix_forward", "lambda_mix_backward", "backout_forward", "backout_backward"]
        .map(|k| kernel_name(k, chunked));
    if !names.iter().any(|k| r.wants(k)) {
        return Ok(());
    }
    let sizes: &[(usize, usize)] =
        if chunked { &[(100_003, 1)] } else { &[(1, 0), (1001, 3), (2048 * 768, 0), (4 * 2048 * 768 + 5, 0)] };
    for &(n, pad) in sizes {
        let shape = format!("n={n}{}", if pad > 0 { " +off" } else { "" });
        let mut rng = r.rng(&format!("residual {chunked} {shape}"));
        // A parameter arena and a gradient arena holding the per-layer lambdas at odd offsets, as
        // the model's do: a = resid_lambdas[3], b = x0_lambdas[3], λ = backout_lambda.
        let params: Vec<f32> = rng.vec_uniform(40, -1.0, 1.0);
        let (ia, ib, il) = (3 + 3, 3 + 12 + 3, 37);
        let (a, b, lam) = (params[ia], params[ib], params[il]);
        let grads0: Vec<f32> = rng.vec_uniform(40, -1.0, 1.0);
        let tp = ctx.upload("params", &params)?;
        let x = rng.vec_uniform(n, -2.0, 2.0);
        let x0 = rng.vec_uniform(n, -2.0, 2.0);
        let dout = rng.vec_uniform(n, -1.0, 1.0);
        let tx = upload_at(ctx, "x", &x, pad)?;
        let tx0 = upload_at(ctx, "x0", &x0, 0)?;
        let tdo = upload_at(ctx, "dout", &dout, pad + 2)?;
        let (pa, pb, pl) = (tp.view(ia, 1), tp.view(ib, 1), tp.view(il, 1));
        // |x|, |x0| ≤ 2, |dout|, |dx0|, |dx_mid| ≤ 1 and every lambda ≤ 1 bound every term by 4.
        let tol = residual_tolerance(4.0);
        // The dot products' chain: strided terms per invocation (at most 256 workgroups of 256 per
        // binding-sized chunk), the workgroup tree, the final pass over the partials (strided, then
        // a tree), and the accumulation; 20 covers the extra partials of a chunked vector.
        let chain = n.div_ceil(256 * 256) + 20;
        if r.wants(&names[0]) {
            let mut want = vec![0.0f32; n];
            reference::residual::lambda_mix_forward(&mut want, &x, &x0, a, b);
            let to = upload_at(ctx, "out", &vec![f32::NAN; n], pad + 1)?;
            let secs = timed(ctx, |s| residual::lambda_mix_forward(s, &to, &tx, &tx0, &pa, &pb))?;
            r.record(&names[0], "out", &shape, &ctx.read(&to)?, &want, tol, secs);
        }
        if r.wants(&names[1]) {
            let dx0_0 = rng.vec_uniform(n, -1.0, 1.0);
            let (mut want_dx, mut want_dx0) = (vec![0.0f32; n], dx0_0.clone());
            let (mut want_da, mut want_db) = (grads0[ia], grads0[ib]);
            reference::residual::lambda_mix_backward(
                &mut want_dx,
                &mut want_dx0,
                &mut want_da,
                &mut want_db,
                &dout,
                &x,
                &x0,
                a,
                b,
            );
            let tg = ctx.upload("grads", &grads0)?;
            let tdx = upload_at(ctx, "dx", &vec![f32::NAN; n], pad + 1)?;
            let tdx0 = upload_at(ctx, "dx0", &dx0_0, 0)?;
            let (ga, gb) = (tg.view(ia, 1), tg.view(ib, 1));
            let secs =
                timed(ctx, |s| residual::lambda_mix_backward(s, &tdx, &tdx0, &ga, &gb, &tdo, &tx, &tx0, &pa, &pb))?;
            let k = &names[1];
            r.record(k, "dx", &shape, &ctx.read(&tdx)?, &want_dx, tol, secs);
            r.record(k, "dx0 +=", &shape, &ctx.read(&tdx0)?, &want_dx0, tol, secs);
            let g = ctx.read(&tg)?;
            let tol_a = scalar_grad_tolerance(chain, l2_products(&dout, &x));
            let tol_b = scalar_grad_tolerance(chain, l2_products(&dout, &x0));
            r.record(k, "da +=", &shape, &g[ia..ia + 1], &[want_da], tol_a, secs);
            r.record(k, "db +=", &shape, &g[ib..ib + 1], &[want_db], tol_b, secs);
            // Everything else in the gradient arena is untouched.
            let rest = |v: &[f32]| -> Vec<f32> {
                v.iter().enumerate().filter(|(i, _)| *i != ia && *i != ib).map(|(_, &x)| x).collect()
            };
            r.record(k, "other grads kept", &shape, &rest(&g), &rest(&grads0), exact_tolerance(), secs);
        }
        if r.wants(&names[2]) {
            let mut want = vec![0.0f32; n];
            reference::residual::backout_forward(&mut want, &x, &x0, lam);
            let to = upload_at(ctx, "out", &vec![f32::NAN; n], pad + 1)?;
            let secs = timed(ctx, |s| residual::backout_forward(s, &to, &tx, &tx0, &pl))?;
            r.record(&names[2], "out", &shape, &ctx.read(&to)?, &want, tol, secs);
        }
        if r.wants(&names[3]) {
            let dmid0 = rng.vec_uniform(n, -1.0, 1.0);
            let mut want_dmid = dmid0.clone();
            let mut want_dl = grads0[il];
            reference::residual::backout_backward(&mut want_dmid, &mut want_dl, &dout, &x0, lam);
            let tg = ctx.upload("grads", &grads0)?;
            let tdm = upload_at(ctx, "dx_mid", &dmid0, pad + 1)?;
            let gl = tg.view(il, 1);
            let secs = timed(ctx, |s| residual::backout_backward(s, &tdm, &gl, &tdo, &tx0, &pl))?;
            let k = &names[3];
            r.record(k, "dx_mid +=", &shape, &ctx.read(&tdm)?, &want_dmid, tol, secs);
            let g = ctx.read(&tg)?;
            let tol_l = scalar_grad_tolerance(chain, l2_products(&dout, &x0));
            r.record(k, "dlambda +=", &shape, &g[il..il + 1], &[want_dl], tol_l, secs);
        }
    }
    Ok(())
}

/// √Σ (x_i·y_i)², the scale of a dot product's rounding error (see `scalar_grad_tolerance`).
fn l2_products(x: &[f32], y: &[f32]) -> f64 {
    x.iter().zip(y).map(|(&a, &b)| (a as f64 * b as f64).powi(2)).sum::<f64>().sqrt()
}

// ---- value-embedding gate -----------------------------------------------------------------------

fn ve_gate_cases(ctx: &GpuContext, r: &mut Runner<'_>, chunked: bool) -> Result<()> {
    let fwd = kernel_name("ve_gate_forward", chunked);
    let bwd = kernel_name("ve_gate_backward", chunked);
    if !r.wants(&fwd) && !r.wants(&bwd) {
        return Ok(());
    }
    // (n, c, hkv, d, pad)
    let cases: Vec<(usize, usize, usize, usize, usize)> = if chunked {
        vec![(300, 100, 2, 32, 0), (200, 12, 3, 130, 1)]
    } else {
        vec![
            (1, 12, 1, 2, 0),
            (37, 100, 3, 20, 3),
            (2048, 768, 6, 128, 0),
            (2048, 256, 4, 64, 0),
            (1024, 256, 1, 128, 0),
        ]
    };
    for (n, c, hkv, d, pad) in cases {
        let shape = format!("N={n} C={c} {hkv}x{d}{}", if pad > 0 { " +off" } else { "" });
        let mut rng = r.rng(&format!("ve_gate {chunked} {shape}"));
        let kv = hkv * d;
        let u = rng.vec_uniform(n * c, -2.0, 2.0);
        let ve = rng.vec_uniform(n * kv, -1.0, 1.0);
        // Gate weights moved off their U(0, 0.02) init so the gates spread over (0, 3).
        let wg = rng.vec_uniform(hkv * VE_GATE_CHANNELS, -0.5, 0.5);
        let tu = upload_at(ctx, "u", &u, pad)?;
        let tve = upload_at(ctx, "ve", &ve, 0)?;
        let tw = upload_at(ctx, "wg", &wg, pad + 2)?;
        if r.wants(&fwd) {
            let v = rng.vec_uniform(n * kv, -1.0, 1.0);
            let mut want = v.clone();
            reference::vegate::ve_gate_forward(&mut want, &u, &ve, &wg, n, c, hkv, d);
            let tv = upload_at(ctx, "v", &v, pad + 1)?;
            let secs = timed(ctx, |s| vegate::ve_gate_forward(s, &tv, &tu, &tve, &tw, n, c, hkv, d))?;
            let tol = gate_tolerance(max_abs(&v) + 3.0 * max_abs(&ve), 0.0, 0);
            r.record(&fwd, "v (in place)", &shape, &ctx.read(&tv)?, &want, tol, secs);
        }
        if r.wants(&bwd) {
            let dv = rng.vec_uniform(n * kv, -1.0, 1.0);
            let du0 = rng.vec_uniform(n * c, -1.0, 1.0);
            let dwg0 = rng.vec_uniform(hkv * VE_GATE_CHANNELS, -1.0, 1.0);
            let mut want_dve = vec![0.0f32; n * kv];
            let (mut want_du, mut want_dwg) = (du0.clone(), dwg0.clone());
            reference::vegate::ve_gate_backward(
                &mut want_dve,
                &mut want_du,
                &mut want_dwg,
                &dv,
                &u,
                &ve,
                &wg,
                n,
                c,
                hkv,
                d,
            );
            let tdve = upload_at(ctx, "dve", &vec![f32::NAN; n * kv], pad + 1)?;
            let tdu = upload_at(ctx, "du", &du0, 0)?;
            let tdwg = upload_at(ctx, "dwg", &dwg0, pad)?;
            let tdv = upload_at(ctx, "dv", &dv, 0)?;
            let secs =
                timed(ctx, |s| vegate::ve_gate_backward(s, &tdve, &tdu, &tdwg, &tdv, &tu, &tve, &tw, n, c, hkv, d))?;
            // Error scales, from the f64 gate values: ds[n, h] = ⟨dv, ve⟩·3σ(1 − σ) is a dot over D
            // (lanes_per_row(d) lanes); du sums Hkv of them per element, dwg N of them per output.
            let lanes = lanes_per_row(d);
            let mut ds_max = vec![0.0f64; n]; // Σ_h |ds[n, h]|
            let mut du_l2 = 0.0f64; // max_n √Σ_{h,e} (dv·ve)²
            let mut dwg_l2 = vec![0.0f64; hkv]; // Σ_{n,e} (dv·ve)² per head
            for i in 0..n {
                let mut row_l2 = 0.0;
                for h in 0..hkv {
                    let logit: f64 =
                        (0..VE_GATE_CHANNELS).map(|k| wg[h * VE_GATE_CHANNELS + k] as f64 * u[i * c + k] as f64).sum();
                    let sg = reference::sigmoid(logit);
                    let o = (i * hkv + h) * d;
                    let dg: f64 = (0..d).map(|e| dv[o + e] as f64 * ve[o + e] as f64).sum();
                    let sq: f64 = (0..d).map(|e| (dv[o + e] as f64 * ve[o + e] as f64).powi(2)).sum();
                    ds_max[i] += (dg * 3.0 * sg * (1.0 - sg)).abs();
                    row_l2 += sq;
                    dwg_l2[h] += sq;
                }
                du_l2 = du_l2.max(row_l2.sqrt());
            }
            let wg_max = max_abs(&wg);
            let ds_chain = tree_chain(d, lanes);
            r.record(
                &bwd,
                "dve",
                &shape,
                &ctx.read(&tdve)?,
                &want_dve,
                gate_tolerance(3.0 * max_abs(&dv), 0.0, 0),
                secs,
            );
            let du_ymax = max_abs(&du0) + wg_max * ds_max.iter().cloned().fold(0.0, f64::max);
            let tol_du = gate_tolerance(du_ymax, 0.75 * wg_max * du_l2, ds_chain + hkv + 1);
            r.record(&bwd, "du +=", &shape, &ctx.read(&tdu)?, &want_du, tol_du, secs);
            let dwg_chain = ds_chain + tree_chain(n, 256) + 2;
            let dwg_scale = 0.75 * max_abs(&u) * dwg_l2.iter().cloned().fold(0.0, f64::max).sqrt();
            let tol_dwg = scalar_grad_tolerance(dwg_chain, dwg_scale);
            r.record(&bwd, "dwg +=", &shape, &ctx.read(&tdwg)?, &want_dwg, tol_dwg, secs);
        }
    }
    Ok(())
}

// ---- smear --------------------------------------------------------------------------------------

fn smear_cases(ctx: &GpuContext, r: &mut Runner<'_>, chunked: bool) -> Result<()> {
    let fwd = kernel_name("smear_forward", chunked);
    let bwd = kernel_name("smear_backward", chunked);
    if !r.wants(&fwd) && !r.wants(&bwd) {
        return Ok(());
    }
    // (b, t, c, pad)
    let cases: Vec<(usize, usize, usize, usize)> = if chunked {
        vec![(2, 150, 100, 0), (3, 61, 300, 1)]
    } else {
        vec![(1, 1, 24, 0), (1, 2, 24, 0), (3, 17, 50, 3), (2, 1024, 768, 0), (8, 256, 256, 0)]
    };
    for (b, t, c, pad) in cases {
        let shape = format!("B={b} T={t} C={c}{}", if pad > 0 { " +off" } else { "" });
        let mut rng = r.rng(&format!("smear {chunked} {shape}"));
        let rows = b * t;
        let e = rng.vec_uniform(rows * c, -2.0, 2.0);
        // smear_gate.weight off its U(0, 0.02) init and smear_lambda off its zero init.
        let params = rng.vec_uniform(SMEAR_CHANNELS + 3, -0.5, 0.5);
        let w = params[..SMEAR_CHANNELS].to_vec();
        let lam = 0.4 + params[SMEAR_CHANNELS + 1];
        let mut params = params;
        params[SMEAR_CHANNELS + 1] = lam;
        let tp = ctx.upload("params", &params)?;
        let (tw, tl) = (tp.view(0, SMEAR_CHANNELS), tp.view(SMEAR_CHANNELS + 1, 1));
        let te = upload_at(ctx, "e", &e, pad)?;
        if r.wants(&fwd) {
            let mut want = vec![0.0f32; rows * c];
            reference::smear::smear_forward(&mut want, &e, &w, lam, b, t, c);
            let to = upload_at(ctx, "out", &vec![f32::NAN; rows * c], pad + 1)?;
            let secs = timed(ctx, |s| smear::smear_forward(s, &to, &te, &tw, &tl, b, t, c))?;
            let tol = gate_tolerance(max_abs(&e) * (1.0 + lam.abs() as f64), 0.0, 0);
            r.record(&fwd, "out", &shape, &ctx.read(&to)?, &want, tol, secs);
        }
        if r.wants(&bwd) {
            let dout = rng.vec_uniform(rows * c, -1.0, 1.0);
            let grads0 = rng.vec_uniform(SMEAR_CHANNELS + 3, -1.0, 1.0);
            let mut want_de = vec![0.0f32; rows * c];
            let mut want_dw = grads0[..SMEAR_CHANNELS].to_vec();
            let mut want_dl = grads0[SMEAR_CHANNELS + 1];
            reference::smear::smear_backward(&mut want_de, &mut want_dw, &mut want_dl, &dout, &e, &w, lam, b, t, c);
            let tg = ctx.upload("grads", &grads0)?;
            let (gw, gl) = (tg.view(0, SMEAR_CHANNELS), tg.view(SMEAR_CHANNELS + 1, 1));
            let tde = upload_at(ctx, "de", &vec![f32::NAN; rows * c], pad + 1)?;
            let tdo = upload_at(ctx, "dout", &dout, 0)?;
            let secs = timed(ctx, |s| smear::smear_backward(s, &tde, &gw, &gl, &tdo, &te, &tw, &tl, b, t, c))?;
            // Error scales from f64 values: dg_t = ⟨dout_t, e_{t−1}⟩ (a dot over C, 256 lanes) feeds
            // de's first 24 channels through ds_t·w, and dw and dλ through sums over all rows
            // (one workgroup each, 256 lanes).
            let lam64 = lam.abs() as f64;
            let (mut dg_max, mut row_l2_max, mut all_l2) = (0.0f64, 0.0f64, 0.0f64);
            for row in (0..rows).filter(|row| row % t != 0) {
                let terms = (0..c).map(|i| dout[row * c + i] as f64 * e[(row - 1) * c + i] as f64);
                let dg: f64 = terms.clone().sum();
                let sq: f64 = terms.map(|x| x * x).sum();
                dg_max = dg_max.max(dg.abs());
                row_l2_max = row_l2_max.max(sq.sqrt());
                all_l2 += sq;
            }
            let all_l2 = all_l2.sqrt();
            let w_max = max_abs(&w);
            let dg_chain = tree_chain(c, 256);
            let de_ymax = max_abs(&dout) * (1.0 + lam64) + lam64 / 4.0 * dg_max * w_max;
            let tol_de = gate_tolerance(de_ymax, lam64 / 4.0 * w_max * row_l2_max, dg_chain);
            r.record(&bwd, "de", &shape, &ctx.read(&tde)?, &want_de, tol_de, secs);
            let g = ctx.read(&tg)?;
            // + the accumulation, and one addition per extra chunk on the small-binding context.
            let chain = dg_chain + tree_chain(rows, 256) + 4;
            let e24_max = (0..rows)
                .flat_map(|row| e[row * c..row * c + SMEAR_CHANNELS].iter())
                .fold(0.0f64, |m, &x| m.max((x as f64).abs()));
            let tol_w = scalar_grad_tolerance(chain, lam64 / 4.0 * e24_max * all_l2);
            let tol_l = scalar_grad_tolerance(chain, all_l2);
            r.record(&bwd, "dw +=", &shape, &g[..SMEAR_CHANNELS], &want_dw, tol_w, secs);
            r.record(&bwd, "dlambda +=", &shape, &g[SMEAR_CHANNELS + 1..SMEAR_CHANNELS + 2], &[want_dl], tol_l, secs);
            r.record(
                &bwd,
                "other grads kept",
                &shape,
                &[g[SMEAR_CHANNELS], g[SMEAR_CHANNELS + 2]],
                &[grads0[SMEAR_CHANNELS], grads0[SMEAR_CHANNELS + 2]],
                exact_tolerance(),
                secs,
            );
        }
    }
    Ok(())
}
