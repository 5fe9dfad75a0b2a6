//! The operator's and the tests' switches for the IAA path, read from the
//! environment when a channel is set up (docs/iaa.md lists them).

use std::path::PathBuf;
use std::time::Duration;

use crate::error::Error;

/// Whether channels may use IAA (`QEMU_QPL_IAA`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// IAA when a usable work queue exists, the CPU otherwise (the default).
    Auto,
    /// The CPU always (`off`), for comparison or to rule the device out.
    Off,
    /// IAA or a failed setup (`require`): for tests that must not pass on
    /// the CPU path by accident.
    Require,
}

/// How descriptors reach a work queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submit {
    /// ENQCMD to a shared WQ's portal (status: accepted or retry).
    Enqcmd,
    /// MOVDIR64B to a dedicated WQ's portal (no status: depth tracked).
    Movdir64b,
    /// `write()` of the descriptor to the WQ's character device.
    Write,
}

impl Submit {
    pub fn name(self) -> &'static str {
        match self {
            Submit::Enqcmd => "ENQCMD",
            Submit::Movdir64b => "MOVDIR64B",
            Submit::Write => "write()",
        }
    }
}

/// How a thread waits for a completion record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Polling with `pause`, yielding the core after a short spin.
    Pause,
    /// UMONITOR/UMWAIT on the record (CPUs with WAITPKG).
    Umwait,
}

/// Which Huffman codes the device encodes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Huffman {
    /// RFC 1951's fixed codes through the AECS: Intel QPL's mode for QEMU,
    /// one descriptor per page.
    Fixed,
    /// A statistics pass, then codes built for the page from its histogram:
    /// two descriptors per page, a dynamic block.
    Dynamic,
}

impl Huffman {
    pub fn name(self) -> &'static str {
        match self {
            Huffman::Fixed => "fixed Huffman",
            Huffman::Dynamic => "dynamic Huffman",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub mode: Mode,
    /// Stands for `/sys` (`QEMU_QPL_IAA_SYSFS`): devices are read from
    /// `<root>/bus/dsa/devices`.
    pub sysfs_root: PathBuf,
    /// Stands for `/dev` (`QEMU_QPL_IAA_DEV`): work queues are
    /// `<root>/iax/wqD.Q`.
    pub dev_root: PathBuf,
    /// Forced submission method (`QEMU_QPL_IAA_SUBMIT`); `None` follows CPUID.
    pub submit: Option<Submit>,
    /// Forced wait (`QEMU_QPL_IAA_WAIT`); `None` follows CPUID.
    pub wait: Option<Wait>,
    /// How long a packet's descriptors may take (`QEMU_QPL_IAA_TIMEOUT_MS`).
    pub timeout: Duration,
    /// `None`: the level decides (`QEMU_QPL_IAA_HUFFMAN` forces it).
    pub huffman: Option<Huffman>,
    /// Test only (`QEMU_QPL_IAA_EVICT_EVERY`): every Nth packet the channel
    /// discards its device buffers' pages first, as reclaim would, so that
    /// the device meets non-resident pages. 0 = never.
    pub evict_every: u32,
    /// `QEMU_QPL_IAA_LOG`: a file each channel appends its path line to at
    /// setup, and its counters at the end (for QEMUs whose shim does not
    /// report them, and for tests).
    pub log: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mode: Mode::Auto,
            sysfs_root: PathBuf::from("/sys"),
            dev_root: PathBuf::from("/dev"),
            submit: None,
            wait: None,
            timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
            huffman: None,
            evict_every: 0,
            log: None,
        }
    }
}

/// A packet's descriptors normally complete in microseconds; a second covers
/// a device shared with other busy clients.
pub const DEFAULT_TIMEOUT_MS: u64 = 1000;

fn parse<T>(name: &str, value: &str, choices: &[(&str, T)]) -> Result<T, Error>
where
    T: Copy,
{
    choices
        .iter()
        .find(|(text, _)| *text == value)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(text, _)| *text).collect();
            Error::invalid(format!("{name}={value} is not one of {}", names.join(", ")))
        })
}

