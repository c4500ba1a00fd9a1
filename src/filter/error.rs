//! A filter expression that cannot be parsed: what is wrong and where.

use std::fmt;

/// Why an expression was refused, and the bytes of it the message is about.
///
/// `Display` prints the message, then the expression with a caret line under the
/// offending token:
///
/// ```text
/// unknown TCP state 'establised'; valid states: …
///   state establised and dport = :443
///         ^^^^^^^^^^
/// ```
///
/// An interactive caller (the live view's `/` line) can use `position`, `length` and
/// `message` to mark the token itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FilterError {
    /// The whole expression, as given.
    pub expression: String,
    /// Byte offset of the offending token; the expression's length when the problem is
    /// that it ended too soon.
    pub position: usize,
    /// The token's length in bytes (at least 1 for display).
    pub length: usize,
    pub message: String,
}

impl FilterError {
    pub fn new(expression: &str, position: usize, length: usize, message: String) -> FilterError {
        FilterError {
            expression: expression.to_string(),
            position,
            length,
            message,
        }
    }

    /// The expression on one line (control characters shown as spaces, so that the
    /// caret line stays aligned) and the caret line under the offending token.
    pub fn pointer(&self) -> (String, String) {
        let shown: String = self
            .expression
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let column = char_count(&self.expression, 0, self.position);
        let width = char_count(&self.expression, self.position, self.position + self.length).max(1);
        let carets = format!("{}{}", " ".repeat(column), "^".repeat(width));
        (shown, carets)
    }
}

/// Characters between two byte offsets, clamped to the string and to char boundaries.
fn char_count(text: &str, from: usize, to: usize) -> usize {
    let to = to.min(text.len());
    let from = from.min(to);
    text.char_indices()
        .filter(|(at, _)| *at >= from && *at < to)
        .count()
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (expression, carets) = self.pointer();
        write!(f, "{}\n  {expression}\n  {carets}", self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caret_line_sits_under_the_offending_token() {
        let error = FilterError::new("state bogus and sport = :80", 6, 5, "no".into());
        assert_eq!(
            error.to_string(),
            "no\n  state bogus and sport = :80\n        ^^^^^"
        );
    }

    #[test]
    fn an_error_at_the_end_points_just_past_the_expression() {
        let error = FilterError::new("sport =", 7, 0, "expected a port".into());
        assert_eq!(error.pointer().1, "       ^");
    }

    #[test]
    fn carets_count_characters_not_bytes() {
        let error = FilterError::new("état x", 6, 1, "?".into());
        assert_eq!(
            error.pointer(),
            ("état x".to_string(), "     ^".to_string())
        );
    }

    #[test]
    fn control_characters_do_not_break_the_alignment() {
        let error = FilterError::new("a\tb", 2, 1, "?".into());
        assert_eq!(error.pointer(), ("a b".to_string(), "  ^".to_string()));
    }
}
