//! The instructions that reach a portal, emulated from signal handlers so
//! that unmodified client binaries run on CPUs without them:
//!
//! * ENQCMD (`F2 0F 38 F8 /r`): #UD here (SIGILL). The 64 bytes at the memory
//!   operand go to the shared WQ behind the portal address in the register
//!   operand; ZF reports ENQCMD's retry status (queue full).
//! * MOVDIR64B (`66 0F 38 F8 /r`): SIGILL on CPUs without it; on CPUs that
//!   have it (these EPYCs execute it although CPUID hides it) the store hits
//!   the no-access portal mapping (SIGSEGV). Dedicated WQ; no status.
//! * UMONITOR / UMWAIT / TPAUSE (`F3|F2|66 0F AE /6`, register form): SIGILL
//!   without WAITPKG; emulated as an immediate wake-up (CF = 0).
//!
//! Anything else is handed to the handler that was installed before.

use std::ffi::c_int;
use std::sync::OnceLock;

use crate::descriptor::DESCRIPTOR_SIZE;
use crate::device::{device, Submit};
use crate::interpose::portal_queue;

static PREVIOUS: OnceLock<(libc::sigaction, libc::sigaction)> = OnceLock::new();

/// Installs the SIGILL and SIGSEGV handlers (once).
pub fn install() {
    PREVIOUS.get_or_init(|| {
        // SAFETY: sigaction with valid, zero-initialised structures; the
        // handler only touches the faulting thread's context.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction =
                handler as extern "C" fn(c_int, *mut libc::siginfo_t, *mut libc::c_void) as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER;
            libc::sigemptyset(&mut action.sa_mask);
            let mut previous_ill: libc::sigaction = std::mem::zeroed();
            let mut previous_segv: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGILL, &action, &mut previous_ill);
            libc::sigaction(libc::SIGSEGV, &action, &mut previous_segv);
            (previous_ill, previous_segv)
        }
    });
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Enqcmd,
    Movdir64b,
    Umonitor,
    Umwait,
    Tpause,
}

/// A decoded instruction: what it is, its length, its register operand and
/// (for the memory forms) the effective address of its memory operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    pub kind: Kind,
    pub length: usize,
    pub reg: usize,
    pub rm: Option<usize>,
    pub memory: Option<u64>,
    pub address32: bool,
}

/// Decodes the instruction at `code`; `regs` gives the 16 general registers
/// in x86 numbering (rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8..r15).
pub fn decode(code: &[u8], regs: &[u64; 16], rip: u64) -> Option<Decoded> {
    let mut at = 0;
    let (mut p66, mut pf2, mut pf3, mut p67) = (false, false, false, false);
    while at < 4 {
        match *code.get(at)? {
            0x66 => p66 = true,
            0xF2 => pf2 = true,
            0xF3 => pf3 = true,
            0x67 => p67 = true,
            0x2E | 0x3E | 0x26 | 0x36 | 0x64 | 0x65 => {}
            _ => break,
        }
        at += 1;
    }
    let mut rex = 0u8;
    if (0x40..=0x4F).contains(code.get(at)?) {
        rex = code[at];
        at += 1;
    }
    let (rex_r, rex_x, rex_b) = (
        usize::from(rex & 4 != 0) * 8,
        usize::from(rex & 2 != 0) * 8,
        usize::from(rex & 1 != 0) * 8,
    );
    if *code.get(at)? != 0x0F {
        return None;
    }
    let kind;
    let memory_form;
    match (*code.get(at + 1)?, code.get(at + 2).copied()) {
        (0x38, Some(0xF8)) => {
            kind = match (p66, pf2, pf3) {
                (false, true, false) => Kind::Enqcmd,
                (true, false, false) => Kind::Movdir64b,
                _ => return None,
            };
            memory_form = true;
            at += 3;
        }
        (0xAE, Some(modrm)) if modrm >> 6 == 3 && (modrm >> 3) & 7 == 6 => {
            kind = match (p66, pf2, pf3) {
                (false, false, true) => Kind::Umonitor,
                (false, true, false) => Kind::Umwait,
                (true, false, false) => Kind::Tpause,
                _ => return None,
            };
            memory_form = false;
            at += 2;
        }
        _ => return None,
    }
    let modrm = *code.get(at)?;
    at += 1;
    let mode = modrm >> 6;
    let reg = ((modrm >> 3) & 7) as usize + rex_r;
    let rm = (modrm & 7) as usize;
    if !memory_form {
        return Some(Decoded {
            kind,
            length: at,
            reg,
            rm: Some(rm + rex_b),
            memory: None,
            address32: p67,
        });
    }
    if mode == 3 {
        return None;
    }
    let mut address: u64;
    if rm == 4 {
        let sib = *code.get(at)?;
        at += 1;
        let scale = sib >> 6;
        let index = ((sib >> 3) & 7) as usize + rex_x;
        let base = (sib & 7) as usize;
        address = if base == 5 && mode == 0 {
            let disp = i32::from_le_bytes(code.get(at..at + 4)?.try_into().ok()?);
            at += 4;
            disp as i64 as u64
        } else {
            regs[base + rex_b]
        };
        if index != 4 {
            address = address.wrapping_add(regs[index] << scale);
        }
    } else if rm == 5 && mode == 0 {
        let disp = i32::from_le_bytes(code.get(at..at + 4)?.try_into().ok()?);
        at += 4;
        // RIP-relative: from the end of the instruction.
        address = (rip + at as u64).wrapping_add(disp as i64 as u64);
    } else {
        address = regs[rm + rex_b];
    }
    match mode {
        1 => {
            address = address.wrapping_add(*code.get(at)? as i8 as i64 as u64);
            at += 1;
        }
        2 => {
            let disp = i32::from_le_bytes(code.get(at..at + 4)?.try_into().ok()?);
            address = address.wrapping_add(disp as i64 as u64);
            at += 4;
        }
        _ => {}
    }
    if p67 {
        address &= 0xFFFF_FFFF;
    }
    Some(Decoded {
        kind,
        length: at,
        reg,
        rm: None,
        memory: Some(address),
        address32: p67,
    })
}

