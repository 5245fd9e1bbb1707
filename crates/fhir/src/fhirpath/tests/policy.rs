//! Access-policy write constraints: boolean expressions over `%before` and `%after`.

use serde_json::{Value, json};

use super::{eval_bool_with, parse};
use crate::fhirpath::Variables;

/// Evaluates a write constraint the way access-policy enforcement does: no focus resource,
/// the stored version as `%before` (`null` on create) and the new one as `%after`.
fn constraint(expression: &str, before: Value, after: Value) -> Option<bool> {
    eval_bool_with(
        expression,
        &Value::Null,
        &[("before", before), ("after", after)],
    )
}

#[test]
fn final_status_is_frozen() {
    let expression = "%after.status = 'final' implies %before.status != 'final'";
    let cases = [
        (
            json!({"status": "preliminary"}),
            json!({"status": "final"}),
            Some(true),
        ),
        (
            json!({"status": "final"}),
            json!({"status": "final"}),
            Some(false),
        ),
        (
            json!({"status": "final"}),
            json!({"status": "amended"}),
            Some(true),
        ),
        (json!({"status": "preliminary"}), json!({}), Some(true)),
        // On create `%before.status` is empty, so `!=` is empty and so is `true implies {}`.
        (Value::Null, json!({"status": "final"}), None),
        (Value::Null, json!({"status": "registered"}), Some(true)),
    ];
    for (before, after, expected) in cases {
        assert_eq!(
            constraint(expression, before.clone(), after.clone()),
            expected,
            "{before} -> {after}"
        );
    }
}

#[test]
fn final_resource_cannot_change() {
    let expression = "%before.exists() implies %before.status != 'final'";
    let cases = [
        (Value::Null, Some(true)),
        (json!({"status": "final"}), Some(false)),
        (json!({"status": "preliminary"}), Some(true)),
        (json!({}), None),
    ];
    for (before, expected) in cases {
        assert_eq!(
            constraint(expression, before.clone(), json!({"status": "final"})),
            expected,
            "{before}"
        );
    }
}

#[test]
fn subject_must_be_own_patient() {
    let expression = parse("%after.subject.reference = %patient").unwrap();
    let variables = |subject: Value| -> Variables {
        Variables::from([
            ("after".to_string(), json!({"subject": subject})),
            ("patient".to_string(), json!("Patient/123")),
        ])
    };
    let cases = [
        (json!({"reference": "Patient/123"}), Some(true)),
        (json!({"reference": "Patient/456"}), Some(false)),
        (json!({"display": "no reference"}), None),
    ];
    for (subject, expected) in cases {
        assert_eq!(
            expression.evaluate_bool(&Value::Null, &variables(subject.clone())),
            Ok(expected),
            "{subject}"
        );
    }
}

#[test]
fn locked_tag_blocks_writes() {
    let expression = "%after.meta.tag.where(code = 'locked').empty()";
    let cases = [
        (json!({"meta": {"tag": [{"code": "locked"}]}}), Some(false)),
        (
            json!({"meta": {"tag": [{"code": "a"}, {"code": "locked"}]}}),
            Some(false),
        ),
        (json!({"meta": {"tag": [{"code": "open"}]}}), Some(true)),
        (json!({"meta": {}}), Some(true)),
        (json!({}), Some(true)),
    ];
    for (after, expected) in cases {
        assert_eq!(
            constraint(expression, Value::Null, after.clone()),
            expected,
            "{after}"
        );
    }
}

#[test]
fn effective_date_lower_bound() {
    let expression = "%after.effectiveDateTime >= @2020-01-01";
    let cases = [
        (
            json!({"effectiveDateTime": "2021-03-04T10:00:00Z"}),
            Some(true),
        ),
        (
            json!({"effectiveDateTime": "2019-12-31T23:00:00Z"}),
            Some(false),
        ),
        (json!({"effectiveDateTime": "2020-01-01"}), Some(true)),
        (json!({"effectiveDateTime": "2020-02"}), Some(true)),
        // Same day but finer precision: the order is unknown (N1 §6.2).
        (json!({"effectiveDateTime": "2020-01-01T10:00:00Z"}), None),
        (json!({"effectiveDateTime": "2020"}), None),
        (json!({}), None),
    ];
    for (after, expected) in cases {
        assert_eq!(
            constraint(expression, Value::Null, after.clone()),
            expected,
            "{after}"
        );
    }
}

