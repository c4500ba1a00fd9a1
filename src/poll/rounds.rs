//! Polls across network namespaces (`--all-netns`) for the interactive view: each namespace's
//! latest poll, and the rounds in which they are put together into the one update the
//! model takes in, with what tells the namespaces apart again (which sockets are
//! whose, whose listener each SYN watch row is, the counts of each).
//!
//! Every namespace has a poller of its own, so each has its own diff: a socket is only
//! ever compared with its own namespace's previous poll, and a namespace that goes
//! takes its sockets with it without any of them being reported closed. The pollers
//! run on the same interval but not in step, so a round ends once every namespace has
//! reported since the last one, or as soon as one reports a second time (a slow
//! namespace then shows its previous poll rather than hold up the others). A round
//! copies the namespaces' sockets into one snapshot, once, rather than the table
//! being rebuilt for every namespace's poll.
//!
//! Pure: labels and poller messages come in, rounds go out. Nothing here reads
//! `/proc` or the clock.

use std::cmp::Reverse;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::update::{EventStatus, Message, Pace, RateMeter, Update};
use crate::diff::Transition;
use crate::kernel::netns::Container;
use crate::kernel::procfs::{COUNTERS, TcpExt};
use crate::snapshot::{Counts, Snapshot, SocketRecord};
use crate::watch::findings::{Finding, FindingEvent};
use crate::watch::{Families, ListenerWatch, SynWatch};

/// How many hex digits of a container id the view shows, as `docker ps` does.
const SHORT_ID: usize = 12;

/// What the outputs call a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceLabel {
    /// The namespace's inode number: its identity.
    pub inode: u64,
    /// A process in it (its lowest pid), 0 when none was looked up.
    pub pid: u32,
    /// That process's command name.
    pub command: Option<String>,
    pub container: Option<Container>,
    /// Its `ip netns` name.
    pub name: Option<String>,
    /// Whether it is the initial namespace.
    pub host: bool,
}

impl NamespaceLabel {
    /// The short name every output shows: its `ip netns` name, else the container's
    /// id if it runs one, else `host` for the initial namespace, else `pid/command` of
    /// a process in it, else its inode.
    pub fn short(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        match (&self.container, self.pid, &self.command) {
            (Some(container), _, _) => container.id.chars().take(SHORT_ID).collect(),
            _ if self.host => "host".to_owned(),
            (None, pid, Some(command)) if pid > 0 => format!("{pid}/{command}"),
            (None, pid, None) if pid > 0 => pid.to_string(),
            _ => self.inode.to_string(),
        }
    }
}

/// Where one namespace's sockets start in a round's snapshot; they run up to the next
/// span's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceSpan {
    pub start: u32,
    pub inode: u64,
    pub label: Arc<str>,
}

/// One namespace as the per-namespace view shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceRow {
    pub label: NamespaceLabel,
    pub counts: Counts,
    /// Whether a poll of it has come in yet.
    pub polled: bool,
    /// Its last poll's error, until a poll succeeds.
    pub error: Option<String>,
}

/// What a round says about the namespaces, beside the combined update.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NamespaceSummary {
    /// One row per namespace, in the order of their lowest pid.
    pub rows: Vec<NamespaceRow>,
    /// The namespace of each of the combined SYN watch's listener rows, in its order.
    pub listeners: Vec<u64>,
}

impl NamespaceSummary {
    /// The short label of the namespace `inode`, if it is shown.
    pub fn label_of(&self, inode: u64) -> Option<String> {
        self.rows
            .iter()
            .find(|row| row.label.inode == inode)
            .map(|row| row.label.short())
    }
}

/// A round's result: the namespaces' latest polls as one update, and how to tell them
/// apart again.
#[derive(Debug, Clone)]
pub struct Round {
    pub update: Update,
    pub spans: Vec<NamespaceSpan>,
    /// The namespace of each of `update.transitions`, in the same order.
    pub transition_netns: Vec<u64>,
    pub summary: NamespaceSummary,
    /// The first namespace's poll error, named by the namespace.
    pub error: Option<String>,
}

