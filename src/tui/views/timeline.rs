//! The timeline: per-state counts over the polls kept, as a chart of the states the
//! user chose (Enter on the legend toggles one), above the transition log.

use std::time::SystemTime;

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType, Paragraph, Widget};

use crate::tcp::State;
use crate::tui::model::{Model, Ui};
use crate::tui::theme::Theme;

use super::transitions;

const LEGEND_WIDTH: u16 = 17;

pub fn render(model: &Model, ui: &Ui, theme: &Theme, area: Rect, buf: &mut Buffer) {
    // The legend needs all eleven states and its borders; wider screens give the
    // chart more.
    let top_height = (area.height * 55 / 100).max(13);
    let [top, log] =
        Layout::vertical([Constraint::Length(top_height), Constraint::Fill(1)]).areas(area);
    let [legend_area, chart_area] =
        Layout::horizontal([Constraint::Length(LEGEND_WIDTH), Constraint::Fill(1)]).areas(top);
    render_legend(ui, theme, legend_area, buf);
    render_chart(model, ui, theme, chart_area, buf);
    transitions::render(model, theme, log, buf);
}

fn render_legend(ui: &Ui, theme: &Theme, area: Rect, buf: &mut Buffer) {
    let lines: Vec<Line> = State::ALL
        .into_iter()
        .map(|state| {
            let mark = if ui.plotted[state.index()] {
                "■ "
            } else {
                "□ "
            };
            let line = Line::from(vec![
                Span::styled(mark, theme.state(state)),
                Span::styled(state.name(), theme.state(state)),
            ]);
            if ui.timeline_cursor == state.index() {
                line.style(theme.selected())
            } else {
                line
            }
        })
        .collect();
    Paragraph::new(lines)
        .block(Block::bordered().title(Line::styled(" Plot ", theme.title())))
        .render(area, buf);
}

fn seconds_before(latest: SystemTime, then: SystemTime) -> f64 {
    -latest
        .duration_since(then)
        .map_or(0.0, |age| age.as_secs_f64())
}

fn render_chart(model: &Model, ui: &Ui, theme: &Theme, area: Rect, buf: &mut Buffer) {
    let history = &model.history;
    let latest = history
        .latest()
        .map_or(SystemTime::UNIX_EPOCH, |poll| poll.taken_at);
    let oldest = history.polls().next().map_or(latest, |poll| poll.taken_at);
    let span = -seconds_before(latest, oldest);
    let plotted: Vec<State> = State::ALL
        .into_iter()
        .filter(|state| ui.plotted[state.index()])
        .collect();
    let series: Vec<Vec<(f64, f64)>> = plotted
        .iter()
        .map(|&state| {
            history
                .polls()
                .map(|poll| {
                    (
                        seconds_before(latest, poll.taken_at),
                        f64::from(poll.counts.get(state)),
                    )
                })
                .collect()
        })
        .collect();
    let highest = series
        .iter()
        .flatten()
        .map(|&(_, count)| count)
        .fold(1.0, f64::max);
    let datasets = plotted
        .iter()
        .zip(&series)
        .map(|(&state, points)| {
            Dataset::default()
                .name(state.name())
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(theme.state(state))
                .data(points)
        })
        .collect();
    let x_labels = vec![
        Span::raw(format!("-{span:.0}s")),
        Span::raw(format!("-{:.0}s", span / 2.0)),
        Span::raw("now"),
    ];
    let y_labels = vec![
        Span::raw("0"),
        Span::raw(format!("{:.0}", highest / 2.0)),
        Span::raw(format!("{highest:.0}")),
    ];
    Chart::new(datasets)
        .block(Block::bordered().title(Line::styled(" Sockets per state ", theme.title())))
        .x_axis(
            Axis::default()
                .bounds([-span.max(1.0), 0.0])
                .labels(x_labels)
                .style(theme.dim()),
        )
        .y_axis(
            Axis::default()
                .bounds([0.0, highest])
                .labels(y_labels)
                .style(theme.dim()),
        )
        .legend_position(Some(ratatui::widgets::LegendPosition::TopLeft))
        .render(area, buf);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::views::fixtures;
    use crate::tui::views::testing::text;

    #[test]
    fn the_timeline_plots_the_chosen_states_above_the_log_at_80x24() {
        let model = fixtures::flooded();
        let screen = text(80, 22, |area, buf| {
            render(&model, &Ui::default(), &Theme::MONO, area, buf)
        });
        insta::assert_snapshot!(screen);
    }

    #[test]
    fn the_timeline_at_120x40() {
        let model = fixtures::flooded();
        let screen = text(120, 38, |area, buf| {
            render(&model, &Ui::default(), &Theme::MONO, area, buf)
        });
        insta::assert_snapshot!(screen);
        assert!(screen.contains("■ SYN_RECV"), "{screen}");
    }
}
