//! A running `tcpscope --watch --json` and the NDJSON lines it prints. The lines are
//! read on a thread of their own, so that a test waits for the one it wants with a
//! deadline and fails, rather than hangs, when the stream goes quiet. Each line is
//! parsed and stamped with the moment it arrived, for the tests that measure the pace
//! of polls, and every line read is kept, so that a failure shows what the stream said.
//!
//! The process is spawned from the calling thread, so inside a lab it runs in the lab's
//! namespace. This module reads the stream; what the lines must say is for each test to
//! check, except that every line must be a JSON object: one that is not fails the test
//! at the read that meets it, so it is never passed over.

// Each test binary uses only part of this module.
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail, ensure};

use super::lab::child::exit_within;
use super::tcpscope_command;
use serde_json::Value;

/// How long the process may take to exit once signalled.
const EXIT: Duration = Duration::from_secs(10);

/// How many of the last lines read an error message shows.
const SHOWN: usize = 100;

/// One line of the stream.
pub struct Line {
    /// The line as printed, without its newline: what a replay must print again.
    pub text: String,
    /// The line parsed; `Value::String(text)` if it is not JSON.
    pub value: Value,
    /// When the reader thread read it.
    pub arrived: Instant,
    /// The same moment by the wall clock, to compare with the `at` of a counts line.
    pub arrived_wall: SystemTime,
}

/// A running `tcpscope --watch --json` and every line it printed that has been read.
pub struct Stream {
    child: Child,
    lines: Receiver<Line>,
    seen: Vec<Line>,
    /// Whether the reader thread met the end of stdout.
    ended: bool,
    /// The reader of stderr, when the caller piped it.
    stderr: Option<JoinHandle<String>>,
}

impl Stream {
    /// Starts `tcpscope --watch --json ARGS…`; its stderr goes with the test's output.
    pub fn watch(args: &[&str]) -> Result<Stream> {
        let mut command = tcpscope_command(&[]);
        command.args(["--watch", "--json"]).args(args);
        Stream::start(&mut command)
    }

    /// Starts `command`, a `tcpscope --watch --json` that a test has set up its own way,
    /// with stdout on a pipe. Stderr stays as the caller set it; if piped, it is read to
    /// its end on a thread, so that the process never blocks writing to it, and
    /// [`Stream::stderr`] returns it.
    pub fn start(command: &mut Command) -> Result<Stream> {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .context("starting tcpscope --watch --json")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (sender, lines) = mpsc::channel();
        thread::spawn(move || {
            for text in BufReader::new(stdout).lines() {
                let arrived = Instant::now();
                let arrived_wall = SystemTime::now();
                // A line that cannot be read (not UTF-8) is passed on as a line that is
                // not JSON, and ends the reading: the test fails on it.
                let (text, more) = match text {
                    Ok(text) => (text, true),
                    Err(error) => (format!("(a line that cannot be read: {error})"), false),
                };
                let value =
                    serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()));
                let line = Line {
                    text,
                    value,
                    arrived,
                    arrived_wall,
                };
                if sender.send(line).is_err() || !more {
                    break;
                }
            }
        });
        let stderr = child.stderr.take().map(|mut pipe| {
            thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                String::from_utf8_lossy(&bytes).into_owned()
            })
        });
        Ok(Stream {
            child,
            lines,
            seen: Vec::new(),
            ended: false,
            stderr,
        })
    }

    /// Every line read so far, in the order printed.
    pub fn seen(&self) -> &[Line] {
        &self.seen
    }

    /// Reads lines until one for which `wanted` holds, for up to `timeout`, and returns
    /// the lines read, that one last.
    pub fn read_until(
        &mut self,
        what: &str,
        timeout: Duration,
        wanted: impl Fn(&Value) -> bool,
    ) -> Result<&[Line]> {
        let from = self.seen.len();
        let deadline = Instant::now() + timeout;
        while let Some(line) = self.read(deadline)? {
            if wanted(&line.value) {
                return Ok(&self.seen[from..]);
            }
        }
        if self.ended {
            bail!("the stream ended before {what}; it said:\n{}", self.said());
        }
        bail!(
            "waited {timeout:?} for {what}; the stream said:\n{}",
            self.said()
        )
    }

    /// The next line for which `wanted` holds, waiting up to `timeout` for it.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        wanted: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let lines = self.read_until(what, timeout, wanted)?;
        let found = lines.last().context("read_until returned no line")?;
        Ok(found.value.clone())
    }

    /// The first line of the whole stream for which `wanted` holds: one read already,
    /// or the next, waiting up to `timeout` for it. For a test that waits for several
    /// lines that may come in any order.
    pub fn find(
        &mut self,
        what: &str,
        timeout: Duration,
        wanted: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        if let Some(found) = self.seen.iter().find(|line| wanted(&line.value)) {
            return Ok(found.value.clone());
        }
        self.wait_for(what, timeout, wanted)
    }

    /// The lines that arrive from now until `duration` has passed, or until the stream
    /// ends.
    pub fn collect(&mut self, duration: Duration) -> Result<&[Line]> {
        let from = self.seen.len();
        let deadline = Instant::now() + duration;
        while Instant::now() < deadline && self.read(deadline)?.is_some() {}
        Ok(&self.seen[from..])
    }

    pub fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    /// Sends `signal` and waits (up to 10 s) for the exit status. The lines printed
    /// before the exit stay to be read.
    pub fn stop(&mut self, signal: libc::c_int) -> Result<ExitStatus> {
        // Once reaped, the pid may be another process's: signal only a child that is
        // still ours (running, or exited and not yet waited for).
        if self.child.try_wait()?.is_none() {
            // SAFETY: kill(2) on our own child, not yet reaped.
            let sent = unsafe { libc::kill(self.pid(), signal) };
            ensure!(
                sent == 0,
                "could not signal tcpscope: {}",
                std::io::Error::last_os_error()
            );
        }
        exit_within(&mut self.child, EXIT)
            .with_context(|| format!("tcpscope did not exit after signal {signal}"))
    }

    /// What the process wrote on stderr, if the caller piped it; empty otherwise. It
    /// reads to the end, so it waits for the process to exit: call it after `stop`.
    pub fn stderr(&mut self) -> String {
        self.stderr
            .take()
            .and_then(|reader| reader.join().ok())
            .unwrap_or_default()
    }

    /// Reads the next line into `seen`, waiting until `deadline` at most (a line that
    /// has arrived already is read even after it); None if the stream has ended or
    /// nothing came.
    fn read(&mut self, deadline: Instant) -> Result<Option<&Line>> {
        if self.ended {
            return Ok(None);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match self.lines.recv_timeout(left) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => return Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.ended = true;
                return Ok(None);
            }
        };
        let object = line.value.is_object();
        self.seen.push(line);
        ensure!(
            object,
            "tcpscope --watch --json printed a line that is not a JSON object; the stream said:\n{}",
            self.said()
        );
        Ok(self.seen.last())
    }

    /// The last lines read, for an error message.
    fn said(&self) -> String {
        let skipped = self.seen.len().saturating_sub(SHOWN);
        let mut said = String::new();
        if skipped > 0 {
            let _ = writeln!(said, "({skipped} earlier lines)");
        }
        for line in &self.seen[skipped..] {
            let _ = writeln!(said, "{}", line.text);
        }
        said
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
