//! The detail pane for one connection: every field of its record, the `tcp_info` the
//! kernel gave for it, its own transitions, and the state diagram with its current
//! state and the path it took highlighted. Only what means something for the kind of
//! socket: a listener's queues are its accept queue and backlog, and a listener, a
//! request socket or a TIME_WAIT remnant has no `tcp_info` worth showing.

use std::time::Duration;

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Widget, Wrap};

use crate::poll::info::InfoSummary;
use crate::report::endpoint::Endpoint;
use crate::snapshot::{SocketRecord, Timer};
use crate::tcp::State;
use crate::tui::model::{Detail, Model, SocketKind};
use crate::tui::theme::Theme;

use super::{diagram, flow, short_duration, transitions};

pub fn render(model: &Model, detail: &Detail, theme: &Theme, area: Rect, buf: &mut Buffer) {
    let record = &detail.record;
    let mut title = vec![Span::styled(
        format!(
            " {} ⇄ {} ",
            Endpoint(record.local_addr, record.local_port),
            Endpoint(record.remote_addr, record.remote_port)
        ),
        theme.title(),
    )];
    if let Some(inode) = detail.netns {
        let label = model.netns_label(inode);
        title.push(Span::styled(format!("in {label} ({inode}) "), theme.dim()));
    }
    if !detail.present {
        title.push(Span::styled("gone since the last poll ", theme.warning()));
    }
    let block = Block::bordered()
        .title(Line::from(title))
        .title_bottom(Line::styled(" Esc back ", theme.dim()));
    let inner = block.inner(area);
    block.render(area, buf);

    let kind = SocketKind::of(record);
    let mut top = flow(record_fields(model, record, kind, theme), inner.width);
    match kind {
        SocketKind::Connection => {
            top.extend(flow(tcp_info_fields(model, detail, theme), inner.width));
        }
        SocketKind::Listener | SocketKind::Request | SocketKind::TimeWait => {
            top.push(Line::styled(without_tcp_info(kind), theme.dim()));
        }
    }

    // This connection's transitions, oldest first, for the path and the history.
    let events: Vec<_> = model
        .history
        .events()
        .filter(|event| {
            event.transition.endpoints == detail.endpoints && event.netns == detail.netns
        })
        .collect();
    let mut path: Vec<State> = Vec::new();
    for event in &events {
        let transition = &event.transition;
        path.extend(transition.from);
        path.extend(transition.via.iter());
        path.extend(transition.to);
    }

    let top_height = u16::try_from(top.len()).unwrap_or(u16::MAX);
    let [top_area, _, diagram_area, _, history_area] = Layout::vertical([
        Constraint::Length(top_height),
        Constraint::Length(1),
        Constraint::Length(diagram::HEIGHT),
        Constraint::Length(1),
        Constraint::Fill(1),
    ])
    .areas(inner);
    Paragraph::new(top)
        .wrap(Wrap { trim: true })
        .render(top_area, buf);
    diagram::render(
        Some(record.state).filter(|_| detail.present),
        &path,
        theme,
        diagram_area,
        buf,
    );

    let latest = model.history.latest().map(|poll| poll.taken_at);
    let mut history = vec![Line::styled(
        "History of this connection (newest first)",
        theme.dim(),
    )];
    history.extend(events.iter().rev().map(|event| {
        let mut spans = vec![Span::styled(
            format!("{:>5} ", transitions::age(event.seen_at, latest)),
            theme.dim(),
        )];
        spans.extend(transitions::describe(&event.transition, theme));
        Line::from(spans)
    }));
    if events.is_empty() {
        history.push(Line::styled(
            "  no transition seen since tcpscope started",
            theme.dim(),
        ));
    }
    Paragraph::new(history).render(history_area, buf);
}

/// Why there is no `tcp_info` to show, in the place it would be.
fn without_tcp_info(kind: SocketKind) -> &'static str {
    match kind {
        SocketKind::Listener => {
            "a listener: it has no peer, so tcp_info has nothing to say about it"
        }
        SocketKind::Request => {
            "a handshake in progress: no tcp_info until it completes and is queued for accept"
        }
        SocketKind::TimeWait => {
            "a TIME_WAIT remnant: the kernel keeps only its addresses until the timer ends"
        }
        SocketKind::Connection => "",
    }
}

