//! The interactive view end to end: the real binary in a pseudo-terminal, inside a
//! private network namespace under a SYN flood, its screen read through a terminal
//! emulator. Fails, never skips, without root.
//!
//! Every way out gives the terminal back as a shell expects it (the main screen, a
//! visible cursor, line mode): `q`, SIGTERM, SIGHUP, a panic on any thread, and a
//! kernel that refuses sock_diag (which never takes the screen at all).

use std::time::Duration;

use anyhow::{Context, Result, ensure};

use crate::support::fault::Refusal;
use crate::support::lab::child::{exit_within, in_write};
use crate::support::lab::{Lab, SETTLE, TcpState};
use crate::support::pty::Terminal;
use crate::support::tcpscope_command;
use crate::support::{fault, pty};

const SCREEN_TIMEOUT: Duration = Duration::from_secs(20);
const FLOOD: usize = 300;
const FROM_TWO_HOSTS: usize = 200;

/// The interactive view, started in a pseudo-terminal of `columns` × `rows`.
fn in_terminal(columns: u16, rows: u16) -> Result<Terminal> {
    Terminal::spawn(tcpscope_command(&[]), columns, rows)
}

/// The view's status line is drawn: it is up and has had its first poll.
fn view_is_up(screen: &str) -> bool {
    screen.contains("ESTABLISHED") && screen.contains("q quit")
}

/// The terminal as a shell expects it back: the main screen, a visible cursor, and
/// line mode (canonical input with echo).
fn ensure_restored(terminal: &Terminal) -> Result<()> {
    ensure!(
        !terminal.alternate_screen(),
        "the alternate screen was not left:\n{}",
        terminal.contents()
    );
    ensure!(!terminal.cursor_hidden(), "the cursor is still hidden");
    ensure!(terminal.line_mode()?, "the terminal was left in raw mode");
    Ok(())
}

/// Starts the view and waits until it is up, in raw mode on the alternate screen.
fn running_view() -> Result<Terminal> {
    let terminal = in_terminal(100, 30)?;
    terminal.wait_for(SCREEN_TIMEOUT, "the view", view_is_up)?;
    ensure!(
        terminal.alternate_screen(),
        "the view is not on the alternate screen"
    );
    ensure!(
        !terminal.line_mode()?,
        "the view runs in line mode, not raw"
    );
    Ok(terminal)
}

