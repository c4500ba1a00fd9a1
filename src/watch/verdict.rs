//! Says what one listener's numbers mean, in words an on-call engineer acts on: a SYN
//! flood, a backlog from a few hosts, an application slow to `accept()`, or nothing.
//!
//! It judges a single poll. Keeping a flood verdict up while SYN cookies hide the
//! evidence is [`super::tracker`]'s job, not this module's.

use std::time::Duration;

use serde::{Serialize, Serializer};

use super::listeners::Listener;

/// Below this many half-open connections there are too few to tell forged sources
/// from a handful of slow clients, however small the listener's backlog.
const SMALLEST_FLOOD: u32 = 16;

/// Where "many" and "full" begin. The defaults suit a server on the public Internet;
/// see each field for why.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Half-open connections on one listener that count as many. Default 64: a
    /// healthy listener holds about (new connections per second × round-trip time)
    /// half-open, so 64 at 100 ms would be 640 handshakes a second; and it is half of
    /// the classic backlog of 128, so it fires before that SYN queue is full. For a
    /// listener whose backlog is smaller (Java's default is 50), a full SYN queue
    /// counts as many, since Linux never holds more half-open than the backlog.
    pub min_half_open: u32,
    /// Distinct source addresses needed to call the half-open connections a flood.
    /// Default 32 (half of `min_half_open`): forged sources are random, so nearly every
    /// half-open connection has its own; real clients retrying come from few.
    /// Scaled down with `min_half_open` for a small backlog.
    pub min_distinct_sources: u32,
    /// Distinct /24 (IPv4) or /64 (IPv6) networks needed as well. Default 16: many
    /// addresses inside one or two networks are a single site or NAT pool, not the
    /// whole Internet. Scaled down with `min_half_open` for a small backlog.
    pub min_distinct_prefixes: u32,
    /// Accept-queue length, as a share of the backlog, that counts as full. Default
    /// 0.9: the kernel starts dropping completed handshakes at 1.0, so 0.9 warns just
    /// before connections are lost.
    pub accept_queue_full_ratio: f64,
    /// Growth per second at which a TcpExt counter counts as rising. Default 1.0: the
    /// kernel sends a SYN cookie or drops a connection only when a queue is full, so
    /// anything steadier than a stray event a second is a queue staying full.
    pub min_counter_rate: f64,
    /// How long a flood verdict stays after the last evidence of it (half-open
    /// connections over the thresholds, or SYN cookies rising). Default 30 s: a few
    /// polls, so that the verdict does not flicker between the pulses of a pulsed
    /// attack or while SYN cookies briefly catch up.
    pub flood_hold: Duration,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            min_half_open: 64,
            min_distinct_sources: 32,
            min_distinct_prefixes: 16,
            accept_queue_full_ratio: 0.9,
            min_counter_rate: 1.0,
            flood_hold: Duration::from_secs(30),
        }
    }
}

impl Thresholds {
    /// The half-open count that is many for a listener with this backlog.
    ///
    /// Linux holds at most about `backlog` request sockets per listener
    /// (`inet_csk_reqsk_queue_is_full`); past that, SYNs get cookies or are dropped.
    fn many_half_open(&self, backlog: u32) -> u32 {
        if backlog == 0 {
            return self.min_half_open;
        }
        self.min_half_open.min(backlog.max(SMALLEST_FLOOD))
    }

    /// `wanted` scaled by how far `many` fell below `min_half_open`, rounded up.
    fn scaled(&self, wanted: u32, many: u32) -> u32 {
        if many >= self.min_half_open {
            return wanted;
        }
        let scaled = (u64::from(wanted) * u64::from(many)).div_ceil(u64::from(self.min_half_open));
        u32::try_from(scaled).unwrap_or(wanted)
    }
}

/// What a listener's numbers mean. Variants are declared most urgent first, so sorting
/// by verdict puts what needs attention at the top.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    /// Many half-open connections from many addresses spread over many networks: the
    /// signature of forged, random sources that never answer the SYN+ACK.
    SynFloodSuspected,
    /// The accept queue is at or near its backlog: handshakes complete but the
    /// application does not `accept()` them fast enough.
    AcceptQueueFull,
    /// Many half-open connections, but from few addresses or few networks: a client or
    /// site retrying, a NAT gateway, or a slow path; not forged traffic.
    BacklogFromFewHosts,
    /// Nothing worth saying.
    Normal,
}

