//! URLs in the configuration: parsed once, when the file is loaded, and kept with the text the
//! operator wrote (shown back as written). Sections check the scheme they accept.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A URL from the configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct Url {
    text: String,
    url: reqwest::Url,
}

impl Url {
    /// Parses `text`; the error says why it is not a URL.
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = reqwest::Url::parse(text).map_err(|e| {
            if text.contains('@') {
                // Not echoed: the part before `@` may be a secret.
                format!("a value with `@` is not a URL ({e})")
            } else {
                format!("`{text}` is not a URL ({e})")
            }
        })?;
        Ok(Self {
            text: text.to_owned(),
            url,
        })
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parsed URL.
    pub fn url(&self) -> &reqwest::Url {
        &self.url
    }

    pub fn scheme(&self) -> &str {
        self.url.scheme()
    }

    /// Whether it carries a user name or password (which belong in key files, not in a URL
    /// that `status` and the log show).
    pub fn has_credentials(&self) -> bool {
        !self.url.username().is_empty() || self.url.password().is_some()
    }

    /// The text without a trailing `/` (a base to append paths to).
    pub fn base(&self) -> &str {
        self.text.trim_end_matches('/')
    }
}

/// Compares with the text as written.
impl PartialEq<&str> for Url {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Credentials are never printed: a URL that carries them is refused by its section, and its
/// debug form shows the scheme and host only.
impl fmt::Debug for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.has_credentials() {
            write!(
                f,
                "{}://(credentials)@{}",
                self.url.scheme(),
                self.url.host_str().unwrap_or("")
            )
        } else {
            f.write_str(&self.text)
        }
    }
}

impl<'de> Deserialize<'de> for Url {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// As written, unless it carries credentials (which sections refuse): then its debug form, so
/// that no serialized configuration or view can show them.
impl Serialize for Url {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.has_credentials() {
            s.serialize_str(&format!("{self:?}"))
        } else {
            s.serialize_str(&self.text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_their_text_and_hide_credentials() {
        let u = Url::parse("https://api.example.org/").unwrap();
        assert_eq!(u.to_string(), "https://api.example.org/");
        assert_eq!(u.base(), "https://api.example.org");
        assert!(!u.has_credentials());
        let secret = Url::parse("nats://user:hunter2@192.0.2.1:4222").unwrap();
        assert!(secret.has_credentials());
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert!(Url::parse("not a url").unwrap_err().contains("not a URL"));
    }
}
