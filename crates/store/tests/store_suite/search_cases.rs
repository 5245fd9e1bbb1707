//! Search cases of the store suite: every filter kind, prefix and modifier, `_sort`, the
//! count behind `_total`, access restrictions, and agreement with in-memory matching.

use std::sync::Arc;

use medgate_fhir::search::{Filter, FilterOp, Restriction, SearchRequest, matches};
use medgate_store::{SearchScope, Store};
use serde_json::{Value, json};

use super::{create, id_of, ids, parse, search_ids};

async fn search_scoped(
    store: &dyn Store,
    request: &SearchRequest,
    project_id: Option<&str>,
    restriction: Option<&Restriction>,
) -> Vec<String> {
    let found = store
        .search(SearchScope {
            request,
            project_id,
            restriction,
        })
        .await
        .unwrap_or_else(|error| panic!("search {request:?}: {error}"));
    ids(&found)
}

async fn count_scoped(
    store: &dyn Store,
    request: &SearchRequest,
    project_id: Option<&str>,
    restriction: Option<&Restriction>,
) -> u64 {
    store
        .count(SearchScope {
            request,
            project_id,
            restriction,
        })
        .await
        .unwrap_or_else(|error| panic!("count {request:?}: {error}"))
}

/// A query and the indexes, into the created resources, of those it finds in order.
type FindCase<'a> = (&'a [(&'a str, &'a str)], &'a [usize]);

/// Asserts, query by query, which of `resources` a search finds, in creation order.
async fn assert_finds(
    store: &dyn Store,
    resource_type: &str,
    resources: &[Value],
    cases: &[FindCase<'_>],
) {
    for (query, expected) in cases {
        let expected: Vec<String> = expected
            .iter()
            .map(|index| id_of(&resources[*index]).to_string())
            .collect();
        assert_eq!(
            search_ids(store, resource_type, query).await,
            expected,
            "{resource_type} {query:?}"
        );
    }
}

fn observation(code: Value, effective: Value, subject: &str) -> Value {
    let mut resource = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": code,
        "subject": {"reference": subject},
    });
    for (key, value) in effective.as_object().expect("effective is an object") {
        resource[key] = value.clone();
    }
    resource
}

fn loinc(code: &str, text: &str) -> Value {
    json!({"coding": [{"system": "http://loinc.org", "code": code}], "text": text})
}

pub(crate) async fn search_token_forms(store: Arc<dyn Store>) {
    let heart = create(
        &*store,
        observation(loinc("8867-4", "Heart rate"), json!({}), "Patient/p1"),
        1,
    )
    .await;
    let local = create(
        &*store,
        observation(
            json!({"coding": [{"code": "8867-4"}], "text": "Local pulse"}),
            json!({}),
            "Patient/p1",
        ),
        2,
    )
    .await;
    let weight = create(
        &*store,
        observation(loinc("29463-7", "Body weight"), json!({}), "Patient/p2"),
        3,
    )
    .await;
    let all = [heart, local, weight];

    assert_finds(
        &*store,
        "Observation",
        &all,
        &[
            (&[("code", "8867-4")], &[0, 1]),
            (&[("code", "http://loinc.org|8867-4")], &[0]),
            (&[("code", "|8867-4")], &[1]),
            (&[("code", "http://loinc.org|")], &[0, 2]),
            (&[("code", "http://snomed.info/sct|8867-4")], &[]),
            (&[("code", "http://loinc.org|29463-7,|8867-4")], &[1, 2]),
            (&[("code:not", "8867-4")], &[2]),
            (&[("code:not", "http://loinc.org|8867-4")], &[1, 2]),
            (&[("code:text", "HEART")], &[0]),
            (&[("code:text", "body w")], &[2]),
            (&[("code:text", "rate")], &[]),
            (&[("status", "final")], &[0, 1, 2]),
        ],
    )
    .await;
}

