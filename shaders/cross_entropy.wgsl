// cross_entropy.wgsl — logit softcap fused with cross-entropy, forward and backward in one kernel,
// the gradient written in place over the logits (llm.c's fused classifier).
//
//   cross_entropy  per row r of a chunk of logits z (rows × Vp), l = cap·tanh(z[0:V]/cap):
//       losses[r] = ln Σ_c exp(l_c) − l[target]           (0 when target < 0, ignore_index)
//       with GRAD: z[r, c] ← grad_scale·(softmax(l)_c − [c = target])·(1 − (l_c/cap)²)   c < V
//                  z[r, c] ← 0                                                          V ≤ c < Vp
//                  the whole row ← 0 when target < 0
//   A target ≥ V is a caller bug: its loss and gradient row are NaN so it cannot go unnoticed.
//
// Bindings (windows; off_* locates element 0 of each operand in its window):
//   @binding(0) losses     : (rows,)        read_write
//   @binding(1) logits     : (rows × Vp,)   read_write (read; overwritten with dz when GRAD)
//   @binding(2) targets    : (rows,) i32    read
//   @binding(3) grad_scale : (1,)           read, GRAD only: 1/(valid targets · grad accumulation)
//               lives in a "step scalars" buffer the trainer rewrites every step, so the recorded
//               dispatch never changes.
// No binding may share a buffer with a read_write one.
//
// Launch: one workgroup per row (grid.x = rows ≤ 65,535 per dispatch; the launcher chunks).
// Softcap makes every l lie in (−cap, cap), so cap itself is a safe shift for the logsumexp:
// exp(l − cap) ∈ (e^(−2cap), 1], no overflow and (for cap ≤ 40, checked by the launcher) no
// underflow to zero, so one pass over the row gives Σ exp(l − cap) without a running maximum.
// Pass 1: each invocation sums its strided columns, a WG-wide tree in workgroup memory combines
// them (terms are positive: no cancellation). Pass 2 (GRAD) recomputes l (cheaper than a write and
// a re-read; the row is still in cache) and overwrites the row. The barriers of the tree separate
// every read of pass 1 from the writes of pass 2.

struct CrossEntropyParams {
    rows: u32,
    v: u32,
    vp: u32,
    off_loss: u32,
    off_z: u32,
    off_tgt: u32,
    off_gs: u32,
    softcap: f32,
}

var<immediate> p: CrossEntropyParams;

override WG: u32 = 256u; // power of two for the tree
override GRAD: bool = true;

@group(0) @binding(0) var<storage, read_write> losses: array<f32>;
@group(0) @binding(1) var<storage, read_write> logits: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<i32>;
@group(0) @binding(3) var<storage, read> grad_scale: array<f32>;

var<workgroup> red: array<f32, WG>;

// l = cap·tanh(z/cap) and its derivative dl/dz = 1 − tanh².
struct Capped {
    l: f32,
    dl: f32,
}

// tanh through 1 − tanh|x| = 2/(e^(2|x|) + 1), which is exact in relative terms where tanh
// saturates (so 1 − tanh² = q(2 − q) keeps its digits for large logits), and a Taylor series for
// |x| < 1/8, where that form would cancel: the first omitted term, 1382/155925·x^11, is below
// 1e-11·|x| there.
fn softcap(z: f32) -> Capped {
    let x = z / p.softcap;
    let a = abs(x);
    if (a < 0.125) {
        let x2 = x * x;
        let t = x * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0 + x2 * (62.0 / 2835.0)))));
        return Capped(p.softcap * t, 1.0 - t * t);
    }
    // exp overflows to +inf for |x| > 44: q = 0, tanh = ±1, no NaN.
    let q = 2.0 / (exp(2.0 * a) + 1.0);
    let t = sign(x) * (1.0 - q);
    return Capped(p.softcap * t, q * (2.0 - q));
}

fn workgroup_sum(li: u32) {
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        workgroupBarrier();
        if (li < s) {
            red[li] += red[li + s];
        }
    }
    workgroupBarrier();
}

@compute @workgroup_size(WG)
fn cross_entropy(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let r = wid.x;
    let row_ok = r < p.rows;
    var tgt = -1;
    if (row_ok) {
        tgt = targets[p.off_tgt + r];
    }
    let base = p.off_z + r * p.vp;
    let live = row_ok && tgt >= 0 && u32(tgt) < p.v;
    let bad = row_ok && tgt >= 0 && u32(tgt) >= p.v;
    // A NaN the compiler cannot fold (WGSL forbids a NaN constant).
    let nan = bitcast<f32>(0x7fc00000u | (p.rows & 0u));

    // Pass 1: Σ exp(l − cap) over the real columns, and l[target] (read before any write).
    let hi = select(0u, p.v, live);
    var s = 0.0;
    for (var c = li; c < hi; c += WG) {
        s += exp(softcap(logits[base + c]).l - p.softcap);
    }
    var l_tgt = 0.0;
    if (li == 0u && live) {
        l_tgt = softcap(logits[base + u32(tgt)]).l;
    }
    red[li] = s;
    workgroup_sum(li);
    let lse = p.softcap + log(red[0]);

    if (li == 0u && row_ok) {
        var loss = 0.0;
        if (live) {
            loss = lse - l_tgt;
        } else if (bad) {
            loss = nan;
        }
        losses[p.off_loss + r] = loss;
    }

    if (GRAD && row_ok) {
        let gs = grad_scale[p.off_gs];
        for (var c = li; c < p.vp; c += WG) {
            var g = 0.0;
            if (live && c < p.v) {
                let k = softcap(logits[base + c]);
                let d = exp(k.l - lse) - select(0.0, 1.0, c == u32(tgt));
                g = gs * d * k.dl;
            } else if (bad) {
                g = nan;
            }
            logits[base + c] = g;
        }
    }
}
