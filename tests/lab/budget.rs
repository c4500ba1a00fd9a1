//! `--max-cpu`: `tcpscope --watch --json` over a crowd of ESTABLISHED sockets with a
//! budget too small for a full dump every interval. The `counts` lines must say that
//! full dumps are spaced out (`interval_ms` above the interval), while a new listener
//! and a SYN flood on it still show in the first poll taken after them, from the fast
//! lane; a connection closed right after a full dump must be reported at the next
//! tick, not at the next full dump; and with no budget (`--max-cpu 0`) every poll must
//! be a full one at the chosen interval.

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::support::lab::{Lab, TcpState};
use crate::support::stream::{Line, Stream};

/// A few thousand sockets: enough that a full dump costs more than 1% of a core at a
/// 100 ms interval in a debug build, few enough to build in a blink.
const CROWD: usize = 4000;
const PATIENCE: Duration = Duration::from_secs(20);
const INTERVAL_MS: u64 = 100;

fn counts_lines(lines: &[Line]) -> Vec<&Value> {
    lines
        .iter()
        .map(|line| &line.value)
        .filter(|value| value["type"] == "counts")
        .collect()
}

fn at(line: &Value) -> Option<SystemTime> {
    humantime::parse_rfc3339(line["at"].as_str()?).ok()
}

fn count(line: &Value, state: &str) -> u64 {
    line["counts"][state].as_u64().unwrap_or(0)
}

#[test]
fn a_small_budget_spaces_full_dumps_out_while_listeners_and_syn_recv_stay_current() -> Result<()> {
    let lab = Lab::enter()?;
    let crowd = lab.crowd(CROWD)?;
    let mut watch = Stream::watch(&["--max-cpu", "1", "--interval", "100ms"])?;
    // The first full dump measures what a full dump costs: from then on the counts
    // lines say how far apart full dumps are.
    let spaced = watch.wait_for(
        "a counts line with full dumps spaced out",
        PATIENCE,
        |line| line["type"] == "counts" && line["interval_ms"].as_u64() > Some(INTERVAL_MS),
    )?;
    ensure!(
        count(&spaced, "ESTABLISHED") >= CROWD as u64,
        "the crowd is in the table: {spaced}"
    );
    watch.wait_for("a poll of the fast lane", PATIENCE, |line| {
        line["type"] == "counts" && line["lane"] == "fast"
    })?;
    // Right after a full dump, so that the next one is a full interval away.
    let full = watch.wait_for("a full dump", PATIENCE, |line| {
        line["type"] == "counts" && line.get("lane").is_none()
    })?;
    let listeners_before = count(&full, "LISTEN");

    // A new listener and a flood on it.
    let listener = lab.listener_v4()?;
    lab.syn_flood(listener.addr_v4()?, 50, 23)?;
    lab.wait_for_count(TcpState::SynRecv, 50, PATIENCE)?;
    let changed = SystemTime::now();

    // The listener shows in the first poll taken after it: the fast lane dumps
    // listeners at every tick.
    let first = watch.wait_for("the first poll after the change", PATIENCE, |line| {
        line["type"] == "counts" && at(line).is_some_and(|at| at >= changed)
    })?;
    ensure!(
        count(&first, "LISTEN") == listeners_before + 1,
        "the first poll after a new listener says: {first}"
    );
    // The flood shows before the next full dump: the SYN_RECV dump joins the fast lane
    // as often as the budget allows.
    let flood = watch.find("the flood", PATIENCE, |line| {
        line["type"] == "counts" && count(line, "SYN_RECV") == 50
    })?;
    ensure!(
        flood["lane"] == "fast" && count(&flood, "ESTABLISHED") >= CROWD as u64,
        "the flood was first seen by a full dump {} ms apart, not the fast lane: {flood}",
        full["interval_ms"]
    );
    let later = counts_lines(watch.collect(Duration::from_millis(1500))?);
    ensure!(
        later.iter().all(|line| count(line, "SYN_RECV") == 50),
        "a later poll lost the flood: {later:?}"
    );
    // Polls still come every interval, though full dumps do not.
    let polls = later.len();
    ensure!(
        polls >= 5,
        "{polls} polls in 1.5 s at a 100 ms interval: {later:?}"
    );
    let status = watch.stop(libc::SIGINT)?;
    ensure!(status.success(), "tcpscope --watch ended with {status}");
    drop(crowd);
    Ok(())
}

