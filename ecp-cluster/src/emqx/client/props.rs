//! The client's reading of answers against mutations of EMQX's real ones: the bodies of
//! api-contracts.md §1 and of ecp-testkit's EMQX simulator (5.10 and 5.3 shapes, the quirks, every
//! error shape), mutated byte by byte and value by value.

use ecp_testkit::mutate::{self, Mutated};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use secrecy::SecretString;
use serde::de::DeserializeOwned;

use super::*;
use crate::emqx::types::{Element, LicenseReading, MetricsReading, MonitorReading, NodeReadings};

const KEY: &str = "ecp";
const SECRET: &str = "SENTINEL-emqx-s3cr3t-9c2a";

/// An answer of EMQX: its status and body (and `retry-after: 15` with a 503, as EMQX sends it).
pub(crate) struct Sample {
    pub(crate) status: u16,
    pub(crate) body: &'static str,
}

const fn sample(status: u16, body: &'static str) -> Sample {
    Sample { status, body }
}

/// EMQX 5's answers: 5.10 (the contract's and the simulator's bodies), 5.3's short ones, and the
/// error shapes (with a proxy that echoes the credentials).
pub(crate) const SAMPLES: &[Sample] = &[
    sample(
        200,
        r#"[{"node":"emqx@10.0.0.1","node_status":"running","role":"core","version":"5.10.4","edition":"Enterprise","otp_release":"27.2-3/15.2","uptime":5120000,"connections":12,"live_connections":10,"cluster_sessions":12,"load1":2.66,"load5":2.1,"load15":1.9,"max_fds":1048576,"memory_total":"7.63G","memory_used":"3.10G","process_available":2097152,"process_used":1024,"sys_path":"/opt/emqx","log_path":"/opt/emqx/log"},{"node":"emqx@10.0.0.2","node_status":"stopped","role":"core"}]"#,
    ),
    sample(
        200,
        r#"{"node":"emqx@10.0.0.3","node_status":"running","role":"replicant","version":"5.3.2","edition":"Opensource","uptime":1000,"connections":4,"live_connections":4,"load1":0.5,"max_fds":1024,"memory_total":512,"memory_used":"1.5M"}"#,
    ),
    sample(
        200,
        r#"[{"node":"emqx@10.0.0.1","connections.count":12,"connections.max":40,"live_connections.count":10,"sessions.count":12,"subscriptions.count":20,"subscriptions.shared.count":0,"topics.count":8,"retained.count":3,"durable_subscriptions.count":0}]"#,
    ),
    sample(
        200,
        r#"{"connections.count":12,"connections.max":12,"live_connections.count":12,"sessions.count":12,"subscriptions.count":24,"subscriptions.shared.count":0,"topics.count":12,"retained.count":3}"#,
    ),
    sample(
        200,
        r#"{"bytes.received":102400,"packets.sent":2000,"messages.received":1000,"messages.dropped":2,"messages.dropped.no_subscribers":2,"client.connected":12,"session.created":12,"authentication.failure":0,"authorization.deny":0,"delivery.dropped.queue_full":0,"rules.matched":0}"#,
    ),
    sample(
        200,
        r#"[{"node":"emqx@10.0.0.1","messages.received":600,"messages.sent":590},{"node":"emqx@10.0.0.2","messages.received":400}]"#,
    ),
    sample(
        200,
        r#"{"connections":12,"live_connections":10,"cluster_sessions":12,"subscriptions":20,"subscriptions_ram":20,"subscriptions_durable":0,"disconnected_durable_sessions":0,"topics":8,"shared_subscriptions":0,"retained_msg_count":3,"received_msg_rate":5,"sent_msg_rate":5,"dropped_msg_rate":0,"persisted_rate":0,"validation_succeeded_rate":0,"validation_failed_rate":0,"transformation_succeeded_rate":0,"transformation_failed_rate":0,"rules_matched_rate":0,"actions_executed_rate":0,"license_quota":1000}"#,
    ),
    sample(
        200,
        r#"{"connections":3,"live_connections":3,"subscriptions":5,"topics":2,"received_msg_rate":1,"sent_msg_rate":1,"dropped_msg_rate":0}"#,
    ),
    sample(
        200,
        r#"[{"id":"tcp:default","type":"tcp","name":"default","enable":true,"bind":"0.0.0.0:1883","acceptors":16,"number":1,"status":{"running":"inconsistent","current_connections":100,"max_connections":"infinity"},"node_status":[{"node":"emqx@10.0.0.1","status":{"running":true,"current_connections":100,"max_connections":1024000}},{"node":"emqx@10.0.0.2","status":{"running":false,"current_connections":0,"max_connections":1024000}}]}]"#,
    ),
    sample(
        200,
        r#"{"data":[{"clientid":"dev-01","username":null,"node":"emqx@10.0.0.1","connected":true,"proto_name":"MQTT","proto_ver":5,"ip_address":"127.0.0.1","port":52571,"keepalive":60,"clean_start":true,"expiry_interval":0,"created_at":"2024-01-01T12:34:56.789+08:00","connected_at":"2024-01-01T12:34:56.789+08:00","subscriptions_cnt":1,"subscriptions_max":"infinity","inflight_cnt":0,"mqueue_len":0,"recv_msg":0,"send_msg":0,"listener":"tcp:default","durable":false}],"meta":{"page":1,"limit":100,"hasnext":false,"count":1}}"#,
    ),
    sample(
        200,
        r#"{"data":[{"node":"emqx@10.0.0.1","name":"high_system_memory_usage","message":"System memory usage is higher than 70%","details":{"high_watermark":70},"duration":297056,"activate_at":"2021-10-25T11:52:52.548+08:00"}],"meta":{"page":1,"limit":100,"hasnext":true}}"#,
    ),
    sample(
        200,
        r#"{"customer":"Foo","email":"contact@foo.com","deployment":"bar-deployment","customer_type":10,"type":"trial","start_at":"2022-01-11","expiry_at":"2295-10-27","expiry":false,"max_sessions":10,"max_connections":10}"#,
    ),
    sample(200, r#"{"connection_low_watermark":"75%","connection_high_watermark":"80%","dynamic_max_connections":1000}"#),
    sample(200, r#"{"node_name":"emqx@10.0.0.1","cluster":"emqxcl","broker_status":"started","app_status":"running"}"#),
    sample(200, "Node emqx@10.0.0.1 is started\nemqx is running"),
    sample(503, "Node emqx@10.0.0.1 is started\nemqx is not_running"),
    sample(401, r#"{"code":"BAD_API_KEY_OR_SECRET","message":"Check api_key/api_secret"}"#),
    sample(
        401,
        r#"{"code":"BAD_API_KEY_OR_SECRET","message":"Basic ZWNwOlNFTlRJTkVMLWVtcXgtczNjcjN0LTljMmE= (ecp:SENTINEL-emqx-s3cr3t-9c2a) refused"}"#,
    ),
    sample(403, r#"{"code":"UNAUTHORIZED_ROLE","message":"This API Key don't have permission to access this resource"}"#),
    sample(404, r#"{"code":"NOT_FOUND","message":"Node not found: emqx@10.0.0.9"}"#),
    sample(400, r#"{"code":"INVALID_PARAMETER","message":"page_limit_invalid"}"#),
    sample(500, r#"{"code":"NODE_DOWN","message":"bad rpc call","node":"emqx@10.0.0.2"}"#),
    sample(404, "<html><body>Not Found</body></html>"),
    sample(405, ""),
];

/// The bodies of [`SAMPLES`].
pub(crate) fn bodies() -> Vec<Vec<u8>> {
    SAMPLES.iter().map(|s| s.body.as_bytes().to_vec()).collect()
}

/// A client with [`KEY`] and [`SECRET`] (never connected: only its readings are used).
fn client() -> &'static EmqxClient {
    static CLIENT: std::sync::LazyLock<EmqxClient> = std::sync::LazyLock::new(|| {
        let api = ClusterApi { base_url: "http://10.0.0.1:18083".into(), key: ApiKey::new(KEY, SecretString::from(SECRET)).unwrap() };
        EmqxClient::new(&api, &ClientOptions::default()).unwrap()
    });
    &CLIENT
}

/// What one of the client's readings made of an answer: a value (`Some`), nothing (a 404 read as
/// absent, `None`), or the error.
type Outcome = Result<Option<()>>;

fn typed<T: DeserializeOwned>(c: &EmqxClient, req: &Request, answer: &Answer, absent_on_404: bool) -> Outcome {
    c.answered(req, answer, absent_on_404, |b| c.decode::<T>(req, b)).map(|v| v.map(drop))
}

fn reading<T: DeserializeOwned>(c: &EmqxClient, req: &Request, answer: &Answer, absent_on_404: bool) -> Outcome {
    c.answered(req, answer, absent_on_404, |b| c.decode_reading::<T>(req, b)).map(|v| v.map(drop))
}

/// Every reading of the client, of `answer`: the typed answers of each call, the poller's
/// lenient readings, and `/status`'s health.
fn outcomes(c: &EmqxClient, answer: &Answer) -> Vec<(Request, Outcome)> {
    let page = PageRequest::default();
    let setting = request::put_license_setting(&LicenseSetting::connection_limit(500));
    let node = request::node("emqx@10.0.0.1").unwrap();
    let monitor = request::monitor_current(None).unwrap();
    let (nodes, stats, stats_all) = (request::nodes(), request::stats(false), request::stats(true));
    let (metrics, metrics_all) = (request::metrics(false, None), request::metrics(true, None));
    let (listeners, clients, alarms) = (request::listeners(None), request::clients(&ClientQuery::all(), page), request::alarms(None, page));
    let (license, license_setting, status) = (request::license(), request::license_setting(), request::status(true));
    let health = c.health(&status, answer).map(|h| match h {
        NodeHealth::Ready(_) => Some(()),
        NodeHealth::NotReady { .. } => None,
    });
    vec![
        (nodes.clone(), typed::<Vec<Node>>(c, &nodes, answer, false)),
        (node.clone(), typed::<Node>(c, &node, answer, false)),
        (stats.clone(), typed::<Vec<Stats>>(c, &stats, answer, false)),
        (stats_all.clone(), typed::<Stats>(c, &stats_all, answer, false)),
        (metrics.clone(), typed::<Vec<Metrics>>(c, &metrics, answer, false)),
        (metrics_all.clone(), typed::<Metrics>(c, &metrics_all, answer, false)),
        (monitor.clone(), typed::<MonitorCurrent>(c, &monitor, answer, false)),
        (listeners.clone(), typed::<Vec<ListenerInfo>>(c, &listeners, answer, false)),
        (clients.clone(), typed::<Page<ClientInfo>>(c, &clients, answer, false)),
        (alarms.clone(), typed::<Page<Alarm>>(c, &alarms, answer, false)),
        (license.clone(), typed::<License>(c, &license, answer, true)),
        (license_setting.clone(), typed::<LicenseSetting>(c, &license_setting, answer, true)),
        (setting.clone(), typed::<LicenseSetting>(c, &setting, answer, false)),
        (nodes.clone(), reading::<NodeReadings>(c, &nodes, answer, false)),
        (monitor.clone(), reading::<Element<MonitorReading>>(c, &monitor, answer, false)),
        (metrics_all.clone(), reading::<MetricsReading>(c, &metrics_all, answer, false)),
        (license.clone(), reading::<Element<LicenseReading>>(c, &license, answer, true)),
        (status, health),
    ]
}

/// Feeds the mutated body `m`, under the status of the sample it came from, to every reading of
/// the client: a 2xx answer is a value or `Decode`; a 404 of the license is nothing; a 503 of
/// `/status` is "not ready"; any other answer is `Unauthorized` (401, 403) or `Api` of its status.
/// No error is empty, and none shows the API secret or the Basic credentials.
fn check_mutated(c: &EmqxClient, m: &Mutated) -> std::result::Result<(), TestCaseError> {
    let status = SAMPLES[m.base].status;
    let answer = Answer { status, retry_after: (status == 503).then(|| Duration::from_secs(15)), body: m.bytes.clone() };
    let basic = basic_credentials(KEY, SECRET);
    let success = (200..300).contains(&status);
    for (req, outcome) in outcomes(c, &answer) {
        let endpoint = req.endpoint();
        match outcome {
            Ok(Some(())) => prop_assert!(success, "{} took a {} answer", endpoint, status),
            Ok(None) => prop_assert!(
                (status == 404 && endpoint.contains("/license")) || (status == 503 && endpoint.starts_with("GET /status")),
                "{} read a {} answer as nothing",
                endpoint,
                status
            ),
            Err(e) => {
                let shown = format!("{e} {e:?}");
                match &e {
                    Error::Decode { reason, .. } => prop_assert!(success && !reason.is_empty(), "{}", shown),
                    Error::Unauthorized { status: s, .. } => prop_assert!(matches!(status, 401 | 403) && *s == status, "{}", shown),
                    Error::Api { status: s, .. } => prop_assert!(!success && !matches!(status, 401 | 403) && *s == status, "{}", shown),
                    _ => prop_assert!(false, "not an error of an answer: {}", shown),
                }
                prop_assert!(e.to_string().starts_with(&endpoint), "{}", shown);
                prop_assert!(!shown.contains(SECRET) && !shown.contains(&basic), "the error shows the credentials: {}", shown);
            }
        }
    }
    Ok(())
}

#[test]
fn samples_are_read_as_emqx_means_them() {
    let c = client();
    let secret_echo = SAMPLES.iter().position(|s| s.body.contains(SECRET)).unwrap();
    assert!(SAMPLES[secret_echo].body.contains(&basic_credentials(KEY, SECRET)));
    for s in SAMPLES {
        let answer = Answer { status: s.status, retry_after: None, body: s.body.as_bytes().to_vec() };
        let outcomes = outcomes(c, &answer);
        let taken = outcomes.iter().filter(|(_, o)| matches!(o, Ok(Some(())))).count();
        assert_eq!(taken > 0, (200..300).contains(&s.status), "{} {}", s.status, s.body);
        check_mutated(c, &Mutated { base: SAMPLES.iter().position(|t| std::ptr::eq(t, s)).unwrap(), bytes: answer.body }).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Mutations of EMQX's answers (bytes, splices of two answers, values): see [`check_mutated`].
    #[test]
    fn mutated_answers_are_read_or_refused(m in mutate::mutated(bodies())) {
        check_mutated(client(), &m)?;
    }

    /// As above, with only JSON values moved, replaced or removed: a count where a list belongs,
    /// `"infinity"` or `null` in any field, a node without its name.
    #[test]
    fn answers_with_moved_values_are_read_or_refused(m in mutate::json_mutated(bodies())) {
        check_mutated(client(), &m)?;
    }
}
