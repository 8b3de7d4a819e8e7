//! NVIDIA GPU energy through NVML's `nvmlDeviceGetTotalEnergyConsumption` (mJ since the driver
//! loaded; Volta and newer), with `libnvidia-ml.so.1` opened at run time (`dlopen`), so edgespec
//! neither links against nor needs CUDA or the driver to build or run.
//!
//! The counter is 64-bit and updates about every 100 ms, and each call costs on the order of a
//! millisecond, so the meter is polled at 5 Hz: more often would only read the same value.

use std::ffi::{c_char, c_int, c_uint, c_ulonglong, c_void, CStr, CString};
use std::path::Path;
use std::time::Duration;

use super::{Domain, DomainKind, PowerMeter, Provenance, Reading, Scope};
use crate::error::{Error, Result};

type NvmlDevice = *mut c_void;
const NVML_SUCCESS: c_int = 0;
const NVML_ERROR_NOT_SUPPORTED: c_int = 3;

/// The NVML entry points used, resolved from the loaded library.
struct Api {
    lib: *mut c_void,
    shutdown: unsafe extern "C" fn() -> c_int,
    energy: unsafe extern "C" fn(NvmlDevice, *mut c_ulonglong) -> c_int,
    error_string: unsafe extern "C" fn(c_int) -> *const c_char,
}

impl Api {
    fn describe(&self, code: c_int) -> String {
        // SAFETY: nvmlErrorString returns a pointer to a static NUL-terminated string (or null).
        let p = unsafe { (self.error_string)(code) };
        if p.is_null() {
            format!("NVML error {code}")
        } else {
            // SAFETY: non-null, NUL-terminated, static (see above).
            unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
        }
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        // SAFETY: nvmlInit succeeded before an Api was built; shutdown balances it, and the library
        // handle came from dlopen and is closed once.
        unsafe {
            (self.shutdown)();
            libc::dlclose(self.lib);
        }
    }
}

/// The symbol `name` from `lib`, as a function pointer of type `F`.
///
/// # Safety
/// `F` must be an `extern "C"` function pointer type matching the symbol's real signature.
unsafe fn symbol<F: Copy>(lib: *mut c_void, name: &str) -> Result<F> {
    let cname = CString::new(name).map_err(|_| Error::internal("symbol name with NUL"))?;
    // SAFETY: lib is a live dlopen handle and cname is NUL-terminated.
    let p = unsafe { libc::dlsym(lib, cname.as_ptr()) };
    if p.is_null() {
        return Err(Error::unsupported(format!("libnvidia-ml has no {name} (driver too old)")));
    }
    debug_assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<*mut c_void>());
    // SAFETY: p is a non-null code address and the caller promises F is its signature.
    Ok(unsafe { std::mem::transmute_copy::<*mut c_void, F>(&p) })
}

fn dlerror_text() -> String {
    // SAFETY: dlerror returns null or a NUL-terminated thread-local string.
    let p = unsafe { libc::dlerror() };
    if p.is_null() {
        "unknown dlopen error".into()
    } else {
        // SAFETY: non-null and NUL-terminated (see above).
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

/// Energy counters of the NVIDIA GPUs that support them.
pub struct NvmlMeter {
    api: Api,
    devices: Vec<NvmlDevice>,
    domains: Vec<Domain>,
    notes: Vec<String>,
}

// SAFETY: NVML is documented thread-safe, and device handles stay valid until nvmlShutdown, which
// only Drop calls; the meter is used from one thread at a time (`&mut self`).
unsafe impl Send for NvmlMeter {}

impl std::fmt::Debug for NvmlMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmlMeter").field("domains", &self.domains).finish()
    }
}

