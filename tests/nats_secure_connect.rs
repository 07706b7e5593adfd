//! Connecting to a nats-server that requires TLS (with client certificates)
//! and a user/password, through the same `VIGIL_NATS_*` settings the
//! Kubernetes manifests use; and the readiness probe over that connection.
//!
//! Certificates are made at test time with the `openssl` CLI; without it the
//! tests print why and pass vacuously (they cannot prove anything then).

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

/// Starts the server, or returns `None` (after printing why) without the openssl CLI.
async fn start_secure_server() -> Option<SecureServer> {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("SKIP: no openssl CLI to make test certificates");
        return None;
    }
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

    vigil_protocol::topology::ensure_topology(&client, &Default::default(), "default")
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
