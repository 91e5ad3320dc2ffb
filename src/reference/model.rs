//! The reference GPT: forward and a hand-written backward of nanochat's model (spec §1 and
//! Appendix B), composed from the per-op references of this module so that the finite-difference
//! check of the whole model also checks every op's backward formula.
//!
//! Generic over [`Real`]: with f64 it is checked against central finite differences; the GPU
//! model is checked against it (in f64, so the reference contributes no error of its own).
//! Parameters and gradients live in the flat arena described by [`ParamLayout`].

use super::attention::{attention_backward, attention_forward, AttnShape};
use super::cross_entropy::cross_entropy;
use super::embedding::{embedding_backward, embedding_forward};
use super::matmul::matmul;
use super::relu2::{relu2_backward, relu2_forward};
use super::residual::{backout_backward, backout_forward, lambda_mix_backward, lambda_mix_forward};
use super::rmsnorm::{rmsnorm_backward, rmsnorm_forward};
use super::rope::{rope_backward, rope_forward, rope_tables};
use super::smear::{smear_backward, smear_forward};
use super::ve_gate::{ve_gate_backward, ve_gate_forward};
use super::Real;
use crate::model::config::{QK_SCALE, SOFTCAP};
use crate::model::{GptConfig, ParamLayout};
use crate::shapes::{Gemm, MatmulPrecision};

/// Everything the backward needs, per layer.
struct LayerCache<R> {
    x_prev: Vec<R>, // (N, C) block-stack input before the lambda mix
    x_in: Vec<R>,   // (N, C) after the mix: the block's input
    u: Vec<R>,      // (N, C) norm(x_in)
    rstd_a: Vec<R>, // (N,)
    q_rot: Vec<R>,  // (N, H·D) q after RoPE, before the QK norm
    k_rot: Vec<R>,  // (N, Hkv·D)
    rstd_q: Vec<R>, // (N·H,)
    rstd_k: Vec<R>, // (N·Hkv,)
    qn: Vec<R>,     // (N, H·D) normalized ×1.2
    kn: Vec<R>,     // (N, Hkv·D)
    v: Vec<R>,      // (N, Hkv·D) after the value-embedding gate
    ve: Vec<R>,     // (N, Hkv·D) gathered value-embedding rows (VE layers only)
    att: Vec<R>,    // (N, H·D) attention output
    lse: Vec<R>,    // (N·H,)
    x1: Vec<R>,     // (N, C) after the attention residual
    u2: Vec<R>,     // (N, C) norm(x1)
    rstd_b: Vec<R>, // (N,)
    h: Vec<R>,      // (N, 4C) MLP pre-activation
    a: Vec<R>,      // (N, 4C) relu(h)²
}

/// A forward pass's outputs and saved activations.
pub struct Forward<R> {
    /// Mean loss over targets ≠ −1 (0 when there are none).
    pub loss: f64,
    /// Per-token loss in nats (0 for ignored targets).
    pub losses: Vec<R>,
    pub valid: usize,
    e_raw: Vec<R>,
    rstd0: Vec<R>,
    e: Vec<R>,
    x0: Vec<R>,
    layers: Vec<LayerCache<R>>,
    x_mid: Vec<R>,
    xf: Vec<R>,
    z: Vec<R>,
    rstd_f: Vec<R>,
    logits: Vec<R>,
}

impl<R: Real> Forward<R> {
    /// The logits (N, Vp) before the softcap.
    pub fn logits(&self) -> &[R] {
        &self.logits
    }
}

fn zeros<R: Real>(n: usize) -> Vec<R> {
    vec![R::of(0.0); n]
}

/// The reference model bound to a configuration and a parameter arena.
pub struct RefGpt<'a, R: Real> {
    pub cfg: &'a GptConfig,
    pub layout: &'a ParamLayout,
    pub params: &'a [R],
}

impl<'a, R: Real> RefGpt<'a, R> {
    pub fn new(cfg: &'a GptConfig, layout: &'a ParamLayout, params: &'a [R]) -> Self {
        assert_eq!(params.len(), layout.len, "parameter arena length");
        Self { cfg, layout, params }
    }