#[test]
fn without_a_budget_every_poll_is_a_full_dump_at_the_chosen_interval() -> Result<()> {
    let lab = Lab::enter()?;
    let crowd = lab.crowd(CROWD / 2)?;
    let mut watch = Stream::watch(&["--max-cpu", "0", "--interval", "100ms"])?;
    watch.wait_for("the first counts line", PATIENCE, |line| {
        line["type"] == "counts"
    })?;
    let lines = counts_lines(watch.collect(Duration::from_millis(1500))?);
    ensure!(lines.len() >= 3, "too few polls: {lines:?}");
    for line in &lines {
        let interval = line["interval_ms"]
            .as_u64()
            .with_context(|| format!("no interval_ms: {line}"))?;
        ensure!(
            interval == INTERVAL_MS && line.get("lane").is_none(),
            "with --max-cpu 0 a poll was not a full one every 100 ms: {line}"
        );
    }
    let status = watch.stop(libc::SIGINT)?;
    ensure!(status.success(), "tcpscope --watch ended with {status}");
    drop((crowd, lab));
    Ok(())
}

/// A budget so small that full dumps of the crowd come many ticks apart.
const TINY_BUDGET: &str = "1";
/// How far apart full dumps must be for the test to tell a lane from a full dump.
const SPACED_MS: u64 = 5 * INTERVAL_MS;
/// The ticks that may end after a close without reporting it: the one being taken as
/// it happened, and the next when its destroy event came late. Counted in ticks, not
/// milliseconds, so that a machine too busy to keep the interval does not fail it.
const PROMPT_TICKS: usize = 2;

#[test]
fn a_connection_closed_between_spaced_out_full_dumps_is_reported_at_the_next_tick() -> Result<()> {
    let lab = Lab::enter()?;
    let crowd = lab.crowd(CROWD)?;
    let listener = TcpListener::bind("127.0.0.1:7310")?;
    let client = TcpStream::connect(listener.local_addr()?)?;
    let (server, _) = listener.accept()?;
    let client_port = u64::from(client.local_addr()?.port());
    let mut watch = Stream::watch(&["--max-cpu", TINY_BUDGET, "--interval", "100ms"])?;
    let spaced = watch.wait_for("full dumps spaced out", PATIENCE, |line| {
        line["type"] == "counts" && line["interval_ms"].as_u64() >= Some(SPACED_MS)
    })?;
    // Right after a full dump, so that the next one is many ticks away.
    watch.wait_for("a full dump", PATIENCE, |line| {
        line["type"] == "counts" && line.get("lane").is_none()
    })?;
    // An active close on the client (its socket leaves a TIME_WAIT remnant) and a
    // passive one on the server (nothing left).
    drop(client);
    drop(server);
    let closed_at = Instant::now();

    let is_server = |line: &Value| {
        line["type"] == "transition"
            && line["local_port"] == 7310
            && line["remote_port"] == client_port
    };
    let is_client = |line: &Value| {
        line["type"] == "transition"
            && line["local_port"] == client_port
            && line["remote_port"] == 7310
    };
    let server_line = watch.find("the server's close", PATIENCE, is_server)?;
    let client_line = watch.find("the client's change to TIME_WAIT", PATIENCE, is_client)?;
    ensure!(
        server_line["kind"] == "closed",
        "the server's end closed with nothing left: {server_line}"
    );
    ensure!(
        client_line["kind"] == "changed" && client_line["to"] == "TIME_WAIT",
        "the client's end lives on as a TIME_WAIT remnant: {client_line}"
    );
    // Both came at the next tick or the one after, before the next full dump.
    let seen = watch.seen();
    let after_close = |line: &&Line| line.arrived >= closed_at;
    for wanted in [&is_server as &dyn Fn(&Value) -> bool, &is_client] {
        let (at, line) = seen
            .iter()
            .enumerate()
            .find(|(_, line)| wanted(&line.value))
            .context("a line found above")?;
        let late = line.arrived.saturating_duration_since(closed_at);
        let ticks_before = seen[..at]
            .iter()
            .filter(after_close)
            .filter(|line| line.value["type"] == "counts")
            .count();
        ensure!(
            ticks_before <= PROMPT_TICKS,
            "reported {late:?} after the close, after {ticks_before} ticks, with full dumps \
             {} ms apart: {}",
            spaced["interval_ms"],
            line.value
        );
        let full_before = seen[..at]
            .iter()
            .filter(after_close)
            .find(|line| line.value["type"] == "counts" && line.value.get("lane").is_none());
        ensure!(
            full_before.is_none(),
            "a full dump came before the close was reported: {:?}",
            full_before.map(|line| &line.value)
        );
    }
    // The next full dump reports nothing more of the connection.
    watch.wait_for("the next full dump", PATIENCE, |line| {
        line["type"] == "counts" && line.get("lane").is_none()
    })?;
    let twice = watch
        .seen()
        .iter()
        .filter(|line| is_server(&line.value) || is_client(&line.value))
        .count();
    ensure!(twice == 2, "the connection was reported {twice} times");
    let status = watch.stop(libc::SIGINT)?;
    ensure!(status.success(), "tcpscope --watch ended with {status}");
    drop((crowd, lab));
    Ok(())
}
