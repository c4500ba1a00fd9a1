//! The transition log: what the diff engine saw change between polls, newest first,
//! with the states a connection most likely passed through unseen (`via`).

use std::time::SystemTime;

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Widget};

use crate::diff::{Kind, Transition};
use crate::report::endpoint::Endpoint;
use crate::tui::model::Model;
use crate::tui::theme::Theme;
use crate::watch::Event;

use super::short_duration;

/// How long before `latest` something was seen, as `-12s`.
pub fn age(seen_at: SystemTime, latest: Option<SystemTime>) -> String {
    let seconds = latest
        .and_then(|latest| latest.duration_since(seen_at).ok())
        .map_or(0, |age| age.as_secs());
    format!("-{seconds}s")
}

/// One transition in words: kind, states and the inferred path.
pub fn describe<'a>(transition: &Transition, theme: &Theme) -> Vec<Span<'a>> {
    let state = |state: Option<crate::tcp::State>| match state {
        Some(state) => Span::styled(state.name(), theme.state(state)),
        None => Span::styled("(gone)", theme.dim()),
    };
    let mut spans = vec![Span::styled(
        format!("{:<8}", transition.kind.name()),
        theme.dim(),
    )];
    match transition.kind {
        Kind::Opened => spans.push(state(transition.to)),
        Kind::Changed | Kind::Closed => {
            spans.push(state(transition.from));
            spans.push(Span::raw(" → "));
            spans.push(state(transition.to));
        }
    }
    if !transition.via.is_empty() {
        let via: Vec<&str> = transition.via.iter().map(|state| state.name()).collect();
        spans.push(Span::styled(
            format!(" via {}", via.join(", ")),
            theme.dim(),
        ));
    }
    if let Some(ending) = transition.ending {
        spans.push(Span::styled(
            format!(" ({})", ending.describe()),
            theme.dim(),
        ));
    }
    spans
}

fn line<'a>(event: &Event, model: &Model, latest: Option<SystemTime>, theme: &Theme) -> Line<'a> {
    let endpoints = event.transition.endpoints;
    let mut spans = vec![Span::styled(
        format!("{:>5} ", age(event.seen_at, latest)),
        theme.dim(),
    )];
    if let Some(inode) = event.netns {
        let label = model.netns_label(inode);
        spans.push(Span::styled(
            format!("{label:<NETNS_WIDTH$.NETNS_WIDTH$} "),
            theme.dim(),
        ));
    }
    spans.push(Span::raw(format!(
        "{} ⇄ {}  ",
        Endpoint(endpoints.local.0, endpoints.local.1),
        Endpoint(endpoints.remote.0, endpoints.remote.1)
    )));
    spans.extend(describe(&event.transition, theme));
    Line::from(spans)
}

/// The width of the namespace column: as in a narrow connections table.
const NETNS_WIDTH: usize = super::connections::NETNS_WIDTH_NARROW as usize;

pub fn render(model: &Model, theme: &Theme, area: Rect, buf: &mut Buffer) {
    let history = &model.history;
    let latest = history.latest().map(|poll| poll.taken_at);
    let dropped = history.events_dropped();
    let mut title = vec![Span::styled(" Transitions ", theme.title())];
    if dropped > 0 {
        title.push(Span::styled(
            format!("({dropped} older dropped) "),
            theme.dim(),
        ));
    }
    let block = Block::bordered().title(Line::from(title));
    let height = usize::from(block.inner(area).height);
    let lines: Vec<Line> = history
        .events()
        .rev()
        .take(height)
        .map(|event| line(event, model, latest, theme))
        .collect();
    let lines = if lines.is_empty() {
        vec![Line::styled(quiet(model), theme.dim())]
    } else {
        lines
    };
    Paragraph::new(lines).block(block).render(area, buf);
}

/// What an empty log says: that it is too early to tell, or how long it has been quiet.
fn quiet(model: &Model) -> String {
    let polls = model.status.polls;
    let span = model
        .first_taken_at
        .zip(model.taken_at())
        .and_then(|(first, latest)| latest.duration_since(first).ok());
    match span {
        Some(span) if polls >= 2 => format!(
            "No transitions in {polls} polls over {}: nothing opened, closed or changed.",
            short_duration(span)
        ),
        _ => "No transitions yet: they appear from the second poll.".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Snapshot;
    use crate::tui::views::fixtures;
    use crate::tui::views::testing::text;
    use crate::watch::History;
    use std::sync::Arc;
    use std::time::Duration;

    /// `polls` polls a second apart in which nothing changed.
    fn quiet_for(polls: u64) -> Model {
        let mut model = Model::new(Duration::from_secs(1), History::new(600, 1000));
        let mut update = fixtures::next_update();
        update.transitions.clear();
        let start = update.snapshot.taken_at;
        for poll in 0..polls {
            let sockets = update.snapshot.sockets.clone();
            update.snapshot = Arc::new(Snapshot::new(start + Duration::from_secs(poll), sockets));
            model.apply(&update);
        }
        model
    }

    #[test]
    fn a_quiet_log_says_for_how_many_polls_it_has_been_quiet_after_the_second() {
        let log = |model: &Model| text(100, 4, |area, buf| render(model, &Theme::MONO, area, buf));
        let first = log(&quiet_for(1));
        assert!(
            first.contains("they appear from the second poll"),
            "{first}"
        );
        let later = log(&quiet_for(40));
        assert!(
            later.contains("No transitions in 40 polls over 39.0s"),
            "{later}"
        );
        assert!(!later.contains("second poll"), "{later}");
    }

    #[test]
    fn across_namespaces_each_transition_names_its_namespace() {
        let model = fixtures::across_namespaces();
        let screen = text(120, 12, |area, buf| render(&model, &Theme::MONO, area, buf));
        insta::assert_snapshot!(screen);
        let line_of = |needle: &str| screen.lines().find(|line| line.contains(needle));
        assert!(
            line_of("ESTABLISHED → TIME_WAIT").is_some_and(|line| line.contains("5120/nginx")),
            "{screen}"
        );
        assert!(
            line_of("SYN_RECV").is_some_and(|line| line.contains("3f2a9c4e5d6b")),
            "{screen}"
        );
    }

    #[test]
    fn an_active_close_between_polls_is_logged_with_the_states_it_skipped() {
        let model = fixtures::flooded();
        let screen = text(120, 12, |area, buf| render(&model, &Theme::MONO, area, buf));
        insta::assert_snapshot!(screen);
        assert!(
            screen.contains("ESTABLISHED → TIME_WAIT via FIN_WAIT1, FIN_WAIT2"),
            "{screen}"
        );
    }
}
