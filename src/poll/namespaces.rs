//! Which network namespaces a run reads: the one tcpscope runs in, the one `--netns`
//! names, or (`--all-netns`) those of every process. Opening and entering them is
//! [`crate::kernel::netns`]'s job; this module turns the choice into handles and says
//! on stderr what it could not see.

use std::io::{self, Write};
use std::sync::Arc;

use anyhow::Context;

use crate::kernel::netns::{self, NetnsHandle, NetnsSpec};
use crate::kernel::procfs;

/// The namespaces to read.
#[derive(Debug)]
pub enum Namespaces {
    /// The namespace tcpscope runs in.
    Current,
    /// The one `--netns` named.
    One(Arc<NetnsHandle>),
    /// Every process's (`--all-netns`), in order of their lowest pid.
    All(Vec<Arc<NetnsHandle>>),
}

impl Namespaces {
    /// Opens the namespaces asked for: every process's (`all`), else the one `netns`
    /// names, else tcpscope's own. Nothing is entered yet.
    pub fn chosen(all: bool, netns: Option<&NetnsSpec>) -> anyhow::Result<Namespaces> {
        if all {
            let discovery =
                netns::discover().context("listing the processes' network namespaces in /proc")?;
            if discovery.forbidden > 0 {
                let processes = procfs::count_of_processes(discovery.forbidden);
                let _ = writeln!(
                    io::stderr(),
                    "tcpscope: note: the network namespace of {processes} could not be read (permission denied); sockets only they hold are left out",
                );
            }
            return Ok(Namespaces::All(
                discovery.namespaces.into_iter().map(Arc::new).collect(),
            ));
        }
        match netns {
            Some(spec) => Ok(Namespaces::One(Arc::new(NetnsHandle::open(spec)?))),
            None => Ok(Namespaces::Current),
        }
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
