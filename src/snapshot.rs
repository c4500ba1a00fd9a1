//! The plain value one poll produces: every TCP socket the kernel reported, as
//! fixed-size records, and the per-state counts.
//!
//! A snapshot never touches the kernel, so everything built on it (diff, watch
//! analyses, outputs, views) is testable without root.

use std::net::{IpAddr, Ipv4Addr};
use std::time::SystemTime;

use crate::tcp::{State, StateSet};

/// The address family of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    /// The name used in JSON output: `ipv4` or `ipv6`.
    pub fn name(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }
}

/// What the kernel's socket timer is doing (`idiag_timer`), as `ss -o` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    Off,
    /// Retransmission timer (also the SYN+ACK timer of a request socket).
    On,
    Keepalive,
    TimeWait,
    /// Zero-window probe timer.
    Persist,
    Unknown(u8),
}

impl Timer {
    pub fn from_kernel(number: u8) -> Timer {
        match number {
            0 => Timer::Off,
            1 => Timer::On,
            2 => Timer::Keepalive,
            3 => Timer::TimeWait,
            4 => Timer::Persist,
            other => Timer::Unknown(other),
        }
    }

    /// The name `ss -o` prints for this timer.
    pub fn name(self) -> &'static str {
        match self {
            Timer::Off => "off",
            Timer::On => "on",
            Timer::Keepalive => "keepalive",
            Timer::TimeWait => "timewait",
            Timer::Persist => "persist",
            Timer::Unknown(_) => "unknown",
        }
    }
}

/// Where a connection is: family plus both endpoints. Linux replaces a SYN_RECV
/// request socket and a closing socket's TIME_WAIT remnant with new kernel objects of
/// the same endpoints, so this, not the cookie, is what identifies a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoints {
    pub family: Family,
    pub local: (IpAddr, u16),
    pub remote: (IpAddr, u16),
}

/// One socket as the kernel reported it. Fixed-size and `Copy`: a snapshot of 100k
/// sockets is one allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketRecord {
    pub family: Family,
    pub state: State,
    pub local_addr: IpAddr,
    pub local_port: u16,
    pub remote_addr: IpAddr,
    pub remote_port: u16,
    /// For LISTEN: the accept queue length; otherwise unread bytes.
    pub recv_q: u32,
    /// For LISTEN: the backlog; otherwise unacknowledged bytes.
    pub send_q: u32,
    pub timer: Timer,
    pub expires_ms: u32,
    pub retransmits: u8,
    pub uid: u32,
    /// 0 for request sockets and TIME_WAIT remnants, which belong to no file.
    pub inode: u32,
    /// The kernel object's identity (`sock_gen_cookie`); changes when the kernel swaps
    /// a request socket or TIME_WAIT remnant in for the same endpoints.
    pub cookie: u64,
    pub interface: u32,
    /// For LISTEN: connection attempts the listener has dropped since it was created
    /// (`SK_MEMINFO_DROPS`, the `d` of `ss -tlm`), a full accept queue or SYN queue
    /// among the causes; 0 for every other state, and in recordings.
    pub drops: u32,
    /// The cgroup v2 the socket was created in (`INET_DIAG_CGROUP_ID`: the inode of
    /// its directory on the cgroup2 mount). 0 where the kernel sends none: request
    /// sockets, TIME_WAIT remnants, kernels before 5.7, and recordings.
    pub cgroup_id: u64,
}

/// A socket with every field zero: IPv4, both endpoints `0.0.0.0:0`, no timer, state
/// CLOSED (the state has no zero). Tests and benches build their records from it with
/// `..SocketRecord::default()`, so that a new per-socket field gets its test value
/// here, not in every one of them.
impl Default for SocketRecord {
    fn default() -> SocketRecord {
        SocketRecord {
            family: Family::Ipv4,
            state: State::Closed,
            local_addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            local_port: 0,
            remote_addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            remote_port: 0,
            recv_q: 0,
            send_q: 0,
            timer: Timer::Off,
            expires_ms: 0,
            retransmits: 0,
            uid: 0,
            inode: 0,
            cookie: 0,
            interface: 0,
            drops: 0,
            cgroup_id: 0,
        }
    }
}

impl SocketRecord {
    pub fn endpoints(&self) -> Endpoints {
        Endpoints {
            family: self.family,
            local: (self.local_addr, self.local_port),
            remote: (self.remote_addr, self.remote_port),
        }
    }
}

/// The number of sockets in each state, indexed by [`State::index`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts([u32; 11]);

impl Counts {
    pub fn get(&self, state: State) -> u32 {
        self.0[state.index()]
    }

    pub fn add(&mut self, state: State) {
        self.0[state.index()] += 1;
    }

    /// Adds every count of `other` to these.
    pub fn merge(&mut self, other: &Counts) {
        for (count, more) in self.0.iter_mut().zip(other.0) {
            *count = count.saturating_add(more);
        }
    }

    pub fn set(&mut self, state: State, count: u32) {
        self.0[state.index()] = count;
    }

    pub fn total(&self) -> u32 {
        self.0.iter().sum()
    }

    /// These counts with every state outside `states` set to zero.
    pub fn only(&self, states: StateSet) -> Counts {
        let mut kept = Counts::default();
        for state in states.iter() {
            kept.0[state.index()] = self.get(state);
        }
        kept
    }

    /// Every state with its count, zeros included, in [`State::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (State, u32)> + '_ {
        State::ALL.into_iter().map(|state| (state, self.get(state)))
    }
}

/// Every socket one poll saw, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub taken_at: SystemTime,
    pub sockets: Vec<SocketRecord>,
}

impl Snapshot {
    pub fn new(taken_at: SystemTime, sockets: Vec<SocketRecord>) -> Snapshot {
        Snapshot { taken_at, sockets }
    }

    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for socket in &self.sockets {
            counts.add(socket.state);
        }
        counts
    }
}

/// Hand-built records for unit tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// A socket with the given endpoints and every other field zero.
    pub fn socket(
        state: State,
        local: &str,
        local_port: u16,
        remote: &str,
        remote_port: u16,
    ) -> SocketRecord {
        let local_addr: IpAddr = local.parse().expect("fixture address");
        let family = if local_addr.is_ipv4() {
            Family::Ipv4
        } else {
            Family::Ipv6
        };
        SocketRecord {
            family,
            state,
            local_addr,
            local_port,
            remote_addr: remote.parse().expect("fixture address"),
            remote_port,
            ..SocketRecord::default()
        }
    }
}
