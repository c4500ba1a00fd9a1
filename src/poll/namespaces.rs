//! Which network namespaces a run reads: the one tcpscope runs in, the one `--netns`
//! names, or (`--all-netns`) those of every process and every `ip netns` name, as many
//! as the descriptors left allow. Opening and entering them is
//! [`crate::kernel::netns`]'s job; this module turns the choice into handles, names
//! each namespace as every output shows it, and says on stderr what it could not see.

use std::io::{self, Write};
use std::sync::Arc;

use anyhow::Context;

use super::rounds::NamespaceLabel;
use crate::kernel::netns::{self, Found, NetNamespace, NetnsHandle, NetnsSpec};
use crate::kernel::{process, procfs};
use crate::text::Escaped;

/// Descriptors kept for what tcpscope needs besides the namespaces it follows: the
/// standard streams, the signal handlers' pipe, the probe's and a one-shot's netlink
/// socket, the recording, a process scan's `/proc` directories, the view's workers,
/// the HTTP listener and a few of its clients.
const RESERVED_DESCRIPTORS: usize = 24;

/// What following one namespace holds open: its handle, its poller's sock_diag and
/// destroy-event sockets, and the `/proc` file a poll reads at a time.
const DESCRIPTORS_PER_NAMESPACE: usize = 4;

/// How many namespaces a note names before it only counts the rest.
const NAMED_IN_A_NOTE: usize = 5;

/// The namespaces to read.
#[derive(Debug)]
pub enum Namespaces {
    /// The namespace tcpscope runs in.
    Current,
    /// The one `--netns` named.
    One(Arc<NetnsHandle>),
    /// Every process's and every `ip netns` name's (`--all-netns`), in order of
    /// their lowest pid, as many as the descriptors left hold: the others are
    /// `left_out`, for the mode to say so.
    All {
        handles: Vec<Arc<NetnsHandle>>,
        left_out: Vec<NetNamespace>,
    },
}

impl Namespaces {
    /// Opens the namespaces asked for: every process's (`all`), else the one `netns`
    /// names, else tcpscope's own. Nothing is entered yet.
    pub fn chosen(all: bool, netns: Option<&NetnsSpec>) -> anyhow::Result<Namespaces> {
        if all {
            let (handles, left_out) = open_within(discovered()?, room_for_namespaces(0));
            return Ok(Namespaces::All {
                handles: handles.into_iter().map(Arc::new).collect(),
                left_out,
            });
        }
        match netns {
            Some(spec) => Ok(Namespaces::One(Arc::new(NetnsHandle::open(spec)?))),
            None => Ok(Namespaces::Current),
        }
    }
}

/// Every network namespace there is (see [`netns::discover`]), none opened yet,
/// saying once on stderr how many processes' namespaces could not be seen.
pub fn discovered() -> anyhow::Result<Vec<Found>> {
    let discovery =
        netns::discover().context("listing the processes' network namespaces in /proc")?;
    if discovery.forbidden > 0 {
        let processes = procfs::count_of_processes(discovery.forbidden);
        let _ = writeln!(
            io::stderr(),
            "tcpscope: note: the network namespace of {processes} could not be read (permission denied); sockets only they hold are left out",
        );
    }
    Ok(discovery.namespaces)
}

/// Why [`note_left_out`] leaves namespaces out that did not fit.
pub const TOO_FEW_DESCRIPTORS: &str =
    "too few descriptors: raise the open-files limit, `ulimit -n`";

/// How many more namespaces fit in the descriptors left, after those kept for the
/// rest of tcpscope, while `followed` namespaces are polled already (each may hold
/// one `/proc` file more than it does at this moment).
pub fn room_for_namespaces(followed: usize) -> usize {
    process::free_descriptors().map_or(usize::MAX, |free| {
        free.saturating_sub(RESERVED_DESCRIPTORS + followed) / DESCRIPTORS_PER_NAMESPACE
    })
}

