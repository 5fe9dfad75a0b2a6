//! A software model of one Intel IAA 1.0 device for processes that run with
//! it preloaded (`LD_PRELOAD`): the work queues' character devices, the
//! instructions that submit to them, the accel-config library that describes
//! them, and the device that executes descriptors. Test infrastructure only;
//! docs/iaa-model.md says what it models and from which sources.

pub mod accfg;
pub mod config;
pub mod counters;
pub mod descriptor;
pub mod device;
pub mod exec;
pub mod interpose;
pub mod memory;
pub mod trap;
// The library's bindings of the kernel's IAA UAPI (one file for both;
// qemu-qpl's tests/iaa_uapi_bindings.rs compares it with bindgen's output).
#[rustfmt::skip]
#[path = "../../../src/iaa/uapi.rs"]
pub mod uapi;

use std::sync::OnceLock;

static CONFIG: OnceLock<config::Config> = OnceLock::new();

/// The configuration (read at load time).
pub fn config() -> &'static config::Config {
    CONFIG.get_or_init(|| match config::Config::from_env() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("iaa-model: {message}");
            // SAFETY: ending the process on a configuration the operator must fix.
            unsafe { libc::_exit(2) }
        }
    })
}

extern "C" fn at_exit() {
    let Some(dir) = config().stats_dir.as_ref() else {
        if let Some(device) = device::existing() {
            device.flush_recorder();
        }
        return;
    };
    let pid = std::process::id();
    let json = match device::existing() {
        Some(device) => {
            device.flush_recorder();
            device.counters.to_json(pid)
        }
        None => counters::Counters::default().to_json(pid),
    };
    let path = std::path::Path::new(dir).join(format!("{pid}.json"));
    let temporary = path.with_extension("json.tmp");
    if std::fs::write(&temporary, json)
        .and_then(|()| std::fs::rename(&temporary, &path))
        .is_err()
    {
        eprintln!("iaa-model: cannot write {}", path.display());
    }
}

extern "C" fn load() {
    config();
    // SAFETY: registering a plain function for exit.
    unsafe { libc::atexit(at_exit) };
}

#[used]
#[link_section = ".init_array"]
static LOAD: extern "C" fn() = load;
