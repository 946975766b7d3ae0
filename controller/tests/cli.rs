//! The CLI as a user meets it, without privileges: help, bad input and missing attachments give
//! one clear line and the documented exit code.

use std::process::{Command, Output};

fn ipwarden(args: &[&str]) -> Output {
    let bpffs = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_ipwarden"))
        .args(args)
        .env("IPWARDEN_BPFFS", bpffs.path())
        .env_remove("IPWARDEN_LOG")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn help_names_every_command() {
    let out = ipwarden(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for verb in [
        "run", "status", "block", "unblock", "list", "allow", "top", "stats", "explain", "reload",
        "config", "attach", "detach", "map",
    ] {
        assert!(help.contains(verb), "--help lacks {verb}:\n{help}");
    }
}

#[test]
fn bad_addresses_exit_2_and_name_the_input() {
    for bad in [
        "203.0.113.256",
        "198.51.100.0/33",
        "2001:db8::/129",
        "example.com",
        "",
    ] {
        let out = ipwarden(&["block", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("`{bad}`")),
            "{bad}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn bad_ttl_and_missing_iface_are_usage_errors() {
    let out = ipwarden(&["block", "203.0.113.7", "--ttl", "0s"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("use --permanent"), "{}", stderr(&out));
    let out = ipwarden(&["block", "203.0.113.7", "--ttl", "1h", "--permanent"]);
    assert_eq!(out.status.code(), Some(2));
    let out = ipwarden(&["map", "block", "203.0.113.7"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--iface"), "{}", stderr(&out));
}

#[test]
fn map_commands_without_an_attachment_fail_with_a_hint() {
    for args in [
        &["map", "list", "--iface", "eth9"][..],
        &["map", "block", "203.0.113.7", "--iface", "eth9"],
        &["map", "stats", "--iface", "eth9", "--json"],
        &["map", "allow", "add", "192.0.2.0/24", "--iface", "eth9"],
    ] {
        let out = ipwarden(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains("not attached to eth9"), "{args:?}: {err}");
        assert!(
            err.contains("ipwarden attach --iface eth9"),
            "{args:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
}

#[test]
fn daemon_commands_without_a_daemon_exit_3_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nothing.sock");
    for args in [
        &["status"][..],
        &["block", "203.0.113.7"],
        &["list", "--json"],
        &["top"],
        &["explain", "203.0.113.7"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_ipwarden"))
            .args(args)
            .arg("--socket")
            .arg(&socket)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{args:?}");
        let err = stderr(&out);
        assert!(
            err.contains("daemon is not running") && err.contains("nothing.sock"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
}

#[test]
fn config_check_reports_the_line_of_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&good, ipwarden::config::EXAMPLE).unwrap();
    std::fs::write(
        &bad,
        "[detection]\npoll_interval = \"1s\"\nwindow = \"tomorrow\"\n",
    )
    .unwrap();
    let out = ipwarden(&["config", "check", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ipwarden(&["config", "check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("line 3"), "{}", stderr(&out));
    let out = ipwarden(&["config", "example"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        ipwarden::config::EXAMPLE
    );
}

#[test]
fn config_check_runs_the_checks_run_would_before_attaching() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let check = |text: &str, extra: &[&str]| {
        let file = dir.path().join("c.toml");
        std::fs::write(&file, text).unwrap();
        let mut args = vec!["config", "check", file.to_str().unwrap()];
        args.extend_from_slice(extra);
        ipwarden(&args)
    };
    // An interface this host lacks: a warning, an error with --strict.
    let out = check("[daemon]\nifaces = [\"nosuchif9\"]\n", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no interface `nosuchif9`"));
    let out = check("[daemon]\nifaces = [\"nosuchif9\"]\n", &["--strict"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nosuchif9"), "{}", stderr(&out));
    let out = check("", &["--strict"]);
    assert!(
        stderr(&out).contains("daemon.ifaces is empty"),
        "{}",
        stderr(&out)
    );
    // A key file that is missing, or readable by others: refused, naming the setting.
    let key = dir.path().join("ipasis.key");
    let cfg = format!("[ipasis]\nkey_file = \"{}\"\n", key.display());
    let out = check(&cfg, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("ipasis.key_file"), "{}", stderr(&out));
    std::fs::write(&key, "ipasis_0123456789abcdef").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = check(&cfg, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        !stderr(&out).contains("0123456789"),
        "the key is never printed"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(check(&cfg, &[]).status.success());
    let cs = format!(
        "[crowdsec]\nlapi_url = \"http://127.0.0.1:8080\"\napi_key_file = \"{}\"\n",
        dir.path().join("nope.key").display()
    );
    let out = check(&cs, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("crowdsec.api_key_file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn config_check_weighs_the_map_sizes_against_the_memory_available() {
    let dir = tempfile::tempdir().unwrap();
    let fine = dir.path().join("fine.toml");
    std::fs::write(&fine, "").unwrap();
    let out = ipwarden(&["config", "check", fine.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("MiB of kernel memory"), "{said}");
    // Four billion exact blocks per family cannot be held by any test machine.
    let huge = dir.path().join("huge.toml");
    std::fs::write(&huge, "[dataplane]\nmax_blocks = 4000000000\n").unwrap();
    let out = ipwarden(&["config", "check", huge.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("dataplane.max_blocks"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    // `ipwarden config example | head -1`: the reader is gone before the output is written.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ipwarden"))
        .args(["config", "example"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?}", out.status);
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
}