pub(crate) async fn search_string_modifiers(store: Arc<dyn Store>) {
    let patient = |family: &str| json!({"resourceType": "Patient", "name": [{"family": family}]});
    let all = [
        create(&*store, patient("McDonald"), 1).await,
        create(&*store, patient("Donaldson"), 2).await,
        create(&*store, patient("Mac%Don"), 3).await,
    ];
    assert_finds(
        &*store,
        "Patient",
        &all,
        &[
            (&[("family", "mcd")], &[0]),
            (&[("family:contains", "DON")], &[0, 1, 2]),
            (&[("family:contains", "donald")], &[0, 1]),
            (&[("family:contains", "%d")], &[2]),
            (&[("family:exact", "McDonald")], &[0]),
            (&[("family:exact", "mcdonald")], &[]),
            (&[("family:exact", "McDon")], &[]),
        ],
    )
    .await;
}

pub(crate) async fn search_reference_forms(store: Arc<dyn Store>) {
    let request = |subject: Option<&str>| {
        let mut resource =
            json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order"});
        if let Some(subject) = subject {
            resource["subject"] = json!({"reference": subject});
        }
        resource
    };
    let all = [
        create(&*store, request(Some("Patient/p1")), 1).await,
        create(&*store, request(Some("Group/p1")), 2).await,
        create(&*store, request(Some("Patient/p2/_history/4")), 3).await,
        create(&*store, request(None), 4).await,
    ];
    assert_finds(
        &*store,
        "MedicationRequest",
        &all,
        &[
            (&[("subject", "Patient/p1")], &[0]),
            (&[("subject", "p1")], &[0, 1]),
            (&[("subject:Group", "p1")], &[1]),
            (&[("patient", "p1")], &[0]),
            (&[("subject", "Patient/p2")], &[2]),
            (&[("subject:missing", "true")], &[3]),
            (&[("subject:missing", "false")], &[0, 1, 2]),
            (&[("subject:not", "Patient/p1")], &[1, 2, 3]),
        ],
    )
    .await;
}

pub(crate) async fn search_uri_exact(store: Arc<dyn Store>) {
    let questionnaire =
        |url: &str| json!({"resourceType": "Questionnaire", "status": "active", "url": url});
    let all = [
        create(&*store, questionnaire("http://example.org/q/1"), 1).await,
        create(&*store, questionnaire("http://example.org/q/10"), 2).await,
    ];
    assert_finds(
        &*store,
        "Questionnaire",
        &all,
        &[
            (&[("url", "http://example.org/q/1")], &[0]),
            (&[("url", "http://example.org/q")], &[]),
            (
                &[("url", "http://example.org/q/1,http://example.org/q/10")],
                &[0, 1],
            ),
        ],
    )
    .await;
}

pub(crate) async fn search_date_prefixes(store: Arc<dyn Store>) {
    let at = |effective: Value| observation(loinc("1", "x"), effective, "Patient/p1");
    let all = [
        // [2020-05-01T10:00:00.000, 2020-05-01T10:00:00.999]
        create(
            &*store,
            at(json!({"effectiveDateTime": "2020-05-01T10:00:00Z"})),
            1,
        )
        .await,
        // the whole of May 2020
        create(&*store, at(json!({"effectiveDateTime": "2020-05"})), 2).await,
        // 2020-04-30 to 2020-05-02
        create(
            &*store,
            at(json!({"effectivePeriod": {"start": "2020-04-30", "end": "2020-05-02"}})),
            3,
        )
        .await,
        // from 2021 on, open-ended
        create(
            &*store,
            at(json!({"effectivePeriod": {"start": "2021-01-01T00:00:00Z"}})),
            4,
        )
        .await,
        // no date at all
        create(&*store, at(json!({})), 5).await,
    ];
    assert_finds(
        &*store,
        "Observation",
        &all,
        &[
            (&[("date", "2020")], &[0, 1, 2]),
            (&[("date", "2020-05")], &[0, 1]),
            (&[("date", "2020-05-01")], &[0]),
            (&[("date", "eq2020-05-01T10:00:00Z")], &[0]),
            (&[("date", "ne2020-05")], &[2, 3]),
            (&[("date", "gt2020-05-01")], &[1, 2, 3]),
            (&[("date", "gt2020-05")], &[3]),
            (&[("date", "ge2020-05")], &[0, 1, 3]),
            (&[("date", "lt2020-05-01")], &[2]),
            (&[("date", "le2020-05-01")], &[0, 2]),
            (&[("date", "sa2020-04-30")], &[0, 1, 3]),
            (&[("date", "sa2020")], &[3]),
            (&[("date", "eb2020-05-02")], &[0]),
            (&[("date", "eb2021")], &[0, 1, 2]),
            (&[("date", "2030,2020-05-01")], &[0]),
            (&[("date", "ge2020-05-01T12:00+02:00")], &[0, 1, 2, 3]),
            (
                &[("date", "gt2020-04-30"), ("date", "lt2020-05-02")],
                &[0, 1, 2],
            ),
            (&[("date:missing", "true")], &[4]),
        ],
    )
    .await;
}

