//! The `sim-edge` binary: starts the services asked for, prints their URLs, serves them, and exits
//! cleanly on SIGTERM. Every wait is bounded.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sim-edge");

/// Starts `sim-edge` and reads the `<kind> <url>` lines it prints.
fn spawn(args: &[&str], expected_lines: usize) -> (Child, Vec<(String, String)>) {
    let mut child = Command::new(BIN).args(args).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("spawn sim-edge");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    for _ in 0..expected_lines {
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|e| {
            let _ = child.kill();
            panic!("sim-edge printed no URL in time: {e}")
        });
        let (kind, url) = line.split_once(' ').expect("`<kind> <url>`");
        lines.push((kind.to_owned(), url.to_owned()));
    }
    (child, lines)
}

/// Sends SIGTERM and waits (bounded) for the exit status.
fn terminate(mut child: Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("sim-edge did not exit within 10 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().expect("client")
}

#[tokio::test]
async fn serves_several_kinds_and_stops_on_sigterm() {
    let (child, lines) = spawn(&["--kind", "neuron", "--no-auth", "--kind", "nanomq", "--count", "2", "--kind", "ekuiper"], 4);
    let kinds: Vec<&str> = lines.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["neuron", "nanomq", "nanomq", "ekuiper"]);
    assert!(lines.iter().all(|(_, url)| url.starts_with("http://127.0.0.1:")));
    assert_ne!(lines[1].1, lines[2].1, "each service has its own port");

    let c = client();
    let r = c.get(format!("{}/api/v2/version", lines[0].1)).send().await.unwrap();
    assert_eq!(r.status(), 200, "auth is off for this Neuron");
    for (_, url) in &lines[1..3] {
        let r = c.get(format!("{url}/api/v4/brokers")).basic_auth("admin", Some("public")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(c.get(format!("{}/ping", lines[3].1)).send().await.unwrap().status(), 200);

    let status = terminate(child);
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    let err = c.get(format!("{}/ping", lines[3].1)).send().await;
    assert!(err.is_err(), "the port is closed after exit");
}

#[test]
fn bad_arguments_exit_with_usage() {
    let out = Command::new(BIN).args(["--kind", "emqx"]).output().expect("run sim-edge");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: sim-edge"));
    let out = Command::new(BIN).arg("--help").output().expect("run sim-edge");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--base-port"));
}
