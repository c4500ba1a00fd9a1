//! The overview's compact timeline: the states that say most about a host's health
//! (SYN_RECV, ESTABLISHED, TIME_WAIT, CLOSE_WAIT), each as a sparkline of its count
//! over the latest polls with its count now and its peak. Each state has its own
//! scale, from zero to its peak, so that a few dozen CLOSE_WAIT sockets show their
//! trend beside thousands of established ones. The Timeline tab plots any state on
//! one shared scale.

use std::time::Duration;

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Sparkline, Widget};

use crate::tcp::State;
use crate::tui::model::Model;
use crate::tui::theme::Theme;

use super::short_duration;

/// The states shown, in the order a connection meets them.
pub const STATES: [State; 4] = [
    State::SynRecv,
    State::Established,
    State::CloseWait,
    State::TimeWait,
];
/// The fewest rows worth drawing: borders and one row per state.
pub const MIN_HEIGHT: u16 = 2 + STATES.len() as u16;
/// Width of the name, count-now and peak columns before each sparkline.
const LABELS_WIDTH: u16 = 12 + 8 + 14;

pub fn render(model: &Model, theme: &Theme, area: Rect, buf: &mut Buffer) {
    let history = &model.history;
    let inner_width = area.width.saturating_sub(2).saturating_sub(LABELS_WIDTH);
    // The sparklines show the latest polls that fit, one column each.
    let shown = history.polls().len().min(usize::from(inner_width));
    let skip = history.polls().len() - shown;
    let span = match (history.polls().nth(skip), model.taken_at()) {
        (Some(first), Some(latest)) => latest.duration_since(first.taken_at).unwrap_or_default(),
        _ => Duration::ZERO,
    };
    let block = Block::bordered().title(Line::from(vec![
        Span::styled(" Timeline ", theme.title()),
        Span::styled(
            format!("last {} (tab 3 plots any state) ", short_duration(span)),
            theme.dim(),
        ),
    ]));
    let inner = block.inner(area);
    block.render(area, buf);

    let rows_each = (inner.height / STATES.len() as u16).max(1);
    let rows = Layout::vertical([Constraint::Length(rows_each); STATES.len()]).split(inner);
    for (state, row) in STATES.into_iter().zip(rows.iter()) {
        let series: Vec<u64> = history.series(state).skip(skip).map(u64::from).collect();
        let now = series.last().copied().unwrap_or(0);
        let peak = series.iter().copied().max().unwrap_or(0);
        let [name_area, now_area, peak_area, line_area] = Layout::horizontal([
            Constraint::Length(12),
            Constraint::Length(8),
            Constraint::Length(14),
            Constraint::Fill(1),
        ])
        .areas(*row);
        Line::styled(state.name(), theme.state(state)).render(name_area, buf);
        Line::from(now.to_string())
            .right_aligned()
            .render(now_area, buf);
        Line::from(vec![
            Span::styled("  peak ", theme.dim()),
            Span::raw(peak.to_string()),
        ])
        .render(peak_area, buf);
        Sparkline::default()
            .data(&series)
            .max(peak.max(1))
            .style(theme.state(state))
            .render(line_area, buf);
    }
}
