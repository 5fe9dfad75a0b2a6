//! `iaa-validate device-check SCENARIO`: a raw client of the IAA model that
//! submits hand-built descriptors the three ways a Linux process can (ENQCMD
//! and MOVDIR64B to a mapped portal, `write()` to the WQ's file) and checks
//! what the device reports. The descriptor layout here is written from the
//! kernel's `struct iax_hw_desc` by hand, independently of the model's
//! bindgen view of it. Each scenario needs its own model configuration,
//! which the integration test (tests/device.rs) sets in the environment.

use std::ffi::CString;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

const OP_NOOP: u8 = 0x00;
const OP_DRAIN: u8 = 0x02;
const OP_DECOMPRESS: u8 = 0x42;
const OP_COMPRESS: u8 = 0x43;
const FLAG_BOF: u32 = 1 << 1;
const FLAG_CRAV: u32 = 1 << 2;
const FLAG_RCR: u32 = 1 << 3;

#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Desc([u8; 64]);

#[repr(C, align(64))]
struct Record([u8; 64]);

impl Record {
    fn new() -> Box<Record> {
        Box::new(Record([0; 64]))
    }
    fn status(&self) -> u8 {
        // SAFETY: the device writes this byte from another thread; read it
        // atomically as a client polls a completion record.
        unsafe { AtomicU8::from_ptr(self.0.as_ptr() as *mut u8) }.load(Ordering::Acquire)
    }
    fn wait(&self) -> Result<u8, String> {
        let start = Instant::now();
        loop {
            let status = self.status();
            if status != 0 {
                return Ok(status);
            }
            if start.elapsed() > Duration::from_secs(10) {
                return Err("no completion within 10 s".into());
            }
            std::hint::spin_loop();
        }
    }
    fn fault_addr(&self) -> u64 {
        u64::from_le_bytes(self.0[8..16].try_into().unwrap())
    }
    fn error_code(&self) -> u8 {
        self.0[1]
    }
}

#[derive(Default, Clone, Copy)]
struct Fields {
    opcode: u8,
    flags: u32,
    record: u64,
    src1: u64,
    dst: u64,
    src1_size: u32,
    op_flags: u16,
    src2: u64,
    max_dst: u32,
    src2_size: u32,
}

fn build(f: Fields) -> Desc {
    let mut d = [0u8; 64];
    let word = (f.flags & 0xFF_FFFF) | (u32::from(f.opcode) << 24) | FLAG_CRAV | FLAG_RCR;
    d[4..8].copy_from_slice(&word.to_le_bytes());
    d[8..16].copy_from_slice(&f.record.to_le_bytes());
    d[16..24].copy_from_slice(&f.src1.to_le_bytes());
    d[24..32].copy_from_slice(&f.dst.to_le_bytes());
    d[32..36].copy_from_slice(&f.src1_size.to_le_bytes());
    d[38..40].copy_from_slice(&f.op_flags.to_le_bytes());
    d[40..48].copy_from_slice(&f.src2.to_le_bytes());
    d[48..52].copy_from_slice(&f.max_dst.to_le_bytes());
    d[52..56].copy_from_slice(&f.src2_size.to_le_bytes());
    Desc(d)
}

fn noop(record: &Record) -> Desc {
    build(Fields {
        opcode: OP_NOOP,
        record: record.0.as_ptr() as u64,
        ..Fields::default()
    })
}

struct Queue {
    fd: i32,
    portal: *mut u8,
}

fn open_queue(wq: u32, map: bool) -> Result<Queue, String> {
    let path = CString::new(format!("/dev/iax/wq1.{wq}")).unwrap();
    // SAFETY: a NUL-terminated path.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR) };
    if fd < 0 {
        return Err(format!(
            "open {path:?}: {}",
            std::io::Error::last_os_error()
        ));
    }
    let mut portal = std::ptr::null_mut();
    if map {
        // SAFETY: mapping the WQ's portal page as Intel QPL does.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(format!("mmap portal: {}", std::io::Error::last_os_error()));
        }
        portal = p.cast();
    }
    Ok(Queue { fd, portal })
}

