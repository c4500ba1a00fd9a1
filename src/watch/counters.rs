//! The kernel's TcpExt counters that tell about SYN and accept queues, and their rates
//! between two readings.
//!
//! The counters are host-wide (one set per network namespace), not per listener. This
//! module only does arithmetic on readings the caller took; it must not read `/proc`.

use serde::Serialize;

/// One reading of the TcpExt counters in `/proc/net/netstat` that concern listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// `SyncookiesSent`: SYN+ACKs answered with a cookie because a SYN queue was full.
    pub syncookies_sent: u64,
    /// `TCPReqQFullDoCookies`: SYNs that met a full SYN queue and got a cookie.
    pub req_q_full_do_cookies: u64,
    /// `TCPReqQFullDrop`: SYNs dropped because a SYN queue was full and cookies are off.
    pub req_q_full_drop: u64,
    /// `ListenOverflows`: completed handshakes dropped because an accept queue was full.
    pub listen_overflows: u64,
    /// `ListenDrops`: every connection a listener dropped, overflows included.
    pub listen_drops: u64,
}

/// How fast each [`Counters`] field grew, per second.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CounterRates {
    pub syncookies_sent: f64,
    pub req_q_full_do_cookies: f64,
    pub req_q_full_drop: f64,
    pub listen_overflows: f64,
    pub listen_drops: f64,
}

impl CounterRates {
    /// The rates between two readings taken `seconds` apart.
    ///
    /// A counter that went down (the namespace was recreated, or the counters were
    /// reset) counts as zero growth rather than a huge one. A non-positive or
    /// non-finite interval gives all-zero rates: there is nothing to divide by.
    pub fn between(earlier: &Counters, later: &Counters, seconds: f64) -> CounterRates {
        if !(seconds.is_finite() && seconds > 0.0) {
            return CounterRates::default();
        }
        // u64 → f64 loses precision only above 2^53 events, far beyond any counter's life.
        let rate = |before: u64, after: u64| after.saturating_sub(before) as f64 / seconds;
        CounterRates {
            syncookies_sent: rate(earlier.syncookies_sent, later.syncookies_sent),
            req_q_full_do_cookies: rate(earlier.req_q_full_do_cookies, later.req_q_full_do_cookies),
            req_q_full_drop: rate(earlier.req_q_full_drop, later.req_q_full_drop),
            listen_overflows: rate(earlier.listen_overflows, later.listen_overflows),
            listen_drops: rate(earlier.listen_drops, later.listen_drops),
        }
    }

    /// Whether the kernel is answering SYNs with cookies at `min_rate` per second or
    /// more, which it does only while some listener's SYN queue is full.
    pub fn cookies_rising(&self, min_rate: f64) -> bool {
        self.syncookies_sent >= min_rate || self.req_q_full_do_cookies >= min_rate
    }
}

/// Something the host-wide counters say that no single listener row can: the counters
/// do not name the listener they were counted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostNote {
    /// SyncookiesSent or TCPReqQFullDoCookies is rising.
    SynCookiesActive,
    /// TCPReqQFullDrop is rising.
    SynsDropped,
    /// ListenOverflows or ListenDrops is rising.
    AcceptQueueOverflowing,
}

impl HostNote {
    /// The notes the rates call for, each rising at `min_rate` per second or more.
    pub fn from_rates(rates: &CounterRates, min_rate: f64) -> Vec<HostNote> {
        let mut notes = Vec::new();
        if rates.cookies_rising(min_rate) {
            notes.push(HostNote::SynCookiesActive);
        }
        if rates.req_q_full_drop >= min_rate {
            notes.push(HostNote::SynsDropped);
        }
        if rates.listen_overflows >= min_rate || rates.listen_drops >= min_rate {
            notes.push(HostNote::AcceptQueueOverflowing);
        }
        notes
    }

    /// The note in words, for the table, the TUI and JSON.
    pub fn describe(self) -> &'static str {
        match self {
            HostNote::SynCookiesActive => {
                "SYN cookies active: a SYN queue is full, so half-open counts understate the load"
            }
            HostNote::SynsDropped => "SYNs dropped: a SYN queue is full and SYN cookies are off",
            HostNote::AcceptQueueOverflowing => {
                "accept queue overflowing: completed connections dropped before accept()"
            }
        }
    }
}

impl Serialize for HostNote {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(syncookies_sent: u64, listen_overflows: u64) -> Counters {
        Counters {
            syncookies_sent,
            listen_overflows,
            ..Counters::default()
        }
    }

    #[test]
    fn rates_are_growth_per_second_between_two_readings() {
        let rates = CounterRates::between(&reading(1_000, 10), &reading(3_000, 10), 2.0);
        assert_eq!(rates.syncookies_sent, 1_000.0);
        assert_eq!(rates.listen_overflows, 0.0);
    }

    #[test]
    fn a_counter_that_went_down_counts_as_no_growth() {
        let rates = CounterRates::between(&reading(5_000, 0), &reading(20, 0), 1.0);
        assert_eq!(rates.syncookies_sent, 0.0);
    }

    #[test]
    fn a_zero_or_negative_interval_gives_zero_rates() {
        for seconds in [0.0, -1.0, f64::NAN] {
            let rates = CounterRates::between(&reading(0, 0), &reading(100, 100), seconds);
            assert_eq!(rates, CounterRates::default());
        }
    }

    #[test]
    fn either_cookie_counter_shows_cookies_rising() {
        let by_do_cookies = CounterRates {
            req_q_full_do_cookies: 5.0,
            ..CounterRates::default()
        };
        assert!(by_do_cookies.cookies_rising(1.0));
        assert!(!CounterRates::default().cookies_rising(1.0));
    }

    #[test]
    fn rising_counters_become_host_notes_in_words() {
        let rates = CounterRates {
            syncookies_sent: 800.0,
            listen_drops: 3.0,
            ..CounterRates::default()
        };
        let notes = HostNote::from_rates(&rates, 1.0);
        assert_eq!(
            notes,
            [HostNote::SynCookiesActive, HostNote::AcceptQueueOverflowing]
        );
        assert!(notes[0].describe().starts_with("SYN cookies active"));
    }
}