    fn p(&self, name: &str) -> &'a [R] {
        let (o, n) = self.layout.range(name);
        &self.params[o..o + n]
    }

    fn rope(&self, t: usize) -> (Vec<R>, Vec<R>) {
        let (c, s) = rope_tables(t, self.cfg.head_dim);
        (c.into_iter().map(R::of).collect(), s.into_iter().map(R::of).collect())
    }

    /// Forward over a (B, T) batch; `targets` may contain −1 (ignored).
    pub fn forward(&self, idx: &[i32], targets: &[i32], b: usize, t: usize) -> Forward<R> {
        let cfg = self.cfg;
        let (c, h, hkv, d, vp) = (cfg.n_embd, cfg.n_head, cfg.n_kv_head, cfg.head_dim, cfg.padded_vocab);
        let n = b * t;
        assert!(t <= cfg.sequence_len && idx.len() == n && targets.len() == n);
        let (cos, sin) = self.rope(t);
        let hd = h * d;
        let kv = hkv * d;

        let mut e_raw = zeros(n * c);
        embedding_forward(&mut e_raw, self.p("transformer.wte.weight"), idx, n, c);
        let mut e = zeros(n * c);
        let mut rstd0 = zeros(n);
        rmsnorm_forward(&mut e, &mut rstd0, &e_raw, n, c, 1.0);
        let mut x = zeros(n * c);
        smear_forward(&mut x, &e, self.p("smear_gate.weight"), self.p("smear_lambda")[0], b, t, c);
        let x0 = x.clone();
        let resid = self.p("resid_lambdas");
        let x0l = self.p("x0_lambdas");
        let mut layers = Vec::with_capacity(cfg.n_layer);
        let mut x_mid = Vec::new();
        for i in 0..cfg.n_layer {
            let w = |s: &str| self.p(&format!("transformer.h.{i}.{s}"));
            let x_prev = x;
            let mut x_in = zeros(n * c);
            lambda_mix_forward(&mut x_in, &x_prev, &x0, resid[i], x0l[i]);
            let mut u = zeros(n * c);
            let mut rstd_a = zeros(n);
            rmsnorm_forward(&mut u, &mut rstd_a, &x_in, n, c, 1.0);
            let mut q = zeros(n * hd);
            let mut k = zeros(n * kv);
            let mut v = zeros(n * kv);
            matmul(&mut q, &u, w("attn.c_q.weight"), &Gemm::nt(n, hd, c), 1.0, 0.0);
            matmul(&mut k, &u, w("attn.c_k.weight"), &Gemm::nt(n, kv, c), 1.0, 0.0);
            matmul(&mut v, &u, w("attn.c_v.weight"), &Gemm::nt(n, kv, c), 1.0, 0.0);
            let mut ve = Vec::new();
            if cfg.has_value_embed(i) {
                ve = zeros(n * kv);
                embedding_forward(&mut ve, self.p(&format!("value_embeds.{i}.weight")), idx, n, kv);
                ve_gate_forward(&mut v, &u, &ve, w("attn.ve_gate.weight"), n, c, hkv, d);
            }
            rope_forward(&mut q, &cos, &sin, n, t, 0, h, d);
            rope_forward(&mut k, &cos, &sin, n, t, 0, hkv, d);
            let (mut qn, mut rstd_q) = (zeros(n * hd), zeros(n * h));
            let (mut kn, mut rstd_k) = (zeros(n * kv), zeros(n * hkv));
            rmsnorm_forward(&mut qn, &mut rstd_q, &q, n * h, d, QK_SCALE);
            rmsnorm_forward(&mut kn, &mut rstd_k, &k, n * hkv, d, QK_SCALE);
            let mut att = zeros(n * hd);
            let mut lse = zeros(n * h);
            let scale = 1.0 / (d as f32).sqrt();
            attention_forward(
                &mut att,
                &mut lse,
                &qn,
                &kn,
                &v,
                &AttnShape { b, t, h, hkv, d, window: cfg.windows[i], scale, precision: MatmulPrecision::F32 },
            );
            let mut x1 = x_in.clone();
            matmul(&mut x1, &att, w("attn.c_proj.weight"), &Gemm::nt(n, c, hd), 1.0, 1.0);
            let mut u2 = zeros(n * c);
            let mut rstd_b = zeros(n);
            rmsnorm_forward(&mut u2, &mut rstd_b, &x1, n, c, 1.0);
            let mut hh = zeros(n * 4 * c);
            matmul(&mut hh, &u2, w("mlp.c_fc.weight"), &Gemm::nt(n, 4 * c, c), 1.0, 0.0);
            let mut a = zeros(n * 4 * c);
            relu2_forward(&mut a, &hh);
            x = x1.clone();
            matmul(&mut x, &a, w("mlp.c_proj.weight"), &Gemm::nt(n, c, 4 * c), 1.0, 1.0);
            if i == cfg.backout_layer() {
                x_mid = x.clone();
            }
            layers.push(LayerCache {
                x_prev,
                x_in,
                u,
                rstd_a,
                q_rot: q,
                k_rot: k,
                rstd_q,
                rstd_k,
                qn,
                kn,
                v,
                ve,
                att,
                lse,
                x1,
                u2,
                rstd_b,
                h: hh,
                a,
            });
        }
        let mut xf = zeros(n * c);
        backout_forward(&mut xf, &x, &x_mid, self.p("backout_lambda")[0]);
        let mut z = zeros(n * c);
        let mut rstd_f = zeros(n);
        rmsnorm_forward(&mut z, &mut rstd_f, &xf, n, c, 1.0);
        let mut logits = zeros(n * vp);
        matmul(&mut logits, &z, self.p("lm_head.weight"), &Gemm::nt(n, vp, c), 1.0, 0.0);
        let mut losses = zeros(n);
        cross_entropy(&mut losses, None, &logits, targets, n, cfg.vocab_size, vp, SOFTCAP, 1.0);
        let valid = targets.iter().filter(|&&y| y >= 0).count();
        let sum: f64 = losses.iter().map(|l| l.f()).sum();
        let loss = if valid > 0 { sum / valid as f64 } else { 0.0 };
        Forward { loss, losses, valid, e_raw, rstd0, e, x0, layers, x_mid, xf, z, rstd_f, logits }
    }

    /// The softcapped logits 15·tanh(z/15) of a forward over a (B, T) batch, (B·T, V) with the
    /// vocabulary padding dropped: what nanochat's model returns when called without targets.
    pub fn logits(&self, idx: &[i32], b: usize, t: usize) -> Vec<R> {
        let (v, vp) = (self.cfg.vocab_size, self.cfg.padded_vocab);
        let fw = self.forward(idx, &vec![-1; b * t], b, t);
        let cap = SOFTCAP as f64;
        fw.logits.chunks(vp).flat_map(|row| row[..v].iter().map(move |z| R::of(cap * (z.f() / cap).tanh()))).collect()
    }

    /// Gradient of `grad_scale · Σ losses` (grad_scale = 1/valid gives the mean loss's gradient)
    /// with respect to every parameter, in the arena layout.
    pub fn backward(
        &self,
        fw: &Forward<R>,
        idx: &[i32],
        targets: &[i32],
        b: usize,
        t: usize,
        grad_scale: f64,
    ) -> Vec<R> {
        let cfg = self.cfg;
        let (c, h, hkv, d, vp) = (cfg.n_embd, cfg.n_head, cfg.n_kv_head, cfg.head_dim, cfg.padded_vocab);
        let n = b * t;
        let (hd, kv) = (h * d, hkv * d);
        let (cos, sin) = self.rope(t);
        let mut grads: Vec<R> = zeros(self.layout.len);
        // A mutable view of one parameter's gradient.
        let layout = self.layout;
        macro_rules! g {
            ($name:expr) => {{
                let (o, len) = layout.range(&$name);
                &mut grads[o..o + len]
            }};
        }

        // dlogits of Σ losses, then scaled here in R's precision (the GPU kernel takes an f32
        // grad_scale; the f64 finite-difference check should not inherit that rounding).
        let mut dlogits = zeros(n * vp);
        let mut scratch = zeros(n);
        cross_entropy(&mut scratch, Some(&mut dlogits), &fw.logits, targets, n, cfg.vocab_size, vp, SOFTCAP, 1.0);
        for x in dlogits.iter_mut() {
            *x = R::of(x.f() * grad_scale);
        }
        let mut dz = zeros(n * c);
        matmul(&mut dz, &dlogits, self.p("lm_head.weight"), &Gemm::nn(n, c, vp), 1.0, 0.0);
        matmul(g!("lm_head.weight"), &dlogits, &fw.z, &Gemm::tn(vp, c, n), 1.0, 1.0);
        let mut dx = zeros(n * c);
        rmsnorm_backward(&mut dx, &dz, &fw.xf, &fw.rstd_f, n, c, 1.0, false);
        // Backout: x_f = x − λ·x_mid.
        let mut dx_mid = zeros(n * c);
        let mut dlb = R::of(0.0);
        backout_backward(&mut dx_mid, &mut dlb, &dx, &fw.x_mid, self.p("backout_lambda")[0]);
        g!("backout_lambda")[0] = R::of(g!("backout_lambda")[0].f() + dlb.f());

        let mut dx0 = zeros(n * c);
        let resid = self.p("resid_lambdas");
        let x0l = self.p("x0_lambdas");
        let scale = 1.0 / (d as f32).sqrt();
        for i in (0..cfg.n_layer).rev() {
            let lc = &fw.layers[i];
            let w = |s: &str| self.p(&format!("transformer.h.{i}.{s}"));
            let gname = |s: &str| format!("transformer.h.{i}.{s}");
            if i == cfg.backout_layer() {
                for (a, bm) in dx.iter_mut().zip(&dx_mid) {
                    *a = R::of(a.f() + bm.f());
                }
            }
            // MLP: x = x1 + a·Wprojᵀ.
            let mut da = zeros(n * 4 * c);
            matmul(&mut da, &dx, w("mlp.c_proj.weight"), &Gemm::nn(n, 4 * c, c), 1.0, 0.0);
            matmul(g!(gname("mlp.c_proj.weight")), &dx, &lc.a, &Gemm::tn(c, 4 * c, n), 1.0, 1.0);
            let mut dh = zeros(n * 4 * c);
            relu2_backward(&mut dh, &da, &lc.h);
            let mut du2 = zeros(n * c);
            matmul(&mut du2, &dh, w("mlp.c_fc.weight"), &Gemm::nn(n, c, 4 * c), 1.0, 0.0);
            matmul(g!(gname("mlp.c_fc.weight")), &dh, &lc.u2, &Gemm::tn(4 * c, c, n), 1.0, 1.0);
            let mut dx1 = dx.clone();
            rmsnorm_backward(&mut dx1, &du2, &lc.x1, &lc.rstd_b, n, c, 1.0, true);
            // Attention: x1 = x_in + att·Woᵀ.
            let mut datt = zeros(n * hd);
            matmul(&mut datt, &dx1, w("attn.c_proj.weight"), &Gemm::nn(n, hd, c), 1.0, 0.0);
            matmul(g!(gname("attn.c_proj.weight")), &dx1, &lc.att, &Gemm::tn(c, hd, n), 1.0, 1.0);
            let (mut dqn, mut dkn, mut dv) = (zeros(n * hd), zeros(n * kv), zeros(n * kv));
            attention_backward(
                &mut dqn,
                &mut dkn,
                &mut dv,
                &datt,
                &lc.qn,
                &lc.kn,
                &lc.v,
                &lc.att,
                &lc.lse,
                &AttnShape { b, t, h, hkv, d, window: cfg.windows[i], scale, precision: MatmulPrecision::F32 },
            );
            let (mut dq, mut dk) = (zeros(n * hd), zeros(n * kv));
            rmsnorm_backward(&mut dq, &dqn, &lc.q_rot, &lc.rstd_q, n * h, d, QK_SCALE, false);
            rmsnorm_backward(&mut dk, &dkn, &lc.k_rot, &lc.rstd_k, n * hkv, d, QK_SCALE, false);
            rope_backward(&mut dq, &cos, &sin, n, t, 0, h, d);
            rope_backward(&mut dk, &cos, &sin, n, t, 0, hkv, d);
            let mut du = zeros(n * c);
            if cfg.has_value_embed(i) {
                let mut dve = zeros(n * kv);
                let wg = w("attn.ve_gate.weight");
                ve_gate_backward(
                    &mut dve,
                    &mut du,
                    g!(gname("attn.ve_gate.weight")),
                    &dv,
                    &lc.u,
                    &lc.ve,
                    wg,
                    n,
                    c,
                    hkv,
                    d,
                );
                embedding_backward(g!(format!("value_embeds.{i}.weight")), &dve, idx, n, kv);
            }
            matmul(&mut du, &dq, w("attn.c_q.weight"), &Gemm::nn(n, c, hd), 1.0, 1.0);
            matmul(&mut du, &dk, w("attn.c_k.weight"), &Gemm::nn(n, c, kv), 1.0, 1.0);
            matmul(&mut du, &dv, w("attn.c_v.weight"), &Gemm::nn(n, c, kv), 1.0, 1.0);
            matmul(g!(gname("attn.c_q.weight")), &dq, &lc.u, &Gemm::tn(hd, c, n), 1.0, 1.0);
            matmul(g!(gname("attn.c_k.weight")), &dk, &lc.u, &Gemm::tn(kv, c, n), 1.0, 1.0);
            matmul(g!(gname("attn.c_v.weight")), &dv, &lc.u, &Gemm::tn(kv, c, n), 1.0, 1.0);
            let mut dx_in = dx1;
            rmsnorm_backward(&mut dx_in, &du, &lc.x_in, &lc.rstd_a, n, c, 1.0, true);
            // Lambda mix: x_in = a·x_prev + b·x0.
            let (mut dla, mut dlx) = (R::of(0.0), R::of(0.0));
            let mut dx_prev = zeros(n * c);
            lambda_mix_backward(
                &mut dx_prev,
                &mut dx0,
                &mut dla,
                &mut dlx,
                &dx_in,
                &lc.x_prev,
                &fw.x0,
                resid[i],
                x0l[i],
            );
            let gr = g!("resid_lambdas");
            gr[i] = R::of(gr[i].f() + dla.f());
            let gx = g!("x0_lambdas");
            gx[i] = R::of(gx[i].f() + dlx.f());
            dx = dx_prev;
        }
        // x0 is the smeared embedding itself: its gradient joins the stack's.
        for (a, bm) in dx.iter_mut().zip(&dx0) {
            *a = R::of(a.f() + bm.f());
        }
        let mut de = zeros(n * c);
        let mut dlam = R::of(0.0);
        let (sw, sl) = (self.p("smear_gate.weight"), self.p("smear_lambda")[0]);
        smear_backward(&mut de, g!("smear_gate.weight"), &mut dlam, &dx, &fw.e, sw, sl, b, t, c);
        g!("smear_lambda")[0] = R::of(g!("smear_lambda")[0].f() + dlam.f());
        let mut de_raw = zeros(n * c);
        rmsnorm_backward(&mut de_raw, &de, &fw.e_raw, &fw.rstd0, n, c, 1.0, false);
        embedding_backward(g!("transformer.wte.weight"), &de_raw, idx, n, c);
        grads
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::Rng;

    /// A micro model with every feature on: GQA, value embeddings on both parities of layer,
    /// a sliding window, smear, backout, padded vocab.
    fn micro() -> GptConfig {
        let mut cfg = GptConfig::new(3, 2, 1, 32, 50, 8, "SSL").unwrap();
        cfg.windows = vec![2, 3, 8];
        cfg
    }

    /// Every parameter moved off its init (zero projections and lambdas would hide errors).
    /// smear_lambda starts at 0 and would stay tiny after a perturbation, leaving the smear gate
    /// with a gradient too small to check; it gets a trained-looking value instead.
    fn perturbed(layout: &ParamLayout, seed: u64) -> Vec<f64> {
        let mut rng = Rng::new(seed);
        let mut p: Vec<f64> =
            layout.init(seed).iter().map(|&x| x as f64 + 0.3 * rng.normal() * (x.abs() as f64 + 0.05)).collect();
        p[layout.range("smear_lambda").0] = 0.6;
        p
    }

    #[test]
    fn gradients_match_central_finite_differences() {
        let cfg = micro();
        let layout = ParamLayout::new(&cfg);
        let params = perturbed(&layout, 7);
        let (b, t) = (2, cfg.sequence_len);
        let mut rng = Rng::new(11);
        let idx: Vec<i32> = (0..b * t).map(|_| (rng.next_u64() % cfg.vocab_size as u64) as i32).collect();
        let mut targets: Vec<i32> = (0..b * t).map(|_| (rng.next_u64() % cfg.vocab_size as u64) as i32).collect();
        targets[3] = -1; // ignore_index participates
        let model = RefGpt::new(&cfg, &layout, &params);
        let fw = model.forward(&idx, &targets, b, t);
        let grads = model.backward(&fw, &idx, &targets, b, t, 1.0 / fw.valid as f64);

        let loss_at = |p: &[f64]| RefGpt::new(&cfg, &layout, p).forward(&idx, &targets, b, t).loss;
        let mut worst: (f64, String) = (0.0, String::new());
        for (spec, &off) in layout.specs.iter().zip(&layout.offsets) {
            let nel = spec.numel();
            // Up to 12 entries per tensor, spread over it (embedding tables: rows of tokens that
            // occur, the others have no gradient), every entry of the small ones.
            let picks: Vec<usize> = if spec.name == "transformer.wte.weight" || spec.name.starts_with("value_embeds") {
                let w = spec.shape[1];
                (0..12).map(|j| idx[j * 5 % idx.len()] as usize * w + j * 7 % w).collect()
            } else if nel <= 24 {
                (0..nel).collect()
            } else {
                (0..12).map(|j| (j * nel / 12 + j % 3).min(nel - 1)).collect()
            };
            let (mut num, mut den) = (0.0f64, 0.0f64);
            for j in picks {
                let i = off + j;
                // Fourth-order central stencil: the loss is only known to ~1e-15, so the step
                // must be large for roundoff/h to stay small, and the h⁴ truncation term allows it.
                let hstep = 1e-3 * params[i].abs().max(0.1);
                let at = |k: f64| {
                    let mut p = params.clone();
                    p[i] += k * hstep;
                    loss_at(&p)
                };
                let fd = (8.0 * (at(1.0) - at(-1.0)) - (at(2.0) - at(-2.0))) / (12.0 * hstep);
                num += (fd - grads[i]).powi(2);
                den += fd.powi(2);
            }
            let rel = num.sqrt() / den.sqrt().max(1e-30);
            assert!(den > 0.0, "{}: zero gradient everywhere sampled", spec.name);
            if rel > worst.0 {
                worst = (rel, spec.name.clone());
            }
            assert!(rel <= 1e-6, "{}: rel err {rel:e} vs finite differences", spec.name);
        }
        eprintln!("worst tensor rel err vs finite differences: {:e} ({})", worst.0, worst.1);
    }

    #[test]
    fn all_ignored_targets_give_zero_loss_and_gradient() {
        let cfg = micro();
        let layout = ParamLayout::new(&cfg);
        let params = perturbed(&layout, 3);
        let (b, t) = (1, cfg.sequence_len);
        let idx = vec![1i32; t];
        let targets = vec![-1i32; t];
        let model = RefGpt::new(&cfg, &layout, &params);
        let fw = model.forward(&idx, &targets, b, t);
        assert_eq!((fw.loss, fw.valid), (0.0, 0));
        let grads = model.backward(&fw, &idx, &targets, b, t, 0.0);
        assert!(grads.iter().all(|&g| g == 0.0));
    }

    #[test]
    fn initial_loss_is_near_uniform() {
        // At init lm_head ~ N(0, 0.001²): logits ≈ 0, so the loss is ≈ ln(V).
        let cfg = GptConfig::new(2, 2, 2, 64, 512, 16, "L").unwrap();
        let layout = ParamLayout::new(&cfg);
        let params: Vec<f64> = layout.init(1).iter().map(|&x| x as f64).collect();
        let idx: Vec<i32> = (0..16).map(|i| i * 7 % 512).collect();
        let targets: Vec<i32> = (0..16).map(|i| i * 13 % 512).collect();
        let fw = RefGpt::new(&cfg, &layout, &params).forward(&idx, &targets, 1, 16);
        assert!((fw.loss - (512f64).ln()).abs() < 0.01, "loss {}", fw.loss);
    }
}
