//! One rule per kind of finding: a pure function from one poll's numbers to candidate
//! findings. A candidate is what the rule sees in this poll; whether it is raised is
//! [`super::hysteresis`]'s call.
//!
//! The numbers come from [`Tally`], one pass over the snapshot's sockets for every
//! rule, and from analyses the live layer runs anyway (the SYN watch, the CLOSE_WAIT
//! leak watcher): a rule never walks the sockets itself.

pub mod accept_queue_full;
pub mod close_wait_leak;
pub mod connect_stalled;
pub mod connection_churn;
pub mod listen_drops;
pub mod peer_not_reading;
pub mod port_exhaustion;
pub mod retransmitting_path;
pub mod syn_flood;
pub mod time_wait_pressure;

use std::net::IpAddr;
use std::time::Duration;

use crate::snapshot::{SocketRecord, Timer};
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

/// A SYN_SENT socket: a `connect()` nothing has answered yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connecting {
    pub remote_addr: IpAddr,
    pub remote_port: u16,
    pub cookie: u64,
    /// The socket's inode, to name the process waiting on it (with `-p`).
    pub inode: u32,
    /// How often its SYN has been sent again.
    pub retransmits: u8,
    /// How long it has waited at least: from its SYN timer in one reading, or since a
    /// live poll first saw it, whichever is longer.
    pub waited: Duration,
}

impl Connecting {
    /// The least time a SYN_SENT socket can have waited, from its timer alone. The
    /// first SYN times out after 1 s (`TCP_TIMEOUT_INIT`), and every timeout since was
    /// at least as long, exponential or linear (`tcp_syn_linear_timeouts`): so each
    /// retransmit is a second at least, and before the first the timer counts down
    /// from 1 s.
    pub fn waited_by_its_timer(retransmits: u8, expires_ms: u32) -> Duration {
        if retransmits == 0 {
            Duration::from_millis(u64::from(1_000u32.saturating_sub(expires_ms)))
        } else {
            Duration::from_secs(u64::from(retransmits))
        }
    }
}

/// An ESTABLISHED socket with bytes its peer has not acknowledged yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unacknowledged {
    pub local_addr: IpAddr,
    pub local_port: u16,
    pub remote_addr: IpAddr,
    pub remote_port: u16,
    /// Its local port is one `connect()` could have picked: the peer is a server.
    pub outgoing: bool,
    pub cookie: u64,
    pub send_q: u32,
    /// The peer advertises a zero window: the persist timer probes it.
    pub zero_window: bool,
    /// The window stays shut: in one reading, it is shut; in live polls, it was shut
    /// at the previous poll too and the Send-Q has not gone down since. A reader merely
    /// slower than a writer at full speed shuts its window for moments; one that is not
    /// reading keeps it shut.
    pub zero_window_held: bool,
    /// How long its Send-Q has stayed without going down, as live polls saw it; zero in
    /// one reading.
    pub stalled: Duration,
}

/// An ESTABLISHED socket whose retransmission timer runs after a retransmission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Retransmitting {
    pub remote_addr: IpAddr,
    /// Retransmissions in a row of its oldest unacknowledged segment.
    pub retransmits: u8,
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
    pub connecting: Vec<Connecting>,
    pub unacknowledged: Vec<Unacknowledged>,
    pub retransmitting: Vec<Retransmitting>,
    /// The connections new in this poll; filled from the transitions, not by
    /// [`Tally::take`].
    pub arrivals: Vec<connection_churn::Arrival>,
    /// The local ports listeners hold, one bit each.
    listening: Vec<u64>,
    /// Whether [`Tally::take_next`] has counted a socket other than a listener.
    others_taken: bool,
}

impl Tally {
    /// Counts `sockets` afresh.
    pub fn take(&mut self, sockets: &[SocketRecord], limits: &HostLimits) {
        self.take_with_listeners(sockets, None, limits);
    }

