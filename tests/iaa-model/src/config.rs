//! The model's configuration, read once from the environment.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `IAA_MODEL_WQS` | work queues, comma-separated `shared:DEPTH` or `dedicated:DEPTH`, each optionally `:bof` (block on fault) | `shared:128:bof` (Intel QPL's reference accel-config) |
//! | `IAA_MODEL_ENGINES` | executor threads of the device | `2` |
//! | `IAA_MODEL_PORTAL` | `mmap`: the portal maps (ENQCMD/MOVDIR64B); `write`: mmap of the WQ fails, so clients fall back to `write()` | `mmap` |
//! | `IAA_MODEL_FAIL_EVERY` | every Nth descriptor completes with a hardware error (0 = never) | `0` |
//! | `IAA_MODEL_FAIL_SEED` | with `IAA_MODEL_FAIL_RATE`, the random seed | `1` |
//! | `IAA_MODEL_FAIL_RATE` | probability (0..1) that a descriptor completes with a hardware error | `0` |
//! | `IAA_MODEL_FAULT_US` | with block on fault, microseconds the device waits for each page fault it has the OS resolve | `20` |
//! | `IAA_MODEL_STALL_AFTER` | the device stops completing after N descriptors (0 = never) | `0` |
//! | `IAA_MODEL_STATS` | directory: each process writes `<pid>.json` at exit | unset |
//! | `IAA_MODEL_RECORD` | directory: each process writes `<pid>.rec`, one line per executed descriptor (descriptor, AECS read, completion) | unset |
//! | `IAA_MODEL_RECORD_LIMIT` | at most this many lines per process | `100000` |
//! | `IAA_MODEL_CORRUPT` | test only: flip one output bit of every COMPRESS (proves the validation can fail) | unset |

use std::env;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WqMode {
    Shared,
    Dedicated,
}

#[derive(Debug, Clone)]
pub struct WqConfig {
    pub mode: WqMode,
    pub depth: usize,
    pub block_on_fault: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortalMode {
    Mmap,
    Write,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub wqs: Vec<WqConfig>,
    pub engines: usize,
    pub portal: PortalMode,
    pub fail_every: u64,
    pub fail_rate: f64,
    pub fail_seed: u64,
    pub stall_after: u64,
    pub fault_us: u64,
    pub stats_dir: Option<String>,
    pub record: Option<String>,
    pub record_limit: u64,
    pub corrupt: bool,
}

impl Config {
    pub fn from_env() -> Result<Config, String> {
        let wqs =
            parse_wqs(&env::var("IAA_MODEL_WQS").unwrap_or_else(|_| "shared:128:bof".into()))?;
        let portal = match env::var("IAA_MODEL_PORTAL").as_deref() {
            Err(_) | Ok("mmap") => PortalMode::Mmap,
            Ok("write") => PortalMode::Write,
            Ok(other) => return Err(format!("IAA_MODEL_PORTAL={other}: expected mmap or write")),
        };
        let fail_rate: f64 = number("IAA_MODEL_FAIL_RATE", 0.0)?;
        if !(0.0..=1.0).contains(&fail_rate) {
            return Err(format!("IAA_MODEL_FAIL_RATE={fail_rate}: expected 0..1"));
        }
        let engines: usize = number("IAA_MODEL_ENGINES", 2)?;
        if engines == 0 || engines > 64 {
            return Err(format!("IAA_MODEL_ENGINES={engines}: expected 1..64"));
        }
        Ok(Config {
            wqs,
            engines,
            portal,
            fail_every: number("IAA_MODEL_FAIL_EVERY", 0)?,
            fail_rate,
            fail_seed: number("IAA_MODEL_FAIL_SEED", 1)?,
            stall_after: number("IAA_MODEL_STALL_AFTER", 0)?,
            fault_us: number("IAA_MODEL_FAULT_US", 20)?,
            stats_dir: env::var("IAA_MODEL_STATS").ok().filter(|s| !s.is_empty()),
            record: env::var("IAA_MODEL_RECORD").ok().filter(|s| !s.is_empty()),
            record_limit: number("IAA_MODEL_RECORD_LIMIT", 100_000)?,
            corrupt: env::var_os("IAA_MODEL_CORRUPT").is_some(),
        })
    }
}

fn number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match env::var(name) {
        Err(_) => Ok(default),
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|_| format!("{name}={text}: not a number")),
    }
}

fn parse_wqs(text: &str) -> Result<Vec<WqConfig>, String> {
    let mut wqs = Vec::new();
    for item in text.split(',').filter(|s| !s.trim().is_empty()) {
        let mut parts = item.trim().split(':');
        let mode = match parts.next() {
            Some("shared") => WqMode::Shared,
            Some("dedicated") => WqMode::Dedicated,
            _ => {
                return Err(format!(
                    "IAA_MODEL_WQS item {item:?}: expected shared:DEPTH or dedicated:DEPTH"
                ))
            }
        };
        let depth: usize = parts
            .next()
            .and_then(|d| d.parse().ok())
            .filter(|d| (1..=1024).contains(d))
            .ok_or_else(|| format!("IAA_MODEL_WQS item {item:?}: depth must be 1..1024"))?;
        let block_on_fault = match parts.next() {
            None => false,
            Some("bof") => true,
            Some(other) => {
                return Err(format!(
                    "IAA_MODEL_WQS item {item:?}: unknown option {other:?}"
                ))
            }
        };
        wqs.push(WqConfig {
            mode,
            depth,
            block_on_fault,
        });
    }
    if wqs.is_empty() || wqs.len() > 8 {
        return Err("IAA_MODEL_WQS: between 1 and 8 work queues".into());
    }
    Ok(wqs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_queues() {
        let wqs = parse_wqs("shared:64,dedicated:16:bof").unwrap();
        assert_eq!(wqs.len(), 2);
        assert_eq!(wqs[0].mode, WqMode::Shared);
        assert_eq!(wqs[1].depth, 16);
        assert!(wqs[1].block_on_fault);
        assert!(parse_wqs("shared:0").is_err());
        assert!(parse_wqs("fast:4").is_err());
        assert!(parse_wqs("shared:4:maybe").is_err());
    }
}
