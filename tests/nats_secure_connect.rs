//! Connecting to a nats-server that requires TLS (with client certificates)
//! and a user/password, through the same `VIGIL_NATS_*` settings the
//! Kubernetes manifests use; and the readiness probe over that connection.
//! Every other authentication mode against a real server configured for it:
//! a token, an NKey seed, and a `.creds` file (a user JWT of an account of an
//! operator, all made here with the `nkeys` crate; the server runs in
//! operator mode with a memory resolver). Each connects with the right
//! secret, is refused with a wrong one, and no secret reaches any output of
//! the `vigil` binary (logs at trace level included).
//!
//! Certificates are made at test time with the `openssl` CLI; without it the
//! TLS tests fail saying so (scripts/setup.sh checks for it).

// The modules belong to the `vigil` binary; an integration test cannot import
// a binary's modules, so it compiles the same source files.
#[allow(dead_code)]
#[path = "../src/health.rs"]
mod health;
#[allow(dead_code)]
#[path = "../src/nats_connect.rs"]
mod nats_connect;

use nats_connect::{NatsAuth, connect};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};

const PASSWORD: &str = "correct-horse-battery-staple-7f3a";
const WRONG_PASSWORD: &str = "wrong-horse-9c1d";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1/localhost and a client certificate.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn make_pki(dir: &Path) -> Pki {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=vigil test CA",
    ]);
    openssl(dir, &ca);
    for (name, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        ),
        (
            "client",
            "subjectAltName=DNS:vigil-worker\nextendedKeyUsage=clientAuth\n",
        ),
    ] {
        let ext_file = format!("{name}.ext");
        std::fs::write(
            dir.join(&ext_file),
            format!("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n{ext}"),
        )
        .unwrap();
        let (key, csr, pem, subj) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("/CN=vigil {name}"),
        );
        let mut req = vec!["req", "-new"];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(dir, &req);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &ext_file,
            ],
        );
    }
    Pki {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
    }
}

/// A private nats-server (testkit) requiring TLS with verified client
/// certificates and a user/password; killed on drop.
struct SecureServer {
    server: NatsServer,
    dir: tempfile::TempDir,
    pki: Pki,
}

impl SecureServer {
    fn url(&self) -> String {
        format!("tls://127.0.0.1:{}", self.server.port())
    }
}

/// Starts the server; fails the test without the openssl CLI.
async fn start_secure_server() -> Option<SecureServer> {
    assert!(
        Command::new("openssl").arg("version").output().is_ok(),
        "the openssl CLI is needed to make the test certificates: install it \
         (Debian package openssl; scripts/setup.sh checks for it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    // Port, store and JetStream come from the testkit's flags; the file adds TLS and auth.
    let config = format!(
        r#"
tls {{
  cert_file: "{cert}"
  key_file: "{key}"
  ca_file: "{ca}"
  verify: true
  timeout: 2
}}
authorization {{ user: "vigil", password: "{PASSWORD}" }}
"#,
        cert = pki.server_cert.display(),
        key = pki.server_key.display(),
        ca = pki.ca.display(),
    );
    let conf = dir.path().join("nats.conf");
    std::fs::write(&conf, config).unwrap();
    let server = NatsServer::start(NatsServerConfig {
        config_file: Some(conf),
        ..Default::default()
    })
    .await
    .expect("start nats-server (run scripts/setup.sh, or set VIGIL_NATS_SERVER)");
    Some(SecureServer { server, dir, pki })
}

fn auth_for(
    server: &SecureServer,
    password: &str,
    with_ca: bool,
    with_client_cert: bool,
) -> NatsAuth {
    let dir = server.dir.path();
    let pw_file = dir.join(format!("pw-{}", password.len()));
    // As a mounted Secret would hold it, with a trailing newline.
    std::fs::write(&pw_file, format!("{password}\n")).unwrap();
    let (ca, cert, key) = (
        server.pki.ca.to_str().unwrap().to_string(),
        server.pki.client_cert.to_str().unwrap().to_string(),
        server.pki.client_key.to_str().unwrap().to_string(),
    );
    let pw_file = pw_file.to_str().unwrap().to_string();
    NatsAuth::from_lookup(move |name| match name {
        "VIGIL_NATS_USER" => Some("vigil".into()),
        "VIGIL_NATS_PASSWORD_FILE" => Some(pw_file.clone()),
        "VIGIL_NATS_TLS_CA_FILE" if with_ca => Some(ca.clone()),
        "VIGIL_NATS_TLS_CERT_FILE" if with_client_cert => Some(cert.clone()),
        "VIGIL_NATS_TLS_KEY_FILE" if with_client_cert => Some(key.clone()),
        "VIGIL_NATS_TLS_REQUIRED" => Some("true".into()),
        _ => None,
    })
    .expect("valid settings")
}

fn assert_no_secret(text: &str) {
    assert!(!text.contains(PASSWORD), "password leaked: {text}");
    assert!(!text.contains(WRONG_PASSWORD), "password leaked: {text}");
}

#[tokio::test]
async fn tls_and_password_connect_and_jetstream_works() {
    let Some(server) = start_secure_server().await else {
        return;
    };
    let auth = auth_for(&server, PASSWORD, true, true);
    assert_no_secret(&format!("{auth:?}"));
    let client = connect(&server.url(), &auth, "vigil-test")
        .await
        .expect("connect with the right settings");
    let js = async_nats::jetstream::new(client.clone());
    let mut stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "SECURE_TEST".into(),
            subjects: vec!["secure.>".into()],
            ..Default::default()
        })
        .await
        .expect("JetStream over TLS");
    js.publish("secure.one", "hello".into())
        .await
        .unwrap()
        .await
        .expect("pub ack");
    assert_eq!(stream.info().await.unwrap().state.messages, 1);
}

