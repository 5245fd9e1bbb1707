//! Discovery documents and the JWK Set.

mod common;

use common::TestServer;
use serde_json::Value;

async fn get_json(server: &TestServer, path: &str) -> Value {
    let response = server.http.get(server.url(path)).send().await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

#[tokio::test]
async fn openid_configuration_endpoints_exist() {
    let server = TestServer::start().await;
    let discovery = get_json(&server, ".well-known/openid-configuration").await;
    assert_eq!(discovery["issuer"], server.base_url);
    assert_eq!(
        discovery["response_types_supported"],
        serde_json::json!(["code"])
    );
    assert_eq!(
        discovery["subject_types_supported"],
        serde_json::json!(["public"])
    );
    // `/oauth2/logout` is Medplum's session revocation, not OpenID Connect RP-Initiated
    // Logout, so discovery must not advertise it as `end_session_endpoint`.
    assert!(discovery.get("end_session_endpoint").is_none());
    // Every advertised endpoint is served: none of them returns 404.
    for field in [
        "authorization_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "jwks_uri",
    ] {
        let url = discovery[field].as_str().unwrap();
        assert!(url.starts_with(&server.base_url), "{field}");
        let response = server.http.get(url).send().await.unwrap();
        assert_ne!(response.status(), 404, "{field} {url}");
    }
}

#[tokio::test]
async fn smart_configuration_served_twice() {
    let server = TestServer::start().await;
    let root = get_json(&server, ".well-known/smart-configuration").await;
    let fhir = get_json(&server, "fhir/R4/.well-known/smart-configuration").await;
    assert_eq!(root, fhir);
    assert_eq!(
        root["token_endpoint"],
        format!("{}oauth2/token", server.base_url)
    );
}

#[tokio::test]
async fn jwks_lists_the_signing_key() {
    let server = TestServer::start().await;
    let jwks = get_json(&server, ".well-known/jwks.json").await;
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["alg"], "RS256");
    assert!(keys[0].get("d").is_none(), "no private parts");
    let token = server.admin_access_token().await;
    let header: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            token.split('.').next().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], keys[0]["kid"]);
}

#[tokio::test]
async fn rotated_key_is_published_and_signs() {
    let server = TestServer::start().await;
    let old_token = server.admin_access_token().await;
    let kid = server.services.rotate_signing_key().await.unwrap();
    let jwks = get_json(&server, ".well-known/jwks.json").await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    let new_token = server.admin_access_token().await;
    let header: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            new_token.split('.').next().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], kid.as_str());
    assert!(
        server
            .services
            .authenticate_bearer(&old_token)
            .await
            .is_ok(),
        "tokens of the old key still verify"
    );
}
