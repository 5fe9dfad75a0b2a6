//! The IAA model driven by a raw client (`iaa-validate device-check`), one
//! process per scenario with the model preloaded and configured through the
//! environment; each process's statistics file is checked too.

use std::path::PathBuf;
use std::process::Command;

/// The model library cargo built for this profile.
pub fn model_library() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_iaa-validate"));
    let dir = exe.parent().unwrap();
    let candidates = [
        dir.join("libiaa_model.so"),
        dir.join("deps/libiaa_model.so"),
    ];
    candidates
        .iter()
        .filter(|p| p.is_file())
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "libiaa_model.so not found beside {}; build it with cargo build -p iaa-model",
                exe.display()
            )
        })
}

/// An integer field of a statistics JSON object.
pub fn field(json: &str, name: &str) -> u64 {
    let key = format!("\"{name}\":");
    let start = json
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {json}"))
        + key.len();
    json[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

/// Runs one scenario; returns the statistics JSON of the client process.
fn scenario(name: &str, env: &[(&str, &str)]) -> String {
    let stats =
        std::env::temp_dir().join(format!("iaa-model-device-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&stats);
    std::fs::create_dir_all(&stats).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_iaa-validate"));
    command
        .args(["device-check", name])
        .env("LD_PRELOAD", model_library())
        .env("IAA_MODEL_STATS", &stats);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "scenario {name} failed: {text}");
    let files: Vec<_> = std::fs::read_dir(&stats)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        files.len(),
        1,
        "scenario {name}: expected one statistics file, found {files:?}"
    );
    let json = std::fs::read_to_string(&files[0]).unwrap();
    let _ = std::fs::remove_dir_all(&stats);
    json
}

#[test]
fn enqcmd_to_a_shared_queue() {
    let json = scenario("enqcmd", &[]);
    assert_eq!(field(&json, "noop_ok"), 100);
    assert_eq!(field(&json, "errors"), 0);
}

#[test]
fn write_when_the_portal_cannot_be_mapped() {
    let json = scenario("write", &[("IAA_MODEL_PORTAL", "write")]);
    assert_eq!(field(&json, "noop_ok"), 1);
}

#[test]
fn movdir64b_to_a_dedicated_queue() {
    let json = scenario("dedicated", &[("IAA_MODEL_WQS", "shared:4,dedicated:4")]);
    assert_eq!(field(&json, "noop_ok"), 1);
    assert_eq!(field(&json, "dropped"), 1);
}

#[test]
fn a_full_queue_refuses_and_a_stopped_device_stays_silent() {
    let json = scenario(
        "queue-full",
        &[
            ("IAA_MODEL_WQS", "shared:2"),
            ("IAA_MODEL_STALL_AFTER", "1"),
        ],
    );
    assert_eq!(field(&json, "refused"), 1);
    assert_eq!(field(&json, "noop_ok"), 1);
}

#[test]
fn drain_waits_for_earlier_descriptors() {
    let json = scenario("drain", &[("IAA_MODEL_ENGINES", "4")]);
    assert_eq!(field(&json, "decompress_ok"), 16);
    assert_eq!(field(&json, "drain_ok"), 1);
}

#[test]
fn untouched_destination_page_faults_without_block_on_fault() {
    let json = scenario("page-fault", &[]);
    assert_eq!(field(&json, "page_faults"), 1);
    assert_eq!(field(&json, "decompress_ok"), 1);
}

#[test]
fn block_on_fault_touches_and_goes_on() {
    let json = scenario("block-on-fault", &[("IAA_MODEL_WQS", "shared:16:bof")]);
    assert_eq!(field(&json, "page_faults"), 0);
    assert_eq!(field(&json, "decompress_ok"), 1);
    assert!(field(&json, "faults_resolved") >= 1);
}

#[test]
fn errors_as_specified() {
    let json = scenario("errors", &[("IAA_MODEL_WQS", "shared:128")]);
    assert_eq!(field(&json, "errors"), 7);
}

#[test]
fn injected_failures() {
    let json = scenario("inject", &[("IAA_MODEL_FAIL_EVERY", "2")]);
    assert_eq!(field(&json, "noop_ok"), 3);
    assert_eq!(field(&json, "errors"), 3);
}

#[test]
fn waitpkg_instructions_are_emulated() {
    scenario("waitpkg", &[]);
}

#[test]
fn a_bad_configuration_is_refused() {
    let output = Command::new(env!("CARGO_BIN_EXE_iaa-validate"))
        .args(["device-check", "enqcmd"])
        .env("LD_PRELOAD", model_library())
        .env("IAA_MODEL_WQS", "shared:0")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("IAA_MODEL_WQS"));
}
