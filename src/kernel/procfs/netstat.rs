//! The TcpExt counters of `/proc/net/netstat`: the kernel's own tally of SYN cookies,
//! full SYN queues and accept-queue overflows, which the SYN flood verdict compares
//! between polls.
//!
//! The procfs crate has no parser for this file, so this is a small one. It reads only
//! the `TcpExt` section; it must not interpret the counters (deltas and verdicts belong
//! above `kernel/`).

use std::fs;

use anyhow::Context;
use thiserror::Error;

/// Read through `thread-self`, not `/proc/net` (which is `/proc/self/net`): `self` is the
/// thread-group leader, so a thread that has unshared its network namespace would read
/// the main thread's namespace. `thread-self` is right for both.
const NETSTAT: &str = "/proc/thread-self/net/netstat";

/// One TcpExt counter tcpscope keeps: the one list that parsing, `--json`, the metrics,
/// the recording and the view iterate, so that keeping one more counter is one entry
/// in the `tcpext_counters!` list below.
#[derive(Debug, Clone, Copy)]
pub struct Counter {
    /// Its name in the TcpExt header line of `/proc/net/netstat`.
    pub kernel_name: &'static str,
    /// tcpscope's name for it, snake_case: the [`TcpExt`] field, the key in `--json`'s
    /// `kernel` object, and the metric's name after `tcpscope_tcpext_`.
    pub key: &'static str,
    /// What it counts, as one sentence without its full stop.
    pub help: &'static str,
    read: fn(&TcpExt) -> u64,
    slot: fn(&mut TcpExt) -> &mut u64,
}

impl Counter {
    /// This counter's value in `counters`.
    pub fn get(&self, counters: &TcpExt) -> u64 {
        (self.read)(counters)
    }

    /// Where this counter's value goes in `counters`.
    pub fn get_mut<'a>(&self, counters: &'a mut TcpExt) -> &'a mut u64 {
        (self.slot)(counters)
    }
}

/// Declares [`TcpExt`] and [`COUNTERS`] from one list of `key: "KernelName", "help"`.
macro_rules! tcpext_counters {
    ($($key:ident: $kernel_name:literal, $help:literal;)+) => {
        /// The TcpExt counters tcpscope uses. They count since the network namespace
        /// was created and only grow (until they wrap).
        ///
        /// A counter the running kernel does not print (an older kernel) reads as 0:
        /// callers compare deltas between polls, and a counter that never moves is what
        /// such a kernel would report anyway.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct TcpExt {
            $(
                #[doc = concat!("`", $kernel_name, "`: ", $help, ".")]
                pub $key: u64,
            )+
        }

        /// Every counter of [`TcpExt`], in the order recordings store them.
        pub const COUNTERS: &[Counter] = &[
            $(
                Counter {
                    kernel_name: $kernel_name,
                    key: stringify!($key),
                    help: $help,
                    read: |counters| counters.$key,
                    slot: |counters| &mut counters.$key,
                },
            )+
        ];
    };
}

// Recordings store the counters in this order, so a new counter goes at the end.
tcpext_counters! {
    syncookies_sent: "SyncookiesSent",
        "SYN+ACKs answered with a SYN cookie";
    syncookies_recv: "SyncookiesRecv",
        "ACKs that carried a valid SYN cookie";
    syncookies_failed: "SyncookiesFailed",
        "ACKs that looked like SYN cookie replies but did not validate";
    listen_overflows: "ListenOverflows",
        "Handshakes dropped because an accept queue was full";
    listen_drops: "ListenDrops",
        "All drops at a listener, overflows included";
    req_q_full_do_cookies: "TCPReqQFullDoCookies",
        "SYNs that found the SYN queue full and got a cookie";
    req_q_full_drop: "TCPReqQFullDrop",
        "SYNs that found the SYN queue full and were dropped";
    tcp_time_wait_overflow: "TCPTimeWaitOverflow",
        "Closing connections that got no TIME_WAIT entry because tcp_max_tw_buckets were all in use";
}

impl TcpExt {
    /// Where the counter the kernel calls `name` goes, if tcpscope keeps it.
    fn counter_mut(&mut self, name: &str) -> Option<&mut u64> {
        COUNTERS
            .iter()
            .find(|counter| counter.kernel_name == name)
            .map(|counter| counter.get_mut(self))
    }
}

