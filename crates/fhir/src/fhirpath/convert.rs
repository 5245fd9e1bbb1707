//! The conversion functions `toX()` and `convertsToX()` (N1 §5.5 Conversion).
//!
//! Each takes a single item, and an empty input gives an empty result. A value that does not
//! convert gives an empty result from `toX()` and false from `convertsToX()`.

use serde_json::Value;

use super::error::FhirPathError;
use super::eval::{Collection, single};
use super::functions::Function;
use super::item::{Item, Number};
use super::temporal::{Temporal, TemporalKind};

/// Returns whether `function` is one of the conversion functions.
pub(super) fn handles(function: Function) -> bool {
    target(function).is_some()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Boolean,
    Integer,
    Decimal,
    String,
    Temporal(TemporalKind),
}

/// The target type of a conversion function and whether it only tests convertibility.
fn target(function: Function) -> Option<(Target, bool)> {
    let target = match function {
        Function::ToBoolean => (Target::Boolean, false),
        Function::ConvertsToBoolean => (Target::Boolean, true),
        Function::ToInteger => (Target::Integer, false),
        Function::ConvertsToInteger => (Target::Integer, true),
        Function::ToDecimal => (Target::Decimal, false),
        Function::ConvertsToDecimal => (Target::Decimal, true),
        Function::ToString => (Target::String, false),
        Function::ConvertsToString => (Target::String, true),
        Function::ToDate => (Target::Temporal(TemporalKind::Date), false),
        Function::ConvertsToDate => (Target::Temporal(TemporalKind::Date), true),
        Function::ToDateTime => (Target::Temporal(TemporalKind::DateTime), false),
        Function::ConvertsToDateTime => (Target::Temporal(TemporalKind::DateTime), true),
        Function::ToTime => (Target::Temporal(TemporalKind::Time), false),
        Function::ConvertsToTime => (Target::Temporal(TemporalKind::Time), true),
        _ => return None,
    };
    Some(target)
}

/// Applies the conversion `function` to `input`.
pub(super) fn convert<'a>(
    function: Function,
    input: Collection<'a>,
    position: usize,
) -> Result<Collection<'a>, FhirPathError> {
    let Some((target, test_only)) = target(function) else {
        return Err(FhirPathError::evaluation(
            position,
            format!("{} is not a conversion function", function.name()),
        ));
    };
    let Some(item) = single(input, position, function.name())? else {
        return Ok(Vec::new());
    };
    let converted = convert_item(&item, target);
    if test_only {
        return Ok(vec![Item::boolean(converted.is_some())]);
    }
    Ok(converted.into_iter().collect())
}

fn convert_item<'a>(item: &Item, target: Target) -> Option<Item<'a>> {
    match target {
        Target::Boolean => to_boolean(item).map(Item::boolean),
        Target::Integer => to_integer(item).map(Item::integer),
        Target::Decimal => {
            to_decimal(item).and_then(|decimal| Item::number(Number::Decimal(decimal)))
        }
        Target::String => to_string(item).map(Item::string),
        Target::Temporal(kind) => to_temporal(item, kind),
    }
}

fn to_boolean(item: &Item) -> Option<bool> {
    if let Some(value) = item.as_bool() {
        return Some(value);
    }
    if let Some(number) = item.as_number() {
        return match number.as_f64() {
            1.0 => Some(true),
            0.0 => Some(false),
            _ => None,
        };
    }
    match item.as_str()?.to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "1" | "1.0" => Some(true),
        "false" | "f" | "no" | "n" | "0" | "0.0" => Some(false),
        _ => None,
    }
}

fn to_integer(item: &Item) -> Option<i64> {
    if let Some(value) = item.as_bool() {
        return Some(i64::from(value));
    }
    if let Some(number) = item.as_number() {
        return match number {
            Number::Integer(integer) => Some(integer),
            Number::Decimal(_) => None,
        };
    }
    let text = item.as_str()?;
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn to_decimal(item: &Item) -> Option<f64> {
    if let Some(value) = item.as_bool() {
        return Some(if value { 1.0 } else { 0.0 });
    }
    if let Some(number) = item.as_number() {
        return Some(number.as_f64());
    }
    let text = item.as_str()?;
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, "0"));
    let is_digits = |part: &str| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit());
    if !is_digits(whole) || !is_digits(fraction) {
        return None;
    }
    text.parse().ok().filter(|value: &f64| value.is_finite())
}

