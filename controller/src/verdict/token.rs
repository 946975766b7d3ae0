//! Signed tokens: the challenge a client must solve and the pass it earns. Both are bound to
//! the client's source unit (IPv4 address, IPv6 /64) and an expiry, and signed with HMAC-SHA256
//! under a key kept in the state directory: a token is worth nothing from another unit, after
//! its expiry, or under another host's key.
//!
//! Shape: `hex(payload).hex(mac)`, payload `c|unit|expires_ms|salt` (a challenge) or
//! `p|unit|expires_ms` (a pass). Only hex digits and a dot: safe in a URL, a cookie and HTML.

use std::{
    io::Write as _,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
};

use hmac::{Hmac, Mac as _};
use ipnet::IpNet;
use sha2::{Digest as _, Sha256};
use thiserror::Error;

/// Longest token read: a challenge for an IPv6 unit is about 200 characters.
pub const MAX_TOKEN: usize = 400;
const KEY_LEN: usize = 32;

/// Why a key could not be had.
#[derive(Debug, Error)]
pub enum KeyError {
    #[error("verdict key {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "verdict key {path} is readable by group or others (mode {mode:o}): chmod 600 it, or delete it to make a new one"
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error("verdict key {path} holds {len} bytes, not {KEY_LEN}: delete it to make a new one")]
    Length { path: PathBuf, len: usize },
}

/// Why a token was refused. Said to the client only as "invalid" or "expired".
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("malformed")]
    Malformed,
    #[error("bad signature")]
    Signature,
    #[error("expired")]
    Expired,
    #[error("issued to another address")]
    OtherUnit,
    #[error("not a {0}")]
    Kind(&'static str),
}

/// The signing key.
#[derive(Clone)]
pub struct Key([u8; KEY_LEN]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// Reads the key at `path`, or makes one there (mode 0600) when there is none.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        match std::fs::metadata(path) {
            Ok(meta) => {
                if let Some(mode) = crate::secret::exposed_mode(&meta) {
                    return Err(KeyError::Exposed {
                        path: path.to_owned(),
                        mode,
                    });
                }
                let bytes = std::fs::read(path).map_err(io)?;
                let key: [u8; KEY_LEN] =
                    bytes.as_slice().try_into().map_err(|_| KeyError::Length {
                        path: path.to_owned(),
                        len: bytes.len(),
                    })?;
                Ok(Self(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; KEY_LEN];
                random(&mut key);
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(io)?;
                f.write_all(&key).map_err(io)?;
                f.sync_all().map_err(io)?;
                tracing::info!(path = %path.display(), "made a new verdict key");
                Ok(Self(key))
            }
            Err(e) => Err(io(e)),
        }
    }

    fn mac(&self, payload: &[u8]) -> Hmac<Sha256> {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        m.update(payload);
        m
    }

    fn sign(&self, payload: &str) -> String {
        let tag = self.mac(payload.as_bytes()).finalize().into_bytes();
        format!("{}.{}", hex(payload.as_bytes()), hex(&tag))
    }

    /// The payload of a token signed with this key (the MAC compared in constant time).
    fn open(&self, token: &str) -> Result<String, TokenError> {
        if token.len() > MAX_TOKEN {
            return Err(TokenError::Malformed);
        }
        let (payload, tag) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let payload = unhex(payload).ok_or(TokenError::Malformed)?;
        let tag = unhex(tag).ok_or(TokenError::Malformed)?;
        self.mac(&payload)
            .verify_slice(&tag)
            .map_err(|_| TokenError::Signature)?;
        String::from_utf8(payload).map_err(|_| TokenError::Malformed)
    }

    /// A challenge for `unit`, valid until `expires_ms`.
    pub fn challenge(&self, unit: IpNet, expires_ms: u64) -> String {
        let mut salt = [0u8; 8];
        random(&mut salt);
        self.sign(&format!("c|{unit}|{expires_ms}|{}", hex(&salt)))
    }

    /// A pass for `unit`, valid until `expires_ms`.
    pub fn pass(&self, unit: IpNet, expires_ms: u64) -> String {
        self.sign(&format!("p|{unit}|{expires_ms}"))
    }

    /// Checks a token of `kind` (`'c'`, `'p'`) for `unit` at `now_ms`; its expiry.
    pub fn check(
        &self,
        token: &str,
        kind: char,
        unit: IpNet,
        now_ms: u64,
    ) -> Result<u64, TokenError> {
        let payload = self.open(token)?;
        let mut fields = payload.split('|');
        let want = if kind == 'c' { "challenge" } else { "pass" };
        if fields.next() != Some(&kind.to_string()) {
            return Err(TokenError::Kind(want));
        }
        let for_unit: IpNet = fields
            .next()
            .and_then(|u| u.parse().ok())
            .ok_or(TokenError::Malformed)?;
        let expires: u64 = fields
            .next()
            .and_then(|e| e.parse().ok())
            .ok_or(TokenError::Malformed)?;
        if for_unit != unit {
            return Err(TokenError::OtherUnit);
        }
        if now_ms >= expires {
            return Err(TokenError::Expired);
        }
        Ok(expires)
    }
}

