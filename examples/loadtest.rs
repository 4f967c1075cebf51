//! The control-plane side of the MQTT load harness (`scripts/bench-mqtt`): a fleet rollout to N
//! edge agents through the task engine, against a raw request/response baseline in the same run.
//!
//! ```text
//! cargo run --release -p ecp-examples --example loadtest -- --port 1883 --agents 1000 --ready-file /tmp/ready
//! ```
//!
//! 1. Opens a file-backed SQLite store, connects an [`AgentHub`], writes `--ready-file`, and
//!    waits for `--agents` agents (started by the script, in other processes) to say hello:
//!    `connect_s` is the time from the ready file to the last hello.
//! 2. Manages every agent into a project and registers the NanoMQ service each fronts
//!    (`setup_s`).
//! 3. Runs `--runs` rounds of each mode back to back (alternating which goes first):
//!    - `sdk`: `ProjectFleet::deliver` of a NanoMQ configuration template to every service, as a
//!      task of the task engine (per-target state persisted in the store) under a rollout policy
//!      of `--window` targets in flight; each target goes through the agent's desired state
//!      (stored, published retained, applied by the agent, reported back and recorded);
//!    - `raw`: one bare rumqttc MQTT 5 client publishes the same change to each agent as an
//!      agent-protocol `apply` command (the same codec, key length and change, so the agent does
//!      the same work and the payload is the same size) with a response topic and correlation
//!      data, `--window` requests in flight, and collects the replies. Nothing is stored.
//!
//! Each round prints a JSON line (`"kind":"round"`): round time, targets/s, per-target p50/p99,
//! the process's CPU time (user + system, `/proc/self/stat`) over the round, and its peak RSS
//! during the round (`VmHWM`, reset before each round through `/proc/self/clear_refs`). The last
//! line (`"kind":"summary"`) holds the medians and the ratio of SDK to raw throughput.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser;
use ecp_agent_proto::proto::{self, Command, DEFAULT_MAX_PAYLOAD, DesiredItem, Envelope, Message, Reply};
use ecp_agent_proto::topics::{Channel, Topics};
use ecp_core::edge::{AgentFilter, AgentId, EdgeKind, EdgeLimits, EdgeSelector, ManagementMode};
use ecp_core::task::{RolloutPolicy, TargetState, TaskEngine};
use ecp_core::{PageRequest, Principal, SqlStore, SqlStoreConfig, Store, SystemClock};
use ecp_edge::agent::{AgentDriver, AgentHub, AgentHubConfig, MqttConfig, desired_key};
use ecp_edge::driver::Drivers;
use ecp_edge::fleet::{Fleet, NewEdgeService, ProjectFleet};
use ecp_edge::template::{ChangeKind, ConfigChange, ConfigTemplate, ParamGrid};
use ecp_rbac::{AccessConfig, AccessControl, Argon2Params};
use futures::StreamExt as _;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};

#[derive(Debug, Parser)]
#[command(about = "A fleet rollout over MQTT against a raw request/response baseline")]
struct Args {
    /// The broker's host.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The broker's port.
    #[arg(long)]
    port: u16,
    /// How many agents to wait for and deliver to.
    #[arg(long)]
    agents: usize,
    /// Targets in flight (the rollout policy's `max_in_flight`, and the raw client's window).
    #[arg(long, default_value_t = 256)]
    window: u32,
    /// Rounds of each mode.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The SQLite file (replaced).
    #[arg(long, default_value = "/tmp/ecp-loadtest.db")]
    db: std::path::PathBuf,
    /// The store's connection pool size (the SQLite default is 8).
    #[arg(long)]
    db_connections: Option<u32>,
    /// Written once the hub is connected: start the agents then.
    #[arg(long)]
    ready_file: Option<std::path::PathBuf>,
    /// The longest wait for the agents' hellos.
    #[arg(long, default_value_t = 180)]
    connect_timeout_secs: u64,
    /// The longest round; targets without an answer by then count as timed out.
    #[arg(long, default_value_t = 120)]
    round_timeout_secs: u64,
    /// Only this mode (`sdk` or `raw`); both by default.
    #[arg(long)]
    only: Option<String>,
    /// Waits this long before each SDK round (to attach a profiler: the PID is printed).
    #[arg(long, default_value_t = 0)]
    pause_before_sdk_secs: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
struct Round {
    kind: &'static str,
    mode: &'static str,
    n: usize,
    run: usize,
    window: u32,
    ok: usize,
    failed: usize,
    round_s: f64,
    targets_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    cpu_s: f64,
    cpu_us_per_target: f64,
    peak_rss_mb: f64,
    payload_bytes: usize,
}

/// User + system CPU seconds of this process.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return f64::NAN };
    // Fields after the command (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the state.
    let ticks: f64 = [11, 12].iter().filter_map(|i| fields.get(*i)?.parse::<f64>().ok()).sum();
    ticks / 100.0 // USER_HZ is 100 on Linux.
}

