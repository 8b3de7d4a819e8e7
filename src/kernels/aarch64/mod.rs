//! aarch64 kernels: NEON, and NEON with `dotprod` where the CPU has it.

pub(crate) fn tables() -> Vec<&'static super::Kernels> {
    Vec::new()
}
