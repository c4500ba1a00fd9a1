//! The SYN_RECV watch list: one entry per listener with half-open connections (or a
//! full accept queue, or a flood verdict still held), most urgent first, with its
//! verdict in words; beside it, the per-second change of the kernel's SYN-cookie and
//! listen-queue counters and what they say host-wide.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Widget, Wrap};

use crate::report::endpoint::Endpoint;
use crate::tui::model::Model;
use crate::tui::theme::Theme;
use crate::watch::{CounterRates, ListenerWatch};

use super::{flow, short_duration};

/// Height of the counters panel: borders and five counters.
pub const COUNTERS_HEIGHT: u16 = 7;

/// The listeners panel.
pub fn render_listeners(model: &Model, theme: &Theme, area: Rect, buf: &mut Buffer) {
    let flagged = model.syn_watch.suspected_flood();
    let mut title = vec![Span::styled(" SYN_RECV watch ", theme.title())];
    if flagged {
        title.push(Span::styled("FLOOD ", theme.error()));
    }
    // Listeners are read at every poll; SYN_RECV, when the budget is short, less often.
    if let Some(age) = model.status.syn_recv_age() {
        title.push(Span::styled(
            format!("(SYN_RECV {} ago) ", short_duration(age)),
            theme.warning(),
        ));
    }
    let block = Block::bordered().title(Line::from(title));
    let inner = block.inner(area);
    block.render(area, buf);

    let mut lines: Vec<Line> = Vec::new();
    if model.syn_watch.listeners.is_empty() {
        lines.push(Line::styled(
            "No listener has half-open connections.",
            theme.dim(),
        ));
    }
    for (i, watch) in model.syn_watch.listeners.iter().enumerate() {
        if i > 0 {
            lines.push(Line::raw(""));
        }
        // Across namespaces, two listeners may share an endpoint: name the namespace.
        let netns = model
            .namespaces
            .as_ref()
            .and_then(|namespaces| namespaces.listeners.get(i))
            .map(|&inode| model.netns_label(inode));
        lines.extend(listener_lines(netns, watch, theme, inner.width));
    }
    for note in &model.syn_watch.host_notes {
        lines.push(Line::raw(""));
        lines.push(Line::styled(note.describe(), theme.warning()));
    }
    Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .render(inner, buf);
}

fn listener_lines<'a>(
    netns: Option<String>,
    watch: &'a ListenerWatch,
    theme: &Theme,
    width: u16,
) -> Vec<Line<'a>> {
    let listener = &watch.listener;
    let mut verdict = watch.verdict.describe().to_owned();
    if watch.remembered {
        verdict.push_str(" (held: SYN cookies rising)");
    }
    let mut name = vec![Span::styled(
        Endpoint(listener.local_addr, listener.local_port).to_string(),
        theme.title(),
    )];
    if let Some(netns) = netns {
        name.push(Span::styled(format!(" in {netns}"), theme.dim()));
    }
    let mut head = flow(
        vec![
            name,
            vec![Span::styled(verdict, theme.verdict(watch.verdict))],
        ],
        width,
    );
    let label = |text: &'static str| Span::styled(text, theme.dim());
    let fill = listener
        .accept_queue_fill
        .map_or(String::new(), |fill| format!(" {:.0}%", fill * 100.0));
    let prefix = if listener.local_addr.is_ipv4() {
        "/24"
    } else {
        "/64"
    };
    let mut fields = vec![
        vec![
            label("half-open "),
            Span::raw(listener.half_open.to_string()),
        ],
        vec![
            label("accept queue "),
            Span::raw(format!(
                "{}/{}{fill}",
                listener.accept_queue, listener.backlog
            )),
        ],
        vec![
            label("sources "),
            Span::raw(listener.distinct_sources.to_string()),
            label(" in "),
            Span::raw(listener.distinct_prefixes.to_string()),
            label(if prefix == "/24" { " /24s" } else { " /64s" }),
        ],
        vec![
            label("oldest "),
            Span::raw(short_duration(listener.oldest_half_open)),
        ],
        vec![
            label("SYN+ACK rtx "),
            Span::raw(listener.syn_ack_retransmits.to_string()),
        ],
    ];
    if !listener.top_sources.is_empty() {
        let top: Vec<String> = listener
            .top_sources
            .iter()
            .map(|source| format!("{}×{}", source.addr, source.count))
            .collect();
        fields.push(vec![label("top "), Span::raw(top.join(" "))]);
    }
    head.extend(flow(fields, width));
    head
}

