//! One poll as data: what a live poller, a replayed recording and a round across
//! namespaces all hand their consumers, and the one place where the analyses that need
//! two polls (counter rates, the SYN watch's memory) are run on a poll.
//!
//! Pure: a snapshot, its transitions and a counter reading come in; an [`Update`] goes
//! out. Nothing here reads the kernel or the clock.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::info::TcpInfoTable;
use crate::diff::Transition;
pub use crate::kernel::events::EventStatus;
use crate::kernel::procfs::{ConnectionLimits, ProcessMap, SockStat, TcpExt};
use crate::snapshot::{Counts, Snapshot, SocketRecord};
use crate::tcp::State;
use crate::watch::findings::{self, Finding, FindingEvent, FindingThresholds, HostLimits};
use crate::watch::leaks::DEFAULT_WINDOW;
use crate::watch::{
    Census, CounterRates, Counters, Families, LeakWatcher, SynWatch, SynWatcher, Thresholds,
};

/// One finished poll.
///
/// A poll is a full dump, or, between full dumps spaced out to keep within the CPU
/// budget, the fast lane only ([`Pace::lane`]): then `snapshot` is still the last full
/// dump's, `transitions` holds only what the destroy messages resolved at the lane said
/// (sockets are only ever compared between full dumps, so none is taken to have closed
/// because a lane did not dump its state), and what
/// the lane read fresh is the SYN watch, the counters, the LISTEN and SYN_RECV counts
/// in [`Pace::counts`] and the findings the SYN watch decides.
#[derive(Debug, Clone)]
pub struct Update {
    /// The last full dump: every socket, as of its `taken_at`. Between full dumps,
    /// empty when the table's memory went to a full dump that failed (see
    /// [`Analyst::release_table`]): the lane's counts are in [`Update::pace`].
    pub snapshot: Arc<Snapshot>,
    /// What changed since the previous poll (empty on the first); between full dumps,
    /// only the closes and remnants the destroy messages told of.
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
    /// Which parts of this update are fresh, and how often full dumps come.
    pub pace: Pace,
    /// The full dump's tcp_info by socket cookie, when the poller was asked for it
    /// (the view's `-i`); none otherwise, and between full dumps.
    pub tcp_info: Option<Arc<TcpInfoTable>>,
}

/// How fresh each part of an update is.
#[derive(Debug, Clone)]
pub struct Pace {
    /// When this poll was taken: the full dump's time, or the fast lane's.
    pub at: SystemTime,
    /// The time between full dumps now: the interval, or longer to keep within
    /// `--max-cpu`. None when unknown (a replay).
    pub full_every: Option<Duration>,
    /// Between full dumps: the listeners and SYN_RECV sockets the fast lane read (its
    /// `taken_at` is [`Pace::at`]). None for a full dump.
    pub lane: Option<Arc<Snapshot>>,
    /// When the SYN_RECV sockets were last dumped (a full dump dumps them too; the fast
    /// lane leaves them out when the budget is short).
    pub syn_recv_at: SystemTime,
    /// Per-state counts: the full dump's, with LISTEN and SYN_RECV as last read, and
    /// TIME_WAIT from `/proc/net/sockstat` between full dumps when no filter narrows it.
    pub counts: Counts,
    /// The full dump's sockets per address family.
    pub families: Families,
    /// The full dump's CLOSE_WAIT sockets, in its order: what a consumer's own
    /// CLOSE_WAIT watch reads, without a pass over every socket of its own.
    pub close_wait: Arc<[SocketRecord]>,
    /// The kernel's TCP totals, read with the fast lane (none when unreadable).
    pub sockstat: Option<SockStat>,
}

impl Pace {
    /// The pace of a full dump with nothing faster beside it, counted here: one pass
    /// over its sockets.
    pub fn full(snapshot: &Snapshot, full_every: Option<Duration>) -> Pace {
        let mut census = Census::default();
        census.take(&snapshot.sockets);
        Pace::counted(&census, snapshot.taken_at, full_every)
    }

    /// The pace of a full dump taken `at`, from the census of its sockets.
    fn counted(census: &Census, at: SystemTime, full_every: Option<Duration>) -> Pace {
        Pace {
            counts: census.counts,
            families: census.families,
            close_wait: Arc::from(census.close_wait.as_slice()),
            ..Pace::at(at, full_every)
        }
    }

