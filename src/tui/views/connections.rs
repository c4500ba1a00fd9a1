//! The connections table: every socket that passes the filter line, sorted, with only
//! the rows on screen built, so that 100k sockets scroll as smoothly as ten. Process
//! names and tcp_info (`-i`, `i`) are looked up for those rows only.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, StatefulWidget, Table, TableState, Widget};

use std::time::Duration;

use crate::filter::FilterError;
use crate::poll::info::InfoSummary;
use crate::poll::rounds::NamespaceSpan;
use crate::report::endpoint::Endpoint;
use crate::snapshot::{SocketRecord, Timer};
use crate::text::Escaped;
use crate::tui::connections::SortColumn;
use crate::tui::line_editor::LineEditor;
use crate::tui::model::{Model, Scroll, Ui};
use crate::tui::query::QueryError;
use crate::tui::theme::Theme;

/// Width of the namespace column across namespaces: a short container id (12), or a
/// pid and a command name (up to 15 characters) cut short; shorter on a narrow
/// terminal, where the endpoints need the room.
const NETNS_WIDTH: u16 = 16;
pub(super) const NETNS_WIDTH_NARROW: u16 = 12;

/// The room an endpoint keeps when tcp_info columns are shown: an IPv4 address and
/// port at their longest (`255.255.255.255:65535`).
const ENDPOINT_ROOM: u16 = 21;
/// The room the process column keeps then.
const PROCESS_ROOM: u16 = 8;

/// With tcp_info shown, the columns that may be left out, most wanted first: they are
/// drawn while they fit beside the endpoints' room, as htop leaves out what does not
/// fit. At 80 columns that is RTT and cwnd in place of the queues.
const OPTIONAL_WITH_INFO: [Column; 11] = [
    Column::Rtt,
    Column::Cwnd,
    Column::RecvQ,
    Column::SendQ,
    Column::Retransmits,
    Column::Timer,
    Column::Uid,
    Column::RttVar,
    Column::Rate,
    Column::Acked,
    Column::Received,
];

/// A column of the table. Its header, width and cell come from the one variant, so
/// that a new column is a variant here (and a [`SortColumn`] if rows sort by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    State,
    /// Across namespaces only: whose socket it is.
    Netns,
    Local,
    Peer,
    RecvQ,
    SendQ,
    /// tcp_info, as `ss -i` shows it: smoothed round-trip time and its variance,
    /// congestion window, segments retransmitted, bytes acked and received, delivery
    /// rate. Shown with `-i` or after `i`, as many as fit.
    Rtt,
    RttVar,
    Cwnd,
    Retransmits,
    Acked,
    Received,
    Rate,
    /// On a wide terminal only, as `ss -o` shows it.
    Timer,
    /// On a wide terminal only.
    Uid,
    /// The owning process, where `-p` found one.
    Process,
}

impl Column {
    /// Every column, left to right.
    const ALL: [Column; 16] = [
        Column::State,
        Column::Netns,
        Column::Local,
        Column::Peer,
        Column::RecvQ,
        Column::SendQ,
        Column::Rtt,
        Column::RttVar,
        Column::Cwnd,
        Column::Retransmits,
        Column::Acked,
        Column::Received,
        Column::Rate,
        Column::Timer,
        Column::Uid,
        Column::Process,
    ];

    /// Whether the column is drawn without tcp_info, across namespaces or not, on a
    /// wide terminal or not.
    fn shown(self, across_namespaces: bool, wide: bool) -> bool {
        match self {
            Column::Netns => across_namespaces,
            Column::Timer | Column::Uid => wide,
            _ => !self.is_info(),
        }
    }

    fn is_info(self) -> bool {
        matches!(
            self,
            Column::Rtt
                | Column::RttVar
                | Column::Cwnd
                | Column::Retransmits
                | Column::Acked
                | Column::Received
                | Column::Rate
        )
    }

