//! The token endpoint: authorization code with PKCE, refresh rotation, client credentials,
//! and the error formats of RFC 6749 §5.2.

mod common;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::Duration;
use common::{CHALLENGE, TestServer, VERIFIER, claims, s256};
use medgate_fhir::resources::ClientApplication;
use serde_json::{Value, json};

async fn token(server: &TestServer, form: &[(&str, &str)]) -> (u16, Value) {
    let response = server.post_form("oauth2/token", form).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn is_live(server: &TestServer, access_token: &str) -> bool {
    server
        .services
        .authenticate_bearer(access_token)
        .await
        .is_ok()
}

fn assert_oauth_error(body: &Value, error: &str, description: &str) {
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_description"], description, "{body}");
}

async fn login_code(server: &TestServer, extra: Value) -> String {
    server.login_admin(extra).await["code"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn token_rejects_json_body() {
    let server = TestServer::start().await;
    let response = server
        .post_json("oauth2/token", json!({"grant_type": "client_credentials"}))
        .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_oauth_error(&body, "invalid_request", "Unsupported content type");
}

#[tokio::test]
async fn token_grant_type_errors() {
    let server = TestServer::start().await;
    let (status, body) = token(&server, &[("grant_type", "")]).await;
    assert_eq!(status, 400);
    assert_oauth_error(&body, "invalid_request", "Missing grant_type");
    let (status, body) = token(&server, &[("grant_type", "xyz")]).await;
    assert_eq!(status, 400);
    assert_oauth_error(&body, "unsupported_grant_type", "Unsupported grant_type");
}

#[tokio::test]
async fn code_with_s256_returns_tokens() {
    let server = TestServer::start().await;
    let code = login_code(
        &server,
        json!({"scope": "openid profile email", "nonce": "n-1"}),
    )
    .await;
    let (status, body) = token(
        &server,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "openid profile email");
    assert!(
        body["project"]["reference"]
            .as_str()
            .unwrap()
            .starts_with("Project/")
    );
    assert!(
        body["profile"]["reference"]
            .as_str()
            .unwrap()
            .starts_with("Practitioner/")
    );
    let access = claims(body["access_token"].as_str().unwrap());
    assert_eq!(access["iss"], server.base_url);
    assert_eq!(access["login_id"].as_str().map(str::len), Some(36));
    assert_eq!(
        access["exp"].as_i64().unwrap() - access["iat"].as_i64().unwrap(),
        3600
    );
    let id_token = claims(body["id_token"].as_str().unwrap());
    assert_eq!(id_token["nonce"], "n-1");
    assert_eq!(id_token["email"], common::ADMIN_EMAIL);
    assert_eq!(id_token["sub"], access["sub"]);
    assert!(is_live(&server, body["access_token"].as_str().unwrap()).await);
}

#[tokio::test]
async fn code_with_plain_pkce_works() {
    let server = TestServer::start().await;
    let verifier = "a".repeat(128);
    let code = login_code(
        &server,
        json!({"codeChallenge": verifier, "codeChallengeMethod": "plain"}),
    )
    .await;
    let (status, body) = token(
        &server,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn plain_refused_when_s256_required() {
    let server = TestServer::start_with(|config| config.require_pkce_s256 = true).await;
    let response = server
        .post_json(
            "auth/login",
            json!({"email": common::ADMIN_EMAIL, "password": common::ADMIN_PASSWORD,
                "codeChallenge": "a".repeat(43), "codeChallengeMethod": "plain"}),
        )
        .await;
    assert_eq!(response.status(), 400);
    let discovery: Value = server
        .http
        .get(server.url(".well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        discovery["code_challenge_methods_supported"],
        json!(["S256"])
    );
}

#[tokio::test]
async fn code_verifier_errors() {
    let server = TestServer::start().await;

    let code = login_code(&server, json!({})).await;
    let (_, body) = token(
        &server,
        &[("grant_type", "authorization_code"), ("code", &code)],
    )
    .await;
    assert_oauth_error(&body, "invalid_request", "Missing code verifier");

    // Sending the challenge instead of the verifier fails the S256 comparison.
    let code = login_code(&server, json!({})).await;
    let (status, body) = token(
        &server,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", CHALLENGE),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_oauth_error(&body, "invalid_grant", "Invalid code verifier");
}

#[tokio::test]
async fn code_without_challenge_needs_verification_context() {
    let server = TestServer::start().await;
    let login = server
        .post_json(
            "auth/login",
            json!({"email": common::ADMIN_EMAIL, "password": common::ADMIN_PASSWORD}),
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    let code = login["code"].as_str().unwrap();
    let (_, body) = token(
        &server,
        &[("grant_type", "authorization_code"), ("code", code)],
    )
    .await;
    assert_oauth_error(&body, "invalid_request", "Missing verification context");
}

#[tokio::test]
async fn verifier_without_challenge_is_rejected() {
    // A downgrade: the authorization request had no challenge, the redemption sends a verifier.
    let server = TestServer::start().await;
    let login = server
        .post_json(
            "auth/login",
            json!({"email": common::ADMIN_EMAIL, "password": common::ADMIN_PASSWORD}),
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    let code = login["code"].as_str().unwrap();
    let (status, body) = token(
        &server,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_oauth_error(&body, "invalid_grant", "Invalid code verifier");
}

#[tokio::test]
async fn verifier_length_and_alphabet() {
    let server = TestServer::start().await;
    let cases = [
        ("a".repeat(42), false),
        ("a".repeat(43), true),
        ("b".repeat(128), true),
        ("c".repeat(129), false),
        (format!("{}+/", "d".repeat(41)), false),
    ];
    for (verifier, accepted) in cases {
        // The S256 challenge is always well formed, so only the verifier's shape decides.
        let code = login_code(
            &server,
            json!({"codeChallenge": s256(&verifier), "codeChallengeMethod": "S256"}),
        )
        .await;
        let (status, body) = token(
            &server,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", &verifier),
            ],
        )
        .await;
        assert_eq!(
            status == 200,
            accepted,
            "verifier of {} characters: {body}",
            verifier.len()
        );
        if !accepted {
            assert!(
                matches!(
                    body["error"].as_str(),
                    Some("invalid_request" | "invalid_grant")
                ),
                "{body}"
            );
        }
    }
}

#[tokio::test]
async fn code_redeemed_twice_revokes_first_tokens() {
    let server = TestServer::start().await;
    let code = login_code(&server, json!({})).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("code_verifier", VERIFIER),
    ];
    let (status, first) = token(&server, &form).await;
    assert_eq!(status, 200);
    let access_token = first["access_token"].as_str().unwrap();
    assert!(is_live(&server, access_token).await);

    let (status, second) = token(&server, &form).await;
    assert_eq!(status, 400);
    assert_oauth_error(&second, "invalid_grant", "Token already granted");
    assert!(
        !is_live(&server, access_token).await,
        "tokens of the first redemption must stop working"
    );
}

#[tokio::test]
async fn concurrent_redemptions_one_succeeds() {
    let server = Arc::new(TestServer::start().await);
    let code = login_code(&server, json!({})).await;
    let attempts = (0..10).map(|_| {
        let server = server.clone();
        let code = code.clone();
        tokio::spawn(async move {
            token(
                &server,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("code_verifier", VERIFIER),
                ],
            )
            .await
        })
    });
    let results = futures::future::join_all(attempts).await;
    let successes = results
        .iter()
        .filter(|result| result.as_ref().unwrap().0 == 200)
        .count();
    assert_eq!(successes, 1);
    for result in &results {
        let (status, body) = result.as_ref().unwrap();
        if *status != 200 {
            assert_eq!(body["error"], "invalid_grant", "{body}");
        }
    }
}

#[tokio::test]
async fn code_expires_after_five_minutes() {
    let server = TestServer::start().await;
    let code = login_code(&server, json!({})).await;
    server
        .clock
        .advance(Duration::minutes(5) + Duration::seconds(1));
    let (_, body) = token(
        &server,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_oauth_error(&body, "invalid_grant", "Code expired");
}

#[tokio::test]
async fn unknown_and_missing_codes() {
    let server = TestServer::start().await;
    let (_, body) = token(
        &server,
        &[("grant_type", "authorization_code"), ("code", "xyzxyz")],
    )
    .await;
    assert_oauth_error(&body, "invalid_grant", "Invalid code");
    let (_, body) = token(
        &server,
        &[
            ("grant_type", "authorization_code"),
            ("code", ""),
            ("client_id", "garbage"),
        ],
    )
    .await;
    assert_oauth_error(&body, "invalid_request", "Missing code");
}

#[tokio::test]
async fn code_of_other_client_is_rejected() {
    let server = TestServer::start().await;
    let code = login_code(&server, json!({})).await;
    let (_, body) = token(
        &server,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", VERIFIER),
            ("client_id", "wrong-client-id"),
        ],
    )
    .await;
    assert_oauth_error(&body, "invalid_grant", "Invalid client");
}

#[tokio::test]
async fn super_admin_gets_no_refresh_token() {
    let server = TestServer::start().await;
    let tokens = server.admin_tokens("openid offline_access").await;
    assert!(tokens.get("refresh_token").is_none(), "{tokens}");
}

#[tokio::test]
async fn refresh_rotates_and_replay_revokes() {
    let server = TestServer::start().await;
    let member = server.create_member("rotate@example.com", false).await;
    let tokens = server.member_tokens(&member, "openid offline").await;
    let first_refresh = tokens["refresh_token"]
        .as_str()
        .expect("offline scope gives a refresh token")
        .to_string();
    assert!(tokens["access_token"].as_str().is_some());

    let (status, second) = token(
        &server,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &first_refresh),
        ],
    )
    .await;
    assert_eq!(status, 200, "{second}");
    let second_refresh = second["refresh_token"].as_str().unwrap();
    assert_ne!(
        claims(second_refresh)["refresh_secret"],
        claims(&first_refresh)["refresh_secret"]
    );
    assert_eq!(second["scope"], "openid offline");
    assert_eq!(second["expires_in"], 3600);

    // Within the grace period the previous token gets the same new secret.
    let (status, retry) = token(
        &server,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &first_refresh),
        ],
    )
    .await;
    assert_eq!(status, 200, "{retry}");
    assert_eq!(
        claims(retry["refresh_token"].as_str().unwrap())["refresh_secret"],
        claims(second_refresh)["refresh_secret"]
    );

    // After it, the previous token is a replay: the whole login is revoked.
    server.clock.advance(Duration::seconds(11));
    let (status, replay) = token(
        &server,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &first_refresh),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_oauth_error(&replay, "invalid_grant", "Token revoked");
    assert!(!is_live(&server, second["access_token"].as_str().unwrap()).await);
    let (_, after) = token(
        &server,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", second_refresh),
        ],
    )
    .await;
    assert_oauth_error(&after, "invalid_grant", "Token revoked");
}

#[tokio::test]
async fn concurrent_refreshes_share_one_rotation() {
    let server = Arc::new(TestServer::start().await);
    let member = server.create_member("race@example.com", false).await;
    let tokens = server.member_tokens(&member, "openid offline").await;
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let attempts = (0..10).map(|_| {
        let server = server.clone();
        let refresh = refresh.clone();
        tokio::spawn(async move {
            token(
                &server,
                &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
            )
            .await
        })
    });
    let results = futures::future::join_all(attempts).await;
    let mut secrets = std::collections::HashSet::new();
    for result in results {
        let (status, body) = result.unwrap();
        if status == 200 {
            secrets.insert(
                claims(body["refresh_token"].as_str().unwrap())["refresh_secret"].to_string(),
            );
        } else {
            assert_eq!(body["error"], "invalid_grant", "{body}");
        }
    }
    assert_eq!(
        secrets.len(),
        1,
        "exactly one new refresh secret, so one token family"
    );
}

#[tokio::test]
async fn refresh_rejects_other_token_types() {
    let server = TestServer::start().await;
    let member = server.create_member("types@example.com", false).await;
    let tokens = server.member_tokens(&member, "openid offline").await;
    for field in ["access_token", "id_token"] {
        let (_, body) = token(
            &server,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", tokens[field].as_str().unwrap()),
            ],
        )
        .await;
        assert_oauth_error(&body, "invalid_grant", "Invalid refresh token");
    }
    let (_, body) = token(
        &server,
        &[("grant_type", "refresh_token"), ("refresh_token", "xyz")],
    )
    .await;
    assert_oauth_error(&body, "invalid_grant", "Invalid refresh token");
    let (_, body) = token(
        &server,
        &[("grant_type", "refresh_token"), ("refresh_token", "")],
    )
    .await;
    assert_oauth_error(&body, "invalid_request", "Invalid refresh token");

    // A refresh token is not a bearer token.
    assert!(!is_live(&server, tokens["refresh_token"].as_str().unwrap()).await);
    assert!(!is_live(&server, tokens["id_token"].as_str().unwrap()).await);
}

#[tokio::test]
async fn unsigned_refresh_token_rejected() {
    let server = TestServer::start().await;
    let member = server.create_member("none@example.com", false).await;
    let tokens = server.member_tokens(&member, "openid offline").await;
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let payload = refresh.split('.').nth(1).unwrap();
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(r#"{"alg":"none","typ":"refresh+jwt"}"#);
    let forged = format!("{header}.{payload}.");
    let (_, body) = token(
        &server,
        &[("grant_type", "refresh_token"), ("refresh_token", &forged)],
    )
    .await;
    assert_oauth_error(&body, "invalid_grant", "Invalid refresh token");
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

#[tokio::test]
async fn client_credentials_post_and_basic() {
    let server = TestServer::start().await;
    let (client, secret) = server
        .create_client(ClientApplication {
            name: Some("svc".into()),
            ..Default::default()
        })
        .await;

    let (status, body) = token(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &client.id),
            ("client_secret", &secret),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "openid");
    assert!(body.get("refresh_token").is_none());
    assert_eq!(
        claims(body["access_token"].as_str().unwrap())["client_id"],
        client.id.as_str()
    );
    assert_eq!(
        body["profile"]["reference"],
        format!("ClientApplication/{}", client.id)
    );
    assert!(is_live(&server, body["access_token"].as_str().unwrap()).await);

    // client_secret_basic, with the id form-encoded as openid-client sends it.
    let encoded_id = client.id.replace('-', "%2D");
    let response = server
        .http
        .post(server.url("oauth2/token"))
        .header("authorization", basic(&encoded_id, &secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn client_credentials_errors() {
    let server = TestServer::start().await;
    let (client, secret) = server.create_client(ClientApplication::default()).await;

    let (status, body) = token(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", ""),
            ("client_secret", "x"),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_oauth_error(&body, "invalid_request", "Missing client_id");
    let (_, body) = token(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &client.id),
        ],
    )
    .await;
    assert_oauth_error(&body, "invalid_request", "Missing client_secret");

    let response = server
        .post_form(
            "oauth2/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "00000000-0000-4000-8000-000000000000"),
                ("client_secret", &secret),
            ],
        )
        .await;
    assert_eq!(response.status(), 401);
    assert!(response.headers().contains_key("www-authenticate"));
    assert_oauth_error(
        &response.json::<Value>().await.unwrap(),
        "invalid_client",
        "Invalid client",
    );

    let (status, body) = token(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &client.id),
            ("client_secret", "wrong"),
        ],
    )
    .await;
    assert_eq!(status, 401);
    assert_oauth_error(&body, "invalid_client", "Invalid secret");

    let response = server
        .http
        .post(server.url("oauth2/token"))
        .header("authorization", "Bearer xyz")
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_oauth_error(
        &response.json::<Value>().await.unwrap(),
        "invalid_request",
        "Invalid authorization header",
    );
}

#[tokio::test]
async fn client_status_off_is_rejected() {
    let server = TestServer::start().await;
    let (client, secret) = server
        .create_client(ClientApplication {
            status: Some("off".into()),
            ..Default::default()
        })
        .await;
    let (status, body) = token(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &client.id),
            ("client_secret", &secret),
        ],
    )
    .await;
    assert_eq!(status, 401);
    assert_oauth_error(&body, "invalid_client", "Invalid client");
}

