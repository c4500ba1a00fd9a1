//! tcpscope: a Linux TCP connection-state inspector.
//!
//! Data flows one way. [`kernel`] is the only code that talks to Linux: it dumps every
//! TCP socket over netlink sock_diag into a [`snapshot::Snapshot`], and reads the
//! TcpExt counters and process table from `/proc`. Everything above it is pure:
//! [`filter`] says which sockets a user asked for, and [`report`] turns snapshots into
//! the one-shot outputs (`--grep` tables and `--json`). [`diff`] turns each new
//! snapshot, with the kernel's destroy messages, into the transitions since the last
//! poll. [`watch`] reads snapshots for trouble (half-open connections per listener and
//! whether a SYN flood is under way) and keeps the bounded history of counts and
//! transitions that the live view draws. [`tcp`] names the protocol's states and holds
//! its state machine; [`cli`] parses the command line.
//!
//! [`poll`] is the live layer: a poll as data, the poller thread (one per network
//! namespace with `--all-netns`), and the one source every live mode starts from,
//! which owns the kernel probe, the recording ([`record`] writes polls to a file and
//! reads them back for `--replay`), the signals and the namespace rescan. [`modes`]
//! holds the modes (`--grep`/`--json`, `--kill`, `--watch`, `--serve`), each from the
//! source or a snapshot to a report; [`tui`] is the interactive view over the same
//! source. Imports run one way: nothing below `modes` and `tui` imports from them.

// The documentation is for those who work on tcpscope: it links internals freely.
#![allow(rustdoc::private_intra_doc_links)]

pub mod cli;
pub mod diff;
pub mod filter;
pub mod group;
pub mod kernel;
#[cfg(test)]
mod layering;
pub mod modes;
pub mod poll;
pub mod record;
pub mod report;
pub mod snapshot;
pub mod tcp;
pub mod text;
pub mod tui;
pub mod watch;
