//! Splits expression text into tokens (FHIRPath N1 §8 Lexical Elements).

use super::error::FhirPathError;
use super::temporal::{Temporal, TemporalKind};

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Token {
    /// A plain identifier, including keywords such as `and` or `is`, which the parser
    /// recognizes by position.
    Identifier(String),
    /// A `` `backtick` `` identifier, never a keyword.
    DelimitedIdentifier(String),
    String(String),
    Integer(i64),
    Decimal(f64),
    /// A date/time literal without its `@` (and without the `T` of a time or a trailing `T`).
    Temporal(TemporalKind, String),
    /// `%name`, `` %`name` `` or `%'name'`, without the `%`.
    Variable(String),
    /// `$this`, `$index` or `$total`, without the `$`.
    Special(String),
    Symbol(Symbol),
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Symbol {
    Dot,
    Comma,
    OpenParen,
    CloseParen,
    OpenBracket,
    CloseBracket,
    OpenBrace,
    CloseBrace,
    Plus,
    Minus,
    Star,
    Slash,
    Ampersand,
    Pipe,
    Equal,
    NotEqual,
    Equivalent,
    NotEquivalent,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

/// A token and the character offset where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Spanned {
    pub(super) token: Token,
    pub(super) position: usize,
}

/// Splits `source` into tokens, ending with [`Token::End`].
pub(super) fn tokenize(source: &str) -> Result<Vec<Spanned>, FhirPathError> {
    let mut lexer = Lexer {
        chars: source.chars().collect(),
        position: 0,
    };
    let mut tokens = Vec::new();
    loop {
        lexer.skip_whitespace_and_comments()?;
        let position = lexer.position;
        let Some(current) = lexer.peek(0) else {
            tokens.push(Spanned {
                token: Token::End,
                position,
            });
            return Ok(tokens);
        };
        let token = match current {
            'a'..='z' | 'A'..='Z' | '_' => Token::Identifier(lexer.identifier()),
            '0'..='9' => lexer.number()?,
            '\'' => Token::String(lexer.quoted('\'')?),
            '`' => Token::DelimitedIdentifier(lexer.quoted('`')?),
            '@' => lexer.temporal()?,
            '%' => lexer.variable()?,
            '$' => lexer.special()?,
            _ => Token::Symbol(lexer.symbol()?),
        };
        tokens.push(Spanned { token, position });
    }
}

struct Lexer {
    chars: Vec<char>,
    position: usize,
}

impl Lexer {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.position + ahead).copied()
    }

    fn peek_is_digit(&self, ahead: usize) -> bool {
        self.peek(ahead).is_some_and(|c| c.is_ascii_digit())
    }

    fn error(&self, position: usize, message: impl Into<String>) -> FhirPathError {
        FhirPathError::parse(position, message)
    }

    fn skip_whitespace_and_comments(&mut self) -> Result<(), FhirPathError> {
        loop {
            match (self.peek(0), self.peek(1)) {
                (Some(c), _) if c.is_whitespace() => self.position += 1,
                (Some('/'), Some('/')) => {
                    while self.peek(0).is_some_and(|c| c != '\n') {
                        self.position += 1;
                    }
                }
                (Some('/'), Some('*')) => {
                    let start = self.position;
                    self.position += 2;
                    loop {
                        match (self.peek(0), self.peek(1)) {
                            (Some('*'), Some('/')) => {
                                self.position += 2;
                                break;
                            }
                            (Some(_), _) => self.position += 1,
                            (None, _) => return Err(self.error(start, "unterminated comment")),
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn identifier(&mut self) -> String {
        let start = self.position;
        while self
            .peek(0)
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            self.position += 1;
        }
        self.chars[start..self.position].iter().collect()
    }

    /// Reads `[0-9]+('.'[0-9]+)?`. A dot not followed by a digit is left for the parser, so
    /// `1.toString()` is an invocation on `1`.
    fn number(&mut self) -> Result<Token, FhirPathError> {
        let start = self.position;
        while self.peek_is_digit(0) {
            self.position += 1;
        }
        let is_decimal = self.peek(0) == Some('.') && self.peek_is_digit(1);
        if is_decimal {
            self.position += 1;
            while self.peek_is_digit(0) {
                self.position += 1;
            }
        }
        let text: String = self.chars[start..self.position].iter().collect();
        if is_decimal {
            let value = text
                .parse::<f64>()
                .ok()
                .filter(|value| value.is_finite())
                .ok_or_else(|| self.error(start, format!("invalid decimal {text}")))?;
            Ok(Token::Decimal(value))
        } else {
            let value = text.parse::<i64>().map_err(|_| {
                self.error(start, format!("integer {text} is out of the 64-bit range"))
            })?;
            Ok(Token::Integer(value))
        }
    }

    /// Reads a string or delimited identifier up to the closing `quote`, resolving the escapes
    /// of N1 §8 Lexical Elements: `\'`, `` \` ``, `\"`, `\\`, `\/`, `\f`, `\n`, `\r`, `\t`, `\uXXXX`.
    fn quoted(&mut self, quote: char) -> Result<String, FhirPathError> {
        let start = self.position;
        self.position += 1;
        let mut text = String::new();
        loop {
            let Some(current) = self.peek(0) else {
                return Err(self.error(start, format!("missing closing {quote}")));
            };
            self.position += 1;
            if current == quote {
                return Ok(text);
            }
            if current != '\\' {
                text.push(current);
                continue;
            }
            let escape_position = self.position - 1;
            let escaped = self
                .peek(0)
                .ok_or_else(|| self.error(start, format!("missing closing {quote}")))?;
            self.position += 1;
            let resolved = match escaped {
                '\'' | '`' | '"' | '\\' | '/' => escaped,
                'f' => '\u{000C}',
                'n' => '\n',
                'r' => '\r',
                't' => '\t',
                'u' => self.unicode_escape(escape_position)?,
                other => {
                    return Err(self.error(escape_position, format!("invalid escape \\{other}")));
                }
            };
            text.push(resolved);
        }
    }

    fn unicode_escape(&mut self, escape_position: usize) -> Result<char, FhirPathError> {
        let invalid = || self.error(escape_position, "invalid \\u escape: expected 4 hex digits");
        let end = self.position + 4;
        let digits: String = self
            .chars
            .get(self.position..end)
            .ok_or_else(invalid)?
            .iter()
            .collect();
        let code = u32::from_str_radix(&digits, 16).map_err(|_| invalid())?;
        let resolved = char::from_u32(code).ok_or_else(|| {
            self.error(
                escape_position,
                format!("\\u{digits} is not a Unicode scalar value"),
            )
        })?;
        self.position = end;
        Ok(resolved)
    }

    /// Reads `@date`, `@dateTime` or `@Ttime` (N1 §4.1 Literals) and checks that the value
    /// is a real date or time.
    fn temporal(&mut self) -> Result<Token, FhirPathError> {
        let start = self.position;
        self.position += 1;
        let body_start = self.position;
        let kind = if self.peek(0) == Some('T') {
            self.position += 1;
            self.scan_clock(start)?;
            TemporalKind::Time
        } else {
            self.scan_date_time(start)?
        };

        let body: String = self.chars[body_start..self.position].iter().collect();
        let text = match kind {
            TemporalKind::Time => body.trim_start_matches('T').to_string(),
            _ => body.trim_end_matches('T').to_string(),
        };
        let parsed = match kind {
            TemporalKind::Time => Temporal::parse_time(&text),
            _ => Temporal::parse_date_time(&body),
        };
        if parsed.is_none() {
            return Err(self.error(start, format!("invalid date/time literal @{body}")));
        }
        Ok(Token::Temporal(kind, text))
    }

    /// Scans the characters of `YYYY[-MM[-DD]][T[time][offset]]`. The caller checks the values.
    fn scan_date_time(&mut self, start: usize) -> Result<TemporalKind, FhirPathError> {
        self.scan_digits(4, start)?;
        for _ in 0..2 {
            if self.peek(0) == Some('-') && self.peek_is_digit(1) {
                self.position += 1;
                self.scan_digits(2, start)?;
            }
        }
        if self.peek(0) != Some('T') {
            return Ok(TemporalKind::Date);
        }
        self.position += 1;
        if self.peek_is_digit(0) {
            self.scan_clock(start)?;
            match self.peek(0) {
                Some('Z') => self.position += 1,
                Some('+' | '-') if self.peek_is_digit(1) => {
                    self.position += 1;
                    self.scan_digits(2, start)?;
                    self.expect_char(':', start)?;
                    self.scan_digits(2, start)?;
                }
                _ => {}
            }
        }
        Ok(TemporalKind::DateTime)
    }

    /// Scans `hh[:mm[:ss[.fff]]]`.
    fn scan_clock(&mut self, start: usize) -> Result<(), FhirPathError> {
        self.scan_digits(2, start)?;
        for _ in 0..2 {
            if self.peek(0) == Some(':') && self.peek_is_digit(1) {
                self.position += 1;
                self.scan_digits(2, start)?;
            }
        }
        if self.peek(0) == Some('.') && self.peek_is_digit(1) {
            self.position += 1;
            while self.peek_is_digit(0) {
                self.position += 1;
            }
        }
        Ok(())
    }

    fn scan_digits(&mut self, count: usize, start: usize) -> Result<(), FhirPathError> {
        for _ in 0..count {
            if !self.peek_is_digit(0) {
                return Err(self.error(start, "invalid date/time literal"));
            }
            self.position += 1;
        }
        Ok(())
    }

    fn expect_char(&mut self, expected: char, start: usize) -> Result<(), FhirPathError> {
        if self.peek(0) != Some(expected) {
            return Err(self.error(start, "invalid date/time literal"));
        }
        self.position += 1;
        Ok(())
    }

    fn variable(&mut self) -> Result<Token, FhirPathError> {
        let start = self.position;
        self.position += 1;
        let name = match self.peek(0) {
            Some('`') => self.quoted('`')?,
            Some('\'') => self.quoted('\'')?,
            Some(c) if c.is_ascii_alphabetic() || c == '_' => self.identifier(),
            _ => return Err(self.error(start, "expected a variable name after %")),
        };
        Ok(Token::Variable(name))
    }

    fn special(&mut self) -> Result<Token, FhirPathError> {
        let start = self.position;
        self.position += 1;
        if !self.peek(0).is_some_and(|c| c.is_ascii_alphabetic()) {
            return Err(self.error(start, "expected $this, $index or $total"));
        }
        Ok(Token::Special(self.identifier()))
    }

    fn symbol(&mut self) -> Result<Symbol, FhirPathError> {
        let start = self.position;
        let current = self.peek(0).unwrap_or_default();
        let next = self.peek(1);
        let (symbol, length) = match (current, next) {
            ('!', Some('=')) => (Symbol::NotEqual, 2),
            ('!', Some('~')) => (Symbol::NotEquivalent, 2),
            ('<', Some('=')) => (Symbol::LessOrEqual, 2),
            ('>', Some('=')) => (Symbol::GreaterOrEqual, 2),
            ('.', _) => (Symbol::Dot, 1),
            (',', _) => (Symbol::Comma, 1),
            ('(', _) => (Symbol::OpenParen, 1),
            (')', _) => (Symbol::CloseParen, 1),
            ('[', _) => (Symbol::OpenBracket, 1),
            (']', _) => (Symbol::CloseBracket, 1),
            ('{', _) => (Symbol::OpenBrace, 1),
            ('}', _) => (Symbol::CloseBrace, 1),
            ('+', _) => (Symbol::Plus, 1),
            ('-', _) => (Symbol::Minus, 1),
            ('*', _) => (Symbol::Star, 1),
            ('/', _) => (Symbol::Slash, 1),
            ('&', _) => (Symbol::Ampersand, 1),
            ('|', _) => (Symbol::Pipe, 1),
            ('=', _) => (Symbol::Equal, 1),
            ('~', _) => (Symbol::Equivalent, 1),
            ('<', _) => (Symbol::Less, 1),
            ('>', _) => (Symbol::Greater, 1),
            (other, _) => {
                return Err(self.error(start, format!("unexpected character {other:?}")));
            }
        };
        self.position += length;
        Ok(symbol)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(source: &str) -> Vec<Token> {
        tokenize(source)
            .unwrap_or_else(|error| panic!("{source}: {error}"))
            .into_iter()
            .map(|spanned| spanned.token)
            .collect()
    }

    fn error_position(source: &str) -> usize {
        match tokenize(source) {
            Err(FhirPathError::Parse { position, .. }) => position,
            other => panic!("{source}: expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn tokenize_path_and_operators() {
        assert_eq!(
            tokens("Patient.name[0] != 'x'"),
            vec![
                Token::Identifier("Patient".into()),
                Token::Symbol(Symbol::Dot),
                Token::Identifier("name".into()),
                Token::Symbol(Symbol::OpenBracket),
                Token::Integer(0),
                Token::Symbol(Symbol::CloseBracket),
                Token::Symbol(Symbol::NotEqual),
                Token::String("x".into()),
                Token::End,
            ]
        );
        assert_eq!(
            tokens("<= >= !~ ~ & | { }"),
            vec![
                Token::Symbol(Symbol::LessOrEqual),
                Token::Symbol(Symbol::GreaterOrEqual),
                Token::Symbol(Symbol::NotEquivalent),
                Token::Symbol(Symbol::Equivalent),
                Token::Symbol(Symbol::Ampersand),
                Token::Symbol(Symbol::Pipe),
                Token::Symbol(Symbol::OpenBrace),
                Token::Symbol(Symbol::CloseBrace),
                Token::End,
            ]
        );
    }

    #[test]
    fn tokenize_numbers() {
        assert_eq!(tokens("42"), vec![Token::Integer(42), Token::End]);
        assert_eq!(tokens("4.25"), vec![Token::Decimal(4.25), Token::End]);
        assert_eq!(
            tokens("1.abs()")[..3],
            [
                Token::Integer(1),
                Token::Symbol(Symbol::Dot),
                Token::Identifier("abs".into())
            ]
        );
        assert_eq!(error_position("x + 99999999999999999999"), 4);
    }

    #[test]
    fn tokenize_string_escapes() {
        assert_eq!(
            tokens(r#"'it\'s \"a\" \\ \/ \t\n\r\f \u00e9 `'"#),
            vec![
                Token::String("it's \"a\" \\ / \t\n\r\u{c} é `".into()),
                Token::End
            ]
        );
        assert_eq!(error_position(r"'a\qb'"), 2);
        assert_eq!(error_position(r"'\u12'"), 1);
        assert_eq!(error_position("name = 'open"), 7);
    }

    #[test]
    fn tokenize_delimited_identifier() {
        assert_eq!(
            tokens("`div`.`given name`"),
            vec![
                Token::DelimitedIdentifier("div".into()),
                Token::Symbol(Symbol::Dot),
                Token::DelimitedIdentifier("given name".into()),
                Token::End,
            ]
        );
    }

    #[test]
    fn tokenize_temporal_literals() {
        let cases = [
            ("@2020", TemporalKind::Date, "2020"),
            ("@2020-01-15", TemporalKind::Date, "2020-01-15"),
            ("@2020-01-15T", TemporalKind::DateTime, "2020-01-15"),
            ("@2020T", TemporalKind::DateTime, "2020"),
            (
                "@2020-01-15T10:30:00.123Z",
                TemporalKind::DateTime,
                "2020-01-15T10:30:00.123Z",
            ),
            (
                "@2020-01-15T10:30-05:00",
                TemporalKind::DateTime,
                "2020-01-15T10:30-05:00",
            ),
            ("@T10:30", TemporalKind::Time, "10:30"),
            ("@T10:30:00.5", TemporalKind::Time, "10:30:00.5"),
        ];
        for (source, kind, text) in cases {
            assert_eq!(
                tokens(source),
                vec![Token::Temporal(kind, text.into()), Token::End],
                "{source}"
            );
        }
    }

    #[test]
    fn tokenize_rejects_invalid_temporal_literals() {
        for source in [
            "@20",
            "@2020-13-01",
            "@2020-02-30",
            "@T25:00",
            "@2020-1",
            "@x",
        ] {
            assert_eq!(error_position(source), 0, "{source}");
        }
    }

    #[test]
    fn tokenize_variables_and_specials() {
        assert_eq!(
            tokens("%after.status %`vs-x` %'ucum' $this"),
            vec![
                Token::Variable("after".into()),
                Token::Symbol(Symbol::Dot),
                Token::Identifier("status".into()),
                Token::Variable("vs-x".into()),
                Token::Variable("ucum".into()),
                Token::Special("this".into()),
                Token::End,
            ]
        );
        assert_eq!(error_position("a = % b"), 4);
        assert_eq!(error_position("$ "), 0);
    }

    #[test]
    fn tokenize_skips_comments() {
        assert_eq!(
            tokens("a // line\n/* block\n */ b"),
            vec![
                Token::Identifier("a".into()),
                Token::Identifier("b".into()),
                Token::End
            ]
        );
        assert_eq!(error_position("a /* open"), 2);
    }

    #[test]
    fn tokenize_positions_count_characters() {
        let spanned = tokenize("'é' = x").unwrap();
        assert_eq!(spanned[1].position, 4);
        assert_eq!(error_position("'é' # x"), 4);
    }
}
