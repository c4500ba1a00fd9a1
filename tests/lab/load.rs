//! Load: tcpscope at 200,000 sockets, and under a flood of 50,000 forged SYNs a second,
//! in a lab namespace. `--watch` must keep its interval, the interactive view must keep
//! drawing and answering keys, memory must stay proportionate (the figures print as
//! bytes per socket), and a flood must not make a poll queue behind another: a slow
//! poll is reported, and the next starts when it ends.
//!
//! These take minutes and hundreds of megabytes of kernel memory, so they are ignored
//! by `cargo test`. Run them in a release build:
//!
//! ```sh
//! cargo test --release --test lab -- --ignored --nocapture --test-threads 1 load::
//! ```

use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use serde_json::Value;

use crate::support::lab::{Lab, SETTLE, Syncookies, TcpState};
use crate::support::pty::Terminal;
use crate::support::stream::{Line, Stream};
use crate::support::tcpscope_command;
use crate::support::usage::{Sample, median, sample};

const ESTABLISHED: usize = 140_000;
const TIME_WAIT: usize = 40_000;
const SYN_RECV: usize = 20_000;
const SOCKETS: usize = ESTABLISHED + TIME_WAIT + SYN_RECV;
const INTERVAL: Duration = Duration::from_secs(1);
/// How long each mode is watched at full load. TIME_WAIT sockets last 60 s, so both
/// runs must fit in that after the crowd is built.
const MEASURE: Duration = Duration::from_secs(15);

/// Starts `tcpscope --watch --json` and waits for its first poll, before anything is
/// measured. Its lines are stamped with the moment they arrive.
fn start_watch(interval: Duration) -> Result<Stream> {
    let interval = format!("{}ms", interval.as_millis());
    let mut watch = Stream::watch(&["--interval", &interval])?;
    watch.wait_for("the first poll", Duration::from_secs(30), |line| {
        line["type"] == "counts"
    })?;
    Ok(watch)
}

fn stop_watch(mut watch: Stream) -> Result<()> {
    let status = watch.stop(libc::SIGTERM)?;
    ensure!(status.success(), "tcpscope --watch ended with {status}");
    Ok(())
}

/// What a stretch of `--watch` output says about keeping up.
#[derive(Debug)]
struct Pace {
    polls: usize,
    /// The longest time between two `counts` lines arriving.
    longest_gap: Duration,
    /// From a poll's start (`at`) to its `counts` line arriving: the poll's cost.
    median_poll: Duration,
    longest_poll: Duration,
    slow_polls: usize,
    most: Value,
}

fn pace(lines: &[Line]) -> Pace {
    let counts: Vec<_> = lines
        .iter()
        .filter(|line| line.value["type"] == "counts")
        .collect();
    let longest_gap = counts
        .windows(2)
        .map(|pair| pair[1].arrived - pair[0].arrived)
        .max()
        .unwrap_or_default();
    let mut polls: Vec<u64> = counts
        .iter()
        .filter_map(|line| {
            let at = humantime::parse_rfc3339(line.value["at"].as_str()?).ok()?;
            let took = line.arrived_wall.duration_since(at).ok()?;
            u64::try_from(took.as_micros()).ok()
        })
        .collect();
    polls.sort_unstable();
    Pace {
        polls: counts.len(),
        longest_gap,
        median_poll: Duration::from_micros(median(&polls)),
        longest_poll: Duration::from_micros(polls.last().copied().unwrap_or(0)),
        slow_polls: lines
            .iter()
            .filter(|line| line.value["type"] == "slow_poll")
            .count(),
        most: counts
            .last()
            .map(|line| line.value["counts"].clone())
            .unwrap_or_default(),
    }
}

/// Runs `--watch` for `duration` and returns its pace and its resident memory.
fn measure_watch(duration: Duration) -> Result<(Pace, Sample)> {
    let mut watch = start_watch(INTERVAL)?;
    let pace = pace(watch.collect(duration)?);
    let used = sample(u32::try_from(watch.pid())?)?;
    stop_watch(watch)?;
    Ok((pace, used))
}

/// What a stretch of the interactive view says about keeping up.
#[derive(Debug)]
struct Drawing {
    /// Screen changes seen (each poll changes the counts and the poll time).
    changes: usize,
    longest_gap: Duration,
    /// The poll times the status line showed.
    polls: Vec<String>,
    /// From pressing `2` to the connections tab on screen, and back with `1`.
    key_answers: Vec<Duration>,
}

/// The view's status line is drawn: it is up and has had its first poll.
fn view_is_up(screen: &str) -> bool {
    screen.contains("ESTABLISHED") && screen.contains("q quit")
}

/// The poll time on the status line: `poll 85ms`.
fn poll_time(screen: &str) -> Option<String> {
    let at = screen.find("  poll ")?;
    screen[at + 7..]
        .split_whitespace()
        .next()
        .map(str::to_owned)
}

