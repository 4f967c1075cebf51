//! `sim-edge`: runs simulated NeuronEX, Neuron, eKuiper and NanoMQ services until SIGTERM or Ctrl-C.
//!
//! ```text
//! sim-edge --kind neuronex --listen 0.0.0.0:8085 --kind nanomq --listen 0.0.0.0:8081
//! sim-edge --count 3 --kind neuron --base-port 7000
//! ```
//!
//! Each `--kind` starts a new service; the options after it apply to that service (`--count` may
//! also come just before its `--kind`). Every service's kind and base URL is printed on its own
//! line once all are listening.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use ecp_testkit::sim::{SimConfig, SimHandle, SimKind, SimService};

const USAGE: &str = "\
usage: sim-edge [SERVICE]...
  SERVICE := --kind neuronex|neuron|ekuiper|nanomq [OPTION]...
options (apply to the latest --kind):
  --listen ADDR:PORT     listen address (default 127.0.0.1:0, a free port)
  --count N              run N services of this kind (ports base-port, base-port+1, ...)
  --base-port PORT       first port for --count (default: free ports)
  --host IP              address for --count/--base-port (default 127.0.0.1)
  --user NAME            user name (defaults: admin)
  --password PASS        password (defaults: 0000 for Neuron/NeuronEX, public for NanoMQ)
  --auth | --no-auth     authentication on/off (default on; off for eKuiper)
  --token-lifetime SECS  lifetime of issued tokens
  --latency-ms MS        latency added to every request
  --body-limit BYTES     largest request body (default 1048576)
  --version VERSION      product version the service reports (default: the simulated product's)
  -h, --help             this text";

#[derive(Debug, Default)]
struct Spec {
    kind: Option<SimKind>,
    listen: Option<SocketAddr>,
    count: Option<u16>,
    base_port: Option<u16>,
    host: Option<IpAddr>,
    user: Option<String>,
    password: Option<String>,
    auth: Option<bool>,
    token_lifetime: Option<Duration>,
    latency: Option<Duration>,
    body_limit: Option<usize>,
    version: Option<String>,
}

impl Spec {
    fn configs(&self) -> Result<Vec<SimConfig>, String> {
        let kind = self.kind.ok_or("options given without --kind")?;
        let count = self.count.unwrap_or(1);
        if count == 0 {
            return Err("--count must be at least 1".into());
        }
        if count > 1 && self.listen.is_some_and(|l| l.port() != 0) {
            return Err("--count with a fixed --listen port: use --base-port".into());
        }
        let host = self.host.or(self.listen.map(|l| l.ip())).unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        (0..count)
            .map(|i| {
                let addr = match (self.base_port, self.listen) {
                    (Some(base), _) => {
                        let port = base.checked_add(i).ok_or("--base-port plus --count passes 65535")?;
                        SocketAddr::new(host, port)
                    }
                    (None, Some(listen)) => SocketAddr::new(host, listen.port()),
                    (None, None) => SocketAddr::new(host, 0),
                };
                let mut b = SimConfig::builder(kind).listen(addr);
                if self.user.is_some() || self.password.is_some() {
                    let (du, dp) = kind.default_credentials().unwrap_or(("", ""));
                    b = b.credentials(self.user.clone().unwrap_or_else(|| du.into()), self.password.clone().unwrap_or_else(|| dp.into()));
                }
                if let Some(a) = self.auth {
                    b = b.auth(a);
                }
                if let Some(t) = self.token_lifetime {
                    b = b.token_lifetime(t);
                }
                if let Some(l) = self.latency {
                    b = b.latency(l);
                }
                if let Some(l) = self.body_limit {
                    b = b.body_limit(l);
                }
                if let Some(v) = &self.version {
                    b = b.version(v.clone());
                }
                b.build().map_err(|e| e.to_string())
            })
            .collect()
    }
}

enum Parsed {
    Help,
    Run(Vec<SimConfig>),
}

fn parse(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let mut specs: Vec<Spec> = Vec::new();
    let mut current = Spec::default();
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(Parsed::Help);
        }
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (flag.clone(), None),
        };
        match name.as_str() {
            "--auth" => {
                current.auth = Some(true);
                continue;
            }
            "--no-auth" => {
                current.auth = Some(false);
                continue;
            }
            _ => {}
        }
        let mut value = || inline.clone().or_else(|| args.next()).ok_or_else(|| format!("{name} needs a value"));
        let bad = |what: &str, v: &str| format!("{name}: {v:?} is not {what}");
        match name.as_str() {
            "--kind" => {
                let v = value()?;
                let kind: SimKind = v.parse().map_err(|e: ecp_testkit::sim::SimError| e.to_string())?;
                if current.kind.is_some() {
                    specs.push(std::mem::take(&mut current));
                }
                current.kind = Some(kind);
            }
            "--listen" => {
                let v = value()?;
                current.listen = Some(v.parse().map_err(|_| bad("an IP:PORT address", &v))?);
            }
            "--count" => {
                let v = value()?;
                current.count = Some(v.parse().map_err(|_| bad("a count", &v))?);
            }
            "--base-port" => {
                let v = value()?;
                current.base_port = Some(v.parse().map_err(|_| bad("a port", &v))?);
            }
            "--host" => {
                let v = value()?;
                current.host = Some(v.parse().map_err(|_| bad("an IP address", &v))?);
            }
            "--version" => current.version = Some(value()?),
            "--user" => current.user = Some(value()?),
            "--password" => current.password = Some(value()?),
            "--token-lifetime" => {
                let v = value()?;
                current.token_lifetime = Some(Duration::from_secs(v.parse().map_err(|_| bad("a number of seconds", &v))?));
            }
            "--latency-ms" => {
                let v = value()?;
                current.latency = Some(Duration::from_millis(v.parse().map_err(|_| bad("a number of milliseconds", &v))?));
            }
            "--body-limit" => {
                let v = value()?;
                current.body_limit = Some(v.parse().map_err(|_| bad("a number of bytes", &v))?);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if current.kind.is_some() || specs.is_empty() {
        specs.push(current);
    }
    if specs.iter().all(|s| s.kind.is_none()) {
        return Err("nothing to run: give at least one --kind".into());
    }
    let mut configs = Vec::new();
    for spec in &specs {
        configs.extend(spec.configs()?);
    }
    Ok(Parsed::Run(configs))
}

/// Waits for SIGTERM (what `docker stop` sends) or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let configs = match parse(std::env::args().skip(1)) {
        Ok(Parsed::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Run(configs)) => configs,
        Err(e) => {
            eprintln!("sim-edge: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut handles: Vec<SimHandle> = Vec::new();
    for config in configs {
        let kind = config.kind;
        match SimService::start(config).await {
            Ok(h) => handles.push(h),
            Err(e) => {
                eprintln!("sim-edge: {kind}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    for h in &handles {
        println!("{} {}", h.kind(), h.base_url());
    }
    shutdown_signal().await;
    for h in handles {
        h.shutdown().await;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Vec<SimConfig>, String> {
        match parse(args.iter().map(|s| (*s).to_owned()))? {
            Parsed::Run(c) => Ok(c),
            Parsed::Help => Err("help".into()),
        }
    }

    #[test]
    fn parses_services() {
        let c = run(&["--kind", "neuronex", "--listen", "127.0.0.1:8085", "--kind=nanomq", "--no-auth"]).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].kind, SimKind::NeuronEx);
        assert_eq!(c[0].listen.port(), 8085);
        assert!(c[0].auth);
        assert_eq!(c[1].kind, SimKind::NanoMq);
        assert!(!c[1].auth);

        let c = run(&["--count", "3", "--kind", "neuron", "--base-port", "7000"]).unwrap();
        assert_eq!(c.iter().map(|c| c.listen.port()).collect::<Vec<_>>(), vec![7000, 7001, 7002]);

        let c = run(&["--kind", "ekuiper", "--auth", "--latency-ms", "5", "--token-lifetime", "2"]).unwrap();
        assert!(c[0].auth);
        assert_eq!(c[0].version, None);
        assert_eq!(c[0].latency, Duration::from_millis(5));
        assert_eq!(c[0].token_lifetime, Duration::from_secs(2));

        let c = run(&["--kind", "neuron", "--version", "2.99.1", "--kind", "nanomq"]).unwrap();
        assert_eq!(c[0].version.as_deref(), Some("2.99.1"));
        assert_eq!(c[1].version, None);
        assert!(run(&["--kind", "neuron", "--version", ""]).is_err());

        assert!(run(&[]).is_err());
        assert!(run(&["--kind", "emqx"]).is_err());
        assert!(run(&["--kind", "neuron", "--listen"]).is_err());
        assert!(run(&["--kind", "neuron", "--bogus"]).is_err());
        assert!(run(&["--kind", "neuron", "--count", "2", "--listen", "127.0.0.1:7000"]).is_err());
        assert!(run(&["--kind", "neuron", "--password", "1"]).is_err());
        assert!(matches!(parse(["--help".to_owned()]), Ok(Parsed::Help)));
    }
}
