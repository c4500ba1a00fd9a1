//! One poll as data: what a live poller, a replayed recording and a round across
//! namespaces all hand their consumers, and the one place where the analyses that need
//! two polls (counter rates, the SYN watch's memory) are run on a poll.
//!
//! Pure: a snapshot, its transitions and a counter reading come in; an [`Update`] goes
//! out. Nothing here reads the kernel or the clock.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::diff::Transition;
pub use crate::kernel::events::EventStatus;
use crate::kernel::procfs::{ConnectionLimits, TcpExt};
use crate::snapshot::Snapshot;
use crate::watch::findings::{self, Finding, FindingEvent, FindingThresholds, HostLimits};
use crate::watch::leaks::DEFAULT_WINDOW;
use crate::watch::{CounterRates, Counters, LeakWatcher, SynWatch, SynWatcher, Thresholds};

/// One finished poll.
#[derive(Debug, Clone)]
pub struct Update {
    pub snapshot: Arc<Snapshot>,
    /// What changed since the previous poll (empty on the first).
    pub transitions: Vec<Transition>,
    pub counters: TcpExt,
    /// How fast the SYN and accept-queue counters grew since the previous poll; none
    /// on the first, which has nothing to compare with.
    pub rates: Option<CounterRates>,
    pub syn_watch: SynWatch,
    /// The findings raised now, most urgent first.
    pub findings: Vec<Finding>,
    /// What this poll raised or cleared.
    pub finding_events: Vec<FindingEvent>,
    /// How long the dump, diff and analysis took.
    pub took: Duration,
    pub events: EventStatus,
    /// How often events were lost since the last update (the kernel's queue overflowed,
    /// or more were pending than the poller holds); the poll resynchronised the state.
    pub event_overflows: u32,
}

/// What a poller (or a replay) sends.
#[derive(Debug, Clone)]
pub enum Message {
    Update(Box<Update>),
    /// A poll failed; the poller tries again at the next tick.
    PollFailed(String),
}

impl Message {
    /// When it happened: the poll's time, or `failed_at` for a failure, which carries
    /// no time of its own.
    pub fn at(&self, failed_at: SystemTime) -> SystemTime {
        match self {
            Message::Update(update) => update.snapshot.taken_at,
            Message::PollFailed(_) => failed_at,
        }
    }
}

/// What a poll has before it is analysed: the dump, the diff, the counters.
#[derive(Debug, Clone)]
pub struct Polled {
    pub snapshot: Snapshot,
    pub transitions: Vec<Transition>,
    pub counters: TcpExt,
    pub took: Duration,
    pub events: EventStatus,
    pub event_overflows: u32,
    /// The namespace's port and TIME_WAIT sysctls, read with the poll; none when they
    /// were not (a recording does not hold them: Linux's defaults stand in).
    pub limits: Option<ConnectionLimits>,
}

/// Turns successive polls of one namespace into [`Update`]s: the counter rates between
/// each poll and the one before it, computed here once; the SYN watch and the CLOSE_WAIT
/// watch, which remember across polls; and the findings over all of them. Live polls
/// and replayed ones go through the same analyst, so a replay shows what the live view
/// showed.
#[derive(Debug)]
pub struct Analyst {
    rates: RateMeter,
    syn_watcher: SynWatcher,
    leaks: LeakWatcher,
    findings: findings::Analyst,
    /// The sysctls last read, and the limits made of them (rebuilt when they change).
    limits: Option<(ConnectionLimits, HostLimits)>,
    /// Linux's defaults, for polls that come without sysctls (a replay).
    default_limits: HostLimits,
    /// The counter rate at which SYN cookies count as being sent.
    min_counter_rate: f64,
}

impl Analyst {
    pub fn new(thresholds: Thresholds, finding_thresholds: FindingThresholds) -> Analyst {
        Analyst {
            rates: RateMeter::default(),
            syn_watcher: SynWatcher::new(thresholds),
            leaks: LeakWatcher::new(DEFAULT_WINDOW),
            findings: findings::Analyst::new(finding_thresholds),
            limits: None,
            default_limits: HostLimits::default(),
            min_counter_rate: thresholds.min_counter_rate,
        }
    }

