//! Checking GPU kernels against their CPU references.
//!
//! [`compare`] / [`assert_close`] is the one comparator: an element passes when
//! `|got − want| ≤ atol + rtol·|want|`, and a NaN or infinity where the reference is finite always
//! fails (outputs are poisoned with NaN before each run, so an element the kernel never wrote
//! shows up here). Tolerances live in this file, one function per kernel family, each with the
//! reasoning behind its numbers. [`suite`] is the table `wgpt validate` prints and `cargo test` runs.

mod cases;
pub mod suite;

use std::fmt;

/// `|got − want| ≤ atol + rtol·|want|`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tol {
    pub atol: f64,
    pub rtol: f64,
}

impl fmt::Display for Tol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.0e}+{:.0e}·|x|", self.atol, self.rtol)
    }
}

/// Matmul, f32 accumulation over K terms. Test inputs are scaled like a linear layer (A uniform in
/// [−1, 1], B uniform in [−1, 1]/√K), so outputs and running partial sums are O(1). Each of the K
/// fused multiply-adds rounds once, with error ≤ ε·|partial sum| ≈ 6e-8; those errors are
/// independent in sign, so the total is ≈ √K·6e-8 ≤ 3.3e-6 at K = 3072 and far less at small K:
/// at least 3× inside atol = 1e-5 even where cancellation makes the output ~0, and rtol = 1e-4
/// covers the O(1) outputs. These are the fp32 bounds the foundation issue asks for; no kernel
/// gets a looser one. (`k` is taken so a future reduced-precision path can scale with it.)
pub fn matmul_tolerance(_k: usize) -> Tol {
    Tol { atol: 1e-5, rtol: 1e-4 }
}

/// Matmul on cooperative matrices, f16 inputs, against the f64 reference fed the same
/// f16-rounded inputs (`Gemm::precision` rounds them there), so neither side rounds the inputs
/// differently and the products are exact on both (two 11-bit significands multiply into ≤ 22
/// bits, exact in f32): only the kernel's accumulation remains. Inputs are scaled as a linear
/// layer's (A in [−1, 1], B in [−1, 1]/√K), so every partial sum has magnitude ≲ 1 and the
/// terms' root-sum-square is ≤ 1 (≈ 1/3 for uniform inputs).
/// - f32 accumulation (`f16_block` = 0): a round-to-nearest accumulator (lavapipe) errs like the
///   f32 kernels, √K·6e-8 ≤ 3.3e-6 (see [`matmul_tolerance`]). NVIDIA's tensor cores do not round
///   to nearest inside an MMA: they align the products to the largest exponent and truncate
///   (Fasi, Higham, Mikaitis and Pranesh, "Numerical behavior of NVIDIA tensor cores", 2021), up
///   to one ulp (≤ ε·|partial| ≤ ε) per product, and the errors can share a sign, so the bound
///   is linear: K·ε = 3.7e-4 at K = 3072, 9.2e-5 at 768. atol = 1e-5 + K·ε, rtol = 1e-4.
/// - f16 accumulation over K blocks of `f16_block` (then exact widening and f32 addition): each
///   of a block's ≤ `f16_block` roundings errs by ≤ ε16/2·|block partial sum| (ε16 = 2^−10),
///   independently in sign on a round-to-nearest unit; the block partial sums of all blocks have
///   a root-sum-square ≈ √(f16_block/2)·l2, so by the sum rule below the error stays under
///   2·ε16·√f16_block·l2 with l2 ≤ 1: 1.6e-2 for blocks of 64, independent of K (that is the
///   point of flushing). Added to the f32 allowance above. A unit that truncates in f16 could
///   exceed it; the autotuner checks this variant at the class's own K before ranking it.
pub fn matmul_coop_tolerance(k: usize, f16_block: u32) -> Tol {
    const EPS16: f64 = 1.0 / 1024.0;
    let f32_part = 1e-5 + k as f64 * EPS;
    let f16_part = if f16_block == 0 { 0.0 } else { 2.0 * EPS16 * (f16_block as f64).sqrt() };
    Tol { atol: f32_part + f16_part, rtol: 1e-4 }
}

