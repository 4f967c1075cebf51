//! The quickstart: a whole control plane in one process, on embedded defaults.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! It creates an organization with two projects, users of every built-in role and a custom role,
//! shows an allowed and a denied action for each, locks out a login after repeated failures, and
//! prints the audit trail with its hash chain verified. Then it grows a fleet: 200 simulated
//! NeuronEX services on loopback (from `ecp-testkit`, speaking the real HTTP API) imported from a
//! CSV file, probed, synced, and given a configuration template (an eKuiper stream) by a rollout
//! task with a progress bar. Last, 20 more services sit behind edge agents that dial out to an
//! in-process MQTT 5 broker (rumqttd): they appear unmanaged, are managed into the project, probed
//! through the agents' HTTP tunnel, and given the template through their desired state; one is
//! stopped and shows offline. Then telemetry: three of the fleet's services are scraped into the
//! metric store, one goes down and the built-in "edge service offline" alarm fires, is notified to
//! a webhook, recovers when the service comes back, and is acknowledged. Last, a signed license is
//! verified (and a tampered copy refused), and two running EMQX 5 clusters (simulated REST APIs on
//! loopback) are onboarded with their API keys under its floating connection pool: a third cluster
//! and a larger share are refused, a stopped node shows as an error, one cluster moves to the other
//! project, which then cannot be deleted. State lives in SQLite: in memory, or in a file with
//! `--db ecp.db`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ecp_core::access::{Authorizer, Permission, ResourceKind, Scope};
use ecp_core::audit::{AuditQuery, Outcome};
use ecp_core::identity::BuiltinRole;
use ecp_core::{PageRequest, Principal, SqlStore, SqlStoreConfig};
use ecp_rbac::{AccessConfig, AccessControl, Error as AuthError, Grant, NewUser};
use secrecy::SecretString;

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn,rumqttd=off,ecp_telemetry::runner=error".into()),
        )
        .init();

    let db = std::env::args().skip_while(|a| a != "--db").nth(1);
    let config = match &db {
        Some(path) => SqlStoreConfig::sqlite_file(path),
        None => SqlStoreConfig::sqlite_memory(),
    };
    let store = Arc::new(SqlStore::connect(config.build()?).await.context("opening the store")?);
    println!("store: sqlite ({})", db.as_deref().unwrap_or("in memory"));

    let ac =
        AccessControl::new(store.clone(), AccessConfig::builder().lockout(5, Duration::from_secs(900), Duration::from_secs(900)).build()?)
            .await?;

    // 1. The install-time superuser, and a login.
    let admin_pw = secret("Adm1n-passw0rd!");
    if let Err(e) = ac.users.bootstrap_admin("admin@example.com", "Administrator", &admin_pw).await {
        println!("bootstrap: {e} (reusing the existing store)");
    }
    let tokens = ac.auth.login("admin@example.com", &admin_pw).await?;
    let admin = ac.auth.authenticate(&tokens.access_token).await?;
    println!("\n1. logged in as {} (session {}, access token {:?})", admin.name(), tokens.session, tokens.access_token);

    // 2. Tenancy: an organization with two projects.
    // Names get a suffix when the store is a file that may already hold an earlier run.
    let suffix = if db.is_some() { format!("-{}", &tokens.session.to_string()[28..]) } else { String::new() };
    let org = ac.tenancy.create_org(&admin, &format!("Acme Manufacturing{suffix}")).await?;
    let plant = ac.tenancy.create_project(&admin, org.id, "Plant Shenzhen").await?;
    let line = ac.tenancy.create_project(&admin, org.id, "Plant Hamburg").await?;
    println!("\n2. organization {:?} with projects {:?} and {:?}", org.name, plant.name(), line.name());

    // 3. Users of every role, and a custom "operator" role that may start and stop edge services.
    let org_scope = Scope::Org { org: org.id };
    let mk = |who: &str| format!("{who}{suffix}@acme.example");
    let password = secret("Str0ng-passw0rd!");
    let create = |email: String, grant: Grant| {
        let ac = ac.clone();
        let admin = admin.clone();
        let password = password.clone();
        async move {
            let u = ac.users.create_user(&admin, NewUser::new(email.clone(), email.clone()).password(password).grant(grant)).await?;
            anyhow::Ok(Principal::user(u.id, u.email))
        }
    };
    let org_admin = create(mk("olivia"), Grant::builtin(BuiltinRole::OrgAdmin, org_scope)).await?;
    let proj_admin = create(mk("peter"), Grant::builtin(BuiltinRole::ProjectAdmin, plant.scope())).await?;
    let viewer = create(mk("vera"), Grant::builtin(BuiltinRole::Viewer, plant.scope())).await?;
    let operator_role = ac
        .users
        .create_role(
            &org_admin,
            Some(org.id),
            "Line operator",
            "start and stop edge services, read logs",
            &[Permission::operate(ResourceKind::EdgeService), Permission::view(ResourceKind::Log)],
        )
        .await?;
    let operator = create(mk("otto"), Grant::custom(operator_role.id, plant.scope())).await?;
    println!(
        "\n3. users: org admin {}, project admin {}, viewer {}, operator {} (custom role)",
        org_admin.name(),
        proj_admin.name(),
        viewer.name(),
        operator.name()
    );

    // 4. Allowed and denied actions.
    println!("\n4. decisions:");
    let authz = ac.authorizer.as_ref();
    let show = |who: &Principal, perm: Permission, scope: Scope| {
        let verdict = match authz.check(who, perm, &scope) {
            Ok(()) => "ALLOWED".to_owned(),
            Err(d) => format!("denied ({})", d.reason()),
        };
        println!("   {:<32} {:<24} at {:<45} {verdict}", who.name(), perm.to_string(), scope.to_string());
    };
    show(&proj_admin, Permission::edit(ResourceKind::EdgeService), plant.scope());
    show(&proj_admin, Permission::edit(ResourceKind::EdgeService), line.scope());
    show(&viewer, Permission::view(ResourceKind::Alarm), plant.scope());
    show(&viewer, Permission::edit(ResourceKind::Alarm), plant.scope());
    show(&operator, Permission::operate(ResourceKind::EdgeService), plant.scope());
    show(&operator, Permission::edit(ResourceKind::EdgeService), plant.scope());
    show(&org_admin, Permission::edit(ResourceKind::License), Scope::System);
    match ac.tenancy.create_project(&viewer, org.id, "Shadow project").await {
        Ok(_) => println!("   a viewer created a project?!"),
        Err(e) => println!("   viewer tries to create a project: {e}"),
    }
    let renamed = ac.tenancy.rename_project(&proj_admin, plant.id(), "Plant Shenzhen line 2").await?;
    println!("   project admin renames its project: now {:?}", renamed.name());

    // 5. A locked-out login.
    println!("\n5. five wrong passwords for {}:", viewer.name());
    for attempt in 1..=6 {
        match ac.auth.login(viewer.name(), &secret("guess-Passw0rd!")).await {
            Err(AuthError::Locked { until }) => {
                println!("   attempt {attempt}: locked until {}", until.strftime("%H:%M:%S UTC"));
                break;
            }
            Err(e) => println!("   attempt {attempt}: {e}"),
            Ok(_) => println!("   attempt {attempt}: logged in?!"),
        }
    }
    match ac.auth.login(viewer.name(), &password).await {
        Err(AuthError::Locked { .. }) => println!("   even the right password now: locked"),
        Err(e) => println!("   even the right password now: {e}"),
        Ok(_) => println!("   the right password was accepted?!"),
    }

    // 6. The audit trail, verified.
    println!("\n6. audit trail (oldest first):");
    let page = ac.audit.query(&admin, &AuditQuery::default(), &PageRequest::first(40)).await?;
    for r in page.items.iter().rev() {
        let outcome = match &r.event.outcome {
            Outcome::Success => "ok".to_owned(),
            Outcome::Failure { reason } => format!("FAILED: {}", reason.split(':').next().unwrap_or(reason)),
        };
        println!(
            "   #{:<3} {} {:<34} {:<28} {:<30} {}",
            r.seq,
            r.at.strftime("%H:%M:%S"),
            r.event.actor.name,
            r.event.operation.as_str(),
            r.event.resource_name.as_deref().unwrap_or("-"),
            outcome
        );
    }
    let report = ac.audit.verify(&admin, None).await?;
    println!("\n   hash chain verified: {} records, head #{} {}", report.records, report.head.seq, &report.head.hash[..16]);

    // 7. A fleet of directly managed edge services.
    fleet(&store, &ac, &admin, ecp_telemetry::MetricScope::new(org.id, plant.id())).await?;

    // 10. EMQX clusters under a floating license.
    clusters(&store, &ac, &admin, plant.id(), line.id()).await?;
    ac.auth.logout(&tokens.access_token).await?;
    Ok(())
}

