//! The status line: what the view can and cannot see. The namespace `--netns` named,
//! the poll interval, how long the
//! last poll took, whether kernel destroy events are on, whether process names are
//! partial, whether the display is paused, and the last poll error (the view stays up
//! and the poller retries). In a replay, it starts with the position in the recording
//! and shows only what the recording holds (the interval it was made at, how long its
//! polls took), not what only a live view knows; a one-off notice (a refused key, a
//! kill's result) comes before the rest.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use crate::poll::update::EventStatus;
use crate::text::Escaped;
use crate::tui::model::{Model, ProcessesSeen, Recording, Ui};
use crate::tui::theme::Theme;

use super::short_duration;

pub fn render(model: &Model, ui: &Ui, theme: &Theme, area: Rect, buf: &mut Buffer) {
    let status = &model.status;
    let dim = |text: &'static str| Span::styled(text, theme.dim());
    let mut spans = Vec::new();
    if let Some(playback) = &ui.playback {
        let state = if playback.playing { "▶" } else { "⏸" };
        spans.push(Span::styled(
            format!(
                " REPLAY {state} {}/{} +{} {}x ",
                playback.poll,
                playback.total,
                short_duration(playback.elapsed),
                playback.speed
            ),
            theme.selected(),
        ));
        spans.push(Span::raw(" "));
    }
    if let Some(record) = &ui.confirm_close {
        spans.push(Span::styled(
            format!(
                "Close {}? y/N",
                crate::report::endpoint::connection_name(&record.endpoints())
            ),
            theme.error(),
        ));
        Paragraph::new(Line::from(spans)).render(area, buf);
        return;
    }
    if let Some(notice) = &ui.notice {
        spans.push(Span::styled(notice.clone(), theme.warning()));
        spans.push(dim("  "));
    }
    if ui.paused {
        spans.push(Span::styled(
            format!(" PAUSED ({} behind) ", ui.behind),
            theme.selected(),
        ));
        spans.push(Span::raw(" "));
    }
    if let Some(error) = &status.error {
        spans.push(Span::styled(
            format!("poll failed, retrying: {error}"),
            theme.error(),
        ));
        spans.push(dim("  "));
    }
    match &ui.recording {
        Some(Recording::To(file)) => {
            spans.push(Span::styled("● rec ", theme.error()));
            spans.push(Span::raw(file.clone()));
            spans.push(dim("  "));
        }
        Some(Recording::Stopped(error)) => {
            spans.push(Span::styled(
                format!("recording stopped: {error}"),
                theme.error(),
            ));
            spans.push(dim("  "));
        }
        None => {}
    }
    if let Some(netns) = &ui.netns {
        spans.push(dim("netns "));
        spans.push(Span::raw(Escaped(netns).to_string()));
        spans.push(dim("  "));
    }
    // A replay shows what the recording holds: the interval it was made at, and how
    // long its polls took; destroy events and processes are today's, not its.
    let interval = match &ui.playback {
        Some(playback) => playback.interval,
        None => Some(status.interval),
    };
    if let Some(interval) = interval {
        spans.push(dim(if ui.playback.is_some() {
            "recorded every "
        } else {
            "every "
        }));
        spans.push(Span::raw(short_duration(interval)));
        spans.push(dim("  "));
    }
    // Full dumps spaced out to keep within --max-cpu: the table refreshes less often.
    if ui.playback.is_none()
        && let Some(full_every) = status.full_every.filter(|every| *every > status.interval)
    {
        spans.push(dim("full every "));
        spans.push(Span::styled(short_duration(full_every), theme.warning()));
        spans.push(Span::styled(
            format!(" (cpu budget {}%)", status.max_cpu),
            theme.dim(),
        ));
        spans.push(dim("  "));
    }
    spans.push(dim("poll "));
    // A poll longer than the interval makes the next start late (never queue): say so.
    spans.push(match status.took {
        None => Span::raw("…"),
        Some(took) if interval.is_some_and(|interval| took > interval) => {
            Span::styled(format!("{} (slow)", short_duration(took)), theme.warning())
        }
        Some(took) => Span::raw(short_duration(took)),
    });
    if ui.playback.is_some() {
        spans.push(dim("  ? help  q quit"));
        Paragraph::new(Line::from(spans)).render(area, buf);
        return;
    }
    spans.push(dim("  destroy events "));
    spans.push(match &status.events {
        EventStatus::Subscribed if status.event_overflows > 0 => Span::styled(
            format!("on, {} lost", status.event_overflows),
            theme.warning(),
        ),
        EventStatus::Subscribed => Span::raw("on"),
        EventStatus::Off => Span::styled("off", theme.warning()),
        EventStatus::Refused(_) => Span::styled("refused", theme.warning()),
    });
    spans.push(dim("  processes "));
    spans.push(match &status.processes {
        None => Span::raw("…"),
        Some(ProcessesSeen::All) => Span::raw("all"),
        Some(ProcessesSeen::Partial(brief)) => Span::styled(brief.clone(), theme.warning()),
    });
    spans.push(dim("  ? help  q quit"));
    Paragraph::new(Line::from(spans)).render(area, buf);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::views::fixtures;
    use crate::tui::views::testing::text;

    #[test]
    fn the_status_line_owns_up_to_interval_poll_time_events_and_processes() {
        let model = fixtures::flooded();
        let screen = text(80, 1, |area, buf| {
            render(&model, &Ui::default(), &Theme::MONO, area, buf)
        });
        insta::assert_snapshot!(screen);
    }

    #[test]
    fn full_dumps_spaced_out_by_the_cpu_budget_are_said_after_the_interval() {
        let mut model = fixtures::flooded();
        model.status.interval = std::time::Duration::from_secs(1);
        model.status.max_cpu = 20.0;
        model.status.full_every = Some(std::time::Duration::from_secs(4));
        let screen = text(100, 1, |area, buf| {
            render(&model, &Ui::default(), &Theme::MONO, area, buf)
        });
        assert!(
            screen.starts_with("every 1.0s  full every 4.0s (cpu budget 20%)  poll "),
            "{screen}"
        );
        // Within the budget at every interval: nothing more is said.
        model.status.full_every = Some(std::time::Duration::from_secs(1));
        let screen = text(100, 1, |area, buf| {
            render(&model, &Ui::default(), &Theme::MONO, area, buf)
        });
        assert!(!screen.contains("full every"), "{screen}");
    }

    #[test]
    fn a_poll_longer_than_the_interval_is_marked_slow() {
        let mut model = fixtures::flooded();
        model.status.interval = std::time::Duration::from_millis(100);
        model.status.took = Some(std::time::Duration::from_millis(250));
        let screen = text(80, 1, |area, buf| {
            render(&model, &Ui::default(), &Theme::MONO, area, buf)
        });
        assert!(
            screen.starts_with("every 100ms  poll 250ms (slow)  destroy events"),
            "{screen}"
        );
    }

    #[test]
    fn a_recording_shows_its_file_and_a_failed_one_says_why() {
        let model = fixtures::flooded();
        let mut ui = Ui {
            recording: Some(Recording::To("incident.rec".into())),
            ..Ui::default()
        };
        let screen = text(100, 1, |area, buf| {
            render(&model, &ui, &Theme::MONO, area, buf)
        });
        assert!(
            screen.starts_with("● rec incident.rec  every 1.0s"),
            "{screen}"
        );
        ui.recording = Some(Recording::Stopped(
            "writing to the recording incident.rec: No space left on device".into(),
        ));
        let screen = text(100, 1, |area, buf| {
            render(&model, &ui, &Theme::MONO, area, buf)
        });
        assert!(
            screen
                .starts_with("recording stopped: writing to the recording incident.rec: No space"),
            "{screen}"
        );
    }

    #[test]
    fn the_namespace_netns_named_is_said_before_the_interval() {
        let model = fixtures::flooded();
        let ui = Ui {
            netns: Some("blue".into()),
            ..Ui::default()
        };
        let screen = text(100, 1, |area, buf| {
            render(&model, &ui, &Theme::MONO, area, buf)
        });
        assert!(screen.starts_with("netns blue  every 1.0s"), "{screen}");
    }

    #[test]
    fn a_poll_error_and_a_pause_are_shown_first() {
        let mut model = fixtures::flooded();
        model.poll_failed("dumping TCP sockets: permission denied".into());
        model.status.processes = Some(ProcessesSeen::Partial(
            "7 unreadable (run as root to see all)".into(),
        ));
        let ui = Ui {
            paused: true,
            behind: 3,
            ..Ui::default()
        };
        let screen = text(120, 1, |area, buf| {
            render(&model, &ui, &Theme::MONO, area, buf)
        });
        insta::assert_snapshot!(screen);
        assert!(
            screen.starts_with(" PAUSED (3 behind)  poll failed, retrying"),
            "{screen}"
        );
    }
}
