//! Training draft heads on the model's own output: a [`Dataset`] of final hidden states and the
//! tokens that followed them (collected by re-running greedy generations through the model with
//! every row's hidden state kept), then cross-entropy over the reduced vocabulary with Adam on
//! minibatches, deterministic from a seed and bounded in time. The output rows `E_V` are
//! dequantized to f32 once and frozen; only the heads' `W1`/`W2` learn.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::model::{ForwardPlan, HeadVocab, KvCache, LogitRows, Model, Workspace, MAX_BATCH};
use crate::sampling::Rng;
use crate::tokenizer::TokenId;

use super::matmul::{matmul_nt, transpose};
use super::{model_identity, silu, DraftHeads};

/// A target that does not exist (past the end of the sequence).
const NONE: u32 = u32::MAX;

/// How to train.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// Number of heads (offsets 1 ..= K after the pending token).
    pub k: usize,
    /// Width of each head's SiLU block.
    pub rank: usize,
    /// Reduced vocabulary (clamped to the model's).
    pub vocab: usize,
    /// Seed of the initialisation and of the minibatch order.
    pub seed: u64,
    /// Passes over the training samples at most.
    pub epochs: usize,
    /// Samples per minibatch.
    pub batch: usize,
    /// Adam's peak learning rate (cosine decay to a tenth over the planned steps).
    pub lr: f32,
    /// Every how many-th sequence is held out for evaluation (0: none).
    pub holdout_every: usize,
    /// Stop after this long (the heads trained so far are kept).
    pub budget: Duration,
    /// Whether the heads also read the pending token's embedding.
    pub token_input: bool,
    /// Decoupled weight decay (AdamW) per step, times the learning rate.
    pub weight_decay: f32,
    /// Train on the model's own distribution at the target position (self-distillation, soft
    /// targets) instead of its greedy token alone.
    pub distill: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            k: 3,
            rank: 128,
            vocab: 8192,
            seed: 0,
            epochs: 4,
            batch: 256,
            lr: 3e-3,
            holdout_every: 10,
            budget: Duration::from_secs(240),
            token_input: true,
            weight_decay: 0.0,
            distill: true,
        }
    }
}

/// What training reports.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct TrainReport {
    /// Training samples and held-out samples.
    pub train_samples: usize,
    pub heldout_samples: usize,
    /// Minibatch steps run (over all heads) and planned.
    pub steps: usize,
    pub planned_steps: usize,
    /// Mean cross-entropy per head over the first and the last epoch's minibatches.
    pub first_loss: Vec<f32>,
    pub last_loss: Vec<f32>,
    /// Held-out top-1 / top-3 agreement per head (targets outside the reduced vocabulary count
    /// as misses).
    pub alpha_top1: Vec<f32>,
    pub alpha_top3: Vec<f32>,
    /// Top-1 agreement per head on (up to 2,000) training samples: far above the held-out
    /// figure means the heads memorised their data.
    pub train_top1: Vec<f32>,
    /// Seconds spent.
    pub seconds: f64,
}

/// Hidden states and what followed them.
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    /// Hidden width.
    pub dim: usize,
    /// Targets kept per sample.
    pub k: usize,
    /// `(n, dim)`: the final hidden state that predicted token `t + 1`.
    pub hidden: Vec<f32>,
    /// `(n, k)`: token `t + 1 + j` for head `j = 1 ..= k` (`u32::MAX` past the end).
    pub targets: Vec<u32>,
    /// `(n)`: token `t + 1`, the pending token when drafting from this state.
    pub pending: Vec<u32>,
    /// `(n)`: the sequence each sample came from.
    pub sequence: Vec<u32>,
    sequences: u32,
}

impl Dataset {
    /// An empty set for hidden states of `dim` and `k` targets per sample.
    pub fn new(dim: usize, k: usize) -> Dataset {
        Dataset { dim, k, ..Default::default() }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.sequence.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.sequence.is_empty()
    }

