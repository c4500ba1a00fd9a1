//! One poll of the findings: the sockets tallied once for every rule, the rates taken
//! against the previous poll, every rule run, and the candidates passed through the
//! hysteresis. Keep one [`Analyst`] per network namespace watched.

use std::collections::HashMap;
use std::mem;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use foldhash::fast::RandomState;

use crate::diff::Transition;
use crate::kernel::procfs::ProcessMap;
use crate::snapshot::{Snapshot, SocketRecord};
use crate::watch::leaks::CloseWaitLeaks;
use crate::watch::syn_watch::SynWatch;

use super::hysteresis::{FindingEvent, Hysteresis, event_order};
use super::rules::{self, Candidate, Tally};
use super::{Finding, FindingThresholds, HostLimits, Kind};

/// Everything one poll brings to the findings.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// The poll's sockets, every state and unfiltered: a rule counts what it sees.
    pub snapshot: &'a Snapshot,
    /// The sysctls of the namespace the snapshot was taken in.
    pub limits: &'a HostLimits,
    /// The TcpExt counter `TCPTimeWaitOverflow` read with this poll, if it was.
    pub time_wait_overflows: Option<u64>,
    /// This poll's SYN watch, for `syn_flood` and `accept_queue_full`.
    pub syn_watch: Option<&'a SynWatch>,
    /// Whether SYN cookies were being sent since the previous poll: the evidence that
    /// keeps a flood the SYN watch remembers going while cookies hide its half-open
    /// connections.
    pub syn_cookies_rising: bool,
    /// This poll's CLOSE_WAIT reading, for `close_wait_leak`.
    pub leaks: Option<&'a CloseWaitLeaks>,
    /// What changed since the previous poll, for `connection_churn`; empty on the first.
    pub transitions: &'a [Transition],
    /// Who holds each socket, when `-p` asked and a scan is at hand: `connect_stalled`
    /// names the processes waiting.
    pub processes: Option<&'a ProcessMap>,
}

/// What one poll of the findings says.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    /// Every finding raised now, most urgent first.
    pub findings: Vec<Finding>,
    /// What this poll raised or cleared.
    pub events: Vec<FindingEvent>,
}

/// The readings of the previous poll that rates are taken against.
#[derive(Debug)]
struct Previous {
    at: SystemTime,
    /// Each listening socket's drop counter, by cookie.
    drops: HashMap<u64, u32>,
    time_wait_overflows: Option<u64>,
}

/// Since when a Send-Q has not gone down, and what it was at the last poll.
#[derive(Debug, Clone, Copy)]
struct NotDraining {
    since: SystemTime,
    send_q: u32,
    zero_window: bool,
}

/// What the rules about peers remember of single sockets across polls, by cookie: only
/// the sockets in question (SYN_SENT, and ESTABLISHED with a Send-Q), each forgotten
/// at the first poll it is gone from. Each is rebuilt every poll into its spare, so
/// that no poll allocates once they have grown.
///
/// On a busy host most connections may have bytes in flight, so the Send-Q memory can
/// hold most sockets: it is a list sorted by cookie, joined with the poll's sockets
/// sorted the same way, which costs a third of a hash map's lookups and inserts at
/// 100k sockets (their cache misses, mostly).
#[derive(Debug, Default)]
struct SocketMemory {
    /// When each SYN_SENT socket was first seen.
    connecting: HashMap<u64, SystemTime, RandomState>,
    spare_connecting: HashMap<u64, SystemTime, RandomState>,
    /// Each ESTABLISHED socket with a Send-Q at the last poll, by cookie.
    unacknowledged: Vec<(u64, NotDraining)>,
    spare_unacknowledged: Vec<(u64, NotDraining)>,
    /// This poll's sockets with a Send-Q, as (cookie, index in the tally).
    by_cookie: Vec<(u64, usize)>,
}