/// Whether SHA-256 of `challenge:nonce` starts with `bits` zero bits: the proof of work. The
/// page computes the same digest of the same text.
pub fn solves(challenge: &str, nonce: &str, bits: u8) -> bool {
    if nonce.is_empty() || nonce.len() > 20 || !nonce.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let digest = Sha256::new()
        .chain_update(challenge.as_bytes())
        .chain_update(b":")
        .chain_update(nonce.as_bytes())
        .finalize();
    leading_zero_bits(&digest) >= u32::from(bits)
}

fn leading_zero_bits(bytes: &[u8]) -> u32 {
    let mut n = 0;
    for b in bytes {
        if *b == 0 {
            n += 8;
        } else {
            return n + b.leading_zeros();
        }
    }
    n
}

/// Fills `buf` from the kernel's random source.
fn random(buf: &mut [u8]) {
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: writes at most the rest of `buf`.
        let n =
            unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n > 0 {
            filled += n as usize;
        } else {
            assert!(
                std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted,
                "getrandom failed: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn key(b: u8) -> Key {
        Key::from_bytes([b; KEY_LEN])
    }

    const UNIT: &str = "203.0.113.7/32";

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mut m = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        m.update(b"what do ya want for nothing?");
        assert_eq!(
            hex(&m.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_pass_is_bound_to_its_unit_expiry_and_key() {
        let unit: IpNet = UNIT.parse().unwrap();
        let pass = key(1).pass(unit, 10_000);
        assert_eq!(key(1).check(&pass, 'p', unit, 9_999), Ok(10_000));
        assert_eq!(
            key(1).check(&pass, 'p', unit, 10_000),
            Err(TokenError::Expired)
        );
        let other: IpNet = "2001:db8:1::/64".parse().unwrap();
        assert_eq!(
            key(1).check(&pass, 'p', other, 1),
            Err(TokenError::OtherUnit)
        );
        assert_eq!(
            key(2).check(&pass, 'p', unit, 1),
            Err(TokenError::Signature)
        );
        assert_eq!(
            key(1).check(&pass, 'c', unit, 1),
            Err(TokenError::Kind("challenge"))
        );
        // One flipped hex digit of the payload: the signature no longer holds.
        let mut forged = pass.clone().into_bytes();
        forged[3] = if forged[3] == b'0' { b'1' } else { b'0' };
        let forged = String::from_utf8(forged).unwrap();
        assert_eq!(
            key(1).check(&forged, 'p', unit, 1),
            Err(TokenError::Signature)
        );
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let unit: IpNet = UNIT.parse().unwrap();
        for t in [
            "",
            ".",
            "zz.zz",
            "0.0",
            "abc",
            &"a".repeat(MAX_TOKEN + 1),
            "é.é",
        ] {
            assert!(key(1).check(t, 'p', unit, 1).is_err(), "{t}");
        }
    }

    #[test]
    fn challenges_differ_and_the_work_is_checked() {
        let unit: IpNet = UNIT.parse().unwrap();
        let (a, b) = (key(1).challenge(unit, 5), key(1).challenge(unit, 5));
        assert_ne!(a, b, "salted");
        // Find a solution at 8 bits the slow way, and check that it is exactly as hard as said.
        let nonce = (0u64..)
            .map(|n| n.to_string())
            .find(|n| solves(&a, n, 8))
            .unwrap();
        let digest = Sha256::digest(format!("{a}:{nonce}").as_bytes());
        assert_eq!(digest[0], 0);
        assert!(!solves(&a, "x1", 0), "digits only");
        assert!(!solves(&a, "", 0));
        assert_eq!(leading_zero_bits(&[0, 0x10]), 11);
        assert_eq!(leading_zero_bits(&[0x80]), 0);
    }

    #[test]
    fn a_key_is_made_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/verdict.key");
        let k1 = Key::load_or_create(&path).unwrap();
        let k2 = Key::load_or_create(&path).unwrap();
        assert_eq!(k1.0, k2.0);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Key::load_or_create(&path),
            Err(KeyError::Exposed { .. })
        ));
        std::fs::write(dir.path().join("short"), b"abc").unwrap();
        std::fs::set_permissions(
            dir.path().join("short"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        assert!(matches!(
            Key::load_or_create(&dir.path().join("short")),
            Err(KeyError::Length { len: 3, .. })
        ));
    }
}
