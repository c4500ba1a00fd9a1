//! The timeline of a recording shown in the view (`--replay FILE` on a terminal): which
//! recorded poll is on screen, whether it plays, and how fast.
//!
//! Pure: it holds the recorded polls and a position, and says how long to wait before
//! the next one, from the gap between their recorded times divided by the speed. It
//! never reads the clock; the event loop sleeps and answers with
//! [`crate::tui::app::Event::PlaybackDue`].

use std::time::{Duration, SystemTime};

use crate::poll::replay::Timed;

/// The speeds `<` and `>` step through.
pub const SPEEDS: [f64; 5] = [0.5, 1.0, 2.0, 4.0, 8.0];
const NORMAL_SPEED: usize = 1;

/// A recording's polls and where the view is in them.
#[derive(Debug, Clone)]
pub struct Playback {
    polls: Vec<Timed>,
    /// The index of the poll on screen.
    position: usize,
    pub playing: bool,
    speed: usize,
    /// Bumped on every change of position, speed or play state, so that a wake-up asked
    /// for before the change is recognised as stale and ignored.
    generation: u64,
    /// The interval the recording was made at (see [`recorded_interval`]).
    interval: Option<Duration>,
}

/// What the status line says about the replay.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaybackStatus {
    /// 1-based: the poll on screen, of `total`.
    pub poll: usize,
    pub total: usize,
    pub playing: bool,
    pub speed: f64,
    /// Time since the recording's first poll.
    pub elapsed: Duration,
    /// The interval the recording was made at; `None` for a single poll.
    pub interval: Option<Duration>,
}

impl Playback {
    /// A playback of `polls`, stopped on the first one. `None` for an empty recording.
    pub fn new(polls: Vec<Timed>) -> Option<Playback> {
        if polls.is_empty() {
            return None;
        }
        let interval = recorded_interval(&polls);
        Some(Playback {
            polls,
            position: 0,
            playing: false,
            speed: NORMAL_SPEED,
            generation: 0,
            interval,
        })
    }

    pub fn polls(&self) -> &[Timed] {
        &self.polls
    }

    pub fn position(&self) -> usize {
        self.position
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Moves to poll `index` (clamped to the recording) and returns the new position.
    pub fn seek(&mut self, index: usize) -> usize {
        self.position = index.min(self.polls.len() - 1);
        self.generation += 1;
        self.position
    }

    /// Moves `polls` forward or back, staying inside the recording.
    pub fn step(&mut self, polls: isize) -> usize {
        self.seek(self.position.saturating_add_signed(polls))
    }

    pub fn at_end(&self) -> bool {
        self.position + 1 >= self.polls.len()
    }

    pub fn toggle_playing(&mut self) {
        self.playing = !self.playing;
        self.generation += 1;
    }

    /// Steps the speed up (`direction` > 0) or down, within [`SPEEDS`].
    pub fn change_speed(&mut self, direction: isize) {
        self.speed = self
            .speed
            .saturating_add_signed(direction.signum())
            .min(SPEEDS.len() - 1);
        self.generation += 1;
    }

    pub fn speed(&self) -> f64 {
        SPEEDS[self.speed]
    }

    /// How long to show the current poll before the next, at this speed; `None` when
    /// paused or at the end. Recorded times that go backwards (the clock was set back
    /// while recording) count as no wait.
    pub fn wait_before_next(&self) -> Option<Duration> {
        if !self.playing || self.at_end() {
            return None;
        }
        let now = self.polls[self.position].at;
        let next = self.polls[self.position + 1].at;
        let gap = next.duration_since(now).unwrap_or(Duration::ZERO);
        Some(gap.div_f64(self.speed()))
    }

    pub fn status(&self) -> PlaybackStatus {
        let first: SystemTime = self.polls[0].at;
        PlaybackStatus {
            poll: self.position + 1,
            total: self.polls.len(),
            playing: self.playing,
            speed: self.speed(),
            elapsed: self.polls[self.position]
                .at
                .duration_since(first)
                .unwrap_or(Duration::ZERO),
            interval: self.interval,
        }
    }
}

/// The interval a recording was made at, which it does not store: the median gap
/// between its polls, so that a pause in recording (one file appended to by two runs)
/// or a late poll does not count. `None` with fewer than two polls.
fn recorded_interval(polls: &[Timed]) -> Option<Duration> {
    let mut gaps: Vec<Duration> = polls
        .windows(2)
        .filter_map(|pair| match pair {
            [before, after] => after.at.duration_since(before.at).ok(),
            _ => None,
        })
        .filter(|gap| !gap.is_zero())
        .collect();
    gaps.sort_unstable();
    gaps.get(gaps.len() / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poll::update::Message;

    fn polls(seconds: &[u64]) -> Playback {
        let polls = seconds
            .iter()
            .map(|&s| Timed {
                at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s),
                message: Message::PollFailed("recorded".into()),
            })
            .collect();
        Playback::new(polls).unwrap_or_else(|| panic!("no polls"))
    }

    #[test]
    fn the_recorded_interval_is_the_usual_gap_whatever_a_pause_or_a_late_poll() {
        assert_eq!(
            polls(&[0, 2, 4, 6, 60, 62, 65]).status().interval,
            Some(Duration::from_secs(2))
        );
        assert_eq!(polls(&[0]).status().interval, None);
    }

    #[test]
    fn an_empty_recording_has_no_playback() {
        assert!(Playback::new(Vec::new()).is_none());
    }

    #[test]
    fn the_wait_is_the_recorded_gap_divided_by_the_speed() {
        let mut playback = polls(&[0, 2, 3]);
        assert_eq!(playback.wait_before_next(), None, "paused");
        playback.toggle_playing();
        assert_eq!(playback.wait_before_next(), Some(Duration::from_secs(2)));
        playback.change_speed(1);
        assert_eq!(playback.wait_before_next(), Some(Duration::from_secs(1)));
        playback.change_speed(-1);
        playback.change_speed(-1);
        assert_eq!(playback.wait_before_next(), Some(Duration::from_secs(4)));
    }

    #[test]
    fn speed_stops_at_half_and_eight_times() {
        let mut playback = polls(&[0]);
        for _ in 0..10 {
            playback.change_speed(1);
        }
        assert_eq!(playback.speed(), 8.0);
        for _ in 0..10 {
            playback.change_speed(-1);
        }
        assert_eq!(playback.speed(), 0.5);
    }

    #[test]
    fn seeking_stays_inside_the_recording_and_the_last_poll_has_no_next() {
        let mut playback = polls(&[0, 1, 2]);
        playback.toggle_playing();
        assert_eq!(playback.step(-5), 0);
        assert_eq!(playback.step(10), 2);
        assert!(playback.at_end());
        assert_eq!(playback.wait_before_next(), None);
        assert_eq!(playback.status().elapsed, Duration::from_secs(2));
        assert_eq!((playback.status().poll, playback.status().total), (3, 3));
    }
}
