//! How every NATS-connecting command connects: authentication and TLS options
//! read from `VIGIL_NATS_*` environment variables (and the files they name),
//! never from the command line, so that Kubernetes manifests can take them
//! from Secrets and nothing secret shows up in `ps` or in a pod spec.
//!
//! | variable | meaning |
//! |---|---|
//! | `VIGIL_NATS_URL` | server URL or comma-separated URLs; read by the CLI's `--nats` flag and parsed by [`server_addrs`] |
//! | `VIGIL_NATS_USER` + `VIGIL_NATS_PASSWORD` / `VIGIL_NATS_PASSWORD_FILE` | user and password |
//! | `VIGIL_NATS_TOKEN` / `VIGIL_NATS_TOKEN_FILE` | token |
//! | `VIGIL_NATS_NKEY_SEED_FILE` | file holding an nkey seed (`SU...`) |
//! | `VIGIL_NATS_CREDS_FILE` | a `.creds` file (JWT + nkey seed) |
//! | `VIGIL_NATS_TLS_CA_FILE` | PEM roots to trust instead of the system's |
//! | `VIGIL_NATS_TLS_CERT_FILE` + `VIGIL_NATS_TLS_KEY_FILE` | client certificate (mutual TLS) |
//! | `VIGIL_NATS_TLS_REQUIRED` | `true`/`false`: refuse a plain-text connection |
//!
//! At most one of user/password, token, nkey and credentials may be set.
//! Secret values are held in [`Secret`], whose `Debug` and `Display` print
//! `[redacted]`; errors name variables and paths, never contents.

use std::fmt;
use std::path::{Path, PathBuf};

/// Name of the variable holding the server URL (read by the CLI).
pub const ENV_URL: &str = "VIGIL_NATS_URL";
/// User name for user/password authentication.
pub const ENV_USER: &str = "VIGIL_NATS_USER";
/// Password for user/password authentication.
pub const ENV_PASSWORD: &str = "VIGIL_NATS_PASSWORD";
/// File holding the password (a mounted Secret key).
pub const ENV_PASSWORD_FILE: &str = "VIGIL_NATS_PASSWORD_FILE";
/// Token authentication.
pub const ENV_TOKEN: &str = "VIGIL_NATS_TOKEN";
/// File holding the token.
pub const ENV_TOKEN_FILE: &str = "VIGIL_NATS_TOKEN_FILE";
/// File holding an nkey seed.
pub const ENV_NKEY_SEED_FILE: &str = "VIGIL_NATS_NKEY_SEED_FILE";
/// A NATS `.creds` file (decentralised JWT auth).
pub const ENV_CREDS_FILE: &str = "VIGIL_NATS_CREDS_FILE";
/// PEM file of root certificates to trust.
pub const ENV_TLS_CA_FILE: &str = "VIGIL_NATS_TLS_CA_FILE";
/// PEM client certificate chain.
pub const ENV_TLS_CERT_FILE: &str = "VIGIL_NATS_TLS_CERT_FILE";
/// PEM private key of the client certificate.
pub const ENV_TLS_KEY_FILE: &str = "VIGIL_NATS_TLS_KEY_FILE";
/// `true` to refuse connecting without TLS.
pub const ENV_TLS_REQUIRED: &str = "VIGIL_NATS_TLS_REQUIRED";

/// A secret string: its `Debug` and `Display` print `[redacted]`.
///
/// ```ignore
/// let s = Secret::new("hunter2");
/// assert_eq!(format!("{s:?}"), "[redacted]");
/// assert_eq!(s.expose(), "hunter2");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself; call it only where the value is handed to the client library.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// How to authenticate to NATS, and with which TLS settings.
///
/// Build it with [`NatsAuth::from_env`] (or [`NatsAuth::from_lookup`] in
/// tests); `Default` is an anonymous plain connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatsAuth {
    /// User name (with `password`).
    pub user: Option<String>,
    /// Password (with `user`).
    pub password: Option<Secret>,
    /// Token.
    pub token: Option<Secret>,
    /// An nkey seed, read from `VIGIL_NATS_NKEY_SEED_FILE`.
    pub nkey_seed: Option<Secret>,
    /// A `.creds` file; the client library reads it at connect.
    pub creds_file: Option<PathBuf>,
    /// PEM roots to trust.
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate chain (with `tls_key_file`).
    pub tls_cert_file: Option<PathBuf>,
    /// Client key (with `tls_cert_file`).
    pub tls_key_file: Option<PathBuf>,
    /// Refuse a plain-text connection.
    pub tls_required: bool,
}