#[test]
fn effective_date_through_choice_element() {
    let expression = "%after.effective >= @2020-01-01T00:00:00Z";
    let after = json!({"effectiveDateTime": "2020-01-01T01:00:00+01:00"});
    assert_eq!(constraint(expression, Value::Null, after), Some(true));
    let after = json!({"effectiveDateTime": "2019-12-31T23:59:59Z"});
    assert_eq!(constraint(expression, Value::Null, after), Some(false));
}

#[test]
fn status_in_union() {
    let expression = "%after.status in ('draft' | 'active')";
    let cases = [
        (json!({"status": "draft"}), Some(true)),
        (json!({"status": "active"}), Some(true)),
        (json!({"status": "revoked"}), Some(false)),
        (json!({}), None),
    ];
    for (after, expected) in cases {
        assert_eq!(
            constraint(expression, Value::Null, after.clone()),
            expected,
            "{after}"
        );
    }
}

#[test]
fn status_in_union_on_focus_resource() {
    let resource = json!({"resourceType": "Task", "status": "ready"});
    assert_eq!(
        eval_bool_with("status in ('ready' | 'requested')", &resource, &[]),
        Some(true)
    );
    assert_eq!(
        eval_bool_with("status in ('draft' | 'requested')", &resource, &[]),
        Some(false)
    );
    assert_eq!(
        eval_bool_with("('draft' | 'ready') contains status", &resource, &[]),
        Some(true)
    );
}

#[test]
fn not_of_comparison() {
    let cases = [
        (
            "(%after.status = 'final').not()",
            json!({"status": "final"}),
            Some(false),
        ),
        (
            "(%after.status = 'final').not()",
            json!({"status": "draft"}),
            Some(true),
        ),
        ("(%after.status = 'final').not()", json!({}), None),
        ("%after.active.not()", json!({"active": false}), Some(true)),
        ("%after.active.not()", json!({}), None),
        (
            "%after.exists() and %after.active.not()",
            json!({"active": true}),
            Some(false),
        ),
    ];
    for (expression, after, expected) in cases {
        assert_eq!(
            constraint(expression, Value::Null, after.clone()),
            expected,
            "{expression} on {after}"
        );
    }
}

#[test]
fn identity_fields_cannot_change() {
    let expression = "%before.exists() implies (%after.identifier = %before.identifier)";
    let same = json!({"identifier": [{"system": "s", "value": "1"}]});
    let changed = json!({"identifier": [{"system": "s", "value": "2"}]});
    assert_eq!(
        constraint(expression, same.clone(), same.clone()),
        Some(true)
    );
    assert_eq!(constraint(expression, same.clone(), changed), Some(false));
    assert_eq!(constraint(expression, Value::Null, same), Some(true));
}

#[test]
fn focus_resource_variables() {
    let resource = json!({"resourceType": "Observation", "status": "final"});
    let cases = [
        ("%resource.status = 'final'", Some(true)),
        ("%context.status = 'final'", Some(true)),
        ("%rootResource.status = 'final'", Some(true)),
        ("%resource.status = %after.status", Some(false)),
    ];
    for (expression, expected) in cases {
        let result = eval_bool_with(
            expression,
            &resource,
            &[("after", json!({"status": "draft"}))],
        );
        assert_eq!(result, expected, "{expression}");
    }
}

#[test]
fn caller_variables_override_defaults() {
    let resource = json!({"resourceType": "Observation", "status": "final"});
    let result = eval_bool_with(
        "%resource.status = 'draft'",
        &resource,
        &[("resource", json!({"status": "draft"}))],
    );
    assert_eq!(result, Some(true));
}

#[test]
fn non_boolean_single_result_is_true() {
    // N1 §4.5: a single non-boolean item read as a boolean is true.
    let after = json!({"meta": {"tag": [{"code": "locked"}]}});
    assert_eq!(
        constraint("%after.meta.tag.where(code = 'locked')", Value::Null, after),
        Some(true)
    );
    assert_eq!(constraint("%after.meta.tag", Value::Null, json!({})), None);
}