fn signal(terminal: &Terminal, signal: libc::c_int) -> Result<()> {
    // SAFETY: kill sends a signal to the child this test started.
    let sent = unsafe { libc::kill(terminal.pid(), signal) };
    ensure!(sent == 0, "kill failed");
    Ok(())
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

    let mut terminal = in_terminal(120, 40)?;
    let flooded_at = format!("127.0.0.1:{}", flooded.addr.port());
    let busy_at = format!("127.0.0.1:{}", busy.addr.port());
    // The listener's line in the SYN_RECV watch, not its finding's.
    let watch_line = |screen: &str, at: &str, verdict: &str| {
        screen
            .lines()
            .any(|line| line.contains(at) && line.contains(verdict))
    };
    let headline = format!("CRITICAL syn_flood on {flooded_at}");
    let screen = terminal.wait_for(SCREEN_TIMEOUT, "both listeners' verdicts", |screen| {
        watch_line(screen, &flooded_at, "SYN flood suspected")
            && watch_line(screen, &busy_at, "  ")
            && screen
                .lines()
                .next()
                .is_some_and(|tabs| tabs.contains(&headline))
    })?;

    let syn_recv = line_with(&screen, "│SYN_RECV").context("no SYN_RECV count")?;
    let count = (FLOOD + FROM_TWO_HOSTS).to_string();
    ensure!(
        syn_recv.split_whitespace().nth(1) == Some(count.as_str()),
        "SYN_RECV count is not {count}: {syn_recv}\n{screen}"
    );
    ensure!(
        watch_line(&screen, &busy_at, "backlog from few hosts")
            && !watch_line(&screen, &busy_at, "SYN flood"),
        "two hosts misjudged:\n{screen}"
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
fn a_flood_is_named_in_the_findings_panel_and_enter_opens_its_evidence_and_remedy() -> Result<()> {
    let lab = Lab::enter()?;
    let flooded = lab.listener_v4()?;
    let _flood = lab.syn_flood(flooded.addr_v4()?, FLOOD, 7)?;
    lab.wait_for_count(TcpState::SynRecv, FLOOD, SETTLE)?;

    let mut command = tcpscope_command(&[]);
    command.args(["--interval", "200ms"]);
    let mut terminal = Terminal::spawn(command, 120, 40)?;
    let summary = format!("SYN flood on 127.0.0.1:{}", flooded.addr.port());
    let screen = terminal.wait_for(SCREEN_TIMEOUT, "the flood's finding", |screen| {
        line_with(screen, &summary).is_some()
    })?;
    let line = line_with(&screen, &summary).unwrap_or_default();
    ensure!(
        line.contains("critical") && line.contains("syn_flood"),
        "the finding's line lacks its severity or kind: {line}\n{screen}"
    );
    ensure!(
        line_with(&screen, "Findings 1 critical").is_some(),
        "the panel's title does not count it:\n{screen}"
    );

    terminal.send(b"\r")?;
    let half_open = format!("half_open: {FLOOD}");
    let screen = terminal.wait_for(SCREEN_TIMEOUT, "the finding's evidence", |screen| {
        screen.contains("Finding (Esc to close)") && screen.contains(&half_open)
    })?;
    for shown in [
        "distinct_sources: ",
        "Remedy",
        "net.ipv4.tcp_syncookies",
        "raised ",
    ] {
        ensure!(
            screen.contains(shown),
            "no {shown:?} in the opened finding:\n{screen}"
        );
    }
    terminal.send(b"\x1b")?;
    terminal.wait_for(SCREEN_TIMEOUT, "the overview again", |screen| {
        !screen.contains("Finding (Esc to close)") && screen.contains("│SYN_RECV")
    })?;
    terminal.send(b"q")?;
    ensure!(terminal.wait(Duration::from_secs(10))?.success());
    Ok(())
}

#[test]
fn q_gives_back_the_main_screen_the_cursor_and_line_mode() -> Result<()> {
    let _lab = Lab::enter()?;
    let mut terminal = running_view()?;
    terminal.send(b"q")?;
    let status = terminal.wait(Duration::from_secs(10))?;
    ensure!(status.success(), "q exited with {status}");
    ensure_restored(&terminal)
}

/// Sends `signal` to a running view, and checks that it gives the terminal back and
/// exits with 128 + the signal's number, as a shell reports a process a signal ended.
fn a_signal_restores_the_terminal(signal_number: libc::c_int) -> Result<()> {
    let _lab = Lab::enter()?;
    let mut terminal = running_view()?;
    signal(&terminal, signal_number)?;
    let status = terminal.wait(Duration::from_secs(10))?;
    ensure!(
        status.code() == Some(128 + signal_number),
        "signal {signal_number} exited with {status}"
    );
    ensure_restored(&terminal)
}

#[test]
fn sigterm_restores_the_terminal_and_exits_with_128_plus_15() -> Result<()> {
    a_signal_restores_the_terminal(libc::SIGTERM)
}

#[test]
fn sighup_restores_the_terminal_and_exits_with_128_plus_1() -> Result<()> {
    a_signal_restores_the_terminal(libc::SIGHUP)
}

#[test]
fn sigquit_restores_the_terminal_and_exits_with_128_plus_3() -> Result<()> {
    a_signal_restores_the_terminal(libc::SIGQUIT)
}

/// Whether process `pid` is stopped (state `T` in `/proc/<pid>/stat`).
fn stopped(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('T'))
    })
}

