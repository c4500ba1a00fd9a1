//! `--watch --record` during a SYN flood in a lab namespace, and `--replay` of what it
//! wrote: the replay prints the very stream the live run printed, a recording cut
//! mid-record replays up to the cut, and the demo recording shipped in `assets/`
//! replays without privileges. `--serve --record` and the interactive view with
//! `--record` (in a pseudo-terminal) record what they served and showed. A close the
//! fast lane reported between spaced-out full dumps is replayed with the next one.
//!
//! The lab tests enter their own lab and fail, never skip, without root.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use tcpscope::tcp::State;

use crate::support::lab::{Lab, SETTLE, TcpState};
use crate::support::stream::Stream;
use crate::support::{TCPSCOPE, tcpscope_command};
use crate::support::{lab, pty, scrape};

/// A scratch file removed (with its rotated sibling) when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let path = std::env::temp_dir().join(format!("tcpscope-{name}-{}.rec", std::process::id()));
        let _ = fs::remove_file(&path);
        Scratch(path)
    }

    fn arg(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
        let mut rotated = self.0.clone().into_os_string();
        rotated.push(".1");
        let _ = fs::remove_file(rotated);
    }
}

/// A running `tcpscope --watch --json --record FILE`.
struct Recording(Stream);

impl Recording {
    /// Without a CPU budget, so that every poll is a full dump: a recording holds full
    /// dumps only, and the fast lane's polls between them are not replayed.
    fn start(file: &Scratch, interval: &str) -> Result<Recording> {
        let mut recording = Recording(Stream::watch(&[
            "--interval",
            interval,
            "--max-cpu",
            "0",
            "--record",
            file.arg(),
        ])?);
        recording.wait_for_polls(1)?;
        Ok(recording)
    }

    /// Reads until `polls` more counts lines have come.
    fn wait_for_polls(&mut self, polls: usize) -> Result<()> {
        let deadline = Instant::now() + SETTLE * 2;
        for _ in 0..polls {
            let left = deadline.saturating_duration_since(Instant::now());
            self.0
                .wait_for("a counts line", left, |line| line["type"] == "counts")?;
        }
        Ok(())
    }

    /// Stops the stream with SIGINT, as a user would, and returns every line it
    /// printed, as printed.
    fn stop(mut self) -> Result<Vec<String>> {
        let status = self.0.stop(libc::SIGINT)?;
        ensure!(
            status.success(),
            "tcpscope --watch --record ended with {status}"
        );
        // The lines it printed before it exited: the stream ends at the pipe's end.
        self.0.collect(SETTLE)?;
        Ok(self
            .0
            .seen()
            .iter()
            .map(|line| without_pace(&line.text))
            .collect())
    }
}

/// A live line as its replay prints it: a recording does not say how often full dumps
/// came, so a replayed counts line has no `interval_ms`.
fn without_pace(line: &str) -> String {
    if !line.starts_with("{\"type\":\"counts\"") {
        return line.to_owned();
    }
    match line.find(",\"interval_ms\":") {
        Some(start) => {
            let rest = &line[start + 1..];
            let end = rest
                .find([',', '}'])
                .map_or(line.len(), |end| start + 1 + end);
            format!("{}{}", &line[..start], &line[end..])
        }
        None => line.to_owned(),
    }
}

fn replay(args: &[&str]) -> Result<Output> {
    tcpscope_command(&[])
        .args(args)
        .output()
        .context("running tcpscope --replay")
}

fn lines(output: &Output) -> Result<Vec<String>> {
    Ok(String::from_utf8(output.stdout.clone())?
        .lines()
        .map(str::to_string)
        .collect())
}

/// Records `polls` polls of a SYN flood in waves plus connections that open and close,
/// and returns the live stream's lines.
fn record_a_flood(lab: &Lab, file: &Scratch, interval: &str, polls: usize) -> Result<Vec<String>> {
    let listener = lab.listener_v4()?;
    let mut recording = Recording::start(file, interval)?;
    let mut sent = 0;
    for wave in 0..polls {
        if wave < polls / 2 {
            lab.syn_flood(listener.addr_v4()?, 60, 100 + wave as u64)?;
            sent += 60;
        }
        if wave % 2 == 0 {
            let connection = lab.established("127.0.0.1".parse()?)?;
            drop(connection);
        }
        recording.wait_for_polls(1)?;
    }
    lab.wait_for_count(TcpState::SynRecv, sent, SETTLE)?;
    recording.wait_for_polls(2)?;
    let lines = recording.stop()?;
    drop(listener);
    Ok(lines)
}

