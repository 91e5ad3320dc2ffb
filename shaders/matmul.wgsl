// matmul.wgsl — the matrix-multiply family, f32 in and out, f32 accumulation.
//
//   C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b]        for b in 0..batch
//
// op(A) is M×K and op(B) is K×N. Whether an operand is read transposed is a pipeline-overridable
// constant, so each layout gets its own specialised pipeline:
//   forward       Y  = X · Wᵀ    TRANS_A = false, TRANS_B = true   (X: M×K rows, W: N×K rows)
//   input grad    dX = dY · W    TRANS_A = false, TRANS_B = false  (dY: M×K, W: K×N)
//   weight grad   dW = dYᵀ · X   TRANS_A = true,  TRANS_B = false  (dY stored K×M, X: K×N)
// Every operand is row-major with a leading dimension (lda, ldb, ldc: elements between rows as
// stored) and a batch stride (elements between consecutive matrices), so attention heads and
// stacked optimizer matrices run in one dispatch (workgroup id z = batch index).
//
// Bindings (the host binds a window of each buffer; off_* is where the first matrix starts in it):
//   @binding(0) a : A, stored (M×K) or, when TRANS_A, (K×M); read as vec4 or, in the naive kernel, as f32
//   @binding(1) b : B, stored (K×N) or, when TRANS_B, (N×K)
//   @binding(2) c : C, (M×N), read only when beta != 0 (BLAS semantics: beta = 0 never reads C,
//                   so a C full of NaN is overwritten, not propagated)
// Per-dispatch parameters travel as immediates (push constants), so one bind group serves every
// dispatch that uses the same buffers.
//
// Four kernels, one contract; the host picks one per adapter and shape by autotuning:
//   matmul_naive     one output per invocation, no reuse: the baseline every other is measured against.
//   matmul_register  TM×TN outputs per invocation (4 or 8 each) from vec4 loads, no workgroup memory
//                    and no barriers. Best on CPU drivers (lavapipe), where a barrier costs a thread
//                    switch and each lane's load is a separate load.
//   matmul_tiled     BM×BN block per workgroup, BM×BK and BK×BN tiles staged in workgroup memory,
//                    4×4 register tile per invocation, vec4 loads: the shape a discrete GPU wants.
//   matmul_tiled8    the GPU-grade one: 128×128 or 128×64 blocks, an 8×8 register tile per
//                    invocation (16 FMAs per element loaded from workgroup memory), both tiles
//                    double-buffered with the next stage's global loads held in registers over
//                    the current stage's arithmetic, op(A) stored transposed (k-major) so the
//                    inner loop reads it as vec4, and each invocation's 8 rows and 8 columns split
//                    in two 4-wide halves BM/2 (BN/2) apart so neighbouring invocations' vec4
//                    reads are contiguous (no bank conflicts): the structure of the fastest
//                    published SIMT SGEMMs. The cooperative-matrix kernels are matmul_coop.wgsl.
//
// Vector loads: a and b are bound as array<vec4<f32>>. When the host sets ALIGNED it promises that
// the contiguous dimension of A and B starts every row on a multiple of 4 elements (lda, ldb,
// strides and offsets all multiples of 4), so a run of 4 in-bounds elements is one aligned vec4.
// Otherwise, and at ragged edges, fetch4_* assembles the vector from single elements and zero-fills
// what lies outside the matrix, which is also how any M, N, K >= 1 is handled.

struct MatmulParams {
    M: u32,
    N: u32,
    K: u32,
    batch: u32,
    lda: u32,
    ldb: u32,
    ldc: u32,
    _pad0: u32,
    stride_a: u32,
    stride_b: u32,
    stride_c: u32,
    _pad1: u32,
    off_a: u32,
    off_b: u32,
    off_c: u32,
    _pad2: u32,
    alpha: f32,
    beta: f32,
    _pad3: u32,
    _pad4: u32,
}

var<immediate> p: MatmulParams;

// Layout and alignment: specialisation constants set per pipeline by the host.
override TRANS_A: bool = false;
override TRANS_B: bool = true;
override ALIGNED: bool = false;

