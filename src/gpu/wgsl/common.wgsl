// Shared by every edgespec compute shader: the bindings every pipeline has (one layout for all)
// and the arithmetic helpers that must match the CPU's bit for bit.
//
// Group 0: one parameter slot per dispatch (a uniform with a dynamic offset).
// Group 1: read-only weights (a matrix chunk, or the model's f32 vectors), as u32 words.
// Group 2: the workspace: `A` f32 activations, `Q` quantized activations and small tables,
//          `KC`/`VC` the KV cache (f16 pairs in u32 words).

struct Params { v: array<vec4<u32>, 4> }

@group(0) @binding(0) var<uniform> P: Params;
@group(1) @binding(0) var<storage, read> W: array<u32>;
@group(2) @binding(0) var<storage, read_write> A: array<f32>;
@group(2) @binding(1) var<storage, read_write> Q: array<u32>;
@group(2) @binding(2) var<storage, read_write> KC: array<u32>;
@group(2) @binding(3) var<storage, read_write> VC: array<u32>;

fn p(i: u32) -> u32 {
    return P.v[i / 4u][i % 4u];
}

fn pf(i: u32) -> f32 {
    return bitcast<f32>(p(i));
}

// The dot product of four signed bytes packed in each word.
fn dot4(a: u32, b: u32) -> i32 {
    let x = bitcast<i32>(a);
    let y = bitcast<i32>(b);
    return extractBits(x, 0u, 8u) * extractBits(y, 0u, 8u)
        + extractBits(x, 8u, 8u) * extractBits(y, 8u, 8u)
        + extractBits(x, 16u, 8u) * extractBits(y, 16u, 8u)
        + extractBits(x, 24u, 8u) * extractBits(y, 24u, 8u);
}

// f16 bits (low half of `w` when `hi` is false) to f32: exact.
fn f16_lo(w: u32) -> f32 {
    return unpack2x16float(w).x;
}

fn f16_hi(w: u32) -> f32 {
    return unpack2x16float(w).y;
}

// f32 to f16 bits, rounding to nearest even (what the CPU's conversion does).
fn f16_bits(x: f32) -> u32 {
    let u = bitcast<u32>(x);
    let sign = (u >> 16u) & 0x8000u;
    let a = u & 0x7fffffffu;
    if (a > 0x7f800000u) {
        return sign | 0x7e00u;
    }
    if (a >= 0x477ff000u) {
        return sign | 0x7c00u;
    }
    if (a >= 0x38800000u) {
        let m = a - 0x38000000u;
        return sign | ((m + 0xfffu + ((m >> 13u) & 1u)) >> 13u);
    }
    // Subnormal or zero: a multiple of 2^-24, scaled exactly and rounded half to even.
    return sign | u32(round(bitcast<f32>(a) * 16777216.0));
}

fn round_f16(x: f32) -> f32 {
    return f16_lo(f16_bits(x));
}

// `x` as it is, through an integer operation on a run-time zero (parameter word 15): no compiler
// can fuse, reorder or fold float arithmetic across it. Shader compilers may contract `a·b + c`
// into one rounding and reassociate sums (llvmpipe does both), where the CPU rounds every
// operation in program order; every result whose rounding the CPU fixes passes through here.
fn keep(x: f32) -> f32 {
    return bitcast<f32>(bitcast<u32>(x) ^ p(15u));
}

// e^x as the CPU computes it (kernels/ops.rs `exp`): the same constants and operations, each
// product rounded before its add.
fn exp_cpu(x0: f32) -> f32 {
    let x = min(max(x0, -87.33654022216797), 88.37625885009766);
    // The CPU adds and subtracts 1.5·2²³ to round half to even; round() (also half to even) says
    // it without an add a compiler could fold.
    let n = round(keep(x * 1.4426950216293335));
    let r = keep(x - keep(n * 0.693359375)) - keep(n * -0.00021219444170128554);
    var q = 0.00019875691214110702;
    q = keep(keep(q * r) + 0.0013982000527903438);
    q = keep(keep(q * r) + 0.008333452045917511);
    q = keep(keep(q * r) + 0.04166579619050026);
    q = keep(keep(q * r) + 0.1666666567325592);
    q = keep(keep(q * r) + 0.5);
    let y = keep(keep(keep(q * keep(r * r)) + r) + 1.0);
    return y * bitcast<f32>(u32(i32(n) + 127) << 23u);
}

