//! Batched mat-vec `W (rows × n) · X (n × b)` over a thread pool: the only place that uses rayon.
//!
//! Decoding is bound by memory bandwidth, so the mat-vec reads each weight row once and dots it
//! against all `b ≤ 16` activation columns while the row is in cache: verifying 8 drafted tokens
//! then streams the same bytes as decoding one. Rows are split into contiguous chunks across an
//! owned pool. Every output element is computed by the same kernel call sequence whatever `b`, the
//! chunking or the thread count, so results are bitwise independent of all three.

use std::path::Path;

use crate::error::{Error, Result};

use super::acts::QuantizedActs;
use super::weights::WeightMatrix;
use super::Kernels;

/// Rows a kernel call handles at once; their `rows × b` results go through a stack buffer.
const TILE_ROWS: usize = 16;

/// Default: below this much work (weight bytes × (1 + b/2), a rough proxy for time) a mat-vec
/// runs on the calling thread: waking the pool costs microseconds, as much as streaming ~100 KB. Results are
/// bitwise the same either way.
pub const MIN_PARALLEL_WORK: usize = 128 << 10;

/// A thread pool with the kernel table it runs: what a forward pass needs to run mat-vecs.
pub struct KernelPool {
    pool: Option<rayon::ThreadPool>,
    threads: usize,
    kernels: &'static Kernels,
    min_parallel_work: usize,
}

impl std::fmt::Debug for KernelPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KernelPool({} threads, {})", self.threads, self.kernels.name())
    }
}

impl KernelPool {
    /// A pool of `threads` workers (default: the number of physical cores) running the kernels
    /// [`Kernels::get`] chose.
    pub fn new(threads: Option<usize>) -> Result<Self> {
        Self::with_kernels(threads, Kernels::get())
    }

    /// A pool running a specific kernel table (tests and benchmarks compare tables).
    pub fn with_kernels(threads: Option<usize>, kernels: &'static Kernels) -> Result<Self> {
        let threads = threads.unwrap_or_else(physical_cores);
        if threads == 0 {
            return Err(Error::invalid("a kernel pool needs at least one thread"));
        }
        let pool = if threads > 1 {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("edgespec-kernel-{i}"))
                .build()
                .map_err(|e| Error::internal(format!("cannot start {threads} kernel threads: {e}")))?;
            Some(pool)
        } else {
            None
        };
        Ok(KernelPool { pool, threads, kernels, min_parallel_work: MIN_PARALLEL_WORK })
    }

    /// Change the smallest mat-vec (weight bytes × (1 + b/2)) split across the pool; smaller ones
    /// run on the calling thread. 0 parallelises everything (tests use it to exercise the split).
    pub fn with_min_parallel_work(mut self, bytes: usize) -> Self {
        self.min_parallel_work = bytes;
        self
    }

    /// Worker threads (1 means the caller's thread does the work).
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The kernel table.
    pub fn kernels(&self) -> &'static Kernels {
        self.kernels
    }

    /// Run `f` on one of the pool's workers (on the caller's thread for a one-thread pool).
    /// A forward pass runs inside this, so that the parallel sections it starts are forked from a
    /// worker (cheap) rather than injected from outside the pool (a cross-thread wake-up each).
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            None => f(),
            Some(tp) => tp.install(f),
        }
    }

    /// Split `out` into tasks of `chunk` elements and run `f(task, out_chunk, scratch_part)` for
    /// each, the tasks spread over the workers in contiguous groups; `scratch` is cut into one
    /// equal part per worker (it must hold at least one element per thread), reused by that
    /// worker's tasks in turn. Each task's result depends
    /// only on its index and inputs, never on which worker ran it.
    pub fn for_each_chunk<T: Send, S: Send>(
        &self,
        out: &mut [T],
        chunk: usize,
        scratch: &mut [S],
        f: impl Fn(usize, &mut [T], &mut [S]) -> Result<()> + Sync,
    ) -> Result<()> {
        if chunk == 0 || !out.len().is_multiple_of(chunk) {
            return Err(Error::invalid(format!("{} elements do not split into tasks of {chunk}", out.len())));
        }
        if scratch.len() < self.threads {
            return Err(Error::invalid(format!("scratch of {} for {} workers", scratch.len(), self.threads)));
        }
        let tasks = out.len() / chunk;
        let workers = self.threads.min(tasks).max(1);
        let part = scratch.len() / self.threads;
        let per_group = tasks.div_ceil(workers);
        let group = |g: usize, out: &mut [T], scratch: &mut [S]| -> Result<()> {
            for (t, c) in out.chunks_exact_mut(chunk).enumerate() {
                f(g * per_group + t, c, &mut *scratch)?;
            }
            Ok(())
        };
        match &self.pool {
            Some(tp) if workers > 1 => {
                use rayon::prelude::*;
                tp.install(|| {
                    out.par_chunks_mut(per_group * chunk)
                        .zip(scratch.par_chunks_mut(part))
                        .enumerate()
                        .try_for_each(|(g, (o, s))| group(g, o, &mut s[..part]))
                })
            }
            _ => group(0, out, &mut scratch[..part]),
        }
    }
}

