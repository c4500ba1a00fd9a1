//! The interactive view end to end: the real binary in a pseudo-terminal, inside a
//! private network namespace under a SYN flood, its screen read through a terminal
//! emulator. Fails, never skips, without root.

mod lab;
mod pty;

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use lab::{Lab, SETTLE, TcpState};
use pty::Terminal;

const SCREEN_TIMEOUT: Duration = Duration::from_secs(20);
const FLOOD: usize = 300;
const FROM_TWO_HOSTS: usize = 200;

fn tcpscope(columns: u16, rows: u16) -> Result<Terminal> {
    Terminal::spawn(Command::new(env!("CARGO_BIN_EXE_tcpscope")), columns, rows)
}

/// The screen line that mentions `needle`.
fn line_with<'a>(screen: &'a str, needle: &str) -> Option<&'a str> {
    screen.lines().find(|line| line.contains(needle))
}

#[test]
fn a_random_source_flood_is_flagged_and_two_busy_hosts_are_not() -> Result<()> {
    let lab = Lab::enter()?;
    let flooded = lab.listener_v4()?;
    let busy = lab.listener_v4()?;
    let _flood = lab.syn_flood(flooded.addr_v4()?, FLOOD, 42)?;
    let _two_hosts = lab.syns_from_two_hosts(busy.addr_v4()?, FROM_TWO_HOSTS)?;
    lab.wait_for_count(TcpState::SynRecv, FLOOD + FROM_TWO_HOSTS, SETTLE)?;

    let mut terminal = tcpscope(120, 40)?;
    let flooded_at = format!("127.0.0.1:{}", flooded.addr.port());
    let busy_at = format!("127.0.0.1:{}", busy.addr.port());
    let screen = terminal.wait_for(SCREEN_TIMEOUT, "both listeners' verdicts", |screen| {
        line_with(screen, &flooded_at).is_some_and(|line| line.contains("SYN flood suspected"))
            && line_with(screen, &busy_at).is_some()
    })?;

    let syn_recv = line_with(&screen, "│SYN_RECV").context("no SYN_RECV count")?;
    let count = (FLOOD + FROM_TWO_HOSTS).to_string();
    ensure!(
        syn_recv.split_whitespace().nth(1) == Some(count.as_str()),
        "SYN_RECV count is not {count}: {syn_recv}\n{screen}"
    );
    let busy_line = line_with(&screen, &busy_at).unwrap_or_default();
    ensure!(
        busy_line.contains("backlog from few hosts"),
        "two hosts misjudged: {busy_line}\n{screen}"
    );
    ensure!(
        screen.contains("SYN FLOOD SUSPECTED"),
        "no headline:\n{screen}"
    );
    ensure!(
        terminal.alternate_screen(),
        "the view is not on the alternate screen"
    );

    terminal.send(b"q")?;
    let status = terminal.wait(Duration::from_secs(10))?;
    ensure!(status.success(), "q exited with {status}");
    ensure!(
        !terminal.alternate_screen(),
        "the alternate screen was not left"
    );
    let raw = terminal.raw_output();
    ensure!(
        raw.windows(8).any(|w| w == b"\x1b[?1049l"),
        "no escape sequence leaving the alternate screen"
    );
    Ok(())
}

#[test]
fn sigterm_restores_the_terminal_and_exits_with_128_plus_15() -> Result<()> {
    let _lab = Lab::enter()?;
    let mut terminal = tcpscope(80, 24)?;
    terminal.wait_for(SCREEN_TIMEOUT, "the view", |screen| {
        screen.contains("ESTABLISHED")
    })?;
    // SAFETY: kill sends a signal to the child this test started.
    let sent = unsafe { libc::kill(terminal.pid(), libc::SIGTERM) };
    ensure!(sent == 0, "kill failed");
    let status = terminal.wait(Duration::from_secs(10))?;
    ensure!(
        status.code() == Some(128 + 15),
        "SIGTERM exited with {status}"
    );
    ensure!(
        !terminal.alternate_screen(),
        "the alternate screen was not left"
    );
    Ok(())
}

#[test]
fn a_terminal_below_80x24_is_told_the_size_it_needs() -> Result<()> {
    let _lab = Lab::enter()?;
    let mut terminal = tcpscope(60, 20)?;
    terminal.wait_for(SCREEN_TIMEOUT, "the size message", |screen| {
        screen.contains("needs 80x24, has 60x20")
    })?;
    terminal.send(b"q")?;
    ensure!(terminal.wait(Duration::from_secs(10))?.success());
    Ok(())
}

#[test]
fn the_demo_recording_replays_in_the_view_without_a_namespace_and_q_quits() -> Result<()> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tcpscope"));
    command.args([
        "--replay",
        concat!(env!("CARGO_MANIFEST_DIR"), "/assets/synflood.rec"),
    ]);
    let mut terminal = Terminal::spawn(command, 80, 24)?;
    let screen = terminal.wait_for(SCREEN_TIMEOUT, "the replayed flood", |screen| {
        screen.contains("SYN FLOOD SUSPECTED") && screen.contains("REPLAY")
    })?;
    ensure!(
        terminal.alternate_screen(),
        "the replay is not on the alternate screen:\n{screen}"
    );
    terminal.send(b"q")?;
    let status = terminal.wait(Duration::from_secs(10))?;
    ensure!(status.success(), "q exited with {status}");
    ensure!(
        !terminal.alternate_screen(),
        "the alternate screen was not left"
    );
    Ok(())
}

/// Captures the real view under a flood for the README: run with
/// `cargo test --test tui_e2e -- --ignored screenshot`, then
/// `python3 tests/screenshot/render.py target/screenshot.json assets/screenshot.png`.
#[test]
#[ignore = "writes target/screenshot.json for the README's screenshot"]
fn screenshot_of_the_view_under_a_flood() -> Result<()> {
    let lab = Lab::enter()?;
    let flooded = lab.listener_v4()?;
    let busy = lab.listener_v4()?;
    let _established: Vec<_> = (0..6)
        .map(|_| lab.established("127.0.0.1".parse()?))
        .collect::<Result<_>>()?;
    let _time_wait = lab.time_wait("127.0.0.1".parse()?)?;
    let _flood = lab.syn_flood(flooded.addr_v4()?, FLOOD, 42)?;
    let _two_hosts = lab.syns_from_two_hosts(busy.addr_v4()?, FROM_TWO_HOSTS)?;
    lab.wait_for_count(TcpState::SynRecv, FLOOD + FROM_TWO_HOSTS, SETTLE)?;
    let mut terminal = tcpscope(120, 40)?;
    terminal.wait_for(SCREEN_TIMEOUT, "the flood verdict", |screen| {
        screen.contains("SYN flood suspected") && screen.contains("Δ")
    })?;
    // A second flood wave, so that the counts show a change and a rate.
    let _second = lab.syn_flood(flooded.addr_v4()?, 100, 43)?;
    std::thread::sleep(Duration::from_millis(2500));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/target/screenshot.json");
    std::fs::create_dir_all(concat!(env!("CARGO_MANIFEST_DIR"), "/target"))?;
    std::fs::write(path, serde_json::to_vec(&terminal.cells_json())?)?;
    terminal.send(b"q")?;
    terminal.wait(Duration::from_secs(10))?;
    Ok(())
}
