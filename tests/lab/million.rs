//! A million sockets: 1,000,000 ESTABLISHED sockets held by child processes (fewer
//! than 20,000 descriptors each) plus 10,000 SYN_RECV request sockets, in a lab
//! namespace. It measures side by side, in one run, and prints as one table:
//!
//! - the reference, a bare kernel dump: the sock_diag request sent on a netlink socket
//!   of its own, and the reply received and only counted, message header by message
//!   header, never parsed (`support::dump::bare_dump`, which `bench_snapshot` shares);
//! - a dump into records with no analysis, and the LISTEN-only and SYN_RECV-only dumps
//!   that the fast lane takes between full dumps;
//! - `--json`: its time as a multiple of the bare dump (target ≤ 1.15×; each of three
//!   runs against the bare dumps just before and after it) and its peak resident memory,
//!   the whole process's (target ≤ 100 bytes a socket); `--grep SYN_RECV`;
//! - each live mode at the default settings (1 s interval, `--max-cpu 20`) over 60 s:
//!   `--watch --json`, `--serve` (scraped every 15 s, each scrape timed) and the
//!   interactive view through a pseudo-terminal. For each: its CPU share (target ≤ the
//!   budget, 20% of a core), its resident bytes a socket at the end (targets 160 for
//!   `--watch` and `--serve`, 250 for the view), how often its counts and SYN watch
//!   were refreshed, and how often full dumps came. Refreshes are what each mode
//!   shows a user: `counts` lines for `--watch` (`interval_ms` says how far apart the
//!   full dumps are, `"lane":"fast"` marks the polls between them);
//!   `tcpscope_polls_total` and `tcpscope_poll_interval_seconds` for `--serve`; for
//!   the view, the poll time on its status line (`poll 38ms`), sampled every 50 ms and
//!   counted each time it changes: a lower bound, since two polls that took the same
//!   milliseconds look alike. The view also says how old its SYN_RECV data is when a
//!   fast-lane poll left it out (`(SYN_RECV 2.0s ago)`): the oldest seen is reported.
//!   The view's key latency at a million sockets is measured on its own, in
//!   `view_keys::`.
//!
//! Minutes and gigabytes of kernel memory, so it is ignored by `cargo test`. Run it in
//! a release build, alone:
//!
//! ```sh
//! cargo test --release --test lab -- --ignored --nocapture --test-threads 1 million::
//! ```
//!
//! `TCPSCOPE_LAB_SOCKETS` (default 1000000) and `TCPSCOPE_LAB_SECONDS` (default 60) make
//! the crowd and the live runs smaller, to try the test itself. In a debug build the
//! figures are printed and no target is held.

use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use tcpscope::filter::Filter;
use tcpscope::kernel::sockdiag::{DumpRequest, SockDiag};
use tcpscope::tcp::{State, StateSet};

use crate::support::dump::bare_dump;
use crate::support::lab::{Lab, TcpState};
use crate::support::pty::Terminal;
use crate::support::scrape::Server;
use crate::support::stream::Stream;
use crate::support::tcpscope_command;
use crate::support::usage::{cpu_time, sample};

const HALF_OPEN: usize = 10_000;
/// `--max-cpu`'s default, as a share of one core.
const BUDGET: f64 = 0.20;
const JSON_TARGET: f64 = 1.15;
const JSON_BYTES_TARGET: u64 = 100;
const WATCH_BYTES_TARGET: u64 = 160;
const VIEW_BYTES_TARGET: u64 = 250;
const SCRAPE_EVERY: Duration = Duration::from_secs(15);

fn setting(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(value) => value.parse().with_context(|| format!("{name}={value}")),
        Err(_) => Ok(default),
    }
}

