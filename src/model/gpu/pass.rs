//! One forward pass on the GPU: the same steps as the CPU pass (`forward.rs`), recorded as a
//! list of dispatches, their parameters uploaded in one write, run in one compute pass, and the
//! selected logits and hidden rows read back in one copy.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::{GpuContext, Kernel, PARAM_BYTES};
use crate::kernels::ops::RopeStyle;
use crate::kernels::ActKind;
use crate::model::arch::{Activation, ArchSpec};
use crate::model::config::ModelConfig;
use crate::model::plan::{ForwardPlan, HeadVocab, SubLayer, MAX_BATCH};

use super::{GpuKv, GpuMat, GpuModel};

/// Element offsets of the f32 regions (`A`) and word offsets of the quantized ones (`Q`).
#[derive(Clone, Copy, Debug, Default)]
struct Offsets {
    x: u32,
    xn: u32,
    proj: u32,
    q: u32,
    k: u32,
    v: u32,
    att: u32,
    gate: u32,
    up: u32,
    cos: u32,
    sin: u32,
    logits: u32,
    scores: u32,
    q8_qs: u32,
    q8_d: u32,
    q8_s: u32,
    k_qs: u32,
    k_d: u32,
    k_bs: u32,
    tree: u32,
}

/// A session's GPU buffers: activations, quantized activations, parameters, readback.
pub(crate) struct GpuScratch {
    act: wgpu::Buffer,
    qa: wgpu::Buffer,
    params: wgpu::Buffer,
    params_group: wgpu::BindGroup,
    staging: wgpu::Buffer,
    off: Offsets,
    ctx_len: u32,
    slots: usize,
    stride: u64,
}

impl std::fmt::Debug for GpuScratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuScratch(ctx {}, {} dispatch slots)", self.ctx_len, self.slots)
    }
}

fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::invalid(format!("{what} ({v}) is too large for the GPU backend")))
}

impl GpuScratch {
    /// Buffers for `c` at contexts up to `ctx_len`.
    pub fn new(ctx: Arc<GpuContext>, c: &ModelConfig, ctx_len: usize) -> Result<GpuScratch> {
        let b = MAX_BATCH;
        let half = c.rope_dim / 2;
        let widest = c.dim.max(c.ffn_dim).max(c.n_heads * c.head_dim_v);
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<u32> {
            let o = u32_of(at, "a GPU buffer offset")?;
            at = at.checked_add(n).ok_or_else(|| Error::invalid("GPU buffers overflow"))?;
            Ok(o)
        };
        let mut off = Offsets {
            x: take(b * c.dim)?,
            xn: take(b * c.dim)?,
            proj: take(b * c.dim)?,
            q: take(b * c.n_heads * c.head_dim)?,
            k: take(b * c.n_kv_heads * c.head_dim)?,
            v: take(b * c.n_kv_heads * c.head_dim_v)?,
            att: take(b * c.n_heads * c.head_dim_v)?,
            gate: take(b * c.ffn_dim)?,
            up: take(b * c.ffn_dim)?,
            cos: take(2 * b * half)?,
            sin: take(2 * b * half)?,
            logits: take(b * c.vocab_size)?,
            scores: take(
                b.checked_mul(c.n_heads).and_then(|v| v.checked_mul(ctx_len)).unwrap_or(usize::MAX),
            )?,
            ..Offsets::default()
        };
        let act_len = at;
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<u32> {
            let o = u32_of(at, "a GPU buffer offset")?;
            at += n;
            Ok(o)
        };
        off.q8_qs = take(b * widest / 4)?;
        off.q8_d = take(b * widest.div_ceil(32))?;
        off.q8_s = take(b * widest.div_ceil(32))?;
        off.k_qs = take(b * widest / 4)?;
        off.k_d = take(b * widest.div_ceil(256))?;
        off.k_bs = take(b * widest.div_ceil(16))?;
        off.tree = take(2 * MAX_BATCH)?;
        let qa_len = at;
        let act = ctx.storage("activations", 4 * act_len as u64)?;
        let qa = ctx.storage("quantized activations", 4 * qa_len as u64)?;
        let stride = ctx.param_stride();
        let slots = 48 * c.n_layers + 64;
        let params = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("dispatch parameters"),
            size: stride * slots as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let params_group = ctx.params_group(&params);
        let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: 4 * (b * (c.vocab_size + c.dim)) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(GpuScratch {
            act,
            qa,
            params,
            params_group,
            staging,
            off,
            ctx_len: u32_of(ctx_len, "the context")?,
            slots,
            stride,
        })
    }
}