/// Why the text of `/proc/net/netstat` could not be read as TcpExt counters.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NetstatError {
    #[error("no TcpExt section: no line starts with `TcpExt:`")]
    MissingSection,
    #[error("the TcpExt header line is not followed by a `TcpExt:` line of values")]
    MissingValues,
    #[error("TcpExt has {names} counter names but {values} values")]
    CountMismatch { names: usize, values: usize },
    #[error("TcpExt counter {name} has the value {value:?}, which is not a counter")]
    BadValue { name: String, value: String },
}

/// Parses the text of `/proc/net/netstat`.
///
/// The file is pairs of lines, a header of names and then a line of values, each
/// starting with the section name (`TcpExt:`, `IpExt:`, `MPTcpExt:`). Only the first
/// `TcpExt` pair is read, but every value in it must be a number, so a damaged section
/// is an error rather than a half-filled struct.
pub fn parse_netstat(text: &str) -> Result<TcpExt, NetstatError> {
    const SECTION: &str = "TcpExt:";

    let mut lines = text.lines();
    let names = lines
        .by_ref()
        .find_map(|line| line.strip_prefix(SECTION))
        .ok_or(NetstatError::MissingSection)?;
    let values = lines
        .next()
        .and_then(|line| line.strip_prefix(SECTION))
        .ok_or(NetstatError::MissingValues)?;

    let name_count = names.split_ascii_whitespace().count();
    let value_count = values.split_ascii_whitespace().count();
    if name_count != value_count {
        return Err(NetstatError::CountMismatch {
            names: name_count,
            values: value_count,
        });
    }

    let mut counters = TcpExt::default();
    for (name, value) in names
        .split_ascii_whitespace()
        .zip(values.split_ascii_whitespace())
    {
        let number: u64 = value.parse().map_err(|_| NetstatError::BadValue {
            name: name.to_owned(),
            value: value.to_owned(),
        })?;
        if let Some(counter) = counters.counter_mut(name) {
            *counter = number;
        }
    }
    Ok(counters)
}

