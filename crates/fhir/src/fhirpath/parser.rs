//! Builds the syntax tree from tokens by precedence climbing, following the grammar and the
//! operator precedence of FHIRPath N1 (§4 Expressions, §6 Operations).

use super::ast::{BinaryOp, Expr, ExprKind, TypeName, TypeTest};
use super::error::FhirPathError;
use super::functions::lookup;
use super::lexer::{Spanned, Symbol, Token, tokenize};
use super::model::is_known_namespace;

/// Maximum height of the syntax tree. Parsing and evaluation recurse once per level, so this
/// bounds their stack use. A test parses and evaluates trees of this height on a 2 MiB thread
/// stack, the default for spawned Rust threads. Real expressions stay far below it, because the
/// search-parameter expressions medgate indexes are at most 180 characters long.
pub(super) const MAX_DEPTH: usize = 128;

/// Open calls of [`Parser::expression`] allowed at once. A level of the tree can take two
/// (the operand of a binary or unary operator, then the parenthesized expression inside it), so
/// every tree within [`MAX_DEPTH`] parses, while `((((…` fails before it can overflow the stack.
const MAX_NESTING: usize = 2 * MAX_DEPTH + 1;

/// Binding power of unary `+` and `-`. [`infix_operator`] maps the operator precedence of N1 §6
/// to powers from 1 for `implies` to 10 for `*`, `/`, `div` and `mod`. Unary operators bind
/// tighter than all of those and looser than `.` and `[]`.
const UNARY_POWER: u8 = 11;

/// Time units that turn a number into a quantity literal such as `4 days` (N1 §4.1 Literals).
const CALENDAR_UNITS: &[&str] = &[
    "year",
    "years",
    "month",
    "months",
    "week",
    "weeks",
    "day",
    "days",
    "hour",
    "hours",
    "minute",
    "minutes",
    "second",
    "seconds",
    "millisecond",
    "milliseconds",
];

/// Parses a whole expression.
pub(super) fn parse_expression(source: &str) -> Result<Expr, FhirPathError> {
    let mut parser = Parser {
        tokens: tokenize(source)?,
        next: 0,
        nesting: 0,
    };
    let parsed = parser.expression(0)?;
    let end = parser.peek();
    if end.token != Token::End {
        return Err(FhirPathError::parse(
            end.position,
            format!("unexpected {}", describe(&end.token)),
        ));
    }
    Ok(*parsed.expr)
}

/// A subtree and its height, so that the depth limit is checked without walking the tree
/// again. The subtree is boxed to keep the parser's stack frames small.
struct Parsed {
    expr: Box<Expr>,
    height: usize,
}

struct Parser {
    tokens: Vec<Spanned>,
    next: usize,
    /// Open calls of [`Parser::expression`], at most [`MAX_NESTING`].
    nesting: usize,
}

impl Parser {
    fn peek(&self) -> &Spanned {
        // The token list always ends with `Token::End`, and `advance` never moves past it.
        &self.tokens[self.next.min(self.tokens.len() - 1)]
    }

    fn peek_second(&self) -> Option<&Token> {
        self.tokens.get(self.next + 1).map(|spanned| &spanned.token)
    }

    fn advance(&mut self) -> Spanned {
        let spanned = self.peek().clone();
        if spanned.token != Token::End {
            self.next += 1;
        }
        spanned
    }

    fn expect(&mut self, symbol: Symbol, expected: &str) -> Result<(), FhirPathError> {
        let spanned = self.advance();
        if spanned.token == Token::Symbol(symbol) {
            return Ok(());
        }
        Err(FhirPathError::parse(
            spanned.position,
            format!("expected {expected}, found {}", describe(&spanned.token)),
        ))
    }

