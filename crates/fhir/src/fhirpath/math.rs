//! Arithmetic operators (N1 §6.6 Math) and the math functions (N1 §5.7 Math).

use super::ast::BinaryOp;
use super::compare::describe_type;
use super::error::FhirPathError;
use super::eval::{Collection, single};
use super::functions::Function;
use super::item::{Item, Number};

/// Applies `*`, `/`, `div`, `mod`, `+`, `-` or `&`. Empty operands give an empty result, and so
/// does division by zero.
pub(super) fn arithmetic<'a>(
    op: BinaryOp,
    left: Collection<'a>,
    right: Collection<'a>,
    position: usize,
) -> Result<Collection<'a>, FhirPathError> {
    let context = format!("operator {}", op.symbol());
    if op == BinaryOp::Concatenate {
        let left = concatenation_operand(left, position, &context)?;
        let right = concatenation_operand(right, position, &context)?;
        return Ok(vec![Item::string(left + &right)]);
    }

    let (Some(left), Some(right)) = (
        single(left, position, &context)?,
        single(right, position, &context)?,
    ) else {
        return Ok(Vec::new());
    };
    let mismatch = || {
        FhirPathError::evaluation(
            position,
            format!(
                "{context} cannot apply to {} and {}",
                describe_type(&left),
                describe_type(&right)
            ),
        )
    };
    if left.temporal_kind().is_some() || right.temporal_kind().is_some() {
        // NOTE: date/time arithmetic (N1 §6.7) takes quantities such as `1 year`, and quantity
        // literals are not supported, so it fails here.
        return Err(mismatch());
    }
    if op == BinaryOp::Add
        && let (Some(left), Some(right)) = (left.as_str(), right.as_str())
    {
        return Ok(vec![Item::string(format!("{left}{right}"))]);
    }
    let (Some(left_number), Some(right_number)) = (left.as_number(), right.as_number()) else {
        return Err(mismatch());
    };
    let result = match (left_number, right_number) {
        (Number::Integer(left), Number::Integer(right)) => integer_arithmetic(op, left, right),
        _ => Ok(decimal_arithmetic(
            op,
            left_number.as_f64(),
            right_number.as_f64(),
        )),
    }
    .map_err(|message| FhirPathError::evaluation(position, format!("{context}: {message}")))?;
    number_result(result, position, &context)
}

fn integer_arithmetic(op: BinaryOp, left: i64, right: i64) -> Result<Option<Number>, String> {
    let overflow = || format!("integer overflow in {left} {} {right}", op.symbol());
    let result = match op {
        BinaryOp::Add => left.checked_add(right),
        BinaryOp::Subtract => left.checked_sub(right),
        BinaryOp::Multiply => left.checked_mul(right),
        BinaryOp::Divide => {
            return Ok((right != 0).then(|| Number::Decimal(left as f64 / right as f64)));
        }
        BinaryOp::Div if right == 0 => return Ok(None),
        BinaryOp::Div => left.checked_div(right),
        BinaryOp::Mod if right == 0 => return Ok(None),
        _ => left.checked_rem(right),
    };
    result
        .map(|value| Some(Number::Integer(value)))
        .ok_or_else(overflow)
}

fn decimal_arithmetic(op: BinaryOp, left: f64, right: f64) -> Option<Number> {
    let value = match op {
        BinaryOp::Add => left + right,
        BinaryOp::Subtract => left - right,
        BinaryOp::Multiply => left * right,
        _ if right == 0.0 => return None,
        BinaryOp::Divide => left / right,
        BinaryOp::Div => (left / right).trunc(),
        _ => left % right,
    };
    Some(Number::Decimal(value))
}

fn number_result<'a>(
    number: Option<Number>,
    position: usize,
    context: &str,
) -> Result<Collection<'a>, FhirPathError> {
    let Some(number) = number else {
        return Ok(Vec::new());
    };
    let item = Item::number(number).ok_or_else(|| {
        FhirPathError::evaluation(
            position,
            format!("{context}: decimal result is out of range"),
        )
    })?;
    Ok(vec![item])
}

