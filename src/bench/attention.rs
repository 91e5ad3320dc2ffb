//! `wgpt bench attention`: the attention family's forward and backward timed on random
//! model-like inputs (`kernels::attention`'s launchers, `reference::attention`'s contract).

use crate::error::Result;
use crate::gpu::GpuContext;
use crate::kernels::attention::{attention_backward, attention_forward, AttnPlan, AttnShape};
use crate::kernels::Stream;
use crate::shapes::MatmulPrecision;
use serde::Serialize;

/// What `wgpt bench attention` times: one problem shape, several windows.
#[derive(Clone, Debug)]
pub struct AttnBenchOptions {
    pub b: usize,
    pub t: usize,
    pub h: usize,
    pub hkv: usize,
    pub d: usize,
    pub windows: Vec<usize>,
    /// Timed runs per pass after one warm-up; the median is reported.
    pub reps: usize,
    /// Precisions to time side by side, each window in each: f32 (attention.wgsl) and f16 (the
    /// cooperative-matrix kernels, where the adapter uses them; else the f32 ones, said so).
    pub precisions: Vec<MatmulPrecision>,
}

/// One timed (window, precision).
#[derive(Clone, Debug, Serialize)]
pub struct AttnBenchRow {
    pub window: usize,
    pub precision: MatmulPrecision,
    /// What ran: "f32 (SIMT)" or "coop 8×8" / "coop 16×16".
    pub kernels: String,
    pub forward_ms: f64,
    pub backward_ms: f64,
}

impl Default for AttnBenchOptions {
    /// The d12 GPT layer at device batch 1: T = 2048, H = 6, D = 128, causal and the 512 window.
    fn default() -> Self {
        Self {
            b: 1,
            t: 2048,
            h: 6,
            hkv: 6,
            d: 128,
            windows: vec![2048, 512],
            reps: 5,
            precisions: vec![MatmulPrecision::F32, MatmulPrecision::F16],
        }
    }
}

