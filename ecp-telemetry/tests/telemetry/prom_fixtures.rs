//! The parser on bodies shaped like the products print them (api-contracts.md §1, §3, §5, §8).

use ecp_core::{OrgId, ProjectId, Timestamp};
use ecp_telemetry::prom::{self, MetricKind, ParseLimits, ParsedExposition};
use ecp_telemetry::{Labels, MetricScope};

/// EMQX 5 `GET /api/v5/prometheus/stats?mode=all_nodes_unaggregated`: prometheus.erl prints
/// `# TYPE` lines (and `# HELP` only where the metric has a help text), one `node` label per
/// sample in this mode.
pub(crate) const EMQX_UNAGGREGATED: &str = r#"# TYPE emqx_connections_count gauge
emqx_connections_count{node="emqx@10.0.0.1"} 12
emqx_connections_count{node="emqx@10.0.0.2"} 7
# TYPE emqx_connections_max gauge
emqx_connections_max{node="emqx@10.0.0.1"} 40
emqx_connections_max{node="emqx@10.0.0.2"} 31
# TYPE emqx_live_connections_count gauge
emqx_live_connections_count{node="emqx@10.0.0.1"} 10
emqx_live_connections_count{node="emqx@10.0.0.2"} 7
# TYPE emqx_sessions_count gauge
emqx_sessions_count{node="emqx@10.0.0.1"} 12
emqx_sessions_count{node="emqx@10.0.0.2"} 7
# TYPE emqx_topics_count gauge
emqx_topics_count{node="emqx@10.0.0.1"} 8
emqx_topics_count{node="emqx@10.0.0.2"} 8
# TYPE emqx_retained_count gauge
emqx_retained_count{node="emqx@10.0.0.1"} 3
emqx_retained_count{node="emqx@10.0.0.2"} 3
# TYPE emqx_vm_cpu_use gauge
emqx_vm_cpu_use{node="emqx@10.0.0.1"} 12.029950083194677
emqx_vm_cpu_use{node="emqx@10.0.0.2"} 3.5
# TYPE emqx_vm_cpu_idle gauge
emqx_vm_cpu_idle{node="emqx@10.0.0.1"} 87.97004991680532
emqx_vm_cpu_idle{node="emqx@10.0.0.2"} 96.5
# TYPE emqx_vm_used_memory gauge
emqx_vm_used_memory{node="emqx@10.0.0.1"} 3328599654
emqx_vm_used_memory{node="emqx@10.0.0.2"} 2100293632
# TYPE emqx_cluster_nodes_running gauge
emqx_cluster_nodes_running{node="emqx@10.0.0.1"} 2
emqx_cluster_nodes_running{node="emqx@10.0.0.2"} 2
# TYPE emqx_cluster_nodes_stopped gauge
emqx_cluster_nodes_stopped{node="emqx@10.0.0.1"} 0
emqx_cluster_nodes_stopped{node="emqx@10.0.0.2"} 0
# TYPE emqx_messages_received counter
emqx_messages_received{node="emqx@10.0.0.1"} 48213
emqx_messages_received{node="emqx@10.0.0.2"} 1190
# TYPE emqx_messages_dropped counter
emqx_messages_dropped{node="emqx@10.0.0.1"} 17
emqx_messages_dropped{node="emqx@10.0.0.2"} 0
# HELP emqx_cert_expiry_at Certificate expiry time, seconds since the Unix epoch
# TYPE emqx_cert_expiry_at gauge
emqx_cert_expiry_at{listener_type="ssl",listener_name="default",node="emqx@10.0.0.1"} 1798761600
emqx_cert_expiry_at{listener_type="ssl",listener_name="default",node="emqx@10.0.0.2"} 1798761600
"#;

/// EMQX `GET /api/v5/prometheus/stats` (the default mode, no `node` label).
pub(crate) const EMQX_NODE: &str = "# TYPE emqx_connections_count gauge\nemqx_connections_count 19\n# TYPE emqx_vm_cpu_use gauge\nemqx_vm_cpu_use 100.0\n# TYPE emqx_cluster_nodes_running gauge\nemqx_cluster_nodes_running 2\n";

