//! A real nats-server: starts, serves JetStream, restarts on the same store,
//! and dies with its handle.

use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use vigil_nats::server::{
    NatsServer, NatsServerConfig, NatsServerError, find_nats_server, server_version,
};

fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; look at its state too.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next())
            .is_none_or(|s| s != "Z"),
        Err(_) => false,
    }
}

#[test]
fn finds_a_recent_binary() {
    let bin = find_nats_server().expect("nats-server installed (scripts/setup.sh)");
    let v = server_version(&bin).unwrap();
    assert!(vigil_nats::topology::check_version(&v).is_ok(), "{v}");
}

#[tokio::test]
async fn starts_and_accepts_a_client() {
    let server = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    assert!(server.url().starts_with("nats://127.0.0.1:"));
    assert_ne!(server.port(), 0);
    assert!(server.store_dir().is_dir());
    let client = async_nats::connect(server.url()).await.unwrap();
    vigil_nats::topology::check_server(&client).unwrap();
    let mut sub = client.subscribe("t.>").await.unwrap();
    client.publish("t.x", "hello".into()).await.unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&msg.payload[..], b"hello");
}

#[tokio::test]
async fn two_servers_get_distinct_ports_and_monitoring() {
    let cfg = NatsServerConfig {
        monitor_port: Some(0),
        ..Default::default()
    };
    let a = NatsServer::start(cfg.clone()).await.unwrap();
    let b = NatsServer::start(cfg).await.unwrap();
    assert_ne!(a.port(), b.port());
    assert_ne!(a.store_dir(), b.store_dir());
    let mon = a.monitor_url().unwrap();
    let port: u16 = mon.rsplit(':').next().unwrap().parse().unwrap();
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok(),
        "{mon}"
    );
}

#[tokio::test]
async fn restart_keeps_port_and_stream_messages() {
    let mut server = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let port = server.port();
    let pid = server.pid().unwrap();
    {
        let client = async_nats::connect(server.url()).await.unwrap();
        let js = jetstream::new(client);
        js.create_stream(jetstream::stream::Config {
            name: "KEEP".into(),
            subjects: vec!["keep.>".into()],
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .unwrap();
        for i in 0..10 {
            js.publish("keep.x", format!("m{i}").into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    }
    server.restart().await.unwrap();
    assert_eq!(server.port(), port);
    assert_ne!(server.pid().unwrap(), pid);
    assert!(!alive(pid), "the old process is gone");
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client);
    let mut stream = js.get_stream("KEEP").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 10);
    let last = stream
        .get_last_raw_message_by_subject("keep.x")
        .await
        .unwrap();
    assert_eq!(&last.payload[..], b"m9");
}

#[tokio::test]
async fn kill_then_start_again_recovers_the_store() {
    let mut server = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client);
    js.create_stream(jetstream::stream::Config {
        name: "K".into(),
        subjects: vec!["k".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    js.publish("k", "one".into()).await.unwrap().await.unwrap();
    let pid = server.pid().unwrap();
    server.kill_and_wait().await;
    assert!(!alive(pid));
    assert!(server.pid().is_none());
    server.start_again().await.unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let mut stream = jetstream::new(client).get_stream("K").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 1);
}

#[tokio::test]
async fn drop_kills_the_process_and_removes_the_temp_store() {
    let server = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let pid = server.pid().unwrap();
    let store = server.store_dir().to_path_buf();
    assert!(alive(pid));
    drop(server);
    let mut gone = false;
    for _ in 0..100 {
        if !alive(pid) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone, "nats-server {pid} still runs after drop");
    assert!(!store.exists());
}

#[tokio::test]
async fn given_store_dir_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("js");
    let server = NatsServer::start(NatsServerConfig {
        store_dir: Some(store.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(server.store_dir(), store);
    drop(server);
    assert!(store.is_dir());
}

#[tokio::test]
async fn a_bad_binary_is_a_clear_error() {
    let cfg = NatsServerConfig {
        binary: Some("/nonexistent/nats-server".into()),
        ..Default::default()
    };
    let err = NatsServer::start(cfg).await.unwrap_err();
    assert!(matches!(err, NatsServerError::Spawn { .. }), "{err}");
    assert!(
        err.to_string().contains("/nonexistent/nats-server"),
        "{err}"
    );
}

/// A stand-in server: a listener that greets every connection with `INFO`
/// naming `version`, and a script that logs the listener's port the way
/// nats-server does, then sleeps (and answers `--version` with an error).
async fn fake_server(version: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let info = format!(
        "INFO {{\"server_id\":\"FAKE\",\"version\":\"{version}\",\"proto\":1,\"max_payload\":1048576}}\r\n"
    );
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut conn, _)) = listener.accept().await {
            let _ = conn.write_all(info.as_bytes()).await;
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("nats-server");
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = --version ] && exit 1\n\
         echo '[1] [INF] Listening for client connections on 127.0.0.1:{port}' >&2\n\
         exec sleep 30\n"
    );
    std::fs::write(&fake, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, fake)
}

#[tokio::test]
async fn a_too_old_binary_is_refused_with_its_version() {
    let (_dir, fake) = fake_server("2.9.10").await;
    let err = NatsServer::start(NatsServerConfig {
        binary: Some(fake.clone()),
        ..Default::default()
    })
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, NatsServerError::TooOld { .. }), "{text}");
    assert!(
        text.contains("2.9.10") && text.contains(&fake.display().to_string()),
        "{text}"
    );
}

#[tokio::test]
async fn the_version_comes_from_the_servers_greeting_without_a_second_process() {
    // The fake fails `--version`: starting it works only if the version is
    // read from the INFO line.
    let (_dir, fake) = fake_server("2.15.1").await;
    let mut server = NatsServer::start(NatsServerConfig {
        binary: Some(fake),
        ..Default::default()
    })
    .await
    .unwrap();
    let pid = server.pid().unwrap();
    assert!(alive(pid));
    server.kill_and_wait().await;
    assert!(!alive(pid));
}

#[tokio::test]
async fn a_server_that_exits_shows_its_log() {
    let cfg = NatsServerConfig {
        extra_args: vec!["--no-such-flag".into()],
        ..Default::default()
    };
    let err = NatsServer::start(cfg).await.unwrap_err();
    assert!(matches!(err, NatsServerError::Exited { .. }), "{err}");
    assert!(err.to_string().contains("no-such-flag"), "{err}");
}

#[tokio::test]
async fn a_taken_port_is_an_error_not_a_hang() {
    let first = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let err = NatsServer::start(NatsServerConfig {
        port: Some(first.port()),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert!(matches!(err, NatsServerError::Exited { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(15));
}
