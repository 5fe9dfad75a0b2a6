//! Discovery of IAA work queues from a sysfs tree, without the device: fake
//! trees in the layout of the kernel's idxd driver, each queue that cannot
//! serve skipped with its reason, and every "no" ending on the CPU path with
//! a line that says why.

use std::path::{Path, PathBuf};

use qemu_qpl::iaa::cpu::Features;
use qemu_qpl::iaa::discovery::{discover, WqMode};
use qemu_qpl::iaa::{route, Mode, Route, Settings, Submit};
use qemu_qpl::{ChannelConfig, Level, Receiver, Sender};

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("qemu-qpl-discovery-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn attributes(dir: &Path, pairs: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, value) in pairs {
        std::fs::write(dir.join(name), format!("{value}\n")).unwrap();
    }
}

const GEN_CAP: &str = "0x10000150001";

fn device(root: &Path, name: &str, state: &str, gen_cap: &str, node: &str) {
    attributes(
        &root.join("bus/dsa/devices").join(name),
        &[
            ("state", state),
            ("gen_cap", gen_cap),
            ("numa_node", node),
            ("version", "0x100"),
            ("max_transfer_size", "2097152"),
        ],
    );
}

fn queue(root: &Path, name: &str, pairs: &[(&str, &str)]) {
    let mut all = vec![
        ("state", "enabled"),
        ("type", "user"),
        ("mode", "shared"),
        ("size", "128"),
        ("max_transfer_size", "2097152"),
        ("block_on_fault", "1"),
        ("priority", "10"),
    ];
    for (key, value) in pairs {
        all.retain(|(k, _)| k != key);
        all.push((key, value));
    }
    attributes(&root.join("bus/dsa/devices").join(name), &all);
}

fn settings(root: &Path) -> Settings {
    Settings {
        sysfs_root: root.to_path_buf(),
        dev_root: root.join("dev"),
        ..Settings::default()
    }
}

/// A tree with one usable queue of each mode and one of every reason not
/// to use a queue.
fn busy_tree(root: &Path) {
    device(root, "iax1", "enabled", GEN_CAP, "1");
    queue(root, "wq1.0", &[]);
    queue(root, "wq1.1", &[("state", "disabled")]);
    queue(root, "wq1.2", &[("type", "kernel")]);
    queue(
        root,
        "wq1.3",
        &[
            ("mode", "dedicated"),
            ("size", "16"),
            ("block_on_fault", "0"),
        ],
    );
    queue(root, "wq1.4", &[("size", "0")]);
    queue(root, "wq1.5", &[("max_transfer_size", "2048")]);
    device(root, "iax3", "disabled", GEN_CAP, "0");
    queue(root, "wq3.0", &[]);
    device(root, "iax5", "enabled", "0x150001", "0");
    queue(root, "wq5.0", &[]);
    // DSA devices and their queues share the bus and are not for us.
    device(root, "dsa0", "enabled", "0x40915f0107", "0");
    queue(root, "wq0.0", &[]);
    attributes(
        &root.join("bus/dsa/devices/engine1.0"),
        &[("group_id", "0")],
    );
}

#[test]
fn usable_queues_and_the_reasons_for_the_others() {
    let root = scratch("busy");
    busy_tree(&root);
    let found = discover(&settings(&root), Features::default(), 4096);
    let names: Vec<&str> = found.queues.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(names, ["wq1.0", "wq1.3"], "{found:#?}");
    let shared = &found.queues[0];
    assert_eq!(
        (
            shared.device.as_str(),
            shared.mode,
            shared.size,
            shared.block_on_fault
        ),
        ("iax1", WqMode::Shared, 128, true)
    );
    assert_eq!(
        (shared.numa_node, shared.priority, shared.max_transfer),
        (1, 10, 2097152)
    );
    assert_eq!(shared.path, root.join("dev/iax/wq1.0"));
    // No ENQCMD or MOVDIR64B in these features: write() for both modes.
    assert_eq!(shared.submit, Submit::Write);
    let dedicated = &found.queues[1];
    assert_eq!(
        (dedicated.mode, dedicated.size, dedicated.block_on_fault),
        (WqMode::Dedicated, 16, false)
    );
    let skipped = found.skipped.join("\n");
    for expected in [
        "wq1.1: state \"disabled\"",
        "wq1.2: type \"kernel\", not user",
        "wq1.4: size 0",
        "wq1.5: max transfer size 2048 is below the page size 4096",
        "iax3: state \"disabled\"",
        "iax5: GENCAP 0x150001 has no decompression support",
    ] {
        assert!(
            skipped.contains(expected),
            "missing {expected:?} in:\n{skipped}"
        );
    }
    assert!(
        !skipped.contains("wq0.0") && !skipped.contains("dsa0"),
        "{skipped}"
    );
    assert_eq!(found.devices, 3);
    // 512-byte pages fit the small transfer size.
    let small = discover(&settings(&root), Features::default(), 512);
    assert_eq!(small.queues.len(), 3);
}

