//! The JSON the CLI prints, pinned byte for byte: `status`, `list`, `explain`, `top`, `stats`,
//! `allow list` and `history` with `--json`, for one fixed state of the daemon's core (in-memory
//! enforcers, no root). Values that depend on the clock or the process (pid, uptime, timestamps,
//! the state directory) are replaced by their key's name; everything else, keys and their order
//! included, must stay as it is. `UPDATE_GOLDEN=1 cargo test --test golden` rewrites the files
//! after a change that is meant.

mod fixture;

use fixture::Fixture;
use ipwarden::wire::{Request, Response};

/// Keys whose values depend on when and where the test runs (the admission level is split over
/// the machine's CPUs).
const VOLATILE: [&str; 9] = [
    "pid",
    "uptime_secs",
    "state_db",
    "created_unix_ms",
    "expires_unix_ms",
    "ended_unix_ms",
    "age_secs",
    "last_poll_ms",
    "level_packets_per_cpu",
];

/// The CLI's `--json` text of a response: pretty for single views, one line for `list` (it
/// streams the `decisions` answer compactly).
fn printed(response: &Response, pretty: bool) -> String {
    let text = if pretty {
        serde_json::to_string_pretty(response).unwrap()
    } else {
        serde_json::to_string(response).unwrap()
    };
    // The CLI reads back what the daemon writes: every typed field round-trips.
    let back: Response = serde_json::from_str(&text).unwrap();
    assert_eq!(&back, response, "{text}");
    replace_volatile(&text)
}

/// The serialized text with every volatile value replaced, keys and order untouched.
fn replace_volatile(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'scan: while !rest.is_empty() {
        for key in VOLATILE {
            let quoted = format!("\"{key}\":");
            if let Some(after) = rest.strip_prefix(quoted.as_str()) {
                out.push_str(&quoted);
                let spaces = after.len() - after.trim_start().len();
                out.push_str(&after[..spaces]);
                let value = &after[spaces..];
                let end = value_end(value);
                if &value[..end] == "null" {
                    out.push_str("null");
                } else {
                    out.push_str(&format!("\"<{key}>\""));
                }
                rest = &value[end..];
                continue 'scan;
            }
        }
        let c = rest.chars().next().unwrap();
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Where a scalar JSON value starting `s` ends.
fn value_end(s: &str) -> usize {
    if let Some(body) = s.strip_prefix('"') {
        let mut escaped = false;
        for (i, c) in body.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => return i + 2,
                _ => escaped = false,
            }
        }
        return s.len();
    }
    s.find([',', '}', ']', '\n']).unwrap_or(s.len())
}

fn check(name: &str, text: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.json"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("{text}\n")).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(
        text,
        want.trim_end_matches('\n'),
        "{name} --json changed; if that is meant, UPDATE_GOLDEN=1 cargo test --test golden"
    );
}

#[test]
fn json_outputs_are_byte_identical_for_one_state() {
    let mut f = Fixture::rich();
    let status = f.ok(Request::Status);
    check("status", &printed(&status, true));
    let list = f.ok(Request::List {
        origin: None,
        after: None,
        limit: None,
    });
    check("list", &printed(&list, false));
    for (name, addr) in [
        ("explain-blocked", "203.0.113.66"),
        ("explain-shadowed", "203.0.113.70"),
        ("explain-challenged", "198.51.100.70"),
        ("explain-allowed", "192.0.2.5"),
        ("explain-nothing", "2001:db8:7::1"),
    ] {
        let e = f.ok(Request::Explain {
            addr: addr.parse().unwrap(),
        });
        check(name, &printed(&e, true));
    }
    check("top", &printed(&f.ok(Request::Top { n: 5 }), true));
    check("stats", &printed(&f.ok(Request::Stats), true));
    check("allow", &printed(&f.ok(Request::AllowList), true));
    let history = f.ok(Request::History {
        prefix: None,
        limit: 10,
    });
    check("history", &printed(&history, true));
    // Nothing volatile is left unreplaced.
    assert!(!printed(&status, true).contains(&format!(": {},", std::process::id())));
}

#[test]
fn volatile_values_are_replaced_and_nothing_else() {
    let text = r#"{"pid":42,"a":"x","created_unix_ms":1700000000000,"expires_unix_ms":null,"state_db":"/tmp/a \"b\""}"#;
    assert_eq!(
        replace_volatile(text),
        r#"{"pid":"<pid>","a":"x","created_unix_ms":"<created_unix_ms>","expires_unix_ms":null,"state_db":"<state_db>"}"#
    );
}
