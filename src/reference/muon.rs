//! Reference for `kernels::muon` (spec §3.3): Muon per shape group (momentum, Polar Express
//! orthogonalisation, NorMuon variance reduction, cautious decay), exactly as nanochat's
//! `MuonAdamW` steps it, in f64.

use super::Real;

/// Polar Express coefficients (a, b, c) of the five iterations (safety 2e-2, cushion 2).
pub const POLAR_EXPRESS: [(f64, f64, f64); 5] = [
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
];

/// Which Muon: the seed run's, or nanochat HEAD's with MuonEq row equilibration before and Muon+
/// Frobenius renormalisation after the orthogonalisation. (`clap::ValueEnum` for step-check's
/// `--muon`: the same lowercase names as serde's.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MuonVariant {
    /// The seed run's.
    Seed,
    /// MuonEq + Muon+.
    Plus,
}

/// NorMuon's second-moment decay.
pub const MUON_BETA2: f64 = 0.9;

fn matmul(a: &[f64], b: &[f64], m: usize, k: usize, n: usize, ta: bool, tb: bool) -> Vec<f64> {
    // C (m×n) = op(A)·op(B), op(A) m×k, op(B) k×n; A stored m×k or (ta) k×m, B k×n or (tb) n×k.
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0;
            for l in 0..k {
                let av = if ta { a[l * m + i] } else { a[i * k + l] };
                let bv = if tb { b[j * k + l] } else { b[l * n + j] };
                acc += av * bv;
            }
            c[i * n + j] = acc;
        }
    }
    c
}

/// Orthogonalise one rows×cols matrix in place: Frobenius normalisation, then five Polar Express
/// iterations on the smaller Gram side.
pub fn polar_express(x: &mut [f64], rows: usize, cols: usize) {
    let norm = x.iter().map(|v| v * v).sum::<f64>().sqrt();
    for v in x.iter_mut() {
        *v /= 1.01 * norm + 1e-6;
    }
    for &(a, b, c) in &POLAR_EXPRESS {
        if rows > cols {
            // Tall: A = XᵀX (cols×cols); X ← aX + X·(bA + cA²).
            let am = matmul(x, x, cols, rows, cols, true, false);
            let a2 = matmul(&am, &am, cols, cols, cols, false, false);
            let bm: Vec<f64> = am.iter().zip(&a2).map(|(p, q)| b * p + c * q).collect();
            let xb = matmul(x, &bm, rows, cols, cols, false, false);
            for (v, w) in x.iter_mut().zip(xb) {
                *v = a * *v + w;
            }
        } else {
            // Wide or square: A = XXᵀ (rows×rows); X ← aX + (bA + cA²)·X.
            let am = matmul(x, x, rows, cols, rows, false, true);
            let a2 = matmul(&am, &am, rows, rows, rows, false, false);
            let bm: Vec<f64> = am.iter().zip(&a2).map(|(p, q)| b * p + c * q).collect();
            let bx = matmul(&bm, x, rows, rows, cols, false, false);
            for (v, w) in x.iter_mut().zip(bx) {
                *v = a * *v + w;
            }
        }
    }
}

