// muon.wgsl — the non-GEMM parts of Muon (spec §3.3) on a slice of kk matrices of R×C stacked
// back to back; the Polar Express products run on the batched matmul between these kernels.
//
//   muon_momentum     M ← μ·M + (1−μ)·G;  X ← (1−μ)·G + μ·M                       (steps 1–2)
//   muon_row_sumsq    stats[row] = Σ_c X[row, c]²     (one workgroup per row of the slice)
//   muon_col_sumsq    stats[j·C + c] = Σ_r X_j[r, c]² (one invocation per column of a matrix)
//   muon_pre_scale    per matrix, from its row sums: scale[row] = the factor that applies MuonEq
//                     (variant Plus) and the Frobenius normalisation 1/(1.01‖X‖ + 1e−6)  (4–5)
//   muon_row_scale    X[row, :] ← X[row, :] · scale[row]
//   muon_poly_init    B ← b·A + a·I (then B += c·A·A on the matmul): Polar Express's
//                     X ← a·X + (b·A + c·A²)·X becomes one product X ← B·X with a folded into B's
//                     diagonal, so X never needs copying (6)
//   muon_post_scale   per matrix, from its row or column sums: Muon+ (variant Plus), NorMuon's
//                     second moment S ← β2·S + (1−β2)·v_mean and the rescale that restores the
//                     Frobenius norm; scale[j·nsec + a] = the factor of row/column a        (8–9)
//   muon_update       U = X·scale;  P ← P − lr_eff·U − lr_eff·wd·P·[U·P ≥ 0]             (10)
//
// nsec = R when R ≥ C (NorMuon's statistics are per row, reduced over C), else C (per column,
// reduced over R). All arithmetic is f32; every reduction is a fixed stride-then-tree order, so
// results are bit-identical run to run.
//
// Per-step values are read from `scalars`, 5 f32 per Muon group written by the host each step
// (μ, lr_eff, lr_eff·wd, NorMuon's β2, 1/S: the momentum kernel unscales gradients that carry the
// loss scale S, a power of two, so exactly), so recorded dispatches replay unchanged; `guard` (the non-finite
// gradient count) makes the three kernels that write optimizer state or parameters skip the step.
//
// Bindings per kernel (windows; off_0.. give where each operand starts in its window):
//   momentum:  0 g (read) 1 mom (rw) 2 x (rw) 3 scalars 4 guard
//   row/col_sumsq: 0 x (read) 1 stats (rw)
//   pre_scale: 0 stats (read) 1 scale (rw)
//   row_scale: 0 scale (read) 1 x (rw)
//   poly_init: 0 gram (read) 1 poly (rw)
//   post_scale: 0 stats (read) 1 second (rw) 2 scale (rw) 3 scalars 4 guard
// (an entry point's bindings are consecutive from 0: the host binds windows in that order).
//   update:    0 x (read) 1 scale (read) 2 param (rw) 3 scalars 4 guard

struct MuonParams {
    kk: u32,
    rows: u32,
    cols: u32,
    flags: u32, // bit 0: variant Plus (MuonEq + Muon+)
    off_0: u32,
    off_1: u32,
    off_2: u32,
    off_3: u32,
    off_4: u32,
    coef_a: f32,
    coef_b: f32,
    _pad0: u32,
}

var<immediate> p: MuonParams;

override WG: u32 = 256u; // a power of two (tree reductions)

@group(0) @binding(0) var<storage, read> in0: array<f32>;
@group(0) @binding(1) var<storage, read_write> rw1: array<f32>;
@group(0) @binding(1) var<storage, read> in1: array<f32>;
@group(0) @binding(2) var<storage, read_write> rw2: array<f32>;
@group(0) @binding(3) var<storage, read> scalars: array<f32>;
@group(0) @binding(4) var<storage, read> guard: array<u32>;

var<workgroup> red_a: array<f32, WG>;
var<workgroup> red_b: array<f32, WG>;

fn plus() -> bool {
    return (p.flags & 1u) != 0u;
}

fn skip_step() -> bool {
    return guard[p.off_4] != 0u;
}

