//! The GPU mat-vec of every block type against the CPU's scalar reference kernels, bit for bit:
//! random matrices packed as the upload packs them (`repack_block`, in two row chunks so the
//! chunk's first-row offset is exercised), 1 ..= 16 activation columns quantized on the GPU as the
//! pass quantizes them, the kernels dispatched with the parameters `pass.rs` gives them.
//! Without an adapter the test says so and passes, unless `EDGESPEC_REQUIRE_GPU=1`.

use std::sync::Arc;

use crate::gpu::{GpuContext, Kernel};
use crate::kernels::{matvec, ActKind, KernelPool, Kernels, QuantizedActs, WeightMatrix};
use crate::quant::dot::{k_lanes, KWeight, Lanes8, LegacyWeight};
use crate::quant::{
    as_blocks, BlockQ4_1, BlockQ4_K, BlockQ5_0, BlockQ6_K, BlockQ8_0, GgmlType, KForm, QK, QK_K,
};

use super::repack_block;

/// Elements per row: two Q4_K/Q6_K super-blocks, sixteen legacy blocks.
const N: usize = 2 * QK_K;
/// Rows: not a multiple of the kernel's eight rows per workgroup.
const ROWS: usize = 37;
/// The first chunk's rows (the second holds the rest, dispatched with a first-row offset).
const SPLIT: usize = 24;
const MAX_COLS: usize = 16;

/// Deterministic values in roughly `[-scale, scale]`.
fn random(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let u = ((s >> 40) as f32) / (1u64 << 24) as f32;
            (2.0 * u - 1.0) * scale
        })
        .collect()
}

fn context() -> Option<Arc<GpuContext>> {
    if crate::gpu::adapters().is_empty() {
        assert!(
            std::env::var("EDGESPEC_REQUIRE_GPU").is_err(),
            "EDGESPEC_REQUIRE_GPU is set but no adapter was found"
        );
        eprintln!("no Vulkan/Metal adapter: GPU kernel test skipped");
        return None;
    }
    Some(GpuContext::open(true).unwrap())
}

