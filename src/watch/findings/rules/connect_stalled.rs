//! `connect_stalled`: SYN_SENT sockets pile up toward one remote endpoint. A `connect()`
//! stays in SYN_SENT until a SYN,ACK or a RST comes back; when the upstream is down, or
//! a firewall drops the SYNs without a word, the kernel sends the SYN again with a
//! growing timeout (`net.ipv4.tcp_syn_retries`, about two minutes in all) and every new
//! attempt joins the queue.
//!
//! See `tcp_retransmit_timer()` and `tcp_write_timeout()` in `net/ipv4/tcp_timer.c`.

use std::fmt::Write;
use std::time::Duration;

use crate::kernel::procfs::{Process, ProcessMap};
use crate::watch::findings::{
    Endpoint, Escaped, Evidence, Finding, FindingThresholds, Kind, Severity, Subject,
};

use super::{Candidate, Connecting, count};

/// How many of the processes waiting on one endpoint a finding names; the rest are
/// counted.
const NAMED_PROCESSES: usize = 3;

/// A candidate for each remote endpoint with `connect_stalled_count` SYN_SENT sockets
/// or more, the oldest of which has waited `connect_stalled_age` or sent its SYN
/// `connect_stalled_retransmits` times again. With `processes` (`-p`), the finding
/// names the local processes waiting. Sorts `connecting`.
pub fn check(
    connecting: &mut [Connecting],
    processes: Option<&ProcessMap>,
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
        let mut summary = format!(
            "connections to {remote} are not answered: {connecting} waiting in SYN_SENT, \
             the oldest for {:.1} s, SYNs sent again up to {retransmits} times",
            oldest.as_secs_f64()
        );
        let mut evidence = Evidence::default()
            .count("connecting", connecting)
            .number("oldest_seconds", oldest.as_secs_f64())
            .count("most_retransmits", retransmits);
        if let Some(waiting) = processes.and_then(|map| waiting_processes(group, map)) {
            let _ = write!(summary, "; waiting: {waiting}");
            evidence = evidence.text("processes", waiting);
        }
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

/// The processes holding `group`'s sockets, most sockets first: `curl (pid 12, 4
/// sockets), wget (pid 9)`, at most [`NAMED_PROCESSES`] named and the rest counted.
/// `None` when the map knows none of them.
fn waiting_processes(group: &[Connecting], processes: &ProcessMap) -> Option<String> {
    // A pile is a few hundred sockets at most and a handful of processes: a small
    // vector beats a map.
    let mut holders: Vec<(&Process, u32)> = Vec::new();
    for socket in group {
        let Some(process) = processes.lookup(socket.inode) else {
            continue;
        };
        match holders
            .iter_mut()
            .find(|(known, _)| known.pid == process.pid)
        {
            Some((_, sockets)) => *sockets += 1,
            None => holders.push((process, 1)),
        }
    }
    if holders.is_empty() {
        return None;
    }
    holders.sort_by_key(|&(process, sockets)| (std::cmp::Reverse(sockets), process.pid));
    let mut text = String::new();
    for (process, sockets) in holders.iter().take(NAMED_PROCESSES) {
        if !text.is_empty() {
            text.push_str(", ");
        }
        let _ = write!(text, "{} (pid {}", Escaped(&process.name), process.pid);
        if *sockets > 1 {
            let _ = write!(text, ", {sockets} sockets");
        }
        text.push(')');
    }
    if let Some(more) = holders
        .len()
        .checked_sub(NAMED_PROCESSES)
        .filter(|&n| n > 0)
    {
        let _ = write!(text, " and {more} more");
    }
    Some(text)
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
        judge_with(sockets, None)
    }

    fn judge_with(sockets: Vec<SocketRecord>, processes: Option<&ProcessMap>) -> Vec<Candidate> {
        let snapshot = Snapshot::new(SystemTime::UNIX_EPOCH, sockets);
        let mut tally = Tally::default();
        tally.take(&snapshot.sockets, &HostLimits::default());
        let mut out = Vec::new();
        check(
            &mut tally.connecting,
            processes,
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

    /// `pile`, each socket with inode 100 + its index.
    fn pile_with_inodes(count: u16) -> Vec<SocketRecord> {
        pile("192.0.2.9", count, 2, 2_500)
            .into_iter()
            .zip(100..)
            .map(|(socket, inode)| SocketRecord { inode, ..socket })
            .collect()
    }

    #[test]
    fn with_processes_known_the_finding_names_who_waits_most_sockets_first() {
        let map = ProcessMap::of(&[(7, "curl", &[100]), (12, "app", &[101, 102, 103])]);
        let found = judge_with(pile_with_inodes(5), Some(&map));
        let finding = &found[0].finding;
        let waiting = "app (pid 12, 3 sockets), curl (pid 7)";
        assert_eq!(
            finding.evidence.get("processes"),
            Some(&Value::Text(waiting.to_owned()))
        );
        assert!(
            finding.summary.ends_with(&format!("; waiting: {waiting}")),
            "{}",
            finding.summary
        );
    }

    #[test]
    fn beyond_three_processes_the_rest_are_counted_and_names_are_escaped() {
        let map = ProcessMap::of(&[
            (1, "a", &[100]),
            (2, "b", &[101]),
            (3, "c", &[102]),
            (4, "x\x1b]0;owned\x07", &[103]),
            (5, "e", &[104]),
        ]);
        let found = judge_with(pile_with_inodes(5), Some(&map));
        let Some(Value::Text(waiting)) = found[0].finding.evidence.get("processes") else {
            panic!("no processes in {:?}", found[0].finding.evidence);
        };
        assert_eq!(waiting, "a (pid 1), b (pid 2), c (pid 3) and 2 more");
        let map = ProcessMap::of(&[(4, "x\x1b]0;owned\x07", &[100, 101])]);
        let found = judge_with(pile_with_inodes(5), Some(&map));
        assert!(!found[0].finding.summary.contains('\x1b'));
    }

    #[test]
    fn processes_the_map_does_not_know_leave_the_finding_as_without_p() {
        let map = ProcessMap::of(&[(7, "curl", &[999])]);
        let found = judge_with(pile_with_inodes(5), Some(&map));
        assert_eq!(found[0].finding.evidence.get("processes"), None);
        assert_eq!(
            found[0].finding.summary,
            judge(pile_with_inodes(5))[0].finding.summary
        );
    }
}
