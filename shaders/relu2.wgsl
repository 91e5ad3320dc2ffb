// relu2.wgsl — the MLP nonlinearity relu(x)², forward and backward.
//
//   relu2_forward   out[i]  = max(inp[i], 0)²
//   relu2_backward  dinp[i] = dout[i] · 2·max(inp[i], 0)
//
// Both are one correctly rounded f32 multiply per element (2·dout is exact), so they match the f64
// reference rounded once, bit for bit.
//
// Bindings (windows; off_* locates element 0 in its window):
//   forward:  @binding(0) out  : (n,) read_write   @binding(1) inp  : (n,) read
//   backward: @binding(0) dinp : (n,) read_write   @binding(1) dout : (n,) read
//             @binding(2) inp  : (n,) read
// The output may not share a buffer with an input. The (B·T × 4C) MLP activations exceed one
// 128 MiB binding at the d12 shape, so the launcher takes them in chunks.
//
// Launch: 1-D grid-stride loop, coalesced.

struct Relu2Params {
    n: u32,
    off_out: u32,
    off_a: u32,
    off_b: u32,
}

var<immediate> p: Relu2Params;

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;

@compute @workgroup_size(WG)
fn relu2_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    for (var i = gid.x; i < p.n; i += nwg.x * WG) {
        let r = max(a[p.off_a + i], 0.0);
        out[p.off_out + i] = r * r;
    }
}

// a = dout, b = inp.
@compute @workgroup_size(WG)
fn relu2_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    for (var i = gid.x; i < p.n; i += nwg.x * WG) {
        let r = max(b[p.off_b + i], 0.0);
        out[p.off_out + i] = (2.0 * a[p.off_a + i]) * r;
    }
}