/// Reads an operand of `&`, where the empty collection counts as the empty string.
fn concatenation_operand(
    collection: Collection,
    position: usize,
    context: &str,
) -> Result<String, FhirPathError> {
    let Some(item) = single(collection, position, context)? else {
        return Ok(String::new());
    };
    item.as_str().map(str::to_string).ok_or_else(|| {
        FhirPathError::evaluation(
            position,
            format!("{context} expects strings, found {}", describe_type(&item)),
        )
    })
}

/// Applies unary `-` or `+` to a single number.
pub(super) fn negate<'a>(
    operand: Collection<'a>,
    negative: bool,
    position: usize,
) -> Result<Collection<'a>, FhirPathError> {
    let context = if negative { "unary -" } else { "unary +" };
    let Some(item) = single(operand, position, context)? else {
        return Ok(Vec::new());
    };
    let number = number_of(&item, position, context)?;
    let result = match (negative, number) {
        (false, number) => number,
        (true, Number::Integer(integer)) => {
            Number::Integer(integer.checked_neg().ok_or_else(|| {
                FhirPathError::evaluation(position, format!("integer overflow in -{integer}"))
            })?)
        }
        (true, Number::Decimal(decimal)) => Number::Decimal(-decimal),
    };
    number_result(Some(result), position, context)
}

/// Applies `abs()`, `ceiling()`, `floor()`, `round([precision])` or `truncate()` to one number.
pub(super) fn math_function<'a>(
    function: Function,
    item: &Item,
    precision: Option<i64>,
    position: usize,
) -> Result<Collection<'a>, FhirPathError> {
    let context = function.name();
    let number = number_of(item, position, context)?;
    let result = match (function, number) {
        (Function::Abs, Number::Integer(integer)) => {
            Number::Integer(integer.checked_abs().ok_or_else(|| {
                FhirPathError::evaluation(position, format!("integer overflow in abs({integer})"))
            })?)
        }
        (Function::Abs, Number::Decimal(decimal)) => Number::Decimal(decimal.abs()),
        (_, Number::Integer(integer)) => Number::Integer(integer),
        (Function::Ceiling, Number::Decimal(decimal)) => whole(decimal.ceil(), position, context)?,
        (Function::Floor, Number::Decimal(decimal)) => whole(decimal.floor(), position, context)?,
        (Function::Truncate, Number::Decimal(decimal)) => {
            whole(decimal.trunc(), position, context)?
        }
        (_, Number::Decimal(decimal)) => {
            Number::Decimal(round(decimal, precision.unwrap_or(0), position)?)
        }
    };
    number_result(Some(result), position, context)
}

fn number_of(item: &Item, position: usize, context: &str) -> Result<Number, FhirPathError> {
    item.as_number().ok_or_else(|| {
        FhirPathError::evaluation(
            position,
            format!("{context} expects a number, found {}", describe_type(item)),
        )
    })
}

/// A whole decimal as an integer, which `ceiling()`, `floor()` and `truncate()` return.
fn whole(value: f64, position: usize, context: &str) -> Result<Number, FhirPathError> {
    // The bounds are exact powers of two, so the range test is exact.
    if value >= -(2f64.powi(63)) && value < 2f64.powi(63) {
        Ok(Number::Integer(value as i64))
    } else {
        Err(FhirPathError::evaluation(
            position,
            format!("{context}: {value} is out of the integer range"),
        ))
    }
}

/// Rounds half away from zero to `precision` decimal places (N1 §5.7 `round`).
fn round(value: f64, precision: i64, position: usize) -> Result<f64, FhirPathError> {
    if precision < 0 {
        return Err(FhirPathError::evaluation(
            position,
            format!("round() precision must not be negative, found {precision}"),
        ));
    }
    // An f64 has at most 17 significant digits, so more places cannot change the value.
    if precision > 15 {
        return Ok(value);
    }
    let scale = 10f64.powi(precision as i32);
    Ok((value * scale).round() / scale)
}