/// fill/add/scale: one correctly rounded f32 operation, identical to the reference's f64 result
/// rounded once, so the only allowance is for a driver that flushes denormals (inputs are O(1),
/// so that never triggers): effectively exact. axpy: `fma` rounds once, but a driver may split it
/// into a multiply and an add (two roundings); with O(1) inputs that is ≤ 2.4e-7 absolute.
pub fn elementwise_tolerance() -> Tol {
    Tol { atol: 5e-7, rtol: 2.4e-7 }
}

/// Sum of squares, f32: each invocation adds ≤ n/65,536 terms sequentially, then a 256-wide tree
/// and a final 256-wide tree combine them: about (n/65,536 + 16) roundings on any path, all on
/// positive terms (no cancellation), so the relative error stays below ≈ 50·ε ≈ 3e-6 for the
/// largest vector the suite uses (3M elements). rtol = 1e-5 gives 3× margin.
pub fn reduce_tolerance() -> Tol {
    Tol { atol: 1e-6, rtol: 1e-5 }
}

/// Signed sums to one value (`reduce::{dot, sum_short, weighted_cols}`), f32, which may cancel:
/// the sum rule (see the model-ops note below) over the terms' root-sum-square `l2` (alpha
/// included) and the longest rounding `chain` a term goes through; plus the rounding of the
/// alpha product and of the accumulation onto the prior value, each ≤ ε/2 of `sum`, the largest
/// |alpha·Σ| of the row (absolute: the prior may cancel it); plus 1 ulp relative for the
/// reference's own rounding to f32 and the kernel's last store.
pub fn reduce_sum_tolerance(chain: usize, l2: f64, sum: f64) -> Tol {
    Tol { atol: 2.0 * EPS * l2 * (chain.max(1) as f64).sqrt() + EPS * sum, rtol: EPS }
}

/// AdamW, one step from the kernel's own f32 state (so errors never compound). Each output is a
/// short expression: m = β1·m + (1−β1)·g and v = β2·v + (1−β2)·g² are two roundings plus the f32
/// rounding of the constants, ≤ 3ε·(|β1·m| + |(1−β1)·g|) ≈ 2e-7 of the larger term; v has no
/// cancellation. p = p·(1 − lr·wd) − lr/bc1 · m/(√(v/bc2) + eps) takes about 8 ulp in the update
/// term on Vulkan (division 2.5 ulp, sqrt 3 ulp, not correctly rounded) plus one in the product
/// and the difference: ≤ 6e-7 of max(|p|, |update|). Where terms cancel the result can be far
/// smaller than its terms, so the allowance is relative to `scale`, the RMS of the compared
/// quantity (test inputs keep every term within a few RMS): 1e-6·(|x| + scale), the acceptance
/// criterion's "rel 1e-6 per step", with ≥ 1.6× margin over the worst case above.
pub fn adamw_tolerance(scale: f64) -> Tol {
    Tol { atol: 1e-6 * scale, rtol: 1e-6 }
}

