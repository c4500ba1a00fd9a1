//! Deterministic models for the view tests: fixed timestamps, fixed addresses, and
//! the real diff engine, SYN watch and findings run over hand-built snapshots, so that
//! what the views show is what the analyses would say.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::diff::Differ;
use crate::kernel::netns::Container;
use crate::kernel::procfs::TcpExt;
use crate::poll::rounds::{NamespaceLabel, Rounds};
use crate::poll::update::{EventStatus, Message, Update, watch_counters};
use crate::snapshot::fixtures::socket;
use crate::snapshot::{Snapshot, SocketRecord};
use crate::tcp::State;
use crate::tui::model::{Model, ProcessesSeen};
use crate::watch::findings::{self, FindingThresholds, HostLimits, Observation};
use crate::watch::leaks::DEFAULT_WINDOW;
use crate::watch::{CounterRates, History, LeakWatcher, Owner, SynWatcher, Thresholds};

const START: u64 = 1_700_000_000;

fn listener(port: u16, backlog: u32, inode: u32) -> SocketRecord {
    let mut record = socket(State::Listen, "10.0.0.1", port, "0.0.0.0", 0);
    record.send_q = backlog;
    record.inode = inode;
    record
}

/// The host at poll `poll` (0..5): a web server on :80 flooded from forged sources
/// from poll 2 on, an API on :8080 with half-open connections from two hosts, SSH
/// sessions, and one connection that closes actively between polls 3 and 4.
fn sockets(poll: u32) -> Vec<SocketRecord> {
    let mut sockets = vec![
        listener(80, 128, 1001),
        listener(8080, 4096, 1002),
        listener(22, 128, 1003),
    ];
    for i in 0..4u8 {
        let mut ssh = socket(
            State::Established,
            "10.0.0.1",
            22,
            "192.0.2.10",
            50000 + u16::from(i),
        );
        ssh.inode = 2000 + u32::from(i);
        ssh.cookie = 77 + u64::from(i);
        sockets.push(ssh);
    }
    let closing = if poll < 4 {
        State::Established
    } else {
        State::TimeWait
    };
    let mut closer = socket(closing, "10.0.0.1", 41000, "203.0.113.5", 443);
    closer.cookie = 500;
    sockets.push(closer);
    sockets.push(socket(
        State::CloseWait,
        "10.0.0.1",
        8080,
        "192.0.2.99",
        60000,
    ));
    let flood = 100 * poll.saturating_sub(1).min(3);
    for i in 0..flood {
        // One forged source per /24, as random sources nearly are.
        let network = u8::try_from(i % 250).unwrap_or(0);
        let source = IpAddr::V4(Ipv4Addr::new(198, 18 + u8::from(i >= 250), network, 7));
        let mut half_open = socket(State::SynRecv, "10.0.0.1", 80, "0.0.0.0", 0);
        half_open.remote_addr = source;
        half_open.remote_port = 1024 + u16::try_from(i).unwrap_or(0);
        half_open.retransmits = 2;
        half_open.expires_ms = 1000;
        sockets.push(half_open);
    }
    let few = if poll >= 2 { 100 } else { 0 };
    for i in 0..few {
        let host = if i % 2 == 0 {
            "192.0.2.50"
        } else {
            "192.0.2.51"
        };
        let mut half_open = socket(State::SynRecv, "10.0.0.1", 8080, host, 30000 + i);
        half_open.expires_ms = 2000;
        sockets.push(half_open);
    }
    sockets.push(socket(State::Listen, "::", 443, "::", 0));
    sockets
}

/// The CLOSE_WAIT sockets of two more processes at poll `poll`: `leaky-api` (pid
/// 4242) on :9000 keeps every one and gains one a poll; `worker` (pid 4343) on :9100
/// has one at a time, a different one each poll.
fn close_wait_sockets(poll: u32) -> Vec<SocketRecord> {
    let mut sockets = Vec::new();
    for i in 0..=poll {
        let mut kept = socket(
            State::CloseWait,
            "10.0.0.1",
            9000,
            "192.0.2.70",
            40000 + u16::try_from(i).unwrap_or(0),
        );
        kept.cookie = 9000 + u64::from(i);
        kept.inode = 5000 + i;
        sockets.push(kept);
    }
    let mut passing = socket(
        State::CloseWait,
        "10.0.0.1",
        9100,
        "192.0.2.80",
        41000 + u16::try_from(poll).unwrap_or(0),
    );
    passing.cookie = 9500 + u64::from(poll);
    passing.inode = 6000 + poll;
    sockets.push(passing);
    sockets
}

/// Who holds a socket inode in these fixtures.
fn owner(inode: u32) -> Option<Owner> {
    let (pid, name) = match inode {
        5000..6000 => (4242, "leaky-api"),
        6000..7000 => (4343, "worker"),
        _ => return None,
    };
    Some(Owner {
        pid,
        name: name.to_owned(),
    })
}

