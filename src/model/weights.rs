//! The model's tensors, found and shape-checked once at load, then borrowed from the map on use.
//!
//! Loading walks the tensor table (GGUF names: `token_embd`, `blk.N.attn_q`, …) and records, per
//! tensor, its index and checked shape; no tensor data is read. A forward pass turns each record
//! into a [`WeightMatrix`] or an `&[f32]` over the mapped bytes (O(1), no copy), so the model
//! holds no borrowed state and a session can own the file and the model side by side.

use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::kernels::{ActKind, WeightMatrix};
use crate::quant::{as_blocks, GgmlType};

use super::arch::ArchSpec;
use super::config::ModelConfig;
use super::repack::Repacked;

/// A weight matrix: `rows` outputs over `n` inputs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mat {
    tensor: usize,
    pub rows: usize,
    pub n: usize,
    pub act: ActKind,
}

impl Mat {
    /// Index of the tensor in the file's table.
    pub fn tensor(&self) -> usize {
        self.tensor
    }
}

/// An f32 vector (a norm weight or a bias), or a shifted copy when the architecture stores
/// norm weights as offsets.
#[derive(Clone, Debug)]
pub(crate) enum Vector {
    Mapped { tensor: usize, len: usize },
    Owned(Vec<f32>),
}

/// The tensors of one transformer block.
#[derive(Clone, Debug)]
pub(crate) struct LayerWeights {
    /// `(dim)`
    pub attn_norm: Vector,
    /// `(n_heads·head_dim, dim)`
    pub wq: Mat,
    /// `(n_kv_heads·head_dim, dim)`
    pub wk: Mat,
    /// `(n_kv_heads·head_dim_v, dim)`
    pub wv: Mat,
    /// `(dim, n_heads·head_dim_v)`
    pub wo: Mat,
    /// Optional q/k/v biases: `(n_heads·head_dim)`, `(n_kv_heads·head_dim)`, `(n_kv_heads·head_dim_v)`.
    pub bq: Option<Vector>,
    pub bk: Option<Vector>,
    pub bv: Option<Vector>,
    /// Per-head q/k norms, `(head_dim)` each.
    pub q_norm: Option<Vector>,
    pub k_norm: Option<Vector>,
    /// `(dim)`
    pub post_attn_norm: Option<Vector>,
    /// `(dim)`
    pub ffn_norm: Vector,
    /// `(ffn_dim, dim)`
    pub w_gate: Mat,
    /// `(ffn_dim, dim)`
    pub w_up: Mat,
    /// `(dim, ffn_dim)`
    pub w_down: Mat,
    /// `(dim)`
    pub post_ffn_norm: Option<Vector>,
    /// Activation formats the q/k/v matrices read (one quantization serves all three).
    pub qkv_acts: Vec<ActKind>,
    /// Activation formats gate/up read.
    pub gate_up_acts: Vec<ActKind>,
}

/// Every tensor of the model.
#[derive(Clone, Debug)]
pub(crate) struct Weights {
    /// Token embeddings, `(vocab, dim)`, any supported type (rows are dequantized on lookup).
    pub token_embd: usize,
    pub embd_type: GgmlType,
    pub embd_row_bytes: usize,
    pub layers: Vec<LayerWeights>,
    /// `(dim)`
    pub output_norm: Vector,
    /// `(vocab, dim)`: `output.weight`, or the embeddings when the model ties them.
    pub output: Mat,
    /// Whether `output` is the embedding matrix.
    pub tied: bool,
}

/// Distinct activation formats, in a fixed order.
fn kinds(mats: &[&Mat]) -> Vec<ActKind> {
    let mut v: Vec<ActKind> = Vec::new();
    for m in mats {
        if !v.contains(&m.act) {
            v.push(m.act);
        }
    }
    v
}

struct Loader<'a> {
    file: &'a GgufFile,
    by_name: std::collections::HashMap<&'a str, usize>,
}

