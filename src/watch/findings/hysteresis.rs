//! Raises a finding once its condition has held for a few polls in a row, and clears
//! it once the condition has been gone for a hold time, so that a value flapping around
//! its threshold gives one finding, not a new one each poll. Says when each finding was
//! raised (`since`) and reports each raise and clear as an event.
//!
//! A kind and a subject name one incident: the candidate of this poll with the same
//! pair updates the raised finding (its numbers, its severity) without raising it
//! again. Pure: the time of each poll comes in with it.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use super::rules::Candidate;
use super::{Finding, Kind, Subject};

/// A finding raised or cleared by a poll.
#[derive(Debug, Clone, PartialEq)]
pub enum FindingEvent {
    Raised(Finding),
    /// The finding as it was last seen.
    Cleared(Finding),
}

/// One incident across polls.
#[derive(Debug)]
struct Track {
    /// Polls in a row that found the condition, up to the last that did.
    in_a_row: u32,
    /// The number of the last poll that found it.
    last_poll: u64,
    /// When the finding was raised, if it was.
    raised: Option<SystemTime>,
    /// The last poll that found the condition.
    last_seen: SystemTime,
    finding: Finding,
}

/// The raise and clear rules, and every incident being followed.
#[derive(Debug)]
pub struct Hysteresis {
    raise_after_polls: u32,
    clear_after: Duration,
    /// The number of the poll being taken in, counting from 1.
    poll: u64,
    tracks: HashMap<(Kind, Subject), Track>,
}

impl Hysteresis {
    /// Raises after `raise_after_polls` polls in a row (at least 1), clears after the
    /// condition has been gone for `clear_after`.
    pub fn new(raise_after_polls: u32, clear_after: Duration) -> Hysteresis {
        Hysteresis {
            raise_after_polls: raise_after_polls.max(1),
            clear_after,
            poll: 0,
            tracks: HashMap::new(),
        }
    }

    /// Takes one poll's candidates, taken at `at`; returns the findings raised now,
    /// most urgent first, and what this poll raised or cleared.
    pub(crate) fn update(
        &mut self,
        at: SystemTime,
        candidates: Vec<Candidate>,
    ) -> (Vec<Finding>, Vec<FindingEvent>) {
        let mut events = Vec::new();
        self.poll += 1;
        let poll = self.poll;
        for Candidate { finding, at_once } in candidates {
            let key = (finding.kind, finding.subject.clone());
            let track = self.tracks.entry(key).or_insert_with(|| Track {
                in_a_row: 0,
                last_poll: 0,
                raised: None,
                last_seen: at,
                finding: finding.clone(),
            });
            if track.last_poll == poll {
                // A rule named the same incident twice in one poll: keep the first.
                continue;
            }
            track.in_a_row = if track.last_poll + 1 == poll {
                track.in_a_row + 1
            } else {
                1
            };
            track.last_poll = poll;
            track.last_seen = at;
            track.finding = Finding {
                since: track.raised,
                ..finding
            };
            if track.raised.is_none() && (at_once || track.in_a_row >= self.raise_after_polls) {
                track.raised = Some(at);
                track.finding.since = Some(at);
                events.push(FindingEvent::Raised(track.finding.clone()));
            }
        }

        let clear_after = self.clear_after;
        self.tracks.retain(|_, track| {
            if track.last_poll == poll {
                return true;
            }
            if track.raised.is_none() {
                // Never raised: one poll without the condition starts the count over.
                return false;
            }
            let gone_for = at.duration_since(track.last_seen).unwrap_or_default();
            if gone_for >= clear_after {
                events.push(FindingEvent::Cleared(track.finding.clone()));
                false
            } else {
                true
            }
        });

        let mut current: Vec<Finding> = self
            .tracks
            .values()
            .filter(|track| track.raised.is_some())
            .map(|track| track.finding.clone())
            .collect();
        current.sort_by(|a, b| a.urgency().cmp(&b.urgency()));
        events.sort_by(|a, b| event_order(a).cmp(&event_order(b)));
        (current, events)
    }
}

