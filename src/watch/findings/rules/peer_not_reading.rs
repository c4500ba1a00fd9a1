//! `peer_not_reading`: established connections whose peer takes nothing in. When the
//! application at the other end stops reading, its receive buffer fills, it advertises
//! a zero window, and the sender here keeps its bytes in the Send-Q and probes the
//! window on the persist timer (`tcp_probe_timer()` in `net/ipv4/tcp_timer.c`). A peer
//! that reads, only too slowly, shows as a Send-Q that does not go down for a long
//! time, which live polls see.
//!
//! When the peer is a local socket too, its Recv-Q holds what it has not read: the
//! finding says which local port that is.

use std::time::Duration;

use crate::snapshot::SocketRecord;
use crate::tcp::State;
use crate::watch::findings::{
    Endpoint, Evidence, Finding, FindingThresholds, Kind, Severity, Subject,
};

use super::{Candidate, Unacknowledged, count};

/// A candidate for each (local port, remote endpoint) with a connection whose peer
/// advertises a zero window, or whose Send-Q has not gone down for
/// `peer_not_reading_after`. `sockets` is the poll's snapshot, looked into only for a
/// candidate's local reader. Sorts `unacknowledged`.
pub fn check(
    unacknowledged: &mut [Unacknowledged],
    sockets: &[SocketRecord],
    thresholds: &FindingThresholds,
    out: &mut Vec<Candidate>,
) {
    let stuck = |socket: &Unacknowledged| {
        socket.zero_window_held || socket.stalled >= thresholds.peer_not_reading_after
    };
    // Most sockets with a Send-Q are draining it: nothing to group then.
    if !unacknowledged.iter().any(stuck) {
        return;
    }
    unacknowledged.sort_unstable_by_key(|socket| {
        (
            !stuck(socket),
            socket.local_port,
            socket.remote_addr,
            socket.remote_port,
        )
    });
    let stuck_count = unacknowledged
        .iter()
        .take_while(|socket| stuck(socket))
        .count();
    for group in unacknowledged[..stuck_count].chunk_by(|a, b| {
        (a.local_port, a.remote_addr, a.remote_port) == (b.local_port, b.remote_addr, b.remote_port)
    }) {
        let first = group[0];
        let connections = count(group.len());
        let zero_window = count(group.iter().filter(|socket| socket.zero_window).count());
        let largest = group.iter().map(|socket| socket.send_q).max().unwrap_or(0);
        let stalled = group
            .iter()
            .map(|socket| socket.stalled)
            .max()
            .unwrap_or(Duration::ZERO);
        let reader = local_reader(&first, sockets);
        let how = if zero_window > 0 {
            "its window is zero".to_owned()
        } else {
            format!("Send-Q not going down for {:.0} s", stalled.as_secs_f64())
        };
        let mut summary = format!(
            "the peer {} of local port {} is not reading: {connections} connection{}, {how}, \
             {largest} bytes waiting",
            Endpoint(first.remote_addr, first.remote_port),
            first.local_port,
            if connections == 1 { "" } else { "s" },
        );
        let mut evidence = Evidence::default()
            .count("connections", connections)
            .count("zero_window", zero_window)
            .count("largest_send_q", largest)
            .number("stalled_seconds", stalled.as_secs_f64());
        if let Some(reader) = reader {
            summary.push_str(&format!(
                "; the reader is local, port {} with {} bytes unread",
                reader.local_port, reader.recv_q
            ));
            evidence = evidence
                .count("reader_local_port", reader.local_port)
                .count("reader_recv_q", reader.recv_q);
        }
        out.push(Candidate::new(Finding::new(
            Kind::PeerNotReading,
            Severity::Warning,
            Subject::Peer {
                local_port: first.local_port,
                remote_addr: first.remote_addr,
                remote_port: first.remote_port,
            },
            summary,
            evidence,
        )));
    }
}