fn to_string(item: &Item) -> Option<String> {
    match item.value.as_ref() {
        Value::String(text) => Some(text.clone()),
        Value::Bool(value) => Some(value.to_string()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// Converts a string, or a date/time of a compatible kind, to `kind`. A dateTime converts to a
/// date by dropping its time, and a date converts to a dateTime of day precision.
fn to_temporal<'a>(item: &Item, kind: TemporalKind) -> Option<Item<'a>> {
    let text = item.as_str()?;
    let text = match (item.temporal_kind(), kind) {
        (Some(TemporalKind::DateTime), TemporalKind::Date) => text.split('T').next()?,
        (Some(TemporalKind::Time), TemporalKind::Date | TemporalKind::DateTime)
        | (Some(TemporalKind::Date | TemporalKind::DateTime), TemporalKind::Time) => return None,
        _ => text,
    };
    Temporal::parse(text, kind)?;
    Some(Item::temporal(kind, text.trim_end_matches('T')))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn run(function: Function, item: Item<'static>) -> Vec<Value> {
        convert(function, vec![item], 0)
            .unwrap()
            .into_iter()
            .map(Item::into_value)
            .collect()
    }

    #[test]
    fn to_boolean_values() {
        let cases = [
            (Item::string("Yes"), vec![json!(true)]),
            (Item::string("f"), vec![json!(false)]),
            (Item::string("maybe"), vec![]),
            (Item::integer(1), vec![json!(true)]),
            (Item::integer(2), vec![]),
            (Item::owned(json!(0.0)), vec![json!(false)]),
        ];
        for (item, expected) in cases {
            assert_eq!(run(Function::ToBoolean, item.clone()), expected, "{item:?}");
        }
    }

    #[test]
    fn to_integer_values() {
        let cases = [
            (Item::string("-42"), vec![json!(-42)]),
            (Item::string("+7"), vec![json!(7)]),
            (Item::string("4.2"), vec![]),
            (Item::string(""), vec![]),
            (Item::string("99999999999999999999"), vec![]),
            (Item::boolean(true), vec![json!(1)]),
            (Item::owned(json!(4.5)), vec![]),
        ];
        for (item, expected) in cases {
            assert_eq!(run(Function::ToInteger, item.clone()), expected, "{item:?}");
        }
    }

    #[test]
    fn to_decimal_values() {
        assert_eq!(
            run(Function::ToDecimal, Item::string("4.25")),
            vec![json!(4.25)]
        );
        assert_eq!(run(Function::ToDecimal, Item::integer(3)), vec![json!(3.0)]);
        assert!(run(Function::ToDecimal, Item::string("4.")).is_empty());
        assert!(run(Function::ToDecimal, Item::string("1e5")).is_empty());
    }

    #[test]
    fn to_string_values() {
        assert_eq!(run(Function::ToString, Item::integer(3)), vec![json!("3")]);
        assert_eq!(
            run(Function::ToString, Item::owned(json!(2.5))),
            vec![json!("2.5")]
        );
        assert_eq!(
            run(Function::ToString, Item::boolean(false)),
            vec![json!("false")]
        );
        assert!(run(Function::ToString, Item::owned(json!({"a": 1}))).is_empty());
    }

    #[test]
    fn to_temporal_values() {
        let date = convert(Function::ToDate, vec![Item::string("2020-01-02")], 0).unwrap();
        assert_eq!(date[0].temporal_kind(), Some(TemporalKind::Date));
        assert!(run(Function::ToDate, Item::string("2020-01-02T10:00:00Z")).is_empty());
        let date_time = Item::temporal(TemporalKind::DateTime, "2020-01-02T10:00:00Z");
        assert_eq!(run(Function::ToDate, date_time), vec![json!("2020-01-02")]);
        assert_eq!(
            run(Function::ToDateTime, Item::string("2020-01-02T10:00:00Z")),
            vec![json!("2020-01-02T10:00:00Z")]
        );
        assert_eq!(
            run(Function::ToTime, Item::string("10:15")),
            vec![json!("10:15")]
        );
        assert!(run(Function::ToTime, Item::string("25:00")).is_empty());
    }

    #[test]
    fn converts_to_reports_success() {
        assert_eq!(
            run(Function::ConvertsToInteger, Item::string("12")),
            vec![json!(true)]
        );
        assert_eq!(
            run(Function::ConvertsToInteger, Item::string("x")),
            vec![json!(false)]
        );
        assert_eq!(
            run(Function::ConvertsToDate, Item::string("2020-02-30")),
            vec![json!(false)]
        );
        assert!(
            convert(Function::ConvertsToString, Vec::new(), 0)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn convert_rejects_several_items() {
        let error = convert(
            Function::ToString,
            vec![Item::integer(1), Item::integer(2)],
            3,
        )
        .unwrap_err();
        assert_eq!(
            error,
            FhirPathError::evaluation(3, "toString expects a single item, found 2 items")
        );
    }
}
