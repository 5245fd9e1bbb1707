//! The supported functions: their names and arities, and the collection functions of N1 §5.1
//! to §5.4 and §5.9. String, conversion, math and navigation functions live in their own
//! modules.

use super::ast::Expr;
use super::compare::{contains_item, describe_type};
use super::convert;
use super::error::FhirPathError;
use super::eval::{Collection, Evaluator, Scope, boolean_result, single, to_boolean, union};
use super::item::Item;
use super::math::math_function;
use super::navigation::{descendants, push_children, push_extensions, resolve};
use super::strings;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Function {
    Empty,
    Exists,
    All,
    AllTrue,
    AnyTrue,
    AllFalse,
    AnyFalse,
    SubsetOf,
    SupersetOf,
    Count,
    Distinct,
    IsDistinct,
    Where,
    Select,
    Repeat,
    Single,
    First,
    Last,
    Tail,
    Skip,
    Take,
    Intersect,
    Exclude,
    Union,
    Combine,
    Iif,
    ToBoolean,
    ConvertsToBoolean,
    ToInteger,
    ConvertsToInteger,
    ToDecimal,
    ConvertsToDecimal,
    ToString,
    ConvertsToString,
    ToDate,
    ConvertsToDate,
    ToDateTime,
    ConvertsToDateTime,
    ToTime,
    ConvertsToTime,
    IndexOf,
    Substring,
    StartsWith,
    EndsWith,
    Contains,
    Upper,
    Lower,
    Replace,
    Length,
    ToChars,
    Abs,
    Ceiling,
    Floor,
    Round,
    Truncate,
    Children,
    Descendants,
    Trace,
    Not,
    Extension,
    HasValue,
    Resolve,
}

/// Name, function, and minimum and maximum argument counts. `is()`, `as()` and `ofType()` take
/// a type name instead of an expression, so the parser handles them.
const SIGNATURES: &[(&str, Function, usize, usize)] = &[
    ("empty", Function::Empty, 0, 0),
    ("exists", Function::Exists, 0, 1),
    ("all", Function::All, 1, 1),
    ("allTrue", Function::AllTrue, 0, 0),
    ("anyTrue", Function::AnyTrue, 0, 0),
    ("allFalse", Function::AllFalse, 0, 0),
    ("anyFalse", Function::AnyFalse, 0, 0),
    ("subsetOf", Function::SubsetOf, 1, 1),
    ("supersetOf", Function::SupersetOf, 1, 1),
    ("count", Function::Count, 0, 0),
    ("distinct", Function::Distinct, 0, 0),
    ("isDistinct", Function::IsDistinct, 0, 0),
    ("where", Function::Where, 1, 1),
    ("select", Function::Select, 1, 1),
    ("repeat", Function::Repeat, 1, 1),
    ("single", Function::Single, 0, 0),
    ("first", Function::First, 0, 0),
    ("last", Function::Last, 0, 0),
    ("tail", Function::Tail, 0, 0),
    ("skip", Function::Skip, 1, 1),
    ("take", Function::Take, 1, 1),
    ("intersect", Function::Intersect, 1, 1),
    ("exclude", Function::Exclude, 1, 1),
    ("union", Function::Union, 1, 1),
    ("combine", Function::Combine, 1, 1),
    ("iif", Function::Iif, 2, 3),
    ("toBoolean", Function::ToBoolean, 0, 0),
    ("convertsToBoolean", Function::ConvertsToBoolean, 0, 0),
    ("toInteger", Function::ToInteger, 0, 0),
    ("convertsToInteger", Function::ConvertsToInteger, 0, 0),
    ("toDecimal", Function::ToDecimal, 0, 0),
    ("convertsToDecimal", Function::ConvertsToDecimal, 0, 0),
    ("toString", Function::ToString, 0, 0),
    ("convertsToString", Function::ConvertsToString, 0, 0),
    ("toDate", Function::ToDate, 0, 0),
    ("convertsToDate", Function::ConvertsToDate, 0, 0),
    ("toDateTime", Function::ToDateTime, 0, 0),
    ("convertsToDateTime", Function::ConvertsToDateTime, 0, 0),
    ("toTime", Function::ToTime, 0, 0),
    ("convertsToTime", Function::ConvertsToTime, 0, 0),
    ("indexOf", Function::IndexOf, 1, 1),
    ("substring", Function::Substring, 1, 2),
    ("startsWith", Function::StartsWith, 1, 1),
    ("endsWith", Function::EndsWith, 1, 1),
    ("contains", Function::Contains, 1, 1),
    ("upper", Function::Upper, 0, 0),
    ("lower", Function::Lower, 0, 0),
    ("replace", Function::Replace, 2, 2),
    ("length", Function::Length, 0, 0),
    ("toChars", Function::ToChars, 0, 0),
    ("abs", Function::Abs, 0, 0),
    ("ceiling", Function::Ceiling, 0, 0),
    ("floor", Function::Floor, 0, 0),
    ("round", Function::Round, 0, 1),
    ("truncate", Function::Truncate, 0, 0),
    ("children", Function::Children, 0, 0),
    ("descendants", Function::Descendants, 0, 0),
    ("trace", Function::Trace, 1, 1),
    ("not", Function::Not, 0, 0),
    ("extension", Function::Extension, 1, 1),
    ("hasValue", Function::HasValue, 0, 0),
    ("resolve", Function::Resolve, 0, 0),
];