/// The record's fields that mean something for its kind of socket.
fn record_fields<'a>(
    model: &'a Model,
    record: &SocketRecord,
    kind: SocketKind,
    theme: &Theme,
) -> Vec<Vec<Span<'a>>> {
    let label = |text: &'static str| Span::styled(text, theme.dim());
    let count = |value: u32| Span::raw(value.to_string());
    let mut fields = vec![
        vec![
            label("state "),
            Span::styled(record.state.name(), theme.state(record.state)),
        ],
        vec![label("family "), Span::raw(record.family.name())],
    ];
    match kind {
        SocketKind::Listener => {
            fields.push(vec![label("accept queue "), count(record.recv_q)]);
            fields.push(vec![label("backlog "), count(record.send_q)]);
            // Drops come from the kernel's socket memory info: a recording has none.
            fields.push(vec![label("drops "), count(record.drops)]);
        }
        SocketKind::Connection => {
            fields.push(vec![label("recv-q "), count(record.recv_q)]);
            fields.push(vec![label("send-q "), count(record.send_q)]);
        }
        SocketKind::Request | SocketKind::TimeWait => {}
    }
    if kind != SocketKind::Listener {
        fields.push(vec![
            label("timer "),
            Span::raw(match record.timer {
                Timer::Off => "off".to_owned(),
                timer => format!(
                    "{} {}",
                    timer.name(),
                    short_duration(Duration::from_millis(u64::from(record.expires_ms)))
                ),
            }),
        ]);
    }
    match kind {
        SocketKind::Connection => fields.push(vec![
            label("retransmits "),
            count(u32::from(record.retransmits)),
        ]),
        SocketKind::Request => fields.push(vec![
            label("SYN-ACK retransmits "),
            count(u32::from(record.retransmits)),
        ]),
        SocketKind::Listener | SocketKind::TimeWait => {}
    }
    // Request sockets and TIME_WAIT remnants belong to no file: no owner, no inode.
    if matches!(kind, SocketKind::Connection | SocketKind::Listener) {
        fields.push(vec![label("uid "), count(record.uid)]);
        fields.push(vec![label("inode "), count(record.inode)]);
    }
    fields.push(vec![
        label("cookie "),
        Span::raw(format!("{:#x}", record.cookie)),
    ]);
    fields.push(vec![label("if "), count(record.interface)]);
    if let Some((pid, name)) = model.process_of(record) {
        fields.push(vec![label("process "), Span::raw(format!("{pid}/{name}"))]);
    }
    fields
}

fn tcp_info_fields<'a>(model: &Model, detail: &Detail, theme: &Theme) -> Vec<Vec<Span<'a>>> {
    let label = |text: &'static str| Span::styled(text, theme.dim());
    if let Some(opened_with) = &detail.from_table {
        // The latest full dump's, as the table's columns show it: a cookie names one
        // kernel socket, so a newer dump's entry is the same connection's.
        let latest = model
            .tcp_info
            .as_deref()
            .and_then(|table| table.get(detail.record.cookie));
        return summary_fields(latest.unwrap_or(opened_with), latest.is_some(), theme);
    }
    match &detail.tcp_info {
        None => vec![vec![Span::styled(
            "tcp_info: asking the kernel…",
            theme.dim(),
        )]],
        Some(Err(error)) => vec![vec![Span::styled(
            format!("tcp_info: {error}"),
            theme.warning(),
        )]],
        Some(Ok(info)) => {
            vec![
                vec![
                    label("rtt "),
                    Span::raw(format!(
                        "{}±{}",
                        millis(info.rtt_us),
                        millis(info.rttvar_us)
                    )),
                ],
                vec![label("rto "), Span::raw(millis(info.rto_us))],
                vec![label("cwnd "), Span::raw(info.snd_cwnd.to_string())],
                vec![label("mss "), Span::raw(info.snd_mss.to_string())],
                vec![label("unacked "), Span::raw(info.unacked.to_string())],
                vec![label("lost "), Span::raw(info.lost.to_string())],
                vec![label("retrans "), Span::raw(info.total_retrans.to_string())],
                vec![label("acked "), Span::raw(bytes(info.bytes_acked))],
                vec![label("received "), Span::raw(bytes(info.bytes_received))],
            ]
        }
    }
}

/// The fields of the connections table's tcp_info (`-i`, `i`), and whether they are
/// the latest full poll's or the last one that held the socket.
fn summary_fields<'a>(info: &InfoSummary, latest: bool, theme: &Theme) -> Vec<Vec<Span<'a>>> {
    let label = |text: &'static str| Span::styled(text, theme.dim());
    let rate = info
        .delivery_rate()
        .map_or("?".to_owned(), |rate| format!("{rate}B/s"));
    let whence = if latest {
        "tcp_info of the latest full poll"
    } else {
        "tcp_info of the last full poll that held it"
    };
    vec![
        vec![Span::styled(whence, theme.dim())],
        vec![
            label("rtt "),
            Span::raw(format!(
                "{}±{}",
                millis(info.rtt_us),
                millis(info.rttvar_us)
            )),
        ],
        vec![label("cwnd "), Span::raw(info.cwnd.to_string())],
        vec![label("retrans "), Span::raw(info.retransmits.to_string())],
        vec![label("acked "), Span::raw(bytes(info.bytes_acked()))],
        vec![label("received "), Span::raw(bytes(info.bytes_received()))],
        vec![label("rate "), Span::raw(rate)],
    ]
}

/// A byte count as the detail pane writes it; `?` where the kernel keeps none.
fn bytes(value: Option<u64>) -> String {
    value.map_or("?".to_owned(), |v| format!("{v}B"))
}