    /// The columns drawn in a table `width` wide (inside its border). Without tcp_info,
    /// the timer and UID only on a wide terminal; with it, the state, the endpoints at
    /// [`ENDPOINT_ROOM`] and the process always, and of [`OPTIONAL_WITH_INFO`] as many
    /// as fit beside them.
    fn chosen(across_namespaces: bool, width: u16, info: bool) -> Vec<Column> {
        let wide = width >= WIDE;
        if !info {
            return Column::ALL
                .into_iter()
                .filter(|column| column.shown(across_namespaces, wide))
                .collect();
        }
        let mut chosen = vec![Column::State, Column::Local, Column::Peer, Column::Process];
        if across_namespaces {
            chosen.push(Column::Netns);
        }
        // Each column after the first takes one more for the space between columns.
        let mut used: u16 = chosen
            .iter()
            .map(|column| column.room(wide) + 1)
            .sum::<u16>()
            - 1;
        for column in OPTIONAL_WITH_INFO {
            let room = column.room(wide) + 1;
            if used + room <= width {
                used += room;
                chosen.push(column);
            }
        }
        Column::ALL
            .into_iter()
            .filter(|column| chosen.contains(column))
            .collect()
    }

    /// The least room the column takes: its length, or what a filling column keeps
    /// with tcp_info shown.
    fn room(self, wide: bool) -> u16 {
        match self.width(wide) {
            Constraint::Length(length) => length,
            _ if self == Column::Process => PROCESS_ROOM,
            _ => ENDPOINT_ROOM,
        }
    }

    /// The sort key of the column; the process column sorts nothing.
    fn sort(self) -> Option<SortColumn> {
        match self {
            Column::State => Some(SortColumn::State),
            Column::Netns => Some(SortColumn::Netns),
            Column::Local => Some(SortColumn::Local),
            Column::Peer => Some(SortColumn::Peer),
            Column::RecvQ => Some(SortColumn::RecvQ),
            Column::SendQ => Some(SortColumn::SendQ),
            Column::Timer => Some(SortColumn::Timer),
            Column::Uid => Some(SortColumn::Uid),
            Column::Rtt => Some(SortColumn::Rtt),
            Column::RttVar => Some(SortColumn::RttVar),
            Column::Cwnd => Some(SortColumn::Cwnd),
            Column::Retransmits => Some(SortColumn::Retransmits),
            Column::Acked => Some(SortColumn::Acked),
            Column::Received => Some(SortColumn::Received),
            Column::Rate => Some(SortColumn::Rate),
            Column::Process => None,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Column::Process => "Process",
            _ => self.sort().map_or("", SortColumn::title),
        }
    }

    fn width(self, wide: bool) -> Constraint {
        match self {
            Column::State => Constraint::Length(11),
            Column::Netns if wide => Constraint::Length(NETNS_WIDTH),
            Column::Netns => Constraint::Length(NETNS_WIDTH_NARROW),
            Column::Local | Column::Peer => Constraint::Fill(2),
            Column::RecvQ | Column::SendQ => Constraint::Length(7),
            Column::Timer => Constraint::Length(14),
            Column::Uid => Constraint::Length(6),
            Column::Rtt | Column::RttVar | Column::Acked | Column::Received => {
                Constraint::Length(7)
            }
            Column::Cwnd | Column::Retransmits => Constraint::Length(5),
            Column::Rate => Constraint::Length(9),
            Column::Process => Constraint::Fill(1),
        }
    }

