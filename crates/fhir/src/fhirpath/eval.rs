//! Evaluation of the syntax tree over FHIR JSON: paths, variables, operators and type tests.

use serde_json::Value;

use super::Variables;
use super::ast::{BinaryOp, Expr, ExprKind, TypeName, TypeTest};
use super::compare::{
    collections_equal, collections_equivalent, compare_items, contains_item, describe_type,
};
use super::error::FhirPathError;
use super::functions;
use super::item::{Item, Number};
use super::math;
use super::model::is_type;
use super::navigation::{collection_of, push_member};

/// Maximum node evaluations and item comparisons in one evaluation. Policy and search-parameter
/// expressions take a few per element they visit, so resources with many thousands of elements
/// stay far below it. Nested iterations over large inputs grow quadratically or worse, and the
/// budget stops them with an error instead of letting them run without bound.
const MAX_STEPS: usize = 5_000_000;

/// Code system URLs that FHIRPath defines as variables (N1 §9 Environment variables).
const SPEC_VARIABLES: &[(&str, &str)] = &[
    ("ucum", "http://unitsofmeasure.org"),
    ("sct", "http://snomed.info/sct"),
    ("loinc", "http://loinc.org"),
];

pub(super) type Collection<'a> = Vec<Item<'a>>;

/// The focus that identifiers at the start of an expression navigate from (`$this`), and
/// `$index` inside the criteria of `where()`, `select()`, `exists()`, `all()` and `repeat()`.
pub(super) struct Scope<'a> {
    pub(super) focus: Collection<'a>,
    pub(super) index: Option<usize>,
}

pub(super) struct Evaluator<'a> {
    root: &'a Value,
    variables: &'a Variables,
    steps: usize,
}

impl<'a> Evaluator<'a> {
    pub(super) fn new(root: &'a Value, variables: &'a Variables) -> Self {
        Self {
            root,
            variables,
            steps: 0,
        }
    }

