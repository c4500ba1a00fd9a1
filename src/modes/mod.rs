//! The modes other than the interactive view: each starts from the live source
//! ([`crate::poll::Source`]) or from one snapshot, and writes a report. [`oneshot`]
//! is `--grep` and `--json` (across namespaces: [`all_netns`]), [`kill`] closes
//! sockets, [`watch`] streams transitions, [`serve`] serves Prometheus metrics,
//! [`check`] answers once as a monitoring plugin, [`manual`] prints the shell
//! completions and the man page.

pub(crate) mod all_netns;
pub mod check;
pub(crate) mod kill;
pub mod manual;
pub mod oneshot;
pub mod serve;
pub mod watch;

use std::io::{self, Write};

use anyhow::Context;

use crate::cli::Cli;
use crate::kernel::procfs::{ConnectionLimits, ProcessMap};
use crate::poll::namespaces::Namespaces;
use crate::poll::{LiveConfig, Stopping};
use crate::record::RecordTo;
use crate::watch::findings::HostLimits;

/// Whether a one-shot mode found anything, for grep-like exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Matched,
    NothingMatched,
}

/// Maps socket inodes to processes, saying once on stderr when some processes could
/// not be read.
pub fn scan_processes() -> anyhow::Result<ProcessMap> {
    let map = ProcessMap::scan().context("mapping sockets to processes through /proc")?;
    if map.is_partial() {
        let _ = writeln!(
            io::stderr(),
            "tcpscope: note: {}; sockets only they hold show no owner",
            map.partial_summary()
        );
    }
    Ok(map)
}

/// The namespaces the command line chooses, opened.
pub fn namespaces(cli: &Cli) -> anyhow::Result<Namespaces> {
    Namespaces::chosen(cli.all_netns, cli.netns.as_ref())
}

/// Where `--record` writes, with its cap and `--force`.
pub fn recording(cli: &Cli) -> Option<RecordTo> {
    cli.record.as_ref().map(|path| RecordTo {
        path: path.clone(),
        max_bytes: cli.record_max_size,
        force: cli.force,
    })
}

/// The live source's settings from the command line, for every live mode.
pub fn live_config(cli: &Cli, stopping: Stopping, in_flight: usize) -> anyhow::Result<LiveConfig> {
    Ok(LiveConfig {
        interval: cli.interval,
        max_cpu: cli.max_cpu,
        filter: cli.filter(),
        thresholds: cli.thresholds(),
        findings: cli.finding_thresholds(),
        namespaces: namespaces(cli)?,
        record: recording(cli),
        stopping,
        in_flight,
        processes: None,
        info: cli.info,
    })
}

/// The limits a namespace's findings are judged by: its sysctls as read, or Linux's
/// defaults where they could not be.
pub fn host_limits(read: Option<ConnectionLimits>) -> HostLimits {
    read.as_ref()
        .map_or_else(HostLimits::default, HostLimits::from_sysctls)
}
