// attention.wgsl — flash attention, f32: causal self-attention with a sliding window and grouped
// KV heads (reference: src/reference/attention.rs).
//
// Layouts (row n = b·T + t): q and out (B, T, H, D); k and v (B, T, Hkv, D); lse (B, T, H), the
// natural-log log-sum-exp of the scaled scores. Query head h reads KV head h / G with G = H / Hkv.
// Query t sees keys j with t − window ≤ j ≤ t (the host clamps window to T, so j + window never
// overflows).
//
// Query rows. A workgroup works on one (b, KV head) and flattens the G query heads that share it
// into one sequence of R = T·G rows, row r = t·G + g (head h = kvh·G + g). For fixed t the G heads
// are adjacent in memory, so a tile of BQ rows is BQ/G positions × G heads, and every K/V block
// staged for it serves all G heads: GQA reuses each K/V load G times. With G = 1 this is the plain
// per-head layout. The lse and Δ of row r live at the same index as its q row, (b·T + t)·H + h.
//
// Three entry points, no atomics anywhere (results are bit-identical run to run):
//   attention_forward        one workgroup per BQ query rows. Q tile staged once; loop over key
//                            blocks of BK: stage K, scores S = scale·Q·Kᵀ, stage V, online softmax
//                            (running max m, running sum l, rescale α), O = α·O + P·V in registers.
//                            Writes out = O / l and lse = m + ln l. Never more than BQ×BK scores.
//   attention_backward_dq    one workgroup per BQ query rows: Δ = ⟨dout, out⟩ per row (written to
//                            the delta scratch for the next pass), then for every key block
//                            dP = dout·Vᵀ, P = exp(S − lse), dS = P ⊙ (dP − Δ), dQ += dS·K.
//                            Writes dq = scale·dQ.
//   attention_backward_dkdv  one workgroup per BK keys: K and V stay resident, loop over the query
//                            rows that see them (all G heads), recomputing P and dS per block of BQ
//                            rows: dV += Pᵀ·dout, dK += dSᵀ·Q. Writes dk = scale·dK, dv = dV. The
//                            sum over the G heads sharing a KV head happens inside the workgroup.
//
// Bindings (every entry binds 0..n contiguously; aliased names share a slot across entries):
//               0    1    2    3                4                  5                  6           7
//   forward:    q    k    v    o (rw)           lse_out (rw)
//   dq pass:    q    k    v    dout             lse_in             delta_out (rw)     o_in        dq (rw)
//   dkdv pass:  q    k    v    dout             lse_in             delta_in           dk (rw)     dv (rw)
// Tensors with D-long rows are bound as array<vec4<f32>>: the host requires D % 4 == 0 and every
// such view to start on a multiple of 4 elements, so off_* / 4 is exact.
//
// Masking never produces NaN: a masked score is stored as the finite sentinel NEG and its
// probability is set to exactly 0 (never exp of a difference of sentinels); a row that has seen no
// visible key yet keeps m = NEG and l = 0, and α = exp(m_old − m_new) is 1 (NEG − NEG) or 0 (NEG
// − finite). Every real query row sees at least itself, so l > 0 when it is written. Rows and keys
// past the end of the sequence are staged as zeros and masked, and nothing is written for them.
//
// Tiles (override constants set by the host per pass and head size, all exact multiples; see
// kernels/attention.rs, which also checks the workgroup memory against the adapter's limit):
//   BQ × BK score tile, NT invocations. Score-like tiles: invocation li owns rows sr + i·SR
//   (i < S_TR) and keys sk + j·SK (j < S_TK), sk = li % SK, sr = li / SK, SK = BK / S_TK,
//   SR = NT / SK (SR·S_TR = BQ). Row-by-D accumulators (O, dQ, and dK/dV by key): invocation li
//   owns vec4 columns oc + jj·O_CG (jj < O_TC) of rows orow + i·O_RG (i < O_TR), oc = li % O_CG,
//   orow = li / O_CG, O_RG = NT / O_CG; at most 8 vec4 per accumulator, and indices past D/4 or
//   past the tile are skipped.
// Workgroup rows are padded to DP = D/4 + 1 vec4: the score loops read S_TK key rows at the same
// column, and the padding puts consecutive rows in different banks on a GPU.

