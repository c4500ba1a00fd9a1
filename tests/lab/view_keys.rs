//! Key latency of the interactive view at a million sockets, through a real terminal:
//! while polls of 1,000,000 ESTABLISHED sockets are taken in every second, keys that
//! switch tabs and reverse the connections table's sort must each be answered (the
//! frame showing their effect) within 50 ms at the 99th percentile.
//!
//! Ignored by `cargo test`: the crowd takes minutes and gigabytes of kernel memory.
//! Run it in a release build; `TCPSCOPE_LAB_SOCKETS` sets another size (an even
//! number), for a quicker run:
//!
//! ```sh
//! cargo test --release --test lab -- --ignored --nocapture view_keys::
//! ```

use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::support::lab::Lab;
use crate::support::pty::Terminal;
use crate::support::tcpscope_command;

const SOCKETS: usize = 1_000_000;
/// How long keys are sent for, after the view is up and showing the crowd.
const MEASURE: Duration = Duration::from_secs(60);
/// The pause after a key is answered, before the next one.
const BETWEEN_KEYS: Duration = Duration::from_millis(40);
const P99_TARGET: Duration = Duration::from_millis(50);

/// Each key with what the screen shows once it is answered, and what it no longer
/// shows: tab switches and reversing the sort (which reorders every row, off the
/// view's thread; the header's arrow answers at once).
const KEYS: [(&[u8], &str, &str); 6] = [
    (b"2", "┌ Connections", "┌ SYN_RECV watch"),
    (b"r", "State▼", "State▲"),
    (b"3", "┌ Plot", "┌ Connections"),
    (b"2", "┌ Connections", "┌ Plot"),
    (b"r", "State▲", "State▼"),
    (b"1", "┌ SYN_RECV watch", "┌ Connections"),
];

fn sockets() -> Result<usize> {
    match std::env::var("TCPSCOPE_LAB_SOCKETS") {
        Ok(text) => text.parse().context("TCPSCOPE_LAB_SOCKETS"),
        Err(_) => Ok(SOCKETS),
    }
}

/// How long `key` took to show `shown` (and no longer `gone`), polling the screen
/// every millisecond.
fn answer(terminal: &mut Terminal, key: &[u8], shown: &str, gone: &str) -> Result<Duration> {
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

/// The connections table's total, from its title: `┌ Connections 12 of 1000 `.
fn table_total(screen: &str) -> Option<usize> {
    let title = screen.lines().find(|line| line.contains("┌ Connections"))?;
    let mut words = title.split_whitespace().skip_while(|word| *word != "of");
    words.nth(1)?.parse().ok()
}

fn percentile(sorted: &[Duration], percent: usize) -> Duration {
    let at = (sorted.len() * percent / 100).min(sorted.len().saturating_sub(1));
    sorted.get(at).copied().unwrap_or_default()
}

#[test]
#[ignore = "minutes at 1,000,000 sockets: cargo test --release --test lab -- --ignored --nocapture view_keys::"]
fn at_a_million_sockets_the_view_answers_keys_within_50_ms_at_the_99th_percentile() -> Result<()> {
    let sockets = sockets()?;
    let lab = Lab::enter()?;
    let built = Instant::now();
    let crowd = lab.crowd(sockets)?;
    println!(
        "crowd of {} sockets built in {:?}",
        crowd.sockets(),
        built.elapsed()
    );

    let mut terminal = Terminal::spawn(tcpscope_command(&[]), 120, 40)?;
    terminal.wait_for(
        Duration::from_secs(120),
        "the crowd's first poll",
        |screen| screen.contains("ESTABLISHED") && screen.contains("q quit"),
    )?;
    // The first polls may still be finding the whole crowd: wait for a full table.
    terminal.send(b"2")?;
    terminal.wait_for(
        Duration::from_secs(120),
        "every socket in the table",
        |screen| table_total(screen).is_some_and(|total| total >= crowd.sockets()),
    )?;
    terminal.send(b"1")?;
    terminal.wait_for(Duration::from_secs(10), "the overview", |screen| {
        screen.contains("┌ SYN_RECV watch")
    })?;

    let mut latencies = Vec::new();
    let started = Instant::now();
    while started.elapsed() < MEASURE {
        for (key, shown, gone) in KEYS {
            latencies.push(answer(&mut terminal, key, shown, gone)?);
            thread::sleep(BETWEEN_KEYS);
        }
    }
    terminal.send(b"q")?;
    let status = terminal.wait(Duration::from_secs(30))?;
    ensure!(status.success(), "the view ended with {status}");

    latencies.sort();
    let p99 = percentile(&latencies, 99);
    println!(
        "view key latency through a pty, {} sockets, 1 s interval, {} keys: p50 {:?}, p99 {p99:?}, max {:?}",
        crowd.sockets(),
        latencies.len(),
        percentile(&latencies, 50),
        latencies.last().copied().unwrap_or_default(),
    );
    ensure!(
        p99 <= P99_TARGET,
        "p99 key latency {p99:?} is over {P99_TARGET:?}"
    );
    Ok(())
}
