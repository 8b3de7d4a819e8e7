//! The forward pass, written once: embeddings → blocks → final norm → head, for every
//! architecture [`ArchSpec`] describes.
//!
//! A pass takes up to [`MAX_BATCH`] tokens at consecutive positions (or a token tree, see
//! [`TokenTree`](super::TokenTree)). Each weight matrix is read
//! once per pass and dotted with every token's activations (the batched mat-vec), so verifying
//! `k` drafted tokens streams the same weight bytes as decoding one. Everything else — norms,
//! RoPE, attention, activations — is computed row by row with the same operations whatever the
//! batch, so a token's logits are bitwise the same alone, in a batch, or in any prefill chunking
//! (docs/architecture.md, invariant 3; `tests/model_batch_invariance.rs` holds it).
//!
//! All buffers live in a [`Workspace`] sized once from the config and the context length; a
//! pass allocates nothing.

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, ErrorKind, Result};
use crate::gguf::GgufFile;
use crate::kernels::{matvec, matvec_many, ops, KernelPool, Kernels, WeightMatrix};

use super::arch::{Activation, ArchSpec, EmbedScale};
use super::attention::{attend, AttnParams};
use super::config::ModelConfig;
use super::device::Device;
use super::head::{reduced_head, HeadExtra};
use super::kv_cache::{KvCache, KvLayout, KvType};
use super::plan::{ForwardPlan, HeadVocab, SubLayer, MAX_BATCH};
use super::repack::Repacked;
use super::weights::{LayerWeights, Vector, View, Weights};
use super::workspace::{Buffers, GpuScratchSlot, Workspace};

/// Name of the environment variable that picks the weight layout of the Q5_0/Q8_0 matrices:
/// `plain` (the map) or `interleaved` (row-interleaved copies); unset, the kernel table decides.
pub const LAYOUT_ENV: &str = "EDGESPEC_LAYOUT";

/// A loaded model: the memory-mapped file, its configuration and architecture, and the checked
/// locations of its tensors. Cheap to share (`Arc` inside); holds no per-session state.
pub struct Model {
    file: Arc<GgufFile>,
    config: ModelConfig,
    arch: ArchSpec,
    weights: Weights,
    /// Row-interleaved copies of the Q5_0/Q8_0 matrices (empty when the kernels do not gain).
    repacked: Repacked,
    /// The weights on the GPU when passes run there (see [`Model::set_device`]).
    #[cfg(feature = "gpu")]
    pub(super) gpu: Option<Arc<super::gpu::GpuModel>>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("arch", &self.arch.name).field("config", &self.config).finish()
    }
}

