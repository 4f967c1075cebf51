//! The hub and the crate's edge agents end to end over a real mosquitto: 1,000 agents register,
//! get a delivery through the task engine and answer; the broker is killed and restarted
//! mid-delivery; an agent away during a delivery converges when it returns; the tunnel carries
//! the product adapters' calls.

#![cfg(all(feature = "mqtt", feature = "direct"))]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ecp_agent::{AgentHandle, EdgeAgent, EdgeAgentConfig, EdgeAgentConfigBuilder, LocalServiceConfig};
use ecp_agent_proto::proto::{Command, Reply};
use ecp_core::access::Principal;
use ecp_core::edge::{AgentId, EdgeKind, EdgeLimits, EdgeSelector, ManagementMode};
use ecp_core::identity::BuiltinRole;
use ecp_core::prelude::*;
use ecp_core::task::{RolloutPolicy, TaskEngine, TaskState};
use ecp_core::{PageRequest, SqlStore, SystemClock};
use ecp_edge::agent::{AgentDriver, AgentHub, AgentHubConfig, MqttConfig};
use ecp_edge::driver::Drivers;
use ecp_edge::fleet::{Fleet, NewEdgeService, ProjectFleet};
use ecp_edge::template::{ChangeKind, ConfigTemplate, ParamGrid};
use ecp_edge_api::Error as ApiError;
use ecp_rbac::{AccessConfig, AccessControl, Argon2Params, Grant, NewUser};
use ecp_testkit::mosquitto::Mosquitto;
use ecp_testkit::sim::{SimConfig, SimHandle, SimKind, SimService};
use serde_json::json;

struct World {
    store: Arc<SqlStore>,
    hub: AgentHub,
    /// The project administrator's handle.
    fleet: ProjectFleet,
    /// The system administrator's handle on the same project: it hands out agents that said
    /// hello on an open broker (they have no claim code).
    handout: ProjectFleet,
}

/// A store with a system administrator (`root`), a project and its project administrator.
struct Tenancy {
    store: Arc<SqlStore>,
    ac: AccessControl,
    root: Principal,
    project: ecp_core::Project,
    admin: Principal,
}

async fn tenancy() -> Tenancy {
    let store = Arc::new(SqlStore::memory().await.unwrap());
    let config = AccessConfig::builder().argon2(Argon2Params::new(1024, 1, 1).unwrap()).build().unwrap();
    let ac = AccessControl::new(store.clone(), config).await.unwrap();
    let root = ac.users.bootstrap_admin("root@example.com", "Root", &secrecy::SecretString::from("R00t-passw0rd!")).await.unwrap();
    let root = Principal::user(root.id, root.email);
    let org = ac.tenancy.create_org(&root, "acme").await.unwrap();
    let project = ac.tenancy.create_project(&root, org.id, "plant").await.unwrap();
    let admin = ac
        .users
        .create_user(&root, NewUser::new("pa@example.com", "pa").grant(Grant::builtin(BuiltinRole::ProjectAdmin, project.scope())))
        .await
        .unwrap();
    let admin = Principal::user(admin.id, admin.email);
    Tenancy { store, ac, root, project, admin }
}

async fn world(port: u16, apply_timeout: Duration) -> World {
    let Tenancy { store, ac, project, admin, root } = tenancy().await;
    let mqtt = MqttConfig::builder("127.0.0.1", port).insecure(true).build().unwrap();
    let hub_config = AgentHubConfig::builder(mqtt).request_timeout(Duration::from_secs(20)).build().unwrap();
    let hub = AgentHub::connect(hub_config, store.clone(), Arc::new(SystemClock)).await.unwrap();
    let engine = TaskEngine::builder(store.clone()).clock(Arc::new(SystemClock)).build().unwrap();
    let drivers = Drivers::new().with(ManagementMode::Agent, Arc::new(AgentDriver::new(hub.clone(), apply_timeout, 256 * 1024)));
    let fleet = Fleet::builder(store.clone(), ac.authorizer.clone(), engine, drivers)
        .clock(Arc::new(SystemClock))
        .limits(EdgeLimits::default())
        .build()
        .unwrap();
    let handout = fleet.project(&root, project.id()).await.unwrap();
    let fleet = fleet.project(&admin, project.id()).await.unwrap();
    World { store, hub, fleet, handout }
}

