//! `retransmitting_path`: established connections that keep sending the same segment
//! again, grouped by the remote hosts' network (a /24 for IPv4, a /64 for IPv6). A
//! segment whose retransmission timer has fired several times in a row found no ACK:
//! the segments or the ACKs are lost on the way, and when several hosts of one network
//! show it, the path to that network is the suspect, not one host.
//!
//! The count is `icsk_retransmits`, reset by every new ACK (`tcp_retransmit_timer()` in
//! `net/ipv4/tcp_timer.c`), so a lossy moment long gone does not count.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::watch::findings::{Evidence, Finding, FindingThresholds, Kind, Severity, Subject};

use super::{Candidate, Retransmitting, count};

/// How many remote addresses the evidence lists; the count says how many there were.
const LISTED: usize = 5;

/// A candidate for each remote network with a connection retransmitting
/// `path_retransmits` times in a row or more. Sorts `retransmitting`.
pub fn check(
    retransmitting: &mut [Retransmitting],
    thresholds: &FindingThresholds,
    out: &mut Vec<Candidate>,
) {
    let lossy = |socket: &Retransmitting| socket.retransmits >= thresholds.path_retransmits;
    if !retransmitting.iter().any(lossy) {
        return;
    }
    retransmitting.sort_unstable_by_key(|socket| {
        (
            !lossy(socket),
            network(socket.remote_addr),
            socket.remote_addr,
        )
    });
    let lossy_count = retransmitting
        .iter()
        .take_while(|socket| lossy(socket))
        .count();
    for group in retransmitting[..lossy_count]
        .chunk_by(|a, b| network(a.remote_addr) == network(b.remote_addr))
    {
        let (addr, prefix) = network(group[0].remote_addr);
        let connections = count(group.len());
        let most = group
            .iter()
            .map(|socket| socket.retransmits)
            .max()
            .unwrap_or(0);
        let mut hosts: Vec<IpAddr> = group.iter().map(|socket| socket.remote_addr).collect();
        hosts.dedup();
        let mut listed = hosts
            .iter()
            .take(LISTED)
            .map(IpAddr::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        if hosts.len() > LISTED {
            listed.push_str(&format!(" and {} more", hosts.len() - LISTED));
        }
        let summary = format!(
            "segments to {addr}/{prefix} are being lost: {connections} connection{} \
             retransmitting, up to {most} times in a row ({listed})",
            if connections == 1 { "" } else { "s" },
        );
        let evidence = Evidence::default()
            .count("connections", connections)
            .count("most_retransmits", most)
            .count("remote_hosts", count(hosts.len()))
            .text("remote_addresses", listed);
        out.push(Candidate::new(Finding::new(
            Kind::RetransmittingPath,
            Severity::Warning,
            Subject::Network { addr, prefix },
            summary,
            evidence,
        )));
    }
}

/// The network `addr` is in: its /24 for IPv4, its /64 for IPv6, and the prefix length.
/// An IPv4-mapped IPv6 address is an IPv4 host.
fn network(addr: IpAddr) -> (IpAddr, u8) {
    match addr {
        IpAddr::V4(v4) => (IpAddr::V4(Ipv4Addr::from(v4.to_bits() & !0xff)), 24),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => network(IpAddr::V4(v4)),
            None => (
                IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !u128::from(u64::MAX))),
                64,
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::snapshot::fixtures::socket;
    use crate::snapshot::{Snapshot, SocketRecord, Timer};
    use crate::tcp::State;
    use crate::watch::findings::rules::Tally;
    use crate::watch::findings::{HostLimits, Value};

    fn sending_to(remote: &str, retransmits: u8, timer: Timer) -> SocketRecord {
        SocketRecord {
            retransmits,
            timer,
            ..socket(State::Established, "10.0.0.1", 40_000, remote, 443)
        }
    }

    fn judge(sockets: Vec<SocketRecord>) -> Vec<Candidate> {
        let snapshot = Snapshot::new(SystemTime::UNIX_EPOCH, sockets);
        let mut tally = Tally::default();
        tally.take(&snapshot.sockets, &HostLimits::default());
        let mut out = Vec::new();
        check(
            &mut tally.retransmitting,
            &FindingThresholds::default(),
            &mut out,
        );
        out
    }

    #[test]
    fn connections_retransmitting_three_times_are_grouped_by_their_slash_24() {
        let found = judge(vec![
            sending_to("198.51.100.7", 3, Timer::On),
            sending_to("198.51.100.9", 6, Timer::On),
            sending_to("198.51.100.9", 1, Timer::On),
        ]);
        assert_eq!(found.len(), 1);
        let finding = &found[0].finding;
        assert_eq!(finding.subject.to_string(), "198.51.100.0/24");
        assert_eq!(finding.evidence.get("connections"), Some(&Value::Count(2)));
        assert_eq!(
            finding.evidence.get("most_retransmits"),
            Some(&Value::Count(6))
        );
        assert_eq!(
            finding.summary,
            "segments to 198.51.100.0/24 are being lost: 2 connections retransmitting, up to \
             6 times in a row (198.51.100.7, 198.51.100.9)"
        );
    }

    #[test]
    fn two_retransmits_are_not_yet_loss_nor_a_count_left_with_the_timer_off() {
        assert!(judge(vec![sending_to("198.51.100.7", 2, Timer::On)]).is_empty());
        assert!(judge(vec![sending_to("198.51.100.7", 9, Timer::Keepalive)]).is_empty());
    }

    #[test]
    fn ipv6_hosts_are_grouped_by_their_slash_64_and_apart_from_other_networks() {
        let found = judge(vec![
            sending_to("2001:db8:1::5", 4, Timer::On),
            sending_to("2001:db8:1::6", 4, Timer::On),
            sending_to("2001:db8:2::5", 4, Timer::On),
        ]);
        let subjects: Vec<String> = found
            .iter()
            .map(|c| c.finding.subject.to_string())
            .collect();
        assert_eq!(subjects, ["2001:db8:1::/64", "2001:db8:2::/64"]);
    }
}
