//! The live poller: on its own thread, every interval, it drains the kernel's destroy
//! events, dumps the sockets, diffs against the previous poll, reads the TcpExt
//! counters, runs the SYN watch, and sends the result as one [`Update`].
//!
//! Within a CPU budget (`--max-cpu`, see [`super::budget`]): each poll's CPU time is
//! measured, with what the consumer says it spent taking it in ([`Poller::charge`]),
//! and when full dumps every interval would cost more than the budget, they
//! are spaced out; the ticks between them take the fast lane (a LISTEN-only dump, the
//! counters, `/proc/net/sockstat` and, when it fits, a SYN_RECV-only dump), which keeps
//! the SYN watch current. Destroy events are read as they come in either case.
//!
//! # Destroy events between full dumps
//!
//! A full dump diffs the destroy messages received since the last one. Between full
//! dumps each fast-lane tick resolves the messages received so far (as many as the
//! budget leaves room for: [`Budget::lane_lookups`]) on its own, so that a close is
//! reported at the tick after it, however far apart full dumps are. A message says the
//! full socket died, not the connection, which may live on as a TIME_WAIT or FIN_WAIT2
//! remnant: for each one the lane asks the kernel what it holds at the socket's
//! endpoints now, with one exact sock_diag request (not a dump), and the differ
//! reports a close, a change to the remnant's state, or for a connection no poll saw,
//! an open in that state ([`Differ::observe_destroyed`]).
//!
//! Why lookups and not a TIME_WAIT|FIN_WAIT2 dump with the SYN_RECV lane's: a lookup
//! costs what the closes cost, and comes at every tick; the dump costs what every
//! remnant on the host costs, at every tick it runs, and the SYN_RECV lane is left out
//! of ticks when the budget is short. Measured in a lab namespace (debug build, CPU
//! time of the thread, best of 7): at 100k ESTABLISHED and no TIME_WAIT the SYN_RECV
//! dump took 12.1 ms and the SYN_RECV|TIME_WAIT|FIN_WAIT2 one 12.5; with 28.7k
//! TIME_WAIT added, 15.5 ms against 39.5 (+24 ms, 2.5× the SYN_RECV dump, for
//! remnants that mostly did not change). A lookup took 2.5 µs when it found a
//! remnant, 2.0 µs when it found nothing. The lookups' CPU time is measured apart and
//! counted with the lane's; with the draining and the diff, a message cost 5.4–6.2 µs
//! in a release build and 37–49 µs in a debug one (the budget's own measure, 4,000
//! messages at a tick in a lab namespace), which at 20% of a core leaves room for
//! about 3,300 a tick at a 200 ms interval, and the ceiling, 16,384, at 1 s. Messages
//! over the tick's cap wait for the next tick; those received while a full dump runs
//! go with the next tick or dump, as before.
//!
//! Consumers (`--watch`, the interactive view) never wait on the kernel: they receive
//! finished updates from a channel. A poll that takes longer than the interval is not
//! queued behind: the next one starts when it finishes, and the update says how long
//! it took. A failed poll is reported and retried at the next tick; a full dump that
//! fails while full dumps are spaced out is tried again in its turn, as after one
//! taken, since it cost as much. It has taken the last table's memory already (one
//! table alive at a time), but not what the fast lane needs of the last full dump:
//! lanes between it and the next full dump that succeeds go on reporting closes,
//! listeners and counters.

use std::io;

use anyhow::Context;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, TrySendError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use super::budget::{Budget, Part, Plan};
use super::info;
use super::update::{Analyst, EventStatus, LanePolled, Message, Polled, SharedProcesses, Update};
use crate::diff::{DestroyedSocket, Differ, Transition};
use crate::filter::Filter;
use crate::kernel::events::DestroyEvents;
use crate::kernel::netns::NetnsHandle;
use crate::kernel::procfs;
use crate::kernel::sched::thread_cpu_time;
use crate::kernel::sockdiag::SockDiag;
use crate::snapshot::SocketRecord;
use crate::tcp::{State, StateSet};
use crate::watch::Thresholds;
use crate::watch::findings::FindingThresholds;

/// The shortest poll interval: below it the poller would mostly measure itself.
pub const MIN_INTERVAL: Duration = Duration::from_millis(50);

