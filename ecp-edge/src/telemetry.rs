//! Edge services as telemetry sources: [`EdgeInfoCollector`] turns a service's information sync
//! (its Neuron drivers and apps, its eKuiper rules) into samples that the built-in alarm rules
//! "driver exception" and "rule exception" watch.
//!
//! Series, each with `source="edge:<service id>"`:
//!
//! | metric | labels | value |
//! |---|---|---|
//! | `neuron_node_link_state` | `node`, `role` (`driver`, `app`) | 1 connected, 0 disconnected (when the service says) |
//! | `neuron_node_running_state` | `node`, `role` | Neuron's `running`: 1 init, 2 ready, 3 running, 4 stopped |
//! | `ekuiper_rule_status` | `rule` | 1 running, 0 stopped, -1 in error (`stopped by error`, `error: ...`) |
//! | `ecp_edge_drivers` / `ecp_edge_rules` | | how many |
//!
//! Register it with a `CollectorRunner` whose `up` series is `ecp_edge_up{source="edge:<id>"}` to
//! also feed the "edge service offline" rule.

use std::sync::Arc;

use async_trait::async_trait;
use ecp_core::Timestamp;
use ecp_core::edge::EdgeService;
use ecp_telemetry::collector::{Collection, Collector, Skipped};
use ecp_telemetry::{Labels, MetricName, MetricScope, Sample};

use crate::driver::EdgeDriver;

/// Collects one edge service's driver and rule states through its driver's information sync.
#[derive(Debug)]
pub struct EdgeInfoCollector {
    name: String,
    driver: Arc<dyn EdgeDriver>,
    service: EdgeService,
    scope: MetricScope,
    source: String,
}

impl EdgeInfoCollector {
    /// A collector of `service` (of the project `scope`) through `driver`.
    pub fn new(driver: Arc<dyn EdgeDriver>, service: EdgeService, scope: MetricScope) -> Self {
        let source = format!("edge:{}", service.id());
        EdgeInfoCollector { name: format!("edge info {}", service.id()), driver, service, scope, source }
    }

    /// The `source` label of its samples (`edge:<id>`).
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// eKuiper's rule status as a number: 1 running, 0 stopped, -1 in error.
pub fn rule_status_value(status: &str) -> f64 {
    let s = status.trim().to_ascii_lowercase();
    if s.starts_with("running") {
        1.0
    } else if s.contains("error") || s.starts_with("fail") {
        -1.0
    } else {
        0.0
    }
}

fn running_value(state: &str) -> Option<f64> {
    match state {
        "init" => Some(1.0),
        "ready" => Some(2.0),
        "running" => Some(3.0),
        "stopped" => Some(4.0),
        _ => None,
    }
}

#[async_trait]
impl Collector for EdgeInfoCollector {
    fn name(&self) -> &str {
        &self.name
    }

    async fn collect(&self, now: Timestamp) -> ecp_telemetry::Result<Collection> {
        let info = self
            .driver
            .sync_info(&self.service)
            .await
            .map_err(|e| ecp_telemetry::Error::Decode { source_name: self.name.clone(), reason: crate::fleet::with_causes(&e) })?;
        let mut out = Collection::default();
        let metric = |n: &str| MetricName::new(n).unwrap_or_else(|_| unreachable!("valid metric name {n}"));
        let push = |out: &mut Collection, name: &str, labels: Vec<(&str, &str)>, value: f64| {
            let mut all = labels;
            all.push(("source", &self.source));
            match Labels::new(all) {
                Ok(l) => out.samples.push(Sample::new(self.scope, metric(name), l, now, value)),
                Err(e) => out.skipped.push(Skipped { location: name.to_string(), reason: e.to_string() }),
            }
        };
        for (role, nodes) in [("driver", &info.drivers), ("app", &info.apps)] {
            for n in nodes {
                if let Some(c) = n.connected {
                    push(&mut out, "neuron_node_link_state", vec![("node", &n.name), ("role", role)], if c { 1.0 } else { 0.0 });
                }
                if let Some(v) = n.state.as_deref().and_then(running_value) {
                    push(&mut out, "neuron_node_running_state", vec![("node", &n.name), ("role", role)], v);
                }
            }
        }
        for r in &info.rules {
            push(&mut out, "ekuiper_rule_status", vec![("rule", &r.id)], rule_status_value(&r.status));
        }
        push(&mut out, "ecp_edge_drivers", vec![], info.drivers.len() as f64);
        push(&mut out, "ecp_edge_rules", vec![], info.rules.len() as f64);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_statuses() {
        assert_eq!(rule_status_value("running"), 1.0);
        assert_eq!(rule_status_value("stopped"), 0.0);
        assert_eq!(rule_status_value("stopped: canceled manually."), 0.0);
        assert_eq!(rule_status_value("stopped by error"), -1.0);
        assert_eq!(rule_status_value("error: connection refused"), -1.0);
    }
}
