//! The filter language's grammar, `ss`'s with states added: a recursive-descent parser
//! from tokens to a [`Condition`].
//!
//! ```text
//! expression  := conjunction ( ("or" | "|" | "||") conjunction )*
//! conjunction := negation ( ["and" | "&" | "&&"] negation )*   juxtaposition is "and"
//! negation    := ("not" | "!") negation | primary
//! primary     := "(" expression ")"
//!              | "state" STATES                    syn-recv, ESTABLISHED, connected, a,b
//!              | ("sport" | "dport") [comparison] PORT          :443 or 443
//!              | ("src" | "dst") ["=" | "!="] HOST   10.0.0.0/8, [::1]:443, *:80, :22
//! comparison  := "=" | "==" | "eq" | "!=" | "ne" | "neq" | "<" | "lt" | "<=" | "le"
//!              | ">" | "gt" | ">=" | "ge"
//! ```
//!
//! `and` binds tighter than `or`, as in `ss`. Keywords are case-insensitive. Every error
//! names the token it is about (see [`FilterError`]).

use super::condition::{Comparison, Condition, Side};
use super::error::FilterError;
use super::lexer::{self, Kind, Symbol, Token};
use super::network::{self, Host};
use crate::tcp::{State, StateSet};

/// A parsed expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expression {
    pub condition: Condition,
    /// The states named one by one after `state` (not through a group such as `all`):
    /// `--kill` touches LISTEN sockets only when LISTEN is named.
    pub named_states: StateSet,
}

/// How deeply parentheses and `not`s may nest. The parser, the kernel program's
/// compiler and the evaluator all recurse over the expression's tree, on threads with
/// small stacks; no filter a person writes comes near this.
pub const MAX_NESTING: usize = 64;

/// How many conditions and `not`s an expression may hold. This bounds the kernel
/// program: at most 36 bytes each (with the jump of an `or`), so every jump fits its
/// 16-bit offset and the program its netlink attribute, with room to spare.
pub const MAX_TERMS: usize = 1024;

/// Parses a filter expression.
pub fn parse_expression(text: &str) -> Result<Expression, FilterError> {
    let tokens = lexer::tokens(text);
    let mut parser = Parser {
        text,
        tokens,
        next: 0,
        named_states: StateSet::EMPTY,
        nesting: 0,
        terms: 0,
    };
    if parser.tokens.is_empty() {
        return Err(parser.error_at_end(
            "the filter is empty; write a condition such as 'dport = :443' or 'state syn-recv'",
        ));
    }
    let condition = parser.expression()?;
    if let Some(token) = parser.peek() {
        let message = match token.kind {
            Kind::Close => "unexpected ')': there is no '(' for it to close".to_string(),
            _ => format!("unexpected '{}' here", token.text),
        };
        return Err(parser.error(&token, message));
    }
    Ok(Expression {
        condition,
        named_states: parser.named_states,
    })
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Token<'a>>,
    next: usize,
    named_states: StateSet,
    /// Parentheses and `not`s open around the token being read.
    nesting: usize,
    /// Conditions and `not`s read so far.
    terms: usize,
}

/// What a word means where a condition may start.
enum Keyword {
    State,
    Port(Side),
    Host(Side),
    Not,
    And,
    Or,
}

fn keyword(word: &str) -> Option<Keyword> {
    Some(match word.to_ascii_lowercase().as_str() {
        "state" => Keyword::State,
        "sport" => Keyword::Port(Side::Source),
        "dport" => Keyword::Port(Side::Destination),
        "src" => Keyword::Host(Side::Source),
        "dst" => Keyword::Host(Side::Destination),
        "not" => Keyword::Not,
        "and" => Keyword::And,
        "or" => Keyword::Or,
        _ => return None,
    })
}

