//! The connections table: every socket that passes the filter line, sorted, with only
//! the rows on screen built, so that 100k sockets scroll as smoothly as ten. Process
//! names are looked up for those rows only.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, StatefulWidget, Table, TableState, Widget};

use std::time::Duration;

use crate::filter::FilterError;
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
    /// On a wide terminal only, as `ss -o` shows it.
    Timer,
    /// On a wide terminal only.
    Uid,
    /// The owning process, where `-p` found one.
    Process,
}

impl Column {
    /// Every column, left to right.
    const ALL: [Column; 9] = [
        Column::State,
        Column::Netns,
        Column::Local,
        Column::Peer,
        Column::RecvQ,
        Column::SendQ,
        Column::Timer,
        Column::Uid,
        Column::Process,
    ];

    /// Whether the column is drawn, across namespaces or not, on a wide terminal or not.
    fn shown(self, across_namespaces: bool, wide: bool) -> bool {
        match self {
            Column::Netns => across_namespaces,
            Column::Timer | Column::Uid => wide,
            _ => true,
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
            Column::Process => None,
        }
    }

    fn title(self) -> &'static str {
        self.sort().map_or("Process", SortColumn::title)
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
        }
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
    let wide = area.width >= 110;

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
    let block = Block::bordered().title(Line::from(title));
    let inner = block.inner(table_area);
    block.render(table_area, buf);
    // One line for the header.
    let height = usize::from(inner.height.saturating_sub(1));
    scroll.fit(table.len(), height);

    // Across namespaces, each row says whose it is.
    let columns: Vec<Column> = Column::ALL
        .into_iter()
        .filter(|column| column.shown(table.across_namespaces(), wide))
        .collect();
    let header = Row::new(columns.iter().map(|column| {
        let title = column.title();
        if column.sort().is_some_and(|sort| sort == table.sort) {
            let arrow = if table.descending { "▼" } else { "▲" };
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