/// How often a waiting poller looks for events and for a stop request.
const WAKE_UP: Duration = Duration::from_millis(100);
/// Destroy events held for the next poll at most. Beyond this (a consumer far behind
/// under heavy churn) further events are dropped and reported as lost, like a kernel
/// queue overflow, so that falling behind costs bounded memory: about 1 MiB here.
const MAX_PENDING_EVENTS: usize = 16 * 1024;

/// How often a poller whose consumer is behind tries again to hand over an update.
const CONSUMER_RETRY: Duration = Duration::from_millis(5);

/// What to poll and how often.
#[derive(Debug, Clone)]
pub struct PollerConfig {
    pub interval: Duration,
    /// Family, port and address conditions apply to the dump. States do not: the diff
    /// needs every state to follow a connection through them, so consumers filter
    /// transitions and counts by state themselves ([`Filter::matches_endpoints`]).
    pub filter: Filter,
    /// Subscribe to destroy events so that connections that open and close between
    /// two polls are still seen.
    pub destroy_events: bool,
    pub thresholds: Thresholds,
    pub findings: FindingThresholds,
    /// The CPU budget in percent of one core (`--max-cpu`); 0 for none.
    pub max_cpu: f64,
    /// The consumer's latest walk over `/proc`, for findings that name processes.
    pub processes: Option<SharedProcesses>,
    /// Ask full dumps for each socket's tcp_info ([`super::info`]); the view's `-i`.
    pub info: bool,
}

/// A running poller. Dropping it stops the thread.
pub struct Poller {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    interval_nanos: AtomicU64,
    /// What the consumer spent on updates since the poller last looked: CPU time in
    /// nanoseconds, and how many updates it took in, of full polls and of lanes.
    full_taken_in_nanos: AtomicU64,
    fulls_taken_in: AtomicU64,
    lane_taken_in_nanos: AtomicU64,
    lanes_taken_in: AtomicU64,
    /// See [`PollerConfig::info`]; changed by [`Poller::set_info`].
    info: AtomicBool,
    stop: AtomicBool,
}

impl Shared {
    /// What a new poller of `config` shares: its interval and tcp_info setting, nothing
    /// taken in yet.
    fn for_config(config: &PollerConfig) -> Shared {
        Shared {
            interval_nanos: AtomicU64::new(nanos(config.interval.max(MIN_INTERVAL))),
            full_taken_in_nanos: AtomicU64::new(0),
            fulls_taken_in: AtomicU64::new(0),
            lane_taken_in_nanos: AtomicU64::new(0),
            lanes_taken_in: AtomicU64::new(0),
            info: AtomicBool::new(config.info),
            stop: AtomicBool::new(false),
        }
    }
}

impl Poller {
    /// Starts polling on a new thread that first enters the network namespace
    /// `netns` (none: the caller's), and offers each message to `deliver`, which
    /// works like [`std::sync::mpsc::SyncSender::try_send`] (a full consumer makes the poller wait and
    /// offer again). Fails if the namespace cannot be entered.
    ///
    /// The thread enters the namespace before it opens any netlink socket or `/proc`
    /// file: a netlink socket belongs to the namespace it was created in.
    pub fn spawn_in(
        netns: Option<Arc<NetnsHandle>>,
        config: PollerConfig,
        deliver: impl FnMut(Message) -> Result<(), TrySendError<Message>> + Send + 'static,
    ) -> anyhow::Result<Poller> {
        let (entered, outcome) = mpsc::sync_channel(1);
        let poller = Self::start(config, Box::new(deliver), move || {
            let result = match &netns {
                Some(netns) => netns.enter(),
                None => Ok(()),
            };
            let ok = result.is_ok();
            let _ = entered.send(result);
            ok
        })
        .context("starting the poller thread")?;
        outcome
            .recv()
            .context("the poller thread ended before entering its namespace")??;
        Ok(poller)
    }

