//! The one-shot modes: take one snapshot, gather what the output needs from the
//! kernel, and write it to stdout.

use std::io::Write;
use std::sync::mpsc;
use std::thread;
use std::time::SystemTime;

use anyhow::{Context, anyhow};

use super::{Outcome, all_netns, host_limits, kill, scan_processes};
use crate::cli::{Cli, Mode};
use crate::filter::Filter;
use crate::group::{self, GroupCounts, GroupKey, Listeners};
use crate::kernel::cgroups::CgroupNames;
use crate::kernel::procfs::{self, ProcessMap};
use crate::kernel::sockdiag::{Delivery, DumpRequest, RawDelivery, SockDiag, parse_replies};
use crate::kernel::tcp_info::TcpInfo;
use crate::poll::namespaces;
use crate::report::groups::{self, GroupNames};
use crate::report::json::{
    self, Document, FindingEntry, KernelCounters, LeaksSection, RenderedSockets, SynWatchSection,
};
use crate::report::table;
use crate::snapshot::{Snapshot, SocketRecord};
use crate::tcp::{State, StateSet};
use crate::watch::findings::{self, rules::Tally};
use crate::watch::{CloseWaitLeaks, Owner, SynWatch};

/// Received batches that may wait between the netlink reader and the JSON renderer.
const BATCHES_IN_FLIGHT: usize = 8;

/// Reply bytes the reader gathers (a few of the kernel's replies of about 32 KiB)
/// before it hands them over: fewer, larger hand-overs wake the renderer less often.
/// With [`BATCHES_IN_FLIGHT`], at most about 1.5 MB of replies wait.
const HANDED_OVER_BYTES: usize = 128 << 10;

/// Rendered bytes written out at once while the document streams: past the 64 KiB of
/// the output's buffer, so that each goes straight through.
const WRITE_BYTES: usize = 128 << 10;

/// Rendered sockets a `--json` document holds back before it starts writing them out
/// (about 900 sockets). A document held back in full can start over when the kernel
/// restarts its dump; past this, memory matters more: the records alone stay, at
/// tens of bytes a socket rather than the hundreds of their JSON.
const HELD_BACK_BYTES: usize = 256 << 10;

/// Runs the mode the command line asks for and writes the result to `out`.
pub fn run(cli: &Cli, out: &mut impl Write) -> anyhow::Result<Outcome> {
    if cli.all_netns {
        let outcome = all_netns::run(cli, &namespaces::discovered()?, out)?;
        out.flush()?;
        return Ok(outcome);
    }
    let outcome = match cli.mode() {
        Mode::Json => run_json(cli, out)?,
        Mode::Grep => run_grep(cli, out)?,
        Mode::Kill => kill::run(cli, out)?,
        Mode::Interactive
        | Mode::Watch
        | Mode::Serve
        | Mode::Replay
        | Mode::Check
        | Mode::Completions(_)
        | Mode::Man => {
            anyhow::bail!("{:?} is not a one-shot mode", cli.mode())
        }
    };
    out.flush()?;
    Ok(outcome)
}

/// `--grep`: the table, or (like grep) nothing at all and exit status 1.
fn run_grep(cli: &Cli, out: &mut impl Write) -> anyhow::Result<Outcome> {
    if cli.info {
        return run_grep_with_info(cli, out);
    }
    let snapshot = take_snapshot(&cli.filter())?;
    if snapshot.sockets.is_empty() {
        return Ok(Outcome::NothingMatched);
    }
    let processes = cli.processes.then(scan_processes).transpose()?;
    if let Some(key) = cli.group_by {
        let (rows, cgroups) = grouped(key, &cli.filter(), &snapshot.sockets, processes.as_ref())?;
        let names = GroupNames {
            cgroups: Some(&cgroups),
            processes: processes.as_ref(),
        };
        groups::write_table(out, key, &rows, names)?;
    } else {
        table::write_table(out, &snapshot.sockets, processes.as_ref())?;
    }
    Ok(Outcome::Matched)
}