    /// The pace of a full dump taken `at`, with its counts still to fill in.
    fn at(at: SystemTime, full_every: Option<Duration>) -> Pace {
        Pace {
            at,
            full_every,
            lane: None,
            syn_recv_at: at,
            counts: Counts::default(),
            families: Families::default(),
            close_wait: Arc::from([]),
            sockstat: None,
        }
    }

    pub fn is_full(&self) -> bool {
        self.lane.is_none()
    }
}

/// The most room the lanes' transitions keep between full polls once taken.
const LANE_TRANSITIONS_KEEP: usize = 1024;

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
            Message::Update(update) => update.pace.at,
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
    /// See [`Pace::full_every`].
    pub full_every: Option<Duration>,
    pub sockstat: Option<SockStat>,
}

/// What a poll of the fast lane has before it is analysed.
#[derive(Debug, Clone)]
pub struct LanePolled {
    pub at: SystemTime,
    /// What the destroy messages resolved at this tick said (see the poller's module
    /// documentation); empty without destroy events.
    pub transitions: Vec<Transition>,
    /// The LISTEN sockets.
    pub listeners: Vec<SocketRecord>,
    /// The SYN_RECV sockets, when they were dumped this time.
    pub syn_recv: Option<Vec<SocketRecord>>,
    pub counters: TcpExt,
    pub took: Duration,
    pub events: EventStatus,
    pub event_overflows: u32,
    pub full_every: Option<Duration>,
    pub sockstat: Option<SockStat>,
    /// The TIME_WAIT count from `sockstat`, when it counts what the dump would have:
    /// every socket of both families, no port or address condition.
    pub time_wait: Option<u32>,
}

/// What the analyst keeps of the last full poll for the lane polls after it.
#[derive(Debug)]
struct LastFull {
    snapshot: Arc<Snapshot>,
    counts: Counts,
    families: Families,
    close_wait: Arc<[SocketRecord]>,
    /// The SYN_RECV sockets last read, by the full dump or a lane since.
    syn_recv: Vec<SocketRecord>,
    syn_recv_at: SystemTime,
}

