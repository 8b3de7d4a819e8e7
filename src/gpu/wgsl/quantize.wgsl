// Activations quantized as the CPU quantizes them (kernels/acts.rs), one invocation per block.

// Q8 (GGML Q8_0/Q8_1 reference rounding): 32 values → 8 words of quants, the f16-rounded scale
// `d` and the f16-rounded `d·Σq`. p0 n, p1 blocks, p2 src (A), p3 quants, p4 d, p5 s (Q).
@compute @workgroup_size(64)
fn q8(@builtin(global_invocation_id) gid: vec3<u32>) {
    let g = gid.x;
    if (g >= p(1u)) {
        return;
    }
    let blk = q8_block(p(2u) + g * 32u);
    for (var w = 0u; w < 8u; w++) {
        Q[p(3u) + g * 8u + w] = blk.qs[w];
    }
    Q[p(4u) + g] = bitcast<u32>(blk.d);
    Q[p(5u) + g] = bitcast<u32>(round_f16(keep(f32(blk.sum) * blk.d_raw)));
}

// Q8_K (GGML reference): 256 values → 64 words of quants, `d`, and 16 sums of 16 quants.
// p0 n, p1 blocks, p2 src (A), p3 quants, p4 d, p5 sums (Q, one i32 per word).
@compute @workgroup_size(64)
fn q8k(@builtin(global_invocation_id) gid: vec3<u32>) {
    let g = gid.x;
    if (g >= p(1u)) {
        return;
    }
    let src = p(2u) + g * 256u;
    var amax = 0.0;
    var mx = 0.0;
    for (var i = 0u; i < 256u; i++) {
        let v = A[src + i];
        if (abs(v) > amax) {
            amax = abs(v);
            mx = v;
        }
    }
    if (amax == 0.0) {
        for (var w = 0u; w < 64u; w++) {
            Q[p(3u) + g * 64u + w] = 0u;
        }
        for (var s = 0u; s < 16u; s++) {
            Q[p(5u) + g * 16u + s] = 0u;
        }
        Q[p(4u) + g] = 0u;
        return;
    }
    let iscale = div_cpu(-127.0, mx);
    for (var s = 0u; s < 16u; s++) {
        var bsum = 0i;
        for (var w = 0u; w < 4u; w++) {
            var word = 0u;
            for (var j = 0u; j < 4u; j++) {
                let q = i32(min(round(keep(iscale * A[src + 16u * s + 4u * w + j])), 127.0));
                bsum += q;
                word |= (bitcast<u32>(q) & 0xffu) << (8u * j);
            }
            Q[p(3u) + g * 64u + 4u * s + w] = word;
        }
        Q[p(5u) + g * 16u + s] = bitcast<u32>(bsum);
    }
    Q[p(4u) + g] = bitcast<u32>(div_cpu(1.0, iscale));
}