/// The TcpExt counters at poll `poll`: SYNs dropped at 40 a second, 3 connections.
fn counters(poll: u32) -> TcpExt {
    TcpExt {
        syncookies_sent: 0,
        req_q_full_drop: u64::from(poll) * 40,
        listen_drops: u64::from(poll) * 3,
        ..TcpExt::default()
    }
}

/// What the poller keeps across polls of one namespace, as the live poller does.
struct Analyses {
    differ: Differ,
    watcher: SynWatcher,
    /// CLOSE_WAIT by local port, for the findings: the poller names no owner.
    leaks: LeakWatcher,
    findings: findings::Analyst,
}

impl Analyses {
    fn new() -> Analyses {
        Analyses {
            differ: Differ::new(),
            watcher: SynWatcher::new(Thresholds::default()),
            leaks: LeakWatcher::new(DEFAULT_WINDOW),
            findings: findings::Analyst::new(FindingThresholds::default()),
        }
    }
}

fn update(poll: u32, leaking: bool, analyses: &mut Analyses) -> Update {
    let taken_at = SystemTime::UNIX_EPOCH + Duration::from_secs(START + u64::from(poll));
    let mut sockets = sockets(poll);
    if leaking {
        sockets.extend(close_wait_sockets(poll));
    }
    let snapshot = Snapshot::new(taken_at, sockets);
    let transitions = analyses.differ.observe(&snapshot, &[]).to_vec();
    let counters = counters(poll);
    let rates = CounterRates::between(
        &watch_counters(&TcpExt::default()),
        &watch_counters(&counters),
        1.0,
    );
    let syn_watch = analyses
        .watcher
        .poll(&snapshot, &rates, Duration::from_secs(1));
    let leaks = analyses
        .leaks
        .observe(snapshot.taken_at, &snapshot.sockets, |_| None);
    let report = analyses.findings.observe(&Observation {
        snapshot: &snapshot,
        limits: &HostLimits::default(),
        time_wait_overflows: Some(0),
        syn_watch: Some(&syn_watch),
        syn_cookies_rising: rates.cookies_rising(Thresholds::default().min_counter_rate),
        leaks: Some(&leaks),
        transitions: &transitions,
        processes: None,
    });
    Update {
        tcp_info: None,
        pace: crate::poll::update::Pace::full(&snapshot, None),
        snapshot: Arc::new(snapshot),
        transitions,
        counters,
        findings: report.findings,
        finding_events: report.events,
        // The polls are a second apart.
        rates: poll.checked_sub(1).map(|before| {
            CounterRates::between(
                &watch_counters(&self::counters(before)),
                &watch_counters(&counters),
                1.0,
            )
        }),
        syn_watch,
        took: Duration::from_millis(12),
        events: EventStatus::Subscribed,
        event_overflows: 0,
    }
}

fn after_polls(polls: u32, leaking: bool) -> Model {
    let mut model = Model::new(Duration::from_secs(1), History::new(600, 1000));
    let mut analyses = Analyses::new();
    let mut leaks = LeakWatcher::new(DEFAULT_WINDOW);
    for poll in 0..polls {
        let update = update(poll, leaking, &mut analyses);
        model.apply(&update);
        let snapshot = &update.snapshot;
        model.close_wait = leaks.observe(snapshot.taken_at, &snapshot.sockets, owner);
    }
    model.status.processes = Some(ProcessesSeen::All);
    model
}

/// One more poll of the flooded host, for tests that feed the app updates.
pub fn next_update() -> Update {
    update(5, false, &mut Analyses::new())
}

/// Five polls in: the flood at its height, 300 half-open on :80.
pub fn flooded() -> Model {
    after_polls(5, false)
}

/// The first poll: counts but no changes yet, and no SYN_RECV.
pub fn first_poll() -> Model {
    after_polls(1, false)
}

/// Seven polls of the flooded host where `leaky-api` has kept every CLOSE_WAIT socket
/// (7 by now, the oldest seen 6 s ago) and `worker` closes each of its own.
pub fn leaking() -> Model {
    after_polls(7, true)
}

/// The namespaces of [`across_namespaces`]: the host's, a Docker container's, and
/// one whose process is `nginx`.
pub fn namespace_labels() -> Vec<NamespaceLabel> {
    vec![
        NamespaceLabel {
            inode: 4_026_531_840,
            pid: 1,
            command: Some("systemd".into()),
            container: None,
            name: None,
            host: false,
        },
        NamespaceLabel {
            inode: 4_026_532_501,
            pid: 4242,
            command: Some("python3".into()),
            container: Some(Container {
                runtime: "docker",
                id: "3f2a9c4e5d6b7a8f9e0d1c2b3a4f5e6d7c8b9a0f1e2d3c4b5a6f7e8d9c0b1a2f".into(),
            }),
            name: None,
            host: false,
        },
        NamespaceLabel {
            inode: 4_026_532_777,
            pid: 5120,
            command: Some("nginx".into()),
            container: None,
            name: None,
            host: false,
        },
    ]
}

