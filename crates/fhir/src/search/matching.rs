//! In-memory matching of filters against one resource, with the meaning the store's SQL
//! gives them over the same index rows. Access checks use it on versions that are not
//! stored yet.

use serde_json::Value;

use super::compartment::patient_compartment;
use super::date::normalize_instant;
use super::definitions::find_param;
use super::extract::{COMPARTMENT_CODE, IndexValue, param_values};
use super::filter::{Filter, FilterOp};

/// Checks whether `resource` matches every filter.
pub fn matches(resource: &Value, filters: &[Filter]) -> bool {
    filters
        .iter()
        .all(|filter| filter_matches(resource, filter))
}

/// Extracts the index rows of one code only, as [`super::index_values`] would store them, so
/// that a check of a few filters evaluates a few expressions.
fn rows_of(resource: &Value, code: &str) -> Vec<IndexValue> {
    if code == COMPARTMENT_CODE {
        return patient_compartment(resource)
            .into_iter()
            .map(|patient| IndexValue::new(COMPARTMENT_CODE, patient))
            .collect();
    }
    let resource_type = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match find_param(resource_type, code) {
        Some(param) => param_values(param, resource),
        None => Vec::new(),
    }
}

fn filter_matches(resource: &Value, filter: &Filter) -> bool {
    match filter.code.as_str() {
        "_id" => column_matches(resource.get("id").and_then(Value::as_str), &filter.op),
        "_project" => column_matches(
            resource
                .get("meta")
                .and_then(|meta| meta.get("project"))
                .and_then(Value::as_str),
            &filter.op,
        ),
        "_lastUpdated" => {
            let instant = resource
                .get("meta")
                .and_then(|meta| meta.get("lastUpdated"))
                .and_then(Value::as_str)
                .and_then(normalize_instant);
            match (&filter.op, instant) {
                (FilterOp::Date(alternatives), Some(instant)) => alternatives
                    .iter()
                    .any(|alternative| alternative.matches(&instant, &instant)),
                (FilterOp::Missing(missing), instant) => instant.is_none() == *missing,
                _ => false,
            }
        }
        code => {
            let rows = rows_of(resource, code);
            match &filter.op {
                FilterOp::Missing(missing) => rows.is_empty() == *missing,
                FilterOp::Not(inner) => !rows.iter().any(|row| row_matches(inner, row)),
                op => rows.iter().any(|row| row_matches(op, row)),
            }
        }
    }
}

/// Matches `_id` and `_project`, which are columns of the resource row. Only equality,
/// its negation and `:missing` apply to them; any other operation matches nothing, as in SQL.
fn column_matches(value: Option<&str>, op: &FilterOp) -> bool {
    match op {
        FilterOp::Equals(alternatives) => {
            value.is_some_and(|value| alternatives.iter().any(|candidate| candidate == value))
        }
        FilterOp::Not(inner) => !column_matches(value, inner),
        FilterOp::Missing(missing) => value.is_none() == *missing,
        _ => false,
    }
}

/// Checks one index row against an operation that looks at single values.
fn row_matches(op: &FilterOp, row: &IndexValue) -> bool {
    match op {
        FilterOp::Equals(alternatives) => alternatives.contains(&row.value),
        FilterOp::StartsWith(prefixes) => prefixes
            .iter()
            .any(|prefix| row.value.starts_with(prefix.as_str())),
        FilterOp::Contains(parts) => parts.iter().any(|part| row.value.contains(part.as_str())),
        FilterOp::Exact(texts) => row
            .text
            .as_ref()
            .is_some_and(|text| texts.iter().any(|candidate| candidate == text)),
        FilterOp::Token(tokens) => tokens
            .iter()
            .any(|token| token.matches(row.system.as_deref(), &row.value)),
        FilterOp::Text(prefixes) => row.text.as_ref().is_some_and(|text| {
            prefixes
                .iter()
                .any(|prefix| text.starts_with(prefix.as_str()))
        }),
        FilterOp::Date(alternatives) => match (&row.low, &row.high) {
            (Some(low), Some(high)) => alternatives
                .iter()
                .any(|alternative| alternative.matches(low, high)),
            _ => false,
        },
        FilterOp::Number(alternatives) => row.number.is_some_and(|number| {
            alternatives
                .iter()
                .any(|alternative| alternative.matches(number))
        }),
        // Only top-level filters negate or test for absence; nested, they match nothing, as
        // in SQL.
        FilterOp::Not(_) | FilterOp::Missing(_) => false,
    }
}
