//! The GPU device layer: adapters, the wgpu device, and the compute pipelines of the WGSL
//! kernels (Vulkan on Linux/Android/Windows, Metal on macOS/iOS), for `model`'s GPU backend.
//!
//! This is the GPU's counterpart of `kernels`: it knows buffers, shaders and dispatches, not
//! transformers. Every pipeline shares one layout (see `wgsl/common.wgsl`): group 0 a 64-byte
//! parameter slot picked by a dynamic offset, group 1 read-only weights, group 2 the workspace
//! (f32 activations, quantized activations, the KV cache's keys and values). The kernels
//! reproduce the CPU reference arithmetic (block order, eight-lane sums, the same exponential)
//! so that the GPU's logits follow the CPU's closely and never depend on the batch size.

mod shaders;

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::error::{Error, ErrorKind, Result};

pub use shaders::{all_sources, Kernel};

/// Bytes of one dispatch's parameters (16 words).
pub const PARAM_BYTES: u64 = 64;

/// Run a wgpu future to completion (native wgpu futures are ready once the device is polled).
pub(crate) fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}

/// What `edgespec info --devices` shows of one adapter.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    /// Index in enumeration order (what `EDGESPEC_GPU_ADAPTER` takes).
    pub index: usize,
    /// The adapter's name.
    pub name: String,
    /// `Vulkan`, `Metal`, …
    pub backend: String,
    /// `DiscreteGpu`, `IntegratedGpu`, `Cpu` (a software rasterizer such as lavapipe), …
    pub device_type: String,
    /// The driver and its version.
    pub driver: String,
    /// Whether it is a software rasterizer (never chosen by `--device auto`).
    pub software: bool,
    /// Device-local memory, bytes (Vulkan's device-local heaps; `None` where wgpu's backend
    /// does not say, as on Metal).
    pub memory_bytes: Option<u64>,
    /// Largest buffer, bytes.
    pub max_buffer_bytes: u64,
    /// Largest storage binding, bytes (tensors above it are split).
    pub max_binding_bytes: u64,
}

fn instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::VULKAN | wgpu::Backends::METAL;
    wgpu::Instance::new(desc)
}

fn summary(index: usize, a: &wgpu::Adapter) -> AdapterSummary {
    let info = a.get_info();
    let limits = a.limits();
    AdapterSummary {
        index,
        name: info.name.clone(),
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        driver: format!("{} {}", info.driver, info.driver_info).trim().to_string(),
        software: info.device_type == wgpu::DeviceType::Cpu,
        memory_bytes: device_memory(a),
        max_buffer_bytes: limits.max_buffer_size,
        max_binding_bytes: limits.max_storage_buffer_binding_size,
    }
}

/// The device-local memory of a Vulkan adapter: the sum of its device-local heaps.
#[cfg(not(any(target_vendor = "apple", target_arch = "wasm32")))]
fn device_memory(a: &wgpu::Adapter) -> Option<u64> {
    // SAFETY: only reads the physical device's properties; the guard outlives the calls.
    let hal = unsafe { a.as_hal::<wgpu::hal::api::Vulkan>() }?;
    let instance = hal.shared_instance().raw_instance();
    // SAFETY: a physical device of this instance, as wgpu-hal enumerated it.
    let props = unsafe { instance.get_physical_device_memory_properties(hal.raw_physical_device()) };
    let heaps = props.memory_heaps.get(..props.memory_heap_count as usize)?;
    // Bit 0 of the heap flags: VK_MEMORY_HEAP_DEVICE_LOCAL_BIT.
    Some(heaps.iter().filter(|h| h.flags.as_raw() & 1 != 0).map(|h| h.size).sum())
}

#[cfg(any(target_vendor = "apple", target_arch = "wasm32"))]
fn device_memory(_: &wgpu::Adapter) -> Option<u64> {
    None
}

/// The compute adapters this machine offers (Vulkan and Metal), in enumeration order.
pub fn adapters() -> Vec<AdapterSummary> {
    let inst = instance();
    block_on(inst.enumerate_adapters(wgpu::Backends::VULKAN | wgpu::Backends::METAL))
        .iter()
        .enumerate()
        .map(|(i, a)| summary(i, a))
        .collect()
}

/// Environment variable naming the adapter to use (an index of `adapters()` or part of a name).
pub const ADAPTER_ENV: &str = "EDGESPEC_GPU_ADAPTER";

/// An open GPU: the device, its queue, and every kernel's pipeline.
pub struct GpuContext {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    summary: AdapterSummary,
    limits: wgpu::Limits,
    pub(crate) kernels: shaders::Pipelines,
    /// The first error wgpu reported outside an error scope (instead of its default panic).
    failure: Arc<std::sync::Mutex<Option<String>>>,
    /// Whether the device's `fma` rounds once (else the kernels emulate it).
    fused: bool,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuContext({} on {})", self.summary.name, self.summary.backend)
    }
}