    /// The cell of `socket`'s row, `namespace` being where it lives across namespaces.
    fn cell<'a>(
        self,
        model: &'a Model,
        theme: &Theme,
        namespace: Option<&'a NamespaceSpan>,
        socket: &SocketRecord,
    ) -> Line<'a> {
        match self {
            Column::State => Line::styled(socket.state.name(), theme.state(socket.state)),
            Column::Netns => Line::styled(namespace.map_or("", |span| &*span.label), theme.dim()),
            Column::Local => Line::raw(Endpoint(socket.local_addr, socket.local_port).to_string()),
            Column::Peer => Line::raw(Endpoint(socket.remote_addr, socket.remote_port).to_string()),
            Column::RecvQ => Line::raw(socket.recv_q.to_string()).right_aligned(),
            Column::SendQ => Line::raw(socket.send_q.to_string()).right_aligned(),
            Column::Timer => match socket.timer {
                Timer::Off => Line::raw(""),
                timer => Line::raw(format!(
                    "{} {}",
                    timer.name(),
                    super::short_duration(Duration::from_millis(u64::from(socket.expires_ms)))
                )),
            },
            Column::Uid => Line::raw(socket.uid.to_string()).right_aligned(),
            Column::Process => match model.process_of(socket) {
                Some((pid, name)) => Line::raw(format!("{pid}/{name}")),
                None => Line::raw(""),
            },
            _ => {
                let info = model
                    .tcp_info
                    .as_deref()
                    .and_then(|table| table.get(socket.cookie));
                Line::raw(self.info_text(info)).right_aligned()
            }
        }
    }

    /// A tcp_info column's cell: `-` for a socket without tcp_info (a request socket,
    /// a TIME_WAIT remnant, or one the latest dump did not ask for), and for counts
    /// its kernel does not keep.
    fn info_text(self, info: Option<&InfoSummary>) -> String {
        let Some(info) = info else {
            return "-".to_owned();
        };
        let known = match self {
            Column::Rtt => Some(millis(info.rtt_us)),
            Column::RttVar => Some(millis(info.rttvar_us)),
            Column::Cwnd => Some(info.cwnd.to_string()),
            Column::Retransmits => Some(info.retransmits.to_string()),
            Column::Acked => info.bytes_acked().map(bytes),
            Column::Received => info.bytes_received().map(bytes),
            Column::Rate => info.delivery_rate().map(bits_a_second),
            _ => None,
        };
        known.unwrap_or_else(|| "-".to_owned())
    }
}

/// The width from which the timer and UID columns are drawn without tcp_info.
const WIDE: u16 = 108;

/// Microseconds as milliseconds in at most 6 characters: `0.05ms`, `12.3ms`, `250ms`,
/// `12s`.
fn millis(micros: u32) -> String {
    let ms = f64::from(micros) / 1000.0;
    match micros {
        0..10_000 => format!("{ms:.2}ms"),
        10_000..100_000 => format!("{ms:.1}ms"),
        100_000..10_000_000 => format!("{ms:.0}ms"),
        _ => format!("{:.0}s", ms / 1000.0),
    }
}

/// Bytes in at most 6 characters: `512B`, `9.8K`, `123M`.
fn bytes(count: u64) -> String {
    const UNITS: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    if count < 1024 {
        return format!("{count}B");
    }
    let mut value = count as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.1}{}", UNITS[unit])
    } else {
        format!("{value:.0}{}", UNITS[unit])
    }
}

/// A rate in bytes a second, in bits a second as `ss -i` shows it, in at most 9
/// characters: `1.2Mbps`.
fn bits_a_second(rate: u64) -> String {
    let bits = rate.saturating_mul(8) as f64;
    match bits {
        b if b >= 1e15 => ">999Tbps".to_owned(),
        b if b >= 1e12 => format!("{:.1}Tbps", b / 1e12),
        b if b >= 1e9 => format!("{:.1}Gbps", b / 1e9),
        b if b >= 1e6 => format!("{:.1}Mbps", b / 1e6),
        b if b >= 1e3 => format!("{:.1}Kbps", b / 1e3),
        b => format!("{b}bps"),
    }
}

