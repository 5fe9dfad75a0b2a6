//! Running a test scenario on the IAA model: the test binary runs itself
//! again (`model_child`, ignored in normal runs) with the model preloaded,
//! a sysfs tree that describes the model's device (what
//! `make -s iaa-model-env` points the library at), the scenario's settings
//! in the environment and the model's statistics collected.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The model library cargo built beside this test binary (the root crate's
/// dev-dependency on iaa-model builds it).
pub fn model_library() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let profile = deps.parent().unwrap();
    [
        profile.join("libiaa_model.so"),
        deps.join("libiaa_model.so"),
    ]
    .into_iter()
    .filter(|p| p.is_file())
    .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
    .unwrap_or_else(|| {
        panic!(
            "libiaa_model.so not found beside {}: cargo build --release -p iaa-model",
            exe.display()
        )
    })
}

/// Writes under `root` the sysfs tree of the model's one device, `iax1`,
/// and its work queues as `IAA_MODEL_WQS` (`wqs`) configures them, with the
/// values the model's accel-config functions report (docs/iaa-model.md).
pub fn sysfs_tree(root: &Path, wqs: &str) {
    let devices = root.join("bus/dsa/devices");
    let write = |dir: &Path, pairs: &[(&str, String)]| {
        std::fs::create_dir_all(dir).unwrap();
        for (name, value) in pairs {
            std::fs::write(dir.join(name), format!("{value}\n")).unwrap();
        }
    };
    write(
        &devices.join("iax1"),
        &[
            ("state", "enabled".into()),
            ("version", "0x100".into()),
            ("gen_cap", format!("{:#x}", 1u64 | (21 << 16) | (1 << 40))),
            ("numa_node", "0".into()),
            ("max_transfer_size", "2097152".into()),
        ],
    );
    for (index, item) in wqs.split(',').enumerate() {
        let parts: Vec<&str> = item.split(':').collect();
        write(
            &devices.join(format!("wq1.{index}")),
            &[
                ("state", "enabled".into()),
                ("type", "user".into()),
                ("mode", parts[0].into()),
                ("size", parts[1].into()),
                ("max_transfer_size", "2097152".into()),
                (
                    "block_on_fault",
                    u8::from(parts.get(2) == Some(&"bof")).to_string(),
                ),
                ("priority", "10".into()),
                ("name", "qemu-qpl-test".into()),
            ],
        );
    }
}

/// What a scenario's process printed and the model counted.
pub struct Outcome {
    pub output: String,
    /// One statistics object per process.
    pub stats: Vec<String>,
}

impl Outcome {
    /// The sum of an integer field over the processes' statistics.
    pub fn stat(&self, name: &str) -> u64 {
        self.stats.iter().map(|json| field(json, name)).sum()
    }

    /// The value the child printed as `RESULT name=value`.
    pub fn result(&self, name: &str) -> String {
        let key = format!("RESULT {name}=");
        self.output
            .lines()
            .find_map(|line| line.find(&key).map(|at| &line[at + key.len()..]))
            .unwrap_or_else(|| panic!("no {key} in the output:\n{}", self.output))
            .to_string()
    }

    pub fn number(&self, name: &str) -> u64 {
        self.result(name).parse().unwrap()
    }
}

/// An integer field of a statistics JSON object.
pub fn field(json: &str, name: &str) -> u64 {
    let key = format!("\"{name}\":");
    let Some(at) = json.find(&key) else {
        return 0;
    };
    json[at + key.len()..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or(0)
}

/// Runs `scenario` in a child on the model with work queues `wqs` and the
/// extra environment `env`; panics with its output unless it succeeds (or
/// fails, when `expect_success` is false).
pub fn run_on_model(
    scenario: &str,
    wqs: &str,
    env: &[(&str, &str)],
    expect_success: bool,
) -> Outcome {
    let dir = std::env::temp_dir().join(format!(
        "qemu-qpl-iaa-{scenario}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let stats = dir.join("stats");
    let sysfs = dir.join("sys");
    std::fs::create_dir_all(&stats).unwrap();
    sysfs_tree(&sysfs, wqs);
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--ignored",
            "--exact",
            "model_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("IAA_TEST_SCENARIO", scenario)
        .env("LD_PRELOAD", model_library())
        .env("IAA_MODEL_WQS", wqs)
        .env("IAA_MODEL_STATS", &stats)
        .env("QEMU_QPL_IAA_SYSFS", &sysfs)
        .env("QEMU_QPL_IAA", "require")
        // The model shares the cores with other tests and can be starved
        // for longer than the library's deadline for silicon (scenarios
        // about timeouts set their own).
        .env("QEMU_QPL_IAA_TIMEOUT_MS", "30000");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        output.status.success(),
        expect_success,
        "scenario {scenario} (IAA_MODEL_WQS={wqs}, {env:?}) exited with {}:\n{text}",
        output.status
    );
    let stats = std::fs::read_dir(&stats)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    Outcome {
        output: text,
        stats,
    }
}
