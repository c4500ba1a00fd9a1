//! What is drawn instead of the view when the terminal is too small for it: the size
//! it needs and the size it has, rather than a garbled layout.

use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Rect, Size};
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Widget, Wrap};

use crate::tui::theme::Theme;

/// The smallest terminal the full view fits in.
pub const MINIMUM: Size = Size::new(80, 24);

pub fn fits(area: Rect) -> bool {
    area.width >= MINIMUM.width && area.height >= MINIMUM.height
}

pub fn render(theme: &Theme, area: Rect, buf: &mut Buffer) {
    let lines = vec![
        Line::styled("Terminal too small for tcpscope", theme.error()),
        Line::from(format!(
            "needs {}x{}, has {}x{}",
            MINIMUM.width, MINIMUM.height, area.width, area.height
        )),
        Line::styled("enlarge it, or press q to quit", theme.dim()),
    ];
    let top = area.height.saturating_sub(3) / 2;
    let [_, middle] = ratatui::layout::Layout::vertical([
        ratatui::layout::Constraint::Length(top),
        ratatui::layout::Constraint::Fill(1),
    ])
    .areas(area);
    Paragraph::new(lines)
        .alignment(Alignment::Center)
        .wrap(Wrap { trim: true })
        .render(middle, buf);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::views::testing::text;

    #[test]
    fn a_small_terminal_is_told_the_size_it_needs() {
        let screen = text(60, 10, |area, buf| render(&Theme::MONO, area, buf));
        insta::assert_snapshot!(screen);
        assert!(screen.contains("needs 80x24, has 60x10"));
    }

    #[test]
    fn the_full_view_fits_from_80x24() {
        assert!(fits(Rect::new(0, 0, 80, 24)));
        assert!(!fits(Rect::new(0, 0, 79, 24)));
        assert!(!fits(Rect::new(0, 0, 120, 23)));
    }
}