#[test]
#[ignore = "minutes and gigabytes: run alone, in a release build"]
fn at_a_million_sockets_json_stays_near_a_bare_dump_and_every_live_mode_within_its_budget()
-> Result<()> {
    let sockets = usize::try_from(setting("TCPSCOPE_LAB_SOCKETS", 1_000_000)?)? & !1;
    let seconds = setting("TCPSCOPE_LAB_SECONDS", 60)?;
    let lab = Lab::enter()?;
    let built = Instant::now();
    let crowd = lab.crowd(sockets)?;
    ensure!(crowd.sockets() == sockets, "the crowd is short");
    let listener = lab.listener_v4()?;
    lab.syn_flood(listener.addr_v4()?, HALF_OPEN, 7)?;
    lab.wait_for_count(TcpState::SynRecv, HALF_OPEN, Duration::from_secs(60))?;
    let total = sockets + HALF_OPEN;
    println!(
        "million: {sockets} ESTABLISHED in {} holders + {HALF_OPEN} SYN_RECV, built in {:.1} s",
        crowd.holders().len(),
        built.elapsed().as_secs_f64()
    );

    let mut table = Table::default();
    let measured = one_shots()?;
    ensure!(
        measured.messages >= total,
        "the bare dump counted {} sockets of {total}",
        measured.messages
    );
    table.row(
        "bare kernel dump (reference)",
        format!(
            "{:.0} ms, {} messages counted",
            ms(measured.bare),
            measured.messages
        ),
        "",
    );
    table.row(
        "dump into records",
        format!(
            "{:.0} ms = {:.2}x the bare dump",
            ms(measured.records),
            measured.records_ratio
        ),
        "",
    );
    table.row(
        "LISTEN-only dump",
        format!("{:.2} ms", ms(measured.listen)),
        "",
    );
    table.row(
        "SYN_RECV-only dump",
        format!("{:.0} ms", ms(measured.syn_recv)),
        "",
    );
    table.held(
        "--json",
        format!(
            "{:.0} ms = {:.2}x the bare dump",
            ms(measured.json),
            measured.json_ratio
        ),
        format!("<= {JSON_TARGET}x"),
        measured.json_ratio <= JSON_TARGET,
    );
    let json_bytes = measured.json_peak_kib * 1024 / total as u64;
    table.held(
        "--json peak resident",
        format!(
            "{} MiB, {json_bytes} bytes a socket",
            measured.json_peak_kib / 1024
        ),
        format!("<= {JSON_BYTES_TARGET} B"),
        json_bytes <= JSON_BYTES_TARGET,
    );
    let (grep, _) = one_shot(&["--grep", "SYN_RECV"])?;
    table.row("--grep SYN_RECV", format!("{:.0} ms", ms(grep)), "");

    let run = Duration::from_secs(seconds);
    let live = [
        (watch(run, total)?, WATCH_BYTES_TARGET),
        (serve(run, total)?, WATCH_BYTES_TARGET),
        (view(run, total)?, VIEW_BYTES_TARGET),
    ];
    for (mode, bytes_target) in &live {
        table.held(
            &format!("{}: CPU", mode.name),
            format!(
                "{:.1}% of a core over {:.0} s",
                mode.share * 100.0,
                mode.wall.as_secs_f64()
            ),
            format!("<= {:.0}%", BUDGET * 100.0),
            mode.share <= BUDGET,
        );
        table.held(
            &format!("{}: resident", mode.name),
            format!(
                "{} MiB, {} bytes a socket",
                mode.resident_kib / 1024,
                mode.bytes_a_socket
            ),
            format!("<= {bytes_target} B"),
            mode.bytes_a_socket <= *bytes_target,
        );
        table.held(
            &format!("{}: counts, SYN watch", mode.name),
            mode.refreshed.clone(),
            "~1 a second".to_owned(),
            mode.refreshes >= seconds * 8 / 10,
        );
        table.row(&format!("{}: full dumps", mode.name), mode.full.clone(), "");
        if let Some(extra) = &mode.extra {
            table.row(&format!("{}: {}", mode.name, extra.0), extra.1.clone(), "");
        }
    }
    table.print();
    drop(crowd);
    if cfg!(debug_assertions) {
        println!("  debug build: figures only; run with --release to hold the targets");
        return Ok(());
    }
    ensure!(
        table.missed.is_empty(),
        "missed: {}",
        table.missed.join("; ")
    );
    Ok(())
}

