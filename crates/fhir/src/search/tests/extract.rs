//! Extraction of index rows from representative resources.

use serde_json::json;

use super::{rows, values};
use crate::search::{COMPARTMENT_CODE, patient_compartment};

#[test]
fn patient_names_and_contacts() {
    let patient = json!({
        "resourceType": "Patient",
        "id": "p1",
        "name": [{"given": ["Ada", "Maria"], "family": "Lovelace", "text": "Ada Lovelace"}],
        "telecom": [
            {"system": "email", "value": "Ada@Example.com"},
            {"system": "phone", "value": "555-0100"}
        ],
        "gender": "female",
        "birthDate": "1815-12",
        "identifier": [{"system": "urn:ssn", "value": "123", "type": {"text": "SSN"}}],
        "address": [{"city": "London", "line": ["12 St James's Square"]}],
        "generalPractitioner": [{"reference": "Practitioner/d1"}]
    });

    let mut names = values(&patient, "name");
    names.sort();
    assert_eq!(names, ["ada", "ada lovelace", "lovelace", "maria"]);
    let family = rows(&patient, "family");
    assert_eq!(family[0].value, "lovelace");
    assert_eq!(family[0].text.as_deref(), Some("Lovelace"));

    assert_eq!(values(&patient, "email"), ["ada@example.com"]);
    let email = &rows(&patient, "email")[0];
    assert_eq!(email.system.as_deref(), Some("email"));
    assert_eq!(values(&patient, "phone"), ["555-0100"]);
    assert_eq!(values(&patient, "gender"), ["female"]);

    let identifier = &rows(&patient, "identifier")[0];
    assert_eq!(identifier.value, "123");
    assert_eq!(identifier.system.as_deref(), Some("urn:ssn"));
    assert_eq!(identifier.text.as_deref(), Some("ssn"));

    let birthdate = &rows(&patient, "birthdate")[0];
    assert_eq!(birthdate.low.as_deref(), Some("1815-12-01T00:00:00.000Z"));
    assert_eq!(birthdate.high.as_deref(), Some("1815-12-31T23:59:59.999Z"));

    assert!(values(&patient, "address-city").contains(&"london".to_string()));
    assert_eq!(
        values(&patient, "general-practitioner"),
        ["Practitioner/d1"]
    );
    assert_eq!(values(&patient, COMPARTMENT_CODE), ["Patient/p1"]);
    assert!(
        values(&patient, "_id").is_empty(),
        "_id is a column, not rows"
    );
}

