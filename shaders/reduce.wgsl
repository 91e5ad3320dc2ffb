// reduce.wgsl — reductions to scalars, deterministic: no atomics, and the order of additions
// depends only on the sizes and the grid, never on scheduling, so the same input gives the same
// bits on every run.
//
//   reduce_sum_squares_partial  partial[off_out + g] = Σ x[i]²     over the slice workgroup g strides
//   reduce_dot_partial          partial[off_out + g] = Σ x[i]·y[i] over the slice workgroup g strides
//   reduce_sum_final            out[off_out] = (accumulate ? out[off_out] : 0) + alpha·Σ_{i < n} x[i]
//   reduce_weighted_cols        out[off_out + j·ncols + i] = (accumulate ? out : 0)
//                                   + Σ_{r < n} x[off_x + r·nj + j] · y[off_y + r·ldy + i]
//                               (one workgroup per output, j < nj, i < ncols)
//
// sum_squares(out, x) and dot(out, x, y) are a partial pass (up to 256 workgroups per chunk of a
// vector larger than one binding, into consecutive ranges of a partial buffer) then one
// reduce_sum_final. The global gradient norm and Muon's Frobenius normalisation are sum_squares;
// the scalar-parameter gradients (resid/x0 lambdas, backout lambda) are dot with accumulate, which
// adds into one element of the gradient arena. reduce_sum_final alone sums a short vector (up to
// ~1e5 per-row coefficients) in one workgroup; reduce_weighted_cols gives the gate-weight gradients
// of smear (24 outputs) and the value-embedding gate (Hkv × 12 outputs) from per-row coefficients.
//
// Bindings:
//   partial passes:      @binding(0) partial : (groups,) read_write  @binding(1) x : (n,) read
//                        @binding(2) y : (n,) read (dot only)
//   final pass:          @binding(0) out : (1,) read_write           @binding(1) partial : (n,) read
//   weighted_cols:       @binding(0) out : (nj·ncols,) read_write    @binding(1) coef x : (n·nj,) read
//                        @binding(2) y : (n rows of ldy, first ncols used) read
// The output may not share a buffer with an input (wgpu forbids one buffer bound both read-only and
// read_write in one dispatch).
// Accumulation is f32: each invocation sums its strided slice, then a WG-wide tree in workgroup
// memory combines them, which keeps the relative error near log2(n)·eps rather than n·eps.

struct ReduceParams {
    n: u32,
    off_out: u32,
    off_x: u32,
    off_y: u32,
    alpha: f32,
    accumulate: u32,
    ncols: u32,
    nj: u32,
    ldy: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

var<immediate> p: ReduceParams;

override WG: u32 = 256u; // must be a power of two for the tree

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;

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

// out[slot] = alpha·sum, or out[slot] += alpha·sum when accumulating.
fn store_scalar(slot: u32, sum: f32) {
    let v = p.alpha * sum;
    if (p.accumulate != 0u) {
        out[slot] = out[slot] + v;
    } else {
        out[slot] = v;
    }
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

@compute @workgroup_size(WG)
fn reduce_dot_partial(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    var acc = 0.0;
    for (var i = gid.x; i < p.n; i += nwg.x * WG) {
        acc = fma(x[p.off_x + i], y[p.off_y + i], acc);
    }
    scratch[li] = acc;
    workgroup_sum(li);
    if (li == 0u) {
        out[p.off_out + wid.x] = scratch[0];
    }
}

// One workgroup: out[off_out] (+)= alpha·Σ x[off_x + i], i < n.
@compute @workgroup_size(WG)
fn reduce_sum_final(@builtin(local_invocation_index) li: u32) {
    var acc = 0.0;
    for (var i = li; i < p.n; i += WG) {
        acc += x[p.off_x + i];
    }
    scratch[li] = acc;
    workgroup_sum(li);
    if (li == 0u) {
        store_scalar(p.off_out, scratch[0]);
    }
}

// Workgroup g computes output (j, i) = (g / ncols, g % ncols). The grid has exactly nj·ncols
// workgroups and ncols ≥ 1 (the launcher checks both); the guard keeps a stray one harmless.
@compute @workgroup_size(WG)
fn reduce_weighted_cols(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let slot = wid.x;
    let live = slot < p.nj * p.ncols;
    let j = slot / p.ncols;
    let i = slot % p.ncols;
    var acc = 0.0;
    if (live) {
        for (var r = li; r < p.n; r += WG) {
            acc = fma(x[p.off_x + r * p.nj + j], y[p.off_y + r * p.ldy + i], acc);
        }
    }
    scratch[li] = acc;
    workgroup_sum(li);
    if (li == 0u && live) {
        store_scalar(p.off_out + slot, scratch[0]);
    }
}
