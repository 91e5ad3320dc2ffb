// matmul_coop.wgsl — the matrix-multiply family on cooperative matrices (tensor cores): f16 × f16
// products, f32 accumulation (or f16 accumulation flushed into f32 per K block), f32 C.
//
//   C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b]        for b in 0..batch
//
// The same contract, parameters and layouts as matmul.wgsl (see its header): TRANS_A / TRANS_B
// select the forward (NT), input-gradient (NN) and weight-gradient (TN) layouts, every operand is
// row-major with a leading dimension and a batch stride, workgroup id z is the batch index, and
// beta = 0 never reads C. Any M, N, K >= 1.
//
// Bindings (windows, as in matmul.wgsl; off_* is where the first matrix starts in them):
//   @binding(0) a : array<ElemA>  A, (M×K) or, when TRANS_A, (K×M)
//   @binding(1) b : array<ElemB>  B, (K×N) or, when TRANS_B, (N×K)
//   @binding(2) c : array<f32>    C, (M×N)
//
// Specialisation. WGSL has no type parameters, so the host rewrites the seven declarations under
// "specialisation" below before compiling (kernels::matmul_coop::specialization): `ElemA` and
// `ElemB` are the operands' storage types, each f32 (rounded to f16 while staging, so any f32
// caller can use the kernel) or f16 (the f16 weight copies, read as they are), and `CT` with the
// four coop types is the tile size the adapter reports (8×8×8 on lavapipe, 16×16×16 on NVIDIA and
// AMD). One source serves all eight combinations; as written the file is the f32 / 8×8 one, so
// naga can validate it on its own.
//
// Launch geometry. A workgroup computes a BM×BN block of C, BM = WM·2·CT, BN = WN·2·CT: WM×WN
// subgroups, each owning a 2×2 grid of CT×CT accumulator tiles (every A tile it loads feeds two
// products, every B tile two). The workgroup has WG = WM·WN·SG invocations, SG being the subgroup
// size the host read from the adapter (never assumed to be 32). Grid (ceil(N/BN), ceil(M/BM), batch).
// If the driver forms subgroups of another size the tiles no longer cover the block: extra
// subgroups compute nothing (their offsets are clamped inside the tiles and their stores are
// skipped); missing ones leave outputs unwritten, which the start-up self-test (outputs poisoned
// with NaN) catches before the variant is ever used.
//
// K loop, double-buffered: op(A)[block, k0..k0+BK] and op(B)[k0..k0+BK, block] are staged as f16
// in workgroup memory, both K-contiguous (As[m][k], Bs[n][k], rows padded by PAD halves so rows
// start on different banks and stay 16-byte aligned). While the subgroups multiply the tiles of
// stage t, every invocation already holds the global loads of stage t+1 in registers; it writes
// them into the other buffer after the products, so one barrier per stage suffices. Ragged edges
// are staged as zeros: no load outside the matrices, and zeros add nothing to the products.
//
// Numerics. f16 inputs (f32 operands are rounded to nearest by the conversion), products exact
// in the accumulator (11-bit × 11-bit significands fit f32's 24), accumulation:
//   ACC16 = false  in f32 on the matrix unit (the default);
//   ACC16 = true   in f16 over FLUSH stages (a K block of FLUSH·BK), then added into the f32
//                  accumulator: the f16 rate of GeForce tensor cores (2× f32 accumulation) with
//                  an error bounded by one block's length, not K's. The flush goes through
//                  workgroup memory (WGSL converts no coop matrix from f16 to f32).
// validate::matmul_coop_tolerance derives both bounds. f32 operands beyond f16's range (65504)
// become infinities, as in any f16 product.
//
// Epilogue: each accumulator tile goes through a per-subgroup CT×CT f32 scratch slot, from which
// the subgroup's lanes apply alpha/beta and store the elements inside C (coopStore cannot clip a
// tile at a ragged edge). naga 30.0.2 panics ("Expression [N] is not cached!") when a coopStore's
// offset or stride is computed in the statement just before it, so every offset a coop op takes
// is computed before the K loop.

