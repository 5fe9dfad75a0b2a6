//! Finds IAA devices and their enabled user work queues from sysfs, as the
//! kernel's idxd driver describes them (`/sys/bus/dsa/devices/iaxN`,
//! `wqN.Q`; Documentation/ABI/stable/sysfs-driver-dma-idxd), without
//! libaccel-config. Each queue that cannot serve the library is skipped with
//! a reason, so that a channel can say why it runs on the CPU.

use std::fs;
use std::path::{Path, PathBuf};

use super::cpu::Features;
use super::settings::{Settings, Submit};

/// GENCAP bit 40: the device decompresses (Intel QPL `GC_DECOMP_SUPPORT`).
const GENCAP_DECOMPRESSION: u64 = 1 << 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WqMode {
    Shared,
    Dedicated,
}

impl WqMode {
    pub fn name(self) -> &'static str {
        match self {
            WqMode::Shared => "shared",
            WqMode::Dedicated => "dedicated",
        }
    }
}

/// One enabled user work queue the library can submit to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkQueueInfo {
    /// `iax1`
    pub device: String,
    /// `wq1.0`
    pub name: String,
    pub mode: WqMode,
    /// Entries (the WQ's size).
    pub size: u32,
    pub max_transfer: u64,
    pub block_on_fault: bool,
    pub priority: u32,
    /// The device's NUMA node (-1: none).
    pub numa_node: i32,
    /// The character device: `<dev root>/iax/wq1.0`.
    pub path: PathBuf,
    /// How descriptors reach it (before trying to map the portal).
    pub submit: Submit,
}

/// What discovery found: the usable queues, and why the others were not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovery {
    pub queues: Vec<WorkQueueInfo>,
    /// One line per device or queue that was skipped, with the reason.
    pub skipped: Vec<String>,
    /// The devices directory that was read.
    pub devices_dir: PathBuf,
    /// IAA devices seen (usable or not).
    pub devices: usize,
}

impl Discovery {
    /// Why there is no usable queue, for the channel's log line.
    pub fn why_none(&self) -> String {
        let dir = self.devices_dir.display();
        if self.devices == 0 {
            if self.skipped.is_empty() {
                return format!("no IAA device in {dir}");
            }
            return format!("no IAA device ({})", self.skipped.join("; "));
        }
        if self.skipped.is_empty() {
            format!("no enabled user work queue on the IAA devices in {dir}")
        } else {
            format!("no usable IAA work queue: {}", self.skipped.join("; "))
        }
    }
}

fn attribute(dir: &Path, name: &str) -> Option<String> {
    fs::read_to_string(dir.join(name))
        .ok()
        .map(|text| text.trim().to_string())
}

fn number<T: std::str::FromStr>(dir: &Path, name: &str) -> Option<T> {
    attribute(dir, name)?.parse().ok()
}

fn hex(dir: &Path, name: &str) -> Option<u64> {
    let text = attribute(dir, name)?;
    let digits = text.strip_prefix("0x").unwrap_or(&text);
    u64::from_str_radix(digits, 16).ok()
}

/// `iax3` → 3.
fn device_id(name: &str) -> Option<u32> {
    name.strip_prefix("iax")?.parse().ok()
}

/// `wq3.1` → (3, 1).
fn queue_id(name: &str) -> Option<(u32, u32)> {
    let (device, queue) = name.strip_prefix("wq")?.split_once('.')?;
    Some((device.parse().ok()?, queue.parse().ok()?))
}

/// How a queue of `mode` takes descriptors, given the forced method and the
/// CPU; `Err` says why it cannot.
fn submission(mode: WqMode, forced: Option<Submit>, cpu: Features) -> Result<Submit, String> {
    match (mode, forced) {
        (_, Some(Submit::Write)) => Ok(Submit::Write),
        (WqMode::Shared, Some(Submit::Enqcmd)) | (WqMode::Dedicated, Some(Submit::Movdir64b)) => {
            Ok(forced.unwrap_or(Submit::Write))
        }
        (WqMode::Dedicated, Some(Submit::Enqcmd)) => {
            Err("dedicated, and QEMU_QPL_IAA_SUBMIT=enqcmd needs a shared queue".into())
        }
        (WqMode::Shared, Some(Submit::Movdir64b)) => {
            Err("shared, and QEMU_QPL_IAA_SUBMIT=movdir64b needs a dedicated queue".into())
        }
        (WqMode::Shared, None) if cpu.enqcmd => Ok(Submit::Enqcmd),
        (WqMode::Dedicated, None) if cpu.movdir64b => Ok(Submit::Movdir64b),
        (_, None) => Ok(Submit::Write),
    }
}

struct Device {
    name: String,
    id: u32,
    numa_node: i32,
}