pub(crate) async fn search_number_prefixes(store: Arc<dyn Store>) {
    let study = |target: f64| {
        json!({"resourceType": "ResearchStudy", "status": "active",
        "recruitment": {"targetNumber": target}})
    };
    let all = [
        create(&*store, study(99.0), 1).await,
        create(&*store, study(100.0), 2).await,
        create(&*store, study(100.4), 3).await,
        create(&*store, study(250.0), 4).await,
    ];
    assert_finds(
        &*store,
        "ResearchStudy",
        &all,
        &[
            (&[("recruitment-target", "100")], &[1, 2]),
            (&[("recruitment-target", "100.0")], &[1]),
            (&[("recruitment-target", "1e2")], &[0, 1, 2]),
            (&[("recruitment-target", "ne100")], &[0, 3]),
            (&[("recruitment-target", "gt100")], &[2, 3]),
            (&[("recruitment-target", "ge100")], &[1, 2, 3]),
            (&[("recruitment-target", "lt100")], &[0]),
            (&[("recruitment-target", "le100")], &[0, 1]),
            (&[("recruitment-target", "sa200")], &[3]),
            (&[("recruitment-target", "eb99.5")], &[0]),
            (&[("recruitment-target", "99,250")], &[0, 3]),
        ],
    )
    .await;
}

pub(crate) async fn search_last_updated(store: Arc<dyn Store>) {
    // `create` writes `lastUpdated` as 2025-01-01T00:MM:SS.000Z for the given second.
    let patient = json!({"resourceType": "Patient"});
    let all = [
        create(&*store, patient.clone(), 10).await,
        create(&*store, patient.clone(), 70).await,
        create(&*store, patient, 130).await,
    ];
    assert_finds(
        &*store,
        "Patient",
        &all,
        &[
            (&[("_lastUpdated", "2025-01-01")], &[0, 1, 2]),
            (&[("_lastUpdated", "2025-01-01T00:01")], &[1]),
            (&[("_lastUpdated", "gt2025-01-01T00:00:10Z")], &[1, 2]),
            (&[("_lastUpdated", "ge2025-01-01T00:00:10Z")], &[0, 1, 2]),
            (&[("_lastUpdated", "lt2025-01-01T00:01:10Z")], &[0]),
            (&[("_lastUpdated", "le2025-01-01T00:01:10Z")], &[0, 1]),
            (&[("_lastUpdated", "ne2025-01-01T00:01")], &[0, 2]),
            (&[("_lastUpdated", "sa2025-01-01T00:01")], &[2]),
            (&[("_lastUpdated", "eb2025-01-01T00:01")], &[0]),
            (&[("_lastUpdated", "2024")], &[]),
        ],
    )
    .await;
}

