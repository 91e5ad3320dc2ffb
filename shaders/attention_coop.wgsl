// attention_coop.wgsl — flash attention on cooperative matrices (tensor cores): the contract,
// layouts, bindings, parameters and row flattening of attention.wgsl (read its header first),
// with every product on the matrix units: f16 inputs, f32 accumulation, softmax and every
// statistic in f32 (reference: src/reference/attention.rs, fed the same f16-rounded q, k, v and
// dout).
//
// What differs from attention.wgsl is where the numbers live. Q, K, V and dout are staged in
// workgroup memory as f16 (rounded to nearest from the f32 tensors, as matmul_coop does). Every
// product writes f32 tiles to workgroup memory, where the SIMT code reads them: WGSL's coop
// matrices are opaque, so the online softmax's per-row rescale cannot touch an accumulator in
// registers, and the running accumulators (O, dQ, dK, dV) live in workgroup memory as f32,
// loaded into a coop matrix, multiplied into and stored back once per block.
//
//   attention_coop_forward        per key block: S = Q·Kᵀ (coop) → row owners run the online
//                                 softmax in f32 and write P as f16 → every invocation rescales
//                                 O by α → O += P·V (coop). out = O / l, lse = m + ln l.
//   attention_coop_backward_dq    Δ = ⟨dout, out⟩ per row (from the f16-staged dout, so that it is
//                                 the reference's Δ on the rounded dout), then per key block:
//                                 S = Q·Kᵀ and dP = dout·Vᵀ (coop) → dS = P ⊙ (dP − Δ) in f32,
//                                 stored as f16 → dQ += dS·K (coop). dq = scale·dQ.
//   attention_coop_backward_dkdv  K and V resident; per block of query rows: Sᵀ = K·Qᵀ and
//                                 dPᵀ = V·doutᵀ (coop) → Pᵀ and dSᵀ in f32, stored as f16 →
//                                 dV += Pᵀ·dout, dK += dSᵀ·Q (coop). dk = scale·dK, dv = dV.
// No atomics: results are bit-identical run to run.
//
// Numerics (validate::attention_coop_tolerance derives the bounds): the products of f16 inputs
// are exact in f32 and accumulate in f32; the kernel's own rounding is P and dS to f16 (relative
// 2^-11 each) before the second product of each pass. Masking is attention.wgsl's: a masked
// score is the finite NEG and its probability exactly 0.
//
// Specialisation. The host rewrites the declarations under "specialisation" to the tile size the
// adapter reports and to the storage of v and of out (ElemV, ElemO: f32, or f16 for the
// activations an f16 run keeps in f16; kernels::attention_coop::specialization); as written the
// file is the 8×8, all-f32 one, so naga validates it on its own. f16 storage changes no number
// v is read into a product that rounds it to f16 anyway; out is rounded once more where it is
// stored, and the dq pass's Δ = ⟨dout, out⟩ reads that rounded out (so does the reference).
//
// Launch geometry. NS subgroups of SG invocations (SG read from the adapter, never assumed), WG =
// NS·SG. A product's CT×CT output tiles are dealt round-robin: tile i·NS + subgroup, i <
// tiles / NS (the host makes every tile count a multiple of NS, so no subgroup idles and none
// writes twice). Grids are attention.wgsl's: (ceil(T·G / BQ), Hkv, B) for the forward and dq
// passes, tiles last-first; (ceil(T / BK), Hkv, B) for dk/dv.
//
// Workgroup memory (pitches keep rows 16-byte aligned, as coop loads want, and offset in banks):
//   qs   f16  BQ rows of DTP: Q at 0, dout at BQ·DTP (the backward passes)
//   kvs  f16  BK rows of DTP: K at 0, V at BK·DTP
//   sf   f32  score-like tiles, S at 0 and dP at S_LEN: [BQ][BK] (forward, dq), [BK][BQ] (dk/dv)
//   ph   f16  P or dS as f16, pitch PP: [BQ][BK+8] (forward: P; dq: dS), [BK][BQ+8] (dk/dv: Pᵀ
//             at 0, dSᵀ at PH_LEN)
//   acc  f32  accumulators, [rows][DT]: O or dQ (BQ rows), dK at 0 and dV at BK·DT (dk/dv)
// DT is D rounded up to a multiple of CT; the extra columns are staged as zeros and never written
// out. kernels::attention::CoopTiles::workgroup_bytes mirrors these sizes.

