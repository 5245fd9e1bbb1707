//! FHIR search over HTTP (`GET /fhir/R4/{type}?…`): parameters of clinical types, prefixes,
//! `_include` and `_revinclude`, `_sort`, `_total`, paging links, compartments, and the 400
//! responses to search input medgate rejects.

mod common;

use chrono::Duration;
use common::TestServer;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A caller of the FHIR API with a bearer token, sending `X-Medplum: extended` so responses
/// keep `meta.compartment`.
struct Api<'a> {
    server: &'a TestServer,
    token: String,
}

impl Api<'_> {
    async fn get(&self, path: &str) -> reqwest::Response {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            self.server.url(&format!("fhir/R4/{path}"))
        };
        self.server
            .http
            .get(url)
            .bearer_auth(&self.token)
            .header("x-medplum", "extended")
            .send()
            .await
            .unwrap()
    }

    async fn search(&self, path: &str) -> Value {
        let response = self.get(path).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "search {path}: {body}");
        assert_eq!(body["type"], "searchset", "search {path}");
        body
    }

    async fn create(&self, resource: Value) -> Value {
        let resource_type = resource["resourceType"].as_str().unwrap().to_string();
        let response = self
            .server
            .http
            .post(self.server.url(&format!("fhir/R4/{resource_type}")))
            .bearer_auth(&self.token)
            .header("x-medplum", "extended")
            .header("content-type", "application/fhir+json")
            .body(resource.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            status,
            StatusCode::CREATED,
            "create {resource_type}: {body}"
        );
        body
    }
}

async fn admin_api(server: &TestServer) -> Api<'_> {
    Api {
        server,
        token: server.admin_access_token().await,
    }
}

fn reference(resource: &Value) -> String {
    format!(
        "{}/{}",
        resource["resourceType"].as_str().unwrap(),
        resource["id"].as_str().unwrap()
    )
}

/// Returns the `Type/id` of each entry with the given `search.mode`, in Bundle order.
fn entries_with_mode(bundle: &Value, mode: &str) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["search"]["mode"] == mode)
        .map(|entry| reference(&entry["resource"]))
        .collect()
}

fn matches(bundle: &Value) -> Vec<String> {
    entries_with_mode(bundle, "match")
}

fn sorted(mut references: Vec<String>) -> Vec<String> {
    references.sort();
    references
}

fn link(bundle: &Value, relation: &str) -> Option<String> {
    bundle["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|link| link["relation"] == relation)
        .map(|link| link["url"].as_str().unwrap().to_string())
}

/// A Patient, a Practitioner, an Encounter and three Observations, two of them about the
/// Patient.
struct Clinic {
    patient: Value,
    other_patient: Value,
    practitioner: Value,
    encounter: Value,
    pulse: Value,
    weight: Value,
    other: Value,
}

async fn seed_clinic(api: &Api<'_>) -> Clinic {
    let patient = api
        .create(
            json!({"resourceType": "Patient", "name": [{"family": "Fisher", "given": ["Ada"]}],
            "gender": "female", "birthDate": "1980-04-02"}),
        )
        .await;
    let other_patient = api
        .create(
            json!({"resourceType": "Patient", "name": [{"family": "Archer"}],
            "gender": "male", "birthDate": "1975"}),
        )
        .await;
    let practitioner = api
        .create(json!({"resourceType": "Practitioner", "name": [{"family": "Quincy"}]}))
        .await;
    let encounter = api
        .create(json!({"resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": reference(&patient)},
            "period": {"start": "2020-05-01T09:00:00Z", "end": "2020-05-01T11:00:00Z"}}))
        .await;
    let observation = |code: &str, subject: &Value, date: &str| {
        json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": reference(subject)},
            "encounter": {"reference": reference(&encounter)},
            "performer": [{"reference": reference(&practitioner)}],
            "effectiveDateTime": date})
    };
    let pulse = api
        .create(observation("8867-4", &patient, "2020-05-01T10:00:00Z"))
        .await;
    let weight = api
        .create(observation("29463-7", &patient, "2021-02-03"))
        .await;
    let other = api
        .create(observation(
            "8867-4",
            &other_patient,
            "2020-05-01T10:30:00Z",
        ))
        .await;
    Clinic {
        patient,
        other_patient,
        practitioner,
        encounter,
        pulse,
        weight,
        other,
    }
}