/// Draws the table; `scroll` is adjusted so the selection stays on screen.
pub fn render(
    model: &Model,
    ui: &Ui,
    scroll: &mut Scroll,
    theme: &Theme,
    area: Rect,
    buf: &mut Buffer,
) {
    // A refused filter takes the text, the caret under what was wrong, and why, wrapped
    // to the width.
    let filter_height = match (&ui.filter_input, &ui.filter_error) {
        (None, Some(error)) => 2 + error_lines(error, area.width).len() as u16,
        _ => 1,
    };
    let [table_area, filter_area] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(filter_height)]).areas(area);
    let table = &model.connections;
    let wide = area.width >= WIDE + 2;

    let mut title = vec![
        Span::styled(" Connections ", theme.title()),
        Span::styled(
            format!("{} of {} ", table.len(), table.total()),
            theme.dim(),
        ),
    ];
    // Between full dumps the other panels are fresher than this one: say by how much.
    if let Some(age) = model.table_age() {
        title.push(Span::styled(
            format!("(full {} ago) ", super::short_duration(age)),
            theme.warning(),
        ));
    }
    // The rows are of an older snapshot, sort or filter until the worker is done.
    if table.is_ordering() {
        title.push(Span::styled("sorting… ", theme.dim()));
    }
    // `i` turned the columns on: the pollers ask for tcp_info from their next dump.
    // Paused, that dump goes to the live view underneath, not to the frozen one.
    if ui.info_columns && model.tcp_info.is_none() {
        let when = if ui.paused {
            "paused: tcp_info shows on resuming (space) "
        } else {
            "tcp_info from the next full poll "
        };
        title.push(Span::styled(when, theme.dim()));
    }
    let inner = Block::bordered().inner(table_area);
    // Across namespaces, each row says whose it is.
    let columns = Column::chosen(table.across_namespaces(), inner.width, ui.info_columns);
    let arrow = if table.descending { "▼" } else { "▲" };
    // A column too wide for the terminal is left out, but rows may be sorted by it:
    // the title says so, where the header cannot.
    if !columns
        .iter()
        .any(|column| column.sort() == Some(table.sort))
    {
        title.push(Span::styled(
            format!("by {}{arrow} ", table.sort.title()),
            theme.dim(),
        ));
    }
    let block = Block::bordered().title(Line::from(title));
    block.render(table_area, buf);
    // One line for the header.
    let height = usize::from(inner.height.saturating_sub(1));
    scroll.fit(table.len(), height);

    let header = Row::new(columns.iter().map(|column| {
        let title = column.title();
        if column.sort().is_some_and(|sort| sort == table.sort) {
            Line::styled(format!("{title}{arrow}"), theme.header().patch(theme.key()))
        } else {
            Line::styled(title, theme.header())
        }
    }));

    let rows = table
        .rows_in_namespaces(scroll.offset, height)
        .map(|(namespace, socket)| {
            Row::new(
                columns
                    .iter()
                    .map(|column| column.cell(model, theme, namespace, socket)),
            )
        });
    let mut state = TableState::new()
        .with_offset(0)
        .with_selected((!table.is_empty()).then(|| scroll.selected - scroll.offset));
    StatefulWidget::render(
        Table::new(rows, columns.iter().map(|column| column.width(wide)))
            .header(header)
            .row_highlight_style(theme.selected()),
        inner,
        buf,
        &mut state,
    );

    if let (None, Some(error)) = (&ui.filter_input, &ui.filter_error) {
        render_filter_error(error, theme, filter_area, buf);
        return;
    }
    let filter_line = match (&ui.filter_input, &ui.filter_error) {
        (Some(editor), _) => editing(editor, theme, filter_area.width),
        (None, Some(_)) => Line::default(),
        (None, None) if !table.query_text.is_empty() => Line::from(vec![
            Span::styled("filter: ", theme.dim()),
            Span::raw(table.query_text.as_str()),
            Span::styled("  (/ to change)", theme.dim()),
        ]),
        (None, None) => Line::styled("/ filter  s sort  r reverse  Enter detail", theme.dim()),
    };
    Paragraph::new(filter_line).render(filter_area, buf);
}

/// The filter line being edited, with the character under the cursor shown reversed
/// (a block at the end), scrolled sideways to keep the cursor on screen.
fn editing<'a>(editor: &LineEditor, theme: &Theme, width: u16) -> Line<'a> {
    let (before, under, after) = editor.split_at_cursor();
    // "/" and the cursor take a column each.
    let room = usize::from(width).saturating_sub(2).max(1);
    let hidden = editor.cursor().saturating_sub(room);
    let before: String = before.chars().skip(hidden).collect();
    let mut spans = vec![Span::styled("/", theme.key()), Span::raw(before)];
    match under {
        Some(c) => spans.push(Span::styled(c.to_string(), theme.selected())),
        None => spans.push(Span::styled("█", theme.dim())),
    }
    spans.push(Span::raw(after));
    Line::from(spans)
}

