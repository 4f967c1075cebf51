//! Docker images for tests: static test binaries packed into `FROM scratch` images, built once and
//! shared by every test process.
//!
//! ```no_run
//! use ecp_testkit::docker;
//!
//! if !docker::require_engine() {
//!     return; // outside CI, without a Docker engine: a notice was printed
//! }
//! let images = docker::sim_images().expect("sim-edge images");
//! // `images.v1` serves NeuronEX on :8085 reporting `images.v1_version`, `images.v2` the same
//! // reporting `images.v2_version`; `images.bad_exit` exits at once, `images.bad_port` runs but
//! // never answers on :8085.
//! ```
//!
//! The `sim-edge` binary is built statically (`-C target-feature=+crt-static`, target
//! `x86_64-unknown-linux-gnu`, no default features) with `cargo` into `ECP_STATIC_TARGET_DIR`
//! (default `<workspace>/target/static`), unless `ECP_SIM_EDGE_STATIC` names a binary already built
//! that way (the test script builds it before the tests and sets it). Images are tagged with a
//! digest of the binary and of their entrypoint, so a changed binary gets new tags and an image that
//! exists is never built again; a lock file in the static target dir serializes builds across the
//! parallel test processes of nextest.
//!
//! Everything here runs the `docker` CLI (`ECP_DOCKER`, else `docker` on `PATH`) and `cargo`
//! (`CARGO`, else `cargo` on `PATH`) with bounded waits; it is blocking (call it before starting a
//! runtime or from `spawn_blocking`).

use std::collections::hash_map::DefaultHasher;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::hash::Hasher;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The label every image built here carries (`io.ecp.test=<what>`), for cleaning up by hand:
/// `docker image prune -a --filter label=io.ecp.test`.
pub const TEST_LABEL: &str = "io.ecp.test";

/// The repository of the `sim-edge` images.
pub const SIM_EDGE_REPO: &str = "ecp-test/sim-edge";

/// The port the `sim-edge` images serve NeuronEX on (the product's own port).
pub const SIM_EDGE_PORT: u16 = 8085;

/// How long a `docker` command may take (builds included).
const DOCKER_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the static `cargo build` may take.
const CARGO_TIMEOUT: Duration = Duration::from_secs(1800);
/// The target triple of static builds.
const STATIC_TRIPLE: &str = "x86_64-unknown-linux-gnu";

/// Why an image could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// The Docker engine does not answer (`docker info` failed).
    #[error("the Docker engine does not answer: {reason}")]
    Engine {
        /// What `docker info` said, or why it could not run.
        reason: String,
    },
    /// A command failed or timed out.
    #[error("`{command}` failed: {reason}")]
    Command {
        /// The command, for people.
        command: String,
        /// Its exit status and output, or why it could not run.
        reason: String,
    },
    /// A file or directory could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}

/// The `docker` CLI: `ECP_DOCKER`, else `docker`.
pub fn docker_cli() -> OsString {
    std::env::var_os("ECP_DOCKER").filter(|v| !v.is_empty()).unwrap_or_else(|| "docker".into())
}

/// A `docker` command.
pub fn docker() -> Command {
    Command::new(docker_cli())
}

/// The workspace root (the parent of this crate's directory).
pub fn workspace_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The target dir of static builds: `ECP_STATIC_TARGET_DIR`, else `<workspace>/target/static`.
pub fn static_target_dir() -> PathBuf {
    match std::env::var_os("ECP_STATIC_TARGET_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => workspace_dir().join("target").join("static"),
    }
}

/// The output of a finished command.
#[derive(Debug)]
pub struct Output {
    /// Whether it exited with status 0.
    pub success: bool,
    /// Its exit status, for messages.
    pub status: String,
    /// What it printed on stdout.
    pub stdout: String,
    /// What it printed on stderr.
    pub stderr: String,
}