#[tokio::test]
async fn retiring_secret_still_works() {
    let server = TestServer::start().await;
    let (client, old_secret) = server.create_client(ClientApplication::default()).await;
    let rotated = server
        .services
        .rotate_client_secret(
            &client.id,
            &medgate_service::repo::WriteContext::system(None),
        )
        .await
        .unwrap();
    for secret in [old_secret.as_str(), rotated.secret.expose().as_str()] {
        let (status, body) = token(
            &server,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &client.id),
                ("client_secret", secret),
            ],
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test]
async fn client_lifetime_sets_expiry() {
    let server = TestServer::start().await;
    let (client, secret) = server
        .create_client(ClientApplication {
            access_token_lifetime: Some("60s".into()),
            ..Default::default()
        })
        .await;
    let (_, body) = token(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &client.id),
            ("client_secret", &secret),
        ],
    )
    .await;
    assert_eq!(body["expires_in"], 60);
    let access = claims(body["access_token"].as_str().unwrap());
    assert_eq!(
        access["exp"].as_i64().unwrap() - access["iat"].as_i64().unwrap(),
        60
    );
}

#[tokio::test]
async fn bad_client_lifetime_rejected() {
    let server = TestServer::start().await;
    for lifetime in ["300", "medplum"] {
        let client = ClientApplication {
            access_token_lifetime: Some(lifetime.into()),
            ..Default::default()
        };
        let result = server
            .services
            .create_client(
                client,
                &medgate_service::repo::WriteContext::system(Some(&server.admin_project_id)),
            )
            .await;
        assert!(result.is_err(), "{lifetime}");
    }
}

