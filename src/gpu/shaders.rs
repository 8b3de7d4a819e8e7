//! The WGSL sources of every kernel and their compute pipelines, all on one pipeline layout.

use crate::error::{Error, Result};
use crate::quant::GgmlType;

const COMMON: &str = include_str!("wgsl/common.wgsl");
const QUANTIZE: &str = include_str!("wgsl/quantize.wgsl");
const MATVEC: &str = include_str!("wgsl/matvec.wgsl");
const OPS: &str = include_str!("wgsl/ops.wgsl");
const ATTENTION: &str = include_str!("wgsl/attention.wgsl");

/// Every kernel the forward pass dispatches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// f32 columns → Q8 blocks.
    QuantQ8,
    /// f32 columns → Q8_K blocks.
    QuantQ8K,
    /// A quantized mat-vec for a weight type (see [`Kernel::matvec_types`]).
    Matvec(GgmlType),
    /// RMSNorm rows.
    RmsNorm,
    /// `dst += src`.
    Add,
    /// Row-wise bias add.
    Bias,
    /// RoPE with precomputed angles.
    Rope,
    /// SiLU/GELU gate times up.
    ActMul,
    /// `cap · tanh(x / cap)`.
    Softcap,
    /// Keys or values into the f16 cache.
    KvWrite,
    /// Keys or values into a Q8_0 cache.
    KvWriteQ8,
    /// Attention of one (row, head) per workgroup over an f16 cache.
    Attention,
    /// The same over a Q8_0 cache.
    AttentionQ8,
}

/// The weight types the GPU mat-vec reads, with their kernel id and the words per block as
/// uploaded (see `model/gpu/weights.rs`).
pub const MATVEC_TYPES: [(GgmlType, u32, u32); 5] = [
    (GgmlType::Q4_1, 0, 5),
    (GgmlType::Q5_0, 1, 6),
    (GgmlType::Q8_0, 2, 9),
    (GgmlType::Q4_K, 3, 36),
    (GgmlType::Q6_K, 4, 53),
];

impl Kernel {
    /// Weight types with a GPU mat-vec.
    pub fn matvec_types() -> impl Iterator<Item = GgmlType> {
        MATVEC_TYPES.iter().map(|t| t.0)
    }

    /// Words per uploaded block of `ty`, if the GPU reads that type.
    pub fn block_words(ty: GgmlType) -> Option<u32> {
        MATVEC_TYPES.iter().find(|t| t.0 == ty).map(|t| t.2)
    }

    fn all() -> Vec<Kernel> {
        let mut v = vec![Kernel::QuantQ8, Kernel::QuantQ8K];
        v.extend(Kernel::matvec_types().map(Kernel::Matvec));
        v.extend([
            Kernel::RmsNorm,
            Kernel::Add,
            Kernel::Bias,
            Kernel::Rope,
            Kernel::ActMul,
            Kernel::Softcap,
            Kernel::KvWrite,
            Kernel::KvWriteQ8,
            Kernel::Attention,
            Kernel::AttentionQ8,
        ]);
        v
    }

    /// The module source and entry point, for a device whose `fma` is `fused` or not.
    fn source(self, fused: bool) -> (String, &'static str) {
        let with = |body: &str| format!("const FUSED: bool = {fused};\n{COMMON}\n{body}");
        match self {
            Kernel::QuantQ8 => (with(QUANTIZE), "q8"),
            Kernel::QuantQ8K => (with(QUANTIZE), "q8k"),
            Kernel::Matvec(ty) => {
                let (qt, stride) =
                    MATVEC_TYPES.iter().find(|t| t.0 == ty).map_or((u32::MAX, 1), |t| (t.1, t.2));
                (with(&format!("const QT: u32 = {qt}u;\nconst STRIDE: u32 = {stride}u;\n{MATVEC}")), "main")
            }
            Kernel::RmsNorm => (with(OPS), "rmsnorm"),
            Kernel::Add => (with(OPS), "add"),
            Kernel::Bias => (with(OPS), "bias"),
            Kernel::Rope => (with(OPS), "rope"),
            Kernel::ActMul => (with(OPS), "act_mul"),
            Kernel::Softcap => (with(OPS), "softcap"),
            Kernel::KvWrite => (with(OPS), "kv_write"),
            Kernel::KvWriteQ8 => (with(OPS), "kv_write_q8"),
            Kernel::Attention => (with(&format!("const KV_Q8: bool = false;\n{ATTENTION}")), "main"),
            Kernel::AttentionQ8 => (with(&format!("const KV_Q8: bool = true;\n{ATTENTION}")), "main"),
        }
    }
}

/// Every distinct WGSL module the kernels compile, with a name (for the Metal translation
/// test, which runs each through naga's MSL backend).
pub fn all_sources() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for k in Kernel::all() {
        let (src, _) = k.source(true);
        if !out.iter().any(|(_, s)| *s == src) {
            out.push((format!("{k:?}"), src));
        }
    }
    out
}

/// The layouts and one pipeline per kernel.
pub(crate) struct Pipelines {
    pub params_layout: wgpu::BindGroupLayout,
    pub weights_layout: wgpu::BindGroupLayout,
    pub workspace_layout: wgpu::BindGroupLayout,
    pipelines: Vec<(Kernel, wgpu::ComputePipeline)>,
}

fn storage_entry(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

impl Pipelines {
    pub fn new(device: &wgpu::Device, fused: bool) -> Result<Pipelines> {
        let params_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("params"),
            entries: &[wgpu::BindGroupLayoutEntry {
                binding: 0,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: true,
                    min_binding_size: std::num::NonZeroU64::new(super::PARAM_BYTES),
                },
                count: None,
            }],
        });
        let weights_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("weights"),
            entries: &[storage_entry(0, true)],
        });
        let workspace_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("workspace"),
            entries: &[
                storage_entry(0, false),
                storage_entry(1, false),
                storage_entry(2, false),
                storage_entry(3, false),
            ],
        });
        let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("edgespec"),
            bind_group_layouts: &[Some(&params_layout), Some(&weights_layout), Some(&workspace_layout)],
            immediate_size: 0,
        });
        let mut pipelines = Vec::new();
        let mut modules: Vec<(String, wgpu::ShaderModule)> = Vec::new();
        for k in Kernel::all() {
            let (src, entry) = k.source(fused);
            let idx = match modules.iter().position(|(s, _)| *s == src) {
                Some(i) => i,
                None => {
                    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
                    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(&format!("{k:?}")),
                        source: wgpu::ShaderSource::Wgsl(src.clone().into()),
                    });
                    if let Some(e) = super::block_on(scope.pop()) {
                        return Err(Error::internal(format!("the {k:?} shader does not compile: {e}")));
                    }
                    modules.push((src, module));
                    modules.len() - 1
                }
            };
            let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&format!("{k:?}")),
                layout: Some(&layout),
                module: &modules[idx].1,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            });
            if let Some(e) = super::block_on(scope.pop()) {
                return Err(Error::internal(format!("the {k:?} pipeline does not build: {e}")));
            }
            pipelines.push((k, pipeline));
        }
        Ok(Pipelines { params_layout, weights_layout, workspace_layout, pipelines })
    }

    /// The pipeline of `k`.
    pub fn get(&self, k: Kernel) -> Result<&wgpu::ComputePipeline> {
        self.pipelines
            .iter()
            .find(|(kk, _)| *kk == k)
            .map(|(_, p)| p)
            .ok_or_else(|| Error::unsupported(format!("no GPU kernel {k:?}")))
    }
}