/// Turns successive polls of one namespace into [`Update`]s: the counter rates between
/// each poll and the one before it, computed here once; the SYN watch and the CLOSE_WAIT
/// watch, which remember across polls; and the findings over all of them. Live polls
/// and replayed ones go through the same analyst, so a replay shows what the live view
/// showed.
/// The latest walk over `/proc` a consumer made (`-p`), shared with its pollers so
/// that findings can name the processes behind sockets; `None` until one finished.
pub type SharedProcesses = Arc<Mutex<Option<Arc<ProcessMap>>>>;

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
    last_full: Option<LastFull>,
    /// The buffers of the one pass over each full poll's table.
    census: Census,
    /// Who holds which socket, when the consumer walks `/proc`.
    processes: Option<SharedProcesses>,
    /// The transitions fast-lane polls reported since the last full poll: the findings
    /// take them with the next one, as they took them when only full polls had any
    /// (the churn finding counts connections that opened and closed between polls).
    lane_transitions: Vec<Transition>,
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
            last_full: None,
            census: Census::default(),
            processes: None,
            lane_transitions: Vec::new(),
        }
    }

    /// Names processes in findings from the latest walk `processes` holds.
    pub fn with_processes(mut self, processes: Option<SharedProcesses>) -> Analyst {
        self.processes = processes;
        self
    }

    pub fn analyse(&mut self, polled: Polled) -> Update {
        // The one pass over the whole table here: the SYN watch, the CLOSE_WAIT watch
        // and the counts work on what it picked out, and the findings take its
        // listeners (they make one more pass of their own, over every other socket).
        self.census.take(&polled.snapshot.sockets);
        let taken_at = polled.snapshot.taken_at;
        let (rates, since_last) = self.rates.observe(taken_at, &polled.counters);
        let rates_or_none = rates.unwrap_or_default();
        let syn_watch = self.syn_watcher.poll(
            &Snapshot::new(taken_at, self.census.listen_and_syn_recv()),
            &rates_or_none,
            since_last,
        );
        // Owners are the consumers' business (`-p`): leaks are told apart by port here.
        let leaks = self
            .leaks
            .observe(taken_at, &self.census.close_wait, |_| None);
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
        // The map is cloned out (an Arc), so the lock is held for no longer than that.
        let processes = self
            .processes
            .as_ref()
            .and_then(|shared| shared.lock().ok().and_then(|latest| latest.clone()));
        // Copied only when lanes reported some: a full poll every tick copies nothing.
        let transitions = if self.lane_transitions.is_empty() {
            &polled.transitions
        } else {
            self.lane_transitions.extend_from_slice(&polled.transitions);
            &self.lane_transitions
        };
        let report = self.findings.observe_with_listeners(
            &findings::Observation {
                snapshot: &polled.snapshot,
                limits,
                time_wait_overflows: read.then_some(polled.counters.tcp_time_wait_overflow),
                syn_watch: Some(&syn_watch),
                syn_cookies_rising: rates_or_none.cookies_rising(self.min_counter_rate),
                leaks: Some(&leaks),
                transitions,
                processes: processes.as_deref(),
            },
            Some(&self.census.listeners),
        );
        self.lane_transitions.clear();
        self.lane_transitions.shrink_to(LANE_TRANSITIONS_KEEP);
        let pace = Pace {
            sockstat: polled.sockstat,
            ..Pace::counted(&self.census, taken_at, polled.full_every)
        };
        let snapshot = Arc::new(polled.snapshot);
        self.last_full = Some(LastFull {
            snapshot: Arc::clone(&snapshot),
            counts: pace.counts,
            families: pace.families,
            close_wait: Arc::clone(&pace.close_wait),
            syn_recv: self.census.syn_recv.clone(),
            syn_recv_at: pace.at,
        });
        Update {
            snapshot,
            transitions: polled.transitions,
            counters: polled.counters,
            rates,
            syn_watch,
            findings: report.findings,
            finding_events: report.events,
            took: polled.took,
            events: polled.events,
            event_overflows: polled.event_overflows,
            pace,
            tcp_info: None,
        }
    }

    /// The socket table of the last full poll, emptied, for the next full dump to
    /// fill, when nothing else holds it any more (a consumer that keeps up has dropped
    /// its update): so a live mode holds one table at a time, not two; given once.
    ///
    /// What the lanes need of the last full poll stays (its counts, families,
    /// CLOSE_WAIT sockets and SYN_RECV reading, none of them the table): a full dump
    /// that then fails leaves the lane polls after it working, with their closes, until
    /// one succeeds. Their [`Update::snapshot`] is then an empty table of the last full
    /// poll's time; consumers read a lane poll's counts from its [`Pace`], never its
    /// table.
    pub fn release_table(&mut self) -> Option<Vec<SocketRecord>> {
        let last = self.last_full.as_mut()?;
        let snapshot = Arc::get_mut(&mut last.snapshot)?;
        if snapshot.sockets.capacity() == 0 {
            return None;
        }
        let mut sockets = std::mem::take(&mut snapshot.sockets);
        sockets.clear();
        Some(sockets)
    }

    /// Analyses a poll of the fast lane, against the last full poll; none before the
    /// first full poll, which a lane never comes before.
    pub fn analyse_lanes(&mut self, polled: LanePolled) -> Option<Update> {
        let last = self.last_full.as_mut()?;
        if let Some(syn_recv) = polled.syn_recv {
            last.syn_recv = syn_recv;
            last.syn_recv_at = polled.at;
        }
        let mut sockets = polled.listeners;
        sockets.extend_from_slice(&last.syn_recv);
        let lane = Snapshot::new(polled.at, sockets);
        let mut counts = last.counts;
        let fresh = lane.counts();
        counts.set(State::Listen, fresh.get(State::Listen));
        counts.set(State::SynRecv, fresh.get(State::SynRecv));
        if let Some(time_wait) = polled.time_wait {
            counts.set(State::TimeWait, time_wait);
        }
        let pace = Pace {
            at: polled.at,
            full_every: polled.full_every,
            lane: None,
            syn_recv_at: last.syn_recv_at,
            counts,
            families: last.families,
            close_wait: Arc::clone(&last.close_wait),
            sockstat: polled.sockstat,
        };
        let snapshot = Arc::clone(&last.snapshot);

        let (rates, since_last) = self.rates.observe(polled.at, &polled.counters);
        let rates_or_none = rates.unwrap_or_default();
        let syn_watch = self.syn_watcher.poll(&lane, &rates_or_none, since_last);
        self.lane_transitions.extend_from_slice(&polled.transitions);
        let report = self.findings.observe_lanes(
            polled.at,
            &syn_watch,
            rates_or_none.cookies_rising(self.min_counter_rate),
        );
        Some(Update {
            snapshot,
            transitions: polled.transitions,
            counters: polled.counters,
            rates,
            syn_watch,
            findings: report.findings,
            finding_events: report.events,
            took: polled.took,
            events: polled.events,
            event_overflows: polled.event_overflows,
            pace: Pace {
                lane: Some(Arc::new(lane)),
                ..pace
            },
            tcp_info: None,
        })
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

    /// A full poll of `table` taken at `at`, with nothing else to tell: no transitions,
    /// counters, events or limits.
    fn quiet_poll(at: SystemTime, table: Vec<SocketRecord>) -> Polled {
        Polled {
            snapshot: Snapshot::new(at, table),
            transitions: Vec::new(),
            counters: TcpExt::default(),
            took: Duration::ZERO,
            events: EventStatus::Off,
            event_overflows: 0,
            limits: None,
            full_every: None,
            sockstat: None,
        }
    }

    /// A fast-lane poll at `at` with nothing else to tell: no transitions, listeners,
    /// SYN_RECV reading, counters, events or sockstat; full dumps every 4 s.
    fn quiet_lane(at: SystemTime) -> LanePolled {
        LanePolled {
            transitions: Vec::new(),
            at,
            listeners: Vec::new(),
            syn_recv: None,
            counters: TcpExt::default(),
            took: Duration::ZERO,
            events: EventStatus::Off,
            event_overflows: 0,
            full_every: Some(Duration::from_secs(4)),
            sockstat: None,
            time_wait: None,
        }
    }

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
    fn the_last_table_goes_to_the_next_dump_only_once_no_consumer_holds_it() {
        use crate::snapshot::fixtures::socket;
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let table = vec![socket(State::Listen, "127.0.0.1", 80, "0.0.0.0", 0)];
        let mut analyst = Analyst::new(Thresholds::default(), FindingThresholds::default());
        let update = analyst.analyse(quiet_poll(start, table));
        assert_eq!(analyst.release_table(), None, "the consumer still shows it");
        assert_eq!(update.snapshot.sockets.len(), 1);
        drop(update);
        let released = analyst.release_table().expect("no one holds it");
        assert!(released.is_empty() && released.capacity() >= 1);
        assert_eq!(analyst.release_table(), None, "given once");
    }

    #[test]
    fn a_lane_after_a_full_dump_that_failed_reports_its_closes_and_fresh_listeners() {
        use crate::diff::Ending;
        use crate::snapshot::fixtures::socket;
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let listener = socket(State::Listen, "127.0.0.1", 80, "0.0.0.0", 0);
        let mut established = socket(State::Established, "127.0.0.1", 80, "10.0.0.1", 4000);
        established.cookie = 10;
        let mut analyst = Analyst::new(Thresholds::default(), FindingThresholds::default());
        drop(analyst.analyse(Polled {
            full_every: Some(Duration::from_secs(4)),
            ..quiet_poll(start, vec![listener, established])
        }));
        // The next full dump takes the table's memory, and fails: the memory is gone.
        drop(analyst.release_table().expect("no consumer holds it"));

        let close = Transition::ended(
            established.endpoints(),
            State::Established,
            crate::tcp::Path::EMPTY,
            Ending::BetweenPolls,
            established.cookie,
        );
        let new_listener = socket(State::Listen, "127.0.0.1", 81, "0.0.0.0", 0);
        let lane = analyst
            .analyse_lanes(LanePolled {
                transitions: vec![close],
                listeners: vec![listener, new_listener],
                syn_recv: Some(Vec::new()),
                ..quiet_lane(start + Duration::from_secs(1))
            })
            .expect("a lane poll after the failed full dump");
        assert!(!lane.pace.is_full());
        assert_eq!(
            lane.transitions,
            vec![close],
            "the close, at the lane's tick"
        );
        assert_eq!(lane.pace.counts.get(State::Listen), 2, "the new listener");
        assert_eq!(
            lane.pace.counts.get(State::Established),
            1,
            "the last full dump's count, not the emptied table's"
        );
        assert!(lane.snapshot.sockets.is_empty(), "one table alive, not two");
        assert_eq!(analyst.release_table(), None, "nothing more to give");
    }

    #[test]
    fn a_fast_lane_poll_refreshes_listeners_and_syn_recv_and_reports_nothing_closed() {
        use crate::snapshot::fixtures::socket;
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let listener = socket(State::Listen, "127.0.0.1", 80, "0.0.0.0", 0);
        let mut table = vec![listener];
        for port in 0..3u16 {
            let mut established =
                socket(State::Established, "127.0.0.1", 80, "10.0.0.1", 4000 + port);
            established.cookie = 10 + u64::from(port);
            table.push(established);
        }
        let mut analyst = Analyst::new(Thresholds::default(), FindingThresholds::default());
        let full = analyst.analyse(Polled {
            full_every: Some(Duration::from_secs(4)),
            ..quiet_poll(start, table)
        });
        assert!(full.pace.is_full());

        let half_open: Vec<SocketRecord> = (0..5u16)
            .map(|port| socket(State::SynRecv, "127.0.0.1", 80, "10.9.9.9", 2000 + port))
            .collect();
        let lane = analyst
            .analyse_lanes(LanePolled {
                listeners: vec![listener],
                syn_recv: Some(half_open),
                time_wait: Some(9),
                ..quiet_lane(start + Duration::from_secs(1))
            })
            .expect("after a full poll");
        assert!(!lane.pace.is_full());
        assert!(
            Arc::ptr_eq(&lane.snapshot, &full.snapshot),
            "the table is not copied"
        );
        assert!(lane.transitions.is_empty(), "{:?}", lane.transitions);
        assert_eq!(lane.pace.counts.get(State::SynRecv), 5);
        assert_eq!(lane.pace.counts.get(State::Established), 3);
        assert_eq!(lane.pace.counts.get(State::Listen), 1);
        assert_eq!(lane.pace.counts.get(State::TimeWait), 9, "from sockstat");
        assert_eq!(lane.syn_watch.listeners[0].listener.half_open, 5);

        // The next lane leaves SYN_RECV out (the budget is short): its last reading stands.
        let later = analyst
            .analyse_lanes(LanePolled {
                listeners: vec![listener],
                ..quiet_lane(start + Duration::from_secs(2))
            })
            .expect("after a full poll");
        assert_eq!(later.pace.counts.get(State::SynRecv), 5);
        assert_eq!(later.pace.syn_recv_at, start + Duration::from_secs(1));
    }

    #[test]
    fn connections_the_fast_lane_saw_open_and_close_count_as_churn_at_the_next_full_poll() {
        use crate::diff::Ending;
        use crate::snapshot::fixtures::socket;
        use crate::watch::findings::Kind;
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let full = |at: SystemTime| Polled {
            full_every: Some(Duration::from_secs(2)),
            ..quiet_poll(at, Vec::new())
        };
        let mut analyst = Analyst::new(Thresholds::default(), FindingThresholds::default());
        analyst.analyse(full(start));
        // 300 connections a round from ephemeral ports to one endpoint, each opened
        // and closed between polls, reported by a lane from their destroy events; a
        // finding is raised once it holds for a few full polls in a row.
        let rounds = FindingThresholds::default().raise_after_polls;
        let mut next = None;
        for round in 1..=u64::from(rounds) {
            let closes = (0..300u16)
                .map(|i| {
                    let port = 40_000 + i;
                    let record = socket(State::Established, "10.0.0.1", port, "192.0.2.5", 80);
                    Transition::ended(
                        record.endpoints(),
                        State::Closed,
                        crate::tcp::Path::EMPTY,
                        Ending::BetweenPolls,
                        round * 1000 + u64::from(i),
                    )
                })
                .collect();
            let lane = analyst.analyse_lanes(LanePolled {
                transitions: closes,
                full_every: Some(Duration::from_secs(2)),
                ..quiet_lane(start + Duration::from_secs(2 * round - 1))
            });
            assert_eq!(lane.map(|update| update.transitions.len()), Some(300));
            let update = analyst.analyse(full(start + Duration::from_secs(2 * round)));
            assert!(update.transitions.is_empty(), "reported once, by the lane");
            next = Some(update);
        }
        let next = next.expect("at least one round");
        assert!(
            next.findings
                .iter()
                .any(|finding| finding.kind == Kind::ConnectionChurn),
            "{:?}",
            next.findings
        );
        // Taken once: the full poll after has no churn of its own.
        let after = analyst.analyse(full(start + Duration::from_secs(2 * u64::from(rounds) + 2)));
        assert!(
            after
                .finding_events
                .iter()
                .all(|event| !matches!(event, FindingEvent::Raised(_))),
            "{:?}",
            after.finding_events
        );
    }

    #[test]
    fn a_fast_lane_poll_before_any_full_one_gives_nothing() {
        let mut analyst = Analyst::new(Thresholds::default(), FindingThresholds::default());
        let lane = analyst.analyse_lanes(LanePolled {
            full_every: None,
            ..quiet_lane(SystemTime::UNIX_EPOCH)
        });
        assert!(lane.is_none());
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
