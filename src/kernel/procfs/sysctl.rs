//! The sysctls that bound a listener's queues and decide what happens when the SYN queue
//! fills: `tcp_max_syn_backlog`, `somaxconn` and `tcp_syncookies`; and those that bound
//! outgoing connections and their TIME_WAIT remnants: `ip_local_port_range`,
//! `ip_local_reserved_ports`, `tcp_tw_reuse` and `tcp_max_tw_buckets`.
//!
//! Only reads them; tcpscope never changes a sysctl.

use std::fs;

use anyhow::Context;
use thiserror::Error;

// `/proc/sys/net` resolves against the network namespace of the thread that opens the
// file, so plain paths are right even on a thread that has unshared its namespace.
const TCP_MAX_SYN_BACKLOG: &str = "/proc/sys/net/ipv4/tcp_max_syn_backlog";
const SOMAXCONN: &str = "/proc/sys/net/core/somaxconn";
const TCP_SYNCOOKIES: &str = "/proc/sys/net/ipv4/tcp_syncookies";
const IP_LOCAL_PORT_RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";
const IP_LOCAL_RESERVED_PORTS: &str = "/proc/sys/net/ipv4/ip_local_reserved_ports";
const TCP_TW_REUSE: &str = "/proc/sys/net/ipv4/tcp_tw_reuse";
const TCP_MAX_TW_BUCKETS: &str = "/proc/sys/net/ipv4/tcp_max_tw_buckets";

/// The namespace-wide limits on listen queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenLimits {
    /// `net.ipv4.tcp_max_syn_backlog`: with syncookies off, a listener drops SYNs from
    /// peers it has never completed a handshake with once its SYN queue is longer than
    /// three quarters of this.
    pub tcp_max_syn_backlog: u32,
    /// `net.core.somaxconn`: the cap the kernel puts on every `listen()` backlog.
    pub somaxconn: u32,
    /// `net.ipv4.tcp_syncookies`.
    pub syncookies: Syncookies,
}

/// What the kernel does with a SYN when the SYN queue is full (`net.ipv4.tcp_syncookies`).
///
/// See `tcp_conn_request()` and `tcp_syn_flood_action()` in `net/ipv4/tcp_input.c`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syncookies {
    /// 0: the SYN is dropped (`TCPReqQFullDrop` counts it).
    Off,
    /// 1, the default: the SYN gets a cookie, but only once the queue is full.
    WhenQueueFull,
    /// 2: every SYN gets a cookie, full queue or not.
    Always,
}

impl Syncookies {
    /// The mode the kernel applies for a sysctl value. The kernel tests only for 0 and
    /// for 2, so any other value behaves as 1.
    pub fn from_sysctl(value: u32) -> Syncookies {
        match value {
            0 => Syncookies::Off,
            2 => Syncookies::Always,
            _ => Syncookies::WhenQueueFull,
        }
    }

    /// The sysctl's canonical value for this mode: 0, 1 or 2.
    pub fn sysctl_value(self) -> u8 {
        match self {
            Syncookies::Off => 0,
            Syncookies::WhenQueueFull => 1,
            Syncookies::Always => 2,
        }
    }
}

/// The namespace-wide limits on outgoing connections and on TIME_WAIT remnants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// `net.ipv4.ip_local_port_range`: the first and last local port (both included)
    /// that `connect()` picks from when the socket is not bound.
    pub local_port_range: (u16, u16),
    /// `net.ipv4.ip_local_reserved_ports`: ranges (both ends included) inside the
    /// local port range that `connect()` never picks, in the kernel's ascending order.
    pub reserved_ports: Vec<(u16, u16)>,
    /// `net.ipv4.tcp_tw_reuse`.
    pub tw_reuse: TwReuse,
    /// `net.ipv4.tcp_max_tw_buckets`: TIME_WAIT remnants the namespace may hold; past
    /// it, a closing connection skips TIME_WAIT (`TCPTimeWaitOverflow` counts it).
    pub max_tw_buckets: u32,
}

/// Whether `connect()` may take over the endpoints of a TIME_WAIT remnant
/// (`net.ipv4.tcp_tw_reuse`; see `tcp_twsk_unique()` in `net/ipv4/tcp_ipv4.c`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwReuse {
    /// 0.
    Off,
    /// 1: for every connection with TCP timestamps.
    On,
    /// 2, the default since Linux 5.6: for connections over loopback only.
    LoopbackOnly,
}

impl TwReuse {
    /// The mode for a sysctl value: the kernel tests for 2, then for non-zero (it
    /// refuses to store anything above 2 anyway).
    pub fn from_sysctl(value: u32) -> TwReuse {
        match value {
            0 => TwReuse::Off,
            2 => TwReuse::LoopbackOnly,
            _ => TwReuse::On,
        }
    }

    /// The sysctl's value for this mode: 0, 1 or 2.
    pub fn sysctl_value(self) -> u8 {
        match self {
            TwReuse::Off => 0,
            TwReuse::On => 1,
            TwReuse::LoopbackOnly => 2,
        }
    }
}