/// One Muon step on a shape group of `k` matrices of rows×cols stacked back to back in `p`, `g`
/// and `momentum`; `second` holds NorMuon's second moment, one value per row (rows ≥ cols) or per
/// column, per matrix. lr is the group's scheduled lr (before √max(1, rows/cols)); wd the
/// scheduled Muon weight decay.
#[allow(clippy::too_many_arguments)]
pub fn muon_step<R: Real>(
    p: &mut [R],
    momentum: &mut [R],
    second: &mut [R],
    g: &[R],
    k: usize,
    rows: usize,
    cols: usize,
    lr: f64,
    mu: f64,
    weight_decay: f64,
    variant: MuonVariant,
) {
    let mn = rows * cols;
    let lr_eff = lr * (rows as f64 / cols as f64).max(1.0).sqrt();
    let per_row = rows >= cols;
    let red = if per_row { cols } else { rows };
    let nsec = if per_row { rows } else { cols };
    for j in 0..k {
        let (ps, ms, gs) = (j * mn, j * mn, j * mn);
        // 1–2: momentum, then Nesterov: g ← (1−μ)·G + μ·M.
        let mut x = vec![0.0f64; mn];
        for i in 0..mn {
            let gi = g[gs + i].f();
            let mi = mu * momentum[ms + i].f() + (1.0 - mu) * gi;
            momentum[ms + i] = R::of(mi);
            x[i] = (1.0 - mu) * gi + mu * mi;
        }
        if variant == MuonVariant::Plus {
            // MuonEq: every row rescaled to the matrix's mean row norm.
            let target = x.iter().map(|v| v * v).sum::<f64>().sqrt() / (rows as f64).sqrt();
            for r in 0..rows {
                let row = &mut x[r * cols..(r + 1) * cols];
                let rn = row.iter().map(|v| v * v).sum::<f64>().sqrt();
                let s = target / rn.max(1e-6);
                row.iter_mut().for_each(|v| *v *= s);
            }
        }
        polar_express(&mut x, rows, cols);
        if variant == MuonVariant::Plus {
            let n = x.iter().map(|v| v * v).sum::<f64>().sqrt();
            let s = (rows.min(cols) as f64).sqrt() / n.max(1e-6);
            x.iter_mut().for_each(|v| *v *= s);
        }
        // NorMuon: per-row (or per-column) second moment, then restore the Frobenius norm.
        let at = |x: &[f64], a: usize, r: usize| if per_row { x[a * cols + r] } else { x[r * cols + a] };
        let v_mean: Vec<f64> =
            (0..nsec).map(|a| (0..red).map(|r| at(&x, a, r).powi(2)).sum::<f64>() / red as f64).collect();
        let v_norm = (v_mean.iter().sum::<f64>() * red as f64).sqrt();
        let mut step = vec![0.0f64; nsec];
        for a in 0..nsec {
            let s = MUON_BETA2 * second[j * nsec + a].f() + (1.0 - MUON_BETA2) * v_mean[a];
            second[j * nsec + a] = R::of(s);
            step[a] = 1.0 / s.max(1e-10).sqrt();
        }
        let v_norm_new = (v_mean.iter().zip(&step).map(|(vm, st)| vm * red as f64 * st * st).sum::<f64>()).sqrt();
        let rescale = v_norm / v_norm_new.max(1e-10);
        // Cautious weight decay and the update.
        for r in 0..rows {
            for c in 0..cols {
                let i = r * cols + c;
                let a = if per_row { r } else { c };
                let upd = x[i] * step[a] * rescale;
                let pi = p[ps + i].f();
                let decay = if upd * pi >= 0.0 { lr_eff * weight_decay * pi } else { 0.0 };
                p[ps + i] = R::of(pi - lr_eff * upd - decay);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::Rng;

    #[test]
    fn polar_express_approximately_orthogonalises() {
        let mut rng = Rng::new(1);
        for (rows, cols) in [(16, 16), (24, 8), (8, 24)] {
            let mut x: Vec<f64> = (0..rows * cols).map(|_| rng.normal()).collect();
            polar_express(&mut x, rows, cols);
            // Singular values land in roughly [0.7, 1.2]: XᵀX (or XXᵀ) is near the identity.
            let small = rows.min(cols);
            let gram = if rows >= cols {
                matmul(&x, &x, cols, rows, cols, true, false)
            } else {
                matmul(&x, &x, rows, cols, rows, false, true)
            };
            for i in 0..small {
                let d = gram[i * small + i];
                assert!(d > 0.4 && d < 1.5, "{rows}x{cols}: diag {d}");
            }
        }
    }

    #[test]
    fn muon_update_has_the_expected_scale_and_cautious_decay() {
        let mut rng = Rng::new(2);
        let (k, rows, cols) = (2, 12, 6);
        let mut p: Vec<f64> = (0..k * rows * cols).map(|_| rng.normal() * 0.1).collect();
        let p0 = p.clone();
        let g: Vec<f64> = (0..k * rows * cols).map(|_| rng.normal()).collect();
        let mut mom = vec![0.0; p.len()];
        let mut second = vec![0.0; k * rows];
        muon_step(&mut p, &mut mom, &mut second, &g, k, rows, cols, 0.02, 0.95, 0.0, MuonVariant::Seed);
        // Without decay, the update's RMS is ≈ lr_eff/√max(rows, cols) = 0.02·√2/√12.
        let rms = (p.iter().zip(&p0).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / p.len() as f64).sqrt();
        let want = 0.02 * 2f64.sqrt() / 12f64.sqrt();
        assert!(rms > 0.5 * want && rms < 1.5 * want, "rms {rms} vs {want}");
        for variant in [MuonVariant::Seed, MuonVariant::Plus] {
            let mut q = p0.clone();
            let (mut mo, mut se) = (vec![0.0; q.len()], vec![0.0; k * rows]);
            muon_step(&mut q, &mut mo, &mut se, &g, k, rows, cols, 0.02, 0.95, 0.5, variant);
            assert!(q.iter().all(|v| v.is_finite()));
        }
    }
}