#[test]
fn the_method_follows_cpuid_and_the_override() {
    let root = scratch("method");
    busy_tree(&root);
    let all = Features {
        enqcmd: true,
        movdir64b: true,
        waitpkg: true,
    };
    let found = discover(&settings(&root), all, 4096);
    let methods: Vec<Submit> = found.queues.iter().map(|q| q.submit).collect();
    assert_eq!(methods, [Submit::Enqcmd, Submit::Movdir64b]);
    let forced = Settings {
        submit: Some(Submit::Enqcmd),
        ..settings(&root)
    };
    let found = discover(&forced, Features::default(), 4096);
    assert_eq!(found.queues.len(), 1, "ENQCMD takes shared queues only");
    assert!(found
        .skipped
        .join("\n")
        .contains("wq1.3: dedicated, and QEMU_QPL_IAA_SUBMIT=enqcmd needs a shared queue"));
    let forced = Settings {
        submit: Some(Submit::Movdir64b),
        ..settings(&root)
    };
    let found = discover(&forced, Features::default(), 4096);
    assert_eq!(found.queues[0].name, "wq1.3");
    assert_eq!(found.queues.len(), 1);
}

fn cpu_line(settings: &Settings) -> String {
    let config = ChannelConfig {
        channel: 0,
        page_size: 4096,
        pages_per_packet: 128,
    };
    let sender = Sender::with_settings(config, Level::Fast, settings).unwrap();
    let receiver = Receiver::with_settings(config, settings).unwrap();
    assert!(!sender.uses_iaa() && !receiver.uses_iaa());
    let (mut send, mut recv) = (String::new(), String::new());
    sender.describe(&mut send).unwrap();
    receiver.describe(&mut recv).unwrap();
    assert_eq!(send, recv);
    send
}

#[test]
fn no_device_no_queue_no_permission_mean_the_cpu() {
    let root = scratch("none");
    // No bus at all: the idxd driver is not loaded.
    let line = cpu_line(&settings(&root));
    assert!(
        line.starts_with("CPU: no IAA device") && line.contains("idxd"),
        "{line}"
    );
    // A bus with DSA only.
    device(&root, "dsa0", "enabled", GEN_CAP, "0");
    let line = cpu_line(&settings(&root));
    assert!(line.starts_with("CPU: no IAA device in "), "{line}");
    // An IAA device without decompression.
    device(&root, "iax1", "enabled", "0x150001", "0");
    queue(&root, "wq1.0", &[]);
    let line = cpu_line(&settings(&root));
    assert!(line.contains("no decompression support"), "{line}");
    // A device whose only queue is disabled.
    device(&root, "iax1", "enabled", GEN_CAP, "0");
    queue(&root, "wq1.0", &[("state", "disabled")]);
    let line = cpu_line(&settings(&root));
    assert!(
        line.contains("no usable IAA work queue") && line.contains("wq1.0: state \"disabled\""),
        "{line}"
    );
    // An enabled queue without its character device.
    queue(&root, "wq1.0", &[]);
    let line = cpu_line(&settings(&root));
    assert!(
        line.contains("no IAA work queue could be opened")
            && line.contains("no such character device"),
        "{line}"
    );
    // The operator's switch wins over everything.
    let off = Settings {
        mode: Mode::Off,
        ..settings(&root)
    };
    assert_eq!(cpu_line(&off), "CPU: QEMU_QPL_IAA=off");
}

#[test]
fn require_turns_no_into_an_error() {
    let root = scratch("require");
    let require = Settings {
        mode: Mode::Require,
        ..settings(&root)
    };
    let Err(error) = route(&require, 4096) else {
        panic!("QEMU_QPL_IAA=require passed without a device");
    };
    assert!(
        error.to_string().contains("QEMU_QPL_IAA=require"),
        "{error}"
    );
    let config = ChannelConfig {
        channel: 0,
        page_size: 4096,
        pages_per_packet: 128,
    };
    assert!(Sender::with_settings(config, Level::Fast, &require).is_err());
    assert!(matches!(route(&settings(&root), 4096), Ok(Route::Cpu(_))));
}

/// Child: as an unprivileged user, the queue's character device (root's,
/// mode 0600) cannot be opened.
#[test]
#[ignore]
fn unprivileged_child() {
    let Some(root) = std::env::var_os("IAA_TEST_ROOT") else {
        return;
    };
    // SAFETY: dropping privileges in this single-purpose child process.
    unsafe {
        assert_eq!(libc::setgid(65534), 0);
        assert_eq!(libc::setuid(65534), 0);
    }
    let line = cpu_line(&settings(Path::new(&root)));
    println!("LINE {line}");
}

#[test]
fn no_permission_on_the_character_device() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to create a device file others cannot open");
        return;
    }
    let root = scratch("permission");
    device(&root, "iax1", "enabled", GEN_CAP, "0");
    queue(&root, "wq1.0", &[]);
    let wq = root.join("dev/iax/wq1.0");
    std::fs::create_dir_all(wq.parent().unwrap()).unwrap();
    std::fs::write(&wq, b"").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wq, std::fs::Permissions::from_mode(0o600)).unwrap();
    for dir in [root.clone(), std::env::temp_dir()] {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert!(
            mode & 0o005 == 0o005,
            "{} must be readable by others",
            dir.display()
        );
    }
    for sub in [
        "bus",
        "bus/dsa",
        "bus/dsa/devices",
        "bus/dsa/devices/iax1",
        "bus/dsa/devices/wq1.0",
        "dev",
        "dev/iax",
    ] {
        std::fs::set_permissions(root.join(sub), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "unprivileged_child", "--nocapture"])
        .env("IAA_TEST_ROOT", &root)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("LINE CPU: no IAA work queue could be opened")
            && text.contains("no permission"),
        "{text}"
    );
}
