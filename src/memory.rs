//! What a session costs in memory, computed from the metadata before anything is allocated, and
//! the context length and KV cache type that fit a memory budget.
//!
//! One mechanism serves every front: the C API's `memory_budget_bytes`, the CLI's `--mem-budget`
//! and `info --mem-budget`, and [`Session::new`](crate::session::Session::new)'s check that
//! refuses a context the machine cannot hold (a context length is user input: a huge one must be
//! an error, never an allocation that aborts the process or a size that wraps). All sums are
//! checked; a size that does not fit in `u64` is an error.
//!
//! Weights are mapped, not copied, so they count as the file's size: the pages a pass touches
//! become resident, and the OS may drop them again under pressure.

use crate::catalog::format_bytes;
use crate::error::{Error, ErrorKind, Result};
use crate::model::{ArchSpec, KvCache, KvLayout, KvType, ModelConfig, MAX_BATCH};
use crate::session::DEFAULT_CTX;

/// The shortest context a budget may shrink the default one to: below it a prompt and a reply
/// hardly fit.
pub const MIN_BUDGET_CTX: usize = 64;

/// The bytes a session needs, by part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryNeed {
    /// The model file (mapped).
    pub weights: u64,
    /// The KV cache.
    pub kv_cache: u64,
    /// Activations, logits and per-position buffers of the widest batch (an upper estimate).
    pub scratch: u64,
}

impl MemoryNeed {
    /// Everything together.
    pub fn total(&self) -> u64 {
        self.weights.saturating_add(self.kv_cache).saturating_add(self.scratch)
    }

    /// What the session allocates (everything but the mapped weights).
    pub fn allocated(&self) -> u64 {
        self.kv_cache.saturating_add(self.scratch)
    }
}

impl MemoryNeed {
    /// The parts in words: `98.4 MB weights (mapped) + 17.2 MB KV cache + 4.4 MB scratch`.
    pub fn parts(&self) -> String {
        format!(
            "{} weights (mapped) + {} KV cache + {} scratch",
            format_bytes(self.weights),
            format_bytes(self.kv_cache),
            format_bytes(self.scratch)
        )
    }
}

impl std::fmt::Display for MemoryNeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", format_bytes(self.total()), self.parts())
    }
}

/// Whether a cache of type `ty` can store this model's keys and values (q8_0 needs head
/// dimensions of whole blocks).
pub fn kv_type_fits(config: &ModelConfig, ty: KvType) -> bool {
    ty != KvType::Q8_0 || KvCache::q8_0_supported(config)
}

/// The bytes a session over a model shaped like `config` (layers as `arch` says; `None` for an
/// architecture the forward pass does not know: every layer at full context) needs at context
/// `ctx` with a `kv` cache; an error when the sum does not fit in 64 bits.
pub fn session_need(
    config: &ModelConfig,
    arch: Option<&ArchSpec>,
    weight_bytes: u64,
    ctx: usize,
    kv: KvType,
) -> Result<MemoryNeed> {
    let overflow = || {
        Error::new(
            ErrorKind::OutOfMemory,
            format!("a context of {ctx} tokens needs more memory than can be counted"),
        )
    };
    let kv_cache = match arch {
        Some(a) => KvCache::bytes_for(config, a, ctx, kv, KvLayout::Ring),
        None => config.kv_cache_bytes_as(ctx, kv),
    };
    // The bytes functions saturate: a saturated figure is an overflow.
    if kv_cache == u64::MAX {
        return Err(overflow());
    }
    let scratch = config.scratch_bytes(MAX_BATCH, ctx).ok_or_else(overflow)?;
    // The session's token history and feed buffer, and a drafter's index: a few words per position.
    let per_position = (ctx as u64).checked_mul(16).ok_or_else(overflow)?;
    let scratch = scratch.checked_add(per_position).ok_or_else(overflow)?;
    let need = MemoryNeed { weights: weight_bytes, kv_cache, scratch };
    weight_bytes.checked_add(kv_cache).and_then(|s| s.checked_add(scratch)).ok_or_else(overflow)?;
    Ok(need)
}

/// The context length and KV cache type a session gets, and what it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryChoice {
    /// Context length in tokens.
    pub ctx: usize,
    /// KV cache type.
    pub kv_type: KvType,
    /// The bytes it needs.
    pub need: MemoryNeed,
    /// Whether the budget made the choice differ from the defaults (or from what was asked).
    pub shrunk: bool,
}

/// What to choose from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryRequest {
    /// The context asked for (`None`: the model's, capped at [`DEFAULT_CTX`], or shorter to fit
    /// the budget).
    pub ctx: Option<usize>,
    /// The cache type asked for (`None`: f16, or q8_0 where only that fits the budget).
    pub kv_type: Option<KvType>,
    /// Most bytes the session may need (`None`: no limit).
    pub budget: Option<u64>,
}

