//! `/proc/<pid>/stat`: a process's command name and when it started.
//!
//! The start time tells which of several processes sharing a socket is the one that has
//! held it longest. Pids cannot: they wrap around at `pid_max`, so a child forked after
//! the wrap has a lower pid than its parent.

use super::sys::parse_decimal;

/// What tcpscope reads from one `/proc/<pid>/stat` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessStat<'a> {
    /// The command name, as in `/proc/<pid>/comm`: at most 15 bytes, any but NUL.
    pub name: &'a [u8],
    /// When the process started, in clock ticks after boot (field 22, `starttime`).
    pub started: u64,
}

/// The field number of `starttime` in `proc_pid_stat(5)`, counting from 1.
const STARTTIME_FIELD: usize = 22;
/// The field number of `state`, the first one after the command name.
const STATE_FIELD: usize = 3;

/// Parses `pid (comm) state ppid … starttime …`, or `None` if the line is not one.
///
/// The command name may hold spaces and parentheses of its own, so it runs from the first
/// `(` to the *last* `)`, as `procps` reads it.
pub fn parse_stat(line: &[u8]) -> Option<ProcessStat<'_>> {
    let open = line.iter().position(|&byte| byte == b'(')?;
    let close = line.iter().rposition(|&byte| byte == b')')?;
    let name = line.get(open + 1..close)?;
    let started = line
        .get(close + 1..)?
        .split(u8::is_ascii_whitespace)
        .filter(|field| !field.is_empty())
        .nth(STARTTIME_FIELD - STATE_FIELD)?;
    let started = parse_decimal(started)?;
    Some(ProcessStat { name, started })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line as Linux 6.x writes it for a shell, started 4,242 ticks after boot.
    const SHELL: &[u8] = b"1234 (bash) S 1000 1234 1234 34816 1300 4194304 2716 18350 0 \
        2 5 3 11 6 20 0 1 0 4242 9162752 1279 18446744073709551615 1 1 0 0 0 0 65536 \
        3686404 1266761467 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";

    #[test]
    fn the_name_and_start_time_are_read_from_their_fields() {
        assert_eq!(
            parse_stat(SHELL),
            Some(ProcessStat {
                name: b"bash",
                started: 4242
            })
        );
    }

    #[test]
    fn a_name_with_spaces_and_parentheses_ends_at_the_last_parenthesis() {
        let line = b"77 (a) b (c)) R 1 77 77 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0\n";

        assert_eq!(
            parse_stat(line),
            Some(ProcessStat {
                name: b"a) b (c)",
                started: 99
            })
        );
    }

    #[test]
    fn lines_that_are_cut_short_or_garbled_are_not_read() {
        let cut = &SHELL[..SHELL.len() / 3];
        assert_eq!(parse_stat(cut), None);
        assert_eq!(parse_stat(b""), None);
        assert_eq!(parse_stat(b"12 )bash( S"), None);
        assert_eq!(parse_stat(b"12 (bash S 1 2 3"), None);
        let negative = b"1 (x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 -5 0\n";
        assert_eq!(parse_stat(negative), None);
    }
}