/// Each namespace's latest poll, and which have reported in the current round.
#[derive(Debug, Default)]
pub struct Rounds {
    namespaces: Vec<Latest>,
    /// The TcpExt counters of all namespaces as one reading: each namespace's growth
    /// since its previous poll is added, so that a namespace coming or going moves no
    /// rate.
    counters: TcpExt,
    /// The rates of those counters from round to round.
    rates: RateMeter,
}

#[derive(Debug)]
struct Latest {
    label: NamespaceLabel,
    short: Arc<str>,
    snapshot: Option<Arc<Snapshot>>,
    counts: Counts,
    families: Families,
    close_wait: Arc<[SocketRecord]>,
    syn_watch: SynWatch,
    findings: Vec<Finding>,
    /// Findings raised or cleared since the last round.
    finding_events: Vec<FindingEvent>,
    /// Transitions since the last round.
    transitions: Vec<Transition>,
    counters: Option<TcpExt>,
    took: Duration,
    events: EventStatus,
    event_overflows: u32,
    error: Option<String>,
    reported: bool,
    /// When its latest poll (full or fast lane) was taken, and how often it dumps in full.
    at: Option<SystemTime>,
    full_every: Option<Duration>,
}

impl Latest {
    fn new(label: NamespaceLabel) -> Latest {
        Latest {
            short: Arc::from(label.short()),
            label,
            snapshot: None,
            counts: Counts::default(),
            families: Families::default(),
            close_wait: Arc::from([]),
            syn_watch: SynWatch {
                listeners: Vec::new(),
                host_notes: Vec::new(),
            },
            findings: Vec::new(),
            finding_events: Vec::new(),
            transitions: Vec::new(),
            counters: None,
            took: Duration::ZERO,
            events: EventStatus::Off,
            event_overflows: 0,
            error: None,
            reported: false,
            at: None,
            full_every: None,
        }
    }
}

impl Rounds {
    /// The namespaces to show from now on, in order: new ones are waited for, and
    /// those not listed are dropped with their sockets (no transitions: the sockets did
    /// not close, tcpscope stopped looking). Returns the dropped ones with how many
    /// sockets each had.
    pub fn set_namespaces(&mut self, labels: Vec<NamespaceLabel>) -> Vec<(NamespaceLabel, usize)> {
        let mut previous = std::mem::take(&mut self.namespaces);
        for label in labels {
            let latest = match previous.iter().position(|l| l.label.inode == label.inode) {
                Some(at) => {
                    let mut latest = previous.swap_remove(at);
                    if latest.label != label {
                        latest.short = Arc::from(label.short());
                        latest.label = label;
                    }
                    latest
                }
                None => Latest::new(label),
            };
            self.namespaces.push(latest);
        }
        previous
            .into_iter()
            .map(|gone| {
                let sockets = gone.snapshot.as_ref().map_or(0, |s| s.sockets.len());
                (gone.label, sockets)
            })
            .collect()
    }

    /// The short label of namespace `inode`, if it is shown.
    pub fn label_of(&self, inode: u64) -> Option<&str> {
        self.namespaces
            .iter()
            .find(|latest| latest.label.inode == inode)
            .map(|latest| &*latest.short)
    }

    /// Takes in one namespace's message; returns the round it completes, if it does.
    /// Messages from namespaces not shown (any more) are ignored.
    pub fn observe(&mut self, inode: u64, message: Message) -> Option<Round> {
        let latest = self
            .namespaces
            .iter_mut()
            .find(|latest| latest.label.inode == inode)?;
        let again = latest.reported;
        latest.reported = true;
        match message {
            Message::Update(update) => {
                let update = *update;
                if let Some(before) = &latest.counters {
                    add_growth(&mut self.counters, before, &update.counters);
                }
                latest.counters = Some(update.counters);
                latest.counts = update.pace.counts;
                latest.families = update.pace.families;
                latest.close_wait = update.pace.close_wait;
                latest.at = Some(update.pace.at);
                latest.full_every = update.pace.full_every;
                latest.snapshot = Some(update.snapshot);
                latest.syn_watch = update.syn_watch;
                latest.findings = update.findings;
                latest.finding_events.extend(update.finding_events);
                latest.transitions.extend(update.transitions);
                latest.took = update.took;
                latest.events = update.events;
                latest.event_overflows += update.event_overflows;
                latest.error = None;
            }
            Message::PollFailed(error) => latest.error = Some(error),
        }
        let complete = again || self.namespaces.iter().all(|latest| latest.reported);
        complete.then(|| self.round())
    }

