//! `time_wait_pressure`: the namespace's TIME_WAIT remnants against
//! `net.ipv4.tcp_max_tw_buckets`. Past the limit the kernel closes connections without
//! TIME_WAIT (`TCPTimeWaitOverflow` counts them; see `tcp_time_wait()` in
//! `net/ipv4/tcp_minisocks.c`), and a late segment of an old connection can then land
//! in a new one with the same endpoints. The finding names the peers holding most of
//! them, since the fix is in how those connections are used.

use std::cmp::Reverse;
use std::fmt::Write;

use crate::watch::findings::{
    Endpoint, Evidence, Finding, FindingThresholds, HostLimits, Kind, Severity, Subject, percent,
    share,
};

use super::{Candidate, Peer, count};

/// How many peers the evidence names.
const TOP_PEERS: usize = 3;

/// A candidate when TIME_WAIT remnants hold the warning share of the buckets or more,
/// or when the kernel is dropping them (`overflows_per_second` above 0): critical, and
/// raised at once, since connections are losing their TIME_WAIT now. Sorts `peers`
/// only when there is a finding.
pub fn check(
    time_wait: u32,
    peers: &mut [Peer],
    overflows_per_second: f64,
    limits: &HostLimits,
    thresholds: &FindingThresholds,
    out: &mut Vec<Candidate>,
) {
    let max = limits.max_tw_buckets;
    let used_share = share(time_wait, max);
    let overflowing = overflows_per_second > 0.0;
    let severity = if overflowing || (max > 0 && used_share >= thresholds.time_wait_critical) {
        Severity::Critical
    } else if max > 0 && used_share >= thresholds.time_wait_warning {
        Severity::Warning
    } else {
        return;
    };
    let top = top_peers(peers);
    let mut summary = if overflowing {
        format!(
            "TIME_WAIT table full: {overflows_per_second:.1} closing connections a second skip \
             TIME_WAIT ({time_wait} held, tcp_max_tw_buckets {max})"
        )
    } else {
        format!(
            "{time_wait} TIME_WAIT sockets, {}% of tcp_max_tw_buckets ({max})",
            percent(used_share)
        )
    };
    if let Some((peer, held)) = top.first() {
        let _ = write!(summary, "; most with {} ({held})", Shown(*peer));
    }
    let listed = top
        .iter()
        .map(|(peer, held)| format!("{} {held}", Shown(*peer)))
        .collect::<Vec<_>>()
        .join(", ");
    let evidence = Evidence::default()
        .count("time_wait", time_wait)
        .count("max_tw_buckets", max)
        .number("share", used_share)
        .number("overflows_per_second", overflows_per_second)
        .text("top_peers", listed);
    out.push(Candidate {
        finding: Finding::new(
            Kind::TimeWaitPressure,
            severity,
            Subject::Namespace,
            summary,
            evidence,
        ),
        at_once: overflowing,
    });
}

/// The peers with the most TIME_WAIT remnants, most first, ties in address order.
fn top_peers(peers: &mut [Peer]) -> Vec<(Peer, u32)> {
    peers.sort_unstable();
    let mut counted: Vec<(Peer, u32)> = peers
        .chunk_by(|a, b| a == b)
        .map(|group| (group[0], count(group.len())))
        .collect();
    counted.sort_by_key(|(peer, held)| (Reverse(*held), *peer));
    counted.truncate(TOP_PEERS);
    counted
}

/// A peer as the summary shows it.
struct Shown(Peer);

impl std::fmt::Display for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.port {
            Some(port) => write!(f, "{}", Endpoint(self.0.addr, port)),
            None => write!(f, "{} (incoming)", self.0.addr),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::kernel::procfs::TwReuse;
    use crate::snapshot::fixtures::socket;
    use crate::snapshot::{Snapshot, SocketRecord};
    use crate::tcp::State;
    use crate::watch::findings::Value;
    use crate::watch::findings::rules::Tally;

    /// 1,000 TIME_WAIT buckets, so that 500 is half.
    fn limits() -> HostLimits {
        HostLimits::new((32768, 60999), &[], TwReuse::LoopbackOnly, 1000)
    }

    /// `outgoing` TIME_WAIT remnants of connections to 192.0.2.5:443, and `incoming`
    /// ones of clients of this host's port 80, from 198.51.100.7.
    fn remnants(outgoing: u16, incoming: u16) -> Vec<SocketRecord> {
        let mut sockets: Vec<SocketRecord> = (0..outgoing)
            .map(|i| socket(State::TimeWait, "10.0.0.1", 33000 + i, "192.0.2.5", 443))
            .collect();
        sockets.extend(
            (0..incoming)
                .map(|i| socket(State::TimeWait, "10.0.0.1", 80, "198.51.100.7", 1024 + i)),
        );
        sockets
    }

    fn judge(sockets: Vec<SocketRecord>, overflows_per_second: f64) -> Vec<Candidate> {
        let snapshot = Snapshot::new(SystemTime::UNIX_EPOCH, sockets);
        let mut tally = Tally::default();
        tally.take(&snapshot.sockets, &limits());
        let mut out = Vec::new();
        check(
            tally.time_wait,
            &mut tally.time_wait_peers,
            overflows_per_second,
            &limits(),
            &FindingThresholds::default(),
            &mut out,
        );
        out
    }

    fn severity(found: &[Candidate]) -> Option<Severity> {
        found.first().map(|c| c.finding.severity)
    }

    #[test]
    fn half_the_buckets_is_a_warning_and_just_under_is_nothing() {
        assert_eq!(
            severity(&judge(remnants(300, 200), 0.0)),
            Some(Severity::Warning)
        );
        assert_eq!(severity(&judge(remnants(300, 199), 0.0)), None);
    }

    #[test]
    fn ninety_percent_is_critical_and_just_under_is_a_warning() {
        assert_eq!(
            severity(&judge(remnants(900, 0), 0.0)),
            Some(Severity::Critical)
        );
        assert_eq!(
            severity(&judge(remnants(899, 0), 0.0)),
            Some(Severity::Warning)
        );
    }

    #[test]
    fn overflowing_buckets_are_critical_at_once_however_few_are_held() {
        let found = judge(remnants(10, 0), 3.0);
        assert_eq!(severity(&found), Some(Severity::Critical));
        assert!(found[0].at_once);
        assert!(
            found[0].finding.summary.starts_with(
                "TIME_WAIT table full: 3.0 closing connections a second skip TIME_WAIT"
            )
        );
    }

    #[test]
    fn the_summary_names_the_peer_holding_most_and_incoming_clients_by_address() {
        let found = judge(remnants(400, 200), 0.0);
        assert_eq!(
            found[0].finding.summary,
            "600 TIME_WAIT sockets, 60% of tcp_max_tw_buckets (1000); most with 192.0.2.5:443 (400)"
        );
        assert_eq!(
            found[0].finding.evidence.get("top_peers"),
            Some(&Value::Text(
                "192.0.2.5:443 400, 198.51.100.7 (incoming) 200".to_owned()
            ))
        );
        assert_eq!(found[0].finding.subject, Subject::Namespace);
    }

    #[test]
    fn a_busy_server_with_a_fraction_of_its_buckets_in_use_is_calm() {
        assert!(judge(remnants(200, 200), 0.0).is_empty());
    }
}
