//! One rule per kind of finding: a pure function from one poll's numbers to candidate
//! findings. A candidate is what the rule sees in this poll; whether it is raised is
//! [`super::hysteresis`]'s call.
//!
//! The numbers come from [`Tally`], one pass over the snapshot's sockets for every
//! rule, and from analyses the live layer runs anyway (the SYN watch, the CLOSE_WAIT
//! leak watcher): a rule never walks the sockets itself.

pub mod accept_queue_full;
pub mod close_wait_leak;
pub mod listen_drops;
pub mod port_exhaustion;
pub mod syn_flood;
pub mod time_wait_pressure;

use std::net::IpAddr;

use crate::snapshot::SocketRecord;
use crate::tcp::State;

use super::{Finding, HostLimits};

/// A finding one poll's numbers call for.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub finding: Finding,
    /// Raise it on this poll, without waiting for the next: the evidence already spans
    /// two readings and says that something is being lost now.
    pub at_once: bool,
}

impl Candidate {
    pub fn new(finding: Finding) -> Candidate {
        Candidate {
            finding,
            at_once: false,
        }
    }
}

/// A listening socket, as the drop rule needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenSocket {
    pub addr: IpAddr,
    pub port: u16,
    pub cookie: u64,
    pub drops: u32,
    pub accept_queue: u32,
    pub backlog: u32,
}

/// A socket whose local port `connect()` could have picked, reduced to its
/// destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Outgoing {
    pub local_addr: IpAddr,
    pub remote_addr: IpAddr,
    pub remote_port: u16,
    pub time_wait: bool,
}

/// Who is at the other end of a TIME_WAIT remnant: the remote endpoint of an outgoing
/// connection, or the remote address of an incoming one (whose port says nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Peer {
    pub addr: IpAddr,
    /// `None` for a client of one of this host's ports.
    pub port: Option<u16>,
}

/// One bit per port: 65,536 bits.
const PORT_WORDS: usize = 65_536 / 64;

/// What every rule needs from one snapshot's sockets, from one pass over them (and one
/// over its listeners first). The buffers are kept between polls, so that a poll of
/// 100k sockets allocates nothing once they have grown.
#[derive(Debug, Default)]
pub struct Tally {
    pub listeners: Vec<ListenSocket>,
    pub outgoing: Vec<Outgoing>,
    pub time_wait: u32,
    /// The other end of every TIME_WAIT remnant.
    pub time_wait_peers: Vec<Peer>,
    /// The local ports listeners hold, one bit each.
    listening: Vec<u64>,
}

impl Tally {
    /// Counts `sockets` afresh.
    pub fn take(&mut self, sockets: &[SocketRecord], limits: &HostLimits) {
        self.listeners.clear();
        self.outgoing.clear();
        self.time_wait = 0;
        self.time_wait_peers.clear();
        self.listening.clear();
        self.listening.resize(PORT_WORDS, 0);
        for socket in sockets.iter().filter(|s| s.state == State::Listen) {
            self.listeners.push(ListenSocket {
                addr: socket.local_addr,
                port: socket.local_port,
                cookie: socket.cookie,
                drops: socket.drops,
                accept_queue: socket.recv_q,
                backlog: socket.send_q,
            });
            self.listening[usize::from(socket.local_port) / 64] |= 1 << (socket.local_port % 64);
        }
        for socket in sockets.iter().filter(|s| s.state != State::Listen) {
            let time_wait = socket.state == State::TimeWait;
            // `connect()` never picks a port a listener holds (`__inet_hash_connect()`
            // skips ports bound with bind()): a connection on a listener's port was
            // accepted, even when that port lies in the ephemeral range.
            let port = socket.local_port;
            let outgoing = limits.is_ephemeral(port)
                && self.listening[usize::from(port) / 64] & (1 << (port % 64)) == 0;
            if outgoing {
                self.outgoing.push(Outgoing {
                    local_addr: socket.local_addr,
                    remote_addr: socket.remote_addr,
                    remote_port: socket.remote_port,
                    time_wait,
                });
            }
            if time_wait {
                self.time_wait += 1;
                self.time_wait_peers.push(Peer {
                    addr: socket.remote_addr,
                    port: outgoing.then_some(socket.remote_port),
                });
            }
        }
    }
}

/// A count as the `u32` evidence and summaries use; a slice of sockets never holds
/// more than `u32::MAX`, but saturate rather than trust it.
pub(crate) fn count(length: usize) -> u32 {
    u32::try_from(length).unwrap_or(u32::MAX)
}
