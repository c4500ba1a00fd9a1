//! Groups a snapshot's half-open (SYN_RECV) connections under the listening socket that
//! will accept them, and measures each group: how many, from how many sources and
//! networks, how old, and how full the listener's accept queue is.
//!
//! This module counts; it does not judge. Whether the numbers mean an attack is
//! [`super::verdict`]'s call.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::snapshot::{Family, Snapshot, SocketRecord};
use crate::tcp::State;

use super::half_open_age;

/// How many of a listener's busiest sources are kept for display.
pub const TOP_SOURCES: usize = 5;

/// One listening endpoint and the half-open connections waiting on it.
///
/// Listening sockets that share an endpoint (`SO_REUSEPORT` groups, one per worker)
/// are one `Listener`: sock_diag reports a request socket's endpoints but not which
/// member of the group holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listener {
    #[serde(serialize_with = "family_name")]
    pub family: Family,
    /// The address the listener is bound to: `0.0.0.0` or `::` for a wildcard one.
    pub local_addr: IpAddr,
    pub local_port: u16,
    /// Listening sockets on this endpoint in the snapshot: 0 when the half-open
    /// connections' listener was not in it (filtered out of the dump), more than 1 for
    /// an `SO_REUSEPORT` group.
    pub listen_sockets: u32,
    /// Connections that finished the handshake and wait for `accept()` (LISTEN's
    /// Recv-Q), summed over the listening sockets.
    pub accept_queue: u32,
    /// The accept queue's limit (LISTEN's Send-Q: `listen()`'s backlog, capped by
    /// `net.core.somaxconn`), summed over the listening sockets.
    pub backlog: u32,
    /// How full the fullest listening socket's accept queue is (1.0 = at its backlog),
    /// or `None` when no listening socket with a non-zero backlog was seen. The fullest
    /// one, not the sum, because one stuck worker fills its own queue while its
    /// siblings' stay empty.
    pub accept_queue_fill: Option<f64>,
    /// SYN_RECV connections: the SYN+ACK was sent, the client's ACK has not come.
    pub half_open: u32,
    /// Distinct remote addresses among the half-open connections.
    pub distinct_sources: u32,
    /// Distinct /24 (IPv4) or /64 (IPv6) networks among those addresses.
    pub distinct_prefixes: u32,
    /// The estimated age of the oldest half-open connection; see [`half_open_age`].
    #[serde(rename = "oldest_half_open_ms", serialize_with = "millis")]
    pub oldest_half_open: Duration,
    /// SYN+ACKs resent so far, over all the half-open connections. A real client
    /// answers the first SYN+ACK within a round trip; a forged source never does.
    pub syn_ack_retransmits: u64,
    /// The busiest remote addresses, most half-open first, ties in address order.
    pub top_sources: Vec<SourceCount>,
}

/// A remote address and how many half-open connections it has on one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SourceCount {
    pub addr: IpAddr,
    pub count: u32,
}

impl Listener {
    fn empty(family: Family, local_addr: IpAddr, local_port: u16) -> Listener {
        Listener {
            family,
            local_addr,
            local_port,
            listen_sockets: 0,
            accept_queue: 0,
            backlog: 0,
            accept_queue_fill: None,
            half_open: 0,
            distinct_sources: 0,
            distinct_prefixes: 0,
            oldest_half_open: Duration::ZERO,
            syn_ack_retransmits: 0,
            top_sources: Vec::new(),
        }
    }

    /// A row for a listener known only by its endpoint, with every count zero.
    pub fn at(local_addr: IpAddr, local_port: u16) -> Listener {
        let family = if local_addr.is_ipv4() {
            Family::Ipv4
        } else {
            Family::Ipv6
        };
        Listener::empty(family, local_addr, local_port)
    }

    /// The listener's identity across polls.
    pub fn endpoint(&self) -> (IpAddr, u16) {
        (self.local_addr, self.local_port)
    }

    fn add_listen_socket(&mut self, socket: &SocketRecord) {
        self.listen_sockets += 1;
        self.accept_queue = self.accept_queue.saturating_add(socket.recv_q);
        self.backlog = self.backlog.saturating_add(socket.send_q);
        if socket.send_q > 0 {
            let fill = f64::from(socket.recv_q) / f64::from(socket.send_q);
            self.accept_queue_fill = Some(self.accept_queue_fill.map_or(fill, |f| f.max(fill)));
        }
    }

    fn add_half_open(&mut self, socket: &SocketRecord) {
        self.half_open += 1;
        self.syn_ack_retransmits += u64::from(socket.retransmits);
        let age = half_open_age::estimate(socket.retransmits, socket.expires_ms);
        self.oldest_half_open = self.oldest_half_open.max(age);
    }

