//! Handler of `/metrics`: Prometheus text, with the family headers repeated per node.

use std::fmt::Write as _;

use http::StatusCode;
use http::header::{CONTENT_TYPE, HeaderName};

use crate::sim::reply::{self, SimRequest};
use crate::sim::token::lock;

use super::{Ctx, Reply, error};
use super::{NeuronNode, NodeRunState, NodeType};

pub(super) fn metrics(ctx: &Ctx<'_>, req: &SimRequest) -> Reply {
    let category = req.query("category").unwrap_or("");
    let (global, node_type) = match category {
        "" => (true, None),
        "global" => (true, Some(None)),
        "driver" => (false, Some(Some(NodeType::Driver))),
        "app" => (false, Some(Some(NodeType::App))),
        _ => return Err(error(1003)),
    };
    let state = lock(ctx.state);
    let node_filter = req.query("node").filter(|n| !n.is_empty());
    if let Some(n) = node_filter
        && !state.nodes.contains_key(n)
    {
        return Err(error(2003));
    }
    let mut out = String::new();
    if global && node_filter.is_none() {
        let count = |t: NodeType, pred: &dyn Fn(&NeuronNode) -> bool| state.nodes.values().filter(|n| n.node_type == t && pred(n)).count();
        let gauges: [(&str, &str, String); 12] = [
            ("core_dumped", "Whether there is any core dump, 0 or 1", "0".into()),
            ("uptime_seconds", "Uptime in seconds", ctx.shared.started.elapsed().as_secs().to_string()),
            ("north_nodes_total", "Number of north nodes", count(NodeType::App, &|_| true).to_string()),
            (
                "north_running_nodes_total",
                "Number of north nodes in running state",
                count(NodeType::App, &|n| n.state == NodeRunState::Running).to_string(),
            ),
            ("north_disconnected_nodes_total", "Number of north nodes disconnected", count(NodeType::App, &|n| !n.connected).to_string()),
            ("south_nodes_total", "Number of south nodes", count(NodeType::Driver, &|_| true).to_string()),
            (
                "south_running_nodes_total",
                "Number of south nodes in running state",
                count(NodeType::Driver, &|n| n.state == NodeRunState::Running).to_string(),
            ),
            (
                "south_disconnected_nodes_total",
                "Number of south nodes disconnected",
                count(NodeType::Driver, &|n| !n.connected).to_string(),
            ),
            ("cpu_percent", "Total CPU utilisation percentage", "0".into()),
            ("cpu_cores", "Number of CPU cores", "2".into()),
            ("mem_total_bytes", "Total installed memory in bytes", "25769803776".into()),
            ("mem_used_bytes", "Total used memory in bytes", "1073741824".into()),
        ];
        for (name, help, value) in gauges {
            let kind = if name == "uptime_seconds" { "counter" } else { "gauge" };
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
        }
    }
    if node_type != Some(None) {
        // One block per node, each with its own HELP/TYPE lines: the repeated family headers that
        // strict Prometheus parsers reject (reference §8).
        for n in state.nodes.values() {
            if node_filter.is_some_and(|f| f != n.name) || node_type.flatten().is_some_and(|t| t != n.node_type) {
                continue;
            }
            let label = format!("node=\"{}\"", n.name);
            let mut family = |name: &str, kind: &str, help: &str, value: String| {
                let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{{label}}} {value}\n");
            };
            family("node_type", "gauge", "Driver(1) or APP(2)", n.node_type.code().to_string());
            family("node_running_state", "gauge", "Node running state", n.state.code().to_string());
            family("node_link_state", "gauge", "Node link state", u8::from(n.connected).to_string());
            family("last_rtt_ms", "gauge", "Last request round trip time in milliseconds", n.rtt_ms.to_string());
            family("send_msgs_total", "counter", "Total number of messages sent", "0".into());
            if n.node_type == NodeType::Driver {
                family("tag_reads_total", "counter", "Total number of tag reads including errors", "0".into());
                family("tag_read_errors_total", "counter", "Total number of tag read errors", "0".into());
                for (g, grp) in &n.groups {
                    let _ = write!(
                        out,
                        "# HELP group_tags_total Total number of tags in the group\n# TYPE group_tags_total gauge\n\
                         group_tags_total{{{label},group=\"{g}\"}} {}\n",
                        grp.tags.len()
                    );
                }
            }
        }
    }
    Ok(reply::respond(StatusCode::OK, &[(CONTENT_TYPE, "text/plain"), (HeaderName::from_static("access-control-allow-origin"), "*")], out))
}
