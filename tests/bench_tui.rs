//! What the interactive view costs at 100k sockets: the time to take in a poll (sort
//! and filter once; and, with the rows ordered elsewhere, with a finding, the detail
//! pane and a `cgroup:` filter to follow), the time to draw a frame of each tab, how long a key waits for
//! the frame that answers it while polls keep arriving, and the CPU the real binary
//! uses at a 1 s interval over a real crowd of 100k ESTABLISHED sockets in a lab.
//!
//! Run: `cargo test --release --test bench_tui` (as root, for the CPU part). In a
//! release build it fails if a median frame takes 5 ms or more, if the 99th percentile
//! of key latency is over 50 ms, or if the process uses more than 15% of one core. A
//! debug build, as plain `cargo test` makes, is many times slower: it only fails past
//! 100 ms a frame, to catch a frame that sorts or copies every row, and prints the key
//! latency without judging it.
// Test code: it may unwrap, and the lab calls unshare and setns.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used)]

#[path = "support/mod.rs"]
mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use tcpscope::kernel::procfs::TcpExt;
use tcpscope::poll::{EventStatus, Message, Update};
use tcpscope::snapshot::{Family, Snapshot, SocketRecord, Timer};
use tcpscope::tcp::State;
use tcpscope::tui::app::{App, Effect, Event};
use tcpscope::tui::model::Model;
use tcpscope::tui::ordering::RowOrderer;
use tcpscope::tui::theme::Theme;
use tcpscope::watch::findings::{Evidence, Finding, Kind, Severity, Subject};
use tcpscope::watch::{History, SynWatch, Thresholds};

use support::tcpscope_command;
use support::{lab, pty};

const SOCKETS: usize = 100_000;
const FRAMES: usize = 21;
const FRAME_TARGET: Duration = Duration::from_millis(5);
const DEBUG_FRAME_LIMIT: Duration = Duration::from_millis(100);
const CPU_TARGET_PERCENT: f64 = 15.0;
const CPU_WINDOW: Duration = Duration::from_secs(10);
/// How often polls arrive in the key latency run: the view's default interval.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// Polls taken in during the key latency run (a debug build takes fewer).
const KEY_RUN_POLLS: u64 = 12;
/// Time between two keys: faster than a person types, so that many keys meet a poll.
const KEY_EVERY: Duration = Duration::from_millis(23);
const KEY_P99_TARGET: Duration = Duration::from_millis(50);

fn record(i: usize) -> SocketRecord {
    let [_, a, b, c] = u32::try_from(i).unwrap_or(0).to_be_bytes();
    SocketRecord {
        family: Family::Ipv4,
        state: if i.is_multiple_of(10) {
            State::TimeWait
        } else {
            State::Established
        },
        local_addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        local_port: 443,
        remote_addr: IpAddr::V4(Ipv4Addr::new(10, a, b, c)),
        remote_port: 1024 + u16::try_from(i % 60_000).unwrap_or(0),
        recv_q: u32::try_from(i % 7).unwrap_or(0),
        timer: Timer::Keepalive,
        expires_ms: 1000,
        inode: u32::try_from(i).unwrap_or(0),
        cookie: i as u64,
        ..SocketRecord::default()
    }
}

fn update(second: u64) -> Update {
    let taken_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + second);
    let snapshot = Snapshot::new(taken_at, (0..SOCKETS).map(record).collect());
    let syn_watch = SynWatch::of(&snapshot, Thresholds::default());
    Update {
        tcp_info: None,
        pace: tcpscope::poll::Pace::full(&snapshot, None),
        snapshot: Arc::new(snapshot),
        transitions: Vec::new(),
        counters: TcpExt::default(),
        rates: None,
        findings: Vec::new(),
        finding_events: Vec::new(),
        syn_watch,
        took: Duration::from_millis(30),
        events: EventStatus::Subscribed,
        event_overflows: 0,
    }
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn press(app: &mut App, code: KeyCode) {
    app.handle(Event::Key(KeyEvent::new(code, KeyModifiers::NONE)));
}

/// Median frame time per tab, after the poll has been taken in.
fn frames() -> Vec<(&'static str, Duration)> {
    let mut app = App::new(
        Model::new(Duration::from_secs(1), History::default()),
        Theme::COLOUR,
    );
    for second in 0..2 {
        let update = Box::new(update(second));
        let start = Instant::now();
        app.handle(Event::Poll(Message::Update(update)));
        println!(
            "taking in a poll of {SOCKETS} sockets: {:?}",
            start.elapsed()
        );
    }
    let area = Rect::new(0, 0, 120, 40);
    let mut results = Vec::new();
    for (name, key) in [("overview", '1'), ("connections", '2'), ("timeline", '3')] {
        press(&mut app, KeyCode::Char(key));
        // Scroll to the middle so that the rows drawn are not the first ones.
        if key == '2' {
            for _ in 0..2500 {
                press(&mut app, KeyCode::PageDown);
            }
        }
        let times = (0..FRAMES)
            .map(|_| {
                let mut buffer = Buffer::empty(area);
                let start = Instant::now();
                app.render(area, &mut buffer);
                start.elapsed()
            })
            .collect();
        results.push((name, median(times)));
    }
    results
}