/// `rows` rows of `data` (blocks of `block_bytes`) packed for the GPU, as words.
fn packed(ty: GgmlType, data: &[u8], block_bytes: usize) -> Vec<u32> {
    let mut bytes = Vec::new();
    for block in data.chunks_exact(block_bytes) {
        repack_block(ty, block, &mut bytes);
    }
    assert_eq!(bytes.len() % 4, 0);
    bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// What the GPU computed: the mat-vec `out (cols, ROWS)` and the quantized activations
/// (quants as words of four, scales, sums: the regions of the weights' activation kind).
struct GpuResult {
    out: Vec<f32>,
    quants: Vec<u32>,
    scales: Vec<u32>,
    sums: Vec<u32>,
}

/// The weights `data` (`ty`) times the f32 columns `x`, on the GPU.
fn gpu_matvec(ctx: &GpuContext, ty: GgmlType, data: &[u8], x: &[f32], cols: usize) -> GpuResult {
    let elems = if matches!(ty, GgmlType::Q4_K | GgmlType::Q6_K) { QK_K } else { QK };
    let nb = N / elems;
    let block_bytes = ty.row_bytes(elems as u64).unwrap() as usize;
    let row_bytes = nb * block_bytes;
    let words = Kernel::block_words(ty).unwrap() as usize;
    let chunks: Vec<(usize, usize, wgpu::BindGroup)> = [(0, SPLIT), (SPLIT, ROWS - SPLIT)]
        .into_iter()
        .map(|(first, rows)| {
            let w = packed(ty, &data[first * row_bytes..(first + rows) * row_bytes], block_bytes);
            assert_eq!(w.len(), rows * nb * words, "{ty}: packed size");
            let buf = ctx.storage_init("weights", &w).unwrap();
            (first, rows, ctx.weights_group(&buf))
        })
        .collect();

    // Activations: the columns at 0, the output after them; quantized regions as in pass.rs.
    let out_at = (cols * N) as u32;
    let act = ctx.storage("activations", 4 * (cols * (N + ROWS)) as u64).unwrap();
    let bits: Vec<u32> = x.iter().map(|v| v.to_bits()).collect();
    ctx.queue.write_buffer(&act, 0, crate::gpu::as_bytes(&bits));
    let mut at = 0u32;
    let mut take = |n: usize| {
        let o = at;
        at += n as u32;
        o
    };
    let (q8_qs, q8_d, q8_s) = (take(cols * N / 4), take(cols * N / 32), take(cols * N / 32));
    let (k_qs, k_d, k_bs) = (take(cols * N / 4), take(cols * N / 256), take(cols * N / 16));
    let qa = ctx.storage("quantized activations", 4 * u64::from(at)).unwrap();
    let (kc, vc) = (ctx.storage("keys", 4).unwrap(), ctx.storage("values", 4).unwrap());
    let ws = ctx.workspace_group([&act, &qa, &kc, &vc]);

    let kind = ActKind::for_weight(ty).unwrap();
    let groups = |n: usize| n.div_ceil(64) as u32;
    // (kernel, parameters, weights bind group, workgroups)
    let mut list: Vec<(Kernel, Vec<u32>, &wgpu::BindGroup, u32)> = Vec::new();
    let (qs, d, s) = match kind {
        ActKind::Q8 => {
            let blocks = cols * N / 32;
            let p = vec![N as u32, blocks as u32, 0, q8_qs, q8_d, q8_s];
            list.push((Kernel::QuantQ8, p, &chunks[0].2, groups(blocks)));
            (q8_qs, q8_d, q8_s)
        }
        ActKind::Q8K => {
            let blocks = cols * N / 256;
            let p = vec![N as u32, blocks as u32, 0, k_qs, k_d, k_bs];
            list.push((Kernel::QuantQ8K, p, &chunks[0].2, groups(blocks)));
            (k_qs, k_d, k_bs)
        }
        ActKind::F32 => panic!("{ty}: no f32-activation mat-vec on the GPU"),
    };
    for (first, rows, group) in &chunks {
        let p = vec![*rows as u32, nb as u32, cols as u32, out_at, ROWS as u32, *first as u32, qs, d, s];
        list.push((Kernel::Matvec(ty), p, group, rows.div_ceil(8) as u32));
    }

    let stride = ctx.param_stride() as usize;
    let params = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("dispatch parameters"),
        size: (stride * list.len()) as u64,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut pbytes = vec![0u8; stride * list.len()];
    for (i, (_, p, _, _)) in list.iter().enumerate() {
        let words = super::pass::params(p);
        pbytes[i * stride..i * stride + 64].copy_from_slice(crate::gpu::as_bytes(&words));
    }
    ctx.queue.write_buffer(&params, 0, &pbytes);
    let params_group = ctx.params_group(&params);
    let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
    {
        let mut pass =
            enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None });
        pass.set_bind_group(2, &ws, &[]);
        for (i, (kernel, _, group, n)) in list.iter().enumerate() {
            pass.set_pipeline(ctx.kernels.get(*kernel).unwrap());
            pass.set_bind_group(0, &params_group, &[(i * stride) as u32]);
            pass.set_bind_group(1, *group, &[]);
            pass.dispatch_workgroups(*n, 1, 1);
        }
    }
    ctx.queue.submit([enc.finish()]);
    let mut out = vec![0f32; cols * ROWS];
    ctx.read(&act, 4 * u64::from(out_at), &mut out).unwrap();
    let read = |at: u32, words: usize| -> Vec<u32> {
        let mut v = vec![0f32; words];
        ctx.read(&qa, 4 * u64::from(at), &mut v).unwrap();
        v.iter().map(|x| x.to_bits()).collect()
    };
    let (blocks, sums) = match kind {
        ActKind::Q8 => (cols * N / 32, cols * N / 32),
        _ => (cols * N / 256, cols * N / 16),
    };
    let result =
        GpuResult { out, quants: read(qs, cols * N / 4), scales: read(d, blocks), sums: read(s, sums) };
    ctx.check().unwrap();
    result
}