#[tokio::test]
async fn wrong_password_fails_without_leaking_it() {
    let Some(server) = start_secure_server().await else {
        return;
    };
    let auth = auth_for(&server, WRONG_PASSWORD, true, true);
    let err = connect(&server.url(), &auth, "vigil-test")
        .await
        .expect_err("wrong password must fail");
    let text = format!("{err:#} / {err:?}");
    eprintln!("expected failure: {text}");
    assert_no_secret(&text);
    assert!(text.to_lowercase().contains("authorization"), "{text}");
    assert!(
        text.contains(&server.url()),
        "the error names the server: {text}"
    );
}

#[tokio::test]
async fn unknown_ca_or_missing_client_cert_fails() {
    let Some(server) = start_secure_server().await else {
        return;
    };
    // Without our CA the server's certificate is not trusted.
    let err = connect(
        &server.url(),
        &auth_for(&server, PASSWORD, false, true),
        "vigil-test",
    )
    .await
    .expect_err("untrusted server certificate must fail");
    let text = format!("{err:#} / {err:?}");
    eprintln!("expected failure: {text}");
    assert_no_secret(&text);
    assert!(
        text.contains("TLS") || text.to_lowercase().contains("certificate"),
        "{text}"
    );
    // Without a client certificate the server (verify: true) refuses us.
    let err = connect(
        &server.url(),
        &auth_for(&server, PASSWORD, true, false),
        "vigil-test",
    )
    .await
    .expect_err("missing client certificate must fail");
    let text = format!("{err:#} / {err:?}");
    eprintln!("expected failure: {text}");
    assert_no_secret(&text);
}

async fn http_status(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    (buf.split_whitespace().nth(1).unwrap().parse().unwrap(), buf)
}

