// residual.wgsl — the per-layer resid/x0 lambda mix (before every block) and the backout (a scaled
// mid-network residual subtracted before the final norm). The lambdas are read from the parameter
// arena (1-element windows), never passed as immediates, so a recorded step stays valid after the
// optimizer moves them. The lambdas' own gradients are dot products, left to reduce.wgsl
// (reduce_dot_partial + reduce_sum_final with accumulate, see kernels::residual).
//
//   residual_lambda_mix_forward   out = a·x + b·x0               a = resid_lambdas[i], b = x0_lambdas[i]
//   residual_lambda_mix_backward  dx = a·dout (written);  dx0 += b·dout
//   residual_backout_forward      out = x − λ·x_mid              λ = backout_lambda
//   residual_backout_backward     dx_mid += −λ·dout
//
// Bindings (windows; off_* locates element 0 in its window):
//   lambda_mix_forward:   @binding(0) out    rw   @binding(1) x     @binding(2) x0
//                         @binding(3) a (1,)      @binding(4) b (1,)
//   lambda_mix_backward:  @binding(0) dx     rw   @binding(1) dx0 rw   @binding(2) dout
//                         @binding(3) a (1,)      @binding(4) b (1,)
//   backout_forward:      @binding(0) out    rw   @binding(1) x     @binding(2) x_mid
//                         @binding(3) lambda (1,)
//   backout_backward:     @binding(0) dx_mid rw   @binding(1) dout  @binding(2) lambda (1,)
// Read-only bindings may share buffers (a and b both live in the parameter arena); a read_write
// one may not share a buffer with a read-only one.
//
// Launch: 1-D grid-stride loops over n elements, coalesced.

struct ResidualParams {
    n: u32,
    off0: u32,
    off1: u32,
    off2: u32,
    off3: u32,
    off4: u32,
    _pad0: u32,
    _pad1: u32,
}

var<immediate> p: ResidualParams;

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> x2: array<f32>;
@group(0) @binding(3) var<storage, read> s3: array<f32>;
@group(0) @binding(4) var<storage, read> s4: array<f32>;

@group(0) @binding(1) var<storage, read_write> out1: array<f32>;
@group(0) @binding(2) var<storage, read> s2: array<f32>;

@compute @workgroup_size(WG)
fn residual_lambda_mix_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let a = s3[p.off3];
    let b = s4[p.off4];
    for (var i = gid.x; i < p.n; i += nwg.x * WG) {
        out[p.off0 + i] = fma(a, x[p.off1 + i], b * x2[p.off2 + i]);
    }
}

// out = dx, out1 = dx0, x2 = dout.
@compute @workgroup_size(WG)
fn residual_lambda_mix_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let a = s3[p.off3];
    let b = s4[p.off4];
    for (var i = gid.x; i < p.n; i += nwg.x * WG) {
        let g = x2[p.off2 + i];
        out[p.off0 + i] = a * g;
        out1[p.off1 + i] = fma(b, g, out1[p.off1 + i]);
    }
}

// x2 = x_mid, s3 = lambda.
@compute @workgroup_size(WG)
fn residual_backout_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let lambda = s3[p.off3];
    for (var i = gid.x; i < p.n; i += nwg.x * WG) {
        out[p.off0 + i] = fma(-lambda, x2[p.off2 + i], x[p.off1 + i]);
    }
}

// out = dx_mid, x = dout, s2 = lambda.
@compute @workgroup_size(WG)
fn residual_backout_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let lambda = s2[p.off2];
    for (var i = gid.x; i < p.n; i += nwg.x * WG) {
        out[p.off0 + i] = fma(-lambda, x[p.off1 + i], out[p.off0 + i]);
    }
}