fn ekuiper(name: &str, sim: &SimHandle) -> LocalServiceConfig {
    LocalServiceConfig::builder(name, EdgeKind::Ekuiper, sim.base_url()).build().unwrap()
}

fn agent_config(port: u16, id: &str, sim: &SimHandle) -> EdgeAgentConfigBuilder {
    let mqtt = MqttConfig::builder("127.0.0.1", port).insecure(true).inflight(16).build().unwrap();
    EdgeAgentConfig::builder(AgentId::new(id).unwrap(), mqtt)
        .service(ekuiper("ekuiper", sim))
        .heartbeat(Duration::from_secs(2))
        .backoff_initial(Duration::from_millis(200))
        .backoff_max(Duration::from_secs(3))
}

async fn wait_until<F: AsyncFnMut() -> bool>(what: &str, limit: Duration, mut f: F) {
    let t = Instant::now();
    while !f().await {
        assert!(t.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn stream_template() -> ConfigTemplate {
    ConfigTemplate::new(
        ChangeKind::EkuiperStream,
        json!({ "name": "demo", "sql": "CREATE STREAM demo () WITH (TYPE=\"memory\", FORMAT=\"json\")" }),
        vec![],
    )
}

/// Manages `ids` into the project and registers one eKuiper service through each.
async fn manage_all(w: &World, ids: &[String], sim: &SimHandle) {
    let online = async || {
        w.store.list_agents(&Default::default(), &PageRequest::first(1000)).await.unwrap().items.iter().filter(|a| a.online).count()
    };
    wait_until("every agent's hello", Duration::from_secs(60), async || online().await == ids.len()).await;
    for id in ids {
        let agent = AgentId::new(id.clone()).unwrap();
        w.handout.manage_agent(&agent, &format!("gateway {id}")).await.unwrap();
        w.fleet.register(NewEdgeService::through_agent(format!("ekuiper-{id}"), EdgeKind::Ekuiper, agent, sim.base_url())).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_agents_register_take_a_delivery_and_answer() {
    const N: usize = 1000;
    let broker = Mosquitto::builder().start().await.expect("mosquitto (scripts/test installs it)");
    let sim = SimService::start(SimConfig::new(SimKind::Ekuiper)).await.unwrap();
    let w = world(broker.port(), Duration::from_secs(60)).await;
    let ids: Vec<String> = (0..N).map(|i| format!("edge-{i:04}")).collect();
    let started = Instant::now();
    let agents: Vec<AgentHandle> =
        ids.iter().map(|id| EdgeAgent::new(agent_config(broker.port(), id, &sim).build().unwrap()).unwrap().spawn()).collect();
    manage_all(&w, &ids, &sim).await;
    eprintln!("{N} agents registered and managed in {:?}", started.elapsed());

    let saved = w.fleet.save_template(None, "demo stream", &stream_template()).await.unwrap();
    let policy =
        RolloutPolicy::builder().max_in_flight(256).retries(2, Duration::from_millis(100), Duration::from_secs(1)).build().unwrap();
    let t = Instant::now();
    let handle = w.fleet.deliver(saved.id, None, &EdgeSelector::all(), &ParamGrid::default(), policy).await.unwrap();
    assert_eq!(tokio::time::timeout(Duration::from_secs(180), handle.wait()).await.unwrap(), Some(TaskState::Succeeded));
    let (_, totals) = w.fleet.task(handle.id()).await.unwrap();
    assert_eq!((totals.total, totals.succeeded), (N as u64, N as u64));
    eprintln!("delivery to {N} agents through the task engine: {:?}", t.elapsed());
    for id in ids.iter().step_by(97) {
        assert!(w.hub.converged(&AgentId::new(id.clone()).unwrap()).await.unwrap());
    }

    // Every agent answers a command.
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for id in &ids {
        let hub = w.hub.clone();
        let agent = AgentId::new(id.clone()).unwrap();
        set.spawn(async move { hub.request(&agent, Command::Status, None).await });
    }
    let mut answered = 0;
    while let Some(r) = set.join_next().await {
        assert!(matches!(r.unwrap().unwrap(), Reply::Ok { .. }));
        answered += 1;
    }
    assert_eq!(answered, N);
    eprintln!("{N} status round trips: {:?}", t.elapsed());
    let items: u64 = agents.iter().map(|a| a.stats().items_applied).sum();
    assert_eq!(items, N as u64, "each agent applied the item exactly once");
    for a in agents {
        a.abort();
    }
    w.hub.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_delivery_is_survived_and_reconnects_are_spread_by_jitter() {
    const N: usize = 200;
    let mut broker = Mosquitto::builder().start().await.expect("mosquitto (scripts/test installs it)");
    let sim = SimService::start(SimConfig::new(SimKind::Ekuiper)).await.unwrap();
    let w = world(broker.port(), Duration::from_secs(90)).await;
    let ids: Vec<String> = (0..N).map(|i| format!("edge-{i:03}")).collect();
    let agents: Vec<AgentHandle> =
        ids.iter().map(|id| EdgeAgent::new(agent_config(broker.port(), id, &sim).build().unwrap()).unwrap().spawn()).collect();
    manage_all(&w, &ids, &sim).await;
    let saved = w.fleet.save_template(None, "demo stream", &stream_template()).await.unwrap();

    broker.kill();
    let killed = Instant::now();
    let policy = RolloutPolicy::builder().max_in_flight(N as u32).build().unwrap();
    let handle = w.fleet.deliver(saved.id, None, &EdgeSelector::all(), &ParamGrid::default(), policy).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    broker.restart().await.unwrap();
    let restarted = Instant::now();

    assert_eq!(tokio::time::timeout(Duration::from_secs(120), handle.wait()).await.unwrap(), Some(TaskState::Succeeded));
    let (_, totals) = w.fleet.task(handle.id()).await.unwrap();
    assert_eq!(totals.succeeded, N as u64);

    // Every agent reconnected, and not all at once: full jitter spreads them.
    let mut offsets: Vec<Duration> = agents
        .iter()
        .map(|a| {
            let s = a.stats();
            assert!(s.connects >= 2, "every agent reconnected: {s:?}");
            s.last_connect.unwrap().saturating_duration_since(restarted)
        })
        .collect();
    offsets.sort();
    let (first, median, last) = (offsets[0], offsets[N / 2], offsets[N - 1]);
    eprintln!(
        "broker down {:?}; reconnects after restart: first {first:?}, median {median:?}, last {last:?}",
        restarted.duration_since(killed)
    );
    assert!(last.saturating_sub(first) >= Duration::from_millis(300), "reconnects bunched within {:?}", last - first);
    let buckets: std::collections::BTreeSet<u128> = offsets.iter().map(|o| o.as_millis() / 100).collect();
    assert!(buckets.len() >= 4, "reconnects fall in only {} 100 ms buckets", buckets.len());
    for a in agents {
        a.abort();
    }
    w.hub.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_away_during_a_delivery_converges_when_it_returns_and_applies_once() {
    let broker = Mosquitto::builder().start().await.expect("mosquitto (scripts/test installs it)");
    let sim = SimService::start(SimConfig::new(SimKind::Ekuiper)).await.unwrap();
    let w = world(broker.port(), Duration::from_secs(2)).await;
    let state = tempfile::tempdir().unwrap();
    let id = AgentId::new("edge-away").unwrap();
    let config = || agent_config(broker.port(), "edge-away", &sim).state_file(state.path().join("state.json")).build().unwrap();
    let agent = EdgeAgent::new(config()).unwrap().spawn();
    manage_all(&w, &["edge-away".to_owned()], &sim).await;
    agent.shutdown().await.unwrap();
    wait_until("the agent offline", Duration::from_secs(10), async || !w.hub.is_online(&id)).await;

    // The delivery fails while the agent is away, but the item stays desired.
    let saved = w.fleet.save_template(None, "demo stream", &stream_template()).await.unwrap();
    let policy = RolloutPolicy::builder().build().unwrap();
    let handle = w.fleet.deliver(saved.id, None, &EdgeSelector::all(), &ParamGrid::default(), policy).await.unwrap();
    assert_eq!(tokio::time::timeout(Duration::from_secs(60), handle.wait()).await.unwrap(), Some(TaskState::Failed));
    let targets = w.fleet.task_targets(handle.id(), None, 10).await.unwrap();
    let reason = targets[0].reason.clone().unwrap_or_default();
    assert!(reason.contains("offline") || reason.contains("no report"), "the reason says why: {reason}");
    assert!(!w.hub.converged(&id).await.unwrap());
    assert_eq!(sim.request_count("POST", "/streams"), 0);

    // It comes back: nobody acts, it converges.
    let agent = EdgeAgent::new(config()).unwrap().spawn();
    wait_until("convergence", Duration::from_secs(30), async || w.hub.converged(&id).await.unwrap()).await;
    assert_eq!(sim.request_count("POST", "/streams"), 1);
    agent.shutdown().await.unwrap();

    // Restarted again from its state file: nothing is applied twice.
    let agent = EdgeAgent::new(config()).unwrap().spawn();
    wait_until("the agent back", Duration::from_secs(10), async || w.hub.is_online(&id)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sim.request_count("POST", "/streams"), 1);
    assert_eq!(agent.stats().items_applied, 0);
    agent.abort();
    w.hub.shutdown();
}

/// One agent in front of two eKuiper services: a delivery to both applies to each (the desired
/// item's key names the service, so the second does not replace the first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_agent_with_two_services_gets_a_delivery_to_each() {
    let broker = Mosquitto::builder().start().await.expect("mosquitto (scripts/test installs it)");
    let (one, two) = (
        SimService::start(SimConfig::new(SimKind::Ekuiper)).await.unwrap(),
        SimService::start(SimConfig::new(SimKind::Ekuiper)).await.unwrap(),
    );
    let w = world(broker.port(), Duration::from_secs(20)).await;
    let config = agent_config(broker.port(), "edge-two", &one).service(ekuiper("ekuiper-2", &two)).build().unwrap();
    let agent = EdgeAgent::new(config).unwrap().spawn();
    manage_all(&w, &["edge-two".to_owned()], &one).await;
    let id = AgentId::new("edge-two").unwrap();
    w.fleet.register(NewEdgeService::through_agent("ekuiper-two-2", EdgeKind::Ekuiper, id.clone(), two.base_url())).await.unwrap();

    let saved = w.fleet.save_template(None, "demo stream", &stream_template()).await.unwrap();
    let handle = w.fleet.deliver(saved.id, None, &EdgeSelector::all(), &ParamGrid::default(), RolloutPolicy::default()).await.unwrap();
    assert_eq!(tokio::time::timeout(Duration::from_secs(60), handle.wait()).await.unwrap(), Some(TaskState::Succeeded));
    let (_, totals) = w.fleet.task(handle.id()).await.unwrap();
    assert_eq!((totals.total, totals.succeeded), (2, 2));
    assert_eq!((one.request_count("POST", "/streams"), two.request_count("POST", "/streams")), (1, 1));
    let desired = w.hub.desired(&id).await.unwrap();
    assert_eq!(desired.len(), 2, "{desired:?}");
    assert!(desired.iter().all(|d| d.converged() && d.key.ends_with(" stream:demo")));
    agent.shutdown().await.unwrap();
    w.hub.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_product_adapters_run_through_the_tunnel() {
    let broker = Mosquitto::builder().start().await.expect("mosquitto (scripts/test installs it)");
    let nx = SimService::start(SimConfig::new(SimKind::NeuronEx)).await.unwrap();
    let w = world(broker.port(), Duration::from_secs(10)).await;
    let mqtt = MqttConfig::builder("127.0.0.1", broker.port()).insecure(true).inflight(16).build().unwrap();
    let (user, pass) = SimKind::NeuronEx.default_credentials().unwrap();
    let credentials = ecp_core::edge::Credentials::Basic { username: user.into(), password: secrecy::SecretString::from(pass.to_owned()) };
    let neuronex =
        LocalServiceConfig::builder("neuronex", EdgeKind::NeuronEx, nx.base_url()).credentials(credentials.clone()).build().unwrap();
    let config = EdgeAgentConfig::builder(AgentId::new("edge-nx").unwrap(), mqtt).service(neuronex).build().unwrap();
    let agent = EdgeAgent::new(config).unwrap().spawn();
    let id = AgentId::new("edge-nx").unwrap();
    wait_until("edge-nx hello", Duration::from_secs(10), async || w.store.get_agent(&id).await.is_ok_and(|a| a.online)).await;
    w.handout.manage_agent(&id, "line 3").await.unwrap();
    let svc = w
        .fleet
        .register(NewEdgeService::through_agent("nx-3", EdgeKind::NeuronEx, id.clone(), nx.base_url()).credentials(credentials))
        .await
        .unwrap();

    // Probe and info sync: the direct driver's calls (login included), tunnelled.
    let probed = w.fleet.probe_all().await.unwrap();
    assert_eq!(probed[0].status(), ecp_core::edge::EdgeStatus::Online);
    assert!(probed[0].version().is_some());
    let info = w.fleet.sync_info(svc.id()).await.unwrap();
    assert_eq!(info.version.as_deref(), probed[0].version());
    assert!(nx.request_count("POST", "/api/login") >= 1);

    // A body too large for one message is refused before anything is sent.
    let handled = agent.stats().commands_handled;
    let transport = ecp_edge::agent::TunnelTransport::new(w.hub.clone(), id.clone(), &nx.base_url(), 256 * 1024).unwrap();
    let big = http::Request::builder().method("POST").uri("/api/neuron/node").body(bytes::Bytes::from(vec![b'x'; 300 * 1024])).unwrap();
    let err = ecp_edge_api::EdgeTransport::send(&transport, big).await.unwrap_err();
    assert!(matches!(err, ApiError::TooLarge { .. }), "{err}");
    assert_eq!(agent.stats().commands_handled, handled);

    // The agent cannot be unmanaged or deleted while the service is reached through it.
    assert!(w.fleet.unmanage_agent(&id).await.unwrap_err().to_string().contains("edge services"));
    assert!(w.fleet.delete_agent(&id).await.is_err());
    w.fleet.delete(svc.id()).await.unwrap();
    w.fleet.unmanage_agent(&id).await.unwrap();
    agent.abort();
    w.hub.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_issued_by_the_hub_let_only_that_agent_in_and_work_under_the_acl() {
    use ecp_agent_proto::acl::{AgentSecret, mosquitto_hash};
    use secrecy::ExposeSecret;

    // The broker starts with the hub's user only.
    let hub_secret = AgentSecret::generate().unwrap();
    let hub_hash = mosquitto_hash(hub_secret.as_secret()).unwrap();
    let Tenancy { store, ac, root, admin: pa, project } = tenancy().await;

    let initial = ecp_agent_proto::acl::BrokerAcl::new(ecp_edge::agent::Topics::default(), "ecp-hub", &hub_hash, []).unwrap();
    let mut broker = Mosquitto::builder()
        .allow_anonymous(false)
        .password_file(initial.password_file())
        .acl_file(initial.acl_file())
        .start()
        .await
        .expect("mosquitto (scripts/test installs it)");
    let mqtt = MqttConfig::builder("127.0.0.1", broker.port())
        .insecure(true)
        .credentials("ecp-hub", hub_secret.as_secret().clone())
        .build()
        .unwrap();
    let hub = AgentHub::connect(AgentHubConfig::builder(mqtt).build().unwrap(), store.clone(), Arc::new(SystemClock)).await.unwrap();

    // Only a system administrator issues credentials; the secret is shown once, stored hashed.
    let id = AgentId::new("edge-cred").unwrap();
    assert!(hub.issue_credentials(ac.authorizer.as_ref(), &pa, &id).await.unwrap_err().to_string().contains("denied"));
    let issued = hub.issue_credentials(ac.authorizer.as_ref(), &root, &id).await.unwrap();
    let (secret, code) = (issued.secret, issued.claim_code.expect("an unmanaged agent comes with a claim code"));
    let stored = store.agent_secrets().await.unwrap();
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].1.contains(secret.as_secret().expose_secret()));
    let acl = hub.broker_acl("ecp-hub", &hub_hash).await.unwrap();
    acl.write_files(broker.dir()).unwrap();
    broker.reload().await.unwrap();

    let sim = SimService::start(SimConfig::new(SimKind::Ekuiper)).await.unwrap();
    let agent_config = |password: secrecy::SecretString| {
        let mqtt =
            MqttConfig::builder("127.0.0.1", broker.port()).insecure(true).credentials("edge-cred", password).inflight(16).build().unwrap();
        EdgeAgentConfig::builder(id.clone(), mqtt)
            .service(ekuiper("ekuiper", &sim))
            .backoff_initial(Duration::from_millis(100))
            .backoff_max(Duration::from_millis(500))
            .build()
            .unwrap()
    };
    // A wrong secret is refused: the agent never gets in.
    let impostor = EdgeAgent::new(agent_config(secrecy::SecretString::from("not-the-secret".to_owned()))).unwrap().spawn();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(impostor.stats().connects, 0);
    assert!(!hub.is_online(&id));
    impostor.abort();

    // The issued one works: hello, commands and a delivery, all on the agent's own topics.
    let agent = EdgeAgent::new(agent_config(secret.into_secret())).unwrap().spawn();
    wait_until("edge-cred online", Duration::from_secs(10), async || hub.is_online(&id)).await;
    assert!(matches!(hub.request(&id, Command::Status, None).await.unwrap(), Reply::Ok { .. }));
    let change =
        ecp_edge::template::ConfigChange::EkuiperStream { name: "s".into(), sql: "CREATE STREAM s () WITH (TYPE=\"memory\")".into() };
    let target = sim.base_url().trim_start_matches("http://").to_owned();
    let applied = hub.deliver(&id, "stream:s", &target, &change, Duration::from_secs(10)).await.unwrap();
    assert!(applied.ok, "{applied:?}");

    // Unmanaged agents are the system administrator's to see; a project administrator manages
    // one only with its claim code, once, and every wrong proof is the same unknown agent.
    let page = PageRequest::first(10);
    assert!(hub.unmanaged_agents(ac.authorizer.as_ref(), &pa, &page).await.unwrap_err().to_string().contains("denied"));
    assert_eq!(hub.unmanaged_agents(ac.authorizer.as_ref(), &root, &page).await.unwrap().items[0].id, id);
    let engine = TaskEngine::builder(store.clone()).clock(Arc::new(SystemClock)).build().unwrap();
    let fleet = Fleet::builder(store.clone(), ac.authorizer.clone(), engine, Drivers::new()).build().unwrap();
    let editor = fleet.project(&pa, project.id()).await.unwrap();
    let unknown = |e: ecp_edge::Error| matches!(&e, ecp_edge::Error::Core(c) if c.is_not_found());
    assert!(unknown(editor.manage_agent(&id, "gateway").await.unwrap_err()), "no code, no agent");
    let guess = ecp_core::edge::ClaimCode::generate().unwrap();
    assert!(unknown(editor.claim_agent(&id, "gateway", &guess).await.unwrap_err()));
    assert!(unknown(editor.claim_agent(&AgentId::new("edge-nobody").unwrap(), "gateway", &code).await.unwrap_err()));
    let claimed = editor.claim_agent(&id, "gateway", &code).await.unwrap();
    assert_eq!((claimed.project, claimed.claimable), (Some(project.id()), false));
    assert!(unknown(editor.claim_agent(&id, "again", &code).await.unwrap_err()), "a code is used once");
    let q = ecp_core::audit::AuditQuery { operation: Some("agent.claim".into()), ..Default::default() };
    let records = store.query_audit(&q, &ecp_core::audit::AuditScope { all: true, ..Default::default() }, &page).await.unwrap().items;
    assert_eq!(records.iter().map(|r| r.event.outcome.is_success()).filter(|ok| *ok).count(), 1);
    assert_eq!(records.len(), 4, "every claim is recorded, refusals too");
    let again = hub.issue_credentials(ac.authorizer.as_ref(), &root, &id).await.unwrap();
    assert!(again.claim_code.is_none(), "a managed agent needs no claim code");
    drop(again);
    editor.unmanage_agent(&id).await.unwrap();

    // Revoked and reloaded: the agent's next connection is refused.
    hub.revoke_credentials(ac.authorizer.as_ref(), &root, &id).await.unwrap();
    hub.broker_acl("ecp-hub", &hub_hash).await.unwrap().write_files(broker.dir()).unwrap();
    broker.reload().await.unwrap();
    broker.kill();
    broker.restart().await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!agent.is_connected(), "a revoked agent stays out");
    agent.abort();
    hub.shutdown();
}

/// A delivery canceled while its agent is away takes its desired item back: the agent, back
/// later, applies nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_canceled_while_its_agent_is_away_is_not_applied_when_it_returns() {
    let broker = Mosquitto::builder().start().await.expect("mosquitto (scripts/test installs it)");
    let sim = SimService::start(SimConfig::new(SimKind::Ekuiper)).await.unwrap();
    let w = world(broker.port(), Duration::from_millis(500)).await;
    let id = AgentId::new("edge-gone").unwrap();
    let config = || agent_config(broker.port(), "edge-gone", &sim).build().unwrap();
    let agent = EdgeAgent::new(config()).unwrap().spawn();
    manage_all(&w, &["edge-gone".to_owned()], &sim).await;
    agent.shutdown().await.unwrap();
    wait_until("the agent offline", Duration::from_secs(10), async || !w.hub.is_online(&id)).await;

    // The first attempt publishes the item and finds no report; the retry waits a minute.
    let saved = w.fleet.save_template(None, "demo stream", &stream_template()).await.unwrap();
    let policy = RolloutPolicy::builder()
        .retries(3, Duration::from_secs(60), Duration::from_secs(60))
        .target_timeout(Duration::from_secs(5))
        .build();
    let handle = w.fleet.deliver(saved.id, None, &EdgeSelector::all(), &ParamGrid::default(), policy.unwrap()).await.unwrap();
    wait_until("the first attempt", Duration::from_secs(20), async || {
        w.fleet.task_targets(handle.id(), None, 1).await.unwrap()[0].attempt == 1 && w.hub.desired(&id).await.unwrap().len() == 1
    })
    .await;
    w.fleet.cancel_task(handle.id()).await.unwrap();
    assert_eq!(tokio::time::timeout(Duration::from_secs(20), handle.wait()).await.unwrap(), Some(TaskState::Canceled));
    assert!(w.hub.desired(&id).await.unwrap().is_empty(), "the canceled delivery's item is withdrawn");

    let agent = EdgeAgent::new(config()).unwrap().spawn();
    wait_until("the agent back", Duration::from_secs(10), async || w.hub.is_online(&id)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sim.request_count("POST", "/streams"), 0, "nothing applied");
    assert_eq!(agent.stats().items_applied, 0);
    agent.abort();
    w.hub.shutdown();
}

/// 300 distinct items to one agent (more than the 256 agents once took) converge; a withdrawn
/// one is forgotten by the agent, in its state file too; a set older than the newest it took is
/// ignored whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_items_converge_and_a_withdrawn_one_is_forgotten_at_the_agent() {
    use ecp_edge_api::ConfigChange;
    let broker = Mosquitto::builder().start().await.expect("mosquitto (scripts/test installs it)");
    let sim = SimService::start(SimConfig::new(SimKind::Ekuiper)).await.unwrap();
    let w = world(broker.port(), Duration::from_secs(30)).await;
    let state = tempfile::tempdir().unwrap();
    let path = state.path().join("state.json");
    let id = AgentId::new("edge-many").unwrap();
    let agent = EdgeAgent::new(agent_config(broker.port(), "edge-many", &sim).state_file(path.clone()).build().unwrap()).unwrap().spawn();
    wait_until("the agent's hello", Duration::from_secs(10), async || w.hub.is_online(&id)).await;

    let target = sim.addr().to_string();
    let stream =
        |i: usize| ConfigChange::EkuiperStream { name: format!("s{i}"), sql: format!("CREATE STREAM s{i} () WITH (TYPE=\"memory\")") };
    let key = |i: usize| format!("{target} stream:s{i}");
    let deliveries = (0..300).map(|i| {
        let (hub, id, key, target, change) = (w.hub.clone(), id.clone(), key(i), target.clone(), stream(i));
        async move { hub.deliver(&id, &key, &target, &change, Duration::from_secs(60)).await }
    });
    let applied = futures::future::join_all(deliveries).await;
    assert!(applied.iter().all(|a| a.as_ref().is_ok_and(|a| a.ok)), "every item applied");
    assert!(w.hub.converged(&id).await.unwrap());
    assert_eq!(sim.request_count("POST", "/streams"), 300, "each applied once");

    let set = w.hub.withdraw(&id, &[key(7)]).await.unwrap();
    assert_eq!(set.items.len(), 299);
    wait_until("the agent takes the set", Duration::from_secs(10), async || agent.stats().set_version == set.version).await;
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let items = file["items"].as_object().unwrap();
    assert_eq!(items.len(), 299, "the agent forgot the withdrawn item");
    assert!(!items.contains_key(&key(7)) && items.contains_key(&key(8)));
    assert_eq!(file["set_version"], json!(set.version));

    // An older set (a stale retained message, or one published out of order) changes nothing.
    let old = ecp_agent_proto::proto::Desired { version: set.version - 1, items: vec![] };
    let payload = ecp_agent_proto::proto::encode(
        &ecp_agent_proto::proto::Envelope::new(ecp_agent_proto::proto::Message::Desired(old)),
        ecp_agent_proto::proto::DEFAULT_MAX_PAYLOAD,
    )
    .unwrap();
    let mut options = rumqttc::v5::MqttOptions::new("test-stale", "127.0.0.1", broker.port());
    options.set_clean_start(true);
    let (client, mut events) = rumqttc::v5::AsyncClient::new(options, 10);
    let topic = ecp_agent_proto::Topics::default().topic(&id, ecp_agent_proto::Channel::Desired);
    client.publish(topic, rumqttc::v5::mqttbytes::QoS::AtLeastOnce, false, payload).await.unwrap();
    let driving = tokio::spawn(async move { while events.poll().await.is_ok() {} });
    wait_until("the stale set is refused", Duration::from_secs(10), async || agent.stats().stale_sets == 1).await;
    driving.abort();
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(file["items"].as_object().unwrap().len(), 299, "nothing forgotten for an older set");
    agent.abort();
    w.hub.shutdown();
}

/// Three hubs (three replicas' stores on one PostgreSQL) share the agents' messages: a delivery
/// started on hub A completes when the agent's report reaches another hub, at once, not after a
/// timeout; and all keep the agent online, each hearing all of its heartbeats.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_that_reaches_another_replica_completes_the_delivery_waiting_here() {
    use ecp_edge_api::ConfigChange;
    use secrecy::SecretString;
    let Some(url) = ecp_testkit::postgres::fresh_database().await else { return };
    let broker = Mosquitto::builder().start().await.expect("mosquitto (scripts/test installs it)");
    let sim = SimService::start(SimConfig::new(SimKind::Ekuiper)).await.unwrap();
    let store = || async {
        let config = ecp_core::SqlStoreConfig::builder(SecretString::from(url.clone())).build().unwrap();
        Arc::new(SqlStore::connect(config).await.unwrap())
    };
    let hub = |id: &'static str, store: Arc<SqlStore>| {
        let mqtt = MqttConfig::builder("127.0.0.1", broker.port()).insecure(true).build().unwrap();
        let config = AgentHubConfig::builder(mqtt).hub_id(id).shared_group("replicas").missed_heartbeats(2).build().unwrap();
        async move { AgentHub::connect(config, store, Arc::new(SystemClock)).await.unwrap() }
    };
    let (a, b, c) = (hub("hub-a", store().await).await, hub("hub-b", store().await).await, hub("hub-c", store().await).await);
    let (mut events_a, mut events_b, mut events_c) = (a.subscribe(), b.subscribe(), c.subscribe());
    let id = AgentId::new("edge-shared").unwrap();
    let agent = EdgeAgent::new(agent_config(broker.port(), "edge-shared", &sim).build().unwrap()).unwrap().spawn();
    wait_until("the agent's hello", Duration::from_secs(10), async || a.is_online(&id) || b.is_online(&id) || c.is_online(&id)).await;

    let (before_a, before_b) = (a.stats().received, b.stats().received);
    let target = sim.addr().to_string();
    let started = Instant::now();
    for i in 0..20 {
        let change = ConfigChange::EkuiperStream { name: format!("s{i}"), sql: format!("CREATE STREAM s{i} () WITH (TYPE=\"memory\")") };
        // Far below the 30 s a delivery would wait if only the replica that receives the report
        // could complete it.
        let applied = tokio::time::timeout(
            Duration::from_secs(5),
            a.deliver(&id, &format!("{target} stream:s{i}"), &target, &change, Duration::from_secs(30)),
        )
        .await
        .expect("the delivery completed without waiting for its timeout")
        .unwrap();
        assert!(applied.ok);
    }
    let (got_a, got_b) = (a.stats().received - before_a, b.stats().received - before_b);
    eprintln!("20 deliveries from hub a in {:?}; reports and other messages received: a {got_a}, b {got_b}", started.elapsed());
    assert!(got_b > 0, "hub b received some of the agent's messages (shared subscription)");
    assert!(c.stats().received > 0);

    // Presence: every hub hears every heartbeat (2 s apart; offline after 2 missed), so none takes
    // the agent for gone, though only one heard its hello. (Shared among three, each would hear
    // every third heartbeat: 6 s of silence.)
    tokio::time::sleep(Duration::from_secs(10)).await;
    for (hub, events) in [(&a, &mut events_a), (&b, &mut events_b), (&c, &mut events_c)] {
        assert!(hub.is_online(&id));
        while let Ok(e) = events.try_recv() {
            assert!(!matches!(&e, ecp_edge::agent::HubEvent::Offline(x) if *x == id), "a hub took the agent for gone");
        }
    }
    agent.abort();
    a.shutdown();
    b.shutdown();
    c.shutdown();
}