    /// Offers a source for the top list. Sources arrive in address order, so a later
    /// one with an equal count goes after the earlier: ties are broken by address.
    fn offer_top_source(&mut self, addr: IpAddr, count: u32) {
        let rank = self.top_sources.partition_point(|top| top.count >= count);
        if rank < TOP_SOURCES {
            self.top_sources.insert(rank, SourceCount { addr, count });
            self.top_sources.truncate(TOP_SOURCES);
        }
    }
}

/// One half-open connection, reduced to what the per-listener counts need. Ordered by
/// listener, then source, so that one sort lines up every listener's sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct HalfOpenSource {
    /// Index into the poll's listeners.
    listener: usize,
    source: IpAddr,
}

/// The network a source address sits in: its /24 for IPv4, its /64 for IPv6, the
/// smallest blocks commonly routed to one site. Forged sources are spread over many;
/// a busy office or NAT gateway is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prefix {
    V4(u32),
    V6(u64),
}

fn prefix(source: IpAddr) -> Prefix {
    match source {
        IpAddr::V4(v4) => Prefix::V4(u32::from(v4) >> 8),
        // The shift leaves the top 64 bits, so the narrowing keeps all of them.
        IpAddr::V6(v6) => Prefix::V6((u128::from(v6) >> 64) as u64),
    }
}

/// Groups half-open connections under listeners, keeping its lookup tables and sort
/// buffer between polls so that a poll of 100k sockets allocates almost nothing.
#[derive(Debug, Default)]
pub struct ListenerTable {
    /// Listeners bound to one address, and endpoints with half-open connections but no
    /// listener in the snapshot: index into the poll's listeners.
    by_endpoint: HashMap<(IpAddr, u16), usize>,
    /// Listeners bound to `0.0.0.0` or `::`, by family and port.
    wildcard: HashMap<(Family, u16), usize>,
    sources: Vec<HalfOpenSource>,
}

impl ListenerTable {
    /// Every listener in the snapshot, quiet ones included, with its half-open
    /// connections counted, plus one entry per local endpoint whose half-open
    /// connections have no listener in the snapshot.
    ///
    /// A half-open connection belongs to the listener bound to its exact local address
    /// and port if there is one, else to the wildcard listener of its family on that
    /// port. An IPv4 client of a dual-stack `::` listener is reported by the kernel as
    /// IPv6 with an IPv4-mapped address, so it finds that listener by the same rule.
    pub fn group(&mut self, snapshot: &Snapshot) -> Vec<Listener> {
        self.by_endpoint.clear();
        self.wildcard.clear();
        self.sources.clear();
        let mut listeners = Vec::new();

        // Listeners first: a request socket may come before its listener in the dump.
        for socket in snapshot.sockets.iter().filter(|s| s.state == State::Listen) {
            let endpoint = (socket.local_addr, socket.local_port);
            let any_address = (socket.family, socket.local_port);
            let wildcard = socket.local_addr.is_unspecified();
            let known = if wildcard {
                self.wildcard.get(&any_address)
            } else {
                self.by_endpoint.get(&endpoint)
            };
            let index = match known {
                Some(&index) => index,
                None => {
                    let index = push_empty(&mut listeners, socket);
                    if wildcard {
                        self.wildcard.insert(any_address, index);
                    } else {
                        self.by_endpoint.insert(endpoint, index);
                    }
                    index
                }
            };
            listeners[index].add_listen_socket(socket);
        }

        for socket in snapshot
            .sockets
            .iter()
            .filter(|s| s.state == State::SynRecv)
        {
            let endpoint = (socket.local_addr, socket.local_port);
            let index = match self.by_endpoint.get(&endpoint) {
                Some(&index) => index,
                None => match self.wildcard.get(&(socket.family, socket.local_port)) {
                    Some(&index) => index,
                    None => {
                        let index = push_empty(&mut listeners, socket);
                        self.by_endpoint.insert(endpoint, index);
                        index
                    }
                },
            };
            listeners[index].add_half_open(socket);
            self.sources.push(HalfOpenSource {
                listener: index,
                // ::ffff:a.b.c.d is an IPv4 client: count it with its IPv4 network.
                source: socket.remote_addr.to_canonical(),
            });
        }

        self.count_sources(&mut listeners);
        listeners
    }

    /// Fills in distinct sources, distinct prefixes and the top sources from one sort
    /// of the half-open connections: O(n log n) with no allocation per connection.
    fn count_sources(&mut self, listeners: &mut [Listener]) {
        self.sources.sort_unstable();
        for of_listener in self.sources.chunk_by(|a, b| a.listener == b.listener) {
            let listener = &mut listeners[of_listener[0].listener];
            // Sorted addresses keep each network's addresses together, so a change of
            // prefix between neighbours is a new network.
            let mut last_prefix = None;
            for of_source in of_listener.chunk_by(|a, b| a.source == b.source) {
                let source = of_source[0].source;
                listener.distinct_sources += 1;
                let network = Some(prefix(source));
                if network != last_prefix {
                    listener.distinct_prefixes += 1;
                    last_prefix = network;
                }
                let count = u32::try_from(of_source.len()).unwrap_or(u32::MAX);
                listener.offer_top_source(source, count);
            }
        }
    }
}

