//! The filter line's editor: the keys a shell user expects of a line (readline's, as
//! bash and zsh bind them by default), and ↑/↓ through the lines entered earlier in
//! the session.
//!
//! Pure: it takes keys and the history and changes the line; the app decides what
//! Enter, Esc and Ctrl-C mean, and keeps the history. Control characters are never
//! inserted: a key with Ctrl or Alt held is a command or nothing, never text.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// A line being edited, with its cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineEditor {
    chars: Vec<char>,
    /// Where the next character goes, in characters from the start: 0 to `chars.len()`.
    cursor: usize,
    /// Which earlier line ↑/↓ show, counted back from the newest (0); `None` while the
    /// line being typed is shown.
    recalled: Option<usize>,
    /// The line being typed, kept while earlier ones are shown.
    draft: Vec<char>,
}

impl LineEditor {
    /// A line holding `text`, with the cursor at its end.
    pub fn new(text: &str) -> LineEditor {
        let chars: Vec<char> = text.chars().filter(|c| !c.is_control()).collect();
        LineEditor {
            cursor: chars.len(),
            chars,
            recalled: None,
            draft: Vec::new(),
        }
    }

    pub fn text(&self) -> String {
        self.chars.iter().collect()
    }

    /// The text before the cursor, the character under it (none at the end), and the
    /// text after it.
    pub fn split_at_cursor(&self) -> (String, Option<char>, String) {
        let before = self.chars[..self.cursor].iter().collect();
        let under = self.chars.get(self.cursor).copied();
        let after = self
            .chars
            .get(self.cursor + 1..)
            .map(|rest| rest.iter().collect())
            .unwrap_or_default();
        (before, under, after)
    }

    /// The cursor's position in characters.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Applies one key; `history` holds the lines entered earlier, oldest first.
    /// Keys it has no use for are ignored.
    pub fn key(&mut self, key: &KeyEvent, history: &[String]) {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        match key.code {
            KeyCode::Char(c) if !ctrl && !alt && !c.is_control() => self.insert(c),
            KeyCode::Char('a') if ctrl => self.cursor = 0,
            KeyCode::Home => self.cursor = 0,
            KeyCode::Char('e') if ctrl => self.cursor = self.chars.len(),
            KeyCode::End => self.cursor = self.chars.len(),
            KeyCode::Char('b') if ctrl => self.left(),
            KeyCode::Char('f') if ctrl => self.right(),
            KeyCode::Left if ctrl => self.cursor = self.word_start(),
            KeyCode::Char('b') if alt => self.cursor = self.word_start(),
            KeyCode::Right if ctrl => self.cursor = self.word_end(),
            KeyCode::Char('f') if alt => self.cursor = self.word_end(),
            KeyCode::Left => self.left(),
            KeyCode::Right => self.right(),
            KeyCode::Char('h') if ctrl => self.backspace(),
            KeyCode::Backspace => self.backspace(),
            KeyCode::Char('d') if ctrl => self.delete(),
            KeyCode::Delete => self.delete(),
            KeyCode::Char('u') if ctrl => self.cut(0, self.cursor),
            KeyCode::Char('k') if ctrl => self.cut(self.cursor, self.chars.len()),
            KeyCode::Char('w') if ctrl => self.cut(self.word_start(), self.cursor),
            KeyCode::Char('p') if ctrl => self.recall_older(history),
            KeyCode::Up => self.recall_older(history),
            KeyCode::Char('n') if ctrl => self.recall_newer(history),
            KeyCode::Down => self.recall_newer(history),
            _ => {}
        }
    }

    fn insert(&mut self, c: char) {
        self.chars.insert(self.cursor, c);
        self.cursor += 1;
    }

    fn left(&mut self) {
        self.cursor = self.cursor.saturating_sub(1);
    }

    fn right(&mut self) {
        self.cursor = (self.cursor + 1).min(self.chars.len());
    }

    fn backspace(&mut self) {
        if self.cursor > 0 {
            self.cursor -= 1;
            self.chars.remove(self.cursor);
        }
    }

    fn delete(&mut self) {
        if self.cursor < self.chars.len() {
            self.chars.remove(self.cursor);
        }
    }

    /// Removes the characters from `from` to `to` and leaves the cursor where they were.
    fn cut(&mut self, from: usize, to: usize) {
        self.chars.drain(from..to);
        self.cursor = from;
    }

    /// The start of the word before the cursor, spaces before the cursor skipped first,
    /// as Ctrl-W and Alt-B take it.
    fn word_start(&self) -> usize {
        let mut at = self.cursor;
        while at > 0 && self.chars[at - 1].is_whitespace() {
            at -= 1;
        }
        while at > 0 && !self.chars[at - 1].is_whitespace() {
            at -= 1;
        }
        at
    }

    /// The end of the word after the cursor, spaces after it skipped first.
    fn word_end(&self) -> usize {
        let mut at = self.cursor;
        while at < self.chars.len() && self.chars[at].is_whitespace() {
            at += 1;
        }
        while at < self.chars.len() && !self.chars[at].is_whitespace() {
            at += 1;
        }
        at
    }

    fn recall_older(&mut self, history: &[String]) {
        let back = self.recalled.map_or(0, |back| back + 1);
        if back >= history.len() {
            return;
        }
        if self.recalled.is_none() {
            self.draft = std::mem::take(&mut self.chars);
        }
        self.show_recalled(history, back);
    }

