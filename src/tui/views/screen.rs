//! The whole screen: tab bar, the current tab's views, the status line, and the help
//! overlay; or the too-small message when the terminal cannot hold them.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use crate::tui::model::{Model, Scroll, Tab, Ui};
use crate::tui::theme::Theme;
use crate::watch::findings::Escaped;

use super::{
    close_wait, connections, counts, detail, findings, groups, help, namespaces, status, syn_watch,
    timeline, too_small, trend,
};

/// The most rows the findings take across the top of a tall overview; more scroll.
const FINDINGS_TALL_MAX: u16 = 8;

/// Draws everything. `scroll` is the connections table's, kept across frames.
pub fn render(
    model: &Model,
    ui: &Ui,
    scroll: &mut Scroll,
    theme: &Theme,
    area: Rect,
    buf: &mut Buffer,
) {
    if !too_small::fits(area) {
        too_small::render(theme, area, buf);
        return;
    }
    let [tabs_area, body, status_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(area);
    render_tabs(model, ui, theme, tabs_area, buf);
    match ui.tab {
        Tab::Overview => render_overview(model, ui, theme, body, buf),
        Tab::Connections => match &model.detail {
            Some(detail) => detail::render(model, detail, theme, body, buf),
            None => connections::render(model, ui, scroll, theme, body, buf),
        },
        Tab::Timeline => timeline::render(model, ui, theme, body, buf),
        Tab::Namespaces => namespaces::render(model, ui, theme, body, buf),
        Tab::Groups => groups::render(model, ui, theme, body, buf),
    }
    status::render(model, ui, theme, status_area, buf);
    if ui.help {
        help::render(theme, area, buf);
    }
}

fn render_tabs(model: &Model, ui: &Ui, theme: &Theme, area: Rect, buf: &mut Buffer) {
    let tab_spans = |short_groups: bool| {
        let mut spans = vec![Span::styled("tcpscope ", theme.title())];
        for &tab in Tab::of(model) {
            let style = if tab == ui.tab {
                theme.selected()
            } else {
                theme.dim()
            };
            // The newest tab gives up its name first, so that a finding's severity
            // keeps its place on an 80-column terminal.
            let title = if short_groups && tab == Tab::Groups && tab != ui.tab {
                "5"
            } else {
                tab.title()
            };
            spans.push(Span::styled(format!(" {title} "), style));
            spans.push(Span::raw(" "));
        }
        spans
    };
    let mut spans = tab_spans(false);
    if let Some(top) = model.findings.first() {
        let used: usize = spans.iter().map(Span::width).sum();
        let shortest_with_severity = top.severity.name().len() + top.kind.id().len() + 4;
        let more = if model.findings.len() > 1 { 4 } else { 0 };
        if used + shortest_with_severity + 1 + more > usize::from(area.width) {
            spans = tab_spans(true);
        }
    }
    if let Some(headline) = headline(
        model,
        theme,
        area.width,
        spans.iter().map(Span::width).sum(),
    ) {
        spans.extend(headline);
    }
    Paragraph::new(Line::from(spans)).render(area, buf);
}

/// The most severe finding, for the tab bar: in full when it fits in what is left of
/// `width` after `used` columns, else shorter, down to its kind alone; then how many
/// more there are.
fn headline<'a>(model: &Model, theme: &Theme, width: u16, used: usize) -> Option<Vec<Span<'a>>> {
    let top = model.findings.first()?;
    let more = model.findings.len() - 1;
    let severity = top.severity.name().to_uppercase();
    let mut subject = format!(" on {}", top.subject);
    if let Some(netns) = &top.netns {
        subject.push_str(&format!(" in {}", Escaped(netns)));
    }
    let more = if more > 0 {
        format!("+{more} ")
    } else {
        String::new()
    };
    let room = usize::from(width).saturating_sub(used);
    let candidates = [
        format!(" {severity} {}{subject} ", top.kind.id()),
        format!(" {severity} {} ", top.kind.id()),
        format!(" {} ", top.kind.id()),
    ];
    let fits = |text: &String| Span::raw(text.as_str()).width() + 1 + more.chars().count() <= room;
    let text = candidates
        .iter()
        .find(|text| fits(text))
        .unwrap_or(&candidates[2])
        .clone();
    Some(vec![
        Span::styled(
            text,
            theme
                .severity(top.severity)
                .add_modifier(Modifier::REVERSED),
        ),
        Span::raw(" "),
        Span::styled(more, theme.dim()),
    ])
}

/// The overview. On a tall terminal (120x40): findings across the top, the counts and
/// kernel counters beside the SYN_RECV watch and the CLOSE_WAIT panel, and the compact
/// timeline across the bottom. On a short one (80x24) the counts take the left column
/// whole, the findings top the right one, and the timeline stays on its tab.
fn render_overview(model: &Model, ui: &Ui, theme: &Theme, area: Rect, buf: &mut Buffer) {
    let side = counts::HEIGHT + syn_watch::COUNTERS_HEIGHT;
    let wanted = findings::height(model);
    let tall = area.height >= side + wanted.min(FINDINGS_TALL_MAX) + trend::MIN_HEIGHT;
    let middle = if tall {
        let findings_height = wanted
            .min(FINDINGS_TALL_MAX)
            .min(area.height - side - trend::MIN_HEIGHT);
        let [findings_area, middle, trend_area] = Layout::vertical([
            Constraint::Length(findings_height),
            Constraint::Length(side),
            Constraint::Fill(1),
        ])
        .areas(area);
        findings::render(model, ui, theme, findings_area, buf);
        trend::render(model, theme, trend_area, buf);
        middle
    } else {
        area
    };
    let [left, right] =
        Layout::horizontal([Constraint::Length(counts::WIDTH), Constraint::Fill(1)]).areas(middle);
    let [counts_area, counters_area, _] = Layout::vertical([
        Constraint::Length(counts::HEIGHT),
        Constraint::Length(syn_watch::COUNTERS_HEIGHT),
        Constraint::Fill(1),
    ])
    .areas(left);
    counts::render(model, theme, counts_area, buf);
    syn_watch::render_counters(model, theme, counters_area, buf);
    let right = if tall {
        right
    } else {
        // A third of the column at most, so that the SYN_RECV watch keeps room.
        let [findings_area, rest] = Layout::vertical([
            Constraint::Length(wanted.min(right.height / 3)),
            Constraint::Fill(1),
        ])
        .areas(right);
        findings::render(model, ui, theme, findings_area, buf);
        rest
    };
    // The CLOSE_WAIT panel takes what it needs below the SYN_RECV watch, never more
    // than half the column.
    let leaks_height = close_wait::height(model, theme, right.width).min(right.height / 2);
    let [listeners_area, leaks_area] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(leaks_height)]).areas(right);
    syn_watch::render_listeners(model, theme, listeners_area, buf);
    close_wait::render(model, theme, leaks_area, buf);
    if let Some(opened) = &ui.finding_open {
        findings::render_open(model, opened, theme, area, buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::views::fixtures;
    use crate::tui::views::testing::text;

    fn screen(width: u16, height: u16, ui: &Ui) -> String {
        let model = fixtures::flooded();
        let mut scroll = Scroll::default();
        text(width, height, |area, buf| {
            render(&model, ui, &mut scroll, &Theme::MONO, area, buf)
        })
    }

    #[test]
    fn the_overview_at_80x24_shows_counts_counters_and_the_flood() {
        let screen = screen(80, 24, &Ui::default());
        insta::assert_snapshot!(screen);
        assert!(screen.contains("SYN flood suspected"), "{screen}");
    }

    #[test]
    fn the_overview_at_120x40() {
        insta::assert_snapshot!(screen(120, 40, &Ui::default()));
    }

    #[test]
    fn a_growing_close_wait_count_is_flagged_on_the_overview_at_80x24() {
        let model = fixtures::leaking();
        let mut scroll = Scroll::default();
        let screen = text(80, 24, |area, buf| {
            render(&model, &Ui::default(), &mut scroll, &Theme::MONO, area, buf)
        });
        insta::assert_snapshot!(screen);
        assert!(
            screen
                .lines()
                .next()
                .is_some_and(|tabs| tabs.contains("CRITICAL syn_flood  +1")),
            "{screen}"
        );
        assert!(
            screen.contains("WARN local port 9000: 7 sockets in CLOSE_W"),
            "{screen}"
        );
        assert!(screen.contains("CLOSE_WAIT LEAK"), "{screen}");
        assert!(screen.contains("4242/leaky-api"), "{screen}");
        assert!(screen.contains(close_wait::LEAK), "{screen}");
    }

    #[test]
    fn the_help_overlays_the_view() {
        let ui = Ui {
            help: true,
            ..Ui::default()
        };
        insta::assert_snapshot!(screen(80, 24, &ui));
    }

    #[test]
    fn across_namespaces_the_watch_names_each_listeners_namespace_and_a_fourth_tab_shows() {
        let model = fixtures::across_namespaces();
        let screen = text(120, 40, |area, buf| {
            render(
                &model,
                &Ui::default(),
                &mut Scroll::default(),
                &Theme::MONO,
                area,
                buf,
            )
        });
        insta::assert_snapshot!(screen);
        assert!(screen.contains("4 Namespaces"), "{screen}");
        assert!(
            screen.contains("127.0.0.1:80 in 3f2a9c4e5d6b  SYN flood suspected"),
            "{screen}"
        );
    }

    #[test]
    fn a_terminal_below_80x24_gets_the_too_small_message_instead() {
        let screen = screen(79, 30, &Ui::default());
        assert!(screen.contains("needs 80x24, has 79x30"), "{screen}");
        assert!(!screen.contains("SYN_RECV"), "{screen}");
    }

    #[test]
    fn the_connections_and_timeline_tabs_at_120x40() {
        let connections = screen(
            120,
            40,
            &Ui {
                tab: Tab::Connections,
                ..Ui::default()
            },
        );
        insta::assert_snapshot!("connections_120x40", connections);
        let timeline = screen(
            120,
            40,
            &Ui {
                tab: Tab::Timeline,
                ..Ui::default()
            },
        );
        insta::assert_snapshot!("timeline_120x40", timeline);
    }
}