enable f16;
enable wgpu_cooperative_matrix;

// ---- specialisation (rewritten by the host; keep one declaration per line) ------------------
alias ElemA = f32;
alias ElemB = f32;
const CT: u32 = 8u;
alias TileA = coop_mat8x8<f16, A>;
alias TileB = coop_mat8x8<f16, B>;
alias Acc = coop_mat8x8<f32, C>;
alias Acc16 = coop_mat8x8<f16, C>;
// ---------------------------------------------------------------------------------------------

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

override TRANS_A: bool = false;
override TRANS_B: bool = true;
// Subgroups along M and N, the subgroup size the host assumes, and the K depth of one stage (a
// multiple of CT). The host checks BM·BK and BN·BK are multiples of WG and at most MAX_STAGE·WG.
override WM: u32 = 2u;
override WN: u32 = 2u;
override SG: u32 = 8u;
override BK: u32 = 32u;
override ACC16: bool = false;
override FLUSH: u32 = 2u;

override BM: u32 = WM * 2u * CT;
override BN: u32 = WN * 2u * CT;
override WG: u32 = WM * WN * SG;
override BKP: u32 = BK + PAD;

const PAD: u32 = 8u;
// Staged elements per invocation and operand are held in registers between the load and the
// store; private arrays need a constant size.
const MAX_STAGE: u32 = 32u;

@group(0) @binding(0) var<storage, read> a: array<ElemA>;
@group(0) @binding(1) var<storage, read> b: array<ElemB>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;

var<workgroup> As: array<f16, 2u * BM * BKP>;
var<workgroup> Bs: array<f16, 2u * BN * BKP>;
// One CT×CT slot per subgroup: the epilogue's (and the f16 flush's) way out of a coop matrix.
// Subgroups beyond the WM×WN grid (see the header) share one spare slot.
var<workgroup> Cs: array<f32, (WM * WN + 1u) * CT * CT>;
var<workgroup> Cs16: array<f16, (WM * WN + 1u) * CT * CT>;

// Element e of this invocation's share of a stage: (row in the block, k in the stage), with the
// global index walking the operand's contiguous dimension across neighbouring invocations.
fn a_element(a0: u32, m_base: u32, k0: u32, e: u32) -> f16 {
    var r: u32;
    var kk: u32;
    if (TRANS_A) {
        kk = e / BM;
        r = e % BM;
    } else {
        r = e / BK;
        kk = e % BK;
    }
    let m = m_base + r;
    let k = k0 + kk;
    if (m >= p.M || k >= p.K) {
        return f16(0.0);
    }
    if (TRANS_A) {
        return f16(a[a0 + k * p.lda + m]);
    }
    return f16(a[a0 + m * p.lda + k]);
}

fn b_element(b0: u32, n_base: u32, k0: u32, e: u32) -> f16 {
    var r: u32;
    var kk: u32;
    if (TRANS_B) {
        r = e / BK;
        kk = e % BK;
    } else {
        kk = e / BN;
        r = e % BN;
    }
    let n = n_base + r;
    let k = k0 + kk;
    if (n >= p.N || k >= p.K) {
        return f16(0.0);
    }
    if (TRANS_B) {
        return f16(b[b0 + n * p.ldb + k]);
    }
    return f16(b[b0 + k * p.ldb + n]);
}

// Where element e of a stage lives in the staging buffer (row-major [row][k], pitch BKP).
fn a_slot(e: u32) -> u32 {
    if (TRANS_A) {
        return (e % BM) * BKP + e / BM;
    }
    return (e / BK) * BKP + e % BK;
}

fn b_slot(e: u32) -> u32 {
    if (TRANS_B) {
        return (e / BK) * BKP + e % BK;
    }
    return (e % BN) * BKP + e / BN;
}

fn store_c(idx: u32, acc: f32) {
    var v = p.alpha * acc;
    if (p.beta != 0.0) {
        v += p.beta * c[idx];
    }
    c[idx] = v;
}