/// Neuron 2.x `GET /api/v2/metrics` (every category): the global block, then `node_type` and
/// the registered per-node metrics. `# HELP mem_cache` and `# TYPE mem_cache` head a sample named
/// `mem_cache_bytes`, which so has no TYPE line (metric_handle.c prints it this way).
pub(crate) const NEURON_ALL: &str = r#"# HELP os_info OS distro and kernel version
# TYPE os_info gauge
os_info{version="Ubuntu 22.04.4 LTS"} 0
os_info{kernel="5.15.0-105-generic"} 0
# HELP cpu_percent Total CPU utilisation percentage
# TYPE cpu_percent gauge
cpu_percent 7
# HELP cpu_cores Number of CPU cores
# TYPE cpu_cores counter
cpu_cores 4
# HELP mem_total_bytes Total installed memory in bytes
# TYPE mem_total_bytes counter
mem_total_bytes 8133414912
# HELP mem_used_bytes Used memory in bytes
# TYPE mem_used_bytes gauge
mem_used_bytes 2904072192
# HELP mem_cache Memory buffer/cache size in bytes
# TYPE mem_cache gauge
mem_cache_bytes 3290501120
# HELP rss_bytes RSS (Resident Set Size) in bytes
# TYPE rss_bytes gauge
rss_bytes 2904072192
# HELP disk_size_gibibytes Disk size in gibibytes
# TYPE disk_size_gibibytes counter
disk_size_gibibytes 97
# HELP disk_used_gibibytes Used disk size in gibibytes
# TYPE disk_used_gibibytes gauge
disk_used_gibibytes 41
# HELP disk_avail_gibibytes Available disk size in gibibytes
# TYPE disk_avail_gibibytes gauge
disk_avail_gibibytes 51
# HELP core_dumped Whether there is any core dump
# TYPE core_dumped gauge
core_dumped 0
# HELP uptime_seconds Uptime in seconds
# TYPE uptime_seconds counter
uptime_seconds 86412
# HELP north_nodes_total Number of north nodes
# TYPE north_nodes_total gauge
north_nodes_total 1
# HELP north_running_nodes_total Number of north nodes in running state
# TYPE north_running_nodes_total gauge
north_running_nodes_total 1
# HELP north_disconnected_nodes_total Number of north nodes disconnected
# TYPE north_disconnected_nodes_total gauge
north_disconnected_nodes_total 0
# HELP south_nodes_total Number of south nodes
# TYPE south_nodes_total gauge
south_nodes_total 2
# HELP south_running_nodes_total Number of south nodes in running state
# TYPE south_running_nodes_total gauge
south_running_nodes_total 2
# HELP south_disconnected_nodes_total Number of south nodes disconnected
# TYPE south_disconnected_nodes_total gauge
south_disconnected_nodes_total 1
# HELP node_type Driver(1) or APP(2)
# TYPE node_type gauge
node_type{node="modbus-1"} 1
node_type{node="opcua-2"} 1
node_type{node="mqtt"} 2
# HELP send_msgs_total Total number of messages sent
# TYPE send_msgs_total counter
send_msgs_total{node="mqtt"} 5120
# HELP last_rtt_ms Last request round trip time in milliseconds
# TYPE last_rtt_ms gauge
last_rtt_ms{node="modbus-1"} 12
last_rtt_ms{node="opcua-2"} 9999
# HELP tag_reads_total Total number of tag reads including errors
# TYPE tag_reads_total counter
tag_reads_total{node="modbus-1"} 20480
tag_reads_total{node="opcua-2"} 0
# HELP group_tags_total Total number of tags in the group
# TYPE group_tags_total gauge
group_tags_total{node="modbus-1",group="grp"} 2
group_tags_total{node="modbus-1",group="fast"} 10
group_tags_total{node="opcua-2",group="plc"} 4
"#;