    /// Add the positions `first ..` of `tokens` (a whole context from position 0, e.g. a prompt
    /// and the model's greedy reply to it, `first` the prompt's last position): the sequence is
    /// run through `model` in batches with every row's hidden state kept (batch invariance makes
    /// these the states decoding saw). `cache` is cleared first.
    pub fn add_sequence(
        &mut self,
        model: &Model,
        ws: &mut Workspace,
        cache: &mut KvCache,
        tokens: &[TokenId],
        first: usize,
    ) -> Result<()> {
        if model.config().dim != self.dim {
            return Err(Error::invalid("the dataset was made for a model of another width"));
        }
        if tokens.len() > cache.capacity() {
            return Err(Error::invalid(format!(
                "a sequence of {} tokens does not fit a cache of {}",
                tokens.len(),
                cache.capacity()
            )));
        }
        cache.clear();
        let seq = self.sequences;
        for (c, part) in tokens.chunks(MAX_BATCH).enumerate() {
            let start = c * MAX_BATCH;
            // Only the hidden states are kept: one head row keeps them without the head's cost.
            let plan = ForwardPlan::at(start).logits(LogitRows::All).vocab(HeadVocab::Reduced { prefix: 1 });
            model.forward(ws, cache, part, &plan)?;
            for i in 0..part.len() {
                let p = start + i;
                // Head 1's target is token p + 2: nothing to learn without it.
                if p < first || p + 2 >= tokens.len() {
                    continue;
                }
                let h = ws.hidden(i).ok_or_else(|| Error::internal("the pass kept no hidden state"))?;
                self.hidden.extend_from_slice(h);
                self.targets.extend((1..=self.k).map(|j| tokens.get(p + 1 + j).copied().unwrap_or(NONE)));
                self.pending.push(tokens[p + 1]);
                self.sequence.push(seq);
            }
        }
        self.sequences += 1;
        Ok(())
    }
}

/// The first `v` rows of the model's output matrix, dequantized: `(v, dim)`.
pub fn output_rows_f32(model: &Model, v: usize) -> Result<Vec<f32>> {
    let w = model.output_rows(v)?;
    let dim = model.config().dim;
    let name = if model.tied_embeddings() { "token_embd.weight" } else { "output.weight" };
    let file = model.file();
    let info = file.require_tensor(name)?;
    let data = file.tensor_data(info);
    let rb = w.row_bytes();
    let mut out = vec![0f32; v * dim];
    for (r, row) in out.chunks_exact_mut(dim).enumerate() {
        let bytes = data.get(r * rb..(r + 1) * rb).ok_or_else(|| Error::internal("output rows"))?;
        crate::quant::dequantize(w.ty(), bytes, row)?;
    }
    Ok(out)
}

/// Softmax of `row` in place.
pub(crate) fn softmax(row: &mut [f32]) {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let mut sum = 0f32;
    row.iter_mut().for_each(|x| {
        *x = (*x - max).exp();
        sum += *x;
    });
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|x| *x *= inv);
}

/// Adam state of one parameter tensor.
pub(crate) struct Adam {
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Adam {
    pub(crate) fn new(n: usize) -> Adam {
        Adam { m: vec![0.0; n], v: vec![0.0; n] }
    }

    pub(crate) fn step(&mut self, w: &mut [f32], g: &[f32], lr: f32, t: i32, wd: f32) {
        let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
        let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        for (((w, &g), m), v) in w.iter_mut().zip(g).zip(&mut self.m).zip(&mut self.v) {
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            *w -= lr * ((*m / c1) / ((*v / c2).sqrt() + eps) + wd * *w);
        }
    }
}

/// Buffers of one minibatch through one head.
struct Pass {
    /// Head inputs `(B, inputs)`: `h`, or `[h; e]`.
    x: Vec<f32>,
    h: Vec<f32>,
    z: Vec<f32>,
    a: Vec<f32>,
    hp: Vec<f32>,
    logits: Vec<f32>,
}

impl Pass {
    fn new(batch: usize, dim: usize, n_in: usize, rank: usize, v: usize) -> Pass {
        Pass {
            x: vec![0.0; batch * n_in],
            h: vec![0.0; batch * dim],
            z: vec![0.0; batch * rank],
            a: vec![0.0; batch * rank],
            hp: vec![0.0; batch * dim],
            logits: vec![0.0; batch * v],
        }
    }

