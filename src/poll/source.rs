//! The one source every live mode starts from: `--watch`, `--serve` and the
//! interactive view, live, across namespaces, or from a recording.
//!
//! Starting a live mode is always the same few steps, and they are all here: ask the
//! kernel once whether it answers sock_diag at all (a kernel that cannot never will:
//! better one clear error than a failed poll every interval), open the recording
//! (`--record`) before the first poll so a file that cannot be written is refused with
//! exit status 2, catch the signals that end the mode, start one poller (or one per
//! namespace with `--all-netns`, rescanned every [`RESCAN`]), and append each poll to
//! the recording before handing it on. A replay (`--replay`) is the same source with a
//! recording in place of the pollers: its polls go through the same [`Analyst`], so
//! they are analysed as the live ones were.
//!
//! The consumer calls [`Source::wait`] in a loop; it never waits longer than
//! [`WAKE_UP`], so a consumer can also notice a stop or a closed output in time. What
//! the consumer's thread spends between being handed a poll and asking for the next is
//! counted in the pollers' CPU budget, unless the consumer reports its costs itself
//! ([`Source::consumer_charges_itself`]: the view, whose polls are taken in on another
//! thread).

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use signal_hook::iterator::Signals;

use super::namespaces::Namespaces;
use super::per_namespace::{Followed, Pollers, RESCAN};
use super::poller::{PollerConfig, TakenIn};
use super::replay::{Replaying, Timed};
use super::update::{Message, SharedProcesses, Update};
use crate::diff::Transition;
use crate::filter::Filter;
use crate::kernel::netns::NetnsHandle;
use crate::kernel::process;
use crate::kernel::sched::thread_cpu_time;
use crate::kernel::sockdiag::SockDiag;
use crate::record::{PollToRecord, RecordTo, Recorder, ReplayEnd};
use crate::watch::Thresholds;
use crate::watch::findings::FindingThresholds;

/// The key of the one poller of a run without `--all-netns`.
pub const OWN: u64 = 0;

/// The longest [`Source::wait`] waits for a poll before it returns [`Next::Idle`].
pub const WAKE_UP: Duration = Duration::from_millis(100);

/// How long a mode has, after a signal, to end by itself. A mode blocked writing to a
/// terminal or pipe that stopped reading would otherwise never notice the signal: past
/// this the process leaves with the status the signal asks for.
pub const SIGNAL_GRACE: Duration = Duration::from_secs(3);

/// What to poll, how, and what ends it.
pub struct LiveConfig {
    pub interval: Duration,
    /// See [`PollerConfig::max_cpu`].
    pub max_cpu: f64,
    /// See [`PollerConfig::filter`].
    pub filter: Filter,
    pub thresholds: Thresholds,
    pub findings: FindingThresholds,
    pub namespaces: Namespaces,
    pub record: Option<RecordTo>,
    pub stopping: Stopping,
    /// Polls that may wait for the consumer per namespace; beyond that the pollers
    /// wait (see [`super::poller::Poller::spawn_in`]), so a slow consumer cannot pile up
    /// snapshots.
    pub in_flight: usize,
    /// Where the consumer puts its latest walk over `/proc` (`-p`), for findings that
    /// name processes; `None` when it never walks.
    pub processes: Option<SharedProcesses>,
    /// See [`PollerConfig::info`].
    pub info: bool,
}

/// The signals that end a mode, and who else hears of them.
pub struct Stopping {
    pub signals: &'static [i32],
    /// Called on the signal thread with the first signal, for a consumer that waits on
    /// something else than [`Source::wait`] (the view waits on its own events).
    pub notify: Option<Box<dyn Fn(i32) + Send>>,
}

impl Stopping {
    /// SIGINT and SIGTERM, the signals a headless mode ends on. SIGHUP is left alone,
    /// so that `nohup` keeps a `--serve` running after its terminal goes.
    pub fn headless() -> Stopping {
        Stopping {
            signals: &[signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM],
            notify: None,
        }
    }
}