/// Choose the context length and KV cache type for `req` (see [`MemoryRequest`]): what was
/// asked for when it fits; otherwise, with a budget, an f16 cache at the default context, else
/// q8_0 there (when the model's heads allow it and no type was asked for), else the longest
/// context of at least [`MIN_BUDGET_CTX`] tokens that fits with the smaller cache. Refuses
/// (`OutOfMemory`, naming the smallest budget that would do) when nothing fits, and a context of 0.
pub fn choose(
    config: &ModelConfig,
    arch: Option<&ArchSpec>,
    weight_bytes: u64,
    req: &MemoryRequest,
) -> Result<MemoryChoice> {
    if req.ctx == Some(0) {
        return Err(Error::invalid("the context length must be at least 1"));
    }
    // A cache type asked for that cannot store this model's rows is refused where the cache is
    // made (KvCache::new), as it always was.
    let ctx = req.ctx.unwrap_or(config.context_length.clamp(1, DEFAULT_CTX));
    let types: Vec<KvType> = match req.kv_type {
        Some(t) => vec![t],
        None => [KvType::F16, KvType::Q8_0].into_iter().filter(|&t| kv_type_fits(config, t)).collect(),
    };
    let need = |c: usize, t: KvType| session_need(config, arch, weight_bytes, c, t);
    let Some(budget) = req.budget else {
        let kv_type = types.first().copied().unwrap_or_default();
        return Ok(MemoryChoice { ctx, kv_type, need: need(ctx, kv_type)?, shrunk: false });
    };
    let fits = |c: usize, t: KvType| need(c, t).is_ok_and(|n| n.total() <= budget);
    for (i, &t) in types.iter().enumerate() {
        if fits(ctx, t) {
            return Ok(MemoryChoice { ctx, kv_type: t, need: need(ctx, t)?, shrunk: i > 0 });
        }
    }
    // The smallest cache type: the one that leaves the most room for positions.
    let small = *types.last().unwrap_or(&KvType::F16);
    let floor = MIN_BUDGET_CTX.min(ctx);
    let refuse = |c: usize| -> Result<MemoryChoice> {
        let at_least = need(c, small)?;
        Err(Error::new(
            ErrorKind::OutOfMemory,
            format!(
                "a memory budget of {} cannot hold this model with a {c} token context: that needs at least {} \
                 ({}); a budget of {} ({} bytes) or more works{}",
                format_bytes(budget),
                format_bytes(at_least.total()),
                at_least.parts(),
                format_size_flag(at_least.total()),
                at_least.total(),
                if req.ctx.is_some() { ", or ask for a shorter context" } else { "" }
            ),
        ))
    };
    if req.ctx.is_some() || !fits(floor, small) {
        return refuse(if req.ctx.is_some() { ctx } else { floor });
    }
    // The need grows with the context: the longest one that fits.
    let (mut lo, mut hi) = (floor, ctx);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(mid, small) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Ok(MemoryChoice { ctx: lo, kv_type: small, need: need(lo, small)?, shrunk: true })
}

/// `bytes` rounded up to a whole number of megabytes, as `--mem-budget` takes it (`301M`).
pub fn format_size_flag(bytes: u64) -> String {
    format!("{}M", bytes.div_ceil(1_000_000))
}

/// Parse a size such as `300M`, `1.5G`, `512MiB` or `1000000` (bytes): K, M, G and T are powers
/// of 1000, KiB, MiB, GiB and TiB powers of 1024 (a trailing `B` is optional).
pub fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let bad = || {
        Error::invalid(format!(
            "`{text}` is not a size: write bytes or a number with a unit, e.g. 300M or 1.5G"
        ))
    };
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| bad())?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let scale: f64 = match unit {
        "" => 1.0,
        "k" => 1e3,
        "m" => 1e6,
        "g" => 1e9,
        "t" => 1e12,
        "ki" => 1024.0,
        "mi" => 1024.0 * 1024.0,
        "gi" => 1024.0 * 1024.0 * 1024.0,
        "ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    let bytes = (value * scale).round();
    if !bytes.is_finite() || bytes < 1.0 || bytes >= u64::MAX as f64 {
        return Err(Error::invalid(format!("`{text}` is not a usable memory size")));
    }
    Ok(bytes as u64)
}