/// Microseconds as milliseconds with one decimal.
fn millis(micros: u32) -> String {
    format!("{:.1}ms", f64::from(micros) / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::tcp_info::TcpInfo;
    use crate::tui::views::fixtures;
    use crate::tui::views::testing::text;

    fn closer(model: &Model) -> Detail {
        let record = *model
            .connections
            .snapshot()
            .sockets
            .iter()
            .find(|socket| socket.local_port == 41000)
            .unwrap();
        Detail {
            endpoints: record.endpoints(),
            netns: None,
            record,
            present: true,
            tcp_info: Some(Ok(TcpInfo {
                rtt_us: 1500,
                rttvar_us: 250,
                rto_us: 204_000,
                snd_cwnd: 10,
                snd_mss: 1448,
                total_retrans: 2,
                bytes_acked: Some(4096),
                bytes_received: Some(8192),
                ..TcpInfo::default()
            })),
            from_table: None,
        }
    }

    #[test]
    fn the_detail_pane_shows_fields_tcp_info_history_and_the_path_at_80x24() {
        let model = fixtures::flooded();
        let detail = closer(&model);
        let screen = text(80, 22, |area, buf| {
            render(&model, &detail, &Theme::MONO, area, buf)
        });
        insta::assert_snapshot!(screen);
        // It closed first, so it lingers in TIME_WAIT, with nothing of tcp_info.
        assert!(screen.contains("a TIME_WAIT remnant"), "{screen}");
        assert!(
            screen.contains("ESTABLISHED → TIME_WAIT via FIN_WAIT1, FIN_WAIT2"),
            "{screen}"
        );
    }

    /// The detail pane of the first socket in `state`, with the tcp_info the kernel
    /// would still give for it.
    fn pane_of(state: State) -> String {
        let model = fixtures::flooded();
        let detail = detail_of(&model, state);
        text(100, 22, |area, buf| {
            render(&model, &detail, &Theme::MONO, area, buf)
        })
    }

    /// The first socket in `state`, with tcp_info as the kernel gives it.
    fn detail_of(model: &Model, state: State) -> Detail {
        let Some(record) = model
            .connections
            .snapshot()
            .sockets
            .iter()
            .find(|socket| socket.state == state)
            .copied()
        else {
            panic!("no {state:?} socket in the fixture")
        };
        Detail {
            endpoints: record.endpoints(),
            record,
            ..closer(model)
        }
    }

    #[test]
    fn a_listener_shows_its_accept_queue_backlog_and_drops_not_rtt_or_cwnd() {
        let screen = pane_of(State::Listen);
        for field in ["accept queue ", "backlog ", "drops "] {
            assert!(screen.contains(field), "{field:?} missing:\n{screen}");
        }
        for meaningless in ["rtt ", "cwnd ", "recv-q", "send-q", "retransmits"] {
            assert!(
                !screen.contains(meaningless),
                "{meaningless:?} shown:\n{screen}"
            );
        }
    }

    #[test]
    fn a_connection_shows_its_queues_and_tcp_info() {
        let screen = pane_of(State::Established);
        for field in [
            "recv-q ",
            "send-q ",
            "retransmits ",
            "rtt 1.5ms±0.2ms",
            "cwnd 10",
        ] {
            assert!(screen.contains(field), "{field:?} missing:\n{screen}");
        }
    }

    #[test]
    fn a_request_socket_and_a_time_wait_remnant_show_only_what_they_have() {
        let request = pane_of(State::SynRecv);
        assert!(request.contains("SYN-ACK retransmits "), "{request}");
        let time_wait = pane_of(State::TimeWait);
        assert!(time_wait.contains("timer "), "{time_wait}");
        for screen in [request, time_wait] {
            for meaningless in ["rtt ", "cwnd ", "recv-q", "send-q", "uid ", "inode "] {
                assert!(
                    !screen.contains(meaningless),
                    "{meaningless:?} shown:\n{screen}"
                );
            }
        }
    }

    #[test]
    fn the_history_keeps_to_the_connections_own_namespace() {
        let model = fixtures::flooded();
        let mut detail = closer(&model);
        // The same addresses and ports in another namespace than the one whose
        // transitions the history holds: none of them is this connection's.
        detail.netns = Some(4_026_532_999);

        let screen = text(80, 22, |area, buf| {
            render(&model, &detail, &Theme::MONO, area, buf)
        });

        assert!(!screen.contains("ESTABLISHED → TIME_WAIT"), "{screen}");
    }

    #[test]
    fn the_detail_pane_at_120x40_says_when_tcp_info_is_unavailable() {
        let model = fixtures::flooded();
        let mut detail = detail_of(&model, State::Established);
        detail.tcp_info = Some(Err("the kernel has no such socket any more".into()));
        let screen = text(120, 38, |area, buf| {
            render(&model, &detail, &Theme::MONO, area, buf)
        });
        insta::assert_snapshot!(screen);
    }
}