    /// Wraps `kind` in a node one level above its tallest child, failing past [`MAX_DEPTH`].
    fn node(
        &self,
        kind: ExprKind,
        position: usize,
        child_height: usize,
    ) -> Result<Parsed, FhirPathError> {
        let height = child_height + 1;
        if height > MAX_DEPTH {
            return Err(too_deep(position));
        }
        Ok(Parsed {
            expr: Box::new(Expr { kind, position }),
            height,
        })
    }

    /// Parses operators that bind tighter than `min_power`, then returns.
    fn expression(&mut self, min_power: u8) -> Result<Parsed, FhirPathError> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return Err(too_deep(self.peek().position));
        }
        let result = self.expression_inner(min_power);
        self.nesting -= 1;
        result
    }

    fn expression_inner(&mut self, min_power: u8) -> Result<Parsed, FhirPathError> {
        let mut left = self.prefix()?;
        loop {
            let position = self.peek().position;
            let step = self.next_step(min_power);
            if step != Step::Stop {
                self.advance();
            }
            left = match step {
                Step::Stop => return Ok(left),
                Step::Member => self.invocation(Some(left))?,
                Step::Index => self.indexer(left, position)?,
                Step::Binary(op, power) => self.binary(left, op, power, position)?,
                Step::Type(test) => self.type_operator(left, test, position)?,
            };
        }
    }

    /// Classifies the next token by what it does to the operand parsed so far.
    fn next_step(&self, min_power: u8) -> Step {
        match &self.peek().token {
            Token::Symbol(Symbol::Dot) => Step::Member,
            Token::Symbol(Symbol::OpenBracket) => Step::Index,
            token => match infix_operator(token) {
                Some((_, power)) if power <= min_power => Step::Stop,
                Some((Infix::Binary(op), power)) => Step::Binary(op, power),
                Some((Infix::Type(test), _)) => Step::Type(test),
                None => Step::Stop,
            },
        }
    }

    fn indexer(&mut self, target: Parsed, position: usize) -> Result<Parsed, FhirPathError> {
        let index = self.expression(0)?;
        self.expect(Symbol::CloseBracket, "]")?;
        let height = target.height.max(index.height);
        let kind = ExprKind::Indexer {
            target: target.expr,
            index: index.expr,
        };
        self.node(kind, position, height)
    }

    fn binary(
        &mut self,
        left: Parsed,
        op: BinaryOp,
        power: u8,
        position: usize,
    ) -> Result<Parsed, FhirPathError> {
        let right = self.expression(power)?;
        let height = left.height.max(right.height);
        let kind = ExprKind::Binary {
            op,
            left: left.expr,
            right: right.expr,
        };
        self.node(kind, position, height)
    }

    fn type_operator(
        &mut self,
        operand: Parsed,
        test: TypeTest,
        position: usize,
    ) -> Result<Parsed, FhirPathError> {
        let type_name = self.type_specifier()?;
        let kind = ExprKind::TypeTest {
            target: Some(operand.expr),
            test,
            type_name,
        };
        self.node(kind, position, operand.height)
    }

    /// Parses unary `+`/`-` and then a term.
    fn prefix(&mut self) -> Result<Parsed, FhirPathError> {
        let position = self.peek().position;
        let negative = match self.peek().token {
            Token::Symbol(Symbol::Minus) => true,
            Token::Symbol(Symbol::Plus) => false,
            _ => return self.term(),
        };
        self.advance();
        let operand = self.expression(UNARY_POWER)?;
        let kind = ExprKind::Negate {
            operand: operand.expr,
            negative,
        };
        self.node(kind, position, operand.height)
    }

    /// Parses a term: a parenthesized expression, an invocation or a literal.
    fn term(&mut self) -> Result<Parsed, FhirPathError> {
        match &self.peek().token {
            Token::Symbol(Symbol::OpenParen) => self.parenthesized(),
            Token::Identifier(name) if !is_literal_or_reserved(name) => self.invocation(None),
            Token::DelimitedIdentifier(_) => self.invocation(None),
            _ => self.literal(),
        }
    }

    fn parenthesized(&mut self) -> Result<Parsed, FhirPathError> {
        self.advance();
        let inner = self.expression(0)?;
        self.expect(Symbol::CloseParen, ")")?;
        Ok(inner)
    }

    /// Parses a term without sub-expressions: a literal, a variable, `$this` or `$index`.
    fn literal(&mut self) -> Result<Parsed, FhirPathError> {
        let Spanned { token, position } = self.advance();
        let kind = match token {
            Token::Symbol(Symbol::OpenBrace) => {
                self.expect(Symbol::CloseBrace, "} of the empty collection {}")?;
                ExprKind::Empty
            }
            Token::Identifier(name) if name == "true" || name == "false" => {
                ExprKind::Boolean(name == "true")
            }
            Token::String(value) => ExprKind::String(value),
            Token::Integer(value) => {
                self.reject_quantity()?;
                ExprKind::Integer(value)
            }
            Token::Decimal(value) => {
                self.reject_quantity()?;
                ExprKind::Decimal(value)
            }
            Token::Temporal(kind, text) => ExprKind::Temporal(kind, text),
            Token::Variable(name) => ExprKind::Variable(name),
            Token::Special(name) if name == "this" => ExprKind::This,
            Token::Special(name) if name == "index" => ExprKind::Index,
            Token::Special(name) if name == "total" => {
                return Err(FhirPathError::parse(
                    position,
                    "$total is only defined inside aggregate(), which is not supported",
                ));
            }
            Token::Special(name) => {
                return Err(FhirPathError::parse(
                    position,
                    format!("unknown special variable ${name}"),
                ));
            }
            Token::Identifier(name) => {
                return Err(FhirPathError::parse(
                    position,
                    format!("expected an expression, found keyword {name}"),
                ));
            }
            other => {
                return Err(FhirPathError::parse(
                    position,
                    format!("expected an expression, found {}", describe(&other)),
                ));
            }
        };
        self.node(kind, position, 0)
    }

    /// Rejects a unit after a number, because quantities are not supported.
    fn reject_quantity(&self) -> Result<(), FhirPathError> {
        let Spanned { token, position } = self.peek();
        let is_unit = match token {
            Token::String(_) => true,
            Token::Identifier(name) => CALENDAR_UNITS.contains(&name.as_str()),
            _ => false,
        };
        if is_unit {
            return Err(FhirPathError::parse(
                *position,
                "quantity literals such as 4 'mg' or 1 year are not supported",
            ));
        }
        Ok(())
    }

    /// Parses `name` or `name(args)`, either after a `.` on `target` or at the start of a term.
    fn invocation(&mut self, target: Option<Parsed>) -> Result<Parsed, FhirPathError> {
        let Spanned { token, position } = self.advance();
        let name = match token {
            Token::Identifier(name) | Token::DelimitedIdentifier(name) => name,
            other => {
                return Err(FhirPathError::parse(
                    position,
                    format!("expected a name after '.', found {}", describe(&other)),
                ));
            }
        };
        if self.peek().token == Token::Symbol(Symbol::OpenParen) {
            self.advance();
            return self.function_call(name, position, target);
        }
        let height = target.as_ref().map_or(0, |target| target.height);
        let kind = match target {
            Some(target) => ExprKind::Member {
                target: target.expr,
                name,
            },
            None => ExprKind::Identifier(name),
        };
        self.node(kind, position, height)
    }

    /// Parses the arguments of `name(` up to the closing `)`.
    fn function_call(
        &mut self,
        name: String,
        position: usize,
        target: Option<Parsed>,
    ) -> Result<Parsed, FhirPathError> {
        let target_height = target.as_ref().map_or(0, |target| target.height);
        let target = target.map(|target| target.expr);
        let type_test = match name.as_str() {
            "is" => Some(TypeTest::Is),
            "as" => Some(TypeTest::As),
            "ofType" => Some(TypeTest::OfType),
            _ => None,
        };
        if let Some(test) = type_test {
            let type_name = self.type_specifier()?;
            self.expect(Symbol::CloseParen, ") after the type name")?;
            let kind = ExprKind::TypeTest {
                target,
                test,
                type_name,
            };
            return self.node(kind, position, target_height);
        }

        let Some((function, min_args, max_args)) = lookup(&name) else {
            return Err(FhirPathError::UnsupportedFunction { name, position });
        };
        let (args, args_height) = self.arguments()?;
        check_arity(&name, args.len(), min_args, max_args, position)?;
        let kind = ExprKind::Function {
            target,
            function,
            args,
        };
        self.node(kind, position, target_height.max(args_height))
    }

    /// Parses a comma-separated argument list and the closing `)`, returning the arguments
    /// and the height of the tallest one.
    fn arguments(&mut self) -> Result<(Vec<Expr>, usize), FhirPathError> {
        let mut args = Vec::new();
        let mut height = 0;
        if self.peek().token != Token::Symbol(Symbol::CloseParen) {
            loop {
                let arg = self.expression(0)?;
                height = height.max(arg.height);
                args.push(*arg.expr);
                if self.peek().token != Token::Symbol(Symbol::Comma) {
                    break;
                }
                self.advance();
            }
        }
        self.expect(Symbol::CloseParen, ", or ) in the argument list")?;
        Ok((args, height))
    }

    /// Parses `Name` or `Namespace.Name` after `is`, `as`, `is(`, `as(` or `ofType(`.
    fn type_specifier(&mut self) -> Result<TypeName, FhirPathError> {
        let first = self.type_name_part()?;
        if self.peek().token != Token::Symbol(Symbol::Dot)
            || !matches!(
                self.peek_second(),
                Some(Token::Identifier(_) | Token::DelimitedIdentifier(_))
            )
        {
            return Ok(TypeName {
                namespace: None,
                name: first.1,
            });
        }
        self.advance();
        let (_, name) = self.type_name_part()?;
        let (namespace_position, namespace) = first;
        if !is_known_namespace(&namespace) {
            return Err(FhirPathError::parse(
                namespace_position,
                format!("unknown type namespace {namespace}: expected System or FHIR"),
            ));
        }
        Ok(TypeName {
            namespace: Some(namespace),
            name,
        })
    }

    fn type_name_part(&mut self) -> Result<(usize, String), FhirPathError> {
        let Spanned { token, position } = self.advance();
        match token {
            Token::Identifier(name) | Token::DelimitedIdentifier(name) => Ok((position, name)),
            other => Err(FhirPathError::parse(
                position,
                format!("expected a type name, found {}", describe(&other)),
            )),
        }
    }
}