impl NvmlMeter {
    /// Load NVML (`library`, else `libnvidia-ml.so.1`) and open every GPU with an energy counter.
    pub fn open(library: Option<&Path>) -> Result<NvmlMeter> {
        let names: Vec<String> = match library {
            Some(p) => vec![p.to_string_lossy().into_owned()],
            None => vec!["libnvidia-ml.so.1".into(), "libnvidia-ml.so".into()],
        };
        let mut lib = std::ptr::null_mut();
        let mut why = String::new();
        for name in &names {
            let cname =
                CString::new(name.as_str()).map_err(|_| Error::invalid("NVML library path contains NUL"))?;
            // SAFETY: cname is NUL-terminated; loading NVML runs its initialisers, which is the point.
            lib = unsafe { libc::dlopen(cname.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
            if !lib.is_null() {
                break;
            }
            why = dlerror_text();
        }
        if lib.is_null() {
            return Err(Error::not_found(format!(
                "{} not loadable (no NVIDIA driver): {why}",
                names.join(" or ")
            )));
        }
        // SAFETY (all symbol calls): the types are the documented NVML signatures.
        let resolved = (|| -> Result<_> {
            unsafe {
                Ok((
                    symbol::<unsafe extern "C" fn() -> c_int>(lib, "nvmlInit_v2")?,
                    symbol::<unsafe extern "C" fn() -> c_int>(lib, "nvmlShutdown")?,
                    symbol::<unsafe extern "C" fn(*mut c_uint) -> c_int>(lib, "nvmlDeviceGetCount_v2")?,
                    symbol::<unsafe extern "C" fn(c_uint, *mut NvmlDevice) -> c_int>(
                        lib,
                        "nvmlDeviceGetHandleByIndex_v2",
                    )?,
                    symbol::<unsafe extern "C" fn(NvmlDevice, *mut c_ulonglong) -> c_int>(
                        lib,
                        "nvmlDeviceGetTotalEnergyConsumption",
                    )?,
                    symbol::<unsafe extern "C" fn(NvmlDevice, *mut c_char, c_uint) -> c_int>(
                        lib,
                        "nvmlDeviceGetName",
                    )?,
                    symbol::<unsafe extern "C" fn(c_int) -> *const c_char>(lib, "nvmlErrorString")?,
                ))
            }
        })();
        let (init, shutdown, count, handle, energy, name_fn, error_string) = match resolved {
            Ok(r) => r,
            Err(e) => {
                // SAFETY: lib came from dlopen and is closed once.
                unsafe { libc::dlclose(lib) };
                return Err(e);
            }
        };
        // SAFETY: nvmlInit_v2 takes no arguments.
        let rc = unsafe { init() };
        if rc != NVML_SUCCESS {
            // SAFETY: nvmlErrorString accepts any code and returns a static string.
            let p = unsafe { error_string(rc) };
            let msg = if p.is_null() {
                format!("error {rc}")
            } else {
                unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
            };
            // SAFETY: lib came from dlopen and is closed once.
            unsafe { libc::dlclose(lib) };
            return Err(Error::unsupported(format!("nvmlInit failed: {msg}")));
        }
        let api = Api { lib, shutdown, energy, error_string };
        let mut n: c_uint = 0;
        // SAFETY: n is a valid out-pointer.
        let rc = unsafe { count(&mut n) };
        if rc != NVML_SUCCESS {
            return Err(Error::unsupported(format!("nvmlDeviceGetCount failed: {}", api.describe(rc))));
        }
        let mut devices = Vec::new();
        let mut domains = Vec::new();
        let mut notes = Vec::new();
        for i in 0..n {
            let mut dev: NvmlDevice = std::ptr::null_mut();
            // SAFETY: dev is a valid out-pointer; i < count.
            let rc = unsafe { handle(i, &mut dev) };
            if rc != NVML_SUCCESS {
                notes.push(format!("gpu{i}: no handle ({})", api.describe(rc)));
                continue;
            }
            let mut buf = [0 as c_char; 96];
            // SAFETY: buf is writable for its whole length, which is passed.
            let rc = unsafe { name_fn(dev, buf.as_mut_ptr(), buf.len() as c_uint) };
            let gpu_name = if rc == NVML_SUCCESS {
                // SAFETY: on success NVML wrote a NUL-terminated string into buf.
                unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()
            } else {
                "NVIDIA GPU".into()
            };
            let mut mj: c_ulonglong = 0;
            // SAFETY: dev is a live handle and mj a valid out-pointer.
            let rc = unsafe { energy(dev, &mut mj) };
            match rc {
                NVML_SUCCESS => {}
                NVML_ERROR_NOT_SUPPORTED => {
                    notes.push(format!("gpu{i} {gpu_name}: no energy counter (needs Volta or newer)"));
                    continue;
                }
                _ => {
                    notes.push(format!("gpu{i} {gpu_name}: energy unreadable ({})", api.describe(rc)));
                    continue;
                }
            }
            devices.push(dev);
            domains.push(Domain {
                label: format!("gpu{i} {gpu_name}"),
                scope: Scope::Gpu,
                provenance: Provenance::MeasuredCounter,
                kind: DomainKind::Counter,
                within: None,
            });
        }
        if devices.is_empty() {
            let detail = if notes.is_empty() { String::new() } else { format!(": {}", notes.join("; ")) };
            return Err(Error::not_found(format!(
                "NVML found {n} GPUs, none with an energy counter{detail}"
            )));
        }
        Ok(NvmlMeter { api, devices, domains, notes })
    }
}

impl PowerMeter for NvmlMeter {
    fn name(&self) -> &str {
        "nvml"
    }
    fn domains(&self) -> &[Domain] {
        &self.domains
    }
    fn period(&self) -> Duration {
        Duration::from_millis(200)
    }
    fn read(&mut self, out: &mut [Reading]) -> Result<()> {
        for (&dev, slot) in self.devices.iter().zip(out.iter_mut()) {
            let mut mj: c_ulonglong = 0;
            // SAFETY: dev is a live handle (NVML is initialised until Drop) and mj a valid out-pointer.
            let rc = unsafe { (self.api.energy)(dev, &mut mj) };
            *slot = if rc == NVML_SUCCESS {
                Reading::Counter { microjoules: mj.saturating_mul(1000), wraps_at: None }
            } else {
                Reading::Skip { reason: "nvmlDeviceGetTotalEnergyConsumption failed" }
            };
        }
        Ok(())
    }
    fn notes(&self) -> Vec<String> {
        let mut n = self.notes.clone();
        n.push("NVML energy covers the GPU board only, and its counter moves in ~100 ms steps".into());
        n
    }
}
