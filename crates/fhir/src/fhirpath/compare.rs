//! Equality (`=`), equivalence (`~`) and ordering (`<`, `>`, …) of items and collections
//! (N1 §6.1 Equality and §6.2 Comparison).

use std::cmp::Ordering;

use serde_json::Value;

use super::item::{Item, Number};
use super::temporal::{Temporal, TemporalOrdering};

/// Two items read as dates or times, or the reason they are not.
enum TemporalPair {
    /// Neither item is a date or time, so other rules apply.
    Neither,
    Both(Temporal, Temporal),
    /// One item is a date or time and the other is not one of a comparable kind.
    Mismatch,
}

/// Pairs two items as dates or times when one of them is typed as one, and parses the other,
/// if a plain string, as the same kind. Two plain strings that both contain full instants with
/// an offset, such as two `meta.lastUpdated` values, also compare as instants. So
/// `2020-01-01T01:00:00+01:00` equals `2020-01-01T00:00:00Z`.
fn temporal_pair(left: &Item, right: &Item) -> TemporalPair {
    let Some(kind) = left.temporal_kind().or(right.temporal_kind()) else {
        let instant = |item: &Item| {
            item.as_str()
                .and_then(Temporal::parse_date_time)
                .filter(Temporal::is_instant)
        };
        return match (instant(left), instant(right)) {
            (Some(left), Some(right)) => TemporalPair::Both(left, right),
            _ => TemporalPair::Neither,
        };
    };
    let left_kind = left.temporal_kind().unwrap_or(kind);
    let right_kind = right.temporal_kind().unwrap_or(kind);
    match (
        left.parse_temporal(left_kind),
        right.parse_temporal(right_kind),
    ) {
        (Some(left), Some(right)) if left.is_time() == right.is_time() => {
            TemporalPair::Both(left, right)
        }
        _ => TemporalPair::Mismatch,
    }
}

/// Applies `=` to single items. Returns `None` when dates of different precision leave the
/// result unknown.
pub(super) fn items_equal(left: &Item, right: &Item) -> Option<bool> {
    match temporal_pair(left, right) {
        TemporalPair::Both(left, right) => match left.compare(&right) {
            TemporalOrdering::Ordered(ordering) => Some(ordering == Ordering::Equal),
            TemporalOrdering::Indeterminate => None,
            TemporalOrdering::Incomparable => Some(false),
        },
        TemporalPair::Mismatch => Some(false),
        TemporalPair::Neither => Some(json_equal(&left.value, &right.value)),
    }
}

/// Applies `~` to single items. Strings ignore case and collapse whitespace, decimals are
/// compared at the precision of the less precise one, and dates of different precision differ.
pub(super) fn items_equivalent(left: &Item, right: &Item) -> bool {
    match temporal_pair(left, right) {
        TemporalPair::Both(left, right) => {
            left.compare(&right) == TemporalOrdering::Ordered(Ordering::Equal)
        }
        TemporalPair::Mismatch => false,
        TemporalPair::Neither => match (left.as_number(), right.as_number()) {
            (Some(left), Some(right)) => numbers_equivalent(left, right),
            _ => match (left.as_str(), right.as_str()) {
                (Some(left), Some(right)) => normalize_string(left) == normalize_string(right),
                _ => json_equal(&left.value, &right.value),
            },
        },
    }
}

/// Applies `=` to collections, which are equal when they have equal items in the same order.
pub(super) fn collections_equal(left: &[Item], right: &[Item]) -> Option<bool> {
    if left.len() != right.len() {
        return Some(false);
    }
    let mut unknown = false;
    for (left, right) in left.iter().zip(right) {
        match items_equal(left, right) {
            Some(false) => return Some(false),
            None => unknown = true,
            Some(true) => {}
        }
    }
    if unknown { None } else { Some(true) }
}

/// Applies `~` to collections, which are equivalent when every item has an equivalent partner
/// in the other, in any order.
pub(super) fn collections_equivalent(left: &[Item], right: &[Item]) -> bool {
    if left.len() != right.len() {
        return false;
    }
    let mut matched = vec![false; right.len()];
    left.iter().all(|left_item| {
        let partner = right.iter().enumerate().find(|(index, right_item)| {
            !matched[*index] && items_equivalent(left_item, right_item)
        });
        match partner {
            Some((index, _)) => {
                matched[index] = true;
                true
            }
            None => false,
        }
    })
}

/// Returns whether `collection` contains an item equal to `item`, for `in`, `contains` and
/// `distinct()`.
pub(super) fn contains_item(collection: &[Item], item: &Item) -> bool {
    collection
        .iter()
        .any(|candidate| items_equal(candidate, item) == Some(true))
}