enum Infix {
    Binary(BinaryOp),
    Type(TypeTest),
}

/// The role of the token after a complete operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Member,
    Index,
    Binary(BinaryOp, u8),
    Type(TypeTest),
    Stop,
}

fn check_arity(
    name: &str,
    count: usize,
    min_args: usize,
    max_args: usize,
    position: usize,
) -> Result<(), FhirPathError> {
    if (min_args..=max_args).contains(&count) {
        return Ok(());
    }
    let expected = if min_args == max_args {
        format!("{min_args}")
    } else {
        format!("{min_args} to {max_args}")
    };
    Err(FhirPathError::parse(
        position,
        format!("{name}() takes {expected} arguments, found {count}"),
    ))
}

/// Returns the infix operator that a token starts, with its binding power.
fn infix_operator(token: &Token) -> Option<(Infix, u8)> {
    let (op, power) = match token {
        Token::Symbol(symbol) => match symbol {
            Symbol::Star => (BinaryOp::Multiply, 10),
            Symbol::Slash => (BinaryOp::Divide, 10),
            Symbol::Plus => (BinaryOp::Add, 9),
            Symbol::Minus => (BinaryOp::Subtract, 9),
            Symbol::Ampersand => (BinaryOp::Concatenate, 9),
            Symbol::Pipe => (BinaryOp::Union, 7),
            Symbol::Less => (BinaryOp::Less, 6),
            Symbol::LessOrEqual => (BinaryOp::LessOrEqual, 6),
            Symbol::Greater => (BinaryOp::Greater, 6),
            Symbol::GreaterOrEqual => (BinaryOp::GreaterOrEqual, 6),
            Symbol::Equal => (BinaryOp::Equal, 5),
            Symbol::NotEqual => (BinaryOp::NotEqual, 5),
            Symbol::Equivalent => (BinaryOp::Equivalent, 5),
            Symbol::NotEquivalent => (BinaryOp::NotEquivalent, 5),
            _ => return None,
        },
        Token::Identifier(word) => match word.as_str() {
            "div" => (BinaryOp::Div, 10),
            "mod" => (BinaryOp::Mod, 10),
            "is" => return Some((Infix::Type(TypeTest::Is), 8)),
            "as" => return Some((Infix::Type(TypeTest::As), 8)),
            "in" => (BinaryOp::In, 4),
            "contains" => (BinaryOp::Contains, 4),
            "and" => (BinaryOp::And, 3),
            "or" => (BinaryOp::Or, 2),
            "xor" => (BinaryOp::Xor, 2),
            "implies" => (BinaryOp::Implies, 1),
            _ => return None,
        },
        _ => return None,
    };
    Some((Infix::Binary(op), power))
}

