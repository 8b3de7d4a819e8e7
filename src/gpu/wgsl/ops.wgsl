// The per-row operations of a forward pass (CPU twins in kernels/ops.rs): RMSNorm, residual
// and bias adds, RoPE with precomputed angles, the gated activations, the logit soft cap, and
// the KV cache write.

var<workgroup> part: array<vec2<f32>, 64>;

// RMSNorm of `rows` rows: one workgroup per row. p0 n, p1 src (A), p2 src stride, p3 dst (A),
// p4 dst stride, p5 weight (W, f32 words), p6 eps (f32 bits). The sum of the f32 squares is
// float-float (the CPU sums them in f64), so the mean rounds to the CPU's f32.
@compute @workgroup_size(64)
fn rmsnorm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let n = p(0u);
    let src = p(1u) + wg.x * p(2u);
    let dst = p(3u) + wg.x * p(4u);
    var s = vec2<f32>(0.0, 0.0);
    for (var i = li; i < n; i += 64u) {
        let v = A[src + i];
        // The CPU rounds each square to f32 before its f64 sum: no fused multiply-add here.
        s = ff_add1(s, keep(v * v));
    }
    part[li] = s;
    workgroupBarrier();
    for (var k = 32u; k > 0u; k >>= 1u) {
        if (li < k) {
            part[li] = ff_add(part[li], part[li + k]);
        }
        workgroupBarrier();
    }
    let mean = ff_div(part[0], f32(n));
    let scale = rsqrt_cpu(mean + pf(6u));
    workgroupBarrier();
    for (var i = li; i < n; i += 64u) {
        A[dst + i] = keep(A[src + i] * scale) * bitcast<f32>(W[p(5u) + i]);
    }
}

// dst[i] += src[i] for i < p0. p1 dst, p2 src (A).
@compute @workgroup_size(64)
fn add(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x < p(0u)) {
        A[p(1u) + gid.x] += A[p(2u) + gid.x];
    }
}

// Row-wise bias: dst[r·w + i] += W[bias + i] for p0 = rows·w values. p1 dst (A), p2 w,
// p3 bias (W).
@compute @workgroup_size(64)
fn bias(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x < p(0u)) {
        A[p(1u) + gid.x] += bitcast<f32>(W[p(3u) + gid.x % p(2u)]);
    }
}

// RoPE in place over p0 = rows·heads·half pairs. p1 x (A), p2 heads per row, p3 head dim,
// p4 half (rotated pairs), p5 style (0 adjacent pairs, 1 halves), p6 cos (A), p7 sin (A), both
// `(rows, half)`.
@compute @workgroup_size(64)
fn rope(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p(0u)) {
        return;
    }
    let half = p(4u);
    let i = gid.x % half;
    let rh = gid.x / half;
    let row = rh / p(2u);
    let head = p(1u) + rh * p(3u);
    var a = head + 2u * i;
    var b = a + 1u;
    if (p(5u) == 1u) {
        a = head + i;
        b = head + i + half;
    }
    let c = A[p(6u) + row * half + i];
    let s = A[p(7u) + row * half + i];
    let x0 = A[a];
    let x1 = A[b];
    // Products rounded before the add, as on the CPU (see `exp_cpu`).
    A[a] = keep(x0 * c) - keep(x1 * s);
    A[b] = keep(x0 * s) + keep(x1 * c);
}

// gate[i] = act(gate[i]) · up[i] for i < p0. p1 gate, p2 up (A), p3 0 SiLU, 1 GELU (tanh).
@compute @workgroup_size(64)
fn act_mul(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p(0u)) {
        return;
    }
    let x = A[p(1u) + gid.x];
    var y: f32;
    if (p(3u) == 0u) {
        y = x / keep(1.0 + exp_cpu(-x));
    } else {
        let z = keep(keep(0.7978846 * x) * keep(1.0 + keep(keep(0.044715 * x) * x)));
        y = x / keep(1.0 + exp_cpu(keep(-2.0 * z)));
    }
    A[p(1u) + gid.x] = keep(y) * A[p(2u) + gid.x];
}

// x = cap · tanh(x / cap) for p0 values at p1 (A); p2 cap (f32 bits).
@compute @workgroup_size(64)
fn softcap(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x < p(0u)) {
        let cap = pf(2u);
        A[p(1u) + gid.x] = cap * tanh(keep(A[p(1u) + gid.x] / cap));
    }
}

// Write keys or values of p0 = rows·heads·(dim/2) pairs into the f16 cache: row r goes to ring
// slot (p4 + r) mod p5 of head h in layer rows starting at p6 (row units). p1 src (A), p2 heads,
// p3 dim, p7 0 keys, 1 values.
@compute @workgroup_size(64)
fn kv_write(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p(0u)) {
        return;
    }
    let pairs = p(3u) / 2u;
    let j = gid.x % pairs;
    let rh = gid.x / pairs;
    let h = rh % p(2u);
    let r = rh / p(2u);
    let src = p(1u) + rh * p(3u) + 2u * j;
    let word = f16_bits(A[src]) | (f16_bits(A[src + 1u]) << 16u);
    let slot = (p(4u) + r) % p(5u);
    let at = (p(6u) + h * p(5u) + slot) * pairs + j;
    if (p(7u) == 0u) {
        KC[at] = word;
    } else {
        VC[at] = word;
    }
}

// Write keys or values into a Q8_0 cache: p0 = rows·heads·(dim/32) blocks, each quantized as the
// CPU's cache quantizes (`q8_block`) and stored as 9 words (the f16 scale, then 32 quants). Row r
// goes to ring slot (p4 + r) mod p5 of head h in layer rows starting at p6. p1 src (A), p2 heads,
// p3 dim, p7 0 keys, 1 values.
@compute @workgroup_size(64)
fn kv_write_q8(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p(0u)) {
        return;
    }
    let nb = p(3u) / 32u;
    let j = gid.x % nb;
    let rh = gid.x / nb;
    let h = rh % p(2u);
    let r = rh / p(2u);
    let blk = q8_block(p(1u) + rh * p(3u) + 32u * j);
    let slot = (p(4u) + r) % p(5u);
    let at = ((p(6u) + h * p(5u) + slot) * nb + j) * 9u;
    let d = f16_bits(blk.d);
    for (var w = 0u; w < 9u; w++) {
        var word = d;
        if (w > 0u) {
            word = blk.qs[w - 1u];
        }
        if (p(7u) == 0u) {
            KC[at + w] = word;
        } else {
            VC[at + w] = word;
        }
    }
}