const GREGS: [c_int; 16] = [
    libc::REG_RAX,
    libc::REG_RCX,
    libc::REG_RDX,
    libc::REG_RBX,
    libc::REG_RSP,
    libc::REG_RBP,
    libc::REG_RSI,
    libc::REG_RDI,
    libc::REG_R8,
    libc::REG_R9,
    libc::REG_R10,
    libc::REG_R11,
    libc::REG_R12,
    libc::REG_R13,
    libc::REG_R14,
    libc::REG_R15,
];

const FLAG_CF: u64 = 1 << 0;
const FLAG_PF: u64 = 1 << 2;
const FLAG_AF: u64 = 1 << 4;
const FLAG_ZF: u64 = 1 << 6;
const FLAG_SF: u64 = 1 << 7;
const FLAG_OF: u64 = 1 << 11;

extern "C" fn handler(signal: c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid ucontext for an SA_SIGINFO handler.
    let uc = unsafe { &mut *(context as *mut libc::ucontext_t) };
    if emulate(signal, info, uc) {
        return;
    }
    chain(signal, info, context);
}

fn emulate(signal: c_int, info: *mut libc::siginfo_t, uc: &mut libc::ucontext_t) -> bool {
    let gregs = &mut uc.uc_mcontext.gregs;
    let rip = gregs[libc::REG_RIP as usize] as u64;
    let mut regs = [0u64; 16];
    for (slot, &index) in regs.iter_mut().zip(GREGS.iter()) {
        *slot = gregs[index as usize] as u64;
    }
    // SAFETY: RIP points at the instruction that faulted, in executable
    // memory; x86 instructions are at most 15 bytes.
    let code = unsafe { std::slice::from_raw_parts(rip as *const u8, 15) };
    let Some(decoded) = decode(code, &regs, rip) else {
        return false;
    };
    let flags = &mut gregs[libc::REG_EFL as usize];
    match decoded.kind {
        Kind::Enqcmd | Kind::Movdir64b => {
            let mut target = regs[decoded.reg];
            if decoded.address32 {
                target &= 0xFFFF_FFFF;
            }
            if signal == libc::SIGSEGV {
                // SAFETY: SIGSEGV's siginfo carries the faulting address.
                let fault = unsafe { (*info).si_addr() } as u64;
                if fault != target {
                    return false;
                }
            }
            let Some(wq) = portal_queue(target) else {
                return false;
            };
            let Some(source) = decoded.memory else {
                return false;
            };
            let mut bytes = [0u8; DESCRIPTOR_SIZE];
            // SAFETY: the instruction's 64-byte source operand, which the
            // client named; reading it is what the CPU would do.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    source as *const u8,
                    bytes.as_mut_ptr(),
                    DESCRIPTOR_SIZE,
                )
            };
            let shared = crate::config().wqs[wq].mode == crate::config::WqMode::Shared;
            let result = match (decoded.kind, shared) {
                (Kind::Enqcmd, true) | (Kind::Movdir64b, false) => device().submit(wq, bytes),
                // ENQCMD to a dedicated WQ or MOVDIR64B to a shared one: not
                // accepted by the device.
                _ => {
                    device()
                        .counters
                        .dropped
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    Submit::Dropped
                }
            };
            if decoded.kind == Kind::Enqcmd {
                *flags &= !((FLAG_CF | FLAG_PF | FLAG_AF | FLAG_ZF | FLAG_SF | FLAG_OF) as i64);
                if result != Submit::Accepted {
                    *flags |= FLAG_ZF as i64;
                }
            }
        }
        Kind::Umonitor | Kind::Umwait | Kind::Tpause => {
            if signal != libc::SIGILL {
                return false;
            }
            *flags &= !(FLAG_CF as i64);
        }
    }
    gregs[libc::REG_RIP as usize] += decoded.length as i64;
    true
}