/// Suspends the view with `suspend`, checks that the terminal is given back while it is
/// stopped, continues it as `fg` does, and checks that it takes the terminal again,
/// redraws, and answers a key without Enter.
fn suspend_and_resume(suspend: impl FnOnce(&mut Terminal) -> Result<()>) -> Result<()> {
    let _lab = Lab::enter()?;
    let mut terminal = running_view()?;
    suspend(&mut terminal)?;
    let deadline = std::time::Instant::now() + SCREEN_TIMEOUT;
    while !stopped(terminal.pid()) {
        ensure!(
            std::time::Instant::now() < deadline,
            "the view did not stop:\n{}",
            terminal.contents()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Give the screen's reader a moment to take in what came before the stop.
    std::thread::sleep(Duration::from_millis(200));
    ensure_restored(&terminal).context("while the view is stopped")?;

    signal(&terminal, libc::SIGCONT)?;
    terminal.wait_for(SCREEN_TIMEOUT, "the view again", |screen| {
        view_is_up(screen)
    })?;
    let deadline = std::time::Instant::now() + SCREEN_TIMEOUT;
    while !terminal.alternate_screen() || terminal.line_mode()? {
        ensure!(
            std::time::Instant::now() < deadline,
            "the view did not take the terminal back in raw mode"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    terminal.send(b"q")?;
    let status = terminal.wait(Duration::from_secs(10))?;
    ensure!(status.success(), "q after resuming exited with {status}");
    ensure_restored(&terminal)
}

#[test]
fn ctrl_z_gives_the_terminal_back_and_fg_takes_it_again() -> Result<()> {
    suspend_and_resume(|terminal| terminal.send(b"\x1a"))
}

#[test]
fn sigtstp_gives_the_terminal_back_and_sigcont_takes_it_again() -> Result<()> {
    suspend_and_resume(|terminal| signal(terminal, libc::SIGTSTP))
}

/// Presses the hidden panic key of debug builds (see `test_panic` in src/tui/mod.rs)
/// with `TCPSCOPE_TEST_PANIC=where`, and checks what the user is left with.
#[cfg(debug_assertions)]
fn panic_in(place: &str, message: &str) -> Result<()> {
    let _lab = Lab::enter()?;
    let mut command = tcpscope_command(&[]);
    command.env("TCPSCOPE_TEST_PANIC", place);
    let mut terminal = Terminal::spawn(command, 100, 30)?;
    terminal.wait_for(SCREEN_TIMEOUT, "the view", view_is_up)?;
    terminal.send(b"!")?;
    let status = terminal.wait(Duration::from_secs(10))?;
    ensure!(status.code() == Some(101), "the panic exited with {status}");
    ensure_restored(&terminal)?;
    let screen = terminal.contents();
    ensure!(
        screen.contains(message),
        "the panic message is not on the main screen:\n{screen}"
    );
    Ok(())
}

#[test]
#[cfg(debug_assertions)]
fn a_panic_in_the_view_restores_the_terminal_and_shows_the_message() -> Result<()> {
    panic_in("view", "test panic on the view's thread")
}

#[test]
#[cfg(debug_assertions)]
fn a_panic_on_another_thread_restores_the_terminal_and_ends_the_view() -> Result<()> {
    panic_in("thread", "test panic on another thread")
}

#[test]
fn a_resize_down_to_1x1_and_back_keeps_the_view_alive() -> Result<()> {
    let _lab = Lab::enter()?;
    let mut terminal = running_view()?;

    terminal.resize(60, 20)?;
    terminal.wait_for(SCREEN_TIMEOUT, "the size message", |screen| {
        screen.contains("needs 80x24, has 60x20")
    })?;
    for (columns, rows) in [(1, 1), (0, 0), (2, 1), (1, 30), (300, 1), (1, 1)] {
        terminal.resize(columns, rows)?;
        std::thread::sleep(Duration::from_millis(300));
        ensure!(terminal.running(), "the view ended at {columns}x{rows}");
    }
    terminal.resize(100, 30)?;
    terminal.wait_for(SCREEN_TIMEOUT, "the view at 100x30 again", view_is_up)?;

    terminal.send(b"q")?;
    let status = terminal.wait(Duration::from_secs(10))?;
    ensure!(status.success(), "q exited with {status}");
    ensure_restored(&terminal)?;
    let output = String::from_utf8_lossy(&terminal.raw_output()).into_owned();
    ensure!(!output.contains("panicked"), "{output}");
    Ok(())
}

#[test]
fn without_sock_diag_the_view_exits_2_before_taking_the_screen() -> Result<()> {
    let _lab = Lab::enter()?;
    let mut command = tcpscope_command(&[]);
    fault::refuse(
        &mut command,
        &[Refusal::sock_diag_socket(libc::EPROTONOSUPPORT)],
    );
    let mut terminal = Terminal::spawn(command, 100, 30)?;
    let status = terminal.wait(Duration::from_secs(10))?;
    ensure!(status.code() == Some(2), "exited with {status}");
    let raw = terminal.raw_output();
    ensure!(
        !raw.windows(8).any(|w| w == b"\x1b[?1049h"),
        "the screen was taken"
    );
    let screen = terminal.contents();
    ensure!(
        screen.contains("tcpscope: error:") && screen.contains("CONFIG_INET_DIAG"),
        "{screen}"
    );
    ensure_restored(&terminal)
}

#[test]
fn the_status_line_says_when_destroy_events_are_refused() -> Result<()> {
    let _lab = Lab::enter()?;
    let mut command = tcpscope_command(&[]);
    fault::refuse(&mut command, &[Refusal::netlink_membership(libc::EPERM)]);
    let mut terminal = Terminal::spawn(command, 100, 30)?;
    terminal.wait_for(SCREEN_TIMEOUT, "the refusal on the status line", |screen| {
        view_is_up(screen) && screen.contains("destroy events refused")
    })?;
    terminal.send(b"q")?;
    ensure!(terminal.wait(Duration::from_secs(10))?.success());
    Ok(())
}

#[test]
fn as_root_a_process_refused_even_to_root_is_not_called_unprivileged() -> Result<()> {
    let _lab = Lab::enter()?;
    // A process of another user, and a root tcpscope without the capabilities that
    // let root read other users' descriptors: root, refused one process.
    let mut other_user = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(["sleep", "60"])
        .spawn()
        .context("starting a process as nobody")?;
    let mut command = std::process::Command::new("setpriv");
    let without = "-sys_ptrace,-dac_read_search,-dac_override";
    command
        .args([
            &format!("--bounding-set={without}"),
            &format!("--inh-caps={without}"),
            "--",
        ])
        .arg(crate::support::TCPSCOPE)
        .stdin(std::process::Stdio::null());
    let terminal = Terminal::spawn(command, 200, 30);
    let screen = terminal.and_then(|mut terminal| {
        terminal.wait_for(SCREEN_TIMEOUT, "the view", view_is_up)?;
        // The connections tab asks for the processes.
        terminal.send(b"2")?;
        let screen = terminal.wait_for(SCREEN_TIMEOUT, "the process scan", |screen| {
            line_with(screen, "q quit").is_some_and(|line| !line.contains("processes …"))
        })?;
        terminal.send(b"q")?;
        ensure!(terminal.wait(Duration::from_secs(10))?.success());
        Ok(screen)
    });
    let _ = other_user.kill();
    let _ = other_user.wait();
    let screen = screen?;
    let status = line_with(&screen, "q quit").context("no status line")?;
    ensure!(!status.contains("unprivileged"), "{status}");
    ensure!(status.contains("refused even to root"), "{status}");
    Ok(())
}

#[test]
fn a_failed_poll_shows_on_the_status_line_until_polls_succeed_again() -> Result<()> {
    let _lab = Lab::enter()?;
    let mut command = tcpscope_command(&[]);
    command.args(["--interval", "200ms"]);
    let mut terminal = Terminal::spawn(command, 160, 30)?;
    terminal.wait_for(SCREEN_TIMEOUT, "the view", view_is_up)?;

    let old = fault::set_descriptor_limit(terminal.pid(), 0)?;
    let failed = terminal.wait_for(SCREEN_TIMEOUT, "the poll error", |screen| {
        screen.contains("poll failed, retrying")
    });
    fault::set_descriptor_limit(terminal.pid(), old.rlim_cur)?;
    let failed = failed?;
    ensure!(failed.contains("Too many open files"), "{failed}");
    terminal.wait_for(SCREEN_TIMEOUT, "the error to clear", |screen| {
        view_is_up(screen) && !screen.contains("poll failed")
    })?;

    terminal.send(b"q")?;
    ensure!(terminal.wait(Duration::from_secs(10))?.success());
    ensure_restored(&terminal)
}

#[test]
fn a_quiet_timeline_says_how_long_it_has_been_quiet_once_past_the_second_poll() -> Result<()> {
    let _lab = Lab::enter()?;
    let command = tcpscope_command(&["--interval", "100ms"]);
    let mut terminal = Terminal::spawn(command, 120, 30)?;
    terminal.wait_for(SCREEN_TIMEOUT, "the view", view_is_up)?;
    terminal.send(b"3")?;
    // Nothing happens in an empty lab: ten polls later the log says so, not "yet".
    let screen = terminal.wait_for(SCREEN_TIMEOUT, "ten quiet polls", |screen| {
        line_with(screen, "No transitions in ").is_some_and(|line| {
            line.split("No transitions in ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|polls| polls.parse::<u32>().ok())
                .is_some_and(|polls| polls >= 10)
        })
    })?;
    ensure!(!screen.contains("second poll"), "{screen}");
    terminal.send(b"q")?;
    ensure!(terminal.wait(Duration::from_secs(10))?.success());
    Ok(())
}

#[test]
fn a_listeners_detail_pane_shows_its_accept_queue_not_rtt_or_cwnd() -> Result<()> {
    let lab = Lab::enter()?;
    let listener = lab.listener_v4()?;
    // Two connections the listener never accepts wait in its accept queue.
    let _waiting = [
        std::net::TcpStream::connect(listener.addr)?,
        std::net::TcpStream::connect(listener.addr)?,
    ];
    let mut terminal = Terminal::spawn(tcpscope_command(&["--interval", "200ms"]), 120, 40)?;
    terminal.wait_for(SCREEN_TIMEOUT, "the view", view_is_up)?;
    let port = listener.addr.port();
    terminal.send(format!("2/state listen and sport = :{port}\r").as_bytes())?;
    let local = listener.addr.to_string();
    terminal.wait_for(SCREEN_TIMEOUT, "the listener in the table", |screen| {
        line_with(screen, &local).is_some_and(|line| line.contains("LISTEN"))
    })?;
    terminal.send(b"\r")?;
    let screen = terminal.wait_for(SCREEN_TIMEOUT, "its detail pane", |screen| {
        screen.contains("Esc back") && screen.contains("state LISTEN")
    })?;
    ensure!(screen.contains("accept queue 2"), "{screen}");
    ensure!(screen.contains("backlog "), "{screen}");
    ensure!(screen.contains("drops 0"), "{screen}");
    for meaningless in ["rtt ", "cwnd ", "recv-q "] {
        ensure!(
            !screen.contains(meaningless),
            "{meaningless:?} shown:\n{screen}"
        );
    }
    terminal.send(b"q")?;
    ensure!(terminal.wait(Duration::from_secs(10))?.success());
    Ok(())
}

#[test]
fn the_filter_line_edits_as_a_shell_line_does_and_recalls_earlier_filters() -> Result<()> {
    const CTRL_A: &str = "\x01";
    const CTRL_U: &str = "\x15";
    const CTRL_W: &str = "\x17";
    const UP: &str = "\x1b[A";
    const LEFT: &str = "\x1b[D";
    const HOME: &str = "\x1b[H";
    const DELETE: &str = "\x1b[3~";
    let lab = Lab::enter()?;
    let listener = lab.listener_v4()?;
    let port = listener.addr.port();
    let mut terminal = Terminal::spawn(tcpscope_command(&["--interval", "200ms"]), 80, 24)?;
    terminal.wait_for(SCREEN_TIMEOUT, "the view", view_is_up)?;
    let mut filter = |keys: String, applied: String| -> Result<String> {
        terminal.send(keys.as_bytes())?;
        terminal.wait_for(SCREEN_TIMEOUT, &applied, |screen| {
            line_with(screen, "filter: ").is_some_and(|line| line.contains(&applied))
        })
    };
    // Ctrl-U erases the line; Ctrl-A and Home go to its start, where text goes in.
    filter(
        format!("2/sport = :1{CTRL_U}sport = :{port}{CTRL_A}state listen and \r"),
        format!("filter: state listen and sport = :{port}"),
    )?;
    // Ctrl-W erases a word, ← and Delete work inside the line.
    filter(
        format!("/{CTRL_W}{CTRL_W}{CTRL_W}{CTRL_W}{CTRL_W}{CTRL_W}estabX{LEFT}{DELETE}{HOME}\r"),
        "filter: estab".to_owned(),
    )?;
    // ↑ recalls the filters entered before, the newest first.
    let screen = filter(
        format!("/{CTRL_U}{UP}{UP}\r"),
        format!("filter: state listen and sport = :{port}"),
    )?;
    ensure!(
        line_with(&screen, &listener.addr.to_string()).is_some(),
        "{screen}"
    );
    // A refusal is shown whole at 80 columns, wrapped below the caret.
    terminal.send(format!("/{CTRL_U}state nosuchstate\r").as_bytes())?;
    let screen = terminal.wait_for(SCREEN_TIMEOUT, "the refusal", |screen| {
        screen.contains("^^^^^^^^^^^")
    })?;
    let flat = screen.split_whitespace().collect::<Vec<_>>().join(" ");
    ensure!(
        flat.contains(
            "groups: all, connected, synchronized, bucket, big (/ to edit, Esc to dismiss)"
        ),
        "{screen}"
    );
    terminal.send(b"q")?;
    ensure!(terminal.wait(Duration::from_secs(10))?.success());
    Ok(())
}

#[test]
fn a_terminal_below_80x24_is_told_the_size_it_needs() -> Result<()> {
    let _lab = Lab::enter()?;
    let mut terminal = in_terminal(60, 20)?;
    terminal.wait_for(SCREEN_TIMEOUT, "the size message", |screen| {
        screen.contains("needs 80x24, has 60x20")
    })?;
    terminal.send(b"q")?;
    ensure!(terminal.wait(Duration::from_secs(10))?.success());
    Ok(())
}

#[test]
fn the_demo_recording_replays_in_the_view_without_a_namespace_and_q_quits() -> Result<()> {
    let mut command = tcpscope_command(&[]);
    command.args([
        "--replay",
        concat!(env!("CARGO_MANIFEST_DIR"), "/assets/synflood.rec"),
    ]);
    let mut terminal = Terminal::spawn(command, 80, 24)?;
    let screen = terminal.wait_for(SCREEN_TIMEOUT, "the replayed flood", |screen| {
        screen.contains("CRITICAL syn_flood") && screen.contains("REPLAY")
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

#[test]
fn a_replay_shows_the_recordings_own_interval_and_nothing_only_a_live_view_knows() -> Result<()> {
    let mut command = tcpscope_command(&[]);
    command.args([
        "--replay",
        concat!(env!("CARGO_MANIFEST_DIR"), "/assets/synflood.rec"),
    ]);
    // Wide enough for every field the status line could show.
    let mut terminal = Terminal::spawn(command, 200, 30)?;
    let screen = terminal.wait_for(SCREEN_TIMEOUT, "the replay", |screen| {
        screen.contains("REPLAY") && screen.contains("q quit")
    })?;
    terminal.send(b"q")?;
    ensure!(terminal.wait(Duration::from_secs(10))?.success());
    let status = line_with(&screen, "q quit").context("no status line")?;
    // The demo was recorded at 250 ms; this run was given no --interval.
    ensure!(status.contains("recorded every 250ms"), "{status}");
    for live_only in ["every 1.0s", "destroy events", "processes"] {
        ensure!(!status.contains(live_only), "{live_only:?} in {status}");
    }
    Ok(())
}

#[test]
fn filter_flags_narrow_the_view_over_a_replay() -> Result<()> {
    let mut command = tcpscope_command(&[]);
    command.args([
        "--replay",
        concat!(env!("CARGO_MANIFEST_DIR"), "/assets/synflood.rec"),
        "--grep",
        "established",
    ]);
    let mut terminal = Terminal::spawn(command, 80, 24)?;
    // Played to its end, the replay pauses on the last poll.
    let screen = terminal.wait_for(SCREEN_TIMEOUT, "the end of the replay", |screen| {
        screen.contains("REPLAY ⏸")
    })?;
    let syn_recv = line_with(&screen, "│SYN_RECV").context("no SYN_RECV count")?;
    ensure!(
        syn_recv.split_whitespace().nth(1) == Some("0"),
        "half-open connections shown under --grep established: {syn_recv}\n{screen}"
    );
    ensure!(!screen.contains("syn_flood"), "{screen}");
    terminal.send(b"q")?;
    ensure!(terminal.wait(Duration::from_secs(10))?.success());
    Ok(())
}

/// Captures the real view under a flood for the README: run with
/// `cargo test --test lab -- --ignored tui::screenshot`, then
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
    let mut terminal = in_terminal(120, 40)?;
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

/// The terminal itself goes away (an SSH session or terminal emulator closed): the view
/// ends as on a hang-up, with status 129, rather than aborting while it tries to say on
/// the vanished stderr that the vanished terminal could not be restored.
#[test]
fn a_terminal_that_disappears_ends_the_view_as_a_hang_up() -> Result<()> {
    use std::os::unix::process::ExitStatusExt;

    let _lab = Lab::enter()?;
    let (mut child, master) = view_drawn_on_a_bare_pty(&[])?;
    // Close the terminal's only other end.
    drop(master);
    let status = exit_within(&mut child, Duration::from_secs(10))
        .context("the view went on without its terminal")?;
    ensure!(
        status.code() == Some(128 + 1),
        "the view ended with {status} (signal {:?})",
        status.signal()
    );
    Ok(())
}

/// A terminal that stops reading (a frozen SSH session, a suspended emulator) blocks
/// the view's next frame in write(2). SIGTERM still ends the view, within seconds and
/// with status 143, rather than waiting for a reader that may never come back; the
/// terminal is not given back then, since that would block as well.
#[test]
fn sigterm_ends_the_view_even_when_its_terminal_stopped_reading() -> Result<()> {
    let _lab = Lab::enter()?;
    let (mut child, master) = view_drawn_on_a_bare_pty(&["--interval", "100ms"])?;

    // From now on nobody reads. Each resize makes it draw a whole screen, until the
    // terminal's buffer is full and a write blocks.
    let pid = i32::try_from(child.id())?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut blocked_samples = 0;
    let mut columns = 100;
    while blocked_samples < 10 {
        ensure!(
            std::time::Instant::now() < deadline,
            "the view's writes never blocked: the terminal's buffer did not fill"
        );
        columns = if columns == 100 { 101 } else { 100 };
        pty::set_size(&master, columns, 30)?;
        std::thread::sleep(Duration::from_millis(100));
        blocked_samples = if in_write(pid) {
            blocked_samples + 1
        } else {
            0
        };
    }

    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = exit_within(&mut child, Duration::from_secs(10))
        .context("SIGTERM did not end a view blocked on its terminal")?;
    ensure!(
        status.code() == Some(128 + 15),
        "SIGTERM exited with {status}"
    );
    Ok(())
}

/// Starts the view with `args` on a 100x30 pty that, unlike [`Terminal`], has nobody
/// reading it in the background, and reads until the view has drawn its first frames.
/// What the test does with the pty's master from then on is up to it.
fn view_drawn_on_a_bare_pty(args: &[&str]) -> Result<(std::process::Child, std::fs::File)> {
    use std::io::Read;

    let (master, slave) = pty::open_pty(100, 30)?;
    let mut command = tcpscope_command(&[]);
    command.args(args);
    let child = pty::spawn_on(&mut command, slave)?;
    drop(command);
    let mut master = std::fs::File::from(master);
    let mut drawn = [0u8; 4096];
    let mut total = 0;
    while total < 1000 {
        total += master
            .read(&mut drawn)
            .context("reading the view's first frames")?;
    }
    Ok((child, master))
}
