//! Splits a filter expression into tokens, each with its byte span, so that an error
//! can point at the token it is about.
//!
//! The punctuation is `ss`'s: `(` `)`, the comparisons `=` `==` `!=` `<` `<=` `>`
//! `>=`, and `!` `&` `&&` `|` `||`. Everything else up to whitespace or punctuation is
//! a word (keywords, state names, ports, addresses); the parser says what a word means.

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Open,
    Close,
    Symbol(Symbol),
    Word,
}

/// Punctuation that stands for an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Symbol {
    Equal,
    NotEqual,
    Less,
    AtMost,
    Greater,
    AtLeast,
    Not,
    And,
    Or,
}

/// One token and where it lies in the expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'a> {
    pub kind: Kind,
    pub text: &'a str,
    /// Byte offset of the first byte.
    pub start: usize,
}

impl Token<'_> {
    #[cfg(test)]
    pub fn end(&self) -> usize {
        self.start + self.text.len()
    }
}

/// Characters that end a word.
fn is_punctuation(c: char) -> bool {
    matches!(c, '(' | ')' | '=' | '!' | '<' | '>' | '&' | '|')
}

/// The tokens of `text`, in order. Lexing cannot fail: any character is part of some
/// token, and the parser rejects what it cannot use.
pub fn tokens(text: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut rest = text.char_indices().peekable();
    while let Some((start, c)) = rest.next() {
        if c.is_whitespace() {
            continue;
        }
        let next_is = |rest: &mut std::iter::Peekable<std::str::CharIndices<'_>>, wanted| {
            rest.next_if(|(_, next)| *next == wanted).is_some()
        };
        let kind = match c {
            '(' => Kind::Open,
            ')' => Kind::Close,
            '=' => {
                next_is(&mut rest, '=');
                Kind::Symbol(Symbol::Equal)
            }
            '!' if next_is(&mut rest, '=') => Kind::Symbol(Symbol::NotEqual),
            '!' => Kind::Symbol(Symbol::Not),
            '<' if next_is(&mut rest, '=') => Kind::Symbol(Symbol::AtMost),
            '<' => Kind::Symbol(Symbol::Less),
            '>' if next_is(&mut rest, '=') => Kind::Symbol(Symbol::AtLeast),
            '>' => Kind::Symbol(Symbol::Greater),
            '&' => {
                next_is(&mut rest, '&');
                Kind::Symbol(Symbol::And)
            }
            '|' => {
                next_is(&mut rest, '|');
                Kind::Symbol(Symbol::Or)
            }
            _ => {
                while rest
                    .next_if(|(_, next)| !next.is_whitespace() && !is_punctuation(*next))
                    .is_some()
                {}
                Kind::Word
            }
        };
        let end = rest.peek().map_or(text.len(), |(at, _)| *at);
        tokens.push(Token {
            kind,
            text: &text[start..end],
            start,
        });
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(Kind, &str)> {
        tokens(text).into_iter().map(|t| (t.kind, t.text)).collect()
    }

    #[test]
    fn words_and_punctuation_split_with_or_without_spaces() {
        use Kind::*;
        assert_eq!(
            kinds("(dport>=:443||src 10.0.0.0/8)"),
            [
                (Open, "("),
                (Word, "dport"),
                (Symbol(self::Symbol::AtLeast), ">="),
                (Word, ":443"),
                (Symbol(self::Symbol::Or), "||"),
                (Word, "src"),
                (Word, "10.0.0.0/8"),
                (Close, ")"),
            ]
        );
    }

    #[test]
    fn every_operator_spelling_is_one_token() {
        let symbols: Vec<_> = tokens("= == != < <= > >= ! & && | ||")
            .into_iter()
            .map(|t| t.kind)
            .collect();
        use Symbol::*;
        assert_eq!(
            symbols,
            [
                Equal, Equal, NotEqual, Less, AtMost, Greater, AtLeast, Not, And, And, Or, Or
            ]
            .map(Kind::Symbol)
        );
    }

    #[test]
    fn tokens_know_their_byte_offsets() {
        let found = tokens("  state  [::1]:80");
        assert_eq!(found[0].start, 2);
        assert_eq!(found[1].start, 9);
        assert_eq!(found[1].text, "[::1]:80");
        assert_eq!(found[1].end(), 17);
    }

    #[test]
    fn non_ascii_input_stays_on_character_boundaries() {
        let found = tokens("état→ = é");
        assert_eq!(
            found.iter().map(|t| t.text).collect::<Vec<_>>(),
            ["état→", "=", "é"]
        );
    }
}