enable f16;
enable wgpu_cooperative_matrix;

// ---- specialisation (rewritten by the host; keep one declaration per line) ------------------
const CT: u32 = 8u;
alias TileA = coop_mat8x8<f16, A>;
alias TileB = coop_mat8x8<f16, B>;
alias Acc = coop_mat8x8<f32, C>;
alias ElemV = f32;
alias ElemO = f32;
// ---------------------------------------------------------------------------------------------

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

override D: u32 = 64u; // head size, a multiple of 4, at most 128
override BQ: u32 = 16u; // query rows per tile, a multiple of CT
override BK: u32 = 16u; // keys per tile, a multiple of CT
override NS: u32 = 2u; // subgroups per workgroup
override SG: u32 = 8u; // invocations per subgroup, as the adapter reports
// Tiles kept by the entry point: forward 1 (Q), 1 (S), 1 (P), 1 (O); dq 2 (Q, dout), 2 (S, dP),
// 1 (dS), 1 (dQ); dk/dv 2, 2, 2 (Pᵀ, dSᵀ), 2 (dK, dV). K and V always have a tile each.
override A_TILES: u32 = 1u;
override S_TILES: u32 = 1u;
override P_TILES: u32 = 1u;
override ACC_TILES: u32 = 1u;
// Rows of the accumulators and of the f16 probability tile (BQ, or BK in the dk/dv pass), and
// that tile's pitch (its row length, BK or BQ, plus 8).
override ROWS: u32 = 16u;
override PP: u32 = 24u;
// See attention.wgsl: on CPU drivers the long loops take their trip count at run time.
override RUNTIME_TRIPS: bool = false;

override WG: u32 = NS * SG;
override DV: u32 = D / 4u;
override DT: u32 = (D + CT - 1u) / CT * CT;
override DTP: u32 = DT + 8u;
override S_LEN: u32 = BQ * BK;
override PH_LEN: u32 = ROWS * PP;

fn trips(n: u32) -> u32 {
    if (RUNTIME_TRIPS) {
        return n * p.one;
    }
    return n;
}

const NEG: f32 = -3.0e38;

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> v: array<vec4<ElemV>>;
// forward
@group(0) @binding(3) var<storage, read_write> o: array<vec4<ElemO>>;
@group(0) @binding(4) var<storage, read_write> lse_out: array<f32>;
// backward, both passes
@group(0) @binding(3) var<storage, read> dout: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> lse_in: array<f32>;
// dq pass
@group(0) @binding(5) var<storage, read_write> delta_out: array<f32>;
@group(0) @binding(6) var<storage, read> o_in: array<vec4<ElemO>>;
@group(0) @binding(7) var<storage, read_write> dq: array<vec4<f32>>;
// dkdv pass
@group(0) @binding(5) var<storage, read> delta_in: array<f32>;
@group(0) @binding(6) var<storage, read_write> dk: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> dv: array<vec4<f32>>;

var<workgroup> qs: array<f16, A_TILES * BQ * DTP>;
var<workgroup> kvs: array<f16, 2u * BK * DTP>;
var<workgroup> sf: array<f32, S_TILES * S_LEN>;
var<workgroup> ph: array<f16, P_TILES * PH_LEN>;
var<workgroup> acc: array<f32, ACC_TILES * ROWS * DT>;
var<workgroup> row_s: array<f32, 3u * BQ>;

// Whether flattened query row `row` (of R) sees key j.
fn visible(row: u32, R: u32, G: u32, j: u32) -> bool {
    let t = row / G;
    return row < R && j <= t && t <= j + p.window;
}

// Index (in D-long rows) of the q / out / dout row of flattened row `row` of (b, kvh), and of its
// lse / Δ entry: (b·T + t)·H + kvh·G + g.
fn q_row(b: u32, kvh: u32, G: u32, row: u32) -> u32 {
    return (b * p.T + row / G) * p.H + kvh * G + row % G;
}