impl Verdict {
    /// Judges one listener's numbers from one poll.
    ///
    /// A flood outranks a full accept queue (the flood is the cause to act on first),
    /// and a full accept queue outranks a backlog from few hosts: when the accept queue
    /// is full the kernel drops the clients' final ACKs, which itself leaves connections
    /// half-open.
    pub fn of(listener: &Listener, thresholds: &Thresholds) -> Verdict {
        let many = thresholds.many_half_open(listener.backlog);
        let many_half_open = listener.half_open >= many;
        let spread = listener.distinct_sources
            >= thresholds.scaled(thresholds.min_distinct_sources, many)
            && listener.distinct_prefixes
                >= thresholds.scaled(thresholds.min_distinct_prefixes, many);
        let accept_queue_full = listener
            .accept_queue_fill
            .is_some_and(|fill| fill >= thresholds.accept_queue_full_ratio);

        if many_half_open && spread {
            Verdict::SynFloodSuspected
        } else if accept_queue_full {
            Verdict::AcceptQueueFull
        } else if many_half_open {
            Verdict::BacklogFromFewHosts
        } else {
            Verdict::Normal
        }
    }

    /// The verdict in words, as every output shows it.
    pub fn describe(self) -> &'static str {
        match self {
            Verdict::SynFloodSuspected => "SYN flood suspected",
            Verdict::AcceptQueueFull => "accept queue full: application slow to accept()",
            Verdict::BacklogFromFewHosts => "backlog from few hosts",
            Verdict::Normal => "normal",
        }
    }

    pub fn suspected_flood(self) -> bool {
        self == Verdict::SynFloodSuspected
    }
}

impl Serialize for Verdict {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener on port 80 with these numbers and the given backlog.
    fn listener(half_open: u32, sources: u32, prefixes: u32, backlog: u32) -> Listener {
        let mut listener = Listener::at("0.0.0.0".parse().expect("address"), 80);
        listener.listen_sockets = 1;
        listener.backlog = backlog;
        listener.accept_queue_fill = (backlog > 0).then_some(0.0);
        listener.half_open = half_open;
        listener.distinct_sources = sources;
        listener.distinct_prefixes = prefixes;
        listener
    }

    fn judge(listener: &Listener) -> Verdict {
        Verdict::of(listener, &Thresholds::default())
    }

    #[test]
    fn many_half_open_from_many_networks_is_a_suspected_flood() {
        assert_eq!(
            judge(&listener(200, 198, 190, 4096)),
            Verdict::SynFloodSuspected
        );
    }

    #[test]
    fn many_half_open_from_two_hosts_is_a_backlog_from_few_hosts() {
        assert_eq!(
            judge(&listener(200, 2, 1, 4096)),
            Verdict::BacklogFromFewHosts
        );
    }

    #[test]
    fn many_addresses_inside_a_few_networks_are_not_a_flood() {
        assert_eq!(
            judge(&listener(200, 200, 2, 4096)),
            Verdict::BacklogFromFewHosts
        );
    }

    #[test]
    fn a_few_half_open_connections_are_normal() {
        assert_eq!(judge(&listener(10, 10, 10, 4096)), Verdict::Normal);
    }

    #[test]
    fn a_full_syn_queue_on_a_small_backlog_is_many() {
        // Java's default backlog of 50: Linux never holds more than ~50 half-open here.
        assert_eq!(judge(&listener(50, 50, 48, 50)), Verdict::SynFloodSuspected);
    }

    #[test]
    fn a_tiny_backlog_never_makes_a_handful_of_connections_a_flood() {
        assert_eq!(judge(&listener(8, 8, 8, 8)), Verdict::Normal);
    }

    #[test]
    fn an_accept_queue_at_its_backlog_is_full() {
        let mut busy = listener(0, 0, 0, 128);
        busy.accept_queue = 128;
        busy.accept_queue_fill = Some(1.0);
        assert_eq!(judge(&busy), Verdict::AcceptQueueFull);
        busy.accept_queue_fill = Some(0.5);
        assert_eq!(judge(&busy), Verdict::Normal);
    }

    #[test]
    fn a_full_accept_queue_explains_a_backlog_from_few_hosts() {
        let mut stuck = listener(100, 3, 1, 128);
        stuck.accept_queue_fill = Some(1.0);
        assert_eq!(judge(&stuck), Verdict::AcceptQueueFull);
    }

    #[test]
    fn a_flood_outranks_a_full_accept_queue() {
        let mut both = listener(300, 300, 250, 128);
        both.accept_queue_fill = Some(1.0);
        assert_eq!(judge(&both), Verdict::SynFloodSuspected);
    }

    #[test]
    fn verdicts_sort_most_urgent_first_and_read_as_words() {
        let mut verdicts = [
            Verdict::Normal,
            Verdict::BacklogFromFewHosts,
            Verdict::AcceptQueueFull,
            Verdict::SynFloodSuspected,
        ];
        verdicts.sort();
        assert_eq!(
            verdicts.map(Verdict::describe),
            [
                "SYN flood suspected",
                "accept queue full: application slow to accept()",
                "backlog from few hosts",
                "normal",
            ]
        );
        assert!(Verdict::SynFloodSuspected.suspected_flood());
        assert!(!Verdict::BacklogFromFewHosts.suspected_flood());
    }
}
