//! Remembers, across polls, which listeners were suspected of a SYN flood, and keeps
//! that verdict up while SYN cookies hide the evidence.
//!
//! Why it is needed: once a listener's SYN queue is full and `tcp_syncookies` is on,
//! the kernel answers new SYNs with a cookie and keeps no request socket for them
//! (`tcp_conn_request` in net/ipv4/tcp_input.c). The half-open count levels off, then
//! falls as old entries time out, while the attack goes on; the sign left is the
//! host-wide SyncookiesSent counter rising.
//!
//! The counters do not say which listener they were counted for, so the tracker only
//! keeps a verdict on listeners whose own half-open connections were once judged a
//! flood; it never flags a listener from the counters alone. Time arrives as the
//! interval between polls: this module never reads a clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// The listeners suspected of a SYN flood, each with how long ago the last evidence of
/// it was seen.
#[derive(Debug, Clone, Default)]
pub struct FloodTracker {
    quiet_for: HashMap<(IpAddr, u16), Duration>,
}

impl FloodTracker {
    pub fn new() -> FloodTracker {
        FloodTracker::default()
    }

    /// Records one poll.
    ///
    /// `suspected` are the listener endpoints whose numbers this poll were a flood;
    /// `cookies_rising` is whether SYN cookies were sent since the last poll;
    /// `since_last_poll` is the time between the two polls. A remembered listener is
    /// forgotten once `hold` has passed with neither its own evidence nor cookies.
    pub fn record(
        &mut self,
        suspected: impl IntoIterator<Item = (IpAddr, u16)>,
        cookies_rising: bool,
        since_last_poll: Duration,
        hold: Duration,
    ) {
        if cookies_rising {
            // Cookies mean some SYN queue is still full: the attack goes on.
            self.quiet_for
                .values_mut()
                .for_each(|quiet| *quiet = Duration::ZERO);
        } else {
            for quiet in self.quiet_for.values_mut() {
                *quiet = quiet.saturating_add(since_last_poll);
            }
            self.quiet_for.retain(|_, quiet| *quiet < hold);
        }
        for endpoint in suspected {
            self.quiet_for.insert(endpoint, Duration::ZERO);
        }
    }

    /// Whether the listener at this endpoint is still suspected of a flood.
    pub fn remembers(&self, endpoint: (IpAddr, u16)) -> bool {
        self.quiet_for.contains_key(&endpoint)
    }

    /// Every listener endpoint still suspected, in no particular order.
    pub fn remembered(&self) -> impl Iterator<Item = (IpAddr, u16)> + '_ {
        self.quiet_for.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);
    const HOLD: Duration = Duration::from_secs(3);

    fn port_80() -> (IpAddr, u16) {
        ("192.0.2.1".parse().expect("address"), 80)
    }

    #[test]
    fn a_suspected_listener_is_remembered_while_cookies_rise() {
        let mut tracker = FloodTracker::new();
        tracker.record([port_80()], false, SECOND, HOLD);
        for _ in 0..100 {
            tracker.record([], true, SECOND, HOLD);
        }
        assert!(tracker.remembers(port_80()));
    }

    #[test]
    fn a_suspected_listener_is_forgotten_after_the_hold_without_evidence() {
        let mut tracker = FloodTracker::new();
        tracker.record([port_80()], false, SECOND, HOLD);
        tracker.record([], false, SECOND, HOLD);
        tracker.record([], false, SECOND, HOLD);
        assert!(
            tracker.remembers(port_80()),
            "two seconds is inside the hold"
        );
        tracker.record([], false, SECOND, HOLD);
        assert!(!tracker.remembers(port_80()));
        assert_eq!(tracker.remembered().count(), 0);
    }

    #[test]
    fn rising_cookies_alone_flag_no_listener() {
        let mut tracker = FloodTracker::new();
        tracker.record([], true, SECOND, HOLD);
        assert_eq!(tracker.remembered().count(), 0);
    }
}