/// The sockets counted per group, and the cgroup names the groups need (the tree is
/// walked only when a cgroup is to be named).
///
/// Sockets without an owner of their own count in their listener's group, so the
/// listeners come from a dump of their own when the filter may have left them out.
fn grouped(
    key: GroupKey,
    filter: &Filter,
    sockets: &[SocketRecord],
    processes: Option<&ProcessMap>,
) -> anyhow::Result<(Vec<GroupCounts>, CgroupNames)> {
    let complete = filter.states.contains(State::Listen)
        && filter.condition.is_none()
        && filter.ipv4
        && filter.ipv6;
    let listeners = if complete {
        Listeners::of(sockets)
    } else {
        let only_listeners = Filter {
            states: [State::Listen].into_iter().collect(),
            ..Filter::default()
        };
        Listeners::of(&take_snapshot(&only_listeners)?.sockets)
    };
    let rows = group::group_with(key, sockets, &listeners, |inode| {
        Some(processes?.lookup(inode)?.pid)
    });
    let mut cgroups = CgroupNames::default();
    if key == GroupKey::Cgroup {
        cgroups = CgroupNames::open();
        cgroups.learn(groups::cgroup_ids(&rows));
    }
    Ok((rows, cgroups))
}

/// `--grep -i`: the table with ss -i's columns, each socket's tcp_info kept beside it.
fn run_grep_with_info(cli: &Cli, out: &mut impl Write) -> anyhow::Result<Outcome> {
    let filter = cli.filter();
    let request = DumpRequest {
        info: true,
        ..DumpRequest::for_filter(&filter)
    };
    let mut sockets = Vec::new();
    let mut infos = Vec::new();
    let mut diag = SockDiag::open().context("opening the netlink sock_diag socket")?;
    diag.stream_with_info(&request, &mut |delivery, info| match delivery {
        Delivery::Sockets(batch) => {
            for (at, socket) in batch.iter().enumerate() {
                if filter.matches(socket) {
                    sockets.push(*socket);
                    infos.push(info.get(at).copied().flatten());
                }
            }
        }
        Delivery::Restart => {
            sockets.clear();
            infos.clear();
        }
    })
    .context("dumping TCP sockets over netlink sock_diag")?;
    if sockets.is_empty() {
        return Ok(Outcome::NothingMatched);
    }
    let processes = cli.processes.then(scan_processes).transpose()?;
    table::write_table_with_info(out, &sockets, &infos, processes.as_ref())?;
    Ok(Outcome::Matched)
}

fn take_snapshot(filter: &Filter) -> anyhow::Result<Snapshot> {
    let mut diag = SockDiag::open().context("opening the netlink sock_diag socket")?;
    diag.snapshot(filter)
        .context("dumping TCP sockets over netlink sock_diag")
}

/// What the netlink reader thread hands the renderer.
enum Received {
    Replies(Replies),
    Restart,
}

/// Replies of one dump request as the kernel sent them, laid end to end, for the
/// renderer to parse: the reader only receives, so that it asks for the next reply as
/// soon as the kernel has built one. The renderer hands each one's memory back, so
/// that a dump of any size cycles through the same few buffers.
#[derive(Default)]
struct Replies {
    bytes: Vec<u8>,
    sequence: u32,
}

/// The sockets of one [`Replies`], with their tcp_info when asked for.
#[derive(Default)]
struct Batch {
    sockets: Vec<SocketRecord>,
    info: Vec<Option<TcpInfo>>,
}