    /// Load samples `idx` of `data` as the minibatch's inputs (`x` and `h`).
    fn load(
        &mut self,
        model: &Model,
        heads: &DraftHeads,
        data: &Dataset,
        idx: impl Iterator<Item = usize>,
    ) -> Result<()> {
        let (dim, n_in) = (heads.dim, heads.inputs());
        for (r, i) in idx.enumerate() {
            let h = &data.hidden[i * dim..(i + 1) * dim];
            self.h[r * dim..(r + 1) * dim].copy_from_slice(h);
            let x = &mut self.x[r * n_in..(r + 1) * n_in];
            x[..dim].copy_from_slice(h);
            if heads.token_input {
                super::token_embedding(model, data.pending[i], &mut x[dim..])?;
            }
        }
        Ok(())
    }

    /// Forward `b` rows (already loaded) through head `j`: fills `z`, `a`, `hp`, `logits`.
    fn forward(&mut self, heads: &DraftHeads, j: usize, e: &[f32], b: usize) {
        let (dim, rank, v, n_in) = (heads.dim, heads.rank, heads.vocab, heads.inputs());
        let w1 = &heads.w1[j * rank * n_in..(j + 1) * rank * n_in];
        let w2 = &heads.w2[j * dim * rank..(j + 1) * dim * rank];
        let (h, z, a, hp) =
            (&self.h[..b * dim], &mut self.z[..b * rank], &mut self.a[..b * rank], &mut self.hp[..b * dim]);
        matmul_nt(&self.x[..b * n_in], w1, n_in, z, rank);
        a.iter_mut().zip(z.iter()).for_each(|(a, &z)| *a = silu(z));
        matmul_nt(a, w2, rank, hp, dim);
        hp.iter_mut().zip(h).for_each(|(o, &x)| *o += x);
        matmul_nt(hp, e, dim, &mut self.logits[..b * v], v);
    }
}

/// Train heads for `model` on `data` (held-out sequences: every `cfg.holdout_every`-th).
/// `progress(step, planned, loss)` is called after each minibatch step.
pub fn train(
    model: &Model,
    data: &Dataset,
    cfg: &TrainConfig,
    progress: &mut dyn FnMut(usize, usize, f32),
) -> Result<(DraftHeads, TrainReport)> {
    let t0 = Instant::now();
    let dim = model.config().dim;
    let v = cfg.vocab.min(model.config().vocab_size);
    if data.dim != dim || cfg.k == 0 || cfg.k > data.k || cfg.rank == 0 || cfg.batch == 0 {
        return Err(Error::invalid(format!(
            "cannot train {} heads of rank {} on a dataset of width {} with {} targets",
            cfg.k, cfg.rank, data.dim, data.k
        )));
    }
    let (k, rank, batch) = (cfg.k, cfg.rank, cfg.batch);
    let held = |s: u32| cfg.holdout_every > 0 && (s as usize) % cfg.holdout_every == cfg.holdout_every - 1;
    let (heldout, mut train_idx): (Vec<usize>, Vec<usize>) =
        (0..data.len()).partition(|&i| held(data.sequence[i]));
    if train_idx.is_empty() {
        return Err(Error::invalid("no training samples: generate more calibration data"));
    }
    let e = output_rows_f32(model, v)?;
    let mut et = vec![0f32; v * dim];
    transpose(&e, v, dim, &mut et);

    if data.pending.len() != data.len() {
        return Err(Error::invalid("the dataset has no pending tokens"));
    }
    let mut heads = DraftHeads::init(model_identity(model), dim, k, rank, v, cfg.seed, cfg.token_input);
    let n_in = heads.inputs();
    let mut opt: Vec<(Adam, Adam)> =
        (0..k).map(|_| (Adam::new(rank * n_in), Adam::new(dim * rank))).collect();
    let mut pass = Pass::new(batch, dim, n_in, rank, v);
    let (mut g_hp, mut g_hpt, mut at, mut g_a, mut w2t) = (
        vec![0f32; batch * dim],
        vec![0f32; batch * dim],
        vec![0f32; batch * rank],
        vec![0f32; batch * rank],
        vec![0f32; dim * rank],
    );
    let (mut g_zt, mut xt) = (vec![0f32; batch * rank], vec![0f32; batch * n_in]);
    let (mut g_w1, mut g_w2) = (vec![0f32; rank * n_in], vec![0f32; dim * rank]);
    let mut rows: Vec<(usize, u32)> = Vec::with_capacity(batch);
    // Distillation targets: teacher hidden states `(B, dim)` and their distributions `(B, V)`.
    let (mut q_h, mut q) =
        if cfg.distill { (vec![0f32; batch * dim], vec![0f32; batch * v]) } else { (Vec::new(), Vec::new()) };

    let per_epoch = train_idx.len().div_ceil(batch) * k;
    let planned = per_epoch * cfg.epochs.max(1);
    let mut report = TrainReport {
        train_samples: train_idx.len(),
        heldout_samples: heldout.len(),
        planned_steps: planned,
        first_loss: vec![0.0; k],
        last_loss: vec![0.0; k],
        ..Default::default()
    };
    let mut rng = Rng::new(cfg.seed ^ 0x05ee_d0f4_ead5);
    let mut step = 0usize;
    'epochs: for epoch in 0..cfg.epochs.max(1) {
        // Fisher–Yates with the seeded generator: the same order for the same seed.
        for i in (1..train_idx.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            train_idx.swap(i, j);
        }
        let mut sums = vec![(0f64, 0usize); k];
        for chunk in train_idx.chunks(batch) {
            for j in 0..k {
                if t0.elapsed() > cfg.budget {
                    break 'epochs;
                }
                rows.clear();
                // With distillation the target is the model's own distribution at the row that
                // predicted the target token (sample `i + j + 1` of the same sequence).
                let teacher = |i: usize| {
                    let t = i + j + 1;
                    (t < data.len() && data.sequence[t] == data.sequence[i]).then_some(t)
                };
                rows.extend(
                    chunk
                        .iter()
                        .map(|&i| (i, data.targets[i * data.k + j]))
                        .filter(|&(i, y)| (y as usize) < v && (!cfg.distill || teacher(i).is_some())),
                );
                let b = rows.len();
                if b == 0 {
                    continue;
                }
                pass.load(model, &heads, data, rows.iter().map(|&(i, _)| i))?;
                pass.forward(&heads, j, &e, b);
                if cfg.distill {
                    for (r, &(i, _)) in rows.iter().enumerate() {
                        let t = teacher(i).ok_or_else(|| Error::internal("teacher row"))?;
                        q_h[r * dim..(r + 1) * dim].copy_from_slice(&data.hidden[t * dim..(t + 1) * dim]);
                    }
                    matmul_nt(&q_h[..b * dim], &e, dim, &mut q[..b * v], v);
                    for row in q[..b * v].chunks_exact_mut(v) {
                        softmax(row);
                    }
                }
                // Softmax cross-entropy; the logits become the gradient (p − target) / b.
                let mut loss = 0f64;
                for (r, &(_, y)) in rows.iter().enumerate() {
                    let row = &mut pass.logits[r * v..(r + 1) * v];
                    softmax(row);
                    let scale = 1.0 / b as f32;
                    if cfg.distill {
                        let qr = &q[r * v..(r + 1) * v];
                        for (x, &t) in row.iter_mut().zip(qr) {
                            loss -= (t * (x.max(1e-30)).ln()) as f64;
                            *x = (*x - t) * scale;
                        }
                    } else {
                        loss -= (row[y as usize].max(1e-30) as f64).ln();
                        row.iter_mut().for_each(|x| *x *= scale);
                        row[y as usize] -= scale;
                    }
                }
                let loss = (loss / b as f64) as f32;
                // Backward: dh' = G · E, then through W2, SiLU and W1.
                let (g_hp, g_hpt) = (&mut g_hp[..b * dim], &mut g_hpt[..b * dim]);
                matmul_nt(&pass.logits[..b * v], &et, v, g_hp, dim);
                let w2 = &heads.w2[j * dim * rank..(j + 1) * dim * rank];
                transpose(g_hp, b, dim, g_hpt);
                transpose(&pass.a[..b * rank], b, rank, &mut at[..b * rank]);
                matmul_nt(g_hpt, &at[..b * rank], b, &mut g_w2, rank);
                transpose(w2, dim, rank, &mut w2t);
                let g_a = &mut g_a[..b * rank];
                matmul_nt(g_hp, &w2t, dim, g_a, rank);
                for (g, &z) in g_a.iter_mut().zip(&pass.z[..b * rank]) {
                    let s = 1.0 / (1.0 + (-z).exp());
                    *g *= s * (1.0 + z * (1.0 - s));
                }
                transpose(g_a, b, rank, &mut g_zt[..b * rank]);
                transpose(&pass.x[..b * n_in], b, n_in, &mut xt[..b * n_in]);
                matmul_nt(&g_zt[..b * rank], &xt[..b * n_in], b, &mut g_w1, n_in);
                step += 1;
                let progress_frac = step as f32 / planned as f32;
                let lr =
                    cfg.lr * (0.1 + 0.45 * (1.0 + (std::f32::consts::PI * progress_frac.min(1.0)).cos()));
                let t = (step / k.max(1) + 1) as i32;
                let (o1, o2) = &mut opt[j];
                o1.step(
                    &mut heads.w1[j * rank * n_in..(j + 1) * rank * n_in],
                    &g_w1,
                    lr,
                    t,
                    cfg.weight_decay,
                );
                o2.step(&mut heads.w2[j * dim * rank..(j + 1) * dim * rank], &g_w2, lr, t, cfg.weight_decay);
                sums[j].0 += loss as f64;
                sums[j].1 += 1;
                progress(step, planned, loss);
            }
        }
        for (j, &(s, n)) in sums.iter().enumerate() {
            let mean = if n > 0 { (s / n as f64) as f32 } else { 0.0 };
            if epoch == 0 {
                report.first_loss[j] = mean;
            }
            report.last_loss[j] = mean;
        }
    }
    report.steps = step;
    let (a1, a3) = evaluate(model, &heads, data, &heldout, &e, &mut pass)?;
    heads.alpha_top1 = a1.clone();
    heads.alpha_top3 = a3.clone();
    report.alpha_top1 = a1;
    report.alpha_top3 = a3;
    let seen = &train_idx[..train_idx.len().min(2000)];
    report.train_top1 = evaluate(model, &heads, data, seen, &e, &mut pass)?.0;
    report.seconds = t0.elapsed().as_secs_f64();
    Ok((heads, report))
}