/// Muon's update Δp = p_new − p_0 of one step from the kernel's own state, f32 against the f64
/// reference; `scale` is the RMS of the reference Δp (Δp, not p: p is 30–300× larger than one
/// step's change and would hide update errors). Polar Express is 15 dependent f32 GEMMs: each
/// product rounds about √K·ε ≈ 2e-6 (K = 768) of its O(1) entries, and the odd polynomials
/// amplify perturbations along small singular directions by their slope (a = 8.2, 4.0, 3.9, 3.3,
/// 2.3 at σ → 0) while contracting the converged ones, so no per-element bound short of the
/// product of slopes (≈ 970) holds a priori. Measured on lavapipe with the suite's Gaussian
/// gradients and momenta, the largest element error is 0.9–2.3e-5·RMS(Δp) for every shape from
/// 1×(6×12) to 2×(768×768), both variants, so 1e-4·(|Δp| + RMS(Δp)) has ≥ 4× margin. (Nearly
/// low-rank inputs sit where that amplification acts: rank-1 to rank-8 gradients plus 0–1e-2
/// noise measured 2e-4–3e-3·RMS(Δp) against f64, with any f32 arithmetic; nanochat runs the same
/// iteration in bf16.) An element is judged against its own size plus the RMS because elements
/// near zero carry the matrix-wide absolute error (and the cautious-decay mask may flip where the
/// update is within this tolerance of zero; the suite accepts either mask there).
pub fn muon_tolerance(scale: f64) -> Tol {
    Tol { atol: 1e-4 * scale, rtol: 1e-4 }
}

/// NorMuon's second moment S ← β2·S + (1−β2)·mean(U²) after one step: a mean of squares of the
/// orthogonalised update over R or C elements, so element errors of U average out (measured
/// ≤ 4e-6 relative); it is held to the same 1e-4 (of its value plus its RMS) as the update.
pub fn muon_state_tolerance(scale: f64) -> Tol {
    Tol { atol: 1e-4 * scale, rtol: 1e-4 }
}

/// Gradient norm, per tensor Σ g² in f32: each invocation adds ≤ 16 terms, a 256-wide tree joins
/// them per 4,096-element block, then per tensor each invocation adds ≤ blocks/256 partials and
/// another tree joins those (and the total a third): for the ≤ 1M-element tensors of the suite
/// about 16 + 8 + 1 + 8 + 8 = 41 roundings on positive terms (no cancellation), relative error
/// ≤ 41·ε ≈ 2.5e-6; rtol = 1e-5 leaves 4× margin. Counts are exact.
pub fn grad_norm_tolerance() -> Tol {
    Tol { atol: 1e-6, rtol: 1e-5 }
}

// ---- model ops (kernels::{cross_entropy, rmsnorm, embedding, rope, relu2, residual, smear,
// ve_gate}) ----
//
// One ulp of an f32 of magnitude x is at most ε·x (ε = 2^−23); one correctly rounded operation
// errs by at most half of that, and the f64 reference rounded to f32 contributes another half.
// Sums are bounded statistically, not by the worst case (which grows like n·ε and would accept
// almost anything at the model's sizes): each rounding errs by ≤ ε/2 of the partial sum it
// produces, independently in sign, so a sum whose terms have root-sum-square l2 and pass through
// at most `chain` roundings has an error of standard deviation ≲ ε/(2√3)·l2·√chain. The
// tolerances below allow 2ε·l2·√chain, about 7 standard deviations: they hold for every element
// of every row with overwhelming probability, and a wrong kernel (a dropped term, a wrong sign, a
// stale element) misses them by orders of magnitude. `chain` is the longest sequence of additions
// a term goes through in the kernel: per-invocation strided terms plus one per tree level.

const EPS: f64 = f32::EPSILON as f64;

/// Bit-for-bit: data movement (gathers, untouched outputs).
pub fn exact_tolerance() -> Tol {
    Tol { atol: 0.0, rtol: 0.0 }
}

/// f32 → f16: WGSL lets a conversion return either f16 neighbour of a value that lies between
/// two, so against the round-to-nearest reference the kernel may be one f16 step off: 2^-10 of
/// the value's binade (≤ 2^-10·|x|), or 2^-24 among the subnormals. Finite values beyond ±65504
/// are not in the rows: there the conversion's result is the driver's.
pub fn cast_tolerance() -> Tol {
    Tol { atol: 2f64.powi(-24), rtol: 2f64.powi(-10) }
}

/// ReLU² forward and backward are one correctly rounded multiply each (max and ×2 are exact), the
/// same rounding the f64 reference makes: exact, allowing only a driver that flushes a denormal
/// result to zero.
pub fn relu2_tolerance() -> Tol {
    Tol { atol: f32::MIN_POSITIVE as f64, rtol: 0.0 }
}

