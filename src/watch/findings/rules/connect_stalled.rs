//! `connect_stalled`: SYN_SENT sockets pile up toward one remote endpoint. A `connect()`
//! stays in SYN_SENT until a SYN,ACK or a RST comes back; when the upstream is down, or
//! a firewall drops the SYNs without a word, the kernel sends the SYN again with a
//! growing timeout (`net.ipv4.tcp_syn_retries`, about two minutes in all) and every new
//! attempt joins the queue.
//!
//! See `tcp_retransmit_timer()` and `tcp_write_timeout()` in `net/ipv4/tcp_timer.c`.

use std::time::Duration;

use crate::watch::findings::{
    Endpoint, Evidence, Finding, FindingThresholds, Kind, Severity, Subject,
};

use super::{Candidate, Connecting, count};

/// A candidate for each remote endpoint with `connect_stalled_count` SYN_SENT sockets
/// or more, the oldest of which has waited `connect_stalled_age` or sent its SYN
/// `connect_stalled_retransmits` times again. Sorts `connecting`.
pub fn check(
    connecting: &mut [Connecting],
    thresholds: &FindingThresholds,
    out: &mut Vec<Candidate>,
) {
    // A calm host has a handful of SYN_SENT sockets at most: no sort then.
    if count(connecting.len()) < thresholds.connect_stalled_count {
        return;
    }
    connecting.sort_unstable_by_key(|socket| (socket.remote_addr, socket.remote_port));
    for group in
        connecting.chunk_by(|a, b| (a.remote_addr, a.remote_port) == (b.remote_addr, b.remote_port))
    {
        let connecting = count(group.len());
        let oldest = group
            .iter()
            .map(|socket| socket.waited)
            .max()
            .unwrap_or(Duration::ZERO);
        let retransmits = group
            .iter()
            .map(|socket| socket.retransmits)
            .max()
            .unwrap_or(0);
        if connecting < thresholds.connect_stalled_count
            || (oldest < thresholds.connect_stalled_age
                && retransmits < thresholds.connect_stalled_retransmits)
        {
            continue;
        }
        let first = group[0];
        let remote = Endpoint(first.remote_addr, first.remote_port);
        let summary = format!(
            "connections to {remote} are not answered: {connecting} waiting in SYN_SENT, \
             the oldest for {:.1} s, SYNs sent again up to {retransmits} times",
            oldest.as_secs_f64()
        );
        let evidence = Evidence::default()
            .count("connecting", connecting)
            .number("oldest_seconds", oldest.as_secs_f64())
            .count("most_retransmits", retransmits);
        out.push(Candidate::new(Finding::new(
            Kind::ConnectStalled,
            Severity::Warning,
            Subject::Remote {
                addr: first.remote_addr,
                port: first.remote_port,
            },
            summary,
            evidence,
        )));
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::snapshot::fixtures::socket;
    use crate::snapshot::{Snapshot, SocketRecord};
    use crate::tcp::State;
    use crate::watch::findings::rules::Tally;
    use crate::watch::findings::{HostLimits, Value};

    /// A SYN_SENT socket to `remote`:443 whose SYN was sent again `retransmits` times
    /// and whose timer fires in `expires_ms`.
    fn syn_sent(remote: &str, local_port: u16, retransmits: u8, expires_ms: u32) -> SocketRecord {
        SocketRecord {
            retransmits,
            expires_ms,
            ..socket(State::SynSent, "10.0.0.1", local_port, remote, 443)
        }
    }

    fn judge(sockets: Vec<SocketRecord>) -> Vec<Candidate> {
        let snapshot = Snapshot::new(SystemTime::UNIX_EPOCH, sockets);
        let mut tally = Tally::default();
        tally.take(&snapshot.sockets, &HostLimits::default());
        let mut out = Vec::new();
        check(
            &mut tally.connecting,
            &FindingThresholds::default(),
            &mut out,
        );
        out
    }

    /// `count` connects to `remote`, the first with `retransmits` and `expires_ms`, the
    /// rest just sent.
    fn pile(remote: &str, count: u16, retransmits: u8, expires_ms: u32) -> Vec<SocketRecord> {
        (0..count)
            .map(|i| {
                if i == 0 {
                    syn_sent(remote, 50_000, retransmits, expires_ms)
                } else {
                    syn_sent(remote, 50_000 + i, 0, 990)
                }
            })
            .collect()
    }

    #[test]
    fn five_connects_to_one_endpoint_with_a_syn_sent_twice_again_are_stalled() {
        let found = judge(pile("192.0.2.9", 5, 2, 2_500));
        assert_eq!(found.len(), 1);
        let finding = &found[0].finding;
        assert_eq!(finding.subject.to_string(), "remote 192.0.2.9:443");
        assert_eq!(finding.evidence.get("connecting"), Some(&Value::Count(5)));
        assert_eq!(
            finding.evidence.get("most_retransmits"),
            Some(&Value::Count(2))
        );
        assert_eq!(
            finding.summary,
            "connections to 192.0.2.9:443 are not answered: 5 waiting in SYN_SENT, the \
             oldest for 2.0 s, SYNs sent again up to 2 times"
        );
    }

    #[test]
    fn four_stalled_connects_are_not_a_pile() {
        assert!(judge(pile("192.0.2.9", 4, 5, 1_000)).is_empty());
    }

    #[test]
    fn the_oldest_waiting_a_second_is_enough_and_just_under_is_not() {
        // Before any retransmit the timer counts down from 1 s: at 0 ms left, 1 s went.
        assert_eq!(judge(pile("192.0.2.9", 5, 0, 0)).len(), 1);
        assert!(judge(pile("192.0.2.9", 5, 0, 1)).is_empty());
        // One retransmit is a second at least.
        assert_eq!(judge(pile("192.0.2.9", 5, 1, 1_500)).len(), 1);
    }

    #[test]
    fn connects_spread_over_endpoints_are_judged_apart() {
        let mut sockets = pile("192.0.2.9", 3, 3, 0);
        sockets.extend(pile("192.0.2.10", 3, 3, 0));
        assert!(judge(sockets).is_empty());
    }
}
