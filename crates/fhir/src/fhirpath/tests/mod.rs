//! End-to-end tests of the public API: parse an expression, evaluate it on FHIR JSON.

mod errors;
mod functions;
mod limits;
mod operators;
mod policy;
mod search;

use serde_json::Value;

use super::{FhirPathError, Variables, parse};

fn variables(pairs: &[(&str, Value)]) -> Variables {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.clone()))
        .collect()
}

/// Evaluates `expression` on `resource`, panicking with the expression on any error.
fn eval_with(expression: &str, resource: &Value, pairs: &[(&str, Value)]) -> Vec<Value> {
    parse(expression)
        .and_then(|parsed| parsed.evaluate(resource, &variables(pairs)))
        .unwrap_or_else(|error| panic!("{expression}: {error}"))
}

fn eval(expression: &str, resource: &Value) -> Vec<Value> {
    eval_with(expression, resource, &[])
}

fn eval_bool_with(expression: &str, resource: &Value, pairs: &[(&str, Value)]) -> Option<bool> {
    parse(expression)
        .and_then(|parsed| parsed.evaluate_bool(resource, &variables(pairs)))
        .unwrap_or_else(|error| panic!("{expression}: {error}"))
}

fn eval_error(expression: &str, resource: &Value) -> FhirPathError {
    match parse(expression).and_then(|parsed| parsed.evaluate(resource, &Variables::new())) {
        Ok(result) => panic!("{expression}: expected an error, got {result:?}"),
        Err(error) => error,
    }
}

/// Checks a table of expressions against their expected results on one resource.
fn assert_table(resource: &Value, cases: &[(&str, Vec<Value>)]) {
    for (expression, expected) in cases {
        assert_eq!(&eval(expression, resource), expected, "{expression}");
    }
}
