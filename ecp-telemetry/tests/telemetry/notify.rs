//! Notifiers against real servers on loopback: webhooks against an axum receiver started here,
//! email against the SMTP sink of ecp-testkit; and the router's routing.

use std::sync::Arc;

use async_trait::async_trait;
use ecp_core::{OrgId, ProjectId, Timestamp};
use ecp_telemetry::notify::{Notification, NotificationRouter, Notifier, Route, RouteScope};
use ecp_telemetry::{Error, MetricScope, Result, Severity};
use parking_lot::Mutex;

#[cfg(any(feature = "webhook", feature = "email"))]
const SENTINEL: &str = "SENTINEL-0b5c9e-secret";

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn notification(severity: Severity, tags: &[&str]) -> Notification {
    let scope = MetricScope::new(OrgId::new(), ProjectId::new());
    Notification::new(scope, "edge offline", "NeuronEX \"line-1\" stopped\nlast seen 10.0.0.7", severity, at("2026-03-01T12:00:00Z"))
        .with_tags(tags.iter().copied())
        .with_link("https://ecp.example.com/alarms/1")
        .with_address("10.0.0.7:7000")
}

// ---------------------------------------------------------------------------------------------
// A notifier of the test's own, for routing

#[derive(Debug)]
struct Recording {
    name: String,
    fail: bool,
    got: Mutex<Vec<uuid::Uuid>>,
}

impl Recording {
    fn new(name: &str, fail: bool) -> Arc<Self> {
        Arc::new(Recording { name: name.into(), fail, got: Mutex::new(Vec::new()) })
    }
    fn count(&self) -> usize {
        self.got.lock().len()
    }
}

#[async_trait]
impl Notifier for Recording {
    fn name(&self) -> &str {
        &self.name
    }
    async fn notify(&self, n: &Notification) -> Result<()> {
        self.got.lock().push(n.id);
        if self.fail { Err(Error::Notify { notifier: self.name.clone(), attempts: 1, reason: "refused".into() }) } else { Ok(()) }
    }
}

#[tokio::test]
async fn router_routes_by_tag_and_severity_and_sends_once_per_notifier() {
    let line1 = Recording::new("line1", false);
    let everyone = Recording::new("everyone", false);
    let line2_critical = Recording::new("line2-critical", false);
    let router = NotificationRouter::builder()
        .route(Route::new("line 1", RouteScope::tags(["line1"])).notifier(line1.clone()).notifier(everyone.clone()))
        .route(Route::new("all", RouteScope::All).notifier(everyone.clone()))
        .route(Route::new("line 2 pager", RouteScope::tags(["line2", "line3"])).notifier(line2_critical.clone()).critical_only(true))
        .build()
        .unwrap();

    let report = router.deliver(&notification(Severity::Normal, &["line1"])).await;
    assert_eq!((report.sent(), report.failed()), (2, 0));
    assert_eq!((line1.count(), everyone.count(), line2_critical.count()), (1, 1, 0), "a notifier on two routes is used once");
    let shared = report.outcomes().iter().find(|o| o.notifier() == "everyone").unwrap();
    assert_eq!(shared.routes(), ["line 1", "all"]);

    // normal on line2: critical_only keeps the pager quiet
    let report = router.deliver(&notification(Severity::Normal, &["line2"])).await;
    assert_eq!(report.sent(), 1);
    assert_eq!(line2_critical.count(), 0);

    let n = notification(Severity::Critical, &["line3", "other"]);
    let report = router.deliver(&n).await;
    assert_eq!(report.notification_id(), n.id);
    assert_eq!(report.sent(), 2);
    assert_eq!((line1.count(), everyone.count(), line2_critical.count()), (1, 3, 1));
    assert_eq!(line2_critical.got.lock()[0], n.id);
}

#[tokio::test]
async fn router_reports_failures_and_unrouted_notifications() {
    let ok = Recording::new("ok", false);
    let bad = Recording::new("bad", true);
    let router = NotificationRouter::builder()
        .route(Route::new("ops", RouteScope::tags(["prod"])).notifier(ok.clone()).notifier(bad.clone()))
        .build()
        .unwrap();
    let report = router.deliver(&notification(Severity::Critical, &["prod"])).await;
    assert_eq!((report.sent(), report.failed()), (1, 1));
    let failures: Vec<_> = report.failures().collect();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].0, "bad");
    assert!(matches!(failures[0].1, Error::Notify { .. }));

    let report = router.deliver(&notification(Severity::Critical, &["staging"])).await;
    assert!(report.is_unrouted());
    assert_eq!((report.sent(), report.failed()), (0, 0));
}

