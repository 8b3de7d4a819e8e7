//! Distilling the eagle drafter on the device: from a heads [`Dataset`] (final hidden states of
//! teacher-forced passes over the model's own greedy replies, and the tokens that followed), the
//! network learns to map `[h_t; e(x_{t+1})]` to `h_{t+1}` with
//! `SmoothL1(ĥ, h) + w·CE(softmax(E_V ĥ), softmax(E_V h))` (EAGLE's loss), small uniform noise
//! on the input feature, and optionally a second, unrolled step fed its own (detached)
//! prediction so that later draft positions see the kind of input they get when drafting.
//! Adam on minibatches, deterministic from the seed, bounded in time. Held-out acceptance of
//! the first and second drafted token is measured by drafting in feature space.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::model::Model;
use crate::sampling::Rng;

use super::super::heads::matmul::{matmul_nt, transpose};
use super::super::heads::train::{output_rows_f32, softmax, Adam};
use super::super::heads::{model_identity, silu, token_embedding, Dataset};
use super::EagleNet;

/// How to train.
#[derive(Clone, Debug)]
pub struct EagleConfig {
    /// Width of the SiLU block.
    pub rank: usize,
    /// Reduced vocabulary (clamped to the model's).
    pub vocab: usize,
    /// Seed of the initialisation, the noise and the minibatch order.
    pub seed: u64,
    /// Passes over the training samples at most.
    pub epochs: usize,
    /// Samples per minibatch.
    pub batch: usize,
    /// Adam's peak learning rate (cosine decay to a tenth over the planned steps).
    pub lr: f32,
    /// Every how many-th sequence is held out for evaluation (0: none).
    pub holdout_every: usize,
    /// Only sequences below this index may be held out (the model's replies, added first;
    /// sequences of other text after them always train).
    pub holdout_below: u32,
    /// Stop after this long (the network trained so far is kept).
    pub budget: Duration,
    /// Weight of the distillation cross-entropy against the feature regression.
    pub ce_weight: f32,
    /// Uniform noise on the input feature, relative to its RMS.
    pub noise: f32,
    /// Also train a second step fed the first step's prediction.
    pub unroll: bool,
}

impl Default for EagleConfig {
    fn default() -> Self {
        EagleConfig {
            rank: 256,
            vocab: 8192,
            seed: 0,
            epochs: 4,
            batch: 128,
            lr: 1e-3,
            holdout_every: 10,
            holdout_below: u32::MAX,
            budget: Duration::from_secs(240),
            ce_weight: 0.1,
            noise: 0.05,
            unroll: true,
        }
    }
}

/// What training reports.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct EagleReport {
    /// Samples from the user's data files (`tune --data`).
    pub file_samples: usize,
    /// Training and held-out samples (positions with a next feature).
    pub train_samples: usize,
    pub heldout_samples: usize,
    /// Minibatch steps run and planned.
    pub steps: usize,
    pub planned_steps: usize,
    /// Mean loss (regression + weighted cross-entropy) over the first and the last epoch.
    pub first_loss: f32,
    pub last_loss: f32,
    /// Held-out acceptance: the first drafted token, and the second given the first.
    pub alpha_first: f32,
    pub alpha_second: f32,
    /// First-token acceptance on (up to 2,000) training samples (memorisation check).
    pub train_first: f32,
    /// Weights, the network's size.
    pub params: usize,
    /// Seconds spent.
    pub seconds: f64,
}

/// The sample after `i` in the same sequence (its feature is `i`'s regression target).
fn next(data: &Dataset, i: usize) -> Option<usize> {
    (i + 1 < data.len() && data.sequence[i + 1] == data.sequence[i]).then_some(i + 1)
}

/// Buffers of one minibatch through the network, forward and backward.
struct Batch {
    x: Vec<f32>,
    u: Vec<f32>,
    z: Vec<f32>,
    a: Vec<f32>,
    h: Vec<f32>,
    logits: Vec<f32>,
    target: Vec<f32>,
    q: Vec<f32>,
}

impl Batch {
    fn new(b: usize, d: usize, r: usize, v: usize) -> Batch {
        Batch {
            x: vec![0.0; b * 2 * d],
            u: vec![0.0; b * d],
            z: vec![0.0; b * r],
            a: vec![0.0; b * r],
            h: vec![0.0; b * d],
            logits: vec![0.0; b * v],
            target: vec![0.0; b * d],
            q: vec![0.0; b * v],
        }
    }