    /// Spawns the thread: `prepare` runs on it first, and the loop only if it succeeds.
    fn start(
        config: PollerConfig,
        deliver: Deliver,
        prepare: impl FnOnce() -> bool + Send + 'static,
    ) -> io::Result<Poller> {
        let shared = Arc::new(Shared::for_config(&config));
        let thread = thread::Builder::new()
            .name("tcpscope-poller".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || {
                    if prepare() {
                        PollLoop::new(config, shared, deliver).run();
                    }
                }
            })?;
        Ok(Poller {
            shared,
            thread: Some(thread),
        })
    }

    /// Changes the interval from the next tick on (never below [`MIN_INTERVAL`]).
    pub fn set_interval(&self, interval: Duration) {
        self.shared
            .interval_nanos
            .store(nanos(interval.max(MIN_INTERVAL)), Ordering::Relaxed);
    }

    /// Whether full dumps ask for tcp_info, from the next one on.
    pub fn set_info(&self, info: bool) {
        self.shared.info.store(info, Ordering::Relaxed);
    }

    /// Counts `cpu`, spent by the consumer on this poller's updates, in the budget;
    /// as one more poll taken in when `counted` (one of several namespaces' pollers
    /// shares the cost of another's poll, without counting it).
    pub fn charge(&self, cpu: Duration, what: TakenIn, counted: bool) {
        let shared = &self.shared;
        let (spent, count) = match what {
            TakenIn::Full => (&shared.full_taken_in_nanos, Some(&shared.fulls_taken_in)),
            TakenIn::AfterFull => (&shared.full_taken_in_nanos, None),
            TakenIn::Lane => (&shared.lane_taken_in_nanos, Some(&shared.lanes_taken_in)),
        };
        spent.fetch_add(nanos(cpu), Ordering::Relaxed);
        if let Some(count) = count.filter(|_| counted) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What a consumer's CPU time went to, for [`Poller::charge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakenIn {
    /// Taking in one full poll.
    Full,
    /// Work a full poll causes that comes apart from taking it in (ordering the
    /// connections table's rows, freeing the table it replaced): added to the full
    /// polls' cost, but not counted as a poll taken in.
    AfterFull,
    /// Taking in one poll of the fast lane.
    Lane,
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Where the poller thread offers its messages, with [`std::sync::mpsc::SyncSender::try_send`]'s
/// answers: taken, full (offer again later), or nobody listens any more.
type Deliver = Box<dyn FnMut(Message) -> Result<(), TrySendError<Message>> + Send>;

/// The poller thread's state.
struct PollLoop {
    config: PollerConfig,
    shared: Arc<Shared>,
    deliver: Deliver,
    diag: Option<SockDiag>,
    events: Option<DestroyEvents>,
    event_status: EventStatus,
    differ: Differ,
    analyst: Analyst,
    destroyed_records: Vec<SocketRecord>,
    destroyed: Vec<DestroyedSocket>,
    overflows: u32,
    budget: Budget,
    /// How many sockets the last full dump had, to make room for the next at once.
    last_size: usize,
}

impl PollLoop {
    fn new(config: PollerConfig, shared: Arc<Shared>, deliver: Deliver) -> PollLoop {
        let (events, event_status) = if config.destroy_events {
            match DestroyEvents::subscribe(config.filter.ipv4, config.filter.ipv6) {
                Ok(events) => (Some(events), EventStatus::Subscribed),
                Err(error) => (None, EventStatus::Refused(error.to_string())),
            }
        } else {
            (None, EventStatus::Off)
        };
        let analyst = Analyst::new(config.thresholds, config.findings)
            .with_processes(config.processes.clone());
        let budget = Budget::new(config.max_cpu);
        PollLoop {
            budget,
            config,
            shared,
            deliver,
            diag: None,
            events,
            event_status,
            differ: Differ::new(),
            analyst,
            destroyed_records: Vec::new(),
            destroyed: Vec::new(),
            overflows: 0,
            last_size: 0,
        }
    }

    fn run(mut self) {
        let mut next_tick = Instant::now();
        while !self.stopped() {
            self.wait_until(next_tick);
            if self.stopped() {
                return;
            }
            let interval = Duration::from_nanos(self.shared.interval_nanos.load(Ordering::Relaxed));
            self.count_taken_in();
            let plan = self.budget.plan(Instant::now(), interval);
            let polled = match plan {
                Plan::Full => self.poll(interval).map(Some),
                Plan::Lanes { syn_recv } => self.poll_lanes(interval, syn_recv),
            };
            let message = match polled {
                Ok(Some(update)) => Message::Update(Box::new(update)),
                Ok(None) => {
                    next_tick = (next_tick + interval).max(Instant::now());
                    continue;
                }
                Err(error) => Message::PollFailed(format!("{error:#}")),
            };
            if !self.deliver(message) {
                return;
            }
            // A slow poll does not make the next ones queue up behind it.
            next_tick = (next_tick + interval).max(Instant::now());
        }
    }

    /// Hands a message to the consumer, waiting while its channel is full but still
    /// reading destroy events meanwhile, and giving up when told to stop (so that
    /// dropping the [`Poller`] never waits on a consumer that stopped reading). Returns
    /// whether polling should go on.
    fn deliver(&mut self, mut message: Message) -> bool {
        loop {
            match (self.deliver)(message) {
                Ok(()) => return true,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(returned)) => {
                    if self.stopped() {
                        return false;
                    }
                    message = returned;
                    self.wait_until(Instant::now() + CONSUMER_RETRY);
                }
            }
        }
    }

    fn stopped(&self) -> bool {
        self.shared.stop.load(Ordering::Relaxed)
    }

    /// Takes what the consumer spent since the last tick into the budget: the mean per
    /// poll taken in. Work after a full poll that was reported before any poll was
    /// taken in waits to be counted with the next.
    fn count_taken_in(&mut self) {
        let shared = &self.shared;
        for (spent, count, part) in [
            (
                &shared.full_taken_in_nanos,
                &shared.fulls_taken_in,
                Part::FullTakenIn,
            ),
            (
                &shared.lane_taken_in_nanos,
                &shared.lanes_taken_in,
                Part::LaneTakenIn,
            ),
        ] {
            let polls = count.swap(0, Ordering::Relaxed);
            if polls == 0 {
                continue;
            }
            if let Some(each) = spent.swap(0, Ordering::Relaxed).checked_div(polls) {
                self.budget.spent(part, Duration::from_nanos(each));
            }
        }
    }

    /// Sleeps until `deadline`, reading destroy events as they come so that the
    /// kernel's queue does not overflow during a long interval.
    fn wait_until(&mut self, deadline: Instant) {
        loop {
            let now = Instant::now();
            if now >= deadline || self.stopped() {
                return;
            }
            let nap = (deadline - now).min(WAKE_UP);
            match &self.events {
                Some(events) => {
                    if matches!(events.wait(nap), Ok(true)) {
                        self.drain_events();
                    }
                }
                None => thread::sleep(nap),
            }
        }
    }

    fn drain_events(&mut self) {
        let Some(events) = &mut self.events else {
            return;
        };
        match events.drain_up_to(&mut self.destroyed_records, MAX_PENDING_EVENTS) {
            Ok(drained) => {
                self.overflows += drained.overflows + u32::from(drained.dropped > 0);
            }
            Err(error) => {
                self.event_status = EventStatus::Refused(error.to_string());
                self.events = None;
            }
        }
    }

    /// The sock_diag socket, opened at first use.
    fn diag(&mut self) -> anyhow::Result<&mut SockDiag> {
        if self.diag.is_none() {
            self.diag = Some(SockDiag::open().context("opening the netlink sock_diag socket")?);
        }
        self.diag
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("the netlink sock_diag socket is not open"))
    }

    /// A full poll: every socket, the diff, every analysis.
    fn poll(&mut self, interval: Duration) -> anyhow::Result<Update> {
        let cpu_before = thread_cpu_time();
        let started = Instant::now();
        let result = self.poll_full();
        // A failed dump costs too: the next waits its turn, with the lanes between.
        self.budget
            .spent(Part::Full, thread_cpu_time().saturating_sub(cpu_before));
        let mut update = match result {
            Ok(update) => update,
            Err(error) => {
                self.budget.full_failed(started);
                return Err(error);
            }
        };
        self.budget.full_taken(started);
        update.pace.full_every = Some(self.budget.full_every(interval));
        Ok(update)
    }

    /// The fast lane: listeners, counters, sockstat, and SYN_RECV when `syn_recv`.
    fn poll_lanes(&mut self, interval: Duration, syn_recv: bool) -> anyhow::Result<Option<Update>> {
        let started = Instant::now();
        let at = SystemTime::now();
        let dump_filter = self.config.filter.ignoring_states();
        let cpu_before = thread_cpu_time();
        let mut listeners = Vec::new();
        self.diag()?
            .sockets_in(&dump_filter, only(State::Listen), &mut listeners)
            .context("dumping listening TCP sockets over netlink sock_diag")?;
        let counters = procfs::read_tcpext().context("reading the kernel's TcpExt counters")?;
        let sockstat = procfs::read_sockstat().ok();
        let cpu_after_listeners = thread_cpu_time();
        self.budget.spent(
            Part::Listeners,
            cpu_after_listeners.saturating_sub(cpu_before),
        );
        // Measured apart: what the budget leaves the lookups depends on the rest.
        let most = self.budget.lane_lookups(interval);
        let (transitions, resolved) = self.resolve_destroyed(&dump_filter, most);
        let cpu_after_lookups = thread_cpu_time();
        self.budget.lookups_spent(
            resolved,
            cpu_after_lookups.saturating_sub(cpu_after_listeners),
        );
        let syn_recv = if syn_recv {
            let mut sockets = Vec::new();
            self.diag()?
                .sockets_in(&dump_filter, only(State::SynRecv), &mut sockets)
                .context("dumping SYN_RECV TCP sockets over netlink sock_diag")?;
            self.budget.spent(
                Part::SynRecv,
                thread_cpu_time().saturating_sub(cpu_after_lookups),
            );
            self.budget.syn_recv_taken(started);
            Some(sockets)
        } else {
            None
        };
        let update = self.analyst.analyse_lanes(LanePolled {
            at,
            transitions,
            listeners,
            syn_recv,
            counters,
            took: Duration::ZERO,
            events: self.event_status.clone(),
            // Lost events are said with the full dump that resynchronises.
            event_overflows: 0,
            full_every: Some(self.budget.full_every(interval)),
            time_wait: sockstat
                .filter(|_| whole_table(&self.config.filter))
                .and_then(|stat| u32::try_from(stat.tw).ok()),
            sockstat,
        });
        Ok(update.map(|mut update| {
            update.took = started.elapsed();
            update
        }))
    }

    /// Between full dumps: the destroy messages received so far, up to `most`, each
    /// with an exact lookup of what the kernel holds at its endpoints now, handed to
    /// the differ, so that closes are reported at this tick; with how many were looked
    /// up. A lookup that fails leaves its message and those after it to the next full
    /// dump, as before lanes resolved any.
    fn resolve_destroyed(&mut self, dump_filter: &Filter, most: usize) -> (Vec<Transition>, usize) {
        self.drain_events();
        self.destroyed_records
            .retain(|record| dump_filter.matches_ignoring_state(record));
        if self.destroyed_records.is_empty() {
            return (Vec::new(), 0);
        }
        let mut records = std::mem::take(&mut self.destroyed_records);
        let mut remnants = Vec::new();
        let mut resolved = 0;
        if let Ok(diag) = self.diag() {
            for record in records.iter().take(most) {
                match diag.lookup(record) {
                    Ok(found) => remnants.extend(found),
                    Err(_) => break,
                }
                resolved += 1;
            }
        }
        self.destroyed.clear();
        self.destroyed.extend(
            records
                .drain(..resolved)
                .map(|record| DestroyedSocket::from_record(&record)),
        );
        self.destroyed_records = records;
        let transitions = self
            .differ
            .observe_destroyed(&self.destroyed, &remnants)
            .to_vec();
        (transitions, resolved)
    }

    fn poll_full(&mut self) -> anyhow::Result<Update> {
        // Events that arrived before the dump go with it.
        self.drain_events();
        let started = Instant::now();
        let taken_at = SystemTime::now();
        let dump_filter = self.config.filter.ignoring_states();
        let with_info = self.shared.info.load(Ordering::Relaxed);
        let capacity = self.last_size + self.last_size / 8;
        // The last table's memory when no one reads it any more (the differ keeps its
        // own record of it): the peak is then one table, not two.
        let table = self.analyst.release_table().unwrap_or_default();
        let diag = self.diag()?;
        let (mut snapshot, tcp_info) = if with_info {
            let (snapshot, table) = info::snapshot_with_info(diag, &dump_filter, capacity)
                .context("dumping TCP sockets and their tcp_info over netlink sock_diag")?;
            (snapshot, Some(Arc::new(table)))
        } else {
            let snapshot = diag
                .snapshot_into(&dump_filter, table)
                .context("dumping TCP sockets over netlink sock_diag")?;
            (snapshot, None)
        };
        snapshot.taken_at = taken_at;
        self.last_size = snapshot.sockets.len();
        // Read before the differ takes the dump in: a failure here leaves the destroy
        // messages and the differ as they were, for the lanes and the next full dump.
        let counters = procfs::read_tcpext().context("reading the kernel's TcpExt counters")?;

        self.destroyed.clear();
        self.destroyed.extend(
            self.destroyed_records
                .drain(..)
                .filter(|record| dump_filter.matches_ignoring_state(record))
                .map(|record| DestroyedSocket::from_record(&record)),
        );
        let transitions = self.differ.observe(&snapshot, &self.destroyed).to_vec();

        // A kernel without one of these sysctls is judged by Linux's defaults.
        let limits = procfs::read_connection_limits().ok();
        let sockstat = procfs::read_sockstat().ok();
        let mut update = self.analyst.analyse(Polled {
            snapshot,
            transitions,
            counters,
            took: Duration::ZERO,
            events: self.event_status.clone(),
            event_overflows: std::mem::take(&mut self.overflows),
            limits,
            full_every: None,
            sockstat,
        });
        update.tcp_info = tcp_info;
        update.took = started.elapsed();
        Ok(update)
    }
}

