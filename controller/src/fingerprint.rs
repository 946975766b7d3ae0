//! SYN signatures classified into an operating system family with a rule file
//! (`dist/fingerprints.toml`, operators' own rules first), the hop distance estimated from the
//! initial TTL, and the residential-proxy signal built from both.
//!
//! What this can tell: which TCP stack opened a connection, as far as its first packet shows,
//! and roughly how far away it is. What it cannot: a NAT or a middlebox that rewrites options
//! (some carriers' proxies, scrubbing centres) shows its own stack; a stack tuned by hand looks
//! like another; a Linux desktop or an Android phone can look like a Linux server. It is one
//! weighted factor among the IPASIS ones, never a verdict alone.

use std::{fmt, net::IpAddr};

use crate::wire::FingerprintView;
use ipwarden_common::fingerprint::{MAX_OPTIONS, SynSignature, kind};
use serde::Deserialize;
use thiserror::Error;

/// The shipped rules.
pub const SHIPPED: &str = include_str!("../dist/fingerprints.toml");

/// More hops than this from a "residential" address is implausible for a home line.
pub const MAX_PLAUSIBLE_HOPS: u8 = 30;

/// A rule file that cannot be used, with the line of the offending rule.
#[derive(Debug, Error)]
pub enum RuleError {
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("{origin}, line {line}: rule {name:?}: {message}")]
    Rule {
        origin: String,
        line: usize,
        name: String,
        message: String,
    },
}

/// A value a rule may leave open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want<T> {
    Any,
    Is(T),
}

impl<T: PartialEq> Want<T> {
    fn admits(&self, v: &T) -> bool {
        match self {
            Self::Any => true,
            Self::Is(w) => w == v,
        }
    }
}

/// A window as a rule states it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Window {
    Any,
    Exactly(u16),
    /// A multiple of the MSS (Linux sizes its first window as MSS x 10, 20, 44...).
    MssTimes(u16),
}

/// One parsed rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub os: String,
    /// `server`, `desktop` or `mobile`.
    pub class: String,
    initial_ttl: u8,
    options: Option<Vec<u8>>,
    window: Window,
    wscale: Want<u8>,
    df: Want<bool>,
    version: Want<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule: Vec<toml::Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    os: String,
    class: String,
    initial_ttl: u8,
    options: String,
    #[serde(default)]
    window: Option<toml::Value>,
    #[serde(default)]
    wscale: Option<toml::Value>,
    #[serde(default)]
    df: Option<bool>,
    #[serde(default)]
    ip_version: Option<u8>,
}

const OS: [&str; 6] = ["linux", "windows", "macos", "android", "freebsd", "unknown"];
const CLASSES: [&str; 3] = ["server", "desktop", "mobile"];

fn option_kind(name: &str) -> Option<u8> {
    Some(match name {
        "eol" => kind::EOL,
        "nop" => kind::NOP,
        "mss" => kind::MSS,
        "ws" => kind::WS,
        "sok" => kind::SACK_OK,
        "ts" => kind::TS,
        other => other.strip_prefix('?')?.parse().ok()?,
    })
}

fn option_name(k: u8) -> String {
    match k {
        kind::EOL => "eol".into(),
        kind::NOP => "nop".into(),
        kind::MSS => "mss".into(),
        kind::WS => "ws".into(),
        kind::SACK_OK => "sok".into(),
        kind::TS => "ts".into(),
        other => format!("?{other}"),
    }
}

