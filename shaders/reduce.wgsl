// reduce.wgsl — reductions to a scalar, in two passes so the result is deterministic (no atomics;
// the order of additions depends only on n and the grid, never on scheduling).
//
//   reduce_sum_squares_partial  partial[off_partial + g] = Σ x[i]²  over the slice workgroup g strides
//   reduce_sum_final            out[off_out] = Σ_{g < n} partial[g]
//
// sum_squares(out, x) = both passes: the global gradient norm and Muon's Frobenius normalisation
// are built on it. A vector larger than one storage binding is reduced chunk by chunk into
// consecutive ranges of the partial buffer, then finished by one reduce_sum_final.
//
// Bindings:
//   partial pass: @binding(0) partial : (groups,) read_write   @binding(1) x : (n,) read
//   final pass:   @binding(0) out     : (1,)      read_write   @binding(1) partial : (n,) read
// Accumulation is f32: each invocation sums its strided slice, then a WG-wide tree in workgroup
// memory combines them, which keeps the relative error near log2(n)·eps rather than n·eps.

struct ReduceParams {
    n: u32,
    off_out: u32,
    off_x: u32,
    _pad0: u32,
}

var<immediate> p: ReduceParams;

override WG: u32 = 256u; // must be a power of two for the tree

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;

var<workgroup> scratch: array<f32, WG>;

// Tree-reduce scratch[0..WG) into scratch[0]. Every invocation of the workgroup must call it.
fn workgroup_sum(li: u32) {
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        workgroupBarrier();
        if (li < s) {
            scratch[li] += scratch[li + s];
        }
    }
    workgroupBarrier();
}

@compute @workgroup_size(WG)
fn reduce_sum_squares_partial(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    var acc = 0.0;
    for (var i = gid.x; i < p.n; i += nwg.x * WG) {
        let v = x[p.off_x + i];
        acc = fma(v, v, acc);
    }
    scratch[li] = acc;
    workgroup_sum(li);
    if (li == 0u) {
        out[p.off_out + wid.x] = scratch[0];
    }
}

// One workgroup: out[off_out] = Σ x[off_x + i], i < n.
@compute @workgroup_size(WG)
fn reduce_sum_final(@builtin(local_invocation_index) li: u32) {
    var acc = 0.0;
    for (var i = li; i < p.n; i += WG) {
        acc += x[p.off_x + i];
    }
    scratch[li] = acc;
    workgroup_sum(li);
    if (li == 0u) {
        out[p.off_out] = scratch[0];
    }
}
