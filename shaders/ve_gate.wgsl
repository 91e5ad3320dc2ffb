// ve_gate.wgsl — the value-embedding gate (ResFormer-style value residual), one gate per KV head
// from the first 12 channels of the normalized block input u:
//   g[n, h] = 3·σ(s[n, h]),  s[n, h] = ⟨wg[h, :], u[n, 0:12]⟩
//
//   ve_gate_forward      v[n, h, :] += g[n, h]·ve[n, h, :]                          (in place)
//   ve_gate_backward     dve[n, h, :] = g·dv[n, h, :] (written);
//                       ds[n, h] = ⟨dv[n, h, :], ve[n, h, :]⟩·3σ(1 − σ)            (scratch)
//   ve_gate_backward_du  du[n, 0:12] += Σ_h ds[n, h]·wg[h, :]
// and dwg[h, :] += Σ_n ds[n, h]·u[n, 0:12] is reduce.wgsl's reduce_weighted_cols over ds.
// v, ve, dv, dve are (N, Hkv, D); u, du are (N, C); wg is (Hkv, 12), read from the parameter arena.
//
// Bindings (windows; off_* locates element 0 in its window):
//   forward:      @binding(0) v   rw   @binding(1) u    @binding(2) ve   @binding(3) wg
//   backward:     @binding(0) dve rw   @binding(1) ds rw (N × Hkv)   @binding(2) dv
//                 @binding(3) u        @binding(4) ve   @binding(5) wg
//   backward_du:  @binding(0) du  rw   @binding(1) ds (N × Hkv)      @binding(2) wg
// A read_write binding may not share a buffer with a read-only one.
//
// Launch: forward, a 1-D grid-stride loop over N·Hkv·D elements (each invocation recomputes its
// head's 12-term gate from cached loads; the op is memory-bound). backward, TPR invocations per
// (n, h) row of D (a power of two, ~4 elements each), WG/TPR rows per workgroup, the dot product a
// segmented tree in workgroup memory. backward_du, one invocation per du[n, k], k < 12.

struct VeGateParams {
    n: u32,
    c: u32,
    hkv: u32,
    d: u32,
    off0: u32,
    off1: u32,
    off2: u32,
    off3: u32,
    off4: u32,
    off5: u32,
    _pad0: u32,
    _pad1: u32,
}

var<immediate> p: VeGateParams;

const GATE_CHANNELS: u32 = 12u;

override WG: u32 = 256u;  // power of two
override TPR: u32 = 32u;  // power of two dividing WG (backward)

@group(0) @binding(0) var<storage, read_write> v: array<f32>;
@group(0) @binding(1) var<storage, read> u: array<f32>;
@group(0) @binding(2) var<storage, read> ve: array<f32>;
@group(0) @binding(3) var<storage, read> wg: array<f32>;

@group(0) @binding(1) var<storage, read_write> ds_out: array<f32>;
@group(0) @binding(2) var<storage, read> dv: array<f32>;
@group(0) @binding(3) var<storage, read> u_b: array<f32>;
@group(0) @binding(4) var<storage, read> ve_b: array<f32>;
@group(0) @binding(5) var<storage, read> wg_b: array<f32>;

@group(0) @binding(1) var<storage, read> ds_in: array<f32>;
@group(0) @binding(2) var<storage, read> wg_du: array<f32>;

var<workgroup> red: array<f32, WG>;

fn sigmoid(s: f32) -> f32 {
    return 1.0 / (1.0 + exp(-s));
}

@compute @workgroup_size(WG)
fn ve_gate_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let per_tok = p.hkv * p.d;
    let total = p.n * per_tok;
    for (var i = gid.x; i < total; i += nwg.x * WG) {
        let tok = i / per_tok;
        let h = (i - tok * per_tok) / p.d;
        var s = 0.0;
        for (var k = 0u; k < GATE_CHANNELS; k++) {
            s = fma(wg[p.off3 + h * GATE_CHANNELS + k], u[p.off1 + tok * p.c + k], s);
        }
        v[p.off0 + i] = fma(3.0 * sigmoid(s), ve[p.off2 + i], v[p.off0 + i]);
    }
}

@compute @workgroup_size(WG)
fn ve_gate_backward(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let lane = li % TPR;
    let row = wid.x * (WG / TPR) + li / TPR; // (token, head) pair
    let ok = row < p.n * p.hkv;
    let tok = row / p.hkv;
    let h = row - tok * p.hkv;
    let base = row * p.d;
    var dot = 0.0;
    if (ok) {
        for (var e = lane; e < p.d; e += TPR) {
            dot = fma(dv[p.off2 + base + e], ve_b[p.off4 + base + e], dot);
        }
    }
    red[li] = dot;
    for (var s = TPR / 2u; s > 0u; s >>= 1u) {
        workgroupBarrier();
        if (lane < s) {
            red[li] += red[li + s];
        }
    }
    workgroupBarrier();
    if (ok) {
        var s = 0.0;
        for (var k = 0u; k < GATE_CHANNELS; k++) {
            s = fma(wg_b[p.off5 + h * GATE_CHANNELS + k], u_b[p.off3 + tok * p.c + k], s);
        }
        let sg = sigmoid(s);
        let g = 3.0 * sg;
        for (var e = lane; e < p.d; e += TPR) {
            v[p.off0 + base + e] = g * dv[p.off2 + base + e];
        }
        if (lane == 0u) {
            ds_out[p.off1 + row] = red[li] * g * (1.0 - sg);
        }
    }
}

// v = du here.
@compute @workgroup_size(WG)
fn ve_gate_backward_du(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = p.n * GATE_CHANNELS;
    for (var i = gid.x; i < total; i += nwg.x * WG) {
        let tok = i / GATE_CHANNELS;
        let k = i - tok * GATE_CHANNELS;
        var acc = 0.0;
        for (var h = 0u; h < p.hkv; h++) {
            acc = fma(ds_in[p.off1 + tok * p.hkv + h], wg_du[p.off2 + h * GATE_CHANNELS + k], acc);
        }
        let o = p.off0 + tok * p.c + k;
        v[o] = v[o] + acc;
    }
}
