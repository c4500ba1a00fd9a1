//! Keys → actions, in one table. The help overlay (`?`) shows this table, so what it
//! lists is exactly what the keys do. Conventions follow htop, bottom and trippy.
//!
//! While the filter line is open, keys edit it instead ([`crate::tui::line_editor`]:
//! a shell's line-editing keys); [`crate::tui::app`] handles that before consulting
//! this table.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// Something the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
    /// Give the terminal back and stop, as Ctrl-Z does in a shell; `fg` resumes.
    Suspend,
    ToggleHelp,
    NextTab,
    PreviousTab,
    ShowTab(usize),
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    /// Open the selected finding (Overview) or connection (Connections), plot the
    /// selected state (Timeline), or show a namespace's connections (Namespaces).
    Select,
    /// Close the detail pane, the opened finding, the help or the filter line.
    Back,
    OpenFilter,
    NextSortColumn,
    ReverseSort,
    /// Show or hide the connections table's tcp_info columns.
    ToggleInfo,
    TogglePause,
    SlowerPolling,
    FasterPolling,
    /// In the detail pane: ask to close its connection.
    CloseConnection,
    /// In a replay: show the previous or next recorded poll, the first or the last.
    PlaybackBack,
    PlaybackForward,
    PlaybackFirst,
    PlaybackLast,
    /// In a replay: play slower or faster.
    PlaybackSlower,
    PlaybackFaster,
}

/// One row of the key table: the keys as the help shows them, what they match, the
/// action and what it does.
pub struct Binding {
    pub keys: &'static str,
    pub matches: fn(&KeyEvent) -> bool,
    pub action: Action,
    pub help: &'static str,
}

fn code(key: &KeyEvent, codes: &[KeyCode]) -> bool {
    codes.contains(&key.code)
}

fn char_key(key: &KeyEvent, chars: &[char]) -> bool {
    matches!(key.code, KeyCode::Char(c) if chars.contains(&c))
        && !key.modifiers.contains(KeyModifiers::CONTROL)
}

