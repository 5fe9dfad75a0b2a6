//! The `accfg_*` functions of libaccel-config that Intel QPL 1.9 resolves
//! with `dlsym` after `dlopen("libaccel-config.so.1")` (the list is the
//! string table of Debian's `libqpl.a` 1.9.0; the meanings are accel-config's
//! `libaccel_config.h`), describing the model's one IAA 1.0 device `iax1` and
//! its work queues.

use std::ffi::{c_char, c_int, c_uint, CString};
use std::sync::OnceLock;

use crate::config::WqMode;
use crate::exec::MAX_TRANSFER_LOG2;
use crate::interpose::DEVICE_ID;

/// Opaque handles: the context, the device and each WQ are static objects.
#[repr(C)]
pub struct Ctx {
    _private: u8,
}
#[repr(C)]
pub struct Dev {
    name: CString,
}
#[repr(C)]
pub struct Wq {
    index: usize,
    name: CString,
    path: String,
}

struct Topology {
    ctx: Ctx,
    dev: Dev,
    wqs: Vec<Wq>,
}

// SAFETY: the handles are immutable after creation.
unsafe impl Sync for Topology {}
unsafe impl Send for Topology {}

fn topology() -> &'static Topology {
    static TOPOLOGY: OnceLock<Topology> = OnceLock::new();
    TOPOLOGY.get_or_init(|| Topology {
        ctx: Ctx { _private: 0 },
        dev: Dev {
            name: CString::new(format!("iax{DEVICE_ID}")).unwrap(),
        },
        wqs: (0..crate::config().wqs.len())
            .map(|index| Wq {
                index,
                name: CString::new(format!("wq{DEVICE_ID}.{index}")).unwrap(),
                path: format!("/dev/iax/wq{DEVICE_ID}.{index}"),
            })
            .collect(),
    })
}

/// IAA 1.0 as `version` reports it (major << 8 | minor).
pub const VERSION: c_uint = 0x100;
/// GENCAP: block-on-fault support (bit 0), maximum transfer size 2^21
/// (bits 20:16), decompression support (bit 40).
pub const GEN_CAP: u64 = 1 | ((MAX_TRANSFER_LOG2 as u64) << 16) | (1 << 40);
const DEVICE_ENABLED: c_int = 1;
const WQ_ENABLED: c_int = 1;
const WQ_SHARED: c_int = 0;
const WQ_DEDICATED: c_int = 1;
const WQ_PRIORITY: c_int = 10;

/// # Safety
/// `ctx` must be writable.
#[no_mangle]
pub unsafe extern "C" fn accfg_new(ctx: *mut *mut Ctx) -> c_int {
    if ctx.is_null() {
        return -libc::EINVAL;
    }
    // SAFETY: checked non-null; the caller's out pointer.
    unsafe { *ctx = &topology().ctx as *const Ctx as *mut Ctx };
    0
}

#[no_mangle]
pub extern "C" fn accfg_unref(_ctx: *mut Ctx) -> *mut Ctx {
    std::ptr::null_mut()
}

#[no_mangle]
pub extern "C" fn accfg_device_get_first(_ctx: *mut Ctx) -> *mut Dev {
    &topology().dev as *const Dev as *mut Dev
}

#[no_mangle]
pub extern "C" fn accfg_device_get_next(_dev: *mut Dev) -> *mut Dev {
    std::ptr::null_mut()
}

#[no_mangle]
pub extern "C" fn accfg_device_get_devname(_dev: *mut Dev) -> *const c_char {
    topology().dev.name.as_ptr()
}

#[no_mangle]
pub extern "C" fn accfg_device_get_state(_dev: *mut Dev) -> c_int {
    DEVICE_ENABLED
}

#[no_mangle]
pub extern "C" fn accfg_device_get_version(_dev: *mut Dev) -> c_uint {
    VERSION
}

#[no_mangle]
pub extern "C" fn accfg_device_get_gen_cap(_dev: *mut Dev) -> u64 {
    GEN_CAP
}