pub(crate) async fn search_sort_keys(store: Arc<dyn Store>) {
    let patient = |family: &str, birth: Option<&str>| {
        let mut resource = json!({"resourceType": "Patient", "name": [{"family": family}]});
        if let Some(birth) = birth {
            resource["birthDate"] = json!(birth);
        }
        resource
    };
    let all = [
        create(&*store, patient("Baker", Some("1990-01-01")), 1).await,
        create(&*store, patient("Adams", Some("1985-06")), 2).await,
        create(&*store, patient("Baker", Some("1970")), 3).await,
        create(&*store, patient("Clark", None), 4).await,
    ];
    assert_finds(
        &*store,
        "Patient",
        &all,
        &[
            (&[("_sort", "family")], &[1, 0, 2, 3]),
            (&[("_sort", "-family")], &[3, 0, 2, 1]),
            (&[("_sort", "family,birthdate")], &[1, 2, 0, 3]),
            (&[("_sort", "family,-birthdate")], &[1, 0, 2, 3]),
            (&[("_sort", "birthdate")], &[2, 1, 0, 3]),
            (&[("_sort", "-birthdate")], &[0, 1, 2, 3]),
            (&[("_sort", "-_lastUpdated")], &[3, 2, 1, 0]),
            (
                &[("_sort", "family"), ("_count", "2"), ("_offset", "1")],
                &[0, 2],
            ),
        ],
    )
    .await;

    let mut by_id: Vec<String> = all
        .iter()
        .map(|resource| id_of(resource).to_string())
        .collect();
    by_id.sort();
    assert_eq!(
        search_ids(&*store, "Patient", &[("_sort", "_id")]).await,
        by_id
    );
    by_id.reverse();
    assert_eq!(
        search_ids(&*store, "Patient", &[("_sort", "-_id")]).await,
        by_id
    );

    let study = |target: f64| {
        json!({"resourceType": "ResearchStudy", "status": "active",
        "recruitment": {"targetNumber": target}})
    };
    let studies = [
        create(&*store, study(5.0), 5).await,
        create(&*store, study(-1.5), 6).await,
        create(&*store, study(30.0), 7).await,
    ];
    assert_finds(
        &*store,
        "ResearchStudy",
        &studies,
        &[
            (&[("_sort", "recruitment-target")], &[1, 0, 2]),
            (&[("_sort", "-recruitment-target")], &[2, 0, 1]),
        ],
    )
    .await;
}

pub(crate) async fn search_count_matches(store: Arc<dyn Store>) {
    let patient = |gender: &str, project: &str| {
        json!({"resourceType": "Patient",
        "gender": gender, "meta": {"project": project}})
    };
    create(&*store, patient("female", "p1"), 1).await;
    create(&*store, patient("male", "p1"), 2).await;
    create(&*store, patient("female", "p1"), 3).await;
    create(&*store, patient("female", "p2"), 4).await;

    let everyone = parse("Patient", &[("_count", "1")]);
    assert_eq!(count_scoped(&*store, &everyone, None, None).await, 4);
    assert_eq!(count_scoped(&*store, &everyone, Some("p1"), None).await, 3);
    let women = parse(
        "Patient",
        &[("gender", "female"), ("_count", "1"), ("_offset", "2")],
    );
    assert_eq!(count_scoped(&*store, &women, None, None).await, 3);
    assert_eq!(count_scoped(&*store, &women, Some("p2"), None).await, 1);
    let men_only = Restriction::AnyOf(vec![parse("Patient", &[("gender", "male")]).filters]);
    assert_eq!(
        count_scoped(&*store, &women, None, Some(&men_only)).await,
        0
    );
    assert_eq!(
        count_scoped(&*store, &everyone, None, Some(&men_only)).await,
        1
    );
    assert_eq!(
        count_scoped(&*store, &everyone, None, Some(&Restriction::Nothing)).await,
        0
    );
    assert_eq!(
        count_scoped(&*store, &parse("Practitioner", &[]), None, None).await,
        0
    );
}

