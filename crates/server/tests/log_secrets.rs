//! Logs must never contain a secret. This runs sign-ins and grants at debug level with
//! known secrets, captures every log line, and searches them.

mod common;

use common::capture::Capture;
use common::{TestServer, VERIFIER};
use medgate_fhir::resources::ClientApplication;
use serde_json::{Value, json};

#[tokio::test]
async fn secrets_never_reach_logs() {
    let capture = Capture::default();
    tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(true)
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .init();

    let server = TestServer::start().await;
    let member = server.create_member("logs@example.com", false).await;
    let mut secrets: Vec<String> = vec![
        member.password.clone(),
        common::ADMIN_PASSWORD.to_string(),
        VERIFIER.to_string(),
    ];

    // A failed and a successful password sign-in, and the code redemption.
    let wrong = "wrong-Password-123";
    secrets.push(wrong.to_string());
    server
        .post_json(
            "auth/login",
            json!({"email": member.email, "password": wrong}),
        )
        .await;
    let login: Value = server
        .post_json(
            "auth/login",
            json!({"email": member.email, "password": member.password, "scope": "openid offline",
                "codeChallenge": common::CHALLENGE, "codeChallengeMethod": "S256"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let code = login["code"].as_str().unwrap().to_string();
    secrets.push(code.clone());
    let tokens: Value = server
        .post_form(
            "oauth2/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", VERIFIER),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
    let refresh_token = tokens["refresh_token"].as_str().unwrap().to_string();
    secrets.push(tokens["access_token"].as_str().unwrap().to_string());
    secrets.push(refresh_token.clone());

    // A refresh, and its replay after the grace period.
    let refreshed: Value = server
        .post_form(
            "oauth2/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh_token),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
    secrets.push(refreshed["access_token"].as_str().unwrap().to_string());
    secrets.push(refreshed["refresh_token"].as_str().unwrap().to_string());

    // Client credentials with a right and a wrong secret.
    let (client, client_secret) = server.create_client(ClientApplication::default()).await;
    secrets.push(client_secret.clone());
    let granted: Value = server
        .post_form(
            "oauth2/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &client.id),
                ("client_secret", &client_secret),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
    secrets.push(granted["access_token"].as_str().unwrap().to_string());
    let wrong_secret = "f".repeat(64);
    secrets.push(wrong_secret.clone());
    server
        .post_form(
            "oauth2/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &client.id),
                ("client_secret", &wrong_secret),
            ],
        )
        .await;

    // A reset link: its secret and the new password, and a wrong secret.
    server
        .post_json("auth/resetpassword", json!({"email": member.email}))
        .await;
    let email = common::queued_emails(&server).await.remove(0);
    let link = email.values["link"].clone();
    let (id, reset_secret) = link.rsplit_once('/').unwrap();
    let id = id.rsplit('/').next().unwrap().to_string();
    let new_password = "copper-Willow-18-harbor";
    secrets.push(reset_secret.to_string());
    secrets.push(new_password.to_string());
    server
        .post_json(
            "auth/setpassword",
            json!({"id": id, "secret": "0".repeat(64), "password": new_password}),
        )
        .await;
    let response = server
        .post_json(
            "auth/setpassword",
            json!({"id": id, "secret": reset_secret, "password": new_password}),
        )
        .await;
    assert_eq!(response.status(), 200, "the reset link works");

    // The authorization code also travels in a redirect's query string.
    server
        .http
        .get(server.url(&format!(
            "oauth2/authorize?client_id=x&redirect_uri=y&code={code}"
        )))
        .send()
        .await
        .unwrap();

    let logs = capture.text();
    assert!(logs.contains("request finished"), "logs were captured");
    assert!(
        logs.contains("client signed in with client credentials"),
        "flow logs were captured"
    );
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a secret appeared in the logs: {secret}"
        );
    }
}