/// The time the drawing thread takes to take in a poll while the view has the most to
/// follow: a finding up (whose cgroup is placed), the detail pane open on a connection
/// and a `cgroup:` word in the filter line. The rows are ordered elsewhere, as live,
/// and the jobs handed out are left undone: only the drawing thread's part is timed.
fn busy_take_ins() -> Duration {
    let mut app = App::new(
        Model::new(Duration::from_secs(1), History::default()),
        Theme::COLOUR,
    );
    app.order_rows_elsewhere();
    let flooded = |second| {
        let mut update = update(second);
        update.findings = vec![Finding::new(
            Kind::SynFlood,
            Severity::Critical,
            Subject::Listener {
                addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                port: 443,
            },
            "listener *:443: SYN flood".to_owned(),
            Evidence::default(),
        )];
        Box::new(update)
    };
    app.handle(Event::Poll(Message::Update(flooded(0))));
    app.order_rows_now();
    press(&mut app, KeyCode::Char('2'));
    for _ in 0..100 {
        press(&mut app, KeyCode::Down);
    }
    press(&mut app, KeyCode::Enter);
    press(&mut app, KeyCode::Char('/'));
    for c in "cgroup:-".chars() {
        press(&mut app, KeyCode::Char(c));
    }
    press(&mut app, KeyCode::Enter);
    let times = (1..=FRAMES as u64)
        .map(|second| {
            let update = flooded(second);
            let start = Instant::now();
            app.handle(Event::Poll(Message::Update(update)));
            start.elapsed()
        })
        .collect();
    median(times)
}

/// The keys the latency run sends, in a loop: cursor moves and tab switches (which
/// must never wait for a sort), sort changes, and a filter typed and applied.
fn key_cycle() -> Vec<KeyCode> {
    let mut keys = vec![
        KeyCode::Char('2'),
        KeyCode::Down,
        KeyCode::Down,
        KeyCode::PageDown,
        KeyCode::Char('s'),
        KeyCode::Down,
        KeyCode::Char('1'),
        KeyCode::Char('3'),
        KeyCode::Char('2'),
        KeyCode::Char('r'),
        KeyCode::Up,
        KeyCode::Char('/'),
    ];
    keys.extend(":44".chars().map(KeyCode::Char));
    keys.push(KeyCode::Enter);
    keys.extend([KeyCode::PageDown, KeyCode::Char('/')]);
    keys.extend([KeyCode::Backspace; 3]);
    keys.extend([KeyCode::Enter, KeyCode::Home]);
    keys
}

/// What the event loop receives in the latency run: a key with the time it was sent.
enum Input {
    Event(Event),
    Key(KeyCode, Instant),
    Done,
}

/// What the latency run measured.
struct KeyRun {
    /// Each key's time to the frame that answered it.
    latencies: Vec<Duration>,
    /// The time the event loop's thread spent taking in each poll.
    take_ins: Vec<Duration>,
}

/// Each key's time from being sent to the end of the frame drawn after the view
/// handled it, with polls of [`SOCKETS`] sockets arriving every [`POLL_EVERY`]: the
/// view's event loop on this thread (take in, handle, draw), polls and keys sent from
/// another, as the poller and the terminal reader do, and the rows ordered by the
/// view's own worker.
fn key_latencies(polls: u64) -> KeyRun {
    let updates: Vec<Box<Update>> = (0..polls).map(|second| Box::new(update(second))).collect();
    let mut app = App::new(Model::new(POLL_EVERY, History::default()), Theme::COLOUR);
    app.order_rows_elsewhere();
    let (events, inbox) = mpsc::channel::<Input>();
    let orderer = {
        let events = events.clone();
        RowOrderer::spawn(move |rows| events.send(Input::Event(Event::Rows(rows))).is_ok()).unwrap()
    };
    let feeder = std::thread::spawn(move || {
        let keys = key_cycle();
        let start = Instant::now();
        let mut sent = 0usize;
        for (second, update) in updates.into_iter().enumerate() {
            let poll_at = start + POLL_EVERY * u32::try_from(second).unwrap();
            // Keys until this poll is due.
            loop {
                let key_at = start + KEY_EVERY * u32::try_from(sent).unwrap();
                if key_at >= poll_at {
                    break;
                }
                std::thread::sleep(key_at.saturating_duration_since(Instant::now()));
                let code = keys[sent % keys.len()];
                if events.send(Input::Key(code, Instant::now())).is_err() {
                    return;
                }
                sent += 1;
            }
            std::thread::sleep(poll_at.saturating_duration_since(Instant::now()));
            if events
                .send(Input::Event(Event::Poll(Message::Update(update))))
                .is_err()
            {
                return;
            }
        }
        let _ = events.send(Input::Done);
    });
    let area = Rect::new(0, 0, 120, 40);
    let mut latencies = Vec::new();
    let mut waiting: Vec<Instant> = Vec::new();
    let mut take_ins = Vec::new();
    'run: while let Ok(first) = inbox.recv() {
        for input in std::iter::once(first).chain(inbox.try_iter()) {
            let event = match input {
                Input::Event(event) => event,
                Input::Key(code, sent) => {
                    waiting.push(sent);
                    Event::Key(KeyEvent::new(code, KeyModifiers::NONE))
                }
                Input::Done => break 'run,
            };
            let poll = matches!(event, Event::Poll(_));
            let start = Instant::now();
            for effect in app.handle(event) {
                if let Effect::OrderRows(job) = effect {
                    orderer.order(job);
                }
            }
            if poll {
                take_ins.push(start.elapsed());
            }
        }
        let mut buffer = Buffer::empty(area);
        app.render(area, &mut buffer);
        let drawn = Instant::now();
        latencies.extend(waiting.drain(..).map(|sent| drawn - sent));
    }
    feeder.join().unwrap();
    KeyRun {
        latencies,
        take_ins,
    }
}