/// Reads the TcpExt counters of the calling thread's network namespace.
pub fn read_tcpext() -> anyhow::Result<TcpExt> {
    let text = fs::read_to_string(NETSTAT).context("reading /proc/thread-self/net/netstat")?;
    parse_netstat(&text).context("parsing /proc/thread-self/net/netstat")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured on Linux 6.18 in a fresh network namespace with `tcp_syncookies=2`,
    /// after six non-blocking connects to a loopback listener with `listen(0)` that never
    /// accepted: real kernel output with the interesting counters non-zero.
    const SAMPLE: &str = include_str!("fixtures/netstat-6.18-syncookies.txt");

    #[test]
    fn a_real_netstat_file_yields_its_tcpext_counters() {
        let counters = parse_netstat(SAMPLE);

        assert_eq!(
            counters,
            Ok(TcpExt {
                syncookies_sent: 1,
                syncookies_recv: 1,
                syncookies_failed: 0,
                listen_overflows: 10,
                listen_drops: 10,
                req_q_full_do_cookies: 11,
                req_q_full_drop: 0,
                tcp_time_wait_overflow: 0,
            })
        );
    }

    #[test]
    fn each_counter_is_taken_from_its_own_column() {
        let text = "\
TcpExt: TCPReqQFullDrop ListenDrops SyncookiesFailed TCPReqQFullDoCookies SyncookiesRecv ListenOverflows SyncookiesSent TCPTimeWaitOverflow
TcpExt: 7 5 3 6 2 4 1 8
";
        assert_eq!(
            parse_netstat(text),
            Ok(TcpExt {
                syncookies_sent: 1,
                syncookies_recv: 2,
                syncookies_failed: 3,
                listen_overflows: 4,
                listen_drops: 5,
                req_q_full_do_cookies: 6,
                req_q_full_drop: 7,
                tcp_time_wait_overflow: 8,
            })
        );
    }

    #[test]
    fn counters_an_older_kernel_lacks_read_as_zero() {
        let text = "TcpExt: SyncookiesSent ListenOverflows\nTcpExt: 3 9\n";

        let counters = parse_netstat(text);

        assert_eq!(
            counters,
            Ok(TcpExt {
                syncookies_sent: 3,
                listen_overflows: 9,
                ..TcpExt::default()
            })
        );
    }

    #[test]
    fn the_tcpext_section_is_found_after_other_sections() {
        let text = "IpExt: InNoRoutes\nIpExt: 4\nTcpExt: ListenDrops\nTcpExt: 8\n";

        let counters = parse_netstat(text);

        assert_eq!(counters.map(|c| c.listen_drops), Ok(8));
    }

    #[test]
    fn counters_at_the_top_of_the_u64_range_are_kept() {
        let text = "TcpExt: ListenDrops\nTcpExt: 18446744073709551615\n";

        assert_eq!(parse_netstat(text).map(|c| c.listen_drops), Ok(u64::MAX));
    }

    #[test]
    fn more_names_than_values_is_an_error() {
        let text = "TcpExt: SyncookiesSent ListenDrops\nTcpExt: 1\n";

        assert_eq!(
            parse_netstat(text),
            Err(NetstatError::CountMismatch {
                names: 2,
                values: 1
            })
        );
    }

    #[test]
    fn more_values_than_names_is_an_error() {
        let text = "TcpExt: SyncookiesSent\nTcpExt: 1 2\n";

        assert_eq!(
            parse_netstat(text),
            Err(NetstatError::CountMismatch {
                names: 1,
                values: 2
            })
        );
    }

    #[test]
    fn a_value_that_is_not_a_number_is_an_error_naming_the_counter() {
        let text = "TcpExt: SyncookiesSent ListenDrops\nTcpExt: 1 x7\n";

        let error = parse_netstat(text);

        assert_eq!(
            error,
            Err(NetstatError::BadValue {
                name: "ListenDrops".to_owned(),
                value: "x7".to_owned(),
            })
        );
    }

    #[test]
    fn a_garbled_counter_tcpscope_does_not_use_is_still_an_error() {
        let text = "TcpExt: TW ListenDrops\nTcpExt: -1 2\n";

        assert!(matches!(
            parse_netstat(text),
            Err(NetstatError::BadValue { name, .. }) if name == "TW"
        ));
    }

    #[test]
    fn a_value_beyond_u64_is_an_error() {
        let text = "TcpExt: ListenDrops\nTcpExt: 18446744073709551616\n";

        assert!(matches!(
            parse_netstat(text),
            Err(NetstatError::BadValue { .. })
        ));
    }

    #[test]
    fn a_file_without_tcpext_is_an_error() {
        let text = "IpExt: InNoRoutes\nIpExt: 0\n";

        assert_eq!(parse_netstat(text), Err(NetstatError::MissingSection));
    }

    #[test]
    fn an_empty_file_is_an_error() {
        assert_eq!(parse_netstat(""), Err(NetstatError::MissingSection));
    }

    #[test]
    fn a_tcpext_header_without_its_values_is_an_error() {
        assert_eq!(
            parse_netstat("TcpExt: ListenDrops\n"),
            Err(NetstatError::MissingValues)
        );
        assert_eq!(
            parse_netstat("TcpExt: ListenDrops\nIpExt: InNoRoutes\nIpExt: 0\n"),
            Err(NetstatError::MissingValues)
        );
    }

    #[test]
    fn a_real_file_cut_short_inside_tcpext_is_an_error() {
        // The sample's TcpExt values line is its second line, and its last value is a
        // single digit, so every cut before that line's end loses a value or more.
        let values_end = SAMPLE
            .match_indices('\n')
            .nth(1)
            .map_or(SAMPLE.len(), |(at, _)| at);

        for end in 0..values_end {
            let cut = &SAMPLE[..end];
            assert!(parse_netstat(cut).is_err(), "cut after {end} bytes parsed");
        }
        assert!(parse_netstat(&SAMPLE[..values_end]).is_ok());
    }

    #[test]
    fn the_live_counters_of_this_namespace_can_be_read() {
        let counters = read_tcpext();

        assert!(counters.is_ok(), "{counters:?}");
    }
}