// Tile shape of matmul_tiled. The per-invocation register tile is fixed at 4×4 (private arrays
// must have a constant size), so a workgroup has (BN/4)×(BM/4) invocations. BK must be a
// multiple of 4 and BM, BN multiples of 4.
override BM: u32 = 64u;
override BN: u32 = 64u;
override BK: u32 = 16u;

// matmul_register: workgroup shape, and the TM×TN block of C each invocation owns (4 or 8 each).
override RX: u32 = 8u;
override RY: u32 = 8u;
override TM: u32 = 4u;
override TN: u32 = 4u;

@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;

// The naive kernel reads the same buffers one float at a time; only one of each pair is used by
// any entry point, so the aliasing is never visible to a single pipeline.
@group(0) @binding(0) var<storage, read> a_s: array<f32>;
@group(0) @binding(1) var<storage, read> b_s: array<f32>;

// Four consecutive elements of a's window starting at flat index idx, of which the first `valid`
// lie inside the matrix (the rest read as 0).
fn fetch4_a(idx: u32, valid: u32) -> vec4<f32> {
    if (ALIGNED && valid == 4u) {
        return a[idx >> 2u];
    }
    var v = vec4<f32>(0.0);
    for (var e = 0u; e < valid; e++) {
        let j = idx + e;
        v[e] = a[j >> 2u][j & 3u];
    }
    return v;
}

fn fetch4_b(idx: u32, valid: u32) -> vec4<f32> {
    if (ALIGNED && valid == 4u) {
        return b[idx >> 2u];
    }
    var v = vec4<f32>(0.0);
    for (var e = 0u; e < valid; e++) {
        let j = idx + e;
        v[e] = b[j >> 2u][j & 3u];
    }
    return v;
}

// How many of the 4 elements starting at coordinate i of a dimension of size n exist.
fn valid4(i: u32, n: u32) -> u32 {
    if (i >= n) {
        return 0u;
    }
    return min(4u, n - i);
}

// Write one element of C with the alpha/beta epilogue.
fn store_c(idx: u32, acc: f32) {
    var v = p.alpha * acc;
    if (p.beta != 0.0) {
        v += p.beta * c[idx];
    }
    c[idx] = v;
}

// ---------------------------------------------------------------------------------------------
// matmul_naive: one invocation per element of C; grid (ceil(N/16), ceil(M/16), batch).
@compute @workgroup_size(16, 16, 1)
fn matmul_naive(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n = gid.x;
    let m = gid.y;
    let bat = gid.z;
    if (m >= p.M || n >= p.N) {
        return;
    }
    let a0 = p.off_a + bat * p.stride_a;
    let b0 = p.off_b + bat * p.stride_b;
    var acc = 0.0;
    for (var k = 0u; k < p.K; k++) {
        var av: f32;
        var bv: f32;
        if (TRANS_A) { av = a_s[a0 + k * p.lda + m]; } else { av = a_s[a0 + m * p.lda + k]; }
        if (TRANS_B) { bv = b_s[b0 + n * p.ldb + k]; } else { bv = b_s[b0 + k * p.ldb + n]; }
        acc = fma(av, bv, acc);
    }
    store_c(p.off_c + bat * p.stride_c + m * p.ldc + n, acc);
}

// ---------------------------------------------------------------------------------------------
// A 4(k)×4(m) block of op(A) as four column vectors: acol[kk][i] = op(A)[m0 + i, k + kk].
// Read with vec4 loads along whichever dimension is contiguous in memory.
fn load_a_block(a0: u32, m0: u32, k: u32) -> array<vec4<f32>, 4> {
    var acol: array<vec4<f32>, 4>;
    if (TRANS_A) {
        // Stored K×M: row k+kk holds op(A)[m0..m0+4, k+kk] contiguously.
        let vm = valid4(m0, p.M);
        for (var kk = 0u; kk < 4u; kk++) {
            var v = 0u;
            if (k + kk < p.K) { v = vm; }
            acol[kk] = fetch4_a(a0 + (k + kk) * p.lda + m0, v);
        }
    } else {
        // Stored M×K: row m0+i holds op(A)[m0+i, k..k+4] contiguously; transpose in registers.
        let vk = valid4(k, p.K);
        var r: array<vec4<f32>, 4>;
        for (var i = 0u; i < 4u; i++) {
            var v = 0u;
            if (m0 + i < p.M) { v = vk; }
            r[i] = fetch4_a(a0 + (m0 + i) * p.lda + k, v);
        }
        for (var kk = 0u; kk < 4u; kk++) {
            acol[kk] = vec4<f32>(r[0][kk], r[1][kk], r[2][kk], r[3][kk]);
        }
    }
    return acol;
}

