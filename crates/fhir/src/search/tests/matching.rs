//! In-memory matching, case by case for every operation. The store suite runs the same kinds
//! of cases through SQL, so the two stay consistent.

use serde_json::{Value, json};

use super::parse;
use crate::search::matches;

fn check(resource: &Value, resource_type: &str, cases: &[(&[(&str, &str)], bool)]) {
    for (query, expected) in cases {
        let filters = parse(resource_type, query).filters;
        assert_eq!(
            matches(resource, &filters),
            *expected,
            "{resource_type} {query:?}"
        );
    }
}

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "id": "p1",
        "meta": {"project": "proj1", "lastUpdated": "2024-06-15T12:00:00.000Z"},
        "name": [{"family": "Smith", "given": ["Anna"]}],
        "gender": "female",
        "birthDate": "1990-05-20",
        "identifier": [{"system": "urn:mrn", "value": "42"}],
        "telecom": [{"system": "email", "value": "anna@example.com"}]
    })
}

#[test]
fn strings_and_ids() {
    check(
        &patient(),
        "Patient",
        &[
            (&[("name", "smi")], true),
            (&[("name", "SMITH")], true),
            (&[("name", "mith")], false),
            (&[("name:contains", "mit")], true),
            (&[("name:exact", "Smith")], true),
            (&[("name:exact", "smith")], false),
            (&[("_id", "p0,p1")], true),
            (&[("_id", "p2")], false),
            (&[("_id:not", "p2")], true),
            (&[("_project", "proj1")], true),
            (&[("_project", "Project/proj2")], false),
        ],
    );
}

#[test]
fn tokens() {
    check(
        &patient(),
        "Patient",
        &[
            (&[("gender", "female")], true),
            (&[("gender", "male")], false),
            (&[("gender:not", "male")], true),
            (&[("gender:not", "female")], false),
            (&[("identifier", "42")], true),
            (&[("identifier", "urn:mrn|42")], true),
            (&[("identifier", "urn:other|42")], false),
            (&[("identifier", "|42")], false),
            (&[("identifier", "urn:mrn|")], true),
            (&[("email", "ANNA@example.com")], true),
            (&[("language:not", "en")], true),
        ],
    );
    let coded = json!({"resourceType": "Observation",
        "code": {"coding": [{"code": "x"}], "text": "Heart rate"}});
    check(
        &coded,
        "Observation",
        &[
            (&[("code", "|x")], true),
            (&[("code:text", "heart")], true),
            (&[("code:text", "rate")], false),
        ],
    );
}

#[test]
fn dates_with_prefixes() {
    // birthDate 1990-05-20 covers [1990-05-20T00:00:00.000Z, 1990-05-20T23:59:59.999Z].
    check(
        &patient(),
        "Patient",
        &[
            (&[("birthdate", "1990")], true),
            (&[("birthdate", "1990-05")], true),
            (&[("birthdate", "1990-05-20")], true),
            (&[("birthdate", "1990-05-20T10:00")], false),
            (&[("birthdate", "ne1990-05-20T10:00")], true),
            (&[("birthdate", "ne1990")], false),
            (&[("birthdate", "gt1990-05-19")], true),
            (&[("birthdate", "gt1990-05-20")], false),
            (&[("birthdate", "ge1990-05-20")], true),
            (&[("birthdate", "lt1990-05-21")], true),
            (&[("birthdate", "lt1990-05-20")], false),
            (&[("birthdate", "le1990-05-20")], true),
            (&[("birthdate", "sa1990-05-19")], true),
            (&[("birthdate", "sa1990-05")], false),
            (&[("birthdate", "eb1990-05-21")], true),
            (&[("birthdate", "eb1990")], false),
            (&[("birthdate", "1991,1990")], true),
            (&[("_lastUpdated", "gt2024-06-15T11:59:59Z")], true),
            (&[("_lastUpdated", "lt2024-06-15")], false),
            (&[("_lastUpdated", "2024-06")], true),
        ],
    );
}

#[test]
fn periods_overlap_by_range() {
    let encounter = json!({"resourceType": "Encounter",
        "period": {"start": "2021-03-04T10:00:00Z", "end": "2021-03-06T10:00:00Z"}});
    check(
        &encounter,
        "Encounter",
        &[
            (&[("date", "2021-03")], true),
            (&[("date", "2021-03-05")], false),
            (&[("date", "ge2021-03-05")], true),
            (&[("date", "le2021-03-05")], true),
            (&[("date", "gt2021-03-06T10:00:00Z")], false),
            (&[("date", "sa2021-03-03")], true),
            (&[("date", "eb2021-03-07")], true),
            (&[("date", "eb2021-03-06")], false),
        ],
    );
    let open = json!({"resourceType": "Encounter", "period": {"start": "2021-03-04"}});
    check(
        &open,
        "Encounter",
        &[
            (&[("date", "gt2030")], true),
            (&[("date", "lt2021-03-04")], false),
        ],
    );
}

#[test]
fn numbers_with_prefixes() {
    let study = json!({"resourceType": "ResearchStudy", "recruitment": {"targetNumber": 100}});
    check(
        &study,
        "ResearchStudy",
        &[
            (&[("recruitment-target", "100")], true),
            (&[("recruitment-target", "100.4")], false),
            (&[("recruitment-target", "1e2")], true),
            (&[("recruitment-target", "ne100")], false),
            (&[("recruitment-target", "ne101")], true),
            (&[("recruitment-target", "gt99")], true),
            (&[("recruitment-target", "gt100")], false),
            (&[("recruitment-target", "ge100")], true),
            (&[("recruitment-target", "lt100")], false),
            (&[("recruitment-target", "le100")], true),
            (&[("recruitment-target", "sa99.5")], true),
            (&[("recruitment-target", "eb100.5")], true),
            (&[("recruitment-actual:missing", "true")], true),
        ],
    );
}

#[test]
fn references_and_compartments() {
    let observation = json!({"resourceType": "Observation",
        "subject": {"reference": "Patient/p1"}, "performer": [{"reference": "Practitioner/d1"}]});
    check(
        &observation,
        "Observation",
        &[
            (&[("subject", "Patient/p1")], true),
            (&[("subject", "p1")], true),
            (&[("patient", "p2")], false),
            (&[("subject:Group", "p1")], false),
            (&[("subject:not", "Patient/p2")], true),
            (&[("performer:missing", "false")], true),
            (&[("encounter:missing", "true")], true),
            (&[("_compartment", "Patient/p1")], true),
            (&[("_compartment", "Patient/p2")], false),
        ],
    );
}