/// This machine's physical memory in bytes (`MemTotal` on Linux; `None` elsewhere or unreadable).
pub fn machine_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// Refuse a session whose allocations (KV cache and scratch) exceed this machine's memory, before
/// allocating them (allocating would abort the process, or thrash it).
pub fn check_machine(ctx: usize, kv: KvType, need: &MemoryNeed) -> Result<()> {
    let Some(ram) = machine_memory_bytes() else { return Ok(()) };
    if need.allocated() <= ram {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::OutOfMemory,
        format!(
            "a context of {ctx} tokens needs {} of memory ({} KV cache ({}) + {} scratch), more than this \
             machine's {}; use a shorter --ctx, --kv-type q8_0, or --mem-budget SIZE to pick what fits",
            format_bytes(need.allocated()),
            format_bytes(need.kv_cache),
            kv.name(),
            format_bytes(need.scratch),
            format_bytes(ram)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgufFile;
    use crate::model::synthetic::{self, SyntheticSpec};

    fn config_of(spec: &SyntheticSpec) -> (ModelConfig, ArchSpec, u64) {
        let file = GgufFile::from_bytes(synthetic::build(spec).unwrap()).unwrap();
        let config = ModelConfig::from_gguf(&file).unwrap();
        let arch = ArchSpec::for_arch(&config.arch).unwrap();
        (config, arch, file.len())
    }

    fn req(ctx: Option<usize>, kv_type: Option<KvType>, budget: Option<u64>) -> MemoryRequest {
        MemoryRequest { ctx, kv_type, budget }
    }

    #[test]
    fn the_budget_shrinks_a_default_context_and_refuses_an_explicit_one() {
        const F16: KvType = KvType::F16;
        let (config, arch, w) = config_of(&SyntheticSpec::llama(1));
        let a = Some(&arch);
        let pick = |r: MemoryRequest| choose(&config, a, w, &r);
        assert_eq!(pick(req(None, Some(F16), None)).unwrap().ctx, 256, "the model's own, under the cap");
        assert_eq!(pick(req(Some(100), Some(F16), None)).unwrap().ctx, 100);
        let budget = session_need(&config, a, w, 64, F16).unwrap().total();
        let c = pick(req(None, Some(F16), Some(budget))).unwrap();
        assert_eq!((c.ctx, c.kv_type, c.shrunk), (64, F16, true), "the longest context that fits");
        assert_eq!(pick(req(Some(64), Some(F16), Some(budget))).unwrap().ctx, 64);
        let e = pick(req(Some(65), Some(F16), Some(budget))).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfMemory);
        let e = pick(req(None, Some(F16), Some(w / 2))).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfMemory, "not even the weights fit: {e}");
        // The refusal names a budget that works.
        let at_least = session_need(&config, a, w, MIN_BUDGET_CTX, F16).unwrap().total();
        assert!(e.message().contains(&format_size_flag(at_least)), "{e}");
        assert!(pick(req(None, Some(F16), Some(parse_size(&format_size_flag(at_least)).unwrap()))).is_ok());
        assert_eq!(pick(req(Some(0), None, None)).unwrap_err().kind(), ErrorKind::InvalidArgument);
    }

    #[test]
    fn a_budget_picks_q8_0_before_a_shorter_context_when_the_type_is_free() {
        let (config, arch, w) = config_of(&SyntheticSpec { head_dim: 32, ..SyntheticSpec::llama(1) });
        let a = Some(&arch);
        let pick = |r: MemoryRequest| choose(&config, a, w, &r);
        let full = pick(req(None, None, None)).unwrap();
        assert_eq!((full.ctx, full.kv_type, full.shrunk), (256, KvType::F16, false));
        // Room for the default context with q8_0 but not with f16: q8_0, same context.
        let q8_full = session_need(&config, a, w, 256, KvType::Q8_0).unwrap().total();
        let c = pick(req(None, None, Some(q8_full))).unwrap();
        assert_eq!((c.ctx, c.kv_type, c.shrunk), (256, KvType::Q8_0, true));
        assert!(c.need.total() <= q8_full);
        // Less: a shorter context with q8_0, longer than f16 would get.
        let f16_64 = session_need(&config, a, w, 64, KvType::F16).unwrap().total();
        let c = pick(req(None, None, Some(f16_64))).unwrap();
        assert!(c.kv_type == KvType::Q8_0 && c.ctx > 64 && c.need.total() <= f16_64, "{c:?}");
        // A type asked for is kept.
        assert_eq!(pick(req(None, Some(KvType::F16), Some(f16_64))).unwrap().ctx, 64);
    }

    #[test]
    fn huge_contexts_are_errors_not_wrapped_sums() {
        let (config, arch, w) = config_of(&SyntheticSpec::llama(1));
        for ctx in [usize::MAX, usize::MAX / 2, 1 << 62] {
            let e = session_need(&config, Some(&arch), w, ctx, KvType::F16).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::OutOfMemory, "{ctx}: {e}");
        }
        let n = session_need(&config, Some(&arch), w, 10_000_000, KvType::F16).unwrap();
        assert!(n.kv_cache > 1_000_000_000 && n.total() > n.kv_cache, "{n:?}");
        if let Some(ram) = machine_memory_bytes() {
            let big = session_need(&config, Some(&arch), w, 1 << 40, KvType::F16).unwrap();
            assert!(big.allocated() > ram);
            assert_eq!(check_machine(1 << 40, KvType::F16, &big).unwrap_err().kind(), ErrorKind::OutOfMemory);
        }
    }

    #[test]
    fn sizes_parse_with_decimal_and_binary_units() {
        assert_eq!(parse_size("300M").unwrap(), 300_000_000);
        assert_eq!(parse_size("1.5G").unwrap(), 1_500_000_000);
        assert_eq!(parse_size("1.5gb").unwrap(), 1_500_000_000);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        for bad in ["", "M", "-3M", "1.5X", "0", "1e30T", "abc"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(format_size_flag(300_000_001), "301M");
    }
}