/// Neuron `GET /api/v2/metrics?category=driver&node=modbus-1`: one node, with its HELP/TYPE pair
/// printed again before each group's sample (repeated family headers).
pub(crate) const NEURON_ONE_NODE: &str = r#"# HELP node_type Driver(1) or APP(2)
# TYPE node_type gauge
node_type{node="modbus-1"} 1
# HELP last_rtt_ms Last request round trip time in milliseconds
# TYPE last_rtt_ms gauge
last_rtt_ms{node="modbus-1"} 12
# HELP tag_reads_total Total number of tag reads including errors
# TYPE tag_reads_total counter
tag_reads_total{node="modbus-1"} 20480
# HELP send_bytes_5s Total number of bytes sent in the last 5 seconds
# TYPE send_bytes_5s gauge
send_bytes_5s{node="modbus-1"} 96
# HELP group_tags_total Total number of tags in the group
# TYPE group_tags_total gauge
group_tags_total{node="modbus-1",group="grp"} 2
# HELP group_last_send_msgs Number of messages sent on last group timer invocation
# TYPE group_last_send_msgs gauge
group_last_send_msgs{node="modbus-1",group="grp"} 1
# HELP group_tags_total Total number of tags in the group
# TYPE group_tags_total gauge
group_tags_total{node="modbus-1",group="fast"} 10
# HELP group_last_send_msgs Number of messages sent on last group timer invocation
# TYPE group_last_send_msgs gauge
group_last_send_msgs{node="modbus-1",group="fast"} 1
"#;

/// NanoMQ 0.2x `GET /api/v4/prometheus` (rest_api.c `compose_metrics`): TYPE before HELP, HELP
/// lines without text, `%.2f` for the CPU, `_max` variants.
pub(crate) const NANOMQ: &str = "# TYPE nanomq_connections_count gauge
# HELP nanomq_connections_count
nanomq_connections_count 3
# TYPE nanomq_connections_max gauge
# HELP nanomq_connections_max
nanomq_connections_max 5
# TYPE nanomq_sessions_count gauge
# HELP nanomq_sessions_count
nanomq_sessions_count 3
# TYPE nanomq_sessions_max gauge
# HELP nanomq_sessions_max
nanomq_sessions_max 5
# TYPE nanomq_topics_count gauge
# HELP nanomq_topics_count
nanomq_topics_count 2
# TYPE nanomq_topics_max gauge
# HELP nanomq_topics_max
nanomq_topics_max 4
# TYPE nanomq_subscribers_count gauge
# HELP nanomq_subscribers_count
nanomq_subscribers_count 2
# TYPE nanomq_subscribers_max gauge
# HELP nanomq_subscribers_max
nanomq_subscribers_max 4
# TYPE nanomq_messages_received counter
# HELP nanomq_messages_received
nanomq_messages_received 1024
# TYPE nanomq_messages_sent counter
# HELP nanomq_messages_sent
nanomq_messages_sent 2048
# TYPE nanomq_messages_dropped counter
# HELP nanomq_messages_dropped
nanomq_messages_dropped 1
# TYPE nanomq_memory_usage gauge
# HELP nanomq_memory_usage (b)
nanomq_memory_usage 20049920
# TYPE nanomq_memory_usage_max gauge
# HELP nanomq_memory_usage_max (b)
nanomq_memory_usage_max 21049920
# TYPE nanomq_cpu_usage gauge
# HELP nanomq_cpu_usage (%)
nanomq_cpu_usage 0.25
# TYPE nanomq_cpu_usage_max gauge
# HELP nanomq_cpu_usage_max (%)
nanomq_cpu_usage_max 1.50
";

fn parse(body: &str) -> ParsedExposition {
    prom::parse(body.as_bytes(), &ParseLimits::default()).expect("fixture bodies are small")
}

/// The value of the one sample of `name` whose labels include `labels`.
fn value(parsed: &ParsedExposition, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<_> =
        parsed.samples.iter().filter(|s| s.name.as_str() == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))).collect();
    assert_eq!(found.len(), 1, "{name}{labels:?}: {found:?}");
    found[0].value
}

