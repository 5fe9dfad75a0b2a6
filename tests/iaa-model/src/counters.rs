//! What the device did: completions by opcode and status, bytes, queue
//! refusals, and one entry per distinct descriptor shape (opcode, flags,
//! operation flags, AECS) with an example, to compare clients.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::descriptor::{Completion, Descriptor, OP_COMPRESS, OP_DECOMPRESS, OP_DRAIN, OP_NOOP};
use crate::exec::inflate::code::UNRECOVERABLE_OUTPUT_OVERFLOW;
use crate::exec::status;

#[derive(Default)]
pub struct Counters {
    pub submitted: AtomicU64,
    pub refused: AtomicU64,
    pub dropped: AtomicU64,
    pub faults_resolved: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// (opcode, status, error code) -> count.
    completions: Mutex<BTreeMap<(u8, u8, u8), u64>>,
    shapes: Mutex<BTreeMap<ShapeKey, Shape>>,
}

#[derive(PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
struct ShapeKey {
    opcode: u8,
    flags: u32,
    op_flags: u16,
    src2_size: u32,
    /// 0: no AECS read; 1: RFC 1951's fixed codes; 2: other codes.
    aecs_tables: u8,
}

struct Shape {
    count: u64,
    descriptor: String,
    aecs: String,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub compress_ok: u64,
    pub decompress_ok: u64,
    pub noop_ok: u64,
    pub drain_ok: u64,
    pub page_faults: u64,
    /// Error completions (every status but success and page fault).
    pub errors: u64,
    /// Of the errors, output overflows (status 0x0B, or an analytics error
    /// with code 25: a page that does not compress).
    pub output_overflow: u64,
}

impl Counters {
    pub fn completed(&self, desc: &Descriptor, completion: &Completion, aecs: Option<&[u8]>) {
        *self
            .completions
            .lock()
            .unwrap()
            .entry((desc.opcode(), completion.status, completion.error_code))
            .or_default() += 1;
        if completion.status == status::SUCCESS {
            self.bytes_in
                .fetch_add(u64::from(completion.bytes_completed), Ordering::Relaxed);
            self.bytes_out
                .fetch_add(u64::from(completion.output_size), Ordering::Relaxed);
        }
        let key = ShapeKey {
            opcode: desc.opcode(),
            flags: desc.flags(),
            op_flags: desc.op_specific_flags(),
            src2_size: desc.src2_size(),
            aecs_tables: aecs.map_or(0, |a| if has_fixed_tables(a) { 1 } else { 2 }),
        };
        let mut shapes = self.shapes.lock().unwrap();
        shapes
            .entry(key)
            .or_insert_with(|| Shape {
                count: 0,
                descriptor: hex(&desc.raw),
                aecs: aecs.map_or_else(String::new, describe_aecs),
            })
            .count += 1;
    }

    pub fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        for (&(opcode, code, error), &count) in self.completions.lock().unwrap().iter() {
            match (opcode, code) {
                (OP_COMPRESS, status::SUCCESS) => totals.compress_ok += count,
                (OP_DECOMPRESS, status::SUCCESS) => totals.decompress_ok += count,
                (OP_NOOP, status::SUCCESS) => totals.noop_ok += count,
                (OP_DRAIN, status::SUCCESS) => totals.drain_ok += count,
                (_, code) if code & 0x7F == status::PAGE_FAULT => totals.page_faults += count,
                (_, code) => {
                    totals.errors += count;
                    if code == status::OUTBUF_OVERFLOW
                        || (code == status::ANALYTICS_ERROR
                            && error == UNRECOVERABLE_OUTPUT_OVERFLOW)
                    {
                        totals.output_overflow += count;
                    }
                }
            }
        }
        totals
    }

    /// The JSON object of `IAA_MODEL_STATS`.
    pub fn to_json(&self, pid: u32) -> String {
        let totals = self.totals();
        let mut json = String::new();
        let _ = write!(
            json,
            "{{\"pid\":{pid},\"compress_ok\":{},\"decompress_ok\":{},\"noop_ok\":{},\"drain_ok\":{},\"page_faults\":{},\"errors\":{},\"output_overflow\":{},\
             \"faults_resolved\":{},\"submitted\":{},\"refused\":{},\"dropped\":{},\"bytes_in\":{},\"bytes_out\":{},\"completions\":[",
            totals.compress_ok,
            totals.decompress_ok,
            totals.noop_ok,
            totals.drain_ok,
            totals.page_faults,
            totals.errors,
            totals.output_overflow,
            self.faults_resolved.load(Ordering::Relaxed),
            self.submitted.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
            self.bytes_in.load(Ordering::Relaxed),
            self.bytes_out.load(Ordering::Relaxed),
        );
        for (index, (&(opcode, code, error), &count)) in
            self.completions.lock().unwrap().iter().enumerate()
        {
            let comma = if index > 0 { "," } else { "" };
            let _ = write!(
                json,
                "{comma}{{\"opcode\":{opcode},\"status\":{code},\"error_code\":{error},\"count\":{count}}}"
            );
        }
        json.push_str("],\"shapes\":[");
        for (index, (key, shape)) in self.shapes.lock().unwrap().iter().enumerate() {
            let comma = if index > 0 { "," } else { "" };
            let _ = write!(
                json,
                "{comma}{{\"opcode\":{},\"flags\":\"{:#08x}\",\"op_flags\":\"{:#06x}\",\"src2_size\":{},\"count\":{},\"first_aecs\":\"{}\",\"first_descriptor\":\"{}\"}}",
                key.opcode, key.flags, key.op_flags, key.src2_size, shape.count, shape.aecs, shape.descriptor
            );
        }
        json.push_str("]}\n");
        json
    }
}

pub fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// The fixed Huffman codes of RFC 1951 in the AECS entry format.
fn fixed_entry(symbol: usize) -> u32 {
    let (code, length) = match symbol {
        0..=143 => (0x30 + symbol as u32, 8),
        144..=255 => (0x190 + (symbol as u32 - 144), 9),
        256..=279 => (symbol as u32 - 256, 7),
        _ => (0xC0 + (symbol as u32 - 280), 8),
    };
    code | (length << 15)
}

fn has_fixed_tables(aecs: &[u8]) -> bool {
    if aecs.len() < 1568 {
        return false;
    }
    let word = |at: usize| u32::from_le_bytes(aecs[at..at + 4].try_into().unwrap());
    (0..286).all(|s| word(288 + 4 * s) == fixed_entry(s))
        && (0..30).all(|s| word(1440 + 4 * s) == (s as u32 | (5 << 15)))
}

/// A compression AECS in words: accumulator bits and whether the code tables
/// are RFC 1951's fixed ones.
fn describe_aecs(aecs: &[u8]) -> String {
    if aecs.len() < 1568 {
        return format!("{} bytes", aecs.len());
    }
    let word = |at: usize| u32::from_le_bytes(aecs[at..at + 4].try_into().unwrap());
    let acc_bits = word(28);
    let tables = if has_fixed_tables(aecs) {
        "fixed"
    } else {
        "custom"
    };
    format!(
        "crc={:#x} xor={:#x} accumulator={} bits [{}] tables={tables} ll[0]={:#x} ll[256]={:#x} d[0]={:#x}",
        word(0),
        word(4),
        acc_bits,
        hex(&aecs[32..32 + (acc_bits as usize).div_ceil(8).min(256)]),
        word(288),
        word(288 + 4 * 256),
        word(1440)
    )
}
