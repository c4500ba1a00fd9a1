//! Forged SYNs: half-open connections (SYN_RECV) on a lab listener, from sources that will
//! never answer.
//!
//! Each SYN is a hand-built IPv4 + TCP packet sent through a raw socket from a source in the
//! sink's range (127.64.0.0/10) to a listener on 127.0.0.0/10. The listener keeps a request
//! socket and answers with a SYN+ACK, which is routed into the sink and lost, so the request
//! stays SYN_RECV while the kernel retransmits the SYN+ACK (`tcp_synack_retries`, 5 by
//! default: about 63 s).
//!
//! How many a listener holds: with the lab's settings (backlog and somaxconn 65535,
//! `tcp_max_syn_backlog` 65535, syncookies off) 49,153, measured: with syncookies off the
//! kernel drops a SYN once less than a quarter of `tcp_max_syn_backlog` is left
//! (`tcp_conn_request()` in net/ipv4/tcp_input.c). Above half the backlog (32,767) it also
//! retries old requests' SYN+ACKs fewer times, so they expire sooner
//! (`reqsk_timer_handler()` in net/ipv4/inet_connection_sock.c). 60,000 SYNs take 0.5 s.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use anyhow::{Context, Result, bail};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::random::SplitMix64;
use super::ss::{Entry, TcpState};
use super::{Lab, tun};

/// Half-open connections to one listener: what [`Lab::send_syns`] sent.
pub struct HalfOpen {
    pub listener: SocketAddrV4,
    /// The forged sources, one per SYN, in the order they were sent.
    pub sources: Vec<SocketAddrV4>,
}

impl HalfOpen {
    /// What `ss` lists once the listener has taken them all: one SYN-RECV request socket per
    /// source, seen from the listener's address.
    pub fn entries(&self) -> Vec<Entry> {
        self.sources
            .iter()
            .map(|source| {
                Entry::connected(
                    TcpState::SynRecv,
                    SocketAddr::V4(self.listener),
                    SocketAddr::V4(*source),
                )
            })
            .collect()
    }
}

/// The length of a forged SYN: a 20-byte IPv4 header and a 24-byte TCP header (one MSS
/// option), no payload.
pub const SYN_LENGTH: usize = 44;

impl Lab {
    /// Sends one SYN from each source to `listener`. Sources must be distinct and inside the
    /// sink (127.64.0.0/10); the listener must be on 127.0.0.0/10.
    ///
    /// The kernel handles each SYN asynchronously (usually before `sendto` returns, but not
    /// always); wait for the returned [`HalfOpen::entries`] with [`Lab::wait_for_exactly`]. A
    /// thousand SYNs take a few milliseconds.
    pub fn send_syns(
        &self,
        listener: SocketAddrV4,
        sources: impl IntoIterator<Item = SocketAddrV4>,
    ) -> Result<HalfOpen> {
        if !listener.ip().is_loopback() || tun::in_sink(*listener.ip()) {
            bail!("listener {listener} is not a lab address: use 127.0.0.0/10");
        }
        // IPPROTO_RAW implies IP_HDRINCL: the kernel sends our header as is, with our source.
        let raw = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(libc::IPPROTO_RAW)),
        )
        .context("opening a raw IPv4 socket (the lab needs root)")?;
        let destination = SockAddr::from(listener);
        let mut seen = HashSet::new();
        let mut sent = Vec::new();
        for source in sources {
            if !tun::in_sink(*source.ip()) {
                bail!(
                    "forged source {source} is outside 127.64.0.0/10: its SYN+ACK would be answered"
                );
            }
            if !seen.insert(source) {
                bail!("forged source {source} given twice: a second SYN would be a retransmission");
            }
            let packet = syn_packet(source, listener, initial_sequence(sent.len()));
            raw.send_to(&packet, &destination)
                .with_context(|| format!("sending a SYN from {source} to {listener}"))?;
            sent.push(source);
        }
        Ok(HalfOpen {
            listener,
            sources: sent,
        })
    }

    /// A SYN flood: `count` SYNs from distinct random sources spread over the sink's /24s
    /// (nearly one /24 each for a few thousand). The same seed gives the same sources.
    pub fn syn_flood(&self, listener: SocketAddrV4, count: usize, seed: u64) -> Result<HalfOpen> {
        self.send_syns(listener, flood_sources(count, seed))
    }

    /// A busy backlog from few hosts: `count` SYNs from just two source addresses
    /// (127.64.0.1 and 127.64.0.2), alternating, each from a different port.
    pub fn syns_from_two_hosts(&self, listener: SocketAddrV4, count: usize) -> Result<HalfOpen> {
        self.send_syns(listener, two_host_sources(count)?)
    }
}