fn scope() -> MetricScope {
    MetricScope::new(OrgId::new(), ProjectId::new())
}

#[test]
fn emqx_all_nodes_unaggregated() {
    let parsed = parse(EMQX_UNAGGREGATED);
    assert!(parsed.skipped.is_empty(), "{:?}", parsed.skipped);
    assert_eq!(parsed.samples.len(), 28);
    assert!(parsed.samples.iter().all(|s| s.labels.get("node").is_some_and(|n| n.starts_with("emqx@10.0.0."))));
    assert_eq!(value(&parsed, "emqx_connections_count", &[("node", "emqx@10.0.0.1")]), 12.0);
    assert_eq!(value(&parsed, "emqx_connections_count", &[("node", "emqx@10.0.0.2")]), 7.0);
    assert_eq!(value(&parsed, "emqx_vm_cpu_use", &[("node", "emqx@10.0.0.1")]), 12.029950083194677);
    assert_eq!(value(&parsed, "emqx_cluster_nodes_running", &[("node", "emqx@10.0.0.2")]), 2.0);
    assert_eq!(value(&parsed, "emqx_cert_expiry_at", &[("node", "emqx@10.0.0.1"), ("listener_name", "default")]), 1_798_761_600.0);
    assert_eq!(parsed.kind_of("emqx_messages_received"), MetricKind::Counter);
    assert_eq!(parsed.kind_of("emqx_vm_cpu_use"), MetricKind::Gauge);
    assert_eq!(parsed.family("emqx_connections_count").unwrap().help, None);
    assert!(parsed.family("emqx_cert_expiry_at").unwrap().help.as_deref().unwrap().starts_with("Certificate expiry"));
}

#[test]
fn emqx_node_mode() {
    let parsed = parse(EMQX_NODE);
    assert!(parsed.skipped.is_empty());
    assert_eq!(value(&parsed, "emqx_connections_count", &[]), 19.0);
    assert_eq!(value(&parsed, "emqx_vm_cpu_use", &[]), 100.0);
    assert_eq!(value(&parsed, "emqx_cluster_nodes_running", &[]), 2.0);
    assert!(parsed.samples.iter().all(|s| s.labels.is_empty()));
}

#[test]
fn neuron_every_category() {
    let parsed = parse(NEURON_ALL);
    assert!(parsed.skipped.is_empty(), "{:?}", parsed.skipped);
    assert_eq!(value(&parsed, "cpu_percent", &[]), 7.0);
    assert_eq!(value(&parsed, "mem_used_bytes", &[]), 2_904_072_192.0);
    assert_eq!(value(&parsed, "uptime_seconds", &[]), 86_412.0);
    assert_eq!(value(&parsed, "north_nodes_total", &[]), 1.0);
    assert_eq!(value(&parsed, "south_disconnected_nodes_total", &[]), 1.0);
    assert_eq!(value(&parsed, "node_type", &[("node", "mqtt")]), 2.0);
    assert_eq!(value(&parsed, "node_type", &[("node", "modbus-1")]), 1.0);
    assert_eq!(value(&parsed, "send_msgs_total", &[("node", "mqtt")]), 5120.0);
    assert_eq!(value(&parsed, "last_rtt_ms", &[("node", "opcua-2")]), 9999.0);
    assert_eq!(value(&parsed, "tag_reads_total", &[("node", "modbus-1")]), 20480.0);
    assert_eq!(value(&parsed, "group_tags_total", &[("node", "modbus-1"), ("group", "fast")]), 10.0);
    assert_eq!(value(&parsed, "os_info", &[("kernel", "5.15.0-105-generic")]), 0.0);
    assert_eq!(value(&parsed, "os_info", &[("version", "Ubuntu 22.04.4 LTS")]), 0.0);
    // The sample under the `mem_cache` header has no TYPE line of its own: kept, untyped.
    assert_eq!(value(&parsed, "mem_cache_bytes", &[]), 3_290_501_120.0);
    assert_eq!(parsed.kind_of("mem_cache_bytes"), MetricKind::Untyped);
    assert_eq!(parsed.kind_of("mem_cache"), MetricKind::Gauge);
    assert_eq!(parsed.kind_of("uptime_seconds"), MetricKind::Counter);
}

