//! Validation rows for `kernels::adamw` against `reference::adamw`.

use super::{f32s, f64s, rms, set_guard, upload_at, zero_guard};
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::kernels::adamw::{adamw_scalars, adamw_step, AdamwHyper, AdamwTensor};
use crate::kernels::Stream;
use crate::reference::adamw::adamw_step as ref_adamw;
use crate::train::optimizer::{adamw_group_constants, ADAMW_EPS, ADAMW_GROUPS};
use crate::validate::suite::Runner;
use crate::validate::{adamw_tolerance, Tol};
use std::time::Instant;

/// The seed run's effective AdamW learning rates (spec Appendix A), one per group.
const SEED_LRS: [f64; 6] = [0.0028284, 0.1060660, 0.0530330, 0.0017678, 0.1767767, 0.2];

fn adamw_groups() -> Vec<AdamwHyper> {
    ADAMW_GROUPS
        .iter()
        .zip(SEED_LRS)
        .map(|(&g, lr)| {
            let (beta1, beta2, weight_decay) = adamw_group_constants(g).expect("AdamW group");
            AdamwHyper { lr, beta1, beta2, eps: ADAMW_EPS, weight_decay }
        })
        .collect()
}

/// Ragged tensors of every group at gapped, unaligned arena offsets, state packed after a pad;
/// three steps (t = 1, 2, 3) so the bias corrections change; then a step with the guard set.
pub(super) fn cases(ctx: &GpuContext, r: &mut Runner<'_>, kernel: &str) -> Result<()> {
    if !r.wants(kernel) {
        return Ok(());
    }
    let chunked = kernel.ends_with("chunked");
    let lens: &[usize] =
        if chunked { &[5, 30_001, 1, 20_000, 77] } else { &[1, 3, 1000, 4097, 70_001, 12, 262_145, 24] };
    let mut rng = r.rng(kernel);
    let mut tensors = Vec::new();
    let (mut at, mut sat) = (3, 0);
    for (i, &len) in lens.iter().enumerate() {
        at += (rng.next_u64() % 70) as usize;
        tensors.push(AdamwTensor { param_offset: at, state_offset: sat, len, group: i % 6 });
        at += len;
        sat += len;
    }
    let arena = at + 11;
    let shape = format!("{} tensors, {} elems", lens.len(), sat);
    let mut p = rng.vec_uniform(arena, -1.0, 1.0);
    let tp = upload_at(ctx, "p", &p, 1)?;
    let tg = ctx.tensor("g", arena)?;
    let tm = upload_at(ctx, "m", &vec![0.0; sat], 5)?;
    let tv = upload_at(ctx, "v", &vec![0.0; sat], 7)?;
    let table = ctx.tensor("table", crate::kernels::adamw::table_len(tensors.len()))?;
    let groups = adamw_groups();
    let hyper = ctx.tensor("hyper", adamw_scalars(&groups, 1, 1.0).len())?;
    let (mut m, mut v) = (vec![0.0f32; sat], vec![0.0f32; sat]);
    for step in 1..=4u64 {
        let guarded = step == 4;
        // Gradients of different scales per step; zeros between tensors are never read.
        let scale = [1.0, 0.01, 3.0, 0.5][step as usize - 1];
        let g: Vec<f32> = (0..arena).map(|_| rng.uniform_f32(-1.0, 1.0) * scale).collect();
        ctx.write(&tg, &g)?;
        ctx.write(&hyper, &adamw_scalars(&groups, step, 1.0))?;
        let guard = if guarded { set_guard(ctx)? } else { zero_guard(ctx)? };
        let t0 = Instant::now();
        let mut st = Stream::new(ctx);
        adamw_step(&mut st, &tp, &tm, &tv, &tg, &tensors, &table, &hyper, &guard)?;
        st.run()?;
        let (gp, gm, gv) = (ctx.read(&tp)?, ctx.read(&tm)?, ctx.read(&tv)?);
        let secs = t0.elapsed().as_secs_f64();
        // The reference step from the same f32 state.
        let (mut wp, mut wm, mut wv) = (p.clone(), m.clone(), v.clone());
        if !guarded {
            for t in &tensors {
                let h = &groups[t.group];
                let (a, s) = (t.param_offset, t.state_offset);
                let mut pp = f64s(&wp[a..a + t.len]);
                let mut mm = f64s(&wm[s..s + t.len]);
                let mut vv = f64s(&wv[s..s + t.len]);
                let gg = f64s(&g[a..a + t.len]);
                ref_adamw(&mut pp, &mut mm, &mut vv, &gg, h.lr, h.beta1, h.beta2, h.eps, h.weight_decay, step);
                wp[a..a + t.len].copy_from_slice(&f32s(&pp));
                wm[s..s + t.len].copy_from_slice(&f32s(&mm));
                wv[s..s + t.len].copy_from_slice(&f32s(&vv));
            }
        }
        let variant = if guarded { "guard set".to_string() } else { format!("t={step}") };
        let tol = |w: &[f32]| if guarded { Tol { atol: 0.0, rtol: 0.0 } } else { adamw_tolerance(rms(w)) };
        r.record(kernel, &format!("{variant} p"), &shape, &gp, &wp, tol(&wp), secs);
        r.record(kernel, &format!("{variant} m"), &shape, &gm, &wm, tol(&wm), 0.0);
        r.record(kernel, &format!("{variant} v"), &shape, &gv, &wv, tol(&wv), 0.0);
        (p, m, v) = (gp, gm, gv);
    }
    Ok(())
}