impl Rule {
    fn parse(raw: RawRule) -> Result<Self, String> {
        if !OS.contains(&raw.os.as_str()) {
            return Err(format!("os {:?} is not one of {OS:?}", raw.os));
        }
        if !CLASSES.contains(&raw.class.as_str()) {
            return Err(format!("class {:?} is not one of {CLASSES:?}", raw.class));
        }
        if ![32, 64, 128, 255].contains(&raw.initial_ttl) {
            return Err("initial_ttl must be 32, 64, 128 or 255".into());
        }
        let options = if raw.options.trim() == "*" {
            None
        } else {
            let kinds: Option<Vec<u8>> = raw
                .options
                .split(',')
                .map(|o| option_kind(o.trim()))
                .collect();
            let kinds = kinds.ok_or_else(|| {
                format!(
                    "options {:?}: use eol, nop, mss, ws, sok, ts or ?KIND, comma-separated, or *",
                    raw.options
                )
            })?;
            if kinds.len() > MAX_OPTIONS {
                return Err(format!("more than {MAX_OPTIONS} options"));
            }
            Some(kinds)
        };
        let window = match raw.window {
            None => Window::Any,
            Some(toml::Value::String(s)) if s == "*" => Window::Any,
            Some(toml::Value::String(s)) => {
                let n = s
                    .strip_prefix("mss*")
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| format!("window {s:?}: a number, \"mss*N\" or \"*\""))?;
                Window::MssTimes(n)
            }
            Some(toml::Value::Integer(n)) => Window::Exactly(
                u16::try_from(n).map_err(|_| format!("window {n} is not 0..=65535"))?,
            ),
            Some(other) => return Err(format!("window {other}: a number, \"mss*N\" or \"*\"")),
        };
        let wscale = match raw.wscale {
            None => Want::Any,
            Some(toml::Value::String(s)) if s == "*" => Want::Any,
            Some(toml::Value::Integer(n)) if (0..=14).contains(&n) => Want::Is(n as u8),
            Some(other) => return Err(format!("wscale {other}: 0..=14 or \"*\"")),
        };
        let version = match raw.ip_version {
            None => Want::Any,
            Some(v @ (4 | 6)) => Want::Is(v),
            Some(v) => return Err(format!("ip_version {v}: 4 or 6")),
        };
        Ok(Self {
            name: raw.name,
            os: raw.os,
            class: raw.class,
            initial_ttl: raw.initial_ttl,
            options,
            window,
            wscale,
            df: raw.df.map_or(Want::Any, Want::Is),
            version,
        })
    }

    fn matches(&self, s: &SynSignature, initial_ttl: u8) -> bool {
        if initial_ttl != self.initial_ttl || !self.version.admits(&s.version) {
            return false;
        }
        if let Some(order) = &self.options
            && order.as_slice() != &s.order[..usize::from(s.option_count).min(MAX_OPTIONS)]
        {
            return false;
        }
        let window_ok = match self.window {
            Window::Any => true,
            Window::Exactly(w) => s.window == w,
            Window::MssTimes(k) => {
                s.mss != 0 && u32::from(s.window) == u32::from(s.mss) * u32::from(k)
            }
        };
        let has_ws = s.flags & SynSignature::HAS_WSCALE != 0;
        window_ok
            && (matches!(self.wscale, Want::Any) || (has_ws && self.wscale.admits(&s.wscale)))
            && self.df.admits(&(s.flags & SynSignature::DF != 0))
    }
}

/// Rules in the order they are tried.
#[derive(Clone, Debug, Default)]
pub struct Rules(Vec<Rule>);

impl Rules {
    /// Parses a rule file; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, RuleError> {
        let file: RawFile = toml::from_str(text).map_err(|e| RuleError::Parse {
            origin: origin.to_owned(),
            message: e.to_string(),
        })?;
        let mut out = Vec::new();
        for spanned in file.rule {
            let line = text[..spanned.span().start.min(text.len())]
                .matches('\n')
                .count()
                + 1;
            let raw = spanned.into_inner();
            let name = raw.name.clone();
            out.push(Rule::parse(raw).map_err(|message| RuleError::Rule {
                origin: origin.to_owned(),
                line,
                name,
                message,
            })?);
        }
        Ok(Self(out))
    }

    /// The shipped rules, after `own` (an operator's file) when given.
    pub fn load(own: Option<&std::path::Path>) -> Result<Self, RuleError> {
        let shipped = Self::parse(SHIPPED, "dist/fingerprints.toml (shipped)")?;
        let Some(path) = own else {
            return Ok(shipped);
        };
        let text = std::fs::read_to_string(path).map_err(|e| RuleError::Parse {
            origin: path.display().to_string(),
            message: e.to_string(),
        })?;
        let mut rules = Self::parse(&text, &path.display().to_string())?;
        rules.0.extend(shipped.0);
        Ok(rules)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first rule matching `s`.
    pub fn classify(&self, s: &SynSignature) -> Option<&Rule> {
        let initial = initial_ttl(s.ttl);
        self.0.iter().find(|r| r.matches(s, initial))
    }
}

