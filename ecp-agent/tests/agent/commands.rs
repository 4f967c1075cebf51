//! The edge agent's commands without a broker ([`EdgeAgent::handle`]) against ecp-testkit's
//! simulated eKuiper (real HTTP on loopback, real state) and wiremock servers standing for other
//! hosts on the LAN: the tunnel's allow-list and path checks (no request ever leaves for a host
//! that is not a configured service), desired items applied at most once per key and version
//! (across restarts, with a state file, and after a crash mid-apply), restart commands, replies
//! too large for one message, and secrets kept out of `Debug`.

use std::time::Duration;

use ecp_agent::{
    AgentId, Credentials, EdgeAgent, EdgeAgentConfig, EdgeAgentConfigBuilder, EdgeKind, Error, LocalServiceConfig, MqttConfig,
    MqttConfigBuilder,
};
use ecp_agent_proto::proto::{self, Command, DesiredItem, ErrorCode, HttpRequest, HttpResponse, Reply};
use ecp_edge_api::ConfigChange;
use ecp_testkit::sim::{SimConfig, SimHandle, SimKind, SimService};
use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn mqtt() -> MqttConfigBuilder {
    // Never connected: these tests call `handle` directly.
    MqttConfig::builder("127.0.0.1", 1883).insecure(true)
}

/// An agent's settings with `services` and a 5 s request timeout, to finish with `build`.
fn agent_config_with(mqtt: MqttConfig, services: Vec<LocalServiceConfig>) -> EdgeAgentConfigBuilder {
    let c = EdgeAgentConfig::builder(AgentId::new("edge-test").unwrap(), mqtt).request_timeout(Duration::from_secs(5));
    services.into_iter().fold(c, EdgeAgentConfigBuilder::service)
}

fn agent_config(services: Vec<LocalServiceConfig>) -> EdgeAgentConfigBuilder {
    agent_config_with(mqtt().build().unwrap(), services)
}

fn config(services: Vec<LocalServiceConfig>) -> EdgeAgentConfig {
    agent_config(services).build().unwrap()
}

fn service(name: &str, kind: EdgeKind, url: impl Into<String>) -> LocalServiceConfig {
    LocalServiceConfig::builder(name, kind, url).build().unwrap()
}

fn restartable(name: &str, url: impl Into<String>, command: &[&str]) -> LocalServiceConfig {
    let command = command.iter().map(|&a| a.to_owned()).collect();
    LocalServiceConfig::builder(name, EdgeKind::Custom, url).restart_command(command).build().unwrap()
}

