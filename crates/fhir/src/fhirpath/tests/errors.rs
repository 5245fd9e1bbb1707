//! Errors: what fails, at which position, with which message.

use serde_json::{Value, json};

use super::{eval_error, parse};
use crate::fhirpath::{FhirPathError, Variables};

fn resource() -> Value {
    json!({
        "resourceType": "Patient",
        "name": [{"given": ["Peter", "James", "Jim"]}],
        "numbers": [1, 2],
        "flags": [true, 1]
    })
}

#[test]
fn evaluation_errors_name_cause_and_position() {
    let cases = [
        (
            "name.given and true",
            11,
            "and expects a single item, found 3 items",
        ),
        (
            "'a' < 1",
            4,
            "operator <: cannot compare string with integer",
        ),
        (
            "name.given < 'x'",
            11,
            "operator < expects a single item, found 3 items",
        ),
        (
            "@2020 >= 'soon'",
            6,
            "operator >=: cannot compare date with string",
        ),
        (
            "true > false",
            5,
            "operator >: cannot compare boolean with boolean",
        ),
        (
            "9223372036854775807 + 1",
            20,
            "operator +: integer overflow in 9223372036854775807 + 1",
        ),
        (
            "'a' * 2",
            4,
            "operator * cannot apply to string and integer",
        ),
        (
            "@2020 + 1",
            6,
            "operator + cannot apply to date and integer",
        ),
        ("1 & 'a'", 2, "operator & expects strings, found integer"),
        (
            "numbers.single()",
            8,
            "single expects a single item, found 2 items",
        ),
        (
            "numbers.toString()",
            8,
            "toString expects a single item, found 2 items",
        ),
        (
            "1.lower()",
            2,
            "lower() expects a string input, found integer",
        ),
        (
            "'abc'.startsWith(1)",
            6,
            "startsWith() expects a string argument, found integer",
        ),
        (
            "numbers.skip('x')",
            8,
            "skip() expects an integer argument, found string",
        ),
        ("numbers[0.5]", 7, "index must be an integer, found decimal"),
        (
            "numbers[numbers]",
            7,
            "an index expects a single item, found 2 items",
        ),
        (
            "name.where(given)",
            5,
            "criteria expects a single item, found 3 items",
        ),
        (
            "numbers is Integer",
            8,
            "is expects a single item, found 2 items",
        ),
        (
            "flags.allTrue()",
            6,
            "allTrue expects booleans, found integer",
        ),
        ("'a'.abs()", 4, "abs expects a number, found string"),
        ("-'a'", 0, "unary - expects a number, found string"),
        (
            "(1 | 2).iif(true, 1)",
            8,
            "iif expects a single item, found 2 items",
        ),
        (
            "name.all(given)",
            5,
            "all() criteria expects a single item, found 3 items",
        ),
        (
            "1.5.round(-1)",
            4,
            "round() precision must not be negative, found -1",
        ),
    ];
    for (expression, position, message) in cases {
        assert_eq!(
            eval_error(expression, &resource()),
            FhirPathError::evaluation(position, message),
            "{expression}"
        );
    }
}

#[test]
fn undefined_variable() {
    assert_eq!(
        eval_error("%before.status", &Value::Null),
        FhirPathError::UndefinedVariable {
            name: "before".into()
        }
    );
    assert_eq!(
        FhirPathError::UndefinedVariable {
            name: "before".into()
        }
        .to_string(),
        "undefined variable: %before"
    );
}

#[test]
fn unsupported_functions_fail_at_parse() {
    for (expression, name, position) in [
        ("name.matches('x')", "matches", 5),
        ("now() > @2020", "now", 0),
        ("today()", "today", 0),
        ("aggregate($this, 0)", "aggregate", 0),
        ("code.memberOf('http://vs')", "memberOf", 5),
        ("name.type()", "type", 5),
        ("name.fooBar()", "fooBar", 5),
    ] {
        let error = parse(expression).expect_err(expression);
        assert_eq!(
            error,
            FhirPathError::UnsupportedFunction {
                name: name.into(),
                position
            },
            "{expression}"
        );
        assert_eq!(
            error.to_string(),
            format!("unsupported function: {name} (at position {position})")
        );
    }
}

#[test]
fn parse_error_message() {
    let error = parse("name.where(").unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid FHIRPath expression at position 11: expected an expression, found end of expression"
    );
    assert_eq!(
        parse("name = 'x").unwrap_err(),
        FhirPathError::parse(7, "missing closing '")
    );
    assert_eq!(
        parse("").unwrap_err(),
        FhirPathError::parse(0, "expected an expression, found end of expression")
    );
}

#[test]
fn evaluation_error_message() {
    let error = eval_error("'a' < 1", &Value::Null);
    assert_eq!(
        error.to_string(),
        "FHIRPath evaluation failed at position 4: operator <: cannot compare string with integer"
    );
}

#[test]
fn evaluate_bool_rejects_collections() {
    let expression = parse("name.given").unwrap();
    assert_eq!(
        expression.evaluate_bool(&resource(), &Variables::new()),
        Err(FhirPathError::evaluation(
            5,
            "a constraint expects a single item, found 3 items"
        ))
    );
}