/// ENQCMD: true when the WQ accepted the descriptor (ZF clear).
fn enqcmd(portal: *mut u8, desc: &Desc) -> bool {
    let retry: u8;
    // SAFETY: ENQCMD reads 64 bytes at `desc` and stores them to the portal;
    // the model emulates it (SIGILL/SIGSEGV) and sets ZF.
    unsafe {
        std::arch::asm!(
            ".byte 0xf2, 0x0f, 0x38, 0xf8, 0x02",
            "setz {retry}",
            retry = out(reg_byte) retry,
            in("rax") portal,
            in("rdx") desc.0.as_ptr(),
        );
    }
    retry == 0
}

fn movdir64b(portal: *mut u8, desc: &Desc) {
    // SAFETY: as enqcmd; MOVDIR64B has no status.
    unsafe {
        std::arch::asm!(".byte 0x66, 0x0f, 0x38, 0xf8, 0x02", in("rax") portal, in("rdx") desc.0.as_ptr());
    }
}

fn expect(condition: bool, what: &str) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(what.to_string())
    }
}

/// A raw DEFLATE stream of `data` (fixed Huffman, from miniz_oxide).
fn deflate(data: &[u8]) -> Vec<u8> {
    miniz_oxide::deflate::compress_to_vec(data, 1)
}

fn fresh_pages(len: usize) -> *mut u8 {
    // SAFETY: a new anonymous mapping, not yet touched: not resident.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert!(p != libc::MAP_FAILED);
    p.cast()
}