async fn clusters(
    store: &Arc<SqlStore>,
    ac: &AccessControl,
    admin: &Principal,
    plant: ecp_core::ProjectId,
    line: ecp_core::ProjectId,
) -> anyhow::Result<()> {
    use ecp_cluster::emqx::ClientOptions;
    use ecp_cluster::{ApiKey, ClusterApi, ClusterRef, Clusters, ExistingDriver, NewExistingCluster};
    use ecp_core::{License, LicenseKind, LicenseSigner, LicenseVerifier, Timestamp};
    use ecp_testkit::emqx::{EmqxSim, EmqxSimConfig};

    println!("\n10. EMQX clusters onboarded by their REST API, under a floating license");
    // The license: signed by the issuer (here a key made on the spot), verified on load.
    let issuer = LicenseSigner::generate()?;
    let now = Timestamp::now();
    let license = License {
        id: "quickstart-1".into(),
        customer: "Acme".into(),
        kind: LicenseKind::Trial,
        starts_at: now,
        expires_at: now.checked_add(jiff::SignedDuration::from_hours(24 * 15))?,
        max_connections: 10_000,
        max_clusters: 2,
        max_edge_services: 1_000,
        max_tag_points: 100_000,
    };
    let file = issuer.sign(&license)?;
    let verifier = LicenseVerifier::new(&issuer.public_key())?;
    let license = verifier.verify(file.as_bytes(), now)?;
    println!(
        "   license {} for {}: {} connections shared by at most {} clusters, until {}",
        license.id,
        license.customer,
        license.max_connections,
        license.max_clusters,
        license.expires_at.strftime("%Y-%m-%d")
    );
    let mut tampered = file.clone().into_bytes();
    let i = tampered.len() / 3;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    println!("   a tampered copy: {}", verifier.verify(&tampered, now).unwrap_err());

    // Two running EMQX 5 clusters (simulated REST APIs on loopback), onboarded with an API key.
    let prod = EmqxSim::start(EmqxSimConfig::new(3, 250)).await?;
    let lab = EmqxSim::start(EmqxSimConfig::new(1, 20)).await?;
    let key = || ApiKey::new("ecp", secret("ecp-secret"));
    let existing = Arc::new(ExistingDriver::new(
        // The simulated clusters listen on loopback: the demo opts in (the default refuses it).
        ClientOptions::builder().egress(ecp_cluster::emqx::EgressPolicy::allow_loopback()).build()?,
    )?);
    let clusters = Clusters::builder(store.clone(), ac.authorizer.clone()).driver(existing.clone()).license(&license).build();
    let in_plant = clusters.project(admin, plant).await?;
    let prod_api = ClusterApi { base_url: prod.base_url(), key: key()? };
    let p = in_plant.register_existing(NewExistingCluster::new("emqx-prod", prod_api.clone(), 6_000)).await?;
    let l = in_plant
        .register_existing(NewExistingCluster::new("emqx-lab", ClusterApi { base_url: lab.base_url(), key: key()? }, 4_000))
        .await?;
    println!("   registered {} ({}, 6000 connections) and {} ({}, 4000)", p.name, p.status, l.name, l.status);
    let usage = clusters.license_usage(admin).await?;
    println!(
        "   license usage: {}/{} clusters, {}/{} connections",
        usage.clusters, license.max_clusters, usage.connections, license.max_connections
    );
    let third = EmqxSim::start(EmqxSimConfig::default()).await?;
    let refused =
        in_plant.register_existing(NewExistingCluster::new("emqx-3", ClusterApi { base_url: third.base_url(), key: key()? }, 1)).await;
    println!("   a third cluster: {}", refused.map(|_| "registered".to_owned()).unwrap_or_else(|e| e.to_string()));
    let refused = in_plant.set_connection_limit(p.id, 7_000).await;
    println!("   emqx-prod to 7000 connections: {}", refused.map(|_| "done".to_owned()).unwrap_or_else(|e| e.to_string()));

    // Read it, watch it: a node goes down and comes back.
    let handle = existing.cluster(&ClusterRef::new(p.id, p.project, &p.name).with_api(prod_api))?;
    let nodes = handle.nodes().await?;
    let page = handle.clients(&Default::default(), ecp_cluster::emqx::PageRequest::new(1, 100)?).await?;
    println!("   emqx-prod: {} nodes, {} clients on the first page of 100 (more: {})", nodes.len(), page.data.len(), page.meta.hasnext);
    prod.set_node_stopped(2, true);
    println!("   a node stops: {}", in_plant.refresh(p.id).await?.status);
    prod.set_node_stopped(2, false);
    println!("   it is back: {}", in_plant.refresh(p.id).await?.status);

    // Transfer the lab cluster to the other project; that project cannot be deleted while it holds it.
    let moved = in_plant.transfer(l.id, line).await?;
    println!("   {} transferred to project {} (audited as cluster.transfer)", moved.name, moved.project);
    match ac.tenancy.delete_project(admin, line).await {
        Ok(()) => println!("   the project was deleted?!"),
        Err(e) => println!("   deleting that project: {e}"),
    }
    // Disabling a cluster returns its share of the pool.
    in_plant.set_enabled(p.id, false).await?;
    let usage = clusters.license_usage(admin).await?;
    println!("   emqx-prod disabled: {}/{} connections allocated", usage.connections, license.max_connections);
    Ok(())
}

