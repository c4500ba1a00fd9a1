//! Counts per state, grouped: by the listening port a connection belongs to, by peer,
//! by peer network, by owning process or by cgroup. Answers "who holds these 40,000
//! TIME_WAITs?" for `--group-by`, the view's Groups tab and the metrics.
//!
//! Pure: it takes sockets and returns counts. Names (a cgroup's unit, a process's
//! command) are the outputs' business; here a group is a number or an address. It
//! allocates per group and per listener, never per socket.
//!
//! Request sockets (SYN_RECV) and TIME_WAIT remnants belong to no file and carry no
//! cgroup: they are attributed to their listener, the LISTEN socket with the same local
//! port and the same or a wildcard local address, as the kernel itself matched them.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use foldhash::fast::RandomState;

use crate::snapshot::{Counts, SocketRecord};
use crate::tcp::State;

/// What to group by, as `--group-by` and the view's `g` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupKey {
    /// The local listening port for the server side, the remote port for outgoing.
    Port,
    /// The remote address.
    Peer,
    /// The remote /24 (IPv4) or /64 (IPv6).
    PeerNet,
    /// The owning process (needs the process map).
    Process,
    /// The cgroup v2 the socket was created in.
    Cgroup,
}

impl GroupKey {
    /// Every key, in the order the view's `g` cycles through them.
    pub const ALL: [GroupKey; 5] = [
        GroupKey::Port,
        GroupKey::Cgroup,
        GroupKey::Peer,
        GroupKey::PeerNet,
        GroupKey::Process,
    ];

    /// The key's name on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            GroupKey::Port => "port",
            GroupKey::Peer => "peer",
            GroupKey::PeerNet => "peer/24",
            GroupKey::Process => "process",
            GroupKey::Cgroup => "cgroup",
        }
    }

    pub fn parse(text: &str) -> Option<GroupKey> {
        GroupKey::ALL.into_iter().find(|key| key.name() == text)
    }

    /// The key after this one, for the view's `g`; `Process` only when there is a
    /// process map to group by.
    pub fn next(self, with_processes: bool) -> GroupKey {
        let at = GroupKey::ALL.iter().position(|k| *k == self).unwrap_or(0);
        let next = GroupKey::ALL[(at + 1) % GroupKey::ALL.len()];
        if next == GroupKey::Process && !with_processes {
            next.next(with_processes)
        } else {
            next
        }
    }
}

/// One group: what the sockets in it have in common.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    /// Connections into a local listening port (and the listener itself).
    ListenPort(u16),
    /// Connections out to a remote port.
    RemotePort(u16),
    /// A remote address; unspecified for listeners.
    Peer(IpAddr),
    /// A remote network: its first address and prefix length.
    PeerNet(IpAddr, u8),
    /// The process holding the socket (or its listener); `None` when no process was
    /// found.
    Process(Option<i32>),
    /// A cgroup id; 0 when the kernel named none and no listener stood in.
    Cgroup(u64),
}

/// A group and the number of its sockets in each state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCounts {
    pub group: Group,
    pub counts: Counts,
}

/// A LISTEN socket, as the sockets without an owner of their own are matched to it.
#[derive(Debug, Clone, Copy)]
struct Listener {
    port: u16,
    address: IpAddr,
    inode: u32,
    cgroup_id: u64,
}

/// The listeners of a snapshot, sorted by port for lookup, with a bit per port that
/// has one: most sockets' local port has none, and that is answered without a search.
#[derive(Debug)]
pub struct Listeners {
    sorted: Vec<Listener>,
    ports: Box<[u64; 1024]>,
}

impl Default for Listeners {
    fn default() -> Listeners {
        Listeners {
            sorted: Vec::new(),
            ports: Box::new([0; 1024]),
        }
    }
}

impl Listeners {
    pub fn of(sockets: &[SocketRecord]) -> Listeners {
        let mut listeners: Vec<Listener> = sockets
            .iter()
            .filter(|s| s.state == State::Listen)
            .map(|s| Listener {
                port: s.local_port,
                address: s.local_addr,
                inode: s.inode,
                cgroup_id: s.cgroup_id,
            })
            .collect();
        // An exact address first, so that it wins over a wildcard on the same port.
        listeners.sort_by_key(|l| (l.port, l.address.is_unspecified()));
        let mut ports = Box::new([0u64; 1024]);
        for listener in &listeners {
            ports[usize::from(listener.port / 64)] |= 1 << (listener.port % 64);
        }
        Listeners {
            sorted: listeners,
            ports,
        }
    }