/// The sockets of namespace `which` (0..3) at poll `poll` (0..2). The host and the
/// container both listen on 127.0.0.1:80; the container's listener is flooded from
/// forged sources from poll 1 on.
fn namespace_sockets(which: usize, poll: u32) -> Vec<SocketRecord> {
    let cookie_base = 10_000 * (which as u64 + 1);
    let mut sockets = Vec::new();
    let mut add = |mut record: SocketRecord| {
        record.cookie = cookie_base + sockets.len() as u64;
        sockets.push(record);
    };
    match which {
        0 => {
            let mut web = socket(State::Listen, "127.0.0.1", 80, "0.0.0.0", 0);
            web.send_q = 128;
            add(web);
            for i in 0..3 {
                add(socket(
                    State::Established,
                    "127.0.0.1",
                    80,
                    "127.0.0.1",
                    40_000 + i,
                ));
            }
        }
        1 => {
            let mut web = socket(State::Listen, "127.0.0.1", 80, "0.0.0.0", 0);
            web.send_q = 128;
            add(web);
            add(socket(
                State::CloseWait,
                "127.0.0.1",
                80,
                "10.1.0.9",
                50_000,
            ));
            let flood = if poll >= 1 { 200 } else { 0 };
            for i in 0..flood {
                let network = u8::try_from(i % 200).unwrap_or(0);
                let mut half_open = socket(State::SynRecv, "127.0.0.1", 80, "0.0.0.0", 0);
                half_open.remote_addr = IpAddr::V4(Ipv4Addr::new(198, 18, network, 7));
                half_open.remote_port = 1024 + u16::try_from(i).unwrap_or(0);
                add(half_open);
            }
        }
        _ => {
            add(socket(State::Listen, "0.0.0.0", 8080, "0.0.0.0", 0));
            let state = if poll >= 1 {
                State::TimeWait
            } else {
                State::Established
            };
            add(socket(state, "10.2.0.1", 8080, "10.2.0.5", 33_000));
        }
    }
    sockets
}

/// Two polls of three namespaces, put together in rounds as the view does.
pub fn across_namespaces() -> Model {
    let mut model = Model::new(Duration::from_secs(1), History::new(600, 1000)).across_namespaces();
    let mut rounds = Rounds::default();
    rounds.set_namespaces(namespace_labels());
    // Findings raised at the first poll that shows them, so that two polls show the
    // flood's finding naming its namespace.
    let raise_at_once = FindingThresholds {
        raise_after_polls: 1,
        ..FindingThresholds::default()
    };
    let mut namespaces: Vec<(Differ, SynWatcher, findings::Analyst)> = (0..3)
        .map(|_| {
            (
                Differ::new(),
                SynWatcher::new(Thresholds::default()),
                findings::Analyst::new(raise_at_once),
            )
        })
        .collect();
    for poll in 0..2 {
        for (which, (differ, watcher, analyst)) in namespaces.iter_mut().enumerate() {
            let taken_at = SystemTime::UNIX_EPOCH + Duration::from_secs(START + u64::from(poll));
            let snapshot = Snapshot::new(taken_at, namespace_sockets(which, poll));
            let transitions = differ.observe(&snapshot, &[]).to_vec();
            let syn_watch =
                watcher.poll(&snapshot, &CounterRates::default(), Duration::from_secs(1));
            let report = analyst.observe(&Observation {
                snapshot: &snapshot,
                limits: &HostLimits::default(),
                time_wait_overflows: Some(0),
                syn_watch: Some(&syn_watch),
                syn_cookies_rising: false,
                leaks: None,
                transitions: &transitions,
                processes: None,
            });
            let update = Update {
                tcp_info: None,
                pace: crate::poll::update::Pace::full(&snapshot, None),
                snapshot: Arc::new(snapshot),
                transitions,
                counters: TcpExt::default(),
                rates: None,
                findings: report.findings,
                finding_events: report.events,
                syn_watch,
                took: Duration::from_millis(3 + which as u64),
                events: EventStatus::Subscribed,
                event_overflows: 0,
            };
            let inode = namespace_labels()[which].inode;
            if let Some(round) = rounds.observe(inode, Message::Update(Box::new(update))) {
                model.apply_round(&round);
            }
        }
    }
    model.status.processes = Some(ProcessesSeen::All);
    model
}
