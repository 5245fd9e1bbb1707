//! FHIR R4 interactions beyond CRUD and search: JSON Patch, conditional create, update and
//! delete, `POST _search`, batch and transaction Bundles, the CapabilityStatement, and the
//! structural checks on resource bodies.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::TestServer;
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

const MRN: &str = "http://example.com/mrn";

/// A project admin signed in to the FHIR API.
struct Api<'a> {
    server: &'a TestServer,
    token: String,
}

impl<'a> Api<'a> {
    async fn project_admin(server: &'a TestServer, email: &str) -> Self {
        let member = server.create_member(email, true).await;
        let tokens = server.member_tokens(&member, "openid").await;
        Self {
            server,
            token: tokens["access_token"].as_str().unwrap().to_string(),
        }
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.server
            .http
            .request(method, self.server.url(&format!("fhir/R4/{path}")))
            .bearer_auth(&self.token)
            .header("x-medplum", "extended")
    }

    async fn send_json(&self, method: Method, path: &str, body: &Value) -> reqwest::Response {
        self.request(method, path)
            .header(header::CONTENT_TYPE, "application/fhir+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.request(Method::GET, path).send().await.unwrap()
    }

    async fn patch(&self, path: &str, document: &str) -> reqwest::Response {
        self.request(Method::PATCH, path)
            .header(header::CONTENT_TYPE, "application/json-patch+json")
            .body(document.to_string())
            .send()
            .await
            .unwrap()
    }

    async fn create(&self, resource: Value) -> Value {
        let resource_type = resource["resourceType"].as_str().unwrap().to_string();
        let response = self
            .send_json(Method::POST, &resource_type, &resource)
            .await;
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "create {resource_type}"
        );
        response.json().await.unwrap()
    }

    async fn read(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "read {path}");
        response.json().await.unwrap()
    }

    /// Searches and returns the ids of the matches.
    async fn search_ids(&self, query: &str) -> Vec<String> {
        let bundle = self.read(query).await;
        bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| entry["resource"]["id"].as_str().unwrap().to_string())
            .collect()
    }
}

async fn body(response: reqwest::Response) -> Value {
    response.json().await.unwrap()
}

/// Returns the first issue's text of an OperationOutcome.
fn issue_text(outcome: &Value) -> &str {
    outcome["issue"][0]["details"]["text"]
        .as_str()
        .unwrap_or_default()
}

fn patient(family: &str, mrn: &str) -> Value {
    json!({"resourceType": "Patient", "name": [{"family": family}],
        "identifier": [{"system": MRN, "value": mrn}]})
}