/// Runs `cmd` (stdin closed, output captured) and waits at most `timeout`; a command still running
/// then is killed.
///
/// # Errors
/// [`HarnessError::Command`] when it cannot start or times out (not when it exits non-zero: see
/// [`Output::success`]).
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<Output, HarnessError> {
    let shown =
        format!("{} {}", cmd.get_program().to_string_lossy(), cmd.get_args().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "));
    let fail = |reason: String| HarnessError::Command { command: shown.clone(), reason };
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot start it: {e}")))?;
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                text = String::from_utf8_lossy(&bytes).into_owned();
            }
            text
        })
    };
    let out = reader(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err = reader(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!("timed out after {timeout:?}")));
            }
            Err(e) => return Err(fail(format!("cannot wait for it: {e}"))),
        }
    };
    Ok(Output {
        success: status.success(),
        status: status.to_string(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// Runs `cmd` and fails unless it exits with status 0; returns its stdout.
fn run_ok(cmd: &mut Command, timeout: Duration) -> Result<String, HarnessError> {
    let shown =
        format!("{} {}", cmd.get_program().to_string_lossy(), cmd.get_args().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "));
    let out = run(cmd, timeout)?;
    if out.success {
        Ok(out.stdout)
    } else {
        let tail = |s: &str| s.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
        Err(HarnessError::Command { command: shown, reason: format!("{}\n{}\n{}", out.status, tail(&out.stdout), tail(&out.stderr)) })
    }
}

/// Checks that the Docker engine answers (`docker info`).
///
/// # Errors
/// [`HarnessError::Engine`] with what `docker info` said.
pub fn engine_available() -> Result<(), HarnessError> {
    let out = run(docker().args(["info", "--format", "{{.ServerVersion}}"]), Duration::from_secs(30))
        .map_err(|e| HarnessError::Engine { reason: e.to_string() })?;
    if out.success && !out.stdout.trim().is_empty() {
        Ok(())
    } else {
        Err(HarnessError::Engine { reason: format!("`docker info` exited with {}: {}", out.status, out.stderr.trim()) })
    }
}

/// Whether the Docker engine answers; when it does not, reports it through [`missing`](crate::missing)
/// (a failure under `CI=true`, a notice elsewhere) and returns `false` so the test returns early.
///
/// # Panics
/// Under `CI=true` when the engine does not answer.
pub fn require_engine() -> bool {
    match engine_available() {
        Ok(()) => true,
        Err(e) => {
            crate::missing("Docker engine", &format!("{e} (scripts/test installs docker.io and starts dockerd)"));
            false
        }
    }
}

/// Holds an exclusive lock on a file (released on drop): serializes work across test processes.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Waits for the exclusive lock on `path` (created if missing, with its parent dirs).
    ///
    /// # Errors
    /// [`HarnessError::Io`].
    pub fn acquire(path: &Path) -> Result<Self, HarnessError> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io_err(format!("open lock file {}", path.display())))?;
        file.lock().map_err(io_err(format!("lock {}", path.display())))?;
        Ok(FileLock { _file: file })
    }
}

fn images_lock() -> Result<FileLock, HarnessError> {
    FileLock::acquire(&static_target_dir().join("docker-images.lock"))
}

/// A statically linked build of the `sim-edge` binary: `ECP_SIM_EDGE_STATIC` when set, else built
/// with `cargo` into [`static_target_dir`] (once per process; cargo serializes processes on its own
/// lock and does nothing when the binary is fresh).
///
/// # Errors
/// [`HarnessError::Command`] when the build fails, [`HarnessError::Io`] when the named binary is
/// missing.
pub fn static_sim_edge() -> Result<PathBuf, HarnessError> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build_static_sim_edge().map_err(|e| e.to_string()))
        .clone()
        .map_err(|reason| HarnessError::Command { command: "static build of sim-edge".into(), reason })
}

fn build_static_sim_edge() -> Result<PathBuf, HarnessError> {
    if let Some(bin) = std::env::var_os("ECP_SIM_EDGE_STATIC").filter(|v| !v.is_empty()) {
        let bin = PathBuf::from(bin);
        fs::metadata(&bin).map_err(io_err(format!("ECP_SIM_EDGE_STATIC={}", bin.display())))?;
        return Ok(bin);
    }
    let dir = static_target_dir();
    let cargo = std::env::var_os("CARGO").filter(|v| !v.is_empty()).unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_dir())
        .args(["build", "--target", STATIC_TRIPLE, "-p", "ecp-testkit", "--no-default-features", "--bin", "sim-edge"])
        .env("CARGO_TARGET_DIR", &dir)
        .env("RUSTFLAGS", static_rustflags())
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS");
    run_ok(&mut cmd, CARGO_TIMEOUT)?;
    let bin = dir.join(STATIC_TRIPLE).join("debug").join("sim-edge");
    fs::metadata(&bin).map_err(io_err(format!("the static build's output {}", bin.display())))?;
    Ok(bin)
}