    pub fn analyse(&mut self, polled: Polled) -> Update {
        let (rates, since_last) = self
            .rates
            .observe(polled.snapshot.taken_at, &polled.counters);
        let rates_or_none = rates.unwrap_or_default();
        let syn_watch = self
            .syn_watcher
            .poll(&polled.snapshot, &rates_or_none, since_last);
        // Owners are the consumers' business (`-p`): leaks are told apart by port here.
        let leaks = self
            .leaks
            .observe(polled.snapshot.taken_at, &polled.snapshot.sockets, |_| None);
        let read = polled.limits.is_some();
        if let Some(sysctls) = polled.limits
            && self
                .limits
                .as_ref()
                .is_none_or(|(last, _)| *last != sysctls)
        {
            let limits = HostLimits::from_sysctls(&sysctls);
            self.limits = Some((sysctls, limits));
        }
        let limits = self
            .limits
            .as_ref()
            .map_or(&self.default_limits, |(_, limits)| limits);
        let report = self.findings.observe(&findings::Observation {
            snapshot: &polled.snapshot,
            limits,
            time_wait_overflows: read.then_some(polled.counters.tcp_time_wait_overflow),
            syn_watch: Some(&syn_watch),
            syn_cookies_rising: rates_or_none.cookies_rising(self.min_counter_rate),
            leaks: Some(&leaks),
            transitions: &polled.transitions,
            processes: None,
        });
        Update {
            snapshot: Arc::new(polled.snapshot),
            transitions: polled.transitions,
            counters: polled.counters,
            rates,
            syn_watch,
            findings: report.findings,
            finding_events: report.events,
            took: polled.took,
            events: polled.events,
            event_overflows: polled.event_overflows,
        }
    }
}

/// The SYN and accept-queue counters' rates between one reading and the next.
#[derive(Debug, Default)]
pub struct RateMeter {
    previous: Option<(SystemTime, Counters)>,
}

impl RateMeter {
    /// Takes a reading made at `at`; returns the rates since the previous one (none for
    /// the first) and the time between them. A clock that went backwards gives zero
    /// rates over zero time rather than negative ones.
    pub fn observe(&mut self, at: SystemTime, tcpext: &TcpExt) -> (Option<CounterRates>, Duration) {
        let counters = watch_counters(tcpext);
        let measured = self.previous.map(|(then, before)| {
            let since = at.duration_since(then).unwrap_or(Duration::ZERO);
            (
                CounterRates::between(&before, &counters, since.as_secs_f64()),
                since,
            )
        });
        self.previous = Some((at, counters));
        match measured {
            Some((rates, since)) => (Some(rates), since),
            None => (None, Duration::ZERO),
        }
    }
}

/// The TcpExt counters the SYN watch reads.
pub fn watch_counters(tcpext: &TcpExt) -> Counters {
    Counters {
        syncookies_sent: tcpext.syncookies_sent,
        req_q_full_do_cookies: tcpext.req_q_full_do_cookies,
        req_q_full_drop: tcpext.req_q_full_drop,
        listen_overflows: tcpext.listen_overflows,
        listen_drops: tcpext.listen_drops,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(syncookies_sent: u64) -> TcpExt {
        TcpExt {
            syncookies_sent,
            ..TcpExt::default()
        }
    }

    #[test]
    fn the_first_reading_has_no_rates_and_the_next_one_has_them_per_second() {
        let mut meter = RateMeter::default();
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(meter.observe(start, &reading(10)), (None, Duration::ZERO));
        let (rates, since) = meter.observe(start + Duration::from_secs(2), &reading(110));
        assert_eq!(since, Duration::from_secs(2));
        assert_eq!(rates.map(|r| r.syncookies_sent), Some(50.0));
    }

    #[test]
    fn a_clock_that_went_backwards_gives_zero_rates() {
        let mut meter = RateMeter::default();
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        meter.observe(start, &reading(10));
        let (rates, since) = meter.observe(start - Duration::from_secs(5), &reading(500));
        assert_eq!(since, Duration::ZERO);
        assert_eq!(rates, Some(CounterRates::default()));
    }
}
