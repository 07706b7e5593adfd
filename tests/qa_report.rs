//! `vigil report`: the HTML page, JUnit XML and Markdown of a stored run; the
//! page is rendered in headless Chromium and its charts must be drawn.

use crate::common;

use common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};
use vigil_testkit::stub::{StubConfig, StubServer};

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH")?
                .to_str()?
                .split(':')
                .map(|dir| Path::new(dir).join(name))
                .find(|p| p.is_file())
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_files_and_charts_drawn_in_a_real_browser() {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let url = nats.url();
    let stub = StubServer::start(StubConfig {
        latency: Duration::from_millis(2),
        latency_jitter: Duration::from_millis(6),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_arith_dataset(&dir.path().join("dataset.jsonl"), 120, 10);
    let suite = write_suite(
        dir.path(),
        &stub.base_url(),
        "gates:\n  - metric: exact.pass_rate\n    min: 0.95\n",
    );
    let mut last = String::new();
    for i in 0..2 {
        let out = dir.path().join(format!("s{i}.json"));
        let o = run(vigil()
            .args([
                "run",
                suite.to_str().unwrap(),
                "--nats",
                &url,
                "--no-progress",
                "--no-cache",
                "--out",
            ])
            .arg(&out));
        assert_eq!(o.status.code(), Some(1), "the 0.95 gate fails at 0.9");
        last = read_summary(&out)["run_id"].as_str().unwrap().to_string();
    }
    let report_dir = dir.path().join("report");
    let o = run(vigil()
        .args(["report", &last, "--nats", &url, "--out"])
        .arg(&report_dir));
    assert_eq!(o.status.code(), Some(0));

    let junit = std::fs::read_to_string(report_dir.join("junit.xml")).unwrap();
    assert!(junit.starts_with("<?xml"));
    assert!(
        junit.contains(r#"failures="1""#) && junit.contains("<failure"),
        "{junit}"
    );
    let md = std::fs::read_to_string(report_dir.join("summary.md")).unwrap();
    assert!(md.contains("| exact | 0.9000 |"), "{md}");
    assert!(md.contains("**FAILED**"));
    let html = std::fs::read_to_string(report_dir.join("report.html")).unwrap();
    assert!(
        !html.contains("http://") || !html.contains("src=\"http"),
        "self-contained: nothing fetched"
    );
    assert_eq!(
        html.matches("class=\"point\"").count(),
        2,
        "one trend point per run"
    );
    assert!(html.contains("data-chart=\"histogram\""));
    assert!(
        html.contains("<tr class=\"slice\"><td class=\"l\">category</td><td class=\"l\">even</td>")
    );

    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium missing in CI: scripts/setup-extra.d/chromium.sh installs it"
        );
        eprintln!(
            "SKIPPED the browser check: no chromium on PATH (scripts/setup-extra.d/chromium.sh installs it)"
        );
        return;
    };
    let profile = tempfile::tempdir().unwrap();
    let page = format!("file://{}", report_dir.join("report.html").display());
    let child = tokio::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(&page)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let dom = tokio::time::timeout(Duration::from_secs(90), child)
        .await
        .expect("chromium finishes")
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains(r#"data-charts-drawn="2""#),
        "both charts drawn: {}",
        &dom[..dom.len().min(400)]
    );
    let marks = |id: &str| -> u64 {
        let at = dom
            .find(&format!(r#"id="{id}""#))
            .expect("chart in the DOM");
        let tag_end = at + dom[at..].find('>').unwrap();
        let tag = &dom[dom[..at].rfind('<').unwrap()..tag_end];
        let v = tag
            .split(r#"data-drawn-marks=""#)
            .nth(1)
            .expect("the script measured the chart");
        v[..v.find('"').unwrap()].parse().unwrap()
    };
    assert_eq!(marks("trend"), 3, "a line and two points");
    assert!(marks("latency") >= 1, "at least one latency bar has height");
}