#[tokio::test]
async fn readiness_follows_stream_and_connection() {
    let Some(mut server) = start_secure_server().await else {
        return;
    };
    let client = connect(
        &server.url(),
        &auth_for(&server, PASSWORD, true, true),
        "vigil-health",
    )
    .await
    .unwrap();
    let probe = health::ReadyProbe::new(None);
    let addr = health::serve(
        "127.0.0.1:0".parse().unwrap(),
        probe.clone(),
        std::future::pending(),
    )
    .await
    .unwrap();

    let (code, body) = http_status(addr, "/readyz").await;
    assert_eq!(code, 503, "no client yet: {body}");

    // Connected, but VIGIL_JOBS does not exist yet.
    probe.set_client(client.clone());
    let (code, body) = http_status(addr, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("VIGIL_JOBS"), "{body}");

    vigil_nats::topology::ensure_topology(&client, &Default::default(), "default")
        .await
        .unwrap();
    // The negative answer is cached for ~2 s.
    tokio::time::sleep(health::READY_CACHE + Duration::from_millis(100)).await;
    let (code, body) = http_status(addr, "/readyz").await;
    assert_eq!(code, 200, "{body}");

    server.server.kill_and_wait().await;
    tokio::time::sleep(health::READY_CACHE + Duration::from_millis(300)).await;
    let (code, body) = http_status(addr, "/readyz").await;
    assert_eq!(code, 503, "server gone: {body}");
    // Liveness does not depend on NATS.
    assert_eq!(http_status(addr, "/healthz").await.0, 200);
}

// ---- token, NKey and creds-file authentication against real servers ----

/// A server started from a config file holding `conf` (port, store and
/// JetStream come from the testkit's flags).
async fn server_with(dir: &Path, conf: &str) -> NatsServer {
    let path = dir.join("auth.conf");
    std::fs::write(&path, conf).unwrap();
    NatsServer::start(NatsServerConfig {
        config_file: Some(path),
        ..Default::default()
    })
    .await
    .expect("start nats-server (run scripts/setup.sh, or set VIGIL_NATS_SERVER)")
}