fn only(state: State) -> StateSet {
    std::iter::once(state).collect()
}

/// Whether the dump takes every socket of the namespace, as `/proc/net/sockstat` counts
/// them: both families and no port or address condition.
fn whole_table(filter: &Filter) -> bool {
    filter.ipv4 && filter.ipv6 && filter.kernel_condition().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::Receiver;

    const INTERVAL: Duration = Duration::from_secs(1);

    /// A poller of this test's own namespace at a 1 s interval, within 20% of a core.
    fn poller() -> (Poller, Receiver<Message>) {
        let (sender, polls) = mpsc::sync_channel(1);
        let poller = Poller::spawn_in(None, config(false), move |message| sender.try_send(message))
            .expect("a poller of this namespace");
        (poller, polls)
    }

    /// The defaults at a 1 s interval, with or without the kernel's destroy events.
    fn config(destroy_events: bool) -> PollerConfig {
        PollerConfig {
            interval: INTERVAL,
            filter: Filter::default(),
            destroy_events,
            thresholds: Thresholds::default(),
            findings: FindingThresholds::default(),
            max_cpu: 20.0,
            processes: None,
            info: false,
        }
    }

    fn next_update(polls: &Receiver<Message>) -> Box<Update> {
        match polls.recv_timeout(Duration::from_secs(10)) {
            Ok(Message::Update(update)) => update,
            Ok(Message::PollFailed(error)) => panic!("poll failed: {error}"),
            Err(error) => panic!("no poll came: {error}"),
        }
    }

    /// A private network namespace with its loopback up, held by a process of its own
    /// (`unshare -n`), which is ended when this is dropped.
    struct PrivateNetns {
        holder: std::process::Child,
        handle: NetnsHandle,
    }

    impl PrivateNetns {
        fn new() -> PrivateNetns {
            use std::io::{BufRead, BufReader};
            use std::process::{Command, Stdio};
            let mut holder = Command::new("unshare")
                .args([
                    "-n",
                    "sh",
                    "-c",
                    "ip link set lo up && echo up && exec sleep 600",
                ])
                .stdout(Stdio::piped())
                .spawn()
                .expect("unshare -n: the tests run as root");
            let mut line = String::new();
            let said = holder
                .stdout
                .take()
                .map(|out| BufReader::new(out).read_line(&mut line));
            assert!(
                matches!(said, Some(Ok(_))) && line.trim() == "up",
                "the namespace's loopback did not come up: {line:?}"
            );
            let handle = NetnsHandle::open(&crate::kernel::netns::NetnsSpec::Pid(holder.id()))
                .expect("the holder's namespace");
            PrivateNetns { holder, handle }
        }
    }

    impl Drop for PrivateNetns {
        fn drop(&mut self) {
            let _ = self.holder.kill();
            let _ = self.holder.wait();
        }
    }

    #[test]
    fn a_close_after_a_full_dump_that_failed_is_reported_at_the_next_lane_tick() {
        use crate::diff::Kind;
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::AtomicBool;

        let netns = PrivateNetns::new();
        crate::kernel::netns::run_in(&netns.handle, || {
            let listener = TcpListener::bind("127.0.0.1:7311").expect("a listener");
            let client = TcpStream::connect("127.0.0.1:7311").expect("a connection");
            let (server, _) = listener.accept().expect("the server's end");
            let client_port = client.local_addr().expect("the client's port").port();
            let config = config(true);
            let shared = Arc::new(Shared::for_config(&config));
            let mut polls = PollLoop::new(config, shared, Box::new(|_| Ok(())));
            assert_eq!(polls.event_status, EventStatus::Subscribed);
            // Real replies, made to fail while `failing` is set.
            let failing = Arc::new(AtomicBool::new(false));
            let mut diag = SockDiag::open().expect("a sock_diag socket");
            diag.interpose(Box::new({
                let failing = Arc::clone(&failing);
                move |receive, buffer| {
                    let length = receive(buffer)?;
                    if failing.load(Ordering::SeqCst) {
                        return Err(io::Error::other("a reply the test broke"));
                    }
                    Ok(length)
                }
            }));
            polls.diag = Some(diag);

            let first = polls.poll(INTERVAL).expect("a full poll");
            assert_eq!(first.pace.counts.get(State::Established), 2);
            // A consumer that keeps up lets go of it: the next dump takes its memory.
            drop(first);

            // An active close on the client (a TIME_WAIT remnant stays) and a passive
            // one on the server (nothing stays), then a full dump that fails.
            drop(client);
            drop(server);
            thread::sleep(Duration::from_millis(100));
            failing.store(true, Ordering::SeqCst);
            assert!(polls.poll(INTERVAL).is_err(), "the full dump failed");
            failing.store(false, Ordering::SeqCst);

            let lane = polls
                .poll_lanes(INTERVAL, true)
                .expect("a lane poll")
                .expect("an update from the lane after the failed full dump");
            assert!(!lane.pace.is_full());
            let of_the_connection = |transition: &&Transition| {
                [transition.endpoints.local.1, transition.endpoints.remote.1] == [7311, client_port]
                    || [transition.endpoints.local.1, transition.endpoints.remote.1]
                        == [client_port, 7311]
            };
            let mut reported: Vec<_> = lane
                .transitions
                .iter()
                .filter(of_the_connection)
                .map(|transition| (transition.endpoints.local.1, transition.kind, transition.to))
                .collect();
            reported.sort_by_key(|(port, _, _)| *port);
            assert_eq!(
                reported,
                vec![
                    (7311, Kind::Closed, None),
                    (client_port, Kind::Changed, Some(State::TimeWait)),
                ],
                "{:?}",
                lane.transitions
            );
            assert_eq!(
                lane.pace.counts.get(State::Listen),
                1,
                "the listener, read fresh"
            );
            drop(lane);

            // The next full dump succeeds, and reports nothing of it again.
            let next = polls.poll(INTERVAL).expect("a full poll");
            let again: Vec<_> = next.transitions.iter().filter(of_the_connection).collect();
            assert!(again.is_empty(), "reported twice: {again:?}");
            assert_eq!(next.pace.counts.get(State::TimeWait), 1);
            assert_eq!(next.pace.counts.get(State::Established), 0);
        })
        .expect("entering the test's namespace");
    }

    #[test]
    fn what_the_consumer_says_it_spent_on_a_poll_spaces_out_the_full_dumps() {
        let (poller, polls) = poller();
        let first = next_update(&polls);
        // The few sockets of a test's namespace dump in far less than 200 ms.
        assert!(first.pace.is_full());
        assert_eq!(first.pace.full_every, Some(INTERVAL));

        // The consumer spent half a second of CPU taking it in: with the dump, more
        // than 20% of a core at one a second, so they come every 3 s.
        poller.charge(Duration::from_millis(500), TakenIn::Full, true);
        let second = next_update(&polls);
        assert!(!second.pace.is_full(), "the fast lane between full dumps");
        assert_eq!(second.pace.full_every, Some(Duration::from_secs(3)));
    }

    #[test]
    fn work_after_a_poll_waits_for_a_poll_taken_in_to_be_counted() {
        let (poller, polls) = poller();
        next_update(&polls);
        // Reported without a poll taken in: nothing to divide it by yet.
        poller.charge(Duration::from_millis(500), TakenIn::AfterFull, true);
        let second = next_update(&polls);
        assert!(second.pace.is_full());
        assert_eq!(second.pace.full_every, Some(INTERVAL));
        // Counted with the next poll taken in, as its cost.
        poller.charge(Duration::ZERO, TakenIn::Full, true);
        let third = next_update(&polls);
        assert_eq!(third.pace.full_every, Some(Duration::from_secs(3)));
    }
}