fn invalid_field(e: Error) -> String {
    match e {
        Error::InvalidInput { field, .. } => field.into_owned(),
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

async fn ekuiper() -> SimHandle {
    SimService::start(SimConfig::new(SimKind::Ekuiper)).await.unwrap()
}

fn kuiper_service(sim: &SimHandle) -> LocalServiceConfig {
    service("kuiper", EdgeKind::Ekuiper, sim.base_url())
}

fn target(sim: &SimHandle) -> String {
    format!("127.0.0.1:{}", sim.port())
}

fn get(target: &str, path: &str) -> Command {
    Command::Http(HttpRequest { target: target.into(), method: "GET".into(), path: path.into(), headers: vec![], body: None })
}

fn ok_http(reply: Reply) -> HttpResponse {
    match reply {
        Reply::Ok { result } => serde_json::from_value(result).unwrap(),
        other => panic!("expected an HTTP answer, got {other:?}"),
    }
}

fn error_code(reply: &Reply) -> Option<ErrorCode> {
    match reply {
        Reply::Error { code, .. } => Some(*code),
        Reply::Ok { .. } => None,
    }
}

fn stream(version: u64, target: &str) -> DesiredItem {
    DesiredItem {
        key: "stream:demo".into(),
        version,
        target: target.into(),
        change: ConfigChange::EkuiperStream {
            name: "demo".into(),
            sql: r#"CREATE STREAM demo () WITH (TYPE="memory", FORMAT="json")"#.into(),
        },
    }
}

fn applied(reply: Reply) -> proto::Applied {
    match reply {
        Reply::Ok { result } => serde_json::from_value(result).unwrap(),
        other => panic!("expected an outcome, got {other:?}"),
    }
}

#[tokio::test]
async fn http_to_an_allowed_target_reaches_the_service() {
    let sim = ekuiper().await;
    let agent = EdgeAgent::new(config(vec![kuiper_service(&sim)])).unwrap();
    assert_eq!(agent.allowed_targets(), vec![target(&sim)]);

    let answer = ok_http(agent.handle(get(&target(&sim), "/")).await);
    assert_eq!(answer.status, 200);
    let info: Value = serde_json::from_slice(&proto::decode_body(&answer.body).unwrap()).unwrap();
    assert!(info["version"].is_string(), "{info}");

    // A body travels base64-encoded both ways; the service's state changes.
    let sql = r#"{"sql":"CREATE STREAM tunnelled () WITH (TYPE=\"memory\", FORMAT=\"json\")"}"#;
    let create = Command::Http(HttpRequest {
        target: target(&sim),
        method: "POST".into(),
        path: "/streams".into(),
        headers: vec![("content-type".into(), "application/json".into()), ("host".into(), "evil.example".into())],
        body: Some(proto::encode_body(sql.as_bytes())),
    });
    let answer = ok_http(agent.handle(create).await);
    assert_eq!(answer.status, 201, "{:?}", String::from_utf8_lossy(&proto::decode_body(&answer.body).unwrap()));
    assert!(sim.with_ekuiper(|s| s.streams.contains_key("tunnelled")).unwrap());

    // Errors of the service come back as they are.
    let answer = ok_http(agent.handle(get(&target(&sim), "/streams/nope")).await);
    assert!(answer.status >= 400);

    // Status answers with a heartbeat that probed the service.
    let Reply::Ok { result } = agent.handle(Command::Status).await else { panic!("status") };
    assert_eq!(result["services"][0]["name"], json!("kuiper"));
    assert_eq!(result["services"][0]["up"], json!(true));

    // A service that is down is `unreachable`.
    sim.go_offline().await;
    assert_eq!(error_code(&agent.handle(get(&target(&sim), "/")).await), Some(ErrorCode::Unreachable));
}

#[tokio::test]
async fn targets_off_the_allow_list_are_forbidden_and_never_called() {
    let sim = ekuiper().await;
    let lan = MockServer::start().await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(200).set_body_string("secret")).mount(&lan).await;
    let lan_target = lan.address().to_string();
    let agent = EdgeAgent::new(config(vec![kuiper_service(&sim)])).unwrap();

    let before = sim.total_requests();
    for t in [
        lan_target.as_str(),
        "169.254.169.254:80",
        "127.0.0.1:22",
        &format!("localhost:{}", sim.port()),
        &format!("127.0.0.1:{}/", sim.port()),
        &format!("http://127.0.0.1:{}", sim.port()),
        "",
    ] {
        let reply = agent.handle(get(t, "/")).await;
        assert_eq!(error_code(&reply), Some(ErrorCode::Forbidden), "{t}: {reply:?}");
        let reply = agent.handle(Command::Restart { target: t.into() }).await;
        assert_eq!(error_code(&reply), Some(ErrorCode::Forbidden), "{t}: {reply:?}");
        let reply = agent.handle(Command::Apply(stream(1, t))).await;
        assert_eq!(error_code(&reply), Some(ErrorCode::Forbidden), "{t}: {reply:?}");
    }
    assert!(lan.received_requests().await.unwrap().is_empty());
    assert_eq!(sim.total_requests(), before);
    assert!(agent.applied().await.is_empty());
}

#[tokio::test]
async fn paths_never_leave_the_configured_host() {
    let sim = ekuiper().await;
    let lan = MockServer::start().await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(200)).mount(&lan).await;
    let evil = lan.address().to_string();
    let agent = EdgeAgent::new(config(vec![kuiper_service(&sim)])).unwrap();

    for p in [
        format!("//{evil}/x"),
        format!("@{evil}/x"),
        format!("http://{evil}/x"),
        format!("\\\\{evil}/x"),
        format!("/\\{evil}/x"),
        "/x#frag".to_owned(),
        "/a b".to_owned(),
        "/a\r\nHost: evil".to_owned(),
        String::new(),
    ] {
        let reply = agent.handle(get(&target(&sim), &p)).await;
        assert_eq!(error_code(&reply), Some(ErrorCode::BadRequest), "{p:?}: {reply:?}");
    }
    // An `@` after the first `/` is part of the path: it goes to the service, not elsewhere.
    let answer = ok_http(agent.handle(get(&target(&sim), &format!("/a@{evil}/x"))).await);
    assert_eq!(answer.status, 404);
    // Bad methods, headers and bodies are refused before anything is sent.
    let mut bad = HttpRequest { target: target(&sim), method: "G ET".into(), path: "/".into(), headers: vec![], body: None };
    assert_eq!(error_code(&agent.handle(Command::Http(bad.clone())).await), Some(ErrorCode::BadRequest));
    bad.method = "GET".into();
    bad.headers = vec![("x-a".into(), "line\nbreak".into())];
    assert_eq!(error_code(&agent.handle(Command::Http(bad.clone())).await), Some(ErrorCode::BadRequest));
    bad.headers = vec![];
    bad.body = Some("not base64!".into());
    assert_eq!(error_code(&agent.handle(Command::Http(bad)).await), Some(ErrorCode::BadRequest));

    assert!(lan.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn desired_items_apply_at_most_once_per_version() {
    let sim = ekuiper().await;
    let agent = EdgeAgent::new(config(vec![kuiper_service(&sim)])).unwrap();
    let t = target(&sim);

    let first = applied(agent.handle(Command::Apply(stream(1, &t))).await);
    assert!(first.ok, "{first:?}");
    assert_eq!((first.version, first.detail["created"].clone()), (1, json!(true)));
    assert_eq!(sim.request_count("POST", "/streams"), 1);

    // The same version again: the recorded outcome, no request.
    let total = sim.total_requests();
    let again = applied(agent.handle(Command::Apply(stream(1, &t))).await);
    assert_eq!(again, first);
    assert_eq!(sim.total_requests(), total);

    // A higher version applies again (the stream exists, so it is replaced).
    let second = applied(agent.handle(Command::Apply(stream(2, &t))).await);
    assert!(second.ok && second.version == 2, "{second:?}");
    assert_eq!((sim.request_count("POST", "/streams"), sim.request_count("PUT", "/streams/demo")), (2, 1));

    // An older version is not applied: the newer recorded outcome comes back.
    let total = sim.total_requests();
    assert_eq!(applied(agent.handle(Command::Apply(stream(1, &t))).await).version, 2);
    assert_eq!(sim.total_requests(), total);

    // A failure is recorded too, and not retried at the same version.
    let bad = DesiredItem {
        key: "rule:r".into(),
        version: 3,
        target: t.clone(),
        change: ConfigChange::EkuiperRule {
            id: "r".into(),
            name: None,
            sql: "SELECT * FROM missing_stream".into(),
            actions: vec![json!({"log": {}})],
            options: None,
        },
    };
    let failed = applied(agent.handle(Command::Apply(bad.clone())).await);
    assert!(!failed.ok, "{failed:?}");
    let total = sim.total_requests();
    assert_eq!(applied(agent.handle(Command::Apply(bad)).await), failed);
    assert_eq!(sim.total_requests(), total);
    assert_eq!(agent.stats().items_applied, 3);
    assert_eq!(agent.applied().await.len(), 2);
}

#[tokio::test]
async fn a_restarted_agent_keeps_what_it_applied_and_reports_interrupted_items() {
    let sim = ekuiper().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("agent-state.json");
    let c = agent_config(vec![kuiper_service(&sim)]).state_file(&state).build().unwrap();
    let t = target(&sim);

    let agent = EdgeAgent::new(c.clone()).unwrap();
    assert!(applied(agent.handle(Command::Apply(stream(1, &t))).await).ok);
    drop(agent);
    let file: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(file["items"]["stream:demo"]["version"], json!(1));
    assert_eq!(file["items"]["stream:demo"]["outcome"]["ok"], json!(true));

    // A new agent from the same config does not apply the recorded version again.
    let agent = EdgeAgent::new(c.clone()).unwrap();
    let total = sim.total_requests();
    let again = applied(agent.handle(Command::Apply(stream(1, &t))).await);
    assert!(again.ok && again.version == 1, "{again:?}");
    assert_eq!(sim.total_requests(), total);
    assert_eq!(sim.request_count("POST", "/streams"), 1);
    drop(agent);

    // A crash after the write-ahead mark and before the outcome: reported as interrupted, not
    // applied again; the next version applies normally.
    std::fs::write(
        &state,
        r#"{"format":1,"items":{"stream:demo":{"version":4},"rule:other":{"version":2,"outcome":{"ok":true,"detail":null}}}}"#,
    )
    .unwrap();
    let agent = EdgeAgent::new(c.clone()).unwrap();
    let recorded = agent.applied().await;
    assert_eq!((recorded["stream:demo"].ok, recorded["stream:demo"].detail.clone()), (false, json!("interrupted")));
    assert!(recorded["rule:other"].ok);
    let total = sim.total_requests();
    let interrupted = applied(agent.handle(Command::Apply(stream(4, &t))).await);
    assert_eq!((interrupted.ok, interrupted.version, interrupted.detail), (false, 4, json!("interrupted")));
    assert_eq!(sim.total_requests(), total);
    let file: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(file["items"]["stream:demo"]["outcome"]["detail"], json!("interrupted"));
    let next = applied(agent.handle(Command::Apply(stream(5, &t))).await);
    assert!(next.ok && next.version == 5, "{next:?}");
    drop(agent);

    // A state file that cannot be understood stops the agent from starting (rather than apply
    // twice).
    std::fs::write(&state, "{not json").unwrap();
    assert!(EdgeAgent::new(c).is_err());
}

#[tokio::test]
async fn restart_runs_the_configured_command_only() {
    let sim = ekuiper().await;
    let lan = MockServer::start().await;
    let no_command = kuiper_service(&sim);
    let ok = restartable("ok", lan.uri(), &["true"]);
    let c = agent_config(vec![no_command, ok]).request_timeout(Duration::from_millis(500)).build().unwrap();
    let agent = EdgeAgent::new(c).unwrap();

    let reply = agent.handle(Command::Restart { target: target(&sim) }).await;
    assert_eq!(error_code(&reply), Some(ErrorCode::Unsupported), "{reply:?}");
    let reply = agent.handle(Command::Restart { target: lan.address().to_string() }).await;
    assert_eq!(reply, Reply::Ok { result: json!({}) });

    // Failing, hanging and missing programs fail, within the request timeout.
    let other = MockServer::start().await;
    let third = MockServer::start().await;
    let fourth = MockServer::start().await;
    let c = agent_config(vec![
        restartable("fails", other.uri(), &["false"]),
        restartable("hangs", third.uri(), &["sleep", "30"]),
        restartable("missing", fourth.uri(), &["/nonexistent/restart-me"]),
    ])
    .request_timeout(Duration::from_millis(300))
    .build()
    .unwrap();
    let agent = EdgeAgent::new(c).unwrap();
    for server in [&other, &third, &fourth] {
        let started = std::time::Instant::now();
        let reply = agent.handle(Command::Restart { target: server.address().to_string() }).await;
        assert_eq!(error_code(&reply), Some(ErrorCode::Failed), "{reply:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

#[tokio::test]
async fn answers_too_large_for_one_message_are_refused() {
    let server = MockServer::start().await;
    Mock::given(path("/big")).respond_with(ResponseTemplate::new(200).set_body_bytes(vec![b'x'; 10_000])).mount(&server).await;
    Mock::given(path("/medium")).respond_with(ResponseTemplate::new(200).set_body_bytes(vec![b'x'; 3500])).mount(&server).await;
    Mock::given(path("/small")).respond_with(ResponseTemplate::new(200).set_body_bytes(vec![b'x'; 100])).mount(&server).await;
    let c = agent_config_with(mqtt().max_payload(4096).build().unwrap(), vec![service("custom", EdgeKind::Custom, server.uri())])
        .build()
        .unwrap();
    let agent = EdgeAgent::new(c).unwrap();
    let t = server.address().to_string();

    for p in ["/big", "/medium"] {
        let reply = agent.handle(get(&t, p)).await;
        let Reply::Error { code: ErrorCode::TooLarge, message } = &reply else { panic!("{p}: {reply:?}") };
        assert!(message.contains("limit") && message.contains("4096"), "{message}");
    }
    let small = ok_http(agent.handle(get(&t, "/small")).await);
    assert_eq!(proto::decode_body(&small.body).unwrap().len(), 100);
}

#[test]
fn configs_are_checked() {
    assert!(EdgeAgent::new(config(vec![])).is_ok(), "no service is fine");

    // Each service on its own.
    let s = |name: &str, url: &str| LocalServiceConfig::builder(name, EdgeKind::Custom, url);
    for (bad, field) in [
        (s("a", "ftp://127.0.0.1:1"), "service url"),
        (s("a", "127.0.0.1:1"), "service url"),
        (s("a", "http://user:pw@127.0.0.1:1"), "service url"),
        (s("", "http://127.0.0.1:1"), "name"),
        (s(" a", "http://127.0.0.1:1"), "name"),
        (s(&"x".repeat(201), "http://127.0.0.1:1"), "name"),
        (s("a", "http://127.0.0.1:1").restart_command(vec![]), "restart_command"),
        (s("a", "http://127.0.0.1:1").restart_command(vec![String::new()]), "restart_command"),
    ] {
        assert_eq!(invalid_field(bad.clone().build().unwrap_err()), field, "{bad:?}");
    }

    // Services together: names (case-insensitive) and `host:port`s are unique.
    let ok = |name: &str, url: &str| s(name, url).build().unwrap();
    for bad in [
        vec![ok("a", "http://127.0.0.1:1"), ok("a", "http://127.0.0.1:2")],
        vec![ok("a", "http://127.0.0.1:1"), ok("A", "http://127.0.0.1:2")],
        vec![ok("a", "http://127.0.0.1:80"), ok("b", "http://127.0.0.1")],
    ] {
        assert_eq!(invalid_field(agent_config(bad.clone()).build().unwrap_err()), "service", "{bad:?}");
    }

    // The agent's own settings.
    let c = || agent_config(vec![]);
    for (bad, field) in [
        (c().heartbeat(Duration::ZERO), "heartbeat"),
        (c().heartbeat(Duration::from_secs(3601)), "heartbeat"),
        (c().backoff_initial(Duration::ZERO), "backoff"),
        (c().backoff_initial(Duration::from_secs(31)), "backoff"),
        (c().buffer_capacity(0), "agent"),
        (c().max_concurrent_commands(0), "agent"),
        (c().request_timeout(Duration::ZERO), "request_timeout"),
        (c().request_timeout(Duration::from_secs(3601)), "request_timeout"),
    ] {
        assert_eq!(invalid_field(bad.build().unwrap_err()), field);
    }

    // The defaults, as documented, and what was set.
    let c = EdgeAgentConfig::builder(AgentId::new("edge-test").unwrap(), mqtt().build().unwrap()).build().unwrap();
    assert_eq!((c.agent_id().as_str(), c.topics().prefix(), c.services().len()), ("edge-test", "ecp", 0));
    assert_eq!(
        (c.heartbeat(), c.backoff_initial(), c.backoff_max()),
        (Duration::from_secs(10), Duration::from_millis(500), Duration::from_secs(30))
    );
    assert_eq!((c.buffer_capacity(), c.max_concurrent_commands(), c.request_timeout()), (1000, 16, Duration::from_secs(15)));
    assert!(c.state_file().is_none());
    assert_eq!(c.mqtt().port(), 1883);
    let svc = restartable("nx", "http://127.0.0.1:8085/api", &["systemctl", "restart", "neuronex"]);
    assert_eq!((svc.name(), svc.kind(), svc.url()), ("nx", EdgeKind::Custom, "http://127.0.0.1:8085/api"));
    assert_eq!(svc.restart_command().map(<[String]>::len), Some(3));
    assert!(matches!(svc.credentials(), Credentials::None));
}

#[test]
fn secrets_stay_out_of_debug() {
    let sentinel = "s3ntinel-secret";
    let mqtt = mqtt().credentials("edge-test", SecretString::from(sentinel.to_owned()));
    let service = LocalServiceConfig::builder("nx", EdgeKind::NeuronEx, "http://127.0.0.1:8085")
        .credentials(Credentials::Basic { username: "admin".into(), password: SecretString::from(sentinel.to_owned()) });
    let builder = EdgeAgentConfig::builder(AgentId::new("edge-test").unwrap(), mqtt.clone().build().unwrap())
        .service(service.clone().build().unwrap());
    let c = builder.clone().build().unwrap();
    let agent = EdgeAgent::new(c.clone()).unwrap();
    for text in [
        format!("{mqtt:?}"),
        format!("{service:?}"),
        format!("{builder:?}"),
        format!("{c:?}"),
        format!("{agent:?}"),
        format!("{:?}", agent.config()),
    ] {
        assert!(!text.contains(sentinel), "{text}");
    }
}