/// The `VIGIL_NATS_*` settings are unusable. Messages name variables and
/// paths, never secret values.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Both a variable and its `_FILE` twin are set.
    #[error("set either {0} or {1}, not both")]
    Both(&'static str, &'static str),
    /// One of a required pair is missing.
    #[error("{0} is set but {1} is not")]
    Missing(&'static str, &'static str),
    /// More than one authentication method is set.
    #[error("more than one NATS authentication method is set ({0}); choose one")]
    TooManyMethods(String),
    /// A file named by a variable cannot be read.
    #[error("cannot read {var}={}: {source}", path.display())]
    File {
        /// The variable.
        var: &'static str,
        /// The file it names.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file named by a variable is empty.
    #[error("{var}={} is empty", path.display())]
    EmptyFile {
        /// The variable.
        var: &'static str,
        /// The file it names.
        path: PathBuf,
    },
    /// A boolean variable holds something else.
    #[error("{var} must be true or false, not {value:?}")]
    NotBool {
        /// The variable.
        var: &'static str,
        /// What it holds (not a secret).
        value: String,
    },
}

impl NatsAuth {
    /// Reads the `VIGIL_NATS_*` variables of this process.
    pub fn from_env() -> Result<NatsAuth, ConnectError> {
        NatsAuth::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (a variable name to its value);
    /// empty values count as unset. Files named by `_FILE` variables are read
    /// now, so a missing Secret mount fails at start, not at the first reconnect.
    ///
    /// ```ignore
    /// let auth = NatsAuth::from_lookup(|k| match k {
    ///     "VIGIL_NATS_TOKEN" => Some("t0k".into()),
    ///     _ => None,
    /// })?;
    /// assert_eq!(auth.token.unwrap().expose(), "t0k");
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<NatsAuth, ConnectError> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let path = |name: &str| get(name).map(PathBuf::from);

        let user = get(ENV_USER);
        let password = secret_or_file(&get, ENV_PASSWORD, ENV_PASSWORD_FILE)?;
        let token = secret_or_file(&get, ENV_TOKEN, ENV_TOKEN_FILE)?;
        let nkey_seed = match path(ENV_NKEY_SEED_FILE) {
            Some(p) => Some(read_secret_file(ENV_NKEY_SEED_FILE, &p)?),
            None => None,
        };
        let creds_file = path(ENV_CREDS_FILE);
        if let Some(p) = &creds_file {
            // Read once to fail early; the client library reads it again at connect.
            read_secret_file(ENV_CREDS_FILE, p)?;
        }
        match (&user, &password) {
            (Some(_), None) => return Err(ConnectError::Missing(ENV_USER, ENV_PASSWORD)),
            (None, Some(_)) => return Err(ConnectError::Missing(ENV_PASSWORD, ENV_USER)),
            _ => {}
        }
        let methods: Vec<&str> = [
            (user.is_some(), "user/password"),
            (token.is_some(), "token"),
            (nkey_seed.is_some(), "nkey"),
            (creds_file.is_some(), "credentials file"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect();
        if methods.len() > 1 {
            return Err(ConnectError::TooManyMethods(methods.join(", ")));
        }

        let tls_ca_file = path(ENV_TLS_CA_FILE);
        let tls_cert_file = path(ENV_TLS_CERT_FILE);
        let tls_key_file = path(ENV_TLS_KEY_FILE);
        match (&tls_cert_file, &tls_key_file) {
            (Some(_), None) => {
                return Err(ConnectError::Missing(ENV_TLS_CERT_FILE, ENV_TLS_KEY_FILE));
            }
            (None, Some(_)) => {
                return Err(ConnectError::Missing(ENV_TLS_KEY_FILE, ENV_TLS_CERT_FILE));
            }
            _ => {}
        }
        for (var, p) in [
            (ENV_TLS_CA_FILE, &tls_ca_file),
            (ENV_TLS_CERT_FILE, &tls_cert_file),
            (ENV_TLS_KEY_FILE, &tls_key_file),
        ] {
            if let Some(p) = p {
                std::fs::metadata(p).map_err(|source| ConnectError::File {
                    var,
                    path: p.clone(),
                    source,
                })?;
            }
        }
        let tls_required = match get(ENV_TLS_REQUIRED) {
            None => false,
            Some(v) => parse_bool(&v).ok_or(ConnectError::NotBool {
                var: ENV_TLS_REQUIRED,
                value: v,
            })?,
        };
        Ok(NatsAuth {
            user,
            password,
            token,
            nkey_seed,
            creds_file,
            tls_ca_file,
            tls_cert_file,
            tls_key_file,
            tls_required,
        })
    }

    /// The connect options these settings stand for, named `name` (shown by
    /// the server's `/connz`), without retrying the first connect.
    pub async fn options(&self, name: &str) -> anyhow::Result<async_nats::ConnectOptions> {
        let mut opts = async_nats::ConnectOptions::new().name(name);
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            opts = opts.user_and_password(user.clone(), password.expose().to_string());
        }
        if let Some(token) = &self.token {
            opts = opts.token(token.expose().to_string());
        }
        if let Some(seed) = &self.nkey_seed {
            opts = opts.nkey(seed.expose().to_string());
        }
        if let Some(path) = &self.creds_file {
            // The library's io::Error names no contents, but keep our own wording.
            opts = opts.credentials_file(path).await.map_err(|e| {
                anyhow::anyhow!(
                    "cannot load NATS credentials file {}: {}",
                    path.display(),
                    e.kind()
                )
            })?;
        }
        if let Some(ca) = &self.tls_ca_file {
            opts = opts.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert_file, &self.tls_key_file) {
            opts = opts.add_client_certificate(cert.clone(), key.clone());
        }
        // A CA or client certificate only makes sense over TLS: do not let a
        // plain-text server quietly accept the connection instead.
        let tls = self.tls_required || self.tls_ca_file.is_some() || self.tls_cert_file.is_some();
        Ok(opts.require_tls(tls))
    }
}

/// Parses a `--nats` value: one server URL or a comma-separated list of them
/// (`nats://a:4222,nats://b:4222`), as the `nats` CLI and every NATS client
/// take it. Blanks around entries are ignored; an empty entry or one that is
/// not a URL is an error naming it (without its user info).
///
/// ```ignore
/// assert_eq!(server_addrs("nats://a:4222, nats://b:4222")?.len(), 2);
/// assert!(server_addrs("nats://a:4222,,nats://b:4222").is_err());
/// ```
pub fn server_addrs(list: &str) -> anyhow::Result<Vec<async_nats::ServerAddr>> {
    let entries: Vec<&str> = list.split(',').map(str::trim).collect();
    if entries.iter().all(|e| e.is_empty()) {
        anyhow::bail!("no NATS server URL given");
    }
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            if entry.is_empty() {
                anyhow::bail!(
                    "NATS server list {}: entry {} is empty",
                    redact_url(list),
                    i + 1
                );
            }
            entry
                .parse::<async_nats::ServerAddr>()
                .map_err(|e| anyhow::anyhow!("invalid NATS server URL {}: {e}", redact_url(entry)))
        })
        .collect()
}