/// What [`Source::wait`] found.
#[derive(Debug)]
pub enum Next {
    /// A poll, or a failed poll, of the namespace `netns` ([`OWN`] without
    /// `--all-netns`), at the time it was taken (a failure: when it was reported);
    /// already recorded with `--record`.
    Poll {
        netns: u64,
        at: SystemTime,
        message: Message,
    },
    /// Namespaces started or stopped being polled (`--all-netns`): the first call
    /// reports every namespace polled from the start, before any of their polls.
    Namespaces(Followed),
    /// Writing the recording failed; it stopped, polling goes on.
    RecordingStopped(String),
    /// A signal asked the mode to end.
    Signal(i32),
    /// Nothing came within [`WAKE_UP`].
    Idle,
    /// Nothing more will come: the recording ended, or every poller stopped.
    End,
}

/// Changes to a running source from another thread: the interval, and the namespace
/// handles workers use to reach a namespace's sockets.
#[derive(Clone)]
pub struct Control(Option<Arc<Mutex<Pollers>>>);

impl Control {
    /// Changes every poller's interval from its next tick on.
    pub fn set_interval(&self, interval: Duration) {
        if let Some(pollers) = &self.0 {
            lock(pollers).set_interval(interval);
        }
    }

    /// Whether every poller's full dumps ask for tcp_info, from the next one on.
    pub fn set_info(&self, info: bool) {
        if let Some(pollers) = &self.0 {
            lock(pollers).set_info(info);
        }
    }

    /// Counts `cpu`, spent by the consumer on a poll of the namespace `key` ([`OWN`]
    /// without `--all-netns`; none for work that follows no one poll), in the pollers'
    /// CPU budget (see [`super::budget`]); a replay has none.
    pub fn charge(&self, key: Option<u64>, cpu: Duration, what: TakenIn) {
        if let Some(pollers) = &self.0 {
            lock(pollers).charge(key, cpu, what);
        }
    }

    /// The namespace polled under `key`, if it is still polled (none for tcpscope's
    /// own).
    pub fn netns(&self, key: u64) -> Option<Arc<NetnsHandle>> {
        lock(self.0.as_ref()?).netns(key)
    }
}

/// The running source.
pub struct Source {
    origin: Origin,
    recorder: Option<Recorder>,
    /// Transitions fast-lane polls reported since the last recorded full dump, which
    /// the recording stores with the next one.
    lane_transitions: Vec<Transition>,
    signal: Arc<AtomicI32>,
    stop: Arc<AtomicBool>,
    pending: VecDeque<Next>,
    /// The poll last handed to the consumer (its namespace and kind) and the
    /// consumer's thread CPU time then; none once charged, or when the consumer
    /// charges itself.
    handed_out: Option<(u64, TakenIn, Duration)>,
    charges_itself: bool,
}

enum Origin {
    Live {
        polls: Receiver<(u64, Message)>,
        pollers: Arc<Mutex<Pollers>>,
        /// When namespaces are next looked for (`--all-netns` only).
        rescan: Option<Instant>,
    },
    Replay(Box<Replaying>),
}

