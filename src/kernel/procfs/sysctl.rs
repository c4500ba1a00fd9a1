//! The sysctls that bound a listener's queues and decide what happens when the SYN queue
//! fills: `tcp_max_syn_backlog`, `somaxconn` and `tcp_syncookies`.
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

/// A sysctl file whose text is not the single non-negative integer it should hold.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{name} holds {text:?}, not a non-negative integer")]
pub struct SysctlError {
    pub name: &'static str,
    pub text: String,
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
    text.trim().parse().map_err(|_| SysctlError {
        name,
        text: text.to_owned(),
    })
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
            })
        );
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