/// `count` distinct sources, random over 127.64.0.0/10: random /24, host 1–254, port
/// 1024–65535. Deterministic for a seed.
pub fn flood_sources(count: usize, seed: u64) -> Vec<SocketAddrV4> {
    let mut random = SplitMix64(seed);
    let mut seen = HashSet::with_capacity(count);
    let mut sources = Vec::with_capacity(count);
    while sources.len() < count {
        let bits = random.next();
        let second = 64 + (bits & 0x3f) as u8; // 64–127: the sink's /10
        let third = (bits >> 8) as u8;
        let fourth = 1 + ((bits >> 16) % 254) as u8;
        let port = 1024 + ((bits >> 32) % (65536 - 1024)) as u16;
        let source = SocketAddrV4::new(Ipv4Addr::new(127, second, third, fourth), port);
        if seen.insert(source) {
            sources.push(source);
        }
    }
    sources
}

/// `count` sources on two addresses, 127.64.0.1 and 127.64.0.2, alternating, with ports
/// counting up from 1024.
pub fn two_host_sources(count: usize) -> Result<Vec<SocketAddrV4>> {
    let hosts = [Ipv4Addr::new(127, 64, 0, 1), Ipv4Addr::new(127, 64, 0, 2)];
    (0..count)
        .map(|index| {
            let port = u16::try_from(1024 + index / 2)
                .context("two hosts have only 2 × 64,512 source ports")?;
            Ok(SocketAddrV4::new(hosts[index % 2], port))
        })
        .collect()
}

/// A recognisable, different initial sequence number per SYN.
fn initial_sequence(index: usize) -> u32 {
    SplitMix64(index as u64).next() as u32
}

/// A SYN from `source` to `destination` with sequence number `sequence`: IPv4 header (don't
/// fragment, TTL 64) and TCP header with an MSS option, both checksums filled in.
pub fn syn_packet(
    source: SocketAddrV4,
    destination: SocketAddrV4,
    sequence: u32,
) -> [u8; SYN_LENGTH] {
    let mut packet = [0u8; SYN_LENGTH];
    let (ip, tcp) = packet.split_at_mut(20);

    ip[0] = 0x45; // version 4, header length 5 words
    ip[2..4].copy_from_slice(&(SYN_LENGTH as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&(sequence as u16).to_be_bytes()); // identification
    ip[6..8].copy_from_slice(&0x4000_u16.to_be_bytes()); // don't fragment
    ip[8] = 64; // TTL
    ip[9] = libc::IPPROTO_TCP as u8;
    ip[12..16].copy_from_slice(&source.ip().octets());
    ip[16..20].copy_from_slice(&destination.ip().octets());
    let ip_checksum = internet_checksum(&[ip]);
    ip[10..12].copy_from_slice(&ip_checksum.to_be_bytes());

    tcp[0..2].copy_from_slice(&source.port().to_be_bytes());
    tcp[2..4].copy_from_slice(&destination.port().to_be_bytes());
    tcp[4..8].copy_from_slice(&sequence.to_be_bytes());
    tcp[12] = 6 << 4; // data offset: 6 words
    tcp[13] = 0x02; // SYN
    tcp[14..16].copy_from_slice(&65535_u16.to_be_bytes()); // window
    tcp[20..24].copy_from_slice(&[2, 4, 0x05, 0xb4]); // MSS 1460
    let pseudo_header = pseudo_header(source, destination, tcp.len());
    let tcp_checksum = internet_checksum(&[&pseudo_header, tcp]);
    tcp[16..18].copy_from_slice(&tcp_checksum.to_be_bytes());
    packet
}

/// The IPv4 pseudo-header TCP's checksum covers (RFC 793 §3.1).
pub fn pseudo_header(
    source: SocketAddrV4,
    destination: SocketAddrV4,
    tcp_length: usize,
) -> [u8; 12] {
    let mut header = [0u8; 12];
    header[0..4].copy_from_slice(&source.ip().octets());
    header[4..8].copy_from_slice(&destination.ip().octets());
    header[9] = libc::IPPROTO_TCP as u8;
    header[10..12].copy_from_slice(&(tcp_length as u16).to_be_bytes());
    header
}

/// The Internet checksum (RFC 1071) over the concatenation of `parts`, each of even length:
/// the one's complement of the one's complement sum of 16-bit words. Over data that already
/// contains a correct checksum it is 0.
pub fn internet_checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        for word in part.chunks(2) {
            let high = u32::from(word[0]) << 8;
            let low = word.get(1).map_or(0, |byte| u32::from(*byte));
            sum += high | low;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