impl SocketMemory {
    /// Gives the tallied sockets their ages as live polls saw them, and remembers this
    /// poll's for the next.
    fn age(&mut self, at: SystemTime, tally: &mut Tally) {
        let since = |then: SystemTime| at.duration_since(then).unwrap_or(Duration::ZERO);

        let mut connecting = mem::take(&mut self.spare_connecting);
        connecting.clear();
        for socket in &mut tally.connecting {
            let first_seen = self.connecting.get(&socket.cookie).copied().unwrap_or(at);
            socket.waited = socket.waited.max(since(first_seen));
            connecting.insert(socket.cookie, first_seen);
        }
        self.spare_connecting = mem::replace(&mut self.connecting, connecting);

        self.by_cookie.clear();
        self.by_cookie.extend(
            tally
                .unacknowledged
                .iter()
                .enumerate()
                .map(|(index, socket)| (socket.cookie, index)),
        );
        self.by_cookie.sort_unstable();
        let mut unacknowledged = mem::take(&mut self.spare_unacknowledged);
        unacknowledged.clear();
        let mut earlier = self.unacknowledged.iter().peekable();
        for &(cookie, index) in &self.by_cookie {
            while earlier.next_if(|(seen, _)| *seen < cookie).is_some() {}
            let Some(socket) = tally.unacknowledged.get_mut(index) else {
                continue;
            };
            // A Send-Q that went down since the last poll is draining: its wait starts
            // again.
            let last = earlier
                .peek()
                .filter(|(seen, last)| *seen == cookie && socket.send_q >= last.send_q)
                .map(|(_, last)| *last);
            let not_draining = last.map_or(at, |last| last.since);
            socket.stalled = since(not_draining);
            socket.zero_window_held =
                socket.zero_window && last.is_some_and(|last| last.zero_window);
            unacknowledged.push((
                cookie,
                NotDraining {
                    since: not_draining,
                    send_q: socket.send_q,
                    zero_window: socket.zero_window,
                },
            ));
        }
        self.spare_unacknowledged = mem::replace(&mut self.unacknowledged, unacknowledged);
    }
}

/// The findings across polls of one network namespace.
#[derive(Debug)]
pub struct Analyst {
    thresholds: FindingThresholds,
    netns: Option<Arc<str>>,
    tally: Tally,
    previous: Option<Previous>,
    /// The next poll's `previous.drops`, kept to reuse its allocation.
    spare_drops: HashMap<u64, u32>,
    sockets: SocketMemory,
    /// The kinds read from the whole socket table.
    hysteresis: Hysteresis,
    /// The kinds the SYN watch decides (`syn_flood`, `accept_queue_full`), which the
    /// fast lane keeps current between full dumps ([`Analyst::observe_lanes`]).
    lanes: Hysteresis,
    /// The table kinds' findings as the last full poll left them.
    table_findings: Vec<Finding>,
}

impl Analyst {
    pub fn new(thresholds: FindingThresholds) -> Analyst {
        Analyst {
            thresholds,
            netns: None,
            tally: Tally::default(),
            previous: None,
            spare_drops: HashMap::new(),
            sockets: SocketMemory::default(),
            hysteresis: Hysteresis::new(thresholds.raise_after_polls, thresholds.clear_after),
            lanes: Hysteresis::new(thresholds.raise_after_polls, thresholds.clear_after),
            table_findings: Vec::new(),
        }
    }

    /// An analyst whose findings say they are in the network namespace `label`, for
    /// outputs that watch several.
    pub fn in_namespace(mut self, label: Arc<str>) -> Analyst {
        self.netns = Some(label);
        self
    }

    pub fn thresholds(&self) -> &FindingThresholds {
        &self.thresholds
    }

    /// Takes in one poll. On the first, rates are unknown: the kinds that need them
    /// (`listen_drops`, a `time_wait_pressure` overflow) wait for the second.
    pub fn observe(&mut self, observation: &Observation<'_>) -> Report {
        self.observe_with_listeners(observation, None)
    }

