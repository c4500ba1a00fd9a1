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
//! its state machine; [`cli`] parses the command line. [`serve`] serves the latest
//! polls as Prometheus metrics, and [`namespaces`] picks the network namespaces a run
//! reads (`--netns`, `--all-netns`); [`pollers`] runs one live poller per namespace and
//! follows namespaces as they come and go. [`kill`] is the `--kill` mode, which closes the
//! sockets a filter matches through [`kernel::destroy`]; [`record`] writes the polls to
//! a recording and reads them back for `--replay`.

pub mod all_netns;
pub mod cli;
pub mod diff;
pub mod filter;
pub mod kernel;
pub mod kill;
pub mod namespaces;
pub mod oneshot;
pub mod poller;
pub mod pollers;
pub mod record;
pub mod report;
pub mod serve;
pub mod snapshot;
pub mod streaming;
pub mod tcp;
pub mod tui;
pub mod watch;
