//! The findings panel on the overview: every incident the findings name now, most
//! severe first, one line each, the selected one marked for Enter; and the finding
//! Enter opened, drawn over the overview with its evidence as `name: value` lines, its
//! remedy and how long it has been raised.
//!
//! On a calm host the panel is one line saying so, so that it takes little room. Text
//! from outside (process names in subjects and summaries, namespace labels) is shown
//! with its control characters escaped, as every output shows it.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Widget, Wrap};

use crate::tui::model::{Model, Ui};
use crate::tui::theme::Theme;
use crate::watch::findings::{Escaped, Finding, Severity, Value};

use super::short_duration;

/// What the panel says when no finding is raised.
pub const CALM: &str = "None: no incident named on this host.";
/// Width from which each line names its kind's id as well as its summary.
const WIDE: u16 = 90;
/// The widest the opened finding is drawn.
const OPEN_WIDTH: u16 = 100;

/// The rows the panel needs, borders included: one line per finding, or one saying
/// there is none.
pub fn height(model: &Model) -> u16 {
    let lines = u16::try_from(model.findings.len().max(1)).unwrap_or(u16::MAX);
    lines.saturating_add(2)
}

/// The panel: one line per finding, the selected one reversed.
pub fn render(model: &Model, ui: &Ui, theme: &Theme, area: Rect, buf: &mut Buffer) {
    let findings = &model.findings;
    let mut title = vec![Span::styled(" Findings ", theme.title())];
    for severity in [Severity::Critical, Severity::Warning] {
        let count = findings.iter().filter(|f| f.severity == severity).count();
        if count > 0 {
            title.push(Span::styled(
                format!("{count} {} ", severity.name()),
                theme.severity(severity),
            ));
        }
    }
    let mut block = Block::bordered().title(Line::from(title));
    // The hint only where it cannot crowd out the counts in the title.
    if !findings.is_empty() && area.width >= WIDE {
        block = block.title(Line::styled(" Enter: evidence ", theme.dim()).right_aligned());
    }
    let inner = block.inner(area);
    block.render(area, buf);
    if findings.is_empty() {
        Line::styled(CALM, theme.dim()).render(inner, buf);
        return;
    }
    let visible = usize::from(inner.height).max(1);
    let selected = ui.finding_row.min(findings.len() - 1);
    let offset = (selected + 1).saturating_sub(visible);
    let lines: Vec<Line> = findings
        .iter()
        .enumerate()
        .skip(offset)
        .take(visible)
        .map(|(i, finding)| {
            let line = finding_line(model, finding, theme, inner.width);
            if i == selected {
                line.style(theme.selected())
            } else {
                line
            }
        })
        .collect();
    Paragraph::new(lines).render(inner, buf);
}

/// One finding on one line: its severity; when there is room, its kind and how long
/// it has been raised; its namespace; and its summary last, where a cut loses least.
fn finding_line<'a>(model: &Model, finding: &'a Finding, theme: &Theme, width: u16) -> Line<'a> {
    let mut spans = if width >= WIDE {
        vec![
            Span::styled(
                format!(
                    "{:<8}  {:<18}  ",
                    finding.severity.name(),
                    finding.kind.id()
                ),
                theme.severity(finding.severity),
            ),
            Span::styled(
                format!("{:>6}  ", age(model, finding).unwrap_or_default()),
                theme.dim(),
            ),
        ]
    } else {
        let severity = match finding.severity {
            Severity::Critical => "CRIT ",
            Severity::Warning => "WARN ",
        };
        vec![Span::styled(severity, theme.severity(finding.severity))]
    };
    if let Some(netns) = &finding.netns {
        spans.push(Span::styled(format!("{}: ", Escaped(netns)), theme.dim()));
    }
    spans.push(Span::raw(finding.summary.as_str()));
    Line::from(spans)
}

/// How long `finding` has been raised, by the latest poll's clock.
fn age(model: &Model, finding: &Finding) -> Option<String> {
    let raised = model
        .taken_at()?
        .duration_since(finding.since?)
        .unwrap_or_default();
    Some(short_duration(raised))
}

/// The finding Enter opened, over `area`: its latest numbers while it is raised, the
/// numbers it had when opened once it is not.
pub fn render_open(model: &Model, opened: &Finding, theme: &Theme, area: Rect, buf: &mut Buffer) {
    let current = model.finding_like(opened);
    let finding = current.unwrap_or(opened);
    let label = |text: &'static str| Span::styled(text, theme.dim());
    let mut lines = vec![Line::from(vec![
        Span::styled(finding.severity.name(), theme.severity(finding.severity)),
        Span::raw("  "),
        Span::styled(finding.kind.id(), theme.title()),
        label("  about "),
        Span::raw(finding.subject.to_string()),
    ])];
    if let Some(netns) = &finding.netns {
        lines.push(Line::from(vec![
            label("network namespace "),
            Span::raw(Escaped(netns).to_string()),
        ]));
    }
    lines.push(Line::raw(finding.summary.as_str()));
    lines.push(match (current, age(model, finding)) {
        (None, _) => Line::styled(
            "Cleared: the condition is gone; the numbers are those it had when opened.",
            theme.warning(),
        ),
        (Some(_), Some(age)) => Line::from(vec![label("raised "), Span::raw(age), label(" ago")]),
        (Some(_), None) => Line::raw(""),
    });
    lines.push(Line::raw(""));
    lines.push(Line::styled("Evidence", theme.header()));
    for (name, value) in finding.evidence.iter() {
        lines.push(Line::from(vec![
            Span::styled(format!("  {name}: "), theme.dim()),
            Span::raw(shown(value)),
        ]));
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled("Remedy", theme.header()));
    lines.push(Line::raw(finding.remedy));

    let width = area.width.saturating_sub(4).min(OPEN_WIDTH);
    let inner_width = width.saturating_sub(2).max(1);
    // Lines longer than the box wrap; count the rows they take to size the box.
    let rows: usize = lines
        .iter()
        .map(|line| line.width().max(1).div_ceil(usize::from(inner_width)))
        .sum();
    let height = u16::try_from(rows)
        .unwrap_or(u16::MAX)
        .saturating_add(2)
        .min(area.height);
    let [column] = Layout::horizontal([Constraint::Length(width)])
        .flex(Flex::Center)
        .areas(area);
    let [popup] = Layout::vertical([Constraint::Length(height)])
        .flex(Flex::Center)
        .areas(column);
    Clear.render(popup, buf);
    Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .block(Block::bordered().title(Line::styled(" Finding (Esc to close) ", theme.title())))
        .render(popup, buf);
}

