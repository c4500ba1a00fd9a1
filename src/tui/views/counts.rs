//! The per-state counts: all eleven states, always, with the change since the last
//! poll and the rate per second, coloured by the state's family; then the IPv4 and
//! IPv6 totals.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Row, Table, Widget};

use crate::tcp::State;
use crate::tui::model::Model;
use crate::tui::theme::Theme;

use super::rate;

/// Width of the counts panel, borders included.
pub const WIDTH: u16 = 36;
/// Height: borders, header, eleven states, totals.
pub const HEIGHT: u16 = 15;

pub fn render(model: &Model, theme: &Theme, area: Rect, buf: &mut Buffer) {
    let header = Row::new(["State", "Count", "Δ", "/s"]).style(theme.header());
    let rows: Vec<Row> = State::ALL
        .into_iter()
        .map(|state| {
            let count = model.counts.get(state);
            let change = model.changes.map(|changes| changes[state.index()]);
            let change_text = match change {
                None => String::new(),
                Some(0) => "·".to_owned(),
                Some(change) => format!("{change:+}"),
            };
            Row::new([
                Line::styled(state.name(), theme.state(state)),
                Line::from(count.to_string()).right_aligned(),
                Line::styled(change_text, theme.change(change.unwrap_or(0))).right_aligned(),
                Line::styled(
                    rate(model.rates[state.index()]),
                    theme.change(change.unwrap_or(0)),
                )
                .right_aligned(),
            ])
        })
        .collect();
    let block = Block::bordered().title(Line::styled(" States ", theme.title()));
    let inner = block.inner(area);
    block.render(area, buf);
    let [table_area, totals_area] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(1)]).areas(inner);
    Table::new(
        rows,
        [
            Constraint::Length(11),
            Constraint::Length(8),
            Constraint::Length(5),
            Constraint::Fill(1),
        ],
    )
    .header(header)
    .render(table_area, buf);
    // The totals span the panel's width rather than sit in the table's narrow last
    // column, so that a six-digit total still shows whole.
    Line::from(vec![
        Span::styled("IPv4 ", theme.dim()),
        Span::raw(model.ipv4_total.to_string()),
        Span::styled("  IPv6 ", theme.dim()),
        Span::raw(model.ipv6_total.to_string()),
    ])
    .render(totals_area, buf);
    Line::from(vec![
        Span::styled("all ", theme.dim()),
        Span::raw(model.counts.total().to_string()),
    ])
    .right_aligned()
    .render(totals_area, buf);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::views::fixtures;
    use crate::tui::views::testing::text;

    #[test]
    fn all_eleven_states_show_with_their_change_and_rate() {
        let model = fixtures::flooded();
        let screen = text(WIDTH, HEIGHT, |area, buf| {
            render(&model, &Theme::MONO, area, buf)
        });
        insta::assert_snapshot!(screen);
        for state in State::ALL {
            assert!(screen.contains(state.name()), "{state}");
        }
        assert!(
            screen.contains("SYN_RECV         400  +100  +100.0"),
            "{screen}"
        );
    }

    #[test]
    fn five_digit_counts_and_their_total_show_whole() {
        let mut model = fixtures::first_poll();
        model.counts = crate::snapshot::Counts::default();
        for _ in 0..20_692 {
            model.counts.add(State::TimeWait);
        }
        model.ipv4_total = 15_000;
        model.ipv6_total = 5_692;
        let screen = text(WIDTH, HEIGHT, |area, buf| {
            render(&model, &Theme::MONO, area, buf)
        });
        assert!(screen.contains("TIME_WAIT      20692"), "{screen}");
        assert!(
            screen.contains("│IPv4 15000  IPv6 5692    all 20692│"),
            "{screen}"
        );
    }

    #[test]
    fn before_a_second_poll_there_is_no_change_to_show() {
        let model = fixtures::first_poll();
        let screen = text(WIDTH, HEIGHT, |area, buf| {
            render(&model, &Theme::MONO, area, buf)
        });
        insta::assert_snapshot!(screen);
    }
}
