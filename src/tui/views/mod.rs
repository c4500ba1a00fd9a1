//! One widget per file, each a function of the model that draws into a `Buffer`:
//! no polling, no locks, no clock. [`screen`] splits the terminal and calls the others.
//!
//! Every view is tested on a plain `Buffer` from a deterministic model ([`fixtures`]),
//! at 80x24 and 120x40.

pub mod close_wait;
pub mod connections;
pub mod counts;
pub mod detail;
pub mod diagram;
pub mod findings;
pub mod groups;
pub mod help;
pub mod namespaces;
pub mod screen;
pub mod status;
pub mod syn_watch;
pub mod timeline;
pub mod too_small;
pub mod transitions;
pub mod trend;

#[cfg(test)]
pub(crate) mod fixtures;

use std::time::Duration;

use ratatui::text::{Line, Span};

/// Lays out `fields` left to right, two spaces apart, starting a new line where the
/// next field would not fit in `width`: the SYN watch and the detail pane use it to
/// fill wide terminals and stay readable on narrow ones.
pub fn flow<'a>(fields: Vec<Vec<Span<'a>>>, width: u16) -> Vec<Line<'a>> {
    let width = usize::from(width);
    let mut lines: Vec<Line<'a>> = Vec::new();
    let mut current: Vec<Span<'a>> = Vec::new();
    let mut used = 0;
    for field in fields {
        let field_width: usize = field.iter().map(Span::width).sum();
        if !current.is_empty() && used + 2 + field_width > width {
            lines.push(Line::from(std::mem::take(&mut current)));
            used = 0;
        }
        if !current.is_empty() {
            current.push(Span::raw("  "));
            used += 2;
        }
        used += field_width;
        current.extend(field);
    }
    if !current.is_empty() {
        lines.push(Line::from(current));
    }
    lines
}

/// A duration as people read it on a dashboard: `850ms`, `12.3s`, `4m05s`.
pub fn short_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis < 1000 {
        format!("{millis}ms")
    } else if millis < 60_000 {
        format!("{:.1}s", duration.as_secs_f64())
    } else {
        let seconds = duration.as_secs();
        format!("{}m{:02}s", seconds / 60, seconds % 60)
    }
}

/// A per-second rate with one decimal, or `-` when nothing moved.
pub fn rate(per_second: f64) -> String {
    if per_second == 0.0 {
        "-".to_owned()
    } else {
        format!("{per_second:+.1}")
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use ratatui::buffer::Buffer;
    use ratatui::layout::Rect;

    /// Draws with `render` on a `width` x `height` buffer and returns its text, one
    /// line per row, trailing spaces removed: what a user would read.
    pub fn text(width: u16, height: u16, render: impl FnOnce(Rect, &mut Buffer)) -> String {
        let area = Rect::new(0, 0, width, height);
        let mut buffer = Buffer::empty(area);
        render(area, &mut buffer);
        let mut out = String::new();
        for y in 0..height {
            let mut line = String::new();
            let mut skip = 0;
            for x in 0..width {
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                let symbol = buffer[(x, y)].symbol();
                skip = unicode_width(symbol).saturating_sub(1);
                line.push_str(symbol);
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    fn unicode_width(symbol: &str) -> usize {
        ratatui::text::Span::raw(symbol).width().max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_flow_onto_a_new_line_when_the_next_one_does_not_fit() {
        let fields = vec![
            vec![Span::raw("half-open 200")],
            vec![Span::raw("queue 0/128")],
            vec![Span::raw("sources 200")],
        ];
        let lines = flow(fields.clone(), 30);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].to_string(), "half-open 200  queue 0/128");
        assert_eq!(flow(fields, 80).len(), 1);
    }

    #[test]
    fn durations_read_short() {
        assert_eq!(short_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(short_duration(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(short_duration(Duration::from_secs(245)), "4m05s");
    }
}
