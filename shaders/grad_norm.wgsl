// grad_norm.wgsl — per-tensor sum of squares and non-finite count over an arena, deterministic.
//
//   grad_norm_partial  for each block b:  part[2b] = Σ g² over the block's finite elements,
//                                         part[2b+1] = how many of its elements are NaN or ±inf
//   grad_norm_final    for each tensor t: out[2 + 2·slot] = Σ of its blocks' sums, out[3 + 2·slot] = Σ
//                      of their counts (slot: the tensor's index in the caller's list; table rows
//                      are sorted by offset)
//   grad_norm_total    out[0] = Σ_slot out[2 + 2·slot], out[1] = Σ_slot out[3 + 2·slot]
//
// Blocks are as in adamw.wgsl: BLOCK = WG·PER_THREAD elements inside one tensor, numbered tensor
// after tensor; a tensor's blocks are consecutive, so its partials are one contiguous run even
// when the host splits the arena into several binding-sized dispatches. No atomics: every sum is
// a fixed sequence of per-invocation strides and a workgroup tree, so the result depends only on
// the data and the table (bit-identical run to run).
//
// Non-finite elements are counted, not summed: the sum stays a usable number when a few elements
// are NaN, and the count is the flag (out[1] != 0) the optimizer kernels read as their guard.
// Sums are stored as f32 bit patterns in u32 words, counts as u32, so the buffer is one
// array<u32> (a count stored through an f32 variable could be flushed as a denormal).
//
// Bindings:
//   partial: @binding(0) part  : u32, read_write   @binding(1) x : f32 arena, read
//            @binding(2) table : (n_tensors × 4) u32: offset, len, first_block, slot
//   final:   @binding(0) out   : u32, read_write   @binding(1) part : u32, read
//            @binding(2) table
//   total:   @binding(0) out   : u32, read_write

struct GradNormParams {
    b0: u32,
    b1: u32,
    n_tensors: u32,
    n_blocks: u32,
    lo: u32,
    off_out: u32,
    off_x: u32,
    off_table: u32,
}

var<immediate> p: GradNormParams;

override WG: u32 = 256u; // a power of two (tree reductions)
const PER_THREAD: u32 = 16u;
const TABLE_WORDS: u32 = 4u;

@group(0) @binding(0) var<storage, read_write> out: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> table: array<u32>;

// The final pass reads partials (u32) where the partial pass reads the arena (f32); only one of
// the two declarations is used by any entry point.
@group(0) @binding(1) var<storage, read> part: array<u32>;

var<workgroup> sums: array<f32, WG>;
var<workgroup> counts: array<u32, WG>;

// Tree-reduce sums/counts[0..WG) into element 0. Every invocation of the workgroup must call it.
fn workgroup_reduce(li: u32) {
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        workgroupBarrier();
        if (li < s) {
            sums[li] += sums[li + s];
            counts[li] += counts[li + s];
        }
    }
    workgroupBarrier();
}

fn find_tensor(b: u32) -> u32 {
    var lo = 0u;
    var hi = p.n_tensors;
    while (hi - lo > 1u) {
        let mid = (lo + hi) / 2u;
        if (table[p.off_table + mid * TABLE_WORDS + 2u] <= b) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return lo;
}

// NaN and ±inf have an all-ones exponent. Tested on the bits: `v != v` may be folded away by a
// compiler that assumes finite math.
fn is_finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u;
}

@compute @workgroup_size(WG)
fn grad_norm_partial(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let block = WG * PER_THREAD;
    // Uniform loop: b depends only on the workgroup, so the barriers inside are reached by all.
    for (var b = p.b0 + wid.x; b < p.b1; b += nwg.x) {
        let row = p.off_table + find_tensor(b) * TABLE_WORDS;
        let off = table[row];
        let len = table[row + 1u];
        let start = (b - table[row + 2u]) * block;
        var acc = 0.0;
        var bad = 0u;
        for (var e = 0u; e < PER_THREAD; e++) {
            let j = start + e * WG + li;
            if (j < len) {
                let g = x[off + j - p.lo + p.off_x];
                if (is_finite(g)) {
                    acc = fma(g, g, acc);
                } else {
                    bad += 1u;
                }
            }
        }
        sums[li] = acc;
        counts[li] = bad;
        workgroup_reduce(li);
        if (li == 0u) {
            out[p.off_out + 2u * (b - p.b0)] = bitcast<u32>(sums[0]);
            out[p.off_out + 2u * (b - p.b0) + 1u] = counts[0];
        }
        workgroupBarrier();
    }
}

// One workgroup per tensor (grid-stride): the tensor's blocks are [first, next tensor's first).
@compute @workgroup_size(WG)
fn grad_norm_final(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    for (var t = wid.x; t < p.n_tensors; t += nwg.x) {
        let first = table[p.off_table + t * TABLE_WORDS + 2u];
        var end = p.n_blocks;
        if (t + 1u < p.n_tensors) {
            end = table[p.off_table + (t + 1u) * TABLE_WORDS + 2u];
        }
        var acc = 0.0;
        var bad = 0u;
        for (var b = first + li; b < end; b += WG) {
            acc += bitcast<f32>(part[p.off_x + 2u * b]);
            bad += part[p.off_x + 2u * b + 1u];
        }
        sums[li] = acc;
        counts[li] = bad;
        workgroup_reduce(li);
        if (li == 0u) {
            let slot = table[p.off_table + t * TABLE_WORDS + 3u];
            out[p.off_out + 2u + 2u * slot] = bitcast<u32>(sums[0]);
            out[p.off_out + 3u + 2u * slot] = counts[0];
        }
        workgroupBarrier();
    }
}

// One workgroup: the totals over every tensor.
@compute @workgroup_size(WG)
fn grad_norm_total(@builtin(local_invocation_index) li: u32) {
    var acc = 0.0;
    var bad = 0u;
    for (var t = li; t < p.n_tensors; t += WG) {
        acc += bitcast<f32>(out[p.off_out + 2u + 2u * t]);
        bad += out[p.off_out + 3u + 2u * t];
    }
    sums[li] = acc;
    counts[li] = bad;
    workgroup_reduce(li);
    if (li == 0u) {
        out[p.off_out] = bitcast<u32>(sums[0]);
        out[p.off_out + 1u] = counts[0];
    }
}