/// An evidence value as people read it: counts whole, shares and rates with at most
/// two decimals, flags as yes or no, text escaped.
fn shown(value: &Value) -> String {
    match value {
        Value::Count(count) => count.to_string(),
        Value::Number(number) => {
            let text = format!("{number:.2}");
            text.trim_end_matches('0').trim_end_matches('.').to_owned()
        }
        Value::Text(text) => Escaped(text).to_string(),
        Value::Flag(true) => "yes".to_owned(),
        Value::Flag(false) => "no".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::views::fixtures;
    use crate::tui::views::testing::text;
    use crate::watch::findings::{Evidence, Kind, Subject};

    fn panel(model: &Model, ui: &Ui, width: u16) -> String {
        text(width, height(model), |area, buf| {
            render(model, ui, &Theme::MONO, area, buf)
        })
    }

    #[test]
    fn a_calm_host_gets_one_line_saying_so() {
        let model = fixtures::first_poll();
        assert_eq!(height(&model), 3);
        let screen = panel(&model, &Ui::default(), 80);
        assert!(screen.contains(CALM), "{screen}");
    }

    #[test]
    fn a_flood_is_named_on_one_line_with_its_severity_kind_and_age() {
        let model = fixtures::flooded();
        let screen = panel(&model, &Ui::default(), 120);
        insta::assert_snapshot!(screen);
        let line = screen
            .lines()
            .find(|line| line.contains("syn_flood"))
            .unwrap_or_else(|| panic!("no syn_flood line:\n{screen}"));
        assert!(line.contains("critical"), "{line}");
        assert!(line.contains("SYN flood on 10.0.0.1:80"), "{line}");
        assert!(line.contains("  1.0s  SYN flood"), "{line}");
    }

    #[test]
    fn a_narrow_panel_keeps_the_severity_and_the_summary() {
        let model = fixtures::flooded();
        let screen = panel(&model, &Ui::default(), 44);
        assert!(screen.contains("CRIT SYN flood on 10.0.0.1:80"), "{screen}");
    }

    #[test]
    fn the_open_finding_shows_its_evidence_remedy_and_age() {
        let model = fixtures::flooded();
        let opened = model.findings[0].clone();
        let screen = text(120, 38, |area, buf| {
            render_open(&model, &opened, &Theme::MONO, area, buf)
        });
        insta::assert_snapshot!(screen);
        assert!(screen.contains("half_open: 300"), "{screen}");
        assert!(screen.contains("held_by_syn_cookies: no"), "{screen}");
        assert!(screen.contains("raised 1.0s ago"), "{screen}");
        assert!(screen.contains("net.ipv4.tcp_syncookies"), "{screen}");
    }

    #[test]
    fn a_finding_that_cleared_while_open_says_so_and_keeps_its_numbers() {
        let model = fixtures::first_poll();
        let opened = fixtures::flooded().findings[0].clone();
        let screen = text(80, 22, |area, buf| {
            render_open(&model, &opened, &Theme::MONO, area, buf)
        });
        assert!(screen.contains("Cleared"), "{screen}");
        assert!(screen.contains("half_open: 300"), "{screen}");
    }

    #[test]
    fn a_process_name_with_control_characters_is_shown_escaped() {
        let mut model = fixtures::first_poll();
        let name = "evil\u{1b}[2J\nname".to_owned();
        model.findings.push(Finding::new(
            Kind::CloseWaitLeak,
            Severity::Warning,
            Subject::Process {
                pid: 7,
                name: name.clone(),
            },
            format!("{} (pid 7) is not closing its sockets", Escaped(&name)),
            Evidence::default().text("local_ports", "80\u{7}".to_owned()),
        ));
        let opened = model.findings[0].clone();
        let screen = text(100, 22, |area, buf| {
            render(&model, &Ui::default(), &Theme::MONO, area, buf);
            render_open(&model, &opened, &Theme::MONO, area, buf);
        });
        assert!(!screen.contains('\u{1b}'), "{screen:?}");
        assert!(!screen.contains('\u{7}'), "{screen:?}");
        assert!(screen.contains(r"evil\u{1b}[2J\nname (pid 7)"), "{screen}");
        assert!(screen.contains(r"local_ports: 80\u{7}"), "{screen}");
    }

    #[test]
    fn evidence_numbers_read_with_at_most_two_decimals() {
        assert_eq!(shown(&Value::Number(0.5)), "0.5");
        assert_eq!(shown(&Value::Number(12.0)), "12");
        assert_eq!(shown(&Value::Number(2.345_6)), "2.35");
        assert_eq!(shown(&Value::Count(20_692)), "20692");
    }
}