struct AttnParams {
    T: u32,
    H: u32,
    Hkv: u32,
    window: u32,
    scale: f32,
    // Element offset of each tensor's data inside its bound window.
    off_q: u32,
    off_k: u32,
    off_v: u32,
    off_o: u32, // out (forward) or dout (backward)
    off_lse: u32,
    off_delta: u32,
    off_x: u32, // out, read by the dq pass
    off_g0: u32, // dq (dq pass) or dk (dkdv pass)
    off_g1: u32, // dv (dkdv pass)
    one: u32, // 1; see trips()
    _pad0: u32,
}

var<immediate> p: AttnParams;

override D: u32 = 128u; // head size, a multiple of 4, at most 128
override BQ: u32 = 32u; // query rows per tile
override BK: u32 = 16u; // keys per tile
override NT: u32 = 128u; // invocations per workgroup
override S_TR: u32 = 2u; // score rows per invocation (≤ 4)
override S_TK: u32 = 2u; // score keys per invocation (≤ 4)
override O_CG: u32 = 32u; // vec4 column groups of the accumulators
override O_TR: u32 = 8u; // accumulator rows per invocation
override O_TC: u32 = 1u; // accumulator vec4 columns per invocation (O_TR·O_TC ≤ 8)
// How many BQ-row, BK-row and BQ×BK tiles the entry point keeps: forward 1, 1, 1 (K and V share
// a tile); dq pass 2 (Q, dout), 1 (V then K), 1 (dS); dkdv pass 2 (Q, dout), 2 (K, V), 2 (P, dS).
override A_TILES: u32 = 1u;
override B_TILES: u32 = 1u;
override P_TILES: u32 = 1u;

override DV: u32 = D / 4u;
override DP: u32 = D / 4u + 1u;
override SK: u32 = BK / S_TK;
override SR: u32 = NT / SK;
override O_RG: u32 = NT / O_CG;

// Set by the host on CPU drivers (lavapipe). Their compilers fully unroll every loop whose trip
// count is a constant and then spend tens of seconds per pipeline on the straight-line result
// (measured: 20 s for the dk/dv pass at D = 128), so the long loops (over D/4, BK, BQ) get their
// trip count through trips(), which multiplies by p.one (= 1) there, hiding the constant. The
// short register-tile loops (S_TR, S_TK, O_TR, O_TC) always keep constant bounds: unrolled, their
// arrays stay in registers. On a GPU the flag is off and every bound is a constant again; the
// same operations run in the same order either way.
override RUNTIME_TRIPS: bool = false;

fn trips(n: u32) -> u32 {
    if (RUNTIME_TRIPS) {
        return n * p.one;
    }
    return n;
}

const NEG: f32 = -3.0e38;

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> v: array<vec4<f32>>;
// forward
@group(0) @binding(3) var<storage, read_write> o: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> lse_out: array<f32>;
// backward, both passes
@group(0) @binding(3) var<storage, read> dout: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> lse_in: array<f32>;
// dq pass
@group(0) @binding(5) var<storage, read_write> delta_out: array<f32>;
@group(0) @binding(6) var<storage, read> o_in: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> dq: array<vec4<f32>>;
// dkdv pass
@group(0) @binding(5) var<storage, read> delta_in: array<f32>;
@group(0) @binding(6) var<storage, read_write> dk: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> dv: array<vec4<f32>>;

// tile_a: BQ-row tiles (Q at 0, dout at BQ·DP). tile_b: BK-row tiles (K or V at 0, V at BK·DP in
// the dkdv pass). tile_p: scores / probabilities / dS, BQ·BK floats each, held as vec4 so that the
// accumulation loops read four of them per load: row-major [query][key] in the forward and dq
// pass (four keys per vec4), transposed [key][query] in the dkdv pass (four queries per vec4; P at
// 0, dS at BQ·BK). BK and BQ are multiples of 4. row_s: per-row statistics (m, l, α in the
// forward; lse, Δ in the backward) at 0, BQ, 2·BQ.
var<workgroup> tile_a: array<vec4<f32>, A_TILES * BQ * DP>;
var<workgroup> tile_b: array<vec4<f32>, B_TILES * BK * DP>;
var<workgroup> tile_p: array<vec4<f32>, P_TILES * BQ * BK / 4u>;
var<workgroup> row_s: array<f32, 3u * BQ>;