/// Reads the devices and queues under `settings.sysfs_root`; a queue is
/// usable when its device is enabled and decompresses, and the queue is
/// enabled, of type `user`, non-empty and takes transfers of `page_size`.
pub fn discover(settings: &Settings, cpu: Features, page_size: usize) -> Discovery {
    let devices_dir = settings.sysfs_root.join("bus/dsa/devices");
    let mut found = Discovery {
        devices_dir: devices_dir.clone(),
        ..Discovery::default()
    };
    let entries = match fs::read_dir(&devices_dir) {
        Ok(entries) => entries,
        Err(error) => {
            found.skipped.push(format!(
                "{} cannot be read ({error}); is the idxd driver loaded?",
                devices_dir.display()
            ));
            return found;
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();

    let mut devices = Vec::new();
    for name in names.iter().filter(|n| device_id(n).is_some()) {
        found.devices += 1;
        let dir = devices_dir.join(name);
        let state = attribute(&dir, "state").unwrap_or_default();
        if state != "enabled" {
            found
                .skipped
                .push(format!("{name}: state {state:?}, not enabled"));
            continue;
        }
        match hex(&dir, "gen_cap") {
            Some(gen_cap) if gen_cap & GENCAP_DECOMPRESSION != 0 => {}
            Some(gen_cap) => {
                found.skipped.push(format!(
                    "{name}: GENCAP {gen_cap:#x} has no decompression support"
                ));
                continue;
            }
            None => {
                found.skipped.push(format!("{name}: no readable gen_cap"));
                continue;
            }
        }
        devices.push(Device {
            name: name.clone(),
            id: device_id(name).unwrap_or_default(),
            numa_node: number(&dir, "numa_node").unwrap_or(-1),
        });
    }

    for name in &names {
        let Some((dev_id, _)) = queue_id(name) else {
            continue;
        };
        let Some(device) = devices.iter().find(|d| d.id == dev_id) else {
            continue;
        };
        let dir = devices_dir.join(name);
        let mut skip = |why: String| found.skipped.push(format!("{name}: {why}"));
        let state = attribute(&dir, "state").unwrap_or_default();
        if state != "enabled" {
            skip(format!("state {state:?}, not enabled"));
            continue;
        }
        let kind = attribute(&dir, "type").unwrap_or_default();
        if kind != "user" {
            skip(format!("type {kind:?}, not user"));
            continue;
        }
        let mode = match attribute(&dir, "mode").as_deref() {
            Some("shared") => WqMode::Shared,
            Some("dedicated") => WqMode::Dedicated,
            other => {
                skip(format!("mode {other:?} unknown"));
                continue;
            }
        };
        let size: u32 = number(&dir, "size").unwrap_or(0);
        if size == 0 {
            skip("size 0".into());
            continue;
        }
        let max_transfer: u64 = number(&dir, "max_transfer_size").unwrap_or(0);
        if max_transfer < page_size as u64 {
            skip(format!(
                "max transfer size {max_transfer} is below the page size {page_size}"
            ));
            continue;
        }
        let submit = match submission(mode, settings.submit, cpu) {
            Ok(submit) => submit,
            Err(why) => {
                skip(why);
                continue;
            }
        };
        found.queues.push(WorkQueueInfo {
            device: device.name.clone(),
            name: name.clone(),
            mode,
            size,
            max_transfer,
            block_on_fault: number::<u32>(&dir, "block_on_fault").unwrap_or(0) != 0,
            priority: number(&dir, "priority").unwrap_or(0),
            numa_node: device.numa_node,
            path: settings.dev_root.join("iax").join(name),
            submit,
        });
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse() {
        assert_eq!(device_id("iax12"), Some(12));
        assert_eq!(device_id("dsa0"), None);
        assert_eq!(queue_id("wq12.3"), Some((12, 3)));
        assert_eq!(queue_id("wq1"), None);
        assert_eq!(queue_id("engine1.0"), None);
    }

    #[test]
    fn the_method_follows_the_queue_and_the_cpu() {
        let none = Features::default();
        let all = Features {
            enqcmd: true,
            movdir64b: true,
            waitpkg: true,
        };
        assert_eq!(submission(WqMode::Shared, None, none), Ok(Submit::Write));
        assert_eq!(submission(WqMode::Shared, None, all), Ok(Submit::Enqcmd));
        assert_eq!(
            submission(WqMode::Dedicated, None, all),
            Ok(Submit::Movdir64b)
        );
        assert_eq!(
            submission(WqMode::Dedicated, Some(Submit::Movdir64b), none),
            Ok(Submit::Movdir64b)
        );
        assert!(submission(WqMode::Dedicated, Some(Submit::Enqcmd), all).is_err());
        assert!(submission(WqMode::Shared, Some(Submit::Movdir64b), all).is_err());
        assert_eq!(
            submission(WqMode::Dedicated, Some(Submit::Write), all),
            Ok(Submit::Write)
        );
    }
}