fn status_kb(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// Resets the peak RSS (`VmHWM`) to the current RSS.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(&v, 0.5)
}

/// The change of round `run`: one call to NanoMQ's reload API (`msq_len`), different in every
/// round so that every round is a new desired version.
fn change_of(run: usize) -> ConfigChange {
    serde_json::from_value(template_body(run).as_object().cloned().map_or(json!({}), |mut m| {
        m.insert("kind".into(), json!("raw_api_call"));
        serde_json::Value::Object(m)
    }))
    .unwrap_or_else(|e| unreachable!("{e}"))
}

fn template_body(run: usize) -> serde_json::Value {
    json!({ "method": "POST", "path": "/api/v4/reload", "body": { "data": { "msq_len": 100_000 + run } } })
}

struct Target {
    agent: AgentId,
    /// `host:port` of the agent's NanoMQ.
    target: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "error".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    anyhow::ensure!(args.agents > 0 && args.runs > 0 && args.runs <= 20, "--agents must be positive and --runs 1 to 20");
    let run_sdk = args.only.as_deref() != Some("raw");
    let run_raw = args.only.as_deref() != Some("sdk");
    eprintln!("loadtest: pid {}", std::process::id());

    // The control plane: a file-backed SQLite store, a hub, a task engine and a fleet.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", args.db.display()));
    }
    let mut store_config = SqlStoreConfig::sqlite_file(&args.db);
    if let Some(n) = args.db_connections {
        store_config = store_config.max_connections(n);
    }
    let store = Arc::new(SqlStore::connect(store_config.build()?).await.context("opening the store")?);
    let ac = AccessControl::new(store.clone(), AccessConfig::builder().argon2(Argon2Params::new(1024, 1, 1)?).build()?).await?;
    let root = ac.users.bootstrap_admin("root@example.com", "Root", &secrecy::SecretString::from("R00t-passw0rd!".to_owned())).await?;
    let root = Principal::user(root.id, root.email);
    let org = ac.tenancy.create_org(&root, "load").await?;
    let project = ac.tenancy.create_project(&root, org.id, "rollout").await?;
    let clock = Arc::new(SystemClock);
    let mqtt = MqttConfig::builder(args.host.clone(), args.port).insecure(true).build()?;
    let hub_inflight = mqtt.inflight();
    let hub_config = AgentHubConfig::builder(mqtt).request_timeout(Duration::from_secs(60)).build()?;
    let hub = AgentHub::connect(hub_config, store.clone(), clock.clone()).await.context("connecting the hub")?;
    let engine = TaskEngine::builder(store.clone()).clock(clock.clone()).build()?;
    let driver = Arc::new(AgentDriver::new(hub.clone(), Duration::from_secs(args.round_timeout_secs), DEFAULT_MAX_PAYLOAD));
    let drivers = Drivers::new().with(ManagementMode::Agent, driver);
    let fleet = Fleet::builder(store.clone(), ac.authorizer.clone(), engine, drivers).clock(clock).limits(EdgeLimits::default()).build()?;
    let f = fleet.project(&root, project.id()).await?;

    // 1. The agents connect.
    if let Some(path) = &args.ready_file {
        std::fs::write(path, std::process::id().to_string())?;
    }
    let t0 = Instant::now();
    let limit = Duration::from_secs(args.connect_timeout_secs);
    loop {
        let online = hub.online_agents().len();
        if online >= args.agents {
            break;
        }
        anyhow::ensure!(t0.elapsed() < limit, "only {online} of {} agents said hello within {limit:?}", args.agents);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_s = t0.elapsed().as_secs_f64();
    eprintln!("loadtest: {} agents online after {connect_s:.2} s", args.agents);

    // 2. Manage them and register their services.
    let t1 = Instant::now();
    let targets = setup(&f, store.as_ref(), args.agents, limit).await?;
    let setup_s = t1.elapsed().as_secs_f64();
    eprintln!("loadtest: {} agents managed and their services registered in {setup_s:.2} s", targets.len());

    let template = |run: usize| ConfigTemplate::new(ChangeKind::RawApiCall, template_body(run), vec![]);
    let saved = f.save_template(None, "load", &template(0)).await?;

    // 3. Rounds.
    let raw_client = RawClient::connect(&args, hub_inflight).await?;
    let mut rounds: Vec<Round> = Vec::new();
    for run in 0..args.runs {
        let order: [&str; 2] = if run % 2 == 0 { ["raw", "sdk"] } else { ["sdk", "raw"] };
        for mode in order {
            let round = match mode {
                "raw" if run_raw => raw_client.round(&targets, run, args.window, Duration::from_secs(args.round_timeout_secs)).await?,
                "sdk" if run_sdk => {
                    if args.pause_before_sdk_secs > 0 {
                        eprintln!("loadtest: pid {}: SDK round {run} in {} s", std::process::id(), args.pause_before_sdk_secs);
                        tokio::time::sleep(Duration::from_secs(args.pause_before_sdk_secs)).await;
                    }
                    let saved = f.save_template(Some(saved.id), "load", &template(run + 1)).await?;
                    sdk_round(&f, store.as_ref(), saved.id, &targets, run, args.window, Duration::from_secs(args.round_timeout_secs))
                        .await?
                }
                _ => continue,
            };
            println!("{}", serde_json::to_string(&round)?);
            rounds.push(round);
        }
    }

    let med = |mode: &str, f: fn(&Round) -> f64| median(rounds.iter().filter(|r| r.mode == mode).map(f).collect());
    let (sdk_tps, raw_tps) = (med("sdk", |r| r.targets_per_s), med("raw", |r| r.targets_per_s));
    let summary = json!({
        "kind": "summary", "n": args.agents, "window": args.window, "runs": args.runs,
        "connect_s": connect_s, "setup_s": setup_s,
        "sdk": {
            "round_s": med("sdk", |r| r.round_s), "targets_per_s": sdk_tps, "p50_ms": med("sdk", |r| r.p50_ms),
            "p99_ms": med("sdk", |r| r.p99_ms), "cpu_s": med("sdk", |r| r.cpu_s), "cpu_us_per_target": med("sdk", |r| r.cpu_us_per_target),
            "peak_rss_mb": med("sdk", |r| r.peak_rss_mb), "failed": rounds.iter().filter(|r| r.mode == "sdk").map(|r| r.failed).sum::<usize>(),
        },
        "raw": {
            "round_s": med("raw", |r| r.round_s), "targets_per_s": raw_tps, "p50_ms": med("raw", |r| r.p50_ms),
            "p99_ms": med("raw", |r| r.p99_ms), "cpu_s": med("raw", |r| r.cpu_s), "cpu_us_per_target": med("raw", |r| r.cpu_us_per_target),
            "peak_rss_mb": med("raw", |r| r.peak_rss_mb), "failed": rounds.iter().filter(|r| r.mode == "raw").map(|r| r.failed).sum::<usize>(),
        },
        "sdk_over_raw": sdk_tps / raw_tps,
        "process_peak_rss_mb": status_kb("VmHWM:") / 1024.0,
        "hub": format!("{:?}", hub.stats()),
    });
    println!("{summary}");
    raw_client.close().await;
    hub.shutdown();
    Ok(())
}