/// A sysctl file whose text is not what it should hold.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{name} holds {text:?}, not {expected}")]
pub struct SysctlError {
    pub name: &'static str,
    pub text: String,
    /// What the file should hold, in words.
    pub expected: &'static str,
}

impl SysctlError {
    fn new(name: &'static str, text: &str, expected: &'static str) -> SysctlError {
        SysctlError {
            name,
            text: text.to_owned(),
            expected,
        }
    }
}

/// Parses the text of the three sysctl files, as read.
pub fn parse_listen_limits(
    tcp_max_syn_backlog: &str,
    somaxconn: &str,
    tcp_syncookies: &str,
) -> Result<ListenLimits, SysctlError> {
    Ok(ListenLimits {
        tcp_max_syn_backlog: parse_integer("tcp_max_syn_backlog", tcp_max_syn_backlog)?,
        somaxconn: parse_integer("somaxconn", somaxconn)?,
        syncookies: Syncookies::from_sysctl(parse_integer("tcp_syncookies", tcp_syncookies)?),
    })
}

/// One integer sysctl: the kernel prints the number and a newline.
fn parse_integer(name: &'static str, text: &str) -> Result<u32, SysctlError> {
    text.trim()
        .parse()
        .map_err(|_| SysctlError::new(name, text, "a non-negative integer"))
}

/// Parses the text of the four sysctl files, as read.
pub fn parse_connection_limits(
    ip_local_port_range: &str,
    ip_local_reserved_ports: &str,
    tcp_tw_reuse: &str,
    tcp_max_tw_buckets: &str,
) -> Result<ConnectionLimits, SysctlError> {
    const RANGE: &str = "two port numbers, the first no greater than the second";
    let range_error = || SysctlError::new("ip_local_port_range", ip_local_port_range, RANGE);
    // The kernel prints the two ends separated by a tab.
    let mut ends = ip_local_port_range.split_ascii_whitespace();
    let (Some(low), Some(high), None) = (ends.next(), ends.next(), ends.next()) else {
        return Err(range_error());
    };
    let (Ok(low), Ok(high)) = (low.parse::<u16>(), high.parse::<u16>()) else {
        return Err(range_error());
    };
    if low > high {
        return Err(range_error());
    }
    Ok(ConnectionLimits {
        local_port_range: (low, high),
        reserved_ports: parse_port_list(ip_local_reserved_ports)?,
        tw_reuse: TwReuse::from_sysctl(parse_integer("tcp_tw_reuse", tcp_tw_reuse)?),
        max_tw_buckets: parse_integer("tcp_max_tw_buckets", tcp_max_tw_buckets)?,
    })
}

/// A port bitmap as `proc_do_large_bitmap` prints it: `8080,9000-9100`, or an empty
/// line when no port is set.
fn parse_port_list(text: &str) -> Result<Vec<(u16, u16)>, SysctlError> {
    const LIST: &str = "a comma-separated list of ports and port ranges";
    let error = || SysctlError::new("ip_local_reserved_ports", text, LIST);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    trimmed
        .split(',')
        .map(|item| {
            let (first, last) = item.split_once('-').unwrap_or((item, item));
            match (first.parse::<u16>(), last.parse::<u16>()) {
                (Ok(first), Ok(last)) if first <= last => Ok((first, last)),
                _ => Err(error()),
            }
        })
        .collect()
}

/// Reads the connection limits of the calling thread's network namespace.
pub fn read_connection_limits() -> anyhow::Result<ConnectionLimits> {
    let range = read(IP_LOCAL_PORT_RANGE)?;
    let reserved = read(IP_LOCAL_RESERVED_PORTS)?;
    let tw_reuse = read(TCP_TW_REUSE)?;
    let max_tw_buckets = read(TCP_MAX_TW_BUCKETS)?;
    parse_connection_limits(&range, &reserved, &tw_reuse, &max_tw_buckets)
        .context("parsing the local port and TIME_WAIT sysctls")
}

/// Reads the listen limits of the calling thread's network namespace.
pub fn read_listen_limits() -> anyhow::Result<ListenLimits> {
    let tcp_max_syn_backlog = read(TCP_MAX_SYN_BACKLOG)?;
    let somaxconn = read(SOMAXCONN)?;
    let tcp_syncookies = read(TCP_SYNCOOKIES)?;
    parse_listen_limits(&tcp_max_syn_backlog, &somaxconn, &tcp_syncookies)
        .context("parsing the listen-queue sysctls")
}

