//! The kernel's own TCP totals, from `/proc/net/sockstat`: sockets in use, orphans,
//! TIME_WAIT remnants, allocated sockets and the pages their buffers hold. The kernel
//! keeps these as counters, so reading them costs the same at a million sockets as at
//! ten: the fast lane reads them every interval while full dumps are spaced out.
//!
//! Only the `TCP:` line is read; `inuse` and `tw` are the calling thread's network
//! namespace's, `orphan`, `alloc` and `mem` the host's (see `sockstat_seq_show` in
//! net/ipv4/proc.c).

use std::fs;

use anyhow::Context;

/// Read through `thread-self` so that a poller that entered another namespace reads
/// that namespace's file.
const SOCKSTAT: &str = "/proc/thread-self/net/sockstat";

/// The `TCP:` line of `/proc/net/sockstat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SockStat {
    /// TCP sockets in use, TIME_WAIT remnants not counted.
    pub inuse: u64,
    /// Sockets no process holds any more that still have data or a FIN to send.
    pub orphan: u64,
    /// TIME_WAIT remnants.
    pub tw: u64,
    /// Sockets allocated, closed ones not yet freed included.
    pub alloc: u64,
    /// Pages of buffer memory TCP holds.
    pub mem: u64,
}

/// Why the `TCP:` line could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SockStatError {
    #[error("no TCP line")]
    MissingLine,
    #[error("TCP field {name} has value {value:?}, not a number")]
    BadValue { name: String, value: String },
    #[error("TCP field {0} is missing")]
    MissingField(&'static str),
}

/// Parses the text of `/proc/net/sockstat`. Fields this version does not know are
/// skipped; each of the five it knows must be there and be a number.
pub fn parse_sockstat(text: &str) -> Result<SockStat, SockStatError> {
    let line = text
        .lines()
        .find_map(|line| line.strip_prefix("TCP:"))
        .ok_or(SockStatError::MissingLine)?;
    let mut fields = [None; 5];
    const NAMES: [&str; 5] = ["inuse", "orphan", "tw", "alloc", "mem"];
    let mut words = line.split_ascii_whitespace();
    while let (Some(name), Some(value)) = (words.next(), words.next()) {
        let Some(index) = NAMES.iter().position(|known| *known == name) else {
            continue;
        };
        let number = value.parse::<u64>().map_err(|_| SockStatError::BadValue {
            name: name.to_owned(),
            value: value.to_owned(),
        })?;
        fields[index] = Some(number);
    }
    let field = |index: usize| fields[index].ok_or(SockStatError::MissingField(NAMES[index]));
    Ok(SockStat {
        inuse: field(0)?,
        orphan: field(1)?,
        tw: field(2)?,
        alloc: field(3)?,
        mem: field(4)?,
    })
}

/// Reads the TCP totals of the calling thread's network namespace.
pub fn read_sockstat() -> anyhow::Result<SockStat> {
    let text = fs::read_to_string(SOCKSTAT).with_context(|| format!("reading {SOCKSTAT}"))?;
    parse_sockstat(&text).with_context(|| format!("parsing {SOCKSTAT}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "sockets: used 1126\n\
        TCP: inuse 405012 orphan 3 tw 7120 alloc 405200 mem 9120\n\
        UDP: inuse 4 mem 2\n\
        UDPLITE: inuse 0\n";

    #[test]
    fn the_tcp_line_gives_every_total() {
        assert_eq!(
            parse_sockstat(SAMPLE),
            Ok(SockStat {
                inuse: 405_012,
                orphan: 3,
                tw: 7120,
                alloc: 405_200,
                mem: 9120,
            })
        );
    }

    #[test]
    fn a_field_a_later_kernel_adds_is_skipped() {
        let text = "TCP: inuse 1 orphan 0 tw 2 alloc 3 mem 4 shiny 9\n";
        assert_eq!(parse_sockstat(text).map(|stat| stat.tw), Ok(2));
    }

    #[test]
    fn a_damaged_line_is_an_error_not_a_zero() {
        assert_eq!(
            parse_sockstat("UDP: inuse 4 mem 2\n"),
            Err(SockStatError::MissingLine)
        );
        assert!(matches!(
            parse_sockstat("TCP: inuse many orphan 0 tw 0 alloc 0 mem 0\n"),
            Err(SockStatError::BadValue { .. })
        ));
        assert_eq!(
            parse_sockstat("TCP: inuse 1 orphan 0 alloc 0 mem 0\n"),
            Err(SockStatError::MissingField("tw"))
        );
    }

    #[test]
    fn this_hosts_file_parses() {
        if let Err(error) = read_sockstat() {
            panic!("{error:#}");
        }
    }
}