/// The `VIGIL_NATS_*` settings as a lookup.
fn settings(vars: &[(&'static str, String)]) -> NatsAuth {
    let vars = vars.to_vec();
    NatsAuth::from_lookup(move |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .expect("valid settings")
}

/// `vigil setup-streams --nats URL` with these settings and nothing else of
/// the caller's `VIGIL_NATS_*`, logging everything (trace, JSON).
fn setup_streams(url: &str, vars: &[(&'static str, String)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil"));
    for (k, _) in std::env::vars() {
        if k.starts_with("VIGIL_NATS_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .args(["--log-format", "json", "setup-streams", "--nats", url])
        .env("VIGIL_LOG", "trace")
        .envs(vars.iter().map(|(k, v)| (*k, v)))
        .output()
        .expect("run vigil");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// The right settings connect (library and binary, JetStream usable); the
/// wrong ones are refused as an authorization error; no secret is printed.
async fn check_auth_mode(
    url: &str,
    right: &[(&'static str, String)],
    wrong: &[(&'static str, String)],
    secrets: &[&str],
) {
    let no_secret = |text: &str| {
        for secret in secrets {
            assert!(!text.contains(secret), "a secret leaked: {text}");
        }
    };
    let auth = settings(right);
    no_secret(&format!("{auth:?}"));
    let client = connect(url, &auth, "vigil-test")
        .await
        .expect("the right secret connects");
    client.flush().await.unwrap();
    let (code, text) = setup_streams(url, right);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("ok: streams"), "{text}");
    no_secret(&text);

    let err = connect(url, &settings(wrong), "vigil-test")
        .await
        .expect_err("a wrong secret must be refused");
    let err = format!("{err:#} / {err:?}");
    eprintln!("expected failure: {err}");
    assert!(
        err.to_lowercase().contains("authorization"),
        "refused as unauthorized: {err}"
    );
    no_secret(&err);
    let (code, text) = setup_streams(url, wrong);
    assert_eq!(code, Some(3), "{text}");
    assert!(text.to_lowercase().contains("authorization"), "{text}");
    no_secret(&text);
}

#[tokio::test]
async fn token_connects_and_a_wrong_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let token = "s3cret-token-5b1e9d";
    let wrong = "wrong-token-77aa01";
    let server = server_with(
        dir.path(),
        &format!("authorization {{ token: \"{token}\" }}\n"),
    )
    .await;
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    check_auth_mode(
        &server.url(),
        &[("VIGIL_NATS_TOKEN_FILE", file.display().to_string())],
        &[("VIGIL_NATS_TOKEN", wrong.to_string())],
        &[token, wrong],
    )
    .await;
}

#[tokio::test]
async fn nkey_seed_connects_and_another_seed_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let user = nkeys::KeyPair::new_user();
    let stranger = nkeys::KeyPair::new_user();
    let server = server_with(
        dir.path(),
        &format!(
            "authorization {{ users: [ {{ nkey: \"{}\" }} ] }}\n",
            user.public_key()
        ),
    )
    .await;
    let (seed, wrong_seed) = (user.seed().unwrap(), stranger.seed().unwrap());
    let (right_file, wrong_file) = (dir.path().join("seed"), dir.path().join("wrong-seed"));
    std::fs::write(&right_file, format!("{seed}\n")).unwrap();
    std::fs::write(&wrong_file, &wrong_seed).unwrap();
    check_auth_mode(
        &server.url(),
        &[(
            "VIGIL_NATS_NKEY_SEED_FILE",
            right_file.display().to_string(),
        )],
        &[(
            "VIGIL_NATS_NKEY_SEED_FILE",
            wrong_file.display().to_string(),
        )],
        &[&seed, &wrong_seed],
    )
    .await;
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A NATS JWT (v2): `base64url(header).base64url(claims).base64url(sig)`,
/// signed with the issuer's nkey.
fn nats_jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    let iat = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = b64url(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let claims = serde_json::json!({
        "jti": format!("{}{iat}", name.to_uppercase()),
        "iat": iat,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let signed = format!("{header}.{}", b64url(claims.to_string().as_bytes()));
    let sig = issuer.sign(signed.as_bytes()).unwrap();
    format!("{signed}.{}", b64url(&sig))
}

/// A `.creds` file as `nsc` writes it.
fn creds(jwt: &str, seed: &str) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n"
    )
}

#[tokio::test]
async fn creds_file_connects_in_operator_mode_and_a_wrong_seed_is_refused() {
    use nkeys::KeyPair;
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let operator = KeyPair::new_operator();
    let system = KeyPair::new_account();
    let account = KeyPair::new_account();
    let user = KeyPair::new_user();
    let unlimited = json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
        "wildcards": true, "conn": -1, "leaf": -1,
        // JetStream on, without limits.
        "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
    });
    let operator_jwt = nats_jwt(
        &operator,
        &operator.public_key(),
        "vigil-test-operator",
        json!({"type": "operator", "version": 2, "system_account": system.public_key()}),
    );
    let system_jwt = nats_jwt(
        &operator,
        &system.public_key(),
        "SYS",
        json!({"type": "account", "version": 2, "limits": {"subs": -1, "data": -1, "payload": -1, "conn": -1}}),
    );
    let account_jwt = nats_jwt(
        &operator,
        &account.public_key(),
        "VIGIL",
        json!({"type": "account", "version": 2, "limits": unlimited}),
    );
    let user_jwt = nats_jwt(
        &account,
        &user.public_key(),
        "vigil-worker",
        json!({"type": "user", "version": 2, "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1}),
    );
    let operator_file = dir.path().join("operator.jwt");
    std::fs::write(&operator_file, &operator_jwt).unwrap();
    let server = server_with(
        dir.path(),
        &format!(
            "operator: \"{}\"\nsystem_account: {sys}\nresolver: MEMORY\nresolver_preload: {{\n  {sys}: \"{system_jwt}\"\n  {acc}: \"{account_jwt}\"\n}}\n",
            operator_file.display(),
            sys = system.public_key(),
            acc = account.public_key(),
        ),
    )
    .await;
    let seed = user.seed().unwrap();
    // The right JWT with another user's seed: the server's nonce signature check fails.
    let wrong_seed = KeyPair::new_user().seed().unwrap();
    let (right_file, wrong_file) = (
        dir.path().join("user.creds"),
        dir.path().join("wrong.creds"),
    );
    std::fs::write(&right_file, creds(&user_jwt, &seed)).unwrap();
    std::fs::write(&wrong_file, creds(&user_jwt, &wrong_seed)).unwrap();
    check_auth_mode(
        &server.url(),
        &[("VIGIL_NATS_CREDS_FILE", right_file.display().to_string())],
        &[("VIGIL_NATS_CREDS_FILE", wrong_file.display().to_string())],
        &[&seed, &wrong_seed],
    )
    .await;
}
