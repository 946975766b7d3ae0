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
        "attach", "detach", "block", "unblock", "list", "allow", "monitor", "stats",
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
        let out = ipwarden(&["block", bad, "--iface", "eth9"]);
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
    let out = ipwarden(&["block", "203.0.113.7", "--iface", "eth9", "--ttl", "0s"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("omit --ttl"), "{}", stderr(&out));
    let out = ipwarden(&["block", "203.0.113.7"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--iface"), "{}", stderr(&out));
}

#[test]
fn commands_without_an_attachment_fail_with_a_hint() {
    for args in [
        &["list", "--iface", "eth9"][..],
        &["block", "203.0.113.7", "--iface", "eth9"],
        &["stats", "--iface", "eth9", "--json"],
        &["allow", "add", "192.0.2.0/24", "--iface", "eth9"],
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