// A 4(k)×4(n) block of op(B) as four row vectors: brow[kk][j] = op(B)[k + kk, n0 + j].
fn load_b_block(b0: u32, n0: u32, k: u32) -> array<vec4<f32>, 4> {
    var brow: array<vec4<f32>, 4>;
    if (TRANS_B) {
        // Stored N×K: row n0+j holds op(B)[k..k+4, n0+j] contiguously; transpose in registers.
        let vk = valid4(k, p.K);
        var r: array<vec4<f32>, 4>;
        for (var j = 0u; j < 4u; j++) {
            var v = 0u;
            if (n0 + j < p.N) { v = vk; }
            r[j] = fetch4_b(b0 + (n0 + j) * p.ldb + k, v);
        }
        for (var kk = 0u; kk < 4u; kk++) {
            brow[kk] = vec4<f32>(r[0][kk], r[1][kk], r[2][kk], r[3][kk]);
        }
    } else {
        let vn = valid4(n0, p.N);
        for (var kk = 0u; kk < 4u; kk++) {
            var v = 0u;
            if (k + kk < p.K) { v = vn; }
            brow[kk] = fetch4_b(b0 + (k + kk) * p.ldb + n0, v);
        }
    }
    return brow;
}

// Write a 4×4 register tile (acc[i][j] = C[m0+i, n0+j]) with edge guards.
fn store_tile(c0: u32, m0: u32, n0: u32, acc: array<vec4<f32>, 4>) {
    for (var i = 0u; i < 4u; i++) {
        if (m0 + i < p.M) {
            for (var j = 0u; j < 4u; j++) {
                if (n0 + j < p.N) {
                    store_c(c0 + (m0 + i) * p.ldc + n0 + j, acc[i][j]);
                }
            }
        }
    }
}

