//! The connections table: every socket that passes the filter line, sorted, with only
//! the rows on screen built, so that 100k sockets scroll as smoothly as ten. Process
//! names are looked up for those rows only.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, StatefulWidget, Table, TableState, Widget};

use crate::filter::FilterError;
use crate::report::endpoint::Endpoint;
use crate::tui::connections::SortColumn;
use crate::tui::model::{Model, Scroll, Ui};
use crate::tui::query::QueryError;
use crate::tui::theme::Theme;

/// Width of the namespace column across namespaces: a short container id (12), or a
/// pid and a command name (up to 15 characters) cut short; shorter on a narrow
/// terminal, where the endpoints need the room.
const NETNS_WIDTH: u16 = 16;
pub(super) const NETNS_WIDTH_NARROW: u16 = 12;

/// Draws the table; `scroll` is adjusted so the selection stays on screen.
pub fn render(
    model: &Model,
    ui: &Ui,
    scroll: &mut Scroll,
    theme: &Theme,
    area: Rect,
    buf: &mut Buffer,
) {
    // A refused filter takes two lines: the text, and the caret under what was wrong.
    let filter_height = if ui.filter_input.is_none() && ui.filter_error.is_some() {
        2
    } else {
        1
    };
    let [table_area, filter_area] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(filter_height)]).areas(area);
    let table = &model.connections;
    let wide = area.width >= 110;

    let block = Block::bordered().title(Line::from(vec![
        Span::styled(" Connections ", theme.title()),
        Span::styled(
            format!("{} of {} ", table.len(), table.total()),
            theme.dim(),
        ),
    ]));
    let inner = block.inner(table_area);
    block.render(table_area, buf);
    // One line for the header.
    let height = usize::from(inner.height.saturating_sub(1));
    scroll.fit(table.len(), height);

    // Across namespaces, each row says whose it is.
    let netns = table.across_namespaces();
    let mut columns = vec![(Some(SortColumn::State), Constraint::Length(11))];
    if netns {
        let width = if wide {
            NETNS_WIDTH
        } else {
            NETNS_WIDTH_NARROW
        };
        columns.push((Some(SortColumn::Netns), Constraint::Length(width)));
    }
    columns.extend([
        (Some(SortColumn::Local), Constraint::Fill(2)),
        (Some(SortColumn::Peer), Constraint::Fill(2)),
        (Some(SortColumn::RecvQ), Constraint::Length(7)),
        (Some(SortColumn::SendQ), Constraint::Length(7)),
    ]);
    if wide {
        columns.push((Some(SortColumn::Timer), Constraint::Length(14)));
        columns.push((Some(SortColumn::Uid), Constraint::Length(6)));
    }
    columns.push((None, Constraint::Fill(1)));
    let header = Row::new(columns.iter().map(|(column, _)| {
        let title = match column {
            Some(column) => column.title(),
            None => "Process",
        };
        if *column == Some(table.sort) {
            let arrow = if table.descending { "▼" } else { "▲" };
            Line::styled(format!("{title}{arrow}"), theme.header().patch(theme.key()))
        } else {
            Line::styled(title, theme.header())
        }
    }));

    let rows = table
        .rows_in_namespaces(scroll.offset, height)
        .map(|(namespace, socket)| {
            let mut cells = vec![Line::styled(socket.state.name(), theme.state(socket.state))];
            if netns {
                cells.push(Line::styled(
                    namespace.map_or("", |span| &*span.label),
                    theme.dim(),
                ));
            }
            cells.extend([
                Line::raw(Endpoint(socket.local_addr, socket.local_port).to_string()),
                Line::raw(Endpoint(socket.remote_addr, socket.remote_port).to_string()),
                Line::raw(socket.recv_q.to_string()).right_aligned(),
                Line::raw(socket.send_q.to_string()).right_aligned(),
            ]);
            if wide {
                let timer = match socket.timer {
                    crate::snapshot::Timer::Off => String::new(),
                    timer => format!(
                        "{} {}",
                        timer.name(),
                        super::short_duration(std::time::Duration::from_millis(u64::from(
                            socket.expires_ms
                        )))
                    ),
                };
                cells.push(Line::raw(timer));
                cells.push(Line::raw(socket.uid.to_string()).right_aligned());
            }
            cells.push(match model.process_of(socket) {
                Some((pid, name)) => Line::raw(format!("{pid}/{name}")),
                None => Line::raw(""),
            });
            Row::new(cells)
        });
    let mut state = TableState::new()
        .with_offset(0)
        .with_selected((!table.is_empty()).then(|| scroll.selected - scroll.offset));
    StatefulWidget::render(
        Table::new(rows, columns.iter().map(|(_, width)| *width))
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
        (Some(text), _) => Line::from(vec![
            Span::styled("/", theme.key()),
            Span::raw(text.as_str()),
            Span::styled("█", theme.dim()),
        ]),
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

/// The refused line with the offending token marked, and a caret under it followed by
/// why.
fn render_filter_error(error: &QueryError, theme: &Theme, area: Rect, buf: &mut Buffer) {
    let pointer = FilterError::new(&error.text, error.position, error.length, String::new());
    let (shown, carets) = pointer.pointer();
    let lines = vec![
        Line::from(vec![Span::styled("/", theme.key()), Span::raw(shown)]),
        Line::from(vec![
            Span::raw(" "),
            Span::styled(carets, theme.error()),
            Span::raw(" "),
            Span::styled(error.message.as_str(), theme.error()),
            Span::styled("  (/ to edit, Esc to dismiss)", theme.dim()),
        ]),
    ];
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
        let caret_line = lines[lines.len() - 1];
        assert_eq!(lines[lines.len() - 2], format!("/{text_line}"));
        let column = caret_line.find('^').unwrap_or(0);
        assert_eq!(
            &lines[lines.len() - 2][column..column + 5],
            "sprot",
            "{screen}"
        );
        assert!(caret_line.contains("^^^^^ "), "{screen}");
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