#[test]
fn router_validates_its_routes() {
    let n = Recording::new("n", false);
    assert!(NotificationRouter::builder().route(Route::new("a", RouteScope::All)).build().is_err(), "no notifier");
    assert!(
        NotificationRouter::builder().route(Route::new("a", RouteScope::tags(Vec::<String>::new())).notifier(n.clone())).build().is_err(),
        "no tag"
    );
    assert!(NotificationRouter::builder().route(Route::new(" ", RouteScope::All).notifier(n.clone())).build().is_err(), "no name");
    let e = NotificationRouter::builder()
        .route(Route::new("a", RouteScope::All).notifier(n.clone()))
        .route(Route::new("a", RouteScope::All).notifier(n.clone()))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("two routes"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Webhooks against a real HTTP receiver

#[cfg(feature = "webhook")]
mod webhook {
    use std::collections::VecDeque;
    use std::net::SocketAddr;
    use std::time::Duration;

    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use ecp_core::ManualClock;
    use ecp_telemetry::notify::webhook::WebhookNotifier;

    use super::*;

    #[derive(Default)]
    struct Receiver {
        requests: Mutex<Vec<(HeaderMap, String)>>,
        /// Statuses to answer, in order; 200 once they are used up.
        script: Mutex<VecDeque<u16>>,
        delay: Mutex<Option<Duration>>,
    }

    async fn handle(State(rx): State<Arc<Receiver>>, headers: HeaderMap, body: String) -> StatusCode {
        rx.requests.lock().push((headers, body));
        let delay = *rx.delay.lock();
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        let status = rx.script.lock().pop_front().unwrap_or(200);
        StatusCode::from_u16(status).unwrap()
    }

    async fn receiver(script: &[u16]) -> (Arc<Receiver>, String) {
        let rx = Arc::new(Receiver::default());
        rx.script.lock().extend(script.iter().copied());
        let app = axum::Router::new().route("/hook", axum::routing::post(handle)).with_state(rx.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (rx, format!("http://{addr}/hook"))
    }

    #[tokio::test]
    async fn renders_the_template_and_sends_the_headers() {
        let (rx, url) = receiver(&[]).await;
        let clock = ManualClock::new(at("2026-03-01T12:00:05Z"));
        let hook = WebhookNotifier::builder("ops-hook", url).egress(ecp_telemetry::EgressPolicy::allow_loopback())
            .header("X-Token", SENTINEL.into())
            .header("Authorization", "Bearer abc".into())
            .template(r#"{"msg_type": "text", "content": {"text": "[${level}] ${name}: ${contents}"}, "at": "${alerttime}", "now": "${systemtime}", "where": "${address}", "see": "${link}"}"#)
            .clock(Arc::new(clock))
            .build()
            .unwrap();
        let n = notification(Severity::Critical, &[]);
        hook.notify(&n).await.unwrap();

        let requests = rx.requests.lock();
        assert_eq!(requests.len(), 1);
        let (headers, body) = &requests[0];
        assert_eq!(headers["x-token"], SENTINEL);
        assert_eq!(headers["authorization"], "Bearer abc");
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["x-ecp-notification-id"], n.id.to_string().as_str());
        let v: serde_json::Value = serde_json::from_str(body).expect("valid JSON");
        assert_eq!(v["content"]["text"], format!("[critical] edge offline: {}", n.contents));
        assert_eq!(v["at"], "2026-03-01T12:00:00Z");
        assert_eq!(v["now"], "2026-03-01T12:00:05Z");
        assert_eq!(v["where"], "10.0.0.7:7000");
        assert_eq!(v["see"], "https://ecp.example.com/alarms/1");
    }

    #[tokio::test]
    async fn the_default_template_stays_valid_json_whatever_the_contents() {
        let (rx, url) = receiver(&[]).await;
        let hook = WebhookNotifier::builder("hook", url).egress(ecp_telemetry::EgressPolicy::allow_loopback()).build().unwrap();
        let mut n = notification(Severity::Normal, &[]);
        n.contents = "quotes \" and \\ backslashes\r\nnew lines\t tabs \u{0} nul } ${name} 中文".into();
        n.link = None;
        hook.notify(&n).await.unwrap();
        let body = rx.requests.lock()[0].1.clone();
        let v: serde_json::Value = serde_json::from_str(&body).expect("valid JSON");
        assert_eq!(v["contents"], n.contents.as_str());
        assert_eq!(v["level"], "normal");
        assert_eq!(v["link"], "");
        assert_eq!(v["name"], "edge offline");
    }

    #[tokio::test]
    async fn retries_until_the_receiver_recovers() {
        let (rx, url) = receiver(&[503, 500]).await;
        let hook = WebhookNotifier::builder("hook", url)
            .egress(ecp_telemetry::EgressPolicy::allow_loopback())
            .attempts(3)
            .base_delay(Duration::from_millis(10))
            .build()
            .unwrap();
        hook.notify(&notification(Severity::Critical, &[])).await.unwrap();
        let requests = rx.requests.lock();
        assert_eq!(requests.len(), 3);
        assert_eq!(requests[0].0["x-ecp-notification-id"], requests[2].0["x-ecp-notification-id"], "the same id on each attempt");
    }

    #[tokio::test]
    async fn gives_up_after_its_attempts() {
        let (rx, url) = receiver(&[500, 429, 408, 500]).await;
        let hook = WebhookNotifier::builder("hook", url)
            .egress(ecp_telemetry::EgressPolicy::allow_loopback())
            .attempts(3)
            .base_delay(Duration::from_millis(5))
            .build()
            .unwrap();
        let e = hook.notify(&notification(Severity::Critical, &[])).await.unwrap_err();
        match &e {
            Error::Notify { notifier, attempts, reason } => {
                assert_eq!((notifier.as_str(), *attempts), ("hook", 3));
                assert!(reason.contains("408"), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(rx.requests.lock().len(), 3);
    }

    #[tokio::test]
    async fn a_400_is_not_retried() {
        let (rx, url) = receiver(&[400]).await;
        let hook = WebhookNotifier::builder("hook", url)
            .egress(ecp_telemetry::EgressPolicy::allow_loopback())
            .attempts(5)
            .base_delay(Duration::from_millis(5))
            .build()
            .unwrap();
        let e = hook.notify(&notification(Severity::Critical, &[])).await.unwrap_err();
        assert!(matches!(&e, Error::Notify { attempts: 1, reason, .. } if reason.contains("400")), "{e:?}");
        assert_eq!(rx.requests.lock().len(), 1);
    }

    #[tokio::test]
    async fn a_slow_receiver_times_out() {
        let (rx, url) = receiver(&[]).await;
        *rx.delay.lock() = Some(Duration::from_secs(5));
        let hook = WebhookNotifier::builder("hook", url)
            .egress(ecp_telemetry::EgressPolicy::allow_loopback())
            .timeout(Duration::from_millis(100))
            .attempts(2)
            .base_delay(Duration::from_millis(5))
            .build()
            .unwrap();
        let e = hook.notify(&notification(Severity::Critical, &[])).await.unwrap_err();
        assert!(matches!(&e, Error::Notify { attempts: 2, reason, .. } if reason.contains("no answer within")), "{e:?}");
    }

    #[tokio::test]
    async fn an_unreachable_url_fails_without_leaking_secrets() {
        // A port that was free a moment ago: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}/hooks/{SENTINEL}?access_token={SENTINEL}");
        let builder = WebhookNotifier::builder("hook", url)
            .egress(ecp_telemetry::EgressPolicy::allow_loopback())
            .header("X-Token", SENTINEL.into())
            .attempts(2)
            .base_delay(Duration::from_millis(5));
        assert!(!format!("{builder:?}").contains(SENTINEL));
        let hook = builder.build().unwrap();
        let debug = format!("{hook:?}");
        assert!(!debug.contains(SENTINEL) && debug.contains("x-token"), "{debug}");

        let e = hook.notify(&notification(Severity::Critical, &[])).await.unwrap_err();
        assert!(matches!(e, Error::Notify { attempts: 2, .. }), "{e:?}");
        for text in [e.to_string(), format!("{e:?}")] {
            assert!(!text.contains(SENTINEL), "{text}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Email against the SMTP sink

#[cfg(feature = "email")]
mod email {
    use std::time::Duration;

    use ecp_core::ManualClock;
    use ecp_telemetry::notify::email::{EmailNotifier, SmtpTls};
    use ecp_testkit::smtp::SmtpSink;
    use secrecy::SecretString;

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn delivers_to_every_recipient_with_subject_and_body_rendered() {
        let sink = SmtpSink::start().await.unwrap();
        let clock = ManualClock::new(at("2026-03-01T12:00:05Z"));
        let mail = EmailNotifier::builder("ops-mail", sink.host(), "ECP Alarms <alarms@ecp.example.com>")
            .port(sink.port())
            .tls(SmtpTls::None)
            .recipients(["alice@example.com", "Bob <bob@example.com>", "carol@example.org"])
            .subject("[${level}] ${name} on ${address}")
            .body("${contents}\nfired ${alerttime}, sent ${systemtime}\n${link}\n.starts with a dot\n")
            .clock(Arc::new(clock))
            .build()
            .unwrap();
        let n = notification(Severity::Critical, &[]);
        mail.notify(&n).await.unwrap();

        let messages = sink.wait_for(1, WAIT).await.unwrap();
        assert_eq!(messages.len(), 1);
        let m = &messages[0];
        assert_eq!(m.from, "alarms@ecp.example.com");
        assert_eq!(m.recipients, ["alice@example.com", "bob@example.com", "carol@example.org"]);
        assert_eq!(m.authenticated_as, None);
        assert_eq!(m.header("Subject").as_deref(), Some("[critical] edge offline on 10.0.0.7:7000"));
        let to = m.header("To").unwrap();
        for r in ["alice@example.com", "bob@example.com", "carol@example.org"] {
            assert!(to.contains(r), "{to}");
        }
        assert_eq!(m.header("Message-ID"), Some(format!("<{}@ecp.example.com>", n.id)));
        let body = m.body().replace("\r\n", "\n");
        let expected = format!(
            "{}\nfired 2026-03-01T12:00:00Z, sent 2026-03-01T12:00:05Z\nhttps://ecp.example.com/alarms/1\n.starts with a dot\n",
            n.contents
        );
        // lettre ends the data with a CRLF of its own before the final `.` line
        assert_eq!(body.trim_end_matches('\n'), expected.trim_end_matches('\n'));
    }

    #[tokio::test]
    async fn logs_in_with_the_right_password_and_fails_clearly_with_a_wrong_one() {
        let sink = SmtpSink::builder().credentials("alerts@ecp.example.com", SENTINEL).start().await.unwrap();
        let builder = |password: &str| {
            EmailNotifier::builder("ops-mail", sink.host(), "alerts@ecp.example.com")
                .port(sink.port())
                .tls(SmtpTls::None)
                .credentials("alerts@ecp.example.com", SecretString::from(password))
                .recipient("oncall@example.com")
                .timeout(Duration::from_secs(5))
        };
        let good = builder(SENTINEL).build().unwrap();
        assert!(!format!("{good:?}").contains(SENTINEL));
        good.notify(&notification(Severity::Critical, &[])).await.unwrap();
        let messages = sink.wait_for(1, WAIT).await.unwrap();
        assert_eq!(messages[0].authenticated_as.as_deref(), Some("alerts@ecp.example.com"));

        let wrong_password = format!("{SENTINEL}-wrong");
        let bad = builder(&wrong_password).build().unwrap();
        let e = bad.notify(&notification(Severity::Critical, &[])).await.unwrap_err();
        match &e {
            Error::Notify { notifier, attempts, reason } => {
                assert_eq!((notifier.as_str(), *attempts), ("ops-mail", 1), "a refused login is not retried");
                assert!(reason.contains("refused the credentials") && reason.contains("535"), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
        for text in [e.to_string(), format!("{e:?}"), format!("{bad:?}")] {
            assert!(!text.contains(SENTINEL), "{text}");
        }
        assert_eq!(sink.auth_failures(), 1);
        assert_eq!(sink.messages().len(), 1);
    }

    /// A CA, and a certificate for localhost signed by it: (ca, cert, key) PEM.
    fn certificates() -> (String, String, String) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
        (ca.pem(), cert.pem(), key.serialize_pem())
    }

    #[tokio::test]
    async fn implicit_tls_with_a_private_ca_and_an_untrusted_server_is_refused() {
        let (ca, cert, key) = certificates();
        let sink = SmtpSink::builder().implicit_tls(cert, key).credentials("u", SENTINEL).start().await.unwrap();
        let builder = || {
            EmailNotifier::builder("tls-mail", "localhost", "a@example.com")
                .port(sink.port())
                .tls(SmtpTls::Implicit)
                .credentials("u", SecretString::from(SENTINEL))
                .recipient("b@example.com")
                .attempts(1)
                .timeout(Duration::from_secs(5))
        };
        builder().root_certificate_pem(ca).build().unwrap().notify(&notification(Severity::Critical, &[])).await.unwrap();
        let messages = sink.wait_for(1, WAIT).await.unwrap();
        assert_eq!(messages[0].authenticated_as.as_deref(), Some("u"));

        let (other_ca, _, _) = certificates();
        let e = builder().root_certificate_pem(other_ca).build().unwrap().notify(&notification(Severity::Critical, &[])).await.unwrap_err();
        assert!(matches!(&e, Error::Notify { attempts: 1, reason, .. } if reason.contains("TLS") && reason.contains("certificate")), "{e}");
        assert!(builder().root_certificate_pem("not pem").build().is_err());
    }

    #[tokio::test]
    async fn starttls_with_a_private_ca() {
        let (ca, cert, key) = certificates();
        let sink = SmtpSink::builder().starttls(cert, key).start().await.unwrap();
        let mail = EmailNotifier::builder("starttls-mail", "localhost", "a@example.com")
            .port(sink.port())
            .tls(SmtpTls::StartTls)
            .root_certificate_pem(ca)
            .recipient("b@example.com")
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        mail.notify(&notification(Severity::Critical, &[])).await.unwrap();
        assert_eq!(sink.wait_for(1, WAIT).await.unwrap()[0].recipients, ["b@example.com"]);

        // a server that does not offer STARTTLS is refused rather than spoken to in the clear
        let plain = SmtpSink::start().await.unwrap();
        let (ca, _, _) = certificates();
        let mail = EmailNotifier::builder("starttls-mail", "localhost", "a@example.com")
            .port(plain.port())
            .tls(SmtpTls::StartTls)
            .root_certificate_pem(ca)
            .recipient("b@example.com")
            .build()
            .unwrap();
        assert!(matches!(mail.notify(&notification(Severity::Critical, &[])).await, Err(Error::Notify { attempts: 1, .. })));
        assert!(plain.messages().is_empty());
    }

    #[tokio::test]
    async fn an_unreachable_server_fails_with_a_notify_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mail = EmailNotifier::builder("mail", "127.0.0.1", "a@example.com")
            .port(port)
            .tls(SmtpTls::None)
            .recipient("b@example.com")
            .attempts(2)
            .base_delay(Duration::from_millis(5))
            .build()
            .unwrap();
        let e = mail.notify(&notification(Severity::Normal, &[])).await.unwrap_err();
        assert!(matches!(e, Error::Notify { attempts: 2, .. }), "{e:?}");
    }

    #[test]
    fn build_refuses_more_than_ten_recipients_and_bad_addresses() {
        let with = |n: usize| {
            EmailNotifier::builder("mail", "smtp.example.com", "a@example.com")
                .recipients((0..n).map(|i| format!("user{i}@example.com")))
                .build()
        };
        with(10).unwrap();
        let e = with(11).unwrap_err().to_string();
        assert!(e.contains("1 to 10"), "{e}");
        assert!(with(0).is_err());
        let b = || EmailNotifier::builder("mail", "smtp.example.com", "a@example.com");
        assert!(b().recipient("not an address").build().is_err());
        assert!(b().recipient("x@example.com").recipient("X@example.com").build().is_err(), "a recipient twice");
        assert!(EmailNotifier::builder("mail", "smtp.example.com", "nope").recipient("x@example.com").build().is_err());
        assert!(b().recipient("x@example.com").subject("${oops}").build().is_err());
        assert!(b().recipient("x@example.com").port(0).build().is_err());
    }
}