#[tokio::test]
async fn expired_access_token_is_rejected() {
    let server = TestServer::start().await;
    let access_token = server.admin_access_token().await;
    assert!(is_live(&server, &access_token).await);
    server
        .clock
        .advance(Duration::hours(1) + Duration::seconds(1));
    assert!(!is_live(&server, &access_token).await);
}

#[tokio::test]
async fn confidential_client_must_authenticate_on_refresh() {
    let server = TestServer::start().await;
    let member = server
        .create_member("confidential@example.com", false)
        .await;
    let context = medgate_service::repo::WriteContext::system(Some(&member.project_id));
    let created = server
        .services
        .create_client(
            ClientApplication {
                redirect_uris: vec!["https://app.example.com/cb".into()],
                pkce_optional: Some(true),
                ..Default::default()
            },
            &context,
        )
        .await
        .unwrap();
    let client_id = created.client.id.clone();
    let secret = created.secret.expose().clone();
    let login: Value = server
        .post_json("auth/login", json!({"email": member.email, "password": member.password, "clientId": client_id, "scope": "openid offline"}))
        .await
        .json()
        .await
        .unwrap();
    let code = login["code"].as_str().unwrap();
    let (status, tokens) = token(
        &server,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", &client_id),
            ("client_secret", &secret),
        ],
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let refresh = tokens["refresh_token"].as_str().unwrap();

    let (status, body) = token(
        &server,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", &client_id),
        ],
    )
    .await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = token(
        &server,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", &client_id),
            ("client_secret", &secret),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
}
