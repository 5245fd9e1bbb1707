//! Parsing query pairs into search requests.

use super::{pairs, parse};
use crate::search::{
    FilterOp, Include, MAX_COUNT, Prefix, SearchError, SearchRequest, SortColumn, TokenMatch,
};

fn error(resource_type: &str, query: &[(&str, &str)]) -> SearchError {
    SearchRequest::parse(resource_type, &pairs(query)).expect_err("the query is rejected")
}

#[test]
fn string_prefix_and_count() {
    let request = parse("Patient", &[("name", "Sm,Jo"), ("_count", "5000")]);
    assert_eq!(request.count, MAX_COUNT);
    assert_eq!(
        request.filters[0].op,
        FilterOp::StartsWith(vec!["sm".into(), "jo".into()])
    );
}

#[test]
fn string_modifiers() {
    let exact = parse("Patient", &[("family", "McDonald\\,Jr")]);
    assert_eq!(
        exact.filters[0].op,
        FilterOp::StartsWith(vec!["mcdonald,jr".into()])
    );
    let exact = parse("Patient", &[("family:exact", "McDonald")]);
    assert_eq!(
        exact.filters[0].op,
        FilterOp::Exact(vec!["McDonald".into()])
    );
    let contains = parse("Patient", &[("family:contains", "DON")]);
    assert_eq!(
        contains.filters[0].op,
        FilterOp::Contains(vec!["don".into()])
    );
}

#[test]
fn token_forms() {
    let plain = parse("Observation", &[("code", "8867-4,1234")]);
    assert_eq!(
        plain.filters[0].op,
        FilterOp::Equals(vec!["8867-4".into(), "1234".into()])
    );
    let mixed = parse(
        "Observation",
        &[("code", "http://loinc.org|8867-4,|x,urn:s|,y")],
    );
    assert_eq!(
        mixed.filters[0].op,
        FilterOp::Token(vec![
            TokenMatch::SystemCode {
                system: "http://loinc.org".into(),
                code: "8867-4".into()
            },
            TokenMatch::CodeWithoutSystem("x".into()),
            TokenMatch::System("urn:s".into()),
            TokenMatch::Code("y".into()),
        ])
    );
    let not = parse("Patient", &[("gender:not", "male")]);
    assert_eq!(
        not.filters[0].op,
        FilterOp::Not(Box::new(FilterOp::Equals(vec!["male".into()])))
    );
    let text = parse("Observation", &[("code:text", "Heart")]);
    assert_eq!(text.filters[0].op, FilterOp::Text(vec!["heart".into()]));
    let email = parse("Patient", &[("email", "email|Ada@Example.COM")]);
    assert_eq!(
        email.filters[0].op,
        FilterOp::Token(vec![TokenMatch::SystemCode {
            system: "email".into(),
            code: "ada@example.com".into()
        }])
    );
}

#[test]
fn reference_forms() {
    let full = parse("Observation", &[("subject", "Patient/p1")]);
    assert_eq!(
        full.filters[0].op,
        FilterOp::Equals(vec!["Patient/p1".into()])
    );
    let bare = parse("Observation", &[("patient", "p1")]);
    assert_eq!(
        bare.filters[0].op,
        FilterOp::Equals(vec!["Patient/p1".into()])
    );
    let typed = parse("Observation", &[("subject:Group", "g1")]);
    assert_eq!(
        typed.filters[0].op,
        FilterOp::Equals(vec!["Group/g1".into()])
    );
    let placeholder = parse("Communication", &[("sender", "%patient")]);
    assert_eq!(
        placeholder.filters[0].op,
        FilterOp::Equals(vec!["%patient".into()])
    );
    let url = parse("Observation", &[("subject", "urn:uuid:1")]);
    assert_eq!(
        url.filters[0].op,
        FilterOp::Equals(vec!["urn:uuid:1".into()])
    );
    let bare_any = parse("Observation", &[("subject", "x")]);
    let FilterOp::Equals(values) = &bare_any.filters[0].op else {
        panic!("a reference parses as Equals");
    };
    assert!(values.contains(&"Patient/x".to_string()));
    assert!(values.contains(&"Group/x".to_string()));
}

#[test]
fn date_and_number_prefixes() {
    let date = parse("Observation", &[("date", "ge2020-05,lt2019")]);
    let FilterOp::Date(matches) = &date.filters[0].op else {
        panic!("a date parses as Date");
    };
    assert_eq!(matches[0].prefix, Prefix::Ge);
    assert_eq!(matches[0].low, "2020-05-01T00:00:00.000Z");
    assert_eq!(matches[1].prefix, Prefix::Lt);
    assert_eq!(matches[1].high, "2019-12-31T23:59:59.999Z");

    let number = parse("ResearchStudy", &[("recruitment-target", "gt100")]);
    let FilterOp::Number(matches) = &number.filters[0].op else {
        panic!("a number parses as Number");
    };
    assert_eq!(matches[0].prefix, Prefix::Gt);
    assert_eq!(matches[0].value, 100.0);

    let last_updated = parse("Patient", &[("_lastUpdated", "sa2024-01-01T00:00:00Z")]);
    assert_eq!(last_updated.filters[0].code, "_lastUpdated");
}