/// Looks up the function called `name` with its minimum and maximum argument counts.
pub(super) fn lookup(name: &str) -> Option<(Function, usize, usize)> {
    SIGNATURES
        .iter()
        .find(|(candidate, ..)| *candidate == name)
        .map(|&(_, function, min, max)| (function, min, max))
}

impl Function {
    pub(super) fn name(self) -> &'static str {
        SIGNATURES
            .iter()
            .find(|(_, function, ..)| *function == self)
            .map_or("function", |(name, ..)| name)
    }
}

/// Calls `function` on `input`. The criteria of `where()`, `select()`, `repeat()`, `exists()`
/// and `all()` are evaluated once per input item, with that item as `$this`. Other arguments are
/// evaluated once in the caller's `scope`.
pub(super) fn call<'a>(
    evaluator: &mut Evaluator<'a>,
    function: Function,
    input: Collection<'a>,
    args: &[Expr],
    scope: &Scope<'a>,
    position: usize,
) -> Result<Collection<'a>, FhirPathError> {
    match function {
        Function::Where => filter(evaluator, input, &args[0], position),
        Function::Exists => exists(evaluator, input, args.first(), position),
        Function::All => all(evaluator, input, &args[0], position),
        Function::Select => select(evaluator, input, &args[0]),
        Function::Repeat => repeat(evaluator, input, &args[0], position),
        Function::Iif => iif(evaluator, input, args, scope, position),
        _ => call_with_args_evaluated(evaluator, function, input, args, scope, position),
    }
}

fn call_with_args_evaluated<'a>(
    evaluator: &mut Evaluator<'a>,
    function: Function,
    input: Collection<'a>,
    args: &[Expr],
    scope: &Scope<'a>,
    position: usize,
) -> Result<Collection<'a>, FhirPathError> {
    let mut values = Vec::with_capacity(args.len());
    for arg in args {
        values.push(evaluator.eval(arg, scope)?);
    }
    call_with_values(evaluator, function, input, values, position)
}

