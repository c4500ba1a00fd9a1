//! `port_exhaustion`: outgoing connections from one local address to one remote
//! endpoint use most of the ephemeral port range. `connect()` needs a local port no
//! other socket to that same destination holds (TIME_WAIT and SYN_SENT ones count), so
//! each (local address, remote address, remote port) has the whole range to itself,
//! and runs out on its own: then `connect()` fails with EADDRNOTAVAIL.
//!
//! See `__inet_hash_connect()` in `net/ipv4/inet_hashtables.c`.

use crate::watch::findings::{
    Endpoint, Evidence, Finding, FindingThresholds, HostLimits, Kind, Severity, Subject, percent,
    share,
};

use super::{Candidate, Outgoing, count};

/// A candidate for each destination whose sockets hold the warning share of the
/// ephemeral range or more. Sorts `outgoing`.
pub fn check(
    outgoing: &mut [Outgoing],
    limits: &HostLimits,
    thresholds: &FindingThresholds,
    out: &mut Vec<Candidate>,
) {
    let range = limits.ephemeral_ports();
    // No destination can reach the warning share if all of them together do not: the
    // usual case, which then costs no sort.
    if range == 0 || share(count(outgoing.len()), range) < thresholds.port_exhaustion_warning {
        return;
    }
    outgoing.sort_unstable();
    for group in outgoing.chunk_by(|a, b| {
        (a.local_addr, a.remote_addr, a.remote_port) == (b.local_addr, b.remote_addr, b.remote_port)
    }) {
        let used = count(group.len());
        let used_share = share(used, range);
        let severity = if used_share >= thresholds.port_exhaustion_critical {
            Severity::Critical
        } else if used_share >= thresholds.port_exhaustion_warning {
            Severity::Warning
        } else {
            continue;
        };
        let first = group[0];
        let time_wait = count(group.iter().filter(|socket| socket.time_wait).count());
        let subject = Subject::Destination {
            local_addr: first.local_addr,
            remote_addr: first.remote_addr,
            remote_port: first.remote_port,
        };
        let summary = format!(
            "{} -> {}: {used} of {range} local ports in use ({}%), {time_wait} in TIME_WAIT",
            first.local_addr,
            Endpoint(first.remote_addr, first.remote_port),
            percent(used_share)
        );
        let evidence = Evidence::default()
            .count("used", used)
            .count("range_size", range)
            .number("used_share", used_share)
            .count("time_wait", time_wait)
            .number("time_wait_share", share(time_wait, used))
            .count("tcp_tw_reuse", limits.tw_reuse.sysctl_value());
        out.push(Candidate::new(Finding::new(
            Kind::PortExhaustion,
            severity,
            subject,
            summary,
            evidence,
        )));
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::SystemTime;

    use super::*;
    use crate::kernel::procfs::TwReuse;
    use crate::snapshot::fixtures::socket;
    use crate::snapshot::{Snapshot, SocketRecord};
    use crate::tcp::State;
    use crate::watch::findings::Value;
    use crate::watch::findings::rules::Tally;

    /// Ports 40000–40999: a range of 1,000, so that 500 is half.
    fn narrow() -> HostLimits {
        HostLimits::new((40000, 40999), &[], TwReuse::LoopbackOnly, 262_144)
    }

    /// `count` connections from 10.0.0.1 to `remote`:443, every other one in TIME_WAIT,
    /// on local ports from 40000 up.
    fn to(remote: &str, count: u16, first_port: u16) -> Vec<SocketRecord> {
        (0..count)
            .map(|i| {
                let state = if i % 2 == 0 {
                    State::Established
                } else {
                    State::TimeWait
                };
                socket(state, "10.0.0.1", first_port + i, remote, 443)
            })
            .collect()
    }

    fn judge(sockets: Vec<SocketRecord>, limits: &HostLimits) -> Vec<Candidate> {
        let snapshot = Snapshot::new(SystemTime::UNIX_EPOCH, sockets);
        let mut tally = Tally::default();
        tally.take(&snapshot.sockets, limits);
        let mut out = Vec::new();
        check(
            &mut tally.outgoing,
            limits,
            &FindingThresholds::default(),
            &mut out,
        );
        out
    }

    #[test]
    fn half_the_range_to_one_destination_is_a_warning_and_just_under_is_nothing() {
        let warned = judge(to("192.0.2.5", 500, 40000), &narrow());
        assert_eq!(warned.len(), 1);
        assert_eq!(warned[0].finding.severity, Severity::Warning);
        assert!(judge(to("192.0.2.5", 499, 40000), &narrow()).is_empty());
    }

    #[test]
    fn eighty_percent_is_critical_and_just_under_is_a_warning() {
        let critical = judge(to("192.0.2.5", 800, 40000), &narrow());
        assert_eq!(critical[0].finding.severity, Severity::Critical);
        let warning = judge(to("192.0.2.5", 799, 40000), &narrow());
        assert_eq!(warning[0].finding.severity, Severity::Warning);
    }

    #[test]
    fn the_finding_names_the_destination_with_its_numbers_and_tw_reuse() {
        let found = judge(to("192.0.2.5", 600, 40000), &narrow());
        let finding = &found[0].finding;
        assert_eq!(
            finding.subject,
            Subject::Destination {
                local_addr: "10.0.0.1".parse::<IpAddr>().expect("address"),
                remote_addr: "192.0.2.5".parse::<IpAddr>().expect("address"),
                remote_port: 443,
            }
        );
        assert_eq!(
            finding.summary,
            "10.0.0.1 -> 192.0.2.5:443: 600 of 1000 local ports in use (60%), 300 in TIME_WAIT"
        );
        assert_eq!(
            finding.evidence.get("time_wait_share"),
            Some(&Value::Number(0.5))
        );
        assert_eq!(finding.evidence.get("tcp_tw_reuse"), Some(&Value::Count(2)));
    }

    #[test]
    fn as_many_connections_spread_over_two_destinations_are_calm() {
        // 800 outgoing connections, 400 to each: each destination has its own range.
        let mut sockets = to("192.0.2.5", 400, 40000);
        sockets.extend(to("192.0.2.6", 400, 40400));
        assert!(judge(sockets, &narrow()).is_empty());
    }

    #[test]
    fn incoming_connections_on_a_fixed_port_do_not_use_the_range() {
        // 900 clients of this host's port 443: the local port is not ephemeral.
        let sockets = (0..900)
            .map(|i| socket(State::Established, "10.0.0.1", 443, "192.0.2.5", 40000 + i))
            .collect();
        assert!(judge(sockets, &narrow()).is_empty());
    }

    #[test]
    fn clients_of_a_listener_on_a_port_inside_the_range_are_incoming_not_outgoing() {
        // A server listening on 40500, inside the range: connect() never picks a
        // listener's port, so its connections were accepted, TIME_WAIT ones included.
        let mut sockets = vec![socket(State::Listen, "10.0.0.1", 40500, "0.0.0.0", 0)];
        sockets.extend(
            (0..900).map(|i| socket(State::TimeWait, "10.0.0.1", 40500, "192.0.2.5", 1024 + i)),
        );
        let mut tally = Tally::default();
        tally.take(&sockets, &narrow());
        assert!(tally.outgoing.is_empty());
        assert_eq!(tally.time_wait, 900);
        assert!(tally.time_wait_peers.iter().all(|peer| peer.port.is_none()));
        // Without the listener, the same sockets are taken for outgoing ones.
        tally.take(&sockets[1..], &narrow());
        assert_eq!(tally.outgoing.len(), 900);
    }

    #[test]
    fn reserved_ports_shrink_the_range_the_share_is_taken_of() {
        // 450 connections are under half of 1,000 ports, but over half of the 800 left
        // once 200 are reserved.
        let reserved = HostLimits::new((40000, 40999), &[(40800, 40999)], TwReuse::Off, 1);
        let found = judge(to("192.0.2.5", 450, 40000), &reserved);
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].finding.evidence.get("range_size"),
            Some(&Value::Count(800))
        );
    }
}