/// Returns whether an identifier is a boolean literal or a keyword that cannot start a term.
/// `as`, `contains`, `in` and `is` can start one, because the grammar also allows them as
/// identifiers, as in `contains('x')`.
fn is_literal_or_reserved(word: &str) -> bool {
    matches!(
        word,
        "true" | "false" | "and" | "or" | "xor" | "implies" | "div" | "mod"
    )
}

fn too_deep(position: usize) -> FhirPathError {
    FhirPathError::parse(
        position,
        format!("expression nests deeper than {MAX_DEPTH} levels"),
    )
}

fn describe(token: &Token) -> String {
    match token {
        Token::Identifier(name) => format!("'{name}'"),
        Token::DelimitedIdentifier(name) => format!("`{name}`"),
        Token::String(value) => format!("string '{value}'"),
        Token::Integer(value) => format!("number {value}"),
        Token::Decimal(value) => format!("number {value}"),
        Token::Temporal(_, text) => format!("date/time @{text}"),
        Token::Variable(name) => format!("%{name}"),
        Token::Special(name) => format!("${name}"),
        Token::Symbol(symbol) => format!("'{}'", symbol_text(*symbol)),
        Token::End => "end of expression".to_string(),
    }
}

fn symbol_text(symbol: Symbol) -> &'static str {
    match symbol {
        Symbol::Dot => ".",
        Symbol::Comma => ",",
        Symbol::OpenParen => "(",
        Symbol::CloseParen => ")",
        Symbol::OpenBracket => "[",
        Symbol::CloseBracket => "]",
        Symbol::OpenBrace => "{",
        Symbol::CloseBrace => "}",
        Symbol::Plus => "+",
        Symbol::Minus => "-",
        Symbol::Star => "*",
        Symbol::Slash => "/",
        Symbol::Ampersand => "&",
        Symbol::Pipe => "|",
        Symbol::Equal => "=",
        Symbol::NotEqual => "!=",
        Symbol::Equivalent => "~",
        Symbol::NotEquivalent => "!~",
        Symbol::Less => "<",
        Symbol::LessOrEqual => "<=",
        Symbol::Greater => ">",
        Symbol::GreaterOrEqual => ">=",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renders a tree in prefix form so that tests can state the expected structure compactly.
    fn render(expr: &Expr) -> String {
        match &expr.kind {
            ExprKind::Empty => "{}".into(),
            ExprKind::Boolean(value) => value.to_string(),
            ExprKind::String(value) => format!("'{value}'"),
            ExprKind::Integer(value) => value.to_string(),
            ExprKind::Decimal(value) => value.to_string(),
            ExprKind::Temporal(_, text) => format!("@{text}"),
            ExprKind::Identifier(name) => name.clone(),
            ExprKind::Variable(name) => format!("%{name}"),
            ExprKind::This => "$this".into(),
            ExprKind::Index => "$index".into(),
            ExprKind::Member { target, name } => format!("(. {} {name})", render(target)),
            ExprKind::Function {
                target,
                function,
                args,
            } => {
                let mut parts = vec![function.name().to_string()];
                parts.extend(target.iter().map(|target| render(target)));
                parts.extend(args.iter().map(render));
                format!("({})", parts.join(" "))
            }
            ExprKind::TypeTest {
                target,
                test,
                type_name,
            } => {
                let target = target.as_ref().map_or("$this".to_string(), |t| render(t));
                let name = match &type_name.namespace {
                    Some(namespace) => format!("{namespace}.{}", type_name.name),
                    None => type_name.name.clone(),
                };
                format!("({test:?} {target} {name})")
            }
            ExprKind::Indexer { target, index } => {
                format!("([] {} {})", render(target), render(index))
            }
            ExprKind::Negate { operand, negative } => {
                format!(
                    "({} {})",
                    if *negative { "-" } else { "+" },
                    render(operand)
                )
            }
            ExprKind::Binary { op, left, right } => {
                format!("({} {} {})", op.symbol(), render(left), render(right))
            }
        }
    }

    fn parsed(source: &str) -> String {
        render(&parse_expression(source).unwrap_or_else(|error| panic!("{source}: {error}")))
    }

    fn parse_error(source: &str) -> FhirPathError {
        parse_expression(source).expect_err(source)
    }

    #[test]
    fn parse_paths_and_indexers() {
        assert_eq!(parsed("Patient.name.family"), "(. (. Patient name) family)");
        assert_eq!(
            parsed("Bundle.entry[0].resource"),
            "(. ([] (. Bundle entry) 0) resource)"
        );
        assert_eq!(parsed("`given name`"), "given name");
    }

    #[test]
    fn parse_precedence() {
        let cases = [
            ("1 + 2 * 3", "(+ 1 (* 2 3))"),
            ("1 - 2 - 3", "(- (- 1 2) 3)"),
            ("a | b = c", "(= (| a b) c)"),
            ("a < b = true", "(= (< a b) true)"),
            ("a = b and c != d", "(and (= a b) (!= c d))"),
            ("a and b or c", "(or (and a b) c)"),
            ("a or b implies c xor d", "(implies (or a b) (xor c d))"),
            ("a implies b implies c", "(implies (implies a b) c)"),
            ("status in ('a' | 'b')", "(in status (| 'a' 'b'))"),
            ("x contains 'a' and y", "(and (contains x 'a') y)"),
            ("-a.b + 1", "(+ (- (. a b)) 1)"),
            ("a & b + c", "(+ (& a b) c)"),
            ("7 div 2 mod 3", "(mod (div 7 2) 3)"),
        ];
        for (source, expected) in cases {
            assert_eq!(parsed(source), expected, "{source}");
        }
    }

    #[test]
    fn parse_type_operators_and_functions() {
        let cases = [
            (
                "(Observation.value as Quantity)",
                "(As (. Observation value) Quantity)",
            ),
            (
                "Observation.value.as(Quantity)",
                "(As (. Observation value) Quantity)",
            ),
            (
                "value.ofType(FHIR.Quantity)",
                "(OfType value FHIR.Quantity)",
            ),
            ("resolve() is Patient", "(Is (resolve) Patient)"),
            ("x is System.String", "(Is x System.String)"),
            ("a as Quantity = b", "(= (As a Quantity) b)"),
            ("is(Patient)", "(Is $this Patient)"),
            (
                "telecom.where(system = 'email')",
                "(where telecom (= system 'email'))",
            ),
            ("iif(a, 1)", "(iif a 1)"),
            ("name.contains('x')", "(contains name 'x')"),
            ("contains('x')", "(contains 'x')"),
            ("%after.status.not()", "(not (. %after status))"),
            ("$this.a + $index", "(+ (. $this a) $index)"),
            ("{}.empty()", "(empty {})"),
        ];
        for (source, expected) in cases {
            assert_eq!(parsed(source), expected, "{source}");
        }
    }

    #[test]
    fn parse_literals() {
        assert_eq!(
            parsed("@2020-01-01 < @2020-01-01T10:00Z"),
            "(< @2020-01-01 @2020-01-01T10:00Z)"
        );
        assert_eq!(parsed("@T10:30"), "@10:30");
        assert_eq!(parsed("-1.5"), "(- 1.5)");
        assert_eq!(parsed("true and false"), "(and true false)");
    }

    #[test]
    fn parse_reports_positions() {
        let cases = [
            (
                "name.",
                5,
                "expected a name after '.', found end of expression",
            ),
            ("name.given)", 10, "unexpected ')'"),
            ("(a", 2, "expected ), found end of expression"),
            ("a = ", 4, "expected an expression, found end of expression"),
            ("a and or b", 6, "expected an expression, found keyword or"),
            ("where()", 0, "where() takes 1 arguments, found 0"),
            (
                "substring(1, 2, 3)",
                0,
                "substring() takes 1 to 2 arguments, found 3",
            ),
            ("a is 'x'", 5, "expected a type name, found string 'x'"),
            (
                "a is Foo.Bar",
                5,
                "unknown type namespace Foo: expected System or FHIR",
            ),
            (
                "4 'mg'",
                2,
                "quantity literals such as 4 'mg' or 1 year are not supported",
            ),
            (
                "a + 1 day",
                6,
                "quantity literals such as 4 'mg' or 1 year are not supported",
            ),
            (
                "$total",
                0,
                "$total is only defined inside aggregate(), which is not supported",
            ),
            ("$that", 0, "unknown special variable $that"),
            ("a b", 2, "unexpected 'b'"),
            (
                "{ 1 }",
                2,
                "expected } of the empty collection {}, found number 1",
            ),
        ];
        for (source, position, message) in cases {
            assert_eq!(
                parse_error(source),
                FhirPathError::parse(position, message),
                "{source}"
            );
        }
    }

    #[test]
    fn parse_rejects_unknown_functions() {
        assert_eq!(
            parse_error("name.given.matches('x')"),
            FhirPathError::UnsupportedFunction {
                name: "matches".into(),
                position: 11
            }
        );
        assert_eq!(
            parse_error("now() > @2020"),
            FhirPathError::UnsupportedFunction {
                name: "now".into(),
                position: 0
            }
        );
    }

    #[test]
    fn parse_limits_depth() {
        let nested = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(
            matches!(parse_error(&nested), FhirPathError::Parse { message, .. } if message.contains("deeper"))
        );

        let chained = format!("a{}", ".b".repeat(10_000));
        assert!(
            matches!(parse_error(&chained), FhirPathError::Parse { message, .. } if message.contains("deeper"))
        );

        let negated = format!("{}1", "-".repeat(10_000));
        assert!(
            matches!(parse_error(&negated), FhirPathError::Parse { message, .. } if message.contains("deeper"))
        );

        let within = format!("a{}", ".b".repeat(MAX_DEPTH - 1));
        assert!(parse_expression(&within).is_ok());
        let beyond = format!("a{}", ".b".repeat(MAX_DEPTH));
        assert!(parse_expression(&beyond).is_err());
    }
}