    /// Puts the latest polls together and starts the next round.
    fn round(&mut self) -> Round {
        let total: usize = self
            .namespaces
            .iter()
            .filter_map(|latest| latest.snapshot.as_ref())
            .map(|snapshot| snapshot.sockets.len())
            .sum();
        let mut sockets = Vec::with_capacity(total);
        let mut spans = Vec::with_capacity(self.namespaces.len());
        let mut transitions = Vec::new();
        let mut transition_netns = Vec::new();
        let mut listeners: Vec<(u64, ListenerWatch)> = Vec::new();
        let mut host_notes = Vec::new();
        let mut findings = Vec::new();
        let mut finding_events = Vec::new();
        let mut taken_at = SystemTime::UNIX_EPOCH;
        let mut took = Duration::ZERO;
        let mut event_overflows = 0u32;
        let mut events = EventStatus::Off;
        for latest in &mut self.namespaces {
            let inode = latest.label.inode;
            if let Some(snapshot) = &latest.snapshot {
                spans.push(NamespaceSpan {
                    start: u32::try_from(sockets.len()).unwrap_or(u32::MAX),
                    inode,
                    label: Arc::clone(&latest.short),
                });
                sockets.extend_from_slice(&snapshot.sockets);
                taken_at = taken_at.max(snapshot.taken_at);
            }
            transition_netns.extend(std::iter::repeat_n(inode, latest.transitions.len()));
            transitions.append(&mut latest.transitions);
            listeners.extend(
                latest
                    .syn_watch
                    .listeners
                    .iter()
                    .map(|row| (inode, row.clone())),
            );
            for note in &latest.syn_watch.host_notes {
                if !host_notes.contains(note) {
                    host_notes.push(*note);
                }
            }
            // Each finding names its namespace: the same subject may be in several.
            let named = |mut finding: Finding| {
                finding.netns = Some(Arc::clone(&latest.short));
                finding
            };
            findings.extend(latest.findings.iter().cloned().map(named));
            finding_events.extend(latest.finding_events.drain(..).map(|event| match event {
                FindingEvent::Raised(finding) => FindingEvent::Raised(named(finding)),
                FindingEvent::Cleared(finding) => FindingEvent::Cleared(named(finding)),
            }));
            took = took.max(latest.took);
            event_overflows = event_overflows.saturating_add(latest.event_overflows);
            latest.event_overflows = 0;
            // Refused anywhere is worth saying; on where any poller subscribed.
            events = match (&events, &latest.events) {
                (EventStatus::Refused(_), _) => events,
                (_, EventStatus::Refused(_)) | (EventStatus::Off, _) => latest.events.clone(),
                _ => events,
            };
        }
        // Listeners of different namespaces may share an endpoint: each was judged in
        // its own namespace; rank them all together, most urgent first.
        listeners.sort_by_key(|(netns, row)| {
            (
                row.verdict,
                Reverse(row.listener.half_open),
                *netns,
                row.listener.endpoint(),
            )
        });
        let summary = NamespaceSummary {
            rows: self
                .namespaces
                .iter()
                .map(|latest| NamespaceRow {
                    label: latest.label.clone(),
                    counts: latest.counts,
                    polled: latest.snapshot.is_some(),
                    error: latest.error.clone(),
                })
                .collect(),
            listeners: listeners.iter().map(|(netns, _)| *netns).collect(),
        };
        let error = self.namespaces.iter().find_map(|latest| {
            let error = latest.error.as_ref()?;
            Some(format!("netns {}: {error}", latest.short))
        });
        let syn_watch = SynWatch {
            listeners: listeners.into_iter().map(|(_, row)| row).collect(),
            host_notes,
        };
        for latest in &mut self.namespaces {
            latest.reported = false;
        }
        let at = self
            .namespaces
            .iter()
            .filter_map(|latest| latest.at)
            .max()
            .unwrap_or(taken_at);
        let mut counts = Counts::default();
        let mut families = Families::default();
        let mut close_wait = Vec::new();
        for latest in &self.namespaces {
            for (state, count) in latest.counts.iter() {
                counts.set(state, counts.get(state).saturating_add(count));
            }
            families.ipv4 = families.ipv4.saturating_add(latest.families.ipv4);
            families.ipv6 = families.ipv6.saturating_add(latest.families.ipv6);
            close_wait.extend_from_slice(&latest.close_wait);
        }
        let full_every = self
            .namespaces
            .iter()
            .filter_map(|latest| latest.full_every)
            .max();
        let (rates, _) = self.rates.observe(at, &self.counters);
        findings.sort_by(|a, b| a.urgency().cmp(&b.urgency()));
        Round {
            update: Update {
                tcp_info: None,
                snapshot: Arc::new(Snapshot::new(taken_at, sockets)),
                transitions,
                counters: self.counters,
                rates,
                syn_watch,
                findings,
                finding_events,
                took,
                events,
                event_overflows,
                pace: Pace {
                    at,
                    full_every,
                    lane: None,
                    syn_recv_at: at,
                    counts,
                    families,
                    close_wait: close_wait.into(),
                    sockstat: None,
                },
            },
            spans,
            transition_netns,
            summary,
            error,
        }
    }
}