    fn recall_newer(&mut self, history: &[String]) {
        match self.recalled {
            None => {}
            Some(0) => {
                self.recalled = None;
                self.chars = std::mem::take(&mut self.draft);
                self.cursor = self.chars.len();
            }
            Some(back) => self.show_recalled(history, back - 1),
        }
    }

    fn show_recalled(&mut self, history: &[String], back: usize) {
        let Some(line) = history.iter().rev().nth(back) else {
            return;
        };
        self.recalled = Some(back);
        self.chars = line.chars().filter(|c| !c.is_control()).collect();
        self.cursor = self.chars.len();
    }
}

/// Adds a line entered to the history, unless it is empty or the same as the newest.
pub fn remember(history: &mut Vec<String>, line: &str) {
    if !line.trim().is_empty() && history.last().is_none_or(|last| last != line) {
        history.push(line.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(editor: &mut LineEditor, code: KeyCode, modifiers: KeyModifiers) {
        editor.key(&KeyEvent::new(code, modifiers), &[]);
    }

    fn ctrl(editor: &mut LineEditor, c: char) {
        press(editor, KeyCode::Char(c), KeyModifiers::CONTROL);
    }

    fn typed(editor: &mut LineEditor, text: &str) {
        for c in text.chars() {
            press(editor, KeyCode::Char(c), KeyModifiers::NONE);
        }
    }

    #[test]
    fn ctrl_u_erases_to_the_start_and_never_types_a_u() {
        let mut editor = LineEditor::new("sport = :80");
        ctrl(&mut editor, 'u');
        assert_eq!((editor.text(), editor.cursor()), (String::new(), 0));
        typed(&mut editor, "estab");
        assert_eq!(editor.text(), "estab");
    }

    #[test]
    fn ctrl_w_erases_the_word_before_the_cursor_and_the_spaces_after_it() {
        let mut editor = LineEditor::new("state listen  ");
        ctrl(&mut editor, 'w');
        assert_eq!(editor.text(), "state ");
        ctrl(&mut editor, 'w');
        assert_eq!(editor.text(), "");
    }

    #[test]
    fn text_goes_in_at_the_cursor_moved_by_arrows_home_end_and_ctrl_a_e() {
        let mut editor = LineEditor::new("listen");
        ctrl(&mut editor, 'a');
        typed(&mut editor, "state ");
        ctrl(&mut editor, 'e');
        typed(&mut editor, " and sport = :80");
        assert_eq!(editor.text(), "state listen and sport = :80");
        press(&mut editor, KeyCode::Home, KeyModifiers::NONE);
        press(&mut editor, KeyCode::Right, KeyModifiers::NONE);
        press(&mut editor, KeyCode::Delete, KeyModifiers::NONE);
        press(&mut editor, KeyCode::End, KeyModifiers::NONE);
        press(&mut editor, KeyCode::Left, KeyModifiers::NONE);
        press(&mut editor, KeyCode::Backspace, KeyModifiers::NONE);
        typed(&mut editor, "4");
        assert_eq!(editor.text(), "sate listen and sport = :40");
        assert_eq!(
            editor.split_at_cursor(),
            (
                "sate listen and sport = :4".into(),
                Some('0'),
                String::new()
            )
        );
    }

    #[test]
    fn ctrl_k_erases_to_the_end_and_word_moves_skip_a_word() {
        let mut editor = LineEditor::new("state listen and sport = :80");
        press(&mut editor, KeyCode::Home, KeyModifiers::NONE);
        press(&mut editor, KeyCode::Right, KeyModifiers::CONTROL);
        press(&mut editor, KeyCode::Right, KeyModifiers::CONTROL);
        ctrl(&mut editor, 'k');
        assert_eq!(editor.text(), "state listen");
        press(&mut editor, KeyCode::Char('b'), KeyModifiers::ALT);
        assert_eq!(editor.cursor(), 6);
    }

    #[test]
    fn up_and_down_walk_the_history_and_come_back_to_the_line_being_typed() {
        let history = vec!["estab".to_owned(), "state listen".to_owned()];
        let mut editor = LineEditor::new("");
        typed(&mut editor, "sport");
        let up = KeyEvent::new(KeyCode::Up, KeyModifiers::NONE);
        let down = KeyEvent::new(KeyCode::Down, KeyModifiers::NONE);
        editor.key(&up, &history);
        assert_eq!(editor.text(), "state listen");
        editor.key(&up, &history);
        assert_eq!(editor.text(), "estab");
        editor.key(&up, &history);
        assert_eq!(editor.text(), "estab", "the oldest stays");
        editor.key(&down, &history);
        assert_eq!(editor.text(), "state listen");
        editor.key(&down, &history);
        assert_eq!((editor.text(), editor.cursor()), ("sport".to_owned(), 5));
    }

    #[test]
    fn the_history_skips_empty_lines_and_a_repeat_of_the_newest() {
        let mut history = Vec::new();
        for line in ["estab", "estab", "  ", "listen", "estab"] {
            remember(&mut history, line);
        }
        assert_eq!(history, ["estab", "listen", "estab"]);
    }

    #[test]
    fn alt_and_control_letters_that_mean_nothing_type_nothing() {
        let mut editor = LineEditor::new("x");
        ctrl(&mut editor, 'y');
        press(&mut editor, KeyCode::Char('z'), KeyModifiers::ALT);
        typed(&mut editor, "\u{1b}");
        assert_eq!(editor.text(), "x");
    }
}
