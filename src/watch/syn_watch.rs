//! One poll of the SYN watch: listeners grouped and judged, flood verdicts remembered
//! across polls, host-wide counter notes; and the result as a value the outputs show
//! and serialise (`syn_watch` in JSON).
//!
//! Pure: the caller brings the snapshot, the counter rates and the time between polls.

use std::cmp::Reverse;
use std::time::Duration;

use serde::Serialize;

use crate::snapshot::Snapshot;

use super::counters::{CounterRates, HostNote};
use super::listeners::{Listener, ListenerTable};
use super::tracker::FloodTracker;
use super::verdict::{Thresholds, Verdict};

/// Everything one poll of the SYN watch found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SynWatch {
    /// Listeners with half-open connections, a full accept queue, or a flood verdict
    /// still held; the most urgent first. Quiet listeners are left out.
    pub listeners: Vec<ListenerWatch>,
    /// What the host-wide TcpExt counters say, which no listener row can.
    pub host_notes: Vec<HostNote>,
}

impl SynWatch {
    /// The watch for a single snapshot, with no history and no counter rates: what a
    /// one-shot output such as `--json` can say. It cannot see a flood that SYN cookies
    /// already hide; a [`SynWatcher`] polled over time can.
    pub fn of(snapshot: &Snapshot, thresholds: Thresholds) -> SynWatch {
        SynWatcher::new(thresholds).poll(snapshot, &CounterRates::default(), Duration::ZERO)
    }

    /// Whether any listener is suspected of a SYN flood: the headline answer.
    pub fn suspected_flood(&self) -> bool {
        self.listeners.iter().any(|row| row.suspected_flood)
    }
}

/// One listener's numbers and what they mean.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListenerWatch {
    #[serde(flatten)]
    pub listener: Listener,
    /// `verdict` is [`Verdict::SynFloodSuspected`].
    pub suspected_flood: bool,
    pub verdict: Verdict,
    /// The flood verdict rests on earlier polls, not on this poll's half-open
    /// connections: it is kept while SYN cookies are rising, then for the hold period.
    pub remembered: bool,
}

impl ListenerWatch {
    fn new(listener: Listener, verdict: Verdict, remembered: bool) -> ListenerWatch {
        ListenerWatch {
            listener,
            suspected_flood: verdict.suspected_flood(),
            verdict,
            remembered,
        }
    }
}

/// The SYN watch across polls: the thresholds, the buffers a poll reuses, and the
/// memory of suspected floods. Make one and call [`SynWatcher::poll`] for each
/// snapshot.
#[derive(Debug)]
pub struct SynWatcher {
    thresholds: Thresholds,
    table: ListenerTable,
    tracker: FloodTracker,
}

