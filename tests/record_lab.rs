//! `--watch --record` during a SYN flood in a lab namespace, and `--replay` of what it
//! wrote: the replay prints the very stream the live run printed, a recording cut
//! mid-record replays up to the cut, and the demo recording shipped in `assets/`
//! replays without privileges.
//!
//! The lab tests enter their own lab and fail, never skip, without root.

mod lab;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use lab::{Lab, SETTLE, TcpState};

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

/// A running `tcpscope --watch --json --record FILE` and the lines it printed.
struct Recording {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Recording {
    fn start(file: &Scratch, interval: &str) -> Result<Recording> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tcpscope"))
            .args([
                "--watch",
                "--json",
                "--interval",
                interval,
                "--record",
                file.arg(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .context("starting tcpscope --watch --record")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (sender, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut recording = Recording {
            child,
            lines,
            seen: Vec::new(),
        };
        recording.wait_for_polls(1)?;
        Ok(recording)
    }

    /// Reads until `polls` more counts lines have come.
    fn wait_for_polls(&mut self, polls: usize) -> Result<()> {
        let deadline = Instant::now() + SETTLE * 2;
        let mut counted = 0;
        while counted < polls {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = self.lines.recv_timeout(left) else {
                bail!("the stream stopped: {:#?}", self.seen);
            };
            if line.contains("\"type\":\"counts\"") {
                counted += 1;
            }
            self.seen.push(line);
        }
        Ok(())
    }

    /// Stops the stream with SIGINT, as a user would, and returns every line it
    /// printed.
    fn stop(mut self) -> Result<Vec<String>> {
        // SAFETY: kill(2) on our own child's pid.
        let sent = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        ensure!(sent == 0, "could not signal tcpscope");
        let status = self.child.wait()?;
        ensure!(
            status.success(),
            "tcpscope --watch --record ended with {status}"
        );
        // The reader thread ends at the pipe's end.
        while let Ok(line) = self.lines.recv_timeout(SETTLE) {
            self.seen.push(line);
        }
        Ok(self.seen)
    }
}

fn replay(args: &[&str]) -> Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_tcpscope"))
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
    ensure!(lines(&output)?.len() >= replayed.len() + more.len());
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
    let mut args = vec!["-n", env!("CARGO_BIN_EXE_tcpscope"), "--watch", "--json"];
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

const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/synflood.rec");

#[test]
fn the_demo_recording_replays_without_privileges() -> Result<()> {
    // As nobody: a new user needs no root to look at the demo.
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_tcpscope"))
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
/// cargo test --test record_lab -- --ignored make_the_demo_recording
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