fn read(path: &str) -> anyhow::Result<String> {
    fs::read_to_string(path).with_context(|| format!("reading {path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_files_as_the_kernel_prints_them_parse() {
        let limits = parse_listen_limits("2048\n", "4096\n", "1\n");

        assert_eq!(
            limits,
            Ok(ListenLimits {
                tcp_max_syn_backlog: 2048,
                somaxconn: 4096,
                syncookies: Syncookies::WhenQueueFull,
            })
        );
    }

    #[test]
    fn syncookies_follow_the_kernels_reading_of_the_value() {
        assert_eq!(Syncookies::from_sysctl(0), Syncookies::Off);
        assert_eq!(Syncookies::from_sysctl(1), Syncookies::WhenQueueFull);
        assert_eq!(Syncookies::from_sysctl(2), Syncookies::Always);
        assert_eq!(Syncookies::from_sysctl(3), Syncookies::WhenQueueFull);
    }

    #[test]
    fn a_sysctl_that_is_not_a_number_is_an_error_naming_it() {
        let error = parse_listen_limits("2048\n", "lots\n", "1\n");

        assert_eq!(
            error,
            Err(SysctlError {
                name: "somaxconn",
                text: "lots\n".to_owned(),
                expected: "a non-negative integer",
            })
        );
    }

    #[test]
    fn connection_sysctls_as_the_kernel_prints_them_parse() {
        let limits =
            parse_connection_limits("32768\t60999\n", "8080,9000-9100\n", "2\n", "262144\n");

        assert_eq!(
            limits,
            Ok(ConnectionLimits {
                local_port_range: (32768, 60999),
                reserved_ports: vec![(8080, 8080), (9000, 9100)],
                tw_reuse: TwReuse::LoopbackOnly,
                max_tw_buckets: 262_144,
            })
        );
    }

    #[test]
    fn no_reserved_ports_is_an_empty_line() {
        let limits = parse_connection_limits("1024 65535\n", "\n", "0\n", "4096\n");

        assert_eq!(limits.map(|l| l.reserved_ports), Ok(Vec::new()));
    }

    #[test]
    fn a_port_range_that_is_not_two_ordered_ports_is_an_error_naming_it() {
        for bad in ["60999\t32768\n", "32768\n", "1 2 3", "0 65536", "a b"] {
            let error = parse_connection_limits(bad, "\n", "0", "1").map(|_| ());
            assert!(
                matches!(&error, Err(e) if e.name == "ip_local_port_range"),
                "{bad:?} gave {error:?}"
            );
        }
        for bad in ["80-", "9100-9000", "x", "1,,2"] {
            let error = parse_connection_limits("1 2", bad, "0", "1").map(|_| ());
            assert!(
                matches!(&error, Err(e) if e.name == "ip_local_reserved_ports"),
                "{bad:?} gave {error:?}"
            );
        }
    }

    #[test]
    fn tw_reuse_follows_the_kernels_reading_of_the_value() {
        assert_eq!(TwReuse::from_sysctl(0), TwReuse::Off);
        assert_eq!(TwReuse::from_sysctl(1), TwReuse::On);
        assert_eq!(TwReuse::from_sysctl(2), TwReuse::LoopbackOnly);
        assert_eq!(TwReuse::from_sysctl(3), TwReuse::On);
        assert_eq!(TwReuse::LoopbackOnly.sysctl_value(), 2);
    }

    #[test]
    fn empty_or_negative_sysctls_are_errors() {
        assert!(parse_listen_limits("", "4096", "1").is_err());
        assert!(parse_listen_limits("-1\n", "4096", "1").is_err());
        assert!(parse_listen_limits("2048", "4096", "1 2").is_err());
    }

    #[test]
    fn the_live_limits_of_this_namespace_can_be_read() {
        let limits = read_listen_limits();

        assert!(limits.is_ok(), "{limits:?}");
    }

    /// Checks the claim behind the plain paths: a thread in another network namespace
    /// reads that namespace's sysctls. Needs CAP_SYS_ADMIN; without it there is nothing
    /// to check and the test passes.
    #[test]
    fn a_thread_in_its_own_network_namespace_reads_that_namespaces_limits() {
        let outer = read_listen_limits().map(|limits| limits.somaxconn);
        let wanted = match outer {
            Ok(128) => 129,
            _ => 128,
        };

        // A thread of our own, so the namespace dies with it whatever the harness does.
        let inner = std::thread::spawn(move || -> Option<anyhow::Result<u32>> {
            // SAFETY: unshare takes no pointers; CLONE_NEWNET moves only this thread.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                eprintln!("skipped: unshare(CLONE_NEWNET) needs CAP_SYS_ADMIN");
                return None;
            }
            // Writing is the test's doing, in the throwaway namespace only.
            if let Err(error) = fs::write(SOMAXCONN, format!("{wanted}\n")) {
                return Some(Err(error.into()));
            }
            Some(read_listen_limits().map(|limits| limits.somaxconn))
        })
        .join();

        match inner {
            Ok(None) => {}
            Ok(Some(inner)) => {
                assert_eq!(inner.ok(), Some(wanted));
                assert_eq!(
                    read_listen_limits().map(|limits| limits.somaxconn).ok(),
                    outer.ok()
                );
            }
            Err(_) => panic!("the namespace thread panicked"),
        }
    }
}