/// Calls a function whose arguments are plain values.
fn call_with_values<'a>(
    evaluator: &mut Evaluator<'a>,
    function: Function,
    input: Collection<'a>,
    mut args: Vec<Collection<'a>>,
    position: usize,
) -> Result<Collection<'a>, FhirPathError> {
    let name = function.name();
    match function {
        Function::Empty => Ok(vec![Item::boolean(input.is_empty())]),
        Function::Count => Ok(vec![Item::integer(
            i64::try_from(input.len()).unwrap_or(i64::MAX),
        )]),
        Function::AllTrue | Function::AnyTrue | Function::AllFalse | Function::AnyFalse => {
            boolean_aggregate(function, &input, position)
        }
        Function::Distinct => {
            evaluator.charge(input.len().saturating_mul(input.len()) / 2, position)?;
            Ok(union(input, Vec::new()))
        }
        Function::IsDistinct => {
            evaluator.charge(input.len().saturating_mul(input.len()) / 2, position)?;
            let count = input.len();
            Ok(vec![Item::boolean(union(input, Vec::new()).len() == count)])
        }
        Function::SubsetOf | Function::SupersetOf | Function::Intersect | Function::Exclude => {
            let other = args.remove(0);
            evaluator.charge(input.len().saturating_mul(other.len()), position)?;
            Ok(set_operation(function, input, other))
        }
        Function::Union => {
            let other = args.remove(0);
            let total = input.len() + other.len();
            evaluator.charge(total.saturating_mul(total) / 2, position)?;
            Ok(union(input, other))
        }
        Function::Combine => {
            let mut output = input;
            output.extend(args.remove(0));
            Ok(output)
        }
        Function::Single => Ok(single(input, position, name)?.into_iter().collect()),
        Function::First => Ok(input.into_iter().take(1).collect()),
        Function::Last => Ok(input.into_iter().last().into_iter().collect()),
        Function::Tail => Ok(input.into_iter().skip(1).collect()),
        Function::Skip | Function::Take => {
            let count = integer_argument(args.remove(0), position, name)?;
            let count = usize::try_from(count.max(0)).unwrap_or(usize::MAX);
            Ok(if function == Function::Skip {
                input.into_iter().skip(count).collect()
            } else {
                input.into_iter().take(count).collect()
            })
        }
        Function::Not => Ok(boolean_result(
            to_boolean(input, position, name)?.map(|value| !value),
        )),
        Function::Trace => Ok(input),
        Function::Children => {
            let mut output = Vec::new();
            for item in &input {
                push_children(item, &mut output);
            }
            Ok(output)
        }
        Function::Descendants => {
            let output = descendants(&input);
            evaluator.charge(output.len(), position)?;
            Ok(output)
        }
        Function::Resolve => {
            let root = evaluator.root();
            Ok(input
                .iter()
                .filter_map(|item| resolve(item, root))
                .collect())
        }
        Function::Extension => {
            let Some(url) = single(args.remove(0), position, name)? else {
                return Ok(Vec::new());
            };
            let url = url.as_str().ok_or_else(|| {
                FhirPathError::evaluation(
                    position,
                    format!(
                        "extension() expects a string url, found {}",
                        describe_type(&url)
                    ),
                )
            })?;
            let mut output = Vec::new();
            for item in &input {
                push_extensions(item, url, &mut output);
            }
            Ok(output)
        }
        // FHIR R4 defines hasValue() as true only for a single primitive with a value, so
        // several items give false rather than an error.
        Function::HasValue => Ok(vec![Item::boolean(
            input.len() == 1 && input[0].is_primitive(),
        )]),
        Function::Abs
        | Function::Ceiling
        | Function::Floor
        | Function::Round
        | Function::Truncate => {
            let Some(item) = single(input, position, name)? else {
                return Ok(Vec::new());
            };
            let precision = match args.pop() {
                Some(precision) => Some(integer_argument(precision, position, name)?),
                None => None,
            };
            math_function(function, &item, precision, position)
        }
        _ if convert::handles(function) => convert::convert(function, input, position),
        _ => strings::call(function, input, args, position),
    }
}

/// Keeps the input items for which `criteria` is true (N1 §5.2 `where`).
fn filter<'a>(
    evaluator: &mut Evaluator<'a>,
    input: Collection<'a>,
    criteria: &Expr,
    position: usize,
) -> Result<Collection<'a>, FhirPathError> {
    let mut output = Vec::new();
    for (index, item) in input.into_iter().enumerate() {
        let result = evaluator.eval_for_item(criteria, &item, index)?;
        if to_boolean(result, position, "criteria")? == Some(true) {
            output.push(item);
        }
    }
    Ok(output)
}

fn exists<'a>(
    evaluator: &mut Evaluator<'a>,
    input: Collection<'a>,
    criteria: Option<&Expr>,
    position: usize,
) -> Result<Collection<'a>, FhirPathError> {
    let matching = match criteria {
        Some(criteria) => filter(evaluator, input, criteria, position)?,
        None => input,
    };
    Ok(vec![Item::boolean(!matching.is_empty())])
}

/// Returns whether `criteria` is true for every input item, so true for an empty input
/// (N1 §5.1 `all`).
fn all<'a>(
    evaluator: &mut Evaluator<'a>,
    input: Collection<'a>,
    criteria: &Expr,
    position: usize,
) -> Result<Collection<'a>, FhirPathError> {
    for (index, item) in input.iter().enumerate() {
        let result = evaluator.eval_for_item(criteria, item, index)?;
        if to_boolean(result, position, "all() criteria")? != Some(true) {
            return Ok(vec![Item::boolean(false)]);
        }
    }
    Ok(vec![Item::boolean(true)])
}

