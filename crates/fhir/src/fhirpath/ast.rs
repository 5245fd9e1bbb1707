//! The syntax tree that the parser builds and the evaluator walks.

use super::functions::Function;
use super::temporal::TemporalKind;

/// A node of the syntax tree and the character offset where it starts, for error messages.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Expr {
    pub(super) kind: ExprKind,
    pub(super) position: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum ExprKind {
    /// `{}`
    Empty,
    Boolean(bool),
    String(String),
    Integer(i64),
    Decimal(f64),
    /// A date/time literal, stored as the text that [`super::temporal::Temporal`] parses.
    Temporal(TemporalKind, String),
    /// An identifier that starts an expression: a type name or a member of the focus.
    Identifier(String),
    /// `%name`
    Variable(String),
    /// `$this`
    This,
    /// `$index`
    Index,
    /// `target.name`
    Member {
        target: Box<Expr>,
        name: String,
    },
    /// `target.name(args)`, or `name(args)` on the focus when `target` is `None`.
    Function {
        target: Option<Box<Expr>>,
        function: Function,
        args: Vec<Expr>,
    },
    /// `target is T`, `target as T`, `target.is(T)`, `target.as(T)` and `target.ofType(T)`.
    TypeTest {
        target: Option<Box<Expr>>,
        test: TypeTest,
        type_name: TypeName,
    },
    /// `target[index]`
    Indexer {
        target: Box<Expr>,
        index: Box<Expr>,
    },
    /// `-operand` or `+operand`
    Negate {
        operand: Box<Expr>,
        negative: bool,
    },
    Binary {
        op: BinaryOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TypeTest {
    /// `is` and `is()`: whether the single input item is of the type.
    Is,
    /// `as` and `as()`: the input items of the type.
    As,
    /// `ofType()`: the input items of the type.
    OfType,
}

/// A type specifier such as `Patient`, `FHIR.Patient` or `System.String`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TypeName {
    pub(super) namespace: Option<String>,
    pub(super) name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BinaryOp {
    Multiply,
    Divide,
    Div,
    Mod,
    Add,
    Subtract,
    Concatenate,
    Union,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    Equal,
    NotEqual,
    Equivalent,
    NotEquivalent,
    In,
    Contains,
    And,
    Or,
    Xor,
    Implies,
}

impl BinaryOp {
    pub(super) fn symbol(self) -> &'static str {
        match self {
            Self::Multiply => "*",
            Self::Divide => "/",
            Self::Div => "div",
            Self::Mod => "mod",
            Self::Add => "+",
            Self::Subtract => "-",
            Self::Concatenate => "&",
            Self::Union => "|",
            Self::Less => "<",
            Self::LessOrEqual => "<=",
            Self::Greater => ">",
            Self::GreaterOrEqual => ">=",
            Self::Equal => "=",
            Self::NotEqual => "!=",
            Self::Equivalent => "~",
            Self::NotEquivalent => "!~",
            Self::In => "in",
            Self::Contains => "contains",
            Self::And => "and",
            Self::Or => "or",
            Self::Xor => "xor",
            Self::Implies => "implies",
        }
    }
}