fn chain(signal: c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let Some((ill, segv)) = PREVIOUS.get() else {
        return;
    };
    let previous = if signal == libc::SIGILL { ill } else { segv };
    let handler = previous.sa_sigaction;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // Restore the default action; returning re-executes the instruction,
        // which raises the signal again, now fatal as it would have been.
        // SAFETY: sigaction with a zeroed (SIG_DFL) action.
        unsafe {
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(signal, &default, std::ptr::null_mut());
        }
        return;
    }
    // SAFETY: calling the handler the program had installed, with the
    // signature its flags declare.
    unsafe {
        if previous.sa_flags & libc::SA_SIGINFO != 0 {
            let function: extern "C" fn(c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                std::mem::transmute(handler);
            function(signal, info, context);
        } else {
            let function: extern "C" fn(c_int) = std::mem::transmute(handler);
            function(signal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_qpl_enqcmd() {
        // Intel QPL 1.9: `f2 0f 38 f8 02` = enqcmd (%rdx),%rax.
        let mut regs = [0u64; 16];
        regs[0] = 0x7000;
        regs[2] = 0x9000;
        let decoded = decode(&[0xF2, 0x0F, 0x38, 0xF8, 0x02, 0, 0, 0], &regs, 0x1000).unwrap();
        assert_eq!(decoded.kind, Kind::Enqcmd);
        assert_eq!(decoded.length, 5);
        assert_eq!(regs[decoded.reg], 0x7000);
        assert_eq!(decoded.memory, Some(0x9000));
    }

    #[test]
    fn decodes_rex_sib_and_waitpkg() {
        let mut regs = [0u64; 16];
        regs[9] = 0x100; // r9
        regs[3] = 0x10; // rbx
                        // movdir64b 0x8(%rbx,%r9,2),%r10 : 66 45? use REX.RX: 0x46 -> R and X
        let code = [
            0x66, 0x46, 0x0F, 0x38, 0xF8, 0x54, 0x4B, 0x08, 0, 0, 0, 0, 0, 0, 0,
        ];
        let decoded = decode(&code, &regs, 0).unwrap();
        assert_eq!(decoded.kind, Kind::Movdir64b);
        assert_eq!(decoded.reg, 10);
        assert_eq!(decoded.memory, Some(0x10 + 0x200 + 8));
        assert_eq!(decoded.length, 8);
        // umonitor %r12 (f3 41 0f ae f4), umwait %ecx (f2 0f ae f1)
        assert_eq!(
            decode(&[0xF3, 0x41, 0x0F, 0xAE, 0xF4, 0, 0, 0], &regs, 0)
                .unwrap()
                .kind,
            Kind::Umonitor
        );
        let umwait = decode(&[0xF2, 0x0F, 0xAE, 0xF1, 0, 0, 0, 0], &regs, 0).unwrap();
        assert_eq!((umwait.kind, umwait.length), (Kind::Umwait, 4));
        // clwb (66 0f ae /6 with a memory operand) is not ours.
        assert!(decode(&[0x66, 0x0F, 0xAE, 0x30, 0, 0, 0, 0], &regs, 0).is_none());
    }
}