impl Settings {
    /// The settings from a lookup function (the environment in
    /// [`Settings::from_env`]; a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Settings, Error> {
        let mut settings = Settings::default();
        if let Some(value) = get("QEMU_QPL_IAA") {
            settings.mode = parse(
                "QEMU_QPL_IAA",
                &value,
                &[
                    ("auto", Mode::Auto),
                    ("on", Mode::Auto),
                    ("off", Mode::Off),
                    ("require", Mode::Require),
                ],
            )?;
        }
        if let Some(value) = get("QEMU_QPL_IAA_SYSFS").filter(|v| !v.is_empty()) {
            settings.sysfs_root = PathBuf::from(value);
        }
        if let Some(value) = get("QEMU_QPL_IAA_DEV").filter(|v| !v.is_empty()) {
            settings.dev_root = PathBuf::from(value);
        }
        if let Some(value) = get("QEMU_QPL_IAA_SUBMIT") {
            settings.submit = parse(
                "QEMU_QPL_IAA_SUBMIT",
                &value,
                &[
                    ("auto", None),
                    ("enqcmd", Some(Submit::Enqcmd)),
                    ("movdir64b", Some(Submit::Movdir64b)),
                    ("write", Some(Submit::Write)),
                ],
            )?;
        }
        if let Some(value) = get("QEMU_QPL_IAA_WAIT") {
            settings.wait = parse(
                "QEMU_QPL_IAA_WAIT",
                &value,
                &[
                    ("auto", None),
                    ("pause", Some(Wait::Pause)),
                    ("umwait", Some(Wait::Umwait)),
                ],
            )?;
        }
        if let Some(value) = get("QEMU_QPL_IAA_HUFFMAN") {
            settings.huffman = parse(
                "QEMU_QPL_IAA_HUFFMAN",
                &value,
                &[
                    ("auto", None),
                    ("fixed", Some(Huffman::Fixed)),
                    ("dynamic", Some(Huffman::Dynamic)),
                ],
            )?;
        }
        if let Some(value) = get("QEMU_QPL_IAA_TIMEOUT_MS") {
            let ms: u64 = value
                .trim()
                .parse()
                .ok()
                .filter(|ms| (1..=600_000).contains(ms))
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "QEMU_QPL_IAA_TIMEOUT_MS={value} is not a number of milliseconds from 1 to 600000"
                    ))
                })?;
            settings.timeout = Duration::from_millis(ms);
        }
        if let Some(value) = get("QEMU_QPL_IAA_LOG").filter(|v| !v.is_empty()) {
            settings.log = Some(PathBuf::from(value));
        }
        if let Some(value) = get("QEMU_QPL_IAA_EVICT_EVERY") {
            settings.evict_every = value.trim().parse().map_err(|_| {
                Error::invalid(format!(
                    "QEMU_QPL_IAA_EVICT_EVERY={value} is not a packet count"
                ))
            })?;
        }
        Ok(settings)
    }

    /// The settings of this process's environment.
    pub fn from_env() -> Result<Settings, Error> {
        Settings::from_lookup(|name| std::env::var(name).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> Result<Settings, Error> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(lookup(&[]).unwrap(), Settings::default());
        let s = lookup(&[
            ("QEMU_QPL_IAA", "require"),
            ("QEMU_QPL_IAA_SYSFS", "/tmp/sys"),
            ("QEMU_QPL_IAA_SUBMIT", "movdir64b"),
            ("QEMU_QPL_IAA_WAIT", "umwait"),
            ("QEMU_QPL_IAA_TIMEOUT_MS", "50"),
            ("QEMU_QPL_IAA_HUFFMAN", "fixed"),
        ])
        .unwrap();
        assert_eq!(s.mode, Mode::Require);
        assert_eq!(s.sysfs_root, PathBuf::from("/tmp/sys"));
        assert_eq!(s.dev_root, PathBuf::from("/dev"));
        assert_eq!(s.submit, Some(Submit::Movdir64b));
        assert_eq!(s.wait, Some(Wait::Umwait));
        assert_eq!(s.timeout, Duration::from_millis(50));
        assert_eq!(s.huffman, Some(Huffman::Fixed));
    }

    #[test]
    fn a_bad_value_names_the_variable() {
        for (name, value) in [
            ("QEMU_QPL_IAA", "maybe"),
            ("QEMU_QPL_IAA_SUBMIT", "enqcmds"),
            ("QEMU_QPL_IAA_TIMEOUT_MS", "0"),
            ("QEMU_QPL_IAA_HUFFMAN", "canned"),
        ] {
            let error = lookup(&[(name, value)]).unwrap_err();
            assert!(error.to_string().contains(name), "{error}");
        }
    }
}
