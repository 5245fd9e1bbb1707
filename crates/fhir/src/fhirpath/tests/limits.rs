//! Limits: deep expressions, large inputs, runaway evaluations and malformed text never panic.

use serde_json::{Value, json};

use super::{eval, parse};
use crate::fhirpath::parser::MAX_DEPTH;
use crate::fhirpath::{FhirPathError, Variables};

/// Spawned Rust threads get 2 MiB of stack unless configured otherwise, and so do the worker
/// threads of a Tokio runtime.
const SMALL_STACK: usize = 2 * 1024 * 1024;

/// Builds `open` repeated `levels` times, then `inner`, then `close` repeated `levels` times.
fn nest(open: &str, inner: &str, close: &str, levels: usize) -> String {
    format!("{}{inner}{}", open.repeat(levels), close.repeat(levels))
}

/// Expressions as deep as the parser allows evaluate on a small stack without overflowing.
#[test]
fn deepest_expressions_fit_small_stack() {
    let depth = MAX_DEPTH - 1;
    let expressions = vec![
        format!("a{}", ".a".repeat(MAX_DEPTH - 1)),
        nest("where(", "true", ")", depth),
        nest("1 + (", "1", ")", depth),
        nest("-(", "1", ")", depth),
        nest("iif(true, ", "1", ", 0)", depth),
        nest("(", "true", ") and true", depth),
        nest("a.select(", "$this", ")", depth / 2),
        nest("exists(", "a.exists()", ")", depth / 2),
        vec!["1"; MAX_DEPTH].join(" | "),
        format!("{}true", "true implies ".repeat(depth)),
    ];
    let handle = std::thread::Builder::new()
        .stack_size(SMALL_STACK)
        .spawn(move || {
            let resource = json!({"a": {"a": {"a": true}}});
            for expression in &expressions {
                let parsed = parse(expression)
                    .unwrap_or_else(|error| panic!("{}…: {error}", &expression[..40]));
                if let Err(error) = parsed.evaluate(&resource, &Variables::new()) {
                    panic!("{}…: {error}", &expression[..40]);
                }
            }
        })
        .unwrap();
    handle.join().unwrap();
}

#[test]
fn too_deep_expressions_are_rejected() {
    for expression in [
        format!("a{}", ".a".repeat(MAX_DEPTH)),
        nest("where(", "true", ")", MAX_DEPTH),
        nest("(", "1", ")", 100_000),
        vec!["1"; 100_000].join(" | "),
        "-".repeat(100_000) + "1",
    ] {
        match parse(&expression) {
            Err(FhirPathError::Parse { message, .. }) => {
                assert_eq!(
                    message,
                    format!("expression nests deeper than {MAX_DEPTH} levels")
                );
            }
            other => panic!(
                "{}…: expected a depth error, got {other:?}",
                &expression[..20]
            ),
        }
    }
}

#[test]
fn large_arrays_navigate_linearly() {
    let elements: Vec<Value> = (0..100_000).map(|index| json!({"value": index})).collect();
    let resource = json!({"item": elements});
    assert_eq!(eval("item.value.count()", &resource), vec![json!(100_000)]);
    assert_eq!(
        eval("item.where(value = 99999).value", &resource),
        vec![json!(99_999)]
    );
    assert_eq!(eval("item[75000].value", &resource), vec![json!(75_000)]);
}

#[test]
fn nested_iteration_stops_at_step_budget() {
    let numbers: Vec<Value> = (0..1_000).map(|number| json!(number)).collect();
    let resource = json!({"n": numbers});
    let expression =
        parse("n.where(%resource.n.where(%resource.n.where(true).exists()).exists())").unwrap();
    match expression.evaluate(&resource, &Variables::new()) {
        Err(FhirPathError::Evaluation { message, .. }) => {
            assert!(message.contains("evaluation steps"), "{message}");
        }
        other => panic!("expected the step budget to stop evaluation, got {other:?}"),
    }
}

#[test]
fn unbounded_repeat_stops_at_step_budget() {
    let expression = parse("0.repeat($this + 1)").unwrap();
    let error = expression
        .evaluate(&Value::Null, &Variables::new())
        .unwrap_err();
    assert!(
        matches!(&error, FhirPathError::Evaluation { message, .. } if message.contains("evaluation steps")),
        "{error}"
    );
}