/// Orders two single items for `<`, `<=`, `>` and `>=`. `Ok(None)` means the order is unknown
/// (dates of different precision); `Err` names the types that cannot be compared.
pub(super) fn compare_items(left: &Item, right: &Item) -> Result<Option<Ordering>, String> {
    match temporal_pair(left, right) {
        TemporalPair::Both(left_value, right_value) => {
            return match left_value.compare(&right_value) {
                TemporalOrdering::Ordered(ordering) => Ok(Some(ordering)),
                TemporalOrdering::Indeterminate => Ok(None),
                TemporalOrdering::Incomparable => Err(incomparable(left, right)),
            };
        }
        TemporalPair::Mismatch => return Err(incomparable(left, right)),
        TemporalPair::Neither => {}
    }
    if let (Some(left), Some(right)) = (left.as_number(), right.as_number()) {
        return Ok(match (left, right) {
            (Number::Integer(left), Number::Integer(right)) => Some(left.cmp(&right)),
            _ => left.as_f64().partial_cmp(&right.as_f64()),
        });
    }
    if let (Some(left), Some(right)) = (left.as_str(), right.as_str()) {
        return Ok(Some(left.cmp(right)));
    }
    Err(incomparable(left, right))
}

fn incomparable(left: &Item, right: &Item) -> String {
    format!(
        "cannot compare {} with {}",
        describe_type(left),
        describe_type(right)
    )
}

