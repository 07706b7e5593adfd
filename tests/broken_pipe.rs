//! A reader that stops early (`vigil dataset pull NAME | head -1`) is a normal
//! end for vigil, as for `ls | head`: exit 0, no panic. Checked as a user runs
//! it: a real nats-server, a dataset larger than a pipe's buffer, and
//! `vigil dataset pull` to a stdout whose reader closes after one line;
//! `vigil dataset show|list` (printed lines) to a stdout already closed, and
//! an error to a stderr already closed.

use crate::common::*;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};

#[tokio::test(flavor = "multi_thread")]
async fn dataset_pull_into_a_closed_pipe_exits_0_without_a_panic() {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.jsonl");
    // ~1.7 MB: far more than a pipe holds (64 KiB), so the pull is still
    // writing when the reader goes away.
    write_arith_dataset(&file, 20_000, 0);
    assert!(std::fs::metadata(&file).unwrap().len() > 1 << 20);
    let push = run(vigil()
        .args(["dataset", "push", file.to_str().unwrap(), "--name", "big"])
        .args(["--nats", &url]));
    assert_eq!(push.status.code(), Some(0));

    let mut child = vigil()
        .args(["dataset", "pull", "big", "--nats", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `head -1`: read one line, then close the pipe.
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains(r#""id": "q0""#), "first line: {first}");
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
    assert!(!stderr.contains("error"), "stderr: {stderr}");
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");

    // Lines printed (`println!` panicked here, exit 101) to a stdout whose
    // reader is gone before vigil starts: every write fails, deterministically.
    for args in [["show", "big"], ["list", "--json"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = run(vigil()
            .arg("dataset")
            .args(args)
            .args(["--nats", &url])
            .stdout(writer));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
    // An error to a closed stderr keeps its exit code (2: wrong input), no panic (101).
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = run(vigil()
        .args(["dataset", "show", "no-such-dataset", "--nats", &url])
        .stderr(writer));
    assert_eq!(out.status.code(), Some(2));
}
