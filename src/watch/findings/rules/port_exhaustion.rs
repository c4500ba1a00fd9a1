//! `port_exhaustion`: outgoing connections from one local address to one remote
//! endpoint use most of the ephemeral port range. `connect()` needs a local port no
//! other socket to that same destination holds (TIME_WAIT and SYN_SENT ones count), so
//! each (local address, remote address, remote port) has the whole range to itself,
//! and runs out on its own: then `connect()` fails with EADDRNOTAVAIL.
//!
//! See `__inet_hash_connect()` in `net/ipv4/inet_hashtables.c`.

use std::net::IpAddr;

use crate::watch::findings::{
    Endpoint, Evidence, Finding, FindingThresholds, HostLimits, Kind, Severity, Subject, percent,
    share,
};

use super::{Candidate, Outgoing, count};

/// Above this many destinations that could each reach the warning share (a small
/// range among many sockets), finding them among the heavy hitters would cost more than
/// sorting: sort instead.
const MOST_HEAVY_HITTERS: usize = 16;

/// A destination: the three things a local port must be unique for.
type Destination = (IpAddr, IpAddr, u16);

fn destination(socket: &Outgoing) -> Destination {
    (socket.local_addr, socket.remote_addr, socket.remote_port)
}

/// A candidate for each destination whose sockets hold the warning share of the
/// ephemeral range or more. May reorder `outgoing`.
pub fn check(
    outgoing: &mut [Outgoing],
    limits: &HostLimits,
    thresholds: &FindingThresholds,
    out: &mut Vec<Candidate>,
) {
    let range = limits.ephemeral_ports();
    // The fewest sockets a destination needs for a warning: at least one.
    let least = (thresholds.port_exhaustion_warning * f64::from(range))
        .ceil()
        .max(1.0);
    // At most this many destinations can have that many: usually 0 (and this rule then
    // costs nothing more), else a handful.
    let most = (outgoing.len() as f64 / least) as usize;
    if range == 0 || most == 0 {
        return;
    }
    if most > MOST_HEAVY_HITTERS {
        outgoing.sort_unstable();
        for group in outgoing.chunk_by(|a, b| destination(a) == destination(b)) {
            let time_wait = count(group.iter().filter(|socket| socket.time_wait).count());
            judge(
                destination(&group[0]),
                count(group.len()),
                time_wait,
                limits,
                thresholds,
                out,
            );
        }
        return;
    }
    for (key, used, time_wait) in heavy_hitters(outgoing, most) {
        judge(key, used, time_wait, limits, thresholds, out);
    }
}

/// Every destination with more than `len / (slots + 1)` of the sockets, with its exact
/// count and TIME_WAIT count (and perhaps a few with fewer), in two passes and `slots`
/// counters: the Misra–Gries frequent-items summary finds the candidates, a second
/// pass counts them.
fn heavy_hitters(outgoing: &[Outgoing], slots: usize) -> Vec<(Destination, u32, u32)> {
    let mut counters: Vec<(Destination, usize)> = Vec::with_capacity(slots);
    for socket in outgoing {
        let key = destination(socket);
        if let Some(counter) = counters.iter_mut().find(|(held, _)| *held == key) {
            counter.1 += 1;
        } else if counters.len() < slots {
            counters.push((key, 1));
        } else {
            for counter in &mut counters {
                counter.1 -= 1;
            }
            counters.retain(|(_, left)| *left > 0);
        }
    }
    let mut exact: Vec<(Destination, u32, u32)> =
        counters.into_iter().map(|(key, _)| (key, 0, 0)).collect();
    for socket in outgoing {
        let key = destination(socket);
        if let Some(found) = exact.iter_mut().find(|(held, _, _)| *held == key) {
            found.1 += 1;
            found.2 += u32::from(socket.time_wait);
        }
    }
    exact.sort_unstable();
    exact
}

/// A candidate when `used` sockets to one destination reach the warning share.
fn judge(
    (local_addr, remote_addr, remote_port): Destination,
    used: u32,
    time_wait: u32,
    limits: &HostLimits,
    thresholds: &FindingThresholds,
    out: &mut Vec<Candidate>,
) {
    let range = limits.ephemeral_ports();
    let used_share = share(used, range);
    let severity = if used_share >= thresholds.port_exhaustion_critical {
        Severity::Critical
    } else if used_share >= thresholds.port_exhaustion_warning {
        Severity::Warning
    } else {
        return;
    };
    let subject = Subject::Destination {
        local_addr,
        remote_addr,
        remote_port,
    };
    let summary = format!(
        "{local_addr} -> {}: {used} of {range} local ports in use ({}%), {time_wait} in TIME_WAIT",
        Endpoint(remote_addr, remote_port),
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
    fn a_heavy_destination_among_many_light_ones_is_found_in_any_order() {
        // 600 to one destination, interleaved with 900 to 900 others: the frequent-items
        // pass must keep the one however the others crowd it.
        let mut sockets = Vec::new();
        for (i, heavy) in to("192.0.2.5", 600, 40000).into_iter().enumerate() {
            sockets.push(heavy);
            if i < 450 {
                for j in 0..2u16 {
                    let remote = format!("198.51.{}.{}", i / 200, i % 200);
                    sockets.push(socket(
                        State::Established,
                        "10.0.0.1",
                        40000 + j,
                        &remote,
                        443,
                    ));
                }
            }
        }
        let found = judge(sockets, &narrow());
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].finding.evidence.get("used"),
            Some(&Value::Count(600))
        );
        assert_eq!(
            found[0].finding.evidence.get("time_wait"),
            Some(&Value::Count(300))
        );
    }

    #[test]
    fn a_tiny_range_with_many_destinations_near_it_is_judged_by_sorting_the_same_way() {
        // 10 ports: 5 make a warning, and 100 sockets could hold 20 such destinations,
        // more than the frequent-items pass keeps.
        let tiny = HostLimits::new((40000, 40009), &[], TwReuse::Off, 1);
        let mut sockets = Vec::new();
        for d in 0..20u16 {
            let remote = format!("192.0.2.{d}");
            let used = if d < 3 { 8 } else { 4 };
            sockets.extend(
                (0..used).map(|p| socket(State::Established, "10.0.0.1", 40000 + p, &remote, 443)),
            );
        }
        let found = judge(sockets, &tiny);
        let severities: Vec<Severity> = found.iter().map(|c| c.finding.severity).collect();
        assert_eq!(severities, [Severity::Critical; 3]);
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
}
