//! The `--watch` mode: runs the poller and writes each poll's transitions as they
//! come, until SIGINT or SIGTERM (exit 0) or a closed pipe (quietly, even when there is
//! nothing to write). With `--all-netns`, one poller per network namespace, and every
//! line names its own. With `--record`, every poll is appended to a recording too;
//! `--replay` writes a recording's stream the same way.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;

use crate::cli::Cli;
use crate::diff::Transition;
use crate::filter::Filter;
use crate::kernel::sockdiag::SockDiag;
use crate::namespaces::Namespaces;
use crate::oneshot::Outcome;
use crate::poller::{EventStatus, Message, PollerConfig};
use crate::pollers::{Pollers, RESCAN};
use crate::record::{Recorder, Replay, ReplayEnd};
use crate::report::stream::{Format, StreamWriter};
use crate::snapshot::{Counts, Snapshot};

/// Updates per namespace that may wait for the writer; beyond that the pollers wait
/// (see [`crate::poller::Poller::spawn`]).
const UPDATES_IN_FLIGHT: usize = 2;
/// The key of the one poller of a run without `--all-netns`.
const OWN: u64 = 0;
/// How often the loop looks up from the channel to see whether it was told to stop.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// Streams transitions to `out` until a signal asks to stop.
pub fn run(cli: &Cli, out: impl Write) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing the SIGINT/SIGTERM handlers")?;
    }

    // A kernel that cannot answer sock_diag never will: say so and stop, rather than
    // print a failed poll every interval.
    SockDiag::open()
        .and_then(|mut diag| diag.probe())
        .context("asking the kernel for TCP sockets")?;
    let filter = cli.filter();
    let mut emitter = Emitter::new(out, cli.json, filter.clone(), Some(cli.interval));
    let mut recorder = match cli.recording() {
        Some(to) => Some(Recorder::open(&to)?),
        None => None,
    };
    // With --all-netns one poller per namespace, each message tagged with its
    // namespace's inode, and namespaces followed as they come and go; otherwise one
    // poller in the namespace this thread is in.
    let config = PollerConfig {
        interval: cli.interval,
        filter,
        destroy_events: true,
        thresholds: cli.thresholds(),
    };
    let handles = match Namespaces::chosen(cli)? {
        Namespaces::All(handles) => handles,
        _ => Vec::new(),
    };
    // Namespaces that appear later share the room of those there at the start.
    let (sender, receiver) = mpsc::sync_channel(UPDATES_IN_FLIGHT * handles.len().max(1));
    let mut pollers = Pollers::new(config, sender);
    if cli.all_netns {
        for handle in handles {
            pollers.start(handle.namespace.inode, Some(handle))?;
        }
    } else {
        pollers.start(OWN, None)?;
    }
    let mut last_scan = Instant::now();

    while !stop.load(Ordering::Relaxed) {
        if cli.all_netns && last_scan.elapsed() >= RESCAN {
            last_scan = Instant::now();
            follow_namespaces(&mut pollers);
        }
        let (key, message) = match receiver.recv_timeout(STOP_CHECK) {
            Ok(tagged) => tagged,
            // A quiet stream writes nothing for a long time, so a write would not tell
            // it that its reader (`| head`) left: look.
            Err(RecvTimeoutError::Timeout) if stdout_reader_gone() => return Ok(()),
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let at = match &message {
            Message::Update(update) => update.snapshot.taken_at,
            Message::PollFailed(_) => SystemTime::now(),
        };
        // --record is refused with --all-netns: a recording holds one namespace.
        if let Some(recorder) = &mut recorder {
            match &message {
                Message::Update(update) => recorder.record_update(update)?,
                Message::PollFailed(error) => recorder.record_failure(at, error)?,
            }
        }
        emitter.writer.set_netns(cli.all_netns.then_some(key));
        emitter.emit(at, &message)?;
    }
    emitter.writer.flush()?;
    Ok(())
}

/// Starts streaming the namespaces that appeared since the last look and stops
/// streaming those no process is in any more; what a gone namespace's pollers sent
/// before is still written. A namespace that cannot be entered is left out with a note.
fn follow_namespaces(pollers: &mut Pollers) {
    for (inode, error) in pollers.follow().refused {
        let _ = writeln!(
            io::stderr(),
            "tcpscope: note: not streaming network namespace {inode}: {error}"
        );
    }
}