    /// [`Tally::take`], with the LISTEN sockets of `sockets` given apart when the
    /// caller has them: the listeners must be known before any other socket is
    /// counted (a listener's port is not an outgoing one), and finding them is a pass
    /// over every socket.
    pub fn take_with_listeners(
        &mut self,
        sockets: &[SocketRecord],
        listeners: Option<&[SocketRecord]>,
        limits: &HostLimits,
    ) {
        self.clear();
        let given = listeners.unwrap_or_default();
        let found = listeners
            .is_none()
            .then(|| sockets.iter().filter(|s| s.state == State::Listen));
        for socket in given.iter().chain(found.into_iter().flatten()) {
            self.take_listener(socket);
        }
        for socket in sockets.iter().filter(|s| s.state != State::Listen) {
            self.take_other(socket, limits);
        }
    }

    /// Empties the tally, for [`Tally::take_next`] to count a dump as it comes.
    pub fn clear(&mut self) {
        self.listeners.clear();
        self.outgoing.clear();
        self.time_wait = 0;
        self.time_wait_peers.clear();
        self.connecting.clear();
        self.unacknowledged.clear();
        self.retransmitting.clear();
        self.listening.clear();
        self.listening.resize(PORT_WORDS, 0);
        self.others_taken = false;
    }

    /// Counts the next `sockets` of a dump, after [`Tally::clear`], while the rest is
    /// still coming: a one-shot then has no pass of its own to make once the dump
    /// ends. Every listener must come before any other socket, as sock_diag dumps
    /// them; `false` when one came after, and then only [`Tally::take`] over the whole
    /// table counts right.
    pub fn take_next(&mut self, sockets: &[SocketRecord], limits: &HostLimits) -> bool {
        let mut in_order = true;
        for socket in sockets {
            if socket.state == State::Listen {
                in_order &= !self.others_taken;
                self.take_listener(socket);
            } else {
                self.others_taken = true;
                self.take_other(socket, limits);
            }
        }
        in_order
    }