impl Source {
    /// Starts polling. Fails, before any poll, when the kernel cannot answer sock_diag,
    /// the recording cannot be written, a signal handler cannot be installed or the
    /// namespace `--netns` names cannot be entered. With `--all-netns`, a namespace
    /// that cannot be entered is reported in the first [`Next::Namespaces`] instead.
    pub fn live(config: LiveConfig) -> anyhow::Result<Source> {
        let (signal, stop) = catch_signals(config.stopping)?;
        SockDiag::open()
            .and_then(|mut diag| diag.probe())
            .context("asking the kernel for TCP sockets")?;
        let recorder = config.record.as_ref().map(Recorder::open).transpose()?;
        let poller = PollerConfig {
            interval: config.interval,
            filter: config.filter,
            destroy_events: true,
            thresholds: config.thresholds,
            findings: config.findings,
            max_cpu: config.max_cpu,
            processes: config.processes,
            info: config.info,
        };
        let following = matches!(config.namespaces, Namespaces::All { .. });
        let (handles, left_out) = match config.namespaces {
            Namespaces::Current => (vec![(OWN, None)], Vec::new()),
            Namespaces::One(handle) => (vec![(OWN, Some(handle))], Vec::new()),
            Namespaces::All { handles, left_out } => (
                handles
                    .into_iter()
                    .map(|handle| (handle.namespace.inode, Some(handle)))
                    .collect(),
                left_out,
            ),
        };
        // Namespaces that appear later share the room of those there at the start.
        let (sender, polls) = mpsc::sync_channel(config.in_flight.max(1) * handles.len().max(1));
        let mut pollers = Pollers::new(poller, sender);
        let mut pending = VecDeque::new();
        if following {
            // Across namespaces, one that cannot be entered is reported, not fatal.
            let handles = handles.into_iter().filter_map(|(_, handle)| handle);
            let followed = pollers.start_all(handles.collect(), left_out);
            pending.push_back(Next::Namespaces(followed));
        } else {
            for (key, handle) in handles {
                pollers.start(key, handle)?;
            }
        }
        Ok(Source {
            origin: Origin::Live {
                polls,
                pollers: Arc::new(Mutex::new(pollers)),
                rescan: following.then(|| Instant::now() + RESCAN),
            },
            recorder,
            lane_transitions: Vec::new(),
            signal,
            stop,
            pending,
            handed_out: None,
            charges_itself: false,
        })
    }

    /// Replays the recording at `path` (see [`Replaying::open`]).
    pub fn replay(
        path: &Path,
        narrow: Option<Filter>,
        thresholds: Thresholds,
        findings: FindingThresholds,
        stopping: Stopping,
    ) -> anyhow::Result<Source> {
        let (signal, stop) = catch_signals(stopping)?;
        let replaying = Replaying::open(path, narrow, thresholds, findings)?;
        Ok(Source {
            origin: Origin::Replay(Box::new(replaying)),
            recorder: None,
            lane_transitions: Vec::new(),
            signal,
            stop,
            pending: VecDeque::new(),
            handed_out: None,
            charges_itself: false,
        })
    }

    /// The consumer takes the polls in on other threads and reports what that costs
    /// through [`Control::charge`]: the thread calling [`Source::wait`] is not charged.
    pub fn consumer_charges_itself(&mut self) {
        self.charges_itself = true;
    }

    /// The next thing that happened; waits at most [`WAKE_UP`].
    pub fn wait(&mut self) -> anyhow::Result<Next> {
        if let Some((netns, what, then)) = self.handed_out.take() {
            let spent = thread_cpu_time().saturating_sub(then);
            self.control().charge(Some(netns), spent, what);
        }
        let next = self.next()?;
        if let Next::Poll {
            netns,
            message: Message::Update(update),
            ..
        } = &next
            && !self.charges_itself
        {
            let what = if update.pace.is_full() {
                TakenIn::Full
            } else {
                TakenIn::Lane
            };
            self.handed_out = Some((*netns, what, thread_cpu_time()));
        }
        Ok(next)
    }

    fn next(&mut self) -> anyhow::Result<Next> {
        let signal = self.signal.load(Ordering::Relaxed);
        if signal != 0 {
            return Ok(Next::Signal(signal));
        }
        if let Some(next) = self.pending.pop_front() {
            return Ok(next);
        }
        let (netns, at, message) = match &mut self.origin {
            Origin::Live {
                polls,
                pollers,
                rescan,
            } => {
                if let Some(due) = rescan
                    && Instant::now() >= *due
                {
                    *due = Instant::now() + RESCAN;
                    let followed = lock(pollers).follow();
                    if !(followed.started.is_empty()
                        && followed.refused.is_empty()
                        && followed.left_out.is_empty()
                        && followed.gone.is_empty())
                    {
                        return Ok(Next::Namespaces(followed));
                    }
                }
                match polls.recv_timeout(WAKE_UP) {
                    Ok((netns, message)) => (netns, message.at(SystemTime::now()), message),
                    Err(RecvTimeoutError::Timeout) => return Ok(Next::Idle),
                    Err(RecvTimeoutError::Disconnected) => return Ok(Next::End),
                }
            }
            Origin::Replay(replaying) => match replaying.next_poll()? {
                Some(Timed { at, message }) => (OWN, at, message),
                None => return Ok(Next::End),
            },
        };
        let stopped = self.record(at, &message);
        let next = Next::Poll { netns, at, message };
        if let Some(stopped) = stopped {
            self.pending.push_back(next);
            return Ok(stopped);
        }
        Ok(next)
    }

