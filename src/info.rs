//! `edgespec info`: what a GGUF file holds and what running it will cost, gathered from the
//! metadata and tensor table alone (no tensor data is read).

use std::fmt;
use std::time::{Duration, Instant};

use crate::catalog::format_bytes;
use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::memory::{self, MemoryChoice, MemoryRequest};
use crate::model::{ArchSpec, KvCache, KvLayout, KvType, ModelConfig};
use crate::quant::GgmlType;

/// Batch size the memory estimate assumes for verification passes.
pub const ESTIMATE_BATCH: usize = 16;

/// A summary of a model file.
#[derive(Clone, Debug)]
pub struct ModelInfo {
    /// Path as given.
    pub path: String,
    /// File size in bytes.
    pub file_bytes: u64,
    /// GGUF version.
    pub version: u32,
    /// `general.name`, if present.
    pub name: Option<String>,
    /// Hyperparameters.
    pub config: ModelConfig,
    /// `tokenizer.ggml.model` (gpt2 = byte-level BPE, llama = SentencePiece).
    pub tokenizer_model: Option<String>,
    /// `tokenizer.ggml.pre`.
    pub tokenizer_pre: Option<String>,
    /// Entries of `tokenizer.ggml.tokens`.
    pub tokenizer_vocab: usize,
    /// BOS and EOS ids.
    pub bos: Option<u64>,
    /// EOS id.
    pub eos: Option<u64>,
    /// Whether `tokenizer.chat_template` is present.
    pub chat_template: bool,
    /// Tensor count and bytes per type, most bytes first.
    pub tensor_types: Vec<(GgmlType, usize, u64)>,
    /// Number of metadata entries.
    pub metadata_entries: usize,
    /// Context length the memory estimate is for.
    pub ctx: usize,
    /// The memory a session at [`ctx`](Self::ctx) needs (checked sums), with the cache type.
    pub memory: MemoryChoice,
    /// The memory budget the context and cache type were chosen for, if any.
    pub budget: Option<u64>,
    /// Time to map and index the file.
    pub open_time: Duration,
    /// Resident set size after opening, if the OS reports it.
    pub rss_after_open: Option<u64>,
}

impl ModelInfo {
    /// Open `path` and summarise it; `ctx` is the context the memory estimate is for (default:
    /// the model's trained context).
    pub fn gather(path: &std::path::Path, ctx: Option<usize>) -> Result<ModelInfo> {
        ModelInfo::gather_for(path, &MemoryRequest { ctx, kv_type: Some(KvType::F16), budget: None }, false)
    }

    /// [`gather`](Self::gather) with the memory estimate for `req`: the context and KV cache
    /// type a session would get ([`memory::choose`]: what fits a budget, refused when nothing
    /// does); `session_default`: without a context asked for, the one a session gets (the
    /// model's capped at [`crate::session::DEFAULT_CTX`]) rather than the trained one.
    pub fn gather_for(
        path: &std::path::Path,
        req: &MemoryRequest,
        session_default: bool,
    ) -> Result<ModelInfo> {
        if req.ctx == Some(0) {
            return Err(Error::invalid("--ctx must be at least 1"));
        }
        let t0 = Instant::now();
        let file = GgufFile::open(path)?;
        let open_time = t0.elapsed();
        let rss_after_open = current_rss_bytes();
        let config = ModelConfig::from_gguf(&file).map_err(|e| e.context(path.display()))?;
        let mut tensor_types: Vec<(GgmlType, usize, u64)> = Vec::new();
        for t in file.tensors() {
            match tensor_types.iter_mut().find(|(ty, _, _)| *ty == t.ty) {
                Some(e) => {
                    e.1 += 1;
                    e.2 += t.n_bytes;
                }
                None => tensor_types.push((t.ty, 1, t.n_bytes)),
            }
        }
        tensor_types.sort_by_key(|t| std::cmp::Reverse(t.2));
        let s = |k: &str| -> Result<Option<String>> { Ok(file.get_str(k)?.map(str::to_string)) };
        let arch = ArchSpec::for_arch(&config.arch).ok();
        let mut req = *req;
        if req.ctx.is_none() && !session_default {
            req.ctx = Some(config.context_length.max(1));
        }
        let memory = memory::choose(&config, arch.as_ref(), file.len(), &req)?;
        Ok(ModelInfo {
            path: path.display().to_string(),
            file_bytes: file.len(),
            version: file.version(),
            name: s("general.name")?,
            tokenizer_model: s("tokenizer.ggml.model")?,
            tokenizer_pre: s("tokenizer.ggml.pre")?,
            tokenizer_vocab: file.get_array("tokenizer.ggml.tokens")?.map(|a| a.len()).unwrap_or(0),
            bos: file.get_u64("tokenizer.ggml.bos_token_id")?,
            eos: file.get_u64("tokenizer.ggml.eos_token_id")?,
            chat_template: file.get_str("tokenizer.chat_template")?.is_some(),
            tensor_types,
            metadata_entries: file.keys().count(),
            ctx: memory.ctx,
            memory,
            budget: req.budget,
            config,
            open_time,
            rss_after_open,
        })
    }