#[test]
fn neuron_one_node_with_repeated_headers() {
    let parsed = parse(NEURON_ONE_NODE);
    assert!(parsed.skipped.is_empty(), "{:?}", parsed.skipped);
    assert_eq!(parsed.samples.len(), 8);
    // Each family once, however often its headers were printed.
    let names: Vec<_> = parsed.families.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["node_type", "last_rtt_ms", "tag_reads_total", "send_bytes_5s", "group_tags_total", "group_last_send_msgs"]);
    assert_eq!(value(&parsed, "group_tags_total", &[("group", "grp")]), 2.0);
    assert_eq!(value(&parsed, "group_tags_total", &[("group", "fast")]), 10.0);
    assert_eq!(parsed.family("group_tags_total").unwrap().help.as_deref(), Some("Total number of tags in the group"));
}

#[test]
fn nanomq() {
    let parsed = parse(NANOMQ);
    assert!(parsed.skipped.is_empty(), "{:?}", parsed.skipped);
    assert_eq!(parsed.samples.len(), 15);
    assert_eq!(value(&parsed, "nanomq_connections_count", &[]), 3.0);
    assert_eq!(value(&parsed, "nanomq_connections_max", &[]), 5.0);
    assert_eq!(value(&parsed, "nanomq_sessions_count", &[]), 3.0);
    assert_eq!(value(&parsed, "nanomq_messages_received", &[]), 1024.0);
    assert_eq!(value(&parsed, "nanomq_messages_sent", &[]), 2048.0);
    assert_eq!(value(&parsed, "nanomq_messages_dropped", &[]), 1.0);
    assert_eq!(value(&parsed, "nanomq_cpu_usage", &[]), 0.25);
    assert_eq!(value(&parsed, "nanomq_cpu_usage_max", &[]), 1.5);
    assert_eq!(value(&parsed, "nanomq_memory_usage_max", &[]), 21_049_920.0);
    assert_eq!(parsed.kind_of("nanomq_messages_dropped"), MetricKind::Counter);
    // `# HELP name` without text gives no help; `(b)` is a help text.
    assert_eq!(parsed.family("nanomq_sessions_count").unwrap().help, None);
    assert_eq!(parsed.family("nanomq_memory_usage").unwrap().help.as_deref(), Some("(b)"));
}

#[test]
fn crlf_versions_parse_the_same() {
    for body in [EMQX_UNAGGREGATED, NEURON_ALL, NEURON_ONE_NODE, NANOMQ] {
        let lf = parse(body);
        let crlf = parse(&body.replace('\n', "\r\n"));
        assert_eq!(lf, crlf);
    }
}

#[test]
fn fixtures_become_samples_of_the_project_with_a_source() {
    let sc = scope();
    let now = Timestamp::from_second(1_780_000_000).unwrap();
    let extra = Labels::new([("source", "edge:neuron-7")]).unwrap();
    let c = prom::to_samples(&parse(NEURON_ALL), sc, &extra, now);
    assert!(c.skipped.is_empty());
    assert_eq!(c.samples.len(), parse(NEURON_ALL).samples.len());
    assert!(c.samples.iter().all(|s| s.series.scope == sc && s.time == now && s.series.labels.get("source") == Some("edge:neuron-7")));
    let g = c.samples.iter().find(|s| s.series.name.as_str() == "group_tags_total" && s.series.labels.get("group") == Some("plc")).unwrap();
    assert_eq!(g.series.labels.to_string(), r#"{group="plc",node="opcua-2",source="edge:neuron-7"}"#);
    assert_eq!(g.value, 4.0);
}
