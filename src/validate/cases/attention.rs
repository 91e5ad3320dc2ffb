//! Validation rows for `kernels::attention` against `reference::attention`.
//!
//! Shapes are chosen to break a flash kernel: a single token; lengths that are multiples of no
//! tile (37, 45, 100); sliding windows narrower than a tile (0, 16), around it (20, 64) and wider
//! than T (plain causal); grouped KV heads (H/Hkv = 2 and 4) at D = 128; D = 16, 32, 64, 80
//! (not a power of two: partial vec4 column groups) and 128; B = 2 with views that start inside
//! their buffers; a "peaky" case where k = q, so every query's own score is 1.44·√D and the
//! softmax is nearly one-hot; and the GPT shape T = 2048, H = 6, D = 128 (forward causal and with
//! the 512 window, backward with the 512 window only: the f64 reference of the causal backward
//! alone would take ~15 s), which `--quick` skips.
//!
//! `chunked` selects one B = 5 problem meant for the small-binding context, where the launchers
//! split the batch into chunks. `cases::run` calls this for the ordinary context only;
//! the chunked path is covered by `attention_chunks_over_batches` in `tests/kernels.rs`, which
//! checks it bit for bit against the unchunked run.
//!
//! Inputs are what the model feeds the kernel: q and k unit-RMS per head times 1.2 (QK RMSNorm
//! then the 1.2 gain), v unit-RMS per head, scale 1/√D; dout uniform in [−1, 1]. Outputs (and
//! the backward's Δ scratch) are NaN before every run, so an element a kernel never writes fails.
//! The backward's `out` and `lse` inputs are the reference forward's, so its rows measure the
//! backward kernels alone.
//!
//! `attention_coop_forward` / `attention_coop_backward` run every case again on the
//! cooperative-matrix kernels (attention_coop.wgsl), where training in f16 would run them (the
//! adapter's coop self-test passed), against the reference fed the same f16-rounded q, k, v and
//! dout, to `validate::attention_coop_tolerance`, and a few cases again with v and out stored in
//! f16 (as an f16 training step keeps them); elsewhere one row says why they did not run.
//!
//! `attention_decode` (one query against a KV cache) has its own rows (`decode_cases` below).

use super::{upload_at, upload_at_f16};

type UploadFn = fn(&GpuContext, &str, &[f32], usize) -> Result<GpuTensor>;
use crate::error::Result;
use crate::gpu::{GpuContext, GpuTensor, Kernel};
use crate::kernels::attention::{AttnPass, AttnPlan};
use crate::kernels::{attention, matmul_coop, Stream};
use crate::reference;
use crate::shapes::{AttnShape, MatmulPrecision};
use crate::util::Rng;
use crate::validate::suite::Runner;
use crate::validate::{attention_coop_tolerance, attention_tolerance};
use std::time::Instant;

struct Case {
    b: usize,
    t: usize,
    h: usize,
    hkv: usize,
    d: usize,
    window: usize,
    /// k = q (requires H = Hkv): a nearly one-hot softmax.
    peaky: bool,
    /// Element offsets of the views inside their buffers (multiples of 4 for the vec4 tensors;
    /// lse and the scratch get an odd one).
    offset: bool,
    /// Run the backward too (the GPT-size rows check the forward only when the backward's f64
    /// reference would dominate the suite's time).
    backward: bool,
    /// v and out stored in f16, as an f16 training run keeps them (coop rows only).
    f16_storage: bool,
}

impl Case {
    fn shape(&self) -> String {
        let w = if self.window + 1 >= self.t { "causal".to_string() } else { format!("w{}", self.window) };
        let mut s = format!("{}x{} H{}/{} D{} {w}", self.b, self.t, self.h, self.hkv, self.d);
        if self.peaky {
            s += " k=q";
        }
        if self.offset {
            s += " +off";
        }
        if self.f16_storage {
            s += " v,out f16";
        }
        s
    }
}

/// q/k/v-like rows: uniform, each D-long row rescaled to RMS `gain`.
fn unit_rms_rows(rng: &mut Rng, rows: usize, d: usize, gain: f32) -> Vec<f32> {
    let mut x = rng.vec_uniform(rows * d, -1.0, 1.0);
    for row in x.chunks_mut(d) {
        let ms = row.iter().map(|&e| (e as f64) * (e as f64)).sum::<f64>() / d as f64;
        let s = gain as f64 / ms.sqrt();
        row.iter_mut().for_each(|e| *e = (*e as f64 * s) as f32);
    }
    x
}

