// Attention of one (query row, head) per workgroup over the f16 or (`KV_Q8`) Q8_0 KV cache, with the CPU's
// numerics (model/attention.rs): scores as eight-lane dot products, optional soft cap, softmax
// with the CPU's exponential, then the values summed position by position in visiting order
// (the cached prefix in position order, then the row's ancestors in the pass).
//
// p0 layer's first row, p1 ring rows, p2 start, p3 heads, p4 KV heads, p5 key dim, p6 value dim,
// p7 scale (f32 bits), p8 soft cap (f32 bits, 0 none), p9 window (0 none), p10 queries (A),
// p11 output (A), p12 scores (A), p13 scores per (row, head), p14 tree table (Q: 16 ancestor
// masks then 16 depths).

var<workgroup> red: array<f32, 64>;
var<workgroup> red2: array<vec2<f32>, 64>;
// A Q8_0 cache's query, quantized as its keys are (heads of up to 256).
var<workgroup> qq: array<u32, 64>;
var<workgroup> qd: array<f32, 8>;

struct Visit {
    prefix_lo: u32,
    n_prefix: u32,
    mask: u32,
    total: u32,
}

fn visit_plan(row: u32) -> Visit {
    let start = p(2u);
    let depth = Q[p(14u) + 16u + row];
    let pos = start + depth;
    var lo = 0u;
    if (p(9u) != 0u && pos + 1u > p(9u)) {
        lo = pos + 1u - p(9u);
    }
    let plo = min(lo, start);
    var mask = Q[p(14u) + row];
    // Ancestors the window no longer sees (RoPE position start + depth below lo).
    for (var j = 0u; j < 16u; j++) {
        if ((mask & (1u << j)) != 0u && start + Q[p(14u) + 16u + j] < lo) {
            mask &= ~(1u << j);
        }
    }
    return Visit(plo, start - plo, mask, start - plo + countOneBits(mask));
}

// The ring slot of the k-th visited key.
fn slot_of(v: Visit, k: u32) -> u32 {
    if (k < v.n_prefix) {
        return (v.prefix_lo + k) % p(1u);
    }
    var m = v.mask;
    for (var s = k - v.n_prefix; s > 0u; s--) {
        m &= m - 1u;
    }
    return (p(2u) + firstTrailingBit(m)) % p(1u);
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let nh = p(3u);
    let row = wg.x / nh;
    let head = wg.x % nh;
    let kvh = head / (nh / p(4u));
    let hd = p(5u);
    let hdv = p(6u);
    let v = visit_plan(row);
    let q = p(10u) + (row * nh + head) * hd;
    let s0 = p(12u) + wg.x * p(13u);
    let kbase = p(0u) + kvh * p(1u);
    let scale = pf(7u);
    let cap = pf(8u);

    let nbk = hd / 32u;
    if (KV_Q8) {
        for (var b = li; b < nbk; b += 64u) {
            let blk = q8_block(q + 32u * b);
            for (var w = 0u; w < 8u; w++) {
                qq[8u * b + w] = blk.qs[w];
            }
            qd[b] = blk.d;
        }
    }
    workgroupBarrier();

    var mx = -3.4028235e38;
    for (var k = li; k < v.total; k += 64u) {
        var s: f32;
        if (KV_Q8) {
            // One fused multiply-add per block, in block order (the CPU's `dot_q8_rows`).
            let at = (kbase + slot_of(v, k)) * nbk * 9u;
            var acc = 0.0;
            for (var b = 0u; b < nbk; b++) {
                var isum = 0i;
                for (var w = 0u; w < 8u; w++) {
                    isum += dot4(KC[at + 9u * b + 1u + w], qq[8u * b + w]);
                }
                acc = fma_cpu(f32(isum), keep(f16_lo(KC[at + 9u * b]) * qd[b]), acc);
            }
            s = acc;
        } else {
            let at = (kbase + slot_of(v, k)) * (hd / 2u);
            var l: array<f32, 8>;
            for (var e = 0u; e < 8u; e++) {
                l[e] = 0.0;
            }
            for (var e = 0u; e < hd; e += 2u) {
                let kk = unpack2x16float(KC[at + e / 2u]);
                l[e % 8u] = fma_cpu(kk.x, A[q + e], l[e % 8u]);
                l[(e + 1u) % 8u] = fma_cpu(kk.y, A[q + e + 1u], l[(e + 1u) % 8u]);
            }
            s = fold8(l);
        }
        if (cap != 0.0) {
            s = cap * tanh(keep(keep(s * scale) / cap));
        } else {
            s = keep(s * scale);
        }
        A[s0 + k] = s;
        mx = max(mx, s);
    }
    red[li] = mx;
    workgroupBarrier();
    for (var k = 32u; k > 0u; k >>= 1u) {
        if (li < k) {
            red[li] = max(red[li], red[li + k]);
        }
        workgroupBarrier();
    }
    let m = red[0];
    workgroupBarrier();
    // The sum of the exponentials is float-float (the CPU's is f64), the reciprocal rounded
    // from it as the CPU rounds its own.
    var sum = vec2<f32>(0.0, 0.0);
    for (var k = li; k < v.total; k += 64u) {
        let e = exp_cpu(keep(A[s0 + k] - m));
        A[s0 + k] = e;
        sum = ff_add1(sum, e);
    }
    red2[li] = sum;
    workgroupBarrier();
    for (var k = 32u; k > 0u; k >>= 1u) {
        if (li < k) {
            red2[li] = ff_add(red2[li], red2[li + k]);
        }
        workgroupBarrier();
    }
    let inv = ff_recip(red2[0]);
    storageBarrier();
    workgroupBarrier();
    let out = p(11u) + (row * nh + head) * hdv;
    let vbase = p(0u) + kvh * p(1u);
    for (var d = li; d < hdv; d += 64u) {
        var o = 0.0;
        var m2 = v.mask;
        for (var k = 0u; k < v.total; k++) {
            var slot: u32;
            if (k < v.n_prefix) {
                slot = (v.prefix_lo + k) % p(1u);
            } else {
                slot = (p(2u) + firstTrailingBit(m2)) % p(1u);
                m2 &= m2 - 1u;
            }
            let w = keep(A[s0 + k] * inv);
            if (KV_Q8) {
                // (w · d) · q per element, as the CPU's `axpy_q8_rows`.
                let at = ((vbase + slot) * (hdv / 32u) + d / 32u) * 9u;
                let q8 = extractBits(bitcast<i32>(VC[at + 1u + (d % 32u) / 4u]), 8u * (d % 4u), 8u);
                o = fma_cpu(keep(w * f16_lo(VC[at])), f32(q8), o);
            } else {
                let pair = unpack2x16float(VC[(vbase + slot) * (hdv / 2u) + d / 2u]);
                var x = pair.x;
                if ((d & 1u) == 1u) {
                    x = pair.y;
                }
                o = fma_cpu(x, w, o);
            }
        }
        A[out + d] = o;
    }
}