#[test]
fn malformed_values_named() {
    assert_eq!(
        error("Observation", &[("date", "ge2020-13")]),
        SearchError::InvalidValue {
            param: "date".into(),
            value: "ge2020-13".into()
        }
    );
    assert_eq!(
        error("ResearchStudy", &[("recruitment-target", "lots")]).to_string(),
        "Invalid value for recruitment-target: lots"
    );
    assert_eq!(
        error("Patient", &[("_lastUpdated", "yesterday")]).to_string(),
        "Invalid value for _lastUpdated: yesterday"
    );
    assert_eq!(
        error("Observation", &[("date", "ap2020")]).to_string(),
        "Search prefix ap of date is not supported"
    );
    assert!(SearchRequest::parse("Patient", &pairs(&[("_count", "many")])).is_err());
    assert!(SearchRequest::parse("Patient", &pairs(&[("_total", "some")])).is_err());
    assert!(SearchRequest::parse("User", &pairs(&[("project:missing", "maybe")])).is_err());
}

#[test]
fn unknown_parameters_named_together() {
    let rejected = error(
        "Patient",
        &[("shoe-size", "9"), ("name", "x"), ("hat", "1")],
    );
    assert_eq!(
        rejected,
        SearchError::UnknownParameters(vec!["shoe-size".into(), "hat".into()])
    );
    assert_eq!(
        rejected.to_string(),
        "Unknown search parameters: shoe-size, hat"
    );
    assert_eq!(
        error("Patient", &[("shoe-size", "9")]).to_string(),
        "Unknown search parameter: shoe-size"
    );
}

#[test]
fn unsupported_features_rejected() {
    assert_eq!(
        error("Observation", &[("value-quantity", "5")]).to_string(),
        "Search parameter value-quantity of type quantity is not supported"
    );
    assert_eq!(
        error("Observation", &[("code-value-quantity", "x$5")]).to_string(),
        "Search parameter code-value-quantity of type composite is not supported"
    );
    assert!(matches!(
        error("Patient", &[("_has:Observation:subject:code", "x")]),
        SearchError::UnsupportedParameter(_)
    ));
    assert!(matches!(
        error("Observation", &[("subject.name", "x")]),
        SearchError::UnsupportedParameter(_)
    ));
    assert!(matches!(
        error("Patient", &[("gender:exact", "x")]),
        SearchError::UnsupportedModifier(_)
    ));
    assert!(matches!(
        error(
            "Observation",
            &[("_include:iterate", "Observation:subject")]
        ),
        SearchError::UnsupportedModifier(_)
    ));
}

#[test]
fn unknown_type_rejected() {
    assert!(matches!(error("Shoe", &[]), SearchError::UnknownType(_)));
}

#[test]
fn sort_total_and_includes() {
    let request = parse(
        "Observation",
        &[
            ("_sort", "-date,code,_id"),
            ("_total", "accurate"),
            ("_include", "Observation:patient"),
            ("_include", "Observation:performer:Practitioner"),
            ("_revinclude", "Provenance:target"),
        ],
    );
    assert_eq!(request.sort.len(), 3);
    assert!(request.sort[0].descending);
    assert_eq!(request.sort[0].column, SortColumn::DateRange);
    assert_eq!(request.sort[1].column, SortColumn::Value);
    assert_eq!(request.sort[2].column, SortColumn::Id);
    assert!(request.total);
    assert_eq!(
        request.includes,
        [
            Include {
                source_type: "Observation".into(),
                param: "patient".into(),
                target_type: None
            },
            Include {
                source_type: "Observation".into(),
                param: "performer".into(),
                target_type: Some("Practitioner".into())
            }
        ]
    );
    assert_eq!(request.revincludes[0].source_type, "Provenance");

    assert!(SearchRequest::parse("Observation", &pairs(&[("_sort", "shoe")])).is_err());
    assert!(SearchRequest::parse("Observation", &pairs(&[("_sort", "value-quantity")])).is_err());
    assert!(
        SearchRequest::parse(
            "Observation",
            &pairs(&[("_include", "Patient:organization")])
        )
        .is_err(),
        "_include names the searched type"
    );
    assert!(
        SearchRequest::parse("Observation", &pairs(&[("_include", "Observation:code")])).is_err(),
        "_include needs a reference parameter"
    );
    let summary = parse("Patient", &[("_summary", "count")]);
    assert!(summary.total);
    assert_eq!(summary.count, 0);
}

#[test]
fn special_parameters() {
    let request = parse(
        "Observation",
        &[
            ("_compartment", "Patient/p1"),
            ("_project", "Project/x,y"),
            ("_id", "a,b"),
        ],
    );
    assert_eq!(
        request.filters[0].op,
        FilterOp::Equals(vec!["Patient/p1".into()])
    );
    assert_eq!(
        request.filters[1].op,
        FilterOp::Equals(vec!["x".into(), "y".into()])
    );
    assert_eq!(
        request.filters[2].op,
        FilterOp::Equals(vec!["a".into(), "b".into()])
    );
    let bare = parse("Observation", &[("_compartment", "p1")]);
    assert_eq!(
        bare.filters[0].op,
        FilterOp::Equals(vec!["Patient/p1".into()])
    );
    let missing = parse("User", &[("project:missing", "true")]);
    assert_eq!(missing.filters[0].op, FilterOp::Missing(true));
}