/// Which weights a dispatch binds.
enum Bind<'a> {
    Vectors,
    Mat(&'a wgpu::BindGroup),
}

struct Dispatch<'a> {
    kernel: Kernel,
    p: [u32; 16],
    bind: Bind<'a>,
    groups: u32,
}

/// The dispatches of one pass, in order.
struct Recorder<'a> {
    list: Vec<Dispatch<'a>>,
    off: Offsets,
}

fn groups(n: usize) -> Result<u32> {
    u32_of(n.div_ceil(64), "a dispatch size")
}

pub(super) fn params(vals: &[u32]) -> [u32; 16] {
    let mut p = [0u32; 16];
    p[..vals.len()].copy_from_slice(vals);
    // Word 15 is 0 in every slot: `keep()` in wgsl/common.wgsl XORs with it.
    p[15] = 0;
    p
}

impl<'a> Recorder<'a> {
    fn push(&mut self, kernel: Kernel, vals: &[u32], bind: Bind<'a>, groups: u32) {
        self.list.push(Dispatch { kernel, p: params(vals), bind, groups });
    }

    /// RMSNorm `rows` rows of `n` from `src` (row stride `ss`) to `dst` (stride `ds`).
    #[allow(clippy::too_many_arguments)]
    fn rmsnorm(&mut self, n: usize, rows: usize, src: u32, ss: usize, dst: u32, ds: usize, w: u32, eps: f32) {
        let vals = [n as u32, src, ss as u32, dst, ds as u32, w, eps.to_bits()];
        self.push(Kernel::RmsNorm, &vals, Bind::Vectors, rows as u32);
    }

    fn add(&mut self, n: usize, dst: u32, src: u32) -> Result<()> {
        self.push(Kernel::Add, &[n as u32, dst, src], Bind::Vectors, groups(n)?);
        Ok(())
    }

    /// Quantize `cols` columns of `n` at `src` into each format of `kinds`.
    fn quantize(&mut self, n: usize, cols: usize, src: u32, kinds: &[ActKind]) -> Result<()> {
        let o = self.off;
        for k in kinds {
            match k {
                ActKind::Q8 => {
                    let blocks = cols * n / 32;
                    let vals = [n as u32, blocks as u32, src, o.q8_qs, o.q8_d, o.q8_s];
                    self.push(Kernel::QuantQ8, &vals, Bind::Vectors, groups(blocks)?);
                }
                ActKind::Q8K => {
                    let blocks = cols * n / 256;
                    let vals = [n as u32, blocks as u32, src, o.k_qs, o.k_d, o.k_bs];
                    self.push(Kernel::QuantQ8K, &vals, Bind::Vectors, groups(blocks)?);
                }
                ActKind::F32 => {
                    return Err(Error::unsupported("the GPU backend has no f32-activation mat-vec"))
                }
            }
        }
        Ok(())
    }

    /// `out (cols, m.rows) = m · acts` for `cols` columns quantized beforehand.
    fn matvec(&mut self, m: &'a GpuMat, cols: usize, out: u32) -> Result<()> {
        let o = self.off;
        let (qs, d, s) = match m.act {
            ActKind::Q8 => (o.q8_qs, o.q8_d, o.q8_s),
            ActKind::Q8K => (o.k_qs, o.k_d, o.k_bs),
            ActKind::F32 => return Err(Error::unsupported("the GPU backend has no f32-activation mat-vec")),
        };
        for (first, rows, group) in &m.chunks {
            let vals = [*rows as u32, m.nb as u32, cols as u32, out, m.rows as u32, *first as u32, qs, d, s];
            self.push(
                Kernel::Matvec(m.ty),
                &vals,
                Bind::Mat(group),
                u32_of(rows.div_ceil(8), "matrix rows")?,
            );
        }
        Ok(())
    }
}

