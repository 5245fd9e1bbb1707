//! Tests of extraction, parsing and in-memory matching over representative resources.

mod extract;
mod matching;
mod parse;

use serde_json::Value;

use super::{IndexValue, SearchRequest, index_values};

pub(super) fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

pub(super) fn parse(resource_type: &str, query: &[(&str, &str)]) -> SearchRequest {
    SearchRequest::parse(resource_type, &pairs(query))
        .unwrap_or_else(|error| panic!("parse {resource_type} {query:?}: {error}"))
}

/// Returns the rows of one parameter code.
pub(super) fn rows(resource: &Value, code: &str) -> Vec<IndexValue> {
    index_values(resource)
        .into_iter()
        .filter(|row| row.code == code)
        .collect()
}

/// Returns the `value` column of the rows of one parameter code.
pub(super) fn values(resource: &Value, code: &str) -> Vec<String> {
    rows(resource, code)
        .into_iter()
        .map(|row| row.value)
        .collect()
}
