//! `peer_not_reading`: established connections whose peer takes nothing in. When the
//! application at the other end stops reading, its receive buffer fills, it advertises
//! a zero window, and the sender here keeps its bytes in the Send-Q and probes the
//! window on the persist timer (`tcp_probe_timer()` in `net/ipv4/tcp_timer.c`). A peer
//! that reads, only too slowly, shows as a Send-Q that does not go down for a long
//! time, which live polls see.
//!
//! Connections this host opened (from an ephemeral port) are grouped by the server
//! they go to; connections into this host's services by the local port, their clients
//! listed. So a stuck upstream is one finding, not one per connection to it.
//!
//! When the peer is a local socket too, its Recv-Q holds what it has not read: the
//! finding says which local port that is.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use crate::snapshot::SocketRecord;
use crate::tcp::State;
use crate::watch::findings::{
    Endpoint, Evidence, Finding, FindingThresholds, Kind, Severity, Subject,
};

use super::{Candidate, Unacknowledged, count};

/// How many clients of a local port the evidence lists; the count says how many.
const LISTED: usize = 5;

impl Unacknowledged {
    /// What its finding is about: the server it sends to, or the local port its
    /// clients came to.
    fn subject(&self) -> Subject {
        if self.outgoing {
            Subject::Remote {
                addr: self.remote_addr,
                port: self.remote_port,
            }
        } else {
            Subject::LocalPort(self.local_port)
        }
    }

    /// The key it is sorted by: its subject's, then its client's address, so that a
    /// group's sockets are together and its clients in order.
    fn order(&self) -> (bool, u16, IpAddr, u16) {
        if self.outgoing {
            (true, 0, self.remote_addr, self.remote_port)
        } else {
            (false, self.local_port, self.remote_addr, 0)
        }
    }
}

/// A candidate for each remote server, and each local port, with a connection whose
/// peer keeps a zero window, or whose Send-Q has not gone down for
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
    unacknowledged.sort_unstable_by_key(|socket| (!stuck(socket), socket.order()));
    let stuck_count = unacknowledged
        .iter()
        .take_while(|socket| stuck(socket))
        .count();
    for group in unacknowledged[..stuck_count].chunk_by(|a, b| a.subject() == b.subject()) {
        let first = group[0];
        let connections = count(group.len());
        let zero_window = count(group.iter().filter(|socket| socket.zero_window).count());
        let largest = group.iter().map(|socket| socket.send_q).max().unwrap_or(0);
        let stalled = group
            .iter()
            .map(|socket| socket.stalled)
            .max()
            .unwrap_or(Duration::ZERO);
        let how = if zero_window > 0 {
            format!("{zero_window} with a zero window")
        } else {
            format!("Send-Q not going down for {:.0} s", stalled.as_secs_f64())
        };
        let plural = if connections == 1 { "" } else { "s" };
        let mut summary = if first.outgoing {
            format!(
                "{} is not reading: {connections} connection{plural} to it, {how}, up to \
                 {largest} bytes waiting",
                Endpoint(first.remote_addr, first.remote_port),
            )
        } else {
            format!(
                "clients of local port {} are not reading: {connections} connection{plural}, \
                 {how}, up to {largest} bytes waiting",
                first.local_port,
            )
        };
        let mut evidence = Evidence::default()
            .count("connections", connections)
            .count("zero_window", zero_window)
            .count("largest_send_q", largest)
            .number("stalled_seconds", stalled.as_secs_f64());
        if !first.outgoing {
            let mut clients: Vec<IpAddr> = group.iter().map(|socket| socket.remote_addr).collect();
            clients.dedup();
            let mut listed = clients
                .iter()
                .take(LISTED)
                .map(IpAddr::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            if clients.len() > LISTED {
                let _ = write!(listed, " and {} more", clients.len() - LISTED);
            }
            evidence = evidence.text("remote_addresses", listed);
        }
        if let Some(reader) = local_reader(&first, sockets) {
            let _ = write!(
                summary,
                "; the reader is local, port {} with {} bytes unread",
                reader.local_port, reader.recv_q
            );
            evidence = evidence
                .count("reader_local_port", reader.local_port)
                .count("reader_recv_q", reader.recv_q);
        }
        out.push(Candidate::new(Finding::new(
            Kind::PeerNotReading,
            Severity::Warning,
            first.subject(),
            summary,
            evidence,
        )));
    }
}

/// The local socket at the other end of `socket`'s connection, when the peer is on this
/// host: the one whose endpoints are `socket`'s swapped. One walk of the snapshot per
/// finding, and only for a peer at one of this host's addresses.
fn local_reader<'a>(
    socket: &Unacknowledged,
    sockets: &'a [SocketRecord],
) -> Option<&'a SocketRecord> {
    // A connection to this host comes from one of its own addresses: only then is the
    // snapshot worth a walk.
    if !(socket.remote_addr.is_loopback() || socket.remote_addr == socket.local_addr) {
        return None;
    }
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
        assert_eq!(finding.subject.to_string(), "remote 192.0.2.5:443");
        assert_eq!(finding.evidence.get("zero_window"), Some(&Value::Count(1)));
        assert_eq!(
            finding.evidence.get("largest_send_q"),
            Some(&Value::Count(65_536))
        );
        assert_eq!(
            finding.summary,
            "192.0.2.5:443 is not reading: 1 connection to it, 1 with a zero window, up to \
             65536 bytes waiting"
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
    fn clients_of_one_local_port_not_reading_are_one_finding_naming_them() {
        let client = |remote: &str, port: u16| SocketRecord {
            send_q: 1_000,
            timer: Timer::Persist,
            ..socket(State::Established, "10.0.0.1", 8080, remote, port)
        };
        let found = judge(
            vec![
                client("192.0.2.5", 40_000),
                client("192.0.2.6", 40_001),
                client("192.0.2.5", 40_002),
            ],
            Duration::ZERO,
        );
        assert_eq!(found.len(), 1);
        let finding = &found[0].finding;
        assert_eq!(finding.subject.to_string(), "local port 8080");
        assert_eq!(finding.evidence.get("connections"), Some(&Value::Count(3)));
        assert_eq!(
            finding.evidence.get("remote_addresses"),
            Some(&Value::Text("192.0.2.5, 192.0.2.6".to_owned()))
        );
    }

    #[test]
    fn many_connections_to_one_stuck_server_are_one_finding() {
        let sockets = (0..1_000)
            .map(|i| SocketRecord {
                send_q: 1_000,
                timer: Timer::Persist,
                ..socket(State::Established, "10.0.0.1", 40_000 + i, "192.0.2.5", 443)
            })
            .collect();
        let found = judge(sockets, Duration::ZERO);
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].finding.evidence.get("connections"),
            Some(&Value::Count(1_000))
        );
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
