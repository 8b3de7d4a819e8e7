//! Every WGSL module of the GPU backend parses, validates, and translates to Metal Shading
//! Language through naga (Metal cannot run here, so this is where Metal compile errors show),
//! and builds into pipelines on the machine's Vulkan adapter when there is one.
#![cfg(feature = "gpu")]

use edgespec::gpu::{all_sources, GpuContext};

#[test]
fn every_wgsl_module_validates_and_translates_to_msl() {
    let sources = all_sources();
    assert!(sources.len() >= 5, "expected the quantize, mat-vec, ops and attention modules");
    for (name, src) in sources {
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(&src)));
        // unpack2x16float is core WGSL; naga gates it behind this capability for GLES only.
        let info = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32,
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name} does not validate: {e:?}"));
        let options = naga::back::msl::Options { lang_version: (2, 1), ..Default::default() };
        let pipeline = naga::back::msl::PipelineOptions::default();
        let (msl, _) = naga::back::msl::write_string(&module, &info, &options, &pipeline)
            .unwrap_or_else(|e| panic!("{name} does not translate to MSL: {e:?}"));
        assert!(msl.contains("kernel"), "{name}: no compute entry point in the MSL");
    }
}

#[test]
fn pipelines_build_on_the_vulkan_adapter() {
    if edgespec::gpu::adapters().is_empty() {
        eprintln!("no Vulkan/Metal adapter on this machine: skipped");
        return;
    }
    let ctx = GpuContext::open(true).expect("open the GPU");
    eprintln!("adapter: {:?}", ctx.adapter());
}
