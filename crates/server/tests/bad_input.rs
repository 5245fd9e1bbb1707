//! Malformed requests get clear 4xx answers in the route's format, never a 500.

mod common;

use common::TestServer;
use serde_json::Value;

#[tokio::test]
async fn malformed_json_is_400_outcome() {
    let server = TestServer::start().await;
    let response = server
        .http
        .post(server.url("auth/login"))
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert!(
        body["issue"][0]["details"]["text"]
            .as_str()
            .unwrap()
            .starts_with("Malformed JSON")
    );
}

#[tokio::test]
async fn wrong_field_types_are_400() {
    let server = TestServer::start().await;
    let response = server
        .post_json(
            "auth/login",
            serde_json::json!({"email": 42, "password": []}),
        )
        .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["issue"][0]["details"]["text"]
            .as_str()
            .unwrap()
            .starts_with("Invalid request body")
    );
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let server = TestServer::start().await;
    let response = server
        .http
        .post(server.url("auth/login"))
        .header("content-type", "text/plain")
        .body("email=a")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["resourceType"], "OperationOutcome");
}

#[tokio::test]
async fn fhir_json_content_type_is_accepted() {
    let server = TestServer::start().await;
    let response = server
        .http
        .post(server.url("auth/login"))
        .header("content-type", "application/fhir+json")
        .body(r#"{"email":"admin@example.com","password":"violet-Lantern-47-orbit"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn missing_fields_name_the_field() {
    let server = TestServer::start().await;
    let response = server.post_json("auth/login", serde_json::json!({})).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["issue"][0]["details"]["text"],
        "Valid email address is required"
    );
    assert_eq!(body["issue"][0]["expression"][0], "email");

    let response = server
        .post_json("auth/profile", serde_json::json!({"login": "x"}))
        .await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["issue"][0]["details"]["text"], "Missing profile");
}

#[tokio::test]
async fn over_long_values_are_400() {
    let server = TestServer::start().await;
    let email = format!("{}@example.com", "a".repeat(10_000));
    let response = server
        .post_json(
            "auth/login",
            serde_json::json!({"email": email, "password": "whatever-password"}),
        )
        .await;
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn body_over_one_megabyte_is_413() {
    let server = TestServer::start().await;
    let padding = "x".repeat(1024 * 1024 + 10);
    let body = format!("{{\"email\":\"{padding}\"}}");
    let response = server
        .http
        .post(server.url("auth/login"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);

    let response = server
        .http
        .post(server.url("oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type={padding}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
}

#[tokio::test]
async fn unknown_route_is_404_outcome() {
    let server = TestServer::start().await;
    let response = server
        .http
        .get(server.url("no/such/route"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], "not-found");
}

#[tokio::test]
async fn wrong_method_is_405_outcome() {
    let server = TestServer::start().await;
    let response = server
        .http
        .get(server.url("oauth2/token"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["resourceType"], "OperationOutcome");
}

#[tokio::test]
async fn unknown_login_and_bad_ids() {
    let server = TestServer::start().await;
    let response = server
        .http
        .get(server.url("auth/login/not-a-uuid"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let response = server
        .http
        .get(server.url("auth/login/00000000-0000-4000-8000-000000000000"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let response = server
        .post_json(
            "auth/login",
            serde_json::json!({"email": "a@b.co", "password": "whatever", "clientId": "123"}),
        )
        .await;
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn bad_token_form_is_oauth_error() {
    let server = TestServer::start().await;
    let response = server
        .http
        .post(server.url("oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=authorization_code&code=%ZZ")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn malformed_authorization_headers_are_401() {
    let server = TestServer::start().await;
    for header in [
        "foo",
        "foo foo",
        "Bearer",
        "Bearer ",
        "Bearer foo",
        "Bearer a.b.c",
        "bearer x",
    ] {
        let response = server
            .http
            .get(server.url("auth/me"))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{header:?}");
        assert!(
            response.headers().contains_key("www-authenticate"),
            "{header:?}"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["id"], "unauthorized", "{header:?}");
    }
}
