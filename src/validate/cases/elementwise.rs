//! Validation rows for `kernels::elementwise` against `reference::elementwise`.

use crate::error::Result;
use crate::gpu::{GpuContext, GpuTensor};
use crate::kernels::{elementwise, Stream};
use crate::reference;
use crate::validate::elementwise_tolerance;
use crate::validate::suite::Runner;
use std::time::Instant;

pub(super) fn cases(ctx: &GpuContext, r: &mut Runner<'_>, chunked: bool) -> Result<()> {
    let sizes: &[usize] = if chunked { &[100_003] } else { &[1, 7, 256, 1000, 65_537, 1_048_579] };
    let suffix = if chunked { " chunked" } else { "" };
    let tol = elementwise_tolerance();
    for &n in sizes {
        let shape = format!("n={n}");
        let mut rng = r.rng(&format!("elementwise{suffix} {n}"));
        let x = rng.vec_uniform(n, -1.0, 1.0);
        let y = rng.vec_uniform(n, -1.0, 1.0);
        let alpha = rng.uniform_f32(-2.0, 2.0);
        let nan = vec![f32::NAN; n];
        let tx = ctx.upload("x", &x)?;
        let ty = ctx.upload("y", &y)?;
        let tout = ctx.tensor("out", n)?;
        type Launch<'f> = &'f dyn Fn(&mut Stream<'_>) -> Result<()>;
        let mut check =
            |name: &str, init: &[f32], target: &GpuTensor, launch: Launch<'_>, want: Vec<f32>| -> Result<()> {
                let kernel = format!("{name}{suffix}");
                if !r.wants(&kernel) {
                    return Ok(());
                }
                ctx.write(target, init)?;
                let t0 = Instant::now();
                let mut st = Stream::new(ctx);
                launch(&mut st)?;
                st.run()?;
                let got = ctx.read(target)?;
                r.record(&kernel, "-", &shape, &got, &want, tol, t0.elapsed().as_secs_f64());
                Ok(())
            };
        let mut want = vec![0.0; n];
        reference::elementwise::fill(&mut want, alpha);
        check("fill", &nan, &tout, &|s| elementwise::fill(s, &tout, alpha), want)?;

        let mut want = vec![0.0; n];
        reference::elementwise::copy(&mut want, &x);
        check("copy", &nan, &tout, &|s| elementwise::copy(s, &tout, &tx), want)?;

        let mut want = vec![0.0; n];
        reference::elementwise::add(&mut want, &x, &y);
        check("add", &nan, &tout, &|s| elementwise::add(s, &tout, &tx, &ty), want)?;

        let mut want = x.clone();
        reference::elementwise::scale(&mut want, alpha);
        check("scale", &x, &tout, &|s| elementwise::scale(s, &tout, alpha), want)?;

        let mut want = y.clone();
        reference::elementwise::axpy(&mut want, alpha, &x);
        check("axpy", &y, &tout, &|s| elementwise::axpy(s, &tout, alpha, &tx), want)?;
    }
    Ok(())
}