    /// Appends a poll to the recording; a failed write stops the recording.
    fn record(&mut self, at: SystemTime, message: &Message) -> Option<Next> {
        let recorder = self.recorder.as_mut()?;
        let written = match message {
            // A recording holds full dumps: a fast-lane poll has no table of its own,
            // and its SYN watch is read again from the full dumps on replay. The closes
            // it reported are stored with the next full dump, so a replay shows them,
            // at that dump's time.
            Message::Update(update) if !update.pace.is_full() => {
                self.lane_transitions.extend_from_slice(&update.transitions);
                return None;
            }
            Message::Update(update) if self.lane_transitions.is_empty() => {
                recorder.record_poll(&as_record(update))
            }
            Message::Update(update) => {
                let mut transitions = std::mem::take(&mut self.lane_transitions);
                transitions.extend_from_slice(&update.transitions);
                recorder.record_poll(&PollToRecord {
                    transitions: &transitions,
                    ..as_record(update)
                })
            }
            Message::PollFailed(error) => recorder.record_failure(at, error),
        };
        let error = written.err()?;
        self.recorder = None;
        Some(Next::RecordingStopped(format!("{error:#}")))
    }

    /// Set once a signal asked the mode to end; for threads of the mode that stop on
    /// their own (an HTTP server).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    pub fn control(&self) -> Control {
        match &self.origin {
            Origin::Live { pollers, .. } => Control(Some(Arc::clone(pollers))),
            Origin::Replay(_) => Control(None),
        }
    }

    /// How a replay ended, once [`Source::wait`] returned [`Next::End`].
    pub fn replay_end(&self) -> Option<&ReplayEnd> {
        match &self.origin {
            Origin::Replay(replaying) => replaying.end(),
            Origin::Live { .. } => None,
        }
    }
}

/// An update as the recorder takes it.
pub fn as_record(update: &Update) -> PollToRecord<'_> {
    PollToRecord {
        snapshot: &update.snapshot,
        transitions: &update.transitions,
        counters: &update.counters,
        took: update.took,
        events: &update.events,
        event_overflows: update.event_overflows,
    }
}

/// Catches `stopping`'s signals on a thread of their own: the first one is kept for
/// [`Source::wait`], sets the stop flag and is passed to `notify`; if the process is
/// still there [`SIGNAL_GRACE`] later, it ends with the signal's status.
fn catch_signals(stopping: Stopping) -> anyhow::Result<(Arc<AtomicI32>, Arc<AtomicBool>)> {
    let signal = Arc::new(AtomicI32::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut signals = Signals::new(stopping.signals).context("installing the signal handlers")?;
    thread::Builder::new()
        .name("tcpscope-signals".into())
        .spawn({
            let signal = Arc::clone(&signal);
            let stop = Arc::clone(&stop);
            move || {
                if let Some(caught) = signals.forever().next() {
                    signal.store(caught, Ordering::Relaxed);
                    stop.store(true, Ordering::Relaxed);
                    if let Some(notify) = &stopping.notify {
                        notify(caught);
                    }
                    thread::sleep(SIGNAL_GRACE);
                    // Still here: the mode is stuck writing to a terminal or pipe.
                    process::exit_now(128 + caught);
                }
            }
        })
        .context("starting the signal thread")?;
    Ok((signal, stop))
}

fn lock(pollers: &Mutex<Pollers>) -> MutexGuard<'_, Pollers> {
    pollers.lock().unwrap_or_else(PoisonError::into_inner)
}