/// Adds an empty listener at the socket's local endpoint and returns its index.
fn push_empty(listeners: &mut Vec<Listener>, socket: &SocketRecord) -> usize {
    listeners.push(Listener::empty(
        socket.family,
        socket.local_addr,
        socket.local_port,
    ));
    listeners.len() - 1
}

fn family_name<S: Serializer>(family: &Family, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(family.name())
}

fn millis<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::snapshot::fixtures::socket;

    fn listen(local: &str, port: u16, accept_queue: u32, backlog: u32) -> SocketRecord {
        let any = if local.contains(':') { "::" } else { "0.0.0.0" };
        let mut listener = socket(State::Listen, local, port, any, 0);
        listener.recv_q = accept_queue;
        listener.send_q = backlog;
        listener
    }

    fn half_open(local: &str, port: u16, remote: &str) -> SocketRecord {
        socket(State::SynRecv, local, port, remote, 40_000)
    }

    fn group(sockets: Vec<SocketRecord>) -> Vec<Listener> {
        let snapshot = Snapshot::new(SystemTime::UNIX_EPOCH, sockets);
        ListenerTable::default().group(&snapshot)
    }

    fn find(listeners: &[Listener], local: &str, port: u16) -> Listener {
        let addr: IpAddr = local.parse().expect("address");
        listeners
            .iter()
            .find(|l| l.endpoint() == (addr, port))
            .cloned()
            .unwrap_or_else(|| panic!("no listener at {local}:{port} in {listeners:#?}"))
    }

    #[test]
    fn half_open_connections_are_counted_under_the_listener_on_their_port() {
        let listeners = group(vec![
            half_open("10.0.0.1", 443, "198.51.100.7"),
            listen("10.0.0.1", 443, 3, 128),
            half_open("10.0.0.1", 443, "203.0.113.9"),
            listen("10.0.0.1", 22, 0, 128),
        ]);
        let https = find(&listeners, "10.0.0.1", 443);
        assert_eq!(https.half_open, 2);
        assert_eq!(https.accept_queue, 3);
        assert_eq!(https.backlog, 128);
        assert_eq!(https.listen_sockets, 1);
        assert_eq!(find(&listeners, "10.0.0.1", 22).half_open, 0);
    }

    #[test]
    fn a_wildcard_listener_takes_half_open_connections_to_any_address_of_its_family() {
        let listeners = group(vec![
            listen("0.0.0.0", 80, 0, 511),
            half_open("10.0.0.1", 80, "198.51.100.7"),
            half_open("192.168.1.5", 80, "198.51.100.8"),
            half_open("2001:db8::1", 80, "2001:db8:ffff::9"),
        ]);
        assert_eq!(find(&listeners, "0.0.0.0", 80).half_open, 2);
        // No IPv6 listener: the IPv6 connection gets a row of its own.
        assert_eq!(find(&listeners, "2001:db8::1", 80).half_open, 1);
    }

    #[test]
    fn a_dual_stack_listener_takes_ipv4_clients_reported_as_mapped_addresses() {
        let listeners = group(vec![
            listen("::", 8443, 0, 4096),
            half_open("::ffff:10.0.0.1", 8443, "::ffff:198.51.100.7"),
        ]);
        let dual = find(&listeners, "::", 8443);
        assert_eq!(dual.half_open, 1);
        let source: IpAddr = "198.51.100.7".parse().expect("address");
        assert_eq!(dual.top_sources[0].addr, source, "shown as plain IPv4");
    }

    #[test]
    fn an_exact_address_listener_is_preferred_over_the_wildcard() {
        let listeners = group(vec![
            listen("0.0.0.0", 53, 0, 128),
            listen("127.0.0.53", 53, 0, 128),
            half_open("127.0.0.53", 53, "127.0.0.1"),
            half_open("10.0.0.1", 53, "198.51.100.7"),
        ]);
        assert_eq!(find(&listeners, "127.0.0.53", 53).half_open, 1);
        assert_eq!(find(&listeners, "0.0.0.0", 53).half_open, 1);
    }

    #[test]
    fn half_open_without_a_listener_in_the_snapshot_get_a_row_keyed_by_their_local_endpoint() {
        let listeners = group(vec![
            half_open("10.0.0.1", 25, "198.51.100.7"),
            half_open("10.0.0.1", 25, "198.51.100.8"),
            half_open("10.0.0.2", 25, "198.51.100.9"),
        ]);
        let first = find(&listeners, "10.0.0.1", 25);
        assert_eq!(first.half_open, 2);
        assert_eq!(first.listen_sockets, 0);
        assert_eq!(first.backlog, 0);
        assert_eq!(find(&listeners, "10.0.0.2", 25).half_open, 1);
    }

    #[test]
    fn reuseport_listeners_on_one_endpoint_are_one_row_filled_as_the_fullest_member() {
        let listeners = group(vec![
            listen("0.0.0.0", 80, 511, 511),
            listen("0.0.0.0", 80, 0, 511),
        ]);
        assert_eq!(listeners.len(), 1);
        assert_eq!(listeners[0].listen_sockets, 2);
        assert_eq!(listeners[0].accept_queue, 511);
        assert_eq!(listeners[0].backlog, 1022);
        assert_eq!(listeners[0].accept_queue_fill, Some(1.0));
    }

    #[test]
    fn ipv4_sources_in_one_slash_24_are_one_prefix() {
        let listeners = group(vec![
            listen("0.0.0.0", 80, 0, 128),
            half_open("10.0.0.1", 80, "198.51.100.1"),
            half_open("10.0.0.1", 80, "198.51.100.200"),
            half_open("10.0.0.1", 80, "198.51.101.1"),
        ]);
        assert_eq!(listeners[0].distinct_sources, 3);
        assert_eq!(listeners[0].distinct_prefixes, 2);
    }

    #[test]
    fn ipv6_sources_in_one_slash_64_are_one_prefix() {
        let listeners = group(vec![
            listen("::", 443, 0, 128),
            half_open("2001:db8::1", 443, "2001:db8:aaaa:1::1"),
            half_open("2001:db8::1", 443, "2001:db8:aaaa:1:ffff::2"),
            half_open("2001:db8::1", 443, "2001:db8:aaaa:2::1"),
            half_open("2001:db8::1", 443, "2001:db8:aaaa:2::1"),
        ]);
        assert_eq!(listeners[0].half_open, 4);
        assert_eq!(listeners[0].distinct_sources, 3);
        assert_eq!(listeners[0].distinct_prefixes, 2);
    }

    #[test]
    fn top_sources_are_the_five_busiest_with_ties_in_address_order() {
        let mut sockets = vec![listen("0.0.0.0", 80, 0, 128)];
        for (source, count) in [
            ("192.0.2.9", 1),
            ("192.0.2.8", 3),
            ("192.0.2.7", 2),
            ("192.0.2.6", 2),
            ("192.0.2.5", 1),
            ("192.0.2.4", 2),
            ("192.0.2.3", 1),
        ] {
            sockets.extend((0..count).map(|_| half_open("10.0.0.1", 80, source)));
        }
        let listeners = group(sockets);
        let top: Vec<(String, u32)> = listeners[0]
            .top_sources
            .iter()
            .map(|top| (top.addr.to_string(), top.count))
            .collect();
        let expected = [
            ("192.0.2.8", 3),
            ("192.0.2.4", 2),
            ("192.0.2.6", 2),
            ("192.0.2.7", 2),
            ("192.0.2.3", 1),
        ]
        .map(|(addr, count)| (addr.to_string(), count));
        assert_eq!(top, expected);
    }

    #[test]
    fn the_oldest_half_open_age_and_retransmits_come_from_the_syn_ack_timer() {
        let mut fresh = half_open("10.0.0.1", 80, "198.51.100.1");
        fresh.retransmits = 0;
        fresh.expires_ms = 900;
        let mut stale = half_open("10.0.0.1", 80, "198.51.100.2");
        stale.retransmits = 3;
        stale.expires_ms = 2_000;
        let listeners = group(vec![listen("0.0.0.0", 80, 0, 128), fresh, stale]);
        // 1 + 2 + 4 s in full, then 8 s of which 2 s remain.
        assert_eq!(listeners[0].oldest_half_open, Duration::from_secs(13));
        assert_eq!(listeners[0].syn_ack_retransmits, 3);
    }

    #[test]
    fn a_reused_table_counts_each_poll_afresh() {
        let mut table = ListenerTable::default();
        let busy = Snapshot::new(
            SystemTime::UNIX_EPOCH,
            vec![
                listen("0.0.0.0", 80, 0, 128),
                half_open("10.0.0.1", 80, "198.51.100.1"),
            ],
        );
        let quiet = Snapshot::new(SystemTime::UNIX_EPOCH, vec![listen("0.0.0.0", 80, 0, 128)]);
        assert_eq!(table.group(&busy)[0].half_open, 1);
        let again = table.group(&quiet);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].half_open, 0);
        assert_eq!(again[0].distinct_sources, 0);
    }
}
