// elementwise.wgsl — the small vector primitives later kernels and the optimizers build on.
//
//   elementwise_fill   out[i] = value
//   elementwise_copy   out[i] = x[i]
//   elementwise_add    out[i] = x[i] + y[i]
//   elementwise_scale  x[i]   = alpha * x[i]          (in place)
//   elementwise_axpy   y[i]   = alpha * x[i] + y[i]   (BLAS axpy, accumulates into y)
//
// Bindings (windows of larger buffers; off_* locates element 0 of each vector in its window):
//   @binding(0) out / y : (n,) read_write
//   @binding(1) x       : (n,) read
//   @binding(2) y       : (n,) read (add only)
// An output may not alias an input within one dispatch (wgpu forbids binding one buffer range as
// both read and read_write), hence scale works in place on a single read_write binding.
//
// Launch: 1-D grid of WG-wide workgroups, at most 65,535 of them; each invocation strides through
// the vector by the grid size so any n fits one dispatch.

struct ElementwiseParams {
    n: u32,
    off_out: u32,
    off_x: u32,
    off_y: u32,
    alpha: f32,
    value: f32,
    _pad0: u32,
    _pad1: u32,
}

var<immediate> p: ElementwiseParams;

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;

@compute @workgroup_size(WG)
fn elementwise_fill(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    for (var i = gid.x; i < p.n; i += nwg.x * WG) {
        out[p.off_out + i] = p.value;
    }
}

@compute @workgroup_size(WG)
fn elementwise_copy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    for (var i = gid.x; i < p.n; i += nwg.x * WG) {
        out[p.off_out + i] = x[p.off_x + i];
    }
}

@compute @workgroup_size(WG)
fn elementwise_add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    for (var i = gid.x; i < p.n; i += nwg.x * WG) {
        out[p.off_out + i] = x[p.off_x + i] + y[p.off_y + i];
    }
}

@compute @workgroup_size(WG)
fn elementwise_scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    for (var i = gid.x; i < p.n; i += nwg.x * WG) {
        out[p.off_out + i] = p.alpha * out[p.off_out + i];
    }
}

@compute @workgroup_size(WG)
fn elementwise_axpy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    for (var i = gid.x; i < p.n; i += nwg.x * WG) {
        out[p.off_out + i] = fma(p.alpha, x[p.off_x + i], out[p.off_out + i]);
    }
}