/// RoPE: y = fma(x1, cos, x2·sin), two roundings (three if a driver does not fuse) of quantities
/// ≤ √2·xmax, plus the reference's rounding: a bound of 2 ulp of √2·xmax (the tables are the same
/// f32 values on both sides).
pub fn rope_tolerance(xmax: f64) -> Tol {
    Tol { atol: 2.0 * EPS * std::f64::consts::SQRT_2 * xmax, rtol: 0.0 }
}

/// Lambda mix and backout, elementwise: at most two roundings in the kernel (b·x0, then the fma)
/// and one in the reference, each of a quantity ≤ ymax, the bound on |a·x| + |b·x0| (or
/// |x| + |λ·x_mid|, |dx_mid| + |λ·dout|): 1.5 ulp of ymax.
pub fn residual_tolerance(ymax: f64) -> Tol {
    Tol { atol: 1.5 * EPS * ymax, rtol: 0.0 }
}

/// Embedding gradient: a token's k rows are added one by one in f32, a chain of k roundings over
/// terms whose root-sum-square is ≤ √k·term_max, so by the sum rule 2ε·k_max·term_max for the
/// most frequent token. rtol covers the final addition to dtable.
pub fn embedding_backward_tolerance(k_max: usize, term_max: f64) -> Tol {
    Tol { atol: 2.0 * EPS * k_max.max(1) as f64 * term_max, rtol: EPS }
}

/// RMSNorm forward, purely relative (out and rstd are products of the row's rstd): the sum of
/// squares has positive terms and ≤ c/TPR + log2(TPR) ≤ 4 + log2(c) roundings, so a relative
/// error ≤ (4 + log2 c)·ε/2, halved by the square root; inverseSqrt adds ≤ 2 ulp (Vulkan's
/// bound); the scale product, the final product and the reference's rounding ≤ 1.5 ulp.
pub fn rmsnorm_forward_tolerance(c: usize) -> Tol {
    Tol { atol: f32::MIN_POSITIVE as f64, rtol: EPS * (4.5 + (c as f64).log2() / 4.0) }
}

/// RMSNorm backward, dinp = k·(dout − x·rstd²·⟨dout, x⟩/C), k = scale·rstd ≤ k_max: with
/// |dout| ≤ 1 and |x·rstd| ≤ √3 (uniform rows), the fma and products err by a few ulps of k, and
/// the dot's error (sum rule, ≤ 4 + log2 c roundings) reaches the output multiplied by
/// |x|·rstd²/C ≤ √3·rstd/C: k_max·ε·(8 + log2 c) in all. rtol covers an accumulated dinp.
pub fn rmsnorm_backward_tolerance(c: usize, k_max: f64) -> Tol {
    Tol { atol: EPS * k_max * (8.0 + (c as f64).log2()), rtol: 2.0 * EPS }
}

/// Softcapped cross-entropy loss = lse − l[target], lse = cap + ln Σ exp(l − cap): every piece is
/// computed to a few ulps of its own magnitude (exp and log to ≤ 3 ulp, the positive sum to a
/// relative log2(V)·ε/2 that the log turns into an absolute error), and those magnitudes are at
/// most 2·cap + ln V (lse ≤ cap + ln V, |l| < cap). 3 ulp of 2·cap + ln V absolute: 1.3e−5 for
/// V = 32,768, well inside the model's 1e−5 relative on a mean loss of ~10.
pub fn cross_entropy_loss_tolerance(v: usize, softcap: f32) -> Tol {
    Tol { atol: 3.0 * EPS * (2.0 * softcap as f64 + (v as f64).ln()), rtol: 0.0 }
}