// Index (in D-long rows) of key / value j of (b, kvh).
fn kv_row(b: u32, kvh: u32, j: u32) -> u32 {
    return (b * p.T + j) * p.Hkv + kvh;
}

fn put4(base: u32, x: vec4<f32>, to_kv: bool) {
    let h = vec4<f16>(x);
    if (to_kv) {
        kvs[base] = h.x;
        kvs[base + 1u] = h.y;
        kvs[base + 2u] = h.z;
        kvs[base + 3u] = h.w;
    } else {
        qs[base] = h.x;
        qs[base + 1u] = h.y;
        qs[base + 2u] = h.z;
        qs[base + 3u] = h.w;
    }
}

// Stage BQ query rows from flattened row row0 into qs tile 0 as f16 (rows ≥ row_end and the
// columns D..DT as zeros). The forward must not reference `dout` (it shares a binding slot with
// `o`), hence two functions.
fn stage_q(li: u32, b: u32, kvh: u32, G: u32, row0: u32, row_end: u32) {
    let cols = DT / 4u;
    for (var e = li; e < BQ * cols; e += WG) {
        let r = e / cols;
        let c = e % cols;
        var x = vec4<f32>(0.0);
        if (row0 + r < row_end && c < DV) {
            x = q[p.off_q / 4u + q_row(b, kvh, G, row0 + r) * DV + c];
        }
        put4(r * DTP + 4u * c, x, false);
    }
}

// The same rows of dout into qs tile 1.
fn stage_dout(li: u32, b: u32, kvh: u32, G: u32, row0: u32, row_end: u32) {
    let cols = DT / 4u;
    for (var e = li; e < BQ * cols; e += WG) {
        let r = e / cols;
        let c = e % cols;
        var x = vec4<f32>(0.0);
        if (row0 + r < row_end && c < DV) {
            x = dout[p.off_o / 4u + q_row(b, kvh, G, row0 + r) * DV + c];
        }
        put4(BQ * DTP + r * DTP + 4u * c, x, false);
    }
}

// Stage keys (which = 0, kvs tile 0) or values (which = 1, tile 1) j0 .. j0 + BK of (b, kvh) as
// f16; keys past j_end (exclusive) and the columns D..DT as zeros.
fn stage_kv(which: u32, li: u32, b: u32, kvh: u32, j0: u32, j_end: u32) {
    let cols = DT / 4u;
    for (var e = li; e < BK * cols; e += WG) {
        let kk = e / cols;
        let c = e % cols;
        let j = j0 + kk;
        var x = vec4<f32>(0.0);
        if (j < j_end && c < DV) {
            let n = kv_row(b, kvh, j) * DV + c;
            if (which == 0u) {
                x = k[p.off_k / 4u + n];
            } else {
                x = vec4<f32>(v[p.off_v / 4u + n]);
            }
        }
        put4(which * BK * DTP + kk * DTP + 4u * c, x, true);
    }
}

// ---- products ---------------------------------------------------------------------------------
// Each deals its CT×CT output tiles over the subgroups (tile i·NS + sg). Offsets are computed in
// the helpers' arguments and locals ahead of the coop ops.

// sf[s0 + r·BK + c] = Σ_d qs[a0 + r·DTP + d] · kvs[b0 + c·DTP + d] for r < BQ, c < BK: the rows of
// a qs tile against the rows of a kvs tile (S = Q·Kᵀ, dP = dout·Vᵀ). B = Kᵀ is read column-major
// from K's rows.
fn rows_qk(sg: u32, a0: u32, b0: u32, s0: u32) {
    let tn = BK / CT;
    let per = (BQ / CT) * tn / NS;
    for (var i = 0u; i < per; i++) {
        let t = i * NS + sg;
        let ra = a0 + (t / tn) * CT * DTP;
        let rb = b0 + (t % tn) * CT * DTP;
        let so = s0 + (t / tn) * CT * BK + (t % tn) * CT;
        var c = Acc();
        for (var d0 = 0u; d0 < trips(DT); d0 += CT) {
            let ta = coopLoadT<TileA>(&qs[ra + d0], DTP);
            let tb = coopLoad<TileB>(&kvs[rb + d0], DTP);
            c = coopMultiplyAdd(ta, tb, c);
        }
        coopStoreT(c, &sf[so], BK);
    }
}