/// The CPU's quantized activations in the GPU's layout (`n` a multiple of 256: no padding).
fn cpu_quantized(acts: &QuantizedActs, kind: ActKind) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
    let v = acts.view(kind).unwrap();
    let words = |q: &[i8]| -> Vec<u32> {
        q.chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0] as u8, c[1] as u8, c[2] as u8, c[3] as u8]))
            .collect()
    };
    let bits = |f: &[f32]| -> Vec<u32> { f.iter().map(|x| x.to_bits()).collect() };
    match kind {
        ActKind::Q8 => (words(v.q8_qs), bits(v.q8_d), bits(v.q8_s)),
        _ => (words(v.k_qs), bits(v.k_d), v.k_bsums.iter().map(|&b| i32::from(b) as u32).collect()),
    }
}

/// `lane += a · b`, with one rounding (`fused`, as the CPU kernels compute it) or two.
fn madd(lanes: &mut Lanes8, l: usize, a: f32, b: f32, fused: bool) {
    let v = &mut lanes.0[l];
    *v = if fused { a.mul_add(b, *v) } else { a * b + *v };
}

/// The reference dot products (`quant/dot.rs`: the same integer parts, lanes and fold) of every
/// row of legacy blocks `w` with the quantized columns, with fused or unfused multiply-adds.
fn emulate_legacy<W: LegacyWeight>(w: &[W], acts: &QuantizedActs, kind: ActKind, fused: bool) -> Vec<f32> {
    let v = acts.view(kind).unwrap();
    let nb = N / QK;
    let mut out = Vec::new();
    for c in 0..v.b {
        for row in w.chunks_exact(nb) {
            let mut lanes = Lanes8::default();
            for (i, b) in row.iter().enumerate() {
                let at = c * v.q8_stride + i;
                let q = &v.q8_qs[(c * nb + i) * QK..(c * nb + i + 1) * QK];
                let isum = b.isum(q.try_into().unwrap());
                madd(&mut lanes, i % 8, isum as f32, b.scale() * v.q8_d[at], fused);
                if let Some(m) = b.min() {
                    madd(&mut lanes, i % 8, m, v.q8_s[at], fused);
                }
            }
            out.push(lanes.sum());
        }
    }
    out
}

/// [`emulate_legacy`] for K-quant blocks against Q8_K columns.
fn emulate_k<W: KWeight>(w: &[W], acts: &QuantizedActs, fused: bool) -> Vec<f32> {
    let v = acts.view(ActKind::Q8K).unwrap();
    let nb = N / QK_K;
    let mut out = Vec::new();
    for c in 0..v.b {
        for row in w.chunks_exact(nb) {
            let mut lanes = Lanes8::default();
            for (i, b) in row.iter().enumerate() {
                let blk = c * nb + i;
                let u = b.unpack_k();
                let aq = v.k_qs[blk * QK_K..(blk + 1) * QK_K].try_into().unwrap();
                let bsums = v.k_bsums[blk * 16..(blk + 1) * 16].try_into().unwrap();
                let (isum, corr) = k_lanes(&u, aq, bsums);
                let da = v.k_d[blk];
                for l in 0..8 {
                    match u.form {
                        KForm::Min => {
                            madd(&mut lanes, l, isum[l] as f32, u.d * da, fused);
                            madd(&mut lanes, l, -(corr[l] as f32), u.dmin * da, fused);
                        }
                        KForm::Offset(off) => {
                            madd(&mut lanes, l, (isum[l] - off * corr[l]) as f32, u.d * da, fused)
                        }
                    }
                }
            }
            out.push(lanes.sum());
        }
    }
    out
}