#[test]
fn a_recording_made_during_a_flood_replays_the_same_counts_and_events() -> Result<()> {
    let lab = Lab::enter()?;
    let file = Scratch::new("flood");
    let live = record_a_flood(&lab, &file, "100ms", 8)?;
    ensure!(
        live.iter().any(|l| l.contains("\"to\":\"SYN_RECV\"")),
        "the flood shows in the live stream"
    );

    let output = replay(&["--replay", file.arg(), "--json"])?;
    ensure!(output.status.code() == Some(0), "{output:?}");
    ensure!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let replayed = lines(&output)?;
    ensure!(
        replayed == live,
        "the replay differs from the live stream:\nlive: {} lines\nreplay: {} lines\nfirst difference: {:?}",
        live.len(),
        replayed.len(),
        live.iter().zip(&replayed).find(|(a, b)| a != b)
    );

    // Filters apply to the replay as they would have to the live stream.
    let filtered = lines(&replay(&[
        "--replay",
        file.arg(),
        "--json",
        "--grep",
        "established",
    ])?)?;
    ensure!(
        filtered.iter().all(|l| !l.contains("\"to\":\"SYN_RECV\"")),
        "no half-open transitions once filtered to ESTABLISHED"
    );
    let text = replay(&["--replay", file.arg()])?;
    ensure!(text.status.success() && !text.stdout.is_empty(), "{text:?}");
    Ok(())
}

#[test]
fn a_recording_cut_mid_record_replays_up_to_the_tear() -> Result<()> {
    let lab = Lab::enter()?;
    let file = Scratch::new("torn");
    let live = record_a_flood(&lab, &file, "100ms", 4)?;
    let whole = fs::read(&file.0)?;
    // Cut a few bytes into the last record.
    fs::write(&file.0, &whole[..whole.len() - 5])?;

    let output = replay(&["--replay", file.arg(), "--json"])?;
    ensure!(output.status.code() == Some(0), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        stderr.contains("torn record"),
        "the tear is reported: {stderr}"
    );
    let replayed = lines(&output)?;
    ensure!(
        !replayed.is_empty() && replayed.len() < live.len(),
        "{} of {} lines",
        replayed.len(),
        live.len()
    );
    ensure!(
        live.starts_with(&replayed),
        "the replay is a prefix of the live stream"
    );
    ensure!(
        replayed
            .last()
            .is_some_and(|l| l.contains("\"type\":\"counts\"")),
        "the replay stops at the end of a whole poll"
    );

    // Recording again appends after the intact part.
    let more = Recording::start(&file, "100ms")?.stop()?;
    ensure!(!more.is_empty());
    let output = replay(&["--replay", file.arg(), "--json"])?;
    ensure!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Findings are judged across the whole file: one raised in the first part is not
    // raised again in the second, as it was when the second was recorded afresh.
    let polls = |lines: &[String]| {
        lines
            .iter()
            .filter(|line| !line.contains("\"type\":\"finding\""))
            .count()
    };
    ensure!(polls(&lines(&output)?) >= polls(&replayed) + polls(&more));
    Ok(())
}

#[test]
fn a_file_that_is_not_a_recording_is_an_error() -> Result<()> {
    let file = Scratch::new("bogus");
    fs::write(&file.0, b"{\"schema_version\":1}")?;
    let output = replay(&["--replay", file.arg(), "--json"])?;
    ensure!(output.status.code() == Some(2), "{output:?}");
    ensure!(output.stdout.is_empty());
    ensure!(String::from_utf8_lossy(&output.stderr).contains("not a tcpscope recording"));
    let missing = replay(&["--replay", "/nonexistent/x.rec"])?;
    ensure!(missing.status.code() == Some(2), "{missing:?}");
    Ok(())
}