pub fn run(scenario: &str) -> Result<(), String> {
    match scenario {
        "enqcmd" => {
            let queue = open_queue(0, true)?;
            // SAFETY: closing the WQ file; the mapping stays usable.
            unsafe { libc::close(queue.fd) };
            for _ in 0..100 {
                let record = Record::new();
                expect(
                    enqcmd(queue.portal, &noop(&record)),
                    "ENQCMD of a NOOP refused",
                )?;
                expect(record.wait()? == 1, "NOOP did not succeed")?;
            }
            Ok(())
        }
        "write" => {
            let path = CString::new("/dev/iax/wq1.0").unwrap();
            // SAFETY: a NUL-terminated path.
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR) };
            expect(fd >= 0, "open failed")?;
            // SAFETY: as open_queue's mmap.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    fd,
                    0,
                )
            };
            expect(
                p == libc::MAP_FAILED,
                "mmap of the portal succeeded with IAA_MODEL_PORTAL=write",
            )?;
            let record = Record::new();
            let desc = noop(&record);
            // SAFETY: writing 64 bytes from a live descriptor.
            let n = unsafe { libc::write(fd, desc.0.as_ptr().cast(), 64) };
            expect(n == 64, "write of one descriptor")?;
            expect(record.wait()? == 1, "NOOP by write() did not succeed")?;
            // SAFETY: as above, with a short length: no whole descriptor.
            let n = unsafe { libc::write(fd, desc.0.as_ptr().cast(), 63) };
            expect(n == 0, "a 63-byte write submitted something")?;
            let mut misaligned = desc;
            misaligned.0[8..16].copy_from_slice(&(record.0.as_ptr() as u64 + 32).to_le_bytes());
            // SAFETY: as above.
            let n = unsafe { libc::write(fd, misaligned.0.as_ptr().cast(), 64) };
            expect(
                n == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL),
                "a completion record not 64-byte aligned was accepted",
            )?;
            let bad = CString::new("/dev/iax/wq1.7").unwrap();
            // SAFETY: a NUL-terminated path.
            let fd = unsafe { libc::open(bad.as_ptr(), libc::O_RDWR) };
            expect(fd == -1, "a WQ that does not exist opened")?;
            Ok(())
        }
        "dedicated" => {
            // IAA_MODEL_WQS=shared:4,dedicated:4
            let dedicated = open_queue(1, true)?;
            let record = Record::new();
            movdir64b(dedicated.portal, &noop(&record));
            expect(record.wait()? == 1, "NOOP by MOVDIR64B did not succeed")?;
            let record = Record::new();
            expect(
                !enqcmd(dedicated.portal, &noop(&record)),
                "ENQCMD to a dedicated WQ accepted",
            )?;
            Ok(())
        }
        "queue-full" => {
            // IAA_MODEL_WQS=shared:2 IAA_MODEL_STALL_AFTER=1
            let queue = open_queue(0, true)?;
            let first = Record::new();
            expect(enqcmd(queue.portal, &noop(&first)), "first NOOP refused")?;
            expect(first.wait()? == 1, "first NOOP")?;
            let records: Vec<Box<Record>> = (0..3).map(|_| Record::new()).collect();
            let accepted: Vec<bool> = records
                .iter()
                .map(|r| enqcmd(queue.portal, &noop(r)))
                .collect();
            expect(
                accepted == [true, true, false],
                &format!("depth 2 of a stopped device: {accepted:?}"),
            )?;
            std::thread::sleep(Duration::from_millis(200));
            expect(
                records.iter().all(|r| r.status() == 0),
                "a stopped device completed",
            )?;
            Ok(())
        }
        "drain" => {
            let queue = open_queue(0, true)?;
            let page: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
            let stream = deflate(&page);
            let mut outputs = vec![vec![0u8; 4096]; 16];
            let records: Vec<Box<Record>> = (0..16).map(|_| Record::new()).collect();
            for (out, record) in outputs.iter_mut().zip(&records) {
                let desc = build(Fields {
                    opcode: OP_DECOMPRESS,
                    record: record.0.as_ptr() as u64,
                    src1: stream.as_ptr() as u64,
                    src1_size: stream.len() as u32,
                    dst: out.as_mut_ptr() as u64,
                    max_dst: 4096,
                    op_flags: 0x1f,
                    ..Fields::default()
                });
                expect(enqcmd(queue.portal, &desc), "decompress refused")?;
            }
            let drain = Record::new();
            let desc = build(Fields {
                opcode: OP_DRAIN,
                record: drain.0.as_ptr() as u64,
                ..Fields::default()
            });
            expect(enqcmd(queue.portal, &desc), "DRAIN refused")?;
            expect(drain.wait()? == 1, "DRAIN status")?;
            expect(
                records.iter().all(|r| r.status() == 1),
                "DRAIN completed before earlier descriptors",
            )?;
            expect(
                outputs.iter().all(|o| *o == page),
                "decompressed pages differ",
            )?;
            Ok(())
        }
        "page-fault" | "block-on-fault" => {
            let bof = scenario == "block-on-fault";
            let queue = open_queue(0, true)?;
            let page: Vec<u8> =
                b"the quick brown fox jumps over the lazy dog; ".repeat(100)[..4096].to_vec();
            let stream = deflate(&page);
            let dst = fresh_pages(8192);
            let target = dst.wrapping_add(4096);
            let submit = |record: &Record| {
                let desc = build(Fields {
                    opcode: OP_DECOMPRESS,
                    flags: if bof { FLAG_BOF } else { 0 },
                    record: record.0.as_ptr() as u64,
                    src1: stream.as_ptr() as u64,
                    src1_size: stream.len() as u32,
                    dst: target as u64,
                    max_dst: 4096,
                    op_flags: 0x1f,
                    ..Fields::default()
                });
                enqcmd(queue.portal, &desc)
            };
            let record = Record::new();
            expect(submit(&record), "decompress refused")?;
            let status = record.wait()?;
            if bof {
                expect(status == 1, &format!("block-on-fault: status {status:#x}"))?;
            } else {
                expect(status == 0x83, &format!("untouched destination: status {status:#x}, expected a write page fault (0x83)"))?;
                expect(
                    record.fault_addr() == target as u64,
                    "fault address is not the destination page",
                )?;
                // As Intel QPL does: touch the page and resubmit.
                // SAFETY: the page is ours, mapped read/write.
                unsafe { std::ptr::write_volatile(target, 0) };
                let again = Record::new();
                expect(submit(&again), "resubmission refused")?;
                expect(again.wait()? == 1, "resubmission after touching failed")?;
            }
            // SAFETY: 4096 bytes written by the device.
            let out = unsafe { std::slice::from_raw_parts(target, 4096) };
            expect(out == page.as_slice(), "decompressed page differs")?;
            Ok(())
        }
        "errors" => {
            let queue = open_queue(0, true)?;
            let check =
                |fields: Fields, status: u8, error: Option<u8>, what: &str| -> Result<(), String> {
                    let record = Record::new();
                    let desc = build(Fields {
                        record: record.0.as_ptr() as u64,
                        ..fields
                    });
                    expect(enqcmd(queue.portal, &desc), "refused")?;
                    let got = record.wait()?;
                    expect(
                        got == status,
                        &format!("{what}: status {got:#x}, expected {status:#x}"),
                    )?;
                    if let Some(code) = error {
                        expect(
                            record.error_code() == code,
                            &format!(
                                "{what}: error code {}, expected {code}",
                                record.error_code()
                            ),
                        )?;
                    }
                    Ok(())
                };
            check(
                Fields {
                    opcode: 0x77,
                    ..Fields::default()
                },
                0x10,
                None,
                "unknown opcode",
            )?;
            let data = vec![7u8; 4096];
            let mut out = vec![0u8; 4096];
            let base = Fields {
                src1: data.as_ptr() as u64,
                src1_size: 4096,
                dst: out.as_mut_ptr() as u64,
                max_dst: 4096,
                ..Fields::default()
            };
            // Header generation (compression flags bits 14:12) is IAA 2.0.
            check(
                Fields {
                    opcode: OP_COMPRESS,
                    op_flags: 3 << 12,
                    ..base
                },
                0x30,
                None,
                "IAA 2.0 compression flag",
            )?;
            check(
                Fields {
                    opcode: OP_COMPRESS,
                    op_flags: 0x6,
                    ..base
                },
                0x0a,
                Some(22),
                "compress without an AECS",
            )?;
            let bad_block = [0x07u8, 0, 0, 0];
            let bad = Fields {
                opcode: OP_DECOMPRESS,
                src1: bad_block.as_ptr() as u64,
                src1_size: 4,
                op_flags: 0x1f,
                ..base
            };
            check(bad, 0x0a, Some(13), "block type 3")?;
            let stream = deflate(&data);
            let small = Fields {
                opcode: OP_DECOMPRESS,
                src1: stream.as_ptr() as u64,
                src1_size: stream.len() as u32,
                max_dst: 100,
                op_flags: 0x1f,
                ..base
            };
            check(small, 0x0b, None, "output overflow")?;
            check(
                Fields {
                    opcode: OP_NOOP,
                    flags: FLAG_BOF,
                    ..Fields::default()
                },
                0x11,
                None,
                "block on fault on a WQ without it",
            )?;
            let truncated = Fields {
                opcode: OP_DECOMPRESS,
                src1: stream.as_ptr() as u64,
                src1_size: 1,
                op_flags: 0x1f,
                ..base
            };
            check(
                truncated,
                0x0a,
                Some(15),
                "stream ends before its final EOB",
            )?;
            Ok(())
        }
        "inject" => {
            // IAA_MODEL_FAIL_EVERY=2
            let queue = open_queue(0, true)?;
            let mut statuses = Vec::new();
            for _ in 0..6 {
                let record = Record::new();
                expect(enqcmd(queue.portal, &noop(&record)), "refused")?;
                statuses.push(record.wait()?);
            }
            expect(
                statuses.iter().filter(|&&s| s == 1).count() == 3,
                &format!("statuses {statuses:x?}"),
            )?;
            expect(
                statuses.iter().filter(|&&s| s != 1).count() == 3,
                &format!("statuses {statuses:x?}"),
            )?;
            Ok(())
        }
        "waitpkg" => {
            let queue = open_queue(0, true)?;
            let record = Record::new();
            expect(enqcmd(queue.portal, &noop(&record)), "refused")?;
            let status_ptr = record.0.as_ptr();
            // SAFETY: UMONITOR arms on the record; UMWAIT and TPAUSE wait with
            // a deadline in EDX:EAX; the model emulates all three.
            unsafe {
                std::arch::asm!(".byte 0xf3, 0x48, 0x0f, 0xae, 0xf0", in("rax") status_ptr); // umonitor %rax
                std::arch::asm!(".byte 0xf2, 0x0f, 0xae, 0xf1", in("ecx") 0, in("eax") u32::MAX, in("edx") 0); // umwait %ecx
                std::arch::asm!(".byte 0x66, 0x0f, 0xae, 0xf1", in("ecx") 0, in("eax") u32::MAX, in("edx") 0);
                // tpause %ecx
            }
            expect(record.wait()? == 1, "NOOP")?;
            Ok(())
        }
        _ => Err(format!("unknown scenario {scenario:?}")),
    }
}