async fn fleet(store: &Arc<SqlStore>, ac: &AccessControl, admin: &Principal, scope: ecp_telemetry::MetricScope) -> anyhow::Result<()> {
    use ecp_agent_proto::proto::DEFAULT_MAX_PAYLOAD;
    use ecp_core::edge::{EdgeLimits, EdgeSelector, ManagementMode};
    use ecp_core::task::{RolloutPolicy, TaskEngine, TaskEvent};
    use ecp_edge::agent::{AgentDriver, AgentHub, AgentHubConfig, MqttConfig};
    use ecp_edge::direct::{DirectDriver, DirectDriverConfig};
    use ecp_edge::driver::Drivers;
    use ecp_edge::fleet::Fleet;
    use ecp_edge::import::ImportLimits;
    use ecp_edge::template::{ChangeKind, ConfigTemplate, ParamGrid, ParamSpec, ParamType};
    use ecp_testkit::sim::{SimConfig, SimKind, SimService};

    const SERVICES: usize = 200;
    println!("\n7. a fleet of {SERVICES} simulated NeuronEX services on loopback");
    let mut sims = Vec::with_capacity(SERVICES);
    for _ in 0..SERVICES {
        sims.push(SimService::start(SimConfig::new(SimKind::NeuronEx)).await?);
    }
    let clock: Arc<dyn ecp_core::Clock> = Arc::new(ecp_core::SystemClock);
    let engine = TaskEngine::builder(store.clone()).clock(clock.clone()).build()?;
    let driver = Arc::new(DirectDriver::new(
        // The simulated services listen on loopback: the demo opts in (the default refuses it).
        DirectDriverConfig::builder().egress(ecp_edge::direct::EgressPolicy::allow_loopback()).build()?,
    )?);
    // The agent hub on an in-process broker, for section 8.
    let port = ecp_examples::broker::start_embedded_broker()?;
    let hub_config = AgentHubConfig::builder(MqttConfig::builder("127.0.0.1", port).insecure(true).build()?).build()?;
    let hub = AgentHub::connect(hub_config, store.clone(), clock.clone()).await?;
    let agent_driver = Arc::new(AgentDriver::new(hub.clone(), Duration::from_secs(10), DEFAULT_MAX_PAYLOAD));
    let drivers = Drivers::new().with(ManagementMode::Direct, driver).with(ManagementMode::Agent, agent_driver);
    // The control plane's own metrics count every task that ends (printed in section 9).
    let metrics = ecp_telemetry::ControlPlaneMetrics::new();
    let _observer = metrics.observe_tasks(&engine);
    let fleet = Fleet::builder(store.clone(), ac.authorizer.clone(), engine, drivers).clock(clock).limits(EdgeLimits::default()).build()?;
    let f = fleet.project(admin, scope.project).await?;

    // The CSV import: one bad line (an unknown category) is reported with its number.
    let mut csv = String::from("category,name,nodeType,endpoint,scheme,tagName,username,password\n");
    for (i, sim) in sims.iter().enumerate() {
        let line = if i % 2 == 0 { "line1" } else { "line2" };
        csv.push_str(&format!("4,neuronex-{i:03},Direct,{},http,{line};shenzhen,admin,0000\n", sim.addr()));
    }
    csv.push_str("7,bogus,Direct,127.0.0.1:1,http,,,\n");
    let report = f.import_csv(std::io::Cursor::new(csv.into_bytes()), ImportLimits::default()).await?;
    println!("   imported {} services; rejected {:?}", report.imported.len(), report.failures);

    let probed = f.probe_all().await?;
    let online = probed.iter().filter(|s| s.status() == ecp_core::edge::EdgeStatus::Online).count();
    println!("   probed: {online} online, NeuronEX {}", probed.first().and_then(|s| s.version()).unwrap_or_default());

    // A template with a parameter, previewed, then delivered to line1 by a rollout task.
    let template = ConfigTemplate::new(
        ChangeKind::EkuiperStream,
        serde_json::json!({ "name": "telemetry", "sql": "CREATE STREAM telemetry () WITH (TYPE=\"neuron\", FORMAT=\"json\", SHARED=\"${shared}\")" }),
        vec![ParamSpec::with_default("shared", ParamType::String, serde_json::json!("true"))],
    );
    let saved = f.save_template(None, "telemetry stream", &template).await?;
    let selector = EdgeSelector::with_tags(["line1"]);
    let preview = f.preview(saved.id, None, &selector, &ParamGrid::default()).await?;
    println!("   template {:?} v{} previewed for {} services", saved.name, saved.version, preview.len());
    let policy = RolloutPolicy::builder().max_in_flight(16).build()?;
    let handle = f.deliver(saved.id, None, &selector, &ParamGrid::default(), policy).await?;
    let mut events = handle.subscribe();
    let bar = indicatif::ProgressBar::new(preview.len() as u64);
    bar.set_style(indicatif::ProgressStyle::with_template("   delivering [{bar:40}] {pos}/{len} {msg}")?.progress_chars("=> "));
    let state = loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(TaskEvent::Target { totals, .. }) => {
                    bar.set_position(totals.succeeded + totals.failed + totals.timed_out + totals.canceled);
                    bar.set_message(format!("{} ok, {} failed", totals.succeeded, totals.failed));
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break handle.wait().await,
            },
            state = handle.wait() => break state,
        }
    };
    let (_, totals) = f.task(handle.id()).await?;
    bar.set_position(totals.succeeded + totals.failed);
    let summary = format!("{} ok, {} failed: task {state:?}", totals.succeeded, totals.failed);
    if bar.is_hidden() {
        println!("   delivered: {summary}");
    }
    bar.finish_with_message(summary);

    let (synced, failed) = f.sync_all().await?;
    let stats = f.statistics().await?;
    println!(
        "   synced {synced} services ({} failed); statistics: {} online, {} offline, {} rules, {} streams on {} services",
        failed.len(),
        stats.services_online,
        stats.services_offline,
        stats.rules_total,
        sims.iter().filter(|s| s.with_ekuiper(|e| e.streams.contains_key("telemetry")).unwrap_or(false)).count(),
        SERVICES / 2,
    );
    // Three services stay up for section 9; the rest go.
    let watched: Vec<_> = sims.drain(..3).zip(report.imported.iter().copied()).collect();
    for sim in sims {
        sim.shutdown().await;
    }

    // 8. Services behind edge agents.
    agents(&f, &hub, port, saved.id).await?;
    hub.shutdown();

    // 9. Telemetry.
    telemetry(store, ac, admin, scope, &watched, &metrics).await?;
    for (sim, _) in watched {
        sim.shutdown().await;
    }
    Ok(())
}

