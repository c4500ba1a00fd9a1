//! The Groups tab: who holds the connections. One row per group of the key `g`
//! chooses (listening port, cgroup, peer, peer network, process) with its count in
//! each state and in all; the states some group has come first, the rest only when
//! the terminal is wide enough. `s` and `r` sort, Enter opens the group's connections.
//!
//! Group names from outside (cgroup paths, process names) are escaped.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Row, StatefulWidget, Table, TableState, Widget};

use crate::tcp::State;
use crate::text::Escaped;
use crate::tui::groups::GroupSort;
use crate::tui::model::{Model, Ui};
use crate::tui::theme::Theme;

const LABEL_WIDTH: u16 = 20;
const TOTAL_WIDTH: u16 = 8;

pub fn render(model: &Model, ui: &Ui, theme: &Theme, area: Rect, buf: &mut Buffer) {
    let table = &model.groups;
    let rows = &table.rows;
    let order = if table.descending { "↓" } else { "↑" };
    let mut title = vec![
        Span::styled(" Groups by ", theme.title()),
        Span::styled(format!("{} ", table.key.name()), theme.title()),
        Span::styled(format!("{} ", rows.len()), theme.dim()),
        Span::styled(
            format!("sorted by {}{order} ", table.sort.title()),
            theme.dim(),
        ),
    ];
    // The rows are of an older poll (or none, under a new key) until the worker is done.
    if model.counting_groups() {
        title.push(Span::styled("counting… ", theme.dim()));
    } else if model.sorting_groups() {
        // Many rows: the worker sorts them, and until then they keep their order.
        title.push(Span::styled("sorting… ", theme.dim()));
    }
    let block = Block::bordered()
        .title(Line::from(title))
        .title_bottom(Line::styled(
            " g: port, cgroup, peer, peer/24, process   s r: sort   Enter: its connections ",
            theme.dim(),
        ));
    let inner = block.inner(area);
    block.render(area, buf);

    let states = columns(model, inner.width);
    let mut widths = vec![Constraint::Min(LABEL_WIDTH)];
    widths.extend(
        states
            .iter()
            .map(|state| Constraint::Length(width_of(*state))),
    );
    widths.push(Constraint::Length(TOTAL_WIDTH));

    let mut header = vec![Line::raw(table.key.name())];
    header.extend(
        states
            .iter()
            .map(|state| Line::raw(state.name()).right_aligned()),
    );
    header.push(Line::raw("Total").right_aligned());

    let height = usize::from(inner.height.saturating_sub(1));
    let selected = ui.group_row.min(rows.len().saturating_sub(1));
    let offset = selected.saturating_sub(height.saturating_sub(1));
    let lines: Vec<Row> = rows
        .iter()
        .skip(offset)
        .take(height)
        .map(|row| {
            let counts = &row.counts.counts;
            let mut cells = vec![Line::styled(Escaped(&row.label).to_string(), theme.title())];
            cells.extend(states.iter().map(|state| {
                let count = counts.get(*state);
                let style = if count == 0 {
                    theme.dim()
                } else {
                    theme.state(*state)
                };
                Line::styled(count.to_string(), style).right_aligned()
            }));
            cells.push(Line::raw(counts.total().to_string()).right_aligned());
            Row::new(cells)
        })
        .collect();

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

/// The state columns: those some group has sockets in (and the one sorted by), as many
/// as fit in `width`, in [`State::ALL`] order.
fn columns(model: &Model, width: u16) -> Vec<State> {
    let table = &model.groups;
    let mut room = width.saturating_sub(LABEL_WIDTH + 1 + TOTAL_WIDTH);
    let mut chosen = Vec::new();
    // Which states some group has was found when counting: by peer there may be as
    // many rows as sockets, too many to look through at each frame.
    let wanted = State::ALL
        .into_iter()
        .filter(|state| table.sort == GroupSort::State(*state) || table.states[state.index()]);
    for state in wanted {
        let needed = width_of(state) + 1;
        if needed > room {
            break;
        }
        room -= needed;
        chosen.push(state);
    }
    chosen
}

fn width_of(state: State) -> u16 {
    u16::try_from(state.name().len()).unwrap_or(u16::MAX).max(6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::GroupKey;
    use crate::tui::views::fixtures;
    use crate::tui::views::testing::text;

    #[test]
    fn each_group_gets_a_row_with_its_counts_and_total() {
        let mut model = fixtures::flooded();
        model.groups.key = GroupKey::Port;
        model.regroup();
        let screen = text(100, 16, |area, buf| {
            render(&model, &Ui::default(), &Theme::MONO, area, buf)
        });
        assert!(screen.contains("Groups by port"), "{screen}");
        assert!(screen.contains("Total"), "{screen}");
        let first = model.groups.rows.first().expect("fixture has sockets");
        let line = screen
            .lines()
            .find(|line| line.contains(&format!("│{}", first.label)))
            .unwrap_or_else(|| panic!("no row for {}:\n{screen}", first.label));
        assert!(
            line.trim_end_matches(['│', ' '])
                .ends_with(&first.counts.counts.total().to_string()),
            "{line}"
        );
    }

    #[test]
    fn rows_still_in_their_old_order_say_sorting_in_the_title() {
        let mut model = fixtures::flooded();
        model.regroup();
        let title = |model: &Model| {
            let screen = text(100, 16, |area, buf| {
                render(model, &Ui::default(), &Theme::MONO, area, buf)
            });
            screen.lines().next().unwrap_or_default().to_owned()
        };
        assert!(!title(&model).contains("sorting…"), "{}", title(&model));
        // As while a worker sorts them: asked for by name, still largest first.
        model.groups.sort = GroupSort::Label;
        assert!(
            title(&model).contains("sorted by Group↓ sorting…"),
            "{}",
            title(&model)
        );
    }
}
