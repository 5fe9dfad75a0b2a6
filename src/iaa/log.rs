//! `QEMU_QPL_IAA_LOG=FILE`: each channel appends one line when it is set up
//! (which engine and why) and one when it is freed (its counters), so that
//! the path and the counters are visible whatever QEMU's shim reports.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use super::counters::Counters;

/// Appends `line` to `file`; a log that cannot be written is not an error
/// of the migration.
pub fn append(file: &Path, line: &str) {
    if let Ok(mut out) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
    {
        let _ = out.write_all(format!("{line}\n").as_bytes());
    }
}

/// `key=value` pairs of every counter.
pub fn counters(c: &Counters) -> String {
    let d = &c.device;
    let mut text = String::new();
    let _ = write!(
        text,
        "pages_iaa={} pages_cpu={} pages_raw={} fallback_queue_full={} fallback_error={} \
         fallback_page_fault={} fallback_timeout={} fallback_rejected={} page_faults={} \
         descriptors={} submit_retries={}",
        c.pages_iaa,
        c.pages_cpu,
        c.pages_raw,
        d.fallback_queue_full,
        d.fallback_error,
        d.fallback_page_fault,
        d.fallback_timeout,
        d.fallback_rejected,
        d.page_faults,
        d.descriptors,
        d.submit_retries
    );
    text
}