    pub(super) fn root(&self) -> &'a Value {
        self.root
    }

    /// Evaluates `expr` with the root resource as `$this`.
    pub(super) fn run(&mut self, expr: &Expr) -> Result<Collection<'a>, FhirPathError> {
        let scope = Scope {
            focus: collection_of(self.root),
            index: None,
        };
        self.eval(expr, &scope)
    }

    /// Counts `steps` against [`MAX_STEPS`], failing once the budget is spent.
    pub(super) fn charge(&mut self, steps: usize, position: usize) -> Result<(), FhirPathError> {
        self.steps = self.steps.saturating_add(steps);
        if self.steps > MAX_STEPS {
            return Err(FhirPathError::evaluation(
                position,
                format!("expression needs more than {MAX_STEPS} evaluation steps on this input"),
            ));
        }
        Ok(())
    }

    /// Evaluates `expr` with `item` as `$this` and `index` as `$index`.
    pub(super) fn eval_for_item(
        &mut self,
        expr: &Expr,
        item: &Item<'a>,
        index: usize,
    ) -> Result<Collection<'a>, FhirPathError> {
        let scope = Scope {
            focus: vec![item.clone()],
            index: Some(index),
        };
        self.eval(expr, &scope)
    }

    /// Evaluates `expr` in `scope`. Each kind of node has its own method, so that only small
    /// frames sit on the stack while nested nodes are evaluated.
    pub(super) fn eval(
        &mut self,
        expr: &Expr,
        scope: &Scope<'a>,
    ) -> Result<Collection<'a>, FhirPathError> {
        self.charge(1, expr.position)?;
        let position = expr.position;
        match &expr.kind {
            ExprKind::Member { target, name } => self.member(target, name, scope),
            ExprKind::Function {
                target,
                function,
                args,
            } => self.function(target.as_deref(), *function, args, scope, position),
            ExprKind::TypeTest {
                target,
                test,
                type_name,
            } => self.type_test(target.as_deref(), *test, type_name, scope, position),
            ExprKind::Indexer { target, index } => self.indexer(target, index, scope, position),
            ExprKind::Negate { operand, negative } => {
                self.negate(operand, *negative, scope, position)
            }
            ExprKind::Binary { op, left, right } => self.binary(*op, left, right, scope, position),
            _ => self.leaf(&expr.kind, scope),
        }
    }

    /// Evaluates a node without children: a literal, an identifier or a variable.
    fn leaf(&self, kind: &ExprKind, scope: &Scope<'a>) -> Result<Collection<'a>, FhirPathError> {
        let item = match kind {
            ExprKind::Boolean(value) => Item::boolean(*value),
            ExprKind::String(value) => Item::string(value.as_str()),
            ExprKind::Integer(value) => Item::integer(*value),
            ExprKind::Decimal(value) => {
                return Ok(Item::number(Number::Decimal(*value)).into_iter().collect());
            }
            ExprKind::Temporal(kind, text) => Item::temporal(*kind, text.as_str()),
            ExprKind::Identifier(name) => return Ok(self.identifier(name, scope)),
            ExprKind::Variable(name) => return self.variable(name),
            ExprKind::This => return Ok(scope.focus.clone()),
            ExprKind::Index => {
                let index = scope.index.and_then(|index| i64::try_from(index).ok());
                return Ok(index.map(Item::integer).into_iter().collect());
            }
            _ => return Ok(Vec::new()),
        };
        Ok(vec![item])
    }

    fn member(
        &mut self,
        target: &Expr,
        name: &str,
        scope: &Scope<'a>,
    ) -> Result<Collection<'a>, FhirPathError> {
        let input = self.eval(target, scope)?;
        let mut output = Vec::new();
        for item in &input {
            push_member(item, name, &mut output);
        }
        Ok(output)
    }

    fn function(
        &mut self,
        target: Option<&Expr>,
        function: functions::Function,
        args: &[Expr],
        scope: &Scope<'a>,
        position: usize,
    ) -> Result<Collection<'a>, FhirPathError> {
        let input = self.eval_target(target, scope)?;
        functions::call(self, function, input, args, scope, position)
    }

    fn type_test(
        &mut self,
        target: Option<&Expr>,
        test: TypeTest,
        type_name: &TypeName,
        scope: &Scope<'a>,
        position: usize,
    ) -> Result<Collection<'a>, FhirPathError> {
        let input = self.eval_target(target, scope)?;
        type_test(input, test, type_name, position)
    }

    fn indexer(
        &mut self,
        target: &Expr,
        index: &Expr,
        scope: &Scope<'a>,
        position: usize,
    ) -> Result<Collection<'a>, FhirPathError> {
        let input = self.eval(target, scope)?;
        let index = self.eval(index, scope)?;
        select_index(input, index, position)
    }

    fn negate(
        &mut self,
        operand: &Expr,
        negative: bool,
        scope: &Scope<'a>,
        position: usize,
    ) -> Result<Collection<'a>, FhirPathError> {
        let operand = self.eval(operand, scope)?;
        math::negate(operand, negative, position)
    }

    fn eval_target(
        &mut self,
        target: Option<&Expr>,
        scope: &Scope<'a>,
    ) -> Result<Collection<'a>, FhirPathError> {
        match target {
            Some(target) => self.eval(target, scope),
            None => Ok(scope.focus.clone()),
        }
    }

    /// Evaluates an identifier at the start of a path. It selects the focus when it names the
    /// focus's type, as `Patient` does in `Patient.name` on a Patient, and otherwise a member of
    /// the focus (N1 §3 Path selection). Type names start with an upper-case letter, and FHIR
    /// element names never do.
    fn identifier(&self, name: &str, scope: &Scope<'a>) -> Collection<'a> {
        let type_name = TypeName {
            namespace: None,
            name: name.to_string(),
        };
        let may_be_type = name.starts_with(|c: char| c.is_ascii_uppercase());
        let mut output = Vec::new();
        for item in &scope.focus {
            if may_be_type && is_type(item, &type_name) {
                output.push(item.clone());
            } else {
                push_member(item, name, &mut output);
            }
        }
        output
    }

    /// Looks up `%name`: the caller's variables first, then the variables FHIRPath defines.
    /// A JSON `null` is the empty collection and an array is a collection of its elements.
    fn variable(&self, name: &str) -> Result<Collection<'a>, FhirPathError> {
        if let Some(value) = self.variables.get(name) {
            return Ok(collection_of(value));
        }
        if matches!(name, "resource" | "context" | "rootResource") {
            return Ok(collection_of(self.root));
        }
        SPEC_VARIABLES
            .iter()
            .find(|(variable, _)| *variable == name)
            .map(|(_, url)| vec![Item::string(*url)])
            .ok_or_else(|| FhirPathError::UndefinedVariable {
                name: name.to_string(),
            })
    }

    fn binary(
        &mut self,
        op: BinaryOp,
        left: &Expr,
        right: &Expr,
        scope: &Scope<'a>,
        position: usize,
    ) -> Result<Collection<'a>, FhirPathError> {
        if matches!(
            op,
            BinaryOp::And | BinaryOp::Or | BinaryOp::Xor | BinaryOp::Implies
        ) {
            return self.logic(op, left, right, scope, position);
        }
        let left = self.eval(left, scope)?;
        let right = self.eval(right, scope)?;
        self.apply_binary(op, left, right, position)
    }

    fn apply_binary(
        &mut self,
        op: BinaryOp,
        left: Collection<'a>,
        right: Collection<'a>,
        position: usize,
    ) -> Result<Collection<'a>, FhirPathError> {
        match op {
            BinaryOp::Union => {
                let total = left.len() + right.len();
                self.charge(total.saturating_mul(total) / 2, position)?;
                Ok(union(left, right))
            }
            BinaryOp::Equal => Ok(equality(&left, &right, false)),
            BinaryOp::NotEqual => Ok(equality(&left, &right, true)),
            BinaryOp::Equivalent => Ok(vec![Item::boolean(collections_equivalent(&left, &right))]),
            BinaryOp::NotEquivalent => {
                Ok(vec![Item::boolean(!collections_equivalent(&left, &right))])
            }
            BinaryOp::Less
            | BinaryOp::LessOrEqual
            | BinaryOp::Greater
            | BinaryOp::GreaterOrEqual => ordering(op, left, right, position),
            BinaryOp::In => self.membership(op, left, right, position),
            BinaryOp::Contains => self.membership(op, right, left, position),
            _ => math::arithmetic(op, left, right, position),
        }
    }

    /// Evaluates `and`, `or`, `xor` and `implies` with the three-valued truth tables of N1 §6.5
    /// Boolean logic, where the empty collection is "unknown". The right operand is not
    /// evaluated when the left one decides the result.
    fn logic(
        &mut self,
        op: BinaryOp,
        left: &Expr,
        right: &Expr,
        scope: &Scope<'a>,
        position: usize,
    ) -> Result<Collection<'a>, FhirPathError> {
        let context = op.symbol();
        let left = to_boolean(self.eval(left, scope)?, position, context)?;
        let decided = match (op, left) {
            (BinaryOp::And, Some(false)) => Some(false),
            (BinaryOp::Or, Some(true)) => Some(true),
            (BinaryOp::Implies, Some(false)) => Some(true),
            _ => None,
        };
        if let Some(result) = decided {
            return Ok(vec![Item::boolean(result)]);
        }
        let right = to_boolean(self.eval(right, scope)?, position, context)?;
        Ok(boolean_result(combine_logic(op, left, right)))
    }

    /// Evaluates `item in collection` (N1 §6.4 Collections). The result is empty when the item
    /// is empty, and false when the collection is.
    fn membership(
        &mut self,
        op: BinaryOp,
        item: Collection<'a>,
        collection: Collection<'a>,
        position: usize,
    ) -> Result<Collection<'a>, FhirPathError> {
        let context = format!("operator {}", op.symbol());
        let Some(item) = single(item, position, &context)? else {
            return Ok(Vec::new());
        };
        self.charge(collection.len(), position)?;
        Ok(vec![Item::boolean(contains_item(&collection, &item))])
    }
}