/// The smallest common initial TTL at or above the received one.
pub fn initial_ttl(ttl: u8) -> u8 {
    [32, 64, 128, 255]
        .into_iter()
        .find(|i| ttl <= *i)
        .unwrap_or(255)
}

/// Hops between the sender and here, from the received TTL.
pub fn hops(ttl: u8) -> u8 {
    initial_ttl(ttl) - ttl
}

/// Renders a signature compactly.
pub struct Compact<'a>(pub &'a SynSignature);

impl fmt::Display for Compact<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        let opts: Vec<String> = s.order[..usize::from(s.option_count).min(MAX_OPTIONS)]
            .iter()
            .map(|k| option_name(*k))
            .collect();
        write!(
            f,
            "{}:{}:{}{}:{}:{}:{}:{}{}",
            s.version,
            s.ttl,
            if s.flags & SynSignature::DF != 0 {
                "df"
            } else {
                "-"
            },
            if s.flags & SynSignature::IP_OPTIONS != 0 {
                "+ipopt"
            } else {
                ""
            },
            s.window,
            s.mss,
            if s.flags & SynSignature::HAS_WSCALE != 0 {
                s.wscale.to_string()
            } else {
                "*".into()
            },
            if opts.is_empty() {
                "-".into()
            } else {
                opts.join(",")
            },
            if s.flags & SynSignature::OPTIONS_UNPARSED != 0 {
                ":unparsed"
            } else {
                ""
            },
        )
    }
}

/// Classifies one signature.
pub fn view(rules: &Rules, s: &SynSignature, addr: IpAddr) -> FingerprintView {
    let rule = rules.classify(s);
    FingerprintView {
        signature: Compact(s).to_string(),
        os: rule.map_or_else(|| "unknown".to_owned(), |r| r.os.clone()),
        class: rule.map(|r| r.class.clone()),
        rule: rule.map(|r| r.name.clone()),
        ttl: s.ttl,
        hops: hops(s.ttl),
        addr,
    }
}

