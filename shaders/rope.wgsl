// rope.wgsl — rotary embeddings, nanochat's convention: split halves (not interleaved), rotation
// by −θ, base 100,000, in place on q (nh = H heads) or k (nh = Hkv heads).
//
//   rope_forward   x1 = x[..D/2], x2 = x[D/2..]:  y1 = x1·cos + x2·sin,  y2 = −x1·sin + x2·cos
//   rope_backward  the transpose (a +θ rotation): dx1 = dy1·cos − dy2·sin,  dx2 = dy1·sin + dy2·cos
//
// x has N = B·T rows of nh heads of D; row n is at position pos0 + n mod T. cos and sin are the
// host's f64 tables (reference::rope::rope_tables) rounded to f32, (positions × D/2), so no f32 sin
// of a large angle is ever evaluated on the GPU.
//
// Bindings (windows; off_* locates element 0 in its window):
//   @binding(0) x   : (N × nh × D) read_write, in place
//   @binding(1) cos : rows [pos0, pos0 + T) of the table, (T × D/2) read
//   @binding(2) sin : likewise
// cos and sin may share a buffer (both read-only); x may not share one with them.
//
// Launch: 1-D grid-stride loop over the N·nh·D/2 rotation pairs; consecutive invocations take
// consecutive j of one head, so both halves are read and written coalesced.

struct RopeParams {
    n: u32,
    nh: u32,
    half: u32,
    t_len: u32,
    row_lo: u32,
    off_x: u32,
    off_cos: u32,
    off_sin: u32,
}

var<immediate> p: RopeParams;

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> cos_t: array<f32>;
@group(0) @binding(2) var<storage, read> sin_t: array<f32>;

// Rotate every pair (x1, x2) by the table angle; sign = 1 forward (−θ), −1 backward (+θ).
fn rotate(gid: u32, stride: u32, sign: f32) {
    let per_row = p.nh * p.half;
    let total = p.n * per_row;
    for (var i = gid; i < total; i += stride) {
        let r = i / per_row;
        let rem = i - r * per_row;
        let h = rem / p.half;
        let j = rem - h * p.half;
        let t = (p.row_lo + r) % p.t_len;
        let c = cos_t[p.off_cos + t * p.half + j];
        let s = sign * sin_t[p.off_sin + t * p.half + j];
        let a = p.off_x + (r * p.nh + h) * 2u * p.half + j;
        let x1 = x[a];
        let x2 = x[a + p.half];
        x[a] = fma(x1, c, x2 * s);
        x[a + p.half] = fma(x2, c, -(x1 * s));
    }
}

@compute @workgroup_size(WG)
fn rope_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    rotate(gid.x, nwg.x * WG, 1.0);
}

@compute @workgroup_size(WG)
fn rope_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    rotate(gid.x, nwg.x * WG, -1.0);
}
