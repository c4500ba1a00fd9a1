//! The one-shot modes across every network namespace (`--json --all-netns`,
//! `--grep --all-netns`): read each namespace on a thread of its own that enters it,
//! then write one document or table in which every socket names its namespace.
//!
//! Namespaces are read one after the other, each by a fresh thread, so the calling
//! thread never leaves its own namespace and no thread has to find its way back. Each
//! is opened only while it is read, so that any number fits in a few descriptors.

use std::cmp::Reverse;
use std::io::Write;
use std::thread;
use std::time::SystemTime;

use anyhow::{Context, anyhow};

use super::{Outcome, host_limits, scan_processes};
use crate::cli::{Cli, Mode};
use crate::filter::Filter;
use crate::kernel::netns::{self, Found, NetNamespace, NetnsError, NetnsHandle};
use crate::kernel::procfs::{self, ConnectionLimits};
use crate::kernel::sockdiag::SockDiag;
use crate::poll::namespaces::{label, note_left_out};
use crate::report::json::{
    Document, FindingEntry, KernelCounters, NamespaceEntry, RenderedSockets, SynWatchSection,
};
use crate::report::table;
use crate::snapshot::Snapshot;
use crate::watch::SynWatch;
use crate::watch::findings::{self, Finding};

/// One namespace's sockets and counters.
struct Reading {
    namespace: NetNamespace,
    /// What the outputs call it.
    label: String,
    snapshot: Snapshot,
    kernel: KernelCounters,
    limits: Option<ConnectionLimits>,
}

/// Runs `--json` or `--grep` over `namespaces`.
pub fn run(cli: &Cli, namespaces: &[Found], out: &mut impl Write) -> anyhow::Result<Outcome> {
    let filter = cli.filter();
    let mut readings = Vec::new();
    let mut unread = Vec::new();
    for found in namespaces {
        // Opened only while it is read: a one-shot holds one namespace at a time,
        // however many there are and however few descriptors it may open.
        let handle = match found.open() {
            Ok(handle) => handle,
            // Gone since it was found: nothing left to read.
            Err(NetnsError::NotFound { .. }) => continue,
            Err(error) => {
                unread.push((found.namespace.clone(), error.to_string()));
                continue;
            }
        };
        match read(&handle, &filter) {
            Ok(reading) => readings.push(reading),
            Err(error) => unread.push((found.namespace.clone(), format!("{error:#}"))),
        }
    }
    // Unprivileged, only the namespaces tcpscope may enter are read (its own at
    // least): the others are named once, and the rest reported.
    if let Some((_, why)) = unread.first() {
        let left_out: Vec<NetNamespace> = unread.iter().map(|(n, _)| n.clone()).collect();
        note_left_out("reading", why, &left_out);
    }
    if readings.is_empty() {
        let (_, why) = unread
            .into_iter()
            .next()
            .context("no network namespace was found")?;
        return Err(anyhow!(why));
    }
    match cli.mode() {
        Mode::Grep => write_table(cli, &readings, out),
        _ => write_document(cli, &readings, out),
    }
}

/// Dumps one namespace from a thread that entered it.
fn read(handle: &NetnsHandle, filter: &Filter) -> anyhow::Result<Reading> {
    let inode = handle.namespace.inode;
    thread::scope(|scope| {
        scope
            .spawn(|| -> anyhow::Result<Reading> {
                handle.enter()?;
                let mut diag = SockDiag::open().context("opening the netlink sock_diag socket")?;
                let snapshot = diag
                    .snapshot(filter)
                    .context("dumping TCP sockets over netlink sock_diag")?;
                let tcpext =
                    procfs::read_tcpext().context("reading the kernel's TcpExt counters")?;
                let limits =
                    procfs::read_listen_limits().context("reading listen-queue sysctls")?;
                Ok(Reading {
                    namespace: handle.namespace.clone(),
                    label: label(&handle.namespace).short(),
                    snapshot,
                    kernel: KernelCounters::new(&tcpext, &limits),
                    limits: procfs::read_connection_limits().ok(),
                })
            })
            .join()
            .map_err(|_| anyhow!("the thread reading a namespace panicked"))?
    })
    .with_context(|| format!("reading network namespace {inode}"))
}

