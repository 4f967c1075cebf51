//! The quickstart (being built).
fn main() {}
