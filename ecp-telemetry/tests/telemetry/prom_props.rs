//! Properties of the Prometheus text parser: it never panics, valid expositions round-trip, and
//! damage to a body costs only the damaged lines.

use std::collections::BTreeMap;

use ecp_core::{OrgId, ProjectId, Timestamp};
use ecp_telemetry::prom::{self, MetricKind, ParseLimits, ParsedExposition};
use ecp_telemetry::{Labels, MetricScope};
use ecp_testkit::mutate;
use proptest::prelude::*;

use crate::prom_fixtures::{EMQX_NODE, EMQX_UNAGGREGATED, NANOMQ, NEURON_ALL, NEURON_ONE_NODE};

/// One family as a generator makes it: the samples are (labels, value, timestamp).
#[derive(Debug, Clone)]
struct GenFamily {
    kind: Option<MetricKind>,
    help: Option<String>,
    samples: Vec<(BTreeMap<String, String>, f64, Option<i64>)>,
}

fn kind() -> impl Strategy<Value = MetricKind> {
    prop_oneof![
        Just(MetricKind::Counter),
        Just(MetricKind::Gauge),
        Just(MetricKind::Histogram),
        Just(MetricKind::Summary),
        Just(MetricKind::Untyped),
    ]
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => any::<f64>(),
        1 => (0u32..1_000_000).prop_map(f64::from),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(f64::NAN),
    ]
}

fn label_value() -> impl Strategy<Value = String> {
    prop_oneof![prop::collection::vec(any::<char>(), 1..12).prop_map(String::from_iter), "[a-z0-9\\\\\"\n.@:-]{1,12}",]
}

fn family() -> impl Strategy<Value = GenFamily> {
    let labels = prop::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,8}", label_value(), 0..5);
    let sample = (labels, value(), prop::option::of(any::<i64>()));
    (
        prop::option::of(kind()),
        prop::option::of("[a-zA-Z0-9\\\\\n\"{}(%]([a-zA-Z0-9 \\\\\n\"{}(%]{0,20}[a-zA-Z0-9\\\\\n\"{}(%])?"),
        prop::collection::vec(sample, 0..4),
    )
        .prop_map(|(kind, help, samples)| GenFamily { kind, help, samples })
}

fn exposition() -> impl Strategy<Value = BTreeMap<String, GenFamily>> {
    prop::collection::btree_map("[a-zA-Z_:][a-zA-Z0-9_:]{0,15}", family(), 0..8)
}

fn render_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v:?}")
    }
}

fn escape(s: &str, quote: bool) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

/// The lines of the exposition, and for each sample line the index of the sample.
fn render(families: &BTreeMap<String, GenFamily>) -> Vec<String> {
    let mut lines = Vec::new();
    for (name, f) in families {
        if let Some(help) = &f.help {
            lines.push(format!("# HELP {name} {}", escape(help, false)));
        }
        if let Some(kind) = f.kind {
            lines.push(format!("# TYPE {name} {kind}"));
        }
        for (labels, v, ts) in &f.samples {
            let mut line = name.clone();
            if !labels.is_empty() {
                let pairs: Vec<_> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v, true))).collect();
                line.push_str(&format!("{{{}}}", pairs.join(",")));
            }
            line.push(' ');
            line.push_str(&render_value(*v));
            if let Some(ts) = ts {
                line.push_str(&format!(" {ts}"));
            }
            lines.push(line);
        }
    }
    lines
}

/// What a sample is, comparable (NaN equal to NaN, -0 unequal to 0).
type Key = (String, String, u64, Option<i64>);

fn key_of(name: &str, labels: &Labels, value: f64, ts: Option<i64>) -> Key {
    let bits = if value.is_nan() { f64::NAN.to_bits() } else { value.to_bits() };
    (name.to_owned(), labels.to_string(), bits, ts)
}

fn expected(families: &BTreeMap<String, GenFamily>) -> Vec<Key> {
    let mut out = Vec::new();
    for (name, f) in families {
        for (labels, v, ts) in &f.samples {
            out.push(key_of(name, &Labels::new(labels).unwrap(), *v, *ts));
        }
    }
    out
}

fn keys(parsed: &ParsedExposition) -> Vec<Key> {
    parsed.samples.iter().map(|s| key_of(s.name.as_str(), &s.labels, s.value, s.timestamp_ms)).collect()
}