/// Cross-entropy gradient grad_scale·(p − onehot)·(1 − t²), p = exp(l − lse): the absolute error
/// of lse (above) becomes a relative error of p, and exp of an argument up to 2·cap + ln V in
/// magnitude loses about that many ulps relative; 1 − t² is computed without cancellation. So a
/// relative 4ε·(2·cap + ln V), and the same times grad_scale absolute for the target column,
/// where p − 1 can cancel (|p − 1|, |1 − t²| ≤ 1).
pub fn cross_entropy_grad_tolerance(v: usize, softcap: f32, grad_scale: f32) -> Tol {
    let r = 4.0 * EPS * (2.0 * softcap as f64 + (v as f64).ln());
    Tol { atol: grad_scale as f64 * r, rtol: r }
}

/// A scalar or per-column parameter gradient that sums many products (lambda, smear and gate
/// weights), accumulated onto an existing value: the sum rule above with the terms' root-sum-square
/// `l2` and the longest rounding `chain`, plus 1 ulp relative for the final addition.
pub fn scalar_grad_tolerance(chain: usize, l2: f64) -> Tol {
    Tol { atol: 2.0 * EPS * l2 * (chain.max(1) as f64).sqrt(), rtol: EPS }
}

/// Gated elementwise outputs (smear, value-embedding gate): the gate g = λσ(s) or 3σ(s) from a
/// short dot product s (24 or 12 terms), an exp and a division carries a relative error of a few
/// ε, which reaches the output through a term ≤ ymax; with the roundings of the fma and of the
/// reference, 8 ulp of ymax. Outputs that also add a long dot product's error (de's ds·w, du's
/// Σ_h ds·wg) pass its sum-rule bound as `dot_l2`, `dot_chain`.
pub fn gate_tolerance(ymax: f64, dot_l2: f64, dot_chain: usize) -> Tol {
    Tol { atol: 8.0 * EPS * ymax + 2.0 * EPS * dot_l2 * (dot_chain as f64).sqrt(), rtol: 2.0 * EPS }
}

/// Attention, forward (out, lse) and backward (dq, dk, dv), f32, for the model's inputs: q and k
/// unit-RMS per head ×1.2, v unit-RMS, scale 1/√D (so |score| ≤ 1.44·√D ≈ 16.3 at D = 128), dout
/// O(1). The error enters through the scores: a D-term f32 dot of magnitude ≤ 16 is off by
/// ≲ 1e-6 absolute, and exp turns that into a relative error ≲ 1e-6 on every probability (exp's
/// own ulps and, on NVIDIA, the rounding of x·log2 e are of the same order).
/// - out = Σ p·v / l: abs error ≲ 1e-6·Σ p|v| ≲ 2e-6 (|v| ≲ √3), however much the sum cancels.
///   lse = m + ln l: ≲ 1e-6 + ε·|lse| (|lse| ≤ ~25). Measured worst: 1.1e-6 and 3.8e-6.
/// - dv_j = Σ_t p_tj dout_t and dk_j = scale Σ_t ds_tj q_t sum up to T·H/Hkv terms (4096 in the
///   T = 2048, H/Hkv = 2 row), each with that relative error, plus one rounding per add on the
///   running sum. The error is ≲ 1e-6 of Σ|terms|, which for the early keys that every query sees
///   is several times |result|: measured up to 1.1e-5 absolute on dv elements of magnitude ~3.
/// - dq and dk can cancel almost completely: with k = q the softmax is nearly one-hot, dS = P(dP −
///   Δ) subtracts two O(5) numbers that agree to 1e-5, and the results are ~1e-5 with 1e-6 errors
///   — f32's limit for any attention kernel, not a defect of this one; atol covers it.
///
/// Over 4 seeds of every suite shape plus T = 2048 (causal GQA and w512) the worst element used
/// 12% of atol = 1e-5, rtol = 1e-4 (an 8× margin): the same fp32 bound as matmul, no looser.
/// Per tensor, the relative-norm error measured ≤ 1.1e-6 for every output (the model-level
/// acceptance is loss rel err ≤ 1e-5, grad rel-norm ≤ 1e-4), except dq and dk of the one-hot case,
/// ~1e-2 of gradients that are themselves ~1e-5 (the cancellation above).
pub fn attention_tolerance() -> Tol {
    Tol { atol: 1e-5, rtol: 1e-4 }
}

