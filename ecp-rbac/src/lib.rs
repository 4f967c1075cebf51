//! # ecp-rbac
//!
//! Access control for ecp-rs (in progress).
#![allow(missing_docs)]
