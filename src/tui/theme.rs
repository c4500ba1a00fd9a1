//! Colours and emphasis for the views, in one place, so that `NO_COLOR` is honoured
//! everywhere by choosing the theme once at start-up.
//!
//! Views take a `&Theme`; they never read the environment themselves.

use ratatui::style::{Color, Modifier, Style};

use crate::tcp::State;
use crate::watch::Verdict;
use crate::watch::findings::Severity;

/// Where a state sits in a connection's life; the counts view colours by it so that
/// a glance tells opening trouble (SYN_RECV piling up) from closing trouble
/// (CLOSE_WAIT piling up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFamily {
    /// SYN_SENT, SYN_RECV: a connection being set up.
    Handshake,
    /// ESTABLISHED: data can flow.
    Open,
    /// FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, CLOSING, LAST_ACK: a close under way.
    Closing,
    /// LISTEN, TIME_WAIT, CLOSED: waiting for something that is not this connection's
    /// data (a SYN, the 2MSL timer, nothing at all).
    Waiting,
}

impl StateFamily {
    pub fn of(state: State) -> StateFamily {
        match state {
            State::SynSent | State::SynRecv => StateFamily::Handshake,
            State::Established => StateFamily::Open,
            State::FinWait1
            | State::FinWait2
            | State::CloseWait
            | State::Closing
            | State::LastAck => StateFamily::Closing,
            State::Listen | State::TimeWait | State::Closed => StateFamily::Waiting,
        }
    }
}

/// The styles every view draws with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    colour: bool,
}

impl Theme {
    /// A theme with colours.
    pub const COLOUR: Theme = Theme { colour: true };
    /// Emphasis only (bold, reversed), for `NO_COLOR` and for tests that read text.
    pub const MONO: Theme = Theme { colour: false };

    /// The theme <https://no-color.org> asks for: no colour when `NO_COLOR` is set to
    /// anything but the empty string.
    pub fn from_no_color(no_color: Option<&std::ffi::OsStr>) -> Theme {
        match no_color {
            Some(value) if !value.is_empty() => Theme::MONO,
            _ => Theme::COLOUR,
        }
    }

    fn fg(self, colour: Color) -> Style {
        if self.colour {
            Style::new().fg(colour)
        } else {
            Style::new()
        }
    }

    pub fn state(self, state: State) -> Style {
        self.fg(match StateFamily::of(state) {
            StateFamily::Handshake => Color::Yellow,
            StateFamily::Open => Color::Green,
            StateFamily::Closing => Color::Magenta,
            StateFamily::Waiting => Color::Cyan,
        })
    }

    pub fn verdict(self, verdict: Verdict) -> Style {
        match verdict {
            Verdict::SynFloodSuspected => self.fg(Color::Red).add_modifier(Modifier::BOLD),
            Verdict::AcceptQueueFull => self.fg(Color::LightRed).add_modifier(Modifier::BOLD),
            Verdict::BacklogFromFewHosts => self.fg(Color::Yellow),
            Verdict::Normal => self.fg(Color::Green),
        }
    }

    pub fn severity(self, severity: Severity) -> Style {
        match severity {
            Severity::Critical => self.error(),
            Severity::Warning => self.fg(Color::Yellow).add_modifier(Modifier::BOLD),
        }
    }

    /// A count that went up, down or stayed.
    pub fn change(self, delta: i64) -> Style {
        match delta.signum() {
            1 => self.fg(Color::LightRed),
            -1 => self.fg(Color::LightBlue),
            _ => self.fg(Color::DarkGray),
        }
    }

    pub fn title(self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    pub fn header(self) -> Style {
        self.fg(Color::Gray)
            .add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
    }

    pub fn dim(self) -> Style {
        self.fg(Color::DarkGray)
    }

    pub fn error(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    pub fn warning(self) -> Style {
        self.fg(Color::Yellow)
    }

    pub fn key(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    /// The selected row, tab or state.
    pub fn selected(self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    /// A state on the path a connection took, in the state diagram.
    pub fn on_path(self) -> Style {
        self.fg(Color::Yellow)
            .add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn no_color_set_to_anything_but_empty_turns_colours_off() {
        assert_eq!(Theme::from_no_color(Some(OsStr::new("1"))), Theme::MONO);
        assert_eq!(Theme::from_no_color(Some(OsStr::new(""))), Theme::COLOUR);
        assert_eq!(Theme::from_no_color(None), Theme::COLOUR);
        assert_eq!(Theme::MONO.state(State::SynRecv).fg, None);
        assert!(Theme::COLOUR.state(State::SynRecv).fg.is_some());
    }
}