/// Attention on cooperative matrices against the f64 reference fed the same f16-rounded q, k, v
/// and dout (`AttnShape::precision`), on [`attention_tolerance`]'s inputs. The products of f16
/// inputs are exact in f32 and accumulate in f32, so the scores, dP and Δ err as in the f32
/// kernels (≲ 1e-6). What the kernel adds is the rounding of P (forward, dk/dv) and dS (dq,
/// dk/dv) to f16 before the second product of each pass: a relative error ≤ u = 2^−11 per
/// element, of sign independent between elements.
/// - out = Σ p̃·v / l with l from the unrounded p: |error| ≤ u·Σ p|v| / l ≤ u·max|v| ≈ 8.5e-4
///   (|v| ≤ √3 for unit-RMS uniform rows), the worst case of all errors sharing a sign. lse never
///   sees a rounded P: f32's bound.
/// - dv_j = Σ_t p̃_tj dout_t: ≤ u·Σ_t p_tj|dout_t|, where Σ_t p_tj — the attention mass key j
///   receives — is ≤ 1 for most keys but up to ~ln T ≈ 7.6 for the first keys of a long causal
///   row (every query sees them), |dout| ≤ 1: a worst case of 3.7e-3 there, which all-same-sign
///   errors would need; with dout of random sign they add as a random walk, ≲ u·√(Σ p²)·3.
/// - dq_t = scale Σ_j ds̃_tj k_j and dk_j = scale Σ_t ds̃_tj q_t: ≤ u·scale·Σ|ds||k| with
///   Σ_j |ds_tj| ≤ 2·max|dP| (|dP| = |dout·v| ≲ √D at most, ~√(D/3) typically) and |k| ≤ 2.1, so
///   ≲ u·0.09·2·11·2.1 ≈ 2e-3 at D = 128 in the worst case.
/// - With out stored in f16 (an f16 training step's storage), out gains one more rounding, ≤ u·|out|
///   (in rtol's 4u), and the backward reads that rounded out, as its reference does.
///
/// atol = 2e-3 covers each worst case; rtol = 4u ≈ 2e-3 gives large outputs (dv of the first
/// keys, sums of many same-sign terms) the same 4× allowance over one rounding. Measured worst
/// over every suite shape (T = 2048 included) and 4 seeds on lavapipe's 8×8 tiles: 9.0e-4 (dv
/// and dq, 45% of atol: a 2.2× margin); out 3.1e-4 against its 8.5e-4 bound (6.6e-4 stored in
/// f16); lse 3.8e-6, as f32.
pub fn attention_coop_tolerance() -> Tol {
    Tol { atol: 2e-3, rtol: 2e-3 }
}

/// What a comparison found.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub n: usize,
    pub max_abs: f64,
    /// Largest |got − want| / max(|want|, atol): the relative error, with references smaller
    /// than atol measured against atol so that exact zeros don't make it infinite.
    pub max_rel: f64,
    /// Index of the element with the largest error relative to its allowance.
    pub worst: usize,
    pub mismatches: usize,
    /// The first few failing elements: (index, got, want).
    pub first: Vec<(usize, f32, f32)>,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} elements mismatch; max abs err {:.3e}, max rel err {:.3e}, worst at [{}]",
            self.mismatches, self.n, self.max_abs, self.max_rel, self.worst
        )?;
        for (i, g, w) in &self.first {
            write!(f, "\n    [{i}] got {g:e}, want {w:e}")?;
        }
        Ok(())
    }
}