impl Loader<'_> {
    fn index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    fn mat(&self, name: &str, rows: usize, n: usize) -> Result<Mat> {
        let tensor = self
            .index(name)
            .ok_or_else(|| Error::format(format!("tensor {name:?} is missing from the model")))?;
        let info = &self.file.tensors()[tensor];
        let m = WeightMatrix::from_tensor(self.file, info)?;
        if m.rows() != rows || m.n() != n {
            return Err(Error::format(format!(
                "tensor {name} is {}×{}, the metadata implies {rows}×{n}",
                m.rows(),
                m.n()
            )));
        }
        Ok(Mat { tensor, rows, n, act: m.act_kind() })
    }

    fn vector(&self, name: &str, len: usize, offset: f32) -> Result<Option<Vector>> {
        let Some(tensor) = self.index(name) else { return Ok(None) };
        let info = &self.file.tensors()[tensor];
        if info.ty != GgmlType::F32 || info.n_elements != len as u64 {
            return Err(Error::format(format!(
                "tensor {name} should hold {len} f32 values, it holds {} {}",
                info.n_elements, info.ty
            )));
        }
        let values: &[f32] = as_blocks(self.file.tensor_data(info)).map_err(|e| e.context(name))?;
        if offset == 0.0 {
            Ok(Some(Vector::Mapped { tensor, len }))
        } else {
            Ok(Some(Vector::Owned(values.iter().map(|w| w + offset).collect())))
        }
    }

    fn required_vector(&self, name: &str, len: usize, offset: f32) -> Result<Vector> {
        self.vector(name, len, offset)?
            .ok_or_else(|| Error::format(format!("tensor {name:?} is missing from the model")))
    }
}

impl Weights {
    /// Find and check every tensor `config` and `arch` call for.
    pub fn load(file: &GgufFile, config: &ModelConfig, arch: &ArchSpec) -> Result<Weights> {
        let by_name = file.tensors().iter().enumerate().map(|(i, t)| (t.name.as_str(), i)).collect();
        let l = Loader { file, by_name };
        let (dim, ffn, hd, hdv) = (config.dim, config.ffn_dim, config.head_dim, config.head_dim_v);
        let (q_out, k_out, v_out) = (config.n_heads * hd, config.n_kv_heads * hd, config.n_kv_heads * hdv);
        let off = arch.norm_weight_offset;

        let token_embd = l
            .index("token_embd.weight")
            .ok_or_else(|| Error::format("tensor \"token_embd.weight\" is missing from the model"))?;
        let embd = &file.tensors()[token_embd];
        if embd.shape() != [dim as u64, config.vocab_size as u64] {
            return Err(Error::format(format!(
                "token_embd has shape {:?}, expected [{dim}, {}]",
                embd.shape(),
                config.vocab_size
            )));
        }
        let embd_row_bytes =
            embd.ty.row_bytes(dim as u64).ok_or_else(|| {
                Error::format(format!("embedding width {dim} is not a whole number of blocks"))
            })? as usize;
        let tied = l.index("output.weight").is_none();
        let output = match tied {
            false => l.mat("output.weight", config.vocab_size, dim)?,
            true => l.mat("token_embd.weight", config.vocab_size, dim)?,
        };

        let mut layers = Vec::with_capacity(config.n_layers);
        for i in 0..config.n_layers {
            let name = |t: &str| format!("blk.{i}.{t}");
            let opt_norm = |t: &str, len: usize, wanted: bool| -> Result<Option<Vector>> {
                let v = l.vector(&name(t), len, off)?;
                if wanted && v.is_none() {
                    return Err(Error::format(format!("tensor {:?} is missing from the model", name(t))));
                }
                Ok(v)
            };
            let wq = l.mat(&name("attn_q.weight"), q_out, dim)?;
            let wk = l.mat(&name("attn_k.weight"), k_out, dim)?;
            let wv = l.mat(&name("attn_v.weight"), v_out, dim)?;
            let w_gate = l.mat(&name("ffn_gate.weight"), ffn, dim)?;
            let w_up = l.mat(&name("ffn_up.weight"), ffn, dim)?;
            layers.push(LayerWeights {
                attn_norm: l.required_vector(&name("attn_norm.weight"), dim, off)?,
                qkv_acts: kinds(&[&wq, &wk, &wv]),
                gate_up_acts: kinds(&[&w_gate, &w_up]),
                wq,
                wk,
                wv,
                wo: l.mat(&name("attn_output.weight"), dim, config.n_heads * hdv)?,
                bq: l.vector(&name("attn_q.bias"), q_out, 0.0)?,
                bk: l.vector(&name("attn_k.bias"), k_out, 0.0)?,
                bv: l.vector(&name("attn_v.bias"), v_out, 0.0)?,
                q_norm: opt_norm("attn_q_norm.weight", hd, arch.qk_norm)?,
                k_norm: opt_norm("attn_k_norm.weight", hd, arch.qk_norm)?,
                post_attn_norm: opt_norm("post_attention_norm.weight", dim, arch.post_attn_norm)?,
                ffn_norm: l.required_vector(&name("ffn_norm.weight"), dim, off)?,
                w_gate,
                w_up,
                w_down: l.mat(&name("ffn_down.weight"), dim, ffn)?,
                post_ffn_norm: opt_norm("post_ffw_norm.weight", dim, arch.post_ffn_norm)?,
            });
        }
        Ok(Weights {
            token_embd,
            embd_type: embd.ty,
            embd_row_bytes,
            layers,
            output_norm: l.required_vector("output_norm.weight", dim, off)?,
            output,
            tied,
        })
    }
}