    /// [`Analyst::observe`], given the snapshot's LISTEN sockets already picked out
    /// (in its order) by a caller that read the table for them anyway: one pass less
    /// over every socket.
    pub fn observe_with_listeners(
        &mut self,
        observation: &Observation<'_>,
        listeners: Option<&[SocketRecord]>,
    ) -> Report {
        let at = observation.snapshot.taken_at;
        self.tally.take_with_listeners(
            &observation.snapshot.sockets,
            listeners,
            observation.limits,
        );
        self.sockets.age(at, &mut self.tally);

        let mut candidates = Vec::new();
        let mut overflows_per_second = 0.0;
        if let Some(previous) = &self.previous {
            let seconds = at
                .duration_since(previous.at)
                .map_or(0.0, |elapsed| elapsed.as_secs_f64());
            let drops =
                rules::listen_drops::rates(&mut self.tally.listeners, &previous.drops, seconds);
            rules::listen_drops::check(&drops, &self.thresholds, &mut candidates);
            if let (Some(before), Some(now), true) = (
                previous.time_wait_overflows,
                observation.time_wait_overflows,
                seconds > 0.0,
            ) {
                // u64 → f64 is exact below 2^53 events.
                overflows_per_second = now.saturating_sub(before) as f64 / seconds;
            }
            let mut arrivals = mem::take(&mut self.tally.arrivals);
            let tally = &self.tally;
            let outgoing = |port| tally.is_outgoing(port, observation.limits);
            rules::connection_churn::arrivals(observation.transitions, outgoing, &mut arrivals);
            rules::connection_churn::check(
                &mut arrivals,
                seconds,
                &observation.snapshot.sockets,
                outgoing,
                &self.thresholds,
                &mut candidates,
            );
            self.tally.arrivals = arrivals;
        }
        run_rules(
            &mut self.tally,
            observation,
            overflows_per_second,
            &self.thresholds,
            &mut candidates,
        );

        let mut drops = mem::take(&mut self.spare_drops);
        drops.clear();
        drops.extend(
            self.tally
                .listeners
                .iter()
                .map(|socket| (socket.cookie, socket.drops)),
        );
        if let Some(previous) = self.previous.replace(Previous {
            at,
            drops,
            time_wait_overflows: observation.time_wait_overflows,
        }) {
            self.spare_drops = previous.drops;
        }

        for candidate in &mut candidates {
            candidate.finding.netns.clone_from(&self.netns);
        }
        let (lanes, table): (Vec<Candidate>, Vec<Candidate>) = candidates
            .into_iter()
            .partition(|candidate| is_lane_kind(candidate.finding.kind));
        let (table_findings, mut events) = self.hysteresis.update(at, table);
        self.table_findings = table_findings;
        let (mut findings, lane_events) = self.lanes.update(at, lanes);
        findings.extend(self.table_findings.iter().cloned());
        findings.sort_by(|a, b| a.urgency().cmp(&b.urgency()));
        events.extend(lane_events);
        events.sort_by(|a, b| event_order(a).cmp(&event_order(b)));
        Report { findings, events }
    }

    /// Takes in a poll of the fast lane only (listeners and SYN_RECV, between two full
    /// dumps): the SYN watch's kinds are judged again; the kinds that need the whole
    /// socket table keep the verdict of the last full poll.
    pub fn observe_lanes(
        &mut self,
        at: SystemTime,
        syn_watch: &SynWatch,
        syn_cookies_rising: bool,
    ) -> Report {
        let mut candidates = Vec::new();
        rules::syn_flood::check(syn_watch, syn_cookies_rising, &mut candidates);
        rules::accept_queue_full::check(syn_watch, &mut candidates);
        for candidate in &mut candidates {
            candidate.finding.netns.clone_from(&self.netns);
        }
        let (mut findings, events) = self.lanes.update(at, candidates);
        findings.extend(self.table_findings.iter().cloned());
        findings.sort_by(|a, b| a.urgency().cmp(&b.urgency()));
        Report { findings, events }
    }
}

/// The kinds the fast lane judges: those the SYN watch alone decides.
fn is_lane_kind(kind: Kind) -> bool {
    matches!(kind, Kind::SynFlood | Kind::AcceptQueueFull)
}

/// The rules that need no earlier poll, over one poll's tally.
fn run_rules(
    tally: &mut Tally,
    observation: &Observation<'_>,
    overflows_per_second: f64,
    thresholds: &FindingThresholds,
    out: &mut Vec<Candidate>,
) {
    if let Some(watch) = observation.syn_watch {
        rules::syn_flood::check(watch, observation.syn_cookies_rising, out);
        rules::accept_queue_full::check(watch, out);
    }
    rules::port_exhaustion::check(&mut tally.outgoing, observation.limits, thresholds, out);
    rules::time_wait_pressure::check(
        tally.time_wait,
        &mut tally.time_wait_peers,
        overflows_per_second,
        observation.limits,
        thresholds,
        out,
    );
    if let Some(leaks) = observation.leaks {
        rules::close_wait_leak::check(leaks, out);
    }
    rules::connect_stalled::check(
        &mut tally.connecting,
        observation.processes,
        thresholds,
        out,
    );
    rules::peer_not_reading::check(
        &mut tally.unacknowledged,
        &observation.snapshot.sockets,
        thresholds,
        out,
    );
    rules::retransmitting_path::check(&mut tally.retransmitting, thresholds, out);
}

