//! The CLOSE_WAIT panel: sockets whose peer has closed and whose application has not,
//! per process and per local port, with how long the oldest has been seen there, and
//! "application not closing sockets" on a process (or port) whose count keeps growing.
//!
//! Its height follows what it has to say (see [`height`]), so that a quiet host gives
//! the SYN_RECV watch above it nearly all the room.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Widget};

use crate::tui::model::Model;
use crate::tui::theme::Theme;
use crate::watch::{PortLeak, ProcessLeak};

use super::{flow, short_duration};

/// What a growing group is called out as.
pub const LEAK: &str = "application not closing sockets";
/// Processes listed at most; the rest are summed up in one line.
const MAX_PROCESSES: usize = 4;
/// Local ports listed at most on the ports line.
const MAX_PORTS: usize = 6;
/// Ports listed at most on a process's line.
const MAX_PORTS_PER_PROCESS: usize = 3;
/// The most rows the panel takes, borders included.
const MAX_HEIGHT: u16 = 12;

/// The rows the panel needs at `width` (borders included), at most [`MAX_HEIGHT`].
pub fn height(model: &Model, theme: &Theme, width: u16) -> u16 {
    let inner = width.saturating_sub(2);
    let lines = u16::try_from(lines(model, theme, inner).len()).unwrap_or(u16::MAX);
    lines.saturating_add(2).min(MAX_HEIGHT)
}

pub fn render(model: &Model, theme: &Theme, area: Rect, buf: &mut Buffer) {
    let title = if model.close_wait_leak() {
        Line::from(vec![
            Span::styled(" CLOSE_WAIT ", theme.title()),
            Span::styled("LEAK ", theme.error()),
        ])
    } else {
        Line::styled(" CLOSE_WAIT ", theme.title())
    };
    let block = Block::bordered().title(title);
    let inner = block.inner(area);
    block.render(area, buf);
    Paragraph::new(lines(model, theme, inner.width)).render(inner, buf);
}

fn lines<'a>(model: &'a Model, theme: &Theme, width: u16) -> Vec<Line<'a>> {
    let leaks = &model.close_wait;
    if leaks.processes.is_empty() && leaks.ports.is_empty() {
        return vec![Line::styled("No CLOSE_WAIT sockets.", theme.dim())];
    }
    let mut lines = Vec::new();
    for leak in leaks.processes.iter().take(MAX_PROCESSES) {
        lines.extend(process_lines(leak, theme, width));
    }
    let more = leaks.processes.len().saturating_sub(MAX_PROCESSES);
    if more > 0 {
        let sockets: u32 = leaks
            .processes
            .iter()
            .skip(MAX_PROCESSES)
            .map(|leak| leak.close_wait)
            .sum();
        lines.push(Line::styled(
            format!("… {more} more holding {sockets}"),
            theme.dim(),
        ));
    }
    lines.extend(ports_lines(&leaks.ports, theme, width));
    lines
}

fn process_lines<'a>(leak: &'a ProcessLeak, theme: &Theme, width: u16) -> Vec<Line<'a>> {
    let label = |text: &'static str| Span::styled(text, theme.dim());
    let holder = match &leak.owner {
        Some(owner) => Span::styled(format!("{}/{}", owner.pid, owner.name), theme.title()),
        // Not accepted yet (a slow accept(), not a leak), or opened since the last scan.
        None => Span::styled("(owner not known)", theme.dim()),
    };
    let mut ports: Vec<String> = leak
        .local_ports
        .iter()
        .take(MAX_PORTS_PER_PROCESS)
        .map(|port| format!(":{port}"))
        .collect();
    if leak.local_ports.len() > MAX_PORTS_PER_PROCESS {
        ports.push("…".to_owned());
    }
    let mut fields = vec![
        vec![holder],
        vec![
            Span::raw(leak.close_wait.to_string()),
            label(if leak.close_wait == 1 {
                " socket"
            } else {
                " sockets"
            }),
        ],
        vec![label("oldest "), Span::raw(short_duration(leak.oldest))],
        vec![label("on "), Span::raw(ports.join(" "))],
    ];
    if leak.growing && leak.owner.is_some() {
        fields.push(vec![Span::styled(LEAK, theme.error())]);
    }
    flow(fields, width)
}

fn ports_lines<'a>(ports: &[PortLeak], theme: &Theme, width: u16) -> Vec<Line<'a>> {
    let mut fields = vec![vec![Span::styled("by port", theme.dim())]];
    for leak in ports.iter().take(MAX_PORTS) {
        let style = if leak.growing {
            theme.error()
        } else {
            theme.dim()
        };
        let mut field = vec![
            Span::raw(format!(":{} ", leak.local_port)),
            Span::raw(leak.close_wait.to_string()),
            Span::styled(format!(" ({})", short_duration(leak.oldest)), theme.dim()),
        ];
        if leak.growing {
            field.push(Span::styled(" growing", style));
        }
        fields.push(field);
    }
    if ports.len() > MAX_PORTS {
        fields.push(vec![Span::styled(
            format!("… {} more", ports.len() - MAX_PORTS),
            theme.dim(),
        )]);
    }
    flow(fields, width)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::views::fixtures;
    use crate::tui::views::testing::text;

    #[test]
    fn a_process_whose_close_wait_keeps_growing_is_called_out_and_the_rest_are_listed() {
        let model = fixtures::leaking();
        let width = 60;
        let screen = text(width, height(&model, &Theme::MONO, width), |area, buf| {
            render(&model, &Theme::MONO, area, buf)
        });
        insta::assert_snapshot!(screen);
        let leaky = screen
            .lines()
            .find(|line| line.contains("4242/leaky-api"))
            .unwrap_or_default();
        assert!(leaky.contains("7 sockets"), "{screen}");
        assert!(screen.contains(LEAK), "{screen}");
        assert!(screen.contains("CLOSE_WAIT LEAK"), "{screen}");
        assert!(screen.contains(":9000 7 (6.0s) growing"), "{screen}");
        let worker = screen
            .lines()
            .find(|line| line.contains("4343/worker"))
            .unwrap_or_default();
        assert!(!worker.contains(LEAK), "{screen}");
    }

    #[test]
    fn sockets_without_a_known_owner_are_counted_but_never_flagged() {
        let model = fixtures::flooded();
        let width = 44;
        let screen = text(width, height(&model, &Theme::MONO, width), |area, buf| {
            render(&model, &Theme::MONO, area, buf)
        });
        assert!(screen.contains("(owner not known)"), "{screen}");
        assert!(screen.contains(":8080 1"), "{screen}");
        assert!(!screen.contains(LEAK), "{screen}");
        assert!(!screen.contains("LEAK"), "{screen}");
    }

    #[test]
    fn a_host_without_close_wait_gets_a_three_row_panel_saying_so() {
        let mut model = fixtures::flooded();
        model.close_wait = crate::watch::CloseWaitLeaks::default();
        assert_eq!(height(&model, &Theme::MONO, 44), 3);
        let screen = text(44, 3, |area, buf| render(&model, &Theme::MONO, area, buf));
        assert!(screen.contains("No CLOSE_WAIT sockets."), "{screen}");
    }
}