    /// Forward `b` loaded rows: `u`, `z`, `a`, `h` (the predicted features) and the logits.
    fn forward(&mut self, net: &EagleNet, e: &[f32], b: usize) {
        let (d, r, v) = (net.dim, net.rank, net.vocab);
        matmul_nt(&self.x[..b * 2 * d], &net.wfc, 2 * d, &mut self.u[..b * d], d);
        matmul_nt(&self.u[..b * d], &net.w1, d, &mut self.z[..b * r], r);
        self.a[..b * r].iter_mut().zip(&self.z[..b * r]).for_each(|(a, &z)| *a = silu(z));
        matmul_nt(&self.a[..b * r], &net.w2, r, &mut self.h[..b * d], d);
        self.h[..b * d].iter_mut().zip(&self.u[..b * d]).for_each(|(h, &u)| *h += u);
        matmul_nt(&self.h[..b * d], e, d, &mut self.logits[..b * v], v);
    }
}

/// Gradients and transposition scratch.
struct Grads {
    g_h: Vec<f32>,
    g_ht: Vec<f32>,
    at: Vec<f32>,
    g_a: Vec<f32>,
    g_zt: Vec<f32>,
    ut: Vec<f32>,
    xt: Vec<f32>,
    g_ut: Vec<f32>,
    tmp: Vec<f32>,
    w2t: Vec<f32>,
    w1t: Vec<f32>,
    g_wfc: Vec<f32>,
    g_w1: Vec<f32>,
    g_w2: Vec<f32>,
}

/// Train a drafter for `model` on `data` (held out: every `cfg.holdout_every`-th sequence).
/// `progress(step, planned, loss)` is called after each minibatch step.
pub fn train(
    model: &Model,
    data: &Dataset,
    cfg: &EagleConfig,
    progress: &mut dyn FnMut(usize, usize, f32),
) -> Result<(EagleNet, EagleReport)> {
    let t0 = Instant::now();
    let d = model.config().dim;
    let v = cfg.vocab.min(model.config().vocab_size);
    if data.dim != d || data.k < 2 || cfg.rank == 0 || cfg.batch == 0 || data.pending.len() != data.len() {
        return Err(Error::invalid(format!(
            "cannot train an eagle drafter of rank {} on a dataset of width {} with {} targets",
            cfg.rank, data.dim, data.k
        )));
    }
    let (r, bsz) = (cfg.rank, cfg.batch);
    let held = |s: u32| {
        cfg.holdout_every > 0
            && s < cfg.holdout_below
            && (s as usize) % cfg.holdout_every == cfg.holdout_every - 1
    };
    let usable: Vec<usize> = (0..data.len()).filter(|&i| next(data, i).is_some()).collect();
    let (heldout, mut train_idx): (Vec<usize>, Vec<usize>) =
        usable.into_iter().partition(|&i| held(data.sequence[i]));
    if train_idx.is_empty() {
        return Err(Error::invalid("no training samples: generate more calibration data"));
    }
    let e = output_rows_f32(model, v)?;
    let mut et = vec![0f32; v * d];
    transpose(&e, v, d, &mut et);
    let mut net = EagleNet::init(model_identity(model), d, r, v, cfg.seed);
    let mut opt = [Adam::new(net.wfc.len()), Adam::new(net.w1.len()), Adam::new(net.w2.len())];
    let mut bt = Batch::new(bsz, d, r, v);
    let mut g = Grads {
        g_h: vec![0.0; bsz * d],
        g_ht: vec![0.0; bsz * d],
        at: vec![0.0; bsz * r],
        g_a: vec![0.0; bsz * r],
        g_zt: vec![0.0; bsz * r],
        ut: vec![0.0; bsz * d],
        xt: vec![0.0; bsz * 2 * d],
        g_ut: vec![0.0; bsz * d],
        tmp: vec![0.0; bsz * d],
        w2t: vec![0.0; d * r],
        w1t: vec![0.0; d * r],
        g_wfc: vec![0.0; d * 2 * d],
        g_w1: vec![0.0; r * d],
        g_w2: vec![0.0; d * r],
    };
    let steps_per_batch = 1 + usize::from(cfg.unroll);
    let planned = train_idx.len().div_ceil(bsz) * cfg.epochs.max(1) * steps_per_batch;
    let mut report = EagleReport {
        file_samples: 0,
        train_samples: train_idx.len(),
        heldout_samples: heldout.len(),
        planned_steps: planned,
        params: net.params(),
        ..Default::default()
    };
    let mut rng = Rng::new(cfg.seed ^ 0x0ea9_1e5e_ed00);
    let mut step = 0usize;
    // Second-step inputs: (sample, predicted feature) of the rows whose next sample has a next.
    let mut second: Vec<(usize, Vec<f32>)> = Vec::new();
    'epochs: for epoch in 0..cfg.epochs.max(1) {
        for i in (1..train_idx.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            train_idx.swap(i, j);
        }
        let (mut sum, mut n) = (0f64, 0usize);
        for chunk in train_idx.chunks(bsz) {
            if t0.elapsed() > cfg.budget {
                break 'epochs;
            }
            // Step 1: teacher features in (with noise), the next features out.
            let b = chunk.len();
            for (row, &i) in chunk.iter().enumerate() {
                let h = &data.hidden[i * d..(i + 1) * d];
                let rms = (h.iter().map(|x| x * x).sum::<f32>() / d as f32).sqrt();
                let x = &mut bt.x[row * 2 * d..(row + 1) * 2 * d];
                for (xv, &hv) in x[..d].iter_mut().zip(h) {
                    *xv = hv + cfg.noise * rms * (2.0 * rng.next_f64() as f32 - 1.0);
                }
                token_embedding(model, data.pending[i], &mut x[d..])?;
                let t = next(data, i).ok_or_else(|| Error::internal("eagle sample without a next"))?;
                bt.target[row * d..(row + 1) * d].copy_from_slice(&data.hidden[t * d..(t + 1) * d]);
            }
            let loss = train_step(&mut net, &mut opt, &mut bt, &mut g, &e, &et, cfg, b, step, planned);
            step += 1;
            sum += loss as f64;
            n += 1;
            progress(step, planned, loss);
            if !cfg.unroll {
                continue;
            }
            // Step 2: the step-1 predictions (detached) in, the features after the next out.
            second.clear();
            for (row, &i) in chunk.iter().enumerate() {
                if let Some(t) = next(data, i).filter(|&t| next(data, t).is_some()) {
                    second.push((t, bt.h[row * d..(row + 1) * d].to_vec()));
                }
            }
            let b2 = second.len();
            if b2 == 0 {
                continue;
            }
            for (row, (t, h)) in second.iter().enumerate() {
                let x = &mut bt.x[row * 2 * d..(row + 1) * 2 * d];
                x[..d].copy_from_slice(h);
                token_embedding(model, data.pending[*t], &mut x[d..])?;
                let t2 = t + 1;
                bt.target[row * d..(row + 1) * d].copy_from_slice(&data.hidden[t2 * d..(t2 + 1) * d]);
            }
            let loss = train_step(&mut net, &mut opt, &mut bt, &mut g, &e, &et, cfg, b2, step, planned);
            step += 1;
            progress(step, planned, loss);
        }
        let mean = if n > 0 { (sum / n as f64) as f32 } else { 0.0 };
        if epoch == 0 {
            report.first_loss = mean;
        }
        report.last_loss = mean;
    }
    report.steps = step;
    let (a1, a2) = evaluate(model, &net, data, &heldout, &e, &mut bt)?;
    net.alpha = [a1, a2];
    report.alpha_first = a1;
    report.alpha_second = a2;
    report.train_first = evaluate(model, &net, data, &train_idx[..train_idx.len().min(2000)], &e, &mut bt)?.0;
    report.seconds = t0.elapsed().as_secs_f64();
    Ok((net, report))
}