/// The output pointer shared by the workers.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: workers write disjoint elements (see `matvec`), and the pointee outlives the parallel
// section, which ends before `matvec` returns.
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// Pointer to element `i` (a method, so closures capture the `Sync` wrapper, not the field).
    ///
    /// # Safety
    /// `i` must be inside the output slice.
    unsafe fn at(self, i: usize) -> *mut f32 {
        // SAFETY: the caller keeps `i` in bounds.
        unsafe { self.0.add(i) }
    }
}

/// `out = W · X`: `out[j·rows + r]` (column `j` of the result is contiguous, like the activation
/// columns) is row `r` of `w` dotted with column `j` of `acts`, which must have been quantized for
/// `w`'s activation kind with `n = w.n()`. `out.len()` must be `acts.b() · w.rows()`.
pub fn matvec(pool: &KernelPool, w: &WeightMatrix<'_>, acts: &QuantizedActs, out: &mut [f32]) -> Result<()> {
    matvec_many(pool, &[w], acts, &mut [out])
}

/// [`matvec`] for several matrices that read the same activations (a layer's query, key and
/// value projections; its gate and up projections), in one parallel section: one fork and join
/// instead of one per matrix, and the rows of all of them shared out together, so small matrices
/// (SmolLM2's 192-row key and value projections) no longer leave a thread idle or pay a fork of
/// their own. `outs[i]` receives `ws[i] · X` exactly as [`matvec`] would write it.
pub fn matvec_many(
    pool: &KernelPool,
    ws: &[&WeightMatrix<'_>],
    acts: &QuantizedActs,
    outs: &mut [&mut [f32]],
) -> Result<()> {
    if ws.len() != outs.len() || ws.is_empty() || ws.len() > MAX_GROUP {
        return Err(Error::invalid(format!(
            "{} matrices and {} outputs (1..={MAX_GROUP} matrices per group)",
            ws.len(),
            outs.len()
        )));
    }
    let kernels = pool.kernels;
    // Per matrix: its activation view, rows, and output pointer.
    let mut jobs: [Option<(crate::kernels::acts::ActsView<'_>, usize, OutPtr)>; MAX_GROUP] =
        [None; MAX_GROUP];
    let (mut work, mut total_rows) = (0usize, 0usize);
    for (m, (w, out)) in ws.iter().zip(outs.iter_mut()).enumerate() {
        let view = acts.view(w.act_kind())?;
        let (rows, b) = (w.rows(), view.b);
        if view.n != w.n() {
            return Err(Error::invalid(format!(
                "activations have {} values, the matrix rows {}",
                view.n,
                w.n()
            )));
        }
        if out.len() != rows * b {
            return Err(Error::invalid(format!("mat-vec output holds {}, {rows}×{b} needed", out.len())));
        }
        jobs[m] = Some((view, rows, OutPtr(out.as_mut_ptr())));
        work += w.bytes() * (1 + b / 2);
        total_rows += rows;
    }
    // Rows `r0..r1` of matrix `m`, a tile at a time through a stack buffer.
    let run = |m: usize, r0: usize, r1: usize| -> Result<()> {
        let (Some(w), Some(Some((view, rows, ptr)))) = (ws.get(m), jobs.get(m)) else {
            return Err(Error::internal("mat-vec task for a matrix that is not in the group"));
        };
        let (rows, b, ptr) = (*rows, view.b, *ptr);
        let mut tile = [0f32; TILE_ROWS * super::MAX_COLUMNS];
        let mut t0 = r0;
        while t0 < r1 {
            let t1 = (t0 + TILE_ROWS).min(r1);
            let tile = &mut tile[..(t1 - t0) * b];
            kernels.dot_rows_checked(w, t0..t1, view, tile)?;
            // Column by column: each column's slice of the tile is one contiguous run of `out`
            // (row by row, every store would land `rows` floats from the previous one).
            for j in 0..b {
                for (r, vals) in tile.chunks_exact(b).enumerate() {
                    // SAFETY: `j < b` and `t0 + r < rows`, so the index is inside this matrix's
                    // `out` (`rows·b` long, checked above); row ranges given to `run` for one
                    // matrix are disjoint, so no two calls write the same element, and every
                    // `out` is exclusively borrowed by this function until every call has
                    // returned.
                    unsafe { *ptr.at(j * rows + t0 + r) = *vals.get_unchecked(j) };
                }
            }
            t0 = t1;
        }
        Ok(())
    };
    match &pool.pool {
        Some(tp) if work >= pool.min_parallel_work => {
            use rayon::prelude::*;
            // Every matrix in chunks of the size one matrix of all the group's rows would get,
            // large enough that the tasks fit the stack list (each matrix adds at most one
            // partial chunk).
            let fit = total_rows.div_ceil(MAX_TASKS - MAX_GROUP).div_ceil(TILE_ROWS) * TILE_ROWS;
            let chunk = chunk_rows(total_rows, pool.threads).max(fit);
            let mut tasks = [(0usize, 0usize, 0usize); MAX_TASKS];
            let mut count = 0;
            for (m, w) in ws.iter().enumerate() {
                let rows = w.rows();
                let mut r0 = 0;
                while r0 < rows {
                    let r1 = (r0 + chunk).min(rows);
                    let slot =
                        tasks.get_mut(count).ok_or_else(|| Error::internal("too many mat-vec tasks"))?;
                    *slot = (m, r0, r1);
                    count += 1;
                    r0 = r1;
                }
            }
            tp.install(|| tasks[..count].par_iter().try_for_each(|&(m, r0, r1)| run(m, r0, r1)))
        }
        _ => (0..ws.len()).try_for_each(|m| run(m, 0, ws[m].rows())),
    }
}

/// Most matrices [`matvec_many`] takes at once.
pub const MAX_GROUP: usize = 4;

/// Most parallel tasks of one mat-vec section (kept on the stack: a pass allocates nothing).
const MAX_TASKS: usize = 256;

/// Rows per parallel task: about four tasks per thread (so a thread slowed by a noisy neighbour
/// does not hold up the others), whole tiles, and at least one tile.
fn chunk_rows(rows: usize, threads: usize) -> usize {
    let per = rows.div_ceil(threads * 4);
    per.div_ceil(TILE_ROWS).max(1) * TILE_ROWS
}

/// Physical cores available to this process: distinct (package, core) pairs among the online
/// CPUs in `/sys`, capped by [`std::thread::available_parallelism`] (which honours affinity masks
/// and cgroup quotas); just the latter where `/sys` says nothing.
pub fn physical_cores() -> usize {
    let logical = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    match sysfs_physical_cores(Path::new("/sys/devices/system/cpu")) {
        Some(p) if p > 0 => p.min(logical),
        _ => logical,
    }
}

fn sysfs_physical_cores(root: &Path) -> Option<usize> {
    let mut cores = std::collections::HashSet::new();
    for entry in std::fs::read_dir(root).ok()? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(id) = name.to_str().and_then(|s| s.strip_prefix("cpu")) else { continue };
        if id.is_empty() || !id.bytes().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let read = |f: &str| std::fs::read_to_string(entry.path().join(f)).ok().map(|s| s.trim().to_string());
        if read("online").as_deref() == Some("0") {
            continue;
        }
        let (Some(pkg), Some(core)) = (read("topology/physical_package_id"), read("topology/core_id")) else {
            continue;
        };
        cores.insert((pkg, core));
    }
    Some(cores.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_whole_tiles() {
        assert_eq!(chunk_rows(192, 2), 32);
        assert_eq!(chunk_rows(5, 8), TILE_ROWS);
        assert_eq!(chunk_rows(49152, 2) % TILE_ROWS, 0);
    }

    #[test]
    fn physical_cores_is_positive() {
        assert!(physical_cores() >= 1);
    }
}