/// Time the forward and the backward (both passes) on random model-like inputs and print ms and
/// effective GFLOP/s: 4·D flops per visible (query, key) pair and head forward, 2.5× that backward
/// (the usual flash-attention count: five D-long products per pair against the forward's two; this
/// backward does seven, recomputing the scores and dP once per pass, so its real rate is 1.4× the
/// figure). Each window runs in each precision back to back, and the f16 rows give their speed
/// as a ratio to the f32 row of the same window (one run, same machine state). Returns one row per
/// (window, precision).
pub fn bench(ctx: &GpuContext, o: &AttnBenchOptions, out: &mut dyn FnMut(&str)) -> Result<Vec<AttnBenchRow>> {
    use crate::util::Rng;
    let scale = 1.0 / (o.d as f32).sqrt();
    let shape = |window: usize, precision: MatmulPrecision| AttnShape {
        b: o.b,
        t: o.t,
        h: o.h,
        hkv: o.hkv,
        d: o.d,
        window,
        scale,
        precision,
    };
    let dims = shape(o.t, MatmulPrecision::F32);
    let mut rng = Rng::new(7);
    let mut rows = |n: usize, gain: f32| {
        let mut x = rng.vec_uniform(n * o.d, -1.0, 1.0);
        for row in x.chunks_mut(o.d) {
            let rms = (row.iter().map(|e| e * e).sum::<f32>() / o.d as f32).sqrt();
            row.iter_mut().for_each(|e| *e *= gain / rms);
        }
        x
    };
    let q = ctx.upload("bench q", &rows(o.b * o.t * o.h, 1.2))?;
    let k = ctx.upload("bench k", &rows(o.b * o.t * o.hkv, 1.2))?;
    let v = ctx.upload("bench v", &rows(o.b * o.t * o.hkv, 1.0))?;
    let dout = ctx.upload("bench dout", &rows(o.b * o.t * o.h, 1.0))?;
    let outt = ctx.tensor("bench out", dims.q_len())?;
    let lse = ctx.tensor("bench lse", dims.lse_len())?;
    let dq = ctx.tensor("bench dq", dims.q_len())?;
    let dk = ctx.tensor("bench dk", dims.kv_len())?;
    let dv = ctx.tensor("bench dv", dims.kv_len())?;
    out(&format!("adapter: {}", ctx.describe()));
    out(&format!(
        "attention B={} T={} H={} Hkv={} D={}; median of {} runs after a warm-up; GFLOP/s count 4·D per visible \
         pair and head forward, 10·D backward",
        o.b,
        o.t,
        o.h,
        o.hkv,
        o.d,
        o.reps.max(1)
    ));
    out(&format!(
        "{:>8} {:>12} {:>11} {:>9} {:>11} {:>9} {:>11} {:>8}",
        "window", "kernels", "fwd ms", "GFLOP/s", "bwd ms", "GFLOP/s", "fwd+bwd ms", "vs f32"
    ));
    let median_ms = |dispatches: &[crate::gpu::Dispatch]| -> Result<f64> {
        ctx.time(dispatches, 1)?;
        let mut ms: Vec<f64> = (0..o.reps.max(1))
            .map(|_| ctx.time(dispatches, 1).map(|d| d.as_secs_f64() * 1e3))
            .collect::<Result<_>>()?;
        ms.sort_by(f64::total_cmp);
        Ok(ms[ms.len() / 2])
    };
    let mut results: Vec<AttnBenchRow> = Vec::new();
    for &w in &o.windows {
        let mut f32_total = None;
        for &precision in &o.precisions {
            let sh = shape(w, precision);
            let kernels = match AttnPlan::for_shape(ctx, &sh) {
                AttnPlan::Simt if precision == MatmulPrecision::F32 => "f32 (SIMT)".to_string(),
                AttnPlan::Simt => "f32 (no coop)".to_string(),
                AttnPlan::Coop { tile, .. } => format!("coop {tile}×{tile}"),
            };
            let mut f = Stream::new(ctx);
            attention_forward(&mut f, &outt, &lse, &q, &k, &v, &sh)?;
            // The backward reads the forward's out and lse: run the forward once for real first.
            ctx.run(f.dispatches())?;
            let mut bw = Stream::new(ctx);
            attention_backward(&mut bw, &dq, &dk, &dv, &dout, &q, &k, &v, &outt, &lse, &sh)?;
            let (fms, bms) = (median_ms(f.dispatches())?, median_ms(bw.dispatches())?);
            let flops = forward_flops(o.b, o.t, o.h, o.d, w);
            let ratio = match f32_total {
                Some(t) if precision != MatmulPrecision::F32 => format!("{:.2}×", t / (fms + bms)),
                _ => String::new(),
            };
            if precision == MatmulPrecision::F32 {
                f32_total = Some(fms + bms);
            }
            out(&format!(
                "{:>8} {:>12} {:>11.3} {:>9.1} {:>11.3} {:>9.1} {:>11.3} {:>8}",
                if w + 1 >= o.t { "causal".to_string() } else { w.to_string() },
                kernels,
                fms,
                flops / fms / 1e6,
                bms,
                2.5 * flops / bms / 1e6,
                fms + bms,
                ratio
            ));
            results.push(AttnBenchRow { window: w, precision, kernels, forward_ms: fms, backward_ms: bms });
        }
    }
    Ok(results)
}

/// Forward FLOPs as the bench counts them: 4·D per visible (query, key) pair and query head
/// (2·D for q·k, 2·D for p·v).
pub fn forward_flops(b: usize, t: usize, h: usize, d: usize, window: usize) -> f64 {
    let w = window.min(t);
    // Σ_t min(t, w) + 1 visible keys per query.
    let pairs: usize = (0..t).map(|ti| ti.min(w) + 1).sum();
    4.0 * (b * h * d) as f64 * pairs as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flops_count_visible_pairs() {
        // T = 4, causal: 1 + 2 + 3 + 4 = 10 pairs; window 1: 1 + 2 + 2 + 2 = 7.
        assert_eq!(forward_flops(1, 4, 1, 1, 100), 40.0);
        assert_eq!(forward_flops(1, 4, 1, 1, 1), 28.0);
    }
}