/// Presses `key` and returns how long until the screen shows `shown` and no longer
/// `gone`.
fn press(terminal: &mut Terminal, key: &[u8], shown: &str, gone: &str) -> Result<Duration> {
    let pressed = Instant::now();
    terminal.send(key)?;
    loop {
        let screen = terminal.contents();
        if screen.contains(shown) && !screen.contains(gone) {
            return Ok(pressed.elapsed());
        }
        ensure!(
            pressed.elapsed() < Duration::from_secs(10),
            "{shown:?} did not appear:\n{screen}"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// Runs the view for `duration` in a 120x40 terminal, while `churn` keeps the counts
/// moving, and returns how it kept up and its resident memory.
fn measure_view(duration: Duration, churn: &mut dyn FnMut()) -> Result<(Drawing, Sample)> {
    let mut command = tcpscope_command(&[]);
    command.args(["--interval", &format!("{}ms", INTERVAL.as_millis())]);
    let mut terminal = Terminal::spawn(command, 120, 40)?;
    terminal.wait_for(Duration::from_secs(30), "the view", view_is_up)?;

    let mut drawing = Drawing {
        changes: 0,
        longest_gap: Duration::ZERO,
        polls: Vec::new(),
        key_answers: Vec::new(),
    };
    let started = Instant::now();
    let mut last_screen = terminal.contents();
    let mut last_change = Instant::now();
    let mut pressed = false;
    while started.elapsed() < duration {
        churn();
        thread::sleep(Duration::from_millis(50));
        if !pressed && started.elapsed() > duration / 2 {
            pressed = true;
            drawing.key_answers.push(press(
                &mut terminal,
                b"2",
                "┌ Connections",
                "┌ SYN_RECV watch",
            )?);
            drawing.key_answers.push(press(
                &mut terminal,
                b"1",
                "┌ SYN_RECV watch",
                "┌ Connections",
            )?);
            last_change = Instant::now();
            last_screen = terminal.contents();
            continue;
        }
        let screen = terminal.contents();
        if screen != last_screen {
            drawing.changes += 1;
            drawing.longest_gap = drawing.longest_gap.max(last_change.elapsed());
            last_change = Instant::now();
            if let Some(poll) = poll_time(&screen) {
                drawing.polls.push(poll);
            }
            last_screen = screen;
        }
    }
    drawing.longest_gap = drawing.longest_gap.max(last_change.elapsed());
    let used = sample(u32::try_from(terminal.pid())?)?;
    terminal.send(b"q")?;
    let status = terminal.wait(Duration::from_secs(10))?;
    ensure!(status.success(), "the view ended with {status}");
    Ok((drawing, used))
}

/// A duration to the millisecond, for the figures.
fn ms(duration: Duration) -> Duration {
    Duration::from_millis(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

fn bytes_per_socket(empty: &Sample, loaded: &Sample) -> f64 {
    loaded.rss_kib.saturating_sub(empty.rss_kib) as f64 * 1024.0 / SOCKETS as f64
}

#[test]
#[ignore = "minutes at 200,000 sockets: cargo test --release --test lab -- --ignored load::"]
fn at_200k_sockets_watch_and_the_view_keep_their_interval() -> Result<()> {
    let lab = Lab::enter()?;
    // Half-open connections must outlive the run: more SYN+ACK retries keep them.
    lab.set_sysctl("net.ipv4.tcp_synack_retries", 8)?;

    // The same programs with (almost) nothing to see, for the memory baseline.
    let (_, watch_empty) = measure_watch(Duration::from_secs(3))?;
    let (_, view_empty) = measure_view(Duration::from_secs(3), &mut || {})?;

    let built = Instant::now();
    let _crowd = lab.crowd(ESTABLISHED)?;
    let listener = lab.listener_v4()?;
    let _half_open = lab.syn_flood(listener.addr_v4()?, SYN_RECV, 1)?;
    lab.wait_for_count(TcpState::SynRecv, SYN_RECV, SETTLE)?;
    let _time_wait = lab.time_wait_crowd(TIME_WAIT)?;
    let built = built.elapsed();
    let total = lab.ss_tanh()?.len();
    ensure!(total >= SOCKETS, "the lab holds {total} sockets");

    let (watch, watch_loaded) = measure_watch(MEASURE)?;
    // One connection opened and closed every 50 ms, so that every poll changes the
    // counts the view shows.
    let churn_listener = std::net::TcpListener::bind("127.0.0.1:7500")?;
    churn_listener.set_nonblocking(true)?;
    let mut churn = || {
        if let Ok(client) = TcpStream::connect("127.0.0.1:7500") {
            while let Ok((server, _)) = churn_listener.accept() {
                drop(server);
            }
            drop(client);
        }
    };
    let (view, view_loaded) = measure_view(MEASURE, &mut churn)?;

    println!(
        "load: {total} sockets ({ESTABLISHED} ESTABLISHED in child processes, {SYN_RECV} SYN_RECV, {TIME_WAIT} TIME_WAIT) built in {built:.1?}"
    );
    println!(
        "load: --watch --interval 1s: {} polls in {MEASURE:?}, longest gap {:?}, poll median {:?} longest {:?}, {} slow; RSS {} KiB ({} KiB empty, peak {} KiB): {:.0} bytes per socket; last counts {}",
        watch.polls,
        ms(watch.longest_gap),
        ms(watch.median_poll),
        ms(watch.longest_poll),
        watch.slow_polls,
        watch_loaded.rss_kib,
        watch_empty.rss_kib,
        watch_loaded.peak_kib,
        bytes_per_socket(&watch_empty, &watch_loaded),
        watch.most
    );
    println!(
        "load: view --interval 1s: {} screen changes in {MEASURE:?}, longest gap {:?}, polls shown {:?}, keys answered in {:?}; RSS {} KiB ({} KiB empty, peak {} KiB): {:.0} bytes per socket",
        view.changes,
        ms(view.longest_gap),
        view.polls,
        view.key_answers.iter().copied().map(ms).collect::<Vec<_>>(),
        view_loaded.rss_kib,
        view_empty.rss_kib,
        view_loaded.peak_kib,
        bytes_per_socket(&view_empty, &view_loaded),
    );

    let expected_polls = (MEASURE.as_secs_f64() / INTERVAL.as_secs_f64()) as usize;
    ensure!(
        watch.polls + 1 >= expected_polls,
        "--watch printed {} polls in {MEASURE:?} at a {INTERVAL:?} interval",
        watch.polls
    );
    ensure!(
        watch.longest_gap <= 2 * INTERVAL,
        "--watch fell behind: {:?} between two polls",
        watch.longest_gap
    );
    ensure!(
        view.longest_gap <= 2 * INTERVAL,
        "the view stopped drawing for {:?}",
        view.longest_gap
    );
    ensure!(
        view.key_answers.iter().all(|took| *took < INTERVAL),
        "keys took {:?}",
        view.key_answers
    );
    for (mode, empty, loaded) in [
        ("--watch", &watch_empty, &watch_loaded),
        ("the view", &view_empty, &view_loaded),
    ] {
        let per_socket = bytes_per_socket(empty, loaded);
        ensure!(
            per_socket < 2048.0,
            "{mode} holds {per_socket:.0} bytes per socket"
        );
    }
    Ok(())
}

/// SYNs per batch, and batches per second: 50,000 SYNs a second.
const SYNS_PER_BATCH: usize = 500;
const BATCH_EVERY: Duration = Duration::from_millis(10);
const FLOOD_FOR: Duration = Duration::from_secs(10);

#[test]
#[ignore = "a 10 s flood of 500,000 SYNs: cargo test --release --test lab -- --ignored load::"]
fn a_flood_of_50k_syns_a_second_does_not_make_watch_fall_behind() -> Result<()> {
    let lab = Lab::enter()?;
    // The kernel's default: cookies once a listener's SYN queue is full.
    lab.set_syncookies(Syncookies::OnOverflow)?;
    let listener = lab.listener_v4()?;
    let target = listener.addr_v4()?;
    let mut watch = start_watch(INTERVAL)?;

    let started = Instant::now();
    let mut sent = 0;
    let mut batch = 0u64;
    while started.elapsed() < FLOOD_FOR {
        let due = started + BATCH_EVERY * u32::try_from(batch)?;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        sent += lab
            .syn_flood(target, SYNS_PER_BATCH, 1000 + batch)?
            .sources
            .len();
        batch += 1;
    }
    let flooded = started.elapsed();
    let during = watch.collect(2 * INTERVAL)?;
    let pace = pace(during);
    let most_half_open = during
        .iter()
        .filter_map(|line| line.value["counts"]["SYN_RECV"].as_u64())
        .max()
        .unwrap_or(0);
    let used = sample(u32::try_from(watch.pid())?)?;
    stop_watch(watch)?;
    let rate = sent as f64 / flooded.as_secs_f64();

    println!(
        "flood: {sent} forged SYNs in {flooded:.1?} ({rate:.0}/s) at one listener, syncookies on overflow; --watch --interval 1s: {} polls, longest gap {:?}, poll median {:?} longest {:?}, {} slow; SYN_RECV up to {most_half_open}; RSS {} KiB",
        pace.polls,
        ms(pace.longest_gap),
        ms(pace.median_poll),
        ms(pace.longest_poll),
        pace.slow_polls,
        used.rss_kib,
    );
    ensure!(rate > 45_000.0, "the flood ran at only {rate:.0} SYNs/s");
    ensure!(
        pace.longest_gap <= 2 * INTERVAL,
        "--watch fell behind: {:?} between two polls",
        pace.longest_gap
    );
    Ok(())
}