fn comparison(token: &Token<'_>) -> Option<Comparison> {
    Some(match token.kind {
        Kind::Symbol(Symbol::Equal) => Comparison::Equal,
        Kind::Symbol(Symbol::NotEqual) => Comparison::NotEqual,
        Kind::Symbol(Symbol::Less) => Comparison::Less,
        Kind::Symbol(Symbol::AtMost) => Comparison::AtMost,
        Kind::Symbol(Symbol::Greater) => Comparison::Greater,
        Kind::Symbol(Symbol::AtLeast) => Comparison::AtLeast,
        Kind::Word => match token.text.to_ascii_lowercase().as_str() {
            "eq" => Comparison::Equal,
            "ne" | "neq" => Comparison::NotEqual,
            "lt" => Comparison::Less,
            "le" => Comparison::AtMost,
            "gt" => Comparison::Greater,
            "ge" => Comparison::AtLeast,
            _ => return None,
        },
        _ => return None,
    })
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<Token<'a>> {
        self.tokens.get(self.next).copied()
    }

    fn advance(&mut self) -> Option<Token<'a>> {
        let token = self.peek()?;
        self.next += 1;
        Some(token)
    }

    fn error(&self, token: &Token<'_>, message: impl Into<String>) -> FilterError {
        FilterError::new(self.text, token.start, token.text.len(), message.into())
    }

    fn error_at_end(&self, message: impl Into<String>) -> FilterError {
        FilterError::new(self.text, self.text.len(), 0, message.into())
    }

    /// Whether the next token is `or` (in any spelling); consumes it if so.
    fn eat_or(&mut self) -> bool {
        let is_or = self.peek().is_some_and(|token| match token.kind {
            Kind::Symbol(Symbol::Or) => true,
            Kind::Word => matches!(keyword(token.text), Some(Keyword::Or)),
            _ => false,
        });
        if is_or {
            self.next += 1;
        }
        is_or
    }

    fn eat_and(&mut self) -> bool {
        let is_and = self.peek().is_some_and(|token| match token.kind {
            Kind::Symbol(Symbol::And) => true,
            Kind::Word => matches!(keyword(token.text), Some(Keyword::And)),
            _ => false,
        });
        if is_and {
            self.next += 1;
        }
        is_and
    }

    /// Whether the next token can start a condition, for `and` by juxtaposition.
    fn condition_follows(&self) -> bool {
        self.peek().is_some_and(|token| match token.kind {
            Kind::Open | Kind::Symbol(Symbol::Not) => true,
            Kind::Word => !matches!(keyword(token.text), Some(Keyword::And | Keyword::Or)),
            _ => false,
        })
    }

    fn expression(&mut self) -> Result<Condition, FilterError> {
        let mut condition = self.conjunction()?;
        while self.eat_or() {
            condition = condition.or(self.conjunction()?);
        }
        Ok(condition)
    }

    fn conjunction(&mut self) -> Result<Condition, FilterError> {
        let mut condition = self.negation()?;
        loop {
            if !self.eat_and() && !self.condition_follows() {
                return Ok(condition);
            }
            condition = condition.and(self.negation()?);
        }
    }

    fn negation(&mut self) -> Result<Condition, FilterError> {
        let negated = self.peek().is_some_and(|token| match token.kind {
            Kind::Symbol(Symbol::Not) => true,
            Kind::Word => matches!(keyword(token.text), Some(Keyword::Not)),
            _ => false,
        });
        if negated {
            let token = self.advance();
            self.enter(token.as_ref())?;
            self.count_term(token.as_ref())?;
            let inner = self.negation()?;
            self.nesting -= 1;
            return Ok(!inner);
        }
        self.primary()
    }

    /// Goes one level deeper (a `(` or a `not`), refusing past [`MAX_NESTING`].
    fn enter(&mut self, token: Option<&Token<'_>>) -> Result<(), FilterError> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return Err(self.error_at(
                token,
                format!("nested too deeply: at most {MAX_NESTING} levels of parentheses and 'not'"),
            ));
        }
        Ok(())
    }

    /// Counts a condition or a `not`, refusing past [`MAX_TERMS`].
    fn count_term(&mut self, token: Option<&Token<'_>>) -> Result<(), FilterError> {
        self.terms += 1;
        if self.terms > MAX_TERMS {
            return Err(self.error_at(
                token,
                format!("too long: at most {MAX_TERMS} conditions and 'not's in one filter"),
            ));
        }
        Ok(())
    }

    /// An error at `token`, or at the end when there is none.
    fn error_at(&self, token: Option<&Token<'_>>, message: String) -> FilterError {
        match token {
            Some(token) => self.error(token, message),
            None => self.error_at_end(message),
        }
    }

    fn primary(&mut self) -> Result<Condition, FilterError> {
        let Some(token) = self.advance() else {
            let after = self.tokens.last().map_or("", |t| t.text);
            return Err(self.error_at_end(format!(
                "the filter ends after '{after}'; expected a condition (state, sport, dport, src, dst, not or '(')"
            )));
        };
        match token.kind {
            Kind::Open => {
                if self.peek().is_some_and(|t| t.kind == Kind::Close) {
                    return Err(self.error(&token, "empty parentheses; put a condition inside"));
                }
                self.enter(Some(&token))?;
                let inner = self.expression()?;
                self.nesting -= 1;
                match self.advance() {
                    Some(close) if close.kind == Kind::Close => Ok(inner),
                    Some(other) => Err(self.error(
                        &other,
                        format!("expected ')' to close the '(' at byte {}", token.start),
                    )),
                    None => Err(self.error(&token, "this '(' is never closed")),
                }
            }
            Kind::Close => Err(self.error(&token, "unexpected ')'; expected a condition")),
            Kind::Symbol(_) => Err(self.error(
                &token,
                format!(
                    "unexpected '{}'; expected a condition (state, sport, dport, src, dst, not or '(')",
                    token.text
                ),
            )),
            Kind::Word => {
                let keyword = keyword(token.text);
                if matches!(
                    keyword,
                    Some(Keyword::State | Keyword::Port(_) | Keyword::Host(_))
                ) {
                    self.count_term(Some(&token))?;
                }
                match keyword {
                Some(Keyword::State) => self.state(&token),
                Some(Keyword::Port(side)) => self.port(&token, side),
                Some(Keyword::Host(side)) => self.host(&token, side),
                Some(Keyword::And | Keyword::Or) => Err(self.error(
                    &token,
                    format!("'{}' needs a condition before it", token.text),
                )),
                // `negation` consumed every `not` already.
                Some(Keyword::Not) => Err(self.error(&token, "unexpected 'not'")),
                None => Err(self.error(
                    &token,
                    format!(
                        "unknown word '{}'; a condition starts with state, sport, dport, src, dst, not or '('",
                        token.text
                    ),
                )),
                }
            }
        }
    }

    /// The word after a keyword, or an error naming what was expected.
    fn operand(&mut self, keyword: &Token<'_>, expected: &str) -> Result<Token<'a>, FilterError> {
        match self.advance() {
            Some(token) if token.kind == Kind::Word => Ok(token),
            Some(token) => Err(self.error(
                &token,
                format!("expected {expected} after '{}'", keyword.text),
            )),
            None => Err(self.error_at_end(format!(
                "the filter ends after '{}'; expected {expected}",
                keyword.text
            ))),
        }
    }

    fn state(&mut self, keyword: &Token<'_>) -> Result<Condition, FilterError> {
        let word = self.operand(
            keyword,
            "a state name such as syn-recv or a group such as connected",
        )?;
        let states = StateSet::parse_list(word.text)
            .map_err(|error| self.error(&word, error.to_string()))?;
        for name in word.text.split(',') {
            if let Some(state) = State::parse(name.trim()) {
                self.named_states.insert(state);
            }
        }
        Ok(Condition::State(states))
    }

    fn port(&mut self, keyword: &Token<'_>, side: Side) -> Result<Condition, FilterError> {
        let comparison = match self.peek().as_ref().and_then(comparison) {
            Some(comparison) => {
                self.next += 1;
                comparison
            }
            None => Comparison::Equal,
        };
        let word = self.operand(keyword, "a port such as :443")?;
        let port = network::parse_port(word.text).map_err(|message| self.error(&word, message))?;
        Ok(Condition::port(side, comparison, port))
    }

    fn host(&mut self, keyword: &Token<'_>, side: Side) -> Result<Condition, FilterError> {
        let negated = match self.peek() {
            Some(token) => match comparison(&token) {
                Some(Comparison::Equal) => {
                    self.next += 1;
                    false
                }
                Some(Comparison::NotEqual) => {
                    self.next += 1;
                    true
                }
                Some(_) => {
                    return Err(self.error(
                        &token,
                        format!(
                            "'{}' compares addresses with = or != only; use {} to compare ports",
                            keyword.text,
                            side.port_keyword()
                        ),
                    ));
                }
                None => false,
            },
            None => false,
        };
        let word = self.operand(keyword, "an address such as 10.0.0.0/8, [::1]:443 or :80")?;
        let host = Host::parse(word.text).map_err(|message| self.error(&word, message))?;
        let address = host
            .network
            .map(|network| Condition::address(side, network));
        let port = host
            .port
            .map(|port| Condition::port(side, Comparison::Equal, port));
        let condition = match (address, port) {
            (Some(address), Some(port)) => address.and(port),
            (Some(condition), None) | (None, Some(condition)) => condition,
            (None, None) => {
                return Err(self.error(&word, "the address names nothing to compare"));
            }
        };
        Ok(if negated { !condition } else { condition })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::network::Network;

    fn parse(text: &str) -> Condition {
        match parse_expression(text) {
            Ok(expression) => expression.condition,
            Err(error) => panic!("{text}: {error}"),
        }
    }

    fn refusal(text: &str) -> FilterError {
        parse_expression(text).expect_err(text)
    }

    fn states(list: &str) -> Condition {
        Condition::State(StateSet::parse_list(list).unwrap())
    }

    fn sport(comparison: Comparison, port: u16) -> Condition {
        Condition::port(Side::Source, comparison, port)
    }

    fn dport(comparison: Comparison, port: u16) -> Condition {
        Condition::port(Side::Destination, comparison, port)
    }

    fn dst(network: &str) -> Condition {
        Condition::address(Side::Destination, Network::parse(network).unwrap())
    }

    #[test]
    fn nesting_past_the_limit_is_refused_at_the_token_that_goes_too_deep() {
        let deep =
            |levels: usize| format!("{}sport = :80{}", "(".repeat(levels), ")".repeat(levels));
        parse(&deep(MAX_NESTING));
        let error = refusal(&deep(MAX_NESTING + 1));
        assert!(error.to_string().contains("nested too deeply"), "{error}");
        assert_eq!(error.position, MAX_NESTING);
        // Far past it (a stack overflow before the limit existed): refused all the same.
        refusal(&deep(100_000));
        refusal(&format!("{}sport = :80", "not ".repeat(100_000)));
    }

    #[test]
    fn more_terms_than_the_limit_are_refused() {
        let terms = |count: usize| vec!["dport = :80"; count].join(" or ");
        parse(&terms(MAX_TERMS));
        let error = refusal(&terms(MAX_TERMS + 1));
        assert!(error.to_string().contains("too long"), "{error}");
        let error = refusal(&format!("not {}", terms(MAX_TERMS)));
        assert!(error.to_string().contains("too long"), "{error}");
    }

    #[test]
    fn the_issue_example_parses_with_and_binding_tighter_than_or() {
        assert_eq!(
            parse("state syn-recv and ( dport = :443 or sport = :8080 ) and dst 10.0.0.0/8"),
            states("syn-recv")
                .and(dport(Comparison::Equal, 443).or(sport(Comparison::Equal, 8080)))
                .and(dst("10.0.0.0/8"))
        );
        assert_eq!(
            parse("sport = :1 or sport = :2 and sport = :3"),
            sport(Comparison::Equal, 1)
                .or(sport(Comparison::Equal, 2).and(sport(Comparison::Equal, 3)))
        );
    }

    #[test]
    fn every_comparison_has_a_symbol_and_a_word() {
        use Comparison::*;
        for (spellings, comparison) in [
            (&["=", "==", "eq"][..], Equal),
            (&["!=", "ne", "neq"], NotEqual),
            (&["<", "lt"], Less),
            (&["<=", "le"], AtMost),
            (&[">", "gt"], Greater),
            (&[">=", "ge"], AtLeast),
        ] {
            for spelling in spellings {
                assert_eq!(
                    parse(&format!("dport {spelling} :1024")),
                    dport(comparison, 1024),
                    "{spelling}"
                );
            }
        }
        assert_eq!(parse("sport 80"), sport(Equal, 80), "no operator means =");
        assert_eq!(parse("sport>=:80"), sport(AtLeast, 80), "no spaces needed");
    }

    #[test]
    fn connectives_have_ss_spellings_and_juxtaposition_means_and() {
        let expected = sport(Comparison::Equal, 1).and(!sport(Comparison::Equal, 2));
        for text in [
            "sport :1 and not sport :2",
            "sport :1 && ! sport :2",
            "sport :1 & !sport :2",
            "sport :1 !sport :2",
            "SPORT :1 AND NOT SPORT :2",
        ] {
            assert_eq!(parse(text), expected, "{text}");
        }
        assert_eq!(
            parse("sport :1 || sport :2"),
            sport(Comparison::Equal, 1).or(sport(Comparison::Equal, 2))
        );
    }

    #[test]
    fn src_and_dst_take_addresses_prefixes_and_ports() {
        assert_eq!(parse("dst 10.0.0.0/8"), dst("10.0.0.0/8"));
        assert_eq!(parse("dst = 10.0.0.0/8"), dst("10.0.0.0/8"));
        assert_eq!(parse("dst != 10.0.0.0/8"), !dst("10.0.0.0/8"));
        assert_eq!(
            parse("dst [::1]:443"),
            dst("::1").and(dport(Comparison::Equal, 443))
        );
        assert_eq!(parse("src :22"), sport(Comparison::Equal, 22));
        assert_eq!(parse("src *:22"), sport(Comparison::Equal, 22));
    }

    #[test]
    fn state_takes_names_groups_and_lists_and_remembers_names_only() {
        let expression = parse_expression("state listening or state connected").unwrap();
        assert_eq!(
            expression.condition,
            states("listen").or(states("connected"))
        );
        assert_eq!(
            expression.named_states,
            [State::Listen].into_iter().collect()
        );
        let all = parse_expression("state all").unwrap();
        assert!(all.named_states.is_empty(), "a group names no state");
        assert_eq!(
            parse("state SYN_RECV,time-wait"),
            states("syn-recv,time-wait")
        );
    }

    #[test]
    fn nested_parentheses_and_negations_parse() {
        assert_eq!(
            parse("not ( ( sport = :1 ) or ! ( dport = :2 ) )"),
            !(sport(Comparison::Equal, 1).or(!dport(Comparison::Equal, 2)))
        );
    }

    #[test]
    fn an_unknown_state_points_at_the_state_word() {
        let error = refusal("state establised and dport = :443");
        assert_eq!((error.position, error.length), (6, 10));
        assert!(error.message.contains("'establised'"), "{}", error.message);
        assert!(error.message.contains("ESTABLISHED"), "{}", error.message);
    }

    #[test]
    fn an_unknown_word_points_at_itself() {
        let error = refusal("dport = :443 or prot = 6");
        assert_eq!((error.position, error.length), (16, 4));
        assert!(error.message.contains("unknown word 'prot'"));
    }

    #[test]
    fn a_bad_port_points_at_the_port() {
        let error = refusal("sport = :99999");
        assert_eq!((error.position, error.length), (8, 6));
        assert!(error.message.contains("out of range"));
        let error = refusal("dport = http");
        assert_eq!(error.position, 8);
        assert!(error.message.contains("not a port"));
    }

    #[test]
    fn a_bad_address_points_at_the_address() {
        let error = refusal("state estab and dst 10.0.0.0/40");
        assert_eq!((error.position, error.length), (20, 11));
        assert!(error.message.contains("/40"));
        let error = refusal("src < 10.0.0.1");
        assert_eq!(error.position, 4);
        assert!(error.message.contains("sport"));
    }

    #[test]
    fn unbalanced_parentheses_point_at_the_culprit() {
        let error = refusal("( sport = :80 or dport = :80");
        assert_eq!(error.position, 0);
        assert!(error.message.contains("never closed"));
        let error = refusal("sport = :80 )");
        assert_eq!(error.position, 12);
        assert!(error.message.contains("no '('"));
        let error = refusal("( )");
        assert!(error.message.contains("empty parentheses"));
    }

    #[test]
    fn a_truncated_expression_points_past_its_end() {
        for text in ["sport =", "state", "dport > :1 and", "not", "src"] {
            let error = refusal(text);
            assert_eq!(error.position, text.len(), "{text}: {error}");
        }
        let error = refusal("");
        assert!(error.message.contains("empty"));
    }

    #[test]
    fn a_connective_without_a_left_side_is_refused() {
        let error = refusal("and sport = :80");
        assert_eq!(error.position, 0);
        assert!(error.message.contains("'and' needs a condition before it"));
        let error = refusal("sport = :80 or or dport = :1");
        assert_eq!(error.position, 15);
    }

    #[test]
    fn printing_a_condition_and_parsing_it_again_gives_the_same_condition() {
        for text in [
            "state syn-recv and ( dport = :443 or sport = :8080 ) and dst 10.0.0.0/8",
            "not ( src [::1]:80 or dst != 127.0.0.0/10 ) sport > :5 dport le 7",
            "state connected,listen or src ::ffff:0:0/96",
        ] {
            let condition = parse(text);
            assert_eq!(parse(&condition.to_string()), condition, "{text}");
        }
    }
}
