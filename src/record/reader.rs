//! `--replay FILE`: reads a recording back as the poller's messages, so that every
//! consumer of a live poll (the `--watch` stream, the live view) can show a recording
//! as it showed the live polls.
//!
//! Transitions, counters and sockets are the recorded ones (narrowed to a filter, for
//! the view: see [`Replay::narrowed_to`]); the SYN watch is computed again from them,
//! with the counter rates taken between the recorded poll times.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;

use super::codec::{self, Entry, Sockets};
use super::delta::SocketTable;
use super::frame::{FrameReader, Next};
use crate::filter::Filter;
use crate::poller::{Message, Update, watch_counters};
use crate::snapshot::Snapshot;
use crate::watch::{CounterRates, Counters, SynWatcher, Thresholds};

/// How a replay ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayEnd {
    /// Every record was read.
    Complete,
    /// The recording ends with a record cut short or damaged (the writer was stopped
    /// mid-write): everything before byte `offset` was replayed.
    Torn { offset: u64, reason: &'static str },
    /// A whole record could not be understood (a recording from a newer tcpscope, or
    /// damage its checksum did not catch): everything before byte `offset` was
    /// replayed.
    Unreadable { offset: u64, reason: String },
}

/// One replayed poll or failure, with the time it happened.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub at: SystemTime,
    pub message: Message,
}

/// A recording being read, from a file unless said otherwise.
pub struct Replay<R = BufReader<File>> {
    frames: FrameReader<R>,
    table: Option<SocketTable>,
    syn_watcher: SynWatcher,
    previous: Option<(SystemTime, Counters)>,
    end: Option<ReplayEnd>,
    /// Keeps only the sockets and transitions this filter matches.
    filter: Option<Filter>,
}

impl Replay {
    /// Opens a recording; fails if it is not one.
    pub fn open(path: &Path, thresholds: Thresholds) -> anyhow::Result<Replay> {
        let shown = path.display();
        let file = File::open(path).with_context(|| format!("opening the recording {shown}"))?;
        Replay::from_reader(BufReader::new(file), thresholds)
            .with_context(|| format!("reading the recording {shown}"))
    }
}

impl<R: Read> Replay<R> {
    /// Reads a recording from any source of bytes; fails if it does not start as one.
    pub fn from_reader(reader: R, thresholds: Thresholds) -> anyhow::Result<Replay<R>> {
        Ok(Replay {
            frames: FrameReader::open(reader)?,
            table: None,
            syn_watcher: SynWatcher::new(thresholds),
            previous: None,
            end: None,
            filter: None,
        })
    }

    /// Replays only the sockets `filter` matches (states included), and the
    /// transitions of connections it matched before or after them, as the live view
    /// with these flags would have shown them; the SYN watch is computed over what is
    /// kept. The `--replay` stream filters at its output instead, line for line as
    /// `--watch` did.
    pub fn narrowed_to(mut self, filter: Filter) -> Replay<R> {
        self.filter = Some(filter);
        self
    }

    /// How the replay ended, once [`Replay::next_poll`] has returned `None`.
    pub fn end(&self) -> Option<&ReplayEnd> {
        self.end.as_ref()
    }

    /// The next poll or failure, or `None` at the end (see [`Replay::end`]). Only an
    /// I/O error reading the file is an error.
    pub fn next_poll(&mut self) -> anyhow::Result<Option<Replayed>> {
        if self.end.is_some() {
            return Ok(None);
        }
        let offset = self.frames.offset();
        let entry = match self.frames.next_frame().context("reading the recording")? {
            Next::Frame(bytes) => codec::decode(bytes),
            Next::End => return Ok(self.stop(ReplayEnd::Complete)),
            Next::Torn { offset, reason } => {
                return Ok(self.stop(ReplayEnd::Torn { offset, reason }));
            }
        };
        let unreadable = |reason: String| ReplayEnd::Unreadable { offset, reason };
        let poll = match entry {
            Ok(Entry::Poll(poll)) => poll,
            Ok(Entry::PollFailed { at, message }) => {
                return Ok(Some(Replayed {
                    at,
                    message: Message::PollFailed(message),
                }));
            }
            Err(error) => return Ok(self.stop(unreadable(error.to_string()))),
        };
        match (&mut self.table, &poll.sockets) {
            (table, Sockets::All(sockets)) => *table = Some(SocketTable::of(sockets)),
            (Some(table), Sockets::Changes(changes)) => {
                if let Err(reason) = table.apply(changes) {
                    return Ok(self.stop(unreadable(reason)));
                }
            }
            (None, Sockets::Changes(_)) => {
                return Ok(self.stop(unreadable(
                    "changes before any poll of every socket".to_string(),
                )));
            }
        }
        let mut sockets = self
            .table
            .as_ref()
            .map(|table| table.sockets().to_vec())
            .unwrap_or_default();
        let mut transitions = poll.transitions;
        if let Some(filter) = &self.filter {
            sockets.retain(|socket| filter.matches(socket));
            transitions.retain(|transition| {
                [transition.from, transition.to]
                    .into_iter()
                    .flatten()
                    .any(|state| filter.matches_endpoints(&transition.endpoints, state))
            });
        }
        let snapshot = Snapshot::new(poll.taken_at, sockets);

        let counters = watch_counters(&poll.counters);
        let (rates, since_last) = match self.previous {
            Some((then, before)) => {
                let since = poll.taken_at.duration_since(then).unwrap_or(Duration::ZERO);
                (
                    CounterRates::between(&before, &counters, since.as_secs_f64()),
                    since,
                )
            }
            None => (CounterRates::default(), Duration::ZERO),
        };
        self.previous = Some((poll.taken_at, counters));
        let syn_watch = self.syn_watcher.poll(&snapshot, &rates, since_last);

        Ok(Some(Replayed {
            at: poll.taken_at,
            message: Message::Update(Box::new(Update {
                snapshot: Arc::new(snapshot),
                transitions,
                counters: poll.counters,
                syn_watch,
                took: poll.took,
                events: poll.events,
                event_overflows: poll.event_overflows,
            })),
        }))
    }

    fn stop(&mut self, end: ReplayEnd) -> Option<Replayed> {
        self.end = Some(end);
        None
    }
}
