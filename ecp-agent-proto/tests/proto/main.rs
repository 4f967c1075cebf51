//! The public API of ecp-agent-proto: the codec's properties (round trips, hostile payloads) and
//! the broker credentials and ACL files against a real mosquitto.

mod acl;
mod props;