/// One Adam step on `b` loaded rows (`x`, `target`); returns the loss.
#[allow(clippy::too_many_arguments)]
fn train_step(
    net: &mut EagleNet,
    opt: &mut [Adam; 3],
    bt: &mut Batch,
    g: &mut Grads,
    e: &[f32],
    et: &[f32],
    cfg: &EagleConfig,
    b: usize,
    step: usize,
    planned: usize,
) -> f32 {
    let (d, r, v) = (net.dim, net.rank, net.vocab);
    bt.forward(net, e, b);
    // The teacher's distribution over the reduced vocabulary.
    matmul_nt(&bt.target[..b * d], e, d, &mut bt.q[..b * v], v);
    let (mut ce, mut reg) = (0f64, 0f64);
    let w = cfg.ce_weight / b as f32;
    for (row, q) in bt.logits[..b * v].chunks_exact_mut(v).zip(bt.q[..b * v].chunks_exact_mut(v)) {
        softmax(row);
        softmax(q);
        for (p, &t) in row.iter_mut().zip(q.iter()) {
            ce -= (t * p.max(1e-30).ln()) as f64;
            *p = (*p - t) * w;
        }
    }
    // dL/dĥ: the cross-entropy's through E, plus SmoothL1's (mean over all elements).
    let g_h = &mut g.g_h[..b * d];
    matmul_nt(&bt.logits[..b * v], et, v, g_h, d);
    let inv = 1.0 / (b * d) as f32;
    for ((gv, &h), &t) in g_h.iter_mut().zip(&bt.h[..b * d]).zip(&bt.target[..b * d]) {
        let diff = h - t;
        reg += (if diff.abs() < 1.0 { 0.5 * diff * diff } else { diff.abs() - 0.5 } * inv) as f64;
        *gv += diff.clamp(-1.0, 1.0) * inv;
    }
    // W2: g_W2 = g_hᵀ · a.
    transpose(g_h, b, d, &mut g.g_ht[..b * d]);
    transpose(&bt.a[..b * r], b, r, &mut g.at[..b * r]);
    matmul_nt(&g.g_ht[..b * d], &g.at[..b * r], b, &mut g.g_w2, r);
    // Through W2 and SiLU.
    transpose(&net.w2, d, r, &mut g.w2t);
    let g_a = &mut g.g_a[..b * r];
    matmul_nt(g_h, &g.w2t, d, g_a, r);
    for (gv, &z) in g_a.iter_mut().zip(&bt.z[..b * r]) {
        let s = 1.0 / (1.0 + (-z).exp());
        *gv *= s * (1.0 + z * (1.0 - s));
    }
    // W1: g_W1 = g_zᵀ · u; g_u = g_h + g_z · W1.
    transpose(g_a, b, r, &mut g.g_zt[..b * r]);
    transpose(&bt.u[..b * d], b, d, &mut g.ut[..b * d]);
    matmul_nt(&g.g_zt[..b * r], &g.ut[..b * d], b, &mut g.g_w1, d);
    transpose(&net.w1, r, d, &mut g.w1t);
    matmul_nt(g_a, &g.w1t, r, &mut g.tmp[..b * d], d);
    g_h.iter_mut().zip(&g.tmp[..b * d]).for_each(|(gv, &t)| *gv += t);
    // W_fc: g_Wfc = g_uᵀ · x.
    transpose(g_h, b, d, &mut g.g_ut[..b * d]);
    transpose(&bt.x[..b * 2 * d], b, 2 * d, &mut g.xt[..b * 2 * d]);
    matmul_nt(&g.g_ut[..b * d], &g.xt[..b * 2 * d], b, &mut g.g_wfc, 2 * d);
    let frac = (step + 1) as f32 / planned.max(1) as f32;
    let lr = cfg.lr * (0.1 + 0.45 * (1.0 + (std::f32::consts::PI * frac.min(1.0)).cos()));
    let t = (step + 1) as i32;
    opt[0].step(&mut net.wfc, &g.g_wfc, lr, t, 0.0);
    opt[1].step(&mut net.w1, &g.g_w1, lr, t, 0.0);
    opt[2].step(&mut net.w2, &g.g_w2, lr, t, 0.0);
    (reg + cfg.ce_weight as f64 * ce / b as f64) as f32
}