/// `--json`: the document, always exit status 0 (an empty `sockets` is an answer too).
///
/// The kernel's dump is most of the cost, so the sockets are rendered on this thread
/// while another thread is still receiving them, and the process map and counters are
/// read meanwhile too. Past [`HELD_BACK_BYTES`] the rendered sockets are written out as
/// they come: peak memory is then the records the counts and findings need.
fn run_json(cli: &Cli, out: &mut impl Write) -> anyhow::Result<Outcome> {
    let filter = cli.filter();
    let request = DumpRequest {
        info: cli.info,
        ..DumpRequest::for_filter(&filter)
    };
    let taken_at = SystemTime::now();
    let (sender, receiver) = mpsc::sync_channel(BATCHES_IN_FLIGHT);
    let (give_back, take_back) = mpsc::sync_channel::<Replies>(BATCHES_IN_FLIGHT + 2);

    thread::scope(|scope| {
        let reader = scope.spawn(move || {
            let mut diag = SockDiag::open().context("opening the netlink sock_diag socket")?;
            let mut replies = Replies::default();
            let send = |replies: &mut Replies| {
                let full = std::mem::replace(replies, take_back.try_recv().unwrap_or_default());
                // A closed channel means the renderer gave up on an error of its own.
                let _ = sender.send(Received::Replies(full));
            };
            diag.stream_replies(&request, &mut |delivery| match delivery {
                RawDelivery::Reply { bytes, sequence } => {
                    if sequence != replies.sequence && !replies.bytes.is_empty() {
                        send(&mut replies);
                    }
                    replies.sequence = sequence;
                    // Each reply's messages start on a four-byte boundary, as they
                    // do within one.
                    let aligned = replies.bytes.len().next_multiple_of(4);
                    replies.bytes.resize(aligned, 0);
                    replies.bytes.extend_from_slice(bytes);
                    if replies.bytes.len() >= HANDED_OVER_BYTES {
                        send(&mut replies);
                    }
                }
                RawDelivery::Restart => {
                    replies.bytes.clear();
                    let _ = sender.send(Received::Restart);
                }
            })
            .context("dumping TCP sockets over netlink sock_diag")?;
            if !replies.bytes.is_empty() {
                send(&mut replies);
            }
            anyhow::Ok(())
        });

        let processes = cli.processes.then(scan_processes).transpose()?;
        let kernel = read_kernel_counters()?;
        let limits = host_limits(procfs::read_connection_limits().ok());
        let mut sockets = Vec::new();
        let mut batch = Batch::default();
        // What the SYN watch and the CLOSE_WAIT leaks read, set apart as the sockets
        // come, so that neither reads every socket again once the dump ends.
        let mut listen_and_syn_recv = Vec::new();
        let mut close_wait = Vec::new();
        let mut rendered = RenderedSockets::new(processes.as_ref());
        // The findings' tally, counted as the sockets come, so that the findings need
        // no pass over every socket once the dump ends.
        let mut tally = Tally::default();
        tally.clear();
        let mut tallied_in_order = true;
        let mut streaming = false;
        // The kernel filtered by all a filter that takes everything asks.
        let everything = filter.states == StateSet::all()
            && filter.ipv4
            && filter.ipv6
            && filter.condition.is_none();
        for received in receiver {
            match received {
                Received::Replies(mut replies) => {
                    batch.sockets.clear();
                    batch.info.clear();
                    parse_replies(
                        &replies.bytes,
                        replies.sequence,
                        cli.info,
                        |socket, info| {
                            batch.sockets.push(socket);
                            if cli.info {
                                batch.info.push(info);
                            }
                        },
                    )
                    .context("dumping TCP sockets over netlink sock_diag")?;
                    replies.bytes.clear();
                    let _ = give_back.try_send(replies);
                    if !everything {
                        keep_matching(&mut batch, &filter);
                    }
                    sockets.extend_from_slice(&batch.sockets);
                    tallied_in_order &= tally.take_next(&batch.sockets, &limits);
                    for (at, socket) in batch.sockets.iter().enumerate() {
                        match socket.state {
                            State::Listen | State::SynRecv => listen_and_syn_recv.push(*socket),
                            State::CloseWait => close_wait.push(*socket),
                            _ => {}
                        }
                        if cli.info {
                            let info = batch.info.get(at).copied().flatten();
                            rendered.push_with_info(socket, info.as_ref());
                        } else {
                            rendered.push(socket);
                        }
                    }
                    if !streaming && rendered.pending_bytes() >= HELD_BACK_BYTES {
                        json::write_head(out, taken_at)?;
                        streaming = true;
                    }
                    if streaming && rendered.pending_bytes() >= WRITE_BYTES {
                        rendered.write_out(out)?;
                    }
                }
                Received::Restart if streaming => anyhow::bail!(
                    "the kernel restarted its socket dump after part of the document was \
                     written; run again"
                ),
                Received::Restart => {
                    tally.clear();
                    tallied_in_order = true;
                    sockets.clear();
                    listen_and_syn_recv.clear();
                    close_wait.clear();
                    rendered.clear();
                }
            }
        }
        reader
            .join()
            .map_err(|_| anyhow!("the netlink reader thread panicked"))??;

        let listen_and_syn_recv = Snapshot::new(taken_at, listen_and_syn_recv);
        let syn_watch = SynWatch::of(&listen_and_syn_recv, cli.thresholds());
        let snapshot = Snapshot::new(taken_at, sockets);
        if !tallied_in_order {
            tally.take(&snapshot.sockets, &limits);
        }
        let mut findings = findings::single_reading_tallied(
            &mut tally,
            &snapshot,
            &limits,
            Some(&syn_watch),
            processes.as_ref(),
            &cli.finding_thresholds(),
        );
        place_findings(
            &mut findings,
            &snapshot.sockets,
            &listen_and_syn_recv.sockets,
        );
        let findings: Vec<FindingEntry> = findings
            .iter()
            .map(|finding| FindingEntry::new(None, finding))
            .collect();
        let leaks = CloseWaitLeaks::single_reading(&close_wait, |inode| {
            let process = processes.as_ref()?.lookup(inode)?;
            Some(Owner {
                pid: process.pid,
                name: process.name.clone(),
            })
        });
        let groups = match cli.group_by {
            Some(key) => {
                let (rows, cgroups) = grouped(key, &filter, &snapshot.sockets, processes.as_ref())?;
                let names = GroupNames {
                    cgroups: Some(&cgroups),
                    processes: processes.as_ref(),
                };
                Some(groups::entries(key, &rows, names))
            }
            None => None,
        };
        let document = Document {
            snapshot: &snapshot,
            sockets: &rendered,
            kernel,
            syn_watch: SynWatchSection::One(&syn_watch),
            namespaces: None,
            findings: &findings,
        };
        let leaks = Some(LeaksSection {
            leaks: &leaks,
            with_processes: processes.is_some(),
        });
        if streaming {
            document.write_rest(out, leaks, groups.as_deref())?;
        } else {
            document.write_with_sections(out, leaks, groups.as_deref())?;
        }
        Ok(Outcome::Matched)
    })
}