fn check_invariants(parsed: &ParsedExposition, body: &[u8], limits: &ParseLimits) {
    let lines = body.split(|b| *b == b'\n').count();
    assert!(parsed.skipped.len() <= parsed.skipped_lines);
    assert!(parsed.skipped.len() <= limits.max_skipped_reports());
    assert!(parsed.samples.len() <= limits.max_samples());
    assert!(parsed.families.len() <= limits.max_families());
    for s in &parsed.skipped {
        let line: usize = s.location.parse().expect("a line number");
        assert!((1..=lines).contains(&line));
        assert!(!s.reason.is_empty());
    }
    let mut last = 0;
    for s in &parsed.samples {
        assert!(s.line > last && s.line <= lines);
        last = s.line;
    }
    let scope = MetricScope::new(OrgId::new(), ProjectId::new());
    let extra = Labels::new([("source", "prop")]).unwrap();
    let c = prom::to_samples(parsed, scope, &extra, Timestamp::UNIX_EPOCH);
    assert!(c.samples.len() <= parsed.samples.len());
    assert!(c.samples.iter().all(|s| s.series.labels.get("source") == Some("prop") && s.series.scope == scope));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..2048)) {
        let limits = ParseLimits::default();
        let parsed = prom::parse(&body, &limits).unwrap();
        check_invariants(&parsed, &body, &limits);
    }

    #[test]
    fn prometheus_like_text_never_panics(body in "([a-z_:{}=\",# \\\\\n\r\t0-9.eE+-]|HELP|TYPE|Inf|NaN|counter){0,200}") {
        let limits = ParseLimits::builder().max_line_len(40).max_samples(5).max_skipped_reports(3).max_families(2).build().unwrap();
        let parsed = prom::parse(body.as_bytes(), &limits).unwrap();
        check_invariants(&parsed, body.as_bytes(), &limits);
    }

    #[test]
    fn valid_expositions_round_trip(families in exposition(), crlf in any::<bool>()) {
        let lines = render(&families);
        let body = lines.join(if crlf { "\r\n" } else { "\n" }) + "\n";
        let parsed = prom::parse(body.as_bytes(), &ParseLimits::default()).unwrap();
        prop_assert!(parsed.skipped.is_empty(), "{:?}\n{}", parsed.skipped, body);
        prop_assert_eq!(keys(&parsed), expected(&families));
        for (name, f) in &families {
            if f.kind.is_none() && f.help.is_none() {
                prop_assert!(parsed.family(name).is_none());
                continue;
            }
            let got = parsed.family(name).unwrap();
            prop_assert_eq!(got.kind, f.kind.unwrap_or(MetricKind::Untyped));
            prop_assert_eq!(&got.help, &f.help);
        }
    }

    #[test]
    fn garbage_lines_cost_only_themselves(
        families in exposition(),
        garbage in prop::collection::vec((any::<prop::sample::Index>(), prop::sample::select(vec![
            "9bad 1", "foo{", "bar 1 2 3", "{} 1", "x abc", "\u{0} 1", "# TYPE z bogus", "m{a=\"\\t\"} 1",
            "m{a=1} 2", "m{a=\"1\",a=\"2\"} 3", "m 1 1.5", "m", "=", "m{\"} 1", "# HELP 1x y",
        ])), 0..6),
    ) {
        let mut lines = render(&families);
        let mut inserted = Vec::new();
        for (at, line) in garbage {
            let at = at.index(lines.len() + 1);
            lines.insert(at, line.to_owned());
            for i in inserted.iter_mut() {
                if *i >= at {
                    *i += 1;
                }
            }
            inserted.push(at);
        }
        let body = lines.join("\n");
        let parsed = prom::parse(body.as_bytes(), &ParseLimits::default()).unwrap();
        prop_assert_eq!(keys(&parsed), expected(&families));
        let mut skipped: Vec<usize> = parsed.skipped.iter().map(|s| s.location.parse().unwrap()).collect();
        let mut want: Vec<usize> = inserted.iter().map(|i| i + 1).collect();
        skipped.sort_unstable();
        want.sort_unstable();
        prop_assert_eq!(skipped, want);
    }

    #[test]
    fn truncation_costs_at_most_the_cut_line(families in exposition(), cut in any::<prop::sample::Index>()) {
        let lines = render(&families);
        let body = lines.join("\n") + "\n";
        let cut = cut.index(body.len() + 1);
        let truncated = &body.as_bytes()[..cut];
        let parsed = prom::parse(truncated, &ParseLimits::default()).unwrap();
        // Lines ending before the cut parse as in the whole body; the cut line may give a
        // different sample or a skip, nothing else.
        let whole_lines = truncated.iter().filter(|b| **b == b'\n').count();
        let whole = prom::parse(body.as_bytes(), &ParseLimits::default()).unwrap();
        let before: Vec<_> = whole.samples.iter().filter(|s| s.line <= whole_lines).map(|s| key_of(s.name.as_str(), &s.labels, s.value, s.timestamp_ms)).collect();
        let got = keys(&parsed);
        prop_assert!(got.len() == before.len() || got.len() == before.len() + 1);
        prop_assert_eq!(&got[..before.len()], &before[..]);
        prop_assert!(parsed.skipped.iter().all(|s| s.location == (whole_lines + 1).to_string()));
    }

    /// Mutations of the products' real expositions (flips, inserted bytes and tokens, deleted,
    /// truncated and duplicated ranges, splices of two bodies) never fail the parse, keep its
    /// bounds, and cost only the lines they touch: a line left as it was parses as it did.
    #[test]
    fn mutated_expositions_never_panic(m in mutate::mutated([EMQX_UNAGGREGATED, EMQX_NODE, NEURON_ALL, NEURON_ONE_NODE, NANOMQ].map(|f| f.as_bytes().to_vec()).to_vec())) {
        let limits = ParseLimits::default();
        let parsed = prom::parse(&m.bytes, &limits).unwrap();
        check_invariants(&parsed, &m.bytes, &limits);
        // Each well-formed sample line of the fixtures, and what it parses to.
        let mut known: BTreeMap<&[u8], Key> = BTreeMap::new();
        for fixture in [EMQX_UNAGGREGATED, EMQX_NODE, NEURON_ALL, NEURON_ONE_NODE, NANOMQ] {
            let whole = prom::parse(fixture.as_bytes(), &limits).unwrap();
            let lines: Vec<&[u8]> = fixture.as_bytes().split(|b| *b == b'\n').collect();
            for s in &whole.samples {
                known.insert(lines[s.line - 1], key_of(s.name.as_str(), &s.labels, s.value, s.timestamp_ms));
            }
        }
        let got: BTreeMap<usize, Key> = parsed.samples.iter().map(|s| (s.line, key_of(s.name.as_str(), &s.labels, s.value, s.timestamp_ms))).collect();
        for (i, line) in m.bytes.split(|b| *b == b'\n').enumerate() {
            if let Some(want) = known.get(line) {
                prop_assert_eq!(got.get(&(i + 1)), Some(want), "line {} kept as it was", i + 1);
            }
        }
    }
}