// Element i of tile_p viewed as floats.
fn p_set(i: u32, x: f32) {
    tile_p[i / 4u][i % 4u] = x;
}

// Whether flattened query row `row` (of R) sees key j.
fn visible(row: u32, R: u32, G: u32, j: u32) -> bool {
    let t = row / G;
    return row < R && j <= t && t <= j + p.window;
}

// Index (in D-long rows) of the q / out / dout row and of the lse / Δ entry of flattened row
// `row` of (b, kvh): (b·T + t)·H + kvh·G + g.
fn q_row(b: u32, kvh: u32, G: u32, row: u32) -> u32 {
    return (b * p.T + row / G) * p.H + kvh * G + row % G;
}

// Index (in D-long rows) of key / value j of (b, kvh).
fn kv_row(b: u32, kvh: u32, j: u32) -> u32 {
    return (b * p.T + j) * p.Hkv + kvh;
}

// The invocation's S_TR×S_TK share of the BQ×BK tile of row dot products between the BQ rows of
// tile_a at vec4 offset a0 and the BK rows of tile_b at b0: s[i·4 + j] = ⟨a[sr + i·SR], b[sk + j·SK]⟩.
fn tile_dots(a0: u32, b0: u32, sr: u32, sk: u32) -> array<f32, 16> {
    var s: array<f32, 16>;
    for (var c = 0u; c < trips(DV); c++) {
        var av: array<vec4<f32>, 4>;
        var bv: array<vec4<f32>, 4>;
        for (var i = 0u; i < S_TR; i++) {
            av[i] = tile_a[a0 + (sr + i * SR) * DP + c];
        }
        for (var j = 0u; j < S_TK; j++) {
            bv[j] = tile_b[b0 + (sk + j * SK) * DP + c];
        }
        for (var i = 0u; i < S_TR; i++) {
            for (var j = 0u; j < S_TK; j++) {
                s[i * 4u + j] += dot(av[i], bv[j]);
            }
        }
    }
    return s;
}

// acc[i·O_TC + jj] += Σ_kk P[r, kk] · tile_b[kk·DP + c] for the invocation's rows r = orow + i·O_RG
// of a BQ-row accumulator (P·V in the forward, dS·K in the dq pass), four keys per step: one vec4
// of P per row and four rows of tile_b per step.
fn accumulate_rows(acc: ptr<function, array<vec4<f32>, 8>>, orow: u32, oc: u32) {
    for (var k4 = 0u; k4 < trips(BK / 4u); k4++) {
        var bv: array<array<vec4<f32>, 2>, 4>;
        for (var e = 0u; e < 4u; e++) {
            for (var jj = 0u; jj < O_TC; jj++) {
                let c = oc + jj * O_CG;
                if (c < DV) {
                    bv[e][jj] = tile_b[(4u * k4 + e) * DP + c];
                }
            }
        }
        for (var i = 0u; i < O_TR; i++) {
            let r = orow + i * O_RG;
            if (r < BQ) {
                let p4 = tile_p[r * (BK / 4u) + k4];
                for (var jj = 0u; jj < O_TC; jj++) {
                    var a = (*acc)[i * O_TC + jj];
                    a = fma(vec4<f32>(p4.x), bv[0][jj], a);
                    a = fma(vec4<f32>(p4.y), bv[1][jj], a);
                    a = fma(vec4<f32>(p4.z), bv[2][jj], a);
                    a = fma(vec4<f32>(p4.w), bv[3][jj], a);
                    (*acc)[i * O_TC + jj] = a;
                }
            }
        }
    }
}

// Stage BQ query rows starting at flattened row row0 into tile_a tile 0 (rows ≥ row_end read
// as zero). The forward must not reference `dout` (it shares a binding slot with `o`), hence two
// functions.
fn stage_q(li: u32, b: u32, kvh: u32, G: u32, row0: u32, row_end: u32) {
    for (var e = li; e < BQ * DV; e += NT) {
        let r = e / DV;
        let c = e % DV;
        var x = vec4<f32>(0.0);
        if (row0 + r < row_end) {
            x = q[p.off_q / 4u + q_row(b, kvh, G, row0 + r) * DV + c];
        }
        tile_a[r * DP + c] = x;
    }
}