/// Returns the FHIRPath type name of an item for error messages.
pub(super) fn describe_type(item: &Item) -> &'static str {
    if let Some(kind) = item.temporal_kind() {
        return match kind {
            super::temporal::TemporalKind::Date => "date",
            super::temporal::TemporalKind::DateTime => "dateTime",
            super::temporal::TemporalKind::Time => "time",
        };
    }
    match item.value.as_ref() {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => match item.as_number() {
            Some(Number::Integer(_)) => "integer",
            _ => "decimal",
        },
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn numbers_equal(left: Number, right: Number) -> bool {
    match (left, right) {
        (Number::Integer(left), Number::Integer(right)) => left == right,
        _ => left.as_f64() == right.as_f64(),
    }
}

/// Compares decimals rounded to the fewer decimal places of the two, as written in their
/// shortest form (N1 §6.1 Equivalence).
fn numbers_equivalent(left: Number, right: Number) -> bool {
    let places = decimal_places(left).min(decimal_places(right));
    let scale = 10f64.powi(places);
    (left.as_f64() * scale).round() == (right.as_f64() * scale).round()
}

fn decimal_places(number: Number) -> i32 {
    match number {
        Number::Integer(_) => 0,
        Number::Decimal(decimal) => {
            let text = decimal.to_string();
            let places = text
                .split_once('.')
                .map_or(0, |(_, fraction)| fraction.len());
            // Beyond 15 places an f64 has no more exact digits.
            places.min(15) as i32
        }
    }
}

fn normalize_string(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Compares JSON values deeply, with numbers compared by value, so `1` equals `1.0`. A work list
/// replaces recursion, so deeply nested values cannot exhaust the stack.
fn json_equal(left: &Value, right: &Value) -> bool {
    let mut pending = vec![(left, right)];
    while let Some((left, right)) = pending.pop() {
        match (left, right) {
            (Value::Number(_), Value::Number(_)) => {
                let (Some(left), Some(right)) = (
                    Item::borrowed(left).as_number(),
                    Item::borrowed(right).as_number(),
                ) else {
                    return false;
                };
                if !numbers_equal(left, right) {
                    return false;
                }
            }
            (Value::Array(left), Value::Array(right)) => {
                if left.len() != right.len() {
                    return false;
                }
                pending.extend(left.iter().zip(right));
            }
            (Value::Object(left), Value::Object(right)) => {
                if left.len() != right.len() {
                    return false;
                }
                for (key, left_value) in left {
                    let Some(right_value) = right.get(key) else {
                        return false;
                    };
                    pending.push((left_value, right_value));
                }
            }
            _ => {
                if left != right {
                    return false;
                }
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::temporal::TemporalKind;
    use super::*;

    fn date(text: &str) -> Item<'static> {
        Item::temporal(TemporalKind::Date, text)
    }

    fn date_time(text: &str) -> Item<'static> {
        Item::temporal(TemporalKind::DateTime, text)
    }

    #[test]
    fn equal_primitives() {
        assert_eq!(
            items_equal(&Item::integer(1), &Item::owned(json!(1.0))),
            Some(true)
        );
        assert_eq!(
            items_equal(&Item::string("a"), &Item::string("A")),
            Some(false)
        );
        assert_eq!(
            items_equal(&Item::string("1"), &Item::integer(1)),
            Some(false)
        );
        assert_eq!(
            items_equal(&Item::boolean(true), &Item::boolean(true)),
            Some(true)
        );
    }

    #[test]
    fn equal_objects_compare_deeply() {
        let left = Item::owned(json!({"a": [1, {"b": "c"}]}));
        let same = Item::owned(json!({"a": [1.0, {"b": "c"}]}));
        let different = Item::owned(json!({"a": [1, {"b": "d"}]}));
        assert_eq!(items_equal(&left, &same), Some(true));
        assert_eq!(items_equal(&left, &different), Some(false));
    }

    #[test]
    fn equal_dates_follow_precision() {
        assert_eq!(
            items_equal(&date("2020-01-01"), &Item::string("2020-01-01")),
            Some(true)
        );
        assert_eq!(items_equal(&date("2020"), &Item::string("2020-01")), None);
        assert_eq!(
            items_equal(&date("2020"), &Item::string("2021-01")),
            Some(false)
        );
        assert_eq!(
            items_equal(&date("2020"), &Item::string("final")),
            Some(false)
        );
    }

    #[test]
    fn equal_instant_strings_normalize_offsets() {
        let utc = Item::string("2020-01-01T00:00:00Z");
        let offset = Item::string("2020-01-01T01:00:00+01:00");
        assert_eq!(items_equal(&utc, &offset), Some(true));
        let local = Item::string("2020-01-01T01:00:00");
        assert_eq!(items_equal(&utc, &local), Some(false));
    }

    #[test]
    fn equivalent_strings_and_decimals() {
        assert!(items_equivalent(
            &Item::string(" Hello  World "),
            &Item::string("hello world")
        ));
        assert!(!items_equivalent(
            &Item::string("hello"),
            &Item::string("help")
        ));
        assert!(items_equivalent(
            &Item::owned(json!(1.1)),
            &Item::owned(json!(1.14))
        ));
        assert!(!items_equivalent(
            &Item::owned(json!(1.1)),
            &Item::owned(json!(1.16))
        ));
        assert!(items_equivalent(
            &Item::integer(1),
            &Item::owned(json!(1.4))
        ));
        assert!(!items_equivalent(&date("2020"), &date_time("2020-01-01")));
    }

    #[test]
    fn collections_equal_in_order() {
        let left = [Item::integer(1), Item::integer(2)];
        let swapped = [Item::integer(2), Item::integer(1)];
        assert_eq!(collections_equal(&left, &left), Some(true));
        assert_eq!(collections_equal(&left, &swapped), Some(false));
        assert_eq!(collections_equal(&left, &left[..1]), Some(false));
        assert!(collections_equivalent(&left, &swapped));
        assert!(collections_equivalent(&[], &[]));
        assert!(!collections_equivalent(
            &left,
            &[Item::integer(1), Item::integer(1)]
        ));
    }

    #[test]
    fn compare_numbers_strings_dates() {
        assert_eq!(
            compare_items(&Item::integer(1), &Item::owned(json!(1.5))),
            Ok(Some(Ordering::Less))
        );
        assert_eq!(
            compare_items(&Item::string("b"), &Item::string("a")),
            Ok(Some(Ordering::Greater))
        );
        assert_eq!(
            compare_items(&Item::string("2021-03-04T10:00:00Z"), &date("2020-01-01")),
            Ok(Some(Ordering::Greater))
        );
        assert_eq!(
            compare_items(&Item::string("2020-01-01T10:00:00Z"), &date("2020-01-01")),
            Ok(None)
        );
    }

    #[test]
    fn compare_rejects_mixed_types() {
        assert_eq!(
            compare_items(&Item::string("a"), &Item::integer(1)),
            Err("cannot compare string with integer".to_string())
        );
        assert_eq!(
            compare_items(&Item::string("soon"), &date("2020")),
            Err("cannot compare string with date".to_string())
        );
        assert!(compare_items(&Item::boolean(true), &Item::boolean(false)).is_err());
        assert!(
            compare_items(&Item::temporal(TemporalKind::Time, "10:00"), &date("2020")).is_err()
        );
    }

    #[test]
    fn json_equal_handles_deep_values() {
        let mut left = json!(1);
        let mut right = json!(1);
        for _ in 0..10_000 {
            // `json!` would serialize the inner value recursively, so build the arrays directly.
            left = Value::Array(vec![left]);
            right = Value::Array(vec![right]);
        }
        assert!(json_equal(&left, &right));
        // serde_json drops values recursively, so the deep values are leaked rather than dropped.
        std::mem::forget(left);
        std::mem::forget(right);
    }
}