/// Index of the largest entry (ties to the lower index, as greedy decoding).
fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in row.iter().enumerate() {
        if x > row[best] {
            best = i;
        }
    }
    best
}

/// Held-out acceptance over the samples `idx`, drafting in feature space: the first token from
/// `net(h, e(pending))`, the second from `net(ĥ, e(first target))`; the second counts only where
/// the first was accepted. Targets outside the reduced vocabulary are misses.
fn evaluate(
    model: &Model,
    net: &EagleNet,
    data: &Dataset,
    idx: &[usize],
    e: &[f32],
    bt: &mut Batch,
) -> Result<(f32, f32)> {
    let (d, v) = (net.dim, net.vocab);
    let bsz = bt.h.len() / d;
    let (mut first, mut total, mut second, mut tried) = (0usize, 0usize, 0usize, 0usize);
    let mut ok = vec![false; bsz];
    for chunk in idx.chunks(bsz) {
        for (row, &i) in chunk.iter().enumerate() {
            let x = &mut bt.x[row * 2 * d..(row + 1) * 2 * d];
            x[..d].copy_from_slice(&data.hidden[i * d..(i + 1) * d]);
            token_embedding(model, data.pending[i], &mut x[d..])?;
        }
        bt.forward(net, e, chunk.len());
        for (row, &i) in chunk.iter().enumerate() {
            let y = data.targets[i * data.k] as usize;
            total += 1;
            ok[row] = y < v && argmax(&bt.logits[row * v..(row + 1) * v]) == y;
            first += usize::from(ok[row]);
        }
        // Second step from the predicted features, fed the (accepted) first token.
        let b = chunk.len();
        let hs = bt.h[..b * d].to_vec();
        for (row, &i) in chunk.iter().enumerate() {
            let x = &mut bt.x[row * 2 * d..(row + 1) * 2 * d];
            x[..d].copy_from_slice(&hs[row * d..(row + 1) * d]);
            let y = data.targets[i * data.k];
            token_embedding(
                model,
                if (y as usize) < model.config().vocab_size { y } else { 0 },
                &mut x[d..],
            )?;
        }
        bt.forward(net, e, b);
        for (row, &i) in chunk.iter().enumerate() {
            let y2 = data.targets[i * data.k + 1] as usize;
            if !ok[row] || y2 == u32::MAX as usize {
                continue;
            }
            tried += 1;
            second += usize::from(y2 < v && argmax(&bt.logits[row * v..(row + 1) * v]) == y2);
        }
    }
    let frac = |a: usize, n: usize| if n > 0 { a as f32 / n as f32 } else { 0.0 };
    Ok((frac(first, total), frac(second, tried)))
}