// a·b + c rounded once, as the CPU's `mul_add`: the device's `fma` where it is fused (`FUSED`,
// probed when a hardware device opens and prepended by the host), else emulated: the product's
// exact error from Dekker's split, then a two-sum (correctly rounded but for rare double
// roundings). Software rasterizers are never trusted: llvmpipe fuses or splits `fma` depending on
// the code around it.
fn fma_cpu(a0: f32, b0: f32, c: f32) -> f32 {
    let a = keep(a0);
    let b = keep(b0);
    if (FUSED) {
        return fma(a, b, c);
    }
    let p = keep(a * b);
    let ta = keep(a * 4097.0);
    let ah = keep(ta - keep(ta - a));
    let al = keep(a - ah);
    let tb = keep(b * 4097.0);
    let bh = keep(tb - keep(tb - b));
    let bl = keep(b - bh);
    let e = keep(keep(keep(keep(ah * bh) - p) + keep(ah * bl)) + keep(al * bh)) + keep(al * bl);
    let s = two_sum(p, c);
    return s.x + keep(s.y + e);
}

// The CPU's eight-lane fold: ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)).
fn fold8(l: array<f32, 8>) -> f32 {
    let a = keep(keep(l[0] + l[4]) + keep(l[2] + l[6]));
    let b = keep(keep(l[1] + l[5]) + keep(l[3] + l[7]));
    return keep(a + b);
}

// Float-float sums (hi + lo, about 48 bits): the GPU's stand-in for the CPU's f64 sums in RMSNorm
// and softmax, so that the f32 results rounded from them are the CPU's.
fn two_sum(a: f32, b: f32) -> vec2<f32> {
    let s = keep(a + b);
    let ap = keep(s - b);
    let bp = keep(s - ap);
    return vec2<f32>(s, keep(keep(a - ap) + keep(b - bp)));
}

fn ff_add(x: vec2<f32>, y: vec2<f32>) -> vec2<f32> {
    let s = two_sum(x.x, y.x);
    let t = two_sum(x.y, y.y);
    let u = two_sum(s.x, keep(s.y + t.x));
    return two_sum(u.x, keep(u.y + t.y));
}

fn ff_add1(x: vec2<f32>, b: f32) -> vec2<f32> {
    let s = two_sum(x.x, b);
    return two_sum(s.x, keep(s.y + x.y));
}

// (hi + lo) / n rounded to f32, refined past the shader division's error.
fn ff_div(x: vec2<f32>, n: f32) -> f32 {
    let q = keep(x.x / n);
    let r = keep(fma_cpu(-q, n, x.x) + x.y);
    return keep(q + keep(r / n));
}

// 1 / (hi + lo) rounded to f32, refined.
fn ff_recip(x: vec2<f32>) -> f32 {
    let r = keep(1.0 / x.x);
    let e = keep(fma_cpu(-x.x, r, 1.0) - keep(x.y * r));
    return fma_cpu(r, e, r);
}

// 1 / sqrt(y) as the CPU rounds it (a correctly rounded sqrt, then a correctly rounded
// division), refining the shader's sqrt and division.
fn rsqrt_cpu(y: f32) -> f32 {
    var s = keep(sqrt(y));
    s = fma_cpu(fma_cpu(-s, s, y), keep(0.5 / s), s);
    let r = keep(1.0 / s);
    return fma_cpu(r, fma_cpu(-s, r, 1.0), r);
}

// a / b as the CPU rounds it (correctly), refining the shader's division.
fn div_cpu(a: f32, b: f32) -> f32 {
    let q = keep(a / b);
    return keep(q + keep(fma_cpu(-q, b, a) / b));
}

// One block of 32 activations at A[src], quantized by GGML's Q8 reference rule (the CPU's
// `quantize_q8`): `d = amax / 127`, `q = round(x · (1/d))` half away from zero.
struct Q8Block {
    qs: array<u32, 8>,
    // The scale rounded to f16 (what the dot products use), and Σq.
    d: f32,
    sum: i32,
    // The unrounded scale (Q8_1's sum `d·Σq` is rounded from it).
    d_raw: f32,
}

fn q8_block(src: u32) -> Q8Block {
    var b: Q8Block;
    var amax = 0.0;
    for (var i = 0u; i < 32u; i++) {
        amax = max(amax, abs(A[src + i]));
    }
    let d = div_cpu(amax, 127.0);
    var id = 0.0;
    if (d != 0.0) {
        id = div_cpu(1.0, d);
    }
    var sum = 0i;
    for (var w = 0u; w < 8u; w++) {
        var word = 0u;
        for (var j = 0u; j < 4u; j++) {
            let v = keep(A[src + 4u * w + j] * id);
            // Round half away from zero, exactly.
            var t = trunc(v);
            if (abs(v - t) >= 0.5) {
                t = t + sign(v);
            }
            let q = i32(t);
            sum += q;
            word |= (bitcast<u32>(q) & 0xffu) << (8u * j);
        }
        b.qs[w] = word;
    }
    b.d = round_f16(d);
    b.sum = sum;
    b.d_raw = d;
    return b;
}