/// Every binding, in the order the help lists them.
pub const BINDINGS: &[Binding] = &[
    Binding {
        keys: "q  Ctrl-C",
        matches: |k| {
            char_key(k, &['q'])
                || (k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c'))
        },
        action: Action::Quit,
        help: "quit (Ctrl-Z: suspend, fg resumes)",
    },
    // Listed in the quit row, to keep the help within 24 rows.
    Binding {
        keys: "",
        matches: |k| k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('z'),
        action: Action::Suspend,
        help: "",
    },
    Binding {
        keys: "?",
        matches: |k| char_key(k, &['?']),
        action: Action::ToggleHelp,
        help: "show or hide this help",
    },
    Binding {
        keys: "Tab  l  →",
        matches: |k| code(k, &[KeyCode::Tab, KeyCode::Right]) || char_key(k, &['l']),
        action: Action::NextTab,
        help: "next tab",
    },
    Binding {
        keys: "S-Tab  h  ←",
        matches: |k| code(k, &[KeyCode::BackTab, KeyCode::Left]) || char_key(k, &['h']),
        action: Action::PreviousTab,
        help: "previous tab",
    },
    Binding {
        keys: "1  2  3  5",
        matches: |k| char_key(k, &['1']),
        action: Action::ShowTab(0),
        help: "overview, connections, timeline, groups",
    },
    Binding {
        keys: "",
        matches: |k| char_key(k, &['2']),
        action: Action::ShowTab(1),
        help: "",
    },
    Binding {
        keys: "",
        matches: |k| char_key(k, &['3']),
        action: Action::ShowTab(2),
        help: "",
    },
    Binding {
        keys: "",
        matches: |k| char_key(k, &['5']),
        action: Action::ShowTab(4),
        help: "",
    },
    Binding {
        keys: "4  n",
        matches: |k| char_key(k, &['4', 'n']),
        action: Action::ShowTab(3),
        help: "namespaces: counts per namespace (--all-netns)",
    },
    Binding {
        keys: "↑  k",
        matches: |k| code(k, &[KeyCode::Up]) || char_key(k, &['k']),
        action: Action::Up,
        help: "move up",
    },
    Binding {
        keys: "↓  j",
        matches: |k| code(k, &[KeyCode::Down]) || char_key(k, &['j']),
        action: Action::Down,
        help: "move down",
    },
    Binding {
        keys: "PgUp  PgDn",
        matches: |k| code(k, &[KeyCode::PageUp]),
        action: Action::PageUp,
        help: "move a page up or down",
    },
    Binding {
        keys: "",
        matches: |k| code(k, &[KeyCode::PageDown]),
        action: Action::PageDown,
        help: "",
    },
    Binding {
        keys: "Home g  End G",
        matches: |k| code(k, &[KeyCode::Home]) || char_key(k, &['g']),
        action: Action::Top,
        help: "first or last row (Groups: g changes the key)",
    },
    Binding {
        keys: "",
        matches: |k| code(k, &[KeyCode::End]) || char_key(k, &['G']),
        action: Action::Bottom,
        help: "",
    },
    Binding {
        keys: "Enter",
        matches: |k| code(k, &[KeyCode::Enter]),
        action: Action::Select,
        help: "open finding/connection/namespace, plot state",
    },
    Binding {
        keys: "Esc",
        matches: |k| code(k, &[KeyCode::Esc]),
        action: Action::Back,
        help: "close detail, finding, help or filter",
    },
    Binding {
        keys: "/",
        matches: |k| char_key(k, &['/']),
        action: Action::OpenFilter,
        help: "filter: states, ports, addresses (↑↓ earlier)",
    },
    Binding {
        keys: "s  r",
        matches: |k| char_key(k, &['s']),
        action: Action::NextSortColumn,
        help: "sort by the next column, reverse the order",
    },
    // Listed in the sort row, to keep the help within 24 rows.
    Binding {
        keys: "",
        matches: |k| char_key(k, &['r']),
        action: Action::ReverseSort,
        help: "",
    },
    Binding {
        keys: "i",
        matches: |k| char_key(k, &['i']),
        action: Action::ToggleInfo,
        help: "tcp_info columns: RTT, cwnd… (as ss -i)",
    },
    Binding {
        keys: "Space  p",
        matches: |k| char_key(k, &[' ', 'p']),
        action: Action::TogglePause,
        help: "pause the display / play or pause a replay",
    },
    Binding {
        keys: "+  -",
        matches: |k| char_key(k, &['+', '=']),
        action: Action::SlowerPolling,
        help: "poll less or more often",
    },
    Binding {
        keys: "",
        matches: |k| char_key(k, &['-', '_']),
        action: Action::FasterPolling,
        help: "",
    },
    Binding {
        keys: "K",
        matches: |k| char_key(k, &['K']),
        action: Action::CloseConnection,
        help: "detail: close the connection (asks first)",
    },
    Binding {
        keys: "[ ] { } < >",
        matches: |k| char_key(k, &['[']),
        action: Action::PlaybackBack,
        help: "replay: step, first/last poll, speed",
    },
    Binding {
        keys: "",
        matches: |k| char_key(k, &[']']),
        action: Action::PlaybackForward,
        help: "",
    },
    Binding {
        keys: "",
        matches: |k| char_key(k, &['{']),
        action: Action::PlaybackFirst,
        help: "",
    },
    Binding {
        keys: "",
        matches: |k| char_key(k, &['}']),
        action: Action::PlaybackLast,
        help: "",
    },
    Binding {
        keys: "",
        matches: |k| char_key(k, &['<', ',']),
        action: Action::PlaybackSlower,
        help: "",
    },
    Binding {
        keys: "",
        matches: |k| char_key(k, &['>', '.']),
        action: Action::PlaybackFaster,
        help: "",
    },
];

/// The action a key asks for, if any.
pub fn action_for(key: &KeyEvent) -> Option<Action> {
    BINDINGS
        .iter()
        .find(|binding| (binding.matches)(key))
        .map(|binding| binding.action)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn q_and_ctrl_c_both_quit() {
        assert_eq!(action_for(&press(KeyCode::Char('q'))), Some(Action::Quit));
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(action_for(&ctrl_c), Some(Action::Quit));
    }

    #[test]
    fn vi_keys_and_arrows_move_alike() {
        assert_eq!(
            action_for(&press(KeyCode::Char('j'))),
            action_for(&press(KeyCode::Down))
        );
        assert_eq!(
            action_for(&press(KeyCode::Char('k'))),
            action_for(&press(KeyCode::Up))
        );
        assert_eq!(
            action_for(&press(KeyCode::Char('l'))),
            action_for(&press(KeyCode::Tab))
        );
    }

    #[test]
    fn space_and_p_both_pause() {
        assert_eq!(
            action_for(&press(KeyCode::Char(' '))),
            Some(Action::TogglePause)
        );
        assert_eq!(
            action_for(&press(KeyCode::Char('p'))),
            Some(Action::TogglePause)
        );
    }

    #[test]
    fn every_action_but_the_continuations_has_help() {
        for binding in BINDINGS {
            assert_eq!(
                binding.keys.is_empty(),
                binding.help.is_empty(),
                "{:?}",
                binding.action
            );
        }
    }
}