/// Why a source that IPASIS calls a residential or mobile line looks like a proxy, if it does:
/// a server-class stack, or implausibly many hops.
pub fn proxy_suspicion(views: &[FingerprintView]) -> Option<String> {
    if let Some(v) = views.iter().find(|v| v.class.as_deref() == Some("server")) {
        return Some(format!(
            "{} stack ({})",
            v.rule.as_deref().unwrap_or("server"),
            v.signature
        ));
    }
    views
        .iter()
        .find(|v| v.hops > MAX_PLAUSIBLE_HOPS)
        .map(|v| format!("{} hops away ({})", v.hops, v.signature))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(ttl: u8, window: u16, mss: u16, ws: Option<u8>, order: &[u8], df: bool) -> SynSignature {
        let mut s = SynSignature {
            version: 4,
            ttl,
            window,
            mss,
            ..Default::default()
        };
        if let Some(w) = ws {
            s.wscale = w;
            s.flags |= SynSignature::HAS_WSCALE;
        }
        if df {
            s.flags |= SynSignature::DF;
        }
        s.order[..order.len()].copy_from_slice(order);
        s.option_count = order.len() as u8;
        s
    }

    const LINUX: [u8; 5] = [2, 4, 8, 1, 3];
    const WINDOWS: [u8; 6] = [2, 1, 3, 1, 1, 4];
    const MACOS: [u8; 8] = [2, 1, 3, 1, 1, 8, 4, 0];

    #[test]
    fn the_shipped_rules_parse_and_classify_common_stacks() {
        let r = Rules::load(None).unwrap();
        assert!(r.len() >= 5);
        let os = |s: &SynSignature| r.classify(s).map(|r| (r.os.as_str(), r.class.as_str()));
        assert_eq!(
            os(&sig(61, 64240, 1460, Some(7), &LINUX, true)),
            Some(("linux", "server"))
        );
        assert_eq!(
            os(&sig(58, 29200, 1460, Some(7), &LINUX, true)),
            Some(("linux", "server"))
        );
        assert_eq!(
            os(&sig(120, 64240, 1460, Some(8), &WINDOWS, true)),
            Some(("windows", "desktop"))
        );
        assert_eq!(
            os(&sig(52, 65535, 1460, Some(6), &MACOS, true)),
            Some(("macos", "desktop"))
        );
        assert_eq!(
            os(&sig(60, 65535, 1400, Some(9), &LINUX, true)),
            Some(("android", "mobile"))
        );
        assert_eq!(os(&sig(200, 512, 0, None, &[], false)), None);
    }

    #[test]
    fn hop_estimates_from_the_initial_ttl() {
        assert_eq!((initial_ttl(64), hops(64)), (64, 0));
        assert_eq!((initial_ttl(57), hops(57)), (64, 7));
        assert_eq!((initial_ttl(116), hops(116)), (128, 12));
        assert_eq!((initial_ttl(30), hops(30)), (32, 2));
        assert_eq!((initial_ttl(240), hops(240)), (255, 15));
        assert_eq!((initial_ttl(65), hops(65)), (128, 63));
    }

    #[test]
    fn bad_rules_are_rejected_with_their_line() {
        let text = "[[rule]]\nname = \"ok\"\nos = \"linux\"\nclass = \"server\"\ninitial_ttl = 64\noptions = \"mss,sok\"\n\n[[rule]]\nname = \"bad\"\nos = \"linux\"\nclass = \"server\"\ninitial_ttl = 64\noptions = \"mss,bogus\"\n";
        let e = Rules::parse(text, "own.toml").unwrap_err().to_string();
        assert!(
            e.contains("own.toml, line 8") && e.contains("\"bad\""),
            "{e}"
        );
        assert!(e.contains("bogus"), "{e}");
        let e = Rules::parse("[[rule]]\nname = \"x\"\nos = \"beos\"\nclass = \"server\"\ninitial_ttl = 64\noptions = \"*\"\n", "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("beos"), "{e}");
        let e = Rules::parse("[[rule]]\nname = \"x\"\nos = \"linux\"\nclass = \"server\"\ninitial_ttl = 60\noptions = \"*\"\n", "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("initial_ttl"), "{e}");
        assert!(Rules::parse("[[rule]]\nname = 1\n", "f").is_err());
        // Operators' rules come first.
        let own = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            own.path(),
            "[[rule]]\nname = \"our load balancer\"\nos = \"linux\"\nclass = \"desktop\"\ninitial_ttl = 64\noptions = \"mss,sok,ts,nop,ws\"\n",
        )
        .unwrap();
        let r = Rules::load(Some(own.path())).unwrap();
        let s = sig(61, 64240, 1460, Some(7), &LINUX, true);
        assert_eq!(r.classify(&s).unwrap().name, "our load balancer");
    }

    #[test]
    fn the_proxy_signal_needs_a_server_stack_or_many_hops() {
        let r = Rules::load(None).unwrap();
        let a: IpAddr = "203.0.113.9".parse().unwrap();
        let linux = view(&r, &sig(61, 64240, 1460, Some(7), &LINUX, true), a);
        let windows = view(&r, &sig(120, 64240, 1460, Some(8), &WINDOWS, true), a);
        assert!(proxy_suspicion(std::slice::from_ref(&windows)).is_none());
        let why = proxy_suspicion(&[windows.clone(), linux.clone()]).unwrap();
        assert!(why.contains("Linux"), "{why}");
        let far = view(&r, &sig(80, 64240, 1460, Some(8), &WINDOWS, true), a);
        assert_eq!(far.hops, 48);
        assert!(proxy_suspicion(&[far]).unwrap().contains("48 hops"));
        assert_eq!(linux.signature, "4:61:df:64240:1460:7:mss,sok,ts,nop,ws");
    }
}
