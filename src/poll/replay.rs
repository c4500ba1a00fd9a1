//! A recording read back as the polls a live source would have delivered: each
//! recorded poll goes through the same [`Analyst`] as a live one, so the rates, the SYN
//! watch, the findings and what follows from them are computed again, the same way,
//! from what was recorded. A recording holds neither the namespace's port and TIME_WAIT
//! sysctls nor the listeners' drop counters: a replay judges by Linux's default limits,
//! and sees no `listen_drops`.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::time::SystemTime;

use super::update::{Analyst, Message, Polled};
use crate::filter::Filter;
use crate::record::{RecordedPoll, Replay, ReplayEnd, Replayed};
use crate::watch::Thresholds;
use crate::watch::findings::FindingThresholds;

/// A poll or failure with the time it happened.
#[derive(Debug, Clone)]
pub struct Timed {
    pub at: SystemTime,
    pub message: Message,
}

/// A recording being replayed, from a file unless said otherwise.
pub struct Replaying<R = BufReader<File>> {
    replay: Replay<R>,
    analyst: Analyst,
}

impl Replaying {
    /// Opens the recording at `path`, narrowed to `narrow` if given (see
    /// [`Replay::narrowed_to`]), its polls to be analysed with `thresholds` and
    /// `findings`.
    pub fn open(
        path: &Path,
        narrow: Option<Filter>,
        thresholds: Thresholds,
        findings: FindingThresholds,
    ) -> anyhow::Result<Replaying> {
        let mut replay = Replay::open(path)?;
        if let Some(filter) = narrow {
            replay = replay.narrowed_to(filter);
        }
        Ok(Replaying::new(replay, thresholds, findings))
    }
}

impl<R: Read> Replaying<R> {
    /// Replays `replay`, its polls analysed with `thresholds` and `findings`.
    pub fn new(
        replay: Replay<R>,
        thresholds: Thresholds,
        findings: FindingThresholds,
    ) -> Replaying<R> {
        Replaying {
            replay,
            analyst: Analyst::new(thresholds, findings),
        }
    }

    /// The next poll or failure, or `None` at the end (see [`Replaying::end`]).
    pub fn next_poll(&mut self) -> anyhow::Result<Option<Timed>> {
        Ok(self.replay.next_poll()?.map(|replayed| match replayed {
            Replayed::Poll(poll) => Timed {
                at: poll.snapshot.taken_at,
                message: Message::Update(Box::new(self.analyst.analyse(polled(poll)))),
            },
            Replayed::Failed { at, message } => Timed {
                at,
                message: Message::PollFailed(message),
            },
        }))
    }

    /// Every poll left, and how the recording ended.
    pub fn read_to_end(mut self) -> anyhow::Result<(Vec<Timed>, Option<ReplayEnd>)> {
        let mut polls = Vec::new();
        while let Some(poll) = self.next_poll()? {
            polls.push(poll);
        }
        Ok((polls, self.end().cloned()))
    }

    /// How the replay ended, once [`Replaying::next_poll`] has returned `None`.
    pub fn end(&self) -> Option<&ReplayEnd> {
        self.replay.end()
    }
}

fn polled(poll: RecordedPoll) -> Polled {
    Polled {
        snapshot: poll.snapshot,
        transitions: poll.transitions,
        counters: poll.counters,
        took: poll.took,
        events: poll.events,
        event_overflows: poll.event_overflows,
        // Recordings do not hold the sysctls, the pace nor the kernel's totals.
        limits: None,
        full_every: None,
        sockstat: None,
    }
}
