//! The backends a worker may call, and the secret each may receive.
//!
//! A job is data, never authority (DESIGN §4.8): anyone who can publish on
//! `vigil.jobs.>` could name any URL. So a worker calls only base URLs its own
//! configuration allows, and sends an API key only to the URL it belongs to.

use std::fmt;

/// One allowed backend: a base-URL prefix and the environment variable that
/// holds its API key.
#[derive(Clone)]
pub struct AllowedBackend {
    prefix: String,
    key_env: Option<String>,
    key: Option<String>,
}

impl fmt::Debug for AllowedBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AllowedBackend")
            .field("prefix", &self.prefix)
            .field("key_env", &self.key_env)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The worker's allow list.
///
/// ```
/// use vigil_worker::allow::AllowList;
/// let allow = AllowList::parse(["http://127.0.0.1:8000/v1"]).unwrap();
/// assert!(allow.lookup("http://127.0.0.1:8000/v1").is_some());
/// assert!(allow.lookup("http://127.0.0.1:8000/v1/").is_some());
/// assert!(allow.lookup("http://127.0.0.1:8000/v10").is_none());
/// assert!(allow.lookup("http://evil.example/v1").is_none());
/// ```
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    entries: Vec<AllowedBackend>,
}

/// An `--allow` entry could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AllowError {
    /// The URL part is not an http(s) URL.
    #[error(
        "--allow {0}: expected an http:// or https:// base URL, optionally followed by =KEY_ENV"
    )]
    NotAUrl(String),
}

fn normalize(url: &str) -> &str {
    url.trim().trim_end_matches('/')
}

impl AllowList {
    /// Parses entries of the form `BASE_URL` or `BASE_URL=KEY_ENV`, reading
    /// each key from the environment now (a missing variable means no key).
    pub fn parse<I, S>(entries: I) -> Result<AllowList, AllowError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::parse_with(entries, |name| std::env::var(name).ok())
    }

    /// As [`AllowList::parse`], with the environment given as a lookup.
    pub fn parse_with<I, S>(
        entries: I,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<AllowList, AllowError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list = AllowList::default();
        for entry in entries {
            let entry = entry.as_ref().trim();
            if entry.is_empty() {
                continue;
            }
            // `=` cannot start a key-env name, and URLs with `=` in the query
            // are not base URLs: split at the last `=` after the scheme.
            let (url, key_env) = match entry.rsplit_once('=') {
                Some((url, env_name)) if !env_name.contains('/') && !env_name.is_empty() => {
                    (url, Some(env_name.to_string()))
                }
                _ => (entry, None),
            };
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(AllowError::NotAUrl(url.to_string()));
            }
            list.push(url, key_env, &env);
        }
        Ok(list)
    }

    /// Adds one backend.
    pub fn push(
        &mut self,
        base_url: &str,
        key_env: Option<String>,
        env: &impl Fn(&str) -> Option<String>,
    ) {
        let key = key_env.as_deref().and_then(env).filter(|k| !k.is_empty());
        self.entries.push(AllowedBackend {
            prefix: normalize(base_url).to_string(),
            key_env,
            key,
        });
    }

    /// Whether nothing is allowed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The allowed prefixes, for logs (never the keys).
    pub fn prefixes(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.prefix.as_str())
    }

    /// Finds the entry that allows `base_url`: the longest prefix that ends at
    /// a path boundary. Returns the API key to send, if any.
    pub fn lookup(&self, base_url: &str) -> Option<Option<&str>> {
        let url = normalize(base_url);
        self.entries
            .iter()
            .filter(|e| {
                url.strip_prefix(e.prefix.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
            .max_by_key(|e| e.prefix.len())
            .map(|e| e.key.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_go_only_to_their_own_url() {
        let env = |name: &str| (name == "K").then(|| "sk-secret".to_string());
        let allow = AllowList::parse_with(["http://a:1/v1=K", "http://b:2"], env).unwrap();
        assert_eq!(allow.lookup("http://a:1/v1"), Some(Some("sk-secret")));
        assert_eq!(allow.lookup("http://b:2/v1"), Some(None));
        assert_eq!(allow.lookup("http://a:1/v2"), None);
        assert_eq!(allow.lookup("http://a:10/v1"), None);
        assert!(!format!("{allow:?}").contains("sk-secret"));
    }

    #[test]
    fn rejects_non_urls() {
        assert!(AllowList::parse(["ftp://x"]).is_err());
        assert!(AllowList::parse(["=K"]).is_err());
    }
}