    /// Bytes of tensor data (what the forward pass streams from the map).
    pub fn weight_bytes(&self) -> u64 {
        self.tensor_types.iter().map(|t| t.2).sum()
    }

    /// Number of tensors.
    pub fn tensor_count(&self) -> usize {
        self.tensor_types.iter().map(|t| t.1).sum()
    }

    /// Bytes of the f16 KV cache a session at [`ctx`](Self::ctx) allocates: what
    /// [`KvCache::new`] takes for the architecture (sliding-window layers in rings of
    /// `window + MAX_BATCH` rows), or every layer at full context for an architecture the
    /// forward pass does not know.
    pub fn kv_cache_bytes(&self) -> u64 {
        self.kv_cache_bytes_as(KvType::F16)
    }

    /// [`kv_cache_bytes`](Self::kv_cache_bytes) for a cache of type `ty` (`--kv-type`).
    pub fn kv_cache_bytes_as(&self, ty: KvType) -> u64 {
        match ArchSpec::for_arch(&self.config.arch) {
            Ok(arch) => KvCache::bytes_for(&self.config, &arch, self.ctx, ty, KvLayout::Ring),
            Err(_) => self.config.kv_cache_bytes_as(self.ctx, ty),
        }
    }

    /// Sliding-window layers and the positions each keeps in the KV cache, when they keep fewer
    /// than the context.
    pub fn windowed_layers(&self) -> Option<(usize, usize)> {
        let c = &self.config;
        let arch = ArchSpec::for_arch(&c.arch).ok()?;
        let w = c.sliding_window?;
        let n = (0..c.n_layers).filter(|&l| arch.layer_window(l, c.sliding_window).is_some()).count();
        let rows = w.saturating_add(crate::model::MAX_BATCH);
        (n > 0 && rows < self.ctx).then_some((n, rows))
    }
}

/// Resident set size of this process from /proc (Linux), in bytes.
pub fn current_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