/// IAA 1.0 has no IAACAP register: accel-config cannot read it.
///
/// # Safety
/// Nothing is written.
#[no_mangle]
pub unsafe extern "C" fn accfg_device_get_iaa_cap(_dev: *mut Dev, _iaa_cap: *mut u64) -> c_int {
    -libc::ENOENT
}

#[no_mangle]
pub extern "C" fn accfg_device_get_numa_node(_dev: *mut Dev) -> c_int {
    0
}

#[no_mangle]
pub extern "C" fn accfg_device_get_max_transfer_size(_dev: *mut Dev) -> u64 {
    1 << MAX_TRANSFER_LOG2
}

#[no_mangle]
pub extern "C" fn accfg_wq_get_first(_dev: *mut Dev) -> *mut Wq {
    topology()
        .wqs
        .first()
        .map_or(std::ptr::null_mut(), |wq| wq as *const Wq as *mut Wq)
}

fn wq_ref<'a>(wq: *mut Wq) -> Option<&'a Wq> {
    // SAFETY: a non-null handle came from this module (a static object).
    (!wq.is_null()).then(|| unsafe { &*wq })
}

#[no_mangle]
pub extern "C" fn accfg_wq_get_next(wq: *mut Wq) -> *mut Wq {
    let Some(current) = wq_ref(wq) else {
        return std::ptr::null_mut();
    };
    topology()
        .wqs
        .get(current.index + 1)
        .map_or(std::ptr::null_mut(), |next| next as *const Wq as *mut Wq)
}

#[no_mangle]
pub extern "C" fn accfg_wq_get_id(wq: *mut Wq) -> c_int {
    wq_ref(wq).map_or(-1, |wq| wq.index as c_int)
}

#[no_mangle]
pub extern "C" fn accfg_wq_get_devname(wq: *mut Wq) -> *const c_char {
    wq_ref(wq).map_or(std::ptr::null(), |wq| wq.name.as_ptr())
}

#[no_mangle]
pub extern "C" fn accfg_wq_get_state(wq: *mut Wq) -> c_int {
    if wq_ref(wq).is_some() {
        WQ_ENABLED
    } else {
        -1
    }
}

#[no_mangle]
pub extern "C" fn accfg_wq_get_mode(wq: *mut Wq) -> c_int {
    match wq_ref(wq).map(|wq| crate::config().wqs[wq.index].mode) {
        Some(WqMode::Shared) => WQ_SHARED,
        Some(WqMode::Dedicated) => WQ_DEDICATED,
        None => 2,
    }
}

#[no_mangle]
pub extern "C" fn accfg_wq_get_priority(_wq: *mut Wq) -> c_int {
    WQ_PRIORITY
}

#[no_mangle]
pub extern "C" fn accfg_wq_get_block_on_fault(wq: *mut Wq) -> c_int {
    wq_ref(wq).map_or(0, |wq| {
        c_int::from(crate::config().wqs[wq.index].block_on_fault)
    })
}

#[no_mangle]
pub extern "C" fn accfg_wq_get_max_transfer_size(_wq: *mut Wq) -> u64 {
    1 << MAX_TRANSFER_LOG2
}

/// IAA 1.0 work queues have no OPCFG register.
///
/// # Safety
/// Nothing is written.
#[no_mangle]
pub unsafe extern "C" fn accfg_wq_get_op_config(_wq: *mut Wq, _config: *mut u32) -> c_int {
    -libc::ENOENT
}

/// # Safety
/// `buf` must hold `size` bytes.
#[no_mangle]
pub unsafe extern "C" fn accfg_wq_get_user_dev_path(
    wq: *mut Wq,
    buf: *mut c_char,
    size: usize,
) -> c_int {
    let Some(wq) = wq_ref(wq) else {
        return -libc::EINVAL;
    };
    if buf.is_null() || size <= wq.path.len() {
        return -libc::ENOSPC;
    }
    // SAFETY: `size` bytes are writable and the path plus NUL fits.
    unsafe {
        std::ptr::copy_nonoverlapping(wq.path.as_ptr(), buf.cast::<u8>(), wq.path.len());
        *buf.add(wq.path.len()) = 0;
    }
    0
}