/// Top-1 and top-3 agreement of every head with the targets of the samples `idx`.
fn evaluate(
    model: &Model,
    heads: &DraftHeads,
    data: &Dataset,
    idx: &[usize],
    e: &[f32],
    pass: &mut Pass,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let (dim, v, k) = (heads.dim, heads.vocab, heads.k);
    let batch = pass.h.len() / dim;
    let (mut top1, mut top3, mut total) = (vec![0usize; k], vec![0usize; k], vec![0usize; k]);
    for chunk in idx.chunks(batch) {
        pass.load(model, heads, data, chunk.iter().copied())?;
        for j in 0..k {
            pass.forward(heads, j, e, chunk.len());
            for (r, &i) in chunk.iter().enumerate() {
                let y = data.targets[i * data.k + j];
                if y == NONE {
                    continue;
                }
                total[j] += 1;
                if (y as usize) >= v {
                    continue;
                }
                let row = &pass.logits[r * v..(r + 1) * v];
                let target = row[y as usize];
                // Rank of the target: how many logits beat it (ties go to the lower id, as argmax).
                let above = row
                    .iter()
                    .enumerate()
                    .filter(|&(t, &x)| x > target || (x == target && t < y as usize))
                    .count();
                top1[j] += usize::from(above == 0);
                top3[j] += usize::from(above < 3);
            }
        }
    }
    let frac = |n: &[usize]| {
        n.iter().zip(&total).map(|(&a, &t)| if t > 0 { a as f32 / t as f32 } else { 0.0 }).collect()
    };
    Ok((frac(&top1), frac(&top3)))
}