/// What the pass needs from the model and the cache besides the GPU objects.
pub(crate) struct PassInput<'p> {
    pub config: &'p ModelConfig,
    pub arch: &'p ArchSpec,
    /// `(first row, ring rows)` of each layer in the cache.
    pub kv_layers: &'p [(usize, usize)],
    /// Embeddings, `(n, dim)`.
    pub x: &'p [f32],
    /// RoPE tables as the CPU lays them out, `(2 bases, MAX_BATCH, rope_dim / 2)`.
    pub cos: &'p [f32],
    pub sin: &'p [f32],
    pub plan: &'p ForwardPlan,
    pub n: usize,
    /// Whether sliding-window layers use the local RoPE base (the second table).
    pub local_base: bool,
}

impl GpuModel {
    /// Run the pass; write the selected rows' logits (unless the plan asks for a reduced head,
    /// which the caller computes from the hidden rows) and their final-normed hidden states.
    /// Returns the number of rows.
    pub fn run(
        &self,
        s: &mut GpuScratch,
        kv: &GpuKv,
        inp: &PassInput<'_>,
        logits: &mut [f32],
        hidden: &mut [f32],
    ) -> Result<usize> {
        let (c, arch, plan, n) = (inp.config, inp.arch, inp.plan, inp.n);
        let (dim, hd, hdv, nh, kvh) = (c.dim, c.head_dim, c.head_dim_v, c.n_heads, c.n_kv_heads);
        let (qd, kd, vd) = (nh * hd, kvh * hd, kvh * hdv);
        let o = s.off;
        let ctx = &self.ctx;
        let f = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        ctx.queue.write_buffer(&s.act, 4 * u64::from(o.x), &f(inp.x));
        ctx.queue.write_buffer(&s.act, 4 * u64::from(o.cos), &f(inp.cos));
        ctx.queue.write_buffer(&s.act, 4 * u64::from(o.sin), &f(inp.sin));
        // Tree table: ancestor masks (a chain: every earlier row) and depths.
        let mut table = [0u32; 2 * MAX_BATCH];
        for i in 0..n {
            match plan.tree {
                Some(t) => {
                    let mut path = [0usize; MAX_BATCH];
                    let len = t.path(i, &mut path);
                    table[i] = path[..len].iter().fold(0, |m, &r| m | (1 << r));
                    table[MAX_BATCH + i] = t.depth(i) as u32;
                }
                None => {
                    table[i] = ((1u64 << (i + 1)) - 1) as u32;
                    table[MAX_BATCH + i] = i as u32;
                }
            }
        }
        ctx.queue.write_buffer(&s.qa, 4 * u64::from(o.tree), crate::gpu::as_bytes(&table));

        let mut r = Recorder { list: Vec::new(), off: o };
        let half = c.rope_dim / 2;
        let start = u32_of(plan.start, "the position")?;
        let last = plan.exit_after.unwrap_or(usize::MAX).min(c.n_layers - 1);
        for (l, lw) in self.layers.iter().enumerate().take(last + 1) {
            let v = &lw.vecs;
            if !plan.skip.contains(l, SubLayer::Attention) {
                r.rmsnorm(dim, n, o.x, dim, o.xn, dim, v.attn_norm, c.rms_eps);
                let mut kinds = vec![lw.wq.act];
                for k in [lw.wk.act, lw.wv.act] {
                    if !kinds.contains(&k) {
                        kinds.push(k);
                    }
                }
                r.quantize(dim, n, o.xn, &kinds)?;
                r.matvec(&lw.wq, n, o.q)?;
                r.matvec(&lw.wk, n, o.k)?;
                r.matvec(&lw.wv, n, o.v)?;
                for (bias, at, width) in [(v.bq, o.q, qd), (v.bk, o.k, kd), (v.bv, o.v, vd)] {
                    if let Some(b) = bias {
                        r.push(
                            Kernel::Bias,
                            &[(n * width) as u32, at, width as u32, b],
                            Bind::Vectors,
                            groups(n * width)?,
                        );
                    }
                }
                if let Some(w) = v.q_norm {
                    r.rmsnorm(hd, n * nh, o.q, hd, o.q, hd, w, c.rms_eps);
                }
                if let Some(w) = v.k_norm {
                    r.rmsnorm(hd, n * kvh, o.k, hd, o.k, hd, w, c.rms_eps);
                }
                let window = arch.layer_window(l, c.sliding_window);
                let base = usize::from(window.is_some() && inp.local_base) * MAX_BATCH * half;
                let style = match arch.rope_style {
                    RopeStyle::Normal => 0,
                    RopeStyle::Neox => 1,
                };
                for (at, heads) in [(o.q, nh), (o.k, kvh)] {
                    let pairs = n * heads * half;
                    let vals = [
                        pairs as u32,
                        at,
                        heads as u32,
                        hd as u32,
                        half as u32,
                        style,
                        o.cos + base as u32,
                        o.sin + base as u32,
                    ];
                    r.push(Kernel::Rope, &vals, Bind::Vectors, groups(pairs)?);
                }
                let (kv_base, kv_rows) = *inp.kv_layers.get(l).ok_or_else(|| Error::internal("KV layer"))?;
                for (src, width, which) in [(o.k, hd, 0u32), (o.v, hdv, 1u32)] {
                    // One invocation per pair of f16 values, or per Q8_0 block.
                    let (kernel, pairs) = match kv.q8 {
                        false => (Kernel::KvWrite, n * kvh * width / 2),
                        true => (Kernel::KvWriteQ8, n * kvh * width / 32),
                    };
                    let vals = [
                        pairs as u32,
                        src,
                        kvh as u32,
                        width as u32,
                        start,
                        kv_rows as u32,
                        kv_base as u32,
                        which,
                    ];
                    r.push(kernel, &vals, Bind::Vectors, groups(pairs)?);
                }
                let vals = [
                    kv_base as u32,
                    kv_rows as u32,
                    start,
                    nh as u32,
                    kvh as u32,
                    hd as u32,
                    hdv as u32,
                    c.attn_scale.to_bits(),
                    c.attn_logit_softcap.unwrap_or(0.0).to_bits(),
                    window.unwrap_or(0) as u32,
                    o.q,
                    o.att,
                    o.scores,
                    s.ctx_len,
                    o.tree,
                ];
                let kernel = if kv.q8 { Kernel::AttentionQ8 } else { Kernel::Attention };
                r.push(kernel, &vals, Bind::Vectors, (n * nh) as u32);
                r.quantize(nh * hdv, n, o.att, &[lw.wo.act])?;
                r.matvec(&lw.wo, n, o.proj)?;
                residual(&mut r, c, n, v.post_attn_norm)?;
            }
            if !plan.skip.contains(l, SubLayer::Mlp) {
                let ffn = c.ffn_dim;
                r.rmsnorm(dim, n, o.x, dim, o.xn, dim, v.ffn_norm, c.rms_eps);
                let mut kinds = vec![lw.w_gate.act];
                if lw.w_up.act != lw.w_gate.act {
                    kinds.push(lw.w_up.act);
                }
                r.quantize(dim, n, o.xn, &kinds)?;
                r.matvec(&lw.w_gate, n, o.gate)?;
                r.matvec(&lw.w_up, n, o.up)?;
                let act = match arch.activation {
                    Activation::SiluGated => 0,
                    Activation::GeluTanhGated => 1,
                };
                r.push(
                    Kernel::ActMul,
                    &[(n * ffn) as u32, o.gate, o.up, act],
                    Bind::Vectors,
                    groups(n * ffn)?,
                );
                r.quantize(ffn, n, o.gate, &[lw.w_down.act])?;
                r.matvec(&lw.w_down, n, o.proj)?;
                residual(&mut r, c, n, v.post_ffn_norm)?;
            }
        }

        // Head rows: the final norm of each selected row into `proj`.
        let mut rows = 0;
        for i in 0..n {
            if plan.logits.wants(i, n) {
                let (src, dst) = (o.x + (i * dim) as u32, o.proj + (rows * dim) as u32);
                r.rmsnorm(dim, 1, src, dim, dst, dim, self.output_norm, c.rms_eps);
                rows += 1;
            }
        }
        let full_head = rows > 0 && matches!(plan.vocab, HeadVocab::Full);
        let vocab = c.vocab_size;
        if full_head {
            r.quantize(dim, rows, o.proj, &[self.output.act])?;
            r.matvec(&self.output, rows, o.logits)?;
            if let Some(cap) = c.final_logit_softcap {
                for row in 0..rows {
                    let at = o.logits + (row * vocab) as u32;
                    r.push(
                        Kernel::Softcap,
                        &[vocab as u32, at, cap.to_bits()],
                        Bind::Vectors,
                        groups(vocab)?,
                    );
                }
            }
        }
        if r.list.len() > s.slots {
            return Err(Error::internal(format!(
                "{} dispatches exceed the {} parameter slots",
                r.list.len(),
                s.slots
            )));
        }
        let stride = s.stride as usize;
        let mut pbytes = vec![0u8; stride * r.list.len()];
        for (i, d) in r.list.iter().enumerate() {
            pbytes[i * stride..i * stride + PARAM_BYTES as usize].copy_from_slice(crate::gpu::as_bytes(&d.p));
        }
        ctx.queue.write_buffer(&s.params, 0, &pbytes);
        let ws_group = ctx.workspace_group([&s.act, &s.qa, &kv.k, &kv.v]);
        let mut enc =
            ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("forward") });
        {
            let mut pass =
                enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None });
            pass.set_bind_group(2, &ws_group, &[]);
            for (i, d) in r.list.iter().enumerate() {
                if d.groups == 0 {
                    continue;
                }
                pass.set_pipeline(ctx.kernels.get(d.kernel)?);
                pass.set_bind_group(0, &s.params_group, &[(i * stride) as u32]);
                match d.bind {
                    Bind::Vectors => pass.set_bind_group(1, &self.vectors, &[]),
                    Bind::Mat(g) => pass.set_bind_group(1, g, &[]),
                }
                pass.dispatch_workgroups(d.groups, 1, 1);
            }
        }
        if rows == 0 {
            ctx.queue.submit([enc.finish()]);
            ctx.check()?;
            return Ok(0);
        }
        let lbytes = if full_head { 4 * (rows * vocab) as u64 } else { 0 };
        let hbytes = 4 * (rows * dim) as u64;
        if lbytes > 0 {
            enc.copy_buffer_to_buffer(&s.act, 4 * u64::from(o.logits), &s.staging, 0, lbytes);
        }
        enc.copy_buffer_to_buffer(&s.act, 4 * u64::from(o.proj), &s.staging, lbytes, hbytes);
        ctx.queue.submit([enc.finish()]);
        let total = (lbytes + hbytes) as usize / 4;
        let mut back = vec![0f32; total];
        ctx.read_staging(&s.staging, &mut back)?;
        let (lpart, hpart) = back.split_at(lbytes as usize / 4);
        logits.get_mut(..lpart.len()).ok_or_else(|| Error::internal("logit buffer"))?.copy_from_slice(lpart);
        hidden.get_mut(..hpart.len()).ok_or_else(|| Error::internal("hidden buffer"))?.copy_from_slice(hpart);
        Ok(rows)
    }
}

/// `x += proj`, through the post-norm when the layer has one.
fn residual(r: &mut Recorder<'_>, c: &ModelConfig, n: usize, post: Option<u32>) -> Result<()> {
    let (o, dim) = (r.off, c.dim);
    match post {
        Some(w) => {
            r.rmsnorm(dim, n, o.proj, dim, o.xn, dim, w, c.rms_eps);
            r.add(n * dim, o.x, o.xn)
        }
        None => r.add(n * dim, o.x, o.proj),
    }
}