impl fmt::Display for ModelInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(f, "file        {} ({}, GGUF v{})", self.path, format_bytes(self.file_bytes), self.version)?;
        if let Some(n) = &self.name {
            writeln!(f, "name        {n}")?;
        }
        writeln!(
            f,
            "arch        {}: {} blocks, embedding {}, FFN {}, {} heads / {} KV heads (head dim {})",
            c.arch, c.n_layers, c.dim, c.ffn_dim, c.n_heads, c.n_kv_heads, c.head_dim
        )?;
        write!(
            f,
            "            context {}, RoPE base {} over {} dims, RMSNorm eps {:e}",
            c.context_length, c.rope_base, c.rope_dim, c.rms_eps
        )?;
        match c.sliding_window {
            Some(w) => writeln!(f, ", sliding window {w}")?,
            None => writeln!(f)?,
        }
        let kind = match self.tokenizer_model.as_deref() {
            Some("gpt2") => "byte-level BPE",
            Some("llama") => "SentencePiece",
            Some(_) => "other",
            None => "none",
        };
        writeln!(
            f,
            "tokenizer   {} ({kind}{}), vocab {}, BOS {}, EOS {}; chat template: {}",
            self.tokenizer_model.as_deref().unwrap_or("-"),
            self.tokenizer_pre.as_deref().map(|p| format!(", pre-tokenizer {p}")).unwrap_or_default(),
            self.tokenizer_vocab,
            self.bos.map(|b| b.to_string()).unwrap_or("-".into()),
            self.eos.map(|b| b.to_string()).unwrap_or("-".into()),
            if self.chat_template { "yes" } else { "no" }
        )?;
        let types: Vec<String> = self.tensor_types.iter().map(|(t, n, _)| format!("{n} {t}")).collect();
        writeln!(
            f,
            "tensors     {}: {}  ({} of weights), {} metadata entries",
            self.tensor_count(),
            types.join(" + "),
            format_bytes(self.weight_bytes()),
            self.metadata_entries
        )?;
        // Checked sums (memory::session_need): a context asked for is user input.
        let m = &self.memory;
        let ring = match self.windowed_layers() {
            Some((n, rows)) => format!(", {n} of {} layers windowed to {rows} positions", c.n_layers),
            None => String::new(),
        };
        writeln!(
            f,
            "memory      at --ctx {}: {} weights (mapped) + {} KV cache ({}{ring}) + ~{} scratch (batch {}) = ~{}",
            self.ctx,
            format_bytes(m.need.weights),
            format_bytes(m.need.kv_cache),
            m.kv_type.name(),
            format_bytes(m.need.scratch),
            ESTIMATE_BATCH,
            format_bytes(m.need.total())
        )?;
        if let Some(b) = self.budget {
            writeln!(
                f,
                "budget      {}: context {} tokens, KV cache {} ({}){}",
                format_bytes(b),
                self.ctx,
                m.kv_type.name(),
                format_bytes(m.need.total()),
                if m.shrunk { ", chosen to fit" } else { ", within the budget" }
            )?;
        }
        if let Some(ram) = memory::machine_memory_bytes().filter(|&r| m.need.allocated() > r) {
            writeln!(
                f,
                "            more than this machine's {} of memory: a session would be refused",
                format_bytes(ram)
            )?;
        }
        let c = &self.config;
        if m.kv_type == KvType::F16 && memory::kv_type_fits(c, KvType::Q8_0) {
            writeln!(
                f,
                "            with --kv-type q8_0: {} KV cache",
                format_bytes(self.kv_cache_bytes_as(KvType::Q8_0))
            )?;
        }
        write!(f, "open        {:.2} ms (header and tensor table only)", self.open_time.as_secs_f64() * 1e3)?;
        if let Some(rss) = self.rss_after_open {
            write!(f, "; process RSS after open {}", format_bytes(rss))?;
        }
        writeln!(f)
    }
}

/// `edgespec info --devices`: every GPU adapter wgpu finds (backend, type, driver, limits), and
/// which one `--device gpu` and `--device auto` would take.
pub fn devices_text() -> String {
    #[cfg(feature = "gpu")]
    {
        let all = crate::gpu::adapters();
        if all.is_empty() {
            return "no GPU adapter (Vulkan or Metal) found: --device gpu fails, --device auto runs on the CPU\n"
                .to_string();
        }
        let mut s = String::new();
        for a in &all {
            s.push_str(&format!(
                "{}: {} — {} {}{}, driver {}; memory {}, largest buffer {}, largest binding {}\n",
                a.index,
                a.name,
                a.backend,
                a.device_type,
                if a.software { " (software: not used by --device auto)" } else { "" },
                a.driver,
                a.memory_bytes.map_or("not reported".to_string(), crate::catalog::format_bytes),
                crate::catalog::format_bytes(a.max_buffer_bytes),
                crate::catalog::format_bytes(a.max_binding_bytes),
            ));
        }
        s.push_str(&format!(
            "A model that does not fit fails at upload (--device auto then stays on the CPU). {} picks an \
             adapter by index or name.\n",
            crate::gpu::ADAPTER_ENV
        ));
        s
    }
    #[cfg(not(feature = "gpu"))]
    "this build has no GPU backend (cargo feature `gpu`)\n".to_string()
}
