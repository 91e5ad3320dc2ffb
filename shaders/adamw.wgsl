// adamw.wgsl — AdamW (spec §3.2) over many tensors of an arena in one dispatch.
//
//   adamw_step   for every element of every tensor in the table:
//                  p ← p·(1 − lr·wd);  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
//                  p ← p − lr/(1−β1^t) · m / (√(v/(1−β2^t)) + eps)
//
// Work is cut into blocks of BLOCK = WG·PER_THREAD elements, each block inside one tensor, numbered
// consecutively tensor after tensor (the table records each tensor's first block). A workgroup
// takes a block, finds its tensor by binary search over the table (the same answer for every
// invocation, so control flow stays uniform) and updates that block; the grid strides over the
// blocks [b0, b1) this dispatch owns. One dispatch therefore covers every tensor, whatever their
// sizes; the host only splits the block range when the operands of all its blocks would not fit
// one storage binding.
//
// Bindings (windows of larger buffers; off_* says where arena element `lo` / state element `slo`
// sits inside each window):
//   @binding(0) param : arena, read_write        @binding(1) grad : arena (same layout), read
//   @binding(2) m     : state, read_write         @binding(3) v    : state, read_write
//   @binding(4) table : (n_tensors × 8) u32, read: param_offset, state_offset, len, first_block,
//                       group, 0, 0, 0 (offsets in elements of the arena / state buffers)
//   @binding(5) hyper : per group 8 f32, read, written by the host every step:
//                       1 − lr·wd, lr/(1−β1^t), β1, 1 − β1, β2, 1 − β2, 1 − β2^t, eps
//   @binding(6) guard : u32, read; non-zero (a non-finite gradient was counted) skips the step
// Per-step values live in `hyper`, never in immediates or constants, so the recorded dispatch is
// replayed unchanged every step.

struct AdamwParams {
    b0: u32,
    b1: u32,
    n_tensors: u32,
    lo: u32,
    slo: u32,
    off_p: u32,
    off_g: u32,
    off_m: u32,
    off_v: u32,
    off_table: u32,
    off_hyper: u32,
    off_guard: u32,
}

var<immediate> p: AdamwParams;

override WG: u32 = 256u;
const PER_THREAD: u32 = 4u;
const TABLE_WORDS: u32 = 8u;
const HYPER_WORDS: u32 = 8u;

@group(0) @binding(0) var<storage, read_write> param: array<f32>;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read> table: array<u32>;
@group(0) @binding(5) var<storage, read> hyper: array<f32>;
@group(0) @binding(6) var<storage, read> guard: array<u32>;

// The tensor whose blocks include block b: the last table row with first_block <= b (rows are
// sorted by first_block and row 0 starts at block 0).
fn find_tensor(b: u32) -> u32 {
    var lo = 0u;
    var hi = p.n_tensors;
    while (hi - lo > 1u) {
        let mid = (lo + hi) / 2u;
        if (table[p.off_table + mid * TABLE_WORDS + 3u] <= b) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return lo;
}

@compute @workgroup_size(WG)
fn adamw_step(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    if (guard[p.off_guard] != 0u) {
        return;
    }
    let block = WG * PER_THREAD;
    for (var b = p.b0 + wid.x; b < p.b1; b += nwg.x) {
        let row = p.off_table + find_tensor(b) * TABLE_WORDS;
        let param_off = table[row];
        let state_off = table[row + 1u];
        let len = table[row + 2u];
        let first = table[row + 3u];
        let h = p.off_hyper + table[row + 4u] * HYPER_WORDS;
        let decay = hyper[h];
        let step_size = hyper[h + 1u];
        let beta1 = hyper[h + 2u];
        let one_m_beta1 = hyper[h + 3u];
        let beta2 = hyper[h + 4u];
        let one_m_beta2 = hyper[h + 5u];
        let bc2 = hyper[h + 6u];
        let eps = hyper[h + 7u];
        let start = (b - first) * block;
        // Consecutive invocations touch consecutive elements (coalesced on a GPU).
        for (var e = 0u; e < PER_THREAD; e++) {
            let j = start + e * WG + li;
            if (j < len) {
                let pi = param_off + j - p.lo + p.off_p;
                let gi = param_off + j - p.lo + p.off_g;
                let si = state_off + j - p.slo;
                let g = grad[gi];
                let mi = fma(beta1, m[p.off_m + si], one_m_beta1 * g);
                let vi = fma(beta2, v[p.off_v + si], one_m_beta2 * g * g);
                m[p.off_m + si] = mi;
                v[p.off_v + si] = vi;
                param[pi] = param[pi] * decay - step_size * mi / (sqrt(vi / bc2) + eps);
            }
        }
    }
}
