//! Agent heartbeats as samples of the agent's project (feature `mqtt`; used by the hub).
//!
//! A heartbeat of agent `a` becomes, with `source="agent:a"` on every series:
//!
//! | series | value |
//! | --- | --- |
//! | `ecp_agent_up` | 1 (0 when the agent goes offline) |
//! | `ecp_agent_uptime_seconds` | `uptime_secs` |
//! | `ecp_agent_service_up{service, service_kind}` | 1 or 0 per service (`service_kind` from the agent's hello, when it named one) |
//! | `ecp_agent_service_latency_seconds{service, service_kind}` | `latency_ms` / 1000, when given |
//! | `ecp_agent_<key>` | each entry of `metrics` whose key is `[a-zA-Z0-9_]{1,100}` |
//!
//! At most [`MAX_SERVICES`] services and [`MAX_METRICS`] metrics of one heartbeat are taken; the
//! rest, bad keys, non-finite values and labels that do not validate are counted as skipped.

use std::collections::HashMap;

use ecp_core::Timestamp;
use ecp_telemetry::{Labels, MetricName, MetricScope, Sample};

use ecp_agent_proto::AgentId;
use ecp_agent_proto::proto::Heartbeat;

/// The most services of one heartbeat turned into samples.
pub const MAX_SERVICES: usize = 64;
/// The most `metrics` entries of one heartbeat turned into samples.
pub const MAX_METRICS: usize = 64;
/// The longest `metrics` key taken.
pub const MAX_METRIC_KEY: usize = 100;

/// The `source` label of an agent's samples.
pub(crate) fn source(agent: &AgentId) -> String {
    format!("agent:{agent}")
}

fn name(n: &str) -> Option<MetricName> {
    MetricName::new(n).ok()
}

/// `ecp_agent_up` of `agent`: 1 or 0.
pub(crate) fn up(agent: &AgentId, scope: MetricScope, time: Timestamp, up: bool) -> Option<Sample> {
    let labels = Labels::new([("source", source(agent))]).ok()?;
    Some(Sample::new(scope, name("ecp_agent_up")?, labels, time, if up { 1.0 } else { 0.0 }))
}

/// The samples of one heartbeat, and how many entries were skipped.
pub(crate) fn heartbeat(
    agent: &AgentId,
    scope: MetricScope,
    kinds: &HashMap<String, String>,
    hb: &Heartbeat,
    time: Timestamp,
) -> (Vec<Sample>, usize) {
    let mut out = Vec::with_capacity(2 + 2 * hb.services.len().min(MAX_SERVICES) + hb.metrics.len().min(MAX_METRICS));
    let mut skipped = 0;
    let src = source(agent);
    let Ok(base) = Labels::new([("source", src.as_str())]) else {
        // An agent id is at most 64 characters: its source label always validates.
        return (out, 1 + hb.services.len() + hb.metrics.len());
    };
    let push = |out: &mut Vec<Sample>, n: &str, labels: &Labels, value: f64| match name(n) {
        Some(n) if value.is_finite() => {
            out.push(Sample::new(scope, n, labels.clone(), time, value));
            0
        }
        _ => 1,
    };
    skipped += push(&mut out, "ecp_agent_up", &base, 1.0);
    skipped += push(&mut out, "ecp_agent_uptime_seconds", &base, hb.uptime_secs as f64);
    for (i, s) in hb.services.iter().enumerate() {
        if i >= MAX_SERVICES {
            skipped += hb.services.len() - MAX_SERVICES;
            break;
        }
        let mut pairs = vec![("source", src.as_str()), ("service", s.name.as_str())];
        if let Some(kind) = kinds.get(&s.name) {
            pairs.push(("service_kind", kind.as_str()));
        }
        let Ok(labels) = Labels::new(pairs) else {
            skipped += 1;
            continue;
        };
        skipped += push(&mut out, "ecp_agent_service_up", &labels, if s.up { 1.0 } else { 0.0 });
        if let Some(ms) = s.latency_ms {
            skipped += push(&mut out, "ecp_agent_service_latency_seconds", &labels, ms as f64 / 1000.0);
        }
    }
    for (i, (key, value)) in hb.metrics.iter().enumerate() {
        if i >= MAX_METRICS {
            skipped += hb.metrics.len() - MAX_METRICS;
            break;
        }
        if key.is_empty() || key.len() > MAX_METRIC_KEY || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            skipped += 1;
            continue;
        }
        skipped += push(&mut out, &format!("ecp_agent_{key}"), &base, *value);
    }
    (out, skipped)
}

/// How many samples (or skipped entries) a heartbeat makes at most: for counting those dropped.
pub(crate) fn entries(hb: &Heartbeat) -> usize {
    2 + hb.services.iter().take(MAX_SERVICES).map(|s| 1 + usize::from(s.latency_ms.is_some())).sum::<usize>()
        + hb.services.len().saturating_sub(MAX_SERVICES)
        + hb.metrics.len()
}