impl GpuContext {
    /// Open an adapter: the one `EDGESPEC_GPU_ADAPTER` names, else the first hardware adapter,
    /// else (only when `allow_software`) a software one such as lavapipe.
    pub fn open(allow_software: bool) -> Result<Arc<GpuContext>> {
        let inst = instance();
        let all = block_on(inst.enumerate_adapters(wgpu::Backends::VULKAN | wgpu::Backends::METAL));
        if all.is_empty() {
            return Err(Error::unsupported(
                "no GPU adapter found (Vulkan or Metal); on Linux install a Vulkan driver \
                 (mesa-vulkan-drivers for software Vulkan) or use --device cpu",
            ));
        }
        let wanted = std::env::var(ADAPTER_ENV).ok().filter(|s| !s.trim().is_empty());
        let pick = match &wanted {
            Some(w) => all.iter().enumerate().find(|(i, a)| {
                w.trim().parse::<usize>().ok() == Some(*i)
                    || a.get_info().name.to_lowercase().contains(&w.trim().to_lowercase())
            }),
            None => all
                .iter()
                .enumerate()
                .find(|(_, a)| a.get_info().device_type != wgpu::DeviceType::Cpu)
                .or_else(|| all.iter().enumerate().find(|_| allow_software)),
        };
        let Some((index, adapter)) = pick else {
            let names: Vec<String> = all.iter().map(|a| a.get_info().name).collect();
            return Err(Error::unsupported(match wanted {
                Some(w) => format!("{ADAPTER_ENV}={w} names none of the adapters {names:?}"),
                None => format!("only software GPU adapters found ({names:?}): not used by --device auto"),
            }));
        };
        let summary = summary(index, adapter);
        let limits = adapter.limits();
        let desc = wgpu::DeviceDescriptor {
            label: Some("edgespec"),
            required_features: wgpu::Features::empty(),
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) = block_on(adapter.request_device(&desc))
            .map_err(|e| Error::unsupported(format!("could not open the GPU {}: {e}", summary.name)))?;
        let failure: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
        let sink = failure.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut f) = sink.lock() {
                f.get_or_insert_with(|| e.to_string());
            }
        }));
        // llvmpipe's probe says fused, yet it splits `fma` in larger shaders: emulate there.
        let fused = !summary.software && fma_is_fused(&device, &queue)?;
        let kernels = shaders::Pipelines::new(&device, fused)?;
        Ok(Arc::new(GpuContext { device, queue, summary, limits, kernels, failure, fused }))
    }

    /// An error wgpu reported since the device opened, if any: the GPU state is then unknown.
    pub fn check(&self) -> Result<()> {
        match self.failure.lock().ok().and_then(|f| f.clone()) {
            Some(e) => Err(Error::internal(format!("the GPU reported an error: {e}"))),
            None => Ok(()),
        }
    }

    /// Whether the device's `fma` is fused (rounds once, like the CPU's `mul_add`); where it is
    /// not (lavapipe), the kernels emulate it so that their sums stay the CPU's.
    pub fn fma_fused(&self) -> bool {
        self.fused
    }

    /// The adapter in use.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.summary
    }

    /// Largest storage binding, bytes.
    pub fn max_binding(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size)
    }

    /// Largest buffer, bytes.
    pub fn max_buffer(&self) -> u64 {
        self.limits.max_buffer_size
    }

    /// Stride between parameter slots (the uniform offset alignment).
    pub fn param_stride(&self) -> u64 {
        u64::from(self.limits.min_uniform_buffer_offset_alignment).max(PARAM_BYTES)
    }

    /// A storage buffer of `bytes` (rounded up to 4), or a clear error past the adapter's limits.
    pub fn storage(&self, label: &str, bytes: u64) -> Result<wgpu::Buffer> {
        let bytes = bytes.max(4).div_ceil(4) * 4;
        if bytes > self.max_binding() {
            return Err(Error::new(
                ErrorKind::OutOfMemory,
                format!(
                    "the GPU buffer {label} needs {bytes} bytes, more than the {} bytes {} binds: \
                     use a shorter --ctx or --device cpu",
                    self.max_binding(),
                    self.summary.name
                ),
            ));
        }
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        }))
    }

    /// A buffer holding `words`.
    pub fn storage_init(&self, label: &str, words: &[u32]) -> Result<wgpu::Buffer> {
        let buf = self.storage(label, 4 * words.len() as u64)?;
        self.queue.write_buffer(&buf, 0, as_bytes(words));
        Ok(buf)
    }

    /// The bind group of a read-only weights buffer (group 1).
    pub fn weights_group(&self, buf: &wgpu::Buffer) -> wgpu::BindGroup {
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("weights"),
            layout: &self.kernels.weights_layout,
            entries: &[wgpu::BindGroupEntry { binding: 0, resource: buf.as_entire_binding() }],
        })
    }

    /// The bind group of a workspace (group 2).
    pub fn workspace_group(&self, bufs: [&wgpu::Buffer; 4]) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry<'_>> = bufs
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("workspace"),
            layout: &self.kernels.workspace_layout,
            entries: &entries,
        })
    }

    /// The bind group of a parameter buffer (group 0, a 64-byte window at a dynamic offset).
    pub fn params_group(&self, buf: &wgpu::Buffer) -> wgpu::BindGroup {
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("params"),
            layout: &self.kernels.params_layout,
            entries: &[wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: buf,
                    offset: 0,
                    size: std::num::NonZeroU64::new(PARAM_BYTES),
                }),
            }],
        })
    }

    /// Wait for the queue and copy `bytes` bytes of `src` from `offset` back into `out`
    /// (through a mapped staging buffer).
    pub fn read(&self, src: &wgpu::Buffer, offset: u64, out: &mut [f32]) -> Result<()> {
        let bytes = 4 * out.len() as u64;
        if bytes == 0 {
            return Ok(());
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        enc.copy_buffer_to_buffer(src, offset, &staging, 0, bytes);
        self.queue.submit([enc.finish()]);
        self.read_staging(&staging, out)
    }

    /// Map a filled staging buffer and copy it into `out`.
    pub(crate) fn read_staging(&self, staging: &wgpu::Buffer, out: &mut [f32]) -> Result<()> {
        let bytes = 4 * out.len() as u64;
        let slice = staging.slice(..bytes);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::Wait { submission_index: None, timeout: None })
            .map_err(|e| Error::internal(format!("the GPU stopped answering: {e}")))?;
        rx.recv()
            .map_err(|_| Error::internal("the GPU readback was dropped"))?
            .map_err(|e| Error::internal(format!("the GPU readback failed: {e}")))?;
        {
            let view = slice
                .get_mapped_range()
                .map_err(|e| Error::internal(format!("the GPU readback could not be mapped: {e}")))?;
            for (o, c) in out.iter_mut().zip(view.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        staging.unmap();
        self.check()
    }
}

/// Whether WGSL `fma` rounds once on this device: computes `(1 + 2⁻¹²)² − (1 + 2⁻¹¹)` from a
/// buffer (so no compiler can fold it), which is 2⁻²⁴ fused and 0 when the product is rounded
/// first.
fn fma_is_fused(device: &wgpu::Device, queue: &wgpu::Queue) -> Result<bool> {
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("fma probe"),
        source: wgpu::ShaderSource::Wgsl(
            "@group(0) @binding(0) var<storage, read_write> X: array<f32, 4>;\n\
             @compute @workgroup_size(1) fn main() { X[3] = fma(X[0], X[1], X[2]); }"
                .into(),
        ),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("fma probe"),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let a = 1.0 + 2f32.powi(-12);
    let vals = [a, a, -(1.0 + 2f32.powi(-11)), 0.0];
    let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    let buf = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("fma probe"),
        size: 16,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    queue.write_buffer(&buf, 0, &bytes);
    let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[wgpu::BindGroupEntry { binding: 0, resource: buf.as_entire_binding() }],
    });
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 16,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
    {
        let mut pass =
            enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None });
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &group, &[]);
        pass.dispatch_workgroups(1, 1, 1);
    }
    enc.copy_buffer_to_buffer(&buf, 0, &staging, 0, 16);
    queue.submit([enc.finish()]);
    let slice = staging.slice(..);
    let (tx, rx) = std::sync::mpsc::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    device
        .poll(wgpu::PollType::Wait { submission_index: None, timeout: None })
        .map_err(|e| Error::internal(format!("the GPU stopped answering: {e}")))?;
    rx.recv()
        .map_err(|_| Error::internal("the fma probe was dropped"))?
        .map_err(|e| Error::internal(format!("the fma probe failed: {e}")))?;
    let out = {
        let view = slice.get_mapped_range().map_err(|e| Error::internal(format!("fma probe: {e}")))?;
        f32::from_le_bytes([view[12], view[13], view[14], view[15]])
    };
    staging.unmap();
    Ok(out != 0.0)
}

/// The bytes of a word slice (little-endian on every target wgpu supports).
pub fn as_bytes(words: &[u32]) -> &[u8] {
    // SAFETY: u32 has no padding and any byte pattern is a valid u8; the length is exact.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), std::mem::size_of_val(words)) }
}