/// The `RUSTFLAGS` of static builds (scripts/test uses the same, so its build is reused).
pub fn static_rustflags() -> &'static str {
    "-C target-feature=+crt-static -C debuginfo=0"
}

/// A digest of a file's bytes and some text, as 16 hex digits (for image tags: a changed binary
/// or entrypoint gets a new tag).
///
/// # Errors
/// [`HarnessError::Io`].
pub fn digest(file: &Path, extra: &str) -> Result<String, HarnessError> {
    let mut f = File::open(file).map_err(io_err(format!("read {}", file.display())))?;
    let mut hasher = DefaultHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err(format!("read {}", file.display())))?;
        if n == 0 {
            break;
        }
        hasher.write(&buf[..n]);
    }
    hasher.write(extra.as_bytes());
    Ok(format!("{:016x}", hasher.finish()))
}

/// Whether the engine has an image tagged `tag`.
///
/// # Errors
/// [`HarnessError::Command`] when `docker` cannot run.
pub fn image_exists(tag: &str) -> Result<bool, HarnessError> {
    Ok(run(docker().args(["image", "inspect", "--format", "{{.Id}}", tag]), DOCKER_TIMEOUT)?.success)
}

/// What goes into a `FROM scratch` image: one static binary and how to run it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ImageSpec {
    /// The tag (`repo:tag`).
    pub tag: String,
    /// The static binary, copied to `/<its file name>` in the image.
    pub binary: PathBuf,
    /// The whole `ENTRYPOINT`: the binary's path in the image (`/sim-edge`) and its arguments.
    pub entrypoint: Vec<String>,
    /// Ports to `EXPOSE`.
    pub expose: Vec<u16>,
    /// Labels besides `io.ecp.test`.
    pub labels: Vec<(String, String)>,
}

impl ImageSpec {
    /// An image `tag` running `binary` (as `/<file name>`) with `args`.
    pub fn new(tag: impl Into<String>, binary: impl Into<PathBuf>, args: &[&str]) -> Self {
        let binary = binary.into();
        let name = binary.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "app".into());
        let mut entrypoint = vec![format!("/{name}")];
        entrypoint.extend(args.iter().map(|a| (*a).to_owned()));
        ImageSpec { tag: tag.into(), binary, entrypoint, expose: Vec::new(), labels: Vec::new() }
    }

    /// Exposes `port`.
    #[must_use]
    pub fn expose(mut self, port: u16) -> Self {
        self.expose.push(port);
        self
    }

    /// Adds a label.
    #[must_use]
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((key.into(), value.into()));
        self
    }

    /// The Dockerfile (pure): `FROM scratch`, the binary, labels, ports and the entrypoint.
    pub fn dockerfile(&self) -> String {
        let name = self.binary.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "app".into());
        let quote = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
        let mut text = format!("FROM scratch\nCOPY {name} /{name}\nLABEL {TEST_LABEL}={}\n", quote(&self.tag));
        for (k, v) in &self.labels {
            text.push_str(&format!("LABEL {}={}\n", quote(k), quote(v)));
        }
        for p in &self.expose {
            text.push_str(&format!("EXPOSE {p}\n"));
        }
        text.push_str(&format!("ENTRYPOINT {}\n", serde_json::Value::from(self.entrypoint.clone())));
        text
    }
}

/// Builds the image (always; see [`ensure_image`] to build only when missing).
///
/// # Errors
/// [`HarnessError::Io`] for the build context, [`HarnessError::Command`] when `docker build` fails.
pub fn build_image(spec: &ImageSpec) -> Result<(), HarnessError> {
    let context = tempfile::tempdir().map_err(io_err("create a build context dir"))?;
    let name = spec.binary.file_name().ok_or_else(|| HarnessError::Io {
        what: format!("{} has no file name", spec.binary.display()),
        source: io::ErrorKind::InvalidInput.into(),
    })?;
    let target = context.path().join(name);
    // A hard link when on the same file system, else a copy.
    if fs::hard_link(&spec.binary, &target).is_err() {
        fs::copy(&spec.binary, &target).map_err(io_err(format!("copy {} into the build context", spec.binary.display())))?;
    }
    fs::write(context.path().join("Dockerfile"), spec.dockerfile()).map_err(io_err("write the Dockerfile"))?;
    run_ok(docker().args(["build", "--quiet", "-t", &spec.tag]).arg(context.path()), DOCKER_TIMEOUT)?;
    Ok(())
}