// Tree-reduce red_a and red_b [0..WG) into element 0; every invocation must call it. The
// barrier at the end lets the caller read element 0 and then overwrite the arrays safely after
// a further barrier.
fn reduce2(li: u32) {
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        workgroupBarrier();
        if (li < s) {
            red_a[li] += red_a[li + s];
            red_b[li] += red_b[li + s];
        }
    }
    workgroupBarrier();
}

@compute @workgroup_size(WG)
fn muon_momentum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    if (skip_step()) {
        return;
    }
    let n = p.kk * p.rows * p.cols;
    let mu = scalars[p.off_3];
    let one_m_mu = 1.0 - mu;
    let inv_scale = scalars[p.off_3 + 4u];
    for (var i = gid.x; i < n; i += nwg.x * WG) {
        let g = in0[p.off_0 + i] * inv_scale;
        let m = fma(mu, rw1[p.off_1 + i], one_m_mu * g);
        rw1[p.off_1 + i] = m;
        rw2[p.off_2 + i] = fma(one_m_mu, g, mu * m);
    }
}

// One workgroup per row (grid-stride over the kk·R rows of the slice).
@compute @workgroup_size(WG)
fn muon_row_sumsq(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let nrows = p.kk * p.rows;
    for (var r = wid.x; r < nrows; r += nwg.x) {
        var acc = 0.0;
        for (var c = li; c < p.cols; c += WG) {
            let v = in0[p.off_0 + r * p.cols + c];
            acc = fma(v, v, acc);
        }
        red_a[li] = acc;
        red_b[li] = 0.0;
        reduce2(li);
        if (li == 0u) {
            rw1[p.off_1 + r] = red_a[0];
        }
        workgroupBarrier();
    }
}

// One invocation per column of each matrix: consecutive invocations read consecutive columns of
// a row, so every step of the loop over rows is one coalesced row read.
@compute @workgroup_size(WG)
fn muon_col_sumsq(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let ncols = p.kk * p.cols;
    for (var q = gid.x; q < ncols; q += nwg.x * WG) {
        let j = q / p.cols;
        let c = q - j * p.cols;
        let base = p.off_0 + j * p.rows * p.cols + c;
        var acc = 0.0;
        for (var r = 0u; r < p.rows; r++) {
            let v = in0[base + r * p.cols];
            acc = fma(v, v, acc);
        }
        rw1[p.off_1 + q] = acc;
    }
}

// One workgroup per matrix. in0 = row sums of squares (kk·R), rw1 = per-row factors (kk·R).
@compute @workgroup_size(WG)
fn muon_pre_scale(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    for (var j = wid.x; j < p.kk; j += nwg.x) {
        let base = j * p.rows;
        var acc = 0.0;
        for (var r = li; r < p.rows; r += WG) {
            acc += in0[p.off_0 + base + r];
        }
        red_a[li] = acc;
        red_b[li] = 0.0;
        reduce2(li);
        let total = red_a[0];
        workgroupBarrier();
        if (plus()) {
            // MuonEq: row r is rescaled by row_target/max(‖X_r‖, 1e−6) with row_target = ‖X‖/√R; the
            // Frobenius norm after it follows from the row sums without another pass over X.
            let row_target = sqrt(total) / sqrt(f32(p.rows));
            var eq = 0.0;
            for (var r = li; r < p.rows; r += WG) {
                let ss = in0[p.off_0 + base + r];
                let s = row_target / max(sqrt(ss), 1e-6);
                eq += ss * s * s;
            }
            red_a[li] = eq;
            red_b[li] = 0.0;
            reduce2(li);
            let inv = 1.0 / (1.01 * sqrt(red_a[0]) + 1e-6);
            workgroupBarrier();
            for (var r = li; r < p.rows; r += WG) {
                let ss = in0[p.off_0 + base + r];
                rw1[p.off_1 + base + r] = row_target / max(sqrt(ss), 1e-6) * inv;
            }
        } else {
            let inv = 1.0 / (1.01 * sqrt(total) + 1e-6);
            for (var r = li; r < p.rows; r += WG) {
                rw1[p.off_1 + base + r] = inv;
            }
        }
    }
}

@compute @workgroup_size(WG)
fn muon_row_scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = p.kk * p.rows * p.cols;
    for (var i = gid.x; i < n; i += nwg.x * WG) {
        rw1[p.off_1 + i] = rw1[p.off_1 + i] * in0[p.off_0 + i / p.cols];
    }
}