/// Opens at most `room` of the namespaces `found`, in their order, except that
/// tcpscope's own is always opened. Namespaces that went since they were found are
/// skipped; those beyond `room` are returned, left out.
pub fn open_within(found: Vec<Found>, room: usize) -> (Vec<NetnsHandle>, Vec<NetNamespace>) {
    let own = netns::current_inode().ok();
    let mut others = if found.iter().any(|f| Some(f.namespace.inode) == own) {
        room.saturating_sub(1)
    } else {
        room
    };
    let mut handles = Vec::new();
    let mut left_out = Vec::new();
    for found in found {
        let is_own = Some(found.namespace.inode) == own;
        if !is_own && others == 0 {
            left_out.push(found.namespace);
            continue;
        }
        if let Ok(handle) = found.open() {
            others -= usize::from(!is_own);
            handles.push(handle);
        }
    }
    (handles, left_out)
}

/// Says once on stderr that `namespaces` are not being read, and why, naming the
/// first few.
pub fn note_left_out(doing: &str, why: &str, namespaces: &[NetNamespace]) {
    if let Some(text) = left_out(doing, why, namespaces) {
        let _ = writeln!(io::stderr(), "tcpscope: note: {text}");
    }
}

/// `not DOING N network namespaces: WHY; a, b, c and 7 more`, with what came from
/// outside escaped; none when `namespaces` is empty.
pub fn left_out(doing: &str, why: &str, namespaces: &[NetNamespace]) -> Option<String> {
    if namespaces.is_empty() {
        return None;
    }
    let labels: Vec<String> = namespaces.iter().map(|n| label(n).short()).collect();
    Some(format!(
        "not {doing} {}: {}",
        count_of_namespaces(namespaces.len()),
        Escaped(&format!("{why}; {}", first_few(&labels)))
    ))
}

fn count_of_namespaces(count: usize) -> String {
    match count {
        1 => "1 network namespace".to_owned(),
        count => format!("{count} network namespaces"),
    }
}

/// `a, b, c` or `a, b, c, d, e and 7 more`.
fn first_few(labels: &[String]) -> String {
    let named = labels[..labels.len().min(NAMED_IN_A_NOTE)].join(", ");
    match labels.len().saturating_sub(NAMED_IN_A_NOTE) {
        0 => named,
        more => format!("{named} and {more} more"),
    }
}

/// A namespace's label, with the command name of its process.
pub fn label(namespace: &NetNamespace) -> NamespaceLabel {
    NamespaceLabel {
        inode: namespace.inode,
        pid: namespace.pid,
        command: (namespace.pid > 0)
            .then(|| netns::command_name(namespace.pid))
            .flatten(),
        container: namespace.container.clone(),
        name: namespace.name.clone(),
        host: namespace.host,
    }
}

/// For the modes that read one namespace on the thread that runs them (`--grep`,
/// `--json`, `--watch`, the interactive view): moves the calling thread into the
/// namespace `netns` names (`--netns`), so that every netlink socket and `/proc` file
/// it opens from then on, and every thread it spawns, is that namespace's.
pub fn enter(netns: Option<&NetnsSpec>) -> anyhow::Result<()> {
    if let Some(spec) = netns {
        NetnsHandle::open(spec)?.enter()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_names_five_namespaces_and_counts_the_rest() {
        let labels: Vec<String> = (1..=7).map(|n| format!("{n}/sleep")).collect();
        assert_eq!(
            first_few(&labels),
            "1/sleep, 2/sleep, 3/sleep, 4/sleep, 5/sleep and 2 more"
        );
        assert_eq!(first_few(&labels[..2]), "1/sleep, 2/sleep");
    }

    #[test]
    fn the_own_namespace_is_opened_even_with_no_room_for_others() {
        let discovery = netns::discover().unwrap();
        let own = netns::current_inode().unwrap();
        let found = discovery.namespaces.len();
        let (handles, left_out) = open_within(discovery.namespaces, 0);
        assert_eq!(
            handles
                .iter()
                .map(|h| h.namespace.inode)
                .collect::<Vec<_>>(),
            [own]
        );
        assert_eq!(left_out.len(), found - 1);
    }
}
