// embedding.wgsl — row gather and its deterministic gradient, for wte and the value embeddings.
//
//   embedding_forward   out[n, :] = table[idx[n], :]                  (N rows of W)
//   embedding_backward  dtable[v, :] += Σ_{n : idx[n] = v} dout[n, :]  positions in increasing n
//
// The backward uses no atomics. The host, which uploads the batch, also uploads its buckets
// (kernels::embedding::EmbeddingBuckets): the positions sorted by (token, position), each unique
// token's start in that order, and the unique tokens. One workgroup per (unique token, block of WG
// columns) sums that token's rows in position order and adds the sum to its table row, so every
// table element is written by exactly one invocation in a fixed order: bit-identical every run.
//
// Bindings (windows; off_* locates element 0 of each operand in its window):
//   forward:  @binding(0) out    : (N × W) read_write      @binding(1) table : (rows × W) read
//             @binding(2) idx    : (N,) i32 read
//   backward: @binding(0) dtable : (rows × W) read_write   @binding(1) dout  : (N × W) read
//             @binding(2) buckets: i32 read, [order (N) | starts (N + 1, padded with N) | tokens (N)]
// The table may be bound in chunks of rows [tok_lo, tok_hi): the forward then writes only the rows
// whose token falls in the chunk (and, in the first chunk, NaN rows for tokens outside [0, vocab),
// a caller bug that must not pass silently); the backward gets only the unique tokens inside it.
//
// Launch: forward, a 1-D grid-stride loop over the N × W outputs (coalesced along W); backward,
// grid (N bucket slots, ceil(W / WG)), one column per invocation, so a row's loads are coalesced
// and a frequent token's long sum is spread over W invocations. The grid does not depend on the
// batch (a recorded step replays on every batch): a slot past the batch's unique tokens, or whose
// token lies outside the bound table chunk, returns at once.

struct EmbeddingParams {
    n: u32,
    w: u32,
    tok_lo: u32,
    tok_hi: u32,
    vocab: u32,
    first_chunk: u32,
    u_lo: u32,
    off_out: u32,
    off_table: u32,
    off_idx: u32,
    _pad0: u32,
    _pad1: u32,
}

var<immediate> p: EmbeddingParams;

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> table: array<f32>;
@group(0) @binding(2) var<storage, read> idx: array<i32>;

@group(0) @binding(0) var<storage, read_write> dtable: array<f32>;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read> buckets: array<i32>;

@compute @workgroup_size(WG)
fn embedding_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = p.n * p.w;
    let nan = bitcast<f32>(0x7fc00000u | (p.n & 0u));
    for (var i = gid.x; i < total; i += nwg.x * WG) {
        let row = i / p.w;
        let col = i - row * p.w;
        let tok = idx[p.off_idx + row];
        if (tok >= i32(p.tok_lo) && tok < i32(p.tok_hi)) {
            out[p.off_out + i] = table[p.off_table + (u32(tok) - p.tok_lo) * p.w + col];
        } else if (p.first_chunk != 0u && (tok < 0 || tok >= i32(p.vocab))) {
            out[p.off_out + i] = nan;
        }
    }
}

// off_out locates dtable, off_table dout, off_idx the buckets; [tok_lo, tok_hi) is the table chunk
// and u_lo the first unique token of this dispatch.
@compute @workgroup_size(WG)
fn embedding_backward(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let col = wid.y * WG + li;
    if (col >= p.w) {
        return;
    }
    let u = p.u_lo + wid.x;
    let order = p.off_idx;
    let starts = p.off_idx + p.n;
    let tokens = p.off_idx + 2u * p.n + 1u;
    let tok = u32(buckets[tokens + u]);
    if (tok < p.tok_lo || tok >= p.tok_hi) {
        return;
    }
    let start = u32(buckets[starts + u]);
    let end = min(u32(buckets[starts + u + 1u]), p.n);
    // Past the batch's U unique tokens the starts are padded with N: an empty range, which no
    // real token has. Returning keeps the padding's token 0 from racing the real token 0.
    if (start >= end) {
        return;
    }
    // Positions come from EmbeddingBuckets and are < N; the min() only keeps a corrupted bucket
    // buffer from reading outside dout.
    let last = p.n - 1u;
    var acc = 0.0;
    var j = start;
    // Four independent loads in flight, added in position order.
    for (; j + 4u <= end; j += 4u) {
        let a0 = dout[p.off_table + min(u32(buckets[order + j]), last) * p.w + col];
        let a1 = dout[p.off_table + min(u32(buckets[order + j + 1u]), last) * p.w + col];
        let a2 = dout[p.off_table + min(u32(buckets[order + j + 2u]), last) * p.w + col];
        let a3 = dout[p.off_table + min(u32(buckets[order + j + 3u]), last) * p.w + col];
        acc = acc + a0;
        acc = acc + a1;
        acc = acc + a2;
        acc = acc + a3;
    }
    for (; j < end; j += 1u) {
        acc = acc + dout[p.off_table + min(u32(buckets[order + j]), last) * p.w + col];
    }
    let o = p.off_out + (tok - p.tok_lo) * p.w + col;
    dtable[o] = dtable[o] + acc;
}