fn version_of(resource: &Value) -> String {
    resource["meta"]["versionId"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn patch_applies_json_patch() {
    let server = TestServer::start().await;
    let api = Api::project_admin(&server, "patch@example.com").await;
    let created = api.create(patient("Lovelace", "p-1")).await;
    let id = created["id"].as_str().unwrap();
    let path = format!("Patient/{id}");

    let document = json!([
        {"op": "test", "path": "/name/0/family", "value": "Lovelace"},
        {"op": "replace", "path": "/name/0/family", "value": "King"},
        {"op": "add", "path": "/active", "value": true},
        {"op": "copy", "from": "/name/0", "path": "/name/-"},
        {"op": "move", "from": "/name/1/family", "path": "/name/0/text"},
        {"op": "remove", "path": "/name/1"},
    ]);
    let response = api.patch(&path, &document.to_string()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let patched = body(response).await;
    assert_eq!(patched["name"], json!([{"family": "King", "text": "King"}]));
    assert_eq!(patched["active"], true);
    assert_ne!(version_of(&patched), version_of(&created));

    let stored = api.read(&path).await;
    assert_eq!(stored["name"][0]["family"], "King");
    assert_eq!(version_of(&stored), version_of(&patched));
}

#[tokio::test]
async fn patch_honours_if_match() {
    let server = TestServer::start().await;
    let api = Api::project_admin(&server, "patch-match@example.com").await;
    let created = api.create(patient("Lovelace", "p-2")).await;
    let path = format!("Patient/{}", created["id"].as_str().unwrap());
    let document = json!([{"op": "add", "path": "/active", "value": false}]).to_string();

    let stale = api
        .request(Method::PATCH, &path)
        .header(header::CONTENT_TYPE, "application/json-patch+json")
        .header(
            header::IF_MATCH,
            "W/\"00000000-0000-4000-8000-000000000000\"",
        )
        .body(document.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(body(stale).await["id"], "precondition-failed");

    let current = api
        .request(Method::PATCH, &path)
        .header(header::CONTENT_TYPE, "application/json-patch+json")
        .header(header::IF_MATCH, format!("W/\"{}\"", version_of(&created)))
        .body(document)
        .send()
        .await
        .unwrap();
    assert_eq!(current.status(), StatusCode::OK);
    assert_eq!(body(current).await["active"], false);
}

#[tokio::test]
async fn patch_errors_name_the_problem() {
    let server = TestServer::start().await;
    let api = Api::project_admin(&server, "patch-errors@example.com").await;
    let created = api.create(patient("Lovelace", "p-3")).await;
    let id = created["id"].as_str().unwrap();
    let path = format!("Patient/{id}");

    let cases = [
        ("[{\"op\": ", "Malformed JSON"),
        (r#"{"op": "add"}"#, "must be a JSON array"),
        (
            r#"[{"op": "merge", "path": "/active", "value": 1}]"#,
            "unknown op \"merge\"",
        ),
        (
            r#"[{"op": "add", "path": "active", "value": 1}]"#,
            "start with /",
        ),
        (
            r#"[{"op": "remove", "path": "/birthDate"}]"#,
            "\"birthDate\" does not exist",
        ),
        (
            r#"[{"op": "add", "path": "/name/5", "value": {}}]"#,
            "past the end",
        ),
        (
            r#"[{"op": "test", "path": "/name/0/family", "value": "King"}]"#,
            "test failed",
        ),
        (
            r#"[{"op": "replace", "path": "/id", "value": "other"}]"#,
            "cannot change id",
        ),
        (r#"[{"op": "remove", "path": "/id"}]"#, "cannot change id"),
        (
            r#"[{"op": "replace", "path": "/resourceType", "value": "Practitioner"}]"#,
            "cannot change resourceType",
        ),
        (
            r#"[{"op": "add", "path": "/colour", "value": "blue"}]"#,
            "\"colour\"",
        ),
        (
            r#"[{"op": "add", "path": "/active", "value": "yes"}]"#,
            "expected boolean",
        ),
    ];
    for (document, expected) in cases {
        let response = api.patch(&path, document).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{document}");
        let outcome = body(response).await;
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        assert!(
            issue_text(&outcome).contains(expected),
            "{document}: {outcome}"
        );
    }

    // A patch of another media type is not JSON Patch.
    let response = api
        .request(Method::PATCH, &path)
        .header(header::CONTENT_TYPE, "application/json")
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // None of the failed patches wrote a version.
    let stored = api.read(&path).await;
    assert_eq!(version_of(&stored), version_of(&created));
}

#[tokio::test]
async fn patch_of_missing_resource_is_404() {
    let server = TestServer::start().await;
    let api = Api::project_admin(&server, "patch-missing@example.com").await;
    let response = api
        .patch(
            "Patient/00000000-0000-4000-8000-000000000000",
            r#"[{"op": "add", "path": "/active", "value": true}]"#,
        )
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn conditional_create_by_match_count() {
    let server = TestServer::start().await;
    let api = Api::project_admin(&server, "cond-create@example.com").await;
    let create_if_none = |mrn: &str, family: &str| {
        api.request(Method::POST, "Patient")
            .header(header::CONTENT_TYPE, "application/fhir+json")
            .header("if-none-exist", format!("identifier={MRN}|{mrn}"))
            .body(patient(family, mrn).to_string())
            .send()
    };

    // no match: created
    let response = create_if_none("c-1", "First").await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(response.headers().contains_key(header::LOCATION));
    let first = body(response).await;

    // one match: the existing resource, unchanged
    let response = create_if_none("c-1", "Second").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let existing = body(response).await;
    assert_eq!(existing["id"], first["id"]);
    assert_eq!(existing["name"][0]["family"], "First");
    assert_eq!(
        api.search_ids(&format!("Patient?identifier={MRN}|c-1"))
            .await
            .len(),
        1
    );

    // two matches: 412 multiple-matches, and nothing created
    api.create(patient("Twin", "c-1")).await;
    let response = create_if_none("c-1", "Third").await.unwrap();
    assert_eq!(response.status(), StatusCode::PRECONDITION_FAILED);
    let outcome = body(response).await;
    assert_eq!(outcome["id"], "multiple-matches");
    assert_eq!(outcome["issue"][0]["code"], "multiple-matches");
    assert_eq!(
        api.search_ids(&format!("Patient?identifier={MRN}|c-1"))
            .await
            .len(),
        2
    );

    // an empty condition matches everything, so it is rejected
    let response = api
        .request(Method::POST, "Patient")
        .header(header::CONTENT_TYPE, "application/fhir+json")
        .header("if-none-exist", "_count=1")
        .body(patient("Empty", "c-2").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn conditional_update_creates_or_updates() {
    let server = TestServer::start().await;
    let api = Api::project_admin(&server, "cond-update@example.com").await;
    let path = format!("Patient?identifier={MRN}|u-1");

    // no match: created
    let response = api
        .send_json(Method::PUT, &path, &patient("Created", "u-1"))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created = body(response).await;
    let id = created["id"].as_str().unwrap().to_string();

    // one match: that resource is updated, and the body needs no id
    let response = api
        .send_json(Method::PUT, &path, &patient("Updated", "u-1"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let updated = body(response).await;
    assert_eq!(updated["id"], id.as_str());
    assert_eq!(updated["name"][0]["family"], "Updated");
    assert_ne!(version_of(&updated), version_of(&created));

    // one match, but the body names another id
    let mut other_id = patient("Other", "u-1");
    other_id["id"] = json!("00000000-0000-4000-8000-000000000000");
    let response = api.send_json(Method::PUT, &path, &other_id).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // no match and an id in the body: update as create is not supported
    let response = api
        .send_json(
            Method::PUT,
            &format!("Patient?identifier={MRN}|u-2"),
            &other_id,
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // two matches: 412
    api.create(patient("Twin", "u-1")).await;
    let response = api
        .send_json(Method::PUT, &path, &patient("Third", "u-1"))
        .await;
    assert_eq!(response.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(body(response).await["id"], "multiple-matches");
    let stored = api.read(&format!("Patient/{id}")).await;
    assert_eq!(stored["name"][0]["family"], "Updated");
}

#[tokio::test]
async fn conditional_delete_single_match() {
    let server = TestServer::start().await;
    let api = Api::project_admin(&server, "cond-delete@example.com").await;
    let created = api.create(patient("Doomed", "d-1")).await;
    let path = format!("Patient?identifier={MRN}|d-1");

    let response = api.request(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = api
        .get(&format!("Patient/{}", created["id"].as_str().unwrap()))
        .await;
    assert_eq!(response.status(), StatusCode::GONE);

    // no match deletes nothing and succeeds
    let response = api.request(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // two matches: 412, both remain
    api.create(patient("One", "d-2")).await;
    api.create(patient("Two", "d-2")).await;
    let path = format!("Patient?identifier={MRN}|d-2");
    let response = api.request(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(api.search_ids(&path).await.len(), 2);
}

#[tokio::test]
async fn search_by_post_matches_get() {
    let server = TestServer::start().await;
    let api = Api::project_admin(&server, "search-post@example.com").await;
    api.create(patient("Lovelace", "s-1")).await;
    api.create(patient("Hopper", "s-2")).await;

    let by_get = api.search_ids("Patient?name=lovelace").await;
    assert_eq!(by_get.len(), 1);
    let response = api
        .request(Method::POST, "Patient/_search")
        .form(&[("name", "lovelace")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bundle = body(response).await;
    assert_eq!(bundle["type"], "searchset");
    let by_post: Vec<&str> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["resource"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(by_post, by_get);

    // parameters in the URL and the body combine
    let response = api
        .request(
            Method::POST,
            &format!("Patient/_search?identifier={MRN}|s-2"),
        )
        .form(&[("name", "lovelace")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(body(response).await["entry"].as_array().unwrap().is_empty());

    // an unknown parameter is rejected as in GET
    let response = api
        .request(Method::POST, "Patient/_search")
        .form(&[("shoe-size", "9")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn batch_reports_each_entry() {
    let server = TestServer::start().await;
    let api = Api::project_admin(&server, "batch@example.com").await;
    let doomed = api.create(patient("Doomed", "b-0")).await;
    let doomed_id = doomed["id"].as_str().unwrap();
    let patched = api.create(patient("Patched", "b-3")).await;
    let patched_id = patched["id"].as_str().unwrap();
    let patch = json!([{"op": "add", "path": "/active", "value": true}]).to_string();

    let bundle = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "POST", "url": "Patient"}, "resource": patient("Created", "b-1")},
        {"request": {"method": "GET", "url": "Patient/00000000-0000-4000-8000-000000000000"}},
        {"request": {"method": "POST", "url": "Patient"},
            "resource": {"resourceType": "Patient", "colour": "blue"}},
        {"request": {"method": "DELETE", "url": format!("Patient/{doomed_id}")}},
        {"request": {"method": "PATCH", "url": format!("Patient/{patched_id}")},
            "resource": {"resourceType": "Binary", "contentType": "application/json-patch+json",
                "data": STANDARD.encode(patch)}},
        {"request": {"method": "GET", "url": format!("Patient?identifier={MRN}|b-3")}},
        {"request": {"method": "FETCH", "url": "Patient"}},
    ]});
    let response = api.send_json(Method::POST, "", &bundle).await;
    assert_eq!(response.status(), StatusCode::OK);
    let result = body(response).await;
    assert_eq!(result["type"], "batch-response");
    let entries = result["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 7);

    let status = |index: usize| entries[index]["response"]["status"].as_str().unwrap();
    assert_eq!(status(0), "201 Created");
    let created_id = entries[0]["resource"]["id"].as_str().unwrap();
    assert!(
        entries[0]["response"]["location"]
            .as_str()
            .unwrap()
            .starts_with(&format!("Patient/{created_id}/_history/"))
    );
    assert_eq!(status(1), "404 Not Found");
    assert_eq!(entries[1]["response"]["outcome"]["id"], "not-found");
    assert_eq!(status(2), "400 Bad Request");
    assert!(issue_text(&entries[2]["response"]["outcome"]).contains("colour"));
    assert_eq!(status(3), "200 OK");
    assert_eq!(status(4), "200 OK");
    assert_eq!(entries[4]["resource"]["active"], true);
    assert_eq!(status(5), "200 OK");
    assert_eq!(entries[5]["resource"]["type"], "searchset");
    assert_eq!(status(6), "400 Bad Request");

    // The successful entries were written, independently of the failed ones.
    api.read(&format!("Patient/{created_id}")).await;
    let response = api.get(&format!("Patient/{doomed_id}")).await;
    assert_eq!(response.status(), StatusCode::GONE);
}

#[tokio::test]
async fn transaction_resolves_placeholder_references() {
    let server = TestServer::start().await;
    let api = Api::project_admin(&server, "transaction@example.com").await;

    // The Observation comes first and refers to the Patient created after it in the Bundle,
    // and the Patient's organization is created in the same Bundle too.
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:5f1c0e52-3f4c-4f0a-9a53-1e2b8d0c6a01",
            "request": {"method": "POST", "url": "Observation"},
            "resource": {"resourceType": "Observation", "status": "final",
                "code": {"text": "heart rate"},
                "subject": {"reference": "urn:uuid:5f1c0e52-3f4c-4f0a-9a53-1e2b8d0c6a02"}}},
        {"fullUrl": "urn:uuid:5f1c0e52-3f4c-4f0a-9a53-1e2b8d0c6a02",
            "request": {"method": "POST", "url": "Patient"},
            "resource": {"resourceType": "Patient", "name": [{"family": "Linked"}],
                "managingOrganization": {"reference": "urn:uuid:5f1c0e52-3f4c-4f0a-9a53-1e2b8d0c6a03"}}},
        {"fullUrl": "urn:uuid:5f1c0e52-3f4c-4f0a-9a53-1e2b8d0c6a03",
            "request": {"method": "POST", "url": "Organization"},
            "resource": {"resourceType": "Organization", "name": "Clinic"}},
        {"request": {"method": "GET", "url": "Organization?name=Clinic"}},
    ]});
    let response = api.send_json(Method::POST, "", &bundle).await;
    assert_eq!(response.status(), StatusCode::OK);
    let result = body(response).await;
    assert_eq!(result["type"], "transaction-response");
    let entries = result["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 4);
    for entry in &entries[..3] {
        assert_eq!(entry["response"]["status"], "201 Created");
    }
    let observation_id = entries[0]["resource"]["id"].as_str().unwrap();
    let patient_id = entries[1]["resource"]["id"].as_str().unwrap();
    let organization_id = entries[2]["resource"]["id"].as_str().unwrap();
    assert_eq!(
        entries[0]["fullUrl"],
        server
            .url(&format!("fhir/R4/Observation/{observation_id}"))
            .as_str()
    );

    // The stored resources refer to each other by their new ids.
    let observation = api.read(&format!("Observation/{observation_id}")).await;
    assert_eq!(
        observation["subject"]["reference"],
        format!("Patient/{patient_id}").as_str()
    );
    let stored_patient = api.read(&format!("Patient/{patient_id}")).await;
    assert_eq!(
        stored_patient["managingOrganization"]["reference"],
        format!("Organization/{organization_id}").as_str()
    );
    let by_subject = api
        .search_ids(&format!("Observation?subject=Patient/{patient_id}"))
        .await;
    assert_eq!(by_subject, vec![observation_id.to_string()]);
    assert_eq!(entries[3]["response"]["status"], "200 OK");
}

#[tokio::test]
async fn transaction_with_bad_entry_writes_nothing() {
    let server = TestServer::start().await;
    let api = Api::project_admin(&server, "rollback@example.com").await;
    let existing = api.create(patient("Kept", "t-0")).await;
    let existing_id = existing["id"].as_str().unwrap();

    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "POST", "url": "Patient"}, "resource": patient("New", "t-1")},
        {"request": {"method": "DELETE", "url": format!("Patient/{existing_id}")}},
        {"request": {"method": "PUT", "url": format!("Patient?identifier={MRN}|t-2")},
            "resource": patient("Upserted", "t-2")},
        {"request": {"method": "POST", "url": "Observation"},
            "resource": {"resourceType": "Observation", "status": "final",
                "code": {"text": "x"}, "colour": "blue"}},
    ]});
    let response = api.send_json(Method::POST, "", &bundle).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let outcome = body(response).await;
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    let text = issue_text(&outcome);
    assert!(text.starts_with("Bundle.entry[3]"), "{outcome}");
    assert!(text.contains("colour"), "{outcome}");
    assert_eq!(
        outcome["issue"][0]["expression"][0],
        "Bundle.entry[3].resource.colour"
    );

    // Nothing was written: no new Patients, and the deleted one is still there.
    assert!(
        api.search_ids(&format!("Patient?identifier={MRN}|t-1"))
            .await
            .is_empty()
    );
    assert!(
        api.search_ids(&format!("Patient?identifier={MRN}|t-2"))
            .await
            .is_empty()
    );
    assert!(api.search_ids("Observation").await.is_empty());
    api.read(&format!("Patient/{existing_id}")).await;
}

#[tokio::test]
async fn transaction_failing_entry_status_kept() {
    let server = TestServer::start().await;
    let api = Api::project_admin(&server, "rollback-404@example.com").await;
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "POST", "url": "Patient"}, "resource": patient("New", "t-3")},
        {"request": {"method": "PUT", "url": "Patient/00000000-0000-4000-8000-000000000000"},
            "resource": {"resourceType": "Patient", "id": "00000000-0000-4000-8000-000000000000"}},
    ]});
    let response = api.send_json(Method::POST, "", &bundle).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let outcome = body(response).await;
    assert!(
        issue_text(&outcome).starts_with("Bundle.entry[1]"),
        "{outcome}"
    );
    assert!(
        api.search_ids(&format!("Patient?identifier={MRN}|t-3"))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn transaction_denied_entry_writes_nothing() {
    let server = TestServer::start().await;
    let api = Api::project_admin(&server, "rollback-403@example.com").await;

    // A project admin may create Patients but no signing keys.
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "POST", "url": "Patient"}, "resource": patient("New", "t-5")},
        {"request": {"method": "POST", "url": "JsonWebKey"},
            "resource": {"resourceType": "JsonWebKey", "active": true, "alg": "RS256"}},
    ]});
    let response = api.send_json(Method::POST, "", &bundle).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let outcome = body(response).await;
    assert_eq!(outcome["id"], "forbidden");
    assert!(
        issue_text(&outcome).starts_with("Bundle.entry[1]"),
        "{outcome}"
    );
    assert!(
        api.search_ids(&format!("Patient?identifier={MRN}|t-5"))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn transaction_rejects_cycles_and_duplicates() {
    let server = TestServer::start().await;
    let api = Api::project_admin(&server, "cycle@example.com").await;
    let linked = |own: &str, other: &str| {
        json!({"fullUrl": own, "request": {"method": "POST", "url": "Patient"},
            "resource": {"resourceType": "Patient",
                "link": [{"type": "seealso", "other": {"reference": other}}]}})
    };
    let cycle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        linked("urn:uuid:a", "urn:uuid:b"),
        linked("urn:uuid:b", "urn:uuid:a"),
    ]});
    let response = api.send_json(Method::POST, "", &cycle).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(issue_text(&body(response).await).contains("cycle"));

    let existing = api.create(patient("Twice", "t-4")).await;
    let url = format!("Patient/{}", existing["id"].as_str().unwrap());
    let twice = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "DELETE", "url": url}},
        {"request": {"method": "DELETE", "url": url}},
    ]});
    let response = api.send_json(Method::POST, "", &twice).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(issue_text(&body(response).await).contains("only once"));
    api.read(&url).await;
}