pub(crate) async fn search_restriction_kinds(store: Arc<dyn Store>) {
    let observation = |code: Value, date: &str, subject: &str, project: &str| {
        let mut resource = self::observation(code, json!({"effectiveDateTime": date}), subject);
        resource["meta"] = json!({"project": project});
        resource
    };
    let all = [
        create(
            &*store,
            observation(loinc("a", "x"), "2020-01-01", "Patient/p1", "proj1"),
            1,
        )
        .await,
        create(
            &*store,
            observation(loinc("b", "x"), "2021-01-01", "Patient/p2", "proj1"),
            2,
        )
        .await,
        create(
            &*store,
            observation(
                json!({"coding": [{"code": "a"}]}),
                "2022-01-01",
                "Patient/p1",
                "proj2",
            ),
            3,
        )
        .await,
    ];
    let filters = |query: &[(&str, &str)]| parse("Observation", query).filters;
    let cases: Vec<(Restriction, Vec<usize>)> = vec![
        (Restriction::Everything, vec![0, 1, 2]),
        (Restriction::Nothing, vec![]),
        (Restriction::AnyOf(vec![]), vec![]),
        (Restriction::AnyOf(vec![vec![]]), vec![0, 1, 2]),
        (
            Restriction::AnyOf(vec![filters(&[("_compartment", "Patient/p1")])]),
            vec![0, 2],
        ),
        (
            Restriction::AnyOf(vec![filters(&[("code", "http://loinc.org|a")])]),
            vec![0],
        ),
        (
            Restriction::AnyOf(vec![filters(&[("code:not", "a")])]),
            vec![1],
        ),
        (
            Restriction::AnyOf(vec![filters(&[("date", "ge2021")])]),
            vec![1, 2],
        ),
        (
            Restriction::AnyOf(vec![filters(&[("_project", "proj2")])]),
            vec![2],
        ),
        (
            Restriction::AnyOf(vec![filters(&[("_lastUpdated", "lt2025-01-01T00:00:02Z")])]),
            vec![0],
        ),
        (
            Restriction::AnyOf(vec![filters(&[("encounter:missing", "true")])]),
            vec![0, 1, 2],
        ),
        (
            Restriction::AnyOf(vec![
                filters(&[("subject", "Patient/p2")]),
                filters(&[("code", "a"), ("date", "2022")]),
            ]),
            vec![1, 2],
        ),
        (
            Restriction::AnyOf(vec![filters(&[
                ("_compartment", "Patient/p1"),
                ("_project", "proj1"),
            ])]),
            vec![0],
        ),
    ];
    let request = parse("Observation", &[]);
    for (restriction, expected) in cases {
        let expected: Vec<String> = expected
            .iter()
            .map(|index| id_of(&all[*index]).to_string())
            .collect();
        assert_eq!(
            search_scoped(&*store, &request, None, Some(&restriction)).await,
            expected,
            "{restriction:?}"
        );
        assert_eq!(
            count_scoped(&*store, &request, None, Some(&restriction)).await,
            expected.len() as u64,
            "count {restriction:?}"
        );
        // The restriction narrows the request's own filters; it never widens them.
        let narrowed = parse("Observation", &[("subject", "Patient/p1")]);
        let both: Vec<String> = expected
            .iter()
            .filter(|id| {
                all.iter().any(|resource| {
                    id_of(resource) == id.as_str()
                        && resource["subject"]["reference"] == "Patient/p1"
                })
            })
            .cloned()
            .collect();
        assert_eq!(
            search_scoped(&*store, &narrowed, None, Some(&restriction)).await,
            both,
            "subject=Patient/p1 with {restriction:?}"
        );
    }
}

pub(crate) async fn search_patient_compartment(store: Arc<dyn Store>) {
    let patient = create(&*store, json!({"resourceType": "Patient"}), 1).await;
    let patient_ref = format!("Patient/{}", id_of(&patient));
    let own = create(
        &*store,
        observation(loinc("a", "x"), json!({}), &patient_ref),
        2,
    )
    .await;
    let performed = json!({"resourceType": "Observation", "status": "final", "code": loinc("b", "y"),
        "subject": {"reference": "Group/g1"}, "performer": [{"reference": patient_ref}]});
    let performed = create(&*store, performed, 3).await;
    create(
        &*store,
        observation(loinc("a", "x"), json!({}), "Patient/other"),
        4,
    )
    .await;

    let in_compartment = [("_compartment", patient_ref.as_str())];
    assert_eq!(
        search_ids(&*store, "Observation", &in_compartment).await,
        vec![id_of(&own), id_of(&performed)]
    );
    assert_eq!(
        search_ids(&*store, "Patient", &in_compartment).await,
        vec![id_of(&patient)]
    );
}