#[tokio::test]
async fn observation_search_includes_references() {
    let server = TestServer::start().await;
    let api = admin_api(&server).await;
    let clinic = seed_clinic(&api).await;
    let patient = reference(&clinic.patient);

    let bundle = api
        .search(&format!(
            "Observation?subject={patient}&_include=Observation:patient\
            &_include=Observation:performer&_sort=-date&_total=accurate"
        ))
        .await;
    assert_eq!(
        matches(&bundle),
        [reference(&clinic.weight), reference(&clinic.pulse)]
    );
    assert_eq!(bundle["total"], 2);
    assert_eq!(
        sorted(entries_with_mode(&bundle, "include")),
        sorted(vec![patient.clone(), reference(&clinic.practitioner)]),
        "each included resource appears once"
    );
    let included_patient = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| {
            entry["search"]["mode"] == "include" && entry["resource"]["resourceType"] == "Patient"
        })
        .unwrap();
    assert_eq!(
        included_patient["fullUrl"],
        server.url(&format!("fhir/R4/{patient}")).as_str()
    );

    // A target type limits what an include follows.
    let bundle = api
        .search("Observation?code=http://loinc.org|8867-4&_include=Observation:performer:Patient")
        .await;
    assert_eq!(
        sorted(matches(&bundle)),
        sorted(vec![reference(&clinic.pulse), reference(&clinic.other)])
    );
    assert!(entries_with_mode(&bundle, "include").is_empty());
}

#[tokio::test]
async fn patient_search_revincludes() {
    let server = TestServer::start().await;
    let api = admin_api(&server).await;
    let clinic = seed_clinic(&api).await;
    let patient_id = clinic.patient["id"].as_str().unwrap();

    let bundle = api
        .search(&format!(
            "Patient?_id={patient_id}&_revinclude=Observation:subject&_revinclude=Encounter:patient"
        ))
        .await;
    assert_eq!(matches(&bundle), [reference(&clinic.patient)]);
    assert_eq!(
        sorted(entries_with_mode(&bundle, "include")),
        sorted(vec![
            reference(&clinic.pulse),
            reference(&clinic.weight),
            reference(&clinic.encounter),
        ])
    );

    // Encounters of the patient, with the patient and the observations made during them.
    let bundle = api
        .search(&format!(
            "Encounter?patient={patient_id}&date=2020-05-01&_include=Encounter:subject:Patient\
            &_revinclude=Observation:encounter"
        ))
        .await;
    assert_eq!(matches(&bundle), [reference(&clinic.encounter)]);
    assert_eq!(
        sorted(entries_with_mode(&bundle, "include")),
        sorted(vec![
            reference(&clinic.patient),
            reference(&clinic.pulse),
            reference(&clinic.weight),
            reference(&clinic.other),
        ])
    );
}

#[tokio::test]
async fn search_by_date_token_and_compartment() {
    let server = TestServer::start().await;
    let api = admin_api(&server).await;
    let clinic = seed_clinic(&api).await;
    let patient = reference(&clinic.patient);

    let cases = [
        (
            "Observation?date=2020-05",
            vec![&clinic.pulse, &clinic.other],
        ),
        (
            "Observation?date=gt2020-05-01T10:00:00Z",
            vec![&clinic.weight, &clinic.other],
        ),
        (
            "Observation?date=lt2021&code=8867-4",
            vec![&clinic.pulse, &clinic.other],
        ),
        (
            "Observation?code=http://loinc.org|29463-7",
            vec![&clinic.weight],
        ),
        ("Observation?code:not=8867-4", vec![&clinic.weight]),
        (
            "Patient?birthdate=ge1980&gender=female",
            vec![&clinic.patient],
        ),
        ("Patient?birthdate=sa1975", vec![&clinic.patient]),
        ("Patient?name:contains=rch", vec![&clinic.other_patient]),
        ("Patient?family:exact=Fisher", vec![&clinic.patient]),
        ("Patient?family:exact=fisher", vec![]),
        ("Encounter?class=AMB&date=2020-05-01T10:00:00Z", vec![]),
        (
            "Encounter?class=AMB&date=ge2020-05-01T10:00:00Z",
            vec![&clinic.encounter],
        ),
    ];
    for (path, expected) in cases {
        let bundle = api.search(path).await;
        assert_eq!(
            sorted(matches(&bundle)),
            sorted(expected.into_iter().map(reference).collect()),
            "{path}"
        );
    }

    // Resources of the patient's compartment carry it in meta.compartment and match
    // `_compartment`.
    assert_eq!(
        clinic.pulse["meta"]["compartment"],
        json!([{"reference": patient}])
    );
    assert_eq!(
        clinic.patient["meta"]["compartment"],
        json!([{"reference": patient}])
    );
    assert!(clinic.practitioner["meta"].get("compartment").is_none());
    let bundle = api
        .search(&format!("Observation?_compartment={patient}"))
        .await;
    assert_eq!(
        sorted(matches(&bundle)),
        sorted(vec![reference(&clinic.pulse), reference(&clinic.weight)])
    );
}

