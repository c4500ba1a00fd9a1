//! `--replay FILE`: reads a recording back as the polls it holds, each with its
//! sockets rebuilt, so that the live source can analyse them as it analysed the live
//! polls and every consumer (the `--watch` stream, the live view) can show a recording
//! as it showed them.
//!
//! Transitions, counters and sockets are the recorded ones (narrowed to a filter, for
//! the view: see [`Replay::narrowed_to`]); nothing is analysed here.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::Context;

use super::codec::{self, Entry, Sockets};
use super::delta::SocketTable;
use super::frame::{FrameReader, Next};
use super::writer::PollToRecord;
use crate::diff::Transition;
use crate::filter::Filter;
use crate::kernel::events::EventStatus;
use crate::kernel::procfs::TcpExt;
use crate::snapshot::Snapshot;

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

/// One replayed poll, or a failed poll with the time it happened.
#[derive(Debug, Clone)]
pub enum Replayed {
    Poll(RecordedPoll),
    Failed { at: SystemTime, message: String },
}

impl Replayed {
    /// When it happened.
    pub fn at(&self) -> SystemTime {
        match self {
            Replayed::Poll(poll) => poll.snapshot.taken_at,
            Replayed::Failed { at, .. } => *at,
        }
    }
}

/// One recorded poll, its sockets rebuilt.
#[derive(Debug, Clone)]
pub struct RecordedPoll {
    pub snapshot: Snapshot,
    pub transitions: Vec<Transition>,
    pub counters: TcpExt,
    pub took: Duration,
    pub events: EventStatus,
    pub event_overflows: u32,
}

impl RecordedPoll {
    /// The poll as the recorder takes it, to record it again.
    pub fn as_record(&self) -> PollToRecord<'_> {
        PollToRecord {
            snapshot: &self.snapshot,
            transitions: &self.transitions,
            counters: &self.counters,
            took: self.took,
            events: &self.events,
            event_overflows: self.event_overflows,
        }
    }
}

/// A recording being read, from a file unless said otherwise.
pub struct Replay<R = BufReader<File>> {
    frames: FrameReader<R>,
    table: Option<SocketTable>,
    end: Option<ReplayEnd>,
    /// Keeps only the sockets and transitions this filter matches.
    filter: Option<Filter>,
}

impl Replay {
    /// Opens a recording; fails if it is not one.
    pub fn open(path: &Path) -> anyhow::Result<Replay> {
        let shown = path.display();
        let file = File::open(path).with_context(|| format!("opening the recording {shown}"))?;
        Replay::from_reader(BufReader::new(file))
            .with_context(|| format!("reading the recording {shown}"))
    }
}

impl<R: Read> Replay<R> {
    /// Reads a recording from any source of bytes; fails if it does not start as one.
    pub fn from_reader(reader: R) -> anyhow::Result<Replay<R>> {
        Ok(Replay {
            frames: FrameReader::open(reader)?,
            table: None,
            end: None,
            filter: None,
        })
    }

    /// Replays only the sockets `filter` matches (states included), and the
    /// transitions of connections it matched before or after them, as the live view
    /// with these flags would have shown them, so that what is analysed is what is
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
                return Ok(Some(Replayed::Failed { at, message }));
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
        Ok(Some(Replayed::Poll(RecordedPoll {
            snapshot: Snapshot::new(poll.taken_at, sockets),
            transitions,
            counters: poll.counters,
            took: poll.took,
            events: poll.events,
            event_overflows: poll.event_overflows,
        })))
    }

    fn stop(&mut self, end: ReplayEnd) -> Option<Replayed> {
        self.end = Some(end);
        None
    }
}