#[test]
fn unions_of_large_collections() {
    let strings: Vec<Value> = (0..1_000).map(|index| json!(format!("v{index}"))).collect();
    let resource = json!({"a": strings});
    assert_eq!(eval("(a | a).count()", &resource), vec![json!(1_000)]);
    assert_eq!(eval("a.distinct().count()", &resource), vec![json!(1_000)]);

    let strings: Vec<Value> = (0..10_000)
        .map(|index| json!(format!("v{index}")))
        .collect();
    let resource = json!({"a": strings});
    let error = parse("a | a")
        .unwrap()
        .evaluate(&resource, &Variables::new())
        .unwrap_err();
    assert!(
        matches!(&error, FhirPathError::Evaluation { position: 2, message } if message.contains("evaluation steps")),
        "{error}"
    );
}

#[test]
fn long_strings() {
    let text = "a".repeat(1_000_000);
    let resource = json!({"text": text});
    assert_eq!(eval("text.length()", &resource), vec![json!(1_000_000)]);
    assert_eq!(eval("text.contains('b')", &resource), vec![json!(false)]);
    assert_eq!(
        eval("text.replace('a', 'b').length()", &resource),
        vec![json!(1_000_000)]
    );
    let error = parse("text.replace('a', 'bb')")
        .unwrap()
        .evaluate(&resource, &Variables::new())
        .unwrap_err();
    assert!(matches!(error, FhirPathError::Evaluation { .. }), "{error}");
}

#[test]
fn long_expression_text() {
    let expression = format!("'{}'.length()", "x".repeat(1_000_000));
    assert_eq!(eval(&expression, &Value::Null), vec![json!(1_000_000)]);
}

/// Expressions cut at every character, and random sequences of fragments, either parse and
/// evaluate or fail with an error; none panics.
#[test]
fn malformed_expressions_do_not_panic() {
    let resource = json!({
        "resourceType": "Observation",
        "status": "final",
        "valueQuantity": {"value": 1},
        "subject": {"reference": "Patient/1"},
        "component": [{"valueString": "x"}, {"valueInteger": 2}]
    });
    let variables = Variables::from([("after".to_string(), resource.clone())]);
    let samples = [
        "%after.status = 'final' implies %before.status != 'final'",
        "Observation.subject.where(resolve() is Patient)",
        "(Observation.value as Quantity).value >= 0.5",
        "component.value.ofType(string) | component[1].value",
        "iif(status = 'x', @2020-01-01T10:00:00Z, @T10:00) ~ {}",
        "'a\\u00e9'.substring(1, 2) & `status` // comment",
    ];
    let check = |expression: &str| {
        if let Ok(parsed) = parse(expression) {
            let _ = parsed.evaluate(&resource, &variables);
            let _ = parsed.evaluate_bool(&resource, &variables);
        }
    };
    for sample in samples {
        let characters: Vec<char> = sample.chars().collect();
        for cut in 0..characters.len() {
            check(&characters[..cut].iter().collect::<String>());
            check(&characters[cut..].iter().collect::<String>());
        }
    }

    let fragments = [
        "a",
        ".",
        "(",
        ")",
        "[",
        "]",
        "0",
        "1.5",
        "'s'",
        "@2020",
        "@T10",
        "%after",
        "$this",
        "$index",
        "+",
        "-",
        "*",
        "/",
        "|",
        "=",
        "!=",
        "~",
        "<",
        ">=",
        "and",
        "or",
        "implies",
        "is",
        "as",
        "in",
        "contains",
        "div",
        "mod",
        "where(",
        "exists(",
        "iif(",
        "not()",
        ",",
        "{}",
        "`x`",
        "status",
        "value",
        "resolve()",
        "Patient",
        "ofType(",
        "@",
        "%",
        "'",
        "\\",
        "!",
        "\u{e9}",
    ];
    // A fixed xorshift sequence keeps the test reproducible without a random-number crate.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..20_000 {
        let mut expression = String::new();
        for _ in 0..(state % 12) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            expression.push_str(fragments[(state % fragments.len() as u64) as usize]);
        }
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        check(&expression);
    }
}