/// Connects to `url` (one URL or a comma-separated list, see [`server_addrs`])
/// with `auth`, naming the connection `name`, then checks that the server is
/// nats-server 2.10 or newer. The first connect tries every listed server
/// once and is not retried (a wrong setting fails fast); later disconnects
/// reconnect as usual, to any listed or discovered server.
/// Errors carry the URLs without any user info, never a secret.
pub async fn connect(url: &str, auth: &NatsAuth, name: &str) -> anyhow::Result<async_nats::Client> {
    let shown = redact_url(url);
    let servers = server_addrs(url)?;
    let client = auth
        .options(name)
        .await?
        .connect(servers)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to NATS at {shown}: {}", describe(&e)))?;
    vigil_nats::topology::check_server(&client)
        .map_err(|e| anyhow::anyhow!("NATS at {shown}: {e}"))?;
    Ok(client)
}

/// Replaces the user info of every URL in a comma-separated list with `***`.
///
/// ```ignore
/// assert_eq!(redact_url("nats://u:p@h:4222,tls://h2"), "nats://***@h:4222,tls://h2");
/// ```
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|one| {
            let (scheme, rest) = match one.find("://") {
                Some(i) => one.split_at(i + 3),
                None => ("", one),
            };
            let host_end = rest.find('/').unwrap_or(rest.len());
            match rest[..host_end].rfind('@') {
                Some(at) => format!("{scheme}***{}", &rest[at..]),
                None => one.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The error's kind and its source chain. async-nats' messages carry no
/// credentials, but a URL with user info in a source would, so URLs are redacted.
fn describe(e: &async_nats::ConnectError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

fn secret_or_file(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    file_var: &'static str,
) -> Result<Option<Secret>, ConnectError> {
    match (get(var), get(file_var)) {
        (Some(_), Some(_)) => Err(ConnectError::Both(var, file_var)),
        (Some(v), None) => Ok(Some(Secret::new(v))),
        (None, Some(p)) => read_secret_file(file_var, Path::new(&p)).map(Some),
        (None, None) => Ok(None),
    }
}

/// Reads a file holding one secret; a trailing newline (as `echo` and most
/// editors write) is not part of it.
fn read_secret_file(var: &'static str, path: &Path) -> Result<Secret, ConnectError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConnectError::File {
        var,
        path: path.to_path_buf(),
        source,
    })?;
    let trimmed = text.trim_end_matches(['\n', '\r']);
    if trimmed.is_empty() {
        return Err(ConnectError::EmptyFile {
            var,
            path: path.to_path_buf(),
        });
    }
    Ok(Secret::new(trimmed))
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Connects with the settings of the `VIGIL_NATS_*` variables of this process.
pub async fn connect_from_env(url: &str, name: &str) -> anyhow::Result<async_nats::Client> {
    connect(url, &NatsAuth::from_env()?, name).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn empty_environment_is_anonymous_plain() {
        let auth = NatsAuth::from_lookup(lookup(&[])).unwrap();
        assert_eq!(auth, NatsAuth::default());
    }

    #[test]
    fn user_and_password_file_with_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "pa55word-xyz\n").unwrap();
        let auth = NatsAuth::from_lookup(lookup(&[
            (ENV_USER, "vigil"),
            (ENV_PASSWORD_FILE, p.to_str().unwrap()),
            (ENV_TLS_REQUIRED, "TRUE"),
        ]))
        .unwrap();
        assert_eq!(auth.user.as_deref(), Some("vigil"));
        assert_eq!(auth.password.as_ref().unwrap().expose(), "pa55word-xyz");
        assert!(auth.tls_required);
        let debug = format!("{auth:?}");
        assert!(!debug.contains("pa55word"), "{debug}");
        assert!(debug.contains("[redacted]"), "{debug}");
    }

    #[test]
    fn conflicting_and_incomplete_settings_are_refused_without_values() {
        let err =
            NatsAuth::from_lookup(lookup(&[(ENV_TOKEN, "tok-secret"), (ENV_TOKEN_FILE, "/x")]))
                .unwrap_err();
        assert!(matches!(err, ConnectError::Both(..)));
        let err = NatsAuth::from_lookup(lookup(&[(ENV_PASSWORD, "pw-secret")])).unwrap_err();
        assert!(matches!(err, ConnectError::Missing(ENV_PASSWORD, ENV_USER)));
        let err = NatsAuth::from_lookup(lookup(&[
            (ENV_USER, "u"),
            (ENV_PASSWORD, "pw-secret"),
            (ENV_TOKEN, "tok-secret"),
        ]))
        .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ConnectError::TooManyMethods(_)));
        assert!(!text.contains("secret"), "{text}");
        let err =
            NatsAuth::from_lookup(lookup(&[(ENV_TLS_CERT_FILE, "/etc/hostname")])).unwrap_err();
        assert!(matches!(
            err,
            ConnectError::Missing(ENV_TLS_CERT_FILE, ENV_TLS_KEY_FILE)
        ));
        let err = NatsAuth::from_lookup(lookup(&[(ENV_TLS_REQUIRED, "maybe")])).unwrap_err();
        assert!(matches!(err, ConnectError::NotBool { .. }));
        let err = NatsAuth::from_lookup(lookup(&[(ENV_NKEY_SEED_FILE, "/nonexistent/seed")]))
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/seed"), "{err}");
    }

    #[test]
    fn server_lists_are_split_and_checked() {
        let addrs = server_addrs("nats://127.0.0.1:4222, nats://127.0.0.2:4223").unwrap();
        assert_eq!(addrs.len(), 2);
        assert_eq!(addrs[1].host(), "127.0.0.2");
        assert_eq!(addrs[1].port(), 4223);
        assert_eq!(server_addrs("localhost:4222").unwrap().len(), 1);
        let err = server_addrs("nats://a:4222,,nats://b:4222").unwrap_err();
        assert!(err.to_string().contains("entry 2 is empty"), "{err}");
        assert!(server_addrs(" , ").is_err());
        let err = server_addrs("nats://u:pw-secret@h:4222,nats://h:notaport")
            .unwrap_err()
            .to_string();
        assert!(err.contains("nats://h:notaport"), "{err}");
        assert!(!err.contains("pw-secret"), "{err}");
    }

    #[test]
    fn urls_lose_their_user_info() {
        assert_eq!(
            redact_url("nats://u:p@h:4222,tls://h2"),
            "nats://***@h:4222,tls://h2"
        );
        assert_eq!(redact_url("nats://h:4222"), "nats://h:4222");
        assert_eq!(redact_url("tok@h:4222"), "***@h:4222");
    }
}