#[test]
fn observation_value_and_period() {
    let observation = json!({
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {
            "coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}],
            "text": "Pulse"
        },
        "subject": {"reference": "Patient/p1"},
        "performer": [{"reference": "Practitioner/d1"}, {"reference": "Patient/p2"}],
        "encounter": {"reference": "Encounter/e1/_history/3"},
        "effectivePeriod": {"start": "2020-05-01T10:00:00Z"},
        "valueQuantity": {"value": 72, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"}
    });

    let code = &rows(&observation, "code")[0];
    assert_eq!(code.value, "8867-4");
    assert_eq!(code.system.as_deref(), Some("http://loinc.org"));
    assert_eq!(
        code.text.as_deref(),
        Some("pulse"),
        "concept text wins over display"
    );

    let date = &rows(&observation, "date")[0];
    assert_eq!(date.low.as_deref(), Some("2020-05-01T10:00:00.000Z"));
    assert_eq!(
        date.high.as_deref(),
        Some(crate::search::MAX_INSTANT),
        "a period without end is open"
    );

    assert_eq!(values(&observation, "subject"), ["Patient/p1"]);
    assert_eq!(values(&observation, "patient"), ["Patient/p1"]);
    assert_eq!(values(&observation, "encounter"), ["Encounter/e1"]);
    assert!(
        values(&observation, "value-quantity").is_empty(),
        "quantity parameters are not indexed"
    );
    assert_eq!(
        values(&observation, COMPARTMENT_CODE),
        ["Patient/p1", "Patient/p2"]
    );
}

#[test]
fn encounter_period_and_class() {
    let encounter = json!({
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/p1"},
        "period": {"start": "2021-03-04", "end": "2021-03-05T12:00:00+01:00"},
        "length": {"value": 90, "unit": "min"}
    });
    let class = &rows(&encounter, "class")[0];
    assert_eq!(class.value, "AMB");
    assert_eq!(
        class.system.as_deref(),
        Some("http://terminology.hl7.org/CodeSystem/v3-ActCode")
    );
    let date = &rows(&encounter, "date")[0];
    assert_eq!(date.low.as_deref(), Some("2021-03-04T00:00:00.000Z"));
    assert_eq!(date.high.as_deref(), Some("2021-03-05T11:00:00.999Z"));
    assert_eq!(values(&encounter, "status"), ["finished"]);
    assert_eq!(patient_compartment(&encounter), ["Patient/p1"]);
}

#[test]
fn condition_onset_choice_types() {
    let with_date_time = json!({
        "resourceType": "Condition",
        "subject": {"reference": "Patient/p1"},
        "onsetDateTime": "2019-07",
        "clinicalStatus": {"coding": [{"code": "active"}]}
    });
    let onset = &rows(&with_date_time, "onset-date")[0];
    assert_eq!(onset.low.as_deref(), Some("2019-07-01T00:00:00.000Z"));
    assert_eq!(onset.high.as_deref(), Some("2019-07-31T23:59:59.999Z"));
    assert_eq!(values(&with_date_time, "clinical-status"), ["active"]);
    assert_eq!(rows(&with_date_time, "clinical-status")[0].system, None);

    let with_period = json!({
        "resourceType": "Condition",
        "subject": {"reference": "Patient/p1"},
        "onsetPeriod": {"start": "2018-01-01", "end": "2018-06-30"}
    });
    let onset = &rows(&with_period, "onset-date")[0];
    assert_eq!(onset.low.as_deref(), Some("2018-01-01T00:00:00.000Z"));
    assert_eq!(onset.high.as_deref(), Some("2018-06-30T23:59:59.999Z"));

    let with_string = json!({
        "resourceType": "Condition",
        "subject": {"reference": "Patient/p1"},
        "onsetString": "in childhood"
    });
    assert!(rows(&with_string, "onset-date").is_empty());
    assert_eq!(values(&with_string, "onset-info"), ["in childhood"]);
}

#[test]
fn medication_request_subject_reference() {
    let for_patient = json!({
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "requester": {"reference": "Practitioner/d1"},
        "authoredOn": "2022-02-02T08:00:00Z",
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1049502"}]}
    });
    assert_eq!(values(&for_patient, "subject"), ["Patient/p1"]);
    assert_eq!(values(&for_patient, "patient"), ["Patient/p1"]);
    assert_eq!(values(&for_patient, "requester"), ["Practitioner/d1"]);
    assert_eq!(values(&for_patient, "code"), ["1049502"]);
    assert_eq!(patient_compartment(&for_patient), ["Patient/p1"]);

    let for_group = json!({
        "resourceType": "MedicationRequest",
        "subject": {"reference": "Group/g1"}
    });
    assert_eq!(values(&for_group, "subject"), ["Group/g1"]);
    assert!(
        values(&for_group, "patient").is_empty(),
        "`patient` keeps only references to Patients"
    );
    assert!(patient_compartment(&for_group).is_empty());
}

#[test]
fn medgate_account_parameters() {
    let user = json!({
        "resourceType": "User",
        "email": "Alice@Example.com",
        "project": {"reference": "Project/p1"},
        "externalId": "ext-1"
    });
    assert_eq!(values(&user, "email"), ["alice@example.com"]);
    assert_eq!(values(&user, "project"), ["Project/p1"]);
    assert_eq!(values(&user, "external-id"), ["ext-1"]);

    let membership = json!({
        "resourceType": "ProjectMembership",
        "user": {"reference": "User/1"},
        "project": {"reference": "Project/2"},
        "profile": {"reference": "Practitioner/3"},
        "access": [{"policy": {"reference": "AccessPolicy/4"}}]
    });
    assert_eq!(values(&membership, "user"), ["User/1"]);
    assert_eq!(values(&membership, "project"), ["Project/2"]);
    assert_eq!(values(&membership, "profile"), ["Practitioner/3"]);
    assert_eq!(values(&membership, "profile-type"), ["Practitioner"]);
    assert_eq!(values(&membership, "access-policy"), ["AccessPolicy/4"]);

    let login = json!({"resourceType": "Login", "user": {"reference": "User/1"},
        "codeHash": "abc", "cookieHash": "def"});
    assert_eq!(values(&login, "code-hash"), ["abc"]);
    assert_eq!(values(&login, "cookie-hash"), ["def"]);

    let key = json!({"resourceType": "JsonWebKey", "active": true});
    assert_eq!(values(&key, "active"), ["true"]);
}

#[test]
fn numbers_and_uris() {
    let study = json!({
        "resourceType": "ResearchStudy",
        "recruitment": {"targetNumber": 120, "actualNumber": 97},
        "status": "active"
    });
    let target = &rows(&study, "recruitment-target")[0];
    assert_eq!(target.number, Some(120.0));
    assert_eq!(target.value, "120");

    let questionnaire = json!({"resourceType": "Questionnaire", "url": "http://example.org/q/1"});
    assert_eq!(values(&questionnaire, "url"), ["http://example.org/q/1"]);
}

#[test]
fn unknown_type_has_no_rows() {
    assert!(crate::search::index_values(&json!({"resourceType": "Shoe", "name": "x"})).is_empty());
    assert!(crate::search::index_values(&json!({"name": "x"})).is_empty());
}