/// Adds what each counter grew by between `before` and `after` to `total`. A counter
/// that went down (the namespace was recreated under the same inode) adds nothing.
fn add_growth(total: &mut TcpExt, before: &TcpExt, after: &TcpExt) {
    for counter in COUNTERS {
        let growth = counter.get(after).saturating_sub(counter.get(before));
        let sum = counter.get_mut(total);
        *sum = sum.saturating_add(growth);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::Differ;
    use crate::snapshot::fixtures::socket;
    use crate::tcp::State;
    use crate::tui::views::fixtures::namespace_labels;
    use crate::watch::{CounterRates, SynWatcher, Thresholds};

    const HOST: u64 = 4_026_531_840;
    const CONTAINER: u64 = 4_026_532_501;
    const NGINX: u64 = 4_026_532_777;

    /// A namespace's poller, as far as the rounds can tell: its own diff and SYN watch.
    struct Namespace {
        differ: Differ,
        watcher: SynWatcher,
        counters: TcpExt,
    }

    impl Namespace {
        fn new() -> Namespace {
            Namespace {
                differ: Differ::new(),
                watcher: SynWatcher::new(Thresholds::default()),
                counters: TcpExt::default(),
            }
        }

        fn poll(&mut self, second: u64, sockets: Vec<crate::snapshot::SocketRecord>) -> Message {
            let taken_at = SystemTime::UNIX_EPOCH + Duration::from_secs(second);
            let snapshot = Snapshot::new(taken_at, sockets);
            let transitions = self.differ.observe(&snapshot, &[]).to_vec();
            let syn_watch =
                self.watcher
                    .poll(&snapshot, &CounterRates::default(), Duration::from_secs(1));
            Message::Update(Box::new(Update {
                tcp_info: None,
                pace: Pace::full(&snapshot, None),
                snapshot: Arc::new(snapshot),
                transitions,
                counters: self.counters,
                rates: None,
                findings: Vec::new(),
                finding_events: Vec::new(),
                syn_watch,
                took: Duration::from_millis(5),
                events: EventStatus::Subscribed,
                event_overflows: 0,
            }))
        }
    }

    fn listener_with_half_open(half_open: u16) -> Vec<crate::snapshot::SocketRecord> {
        let mut sockets = vec![socket(State::Listen, "127.0.0.1", 80, "0.0.0.0", 0)];
        sockets[0].cookie = 1;
        for i in 0..half_open {
            let mut record = socket(State::SynRecv, "127.0.0.1", 80, "10.9.9.9", 2000 + i);
            record.cookie = 100 + u64::from(i);
            sockets.push(record);
        }
        sockets
    }

    fn two_namespaces() -> Rounds {
        let mut rounds = Rounds::default();
        rounds.set_namespaces(namespace_labels()[..2].to_vec());
        rounds
    }

    #[test]
    fn a_round_ends_once_every_namespace_has_reported() {
        let mut rounds = two_namespaces();
        let (mut host, mut container) = (Namespace::new(), Namespace::new());
        assert!(
            rounds
                .observe(HOST, host.poll(1, listener_with_half_open(0)))
                .is_none()
        );
        let round = rounds
            .observe(CONTAINER, container.poll(1, listener_with_half_open(3)))
            .expect("both reported");
        assert_eq!(round.update.snapshot.sockets.len(), 1 + 4);
        assert_eq!(
            round
                .spans
                .iter()
                .map(|span| (span.start, span.inode, &*span.label))
                .collect::<Vec<_>>(),
            [(0, HOST, "1/systemd"), (1, CONTAINER, "3f2a9c4e5d6b")]
        );
        assert!(
            rounds
                .observe(HOST, host.poll(2, listener_with_half_open(0)))
                .is_none(),
            "a new round waits for both again"
        );
    }

    #[test]
    fn a_namespace_reporting_twice_ends_the_round_without_waiting_for_a_slow_one() {
        let mut rounds = two_namespaces();
        let (mut host, mut container) = (Namespace::new(), Namespace::new());
        rounds.observe(HOST, host.poll(1, listener_with_half_open(0)));
        rounds.observe(CONTAINER, container.poll(1, listener_with_half_open(1)));
        assert!(
            rounds
                .observe(HOST, host.poll(2, listener_with_half_open(0)))
                .is_none()
        );
        let round = rounds
            .observe(HOST, host.poll(3, listener_with_half_open(0)))
            .expect("the host reported twice");
        // The container's previous poll stands in for it.
        assert_eq!(round.summary.rows[1].counts.get(State::SynRecv), 1);
    }

    #[test]
    fn the_same_listener_in_two_namespaces_is_two_watch_rows_each_named() {
        let mut rounds = two_namespaces();
        let (mut host, mut container) = (Namespace::new(), Namespace::new());
        rounds.observe(HOST, host.poll(1, listener_with_half_open(2)));
        let round = rounds
            .observe(CONTAINER, container.poll(1, listener_with_half_open(5)))
            .expect("both reported");
        let half_open: Vec<(u64, u32)> = round
            .summary
            .listeners
            .iter()
            .zip(&round.update.syn_watch.listeners)
            .map(|(netns, row)| (*netns, row.listener.half_open))
            .collect();
        assert_eq!(
            half_open,
            [(CONTAINER, 5), (HOST, 2)],
            "most half-open first"
        );
    }

    #[test]
    fn the_same_cookie_in_two_namespaces_is_two_sockets_and_no_transition() {
        let mut rounds = two_namespaces();
        let (mut host, mut container) = (Namespace::new(), Namespace::new());
        // Both namespaces' sockets carry cookies 1 and 100..: each is diffed on its own.
        for second in 1..=3 {
            rounds.observe(HOST, host.poll(second, listener_with_half_open(1)));
            let round = rounds
                .observe(
                    CONTAINER,
                    container.poll(second, listener_with_half_open(1)),
                )
                .expect("both reported");
            assert!(
                round.update.transitions.is_empty(),
                "{:?}",
                round.update.transitions
            );
            assert_eq!(round.update.snapshot.counts().get(State::SynRecv), 2);
        }
    }

    #[test]
    fn a_namespace_that_goes_takes_its_sockets_without_reporting_them_closed() {
        let mut rounds = Rounds::default();
        rounds.set_namespaces(namespace_labels());
        let mut namespaces: Vec<Namespace> = (0..3).map(|_| Namespace::new()).collect();
        for (namespace, inode) in namespaces.iter_mut().zip([HOST, CONTAINER, NGINX]) {
            rounds.observe(inode, namespace.poll(1, listener_with_half_open(4)));
        }
        let gone = rounds.set_namespaces(namespace_labels()[..2].to_vec());
        assert_eq!(gone.len(), 1);
        assert_eq!((gone[0].0.inode, gone[0].1), (NGINX, 5));
        assert!(
            rounds
                .observe(NGINX, namespaces[2].poll(2, Vec::new()))
                .is_none(),
            "a late poll of a namespace that went is ignored"
        );
        rounds.observe(HOST, namespaces[0].poll(2, listener_with_half_open(4)));
        let round = rounds
            .observe(CONTAINER, namespaces[1].poll(2, listener_with_half_open(4)))
            .expect("both left reported");
        assert!(round.update.transitions.is_empty());
        assert_eq!(round.update.snapshot.sockets.len(), 10);
        assert_eq!(round.summary.rows.len(), 2);
    }

    #[test]
    fn counters_add_each_namespaces_growth_so_a_new_namespace_moves_no_rate() {
        let mut rounds = Rounds::default();
        rounds.set_namespaces(namespace_labels()[..1].to_vec());
        let mut host = Namespace::new();
        host.counters.syncookies_sent = 1000;
        let first = rounds
            .observe(HOST, host.poll(1, Vec::new()))
            .expect("one namespace");
        assert_eq!(first.update.counters.syncookies_sent, 0);
        host.counters.syncookies_sent = 1010;
        let second = rounds
            .observe(HOST, host.poll(2, Vec::new()))
            .expect("one namespace");
        assert_eq!(second.update.counters.syncookies_sent, 10);

        // A container with a million cookies behind it joins: nothing moves.
        rounds.set_namespaces(namespace_labels()[..2].to_vec());
        let mut container = Namespace::new();
        container.counters.syncookies_sent = 1_000_000;
        rounds.observe(HOST, host.poll(3, Vec::new()));
        let third = rounds
            .observe(CONTAINER, container.poll(3, Vec::new()))
            .expect("both reported");
        assert_eq!(third.update.counters.syncookies_sent, 10);
    }

    #[test]
    fn a_failed_poll_is_named_by_its_namespace_and_keeps_the_previous_sockets() {
        let mut rounds = two_namespaces();
        let (mut host, mut container) = (Namespace::new(), Namespace::new());
        rounds.observe(HOST, host.poll(1, listener_with_half_open(1)));
        rounds.observe(CONTAINER, container.poll(1, listener_with_half_open(1)));
        rounds.observe(HOST, host.poll(2, listener_with_half_open(1)));
        let round = rounds
            .observe(CONTAINER, Message::PollFailed("Too many open files".into()))
            .expect("both reported");
        assert_eq!(
            round.error.as_deref(),
            Some("netns 3f2a9c4e5d6b: Too many open files")
        );
        assert_eq!(round.update.snapshot.sockets.len(), 4);
    }

    #[test]
    fn a_namespace_is_called_by_its_container_else_a_process_else_its_inode() {
        let labels = namespace_labels();
        assert_eq!(labels[1].short(), "3f2a9c4e5d6b");
        assert_eq!(labels[2].short(), "5120/nginx");
        let bare = NamespaceLabel {
            inode: 4_026_532_999,
            pid: 0,
            command: None,
            container: None,
            name: None,
            host: false,
        };
        assert_eq!(bare.short(), "4026532999");
    }

    #[test]
    fn an_ip_netns_name_comes_first_and_the_initial_namespace_is_the_host() {
        let labels = namespace_labels();
        let named = NamespaceLabel {
            name: Some("blue".into()),
            ..labels[1].clone()
        };
        assert_eq!(named.short(), "blue", "before the container id");
        let host = NamespaceLabel {
            host: true,
            ..labels[0].clone()
        };
        assert_eq!(host.short(), "host", "before pid/command");
        let host_container = NamespaceLabel {
            host: true,
            ..labels[1].clone()
        };
        assert_eq!(host_container.short(), "3f2a9c4e5d6b");
    }
}
