//! How long a half-open connection has waited for the client's ACK, estimated from its
//! SYN+ACK retransmit timer.
//!
//! The kernel records no creation time for a request socket, so this is an estimate
//! that assumes the default schedule. It must not be shown as an exact age.

use std::time::Duration;

/// The first SYN+ACK timeout, `TCP_TIMEOUT_INIT` in `include/net/tcp.h`. A BPF program
/// (`BPF_SOCK_OPS_TIMEOUT_INIT`) can change it per connection; the estimate cannot see
/// that and assumes the default.
const FIRST_TIMEOUT_MS: u64 = 1_000;

/// `TCP_RTO_MAX`: no SYN+ACK interval grows beyond two minutes.
const LONGEST_TIMEOUT_MS: u64 = 120_000;

/// The last retransmit count whose interval is still below [`LONGEST_TIMEOUT_MS`]:
/// 2^6 s = 64 s, while 2^7 s = 128 s is capped.
const LAST_UNCAPPED: u32 = 6;

/// Estimates a request socket's age from what sock_diag reports for it: `retransmits`
/// (SYN+ACKs resent so far) and `expires_ms` (time until the next resend).
///
/// The kernel's `reqsk_timer_handler` (net/ipv4/inet_connection_sock.c) re-arms the
/// timer for `min(1 s << retransmits, TCP_RTO_MAX)`. So after `r` retransmits the socket
/// has lived through the intervals 1 s, 2 s, … 2^(r-1) s in full, plus the part of the
/// current 2^r s interval that is not still to run.
pub fn estimate(retransmits: u8, expires_ms: u32) -> Duration {
    let retransmits = u32::from(retransmits);
    let uncapped = retransmits.min(LAST_UNCAPPED);
    // Sum of 2^i for i in 0..=uncapped, in units of the first timeout.
    let doubling_ms = ((1u64 << (uncapped + 1)) - 1) * FIRST_TIMEOUT_MS;
    let capped_ms = u64::from(retransmits.saturating_sub(LAST_UNCAPPED)) * LONGEST_TIMEOUT_MS;
    let lived_ms = (doubling_ms + capped_ms).saturating_sub(u64::from(expires_ms));
    Duration::from_millis(lived_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_not_yet_retransmitted_has_lived_the_first_second_minus_what_remains() {
        assert_eq!(estimate(0, 700), Duration::from_millis(300));
    }

    #[test]
    fn after_two_retransmits_the_age_adds_the_one_and_two_second_intervals() {
        // 1 s + 2 s in full, then 4 s of which 1.5 s remain.
        assert_eq!(estimate(2, 1_500), Duration::from_millis(5_500));
    }

    #[test]
    fn the_default_five_retransmits_span_about_a_minute() {
        // tcp_synack_retries defaults to 5: 1+2+4+8+16 s, then the 32 s wait for the last.
        assert_eq!(estimate(5, 0), Duration::from_secs(63));
    }

    #[test]
    fn intervals_stop_doubling_at_two_minutes() {
        // 1+2+…+64 s = 127 s, then 120 s for each retransmit after the sixth.
        assert_eq!(estimate(8, 0), Duration::from_secs(127 + 2 * 120));
    }

    #[test]
    fn an_expiry_longer_than_the_schedule_gives_zero_not_an_underflow() {
        assert_eq!(estimate(0, 90_000), Duration::ZERO);
    }

    #[test]
    fn the_largest_retransmit_count_does_not_overflow() {
        assert!(estimate(u8::MAX, 0) > Duration::from_secs(8 * 3600));
    }
}