impl SynWatcher {
    pub fn new(thresholds: Thresholds) -> SynWatcher {
        SynWatcher {
            thresholds,
            table: ListenerTable::default(),
            tracker: FloodTracker::new(),
        }
    }

    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// Watches one snapshot.
    ///
    /// The snapshot should hold LISTEN as well as SYN_RECV sockets: without a
    /// listener, half-open connections still get a row, but with no accept queue or
    /// backlog. `rates` are the TcpExt counter rates between the previous poll's reading
    /// and this one's ([`CounterRates::between`]); on the first poll, pass
    /// `CounterRates::default()`. `since_last_poll` is the time between the two polls,
    /// which counts down the flood hold; on the first poll, pass `Duration::ZERO`.
    pub fn poll(
        &mut self,
        snapshot: &Snapshot,
        rates: &CounterRates,
        since_last_poll: Duration,
    ) -> SynWatch {
        let thresholds = self.thresholds;
        let judged: Vec<(Listener, Verdict)> = self
            .table
            .group(snapshot)
            .into_iter()
            .map(|listener| {
                let verdict = Verdict::of(&listener, &thresholds);
                (listener, verdict)
            })
            .collect();

        let suspected = judged
            .iter()
            .filter(|(_, verdict)| verdict.suspected_flood())
            .map(|(listener, _)| listener.endpoint());
        self.tracker.record(
            suspected,
            rates.cookies_rising(thresholds.min_counter_rate),
            since_last_poll,
            thresholds.flood_hold,
        );

        let mut rows = Vec::new();
        for (listener, verdict) in judged {
            let remembered =
                !verdict.suspected_flood() && self.tracker.remembers(listener.endpoint());
            let verdict = if remembered {
                Verdict::SynFloodSuspected
            } else {
                verdict
            };
            if listener.half_open > 0 || verdict != Verdict::Normal {
                rows.push(ListenerWatch::new(listener, verdict, remembered));
            }
        }
        // A suspected listener can leave the snapshot (closed, or filtered out of the
        // dump) while the attack on its port goes on: keep its row, with zero counts.
        for endpoint in self.tracker.remembered() {
            if !rows.iter().any(|row| row.listener.endpoint() == endpoint) {
                let listener = Listener::at(endpoint.0, endpoint.1);
                rows.push(ListenerWatch::new(
                    listener,
                    Verdict::SynFloodSuspected,
                    true,
                ));
            }
        }
        rows.sort_by_key(|row| {
            (
                row.verdict,
                Reverse(row.listener.half_open),
                row.listener.endpoint(),
            )
        });

        SynWatch {
            listeners: rows,
            host_notes: HostNote::from_rates(rates, thresholds.min_counter_rate),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::SystemTime;

    use super::*;
    use crate::snapshot::SocketRecord;
    use crate::snapshot::fixtures::socket;
    use crate::tcp::State;
    use crate::watch::counters::Counters;

    const SECOND: Duration = Duration::from_secs(1);

    fn listen(port: u16, accept_queue: u32, backlog: u32) -> SocketRecord {
        let mut listener = socket(State::Listen, "0.0.0.0", port, "0.0.0.0", 0);
        listener.recv_q = accept_queue;
        listener.send_q = backlog;
        listener
    }

    /// A request socket whose first SYN+ACK went unanswered.
    fn half_open(port: u16, source: Ipv4Addr) -> SocketRecord {
        let mut request = socket(State::SynRecv, "10.0.0.1", port, "0.0.0.0", 40_000);
        request.remote_addr = IpAddr::V4(source);
        request.retransmits = 1;
        request.expires_ms = 1_500;
        request
    }

    /// `count` forged-looking sources: distinct addresses scattered over the IPv4 space
    /// by a fixed multiplicative step, so every test run sees the same ones.
    fn random_sources(count: u32) -> impl Iterator<Item = Ipv4Addr> {
        (1..=count).map(|i| Ipv4Addr::from(i.wrapping_mul(2_654_435_761)))
    }

    fn snapshot(sockets: Vec<SocketRecord>) -> Snapshot {
        Snapshot::new(SystemTime::UNIX_EPOCH, sockets)
    }

    /// Port 443 flooded from random sources; port 8080 with as many half-open from two
    /// hosts; port 9000 with its accept queue at its backlog; port 22 quiet.
    fn busy_host() -> Snapshot {
        let mut sockets = vec![
            listen(443, 0, 4096),
            listen(8080, 0, 4096),
            listen(9000, 128, 128),
            listen(22, 0, 128),
        ];
        sockets.extend(random_sources(200).map(|source| half_open(443, source)));
        let two_hosts = [Ipv4Addr::new(192, 0, 2, 10), Ipv4Addr::new(192, 0, 2, 11)];
        sockets.extend((0..200).map(|i| half_open(8080, two_hosts[i % 2])));
        snapshot(sockets)
    }

    fn verdict_on(watch: &SynWatch, port: u16) -> Option<Verdict> {
        watch
            .listeners
            .iter()
            .find(|row| row.listener.local_port == port)
            .map(|row| row.verdict)
    }

    fn cookies(per_second: f64) -> CounterRates {
        CounterRates {
            syncookies_sent: per_second,
            ..CounterRates::default()
        }
    }

    #[test]
    fn a_flood_from_random_sources_on_one_port_is_suspected() {
        let watch = SynWatch::of(&busy_host(), Thresholds::default());
        assert_eq!(verdict_on(&watch, 443), Some(Verdict::SynFloodSuspected));
        assert!(watch.suspected_flood());
    }

    #[test]
    fn as_many_half_open_from_two_sources_is_a_backlog_from_few_hosts() {
        let watch = SynWatch::of(&busy_host(), Thresholds::default());
        assert_eq!(verdict_on(&watch, 8080), Some(Verdict::BacklogFromFewHosts));
    }

    #[test]
    fn a_listener_with_its_accept_queue_at_its_backlog_has_a_row_saying_so() {
        let watch = SynWatch::of(&busy_host(), Thresholds::default());
        assert_eq!(verdict_on(&watch, 9000), Some(Verdict::AcceptQueueFull));
    }

    #[test]
    fn a_quiet_listener_has_no_row() {
        let watch = SynWatch::of(&busy_host(), Thresholds::default());
        assert_eq!(verdict_on(&watch, 22), None);
        assert_eq!(watch.listeners.len(), 3);
    }

    #[test]
    fn rows_come_most_urgent_first() {
        let watch = SynWatch::of(&busy_host(), Thresholds::default());
        let ports: Vec<u16> = watch
            .listeners
            .iter()
            .map(|row| row.listener.local_port)
            .collect();
        assert_eq!(ports, [443, 9000, 8080]);
    }

    /// The flood of `busy_host` on port 443, then SYN cookies taking over: the SYN queue
    /// stops growing and its old entries time out, leaving 10 half-open.
    fn flood_then_cookies() -> (SynWatcher, Snapshot) {
        let mut watcher = SynWatcher::new(Thresholds {
            flood_hold: Duration::from_secs(3),
            ..Thresholds::default()
        });
        let first = watcher.poll(&busy_host(), &CounterRates::default(), Duration::ZERO);
        assert_eq!(verdict_on(&first, 443), Some(Verdict::SynFloodSuspected));
        let mut levelled = vec![listen(443, 0, 4096)];
        levelled.extend(random_sources(10).map(|source| half_open(443, source)));
        (watcher, snapshot(levelled))
    }

    #[test]
    fn the_flood_verdict_stays_while_syn_cookies_rise_with_half_open_levelled_off() {
        let (mut watcher, levelled) = flood_then_cookies();
        for _ in 0..60 {
            let watch = watcher.poll(&levelled, &cookies(5_000.0), SECOND);
            let row = &watch.listeners[0];
            assert_eq!(row.verdict, Verdict::SynFloodSuspected);
            assert!(row.suspected_flood && row.remembered);
            assert_eq!(row.listener.half_open, 10);
        }
    }

    #[test]
    fn the_flood_verdict_clears_once_cookies_stop_for_the_hold_period() {
        let (mut watcher, levelled) = flood_then_cookies();
        watcher.poll(&levelled, &cookies(5_000.0), SECOND);
        let quiet = CounterRates::default();
        for second in 1..3 {
            let watch = watcher.poll(&levelled, &quiet, SECOND);
            assert!(
                watch.suspected_flood(),
                "still held {second} s after cookies stopped"
            );
        }
        let watch = watcher.poll(&levelled, &quiet, SECOND);
        assert_eq!(verdict_on(&watch, 443), Some(Verdict::Normal));
        assert!(!watch.suspected_flood());
    }

    #[test]
    fn a_suspected_listener_gone_from_the_snapshot_keeps_its_row_while_cookies_rise() {
        let (mut watcher, _) = flood_then_cookies();
        let watch = watcher.poll(&snapshot(Vec::new()), &cookies(5_000.0), SECOND);
        assert_eq!(verdict_on(&watch, 443), Some(Verdict::SynFloodSuspected));
        assert_eq!(watch.listeners[0].listener.half_open, 0);
    }

    #[test]
    fn rising_cookies_with_no_suspected_listener_are_a_host_note_only() {
        let mut watcher = SynWatcher::new(Thresholds::default());
        let quiet_host = snapshot(vec![listen(443, 0, 4096)]);
        let earlier = Counters::default();
        let later = Counters {
            syncookies_sent: 9_000,
            ..Counters::default()
        };
        let rates = CounterRates::between(&earlier, &later, 2.0);
        let watch = watcher.poll(&quiet_host, &rates, Duration::from_secs(2));
        assert!(watch.listeners.is_empty());
        assert_eq!(watch.host_notes, [HostNote::SynCookiesActive]);
    }

    #[test]
    fn each_listener_in_json_has_the_documented_fields() {
        let watch = SynWatch::of(&busy_host(), Thresholds::default());
        let json = serde_json::json!({ "syn_watch": watch });
        let flood = &json["syn_watch"]["listeners"][0];
        let fields: BTreeSet<&str> = flood
            .as_object()
            .map(|object| object.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let documented = BTreeSet::from([
            "local_addr",
            "local_port",
            "half_open",
            "accept_queue",
            "backlog",
            "distinct_sources",
            "distinct_prefixes",
            "suspected_flood",
            "verdict",
            // Extras.
            "family",
            "listen_sockets",
            "accept_queue_fill",
            "oldest_half_open_ms",
            "syn_ack_retransmits",
            "top_sources",
            "remembered",
        ]);
        assert_eq!(fields, documented);
        assert_eq!(flood["local_addr"], "0.0.0.0");
        assert_eq!(flood["local_port"], 443);
        assert_eq!(flood["half_open"], 200);
        assert_eq!(flood["backlog"], 4096);
        assert_eq!(flood["distinct_sources"], 200);
        assert_eq!(flood["suspected_flood"], true);
        assert_eq!(flood["verdict"], "SYN flood suspected");
        assert_eq!(flood["family"], "ipv4");
        assert_eq!(flood["oldest_half_open_ms"], 1_500);
        assert_eq!(flood["syn_ack_retransmits"], 200);
        assert_eq!(flood["top_sources"][0]["count"], 1);
        assert!(flood["top_sources"][0]["addr"].is_string());
        assert_eq!(json["syn_watch"]["host_notes"], serde_json::json!([]));
    }
}