// The same rows of dout into tile_a tile 1.
fn stage_dout(li: u32, b: u32, kvh: u32, G: u32, row0: u32, row_end: u32) {
    for (var e = li; e < BQ * DV; e += NT) {
        let r = e / DV;
        let c = e % DV;
        var x = vec4<f32>(0.0);
        if (row0 + r < row_end) {
            x = dout[p.off_o / 4u + q_row(b, kvh, G, row0 + r) * DV + c];
        }
        tile_a[BQ * DP + r * DP + c] = x;
    }
}

// Stage BK keys (which = 0) or values (which = 1) j0 .. j0 + BK of (b, kvh) into tile_b tile
// `slot`; keys past j_end (exclusive) read as zero.
fn stage_keys(which: u32, slot: u32, li: u32, b: u32, kvh: u32, j0: u32, j_end: u32) {
    for (var e = li; e < BK * DV; e += NT) {
        let kk = e / DV;
        let c = e % DV;
        let j = j0 + kk;
        var x = vec4<f32>(0.0);
        if (j < j_end) {
            let n = kv_row(b, kvh, j) * DV + c;
            if (which == 0u) {
                x = k[p.off_k / 4u + n];
            } else {
                x = v[p.off_v / 4u + n];
            }
        }
        tile_b[slot * BK * DP + kk * DP + c] = x;
    }
}

// ---------------------------------------------------------------------------------------------
// attention_forward. Grid (ceil(T·G / BQ), Hkv, B). Tiles run last-first: under the causal mask
// the late ones have the most keys, and starting them first shortens the tail.
@compute @workgroup_size(NT, 1, 1)
fn attention_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let G = p.H / p.Hkv;
    let R = p.T * G;
    let tile = (R + BQ - 1u) / BQ - 1u - wid.x;
    let kvh = wid.y;
    let b = wid.z;
    let row0 = tile * BQ;
    let row_end = min(row0 + BQ, R);
    let t_first = row0 / G;
    let t_last = (row_end - 1u) / G;
    // Keys any row of the tile sees: [t_first − window, t_last].
    let j_lo = t_first - min(t_first, p.window);

    stage_q(li, b, kvh, G, row0, row_end);
    if (li < BQ) {
        row_s[li] = NEG; // running max m
        row_s[BQ + li] = 0.0; // running sum l
    }
    let sk = li % SK;
    let sr = li / SK;
    let oc = li % O_CG;
    let orow = li / O_CG;
    var acc: array<vec4<f32>, 8>;
    // Every invocation runs every iteration (the bounds are workgroup-uniform): the barriers
    // below are in uniform control flow.
    for (var j0 = j_lo; j0 <= t_last; j0 += BK) {
        // The previous block's P·V is done with tile_b (V) and tile_p.
        workgroupBarrier();
        stage_keys(0u, 0u, li, b, kvh, j0, t_last + 1u);
        workgroupBarrier();
        let s = tile_dots(0u, 0u, sr, sk);
        for (var i = 0u; i < S_TR; i++) {
            let r = sr + i * SR;
            for (var j = 0u; j < S_TK; j++) {
                let kk = sk + j * SK;
                var x = NEG;
                if (visible(row0 + r, R, G, j0 + kk)) {
                    x = p.scale * s[i * 4u + j];
                }
                p_set(r * BK + kk, x);
            }
        }
        workgroupBarrier();
        // K is no longer needed: V takes its place while the row owners run the online softmax.
        stage_keys(1u, 0u, li, b, kvh, j0, t_last + 1u);
        if (li < BQ) {
            let m_old = row_s[li];
            var m4 = vec4<f32>(m_old);
            for (var k4 = 0u; k4 < trips(BK / 4u); k4++) {
                m4 = max(m4, tile_p[li * (BK / 4u) + k4]);
            }
            let m_new = max(max(m4.x, m4.y), max(m4.z, m4.w));
            var sum4 = vec4<f32>(0.0);
            for (var k4 = 0u; k4 < trips(BK / 4u); k4++) {
                let x = tile_p[li * (BK / 4u) + k4];
                // Masked scores (exactly NEG) get probability 0, never exp(NEG − NEG) = 1.
                let pr = select(vec4<f32>(0.0), exp(x - m_new), x > vec4<f32>(NEG));
                tile_p[li * (BK / 4u) + k4] = pr;
                sum4 += pr;
            }
            let alpha = exp(m_old - m_new);
            row_s[li] = m_new;
            row_s[BQ + li] = row_s[BQ + li] * alpha + ((sum4.x + sum4.y) + (sum4.z + sum4.w));
            row_s[2u * BQ + li] = alpha;
        }
        workgroupBarrier();
        for (var i = 0u; i < O_TR; i++) {
            let r = orow + i * O_RG;
            if (r < BQ) {
                let alpha = vec4<f32>(row_s[2u * BQ + r]);
                for (var jj = 0u; jj < O_TC; jj++) {
                    acc[i * O_TC + jj] *= alpha;
                }
            }
        }
        accumulate_rows(&acc, orow, oc);
    }
    // row_s was last written before the final barrier of the loop.
    for (var i = 0u; i < O_TR; i++) {
        let r = orow + i * O_RG;
        if (r < BQ && row0 + r < row_end) {
            let l = vec4<f32>(row_s[BQ + r]);
            let n = q_row(b, kvh, G, row0 + r) * DV;
            for (var jj = 0u; jj < O_TC; jj++) {
                let c = oc + jj * O_CG;
                if (c < DV) {
                    o[p.off_o / 4u + n + c] = acc[i * O_TC + jj] / l;
                }
            }
        }
    }
    if (li < BQ && row0 + li < row_end) {
        lse_out[p.off_lse + q_row(b, kvh, G, row0 + li)] = row_s[li] + log(row_s[BQ + li]);
    }
}