// sf[s0 + r·BQ + c] = Σ_d kvs[a0 + r·DTP + d] · qs[b0 + c·DTP + d] for r < BK, c < BQ: the
// transposed scores of the dk/dv pass (Sᵀ = K·Qᵀ, dPᵀ = V·doutᵀ).
fn rows_kq(sg: u32, a0: u32, b0: u32, s0: u32) {
    let tn = BQ / CT;
    let per = (BK / CT) * tn / NS;
    for (var i = 0u; i < per; i++) {
        let t = i * NS + sg;
        let ra = a0 + (t / tn) * CT * DTP;
        let rb = b0 + (t % tn) * CT * DTP;
        let so = s0 + (t / tn) * CT * BQ + (t % tn) * CT;
        var c = Acc();
        for (var d0 = 0u; d0 < trips(DT); d0 += CT) {
            let ta = coopLoadT<TileA>(&kvs[ra + d0], DTP);
            let tb = coopLoad<TileB>(&qs[rb + d0], DTP);
            c = coopMultiplyAdd(ta, tb, c);
        }
        coopStoreT(c, &sf[so], BQ);
    }
}

// acc[c0 + r·DT + n] += Σ_k ph[p0 + r·PP + k] · kvs[b0 + k·DTP + n] for r < BQ, k < BK, n < DT:
// O += P·V in the forward, dQ += dS·K in the dq pass.
fn acc_pk(sg: u32, p0: u32, b0: u32, c0: u32) {
    let tn = DT / CT;
    let per = (BQ / CT) * tn / NS;
    for (var i = 0u; i < per; i++) {
        let t = i * NS + sg;
        let rp = p0 + (t / tn) * CT * PP;
        let cb = b0 + (t % tn) * CT;
        let co = c0 + (t / tn) * CT * DT + (t % tn) * CT;
        var c = coopLoadT<Acc>(&acc[co], DT);
        for (var k0 = 0u; k0 < trips(BK); k0 += CT) {
            let ta = coopLoadT<TileA>(&ph[rp + k0], PP);
            let tb = coopLoadT<TileB>(&kvs[cb + k0 * DTP], DTP);
            c = coopMultiplyAdd(ta, tb, c);
        }
        coopStoreT(c, &acc[co], DT);
    }
}

// acc[c0 + r·DT + n] += Σ_k ph[p0 + r·PP + k] · qs[b0 + k·DTP + n] for r < BK, k < BQ, n < DT:
// dV += Pᵀ·dout and dK += dSᵀ·Q in the dk/dv pass.
fn acc_pq(sg: u32, p0: u32, b0: u32, c0: u32) {
    let tn = DT / CT;
    let per = (BK / CT) * tn / NS;
    for (var i = 0u; i < per; i++) {
        let t = i * NS + sg;
        let rp = p0 + (t / tn) * CT * PP;
        let cb = b0 + (t % tn) * CT;
        let co = c0 + (t / tn) * CT * DT + (t % tn) * CT;
        var c = coopLoadT<Acc>(&acc[co], DT);
        for (var k0 = 0u; k0 < trips(BQ); k0 += CT) {
            let ta = coopLoadT<TileA>(&ph[rp + k0], PP);
            let tb = coopLoadT<TileB>(&qs[cb + k0 * DTP], DTP);
            c = coopMultiplyAdd(ta, tb, c);
        }
        coopStoreT(c, &acc[co], DT);
    }
}

fn zero_acc(li: u32) {
    for (var e = li; e < ACC_TILES * ROWS * DT; e += WG) {
        acc[e] = 0.0;
    }
}

