//! Repeated errors said once, then counted: with `--all-netns` hundreds of namespaces
//! can fail every poll with the same error (no descriptor left), and a line per
//! failure buried everything else. Each key (a namespace) says a new error at once;
//! the same error again is counted, and said with its count at most once per period.
//!
//! Pure: the caller hands in the poll's time.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

/// How often a namespace's unchanged error is said again, with its count.
pub const REPEAT_EVERY: Duration = Duration::from_secs(30);

/// The last error said for each key, and how often it came since.
#[derive(Debug)]
pub struct Repeats {
    every: Duration,
    by_key: HashMap<u64, Said>,
}

#[derive(Debug)]
struct Said {
    message: String,
    at: SystemTime,
    /// Failures with this message since it was last said.
    since: u32,
}

impl Repeats {
    pub fn new(every: Duration) -> Repeats {
        Repeats {
            every,
            by_key: HashMap::new(),
        }
    }

    /// `key` failed with `message` at `at`. Returns how many failures the line to write
    /// stands for (1: a new error; more: the same one, that many times since it was
    /// last said, this one included), or none when it is not time to say it again.
    pub fn failed(&mut self, key: u64, message: &str, at: SystemTime) -> Option<u32> {
        if let Some(said) = self.by_key.get_mut(&key)
            && said.message == message
        {
            said.since = said.since.saturating_add(1);
            // A clock set back says it at once rather than stay quiet until it catches up.
            let due = at
                .duration_since(said.at)
                .map_or(true, |elapsed| elapsed >= self.every);
            if !due {
                return None;
            }
            let count = said.since;
            said.at = at;
            said.since = 0;
            return Some(count);
        }
        self.by_key.insert(
            key,
            Said {
                message: message.to_owned(),
                at,
                since: 0,
            },
        );
        Some(1)
    }

    /// `key` polled again: its next error, even the same one, is said at once.
    pub fn recovered(&mut self, key: u64) {
        self.by_key.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seconds)
    }

    #[test]
    fn the_same_error_every_second_is_said_once_then_with_its_count_each_period() {
        let mut repeats = Repeats::new(Duration::from_secs(10));
        let said: Vec<(u64, u32)> = (0..=25)
            .filter_map(|second| Some((second, repeats.failed(7, "EMFILE", at(second))?)))
            .collect();
        assert_eq!(said, [(0, 1), (10, 10), (20, 10)]);
    }

    #[test]
    fn each_namespace_says_its_own_first_error_at_once() {
        let mut repeats = Repeats::new(Duration::from_secs(10));
        assert_eq!(repeats.failed(1, "EMFILE", at(0)), Some(1));
        assert_eq!(repeats.failed(2, "EMFILE", at(1)), Some(1));
        assert_eq!(repeats.failed(1, "EMFILE", at(2)), None);
    }

    #[test]
    fn a_different_error_is_said_at_once() {
        let mut repeats = Repeats::new(Duration::from_secs(10));
        assert_eq!(repeats.failed(1, "EMFILE", at(0)), Some(1));
        assert_eq!(repeats.failed(1, "ENOBUFS", at(1)), Some(1));
        assert_eq!(repeats.failed(1, "ENOBUFS", at(2)), None);
    }

    #[test]
    fn after_a_good_poll_the_same_error_is_said_at_once() {
        let mut repeats = Repeats::new(Duration::from_secs(10));
        assert_eq!(repeats.failed(1, "EMFILE", at(0)), Some(1));
        repeats.recovered(1);
        assert_eq!(repeats.failed(1, "EMFILE", at(1)), Some(1));
    }

    #[test]
    fn a_clock_set_back_does_not_silence_an_error() {
        let mut repeats = Repeats::new(Duration::from_secs(10));
        assert_eq!(repeats.failed(1, "EMFILE", at(100)), Some(1));
        assert_eq!(repeats.failed(1, "EMFILE", at(0)), Some(1));
    }
}
