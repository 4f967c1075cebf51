//! The `FROM scratch` sim-edge images: built from the static binary, the good ones answer with their
//! own version, the bad ones fail the ways they promise. Needs the Docker engine (a failure under
//! `CI=true` without one).

use std::time::{Duration, Instant};

use ecp_testkit::docker::{self, run};

/// Removes the container on drop.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = run(docker::docker().args(["rm", "-f", &self.0]), Duration::from_secs(30));
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

fn docker_ok(args: &[&str]) -> String {
    let out = run(docker::docker().args(args), Duration::from_secs(60)).expect("run docker");
    assert!(out.success, "docker {args:?}: {} {}", out.status, out.stderr);
    out.stdout.trim().to_owned()
}

#[test]
fn sim_images_serve_their_version_and_bad_ones_fail() {
    if !docker::require_engine() {
        return;
    }
    let started = Instant::now();
    let images = docker::sim_images().expect("build the sim-edge images");
    eprintln!("images ready in {:?}", started.elapsed());
    assert_ne!(images.v1, images.v2);
    // Idempotent: a second call (and any other process) reuses the same tags.
    assert_eq!(docker::sim_images().unwrap(), images);
    for tag in [&images.v1, &images.v2, &images.bad_exit, &images.bad_port] {
        assert!(docker::image_exists(tag).unwrap(), "{tag} missing");
        let label = docker_ok(&["image", "inspect", "--format", "{{index .Config.Labels \"io.ecp.test\"}}", tag]);
        assert_eq!(&label, tag);
    }

    // The bad image exits at once with sim-edge's usage status.
    let bad = Container(unique("ecp-testkit-bad"));
    let out =
        run(docker::docker().args(["run", "--name", &bad.0, "--network", "none", &images.bad_exit]), Duration::from_secs(60)).unwrap();
    assert!(!out.success);
    assert!(out.stderr.contains("unknown argument"), "{}", out.stderr);
    let status = docker_ok(&["inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", &bad.0]);
    assert_eq!(status, "exited 2");

    // The good image runs (no network needed to see it start: it prints its URL).
    let good = Container(unique("ecp-testkit-v2"));
    docker_ok(&["run", "-d", "--name", &good.0, "--network", "none", &images.v2]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let logs = run(docker::docker().args(["logs", &good.0]), Duration::from_secs(20)).unwrap();
        if logs.stdout.contains("neuronex http://0.0.0.0:8085") || logs.stdout.contains("neuronex http://127.0.0.1:8085") {
            break;
        }
        assert!(Instant::now() < deadline, "v2 container printed no URL: {} {}", logs.stdout, logs.stderr);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(docker_ok(&["inspect", "--format", "{{.State.Running}}", &good.0]), "true");
}