// matmul_register: each invocation computes a TM×TN block of C (TM, TN each 4 or 8) straight from
// global memory. On a CPU driver every load inside a loop costs one load per SIMD lane, so what
// counts is FMAs per loaded element: TM·TN/(TM+TN), i.e. 2 for 4×4 and 4 for 8×8.
// Grid (ceil(N/(TN·RX)), ceil(M/(TM·RY)), batch).
@compute @workgroup_size(RX, RY, 1)
fn matmul_register(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n0 = gid.x * TN;
    let m0 = gid.y * TM;
    let bat = gid.z;
    // Whole-invocation early exit is safe: this kernel has no barriers.
    if (m0 >= p.M || n0 >= p.N) {
        return;
    }
    let a0 = p.off_a + bat * p.stride_a;
    let b0 = p.off_b + bat * p.stride_b;
    // acc[r][i][q] = C[m0 + 4r + i, n0 + 4q .. 4q + 4]; the arrays are sized for 8×8 and the
    // loops run to TM/4 and TN/4, so a 4×4 pipeline never touches the rest.
    var acc: array<array<array<vec4<f32>, 2>, 4>, 2>;
    for (var k = 0u; k < p.K; k += 4u) {
        var acol: array<array<vec4<f32>, 4>, 2>;
        var brow: array<array<vec4<f32>, 4>, 2>;
        for (var r = 0u; r < TM / 4u; r++) {
            acol[r] = load_a_block(a0, m0 + 4u * r, k);
        }
        for (var q = 0u; q < TN / 4u; q++) {
            brow[q] = load_b_block(b0, n0 + 4u * q, k);
        }
        for (var kk = 0u; kk < 4u; kk++) {
            for (var r = 0u; r < TM / 4u; r++) {
                for (var i = 0u; i < 4u; i++) {
                    for (var q = 0u; q < TN / 4u; q++) {
                        acc[r][i][q] = fma(vec4<f32>(acol[r][kk][i]), brow[q][kk], acc[r][i][q]);
                    }
                }
            }
        }
    }
    let c0 = p.off_c + bat * p.stride_c;
    for (var r = 0u; r < TM / 4u; r++) {
        for (var q = 0u; q < TN / 4u; q++) {
            var tile: array<vec4<f32>, 4>;
            for (var i = 0u; i < 4u; i++) {
                tile[i] = acc[r][i][q];
            }
            store_tile(c0, m0 + 4u * r, n0 + 4u * q, tile);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// matmul_tiled. Workgroup memory holds the BK×BM slice of op(A) (k-major, so each invocation
// reads its 4 rows as one vec4) and the BK×BN slice of op(B) (k-major, 4 columns per vec4).
var<workgroup> As: array<vec4<f32>, BK * BM / 4u>;
var<workgroup> Bs: array<vec4<f32>, BK * BN / 4u>;

// Grid (ceil(N/BN), ceil(M/BM), batch); invocation (tx, ty) owns C rows ty*4.., columns tx*4..
@compute @workgroup_size(BN / 4u, BM / 4u, 1)
fn matmul_tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let threads = (BM / 4u) * (BN / 4u);
    let m_base = wid.y * BM;
    let n_base = wid.x * BN;
    let bat = wid.z;
    let a0 = p.off_a + bat * p.stride_a;
    let b0 = p.off_b + bat * p.stride_b;

    var acc: array<vec4<f32>, 4>;
    // No early exit: every invocation must reach every barrier. Out-of-range loads read 0 and
    // out-of-range stores are skipped instead.
    for (var k_base = 0u; k_base < p.K; k_base += BK) {
        // Stage op(A)[m_base.., k_base..] into As[k][m/4].
        if (TRANS_A) {
            // Contiguous along m: BK rows of BM/4 vectors, stored as they come.
            for (var v = li; v < BK * BM / 4u; v += threads) {
                let kr = v / (BM / 4u);
                let mq = v % (BM / 4u);
                let k = k_base + kr;
                var n_ok = 0u;
                if (k < p.K) { n_ok = valid4(m_base + mq * 4u, p.M); }
                As[v] = fetch4_a(a0 + k * p.lda + m_base + mq * 4u, n_ok);
            }
        } else {
            // Contiguous along k: BM rows of BK/4 vectors, transposed on the way in.
            for (var v = li; v < BK * BM / 4u; v += threads) {
                let r = v / (BK / 4u);
                let kq = v % (BK / 4u);
                let m = m_base + r;
                var n_ok = 0u;
                if (m < p.M) { n_ok = valid4(k_base + kq * 4u, p.K); }
                let val = fetch4_a(a0 + m * p.lda + k_base + kq * 4u, n_ok);
                for (var e = 0u; e < 4u; e++) {
                    As[(kq * 4u + e) * (BM / 4u) + r / 4u][r % 4u] = val[e];
                }
            }
        }
        // Stage op(B)[k_base.., n_base..] into Bs[k][n/4].
        if (TRANS_B) {
            for (var v = li; v < BK * BN / 4u; v += threads) {
                let r = v / (BK / 4u);
                let kq = v % (BK / 4u);
                let n = n_base + r;
                var n_ok = 0u;
                if (n < p.N) { n_ok = valid4(k_base + kq * 4u, p.K); }
                let val = fetch4_b(b0 + n * p.ldb + k_base + kq * 4u, n_ok);
                for (var e = 0u; e < 4u; e++) {
                    Bs[(kq * 4u + e) * (BN / 4u) + r / 4u][r % 4u] = val[e];
                }
            }
        } else {
            for (var v = li; v < BK * BN / 4u; v += threads) {
                let kr = v / (BN / 4u);
                let nq = v % (BN / 4u);
                let k = k_base + kr;
                var n_ok = 0u;
                if (k < p.K) { n_ok = valid4(n_base + nq * 4u, p.N); }
                Bs[v] = fetch4_b(b0 + k * p.ldb + n_base + nq * 4u, n_ok);
            }
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let av = As[kk * (BM / 4u) + lid.y];
            let bv = Bs[kk * (BN / 4u) + lid.x];
            for (var i = 0u; i < 4u; i++) {
                acc[i] = fma(vec4<f32>(av[i]), bv, acc[i]);
            }
        }
        // The next iteration overwrites the tiles; wait until everyone has read them.
        workgroupBarrier();
    }
    store_tile(p.off_c + bat * p.stride_c, m_base + lid.y * 4u, n_base + lid.x * 4u, acc);
}

// ---------------------------------------------------------------------------------------------
// matmul_tiled8. Two stages of op(A) k-major (At[stage][k][m/4]) and op(B) k-major
// (Bt[stage][k][n/4]). Invocation (tx, ty) owns C rows {4ty.., BM/2 + 4ty..} × columns
// {4tx.., BN/2 + 4tx..}: a 2×2 grid of 4×4 blocks. Workgroup (BN/8)×(BM/8); grid (ceil(N/BN),
// ceil(M/BM), batch). BM·BK/4 and BN·BK/4 must be multiples of the invocation count, at most
// MAX_STAGE8 vec4 per invocation (the host checks).
const MAX_STAGE8: u32 = 4u;
var<workgroup> At: array<vec4<f32>, 2u * BK * BM / 4u>;
var<workgroup> Bt: array<vec4<f32>, 2u * BK * BN / 4u>;

// The v-th vec4 of stage k0's op(A) slice as loaded from memory, and where its elements go in
// At (k-major): contiguous along m when TRANS_A (one vec4 store), else along k (four scalars).
fn tiled8_load_a(a0: u32, m_base: u32, k0: u32, v: u32) -> vec4<f32> {
    if (TRANS_A) {
        let kr = v / (BM / 4u);
        let m = m_base + (v % (BM / 4u)) * 4u;
        var n_ok = 0u;
        if (k0 + kr < p.K) { n_ok = valid4(m, p.M); }
        return fetch4_a(a0 + (k0 + kr) * p.lda + m, n_ok);
    }
    let r = v / (BK / 4u);
    let k = k0 + (v % (BK / 4u)) * 4u;
    var n_ok = 0u;
    if (m_base + r < p.M) { n_ok = valid4(k, p.K); }
    return fetch4_a(a0 + (m_base + r) * p.lda + k, n_ok);
}

fn tiled8_store_a(base: u32, v: u32, val: vec4<f32>) {
    if (TRANS_A) {
        At[base + v] = val;
        return;
    }
    let r = v / (BK / 4u);
    let kq = v % (BK / 4u);
    for (var e = 0u; e < 4u; e++) {
        At[base + (kq * 4u + e) * (BM / 4u) + r / 4u][r % 4u] = val[e];
    }
}

fn tiled8_load_b(b0: u32, n_base: u32, k0: u32, v: u32) -> vec4<f32> {
    if (TRANS_B) {
        let r = v / (BK / 4u);
        let k = k0 + (v % (BK / 4u)) * 4u;
        var n_ok = 0u;
        if (n_base + r < p.N) { n_ok = valid4(k, p.K); }
        return fetch4_b(b0 + (n_base + r) * p.ldb + k, n_ok);
    }
    let kr = v / (BN / 4u);
    let n = n_base + (v % (BN / 4u)) * 4u;
    var n_ok = 0u;
    if (k0 + kr < p.K) { n_ok = valid4(n, p.N); }
    return fetch4_b(b0 + (k0 + kr) * p.ldb + n, n_ok);
}

fn tiled8_store_b(base: u32, v: u32, val: vec4<f32>) {
    if (!TRANS_B) {
        Bt[base + v] = val;
        return;
    }
    let r = v / (BK / 4u);
    let kq = v % (BK / 4u);
    for (var e = 0u; e < 4u; e++) {
        Bt[base + (kq * 4u + e) * (BN / 4u) + r / 4u][r % 4u] = val[e];
    }
}

@compute @workgroup_size(BN / 8u, BM / 8u, 1)
fn matmul_tiled8(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let threads = (BM / 8u) * (BN / 8u);
    let m_base = wid.y * BM;
    let n_base = wid.x * BN;
    let bat = wid.z;
    let a0 = p.off_a + bat * p.stride_a;
    let b0 = p.off_b + bat * p.stride_b;
    let a_vecs = BK * BM / 4u / threads;
    let b_vecs = BK * BN / 4u / threads;
    let a_stage = BK * BM / 4u;
    let b_stage = BK * BN / 4u;

    // acc[i][q]: row i of the thread's 8 (i < 4: 4ty + i; else BM/2 + 4ty + i − 4), columns of
    // half q (4tx.. or BN/2 + 4tx..).
    var acc: array<array<vec4<f32>, 2>, 8>;
    var ra: array<vec4<f32>, MAX_STAGE8>;
    var rb: array<vec4<f32>, MAX_STAGE8>;

    for (var i = 0u; i < a_vecs; i++) {
        let v = li + i * threads;
        tiled8_store_a(0u, v, tiled8_load_a(a0, m_base, 0u, v));
    }
    for (var i = 0u; i < b_vecs; i++) {
        let v = li + i * threads;
        tiled8_store_b(0u, v, tiled8_load_b(b0, n_base, 0u, v));
    }
    workgroupBarrier();

    let stages = (p.K + BK - 1u) / BK;
    for (var t = 0u; t < stages; t++) {
        let cur = t & 1u;
        let more = t + 1u < stages;
        if (more) {
            for (var i = 0u; i < a_vecs; i++) {
                ra[i] = tiled8_load_a(a0, m_base, (t + 1u) * BK, li + i * threads);
            }
            for (var i = 0u; i < b_vecs; i++) {
                rb[i] = tiled8_load_b(b0, n_base, (t + 1u) * BK, li + i * threads);
            }
        }
        let abase = cur * a_stage;
        let bbase = cur * b_stage;
        for (var kk = 0u; kk < BK; kk++) {
            let arow = abase + kk * (BM / 4u);
            let brow = bbase + kk * (BN / 4u);
            let av0 = At[arow + lid.y];
            let av1 = At[arow + BM / 8u + lid.y];
            let bv0 = Bt[brow + lid.x];
            let bv1 = Bt[brow + BN / 8u + lid.x];
            for (var i = 0u; i < 4u; i++) {
                acc[i][0] = fma(vec4<f32>(av0[i]), bv0, acc[i][0]);
                acc[i][1] = fma(vec4<f32>(av0[i]), bv1, acc[i][1]);
                acc[i + 4u][0] = fma(vec4<f32>(av1[i]), bv0, acc[i + 4u][0]);
                acc[i + 4u][1] = fma(vec4<f32>(av1[i]), bv1, acc[i + 4u][1]);
            }
        }
        if (more) {
            let anext = (1u - cur) * a_stage;
            let bnext = (1u - cur) * b_stage;
            for (var i = 0u; i < a_vecs; i++) {
                tiled8_store_a(anext, li + i * threads, ra[i]);
            }
            for (var i = 0u; i < b_vecs; i++) {
                tiled8_store_b(bnext, li + i * threads, rb[i]);
            }
        }
        // The next stage is in place and nobody reads this one any more.
        workgroupBarrier();
    }

    let c0 = p.off_c + bat * p.stride_c;
    for (var i = 0u; i < 8u; i++) {
        let m = m_base + (i / 4u) * (BM / 2u) + lid.y * 4u + i % 4u;
        if (m < p.M) {
            for (var q = 0u; q < 2u; q++) {
                let n0 = n_base + q * (BN / 2u) + lid.x * 4u;
                for (var j = 0u; j < 4u; j++) {
                    if (n0 + j < p.N) {
                        store_c(c0 + m * p.ldc + n0 + j, acc[i][q][j]);
                    }
                }
            }
        }
    }
}