/// Raises before clears, each most urgent first: the order a stream prints them in.
pub(crate) fn event_order(event: &FindingEvent) -> (bool, (super::Severity, Kind, &Subject)) {
    match event {
        FindingEvent::Raised(finding) => (false, finding.urgency()),
        FindingEvent::Cleared(finding) => (true, finding.urgency()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::findings::{Evidence, Severity};

    const SECOND: Duration = Duration::from_secs(1);

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn candidate(port: u16, severity: Severity) -> Candidate {
        Candidate {
            finding: Finding::new(
                Kind::ListenDrops,
                severity,
                Subject::LocalPort(port),
                format!("port {port}"),
                Evidence::default(),
            ),
            at_once: false,
        }
    }

    fn ports(findings: &[Finding]) -> Vec<Subject> {
        findings.iter().map(|f| f.subject.clone()).collect()
    }

    #[test]
    fn one_poll_raises_nothing_and_the_second_in_a_row_raises_it_once() {
        let mut hysteresis = Hysteresis::new(2, 30 * SECOND);
        let (current, events) = hysteresis.update(at(0), vec![candidate(80, Severity::Critical)]);
        assert!(current.is_empty() && events.is_empty());

        let (current, events) = hysteresis.update(at(1), vec![candidate(80, Severity::Critical)]);
        assert_eq!(ports(&current), [Subject::LocalPort(80)]);
        assert_eq!(current[0].since, Some(at(1)));
        assert!(matches!(&events[..], [FindingEvent::Raised(f)] if f.since == Some(at(1))));

        let (current, events) = hysteresis.update(at(2), vec![candidate(80, Severity::Critical)]);
        assert_eq!(
            current[0].since,
            Some(at(1)),
            "since stays the time it was raised"
        );
        assert!(events.is_empty(), "raised once, not each poll");
    }

    #[test]
    fn a_condition_seen_every_other_poll_is_never_raised() {
        let mut hysteresis = Hysteresis::new(2, 30 * SECOND);
        for second in 0..20 {
            let candidates = if second % 2 == 0 {
                vec![candidate(80, Severity::Critical)]
            } else {
                Vec::new()
            };
            let (current, events) = hysteresis.update(at(second), candidates);
            assert!(
                current.is_empty() && events.is_empty(),
                "raised at {second} s"
            );
        }
    }

    #[test]
    fn a_raised_finding_stays_through_gaps_shorter_than_the_hold_and_clears_after_it() {
        let mut hysteresis = Hysteresis::new(2, 30 * SECOND);
        hysteresis.update(at(0), vec![candidate(80, Severity::Critical)]);
        hysteresis.update(at(1), vec![candidate(80, Severity::Critical)]);
        // Flapping: gone for 20 s, back for one poll, gone again.
        for second in 2..22 {
            let (current, events) = hysteresis.update(at(second), Vec::new());
            assert_eq!(current.len(), 1, "held at {second} s");
            assert!(events.is_empty());
        }
        let (_, events) = hysteresis.update(at(22), vec![candidate(80, Severity::Critical)]);
        assert!(events.is_empty(), "the same incident, not a new one");
        let (current, _) = hysteresis.update(at(51), Vec::new());
        assert_eq!(current.len(), 1, "29 s after the last sighting");
        let (current, events) = hysteresis.update(at(52), Vec::new());
        assert!(current.is_empty());
        assert!(
            matches!(&events[..], [FindingEvent::Cleared(f)] if f.subject == Subject::LocalPort(80))
        );
    }

    #[test]
    fn a_candidate_marked_at_once_is_raised_on_its_first_poll() {
        let mut hysteresis = Hysteresis::new(2, 30 * SECOND);
        let mut urgent = candidate(80, Severity::Critical);
        urgent.at_once = true;
        let (current, events) = hysteresis.update(at(0), vec![urgent]);
        assert_eq!(current.len(), 1);
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn a_raised_finding_takes_the_latest_numbers_and_severity() {
        let mut hysteresis = Hysteresis::new(2, 30 * SECOND);
        hysteresis.update(at(0), vec![candidate(80, Severity::Warning)]);
        hysteresis.update(at(1), vec![candidate(80, Severity::Warning)]);
        let (current, events) = hysteresis.update(at(2), vec![candidate(80, Severity::Critical)]);
        assert_eq!(current[0].severity, Severity::Critical);
        assert!(events.is_empty());
    }

    #[test]
    fn findings_come_most_severe_first() {
        let mut hysteresis = Hysteresis::new(1, 30 * SECOND);
        let (current, _) = hysteresis.update(
            at(0),
            vec![
                candidate(9000, Severity::Warning),
                candidate(80, Severity::Critical),
            ],
        );
        assert_eq!(
            ports(&current),
            [Subject::LocalPort(80), Subject::LocalPort(9000)]
        );
    }
}
