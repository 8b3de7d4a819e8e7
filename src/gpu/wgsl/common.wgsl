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

// e^x as the CPU computes it (kernels/ops.rs `exp`): the same constants and operations.
fn exp_cpu(x0: f32) -> f32 {
    let x = min(max(x0, -87.33654022216797), 88.37625885009766);
    // The CPU adds and subtracts 1.5·2²³ to round half to even; a shader compiler may fold
    // that pair away, so round() (also half to even) says it directly.
    let n = round(x * 1.4426950216293335);
    let r = (x - n * 0.693359375) - n * -0.00021219444170128554;
    var q = 0.00019875691214110702;
    q = q * r + 0.0013982000527903438;
    q = q * r + 0.008333452045917511;
    q = q * r + 0.04166579619050026;
    q = q * r + 0.1666666567325592;
    q = q * r + 0.5;
    let y = (q * (r * r) + r) + 1.0;
    return y * bitcast<f32>(u32(i32(n) + 127) << 23u);
}

// The CPU's eight-lane fold: ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)).
fn fold8(l: array<f32, 8>) -> f32 {
    return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}
