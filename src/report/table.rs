//! `--grep`: matching sockets as an aligned text table, the modern answer to
//! `netstat -nap | grep SYN_RECV`.

use std::fmt::Write as _;
use std::io::{self, Write};

use super::endpoint::{Cell, Endpoint};
use crate::kernel::procfs::ProcessMap;
use crate::kernel::tcp_info::TcpInfo;
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

/// The columns `-i` adds after the timer, as `ss -i` names its fields: RTT and its
/// variance in milliseconds, congestion window, retransmits over the connection's
/// life, bytes acked and received, and the delivery rate.
const INFO_HEADERS: [&str; 6] = [
    "RTT/Var(ms)",
    "Cwnd",
    "Retrans",
    "Acked",
    "Received",
    "Rate",
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

/// The `-i` cells of one row; `-` for a socket without tcp_info, and for counts its
/// kernel does not keep.
fn info_cells(info: Option<&TcpInfo>) -> [Cell; 6] {
    let Some(info) = info else {
        return std::array::from_fn(|_| Cell::of("-"));
    };
    let or_dash = |value: Option<u64>| value.map_or(Cell::of("-"), Cell::of);
    [
        Cell::of(format_args!(
            "{}/{}",
            Millis(info.rtt_us),
            Millis(info.rttvar_us)
        )),
        Cell::of(info.snd_cwnd),
        Cell::of(info.total_retrans),
        or_dash(info.bytes_acked),
        or_dash(info.bytes_received),
        info.delivery_rate
            .map_or(Cell::of("-"), |rate| Cell::of(Rate(rate))),
    ]
}

/// Microseconds as `ss` shows milliseconds: up to three decimals, trailing zeros cut.
struct Millis(u32);

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (whole, fraction) = (self.0 / 1000, self.0 % 1000);
        if fraction == 0 {
            write!(f, "{whole}")
        } else {
            let digits = format!("{fraction:03}");
            write!(f, "{whole}.{}", digits.trim_end_matches('0'))
        }
    }
}

/// A rate in bytes a second, shown in bits a second as `ss` does (`1.2Mbps`).
struct Rate(u64);

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bits = self.0.saturating_mul(8) as f64;
        match bits {
            b if b >= 1e9 => write!(f, "{:.1}Gbps", b / 1e9),
            b if b >= 1e6 => write!(f, "{:.1}Mbps", b / 1e6),
            b if b >= 1e3 => write!(f, "{:.1}Kbps", b / 1e3),
            b => write!(f, "{b}bps"),
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
    write_rows(
        out,
        || sockets.iter().map(|s| (None, s, None)),
        false,
        processes,
    )
}

/// The table with `-i`'s columns ([`INFO_HEADERS`]) after the timer; `info` holds
/// each socket's tcp_info, index for index (`None` for a socket without).
pub fn write_table_with_info(
    out: &mut impl Write,
    sockets: &[SocketRecord],
    info: &[Option<TcpInfo>],
    processes: Option<&ProcessMap>,
) -> io::Result<()> {
    write_rows(
        out,
        || {
            sockets
                .iter()
                .enumerate()
                .map(|(at, s)| (None, s, info.get(at).and_then(Option::as_ref)))
        },
        true,
        processes,
    )
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
                .flat_map(|(netns, sockets)| sockets.iter().map(|s| (Some(*netns), s, None)))
        },
        false,
        processes,
    )
}

/// Writes the header and the rows `rows()` yields, in two passes: widths, then text.
/// Rows with a namespace get the `Netns` column; with `with_info`, the `-i` columns
/// follow the timer. `rows()` must yield the same rows each time.
fn write_rows<'a, I>(
    out: &mut impl Write,
    rows: impl Fn() -> I,
    with_info: bool,
    processes: Option<&ProcessMap>,
) -> io::Result<()>
where
    I: Iterator<Item = (Option<u64>, &'a SocketRecord, Option<&'a TcpInfo>)>,
{
    let with_netns = rows().next().is_some_and(|(netns, _, _)| netns.is_some());
    let headers: Vec<&str> = HEADERS[..6]
        .iter()
        .chain(INFO_HEADERS.iter().filter(|_| with_info))
        .chain(HEADERS[6..].iter().filter(|_| processes.is_some()))
        .copied()
        .collect();
    let columns = headers.len();
    let numeric =
        |column: usize| matches!(column, 3 | 4) || (with_info && (7..12).contains(&column));
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    let mut netns_width = NETNS_HEADER.len();
    for (netns, socket, info) in rows() {
        let row = Row::of(socket);
        for (width, cell) in widths.iter_mut().zip(&row.cells) {
            *width = (*width).max(cell.len());
        }
        if with_info {
            for (width, cell) in widths[6..].iter_mut().zip(&info_cells(info)) {
                *width = (*width).max(cell.len());
            }
        }
        if let Some(netns) = netns {
            netns_width = netns_width.max(Cell::of(netns).len());
        }
    }

    if with_netns {
        write!(out, "{NETNS_HEADER:<netns_width$}  ")?;
    }
    for (column, header) in headers.iter().enumerate() {
        write_cell(
            out,
            header,
            widths[column],
            numeric(column),
            column + 1 == columns,
        )?;
    }
    out.write_all(b"\n")?;
    for (netns, socket, info) in rows() {
        if let Some(netns) = netns {
            write!(out, "{netns:<netns_width$}  ")?;
        }
        let row = Row::of(socket);
        let info = with_info.then(|| info_cells(info));
        let cells = row.cells.iter().chain(info.iter().flatten());
        for (column, cell) in cells.enumerate() {
            let last = column + 1 == columns;
            write_cell(out, cell.as_str(), widths[column], numeric(column), last)?;
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
    numeric: bool,
    last: bool,
) -> io::Result<()> {
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
    fn with_info_the_ss_i_columns_follow_the_timer_and_a_socket_without_shows_dashes() {
        let connection = socket(State::Established, "10.0.0.1", 443, "10.0.0.2", 50000);
        let half_open = socket(State::SynRecv, "10.0.0.1", 443, "10.0.0.3", 50001);
        let info = TcpInfo {
            rtt_us: 1500,
            rttvar_us: 750,
            snd_cwnd: 10,
            total_retrans: 2,
            bytes_acked: Some(123_456),
            bytes_received: Some(789),
            delivery_rate: Some(1_250_000),
            ..TcpInfo::default()
        };
        let mut out = Vec::new();
        write_table_with_info(
            &mut out,
            &[connection, half_open],
            &[Some(info), None],
            None,
        )
        .unwrap();
        let expected = "\
State        Local Address:Port  Peer Address:Port  Recv-Q  Send-Q  Timer  RTT/Var(ms)  Cwnd  Retrans   Acked  Received      Rate
ESTABLISHED  10.0.0.1:443        10.0.0.2:50000          0       0  off    1.5/0.75       10        2  123456       789  10.0Mbps
SYN_RECV     10.0.0.1:443        10.0.0.3:50001          0       0  off    -               -        -       -         -         -
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
