//! Criterion benches of ecp-rs live in `benches/`; run `cargo bench -p ecp-benches`.