    /// The listener a connection with this local endpoint came in through.
    fn of_local(&self, address: IpAddr, port: u16) -> Option<&Listener> {
        if self.ports[usize::from(port / 64)] & (1 << (port % 64)) == 0 {
            return None;
        }
        let start = self.sorted.partition_point(|l| l.port < port);
        self.sorted[start..]
            .iter()
            .take_while(|l| l.port == port)
            .find(|l| l.address.is_unspecified() || same_address(l.address, address))
    }

    /// Whether a connection with this local endpoint is the server side of one.
    pub fn serves(&self, address: IpAddr, port: u16) -> bool {
        self.of_local(address, port).is_some()
    }

    /// The cgroup a socket counts in: its own, or for a request socket or TIME_WAIT
    /// remnant (which carry none) its listener's.
    pub fn cgroup_of(&self, socket: &SocketRecord) -> u64 {
        if socket.cgroup_id != 0 {
            return socket.cgroup_id;
        }
        self.of_local(socket.local_addr, socket.local_port)
            .filter(|_| has_no_owner(socket.state))
            .map_or(0, |l| l.cgroup_id)
    }

    /// The socket inode whose owner a socket counts under: its own, or its listener's.
    pub fn inode_of(&self, socket: &SocketRecord) -> u32 {
        if socket.inode != 0 {
            return socket.inode;
        }
        self.of_local(socket.local_addr, socket.local_port)
            .filter(|_| has_no_owner(socket.state))
            .map_or(0, |l| l.inode)
    }
}

/// The states in which the kernel's object is no full socket: no file, no cgroup.
fn has_no_owner(state: State) -> bool {
    matches!(state, State::SynRecv | State::TimeWait)
}

/// An IPv4-mapped IPv6 address is the IPv4 address it maps.
fn same_address(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

/// The group `socket` belongs to under `key`. `owner` maps a socket inode to the pid
/// holding it (used for [`GroupKey::Process`] only).
pub fn group_of(
    key: GroupKey,
    socket: &SocketRecord,
    listeners: &Listeners,
    owner: &impl Fn(u32) -> Option<i32>,
) -> Group {
    match key {
        GroupKey::Port => {
            if socket.state == State::Listen
                || listeners.serves(socket.local_addr, socket.local_port)
            {
                Group::ListenPort(socket.local_port)
            } else {
                Group::RemotePort(socket.remote_port)
            }
        }
        GroupKey::Peer => Group::Peer(socket.remote_addr.to_canonical()),
        GroupKey::PeerNet => {
            let (network, prefix) = network_of(socket.remote_addr.to_canonical());
            Group::PeerNet(network, prefix)
        }
        GroupKey::Process => {
            let inode = listeners.inode_of(socket);
            Group::Process(if inode == 0 { None } else { owner(inode) })
        }
        GroupKey::Cgroup => Group::Cgroup(listeners.cgroup_of(socket)),
    }
}

/// The /24 of an IPv4 address or the /64 of an IPv6 one.
fn network_of(address: IpAddr) -> (IpAddr, u8) {
    match address {
        IpAddr::V4(v4) => (IpAddr::V4(Ipv4Addr::from(v4.to_bits() & 0xffff_ff00)), 24),
        IpAddr::V6(v6) => (
            IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !((1u128 << 64) - 1))),
            64,
        ),
    }
}

/// Counts `sockets` per group, largest group first (ties in the groups' order).
pub fn group(
    key: GroupKey,
    sockets: &[SocketRecord],
    owner: impl Fn(u32) -> Option<i32>,
) -> Vec<GroupCounts> {
    group_with(key, sockets, &Listeners::of(sockets), owner)
}

