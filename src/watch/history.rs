//! The bounded history the live view draws: the per-state counts of each poll, for the
//! timeline, and the latest transitions, for the event log.
//!
//! Both are [`Ring`]s of fixed capacity, so memory stays flat however long tcpscope
//! runs and however much churns; the oldest entries are overwritten. It stores what it
//! is given and computes nothing from snapshots itself.

use std::time::SystemTime;

use crate::diff::Transition;
use crate::snapshot::Counts;
use crate::tcp::State;

use super::ring::{Iter, Ring};

/// One poll on the timeline: when it was taken and how many sockets were in each state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Poll {
    pub taken_at: SystemTime,
    pub counts: Counts,
}

/// One line of the event log: a transition and the poll that saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub seen_at: SystemTime,
    pub transition: Transition,
    /// The inode of the network namespace it happened in, when several are watched:
    /// the same 4-tuple may be two connections in two namespaces.
    pub netns: Option<u64>,
}

/// The last polls' counts and the last transitions.
#[derive(Debug, Clone)]
pub struct History {
    polls: Ring<Poll>,
    events: Ring<Event>,
}

impl History {
    /// Ten minutes of polls at the default one-second interval.
    pub const DEFAULT_POLLS: usize = 600;
    /// About 1 MB of transitions.
    pub const DEFAULT_EVENTS: usize = 10_000;

    /// A history that keeps the last `polls` polls and the last `events` transitions.
    /// All its memory is taken here.
    pub fn new(polls: usize, events: usize) -> History {
        History {
            polls: Ring::new(polls),
            events: Ring::new(events),
        }
    }

    /// Adds one poll: its counts, and the transitions the differ found in it.
    /// `netns` names the namespace of each transition, in the same order; it is empty
    /// when only one namespace is watched.
    pub fn record(
        &mut self,
        taken_at: SystemTime,
        counts: Counts,
        transitions: &[Transition],
        netns: &[u64],
    ) {
        self.polls.push(Poll { taken_at, counts });
        self.note(taken_at, transitions, netns);
    }

    /// Adds transitions seen at `seen_at` without a poll's counts: those a fast-lane
    /// poll resolved from destroy messages between full dumps.
    pub fn note(&mut self, seen_at: SystemTime, transitions: &[Transition], netns: &[u64]) {
        for (index, transition) in transitions.iter().enumerate() {
            self.events.push(Event {
                seen_at,
                transition: *transition,
                netns: netns.get(index).copied(),
            });
        }
    }

    /// The polls kept, oldest first.
    pub fn polls(&self) -> Iter<'_, Poll> {
        self.polls.iter()
    }

    /// The transitions kept, oldest first; `.rev()` gives the newest first.
    pub fn events(&self) -> Iter<'_, Event> {
        self.events.iter()
    }

    /// How many sockets were in `state` at each poll kept, oldest first: one line of
    /// the timeline.
    pub fn series(&self, state: State) -> impl ExactSizeIterator<Item = u32> + '_ {
        self.polls.iter().map(move |poll| poll.counts.get(state))
    }

    pub fn latest(&self) -> Option<&Poll> {
        self.polls.newest()
    }

    /// How many transitions were dropped to make room, so the log can say so.
    pub fn events_dropped(&self) -> u64 {
        self.events.dropped()
    }
}

impl Default for History {
    fn default() -> History {
        History::new(History::DEFAULT_POLLS, History::DEFAULT_EVENTS)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    use super::*;
    use crate::diff::Kind;
    use crate::snapshot::{Endpoints, Family};
    use crate::tcp::Path;

    fn at(second: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(second)
    }

    fn counts(established: u32) -> Counts {
        let mut counts = Counts::default();
        for _ in 0..established {
            counts.add(State::Established);
        }
        counts
    }

    fn opened(port: u16) -> Transition {
        let address = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Transition {
            kind: Kind::Opened,
            endpoints: Endpoints {
                family: Family::Ipv4,
                local: (address, 80),
                remote: (address, port),
            },
            from: None,
            to: Some(State::SynRecv),
            via: Path::EMPTY,
            exact: true,
            ending: None,
            cookie: u64::from(port),
        }
    }

    #[test]
    fn each_poll_adds_a_point_to_every_state_s_timeline() {
        let mut history = History::new(10, 10);
        history.record(at(1), counts(3), &[], &[]);
        history.record(at(2), counts(5), &[], &[]);
        assert_eq!(
            history.series(State::Established).collect::<Vec<_>>(),
            [3, 5]
        );
        assert_eq!(history.series(State::TimeWait).collect::<Vec<_>>(), [0, 0]);
        assert_eq!(history.latest().map(|poll| poll.taken_at), Some(at(2)));
    }

    #[test]
    fn the_timeline_keeps_only_the_last_polls() {
        let mut history = History::new(3, 10);
        for second in 0..10 {
            history.record(at(second), counts(second as u32), &[], &[]);
        }
        let kept: Vec<_> = history.polls().map(|poll| poll.taken_at).collect();
        assert_eq!(kept, [at(7), at(8), at(9)]);
    }

    #[test]
    fn the_event_log_keeps_the_newest_transitions_with_their_poll_time() {
        let mut history = History::new(10, 3);
        history.record(at(1), counts(0), &[opened(1), opened(2)], &[]);
        history.record(at(2), counts(0), &[opened(3), opened(4)], &[]);
        let newest_first: Vec<_> = history
            .events()
            .rev()
            .map(|event| (event.transition.cookie, event.seen_at))
            .collect();
        assert_eq!(newest_first, [(4, at(2)), (3, at(2)), (2, at(1))]);
        assert_eq!(history.events_dropped(), 1);
    }

    #[test]
    fn a_day_of_churn_leaves_the_history_its_fixed_size() {
        let mut history = History::new(600, 10_000);
        let churn: Vec<_> = (0..100).map(opened).collect();
        for second in 0..86_400 {
            history.record(at(second), counts(7), &churn, &[]);
        }
        assert_eq!(history.polls().len(), 600);
        assert_eq!(history.events().len(), 10_000);
        assert_eq!(history.events_dropped(), 86_400 * 100 - 10_000);
        assert_eq!(history.latest().map(|poll| poll.taken_at), Some(at(86_399)));
    }
}