fn write_table(cli: &Cli, readings: &[Reading], out: &mut impl Write) -> anyhow::Result<Outcome> {
    if readings.iter().all(|r| r.snapshot.sockets.is_empty()) {
        return Ok(Outcome::NothingMatched);
    }
    let processes = cli.processes.then(scan_processes).transpose()?;
    let groups: Vec<(u64, &[_])> = readings
        .iter()
        .map(|r| (r.namespace.inode, &r.snapshot.sockets[..]))
        .collect();
    table::write_table_in_namespaces(out, &groups, processes.as_ref())?;
    Ok(Outcome::Matched)
}

fn write_document(
    cli: &Cli,
    readings: &[Reading],
    out: &mut impl Write,
) -> anyhow::Result<Outcome> {
    let processes = cli.processes.then(scan_processes).transpose()?;
    let mut rendered = RenderedSockets::new(processes.as_ref());
    let mut all = Vec::new();
    for reading in readings {
        rendered.set_netns(Some(reading.namespace.inode));
        for socket in &reading.snapshot.sockets {
            rendered.push(socket);
        }
        all.extend_from_slice(&reading.snapshot.sockets);
    }
    let taken_at = readings
        .iter()
        .map(|r| r.snapshot.taken_at)
        .min()
        .unwrap_or_else(SystemTime::now);
    let snapshot = Snapshot::new(taken_at, all);

    // Listeners of different namespaces may share an endpoint: judge each namespace
    // on its own, then rank them all together, most urgent first.
    let watches: Vec<SynWatch> = readings
        .iter()
        .map(|r| SynWatch::of(&r.snapshot, cli.thresholds()))
        .collect();
    let mut listeners: Vec<_> = readings
        .iter()
        .zip(&watches)
        .flat_map(|(r, watch)| watch.listeners.iter().map(|row| (r.namespace.inode, row)))
        .collect();
    listeners.sort_by_key(|(netns, row)| {
        (
            row.verdict,
            Reverse(row.listener.half_open),
            *netns,
            row.listener.endpoint(),
        )
    });

    let mut findings: Vec<(u64, Finding)> = readings
        .iter()
        .zip(&watches)
        .flat_map(|(r, watch)| {
            findings::single_reading(
                &r.snapshot,
                &host_limits(r.limits.clone()),
                Some(watch),
                processes.as_ref(),
                &cli.finding_thresholds(),
            )
            .into_iter()
            .map(|finding| (r.namespace.inode, finding))
        })
        .collect();
    findings
        .sort_by(|(a_netns, a), (b_netns, b)| (a.urgency(), a_netns).cmp(&(b.urgency(), b_netns)));
    let findings: Vec<FindingEntry> = findings
        .iter()
        .map(|(netns, finding)| FindingEntry::new(Some(*netns), finding))
        .collect();

    let entries: Vec<NamespaceEntry> = readings
        .iter()
        .map(|r| NamespaceEntry::new(&r.namespace, &r.label, r.snapshot.counts(), r.kernel))
        .collect();
    // The top-level counters are those of the namespace tcpscope runs in.
    let own = netns::current_inode().ok();
    let kernel = readings
        .iter()
        .find(|r| Some(r.namespace.inode) == own)
        .or(readings.first())
        .map(|r| r.kernel)
        .context("no network namespace was found")?;

    Document {
        snapshot: &snapshot,
        sockets: &rendered,
        kernel,
        syn_watch: SynWatchSection::PerNamespace(listeners),
        namespaces: Some(&entries),
        findings: &findings,
    }
    .write(out)?;
    Ok(Outcome::Matched)
}