/// The local socket at the other end of `socket`'s connection, when the peer is on this
/// host: the one whose endpoints are `socket`'s swapped.
fn local_reader<'a>(
    socket: &Unacknowledged,
    sockets: &'a [SocketRecord],
) -> Option<&'a SocketRecord> {
    sockets.iter().find(|other| {
        other.state == State::Established
            && (other.local_addr, other.local_port) == (socket.remote_addr, socket.remote_port)
            && (other.remote_addr, other.remote_port) == (socket.local_addr, socket.local_port)
    })
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::snapshot::fixtures::socket;
    use crate::snapshot::{Snapshot, Timer};
    use crate::watch::findings::rules::Tally;
    use crate::watch::findings::{HostLimits, Value};

    /// A connection from local port 40000 to 192.0.2.5:443 with `send_q` bytes unsent.
    fn sending(send_q: u32, timer: Timer) -> SocketRecord {
        SocketRecord {
            send_q,
            timer,
            ..socket(State::Established, "10.0.0.1", 40_000, "192.0.2.5", 443)
        }
    }

    /// Judges `sockets`, each unacknowledged one stalled for `stalled`.
    fn judge(sockets: Vec<SocketRecord>, stalled: Duration) -> Vec<Candidate> {
        let snapshot = Snapshot::new(SystemTime::UNIX_EPOCH, sockets);
        let mut tally = Tally::default();
        tally.take(&snapshot.sockets, &HostLimits::default());
        for socket in &mut tally.unacknowledged {
            socket.stalled = stalled;
        }
        let mut out = Vec::new();
        check(
            &mut tally.unacknowledged,
            &snapshot.sockets,
            &FindingThresholds::default(),
            &mut out,
        );
        out
    }

    #[test]
    fn a_zero_window_is_a_peer_not_reading_at_once() {
        let found = judge(vec![sending(65_536, Timer::Persist)], Duration::ZERO);
        assert_eq!(found.len(), 1);
        let finding = &found[0].finding;
        assert_eq!(
            finding.subject.to_string(),
            "local port 40000 -> 192.0.2.5:443"
        );
        assert_eq!(finding.evidence.get("zero_window"), Some(&Value::Count(1)));
        assert_eq!(
            finding.evidence.get("largest_send_q"),
            Some(&Value::Count(65_536))
        );
        assert_eq!(
            finding.summary,
            "the peer 192.0.2.5:443 of local port 40000 is not reading: 1 connection, its \
             window is zero, 65536 bytes waiting"
        );
    }

    #[test]
    fn a_send_q_stalled_ten_seconds_counts_and_nine_does_not() {
        let found = judge(vec![sending(4_096, Timer::On)], Duration::from_secs(10));
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].finding.evidence.get("stalled_seconds"),
            Some(&Value::Number(10.0))
        );
        assert!(judge(vec![sending(4_096, Timer::On)], Duration::from_secs(9)).is_empty());
    }

    #[test]
    fn a_draining_send_q_and_an_idle_connection_are_calm() {
        let idle = sending(0, Timer::Keepalive);
        assert!(judge(vec![sending(4_096, Timer::On), idle], Duration::ZERO).is_empty());
    }

    #[test]
    fn a_local_reader_is_named_with_what_it_has_not_read() {
        let writer = SocketRecord {
            send_q: 2_000_000,
            timer: Timer::Persist,
            ..socket(State::Established, "127.0.0.1", 40_000, "127.0.0.1", 5_000)
        };
        let reader = SocketRecord {
            recv_q: 3_000_000,
            ..socket(State::Established, "127.0.0.1", 5_000, "127.0.0.1", 40_000)
        };
        let found = judge(vec![writer, reader], Duration::ZERO);
        assert_eq!(found.len(), 1);
        let finding = &found[0].finding;
        assert_eq!(
            finding.evidence.get("reader_recv_q"),
            Some(&Value::Count(3_000_000))
        );
        assert!(
            finding
                .summary
                .ends_with("; the reader is local, port 5000 with 3000000 bytes unread"),
            "{}",
            finding.summary
        );
    }
}
