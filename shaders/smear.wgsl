// smear.wgsl — nanochat's bigram "smear": each token mixes in the previous token's pre-smear
// normalized embedding through a gate computed from its own first 24 channels. Layout (B, T, C),
// rows r = b·T + t.
//   σ_t = σ(⟨w, e_t[0:24]⟩),  g_t = λ·σ_t,  x_t = e_t + g_t·e_{t−1} (t ≥ 1),  x_0 = e_0
//
//   smear_forward   out = x
//   smear_backward  de_t = dout_t + g_{t+1}·dout_{t+1} + ds_t·w (first 24 channels)   (written)
//                   coef[r] = ds_t = λσ_t(1 − σ_t)·dg_t,  dg_t = ⟨dout_t, e_{t−1}⟩    (scratch)
//                   sdg[r] = σ_t·dg_t                                                 (scratch)
//                   (both 0 at t = 0; g_{t+1} term absent at t = T − 1)
// then dw += Σ_r coef[r]·e[r, 0:24] (reduce_weighted_cols) and dλ += Σ_r sdg[r] (reduce_sum_final),
// both in reduce.wgsl. w (24,) and λ (1,) are read from the parameter arena.
//
// Bindings (windows; off_* locates the operand's first element in its window):
//   forward:  @binding(0) out rw   @binding(1) e   @binding(2) w (24,)   @binding(3) lambda (1,)
//   backward: @binding(0) de rw    @binding(1) coef rw   @binding(2) sdg rw   @binding(3) dout
//             @binding(4) e        @binding(5) w         @binding(6) lambda
// The e window starts one row before the chunk (row_lo − e_shift) so row t can read e_{t−1}; the
// dout window ends one row after it. A read_write binding may not share a buffer with a read-only
// one (coef and sdg share the stream scratch, both read_write).
//
// Launch: one workgroup per row (t is uniform in a workgroup); every invocation computes the
// 24-term gate logits itself from cached loads (cheaper than a barrier), then handles C/WG
// channels. The backward's ⟨dout_t, e_{t−1}⟩ is a WG-wide tree in workgroup memory.

struct SmearParams {
    rows: u32,
    t_len: u32,
    c: u32,
    row_lo: u32,
    e_shift: u32,
    off_out: u32,
    off_coef: u32,
    off_sdg: u32,
    off_dout: u32,
    off_e: u32,
    off_w: u32,
    off_lambda: u32,
}

var<immediate> p: SmearParams;

const SMEAR_CHANNELS: u32 = 24u;

override WG: u32 = 256u; // power of two

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> e_f: array<f32>;
@group(0) @binding(2) var<storage, read> w_f: array<f32>;
@group(0) @binding(3) var<storage, read> lambda_f: array<f32>;

@group(0) @binding(1) var<storage, read_write> coef: array<f32>;
@group(0) @binding(2) var<storage, read_write> sdg: array<f32>;
@group(0) @binding(3) var<storage, read> dout: array<f32>;
@group(0) @binding(4) var<storage, read> e_b: array<f32>;
@group(0) @binding(5) var<storage, read> w_b: array<f32>;
@group(0) @binding(6) var<storage, read> lambda_b: array<f32>;

var<workgroup> red: array<f32, WG>;

fn sigmoid(s: f32) -> f32 {
    return 1.0 / (1.0 + exp(-s));
}

@compute @workgroup_size(WG)
fn smear_forward(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let k = wid.x; // row within the chunk
    if (k >= p.rows) {
        return;
    }
    let t = (p.row_lo + k) % p.t_len;
    let er = p.off_e + (k + p.e_shift) * p.c; // e_t
    let o = p.off_out + k * p.c;
    if (t == 0u) {
        for (var i = li; i < p.c; i += WG) {
            out[o + i] = e_f[er + i];
        }
        return;
    }
    var s = 0.0;
    for (var i = 0u; i < SMEAR_CHANNELS; i++) {
        s = fma(w_f[p.off_w + i], e_f[er + i], s);
    }
    let g = lambda_f[p.off_lambda] * sigmoid(s);
    let ep = er - p.c; // e_{t−1}: t ≥ 1 means it is in the window
    for (var i = li; i < p.c; i += WG) {
        out[o + i] = fma(g, e_f[ep + i], e_f[er + i]);
    }
}

@compute @workgroup_size(WG)
fn smear_backward(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let k = wid.x;
    let ok = k < p.rows; // uniform: one row per workgroup
    let t = (p.row_lo + k) % p.t_len;
    let er = p.off_e + (k + p.e_shift) * p.c;
    let dr = p.off_dout + k * p.c;
    let has_prev = ok && t >= 1u;
    let has_next = ok && t + 1u < p.t_len;
    let lambda = lambda_b[p.off_lambda];

    // dg_t = ⟨dout_t, e_{t−1}⟩
    var dot = 0.0;
    if (has_prev) {
        for (var i = li; i < p.c; i += WG) {
            dot = fma(dout[dr + i], e_b[er - p.c + i], dot);
        }
    }
    red[li] = dot;
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        workgroupBarrier();
        if (li < s) {
            red[li] += red[li + s];
        }
    }
    workgroupBarrier();
    if (!ok) {
        return;
    }
    let dg = red[0];

    var ds = 0.0;
    var sdg_t = 0.0;
    if (has_prev) {
        var s = 0.0;
        for (var i = 0u; i < SMEAR_CHANNELS; i++) {
            s = fma(w_b[p.off_w + i], e_b[er + i], s);
        }
        let sg = sigmoid(s);
        ds = lambda * sg * (1.0 - sg) * dg;
        sdg_t = sg * dg;
    }
    var g_next = 0.0;
    if (has_next) {
        var s = 0.0;
        for (var i = 0u; i < SMEAR_CHANNELS; i++) {
            s = fma(w_b[p.off_w + i], e_b[er + p.c + i], s);
        }
        g_next = lambda * sigmoid(s);
    }
    let o = p.off_out + k * p.c;
    for (var i = li; i < p.c; i += WG) {
        var acc = dout[dr + i];
        if (has_next) {
            acc = fma(g_next, dout[dr + p.c + i], acc);
        }
        if (i < SMEAR_CHANNELS) {
            acc = fma(ds, w_b[p.off_w + i], acc);
        }
        out[o + i] = acc;
    }
    if (li == 0u) {
        coef[p.off_coef + k] = ds;
        sdg[p.off_sdg + k] = sdg_t;
    }
}