// The subgroup's lanes write the tile in its scratch slot to C rows m0.., columns n0.., skipping
// what lies outside C (and everything, for a subgroup beyond the WM×WN grid).
fn write_tile(slot: u32, c0: u32, m0: u32, n0: u32, lane: u32, lanes: u32, live: bool) {
    for (var e = lane; e < CT * CT; e += lanes) {
        let m = m0 + e / CT;
        let n = n0 + e % CT;
        if (live && m < p.M && n < p.N) {
            store_c(c0 + m * p.ldc + n, Cs[slot + e]);
        }
    }
}

// The subgroup's lanes widen its f16 scratch slot into its f32 slot.
fn widen_slot(slot: u32, lane: u32, lanes: u32) {
    for (var e = lane; e < CT * CT; e += lanes) {
        Cs[slot + e] = f32(Cs16[slot + e]);
    }
}

@compute @workgroup_size(WG, 1, 1)
fn matmul_coop(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(subgroup_id) sid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) lanes: u32,
) {
    let m_base = wid.y * BM;
    let n_base = wid.x * BN;
    let bat = wid.z;
    let a0 = p.off_a + bat * p.stride_a;
    let b0 = p.off_b + bat * p.stride_b;
    let c0 = p.off_c + bat * p.stride_c;

    // This subgroup's place in the WM×WN grid (clamped: see the header) and every offset its
    // coop loads and stores use, computed once (the naga workaround).
    let live = sid < WM * WN;
    let sg = min(sid, WM * WN - 1u);
    let sm = sg / WN;
    let sn = sg % WN;
    let a_row0 = (sm * 2u * CT) * BKP;
    let a_row1 = (sm * 2u * CT + CT) * BKP;
    let b_row0 = (sn * 2u * CT) * BKP;
    let b_row1 = (sn * 2u * CT + CT) * BKP;
    let slot = select(WM * WN, sg, live) * CT * CT;
    let stride_s = BKP;
    let stride_t = CT;

    var acc00 = Acc();
    var acc01 = Acc();
    var acc10 = Acc();
    var acc11 = Acc();
    var h00 = Acc16();
    var h01 = Acc16();
    var h10 = Acc16();
    var h11 = Acc16();

    let a_count = BM * BK / WG;
    let b_count = BN * BK / WG;
    var ra: array<f16, MAX_STAGE>;
    var rb: array<f16, MAX_STAGE>;

    // Stage 0 into buffer 0.
    for (var i = 0u; i < a_count; i++) {
        let e = li + i * WG;
        As[a_slot(e)] = a_element(a0, m_base, 0u, e);
    }
    for (var i = 0u; i < b_count; i++) {
        let e = li + i * WG;
        Bs[b_slot(e)] = b_element(b0, n_base, 0u, e);
    }
    workgroupBarrier();

    // K blocks of FLUSH stages (one stage each when accumulating in f32). The flush sits at the
    // end of a block rather than behind a test on the stage index: naga's uniformity analysis
    // treats anything computed from a loop variable as non-uniform, and coop ops must be in
    // uniform control flow.
    let stages = (p.K + BK - 1u) / BK;
    for (var blk = 0u; blk < stages; blk += FLUSH) {
        let blk_end = min(blk + FLUSH, stages);
        for (var t = blk; t < blk_end; t++) {
            let cur = t & 1u;
            let more = t + 1u < stages;
            // Global loads of the next stage, in flight while this one is multiplied.
            if (more) {
                let k_next = (t + 1u) * BK;
                for (var i = 0u; i < a_count; i++) {
                    ra[i] = a_element(a0, m_base, k_next, li + i * WG);
                }
                for (var i = 0u; i < b_count; i++) {
                    rb[i] = b_element(b0, n_base, k_next, li + i * WG);
                }
            }
            let abuf = cur * BM * BKP;
            let bbuf = cur * BN * BKP;
            for (var kk = 0u; kk < BK; kk += CT) {
                let ta0 = coopLoadT<TileA>(&As[abuf + a_row0 + kk], stride_s);
                let ta1 = coopLoadT<TileA>(&As[abuf + a_row1 + kk], stride_s);
                // Bs holds B as [n][k]: column-major K×N tiles.
                let tb0 = coopLoad<TileB>(&Bs[bbuf + b_row0 + kk], stride_s);
                let tb1 = coopLoad<TileB>(&Bs[bbuf + b_row1 + kk], stride_s);
                if (ACC16) {
                    h00 = coopMultiplyAdd(ta0, tb0, h00);
                    h01 = coopMultiplyAdd(ta0, tb1, h01);
                    h10 = coopMultiplyAdd(ta1, tb0, h10);
                    h11 = coopMultiplyAdd(ta1, tb1, h11);
                } else {
                    acc00 = coopMultiplyAdd(ta0, tb0, acc00);
                    acc01 = coopMultiplyAdd(ta0, tb1, acc01);
                    acc10 = coopMultiplyAdd(ta1, tb0, acc10);
                    acc11 = coopMultiplyAdd(ta1, tb1, acc11);
                }
            }
            if (more) {
                let abuf_next = (1u - cur) * BM * BKP;
                let bbuf_next = (1u - cur) * BN * BKP;
                for (var i = 0u; i < a_count; i++) {
                    As[abuf_next + a_slot(li + i * WG)] = ra[i];
                }
                for (var i = 0u; i < b_count; i++) {
                    Bs[bbuf_next + b_slot(li + i * WG)] = rb[i];
                }
            }
            // Stage t+1 is in place, and nobody reads stage t's buffer any more.
            workgroupBarrier();
        }
        if (ACC16) {
            // End of a K block: add the f16 partial sums into the f32 accumulators.
            coopStoreT(h00, &Cs16[slot], stride_t);
            workgroupBarrier();
            widen_slot(slot, lane, lanes);
            workgroupBarrier();
            acc00 = acc00 + coopLoadT<Acc>(&Cs[slot], stride_t);
            coopStoreT(h01, &Cs16[slot], stride_t);
            workgroupBarrier();
            widen_slot(slot, lane, lanes);
            workgroupBarrier();
            acc01 = acc01 + coopLoadT<Acc>(&Cs[slot], stride_t);
            coopStoreT(h10, &Cs16[slot], stride_t);
            workgroupBarrier();
            widen_slot(slot, lane, lanes);
            workgroupBarrier();
            acc10 = acc10 + coopLoadT<Acc>(&Cs[slot], stride_t);
            coopStoreT(h11, &Cs16[slot], stride_t);
            workgroupBarrier();
            widen_slot(slot, lane, lanes);
            workgroupBarrier();
            acc11 = acc11 + coopLoadT<Acc>(&Cs[slot], stride_t);
            h00 = Acc16();
            h01 = Acc16();
            h10 = Acc16();
            h11 = Acc16();
        }
    }

    // Epilogue: tile by tile through the subgroup's scratch slot.
    let m0 = m_base + sm * 2u * CT;
    let n0 = n_base + sn * 2u * CT;
    coopStoreT(acc00, &Cs[slot], stride_t);
    workgroupBarrier();
    write_tile(slot, c0, m0, n0, lane, lanes, live);
    workgroupBarrier();
    coopStoreT(acc01, &Cs[slot], stride_t);
    workgroupBarrier();
    write_tile(slot, c0, m0, n0 + CT, lane, lanes, live);
    workgroupBarrier();
    coopStoreT(acc10, &Cs[slot], stride_t);
    workgroupBarrier();
    write_tile(slot, c0, m0 + CT, n0, lane, lanes, live);
    workgroupBarrier();
    coopStoreT(acc11, &Cs[slot], stride_t);
    workgroupBarrier();
    write_tile(slot, c0, m0 + CT, n0 + CT, lane, lanes, live);
}