fn emulate(ty: GgmlType, data: &[u8], acts: &QuantizedActs, fused: bool) -> Vec<f32> {
    match ty {
        GgmlType::Q4_1 => emulate_legacy(as_blocks::<BlockQ4_1>(data).unwrap(), acts, ActKind::Q8, fused),
        GgmlType::Q5_0 => emulate_legacy(as_blocks::<BlockQ5_0>(data).unwrap(), acts, ActKind::Q8, fused),
        GgmlType::Q8_0 => emulate_legacy(as_blocks::<BlockQ8_0>(data).unwrap(), acts, ActKind::Q8, fused),
        GgmlType::Q4_K => emulate_k(as_blocks::<BlockQ4_K>(data).unwrap(), acts, fused),
        GgmlType::Q6_K => emulate_k(as_blocks::<BlockQ6_K>(data).unwrap(), acts, fused),
        other => panic!("no emulation of {other}: add it"),
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The GPU mat-vec against the scalar kernels for every GPU block type and 1 ..= 16 columns.
///
/// The activations the GPU quantizes must be bitwise the CPU's. The mat-vec outputs are bitwise
/// the scalar kernels' where the adapter fuses WGSL's `fma` (a single rounding, as the CPU's
/// `mul_add`); WGSL leaves that to the implementation, and lavapipe rounds the product and the
/// sum separately, so there the outputs must instead be bitwise the same reference arithmetic
/// with unfused multiply-adds: either way every block decode, lane, and the fold order are
/// checked exactly. Which held is printed (`EDGESPEC_REQUIRE_FUSED_FMA=1` demands the first).
#[test]
fn gpu_matvec_is_bitwise_the_reference_arithmetic() {
    let Some(ctx) = context() else { return };
    let scalar = Kernels::scalar();
    let pool = KernelPool::with_kernels(Some(1), scalar).unwrap();
    let types: Vec<GgmlType> = Kernel::matvec_types().collect();
    assert_eq!(types.len(), 5, "a new GPU block type: add it to `emulate`");
    for (t, ty) in types.into_iter().enumerate() {
        // Rows of different magnitudes, so the blocks' scales differ.
        let w: Vec<f32> = (0..ROWS)
            .flat_map(|r| random(N, 100 + (t * ROWS + r) as u64, 0.05 + 0.1 * (r % 7) as f32))
            .collect();
        let data = crate::quant::quantize(ty, &w).unwrap();
        let m = WeightMatrix::new(ty, &data, ROWS, N).unwrap();
        let kind = m.act_kind();
        let (mut outputs, mut as_cpu, mut as_unfused) = (0, 0, 0);
        for cols in 1..=MAX_COLS {
            let x = random(cols * N, 7_000 + (t * MAX_COLS + cols) as u64, 1.0 + cols as f32);
            let mut acts = QuantizedActs::with_capacity(N, cols);
            acts.quantize(scalar, &x, N, cols, &[kind]).unwrap();
            let mut want = vec![0f32; cols * ROWS];
            matvec(&pool, &m, &acts, &mut want).unwrap();
            // The emulation with fused multiply-adds is the scalar kernels' arithmetic.
            assert_eq!(bits(&emulate(ty, &data, &acts, true)), bits(&want), "{ty}: the emulation is off");
            let unfused = emulate(ty, &data, &acts, false);

            let got = gpu_matvec(&ctx, ty, &data, &x, cols);
            let (quants, scales, sums) = cpu_quantized(&acts, kind);
            for (what, a, b) in [
                ("quants", &quants, &got.quants),
                ("scales", &scales, &got.scales),
                ("sums", &sums, &got.sums),
            ] {
                if let Some(i) = a.iter().zip(b).position(|(p, q)| p != q) {
                    panic!(
                        "{ty}, {cols} columns: {kind:?} activation {what} differ at word {i}: CPU {:#010x} vs GPU {:#010x}",
                        a[i], b[i]
                    );
                }
            }
            for (i, &g) in got.out.iter().enumerate() {
                let (cpu, unf) = (want[i].to_bits() == g.to_bits(), unfused[i].to_bits() == g.to_bits());
                assert!(
                    cpu,
                    "{ty}, {cols} columns: column {}, row {}: GPU {g} is not the CPU's {} ({})",
                    i / ROWS,
                    i % ROWS,
                    want[i],
                    if unf {
                        "it is the unfused arithmetic's: fma was split and not emulated"
                    } else {
                        "nor the unfused arithmetic's"
                    }
                );
                as_cpu += usize::from(cpu);
                as_unfused += usize::from(unf);
            }
            outputs += got.out.len();
        }
        eprintln!(
            "{ty}: {outputs} outputs over 1..={MAX_COLS} columns: {as_cpu} bitwise the scalar kernels, \
             {as_unfused} bitwise the unfused reference"
        );
    }
    eprintln!(
        "{}: the GPU mat-vec is bitwise the CPU's scalar kernels ({} fma)",
        ctx.adapter().name,
        if ctx.fma_fused() { "the device's fused" } else { "emulated" }
    );
}