type ReadRate = fn(&CounterRates) -> f64;

/// The counters panel: per-second growth of the five TcpExt counters the SYN watch
/// reads.
pub fn render_counters(model: &Model, theme: &Theme, area: Rect, buf: &mut Buffer) {
    let rates = model.counter_rates;
    let rows: [(&str, ReadRate); 5] = [
        ("SyncookiesSent", |r| r.syncookies_sent),
        ("TCPReqQFullDoCookies", |r| r.req_q_full_do_cookies),
        ("TCPReqQFullDrop", |r| r.req_q_full_drop),
        ("ListenOverflows", |r| r.listen_overflows),
        ("ListenDrops", |r| r.listen_drops),
    ];
    let block = Block::bordered().title(Line::styled(" Kernel counters /s ", theme.title()));
    let inner = block.inner(area);
    block.render(area, buf);
    let areas = Layout::vertical([Constraint::Length(1); 5]).split(inner);
    for ((name, read), row) in rows.into_iter().zip(areas.iter()) {
        let value = rates.as_ref().map(read);
        let text = value.map_or("…".to_owned(), |v| {
            if v == 0.0 {
                "0".to_owned()
            } else {
                format!("{v:.1}")
            }
        });
        let style = theme.change(if value.unwrap_or(0.0) > 0.0 { 1 } else { 0 });
        let [name_area, value_area] =
            Layout::horizontal([Constraint::Fill(1), Constraint::Length(9)]).areas(*row);
        Line::styled(name, theme.dim()).render(name_area, buf);
        Line::styled(text, style)
            .right_aligned()
            .render(value_area, buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::views::fixtures;
    use crate::tui::views::testing::text;

    #[test]
    fn a_flooded_listener_and_a_backlog_from_two_hosts_get_their_verdicts_narrow() {
        let model = fixtures::flooded();
        let screen = text(44, 22, |area, buf| {
            render_listeners(&model, &Theme::MONO, area, buf)
        });
        insta::assert_snapshot!(screen);
        assert!(screen.contains("SYN flood suspected"), "{screen}");
        assert!(screen.contains("backlog from few hosts"), "{screen}");
    }

    #[test]
    fn half_open_counts_older_than_the_latest_poll_say_how_old() {
        let mut model = fixtures::flooded();
        let title = |model: &Model| {
            let screen = text(60, 10, |area, buf| {
                render_listeners(model, &Theme::MONO, area, buf)
            });
            screen.lines().next().unwrap_or_default().to_owned()
        };
        assert!(!title(&model).contains("ago"));
        let at = model.taken_at().unwrap();
        model.status.polled_at = Some(at + std::time::Duration::from_millis(1200));
        model.status.syn_recv_at = Some(at);
        let line = title(&model);
        assert!(line.contains("FLOOD (SYN_RECV 1.2s ago)"), "{line}");
    }

    #[test]
    fn a_wide_watch_list_puts_each_listener_on_fewer_lines() {
        let model = fixtures::flooded();
        let screen = text(84, 38, |area, buf| {
            render_listeners(&model, &Theme::MONO, area, buf)
        });
        insta::assert_snapshot!(screen);
    }

    #[test]
    fn a_quiet_host_says_no_listener_has_half_open_connections() {
        let model = fixtures::first_poll();
        let screen = text(44, 6, |area, buf| {
            render_listeners(&model, &Theme::MONO, area, buf)
        });
        assert!(
            screen.contains("No listener has half-open connections."),
            "{screen}"
        );
    }

    #[test]
    fn counters_show_their_growth_per_second() {
        let model = fixtures::flooded();
        let screen = text(36, COUNTERS_HEIGHT, |area, buf| {
            render_counters(&model, &Theme::MONO, area, buf)
        });
        insta::assert_snapshot!(screen);
        assert!(screen.contains("TCPReqQFullDrop"), "{screen}");
    }
}