async fn agents(
    f: &ecp_edge::fleet::ProjectFleet,
    hub: &ecp_edge::agent::AgentHub,
    port: u16,
    template: ecp_core::TemplateId,
) -> anyhow::Result<()> {
    use ecp_agent::{EdgeAgent, EdgeAgentConfig, LocalServiceConfig, MqttConfig};
    use ecp_core::edge::{AgentId, Credentials, EdgeKind, EdgeSelector, EdgeStatus};
    use ecp_core::task::RolloutPolicy;
    use ecp_edge::fleet::NewEdgeService;
    use ecp_edge::template::ParamGrid;
    use ecp_testkit::sim::{SimConfig, SimKind, SimService};

    const AGENTS: usize = 20;
    println!("\n8. {AGENTS} NeuronEX services behind edge agents, over an in-process MQTT 5 broker on 127.0.0.1:{port}");
    let credentials = || Credentials::Basic { username: "admin".into(), password: secret("0000") };
    let mut sims = Vec::with_capacity(AGENTS);
    let mut handles = Vec::with_capacity(AGENTS);
    for i in 0..AGENTS {
        let sim = SimService::start(SimConfig::new(SimKind::NeuronEx)).await?;
        let mqtt = MqttConfig::builder("127.0.0.1", port).insecure(true).inflight(16).build()?;
        let neuronex = LocalServiceConfig::builder("neuronex", EdgeKind::NeuronEx, sim.base_url()).credentials(credentials()).build()?;
        let config = EdgeAgentConfig::builder(AgentId::new(format!("gateway-{i:02}"))?, mqtt)
            .service(neuronex)
            .heartbeat(Duration::from_secs(1))
            .build()?;
        handles.push(EdgeAgent::new(config)?.spawn());
        sims.push(sim);
    }
    let started = std::time::Instant::now();
    while hub.online_agents().len() < AGENTS {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(30), "the agents did not say hello within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("   {AGENTS} agents said hello and appear unmanaged; managing them into the project");
    for (i, sim) in sims.iter().enumerate() {
        let agent = AgentId::new(format!("gateway-{i:02}"))?;
        f.manage_agent(&agent, &format!("line 3 gateway {i}")).await?;
        let service = NewEdgeService::through_agent(format!("agent-neuronex-{i:02}"), EdgeKind::NeuronEx, agent, sim.base_url())
            .credentials(credentials())
            .tags(["agents"]);
        f.register(service).await?;
    }
    let probed = f.probe_all().await?;
    let through = probed.iter().filter(|s| s.agent().is_some() && s.status() == EdgeStatus::Online).count();
    println!("   probed through the agents' tunnel: {through} online");

    let policy = RolloutPolicy::builder().max_in_flight(8).build()?;
    let handle = f.deliver(template, None, &EdgeSelector::with_tags(["agents"]), &ParamGrid::default(), policy).await?;
    let state = handle.wait().await;
    let (_, totals) = f.task(handle.id()).await?;
    let with_stream = sims.iter().filter(|s| s.with_ekuiper(|e| e.streams.contains_key("telemetry")).unwrap_or(false)).count();
    println!(
        "   template delivered as desired state: {} ok, {} failed ({state:?}); {with_stream} services have the stream",
        totals.succeeded, totals.failed
    );

    // One agent goes away without a goodbye: its last will says offline.
    if let Some(lost) = handles.pop() {
        let id = lost.agent_id().clone();
        lost.abort();
        let started = std::time::Instant::now();
        while hub.is_online(&id) {
            anyhow::ensure!(started.elapsed() < Duration::from_secs(15), "{id} did not go offline");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!("   {id} dropped its connection: offline after {:?} (its last will)", started.elapsed());
    }
    for h in handles {
        h.shutdown().await?;
    }
    for sim in sims {
        sim.shutdown().await;
    }
    Ok(())
}

/// 9. Telemetry: an alarm that fires and resolves, with its notification.
async fn telemetry(
    store: &Arc<SqlStore>,
    ac: &AccessControl,
    admin: &Principal,
    scope: ecp_telemetry::MetricScope,
    watched: &[(ecp_testkit::sim::SimHandle, ecp_core::EdgeServiceId)],
    metrics: &ecp_telemetry::ControlPlaneMetrics,
) -> anyhow::Result<()> {
    use ecp_telemetry::alarm::{AlarmConfig, AlarmEngine, AlarmFilter, Alarms, Closure, MetricReader, spawn_notifications_counted};
    use ecp_telemetry::notify::webhook::WebhookNotifier;
    use ecp_telemetry::notify::{NotificationRouter, Route, RouteScope};
    use ecp_telemetry::prom::PrometheusScrapeConfig;
    use ecp_telemetry::{CollectorOptions, CollectorRunner, Labels, MetricName, MetricStore, MetricStoreConfig, SeriesKey};

    const TICK: Duration = Duration::from_millis(200);
    println!("\n9. telemetry: {} services scraped every {TICK:?}, alarms evaluated every {TICK:?}", watched.len());

    // A webhook receiver on loopback that keeps the JSON bodies it is sent.
    let received: Arc<std::sync::Mutex<Vec<serde_json::Value>>> = Arc::default();
    let hook = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(
                |axum::extract::State(got): axum::extract::State<Arc<std::sync::Mutex<Vec<serde_json::Value>>>>,
                 axum::Json(body): axum::Json<serde_json::Value>| async move {
                    got.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(body);
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook_addr = listener.local_addr()?;
    let hook_server = tokio::spawn(async move { axum::serve(listener, hook).await });
    let bodies = || received.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();

    // The metric store, fed by one Prometheus scraper per service (NeuronEX proxies Neuron's
    // metrics), each writing ecp_edge_up{source="edge:<id>"} after every scrape.
    let metric_store = Arc::new(MetricStore::new(MetricStoreConfig::default()));
    let clock: Arc<dyn ecp_core::Clock> = Arc::new(ecp_core::SystemClock);
    let runner = CollectorRunner::new(metric_store.clone(), clock.clone()).with_metrics(metrics.clone());
    let up = MetricName::new("ecp_edge_up")?;
    for (sim, id) in watched {
        let source = format!("edge:{id}");
        let scraper = PrometheusScrapeConfig::new(format!("neuronex {id}"), format!("{}/api/neuron/metrics", sim.base_url()), scope)
            .egress(ecp_telemetry::EgressPolicy::allow_loopback())
            .bearer_token(secret(&sim.issue_token()))
            .timeout(Duration::from_secs(1))
            .source(source.clone())
            .build()?;
        let options = CollectorOptions::builder()
            .interval(TICK)
            .timeout(Duration::from_secs(1))
            .up(SeriesKey::new(scope, up.clone(), Labels::new([("source", source.as_str())])?))
            .build()?;
        runner.add(Arc::new(scraper), options)?;
    }

    // The alarm engine over the store, the project's alarms (with the built-in rules), and the
    // notifications through a router with one route for everything, to the webhook.
    let engine = AlarmEngine::new(metric_store.clone() as Arc<dyn MetricReader>, clock, AlarmConfig::default())?;
    let alarms = Alarms::new(engine.clone(), store.clone(), ac.authorizer.clone());
    let project_alarms = alarms.project(admin, scope.project).await?;
    let evaluator = engine.spawn(TICK);
    let webhook = WebhookNotifier::builder("ops-hook", format!("http://{hook_addr}/hook"))
        .egress(ecp_telemetry::EgressPolicy::allow_loopback())
        .build()?;
    let router = NotificationRouter::builder().route(Route::new("everything", RouteScope::All).notifier(Arc::new(webhook))).build()?;
    let _alarm_counter = metrics.observe_alarms(&engine);
    let _series_gauge = metrics.observe_store(&metric_store, TICK);
    let notifier = spawn_notifications_counted(&engine, router, 1024, Some(metrics.clone()));

    // Wait until every service has been scraped once.
    let started = std::time::Instant::now();
    while !runner.statuses().iter().all(|s| s.collections > 0) {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(10), "the services were not scraped within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = metric_store.stats();
    println!(
        "   scraped: {} series, {} points in the metric store; {} active alarms",
        stats.series,
        stats.raw_points,
        project_alarms.active(&AlarmFilter::default())?.len()
    );

    // Polls `done` every 50 ms for at most 10 s.
    async fn wait_for<T>(what: &str, mut done: impl FnMut() -> anyhow::Result<Option<T>>) -> anyhow::Result<(T, Duration)> {
        let started = std::time::Instant::now();
        loop {
            if let Some(t) = done()? {
                return Ok((t, started.elapsed()));
            }
            anyhow::ensure!(started.elapsed() < Duration::from_secs(10), "{what} did not happen within 10 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let is_offline = |a: &ecp_telemetry::alarm::Alarm| a.name == "edge service offline";
    let notified = |prefix: &'static str| {
        let bodies = &bodies;
        move || {
            bodies()
                .into_iter()
                .find(|b| b["name"] == "edge service offline" && b["contents"].as_str().is_some_and(|c| c.starts_with(prefix)))
        }
    };

    // One service goes down: its scrapes fail, its up goes to 0, the alarm fires after two breaching evaluations.
    let (down, down_id) = &watched[0];
    down.go_offline().await;
    println!("   neuronex {down_id} at {} goes offline", down.addr());
    let (alarm, after) =
        wait_for("the 'edge service offline' alarm", || Ok(project_alarms.active(&AlarmFilter::default())?.into_iter().find(is_offline)))
            .await?;
    println!("   alarm after {after:.1?}: [{}] {:?}: {} (value {:?})", alarm.severity, alarm.name, alarm.message, alarm.value);
    if let Some(status) = runner.status(&format!("neuronex {down_id}")) {
        let error = status.last_error.unwrap_or_default();
        println!(
            "   its scraper: {} failures in a row, last error {:?}",
            status.consecutive_failures,
            error.split(": error sending").next().unwrap_or(&error)
        );
    }
    let (body, _) = wait_for("the webhook notification", || Ok(notified("edge service")())).await?;
    println!("   webhook got: {body}");

    // It comes back on the same port: one healthy evaluation recovers the alarm.
    down.go_online().await?;
    println!("   neuronex {down_id} is back on {}", down.addr());
    let (closed, after) = wait_for("the alarm's recovery", || {
        Ok(project_alarms.history(&AlarmFilter::default())?.into_iter().find(|a| a.id == alarm.id && a.closure == Some(Closure::Recovered)))
    })
    .await?;
    let closed_at = closed.closed_at.map(|t| t.strftime("%H:%M:%S%.3f").to_string()).unwrap_or_default();
    println!("   recovered after {after:.1?}: in history, closed {closed_at} ({:?})", closed.closure);
    let (body, _) = wait_for("the recovery notification", || Ok(notified("recovered: ")())).await?;
    println!("   webhook got: {body}");

    let acked = project_alarms.acknowledge(alarm.id).await?;
    println!("   acknowledged by {} (audited as alarm.acknowledge)", acked.acknowledged.map(|a| a.by).unwrap_or_default());
    let audit = ac.audit.query(admin, &ecp_core::audit::AuditQuery::default(), &PageRequest::first(1)).await?;
    if let Some(r) = audit.items.first() {
        println!("   last audit record: #{} {} {}", r.seq, r.event.operation.as_str(), r.event.resource_name.as_deref().unwrap_or("-"));
    }

    // The control plane's own metrics, in Prometheus text.
    println!("   control plane metrics (excerpt):");
    for line in metrics.encode().lines().filter(|l| {
        !l.starts_with('#')
            && (l.starts_with("ecp_tasks")
                || l.starts_with("ecp_alarms")
                || l.starts_with("ecp_notif")
                || l.starts_with("ecp_metric_store"))
    }) {
        println!("     {line}");
    }

    notifier.abort();
    evaluator.abort();
    runner.shutdown().await;
    hook_server.abort();
    Ok(())
}