impl Weights {
    /// Every matrix a forward pass multiplies by (the head included).
    pub fn mats(&self) -> Vec<&Mat> {
        let mut v: Vec<&Mat> = Vec::with_capacity(7 * self.layers.len() + 1);
        for l in &self.layers {
            v.extend([&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down]);
        }
        v.push(&self.output);
        v
    }
}

/// Views of mapped weights for one forward pass.
pub(crate) struct View<'a> {
    pub file: &'a GgufFile,
    /// Row-interleaved copies, read instead of the map where a matrix has one.
    pub repacked: &'a Repacked,
}

impl<'a> View<'a> {
    /// The matrix `m`: its interleaved copy if it has one, else borrowed from the map.
    pub fn mat(&self, m: &Mat) -> Result<WeightMatrix<'a>> {
        if let Some(w) = self.repacked.mat(m, m.rows) {
            return w;
        }
        let info = self.file.tensors().get(m.tensor).ok_or_else(|| Error::internal("tensor index"))?;
        WeightMatrix::new(info.ty, self.file.tensor_data(info), m.rows, m.n)
    }

    /// The first `rows` rows of the matrix `m` (`rows` ≤ `m.rows`), borrowed from the map.
    pub fn mat_rows(&self, m: &Mat, rows: usize) -> Result<WeightMatrix<'a>> {
        if let Some(w) = self.repacked.mat(m, rows) {
            return w;
        }
        let info = self.file.tensors().get(m.tensor).ok_or_else(|| Error::internal("tensor index"))?;
        let row_bytes = info
            .ty
            .row_bytes(m.n as u64)
            .ok_or_else(|| Error::internal("matrix rows are not whole blocks"))?;
        let bytes = (row_bytes as usize).checked_mul(rows.min(m.rows));
        let data = bytes
            .and_then(|b| self.file.tensor_data(info).get(..b))
            .ok_or_else(|| Error::internal("matrix shorter than at load"))?;
        WeightMatrix::new(info.ty, data, rows.min(m.rows), m.n)
    }

    /// The vector `v`, borrowed from the map or from its shifted copy.
    pub fn vector<'v>(&self, v: &'v Vector) -> Result<&'v [f32]>
    where
        'a: 'v,
    {
        match v {
            Vector::Owned(values) => Ok(values),
            Vector::Mapped { tensor, len } => {
                let info = self.file.tensors().get(*tensor).ok_or_else(|| Error::internal("tensor index"))?;
                let values: &[f32] = as_blocks(self.file.tensor_data(info))?;
                values.get(..*len).ok_or_else(|| Error::internal("vector shorter than at load"))
            }
        }
    }

    /// Token `id`'s embedding row, dequantized into `out` (`dim`).
    pub fn embedding(&self, w: &Weights, id: u32, out: &mut [f32]) -> Result<()> {
        let info = self.file.tensors().get(w.token_embd).ok_or_else(|| Error::internal("tensor index"))?;
        let data = self.file.tensor_data(info);
        let start = (id as usize).checked_mul(w.embd_row_bytes);
        let row = start
            .and_then(|s| data.get(s..s + w.embd_row_bytes))
            .ok_or_else(|| Error::invalid(format!("token id {id} is outside the vocabulary")))?;
        crate::quant::dequantize(w.embd_type, row, out)
    }
}
