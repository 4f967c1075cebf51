//! The public API of ecp-agent: commands handled without a broker against simulated services and
//! wiremock hosts.

mod commands;