/// The store's SQL and `matches` must agree on every operation: each query runs both ways
/// over one set of resources.
pub(crate) async fn search_agrees_with_matches(store: Arc<dyn Store>) {
    let resources = [
        json!({"resourceType": "Observation", "status": "final", "code": loinc("8867-4", "Heart rate"),
            "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2020-05-01T10:00:00Z",
            "meta": {"project": "proj1"}}),
        json!({"resourceType": "Observation", "status": "amended",
            "code": {"coding": [{"code": "8867-4", "display": "Pulse"}]},
            "subject": {"reference": "Group/g1"}, "performer": [{"reference": "Patient/p1"}],
            "effectivePeriod": {"start": "2020-04-01", "end": "2020-06-30"}}),
        json!({"resourceType": "Observation", "status": "final", "code": loinc("29463-7", "Weight"),
            "subject": {"reference": "Patient/p2"}, "effectiveDateTime": "2021",
            "valueString": "Heavy_Load 100%", "meta": {"project": "proj2"}}),
        json!({"resourceType": "Observation", "status": "preliminary",
            "code": {"text": "free text only"}}),
    ];
    let mut stored = Vec::new();
    for (index, resource) in resources.into_iter().enumerate() {
        stored.push(create(&*store, resource, index as u32 + 1).await);
    }

    let queries: &[&[(&str, &str)]] = &[
        &[("code", "8867-4")],
        &[("code", "http://loinc.org|8867-4")],
        &[("code", "|8867-4")],
        &[("code", "http://loinc.org|")],
        &[("code:not", "8867-4")],
        &[("code:text", "pulse")],
        &[("code:text", "heart,weight")],
        &[("code:missing", "true")],
        &[("status", "final,amended")],
        &[("status:not", "final")],
        &[("subject", "p1")],
        &[("subject:Group", "g1")],
        &[("subject:not", "Patient/p1")],
        &[("patient", "Patient/p1")],
        &[("performer:missing", "false")],
        &[("_compartment", "Patient/p1")],
        &[("_project", "proj1,proj2")],
        &[("_project:not", "proj1")],
        &[("_project:missing", "true")],
        &[("value-string", "heavy_")],
        &[("value-string:contains", "100%")],
        &[("value-string:exact", "Heavy_Load 100%")],
        &[("value-string:exact", "heavy_load 100%")],
        &[("date", "2020-05")],
        &[("date", "ne2020-05")],
        &[("date", "gt2020-05-01")],
        &[("date", "ge2020-05-01T10:00:00Z")],
        &[("date", "lt2020-05")],
        &[("date", "le2020")],
        &[("date", "sa2020-06")],
        &[("date", "eb2020-05-01T10:00:01Z")],
        &[("date:missing", "true")],
        &[("_lastUpdated", "gt2025-01-01T00:00:02Z")],
        &[("_lastUpdated", "ne2025-01-01T00:00:01Z")],
        &[("_id:not", "x")],
    ];
    for query in queries {
        let request = parse("Observation", query);
        let expected: Vec<String> = stored
            .iter()
            .filter(|resource| matches(resource, &request.filters))
            .map(|resource| id_of(resource).to_string())
            .collect();
        assert_eq!(
            search_scoped(&*store, &request, None, None).await,
            expected,
            "Observation {query:?}"
        );
    }

    // A filter built by hand with nested negation or absence matches nothing in both.
    let nested = vec![Filter {
        code: "status".to_string(),
        op: FilterOp::Not(Box::new(FilterOp::Missing(true))),
    }];
    let expected: Vec<String> = stored
        .iter()
        .filter(|resource| matches(resource, &nested))
        .map(|resource| id_of(resource).to_string())
        .collect();
    let mut request = SearchRequest::new("Observation");
    request.filters = nested;
    assert_eq!(search_scoped(&*store, &request, None, None).await, expected);
}

/// Resources written in the same millisecond list in creation order, whatever their ids, so
/// that "oldest first" holds for resources created together.
pub(crate) async fn search_same_instant_creation_order(store: Arc<dyn Store>) {
    let mut created = Vec::new();
    for _ in 0..6 {
        let key = create(
            &*store,
            json!({"resourceType": "JsonWebKey", "active": true}),
            1,
        )
        .await;
        created.push(id_of(&key).to_string());
    }
    assert_eq!(
        search_ids(&*store, "JsonWebKey", &[("active", "true")]).await,
        created
    );
}
