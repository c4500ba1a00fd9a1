//! `--grep`: matching sockets as an aligned text table, the modern answer to
//! `netstat -nap | grep SYN_RECV`.

use std::fmt::Write as _;
use std::io::{self, Write};

use super::endpoint::{Cell, Endpoint};
use crate::kernel::procfs::ProcessMap;
use crate::snapshot::{SocketRecord, Timer};
use crate::text::Escaped;

/// The first column with `--all-netns`: the namespace's inode.
const NETNS_HEADER: &str = "Netns";

const HEADERS: [&str; 7] = [
    "State",
    "Local Address:Port",
    "Peer Address:Port",
    "Recv-Q",
    "Send-Q",
    "Timer",
    "Process",
];

/// The text of one row, formatted on the stack.
struct Row {
    cells: [Cell; 6],
}

impl Row {
    fn of(socket: &SocketRecord) -> Row {
        Row {
            cells: [
                Cell::of(socket.state.name()),
                Cell::of(Endpoint(socket.local_addr, socket.local_port)),
                Cell::of(Endpoint(socket.remote_addr, socket.remote_port)),
                Cell::of(socket.recv_q),
                Cell::of(socket.send_q),
                timer_cell(socket),
            ],
        }
    }
}

/// The timer as `ss -o` shows it inside `timer:(…)`: name, time left, retransmits.
fn timer_cell(socket: &SocketRecord) -> Cell {
    let mut cell = Cell::new();
    if socket.timer == Timer::Off {
        let _ = cell.write_str("off");
    } else {
        let _ = write!(
            cell,
            "{},{}ms,{}",
            socket.timer.name(),
            socket.expires_ms,
            socket.retransmits
        );
    }
    cell
}

/// Writes the table: a header, then one row per socket. With `processes`, a last
/// column names the owner as `pid/name` (`-` when the socket has none, as request
/// sockets and TIME_WAIT remnants never do).
pub fn write_table(
    out: &mut impl Write,
    sockets: &[SocketRecord],
    processes: Option<&ProcessMap>,
) -> io::Result<()> {
    write_rows(out, || sockets.iter().map(|s| (None, s)), processes)
}

/// The table for several network namespaces (`--all-netns`): a first column names
/// each socket's namespace by its inode. `groups` pairs a namespace's inode with its
/// sockets.
pub fn write_table_in_namespaces(
    out: &mut impl Write,
    groups: &[(u64, &[SocketRecord])],
    processes: Option<&ProcessMap>,
) -> io::Result<()> {
    write_rows(
        out,
        || {
            groups
                .iter()
                .flat_map(|(netns, sockets)| sockets.iter().map(|s| (Some(*netns), s)))
        },
        processes,
    )
}

/// Writes the header and the rows `rows()` yields, in two passes: widths, then text.
/// Rows with a namespace get the `Netns` column; `rows()` must yield the same rows
/// each time.
fn write_rows<'a, I>(
    out: &mut impl Write,
    rows: impl Fn() -> I,
    processes: Option<&ProcessMap>,
) -> io::Result<()>
where
    I: Iterator<Item = (Option<u64>, &'a SocketRecord)>,
{
    let with_netns = rows().next().is_some_and(|(netns, _)| netns.is_some());
    let mut widths = HEADERS.map(str::len);
    let mut netns_width = NETNS_HEADER.len();
    for (netns, socket) in rows() {
        let row = Row::of(socket);
        for (width, cell) in widths.iter_mut().zip(&row.cells) {
            *width = (*width).max(cell.len());
        }
        if let Some(netns) = netns {
            netns_width = netns_width.max(Cell::of(netns).len());
        }
    }

    let columns = if processes.is_some() { 7 } else { 6 };
    if with_netns {
        write!(out, "{NETNS_HEADER:<netns_width$}  ")?;
    }
    for (column, header) in HEADERS.iter().enumerate().take(columns) {
        write_cell(out, header, widths[column], column, columns)?;
    }
    out.write_all(b"\n")?;
    for (netns, socket) in rows() {
        if let Some(netns) = netns {
            write!(out, "{netns:<netns_width$}  ")?;
        }
        let row = Row::of(socket);
        for (column, cell) in row.cells.iter().enumerate() {
            write_cell(out, cell.as_str(), widths[column], column, columns)?;
        }
        if let Some(processes) = processes {
            match processes.lookup(socket.inode).filter(|_| socket.inode != 0) {
                Some(process) => write!(out, "{}/{}", process.pid, Escaped(&process.name))?,
                None => out.write_all(b"-")?,
            }
        }
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Numbers are right-aligned, text left-aligned; the last column is not padded.
fn write_cell(
    out: &mut impl Write,
    text: &str,
    width: usize,
    column: usize,
    columns: usize,
) -> io::Result<()> {
    let numeric = matches!(column, 3 | 4);
    let last = column + 1 == columns;
    if numeric {
        write!(out, "{text:>width$}")?;
    } else if last {
        out.write_all(text.as_bytes())?;
    } else {
        write!(out, "{text:<width$}")?;
    }
    if !last {
        out.write_all(b"  ")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::fixtures::socket;
    use crate::tcp::State;

    fn render(sockets: &[SocketRecord]) -> String {
        let mut out = Vec::new();
        write_table(&mut out, sockets, None).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn columns_line_up_under_their_headers() {
        let mut half_open = socket(State::SynRecv, "127.0.0.1", 80, "127.64.1.2", 40000);
        half_open.timer = Timer::On;
        half_open.expires_ms = 812;
        half_open.retransmits = 1;
        let listener = socket(State::Listen, "::1", 443, "::", 0);
        let text = render(&[half_open, listener]);
        let expected = "\
State     Local Address:Port  Peer Address:Port  Recv-Q  Send-Q  Timer
SYN_RECV  127.0.0.1:80        127.64.1.2:40000        0       0  on,812ms,1
LISTEN    [::1]:443           [::]:*                  0       0  off
";
        assert_eq!(text, expected);
    }

    #[test]
    fn with_several_namespaces_a_first_column_names_each_sockets_namespace() {
        let listener = socket(State::Listen, "0.0.0.0", 80, "0.0.0.0", 0);
        let other = socket(State::Listen, "0.0.0.0", 8080, "0.0.0.0", 0);
        let mut out = Vec::new();
        write_table_in_namespaces(
            &mut out,
            &[(4026531840, &[listener][..]), (4026532201, &[other][..])],
            None,
        )
        .unwrap();
        let expected = "\
Netns       State   Local Address:Port  Peer Address:Port  Recv-Q  Send-Q  Timer
4026531840  LISTEN  0.0.0.0:80          0.0.0.0:*               0       0  off
4026532201  LISTEN  0.0.0.0:8080        0.0.0.0:*               0       0  off
";
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn an_empty_result_is_just_the_header() {
        assert_eq!(
            render(&[]),
            "State  Local Address:Port  Peer Address:Port  Recv-Q  Send-Q  Timer\n"
        );
    }
}