/// Applies the truth tables of N1 §6.5 to operands read as booleans, where `None` is empty.
fn combine_logic(op: BinaryOp, left: Option<bool>, right: Option<bool>) -> Option<bool> {
    match op {
        BinaryOp::And => match (left, right) {
            (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        BinaryOp::Or => match (left, right) {
            (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        BinaryOp::Xor => match (left, right) {
            (Some(left), Some(right)) => Some(left != right),
            _ => None,
        },
        _ => match (left, right) {
            (Some(true), right) => right,
            (None, Some(true)) => Some(true),
            _ => None,
        },
    }
}

fn select_index<'a>(
    input: Collection<'a>,
    index: Collection<'a>,
    position: usize,
) -> Result<Collection<'a>, FhirPathError> {
    let Some(index) = single(index, position, "an index")? else {
        return Ok(Vec::new());
    };
    let index = index.as_integer().ok_or_else(|| {
        FhirPathError::evaluation(
            position,
            format!("index must be an integer, found {}", describe_type(&index)),
        )
    })?;
    let item = usize::try_from(index)
        .ok()
        .and_then(|index| input.into_iter().nth(index));
    Ok(item.into_iter().collect())
}

/// Applies `=` or `!=` (N1 §6.1 Equality), which are empty when either side is empty.
fn equality<'a>(left: &[Item<'a>], right: &[Item<'a>], negate: bool) -> Collection<'a> {
    if left.is_empty() || right.is_empty() {
        return Vec::new();
    }
    boolean_result(collections_equal(left, right).map(|equal| equal != negate))
}

fn ordering<'a>(
    op: BinaryOp,
    left: Collection<'a>,
    right: Collection<'a>,
    position: usize,
) -> Result<Collection<'a>, FhirPathError> {
    let context = format!("operator {}", op.symbol());
    let (Some(left), Some(right)) = (
        single(left, position, &context)?,
        single(right, position, &context)?,
    ) else {
        return Ok(Vec::new());
    };
    let ordering = compare_items(&left, &right)
        .map_err(|message| FhirPathError::evaluation(position, format!("{context}: {message}")))?;
    Ok(boolean_result(ordering.map(|ordering| match op {
        BinaryOp::Less => ordering.is_lt(),
        BinaryOp::LessOrEqual => ordering.is_le(),
        BinaryOp::Greater => ordering.is_gt(),
        _ => ordering.is_ge(),
    })))
}