pub(super) fn cases(ctx: &GpuContext, r: &mut Runner<'_>, chunked: bool) -> Result<()> {
    if !chunked {
        decode_cases(ctx, r)?;
    }
    let suffix = if chunked { " chunked" } else { "" };
    let fwd = format!("attention_forward{suffix}");
    let bwd = format!("attention_backward{suffix}");
    let coop_fwd = format!("attention_coop_forward{suffix}");
    let coop_bwd = format!("attention_coop_backward{suffix}");
    if ![&fwd, &bwd, &coop_fwd, &coop_bwd].iter().any(|k| r.wants(k)) {
        return Ok(());
    }
    let c = |b, t, h, hkv, d, window| Case {
        b,
        t,
        h,
        hkv,
        d,
        window,
        peaky: false,
        offset: false,
        backward: true,
        f16_storage: false,
    };
    let mut cases = if chunked {
        // Batches split across bindings (the context's binding limit is a few batch rows).
        vec![Case { offset: true, ..c(5, 45, 2, 1, 64, 20) }]
    } else {
        vec![
            c(1, 1, 1, 1, 64, 2048),
            c(1, 37, 2, 2, 64, 2048),
            c(1, 100, 2, 1, 128, 16),
            c(1, 100, 2, 1, 128, 2048),
            c(1, 128, 4, 1, 128, 2048),
            c(1, 256, 2, 2, 64, 64),
            c(1, 256, 2, 2, 64, 300),
            c(1, 50, 2, 1, 64, 0),
            c(1, 45, 3, 3, 16, 2048),
            c(1, 45, 2, 2, 80, 10),
            Case { offset: true, ..c(2, 64, 2, 2, 32, 20) },
            Case { peaky: true, ..c(1, 128, 2, 2, 128, 2048) },
        ]
    };
    if !chunked && !r.opts.quick {
        cases.push(c(1, 2048, 6, 6, 128, 512));
        cases.push(Case { backward: false, ..c(1, 2048, 6, 6, 128, 2048) });
    }
    // The cooperative-matrix kernels run where training would run them (f16 asked, and the
    // adapter's coop self-test passed); elsewhere their rows say why not.
    let probe = AttnShape { b: 1, t: 1, h: 1, hkv: 1, d: 4, window: 0, scale: 1.0, precision: MatmulPrecision::F16 };
    let coop = AttnPlan::for_shape(ctx, &probe) != AttnPlan::Simt;
    if !coop {
        let why = matmul_coop::coop_status(ctx).describe();
        let kernels: Vec<Kernel> = AttnPass::ALL.iter().map(|p| p.coop_kernel()).collect();
        for name in [&coop_fwd, &coop_bwd] {
            if r.wants(name) {
                r.record_not_run(name, "f16 in", "all shapes", &why, &kernels);
            }
        }
    }
    for case in &cases {
        run_case(ctx, r, [&fwd, &bwd], case, MatmulPrecision::F32)?;
        if coop {
            run_case(ctx, r, [&coop_fwd, &coop_bwd], case, MatmulPrecision::F16)?;
        }
    }
    // The coop kernels reading and writing f16 v and out, as an f16 training step runs them: a
    // ragged GQA case with offsets, and one at D = 128.
    if coop {
        let f16 = |case: Case| Case { f16_storage: true, ..case };
        let storage = if chunked {
            vec![f16(Case { offset: true, ..c(5, 45, 2, 1, 64, 20) })]
        } else {
            vec![f16(Case { offset: true, ..c(2, 45, 4, 2, 64, 20) }), f16(c(1, 100, 2, 1, 128, 2048))]
        };
        for case in &storage {
            run_case(ctx, r, [&coop_fwd, &coop_bwd], case, MatmulPrecision::F16)?;
        }
    }
    Ok(())
}

