// cast.wgsl — f32 to f16 conversion, for the f16 copies of the weight matrices that the
// cooperative-matrix products read under `train.precision = "f16"` (made once per optimizer step
// from the f32 master weights, which stay the ones the optimizer updates).
//
//   cast_f32_to_f16   out[i] = f16(inp[i])
//
// Numerics: the conversion the coop kernel makes while staging an f32 operand (`f16(a[i])` in
// matmul_coop.wgsl), so a product reading the copy computes exactly what it would reading the f32
// weights. WGSL lets the conversion return either f16 neighbour of a value between two of them
// (lavapipe and NVIDIA round to nearest); beyond ±65504 the result is the driver's (lavapipe gives
// ±infinity, as the staging does). validate::cast_tolerance states what the rows accept.
//
// Bindings (windows; off_* locates element 0 in its window):
//   @binding(0) out : (n,) f16, read_write      @binding(1) inp : (n,) f32, read
// A matrix larger than one binding is taken in chunks by the launcher.
//
// Launch: 1-D grid-stride loop, coalesced.

enable f16;

struct CastParams {
    n: u32,
    off_out: u32,
    off_inp: u32,
    _pad: u32,
}

var<immediate> p: CastParams;

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read_write> out: array<f16>;
@group(0) @binding(1) var<storage, read> inp: array<f32>;

@compute @workgroup_size(WG)
fn cast_f32_to_f16(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    for (var i = gid.x; i < p.n; i += nwg.x * WG) {
        out[p.off_out + i] = f16(inp[p.off_inp + i]);
    }
}
