//! The `--watch` mode: runs the live source and writes each poll's transitions as they
//! come, until SIGINT or SIGTERM (exit 0) or a closed pipe (quietly, even when there is
//! nothing to write). With `--all-netns`, one poller per network namespace, and every
//! line names its own. With `--record`, every poll is appended to a recording too;
//! `--replay` writes a recording's stream the same way.

use std::collections::HashMap;
use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use anyhow::anyhow;

use super::Outcome;
use crate::cli::Cli;
use crate::diff::Transition;
use crate::filter::Filter;
use crate::kernel::process::stdout_reader_gone;
use crate::poll::namespaces;
use crate::poll::{EventStatus, Message, Next, Source, Stopping, Update};
use crate::record::ReplayEnd;
use crate::report::repeats::{REPEAT_EVERY, Repeats};
use crate::report::stream::{Format, StreamWriter};
use crate::snapshot::{Counts, Snapshot};
use crate::tcp::State;
use crate::text::Escaped;

/// Updates per namespace that may wait for the writer; beyond that the pollers wait.
const UPDATES_IN_FLIGHT: usize = 2;

/// Streams transitions to `out` until a signal asks to stop.
pub fn run(cli: &Cli, out: impl Write) -> anyhow::Result<()> {
    let mut source = Source::live(super::live_config(
        cli,
        Stopping::headless(),
        UPDATES_IN_FLIGHT,
    )?)?;
    let mut emitter = Emitter::new(out, cli.json, cli.filter(), Some(cli.interval));
    // With --all-netns, what text lines call each namespace followed.
    let mut labels: HashMap<u64, String> = HashMap::new();
    loop {
        match source.wait()? {
            Next::Poll { netns, at, message } => {
                // With --all-netns every line names its namespace.
                emitter.writer.set_netns(cli.all_netns.then_some(netns));
                emitter
                    .writer
                    .set_netns_label(labels.get(&netns).map(String::as_str));
                emitter.emit(netns, at, &message)?;
            }
            Next::Namespaces(followed) => {
                followed.note("streaming");
                for namespace in &followed.started {
                    labels.insert(namespace.inode, namespaces::label(namespace).short());
                }
                for inode in &followed.gone {
                    labels.remove(inode);
                }
            }
            // A recording that cannot be written ends the stream: it was asked for.
            Next::RecordingStopped(error) => return Err(anyhow!("recording: {error}")),
            // A quiet stream writes nothing for a long time, so a write would not tell
            // it that its reader (`| head`) left: look.
            Next::Idle if stdout_reader_gone() => return Ok(()),
            Next::Idle => {}
            Next::Signal(_) | Next::End => break,
        }
    }
    emitter.writer.flush()?;
    Ok(())
}

/// `--replay FILE`: the stream `--watch` printed while recording, from the recording,
/// with today's filter. A torn end (the recorder was stopped mid-write) is said on
/// stderr; everything before it is shown, and the exit status is 0.
pub fn replay(cli: &Cli, out: impl Write) -> anyhow::Result<Outcome> {
    let path = cli
        .replay
        .as_deref()
        .ok_or_else(|| anyhow!("--replay needs a file"))?;
    // The stream filters at its output, line for line as --watch did.
    let mut source = Source::replay(
        path,
        None,
        cli.thresholds(),
        cli.finding_thresholds(),
        Stopping::headless(),
    )?;
    // A recording does not say which interval its polls were late for.
    let mut emitter = Emitter::new(out, cli.json, cli.filter(), None);
    let mut records = 0u64;
    loop {
        match source.wait()? {
            Next::Poll { netns, at, message } => {
                records += 1;
                emitter.emit(netns, at, &message)?;
            }
            Next::Signal(_) | Next::End => break,
            _ => {}
        }
    }
    emitter.writer.flush()?;
    let shown = path.display();
    match source.replay_end() {
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
    /// Each namespace's failures, so that one failing every poll is not a line a poll.
    repeats: Repeats,
    /// Each namespace's counts of the last full dump under a filter condition: a lane
    /// poll after it reads them here, not again from a table it may not carry.
    full_counts: HashMap<u64, Counts>,
}

impl<W: Write> Emitter<W> {
    fn new(out: W, json: bool, filter: Filter, interval: Option<Duration>) -> Emitter<W> {
        let format = if json { Format::Ndjson } else { Format::Text };
        Emitter {
            writer: StreamWriter::new(out, format, filter.states),
            filter,
            interval,
            warned_about_events: false,
            repeats: Repeats::new(REPEAT_EVERY),
            full_counts: HashMap::new(),
        }
    }

    fn emit(&mut self, netns: u64, at: SystemTime, message: &Message) -> io::Result<()> {
        match message {
            Message::Update(update) => {
                self.repeats.recovered(netns);
                if let EventStatus::Refused(reason) = &update.events
                    && !self.warned_about_events
                {
                    self.warned_about_events = true;
                    let _ = writeln!(
                        io::stderr(),
                        "tcpscope: note: kernel destroy events are unavailable ({}); connections that open and close between two polls may be missed",
                        Escaped(reason)
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
                for event in &update.finding_events {
                    self.writer.finding(at, event)?;
                }
                let pace = update
                    .pace
                    .full_every
                    .map(|full_every| (full_every, update.pace.is_full()));
                let counts = self.counts(netns, update);
                self.writer.counts(at, &counts, pace)?;
            }
            Message::PollFailed(message) => {
                if let Some(times) = self.repeats.failed(netns, message, at) {
                    self.writer.poll_failed(at, message, times)?;
                }
            }
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

impl<W: Write> Emitter<W> {
    /// The per-state counts of the sockets the filter matches: the last full dump's,
    /// with LISTEN and SYN_RECV from the fast lane between full dumps.
    fn counts(&mut self, netns: u64, update: &Update) -> Counts {
        if self.filter.condition.is_none() {
            // The dump applied everything but the states, which the writer applies.
            return update.pace.counts;
        }
        let Some(lane) = &update.pace.lane else {
            let counts = matching(&self.filter, &update.snapshot);
            self.full_counts.insert(netns, counts);
            return counts;
        };
        let mut counts = match self.full_counts.get(&netns) {
            Some(full) => *full,
            None => matching(&self.filter, &update.snapshot),
        };
        let fresh = matching(&self.filter, lane);
        for state in [State::Listen, State::SynRecv] {
            counts.set(state, fresh.get(state));
        }
        counts
    }
}

fn matching(filter: &Filter, snapshot: &Snapshot) -> Counts {
    let mut counts = Counts::default();
    for socket in snapshot.sockets.iter().filter(|s| filter.matches(s)) {
        counts.add(socket.state);
    }
    counts
}
