//! One poll of the findings: the sockets tallied once for every rule, the rates taken
//! against the previous poll, every rule run, and the candidates passed through the
//! hysteresis. Keep one [`Analyst`] per network namespace watched.

use std::collections::HashMap;
use std::mem;
use std::sync::Arc;
use std::time::SystemTime;

use crate::snapshot::Snapshot;
use crate::watch::leaks::CloseWaitLeaks;
use crate::watch::syn_watch::SynWatch;

use super::hysteresis::{FindingEvent, Hysteresis};
use super::rules::{self, Candidate, Tally};
use super::{Finding, FindingThresholds, HostLimits};

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

/// The findings across polls of one network namespace.
#[derive(Debug)]
pub struct Analyst {
    thresholds: FindingThresholds,
    netns: Option<Arc<str>>,
    tally: Tally,
    previous: Option<Previous>,
    /// The next poll's `previous.drops`, kept to reuse its allocation.
    spare_drops: HashMap<u64, u32>,
    hysteresis: Hysteresis,
}

impl Analyst {
    pub fn new(thresholds: FindingThresholds) -> Analyst {
        Analyst {
            thresholds,
            netns: None,
            tally: Tally::default(),
            previous: None,
            spare_drops: HashMap::new(),
            hysteresis: Hysteresis::new(thresholds.raise_after_polls, thresholds.clear_after),
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
        let at = observation.snapshot.taken_at;
        self.tally
            .take(&observation.snapshot.sockets, observation.limits);

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
        let (findings, events) = self.hysteresis.update(at, candidates);
        Report { findings, events }
    }
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
}

/// The findings one snapshot shows by itself, for one-shot outputs: no hysteresis, no
/// `since`, and none of the kinds that need a rate or a trend
/// ([`super::Seen::LiveOnly`]).
pub fn single_reading(
    snapshot: &Snapshot,
    limits: &HostLimits,
    syn_watch: Option<&SynWatch>,
    thresholds: &FindingThresholds,
) -> Vec<Finding> {
    let mut tally = Tally::default();
    tally.take(&snapshot.sockets, limits);
    let observation = Observation {
        snapshot,
        limits,
        time_wait_overflows: None,
        syn_watch,
        syn_cookies_rising: false,
        leaks: None,
    };
    let mut candidates = Vec::new();
    run_rules(&mut tally, &observation, 0.0, thresholds, &mut candidates);
    let mut findings: Vec<Finding> = candidates.into_iter().map(|c| c.finding).collect();
    findings.sort_by(|a, b| a.urgency().cmp(&b.urgency()));
    findings
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use super::*;
    use crate::snapshot::SocketRecord;
    use crate::snapshot::fixtures::socket;
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