/// `--replay FILE`: the stream `--watch` printed while recording, from the recording,
/// with today's filter. A torn end (the recorder was stopped mid-write) is said on
/// stderr; everything before it is shown, and the exit status is 0.
pub fn replay(cli: &Cli, out: impl Write) -> anyhow::Result<Outcome> {
    let path = cli
        .replay
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("--replay needs a file"))?;
    let mut replay = Replay::open(path, cli.thresholds())?;
    // A recording does not say which interval its polls were late for.
    let mut emitter = Emitter::new(out, cli.json, cli.filter(), None);
    let mut records = 0u64;
    while let Some(replayed) = replay.next_poll()? {
        records += 1;
        emitter.emit(replayed.at, &replayed.message)?;
    }
    emitter.writer.flush()?;
    let shown = path.display();
    match replay.end() {
        Some(ReplayEnd::Torn { offset, reason }) => {
            let _ = writeln!(
                io::stderr(),
                "tcpscope: note: {shown} ends with a torn record at byte {offset} ({reason}); replayed the {records} records before it"
            );
        }
        Some(ReplayEnd::Unreadable { offset, reason }) => {
            let _ = writeln!(
                io::stderr(),
                "tcpscope: note: {shown} has a record at byte {offset} this tcpscope cannot read ({reason}); replayed the {records} records before it"
            );
        }
        Some(ReplayEnd::Complete) | None => {}
    }
    Ok(Outcome::Matched)
}

/// Turns the poller's messages into stream lines, the same for live polls and
/// replayed ones.
struct Emitter<W: Write> {
    writer: StreamWriter<W>,
    filter: Filter,
    /// The interval a poll is slow against (none for a replay).
    interval: Option<Duration>,
    warned_about_events: bool,
}

impl<W: Write> Emitter<W> {
    fn new(out: W, json: bool, filter: Filter, interval: Option<Duration>) -> Emitter<W> {
        let format = if json { Format::Ndjson } else { Format::Text };
        Emitter {
            writer: StreamWriter::new(out, format, filter.states),
            filter,
            interval,
            warned_about_events: false,
        }
    }

    fn emit(&mut self, at: SystemTime, message: &Message) -> io::Result<()> {
        match message {
            Message::Update(update) => {
                if let EventStatus::Refused(reason) = &update.events
                    && !self.warned_about_events
                {
                    self.warned_about_events = true;
                    let _ = writeln!(
                        io::stderr(),
                        "tcpscope: note: kernel destroy events are unavailable ({reason}); connections that open and close between two polls may be missed"
                    );
                }
                if let Some(interval) = self.interval
                    && update.took > interval
                {
                    self.writer.slow_poll(at, update.took, interval)?;
                }
                if update.event_overflows > 0 {
                    self.writer.events_lost(at, update.event_overflows)?;
                }
                for transition in update
                    .transitions
                    .iter()
                    .filter(|transition| wanted(&self.filter, transition))
                {
                    self.writer.transition(at, transition)?;
                }
                self.writer
                    .counts(at, &counts(&self.filter, &update.snapshot))?;
            }
            Message::PollFailed(message) => self.writer.poll_failed(at, message)?,
        }
        Ok(())
    }
}

/// A transition is shown when the connection matched the filter before or after it.
/// The writer checks the state mask too; this adds the rest of the filter (ports,
/// addresses, state tests under `or` or `not`), since the poller dumps every state.
fn wanted(filter: &Filter, transition: &Transition) -> bool {
    [transition.from, transition.to]
        .into_iter()
        .flatten()
        .any(|state| filter.matches_endpoints(&transition.endpoints, state))
}

/// The per-state counts of the sockets the filter matches.
fn counts(filter: &Filter, snapshot: &Snapshot) -> Counts {
    if filter.condition.is_none() {
        // The dump applied everything but the states, which the writer applies.
        return snapshot.counts();
    }
    let mut counts = Counts::default();
    for socket in snapshot.sockets.iter().filter(|s| filter.matches(s)) {
        counts.add(socket.state);
    }
    counts
}

/// Whether standard output is a pipe or socket whose reading end is closed: the kernel
/// flags such a writing end with POLLERR or POLLHUP (`pipe_poll` in fs/pipe.c). A
/// terminal or a file never is.
fn stdout_reader_gone() -> bool {
    let mut poll = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, and a zero timeout: it never blocks.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    ready > 0 && poll.revents & (libc::POLLERR | libc::POLLHUP) != 0
}