/// `tcpscope --watch --record FILE` with more flags, run briefly in a lab namespace.
fn record_briefly(file: &Scratch, more: &[&str]) -> Result<Output> {
    let mut args = vec!["-n", TCPSCOPE, "--watch", "--json"];
    args.extend_from_slice(&["--interval", "100ms", "--record", file.arg()]);
    args.extend_from_slice(more);
    let child = Command::new("timeout")
        .args(["--signal=TERM", "1"])
        .arg("unshare")
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running tcpscope under timeout and unshare -n (needs root)")?;
    Ok(child.wait_with_output()?)
}

#[test]
fn record_never_writes_through_a_symbolic_link_nor_replaces_a_file_unless_forced() -> Result<()> {
    let victim = Scratch::new("victim");
    fs::write(&victim.0, b"somebody's file")?;
    let link = Scratch::new("link");
    std::os::unix::fs::symlink(&victim.0, &link.0)?;
    for more in [&[][..], &["--force"][..]] {
        let output = record_briefly(&link, more)?;
        ensure!(output.status.code() == Some(2), "{more:?}: {output:?}");
        ensure!(output.stdout.is_empty(), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        ensure!(stderr.contains("is a symbolic link"), "{stderr}");
    }
    ensure!(fs::read(&victim.0)? == b"somebody's file");

    // A file that is not a recording: refused, then replaced when forced.
    let output = record_briefly(&victim, &[])?;
    ensure!(output.status.code() == Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(stderr.contains("--force replaces it"), "{stderr}");
    ensure!(fs::read(&victim.0)? == b"somebody's file");
    let output = record_briefly(&victim, &["--force"])?;
    // timeout's TERM ends the stream quietly: 124 is timeout saying it had to stop it.
    ensure!(matches!(output.status.code(), Some(0 | 124)), "{output:?}");
    let replayed = replay(&["--replay", victim.arg(), "--json"])?;
    ensure!(replayed.status.code() == Some(0), "{replayed:?}");
    ensure!(
        !lines(&replayed)?.is_empty(),
        "the forced recording replays"
    );
    Ok(())
}

/// Counts per state (tcpscope's spelling), all 11 states.
type Counts = BTreeMap<String, u64>;

/// The IPv4 sockets `ss` lists in the lab, per state: what a `-4` tcpscope counts.
fn ss_counts_v4(lab: &Lab) -> Result<Counts> {
    let mut counts: Counts = State::ALL
        .iter()
        .map(|s| (s.name().to_string(), 0))
        .collect();
    for entry in lab.ss_entries()?.iter().filter(|e| e.local.is_ipv4()) {
        let name = match entry.state {
            TcpState::SynRecv => "SYN_RECV",
            TcpState::SynSent => "SYN_SENT",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait1 => "FIN_WAIT1",
            TcpState::FinWait2 => "FIN_WAIT2",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSED",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::Closing => "CLOSING",
        };
        *counts.entry(name.to_string()).or_default() += 1;
    }
    Ok(counts)
}

/// The `counts` of each poll of a `--replay FILE --json` stream, in order.
fn replayed_counts(file: &Scratch) -> Result<Vec<Counts>> {
    let output = replay(&["--replay", file.arg(), "--json"])?;
    ensure!(output.status.code() == Some(0), "{output:?}");
    let mut polls = Vec::new();
    for line in lines(&output)? {
        let value: serde_json::Value = serde_json::from_str(&line)?;
        if value["type"] == "counts" {
            polls.push(serde_json::from_value(value["counts"].clone())?);
        }
    }
    Ok(polls)
}

/// Builds a scene, then changes it: connections open and close, a SYN flood arrives.
/// Returns what holds the sockets of the changed scene.
fn change_the_scene(lab: &Lab, listener: &lab::Listener) -> Result<Vec<Box<dyn std::any::Any>>> {
    let v4 = "127.0.0.1".parse()?;
    let held: Vec<Box<dyn std::any::Any>> = vec![
        Box::new(lab.syn_flood(listener.addr_v4()?, 40, 7)?),
        Box::new(lab.established(v4)?),
        Box::new(lab.fin_wait2_close_wait(v4)?),
        Box::new(lab.time_wait(v4)?),
    ];
    Ok(held)
}

#[test]
fn serve_records_every_poll_and_the_replay_shows_the_counts_it_served() -> Result<()> {
    let lab = Lab::enter()?;
    let file = Scratch::new("serve");
    let listener = lab.listener_v4()?;
    let first = lab.established("127.0.0.1".parse()?)?;
    lab.wait_for_count(TcpState::Established, 2, SETTLE)?;
    let before = ss_counts_v4(&lab)?;

    let server = scrape::Server::start(
        "[::1]:0",
        &["-4", "--interval", "200ms", "--record", file.arg()],
    )?;
    let served = |metrics: &scrape::Metrics| -> Counts {
        State::ALL
            .iter()
            .map(|state| {
                let value = metrics
                    .value(
                        "tcpscope_connections",
                        &[("state", state.name()), ("family", "ipv4")],
                    )
                    .unwrap_or(-1.0);
                (state.name().to_string(), value as u64)
            })
            .collect()
    };
    server.wait_for("the scene's counts", |m| served(m) == before)?;

    drop(first);
    let _held = change_the_scene(&lab, &listener)?;
    lab.wait_for_count(TcpState::SynRecv, 40, SETTLE)?;
    // The closed connection's ends settle (FIN_WAIT, CLOSING → TIME_WAIT) on loopback
    // within microseconds; leave them more.
    thread::sleep(Duration::from_millis(300));
    let after = ss_counts_v4(&lab)?;
    server.wait_for("the changed scene's counts", |m| served(m) == after)?;
    let (status, _) = server.terminate()?;
    ensure!(status.success(), "--serve --record ended with {status}");

    let polls = replayed_counts(&file)?;
    ensure!(polls.len() >= 2, "{} polls recorded", polls.len());
    ensure!(
        polls[0] == before,
        "first poll {:?}, served {before:?}",
        polls[0]
    );
    ensure!(
        polls.last() == Some(&after),
        "last poll {:?}, served {after:?}",
        polls.last()
    );
    Ok(())
}

/// The count the view's States panel shows for each state.
fn shown_counts(screen: &str) -> Option<Counts> {
    State::ALL
        .iter()
        .map(|state| {
            let line = screen
                .lines()
                .find(|line| line.contains(&format!("│{} ", state.name())))?;
            let count = line.split_whitespace().nth(1)?.parse().ok()?;
            Some((state.name().to_string(), count))
        })
        .collect()
}

#[test]
fn the_view_records_every_poll_and_the_replay_shows_the_counts_it_showed() -> Result<()> {
    let lab = Lab::enter()?;
    let file = Scratch::new("view");
    let listener = lab.listener_v4()?;
    let before = ss_counts_v4(&lab)?;
    let mut command = tcpscope_command(&[]);
    command.args(["-4", "--interval", "200ms", "--record", file.arg()]);
    let mut terminal = pty::Terminal::spawn(command, 120, 40)?;
    let timeout = SETTLE * 3;
    terminal.wait_for(timeout, "the scene's counts", |screen| {
        shown_counts(screen).as_ref() == Some(&before)
    })?;
    let screen = terminal.contents();
    ensure!(
        screen.contains(&format!("● rec {}", file.arg())),
        "the status line names the recording:\n{screen}"
    );

    let _held = change_the_scene(&lab, &listener)?;
    lab.wait_for_count(TcpState::SynRecv, 40, SETTLE)?;
    // The closed connection's ends settle (FIN_WAIT, CLOSING → TIME_WAIT) on loopback
    // within microseconds; leave them more.
    thread::sleep(Duration::from_millis(300));
    let after = ss_counts_v4(&lab)?;
    terminal.wait_for(timeout, "the changed scene's counts", |screen| {
        shown_counts(screen).as_ref() == Some(&after)
    })?;
    terminal.send(b"q")?;
    let status = terminal.wait(Duration::from_secs(10))?;
    ensure!(status.success(), "the view ended with {status}");

    let polls = replayed_counts(&file)?;
    ensure!(polls.len() >= 2, "{} polls recorded", polls.len());
    ensure!(
        polls[0] == before,
        "first poll {:?}, shown {before:?}",
        polls[0]
    );
    ensure!(
        polls.last() == Some(&after),
        "last poll {:?}, shown {after:?}",
        polls.last()
    );
    Ok(())
}

#[test]
fn a_recording_the_view_cannot_open_is_refused_before_the_screen_is_taken() -> Result<()> {
    let file = Scratch::new("not-a-recording");
    fs::write(&file.0, b"somebody's notes")?;
    let mut command = tcpscope_command(&[]);
    command.args(["--record", file.arg()]);
    let mut terminal = pty::Terminal::spawn(command, 100, 30)?;
    let status = terminal.wait(Duration::from_secs(10))?;
    ensure!(status.code() == Some(2), "exited with {status}");
    let raw = terminal.raw_output();
    ensure!(
        !raw.windows(8).any(|w| w == b"\x1b[?1049h"),
        "the screen was taken"
    );
    let screen = terminal.contents();
    ensure!(screen.contains("--force replaces it"), "{screen}");
    ensure!(fs::read(&file.0)? == b"somebody's notes");
    Ok(())
}

const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/synflood.rec");

#[test]
fn the_demo_recording_replays_without_privileges() -> Result<()> {
    // As nobody: a new user needs no root to look at the demo.
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(TCPSCOPE)
        .args(["--replay", DEMO, "--json"])
        .output()
        .context("running tcpscope --replay as nobody")?;
    ensure!(output.status.code() == Some(0), "{output:?}");
    ensure!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut peak = 0;
    for line in lines(&output)? {
        let value: serde_json::Value = serde_json::from_str(&line)?;
        if value["type"] == "counts" {
            peak = peak.max(value["counts"]["SYN_RECV"].as_u64().unwrap_or(0));
        }
    }
    ensure!(
        peak >= 200,
        "the demo shows a flood: at most {peak} SYN_RECV"
    );
    Ok(())
}

/// Makes `assets/synflood.rec`: run it on purpose, as root, and commit the result.
///
/// ```sh
/// cargo test --test lab -- --ignored record::make_the_demo_recording
/// ```
#[test]
#[ignore = "writes assets/synflood.rec; run on purpose"]
fn make_the_demo_recording() -> Result<()> {
    let lab = Lab::enter()?;
    let file = Scratch::new("demo");
    record_a_flood(&lab, &file, "250ms", 12)?;
    fs::copy(&file.0, Path::new(DEMO))?;
    Ok(())
}

#[test]
fn record_refuses_a_fifo_a_device_and_another_users_file_at_once_with_status_2() -> Result<()> {
    // A FIFO nobody reads: opening it to write would wait for a reader, writing to it
    // would block the recorder. Refused as it is found (an empty FIFO looks like a new
    // file), and even forced.
    let fifo = Scratch::new("fifo");
    let made = Command::new("mkfifo").arg(&fifo.0).status()?;
    ensure!(made.success(), "mkfifo failed");
    for more in [&[][..], &["--force"][..]] {
        let started = Instant::now();
        let output = record_briefly(&fifo, more)?;
        ensure!(output.status.code() == Some(2), "{more:?}: {output:?}");
        ensure!(
            started.elapsed() < Duration::from_millis(900),
            "took {:?}",
            started.elapsed()
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        ensure!(stderr.contains("is a FIFO"), "{more:?}: {stderr}");
    }

    // A device, as found (of size 0, it looks like a new file) and even forced:
    // nothing is written to it. /dev/null takes any write and tells no one, so it
    // stands for every device here.
    for more in [&[][..], &["--force"][..]] {
        let output = record_briefly_to("/dev/null", more)?;
        ensure!(output.status.code() == Some(2), "{more:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        ensure!(
            stderr.contains("is a character device"),
            "{more:?}: {stderr}"
        );
    }

    // An empty file anyone may write, owned by someone else: refused, then forced.
    let theirs = Scratch::new("theirs");
    fs::write(&theirs.0, b"")?;
    std::os::unix::fs::chown(&theirs.0, Some(65534), Some(65534))?;
    let output = record_briefly(&theirs, &[])?;
    ensure!(output.status.code() == Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(stderr.contains("belongs to user 65534"), "{stderr}");
    ensure!(
        fs::read(&theirs.0)?.is_empty(),
        "nothing written without --force"
    );
    let output = record_briefly(&theirs, &["--force"])?;
    ensure!(matches!(output.status.code(), Some(0 | 124)), "{output:?}");
    ensure!(!fs::read(&theirs.0)?.is_empty(), "--force records into it");
    Ok(())
}

/// `tcpscope --watch --record PATH` with more flags, briefly, in a lab namespace.
fn record_briefly_to(path: &str, more: &[&str]) -> Result<Output> {
    let file = Scratch(PathBuf::from(path));
    let output = record_briefly(&file, more);
    // Not ours to remove.
    std::mem::forget(file);
    output
}

#[test]
fn a_second_recorder_into_the_same_file_is_refused_and_the_first_replays_whole() -> Result<()> {
    let lab = Lab::enter()?;
    let file = Scratch::new("two-recorders");
    let _listener = lab.listener_v4()?;
    let mut first = Recording::start(&file, "100ms")?;
    first.wait_for_polls(2)?;
    let second = record_briefly(&file, &[])?;
    ensure!(second.status.code() == Some(2), "{second:?}");
    let stderr = String::from_utf8_lossy(&second.stderr);
    ensure!(stderr.contains("another tcpscope is recording"), "{stderr}");
    first.wait_for_polls(3)?;
    first.stop()?;
    let replayed = replay(&["--replay", file.arg(), "--json"])?;
    ensure!(replayed.status.code() == Some(0), "{replayed:?}");
    let stderr = String::from_utf8_lossy(&replayed.stderr);
    ensure!(
        !stderr.contains("torn") && !stderr.contains("unreadable"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn a_zero_filled_tail_is_cut_off_before_appending_so_every_new_poll_replays() -> Result<()> {
    let file = Scratch::new("zero-tail");
    let first = record_briefly(&file, &[])?;
    ensure!(matches!(first.status.code(), Some(0 | 124)), "{first:?}");
    let polls_before = count_replayed(&file)?;
    ensure!(polls_before > 0, "the first run recorded nothing");
    // As `head -c 8 /dev/zero >> FILE` does, then a sparse 4 GB hole after it.
    let length = fs::metadata(&file.0)?.len();
    fs::OpenOptions::new()
        .append(true)
        .open(&file.0)?
        .set_len(length + 8)?;
    let second = record_briefly(&file, &[])?;
    ensure!(matches!(second.status.code(), Some(0 | 124)), "{second:?}");
    let polls_after = count_replayed(&file)?;
    ensure!(
        polls_after > polls_before,
        "{polls_before} polls before, {polls_after} after a second recording behind zeros"
    );

    let length = fs::metadata(&file.0)?.len();
    fs::OpenOptions::new()
        .append(true)
        .open(&file.0)?
        .set_len(length + (4 << 30))?;
    let started = Instant::now();
    let third = record_briefly(&file, &[])?;
    ensure!(matches!(third.status.code(), Some(0 | 124)), "{third:?}");
    ensure!(
        count_replayed(&file)? > polls_after,
        "the polls after a 4 GB hole, in {:?}",
        started.elapsed()
    );
    ensure!(
        fs::metadata(&file.0)?.len() < 1 << 30,
        "the hole was cut off"
    );
    Ok(())
}

/// How many polls `--replay FILE --json` prints, insisting that it read to the end.
fn count_replayed(file: &Scratch) -> Result<usize> {
    let output = replay(&["--replay", file.arg(), "--json"])?;
    ensure!(output.status.code() == Some(0), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        !stderr.contains("torn") && !stderr.contains("unreadable"),
        "{stderr}"
    );
    Ok(lines(&output)?.len())
}

#[test]
fn a_record_dated_after_the_year_9999_or_claiming_512_mib_ends_the_replay_cleanly() -> Result<()> {
    for (name, bytes, said) in crafted_recordings() {
        let file = Scratch::new(name);
        fs::write(&file.0, &bytes)?;
        for format in [&["--json"][..], &[][..]] {
            let mut args = vec!["--replay", file.arg()];
            args.extend_from_slice(format);
            // Under a memory limit, as a 528 MB allocation would be found out.
            let output = Command::new("prlimit")
                .arg("--as=268435456")
                .arg(env!("CARGO_BIN_EXE_tcpscope"))
                .args(&args)
                .output()?;
            ensure!(
                output.status.code() == Some(0),
                "{name} {format:?}: {output:?}"
            );
            // Ended where the reader was told to stop, not where it happened to fail.
            let stderr = String::from_utf8_lossy(&output.stderr);
            ensure!(stderr.contains(said), "{name} {format:?}: {stderr}");
        }
    }
    Ok(())
}

/// Recordings made to break a reader, each with valid checksums, and what the replay
/// must say of where it stopped: kept as the fuzz target's corpus too
/// (tests/fuzz/corpus/recording/).
fn crafted_recordings() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus/recording");
    [
        ("after-year-9999", "a time after the year 9999"),
        ("claims-512-mib", "(the last record is cut short)"),
        ("zero-filled-tail", "(a zero-filled tail)"),
    ]
    .into_iter()
    .map(|(name, said)| {
        let bytes = fs::read(corpus.join(name)).unwrap_or_default();
        (name, bytes, said)
    })
    .collect()
}

#[test]
fn a_recorded_error_message_holding_terminal_escapes_is_replayed_escaped() -> Result<()> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus/recording");
    let path = corpus.join("escapes-in-a-message");
    let output = replay(&["--replay", path.to_str().unwrap_or_default()])?;
    ensure!(output.status.code() == Some(0), "{output:?}");
    let stdout = String::from_utf8(output.stdout)?;
    ensure!(
        !stdout.contains('\x1b') && !stdout.contains('\x07'),
        "{stdout:?}"
    );
    ensure!(
        stdout.contains("poll failed: dump failed \\e]2;OWN\\a\\e[2J"),
        "{stdout}"
    );
    Ok(())
}

#[test]
fn a_recorded_reason_for_refused_kernel_events_holding_terminal_escapes_is_noted_escaped()
-> Result<()> {
    // The reason the destroy-event subscription was refused is an error message kept in
    // the recording, and --replay repeats it on stderr, in text and JSON alike.
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus/recording");
    let path = corpus.join("escapes-in-a-reason");
    for format in [&[][..], &["--json"][..]] {
        let mut args = vec!["--replay", path.to_str().unwrap_or_default()];
        args.extend_from_slice(format);
        let output = replay(&args)?;
        ensure!(output.status.code() == Some(0), "{format:?}: {output:?}");
        let stderr = String::from_utf8(output.stderr)?;
        ensure!(
            !stderr.contains('\x1b') && !stderr.contains('\x07'),
            "{format:?}: {stderr:?}"
        );
        ensure!(
            stderr.contains("events are unavailable (events refused \\e]2;OWN\\a\\e[2J)"),
            "{format:?}: {stderr}"
        );
    }
    Ok(())
}

#[test]
fn a_close_the_fast_lane_reported_is_replayed_with_the_next_full_dump() -> Result<()> {
    let lab = Lab::enter()?;
    let crowd = lab.crowd(4000)?;
    let listener = std::net::TcpListener::bind("127.0.0.1:7320")?;
    let client = std::net::TcpStream::connect(listener.local_addr()?)?;
    let (server, _) = listener.accept()?;
    let client_port = client.local_addr()?.port();
    let file = Scratch::new("lane-close");
    let mut watch = Stream::watch(&[
        "--interval",
        "100ms",
        "--max-cpu",
        "1",
        "--record",
        file.arg(),
    ])?;
    let full = |line: &serde_json::Value| line["type"] == "counts" && line.get("lane").is_none();
    watch.wait_for("full dumps spaced out", SETTLE * 4, |line| {
        line["type"] == "counts" && line["interval_ms"].as_u64() > Some(100)
    })?;
    watch.wait_for("a full dump", SETTLE * 4, full)?;
    drop(client);
    drop(server);
    let server_end = |line: &serde_json::Value| {
        line["type"] == "transition"
            && line["kind"] == "closed"
            && line["local_port"] == 7320
            && line["remote_port"] == client_port
    };
    let read = watch.read_until("the close, or a full dump", SETTLE * 4, |line| {
        server_end(line) || full(line)
    })?;
    let reported = read.last().map(|line| &line.value);
    ensure!(
        reported.is_some_and(server_end),
        "the close came with a full dump, not the fast lane: {reported:?}"
    );
    watch.wait_for("the next full dump", SETTLE * 8, full)?;
    let status = watch.stop(libc::SIGINT)?;
    ensure!(
        status.success(),
        "tcpscope --watch --record ended with {status}"
    );

    let output = replay(&["--replay", file.arg(), "--json"])?;
    ensure!(output.status.success(), "the replay failed: {output:?}");
    let closes = lines(&output)?
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| server_end(line))
        .count();
    ensure!(closes == 1, "the replay shows the close {closes} times");
    drop((crowd, lab));
    Ok(())
}