/// Merges two collections without duplicates, in first-seen order (N1 §6.4 `|`).
///
/// NOTE: duplicates are found by comparing each item with every earlier one, so unions of
/// thousands of items spend the step budget of [`MAX_STEPS`] and fail.
pub(super) fn union<'a>(left: Collection<'a>, right: Collection<'a>) -> Collection<'a> {
    let mut output: Collection<'a> = Vec::with_capacity(left.len() + right.len());
    for item in left.into_iter().chain(right) {
        if !contains_item(&output, &item) {
            output.push(item);
        }
    }
    output
}

fn type_test<'a>(
    input: Collection<'a>,
    test: TypeTest,
    type_name: &TypeName,
    position: usize,
) -> Result<Collection<'a>, FhirPathError> {
    match test {
        TypeTest::Is => {
            let Some(item) = single(input, position, "is")? else {
                return Ok(Vec::new());
            };
            Ok(vec![Item::boolean(is_type(&item, type_name))])
        }
        // `as` keeps every matching item instead of requiring a single input, so that
        // `(Observation.component.value as Quantity)` works on several components, as
        // `ofType()` does.
        TypeTest::As | TypeTest::OfType => Ok(input
            .into_iter()
            .filter(|item| is_type(item, type_name))
            .collect()),
    }
}

/// Returns the only item of `collection`, or `None` when it is empty. Several items are an error
/// that names `context` (N1 §4.5 Singleton Evaluation of Collections).
pub(super) fn single<'a>(
    collection: Collection<'a>,
    position: usize,
    context: &str,
) -> Result<Option<Item<'a>>, FhirPathError> {
    if collection.len() > 1 {
        return Err(FhirPathError::evaluation(
            position,
            format!(
                "{context} expects a single item, found {} items",
                collection.len()
            ),
        ));
    }
    Ok(collection.into_iter().next())
}

/// Reads a collection as a boolean (N1 §4.5). Empty is unknown, a single boolean is its value,
/// and any other single item is true.
pub(super) fn to_boolean(
    collection: Collection,
    position: usize,
    context: &str,
) -> Result<Option<bool>, FhirPathError> {
    Ok(single(collection, position, context)?.map(|item| item.as_bool().unwrap_or(true)))
}

pub(super) fn boolean_result<'a>(value: Option<bool>) -> Collection<'a> {
    value.map(Item::boolean).into_iter().collect()
}
