//! The IPASIS API key: loaded from a file, a systemd credential or the environment, and never
//! shown. `Debug` and `Display` print `ApiKey(***)`; the only way to the bytes is
//! [`ApiKey::expose`], used when building the auth header.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use thiserror::Error;

/// Environment variable holding the key (for development; prefer a file or credential).
pub const ENV: &str = "IPASIS_KEY";
/// Name of the systemd credential (`LoadCredential=ipasis.key:…`).
pub const CREDENTIAL: &str = "ipasis.key";

/// An API key. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Why no usable key could be loaded. Messages name the place, never the content.
#[derive(Debug, Error)]
pub enum KeyError {
    #[error("cannot read the API key file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the API key file {path} is readable by other users (mode {mode:o}); chmod 600 it")]
    WorldReadable { path: PathBuf, mode: u32 },
    #[error("the API key from {origin} is empty or not a single printable line")]
    Malformed { origin: String },
}

impl ApiKey {
    /// Wraps a key after checking it can go into an HTTP header.
    pub fn new(text: &str, origin: &str) -> Result<Self, KeyError> {
        let key = text.trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(KeyError::Malformed {
                origin: origin.to_owned(),
            });
        }
        Ok(Self(key.to_owned()))
    }

    /// Reads a key file, refusing one that group or others can read.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let read = |source| KeyError::Read {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read)?;
        if let Some(mode) = crate::secret::exposed_mode(&meta) {
            return Err(KeyError::WorldReadable {
                path: path.to_owned(),
                mode,
            });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        Self::new(&text, &path.display().to_string())
    }

    /// The key from, in order: `key_file` if configured, the systemd credential, `$IPASIS_KEY`.
    /// `Ok(None)` when none is set: enrichment is then off.
    pub fn load(key_file: Option<&Path>) -> Result<Option<Self>, KeyError> {
        if let Some(path) = key_file {
            return Self::from_file(path).map(Some);
        }
        if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
            let path = Path::new(&dir).join(CREDENTIAL);
            if path.exists() {
                // systemd makes credentials readable by the service only; no mode check.
                let text = std::fs::read_to_string(&path).map_err(|source| KeyError::Read {
                    path: path.clone(),
                    source,
                })?;
                return Self::new(&text, "the systemd credential").map(Some);
            }
        }
        match std::env::var(ENV) {
            Ok(v) => Self::new(&v, ENV).map(Some),
            Err(_) => Ok(None),
        }
    }

    /// The secret itself, for the auth header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn never_printed() {
        let k = ApiKey::new("ipasis_0123456789abcdef", "test").unwrap();
        assert_eq!(format!("{k:?} {k}"), "ApiKey(***) ***");
        assert_eq!(k.expose(), "ipasis_0123456789abcdef");
    }

    #[test]
    fn key_files_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "ipasis_secret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = ApiKey::from_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("chmod 600") && !err.contains("ipasis_secret"),
            "{err}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(ApiKey::from_file(&path).unwrap().expose(), "ipasis_secret");
    }

    #[test]
    fn malformed_keys_are_refused_without_echoing_them() {
        for bad in ["", "   ", "two words", "line\nbreak"] {
            let err = ApiKey::new(bad, "test").unwrap_err().to_string();
            assert!(!bad.trim().is_empty() || err.contains("empty"));
            if !bad.trim().is_empty() {
                assert!(!err.contains(bad.trim()), "{err}");
            }
        }
    }
}