fn percentile(sorted: &[Duration], percent: usize) -> Duration {
    let at = (sorted.len() * percent / 100).min(sorted.len().saturating_sub(1));
    sorted.get(at).copied().unwrap_or_default()
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: i32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_name = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: u64 = fields.get(11).context("utime")?.parse()?;
    let stime: u64 = fields.get(12).context("stime")?.parse()?;
    Ok(utime + stime)
}

/// The binary's CPU use over a lab crowd of 100k sockets, on one tab.
fn cpu_percent(tab: u8) -> Result<f64> {
    let lab = lab::Lab::enter()?;
    let _crowd = lab.crowd(SOCKETS)?;
    let mut terminal = pty::Terminal::spawn(tcpscope_command(&[]), 120, 40)?;
    terminal.wait_for(Duration::from_secs(30), "the counts", |screen| {
        screen.contains("ESTABLISHED")
    })?;
    terminal.send(&[tab])?;
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: sysconf has no preconditions.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let before = cpu_ticks(terminal.pid())?;
    std::thread::sleep(CPU_WINDOW);
    let after = cpu_ticks(terminal.pid())?;
    terminal.send(b"q")?;
    terminal.wait(Duration::from_secs(10))?;
    Ok((after - before) as f64 / ticks_per_second / CPU_WINDOW.as_secs_f64() * 100.0)
}

fn main() -> ExitCode {
    let release = !cfg!(debug_assertions);
    let limit = if release {
        FRAME_TARGET
    } else {
        DEBUG_FRAME_LIMIT
    };
    let mut failed = false;
    for (tab, time) in frames() {
        println!("frame, {tab} tab, 120x40, {SOCKETS} sockets: median {time:?}");
        if time >= limit {
            println!("  FAILED: limit {limit:?}");
            failed = true;
        }
    }
    println!(
        "taking in a poll of {SOCKETS} sockets with a finding up, the detail pane open and a cgroup: filter (rows ordered elsewhere): median {:?}",
        busy_take_ins()
    );
    let run = key_latencies(if release { KEY_RUN_POLLS } else { 4 });
    let mut latencies = run.latencies;
    latencies.sort();
    let p99 = percentile(&latencies, 99);
    println!(
        "key latency, {SOCKETS} sockets, a poll every {POLL_EVERY:?}, {} keys: p50 {:?}, p99 {p99:?}, max {:?}",
        latencies.len(),
        percentile(&latencies, 50),
        latencies.last().copied().unwrap_or_default(),
    );
    let mut take_ins = run.take_ins;
    take_ins.sort();
    println!(
        "  taking in a poll on the view's thread (rows ordered elsewhere): median {:?}, longest {:?}",
        percentile(&take_ins, 50),
        take_ins.last().copied().unwrap_or_default(),
    );
    if release && p99 > KEY_P99_TARGET {
        println!("  FAILED: limit p99 {KEY_P99_TARGET:?}");
        failed = true;
    }
    if release {
        for (name, key) in [("overview", b'1'), ("connections", b'2')] {
            match cpu_percent(key) {
                Ok(percent) => {
                    println!(
                        "CPU, {name} tab, 1 s interval, {SOCKETS} sockets: {percent:.1}% of one core"
                    );
                    if percent > CPU_TARGET_PERCENT {
                        println!("  FAILED: limit {CPU_TARGET_PERCENT}%");
                        failed = true;
                    }
                }
                Err(error) => {
                    println!("CPU measurement failed: {error:#}");
                    failed = true;
                }
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