/// [`group`] with the listeners given: those of a wider dump when `sockets` were
/// filtered (`--grep time-wait`), so that the sockets left still find their listener.
pub fn group_with(
    key: GroupKey,
    sockets: &[SocketRecord],
    listeners: &Listeners,
    owner: impl Fn(u32) -> Option<i32>,
) -> Vec<GroupCounts> {
    // Every socket is looked up, and peers are the sender's choice: foldhash with a
    // random seed, as the differ's maps have.
    let mut groups: HashMap<Group, Counts, RandomState> = HashMap::default();
    for socket in sockets {
        groups
            .entry(group_of(key, socket, listeners, &owner))
            .or_default()
            .add(socket.state);
    }
    let mut rows: Vec<GroupCounts> = groups
        .into_iter()
        .map(|(group, counts)| GroupCounts { group, counts })
        .collect();
    rows.sort_by(|a, b| {
        b.counts
            .total()
            .cmp(&a.counts.total())
            .then(a.group.cmp(&b.group))
    });
    rows
}

/// The cgroup holding more than half of the sockets `wanted` keeps (request sockets
/// and TIME_WAIT remnants in their listener's), with how many of them it holds and
/// how many were kept; `None` when no cgroup has a majority or nothing was kept.
pub fn dominant_cgroup(
    sockets: &[SocketRecord],
    listeners: &Listeners,
    wanted: impl Fn(&SocketRecord) -> bool,
) -> Option<(u64, u32, u32)> {
    let mut held: HashMap<u64, u32, RandomState> = HashMap::default();
    let mut kept = 0u32;
    for socket in sockets.iter().filter(|socket| wanted(socket)) {
        kept += 1;
        *held.entry(listeners.cgroup_of(socket)).or_default() += 1;
    }
    held.into_iter()
        .find(|(_, count)| u64::from(*count) * 2 > u64::from(kept))
        .map(|(id, count)| (id, count, kept))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::fixtures::socket;

    fn with(mut record: SocketRecord, inode: u32, cgroup_id: u64) -> SocketRecord {
        record.inode = inode;
        record.cgroup_id = cgroup_id;
        record
    }

    /// A server on :8080 in cgroup 7 with an established connection, a request socket
    /// and a TIME_WAIT remnant; a client in cgroup 9 connected out to :443 twice.
    fn table() -> Vec<SocketRecord> {
        vec![
            with(socket(State::Listen, "0.0.0.0", 8080, "0.0.0.0", 0), 100, 7),
            with(
                socket(State::Established, "10.0.0.1", 8080, "10.0.1.5", 40000),
                101,
                7,
            ),
            socket(State::SynRecv, "10.0.0.1", 8080, "10.0.1.6", 40001),
            socket(State::TimeWait, "10.0.0.1", 8080, "10.0.2.7", 40002),
            with(
                socket(State::Established, "10.0.0.1", 50000, "192.0.2.1", 443),
                200,
                9,
            ),
            with(
                socket(State::SynSent, "10.0.0.1", 50001, "192.0.2.1", 443),
                201,
                9,
            ),
        ]
    }

    fn summary(key: GroupKey, owner: impl Fn(u32) -> Option<i32>) -> Vec<(Group, u32)> {
        group(key, &table(), owner)
            .into_iter()
            .map(|row| (row.group, row.counts.total()))
            .collect()
    }

    #[test]
    fn request_sockets_and_time_wait_count_in_their_listeners_cgroup() {
        let rows = group(GroupKey::Cgroup, &table(), |_| None);
        assert_eq!(rows[0].group, Group::Cgroup(7));
        assert_eq!(rows[0].counts.get(State::SynRecv), 1);
        assert_eq!(rows[0].counts.get(State::TimeWait), 1);
        assert_eq!(rows[0].counts.total(), 4);
        assert_eq!(rows[1].group, Group::Cgroup(9));
        assert_eq!(rows[1].counts.total(), 2);
    }

    #[test]
    fn server_connections_group_by_their_listening_port_and_clients_by_the_remote_one() {
        assert_eq!(
            summary(GroupKey::Port, |_| None),
            [(Group::ListenPort(8080), 4), (Group::RemotePort(443), 2)]
        );
    }

    #[test]
    fn filtered_sockets_find_their_listener_among_those_given() {
        let all = table();
        let time_wait: Vec<SocketRecord> = all
            .iter()
            .filter(|s| s.state == State::TimeWait)
            .copied()
            .collect();
        let rows = group_with(GroupKey::Cgroup, &time_wait, &Listeners::of(&all), |_| None);
        assert_eq!(rows[0].group, Group::Cgroup(7));
        assert_eq!(
            rows[0].counts.total(),
            1,
            "only the sockets given are counted"
        );
    }

    #[test]
    fn a_listener_on_another_address_does_not_claim_the_port() {
        let sockets = [
            socket(State::Listen, "127.0.0.1", 8080, "0.0.0.0", 0),
            socket(State::Established, "10.0.0.1", 8080, "10.0.0.2", 443),
        ];
        let rows = group(GroupKey::Port, &sockets, |_| None);
        let groups: Vec<Group> = rows.iter().map(|r| r.group).collect();
        assert_eq!(groups, [Group::ListenPort(8080), Group::RemotePort(443)]);
    }

    #[test]
    fn a_dual_stack_listener_claims_ipv4_mapped_connections() {
        let sockets = [
            socket(State::Listen, "::", 80, "::", 0),
            socket(
                State::SynRecv,
                "::ffff:10.0.0.1",
                80,
                "::ffff:10.0.0.9",
                5000,
            ),
        ];
        let rows = group(GroupKey::Port, &sockets, |_| None);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].group, Group::ListenPort(80));
    }

    #[test]
    fn peers_group_by_address_and_by_network() {
        let peers = summary(GroupKey::PeerNet, |_| None);
        assert_eq!(
            peers[..2],
            [
                (Group::PeerNet("10.0.1.0".parse().unwrap(), 24), 2),
                (Group::PeerNet("192.0.2.0".parse().unwrap(), 24), 2),
            ],
            "largest first, ties in address order"
        );
        let v6 = [socket(State::Established, "::1", 1, "2001:db8:1:2:3::9", 2)];
        let rows = group(GroupKey::PeerNet, &v6, |_| None);
        assert_eq!(
            rows[0].group,
            Group::PeerNet("2001:db8:1:2::".parse().unwrap(), 64)
        );
        assert_eq!(
            summary(GroupKey::Peer, |_| None)[0],
            (Group::Peer("192.0.2.1".parse().unwrap()), 2)
        );
    }

    #[test]
    fn sockets_without_a_file_count_under_their_listeners_process() {
        let owner = |inode: u32| match inode {
            100 | 101 => Some(11),
            200 | 201 => Some(22),
            _ => None,
        };
        assert_eq!(
            summary(GroupKey::Process, owner),
            [(Group::Process(Some(11)), 4), (Group::Process(Some(22)), 2)]
        );
    }

    #[test]
    fn a_cgroup_dominates_only_with_more_than_half_of_the_sockets() {
        let sockets = table();
        let listeners = Listeners::of(&sockets);
        let on_8080 = |s: &SocketRecord| s.local_port == 8080;
        assert_eq!(
            dominant_cgroup(&sockets, &listeners, on_8080),
            Some((7, 4, 4))
        );
        assert_eq!(
            dominant_cgroup(&sockets, &listeners, |_| true),
            Some((7, 4, 6))
        );
        let half = |s: &SocketRecord| {
            s.local_port == 8080 && s.state != State::Listen || s.remote_port == 443
        };
        assert_eq!(dominant_cgroup(&sockets, &listeners, half), Some((7, 3, 5)));
        assert_eq!(dominant_cgroup(&sockets, &listeners, |_| false), None);
        let even = |s: &SocketRecord| s.state == State::Established;
        assert_eq!(
            dominant_cgroup(&sockets, &listeners, even),
            None,
            "1 of 2 is no majority"
        );
    }

    #[test]
    fn g_cycles_through_the_keys_and_skips_process_without_a_process_map() {
        let mut key = GroupKey::Port;
        let mut seen = Vec::new();
        for _ in 0..5 {
            key = key.next(false);
            seen.push(key);
        }
        assert!(!seen.contains(&GroupKey::Process));
        assert_eq!(GroupKey::PeerNet.next(true), GroupKey::Process);
        assert_eq!(GroupKey::parse("peer/24"), Some(GroupKey::PeerNet));
        assert_eq!(GroupKey::parse("pid"), None);
    }
}