/// Builds the image unless the engine already has its tag; builds are serialized across processes
/// by a lock file, so parallel test processes build it once.
///
/// # Errors
/// As [`build_image`].
pub fn ensure_image(spec: &ImageSpec) -> Result<(), HarnessError> {
    let _lock = images_lock()?;
    if image_exists(&spec.tag)? {
        return Ok(());
    }
    build_image(spec)
}

/// The `sim-edge` image tagged `<SIM_EDGE_REPO>:<name>-<digest>`, running `/sim-edge args...`
/// (built if missing). For stand-ins of other products built from `sim-edge`.
///
/// # Errors
/// As [`static_sim_edge`] and [`ensure_image`].
pub fn sim_edge_image(name: &str, args: &[&str]) -> Result<String, HarnessError> {
    let bin = static_sim_edge()?;
    let digest = digest(&bin, &args.join("\u{0}"))?;
    let tag = format!("{SIM_EDGE_REPO}:{name}-{digest}");
    ensure_image(&ImageSpec::new(&tag, &bin, args).expose(SIM_EDGE_PORT))?;
    Ok(tag)
}

/// The `sim-edge` images of hosting tests.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SimImages {
    /// NeuronEX on `:8085` (user `admin`, password `0000`) reporting [`SimImages::v1_version`].
    pub v1: String,
    /// The version `v1` reports.
    pub v1_version: String,
    /// The same service reporting [`SimImages::v2_version`].
    pub v2: String,
    /// The version `v2` reports.
    pub v2_version: String,
    /// An image whose container exits at once with status 2 (an unknown argument).
    pub bad_exit: String,
    /// An image whose container runs but never answers on `:8085` (it listens on `:9999`).
    pub bad_port: String,
    /// The port the good images serve on.
    pub port: u16,
}

/// Builds (once per process, and only when missing from the engine) the [`SimImages`].
///
/// # Errors
/// As [`sim_edge_image`].
pub fn sim_images() -> Result<SimImages, HarnessError> {
    static IMAGES: OnceLock<Result<SimImages, String>> = OnceLock::new();
    IMAGES
        .get_or_init(|| build_sim_images().map_err(|e| e.to_string()))
        .clone()
        .map_err(|reason| HarnessError::Command { command: "build the sim-edge images".into(), reason })
}

fn build_sim_images() -> Result<SimImages, HarnessError> {
    let listen = format!("0.0.0.0:{SIM_EDGE_PORT}");
    let (v1_version, v2_version) = ("3.6.0-v1".to_owned(), "3.7.0-v2".to_owned());
    Ok(SimImages {
        v1: sim_edge_image("v1", &["--kind", "neuronex", "--listen", &listen, "--version", &v1_version])?,
        v2: sim_edge_image("v2", &["--kind", "neuronex", "--listen", &listen, "--version", &v2_version])?,
        bad_exit: sim_edge_image("bad-exit", &["--kind", "neuronex", "--listen", &listen, "--no-such-option"])?,
        bad_port: sim_edge_image("bad-port", &["--kind", "neuronex", "--listen", "0.0.0.0:9999"])?,
        v1_version,
        v2_version,
        port: SIM_EDGE_PORT,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerfile_quotes_everything() {
        let spec = ImageSpec::new("t:1", "/x/sim-edge", &["--kind", "a \"b\""]).expose(8085).label("k", "v w");
        let d = spec.dockerfile();
        assert!(d.starts_with("FROM scratch\nCOPY sim-edge /sim-edge\n"), "{d}");
        assert!(d.contains("LABEL \"k\"=\"v w\"\n"), "{d}");
        assert!(d.contains("EXPOSE 8085\n"), "{d}");
        assert!(d.ends_with("ENTRYPOINT [\"/sim-edge\",\"--kind\",\"a \\\"b\\\"\"]\n"), "{d}");
    }

    #[test]
    fn run_times_out_and_reports_status() {
        let out = run(Command::new("sh").args(["-c", "echo hi; echo err >&2; exit 3"]), Duration::from_secs(10)).unwrap();
        assert!(!out.success);
        assert_eq!(out.stdout.trim(), "hi");
        assert_eq!(out.stderr.trim(), "err");
        let e = run(Command::new("sleep").arg("5"), Duration::from_millis(100)).unwrap_err();
        assert!(e.to_string().contains("timed out"), "{e}");
    }
}