/// One row a line: what was measured, the figure, the target and whether it was met.
#[derive(Default)]
struct Table {
    rows: Vec<[String; 4]>,
    missed: Vec<String>,
}

impl Table {
    fn row(&mut self, what: &str, result: String, target: &str) {
        self.rows
            .push([what.to_owned(), result, target.to_owned(), String::new()]);
    }

    fn held(&mut self, what: &str, result: String, target: String, met: bool) {
        if !met {
            self.missed.push(format!("{what}: {result} ({target})"));
        }
        let verdict = if met { "met" } else { "MISSED" };
        self.rows
            .push([what.to_owned(), result, target, verdict.to_owned()]);
    }

    fn print(&self) {
        let width = |column: usize| {
            self.rows
                .iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        };
        let (what, result, target) = (width(0), width(1), width(2));
        for row in &self.rows {
            let line = format!(
                "  {:what$}  {:result$}  {:target$}  {}",
                row[0], row[1], row[2], row[3]
            );
            println!("{}", line.trim_end());
        }
    }
}

/// What one live mode cost and how fresh it kept its data.
struct Live {
    name: &'static str,
    share: f64,
    wall: Duration,
    resident_kib: u64,
    bytes_a_socket: u64,
    refreshes: u64,
    refreshed: String,
    full: String,
    /// A figure of this mode's own: what and how much.
    extra: Option<(&'static str, String)>,
}

impl Live {
    /// CPU share and memory of `pid`, from `cpu_before` at `started` to now.
    fn measure(
        name: &'static str,
        pid: u32,
        cpu_before: Duration,
        started: Instant,
        total: usize,
    ) -> Result<Live> {
        let (cpu, wall) = (cpu_time(pid)? - cpu_before, started.elapsed());
        let resident_kib = sample(pid)?.rss_kib;
        Ok(Live {
            name,
            share: cpu.as_secs_f64() / wall.as_secs_f64(),
            wall,
            resident_kib,
            bytes_a_socket: resident_kib * 1024 / total as u64,
            refreshes: 0,
            refreshed: String::new(),
            full: String::new(),
            extra: None,
        })
    }
}

/// `--watch --json` at the defaults: its `counts` lines.
fn watch(run: Duration, total: usize) -> Result<Live> {
    let mut watch = Stream::watch(&[])?;
    watch.wait_for("the first poll", Duration::from_secs(120), |line| {
        line["type"] == "counts"
    })?;
    let pid = u32::try_from(watch.pid())?;
    let (cpu_before, started) = (cpu_time(pid)?, Instant::now());
    let lines = watch.collect(run)?;
    let mut live = Live::measure("--watch", pid, cpu_before, started, total)?;
    let counts: Vec<_> = lines
        .iter()
        .map(|line| line.value.clone())
        .filter(|value| value["type"] == "counts")
        .collect();
    let full = counts
        .iter()
        .filter(|line| line.get("lane").is_none())
        .count();
    let full_every = counts
        .last()
        .and_then(|line| line["interval_ms"].as_u64())
        .unwrap_or(0);
    live.refreshes = counts.len() as u64;
    live.refreshed = format!(
        "{} counts lines in {:.0} s",
        counts.len(),
        live.wall.as_secs_f64()
    );
    live.full = format!("{full} full (every {:.1} s)", full_every as f64 / 1000.0);
    let status = watch.stop(libc::SIGTERM)?;
    ensure!(status.success(), "tcpscope --watch ended with {status}");
    Ok(live)
}

/// `--serve` at the defaults, scraped every 15 s like a Prometheus would.
fn serve(run: Duration, total: usize) -> Result<Live> {
    let server = Server::start("127.0.0.1:0", &[])?;
    let pid = server.pid();
    let first = server.wait_for("the first poll", |metrics| {
        metrics.value("tcpscope_polls_total", &[]).is_some()
    })?;
    let polls_before = first.value("tcpscope_polls_total", &[]).unwrap_or(0.0);
    let (cpu_before, started) = (cpu_time(pid)?, Instant::now());
    let mut scrapes = Vec::new();
    let mut last = first;
    while started.elapsed() < run {
        thread::sleep(SCRAPE_EVERY.min(run.saturating_sub(started.elapsed())));
        let scraped = Instant::now();
        last = server.scrape()?;
        scrapes.push(scraped.elapsed());
    }
    let mut live = Live::measure("--serve", pid, cpu_before, started, total)?;
    let polls = last.value("tcpscope_polls_total", &[]).unwrap_or(0.0) - polls_before;
    let full_every = last
        .value("tcpscope_poll_interval_seconds", &[])
        .unwrap_or(0.0);
    live.refreshes = polls as u64;
    live.refreshed = format!("{polls:.0} polls in {:.0} s", live.wall.as_secs_f64());
    live.full = format!("every {full_every:.1} s (tcpscope_poll_interval_seconds)");
    scrapes.sort();
    live.extra = Some((
        "scrape",
        format!(
            "{} scrapes: median {:.1} ms, slowest {:.1} ms",
            scrapes.len(),
            ms(scrapes.get(scrapes.len() / 2).copied().unwrap_or_default()),
            ms(scrapes.last().copied().unwrap_or_default()),
        ),
    ));
    let (status, _) = server.terminate()?;
    ensure!(status.success(), "tcpscope --serve ended with {status}");
    Ok(live)
}

/// The interactive view at the defaults, through a pseudo-terminal, on its overview.
fn view(run: Duration, total: usize) -> Result<Live> {
    let mut terminal = Terminal::spawn(tcpscope_command(&[]), 120, 40)?;
    terminal.wait_for(
        Duration::from_secs(120),
        "the crowd's first poll",
        |screen| screen.contains("ESTABLISHED") && poll_took(screen).is_some(),
    )?;
    let pid = u32::try_from(terminal.pid())?;
    let (cpu_before, started) = (cpu_time(pid)?, Instant::now());
    let mut changes = 0u64;
    let mut last = poll_took(&terminal.contents());
    let mut oldest_syn_recv = None;
    let mut oldest_age = 0.0;
    let mut full_every = String::from("every interval");
    while started.elapsed() < run {
        thread::sleep(Duration::from_millis(50));
        let screen = terminal.contents();
        let took = poll_took(&screen);
        if took.is_some() && took != last {
            changes += 1;
            last = took;
        }
        if let Some(age) = after(&screen, "(SYN_RECV ", " ago)")
            && let Some(seconds) = seconds_of(&age)
            && seconds > oldest_age
        {
            oldest_age = seconds;
            oldest_syn_recv = Some(age);
        }
        if let Some(every) = after(&screen, "full every ", " ") {
            full_every = format!("every {every}");
        }
    }
    let mut live = Live::measure("view", pid, cpu_before, started, total)?;
    live.refreshes = changes;
    live.refreshed = format!(
        "at least {changes} polls in {:.0} s; SYN_RECV {}",
        live.wall.as_secs_f64(),
        oldest_syn_recv.map_or("dumped at every poll".to_owned(), |age| format!(
            "at most {age} old"
        )),
    );
    live.full = format!("{full_every} (status line)");
    live.extra = Some(("key latency", "measured in view_keys::".to_owned()));
    terminal.send(b"q")?;
    let status = terminal.wait(Duration::from_secs(30))?;
    ensure!(status.success(), "the view ended with {status}");
    Ok(live)
}

/// The time the latest poll took, as the view's status line says it (`poll 38ms`).
fn poll_took(screen: &str) -> Option<String> {
    let status = screen.lines().rev().find(|line| line.contains("q quit"))?;
    let took = after(status, "  poll ", " ")?;
    (took != "…").then_some(took)
}

/// The text between `start` and the next `end` after it.
fn after(text: &str, start: &str, end: &str) -> Option<String> {
    let rest = &text[text.find(start)? + start.len()..];
    Some(rest[..rest.find(end)?].to_owned())
}

/// Seconds in the view's short form of a duration: `850ms`, `2.0s`, `1m05s`.
fn seconds_of(text: &str) -> Option<f64> {
    if let Some(millis) = text.strip_suffix("ms") {
        return millis.parse::<f64>().ok().map(|millis| millis / 1000.0);
    }
    if let Some((minutes, seconds)) = text.split_once('m') {
        let seconds: f64 = seconds.strip_suffix('s')?.parse().ok()?;
        return Some(minutes.parse::<f64>().ok()? * 60.0 + seconds);
    }
    text.strip_suffix('s')?.parse().ok()
}

/// The one-shot figures, each the median of three rounds.
struct OneShots {
    bare: Duration,
    messages: usize,
    records: Duration,
    /// Each round's dump into records against the bare dumps around it.
    records_ratio: f64,
    listen: Duration,
    syn_recv: Duration,
    json: Duration,
    /// Each round's `--json` against the bare dumps around it.
    json_ratio: f64,
    /// The largest peak resident memory of the three runs, in KiB.
    json_peak_kib: u64,
}

/// Three rounds of: a bare dump, a dump into records, the LISTEN-only and SYN_RECV-only
/// dumps, and `--json`; then one more bare dump. Each dump into records and each
/// `--json` is divided by the mean of the bare dumps before and after its round, so
/// that a machine busier for a while weighs on both sides of the ratio alike.
fn one_shots() -> Result<OneShots> {
    const ROUNDS: usize = 3;
    let mut diag = SockDiag::open()?;
    let filter = Filter::default();
    let only = |state: State| -> StateSet { std::iter::once(state).collect() };
    let mut records = Vec::new();
    let timed = |run: &mut dyn FnMut() -> Result<()>| -> Result<Duration> {
        let start = Instant::now();
        run()?;
        Ok(start.elapsed())
    };
    let mut messages = 0;
    let (mut bare, mut into_records, mut listen, mut syn_recv, mut json) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut json_peak_kib = 0;
    for round in 0..=ROUNDS {
        bare.push(timed(&mut || {
            messages = bare_dump()?;
            Ok(())
        })?);
        if round == ROUNDS {
            break;
        }
        into_records.push(timed(&mut || {
            records.clear();
            Ok(diag.dump_into(&DumpRequest::everything(), &mut records)?)
        })?);
        for (times, state) in [
            (&mut listen, State::Listen),
            (&mut syn_recv, State::SynRecv),
        ] {
            records.clear();
            times.push(timed(&mut || {
                Ok(diag.sockets_in(&filter, only(state), &mut records)?)
            })?);
        }
        let (took, peak_kib) = one_shot(&["--json"])?;
        json.push(took);
        json_peak_kib = json_peak_kib.max(peak_kib);
    }
    let around = |times: &[Duration]| -> f64 {
        let ratios: Vec<f64> = times
            .iter()
            .zip(bare.windows(2))
            .map(|(took, pair)| times_of(*took, (pair[0] + pair[1]) / 2))
            .collect();
        median_f64(ratios)
    };
    Ok(OneShots {
        bare: median(&bare),
        messages,
        records: median(&into_records),
        records_ratio: around(&into_records),
        listen: median(&listen),
        syn_recv: median(&syn_recv),
        json: median(&json),
        json_ratio: around(&json),
        json_peak_kib,
    })
}

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

fn median_f64(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Runs a one-shot mode with its output thrown away: its wall time and peak resident
/// memory in KiB (`ru_maxrss` of the reaped child).
fn one_shot(args: &[&str]) -> Result<(Duration, u64)> {
    let started = Instant::now();
    let child = tcpscope_command(args)
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting tcpscope {args:?}"))?;
    let pid = i32::try_from(child.id())?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 writes the status and rusage through pointers to live locals.
    let reaped = unsafe { libc::wait4(pid, &raw mut status, 0, &raw mut usage) };
    let took = started.elapsed();
    ensure!(reaped == pid, "wait4 on tcpscope {args:?} failed");
    ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) <= 1,
        "tcpscope {args:?} ended with status {status}"
    );
    Ok((took, u64::try_from(usage.ru_maxrss).unwrap_or(0)))
}

fn times_of(duration: Duration, reference: Duration) -> f64 {
    duration.as_secs_f64() / reference.as_secs_f64()
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