/// Compare element by element. `Ok` carries the error statistics; `Err` the same statistics
/// with the first mismatching indices (also for a length mismatch, reported as such).
pub fn compare(got: &[f32], want: &[f32], tol: Tol) -> Result<Stats, Stats> {
    let mut s = Stats { n: want.len(), ..Default::default() };
    if got.len() != want.len() {
        s.mismatches = got.len().abs_diff(want.len()).max(1);
        s.max_abs = f64::INFINITY;
        s.max_rel = f64::INFINITY;
        return Err(s);
    }
    let mut worst_ratio = -1.0f64;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let (g64, w64) = (g as f64, w as f64);
        // NaN matches only NaN (a masked reference element); infinities must agree exactly; a
        // non-finite result where the reference is finite is an infinite error.
        let diff = if g.is_nan() || w.is_nan() {
            if g.is_nan() && w.is_nan() {
                0.0
            } else {
                f64::INFINITY
            }
        } else if g.is_infinite() || w.is_infinite() {
            if g == w {
                0.0
            } else {
                f64::INFINITY
            }
        } else {
            (g64 - w64).abs()
        };
        let allowed = if w.is_finite() { tol.atol + tol.rtol * w64.abs() } else { 0.0 };
        let w64 = if w.is_finite() { w64 } else { 0.0 };
        let rel = diff / w64.abs().max(tol.atol).max(f64::MIN_POSITIVE);
        s.max_abs = s.max_abs.max(diff);
        s.max_rel = s.max_rel.max(rel);
        let ratio = diff / allowed.max(f64::MIN_POSITIVE);
        if ratio > worst_ratio {
            worst_ratio = ratio;
            s.worst = i;
        }
        if diff > allowed {
            s.mismatches += 1;
            if s.first.len() < 5 {
                s.first.push((i, g, w));
            }
        }
    }
    if s.mismatches > 0 {
        Err(s)
    } else {
        Ok(s)
    }
}

/// Panic with the full report unless `got` matches `want` within `atol + rtol·|want|`.
#[track_caller]
pub fn assert_close(got: &[f32], want: &[f32], atol: f64, rtol: f64) -> Stats {
    match compare(got, want, Tol { atol, rtol }) {
        Ok(s) => s,
        Err(s) => panic!("assert_close failed (atol {atol:e}, rtol {rtol:e}): {s}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparator_flags_nan_offsets_and_lengths() {
        let want = [1.0f32, 2.0, 0.0, -4.0];
        assert!(compare(&want, &want, Tol { atol: 0.0, rtol: 0.0 }).is_ok());
        let err = compare(&[1.0, f32::NAN, 0.0, -4.0], &want, Tol { atol: 1.0, rtol: 1.0 }).unwrap_err();
        assert_eq!(err.mismatches, 1);
        assert_eq!(err.first[0].0, 1);
        let err = compare(&[1.0, 2.0, 2e-5, -4.0], &want, Tol { atol: 1e-5, rtol: 1e-4 }).unwrap_err();
        assert_eq!((err.mismatches, err.worst), (1, 2));
        assert!(compare(&[1.0, 2.0, 9e-6, -4.0004], &want, Tol { atol: 1e-5, rtol: 1e-4 }).is_ok());
        assert!(compare(&[1.0], &want, Tol { atol: 1.0, rtol: 1.0 }).is_err());
        // A reference NaN (a masked element) matches only NaN; infinities must agree exactly.
        assert!(compare(&[f32::NAN], &[f32::NAN], Tol { atol: 0.0, rtol: 0.0 }).is_ok());
        assert!(compare(&[0.0], &[f32::NAN], Tol { atol: 1.0, rtol: 1.0 }).is_err());
        assert!(compare(&[f32::INFINITY], &[f32::INFINITY], Tol { atol: 0.0, rtol: 0.0 }).is_ok());
        assert!(compare(&[f32::NEG_INFINITY], &[f32::INFINITY], Tol { atol: 1.0, rtol: 1.0 }).is_err());
    }

    #[test]
    #[should_panic(expected = "assert_close failed")]
    fn assert_close_panics_with_report() {
        assert_close(&[0.0, 1.0], &[0.0, 1.5], 1e-3, 1e-3);
    }
}