/// One case at `precision`, rows named `[forward, backward]`: the f32 kernels, or (f16) the coop
/// kernels against the reference fed the same f16-rounded q, k, v and dout.
fn run_case(
    ctx: &GpuContext,
    r: &mut Runner<'_>,
    [fwd, bwd]: [&str; 2],
    c: &Case,
    precision: MatmulPrecision,
) -> Result<()> {
    let shape = c.shape();
    let (b, t, h, hkv, d, window) = (c.b, c.t, c.h, c.hkv, c.d, c.window);
    let scale = 1.0 / (d as f32).sqrt();
    let shape_a = AttnShape { b, t, h, hkv, d, window, scale, precision };
    let mut rng = r.rng(&format!("attention {shape}"));
    let q = unit_rms_rows(&mut rng, b * t * h, d, 1.2);
    let k = if c.peaky { q.clone() } else { unit_rms_rows(&mut rng, b * t * hkv, d, 1.2) };
    let v = unit_rms_rows(&mut rng, b * t * hkv, d, 1.0);
    let dout = rng.vec_uniform(b * t * h * d, -1.0, 1.0);
    let (nq, nkv, nl) = (b * t * h * d, b * t * hkv * d, b * t * h);
    let (pad4, pad1) = if c.offset { (12, 3) } else { (0, 0) };

    let mut out = vec![0.0f32; nq];
    let mut lse = vec![0.0f32; nl];
    reference::attention::attention_forward(&mut out, &mut lse, &q, &k, &v, &shape_a);
    // f16 storage: out is stored rounded, and the backward reads (and its reference is given) that
    // rounded out. v's rounding is the reference's own at f16.
    let (up_io, round): (UploadFn, fn(f32) -> f32) =
        if c.f16_storage { (upload_at_f16, |x| half::f16::from_f32(x).to_f32()) } else { (upload_at, |x| x) };
    let out_stored: Vec<f32> = out.iter().map(|&x| round(x)).collect();

    let tq = upload_at(ctx, "q", &q, pad4)?;
    let tk = upload_at(ctx, "k", &k, pad4)?;
    let tv = up_io(ctx, "v", &v, pad4)?;
    let tol = if precision == MatmulPrecision::F32 { attention_tolerance() } else { attention_coop_tolerance() };
    if r.wants(fwd) {
        let t_out = up_io(ctx, "out", &vec![f32::NAN; nq], pad4)?;
        let t_lse = upload_at(ctx, "lse", &vec![f32::NAN; nl], pad1)?;
        let t0 = Instant::now();
        let mut st = Stream::new(ctx);
        attention::attention_forward(&mut st, &t_out, &t_lse, &tq, &tk, &tv, &shape_a)?;
        st.run()?;
        let secs = t0.elapsed().as_secs_f64();
        r.record(fwd, "out", &shape, &ctx.read(&t_out)?, &out, tol, secs);
        r.record(fwd, "lse", &shape, &ctx.read(&t_lse)?, &lse, tol, secs);
    }
    if c.backward && r.wants(bwd) {
        let mut dq = vec![0.0f32; nq];
        let mut dk = vec![0.0f32; nkv];
        let mut dv = vec![0.0f32; nkv];
        reference::attention::attention_backward(
            &mut dq,
            &mut dk,
            &mut dv,
            &dout,
            &q,
            &k,
            &v,
            &out_stored,
            &lse,
            &shape_a,
        );
        let t_dout = upload_at(ctx, "dout", &dout, pad4)?;
        let t_out = up_io(ctx, "out", &out_stored, pad4)?;
        let t_lse = upload_at(ctx, "lse", &lse, pad1)?;
        let t_dq = upload_at(ctx, "dq", &vec![f32::NAN; nq], pad4)?;
        let t_dk = upload_at(ctx, "dk", &vec![f32::NAN; nkv], pad4)?;
        let t_dv = upload_at(ctx, "dv", &vec![f32::NAN; nkv], pad4)?;
        // Δ comes from the stream's workspace: poisoned, and at an offset in its buffer when the
        // case has offsets, as in a training step.
        let t_delta = upload_at(ctx, "delta", &vec![f32::NAN; nl], pad1)?;
        let t0 = Instant::now();
        let mut st = Stream::with_workspace(ctx, t_delta);
        attention::attention_backward(&mut st, &t_dq, &t_dk, &t_dv, &t_dout, &tq, &tk, &tv, &t_out, &t_lse, &shape_a)?;
        st.run()?;
        let secs = t0.elapsed().as_secs_f64();
        r.record(bwd, "dq", &shape, &ctx.read(&t_dq)?, &dq, tol, secs);
        r.record(bwd, "dk", &shape, &ctx.read(&t_dk)?, &dk, tol, secs);
        r.record(bwd, "dv", &shape, &ctx.read(&t_dv)?, &dv, tol, secs);
    }
    Ok(())
}

