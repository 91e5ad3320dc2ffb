// argmax.wgsl — the greedy prediction per row of a chunk of logits: the index of the largest of
// the first V columns, ties to the lowest index (torch.argmax's rule). CORE's language-modelling
// tasks compare it with the continuation (eval::scorer); nothing else of the row leaves the GPU.
//
//   argmax   out[r] = min { c < V : z[r, c] = max_{c' < V} z[r, c'] }   (i32), r < rows
//
// Raw logits, not softcapped: l = cap·tanh(z/cap) is strictly increasing, so in exact arithmetic
// both have the same argmax, and z has no saturation to merge two neighbours into one f32 value.
//
// Bindings (windows; off_* locates element 0 of each operand in its window):
//   @binding(0) out    : (rows,) i32       read_write
//   @binding(1) logits : (rows × Vp,)      read (columns V ≤ c < Vp are padding, never read)
//
// Launch: one workgroup per row (grid.x = rows ≤ 65,535 per dispatch; the launcher chunks).
// Each invocation scans its strided columns in increasing order keeping the first strict maximum,
// then a tree in workgroup memory combines (value, index) pairs by "larger value, else lower
// index", which is associative and commutative, so the result is the exact first maximum.
// Numerics: comparisons only, exact. A NaN in a row leaves that row's index unspecified (WGSL lets
// an implementation assume there are none); the loss of such a row is NaN and the scorer refuses it.

struct ArgmaxParams {
    rows: u32,
    v: u32,
    vp: u32,
    off_out: u32,
    off_z: u32,
}

var<immediate> p: ArgmaxParams;

override WG: u32 = 256u; // power of two for the tree

@group(0) @binding(0) var<storage, read_write> out: array<i32>;
@group(0) @binding(1) var<storage, read> logits: array<f32>;

var<workgroup> best_v: array<f32, WG>;
var<workgroup> best_i: array<u32, WG>;

@compute @workgroup_size(WG)
fn argmax(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let r = wid.x;
    let hi = select(0u, p.v, r < p.rows);
    let base = p.off_z + r * p.vp;
    // An invocation with no column keeps index V, which loses every tie against a real column.
    var bv = 0.0;
    var bi = p.v;
    for (var c = li; c < hi; c += WG) {
        let z = logits[base + c];
        if (bi == p.v || z > bv) {
            bv = z;
            bi = c;
        }
    }
    best_v[li] = bv;
    best_i[li] = bi;
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        workgroupBarrier();
        if (li < s) {
            let ov = best_v[li + s];
            let oi = best_i[li + s];
            let mine_empty = best_i[li] == p.v;
            let other_real = oi != p.v;
            if (other_real && (mine_empty || ov > best_v[li] || (ov == best_v[li] && oi < best_i[li]))) {
                best_v[li] = ov;
                best_i[li] = oi;
            }
        }
    }
    if (li == 0u && r < p.rows) {
        out[p.off_out + r] = i32(best_i[0]);
    }
}
