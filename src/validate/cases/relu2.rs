//! Validation rows for `kernels::relu2` against `reference::relu2`.

use super::{kernel_name, timed, upload_at};
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::kernels::relu2;
use crate::reference;
use crate::validate::relu2_tolerance;
use crate::validate::suite::Runner;

pub(super) fn cases(ctx: &GpuContext, r: &mut Runner<'_>, chunked: bool) -> Result<()> {
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
            reference::relu2::relu2_forward(&mut want, &inp);
            let to = upload_at(ctx, "out", &vec![f32::NAN; n], pad + 1)?;
            let secs = timed(ctx, |s| relu2::relu2_forward(s, &to, &ti))?;
            r.record(&fwd, "out", &shape, &ctx.read(&to)?, &want, relu2_tolerance(), secs);
        }
        if r.wants(&bwd) {
            let dout = rng.vec_uniform(n, -1.0, 1.0);
            let mut want = vec![0.0f32; n];
            reference::relu2::relu2_backward(&mut want, &dout, &inp);
            let tdo = upload_at(ctx, "dout", &dout, 0)?;
            let td = upload_at(ctx, "dinp", &vec![f32::NAN; n], pad + 2)?;
            let secs = timed(ctx, |s| relu2::relu2_backward(s, &td, &tdo, &ti))?;
            r.record(&bwd, "dinp", &shape, &ctx.read(&td)?, &want, relu2_tolerance(), secs);
        }
    }
    Ok(())
}