    fn take_listener(&mut self, socket: &SocketRecord) {
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

    fn take_other(&mut self, socket: &SocketRecord, limits: &HostLimits) {
        let time_wait = socket.state == State::TimeWait;
        // `connect()` never picks a port a listener holds (`__inet_hash_connect()`
        // skips ports bound with bind()): a connection on a listener's port was
        // accepted, even when that port lies in the ephemeral range.
        let outgoing = self.is_outgoing(socket.local_port, limits);
        match socket.state {
            State::SynSent => self.connecting.push(Connecting {
                remote_addr: socket.remote_addr,
                remote_port: socket.remote_port,
                cookie: socket.cookie,
                inode: socket.inode,
                retransmits: socket.retransmits,
                waited: Connecting::waited_by_its_timer(socket.retransmits, socket.expires_ms),
            }),
            State::Established => self.take_established(socket, outgoing),
            _ => {}
        }
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

    /// Whether a connection on local `port` is one this host opened: `connect()` could
    /// have picked the port and no listener holds it. Valid after [`Tally::take`].
    pub fn is_outgoing(&self, port: u16, limits: &HostLimits) -> bool {
        limits.is_ephemeral(port)
            && self
                .listening
                .get(usize::from(port) / 64)
                .is_none_or(|word| word & (1 << (port % 64)) == 0)
    }

    fn take_established(&mut self, socket: &SocketRecord, outgoing: bool) {
        let zero_window = socket.timer == Timer::Persist;
        if socket.send_q > 0 || zero_window {
            self.unacknowledged.push(Unacknowledged {
                local_addr: socket.local_addr,
                local_port: socket.local_port,
                remote_addr: socket.remote_addr,
                remote_port: socket.remote_port,
                outgoing,
                cookie: socket.cookie,
                send_q: socket.send_q,
                zero_window,
                zero_window_held: zero_window,
                stalled: Duration::ZERO,
            });
        }
        if socket.timer == Timer::On && socket.retransmits > 0 {
            self.retransmitting.push(Retransmitting {
                remote_addr: socket.remote_addr,
                retransmits: socket.retransmits,
            });
        }
    }
}

/// A count as the `u32` evidence and summaries use; a slice of sockets never holds
/// more than `u32::MAX`, but saturate rather than trust it.
pub(crate) fn count(length: usize) -> u32 {
    u32::try_from(length).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::fixtures::socket;

    #[test]
    fn a_tally_given_the_listeners_apart_counts_as_one_that_finds_them_itself() {
        let limits = HostLimits::default();
        // A listener on a port of the ephemeral range, last as a dump lists it: the
        // connections accepted on its port are not outgoing ones, the other's are.
        let mut sockets = Vec::new();
        for port in 0..3u16 {
            let mut accepted = socket(State::Established, "10.0.0.1", 40_000, "10.0.0.2", port);
            accepted.send_q = 10;
            sockets.push(accepted);
        }
        let mut outgoing = socket(State::Established, "10.0.0.1", 40_001, "10.0.0.3", 80);
        outgoing.send_q = 10;
        sockets.push(outgoing);
        sockets.push(socket(State::TimeWait, "10.0.0.1", 40_002, "10.0.0.3", 80));
        sockets.push(socket(
            State::TimeWait,
            "10.0.0.1",
            40_000,
            "10.0.0.4",
            5_000,
        ));
        let listener = socket(State::Listen, "0.0.0.0", 40_000, "0.0.0.0", 0);
        sockets.push(listener);

        let mut found = Tally::default();
        found.take(&sockets, &limits);
        let mut given = Tally::default();
        given.take_with_listeners(&sockets, Some(&[listener]), &limits);

        assert_eq!(found.listeners.len(), 1);
        assert_eq!(found.outgoing.len(), 2, "{:?}", found.outgoing);
        assert_eq!(given.listeners, found.listeners);
        assert_eq!(given.outgoing, found.outgoing);
        assert_eq!(given.time_wait, found.time_wait);
        assert_eq!(given.time_wait_peers, found.time_wait_peers);
        assert_eq!(given.unacknowledged, found.unacknowledged);
        assert!(!given.is_outgoing(40_000, &limits));
        assert!(given.is_outgoing(40_001, &limits));
    }

    #[test]
    fn a_tally_taken_as_a_dump_comes_counts_as_one_taken_whole_when_listeners_come_first() {
        let limits = HostLimits::default();
        let mut sockets = vec![socket(State::Listen, "0.0.0.0", 40_000, "0.0.0.0", 0)];
        for port in 0..4u16 {
            let mut accepted = socket(State::Established, "10.0.0.1", 40_000, "10.0.0.2", port);
            accepted.send_q = 10;
            sockets.push(accepted);
            sockets.push(socket(
                State::TimeWait,
                "10.0.0.1",
                40_010 + port,
                "10.0.0.3",
                80,
            ));
        }
        let mut whole = Tally::default();
        whole.take(&sockets, &limits);

        let mut streamed = Tally::default();
        streamed.clear();
        for batch in sockets.chunks(3) {
            assert!(streamed.take_next(batch, &limits));
        }
        assert_eq!(streamed.listeners, whole.listeners);
        assert_eq!(streamed.outgoing, whole.outgoing);
        assert_eq!(
            streamed.outgoing.len(),
            4,
            "the TIME_WAIT remnants, not the accepted"
        );
        assert_eq!(streamed.time_wait, whole.time_wait);
        assert_eq!(streamed.time_wait_peers, whole.time_wait_peers);
        assert_eq!(streamed.unacknowledged, whole.unacknowledged);

        // The listener last: its port's connections were counted as outgoing already.
        sockets.rotate_left(1);
        let mut late = Tally::default();
        late.clear();
        let in_order = sockets
            .chunks(3)
            .fold(true, |all, batch| all & late.take_next(batch, &limits));
        assert!(!in_order, "a listener after other sockets is said");
    }
}
