//! The `lab` test binary: every integration test, one module per part of tcpscope, built
//! and linked once. Most enter a private network namespace of their own (the lab, in
//! `tests/support/lab/`) on their test's thread, so they run side by side without
//! seeing each other's sockets; `ss` in the same namespace is the oracle.
//!
//! Run one part with a filter on its module: `cargo test --test lab filter::`.
//! tests/README.md explains the layout.
// Test code: it may unwrap, and the lab calls unshare and setns.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/mod.rs"]
mod support;

mod budget;
mod check;
mod cli;
mod descriptors;
mod events;
mod faults;
mod filter;
mod findings;
mod findings_analyst;
mod fleet;
mod groups;
mod kill;
mod leaks;
mod load;
mod million;
mod netns;
mod paths;
mod readme;
mod record;
mod security;
mod selftest;
mod serve;
mod snapshot;
mod sockdiag_faults;
mod tcp_info;
mod tui;
mod view_info;
mod view_keys;
mod watch;