/// The findings one snapshot shows by itself, for one-shot outputs: no hysteresis, no
/// `since`, and none of the kinds that need a rate or a trend
/// ([`super::Seen::LiveOnly`]).
pub fn single_reading(
    snapshot: &Snapshot,
    limits: &HostLimits,
    syn_watch: Option<&SynWatch>,
    processes: Option<&ProcessMap>,
    thresholds: &FindingThresholds,
) -> Vec<Finding> {
    let mut tally = Tally::default();
    tally.take(&snapshot.sockets, limits);
    single_reading_tallied(
        &mut tally, snapshot, limits, syn_watch, processes, thresholds,
    )
}

/// [`single_reading`] from `tally`, taken of the snapshot's sockets already (as they
/// came, with [`Tally::take_next`]).
pub fn single_reading_tallied(
    tally: &mut Tally,
    snapshot: &Snapshot,
    limits: &HostLimits,
    syn_watch: Option<&SynWatch>,
    processes: Option<&ProcessMap>,
    thresholds: &FindingThresholds,
) -> Vec<Finding> {
    let observation = Observation {
        snapshot,
        limits,
        time_wait_overflows: None,
        syn_watch,
        syn_cookies_rising: false,
        leaks: None,
        transitions: &[],
        processes,
    };
    let mut candidates = Vec::new();
    run_rules(tally, &observation, 0.0, thresholds, &mut candidates);
    let mut findings: Vec<Finding> = candidates.into_iter().map(|c| c.finding).collect();
    findings.sort_by(|a, b| a.urgency().cmp(&b.urgency()));
    findings
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use super::*;
    use crate::snapshot::fixtures::socket;
    use crate::snapshot::{SocketRecord, Timer};
    use crate::tcp::State;
    use crate::watch::counters::CounterRates;
    use crate::watch::findings::{Kind, Severity, Subject};
    use crate::watch::syn_watch::SynWatcher;
    use crate::watch::verdict::Thresholds;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000 + seconds)
    }

    fn listen(port: u16, accept_queue: u32, backlog: u32, drops: u32) -> SocketRecord {
        let mut listener = socket(State::Listen, "0.0.0.0", port, "0.0.0.0", 0);
        listener.recv_q = accept_queue;
        listener.send_q = backlog;
        listener.drops = drops;
        listener.cookie = u64::from(port);
        listener
    }

    fn half_open(port: u16, source: Ipv4Addr) -> SocketRecord {
        let mut request = socket(State::SynRecv, "10.0.0.1", port, "0.0.0.0", 40_000);
        request.remote_addr = source.into();
        request
    }

    /// Port 443 flooded from 200 scattered sources.
    fn flooded(taken_at: SystemTime) -> Snapshot {
        let mut sockets = vec![listen(443, 0, 4096, 0)];
        sockets.extend(
            (1..=200u32).map(|i| half_open(443, Ipv4Addr::from(i.wrapping_mul(2_654_435_761)))),
        );
        Snapshot::new(taken_at, sockets)
    }

    /// Port 8080 with as many half-open connections, from two hosts of one site.
    fn busy_from_two_hosts(taken_at: SystemTime) -> Snapshot {
        let mut sockets = vec![listen(8080, 3, 4096, 0)];
        let hosts = [Ipv4Addr::new(192, 0, 2, 10), Ipv4Addr::new(192, 0, 2, 11)];
        sockets.extend((0..200).map(|i| half_open(8080, hosts[i % 2])));
        Snapshot::new(taken_at, sockets)
    }

    /// Polls `snapshots` through a SYN watcher and an analyst; the last report.
    fn poll_all(analyst: &mut Analyst, snapshots: &[Snapshot]) -> Vec<Report> {
        let limits = HostLimits::default();
        let mut watcher = SynWatcher::new(Thresholds::default());
        snapshots
            .iter()
            .map(|snapshot| {
                let watch =
                    watcher.poll(snapshot, &CounterRates::default(), Duration::from_secs(1));
                analyst.observe(&Observation {
                    snapshot,
                    limits: &limits,
                    time_wait_overflows: None,
                    syn_watch: Some(&watch),
                    syn_cookies_rising: false,
                    leaks: None,
                    transitions: &[],
                    processes: None,
                })
            })
            .collect()
    }

    fn kinds(report: &Report) -> Vec<Kind> {
        report.findings.iter().map(|f| f.kind).collect()
    }

    #[test]
    fn a_syn_flood_is_raised_on_its_second_poll_naming_the_listener_and_namespace() {
        let mut analyst = Analyst::new(FindingThresholds::default()).in_namespace("web".into());
        let reports = poll_all(&mut analyst, &[flooded(at(0)), flooded(at(1))]);
        assert!(reports[0].findings.is_empty());
        let flood = &reports[1].findings[0];
        assert_eq!(flood.kind, Kind::SynFlood);
        assert_eq!(flood.severity, Severity::Critical);
        assert_eq!(flood.subject.to_string(), "0.0.0.0:443");
        assert_eq!(flood.netns.as_deref(), Some("web"));
        assert_eq!(flood.since, Some(at(1)));
        assert_eq!(
            flood.summary,
            "SYN flood on 0.0.0.0:443: 200 half-open from 200 addresses in 200 networks"
        );
    }

    #[test]
    fn a_flood_that_stopped_clears_after_the_finding_hold_not_the_syn_watchs_memory_too() {
        let thresholds = FindingThresholds {
            clear_after: Duration::from_secs(2),
            ..FindingThresholds::default()
        };
        let mut analyst = Analyst::new(thresholds);
        // The forged half-open connections are gone from the third poll on; the SYN
        // watch still remembers the flood for its own 30 s.
        let calm = |s| Snapshot::new(at(s), vec![listen(443, 0, 4096, 0)]);
        let reports = poll_all(
            &mut analyst,
            &[flooded(at(0)), flooded(at(1)), calm(2), calm(3), calm(4)],
        );
        assert_eq!(kinds(&reports[2]), [Kind::SynFlood], "held for 2 s");
        assert!(
            matches!(&reports[3].events[..], [FindingEvent::Cleared(f)] if f.kind == Kind::SynFlood),
            "cleared 2 s after the last half-open connections: {:?}",
            reports[3]
        );
        assert!(reports[4].findings.is_empty() && reports[4].events.is_empty());
    }

    #[test]
    fn a_busy_listener_with_a_backlog_from_a_few_real_hosts_raises_nothing() {
        let mut analyst = Analyst::new(FindingThresholds::default());
        let snapshots: Vec<Snapshot> = (0..10).map(|s| busy_from_two_hosts(at(s))).collect();
        for report in poll_all(&mut analyst, &snapshots) {
            assert!(report.findings.is_empty(), "{:?}", report.findings);
        }
    }

    #[test]
    fn a_full_accept_queue_is_a_warning() {
        let mut analyst = Analyst::new(FindingThresholds::default());
        let full = |s| Snapshot::new(at(s), vec![listen(9000, 128, 128, 0)]);
        let reports = poll_all(&mut analyst, &[full(0), full(1)]);
        assert_eq!(kinds(&reports[1]), [Kind::AcceptQueueFull]);
        assert_eq!(reports[1].findings[0].severity, Severity::Warning);
    }

    #[test]
    fn a_listener_whose_drops_keep_rising_is_raised_and_one_with_old_drops_is_not() {
        let mut analyst = Analyst::new(FindingThresholds::default());
        // Port 80 drops 50 a second; port 22 dropped 10,000 long ago and no more.
        let poll = |s: u64| {
            Snapshot::new(
                at(s),
                vec![
                    listen(80, 100, 128, 50 * s as u32),
                    listen(22, 0, 128, 10_000),
                ],
            )
        };
        let reports = poll_all(&mut analyst, &[poll(0), poll(1), poll(2), poll(3)]);
        assert!(reports[0].findings.is_empty(), "no rate on the first poll");
        assert!(
            reports[1].findings.is_empty(),
            "one rate is one poll of evidence"
        );
        assert_eq!(kinds(&reports[2]), [Kind::ListenDrops]);
        let drops = &reports[2].findings[0];
        assert_eq!(drops.subject.to_string(), "0.0.0.0:80");
        assert_eq!(
            drops.summary,
            "0.0.0.0:80 is dropping 50.0 connection attempts a second (accept queue 100 of 128)"
        );
        assert_eq!(kinds(&reports[3]), [Kind::ListenDrops]);
    }

    #[test]
    fn time_wait_overflows_rising_raise_the_finding_on_the_first_rate() {
        let limits = HostLimits::default();
        let mut analyst = Analyst::new(FindingThresholds::default());
        let snapshot = |s| {
            Snapshot::new(
                at(s),
                vec![socket(State::TimeWait, "10.0.0.1", 80, "192.0.2.1", 5000)],
            )
        };
        let observe = |analyst: &mut Analyst, s: u64, overflows: u64| {
            analyst.observe(&Observation {
                snapshot: &snapshot(s),
                limits: &limits,
                time_wait_overflows: Some(overflows),
                syn_watch: None,
                syn_cookies_rising: false,
                leaks: None,
                transitions: &[],
                processes: None,
            })
        };
        assert!(observe(&mut analyst, 0, 1_000).findings.is_empty());
        assert!(
            observe(&mut analyst, 1, 1_000).findings.is_empty(),
            "steady: calm"
        );
        let report = observe(&mut analyst, 2, 1_040);
        assert_eq!(kinds(&report), [Kind::TimeWaitPressure]);
        assert_eq!(report.findings[0].severity, Severity::Critical);
        assert_eq!(report.events.len(), 1);
    }

    #[test]
    fn a_finding_clears_thirty_seconds_after_its_condition_ends() {
        let mut analyst = Analyst::new(FindingThresholds::default());
        let mut snapshots = vec![flooded(at(0)), flooded(at(1))];
        snapshots.extend((2..=40).map(|s| busy_from_two_hosts(at(s))));
        let reports = poll_all(&mut analyst, &snapshots);
        // Last seen flooded at 1 s: held through 30 s, cleared at 31 s, once; the SYN
        // watch's own memory of the flood adds nothing to the hold.
        assert_eq!(kinds(&reports[30]), [Kind::SynFlood], "still held at 30 s");
        let cleared: Vec<usize> = reports
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                r.events
                    .iter()
                    .any(|e| matches!(e, FindingEvent::Cleared(_)))
            })
            .map(|(poll, _)| poll)
            .collect();
        assert_eq!(cleared, [31]);
        assert!(reports[31..].iter().all(|r| r.findings.is_empty()));
    }

    /// Polls `snapshots` through an analyst with no SYN watch, as the rules about peers
    /// need none.
    fn observe_peers(analyst: &mut Analyst, snapshots: &[Snapshot]) -> Vec<Report> {
        let limits = HostLimits::default();
        snapshots
            .iter()
            .map(|snapshot| {
                analyst.observe(&Observation {
                    snapshot,
                    limits: &limits,
                    time_wait_overflows: None,
                    syn_watch: None,
                    syn_cookies_rising: false,
                    leaks: None,
                    transitions: &[],
                    processes: None,
                })
            })
            .collect()
    }

    #[test]
    fn syn_sent_sockets_that_live_polls_see_waiting_a_second_are_stalled() {
        // Five fresh connects (timer 990 ms from its first timeout) at every poll: by
        // their timers alone they waited 10 ms, but the polls saw them for longer.
        let connecting = |s: u64| {
            let sockets = (0..5)
                .map(|i| SocketRecord {
                    expires_ms: 990,
                    cookie: 100 + i,
                    ..socket(
                        State::SynSent,
                        "10.0.0.1",
                        50_000 + i as u16,
                        "192.0.2.9",
                        443,
                    )
                })
                .collect();
            Snapshot::new(at(0) + Duration::from_millis(500 * s), sockets)
        };
        let mut analyst = Analyst::new(FindingThresholds::default());
        let reports = observe_peers(
            &mut analyst,
            &[connecting(0), connecting(1), connecting(2), connecting(3)],
        );
        assert!(reports[1].findings.is_empty(), "half a second is no stall");
        assert!(reports[2].findings.is_empty(), "one poll of evidence");
        assert_eq!(kinds(&reports[3]), [Kind::ConnectStalled]);
        assert_eq!(
            reports[3].findings[0].evidence.get("oldest_seconds"),
            Some(&crate::watch::findings::Value::Number(1.5))
        );
    }

    #[test]
    fn a_send_q_that_never_goes_down_for_ten_seconds_is_a_peer_not_reading() {
        let stuck = |s: u64, send_q: u32| {
            let writer = SocketRecord {
                send_q,
                cookie: 7,
                ..socket(State::Established, "10.0.0.1", 40_000, "192.0.2.5", 443)
            };
            Snapshot::new(at(s), vec![writer])
        };
        let mut analyst = Analyst::new(FindingThresholds::default());
        // Down once at 5 s: the ten seconds start again there.
        let mut polls: Vec<Snapshot> = (0..5).map(|s| stuck(s, 8_000)).collect();
        polls.extend((5..=16).map(|s| stuck(s, 4_000)));
        let reports = observe_peers(&mut analyst, &polls);
        let first = reports
            .iter()
            .position(|r| !r.findings.is_empty())
            .expect("raised");
        // Stalled from 5 s; 10 s at 15 s; raised on the second poll that shows it.
        assert_eq!(first, 16);
        assert_eq!(kinds(&reports[16]), [Kind::PeerNotReading]);
    }

    #[test]
    fn a_window_shut_at_every_poll_is_a_peer_not_reading_and_one_shut_now_and_then_is_not() {
        let writer = |s: u64, shut: bool| {
            let socket = SocketRecord {
                send_q: 262_144,
                timer: if shut { Timer::Persist } else { Timer::On },
                cookie: 7,
                ..socket(State::Established, "10.0.0.1", 40_000, "192.0.2.5", 443)
            };
            Snapshot::new(at(s), vec![socket])
        };
        let mut analyst = Analyst::new(FindingThresholds::default());
        let flapping: Vec<Snapshot> = (0..8).map(|s| writer(s, s % 2 == 0)).collect();
        let reports = observe_peers(&mut analyst, &flapping);
        assert!(reports.iter().all(|r| r.findings.is_empty()));

        let mut analyst = Analyst::new(FindingThresholds::default());
        let shut: Vec<Snapshot> = (0..3).map(|s| writer(s, true)).collect();
        let reports = observe_peers(&mut analyst, &shut);
        assert!(reports[1].findings.is_empty(), "one poll of evidence");
        assert_eq!(kinds(&reports[2]), [Kind::PeerNotReading]);
    }

    #[test]
    fn sockets_remembered_for_the_rules_about_peers_are_forgotten_when_they_go() {
        let busy = |s: u64| {
            let mut sockets: Vec<SocketRecord> = (0..3)
                .map(|i| SocketRecord {
                    cookie: 10 + i,
                    ..socket(
                        State::SynSent,
                        "10.0.0.1",
                        50_000 + i as u16,
                        "192.0.2.9",
                        443,
                    )
                })
                .collect();
            sockets.push(SocketRecord {
                send_q: 100,
                cookie: 20,
                ..socket(State::Established, "10.0.0.1", 40_000, "192.0.2.5", 443)
            });
            // Idle connections are not remembered at all.
            sockets.push(socket(
                State::Established,
                "10.0.0.1",
                40_001,
                "192.0.2.5",
                443,
            ));
            Snapshot::new(at(s), sockets)
        };
        let mut analyst = Analyst::new(FindingThresholds::default());
        observe_peers(&mut analyst, &[busy(0), busy(1)]);
        assert_eq!(analyst.sockets.connecting.len(), 3);
        assert_eq!(analyst.sockets.unacknowledged.len(), 1);
        observe_peers(&mut analyst, &[Snapshot::new(at(2), Vec::new())]);
        assert!(analyst.sockets.connecting.is_empty());
        assert!(analyst.sockets.unacknowledged.is_empty());
    }

    #[test]
    fn a_single_reading_shows_what_one_snapshot_can_and_nothing_that_needs_a_rate() {
        let mut sockets = flooded(at(0)).sockets;
        sockets.push(listen(9000, 128, 128, 5_000));
        let snapshot = Snapshot::new(at(0), sockets);
        let watch = crate::watch::SynWatch::of(&snapshot, Thresholds::default());
        let findings = single_reading(
            &snapshot,
            &HostLimits::default(),
            Some(&watch),
            None,
            &FindingThresholds::default(),
        );
        let found: Vec<(Kind, String)> = findings
            .iter()
            .map(|f| (f.kind, f.subject.to_string()))
            .collect();
        assert_eq!(
            found,
            [
                (Kind::SynFlood, "0.0.0.0:443".to_owned()),
                (Kind::AcceptQueueFull, "0.0.0.0:9000".to_owned()),
            ]
        );
        assert!(findings.iter().all(|f| f.since.is_none()));
        assert!(matches!(
            findings[0].subject,
            Subject::Listener { port: 443, .. }
        ));
    }
}