/// Names the cgroup behind each finding ([`groups::place_findings`]). A SYN flood's
/// sockets are its listener and its request sockets, set apart as the dump came: only
/// those are read for it, not every socket again.
fn place_findings(
    findings: &mut [findings::Finding],
    sockets: &[SocketRecord],
    listen_and_syn_recv: &[SocketRecord],
) {
    if findings.is_empty() {
        return;
    }
    let places: Vec<Option<u64>> = findings
        .iter()
        .flat_map(|finding| {
            let read = match finding.kind {
                findings::Kind::SynFlood => listen_and_syn_recv,
                _ => sockets,
            };
            groups::dominant_cgroups(std::slice::from_ref(finding), read)
        })
        .collect();
    let mut names = CgroupNames::open();
    names.learn(places.iter().flatten().copied());
    groups::name_places(findings, &places, &names);
}

/// Keeps the sockets of `batch` that `filter` matches (and their tcp_info beside them):
/// the kernel filters by state, family and ports, not by everything a filter can say.
fn keep_matching(batch: &mut Batch, filter: &Filter) {
    let mut kept = 0;
    for at in 0..batch.sockets.len() {
        if filter.matches(&batch.sockets[at]) {
            batch.sockets[kept] = batch.sockets[at];
            if let Some(&info) = batch.info.get(at) {
                batch.info[kept] = info;
            }
            kept += 1;
        }
    }
    batch.sockets.truncate(kept);
    batch.info.truncate(kept);
}

fn read_kernel_counters() -> anyhow::Result<KernelCounters> {
    let tcpext = procfs::read_tcpext().context("reading the kernel's TcpExt counters")?;
    let limits = procfs::read_listen_limits().context("reading listen-queue sysctls")?;
    Ok(KernelCounters::new(&tcpext, &limits))
}