/// The most lines the explanation of a refused filter takes; past them it ends in `…`.
const MOST_ERROR_LINES: usize = 6;

/// Why a filter was refused, and how to go on, wrapped to `width` in at most
/// [`MOST_ERROR_LINES`] lines.
fn error_lines(error: &QueryError, width: u16) -> Vec<String> {
    let text = format!(
        "{}  (/ to edit, Esc to dismiss)",
        Escaped(error.message.as_str())
    );
    let width = usize::from(width).max(1);
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let needed = line.chars().count() + usize::from(!line.is_empty()) + word.chars().count();
        if !line.is_empty() && needed > width {
            lines.push(std::mem::take(&mut line));
        } else if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    lines.push(line);
    if lines.len() > MOST_ERROR_LINES {
        lines.truncate(MOST_ERROR_LINES);
        if let Some(last) = lines.last_mut() {
            while last.chars().count() + 2 > width && last.pop().is_some() {}
            last.push_str(" …");
        }
    }
    lines
}

/// The refused line with the offending token marked, a caret under it, and why.
fn render_filter_error(error: &QueryError, theme: &Theme, area: Rect, buf: &mut Buffer) {
    let pointer = FilterError::new(&error.text, error.position, error.length, String::new());
    let (shown, carets) = pointer.pointer();
    let mut lines = vec![
        Line::from(vec![Span::styled("/", theme.key()), Span::raw(shown)]),
        Line::from(vec![Span::raw(" "), Span::styled(carets, theme.error())]),
    ];
    lines.extend(
        error_lines(error, area.width)
            .into_iter()
            .map(|line| Line::styled(line, theme.error())),
    );
    Paragraph::new(lines).render(area, buf);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::query::Query;
    use crate::tui::views::fixtures;
    use crate::tui::views::testing::text;

    #[test]
    fn the_table_shows_the_rows_on_screen_sorted_by_state_at_80x24() {
        let model = fixtures::flooded();
        let mut scroll = Scroll::default();
        let screen = text(80, 22, |area, buf| {
            render(&model, &Ui::default(), &mut scroll, &Theme::MONO, area, buf)
        });
        insta::assert_snapshot!(screen);
    }

    #[test]
    fn between_full_dumps_the_title_says_how_old_the_table_is() {
        let mut model = fixtures::flooded();
        let mut scroll = Scroll::default();
        let title = |model: &Model, scroll: &mut Scroll| {
            let screen = text(80, 22, |area, buf| {
                render(model, &Ui::default(), scroll, &Theme::MONO, area, buf)
            });
            screen.lines().next().unwrap_or_default().to_owned()
        };
        assert!(!title(&model, &mut scroll).contains("ago"));
        let table_at = model.taken_at().unwrap();
        model.status.polled_at = Some(table_at + std::time::Duration::from_millis(3200));
        let line = title(&model, &mut scroll);
        assert!(line.contains("(full 3.2s ago)"), "{line}");
    }

    #[test]
    fn a_filtered_table_at_120x40_shows_timers_and_the_filter() {
        let mut model = fixtures::flooded();
        model
            .connections
            .set_query("estab :22", Query::parse("estab :22").unwrap());
        let mut scroll = Scroll {
            selected: 1,
            offset: 0,
        };
        let screen = text(120, 38, |area, buf| {
            render(&model, &Ui::default(), &mut scroll, &Theme::MONO, area, buf)
        });
        insta::assert_snapshot!(screen);
        assert!(screen.contains("Connections 4 of 410"), "{screen}");
    }

    #[test]
    fn across_namespaces_each_row_names_its_namespace_at_80x24() {
        let model = fixtures::across_namespaces();
        let mut scroll = Scroll::default();
        let screen = text(80, 22, |area, buf| {
            render(&model, &Ui::default(), &mut scroll, &Theme::MONO, area, buf)
        });
        insta::assert_snapshot!(screen);
        let listeners: Vec<&str> = screen
            .lines()
            .filter(|line| line.contains("LISTEN") && line.contains("127.0.0.1:80"))
            .collect();
        assert_eq!(listeners.len(), 2, "{screen}");
        assert!(listeners[0].contains("1/systemd"), "{screen}");
        assert!(listeners[1].contains("3f2a9c4e5d6b"), "{screen}");
    }

    #[test]
    fn a_refused_filter_puts_a_caret_under_the_offending_token() {
        let model = fixtures::flooded();
        let text_line = "state syn-recv and sprot = :80";
        let Err(error) = Query::parse(text_line) else {
            panic!("{text_line} was accepted")
        };
        let ui = Ui {
            filter_error: Some(error),
            ..Ui::default()
        };
        let screen = text(80, 22, |area, buf| {
            render(&model, &ui, &mut Scroll::default(), &Theme::MONO, area, buf)
        });
        let lines: Vec<&str> = screen.lines().collect();
        let at = lines
            .iter()
            .position(|line| *line == format!("/{text_line}"))
            .unwrap_or_else(|| panic!("the refused line is not shown:\n{screen}"));
        let caret_line = lines[at + 1];
        let column = caret_line.find('^').unwrap_or(0);
        assert_eq!(&lines[at][column..column + 5], "sprot", "{screen}");
        assert!(caret_line.trim_end().ends_with("^^^^^"), "{screen}");
        // Why, below the caret, to its end however narrow the screen.
        let why = lines[at + 2..].join(" ");
        assert!(why.contains("sprot"), "{screen}");
        assert!(
            why.trim_end().ends_with("(/ to edit, Esc to dismiss)"),
            "{screen}"
        );
    }

    #[test]
    fn a_long_refusal_is_wrapped_not_cut() {
        let error = QueryError {
            text: "bogus".into(),
            position: 0,
            length: 5,
            message: "word ".repeat(20) + "end-of-the-message",
        };
        for width in [40, 80, 120] {
            let lines = error_lines(&error, width);
            assert!(
                lines.len() > 1 && lines.len() <= MOST_ERROR_LINES,
                "{lines:?}"
            );
            assert!(
                lines
                    .iter()
                    .all(|line| line.chars().count() <= usize::from(width)),
                "{lines:?}"
            );
            let said = lines
                .join(" ")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            assert!(said.contains("end-of-the-message (/ to edit"), "{lines:?}");
        }
    }

    #[test]
    fn the_line_being_edited_shows_its_cursor_and_scrolls_to_keep_it_on_screen() {
        let mut editor = LineEditor::new("state listen");
        editor.key(
            &crossterm::event::KeyEvent::new(
                crossterm::event::KeyCode::Home,
                crossterm::event::KeyModifiers::NONE,
            ),
            &[],
        );
        let line = editing(&editor, &Theme::MONO, 80);
        assert_eq!(line.to_string(), "/state listen");
        let long = LineEditor::new(&"x".repeat(200));
        let line = editing(&long, &Theme::MONO, 80);
        assert_eq!(line.to_string().chars().count(), 80, "{line}");
        assert!(line.to_string().ends_with("x█"), "{line}");
    }

    /// The flooded host's established connections: four SSH sessions, the first
    /// three with tcp_info and the fourth without (as a socket that came after the
    /// dump would be).
    fn established_with_info() -> Model {
        let mut model = fixtures::flooded();
        model
            .connections
            .set_query("estab", Query::parse("estab").unwrap());
        let entries = (0..3u32)
            .map(|i| {
                let info = crate::kernel::tcp_info::TcpInfo {
                    rtt_us: 1500 + 1000 * i,
                    rttvar_us: 750,
                    snd_cwnd: 10 + i,
                    total_retrans: i,
                    bytes_acked: Some(123_456),
                    bytes_received: Some(4_200),
                    delivery_rate: Some(1_250_000),
                    ..Default::default()
                };
                (77 + u64::from(i), InfoSummary::of(&info))
            })
            .collect();
        model.tcp_info = Some(std::sync::Arc::new(crate::poll::info::TcpInfoTable::new(
            entries,
        )));
        model
    }

    fn table_at(model: &Model, info_columns: bool, width: u16) -> String {
        let ui = Ui {
            info_columns,
            ..Ui::default()
        };
        text(width, 12, |area, buf| {
            render(model, &ui, &mut Scroll::default(), &Theme::MONO, area, buf)
        })
    }

    /// The header line of a rendered table, its words.
    fn header(screen: &str) -> Vec<String> {
        let line = screen.lines().nth(1).unwrap_or_default();
        line.split(|c: char| c == '│' || c.is_whitespace())
            .filter(|word| !word.is_empty())
            .map(|word| word.trim_end_matches(['▲', '▼']).to_owned())
            .collect()
    }

    #[test]
    fn with_info_at_80_columns_rtt_and_cwnd_take_the_queues_place_and_endpoints_keep_their_room() {
        let model = established_with_info();
        let without = table_at(&model, false, 80);
        insta::assert_snapshot!("without_info_at_80", without);
        assert_eq!(
            header(&without),
            ["State", "Local", "Peer", "Recv-Q", "Send-Q", "Process"],
            "{without}"
        );
        let with = table_at(&model, true, 80);
        insta::assert_snapshot!("with_info_at_80", with);
        assert_eq!(
            header(&with),
            ["State", "Local", "Peer", "RTT", "Cwnd", "Process"],
            "{with}"
        );
        let session = with
            .lines()
            .find(|line| line.contains("192.0.2.10:50001"))
            .unwrap_or_else(|| panic!("the second SSH session is not shown whole:\n{with}"));
        assert!(session.contains("10.0.0.1:22"), "{session}");
        assert!(session.contains("2.50ms"), "{session}");
        assert!(session.contains(" 11 "), "{session}");
        // The fourth has no entry in the table: dashes, not zeros.
        let without_info = with
            .lines()
            .find(|line| line.contains("192.0.2.10:50003"))
            .unwrap_or_else(|| panic!("the fourth SSH session is not shown:\n{with}"));
        assert_eq!(without_info.matches(" - ").count(), 2, "{without_info}");
    }

    #[test]
    fn with_info_at_200_columns_every_tcp_info_column_shows_beside_the_usual_ones() {
        let model = established_with_info();
        let without = table_at(&model, false, 200);
        assert_eq!(
            header(&without),
            [
                "State", "Local", "Peer", "Recv-Q", "Send-Q", "Timer", "UID", "Process"
            ],
            "{without}"
        );
        let with = table_at(&model, true, 200);
        insta::assert_snapshot!("with_info_at_200", with);
        assert_eq!(
            header(&with),
            [
                "State", "Local", "Peer", "Recv-Q", "Send-Q", "RTT", "RTTvar", "Cwnd", "Retr",
                "Acked", "Rcvd", "Rate", "Timer", "UID", "Process"
            ],
            "{with}"
        );
        let session = with
            .lines()
            .find(|line| line.contains("192.0.2.10:50002"))
            .unwrap_or_else(|| panic!("the third SSH session is not shown:\n{with}"));
        for cell in [
            "3.50ms", "0.75ms", " 12 ", " 2 ", "121K", "4.1K", "10.0Mbps",
        ] {
            assert!(session.contains(cell), "{cell} missing: {session}");
        }
    }

    #[test]
    fn columns_switched_on_before_any_tcp_info_came_say_when_it_will() {
        let mut model = established_with_info();
        model.tcp_info = None;
        let screen = table_at(&model, true, 80);
        let title = screen.lines().next().unwrap_or_default();
        assert!(
            title.contains("tcp_info from the next full poll"),
            "{screen}"
        );
        assert!(header(&screen).contains(&"RTT".to_owned()), "{screen}");
    }

    #[test]
    fn columns_switched_on_while_paused_say_tcp_info_comes_on_resuming() {
        let mut model = established_with_info();
        model.tcp_info = None;
        let ui = Ui {
            info_columns: true,
            paused: true,
            ..Ui::default()
        };
        let screen = text(80, 12, |area, buf| {
            render(&model, &ui, &mut Scroll::default(), &Theme::MONO, area, buf)
        });
        let title = screen.lines().next().unwrap_or_default();
        assert!(title.contains("tcp_info shows on resuming"), "{screen}");
        assert!(!title.contains("next full poll"), "{screen}");
    }

    #[test]
    fn the_sorted_tcp_info_column_carries_the_arrow() {
        let mut model = established_with_info();
        model.connections.set_tcp_info(model.tcp_info.clone());
        model.connections.set_sort(SortColumn::Rtt, true);
        let screen = table_at(&model, true, 80);
        let line = screen.lines().nth(1).unwrap_or_default();
        assert!(line.contains("RTT▼"), "{screen}");
        // The slowest of the three with tcp_info first; the one without, last.
        let rtts: Vec<&str> = screen
            .lines()
            .skip(2)
            .filter(|line| line.contains("ESTABLISHED"))
            .filter_map(|line| {
                let words: Vec<&str> = line
                    .split(|c: char| c == '│' || c.is_whitespace())
                    .filter(|word| !word.is_empty())
                    .collect();
                header(&screen)
                    .iter()
                    .position(|word| word == "RTT")
                    .and_then(|at| words.get(at).copied())
            })
            .collect();
        assert_eq!(rtts, ["3.50ms", "2.50ms", "1.50ms", "-"], "{screen}");
    }

    #[test]
    fn sorted_by_a_column_left_out_at_80_columns_the_title_says_by_which() {
        let mut model = established_with_info();
        model.connections.set_tcp_info(model.tcp_info.clone());
        model.connections.set_sort(SortColumn::Rate, true);
        let screen = table_at(&model, true, 80);
        assert!(!header(&screen).contains(&"Rate".to_owned()), "{screen}");
        let title = screen.lines().next().unwrap_or_default();
        assert!(title.contains("by Rate▼"), "{screen}");

        model.connections.set_sort(SortColumn::Rtt, true);
        let screen = table_at(&model, true, 80);
        let title = screen.lines().next().unwrap_or_default();
        assert!(!title.contains("by RTT"), "the header shows it: {screen}");
    }

    #[test]
    fn tcp_info_columns_never_panic_however_small_the_table() {
        let model = established_with_info();
        for width in 0..=120 {
            for height in [0, 1, 2, 3, 5] {
                text(width, height, |area, buf| {
                    let ui = Ui {
                        info_columns: true,
                        ..Ui::default()
                    };
                    render(&model, &ui, &mut Scroll::default(), &Theme::MONO, area, buf)
                });
            }
        }
    }

    #[test]
    fn cells_fit_their_columns_at_every_magnitude() {
        for micros in [0, 30, 9_999, 10_000, 99_999, 100_000, 9_999_999, u32::MAX] {
            assert!(millis(micros).chars().count() <= 7, "{}", millis(micros));
        }
        for count in [0, 1023, 1024, 10_239, 1 << 20, u64::MAX] {
            assert!(bytes(count).chars().count() <= 7, "{}", bytes(count));
        }
        for rate in [0, 124, 125_000, 999_999_999, u64::MAX] {
            assert!(
                bits_a_second(rate).chars().count() <= 9,
                "{}",
                bits_a_second(rate)
            );
        }
        assert_eq!(millis(52), "0.05ms");
        assert_eq!(bytes(123_456), "121K");
        assert_eq!(bits_a_second(1_250_000), "10.0Mbps");
    }

    #[test]
    fn scrolling_far_down_keeps_the_selected_row_on_screen() {
        let model = fixtures::flooded();
        let mut scroll = Scroll {
            selected: 300,
            offset: 0,
        };
        text(80, 22, |area, buf| {
            render(&model, &Ui::default(), &mut scroll, &Theme::MONO, area, buf)
        });
        assert!(
            scroll.offset <= 300 && 300 < scroll.offset + 18,
            "{scroll:?}"
        );
    }
}