// ---------------------------------------------------------------------------------------------
// attention_backward_dq. Grid (ceil(T·G / BQ), Hkv, B), tiles last-first as in the forward.
// V and K share tile_b: V first (dP = dout·Vᵀ stays in registers), then K (S, then dQ += dS·K).
@compute @workgroup_size(NT, 1, 1)
fn attention_backward_dq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let G = p.H / p.Hkv;
    let R = p.T * G;
    let tile = (R + BQ - 1u) / BQ - 1u - wid.x;
    let kvh = wid.y;
    let b = wid.z;
    let row0 = tile * BQ;
    let row_end = min(row0 + BQ, R);
    let t_first = row0 / G;
    let t_last = (row_end - 1u) / G;
    let j_lo = t_first - min(t_first, p.window);

    stage_q(li, b, kvh, G, row0, row_end);
    stage_dout(li, b, kvh, G, row0, row_end);
    workgroupBarrier();
    // Row statistics: lse, and Δ = ⟨dout, out⟩, which the dkdv pass reads back from delta_out.
    if (li < BQ) {
        var l = 0.0;
        var dlt = 0.0;
        if (row0 + li < row_end) {
            let n = q_row(b, kvh, G, row0 + li);
            l = lse_in[p.off_lse + n];
            var d4 = vec4<f32>(0.0);
            for (var c = 0u; c < trips(DV); c++) {
                d4 = fma(tile_a[BQ * DP + li * DP + c], o_in[p.off_x / 4u + n * DV + c], d4);
            }
            dlt = (d4.x + d4.y) + (d4.z + d4.w);
            delta_out[p.off_delta + n] = dlt;
        }
        row_s[li] = l;
        row_s[BQ + li] = dlt;
    }
    let sk = li % SK;
    let sr = li / SK;
    let oc = li % O_CG;
    let orow = li / O_CG;
    var acc: array<vec4<f32>, 8>;
    for (var j0 = j_lo; j0 <= t_last; j0 += BK) {
        workgroupBarrier();
        stage_keys(1u, 0u, li, b, kvh, j0, t_last + 1u);
        workgroupBarrier();
        let dp = tile_dots(BQ * DP, 0u, sr, sk);
        workgroupBarrier();
        stage_keys(0u, 0u, li, b, kvh, j0, t_last + 1u);
        workgroupBarrier();
        let s = tile_dots(0u, 0u, sr, sk);
        for (var i = 0u; i < S_TR; i++) {
            let r = sr + i * SR;
            for (var j = 0u; j < S_TK; j++) {
                let kk = sk + j * SK;
                var ds = 0.0;
                if (visible(row0 + r, R, G, j0 + kk)) {
                    let pr = exp(p.scale * s[i * 4u + j] - row_s[r]);
                    ds = pr * (dp[i * 4u + j] - row_s[BQ + r]);
                }
                p_set(r * BK + kk, ds);
            }
        }
        workgroupBarrier();
        accumulate_rows(&acc, orow, oc);
    }
    for (var i = 0u; i < O_TR; i++) {
        let r = orow + i * O_RG;
        if (r < BQ && row0 + r < row_end) {
            let n = q_row(b, kvh, G, row0 + r) * DV;
            for (var jj = 0u; jj < O_TC; jj++) {
                let c = oc + jj * O_CG;
                if (c < DV) {
                    dq[p.off_g0 / 4u + n + c] = p.scale * acc[i * O_TC + jj];
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// attention_backward_dkdv. Grid (ceil(T / BK), Hkv, B); tile x holds keys x·BK .. x·BK + BK (the
// early tiles, which the most queries see, are dispatched first). Reads the Δ the dq pass wrote.
@compute @workgroup_size(NT, 1, 1)
fn attention_backward_dkdv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let G = p.H / p.Hkv;
    let kvh = wid.y;
    let b = wid.z;
    let j0 = wid.x * BK;
    let j_end = min(j0 + BK, p.T);
    // Query positions that see a key of this tile: [j0, j_end − 1 + window], as flattened rows.
    let r_lo = j0 * G;
    let r_hi = min(p.T, j_end + p.window) * G;

    stage_keys(0u, 0u, li, b, kvh, j0, j_end);
    stage_keys(1u, 1u, li, b, kvh, j0, j_end);
    let sk = li % SK;
    let sr = li / SK;
    let oc = li % O_CG;
    let orow = li / O_CG;
    var acc_k: array<vec4<f32>, 8>;
    var acc_v: array<vec4<f32>, 8>;
    for (var r0 = r_lo; r0 < r_hi; r0 += BQ) {
        // Also orders the K/V staging above before its first use.
        workgroupBarrier();
        stage_q(li, b, kvh, G, r0, r_hi);
        stage_dout(li, b, kvh, G, r0, r_hi);
        if (li < BQ) {
            var l = 0.0;
            var dlt = 0.0;
            if (r0 + li < r_hi) {
                let n = q_row(b, kvh, G, r0 + li);
                l = lse_in[p.off_lse + n];
                dlt = delta_in[p.off_delta + n];
            }
            row_s[li] = l;
            row_s[BQ + li] = dlt;
        }
        workgroupBarrier();
        let s = tile_dots(0u, 0u, sr, sk);
        let dp = tile_dots(BQ * DP, BK * DP, sr, sk);
        for (var i = 0u; i < S_TR; i++) {
            let r = sr + i * SR;
            for (var j = 0u; j < S_TK; j++) {
                let kk = sk + j * SK;
                var pr = 0.0;
                var ds = 0.0;
                if (j0 + kk < j_end && visible(r0 + r, r_hi, G, j0 + kk)) {
                    pr = exp(p.scale * s[i * 4u + j] - row_s[r]);
                    ds = pr * (dp[i * 4u + j] - row_s[BQ + r]);
                }
                p_set(kk * BQ + r, pr);
                p_set(BQ * BK + kk * BQ + r, ds);
            }
        }
        workgroupBarrier();
        // dV[kk] += Σ_r P[r, kk]·dout[r];  dK[kk] += Σ_r dS[r, kk]·Q[r]  (rows of this block), four
        // rows per step: a vec4 of P and of dS per key, four rows of Q and of dout.
        for (var r4 = 0u; r4 < trips(BQ / 4u); r4++) {
            var dov: array<array<vec4<f32>, 2>, 4>;
            var qv: array<array<vec4<f32>, 2>, 4>;
            for (var e = 0u; e < 4u; e++) {
                for (var jj = 0u; jj < O_TC; jj++) {
                    let c = oc + jj * O_CG;
                    if (c < DV) {
                        qv[e][jj] = tile_a[(4u * r4 + e) * DP + c];
                        dov[e][jj] = tile_a[BQ * DP + (4u * r4 + e) * DP + c];
                    }
                }
            }
            for (var i = 0u; i < O_TR; i++) {
                let kk = orow + i * O_RG;
                if (kk < BK) {
                    let p4 = tile_p[kk * (BQ / 4u) + r4];
                    let ds4 = tile_p[BQ * BK / 4u + kk * (BQ / 4u) + r4];
                    for (var jj = 0u; jj < O_TC; jj++) {
                        var av = acc_v[i * O_TC + jj];
                        var ak = acc_k[i * O_TC + jj];
                        av = fma(vec4<f32>(p4.x), dov[0][jj], av);
                        av = fma(vec4<f32>(p4.y), dov[1][jj], av);
                        av = fma(vec4<f32>(p4.z), dov[2][jj], av);
                        av = fma(vec4<f32>(p4.w), dov[3][jj], av);
                        ak = fma(vec4<f32>(ds4.x), qv[0][jj], ak);
                        ak = fma(vec4<f32>(ds4.y), qv[1][jj], ak);
                        ak = fma(vec4<f32>(ds4.z), qv[2][jj], ak);
                        ak = fma(vec4<f32>(ds4.w), qv[3][jj], ak);
                        acc_v[i * O_TC + jj] = av;
                        acc_k[i * O_TC + jj] = ak;
                    }
                }
            }
        }
    }
    for (var i = 0u; i < O_TR; i++) {
        let kk = orow + i * O_RG;
        if (kk < BK && j0 + kk < j_end) {
            let n = kv_row(b, kvh, j0 + kk) * DV;
            for (var jj = 0u; jj < O_TC; jj++) {
                let c = oc + jj * O_CG;
                if (c < DV) {
                    dk[p.off_g0 / 4u + n + c] = p.scale * acc_k[i * O_TC + jj];
                    dv[p.off_g1 / 4u + n + c] = acc_v[i * O_TC + jj];
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decode (inference with a KV cache): the one query row of the newest position pos, per head,
// against cached keys and values, in two passes (flash-decoding; deterministic, no atomics).
//
// Layouts: q and out (H, D); the caches (rows, Hkv, D), row j holding position j; query head h
// reads KV head h / G. The host binds cache rows lo ..= pos only, lo = pos − min(pos, window), so
// the nk = pos − lo + 1 visible keys are rows 0 .. nk of the bound windows.
//
// AttnParams as the decode entries read them: T = nk; H, Hkv; scale; off_q, off_k, off_v (row lo
// of each cache); off_o (out, combine pass); off_g0 (the partials, in whichever binding holds
// them). The other fields are unused.
//
//   attention_decode_partial  grid (ceil(nk / DEC_BK), H): one workgroup per block of DEC_BK keys
//                             and query head. Scores s = scale·q·k (one key per invocation, K
//                             staged DEC_CW vec4 columns at a time so that loads are coalesced),
//                             the block's max m and p = exp(s − m), l = Σ p, and o = Σ p·v (rows
//                             of V read by DV consecutive invocations). Writes the partial row
//                             (o as DV vec4, then (m, l, 0, 0)) of (head, block).
//   attention_decode_combine  grid (H): out = Σ_b e^{m_b − M} o_b / Σ_b e^{m_b − M} l_b with
//                             M = max_b m_b, blocks in order.
// Every block holds at least one visible key, so each m_b is finite and l_b ≥ 1.
//
// Bindings:     0              1              2    3
//   partial:    q              k              v    dec_part (rw)
//   combine:    dec_part_in    dec_out (rw)

const DEC_NT: u32 = 64u; // invocations per workgroup
const DEC_BK: u32 = 64u; // keys per block: the score phase gives each invocation one (DEC_BK = DEC_NT)
const DEC_CW: u32 = 16u; // vec4 columns of K staged at a time (64 floats of each key)
const DEC_CP: u32 = 17u; // DEC_CW + 1: padded staged rows, consecutive keys in different banks
const DEC_MAX_DV: u32 = 32u; // D ≤ 128

@group(0) @binding(3) var<storage, read_write> dec_part: array<vec4<f32>>;
@group(0) @binding(0) var<storage, read> dec_part_in: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dec_out: array<vec4<f32>>;

var<workgroup> dec_q: array<vec4<f32>, DEC_MAX_DV>;
var<workgroup> dec_k: array<vec4<f32>, 1088>; // DEC_BK · DEC_CP
var<workgroup> dec_s: array<f32, DEC_BK>;
var<workgroup> dec_p: array<f32, DEC_BK>;
var<workgroup> dec_acc: array<vec4<f32>, DEC_NT>;

@compute @workgroup_size(DEC_NT, 1, 1)
fn attention_decode_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let G = p.H / p.Hkv;
    let blk = wid.x;
    let h = wid.y;
    let kvh = h / G;
    let nb = (p.T + DEC_BK - 1u) / DEC_BK;
    let j0 = blk * DEC_BK;
    let nkb = min(DEC_BK, p.T - j0);
    if (li < DV) {
        dec_q[li] = q[p.off_q / 4u + h * DV + li];
    }
    // Scores: invocation li owns key j0 + li.
    var acc = 0.0;
    for (var c0 = 0u; c0 < DV; c0 += DEC_CW) {
        // The previous chunk has been read (the first time: orders the dec_q writes).
        workgroupBarrier();
        for (var e = li; e < DEC_BK * DEC_CW; e += DEC_NT) {
            let kk = e / DEC_CW;
            let c = e % DEC_CW;
            var x = vec4<f32>(0.0);
            if (kk < nkb && c0 + c < DV) {
                x = k[p.off_k / 4u + ((j0 + kk) * p.Hkv + kvh) * DV + c0 + c];
            }
            dec_k[kk * DEC_CP + c] = x;
        }
        workgroupBarrier();
        let cn = min(DEC_CW, DV - c0);
        for (var c = 0u; c < cn; c++) {
            acc += dot(dec_q[c0 + c], dec_k[li * DEC_CP + c]);
        }
    }
    var s = NEG;
    if (li < nkb) {
        s = p.scale * acc;
    }
    dec_s[li] = s;
    workgroupBarrier();
    // The block max, computed by every invocation in the same order (broadcast reads).
    var m = NEG;
    for (var kk = 0u; kk < nkb; kk++) {
        m = max(m, dec_s[kk]);
    }
    var pr = 0.0;
    if (li < nkb) {
        pr = exp(s - m);
    }
    dec_p[li] = pr;
    workgroupBarrier();
    // P·V: invocation (g, c) = (li / DV, li % DV) sums keys g, g + RG, … into vec4 column c.
    let rg = DEC_NT / DV;
    let c = li % DV;
    let g = li / DV;
    var o = vec4<f32>(0.0);
    if (g < rg) {
        for (var kk = g; kk < nkb; kk += rg) {
            o = fma(vec4<f32>(dec_p[kk]), v[p.off_v / 4u + ((j0 + kk) * p.Hkv + kvh) * DV + c], o);
        }
    }
    dec_acc[li] = o;
    workgroupBarrier();
    let row = p.off_g0 / 4u + (h * nb + blk) * (DV + 1u);
    if (li < DV) {
        var sum = vec4<f32>(0.0);
        for (var gg = 0u; gg < rg; gg++) {
            sum += dec_acc[gg * DV + li];
        }
        dec_part[row + li] = sum;
    }
    if (li == 0u) {
        var l = 0.0;
        for (var kk = 0u; kk < nkb; kk++) {
            l += dec_p[kk];
        }
        dec_part[row + DV] = vec4<f32>(m, l, 0.0, 0.0);
    }
}

@compute @workgroup_size(DEC_MAX_DV, 1, 1)
fn attention_decode_combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let h = wid.x;
    if (li >= DV) {
        return;
    }
    let nb = (p.T + DEC_BK - 1u) / DEC_BK;
    let base = p.off_g0 / 4u + h * nb * (DV + 1u);
    var mm = NEG;
    for (var b = 0u; b < nb; b++) {
        mm = max(mm, dec_part_in[base + b * (DV + 1u) + DV].x);
    }
    var l = 0.0;
    var o = vec4<f32>(0.0);
    for (var b = 0u; b < nb; b++) {
        let ml = dec_part_in[base + b * (DV + 1u) + DV];
        let w = exp(ml.x - mm);
        l = fma(w, ml.y, l);
        o = fma(vec4<f32>(w), dec_part_in[base + b * (DV + 1u) + li], o);
    }
    dec_out[p.off_o / 4u + h * DV + li] = o / l;
}