#[tokio::test]
async fn sort_total_and_paging_links() {
    let server = TestServer::start().await;
    let api = admin_api(&server).await;
    let mut created = Vec::new();
    for (family, birth) in [
        ("Young", "2001"),
        ("Baker", "1960-03"),
        ("Young", "1999-12-31"),
    ] {
        let patient = api
            .create(json!({"resourceType": "Patient", "name": [{"family": family}], "birthDate": birth}))
            .await;
        created.push(reference(&patient));
        server.clock.advance(Duration::seconds(10));
    }

    let bundle = api.search("Patient?_sort=-family,birthdate").await;
    assert_eq!(
        matches(&bundle),
        [created[2].clone(), created[0].clone(), created[1].clone()]
    );
    assert!(bundle.get("total").is_none(), "no total unless asked for");

    let bundle = api
        .search("Patient?_sort=-_lastUpdated&_count=1&_total=accurate")
        .await;
    assert_eq!(matches(&bundle), [created[2].clone()]);
    assert_eq!(bundle["total"], 3);
    let next = link(&bundle, "next").expect("a next link");
    for parameter in [
        "_sort=-_lastUpdated",
        "_count=1",
        "_total=accurate",
        "_offset=1",
    ] {
        assert!(next.contains(parameter), "{next} keeps {parameter}");
    }
    let second = api.search(&next).await;
    assert_eq!(matches(&second), [created[1].clone()]);
    assert_eq!(second["total"], 3);

    let first_time = common::start_time().to_rfc3339();
    let bundle = api
        .search(&format!(
            "Patient?_lastUpdated=gt{}&_sort=_lastUpdated",
            first_time.replace('+', "%2B")
        ))
        .await;
    assert_eq!(matches(&bundle), [created[1].clone(), created[2].clone()]);

    let bundle = api.search("Patient?_summary=count").await;
    assert_eq!(bundle["total"], 3);
    assert!(bundle["entry"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn includes_stay_in_the_callers_project() {
    let server = TestServer::start().await;
    let admin = admin_api(&server).await;
    let outside = admin
        .create(json!({"resourceType": "Patient", "name": [{"family": "Outside"}]}))
        .await;

    let member = server.create_member("owner@example.com", true).await;
    let tokens = server.member_tokens(&member, "openid").await;
    let api = Api {
        server: &server,
        token: tokens["access_token"].as_str().unwrap().to_string(),
    };
    let inside = api
        .create(json!({"resourceType": "Patient", "name": [{"family": "Inside"}]}))
        .await;
    let observation = |subject: &Value| {
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": reference(subject)}})
    };
    let about_outside = api.create(observation(&outside)).await;
    let about_inside = api.create(observation(&inside)).await;

    let bundle = api.search("Observation?_include=Observation:subject").await;
    assert_eq!(
        sorted(matches(&bundle)),
        sorted(vec![reference(&about_outside), reference(&about_inside)])
    );
    assert_eq!(entries_with_mode(&bundle, "include"), [reference(&inside)]);

    // The admin's observations are invisible to the member, whatever includes ask for.
    admin.create(observation(&inside)).await;
    let bundle = api
        .search(&format!(
            "Patient?_id={}&_revinclude=Observation:subject",
            inside["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        entries_with_mode(&bundle, "include"),
        [reference(&about_inside)]
    );
}

#[tokio::test]
async fn bad_search_input_rejected() {
    let server = TestServer::start().await;
    let api = admin_api(&server).await;
    let cases = [
        (
            "Patient?shoe-size=9&hat=1",
            "Unknown search parameters: shoe-size, hat",
        ),
        (
            "Patient?birthdate=1990-13-01",
            "Invalid value for birthdate: 1990-13-01",
        ),
        ("Patient?birthdate=ge", "Invalid value for birthdate: ge"),
        (
            "Patient?_lastUpdated=soon",
            "Invalid value for _lastUpdated: soon",
        ),
        (
            "ResearchStudy?recruitment-target=many",
            "Invalid value for recruitment-target: many",
        ),
        (
            "Observation?value-quantity=5",
            "Search parameter value-quantity of type quantity is not supported",
        ),
        (
            "Observation?code-value-quantity=x$5",
            "Search parameter code-value-quantity of type composite is not supported",
        ),
        (
            "Observation?date=ap2020",
            "Search prefix ap of date is not supported",
        ),
        (
            "Observation?subject.name=x",
            "Search parameter subject.name is not supported",
        ),
        (
            "Patient?gender:contains=f",
            "Unsupported search modifier: gender:contains",
        ),
        ("Patient?_sort=shoe", "Unknown search parameter: shoe"),
        ("Patient?_total=maybe", "Invalid value for _total: maybe"),
        (
            "Patient?_include=Patient:shoe",
            "Unknown search parameter: shoe",
        ),
        (
            "Patient?_include=Patient:gender",
            "Invalid value for _include: Patient:gender",
        ),
        (
            "Patient?_include:iterate=Patient:organization",
            "Unsupported search modifier: _include:iterate",
        ),
        (
            "Patient?_revinclude=Shoe:patient",
            "Unknown resource type: Shoe",
        ),
        ("Patient?_count=-1", "Invalid value for _count: -1"),
    ];
    for (path, message) in cases {
        let response = api.get(path).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        let outcome: Value = response.json().await.unwrap();
        assert_eq!(outcome["resourceType"], "OperationOutcome", "{path}");
        assert_eq!(outcome["issue"][0]["details"]["text"], message, "{path}");
    }
}
