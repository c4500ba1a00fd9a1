//! The namespaces tab (`--all-netns`): one row per network namespace with its label,
//! inode and per-state counts, and the sum of them all; the states that matter most
//! in an incident (SYN_RECV, ESTABLISHED, LISTEN, CLOSE_WAIT, TIME_WAIT) come first
//! when the terminal is too narrow for all eleven, and `All` always counts every
//! state.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Row, StatefulWidget, Table, TableState, Widget};

use crate::snapshot::Counts;
use crate::tcp::State;
use crate::tui::model::{Model, Ui};
use crate::tui::theme::Theme;

/// The state columns in the order they are given room.
const BY_PRIORITY: [State; 11] = [
    State::SynRecv,
    State::Established,
    State::Listen,
    State::CloseWait,
    State::TimeWait,
    State::SynSent,
    State::FinWait1,
    State::FinWait2,
    State::LastAck,
    State::Closing,
    State::Closed,
];
const LABEL_WIDTH: u16 = 16;
const INODE_WIDTH: u16 = 10;
const ALL_WIDTH: u16 = 8;

pub fn render(model: &Model, ui: &Ui, theme: &Theme, area: Rect, buf: &mut Buffer) {
    let rows = model.namespaces.as_ref().map_or(&[][..], |n| &n.rows[..]);
    let block = Block::bordered()
        .title(Line::from(vec![
            Span::styled(" Namespaces ", theme.title()),
            Span::styled(format!("{} ", rows.len()), theme.dim()),
        ]))
        .title_bottom(Line::styled(
            " container id, else pid/command of a process in it, else the inode ",
            theme.dim(),
        ));
    let inner = block.inner(area);
    block.render(area, buf);

    let states = columns(inner.width);
    let mut widths = vec![
        Constraint::Min(LABEL_WIDTH),
        Constraint::Length(INODE_WIDTH),
    ];
    widths.extend(
        states
            .iter()
            .map(|state| Constraint::Length(width_of(*state))),
    );
    widths.push(Constraint::Length(ALL_WIDTH));

    let mut header = vec![Line::raw("Namespace"), Line::raw("Netns")];
    header.extend(
        states
            .iter()
            .map(|state| Line::raw(state.name()).right_aligned()),
    );
    header.push(Line::raw("All").right_aligned());

    // Header and the line of sums take two of the lines.
    let height = usize::from(inner.height.saturating_sub(2));
    let selected = ui.namespace_row.min(rows.len().saturating_sub(1));
    let offset = selected.saturating_sub(height.saturating_sub(1));
    let mut lines: Vec<Row> = rows
        .iter()
        .skip(offset)
        .take(height)
        .map(|row| {
            let label_style = if row.error.is_some() {
                theme.error()
            } else {
                theme.title()
            };
            let mut cells = vec![
                Line::styled(row.label.short(), label_style),
                Line::styled(row.label.inode.to_string(), theme.dim()),
            ];
            if row.polled {
                cells.extend(count_cells(&row.counts, &states, theme));
            } else {
                cells.extend(states.iter().map(|_| Line::raw("…").right_aligned()));
                cells.push(Line::raw("…").right_aligned());
            }
            Row::new(cells)
        })
        .collect();
    let mut sums = vec![
        Line::styled(format!("all {}", rows.len()), theme.dim()),
        Line::raw(""),
    ];
    sums.extend(count_cells(&model.counts, &states, theme));
    lines.push(Row::new(sums).style(theme.header()));

    let mut state = TableState::new()
        .with_offset(0)
        .with_selected((!rows.is_empty()).then(|| selected - offset));
    StatefulWidget::render(
        Table::new(lines, widths)
            .header(Row::new(header).style(theme.header()))
            .row_highlight_style(theme.selected()),
        inner,
        buf,
        &mut state,
    );
}

/// The state columns that fit in `width`, in [`State::ALL`] order.
fn columns(width: u16) -> Vec<State> {
    let mut room = width.saturating_sub(LABEL_WIDTH + 1 + INODE_WIDTH + 1 + ALL_WIDTH);
    let mut chosen = Vec::new();
    for state in BY_PRIORITY {
        let needed = width_of(state) + 1;
        if needed > room {
            break;
        }
        room -= needed;
        chosen.push(state);
    }
    chosen.sort_by_key(|state| state.index());
    chosen
}

fn width_of(state: State) -> u16 {
    u16::try_from(state.name().len()).unwrap_or(u16::MAX).max(6)
}

fn count_cells<'a>(counts: &Counts, states: &[State], theme: &Theme) -> Vec<Line<'a>> {
    let mut cells: Vec<Line> = states
        .iter()
        .map(|state| {
            let count = counts.get(*state);
            let style = if count == 0 {
                theme.dim()
            } else {
                theme.state(*state)
            };
            Line::styled(count.to_string(), style).right_aligned()
        })
        .collect();
    cells.push(Line::raw(counts.total().to_string()).right_aligned());
    cells
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::views::fixtures;
    use crate::tui::views::testing::text;

    fn screen(width: u16, height: u16) -> String {
        let model = fixtures::across_namespaces();
        text(width, height, |area, buf| {
            render(&model, &Ui::default(), &Theme::MONO, area, buf)
        })
    }

    /// The line of the namespace labelled `label`, split into its cells.
    fn cells<'a>(screen: &'a str, label: &str) -> Vec<&'a str> {
        let line = screen
            .lines()
            .find(|line| line.contains(label))
            .unwrap_or_else(|| panic!("no line for {label}:\n{screen}"));
        line.trim_matches(['│', ' ']).split_whitespace().collect()
    }

    #[test]
    fn each_namespace_gets_a_row_with_its_counts_and_the_sum_comes_last_at_80x22() {
        let screen = screen(80, 22);
        insta::assert_snapshot!(screen);
        // SYN_RECV, ESTABLISHED, LISTEN, CLOSE_WAIT and All fit at 80 columns.
        assert_eq!(
            cells(&screen, "1/systemd"),
            ["1/systemd", "4026531840", "1", "0", "3", "0", "4"]
        );
        assert_eq!(
            cells(&screen, "3f2a9c4e5d6b"),
            ["3f2a9c4e5d6b", "4026532501", "1", "200", "0", "1", "202"]
        );
        assert_eq!(
            cells(&screen, "all 3"),
            ["all", "3", "3", "200", "3", "1", "208"]
        );
    }

    #[test]
    fn a_wide_terminal_shows_more_states_and_time_wait_moves_to_its_column() {
        let screen = screen(160, 22);
        insta::assert_snapshot!(screen);
        assert!(screen.contains("TIME_WAIT"), "{screen}");
        assert_eq!(
            cells(&screen, "5120/nginx"),
            [
                "5120/nginx",
                "4026532777",
                "0",
                "1",
                "0",
                "0",
                "0",
                "0",
                "0",
                "0",
                "0",
                "0",
                "1",
                "2"
            ]
        );
    }
}