fn select<'a>(
    evaluator: &mut Evaluator<'a>,
    input: Collection<'a>,
    projection: &Expr,
) -> Result<Collection<'a>, FhirPathError> {
    let mut output = Vec::new();
    for (index, item) in input.iter().enumerate() {
        output.extend(evaluator.eval_for_item(projection, item, index)?);
    }
    Ok(output)
}

/// Applies `projection` to the input, then to each new result, until no new items appear
/// (N1 §5.2 `repeat`). Items equal to one already found are not projected again, which ends
/// cycles. The step budget ends projections that keep producing new values.
fn repeat<'a>(
    evaluator: &mut Evaluator<'a>,
    input: Collection<'a>,
    projection: &Expr,
    position: usize,
) -> Result<Collection<'a>, FhirPathError> {
    let mut output: Collection<'a> = Vec::new();
    let mut pending = input;
    while !pending.is_empty() {
        let mut next = Vec::new();
        for (index, item) in pending.iter().enumerate() {
            for result in evaluator.eval_for_item(projection, item, index)? {
                evaluator.charge(output.len(), position)?;
                if !contains_item(&output, &result) {
                    output.push(result.clone());
                    next.push(result);
                }
            }
        }
        pending = next;
    }
    Ok(output)
}

/// Evaluates `iif(criterion, true-result [, otherwise-result])`, and only the branch it
/// returns. The arguments see the function's input as `$this`.
fn iif<'a>(
    evaluator: &mut Evaluator<'a>,
    input: Collection<'a>,
    args: &[Expr],
    scope: &Scope<'a>,
    position: usize,
) -> Result<Collection<'a>, FhirPathError> {
    if input.len() > 1 {
        return Err(FhirPathError::evaluation(
            position,
            format!("iif expects a single item, found {} items", input.len()),
        ));
    }
    let inner = Scope {
        focus: input,
        index: scope.index,
    };
    let criterion = evaluator.eval(&args[0], &inner)?;
    if to_boolean(criterion, position, "iif criterion")? == Some(true) {
        evaluator.eval(&args[1], &inner)
    } else if let Some(otherwise) = args.get(2) {
        evaluator.eval(otherwise, &inner)
    } else {
        Ok(Vec::new())
    }
}

fn boolean_aggregate<'a>(
    function: Function,
    input: &[Item<'a>],
    position: usize,
) -> Result<Collection<'a>, FhirPathError> {
    let mut values = Vec::with_capacity(input.len());
    for item in input {
        let value = item.as_bool().ok_or_else(|| {
            FhirPathError::evaluation(
                position,
                format!(
                    "{} expects booleans, found {}",
                    function.name(),
                    describe_type(item)
                ),
            )
        })?;
        values.push(value);
    }
    let result = match function {
        Function::AllTrue => values.iter().all(|value| *value),
        Function::AnyTrue => values.iter().any(|value| *value),
        Function::AllFalse => values.iter().all(|value| !*value),
        _ => values.iter().any(|value| !*value),
    };
    Ok(vec![Item::boolean(result)])
}

fn set_operation<'a>(
    function: Function,
    input: Collection<'a>,
    other: Collection<'a>,
) -> Collection<'a> {
    match function {
        Function::SubsetOf => vec![Item::boolean(
            input.iter().all(|item| contains_item(&other, item)),
        )],
        Function::SupersetOf => vec![Item::boolean(
            other.iter().all(|item| contains_item(&input, item)),
        )],
        Function::Intersect => {
            let mut output: Collection<'a> = Vec::new();
            for item in input {
                if contains_item(&other, &item) && !contains_item(&output, &item) {
                    output.push(item);
                }
            }
            output
        }
        _ => input
            .into_iter()
            .filter(|item| !contains_item(&other, item))
            .collect(),
    }
}

/// Reads an integer argument such as the count of `skip()` or the precision of `round()`.
pub(super) fn integer_argument(
    arg: Collection,
    position: usize,
    context: &str,
) -> Result<i64, FhirPathError> {
    let item = single(arg, position, context)?;
    item.as_ref().and_then(Item::as_integer).ok_or_else(|| {
        FhirPathError::evaluation(
            position,
            format!(
                "{context}() expects an integer argument, found {}",
                item.as_ref().map_or("an empty collection", describe_type)
            ),
        )
    })
}
