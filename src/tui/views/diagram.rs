//! The TCP state diagram (RFC 9293 figure 5, the usual edges), with one connection's
//! current state and the path it took highlighted.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use crate::tcp::State;
use crate::tui::theme::Theme;

/// The diagram as text; state names in it are found and styled when drawn.
const DIAGRAM: [&str; 5] = [
    "CLOSED → LISTEN → SYN_RECV → ESTABLISHED → CLOSE_WAIT → LAST_ACK → CLOSED",
    "  │                            ↑  │",
    "  └→ SYN_SENT ─────────────────┘  └→ FIN_WAIT1 → FIN_WAIT2 → TIME_WAIT",
    "                                      │                        ↑",
    "                                      └→ CLOSING ──────────────┘",
];

pub const HEIGHT: u16 = DIAGRAM.len() as u16;

/// Splits a diagram line into text and states, taking the longest state name at each
/// position (so `CLOSE_WAIT` is not read as `CLOSED`… or `CLOSING`).
fn pieces(line: &str) -> Vec<(&str, Option<State>)> {
    let mut out = Vec::new();
    let mut plain_start = 0;
    let mut at = 0;
    while at < line.len() {
        let found = State::ALL
            .into_iter()
            .filter(|state| line[at..].starts_with(state.name()))
            .max_by_key(|state| state.name().len());
        match found {
            Some(state) => {
                if plain_start < at {
                    out.push((&line[plain_start..at], None));
                }
                let end = at + state.name().len();
                out.push((&line[at..end], Some(state)));
                at = end;
                plain_start = at;
            }
            None => {
                at += line[at..].chars().next().map_or(1, char::len_utf8);
            }
        }
    }
    if plain_start < line.len() {
        out.push((&line[plain_start..], None));
    }
    out
}

/// Draws the diagram with `current` reversed and the states of `path` emphasised.
pub fn render(current: Option<State>, path: &[State], theme: &Theme, area: Rect, buf: &mut Buffer) {
    let lines: Vec<Line> = DIAGRAM
        .iter()
        .map(|line| {
            Line::from(
                pieces(line)
                    .into_iter()
                    .map(|(text, state)| match state {
                        Some(state) if Some(state) == current => {
                            Span::styled(text, theme.state(state).patch(theme.selected()))
                        }
                        Some(state) if path.contains(&state) => Span::styled(text, theme.on_path()),
                        Some(state) => Span::styled(text, theme.state(state)),
                        None => Span::styled(text, theme.dim()),
                    })
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    Paragraph::new(lines).render(area, buf);
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::style::Modifier;

    #[test]
    fn every_state_appears_in_the_diagram() {
        let names: Vec<State> = DIAGRAM
            .iter()
            .flat_map(|line| pieces(line))
            .filter_map(|(_, state)| state)
            .collect();
        for state in State::ALL {
            assert!(names.contains(&state), "{state}");
        }
    }

    #[test]
    fn the_current_state_is_drawn_reversed() {
        let area = Rect::new(0, 0, 76, HEIGHT);
        let mut buf = Buffer::empty(area);
        render(
            Some(State::TimeWait),
            &[State::FinWait1],
            &Theme::MONO,
            area,
            &mut buf,
        );
        // TIME_WAIT starts at column 61 of the third line.
        assert!(buf[(61, 2)].modifier.contains(Modifier::REVERSED));
        assert_eq!(buf[(61, 2)].symbol(), "T");
        assert!(buf[(37, 2)].modifier.contains(Modifier::UNDERLINED));
    }
}
