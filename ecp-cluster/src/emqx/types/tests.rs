//! Unit tests of the memory notation and of the lenient readings.

use proptest::prelude::*;
use serde_json::json;

use super::*;

#[test]
fn memory_notation() {
    assert_eq!(parse_memory("7.63G"), Some((7.63 * 1024f64.powi(3)).round() as u64));
    assert_eq!(parse_memory("3.10G"), Some((3.10 * 1024f64.powi(3)).round() as u64));
    assert_eq!(parse_memory("512"), Some(512));
    assert_eq!(parse_memory("1K"), Some(1024));
    assert_eq!(parse_memory("1.5m"), Some(1_572_864));
    assert_eq!(parse_memory("2T"), Some(2 << 40));
    assert_eq!(parse_memory("10KB"), Some(10_240));
    assert_eq!(parse_memory(" 1G "), Some(1 << 30));
    for bad in ["", "G", "lots", "-1G", "1.G", ".5G", "1e3", "1,5G", "7.63X", "NaNG", "infG", "1 G", "99999999999999999999999T", "1..2K"] {
        assert_eq!(parse_memory(bad), None, "{bad}");
    }
}

#[test]
fn readings_keep_each_field_apart() {
    let nodes: NodeReadings = serde_json::from_value(json!([
        {"node": "emqx@a", "node_status": "running", "role": 7, "memory_used": "lots", "memory_total": 1024,
         "load1": "high", "load5": null, "uptime": "infinity"},
        "not a node",
    ]))
    .unwrap();
    let Element::Object(a) = &nodes.0[0] else { panic!("{nodes:?}") };
    assert_eq!((&a.node, &a.role, &a.version), (&Field::Value("emqx@a".into()), &Field::Other("a number"), &Field::Absent));
    assert_eq!(a.memory_used, Reading::Invalid("\"lots\" is not a byte size such as \"7.63G\"".into()));
    assert_eq!((&a.memory_total, &a.load5, &a.uptime), (&Reading::Value(1024.0), &Reading::Absent, &Reading::Infinity));
    assert_eq!(a.load1, Reading::Invalid("expected a number, got a string".into()));
    assert_eq!(nodes.0[1], Element::Other("a string"));
    let e = serde_json::from_value::<NodeReadings>(json!({"not": "an array"})).unwrap_err();
    assert_eq!(e.to_string(), "expected an array, got an object");

    let m: MonitorReading = serde_json::from_value(json!({"cluster_sessions": null, "sessions": 3})).unwrap();
    assert_eq!((m.cluster_sessions, m.sessions, m.connections), (Some(Reading::Absent), Reading::Value(3.0), Reading::Absent));
    let per_node: MetricsReading = serde_json::from_value(json!([{"messages.received": 1, "node": "emqx@a"}, 5])).unwrap();
    let MetricsReading::PerNode(items) = per_node else { panic!() };
    assert_eq!(items[1], Element::Other("a number"));
    assert_eq!(serde_json::from_value::<MetricsReading>(json!("x")).unwrap(), MetricsReading::Other("a string"));
    let l: LicenseReading = serde_json::from_value(json!({"max_connections": "infinity", "expiry": "no"})).unwrap();
    assert_eq!((l.max_connections, l.expiry), (Reading::Infinity, Field::Other("a string")));
}

proptest! {
    #[test]
    fn parse_memory_never_panics(s in "\\PC{0,40}") {
        let _ = parse_memory(&s);
    }

    #[test]
    fn parse_memory_reads_emqx_notation(v in 0.0f64..1000.0, unit in 0usize..5) {
        let suffix = ["", "K", "M", "G", "T"][unit];
        let text = format!("{v:.2}{suffix}");
        let expected = text.trim_end_matches(suffix).parse::<f64>().unwrap() * 1024f64.powi(unit as i32);
        let got = parse_memory(&text).unwrap() as f64;
        prop_assert!((got - expected).abs() <= 0.5 + expected * 1e-12, "{text}: {got} vs {expected}");
    }
}