/// One `attention_decode` row: the query at `pos` against a cache of `cap` rows.
struct DecodeCase {
    pos: usize,
    cap: usize,
    h: usize,
    hkv: usize,
    d: usize,
    window: usize,
    /// q, caches and out start inside their buffers (multiples of 4 elements).
    offset: bool,
}

/// `attention_decode` against `reference::attention::attention_decode`: a single key (pos 0);
/// positions inside the first key block, filling it exactly (64 keys), one past it (a second
/// block holding one key) and several blocks in; windows of 0 (itself only), narrower than a
/// block, wider than the position (causal); GQA (H/Hkv = 2, 4); D = 16, 64, 80 (a partial staged
/// column chunk), 128; and the GPT shape at its last position (T = 2048, H = 6, D = 128, causal
/// and w512). Cache rows outside the window, and every row past pos, are NaN: a kernel that reads
/// one fails (0·NaN is NaN).
fn decode_cases(ctx: &GpuContext, r: &mut Runner<'_>) -> Result<()> {
    const NAME: &str = "attention_decode";
    if !r.wants(NAME) {
        return Ok(());
    }
    let c = |pos, cap, h, hkv, d, window| DecodeCase { pos, cap, h, hkv, d, window, offset: false };
    let cases = [
        c(0, 8, 2, 1, 64, 2048),
        c(37, 64, 4, 1, 64, 2048),
        c(37, 64, 4, 2, 64, 16),
        c(63, 64, 2, 2, 128, 2048),
        c(64, 80, 2, 1, 128, 2048),
        c(150, 160, 2, 1, 80, 0),
        c(45, 50, 3, 3, 16, 2048),
        DecodeCase { offset: true, ..c(200, 256, 6, 6, 128, 100) },
        c(200, 256, 4, 1, 128, 2048),
        c(2047, 2048, 6, 6, 128, 512),
        c(2047, 2048, 6, 6, 128, 2048),
    ];
    for case in &cases {
        let DecodeCase { pos, cap, h, hkv, d, window, offset } = *case;
        let w = if window >= pos { "causal".to_string() } else { format!("w{window}") };
        let shape = format!("pos {pos}/{cap} H{h}/{hkv} D{d} {w}{}", if offset { " +off" } else { "" });
        let scale = 1.0 / (d as f32).sqrt();
        let mut rng = r.rng(&format!("{NAME} {shape}"));
        let q = unit_rms_rows(&mut rng, h, d, 1.2);
        let mut k = unit_rms_rows(&mut rng, cap * hkv, d, 1.2);
        let mut v = unit_rms_rows(&mut rng, cap * hkv, d, 1.0);
        let mut want = vec![0.0f32; h * d];
        reference::attention::attention_decode(&mut want, &q, &k, &v, pos, h, hkv, d, window, scale);
        let kvd = hkv * d;
        let lo = pos - pos.min(window);
        for j in (0..lo).chain(pos + 1..cap) {
            k[j * kvd..(j + 1) * kvd].fill(f32::NAN);
            v[j * kvd..(j + 1) * kvd].fill(f32::NAN);
        }
        let pad = if offset { 12 } else { 0 };
        let (tq, tk, tv) =
            (upload_at(ctx, "q", &q, pad)?, upload_at(ctx, "k", &k, pad)?, upload_at(ctx, "v", &v, pad)?);
        let t_out = upload_at(ctx, "out", &vec![f32::NAN; h * d], pad)?;
        let t0 = Instant::now();
        let mut st = Stream::new(ctx);
        attention::attention_decode(&mut st, &t_out, &tq, &tk, &tv, pos, h, hkv, d, window, scale)?;
        st.run()?;
        let secs = t0.elapsed().as_secs_f64();
        r.record(NAME, "out", &shape, &ctx.read(&t_out)?, &want, attention_tolerance(), secs);
    }
    Ok(())
}