// ---------------------------------------------------------------------------------------------
@compute @workgroup_size(WG, 1, 1)
fn attention_coop_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(subgroup_id) sid: u32,
) {
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
    // The host launches exactly NS subgroups; the clamp only keeps offsets inside the tiles.
    let sg = min(sid, NS - 1u);

    stage_q(li, b, kvh, G, row0, row_end);
    zero_acc(li);
    for (var r = li; r < BQ; r += WG) {
        row_s[r] = NEG; // running max m
        row_s[BQ + r] = 0.0; // running sum l
    }
    for (var j0 = j_lo; j0 <= t_last; j0 += BK) {
        // The previous block's P·V is done with kvs and ph.
        workgroupBarrier();
        stage_kv(0u, li, b, kvh, j0, t_last + 1u);
        stage_kv(1u, li, b, kvh, j0, t_last + 1u);
        workgroupBarrier();
        rows_qk(sg, 0u, 0u, 0u);
        workgroupBarrier();
        for (var r = li; r < BQ; r += WG) {
            let m_old = row_s[r];
            var m_new = m_old;
            for (var kk = 0u; kk < trips(BK); kk++) {
                if (visible(row0 + r, R, G, j0 + kk)) {
                    m_new = max(m_new, p.scale * sf[r * BK + kk]);
                }
            }
            var sum = 0.0;
            for (var kk = 0u; kk < trips(BK); kk++) {
                var pr = 0.0;
                if (visible(row0 + r, R, G, j0 + kk)) {
                    pr = exp(p.scale * sf[r * BK + kk] - m_new);
                }
                ph[r * PP + kk] = f16(pr);
                sum += pr;
            }
            let alpha = exp(m_old - m_new);
            row_s[r] = m_new;
            row_s[BQ + r] = row_s[BQ + r] * alpha + sum;
            row_s[2u * BQ + r] = alpha;
        }
        workgroupBarrier();
        for (var e = li; e < BQ * DT; e += WG) {
            acc[e] *= row_s[2u * BQ + e / DT];
        }
        workgroupBarrier();
        acc_pk(sg, 0u, BK * DTP, 0u);
    }
    workgroupBarrier();
    for (var e = li; e < BQ * DV; e += WG) {
        let r = e / DV;
        let c = e % DV;
        if (row0 + r < row_end) {
            let a = r * DT + 4u * c;
            let x = vec4<f32>(acc[a], acc[a + 1u], acc[a + 2u], acc[a + 3u]);
            o[p.off_o / 4u + q_row(b, kvh, G, row0 + r) * DV + c] = vec4<ElemO>(x / row_s[BQ + r]);
        }
    }
    for (var r = li; r < BQ; r += WG) {
        if (row0 + r < row_end) {
            lse_out[p.off_lse + q_row(b, kvh, G, row0 + r)] = row_s[r] + log(row_s[BQ + r]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
@compute @workgroup_size(WG, 1, 1)
fn attention_coop_backward_dq(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(subgroup_id) sid: u32,
) {
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
    let sg = min(sid, NS - 1u);

    stage_q(li, b, kvh, G, row0, row_end);
    stage_dout(li, b, kvh, G, row0, row_end);
    zero_acc(li);
    workgroupBarrier();
    // Row statistics: lse, and Δ = ⟨dout, out⟩ on the staged (f16-rounded) dout, which the dk/dv
    // pass reads back from delta_out.
    for (var r = li; r < BQ; r += WG) {
        var l = 0.0;
        var dlt = 0.0;
        if (row0 + r < row_end) {
            let n = q_row(b, kvh, G, row0 + r);
            l = lse_in[p.off_lse + n];
            var d4 = vec4<f32>(0.0);
            for (var c = 0u; c < trips(DV); c++) {
                let a = BQ * DTP + r * DTP + 4u * c;
                let g = vec4<f32>(f32(qs[a]), f32(qs[a + 1u]), f32(qs[a + 2u]), f32(qs[a + 3u]));
                d4 = fma(g, vec4<f32>(o_in[p.off_x / 4u + n * DV + c]), d4);
            }
            dlt = (d4.x + d4.y) + (d4.z + d4.w);
            delta_out[p.off_delta + n] = dlt;
        }
        row_s[r] = l;
        row_s[BQ + r] = dlt;
    }
    for (var j0 = j_lo; j0 <= t_last; j0 += BK) {
        workgroupBarrier();
        stage_kv(0u, li, b, kvh, j0, t_last + 1u);
        stage_kv(1u, li, b, kvh, j0, t_last + 1u);
        workgroupBarrier();
        rows_qk(sg, 0u, 0u, 0u);
        rows_qk(sg, BQ * DTP, BK * DTP, S_LEN);
        workgroupBarrier();
        for (var e = li; e < BQ * BK; e += WG) {
            let r = e / BK;
            let kk = e % BK;
            var ds = 0.0;
            if (visible(row0 + r, R, G, j0 + kk)) {
                let pr = exp(p.scale * sf[e] - row_s[r]);
                ds = pr * (sf[S_LEN + e] - row_s[BQ + r]);
            }
            ph[r * PP + kk] = f16(ds);
        }
        workgroupBarrier();
        acc_pk(sg, 0u, 0u, 0u);
    }
    workgroupBarrier();
    for (var e = li; e < BQ * DV; e += WG) {
        let r = e / DV;
        let c = e % DV;
        if (row0 + r < row_end) {
            let a = r * DT + 4u * c;
            let x = vec4<f32>(acc[a], acc[a + 1u], acc[a + 2u], acc[a + 3u]);
            dq[p.off_g0 / 4u + q_row(b, kvh, G, row0 + r) * DV + c] = p.scale * x;
        }
    }
}

// ---------------------------------------------------------------------------------------------
@compute @workgroup_size(WG, 1, 1)
fn attention_coop_backward_dkdv(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(subgroup_id) sid: u32,
) {
    let G = p.H / p.Hkv;
    let kvh = wid.y;
    let b = wid.z;
    let j0 = wid.x * BK;
    let j_end = min(j0 + BK, p.T);
    // Query positions that see a key of this tile: [j0, j_end − 1 + window], as flattened rows.
    let r_lo = j0 * G;
    let r_hi = min(p.T, j_end + p.window) * G;
    let sg = min(sid, NS - 1u);

    stage_kv(0u, li, b, kvh, j0, j_end);
    stage_kv(1u, li, b, kvh, j0, j_end);
    zero_acc(li);
    for (var r0 = r_lo; r0 < r_hi; r0 += BQ) {
        // Also orders the K/V staging above before its first use.
        workgroupBarrier();
        stage_q(li, b, kvh, G, r0, r_hi);
        stage_dout(li, b, kvh, G, r0, r_hi);
        for (var r = li; r < BQ; r += WG) {
            var l = 0.0;
            var dlt = 0.0;
            if (r0 + r < r_hi) {
                let n = q_row(b, kvh, G, r0 + r);
                l = lse_in[p.off_lse + n];
                dlt = delta_in[p.off_delta + n];
            }
            row_s[r] = l;
            row_s[BQ + r] = dlt;
        }
        workgroupBarrier();
        rows_kq(sg, 0u, 0u, 0u);
        rows_kq(sg, BK * DTP, BQ * DTP, S_LEN);
        workgroupBarrier();
        for (var e = li; e < BK * BQ; e += WG) {
            let kk = e / BQ;
            let r = e % BQ;
            var pr = 0.0;
            var ds = 0.0;
            if (j0 + kk < j_end && visible(r0 + r, r_hi, G, j0 + kk)) {
                pr = exp(p.scale * sf[e] - row_s[r]);
                ds = pr * (sf[S_LEN + e] - row_s[BQ + r]);
            }
            ph[kk * PP + r] = f16(pr);
            ph[PH_LEN + kk * PP + r] = f16(ds);
        }
        workgroupBarrier();
        acc_pq(sg, 0u, BQ * DTP, BK * DT);
        acc_pq(sg, PH_LEN, 0u, 0u);
    }
    workgroupBarrier();
    for (var e = li; e < BK * DV; e += WG) {
        let kk = e / DV;
        let c = e % DV;
        if (j0 + kk < j_end) {
            let n = kv_row(b, kvh, j0 + kk) * DV + c;
            let a = kk * DT + 4u * c;
            let xk = vec4<f32>(acc[a], acc[a + 1u], acc[a + 2u], acc[a + 3u]);
            let a2 = BK * DT + a;
            let xv = vec4<f32>(acc[a2], acc[a2 + 1u], acc[a2 + 2u], acc[a2 + 3u]);
            dk[p.off_g0 / 4u + n] = p.scale * xk;
            dv[p.off_g1 / 4u + n] = xv;
        }
    }
}
