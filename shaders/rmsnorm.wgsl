// rmsnorm.wgsl — RMSNorm without a gain (nanochat's F.rms_norm, eps = FLT_EPSILON), with an output
// scale so the same kernels serve the per-head QK norm (scale 1.2, C = D).
//
//   rmsnorm_forward   out[r, :] = scale · inp[r, :] · rstd[r],  rstd[r] = 1/√(mean inp[r, :]² + eps)
//   rmsnorm_backward  dinp[r, :] (=, or += with accumulate)
//                         = scale · (rstd·dout − rstd³/C · inp · ⟨dout, inp⟩)   (rstd from forward)
//
// Bindings (windows; off_* locates row 0 of each operand in its window):
//   forward:  @binding(0) out  : (rows × C) read_write   @binding(1) rstd : (rows,) read_write
//             @binding(2) inp  : (rows × C) read
//   backward: @binding(0) dinp : (rows × C) read_write   @binding(1) dout : (rows × C) read
//             @binding(2) inp  : (rows × C) read         @binding(3) rstd : (rows,) read
// Outputs may not share a buffer with inputs.
//
// Launch: TPR invocations per row (a power of two ≤ WG, chosen so each handles ~4 elements of a
// row), WG/TPR rows per workgroup; grid.x = ceil(rows / (WG/TPR)). Loads are coalesced: lane k of
// a row reads elements k, k + TPR, … The per-row sum is a segmented tree over the row's TPR slots
// of workgroup memory (no subgroup operations, so nothing depends on the subgroup size).

struct RmsnormParams {
    rows: u32,
    c: u32,
    off_out: u32,
    off_rstd: u32,
    off_inp: u32,
    off_dout: u32,
    scale: f32,
    eps: f32,
    accumulate: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

var<immediate> p: RmsnormParams;

override WG: u32 = 256u;  // power of two
override TPR: u32 = 256u; // power of two dividing WG

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read_write> rstd_out: array<f32>;
@group(0) @binding(2) var<storage, read> inp: array<f32>;

@group(0) @binding(0) var<storage, read_write> dinp: array<f32>;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read> rstd_in: array<f32>;

var<workgroup> red: array<f32, WG>;

// Sum red[] over each aligned group of TPR slots; the total lands in the group's first slot.
// Every invocation must call it.
fn row_sum(li: u32, lane: u32) -> f32 {
    for (var s = TPR / 2u; s > 0u; s >>= 1u) {
        workgroupBarrier();
        if (lane < s) {
            red[li] += red[li + s];
        }
    }
    workgroupBarrier();
    return red[li - lane];
}

@compute @workgroup_size(WG)
fn rmsnorm_forward(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let lane = li % TPR;
    let r = wid.x * (WG / TPR) + li / TPR;
    let ok = r < p.rows;
    let base = r * p.c;
    var ss = 0.0;
    if (ok) {
        for (var i = lane; i < p.c; i += TPR) {
            let x = inp[p.off_inp + base + i];
            ss = fma(x, x, ss);
        }
    }
    red[li] = ss;
    let total = row_sum(li, lane);
    if (ok) {
        let rs = inverseSqrt(total / f32(p.c) + p.eps);
        if (lane == 0u) {
            rstd_out[p.off_rstd + r] = rs;
        }
        let k = p.scale * rs;
        for (var i = lane; i < p.c; i += TPR) {
            out[p.off_out + base + i] = k * inp[p.off_inp + base + i];
        }
    }
}

@compute @workgroup_size(WG)
fn rmsnorm_backward(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let lane = li % TPR;
    let r = wid.x * (WG / TPR) + li / TPR;
    let ok = r < p.rows;
    let base = r * p.c;
    var dot = 0.0;
    if (ok) {
        for (var i = lane; i < p.c; i += TPR) {
            dot = fma(dout[p.off_dout + base + i], inp[p.off_inp + base + i], dot);
        }
    }
    red[li] = dot;
    let total = row_sum(li, lane);
    if (ok) {
        let rs = rstd_in[p.off_rstd + r];
        let k = p.scale * rs;
        // scale·rstd·(dout − inp·rstd²·⟨dout, inp⟩/C)
        let m = -(rs * rs * total / f32(p.c));
        for (var i = lane; i < p.c; i += TPR) {
            let g = k * fma(inp[p.off_inp + base + i], m, dout[p.off_dout + base + i]);
            let o = p.off_out + base + i;
            if (p.accumulate != 0u) {
                dinp[o] = dinp[o] + g;
            } else {
                dinp[o] = g;
            }
        }
    }
}
