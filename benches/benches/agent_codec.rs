//! The agent protocol codec on the hub's hot path: decoding a heartbeat (typed, with the envelope,
//! version, kind and channel checks) against the baseline of parsing the same bytes into an untyped
//! `serde_json::Value`, and encoding a tunnelled HTTP command against `serde_json::to_vec` of an
//! equivalent `Value`, in the same run.

use std::collections::BTreeMap;

use criterion::{Criterion, criterion_group, criterion_main};
use ecp_agent_proto::Channel;
use ecp_agent_proto::proto::{self, Command, DEFAULT_MAX_PAYLOAD, Envelope, Heartbeat, HttpRequest, Message, ServiceHealth};

fn heartbeat() -> Vec<u8> {
    let metrics: BTreeMap<String, f64> = (0..8).map(|i| (format!("metric_{i}"), f64::from(i) * 1.5)).collect();
    let services = (0..2).map(|i| ServiceHealth { name: format!("svc-{i}"), up: true, latency_ms: Some(3) }).collect();
    let hb = Heartbeat { seq: 42, uptime_secs: 420, services, metrics };
    proto::encode(&Envelope::new(Message::Heartbeat(hb)), DEFAULT_MAX_PAYLOAD).unwrap()
}

fn command() -> Envelope {
    Envelope::new(Message::Command(Command::Http(HttpRequest {
        target: "127.0.0.1:8085".into(),
        method: "POST".into(),
        path: "/api/ekuiper/streams".into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: Some(proto::encode_body(&[b'x'; 512])),
    })))
}

fn codec(c: &mut Criterion) {
    let bytes = heartbeat();
    let mut g = c.benchmark_group("agent_codec/decode_heartbeat");
    g.bench_function("serde_json::Value (baseline)", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(std::hint::black_box(&bytes)).unwrap())
    });
    g.bench_function("proto::decode", |b| {
        b.iter(|| proto::decode(Channel::Heartbeat, std::hint::black_box(&bytes), DEFAULT_MAX_PAYLOAD).unwrap())
    });
    g.finish();

    let env = command();
    let value: serde_json::Value = serde_json::from_slice(&proto::encode(&env, DEFAULT_MAX_PAYLOAD).unwrap()).unwrap();
    let mut g = c.benchmark_group("agent_codec/encode_http_command");
    g.bench_function("serde_json::to_vec(Value) (baseline)", |b| b.iter(|| serde_json::to_vec(std::hint::black_box(&value)).unwrap()));
    g.bench_function("proto::encode", |b| b.iter(|| proto::encode(std::hint::black_box(&env), DEFAULT_MAX_PAYLOAD).unwrap()));
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