impl Model {
    /// Map the GGUF file at `path` and load it.
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        let path = path.as_ref();
        let file = GgufFile::open(path)?;
        Model::from_file(Arc::new(file)).map_err(|e| e.context(path.display()))
    }

    /// Load the model in an open file: read the config, pick the architecture, check every
    /// tensor's presence and shape. Reads no tensor data.
    pub fn from_file(file: Arc<GgufFile>) -> Result<Model> {
        let config = ModelConfig::from_gguf(&file)?;
        let arch = ArchSpec::for_arch(&config.arch)?;
        Model::from_file_with_arch(file, arch)
    }

    /// Load the model in an open file with `arch` in place of the spec its
    /// `general.architecture` names: for experiments that change one architectural choice and
    /// watch the logits move (the parity tests show each of Gemma 3's choices matters this way).
    pub fn from_file_with_arch(file: Arc<GgufFile>, arch: ArchSpec) -> Result<Model> {
        let config = ModelConfig::from_gguf(&file)?;
        if config.rope_dim % 2 != 0 || config.rope_dim > config.head_dim {
            return Err(Error::format(format!(
                "RoPE over {} dimensions does not fit heads of {}",
                config.rope_dim, config.head_dim
            )));
        }
        if config.vocab_size == 0 {
            return Err(Error::format("the model has an empty vocabulary"));
        }
        // RoPE variants the forward pass does not implement: refuse rather than run them wrong.
        let scaling = file.get_str(&format!("{}.rope.scaling.type", config.arch))?;
        if let Some(kind) = scaling.filter(|k| !matches!(*k, "none" | "linear")) {
            return Err(Error::unsupported(format!("RoPE scaling {kind:?} is not supported yet")));
        }
        if file.tensor("rope_freqs.weight").is_some() {
            return Err(Error::unsupported(
                "per-dimension RoPE frequency factors (rope_freqs) are not supported yet",
            ));
        }
        let weights = Weights::load(&file, &config, &arch)?;
        let interleave = match std::env::var(LAYOUT_ENV).ok().as_deref().map(str::trim) {
            Some("plain") => false,
            Some("interleaved") => true,
            _ => Kernels::get().interleaved_pays(),
        };
        let repacked =
            if interleave { Repacked::open_or_write(&file, &weights.mats())? } else { Repacked::none() };
        Ok(Model {
            file,
            config,
            arch,
            weights,
            repacked,
            #[cfg(feature = "gpu")]
            gpu: None,
        })
    }

    /// Run passes on `device`: [`Device::Gpu`] uploads the weights to the GPU (an error when
    /// there is no adapter, a weight type has no GPU kernel, or the model does not fit);
    /// [`Device::Auto`] does so on a hardware adapter and otherwise stays on the CPU, returning
    /// why; [`Device::Cpu`] releases the GPU copy. Workspaces and caches made before no longer
    /// fit the model: make them after.
    pub fn set_device(&mut self, device: Device) -> Result<Option<String>> {
        #[cfg(feature = "gpu")]
        {
            self.gpu = None;
            let open = |software: bool| -> Result<Arc<super::gpu::GpuModel>> {
                if let Some(ty) = super::gpu::unsupported_type(&self.file, &self.weights) {
                    return Err(Error::unsupported(format!(
                        "the GPU backend has no kernel for {ty} weights; use --device cpu"
                    )));
                }
                let ctx = crate::gpu::GpuContext::open(software)?;
                let view = View { file: &self.file, repacked: &self.repacked };
                Ok(Arc::new(super::gpu::GpuModel::upload(ctx, &self.file, &self.weights, &view)?))
            };
            match device {
                Device::Cpu => Ok(None),
                Device::Gpu => {
                    self.gpu = Some(open(true)?);
                    Ok(None)
                }
                Device::Auto => match open(false) {
                    Ok(g) => {
                        self.gpu = Some(g);
                        Ok(None)
                    }
                    Err(e) => Ok(Some(format!("running on the CPU: {e}"))),
                },
            }
        }
        #[cfg(not(feature = "gpu"))]
        match device {
            Device::Cpu => Ok(None),
            Device::Gpu => Err(Error::unsupported("this build has no GPU backend (cargo feature `gpu`)")),
            Device::Auto => Ok(Some("running on the CPU: this build has no GPU backend".into())),
        }
    }

    /// Run on the device `other` runs on, sharing its uploaded weights (no second upload), when
    /// both are views of the same file; otherwise nothing changes. Returns whether they share.
    pub fn share_device(&mut self, other: &Model) -> bool {
        #[cfg(feature = "gpu")]
        if Arc::ptr_eq(&self.file, &other.file) && other.gpu.is_some() {
            self.gpu = other.gpu.clone();
            return true;
        }
        let _ = other;
        false
    }

    /// Where passes run: `cpu`, or `gpu (ADAPTER, BACKEND)`.
    pub fn device_name(&self) -> String {
        #[cfg(feature = "gpu")]
        if let Some(g) = &self.gpu {
            let a = g.ctx.adapter();
            return format!("gpu ({}, {})", a.name, a.backend);
        }
        "cpu".to_string()
    }

    /// Whether passes run on the GPU.
    pub fn on_gpu(&self) -> bool {
        #[cfg(feature = "gpu")]
        return self.gpu.is_some();
        #[cfg(not(feature = "gpu"))]
        false
    }

    /// Read the Q5_0 and Q8_0 matrices row-interleaved (`true`; mapped from the sidecar file
    /// `MODEL.edgespec-x8`, written first if missing or stale, or built in memory when the file
    /// has no path or the sidecar cannot be written) or from the map (`false`). Results are bitwise the same either way; the default follows the
    /// kernel table (`Kernels::interleaved_pays`), or `EDGESPEC_LAYOUT=plain|interleaved`.
    pub fn set_interleaved(&mut self, on: bool) -> Result<()> {
        self.repacked = match (on, self.repacked.len()) {
            (false, _) => Repacked::none(),
            (true, 0) => Repacked::open_or_write(&self.file, &self.weights.mats())?,
            (true, _) => return Ok(()),
        };
        Ok(())
    }

    /// Matrices read row-interleaved, and the bytes their copies hold.
    pub fn interleaved_matrices(&self) -> (usize, usize) {
        (self.repacked.len(), self.repacked.bytes())
    }

    /// The sidecar file the interleaved copies are mapped from (`None`: in memory, or none).
    pub fn interleaved_sidecar(&self) -> Option<&Path> {
        self.repacked.sidecar()
    }

    /// The hyperparameters.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The architecture spec.
    pub fn arch(&self) -> &ArchSpec {
        &self.arch
    }

    /// The underlying file (metadata for the tokenizer and chat template).
    pub fn file(&self) -> &Arc<GgufFile> {
        &self.file
    }

    /// Whether the output head reuses the token embeddings.
    pub fn tied_embeddings(&self) -> bool {
        self.weights.tied
    }

    /// A KV cache for `ctx` positions (sliding-window layers in rings of `window + MAX_BATCH`
    /// rows).
    pub fn new_cache(&self, ctx: usize, ty: KvType) -> Result<KvCache> {
        self.new_cache_with_layout(ctx, ty, KvLayout::Ring)
    }

    /// A KV cache for `ctx` positions with sliding-window layers stored as `layout` says.
    pub fn new_cache_with_layout(&self, ctx: usize, ty: KvType, layout: KvLayout) -> Result<KvCache> {
        #[cfg(feature = "gpu")]
        if let Some(g) = &self.gpu {
            return KvCache::new_on_gpu(&self.config, &self.arch, ctx, ty, layout, g.ctx.clone());
        }
        KvCache::new(&self.config, &self.arch, ctx, ty, layout)
    }

    /// Run `tokens` (1 ..= [`MAX_BATCH`]) at positions `plan.start ..` and return the logits of
    /// the rows `plan.logits` selects, in row order: `(selected rows, vocab)`.
    ///
    /// The cache is first truncated to `plan.start` (which must not exceed its length), and holds
    /// `plan.start + tokens.len()` positions afterwards. A pass that would run past the cache's
    /// capacity fails with `ContextOverflow`, and one that starts below the cache's
    /// [`rollback_floor`](KvCache::rollback_floor) (more than `MAX_BATCH + 1` positions back on a
    /// cache with sliding-window rings) with `InvalidArgument`; both leave the cache as it was.
    pub fn forward<'w>(
        &self,
        ws: &'w mut Workspace,
        cache: &mut KvCache,
        tokens: &[u32],
        plan: &ForwardPlan,
    ) -> Result<&'w [f32]> {
        let n = tokens.len();
        if n == 0 || n > MAX_BATCH {
            return Err(Error::invalid(format!("a forward pass takes 1..={MAX_BATCH} tokens, got {n}")));
        }
        if !cache.matches(&self.config, &self.arch) {
            return Err(Error::invalid("the KV cache was made for a different model"));
        }
        if !ws.matches(&self.config) || cache.capacity() > ws.ctx {
            return Err(Error::invalid("the workspace was made for a different model or a shorter context"));
        }
        if plan.start > cache.len() {
            return Err(Error::invalid(format!(
                "a pass at position {} would leave a gap after the {} cached positions",
                plan.start,
                cache.len()
            )));
        }
        if plan.tree.is_some_and(|t| t.len() != n) {
            return Err(Error::invalid(format!("a token tree of the wrong size for a pass of {n} tokens")));
        }
        let end = plan.start + n;
        if end > cache.capacity() {
            return Err(Error::new(
                ErrorKind::ContextOverflow,
                format!("context full: {end} positions do not fit a context of {}", cache.capacity()),
            ));
        }
        cache.truncate(plan.start)?;
        ws.hidden_rows = 0;
        let Workspace { pool, bufs, extra, gpu, .. } = ws;
        #[cfg(not(feature = "gpu"))]
        let _ = gpu;
        let rows = pool.install(|| self.run(pool, bufs, extra, gpu, cache, tokens, plan))?;
        ws.hidden_rows = rows;
        cache.set_len(end)?;
        Ok(&ws.bufs.logits[..rows * self.config.vocab_size])
    }

    /// Feed `tokens` (any number) from position `start` in chunks of at most `chunk` tokens
    /// (1 ..= [`MAX_BATCH`]) and return the last token's logits (`vocab`). The result is bitwise
    /// independent of `chunk`.
    pub fn prefill<'w>(
        &self,
        ws: &'w mut Workspace,
        cache: &mut KvCache,
        tokens: &[u32],
        start: usize,
        chunk: usize,
    ) -> Result<&'w [f32]> {
        self.prefill_until(ws, cache, tokens, start, chunk, &|| false)
    }

    /// [`Model::prefill`] that asks `stop` before each chunk and fails with
    /// `Cancelled` when it says so (the cache then holds the chunks already run: truncate it).
    pub fn prefill_until<'w>(
        &self,
        ws: &'w mut Workspace,
        cache: &mut KvCache,
        tokens: &[u32],
        start: usize,
        chunk: usize,
        stop: &dyn Fn() -> bool,
    ) -> Result<&'w [f32]> {
        if tokens.is_empty() {
            return Err(Error::invalid("nothing to prefill"));
        }
        if chunk == 0 || chunk > MAX_BATCH {
            return Err(Error::invalid(format!("prefill chunks hold 1..={MAX_BATCH} tokens, not {chunk}")));
        }
        if start + tokens.len() > cache.capacity() {
            return Err(Error::new(
                ErrorKind::ContextOverflow,
                format!(
                    "context full: {} positions do not fit a context of {}",
                    start + tokens.len(),
                    cache.capacity()
                ),
            ));
        }
        let n_chunks = tokens.len().div_ceil(chunk);
        for (c, part) in tokens.chunks(chunk).enumerate() {
            if stop() {
                return Err(Error::new(ErrorKind::Cancelled, "prompt processing was cancelled"));
            }
            let plan = ForwardPlan::at(start + c * chunk).logits(if c + 1 == n_chunks {
                super::plan::LogitRows::Last
            } else {
                super::plan::LogitRows::None
            });
            self.forward(ws, cache, part, &plan)?;
        }
        Ok(&ws.bufs.logits[..self.config.vocab_size])
    }

    /// The pass proper, on a pool worker. Returns the number of logit rows written.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        pool: &KernelPool,
        b: &mut Buffers,
        extra: &HeadExtra,
        gpu: &mut Option<GpuScratchSlot>,
        cache: &mut KvCache,
        tokens: &[u32],
        plan: &ForwardPlan,
    ) -> Result<usize> {
        let c = &self.config;
        let view = View { file: &self.file, repacked: &self.repacked };
        let n = tokens.len();
        let dim = c.dim;

        // Embeddings: `x` (n, dim).
        for (i, &t) in tokens.iter().enumerate() {
            let row = &mut b.x[i * dim..(i + 1) * dim];
            view.embedding(&self.weights, t, row)?;
            if self.arch.embed_scale == EmbedScale::SqrtDim {
                ops::scale(row, (dim as f32).sqrt());
            }
        }

        // RoPE angles per row, for the global base and (if any) the local one:
        // `rope_cos[base][i]` (n, rope_dim / 2).
        let half = c.rope_dim / 2;
        let bases = [(c.rope_base, c.rope_freq_scale), (self.local_rope_base().unwrap_or(c.rope_base), 1.0)];
        for (k, &(base, scale)) in bases.iter().enumerate() {
            for i in 0..n {
                let at = (k * MAX_BATCH + i) * half;
                // A tree row sits at its depth (a chain's row i at depth i).
                let depth = plan.tree.map_or(i, |t| t.depth(i));
                ops::rope_angles(
                    plan.start + depth,
                    c.rope_dim,
                    base,
                    scale,
                    &mut b.rope_cos[at..at + half],
                    &mut b.rope_sin[at..at + half],
                )?;
            }
        }

        #[cfg(feature = "gpu")]
        if let Some(g) = &self.gpu {
            let scratch = gpu
                .as_mut()
                .ok_or_else(|| Error::invalid("the workspace was made before the model moved to the GPU"))?;
            let kv = cache
                .gpu()
                .ok_or_else(|| Error::invalid("the KV cache was made before the model moved to the GPU"))?;
            let kv_layers = cache.layer_spans();
            let input = super::gpu::PassInput {
                config: c,
                arch: &self.arch,
                kv_layers: &kv_layers,
                x: &b.x[..n * dim],
                cos: &b.rope_cos,
                sin: &b.rope_sin,
                plan,
                n,
                local_base: self.local_rope_base().is_some(),
            };
            let rows = g.run(scratch, kv, &input, &mut b.logits, &mut b.proj)?;
            cache.mark_written(plan.start + n);
            if rows > 0 {
                if let HeadVocab::Reduced { prefix } = plan.vocab {
                    self.reduced_logits(pool, &view, b, extra, rows, prefix)?;
                }
            }
            return Ok(rows);
        }
        #[cfg(not(feature = "gpu"))]
        let _ = gpu;

        let last = plan.exit_after.unwrap_or(usize::MAX).min(c.n_layers - 1);
        for (l, lw) in self.weights.layers.iter().enumerate().take(last + 1) {
            if !plan.skip.contains(l, SubLayer::Attention) {
                self.attention(pool, &view, b, cache, lw, l, plan, n)?;
            }
            if !plan.skip.contains(l, SubLayer::Mlp) {
                self.mlp(pool, &view, b, lw, n)?;
            }
        }

        // Head on the selected rows: gather them into `xn` (rows, dim), norm into `proj`.
        let mut rows = 0;
        for i in 0..n {
            if plan.logits.wants(i, n) {
                b.xn[rows * dim..(rows + 1) * dim].copy_from_slice(&b.x[i * dim..(i + 1) * dim]);
                rows += 1;
            }
        }
        if rows == 0 {
            return Ok(0);
        }
        let norm = view.vector(&self.weights.output_norm)?;
        for r in 0..rows {
            ops::rmsnorm(
                &b.xn[r * dim..(r + 1) * dim],
                norm,
                c.rms_eps,
                &mut b.proj[r * dim..(r + 1) * dim],
            )?;
        }
        if let HeadVocab::Reduced { prefix } = plan.vocab {
            self.reduced_logits(pool, &view, b, extra, rows, prefix)?;
            return Ok(rows);
        }
        let head = view.mat(&self.weights.output)?;
        b.acts.quantize(pool.kernels(), &b.proj[..rows * dim], dim, rows, &[head.act_kind()])?;
        let logits = &mut b.logits[..rows * c.vocab_size];
        matvec(pool, &head, &b.acts, logits)?;
        if let Some(cap) = c.final_logit_softcap {
            logits.iter_mut().for_each(|v| *v = cap * (*v / cap).tanh());
        }
        Ok(rows)
    }

    /// A reduced-vocabulary head ([`HeadVocab::Reduced`]) over the `rows` final-normed hidden
    /// rows in `b.proj`, on the CPU (for either backend: it serves drafters).
    fn reduced_logits(
        &self,
        pool: &KernelPool,
        view: &View<'_>,
        b: &mut Buffers,
        extra: &HeadExtra,
        rows: usize,
        prefix: u32,
    ) -> Result<()> {
        let (dim, c) = (self.config.dim, &self.config);
        let head = view.mat(&self.weights.output)?;
        b.acts.quantize(pool.kernels(), &b.proj[..rows * dim], dim, rows, &[head.act_kind()])?;
        let logits = &mut b.logits[..rows * c.vocab_size];
        let first = view.mat_rows(&self.weights.output, (prefix as usize).max(1))?;
        reduced_head(pool, &head, &first, extra.ids(), &b.acts, c.final_logit_softcap, logits)
    }

    /// The first `rows` rows of the output head (`rows ≤ vocab`), borrowed from the map: the
    /// logits of the `rows` lowest token ids (a reduced-vocabulary head for drafters).
    pub fn output_rows(&self, rows: usize) -> Result<WeightMatrix<'_>> {
        let out = &self.weights.output;
        if rows == 0 || rows > out.rows {
            return Err(Error::invalid(format!("{rows} head rows asked of a head with {}", out.rows)));
        }
        View { file: &self.file, repacked: &self.repacked }.mat_rows(out, rows)
    }

    /// The RoPE base of sliding-window layers when it differs from the global one: the file's
    /// `rope.freq_base_swa`, else the architecture's default (as llama.cpp reads it).
    fn local_rope_base(&self) -> Option<f32> {
        self.config.rope_base_swa.or(self.arch.rope_base_local)
    }

    /// RMSNorm every row of `x` (rows of `dim`) into `out`.
    fn norm_rows(&self, w: &[f32], x: &[f32], out: &mut [f32], dim: usize) -> Result<()> {
        for (xr, or) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
            ops::rmsnorm(xr, w, self.config.rms_eps, or)?;
        }
        Ok(())
    }

    /// Per-head RMSNorm of `x` (heads of `hd`) in place, through `tmp` (`hd`).
    fn norm_heads(&self, w: &[f32], x: &mut [f32], tmp: &mut [f32], hd: usize) -> Result<()> {
        for head in x.chunks_exact_mut(hd) {
            ops::rmsnorm(head, w, self.config.rms_eps, tmp)?;
            head.copy_from_slice(tmp);
        }
        Ok(())
    }

    /// The residual add of a sub-layer's output `proj` (n, dim), after its optional post-norm.
    fn residual(&self, view: &View<'_>, b: &mut Buffers, post: Option<&Vector>, n: usize) -> Result<()> {
        let dim = self.config.dim;
        let (x, proj, xn) = (&mut b.x[..n * dim], &b.proj[..n * dim], &mut b.xn[..n * dim]);
        match post {
            Some(w) => {
                self.norm_rows(view.vector(w)?, proj, xn, dim)?;
                ops::add(x, xn)
            }
            None => ops::add(x, proj),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        pool: &KernelPool,
        view: &View<'_>,
        b: &mut Buffers,
        cache: &mut KvCache,
        lw: &LayerWeights,
        layer: usize,
        plan: &ForwardPlan,
        n: usize,
    ) -> Result<()> {
        let start = plan.start;
        let c = &self.config;
        let (dim, hd, hdv) = (c.dim, c.head_dim, c.head_dim_v);
        let (qd, kd, vd) = (c.n_heads * hd, c.n_kv_heads * hd, c.n_kv_heads * hdv);
        let kernels = pool.kernels();

        self.norm_rows(view.vector(&lw.attn_norm)?, &b.x[..n * dim], &mut b.xn[..n * dim], dim)?;
        b.acts.quantize(kernels, &b.xn[..n * dim], dim, n, &lw.qkv_acts)?;
        let (q, k, v) = (&mut b.q[..n * qd], &mut b.k[..n * kd], &mut b.v[..n * vd]);
        let (wq, wk, wv) = (view.mat(&lw.wq)?, view.mat(&lw.wk)?, view.mat(&lw.wv)?);
        matvec_many(pool, &[&wq, &wk, &wv], &b.acts, &mut [&mut *q, &mut *k, &mut *v])?;
        for (buf, bias, width) in [(&mut *q, &lw.bq, qd), (&mut *k, &lw.bk, kd), (&mut *v, &lw.bv, vd)] {
            if let Some(bias) = bias {
                let bias = view.vector(bias)?;
                buf.chunks_exact_mut(width).try_for_each(|r| ops::add(r, bias))?;
            }
        }
        if let Some(w) = &lw.q_norm {
            self.norm_heads(view.vector(w)?, q, &mut b.tmp[..hd], hd)?;
        }
        if let Some(w) = &lw.k_norm {
            self.norm_heads(view.vector(w)?, k, &mut b.tmp[..hd], hd)?;
        }

        let window = self.arch.layer_window(layer, c.sliding_window);
        let local = window.is_some();
        let base = usize::from(local && self.local_rope_base().is_some());
        let half = c.rope_dim / 2;
        for i in 0..n {
            let at = (base * MAX_BATCH + i) * half;
            let (cos, sin) = (&b.rope_cos[at..at + half], &b.rope_sin[at..at + half]);
            let (qr, kr) = (&mut q[i * qd..(i + 1) * qd], &mut k[i * kd..(i + 1) * kd]);
            ops::rope(qr, hd, cos, sin, self.arch.rope_style)?;
            ops::rope(kr, hd, cos, sin, self.arch.rope_style)?;
            cache.write(kernels, layer, start + i, kr, &v[i * vd..(i + 1) * vd])?;
        }

        let params = AttnParams {
            layer,
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: hd,
            head_dim_v: hdv,
            scale: c.attn_scale,
            softcap: c.attn_logit_softcap,
            window,
        };
        let att = &mut b.att[..n * c.n_heads * hdv];
        attend(pool, cache, &params, start, plan.tree.as_ref(), q, att, &mut b.scores)?;

        b.acts.quantize(kernels, att, c.n_heads * hdv, n, &[lw.wo.act])?;
        matvec(pool, &view.mat(&lw.wo)?, &b.acts, &mut b.proj[..n * dim])?;
        self.residual(view, b, lw.post_attn_norm.as_ref(), n)
    }

    fn mlp(
        &self,
        pool: &KernelPool,
        view: &View<'_>,
        b: &mut Buffers,
        lw: &LayerWeights,
        n: usize,
    ) -> Result<()> {
        let c = &self.config;
        let (dim, ffn) = (c.dim, c.ffn_dim);
        let kernels = pool.kernels();
        self.norm_rows(view.vector(&lw.ffn_norm)?, &b.x[..n * dim], &mut b.xn[..n * dim], dim)?;
        b.acts.quantize(kernels, &b.xn[..n * dim], dim, n, &lw.gate_up_acts)?;
        let (gate, up) = (&mut b.gate[..n * ffn], &mut b.up[..n * ffn]);
        let (wg, wu) = (view.mat(&lw.w_gate)?, view.mat(&lw.w_up)?);
        matvec_many(pool, &[&wg, &wu], &b.acts, &mut [&mut *gate, &mut *up])?;
        match self.arch.activation {
            Activation::SiluGated => kernels.silu_mul(gate, up)?,
            Activation::GeluTanhGated => kernels.gelu_mul(gate, up)?,
        }
        b.acts.quantize(kernels, gate, ffn, n, &[lw.w_down.act])?;
        matvec(pool, &view.mat(&lw.w_down)?, &b.acts, &mut b.proj[..n * dim])?;
        self.residual(view, b, lw.post_ffn_norm.as_ref(), n)
    }
}