#[tokio::test]
async fn bundle_shape_checked() {
    let server = TestServer::start().await;
    let api = Api::project_admin(&server, "bundle-shape@example.com").await;
    let too_many: Vec<Value> = (0..1001)
        .map(|_| json!({"request": {"method": "GET", "url": "Patient"}}))
        .collect();
    let cases = [
        json!({"resourceType": "Bundle", "type": "batch", "entry": too_many}),
        json!({"resourceType": "Bundle", "type": "searchset", "entry": []}),
        json!({"resourceType": "Patient"}),
    ];
    for bundle in cases {
        let response = api.send_json(Method::POST, "", &bundle).await;
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{}",
            bundle["type"]
        );
    }

    // An empty batch returns an empty response.
    let response = api
        .send_json(
            Method::POST,
            "",
            &json!({"resourceType": "Bundle", "type": "batch"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body(response).await["entry"], json!([]));
}

#[tokio::test]
async fn metadata_lists_interactions() {
    let server = TestServer::start().await;
    let response = server
        .http
        .get(server.url("fhir/R4/metadata"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let statement = body(response).await;
    assert_eq!(statement["resourceType"], "CapabilityStatement");
    assert_eq!(statement["fhirVersion"], "4.0.1");
    assert_eq!(
        statement["format"],
        json!(["application/fhir+json", "json"])
    );
    let rest = &statement["rest"][0];
    let codes = |interactions: &Value| -> Vec<String> {
        interactions
            .as_array()
            .unwrap()
            .iter()
            .map(|interaction| interaction["code"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(codes(&rest["interaction"]), ["batch", "transaction"]);

    let resources = rest["resource"].as_array().unwrap();
    let patient = resources
        .iter()
        .find(|resource| resource["type"] == "Patient")
        .unwrap();
    let patient_codes = codes(&patient["interaction"]);
    for code in [
        "read",
        "vread",
        "update",
        "patch",
        "delete",
        "history-instance",
        "create",
        "search-type",
    ] {
        assert!(patient_codes.iter().any(|found| found == code), "{code}");
    }
    assert_eq!(patient["conditionalCreate"], true);
    assert!(
        patient["searchParam"]
            .as_array()
            .unwrap()
            .iter()
            .any(|param| param["name"] == "birthdate" && param["type"] == "date")
    );
    assert!(
        resources
            .iter()
            .any(|resource| resource["type"] == "ProjectMembership")
    );
    assert!(resources.len() > 140, "{} resource types", resources.len());
}

#[tokio::test]
async fn unknown_type_and_property_rejected() {
    let server = TestServer::start().await;
    let api = Api::project_admin(&server, "structure@example.com").await;

    let response = api
        .send_json(
            Method::POST,
            "Spaceship",
            &json!({"resourceType": "Spaceship"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(issue_text(&body(response).await).contains("Spaceship"));

    let response = api
        .send_json(
            Method::POST,
            "Patient",
            &json!({"resourceType": "Patient", "colour": "blue"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let outcome = body(response).await;
    assert_eq!(
        issue_text(&outcome),
        "Invalid additional property \"colour\" for Patient"
    );
    assert_eq!(outcome["issue"][0]["expression"][0], "colour");

    let invalid = [
        json!({"resourceType": "Patient", "active": "yes"}),
        json!({"resourceType": "Patient", "name": {"family": "Flat"}}),
        json!({"resourceType": "Patient", "meta": "v1"}),
        json!({"resourceType": "Patient", "id": 42}),
        json!({"name": [{"family": "Untyped"}]}),
        json!(["not", "an", "object"]),
    ];
    for resource in invalid {
        let response = api.send_json(Method::POST, "Patient", &resource).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{resource}");
    }

    // Types beyond those authentication uses are accepted, with their own properties.
    api.create(json!({"resourceType": "Medication", "code": {"text": "aspirin"}}))
        .await;
    api.create(json!({"resourceType": "ResearchStudy", "status": "active"}))
        .await;
}