/// The services an agent named in its stored hello, name → kind (at most [`MAX_SERVICES`]).
pub(crate) fn service_kinds(hello: &serde_json::Value) -> HashMap<String, String> {
    let Some(services) = hello.get("services").and_then(|s| s.as_array()) else { return HashMap::new() };
    services
        .iter()
        .take(MAX_SERVICES)
        .filter_map(|s| Some((s.get("name")?.as_str()?.to_owned(), s.get("kind")?.as_str()?.to_owned())))
        .filter(|(n, k)| n.len() <= 256 && k.len() <= 64)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ecp_core::{OrgId, ProjectId};
    use proptest::prelude::*;

    use super::*;
    use ecp_agent_proto::proto::ServiceHealth;

    fn scope() -> MetricScope {
        MetricScope::new(OrgId::new(), ProjectId::new())
    }

    #[test]
    fn a_heartbeat_becomes_labelled_samples() {
        let agent = AgentId::new("gw-1").unwrap();
        let hb = Heartbeat {
            seq: 3,
            uptime_secs: 420,
            services: vec![
                ServiceHealth { name: "nx".into(), up: true, latency_ms: Some(3) },
                ServiceHealth { name: "kuiper".into(), up: false, latency_ms: None },
            ],
            metrics: BTreeMap::from([("buffered".into(), 2.0), ("bad key".into(), 1.0), ("rss_bytes".into(), 1e6)]),
        };
        let kinds = HashMap::from([("nx".to_owned(), "neuronex".to_owned())]);
        let sc = scope();
        let now = Timestamp::now();
        let (samples, skipped) = heartbeat(&agent, sc, &kinds, &hb, now);
        assert_eq!(skipped, 1);
        let got: Vec<String> = samples.iter().map(|s| format!("{} {}", s.series, s.value)).collect();
        assert_eq!(
            got,
            [
                r#"ecp_agent_up{source="agent:gw-1"} 1"#,
                r#"ecp_agent_uptime_seconds{source="agent:gw-1"} 420"#,
                r#"ecp_agent_service_up{service="nx",service_kind="neuronex",source="agent:gw-1"} 1"#,
                r#"ecp_agent_service_latency_seconds{service="nx",service_kind="neuronex",source="agent:gw-1"} 0.003"#,
                r#"ecp_agent_service_up{service="kuiper",source="agent:gw-1"} 0"#,
                r#"ecp_agent_buffered{source="agent:gw-1"} 2"#,
                r#"ecp_agent_rss_bytes{source="agent:gw-1"} 1000000"#,
            ]
        );
        assert!(samples.iter().all(|s| s.series.scope == sc && s.time == now));
    }

    #[test]
    fn service_kinds_come_from_the_stored_hello() {
        let hello = serde_json::json!({"services":[{"name":"nx","kind":"neuronex","url":"http://x"},{"name":7},{"kind":"x"}]});
        assert_eq!(service_kinds(&hello), HashMap::from([("nx".to_owned(), "neuronex".to_owned())]));
        assert!(service_kinds(&serde_json::json!(null)).is_empty());
        assert!(service_kinds(&serde_json::json!({"services":"no"})).is_empty());
    }

    proptest! {
        /// Whatever an agent puts in its heartbeat, conversion never panics, stays within the
        /// caps, and every entry is either a sample or counted as skipped.
        #[test]
        fn hostile_heartbeats_are_bounded(
            services in proptest::collection::vec((".{0,40}", any::<bool>(), proptest::option::of(any::<u64>())), 0..100),
            metrics in proptest::collection::btree_map(".{0,120}", any::<f64>(), 0..100),
        ) {
            let agent = AgentId::new("a").unwrap();
            let n_services = services.len();
            let n_metrics = metrics.len();
            let hb = Heartbeat {
                seq: 0,
                uptime_secs: 1,
                services: services.into_iter().map(|(name, up, latency_ms)| ServiceHealth { name, up, latency_ms }).collect(),
                metrics,
            };
            let (samples, skipped) = heartbeat(&agent, scope(), &HashMap::new(), &hb, Timestamp::now());
            prop_assert!(samples.len() <= 2 + 2 * MAX_SERVICES + MAX_METRICS);
            prop_assert!(samples.iter().all(|s| s.value.is_finite() && s.series.labels.get("source") == Some("agent:a")));
            let metric_samples = samples.iter().filter(|s| !s.series.name.as_str().starts_with("ecp_agent_service_")
                && s.series.name.as_str() != "ecp_agent_up" && s.series.name.as_str() != "ecp_agent_uptime_seconds").count();
            let service_up = samples.iter().filter(|s| s.series.name.as_str() == "ecp_agent_service_up").count();
            prop_assert_eq!(metric_samples + service_up + skipped, n_metrics + n_services);
        }
    }
}