/// Manages the first `n` agents (by id) and registers the NanoMQ service each fronts.
async fn setup(f: &ProjectFleet, store: &dyn Store, n: usize, limit: Duration) -> anyhow::Result<Vec<Target>> {
    // The hub records hellos in the order they come; wait until the store holds them all.
    let started = Instant::now();
    let agents = loop {
        let mut all = Vec::with_capacity(n);
        let mut page = PageRequest::first(1000);
        loop {
            let p = store.list_agents(&AgentFilter::default(), &page).await?;
            all.extend(p.items.into_iter().filter(|a| a.hello["services"][0]["url"].is_string()));
            match p.next {
                Some(c) => page = PageRequest::after(1000, c),
                None => break,
            }
        }
        if all.len() >= n {
            break all;
        }
        anyhow::ensure!(started.elapsed() < limit, "the store holds the hellos of {} agents only", all.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut agents = agents;
    agents.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    agents.truncate(n);
    let done = AtomicUsize::new(0);
    let targets: Vec<anyhow::Result<Target>> = futures::stream::iter(agents)
        .map(|a| {
            let done = &done;
            async move {
                let url = a.hello["services"][0]["url"].as_str().unwrap_or_default().to_owned();
                f.manage_agent(&a.id, a.id.as_str()).await?;
                let name = format!("nanomq-{}", a.id);
                f.register(NewEdgeService::through_agent(name, EdgeKind::NanoMq, a.id.clone(), url.clone())).await?;
                done.fetch_add(1, Ordering::Relaxed);
                let target = url.trim_start_matches("http://").trim_end_matches('/').to_owned();
                Ok(Target { agent: a.id, target })
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    targets.into_iter().collect()
}

/// One SDK round: a delivery task to every service of the project.
async fn sdk_round(
    f: &ProjectFleet,
    store: &dyn Store,
    template: ecp_core::TemplateId,
    targets: &[Target],
    run: usize,
    window: u32,
    limit: Duration,
) -> anyhow::Result<Round> {
    let policy = RolloutPolicy::builder()
        .max_in_flight(window)
        .target_timeout(limit)
        .retries(1, Duration::from_secs(1), Duration::from_secs(1))
        .build()?;
    reset_peak_rss();
    let cpu0 = cpu_seconds();
    let t = Instant::now();
    let handle = f.deliver(template, None, &EdgeSelector::all(), &ParamGrid::default(), policy).await?;
    eprintln!("loadtest: SDK round {run}: task submitted in {:.3} s (selection, rendering, targets stored)", t.elapsed().as_secs_f64());
    let state = tokio::time::timeout(limit + Duration::from_secs(30), handle.wait()).await;
    let round_s = t.elapsed().as_secs_f64();
    let cpu_s = cpu_seconds() - cpu0;
    let peak = status_kb("VmHWM:") / 1024.0;
    if state.is_err() {
        handle.cancel().await;
        eprintln!("loadtest: SDK round {run} did not end in time");
    }
    let mut latencies = Vec::with_capacity(targets.len());
    let (mut ok, mut failed) = (0, 0);
    let mut after = None;
    let mut first_error = None;
    loop {
        let page = f.task_targets(handle.id(), after, 5000).await?;
        let n = page.len();
        after = page.last().map(|t| t.seq);
        for t in page {
            if t.state == TargetState::Succeeded {
                ok += 1;
                if let (Some(s), Some(e)) = (t.started_at, t.finished_at) {
                    latencies.push(e.duration_since(s).as_secs_f64() * 1000.0);
                }
            } else {
                failed += 1;
                first_error = first_error.or(t.reason);
            }
        }
        if n < 5000 {
            break;
        }
    }
    if let Some(e) = first_error {
        eprintln!("loadtest: SDK round {run}: {failed} failed, first: {e}");
    }
    let _ = store;
    latencies.sort_by(f64::total_cmp);
    let payload = proto::encode(
        &Envelope::new(Message::Desired(proto::Desired {
            version: 1,
            items: vec![DesiredItem {
                key: desired_key(&targets[0].target, &change_of(run)),
                version: 1,
                target: targets[0].target.clone(),
                change: change_of(run),
            }],
        })),
        DEFAULT_MAX_PAYLOAD,
    )?
    .len();
    Ok(Round {
        kind: "round",
        mode: "sdk",
        n: targets.len(),
        run,
        window,
        ok,
        failed,
        round_s,
        targets_per_s: ok as f64 / round_s,
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: latencies.last().copied().unwrap_or(f64::NAN),
        cpu_s,
        cpu_us_per_target: cpu_s * 1e6 / targets.len() as f64,
        peak_rss_mb: peak,
        payload_bytes: payload,
    })
}

/// The raw baseline: one bare rumqttc client, request/response with MQTT 5 response topics and
/// correlation data.
struct RawClient {
    client: AsyncClient,
    id: String,
    topics: Topics,
    replies: tokio::sync::Mutex<mpsc::UnboundedReceiver<(u128, bool)>>,
    poll: tokio::task::JoinHandle<()>,
}

impl RawClient {
    async fn connect(args: &Args, inflight: u16) -> anyhow::Result<Self> {
        let id = format!("raw-{:08x}", std::process::id());
        let mut options = MqttOptions::new(format!("ecp-{id}"), args.host.clone(), args.port);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_clean_start(true);
        // The same window and request queue as the hub's client (`MqttConfig`'s defaults).
        options.set_outgoing_inflight_upper_limit(inflight);
        options.set_request_channel_capacity(usize::from(inflight).max(16) * 4);
        options.set_max_packet_size(Some(u32::try_from(DEFAULT_MAX_PAYLOAD + 4096)?));
        let (client, mut eventloop) = AsyncClient::new(options, usize::from(inflight).max(64) * 4);
        let topics = Topics::default();
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, mut ready_rx) = mpsc::channel::<()>(1);
        let filter = topics.all_agents(Channel::Reply, &id);
        let sub = client.clone();
        let poll = tokio::spawn(async move {
            let mut subscribed = false;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) if !subscribed => {
                        subscribed = true;
                        let sub = sub.clone();
                        let filter = filter.clone();
                        tokio::spawn(async move { sub.subscribe(filter, QoS::AtLeastOnce).await });
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.try_send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let corr = p
                            .properties
                            .as_ref()
                            .and_then(|pr| pr.correlation_data.as_ref())
                            .and_then(|c| <[u8; 16]>::try_from(c.as_ref()).ok())
                            .map(u128::from_be_bytes);
                        let ok = matches!(
                            proto::decode(Channel::Reply, &p.payload, DEFAULT_MAX_PAYLOAD),
                            Ok(Envelope { message: Message::Reply(Reply::Ok { .. }), .. })
                        );
                        if let Some(corr) = corr {
                            let _ = tx.send((corr, ok));
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("loadtest: raw client: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), ready_rx.recv()).await.context("the raw client did not subscribe in time")?;
        Ok(RawClient { client, id, topics, replies: tokio::sync::Mutex::new(rx), poll })
    }

    async fn round(&self, targets: &[Target], run: usize, window: u32, limit: Duration) -> anyhow::Result<Round> {
        let mut replies = self.replies.lock().await;
        while replies.try_recv().is_ok() {}
        let change = change_of(run);
        // The same key length and change as the SDK's desired item, so the payload is the same size.
        let mut key = desired_key(targets.first().map(|t| t.target.as_str()).unwrap_or_default(), &change);
        key.pop();
        key.push('~');
        let version = 1_000 + run as u64;
        let sem = Arc::new(Semaphore::new(window as usize));
        let pending: Arc<std::sync::Mutex<HashMap<u128, (Instant, tokio::sync::OwnedSemaphorePermit)>>> = Arc::default();
        let mut payload_bytes = 0;
        reset_peak_rss();
        let cpu0 = cpu_seconds();
        let t = Instant::now();
        let deadline = t + limit;
        let mut latencies = Vec::with_capacity(targets.len());
        let (mut ok, mut failed) = (0usize, 0usize);
        let mut next = 0usize;
        let base = u128::from(run as u64) << 64;
        // Publish while the window allows; collect replies as they come.
        while ok + failed < targets.len() && Instant::now() < deadline {
            tokio::select! {
                permit = sem.clone().acquire_owned(), if next < targets.len() => {
                    let permit = permit?;
                    let tg = &targets[next];
                    let item = DesiredItem { key: key.clone(), version, target: tg.target.clone(), change: change.clone() };
                    let payload = proto::encode(&Envelope::new(Message::Command(Command::Apply(item))), DEFAULT_MAX_PAYLOAD)?;
                    payload_bytes = payload.len();
                    let corr = base | next as u128;
                    let properties = PublishProperties {
                        response_topic: Some(self.topics.reply(&tg.agent, &self.id)),
                        correlation_data: Some(Bytes::copy_from_slice(&corr.to_be_bytes())),
                        ..PublishProperties::default()
                    };
                    pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(corr, (Instant::now(), permit));
                    self.client
                        .publish_with_properties(self.topics.topic(&tg.agent, Channel::Command), QoS::AtLeastOnce, false, payload, properties)
                        .await?;
                    next += 1;
                }
                reply = replies.recv() => {
                    let Some((corr, good)) = reply else { break };
                    let Some((sent, permit)) = pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&corr) else { continue };
                    drop(permit);
                    if good {
                        ok += 1;
                        latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                    } else {
                        failed += 1;
                    }
                }
                () = tokio::time::sleep_until(deadline.into()) => break,
            }
        }
        let round_s = t.elapsed().as_secs_f64();
        let cpu_s = cpu_seconds() - cpu0;
        let peak = status_kb("VmHWM:") / 1024.0;
        failed += targets.len() - ok - failed;
        latencies.sort_by(f64::total_cmp);
        Ok(Round {
            kind: "round",
            mode: "raw",
            n: targets.len(),
            run,
            window,
            ok,
            failed,
            round_s,
            targets_per_s: ok as f64 / round_s,
            p50_ms: percentile(&latencies, 0.5),
            p99_ms: percentile(&latencies, 0.99),
            max_ms: latencies.last().copied().unwrap_or(f64::NAN),
            cpu_s,
            cpu_us_per_target: cpu_s * 1e6 / targets.len() as f64,
            peak_rss_mb: peak,
            payload_bytes,
        })
    }

    async fn close(self) {
        let _ = self.client.disconnect().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.poll.abort();
    }
}
