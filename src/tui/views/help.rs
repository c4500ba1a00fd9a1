//! The help overlay (`?`): every key from the one key table, so the help cannot drift
//! from what the keys do, and the filter line's syntax.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Widget};

use crate::tui::keys::BINDINGS;
use crate::tui::theme::Theme;

pub fn render(theme: &Theme, area: Rect, buf: &mut Buffer) {
    let mut lines: Vec<Line> = BINDINGS
        .iter()
        // A binding without keys of its own is the second half of the line above
        // (`PgUp  PgDn`): the help lists the pair once.
        .filter(|binding| !binding.keys.is_empty())
        .map(|binding| {
            Line::from(vec![
                Span::styled(format!("{:<14}", binding.keys), theme.key()),
                Span::raw(binding.help),
            ])
        })
        .collect();
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        "Filter: words that must all match, e.g.",
        theme.dim(),
    ));
    lines.push(Line::raw(
        "  syn-recv :443 10.0.0.0/8    estab,close-wait 192.168.",
    ));
    let height = u16::try_from(lines.len())
        .unwrap_or(u16::MAX)
        .saturating_add(2);
    let [column] = Layout::horizontal([Constraint::Length(62)])
        .flex(Flex::Center)
        .areas(area);
    let [popup] = Layout::vertical([Constraint::Length(height)])
        .flex(Flex::Center)
        .areas(column);
    Clear.render(popup, buf);
    Paragraph::new(lines)
        .block(Block::bordered().title(Line::styled(" Keys (? or Esc to close) ", theme.title())))
        .render(popup, buf);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::views::testing::text;

    #[test]
    fn the_help_lists_every_key_at_80x24() {
        let screen = text(80, 24, |area, buf| render(&Theme::MONO, area, buf));
        insta::assert_snapshot!(screen);
        for binding in BINDINGS.iter().filter(|b| !b.help.is_empty()) {
            assert!(screen.contains(binding.help), "{}", binding.help);
        }
    }

    #[test]
    fn the_help_sits_in_the_middle_at_120x40() {
        let screen = text(120, 40, |area, buf| render(&Theme::MONO, area, buf));
        insta::assert_snapshot!(screen);
    }
}