// kk Gram matrices of s×s with s = p.rows (the smaller side).
@compute @workgroup_size(WG)
fn muon_poly_init(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let s = p.rows;
    let n = p.kk * s * s;
    for (var i = gid.x; i < n; i += nwg.x * WG) {
        let q = i % (s * s);
        var v = p.coef_b * in0[p.off_0 + i];
        if (q / s == q % s) {
            v += p.coef_a;
        }
        rw1[p.off_1 + i] = v;
    }
}

// One workgroup per matrix. in0 = sums of squares of the orthogonalised X per row (R ≥ C) or
// column (kk·nsec), rw1 = NorMuon's second moment (kk·nsec), rw2 = per-row/column factors.
@compute @workgroup_size(WG)
fn muon_post_scale(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let per_row = p.rows >= p.cols;
    var nsec = p.cols;
    var nred = p.rows;
    if (per_row) {
        nsec = p.rows;
        nred = p.cols;
    }
    let fred = f32(nred);
    let beta2 = scalars[p.off_3 + 3u];
    let skip = skip_step();
    for (var j = wid.x; j < p.kk; j += nwg.x) {
        let base = j * nsec;
        var acc = 0.0;
        for (var a = li; a < nsec; a += WG) {
            acc += in0[p.off_0 + base + a];
        }
        red_a[li] = acc;
        red_b[li] = 0.0;
        reduce2(li);
        let total = red_a[0];
        workgroupBarrier();
        // Muon+: X ← X·√min(R, C)/max(‖X‖, 1e−6), folded into the factor; v_mean scales by its square.
        var sigma = 1.0;
        if (plus()) {
            sigma = sqrt(f32(min(p.rows, p.cols))) / max(sqrt(total), 1e-6);
        }
        let sigma2 = sigma * sigma;
        // v_norm² = Σ v_mean·N_red and v_norm_new² = Σ v_mean·N_red·step².
        var vn = 0.0;
        var vn_new = 0.0;
        for (var a = li; a < nsec; a += WG) {
            let v_mean = sigma2 * in0[p.off_0 + base + a] / fred;
            let s = fma(beta2, rw1[p.off_1 + base + a], (1.0 - beta2) * v_mean);
            let step = 1.0 / sqrt(max(s, 1e-10));
            vn += v_mean * fred;
            vn_new += v_mean * fred * step * step;
        }
        red_a[li] = vn;
        red_b[li] = vn_new;
        reduce2(li);
        let rescale = sqrt(red_a[0]) / max(sqrt(red_b[0]), 1e-10);
        workgroupBarrier();
        for (var a = li; a < nsec; a += WG) {
            let v_mean = sigma2 * in0[p.off_0 + base + a] / fred;
            let s = fma(beta2, rw1[p.off_1 + base + a], (1.0 - beta2) * v_mean);
            rw2[p.off_2 + base + a] = sigma * (1.0 / sqrt(max(s, 1e-10))) * rescale;
            if (!skip) {
                rw1[p.off_1 + base + a] = s;
            }
        }
    }
}

@compute @workgroup_size(WG)
fn muon_update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    if (skip_step()) {
        return;
    }
    let rc = p.rows * p.cols;
    let n = p.kk * rc;
    let per_row = p.rows >= p.cols;
    var nsec = p.cols;
    if (per_row) {
        nsec = p.rows;
    }
    let lr = scalars[p.off_3 + 1u];
    let lr_wd = scalars[p.off_3 + 2u];
    for (var i = gid.x; i < n; i += nwg.x * WG) {
        let j = i / rc;
        let q = i - j * rc;
        var a = q % p.cols;
        if (per_row) {
            a = q / p.cols;
        }
        let u = in0[p.off_0 + i] * in1[p.off_1 + j * nsec + a];
        let w = rw2[p.off_2 + i];
        // Cautious decay where U·P ≥ 0, decided on signs so that an f32 product that underflows
        // to −0 cannot flip it (the f64 reference's product never underflows).
        var decay = 0.0;
        if (u == 0.0 || w == 0.0 || ((u > 0.0) == (w > 0.0))) {
            decay = lr_wd * w;
        }
        rw2[p.off_2 + i] = w - lr * u - decay;
    }
}
