//! Intel QPL jobs on either path, through `csrc/qpl_path.c`.

use std::ffi::c_int;
use std::ptr::NonNull;

#[repr(C)]
struct RawJob {
    _opaque: [u8; 0],
}

extern "C" {
    fn iaa_job_new(hardware: c_int, out: *mut *mut RawJob) -> c_int;
    fn iaa_job_free(job: *mut RawJob);
    fn iaa_job_prepare(
        job: *mut RawJob,
        compress: c_int,
        mode: c_int,
        input: *const u8,
        in_len: u32,
        out: *mut u8,
        out_len: u32,
    );
    fn iaa_job_submit(job: *mut RawJob) -> c_int;
    fn iaa_job_wait(job: *mut RawJob) -> c_int;
    fn iaa_job_execute(job: *mut RawJob) -> c_int;
    fn iaa_job_total_out(job: *const RawJob) -> u32;
    fn iaa_job_crc(job: *const RawJob) -> u32;
    fn iaa_job_xor(job: *const RawJob) -> u32;
}

pub const STS_OK: i32 = 0;

/// Job flags; the numbers agree with `csrc/qpl_path.c`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobMode {
    /// Upstream QEMU's: FIRST | LAST | OMIT_VERIFY, level 1.
    Qemu = 0,
    /// QEMU's without OMIT_VERIFY: Intel QPL verifies each stream on the device.
    QemuVerify = 1,
    /// QEMU's with DYNAMIC_HUFFMAN.
    Dynamic = 2,
    /// DYNAMIC_HUFFMAN with verification.
    DynamicVerify = 3,
}

impl JobMode {
    pub fn name(self) -> &'static str {
        match self {
            JobMode::Qemu => "qemu",
            JobMode::QemuVerify => "qemu-verify",
            JobMode::Dynamic => "dynamic",
            JobMode::DynamicVerify => "dynamic-verify",
        }
    }

    pub fn parse(text: &str) -> Option<JobMode> {
        [
            JobMode::Qemu,
            JobMode::QemuVerify,
            JobMode::Dynamic,
            JobMode::DynamicVerify,
        ]
        .into_iter()
        .find(|mode| mode.name() == text)
    }
}

pub struct Job {
    raw: NonNull<RawJob>,
}

impl Job {
    /// A job on the hardware (`qpl_path_hardware`) or software path.
    pub fn new(hardware: bool) -> Result<Job, i32> {
        let mut raw = std::ptr::null_mut();
        // SAFETY: `raw` is a valid out pointer.
        let status = unsafe { iaa_job_new(c_int::from(hardware), &mut raw) };
        match NonNull::new(raw) {
            Some(raw) if status == STS_OK => Ok(Job { raw }),
            _ => Err(status),
        }
    }

    /// Sets the job up as QEMU does. The buffers must outlive the job's use
    /// (until `wait` or `execute` returns).
    pub fn prepare(&mut self, compress: bool, mode: JobMode, input: &[u8], out: &mut [u8]) {
        // SAFETY: pointers and lengths of live slices; QPL reads `input` and
        // writes inside `out` only.
        unsafe {
            iaa_job_prepare(
                self.raw.as_ptr(),
                c_int::from(compress),
                mode as c_int,
                input.as_ptr(),
                input.len() as u32,
                out.as_mut_ptr(),
                out.len() as u32,
            )
        }
    }

    pub fn submit(&mut self) -> i32 {
        // SAFETY: a prepared job.
        unsafe { iaa_job_submit(self.raw.as_ptr()) }
    }

    pub fn wait(&mut self) -> i32 {
        // SAFETY: a submitted job.
        unsafe { iaa_job_wait(self.raw.as_ptr()) }
    }

    pub fn execute(&mut self) -> i32 {
        // SAFETY: a prepared job.
        unsafe { iaa_job_execute(self.raw.as_ptr()) }
    }

    pub fn total_out(&self) -> usize {
        // SAFETY: reading a field of a live job.
        unsafe { iaa_job_total_out(self.raw.as_ptr()) as usize }
    }

    pub fn crc(&self) -> u32 {
        // SAFETY: as above.
        unsafe { iaa_job_crc(self.raw.as_ptr()) }
    }

    pub fn xor(&self) -> u32 {
        // SAFETY: as above.
        unsafe { iaa_job_xor(self.raw.as_ptr()) }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        // SAFETY: created by iaa_job_new, freed once.
        unsafe { iaa_job_free(self.raw.as_ptr()) }
    }
}
