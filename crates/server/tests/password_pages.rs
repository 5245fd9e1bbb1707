//! The HTML pages behind emailed links: `/setpassword/{id}/{secret}` and
//! `/verifyemail/{id}/{secret}`.

mod common;

use common::capture::Capture;
use common::{TestServer, as_str, post_with_token, queued_emails};
use medgate_fhir::resources::User;
use medgate_service::security_request::SecurityRequestType;
use serde_json::json;

const NEW_PASSWORD: &str = "copper-Willow-18-harbor";

/// Invites a new practitioner through the admin API and returns the link from the queued
/// invite email.
async fn invite_link(server: &TestServer, email: &str) -> String {
    let admin = server.create_member("padmin@example.com", true).await;
    let token = as_str(&server.member_tokens(&admin, "openid").await["access_token"]);
    let body = json!({"resourceType": "Practitioner", "firstName": "Bob", "lastName": "Jones",
        "email": email});
    let path = format!("admin/projects/{}/invite", admin.project_id);
    let (status, membership) = post_with_token(server, &path, &token, body).await;
    assert_eq!(status, 200, "{membership}");

    let emails = queued_emails(server).await;
    assert_eq!(emails.len(), 1, "{emails:?}");
    emails[0].values["link"].clone()
}

/// Returns the status and the HTML of a page.
async fn get_page(server: &TestServer, url: &str) -> (u16, String) {
    let response = server.http.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

async fn post_page(server: &TestServer, url: &str, form: &[(&str, &str)]) -> (u16, String) {
    let response = server.http.post(url).form(form).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

async fn submit_password(
    server: &TestServer,
    link: &str,
    password: &str,
    confirmation: &str,
) -> (u16, String) {
    post_page(
        server,
        link,
        &[("password", password), ("confirmPassword", confirmation)],
    )
    .await
}

async fn login_status(server: &TestServer, email: &str, password: &str) -> u16 {
    let body = json!({"email": email, "password": password,
        "codeChallenge": common::CHALLENGE, "codeChallengeMethod": "S256"});
    server.post_json("auth/login", body).await.status().as_u16()
}

#[tokio::test]
async fn invite_link_sets_password() {
    let server = TestServer::start().await;
    let link = invite_link(&server, "bob@example.com").await;
    assert!(link.starts_with(&server.url("setpassword/")), "{link}");

    let response = server.http.get(&link).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["referrer-policy"], "no-referrer");
    let html = response.text().await.unwrap();
    assert!(html.contains("<form method=\"post\">"), "{html}");
    assert!(html.contains("name=\"password\""), "{html}");
    assert!(html.contains("name=\"confirmPassword\""), "{html}");
    let secret = link.rsplit('/').next().unwrap();
    assert!(!html.contains(secret), "the page repeats the secret");

    // GET changed nothing, so the invited user cannot sign in yet.
    assert_eq!(
        login_status(&server, "bob@example.com", NEW_PASSWORD).await,
        400
    );

    let (status, html) = submit_password(&server, &link, NEW_PASSWORD, NEW_PASSWORD).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Password set"), "{html}");
    assert_eq!(
        login_status(&server, "bob@example.com", NEW_PASSWORD).await,
        200
    );
}

#[tokio::test]
async fn set_password_form_errors() {
    let server = TestServer::start().await;
    let link = invite_link(&server, "carol@example.com").await;

    let (status, html) = submit_password(&server, &link, NEW_PASSWORD, "copper-Willow-18").await;
    assert_eq!(status, 400, "{html}");
    assert!(html.contains("Passwords do not match"), "{html}");
    assert!(
        html.contains("name=\"confirmPassword\""),
        "the form is shown again"
    );

    let (status, html) = submit_password(&server, &link, "short", "short").await;
    assert_eq!(status, 400, "{html}");
    assert!(
        html.contains("Password must be between 8 and 72 characters"),
        "{html}"
    );
    assert!(
        html.contains("name=\"password\""),
        "the form is shown again"
    );

    let (status, html) = submit_password(&server, &link, "password1", "password1").await;
    assert_eq!(status, 400, "{html}");
    assert!(html.contains("Password found in breach database"), "{html}");

    // None of the rejected forms used up the link.
    let (status, html) = submit_password(&server, &link, NEW_PASSWORD, NEW_PASSWORD).await;
    assert_eq!(status, 200, "{html}");
}

#[tokio::test]
async fn used_link_shows_error_page() {
    let server = TestServer::start().await;
    let link = invite_link(&server, "dave@example.com").await;
    let (status, _) = submit_password(&server, &link, NEW_PASSWORD, NEW_PASSWORD).await;
    assert_eq!(status, 200);

    let (status, html) = submit_password(
        &server,
        &link,
        "amber-Falcon-62-meadow",
        "amber-Falcon-62-meadow",
    )
    .await;
    assert_eq!(status, 400, "{html}");
    assert!(html.contains("Already used"), "{html}");
    assert!(
        !html.contains("<form"),
        "a used link offers no form: {html}"
    );
    assert_eq!(
        login_status(&server, "dave@example.com", "amber-Falcon-62-meadow").await,
        400
    );

    // A wrong secret and an unknown request.
    let (base, _) = link.rsplit_once('/').unwrap();
    let wrong = format!("{base}/{}", "0".repeat(64));
    let (status, html) = submit_password(&server, &wrong, NEW_PASSWORD, NEW_PASSWORD).await;
    assert_eq!(status, 400, "{html}");
    let unknown = server.url(&format!(
        "setpassword/{}/{}",
        uuid::Uuid::new_v4(),
        "0".repeat(64)
    ));
    let (status, html) = submit_password(&server, &unknown, NEW_PASSWORD, NEW_PASSWORD).await;
    assert_eq!(status, 404, "{html}");
}

#[tokio::test]
async fn link_pages_escape_path_values() {
    let server = TestServer::start().await;
    let hostile = "%3Cscript%3Ealert(1)%3C%2Fscript%3E";
    for page in ["setpassword", "verifyemail"] {
        let url = server.url(&format!("{page}/{hostile}/{hostile}"));
        let (status, html) = get_page(&server, &url).await;
        assert_eq!(status, 200, "{html}");
        assert!(!html.contains("<script>"), "{html}");

        let (status, html) = submit_password(&server, &url, NEW_PASSWORD, NEW_PASSWORD).await;
        assert_eq!(status, 400, "{html}");
        assert!(html.contains("Invalid request ID"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
    }
}

#[tokio::test]
async fn verify_email_page_flow() {
    let server = TestServer::start().await;
    let member = server.create_member("verify@example.com", false).await;
    let user: User = server.services.repo.read(&member.user_id).await.unwrap();
    let prepared = server
        .services
        .prepare_security_request(
            SecurityRequestType::VerifyEmail,
            &user,
            Some(&member.project_id),
            None,
        )
        .unwrap();
    server
        .services
        .repo
        .store
        .write(vec![prepared.write])
        .await
        .unwrap();
    let link = prepared.link.expose().clone();
    assert!(link.starts_with(&server.url("verifyemail/")), "{link}");

    // GET shows a button and changes nothing, as a mail scanner's prefetch must not.
    let (status, html) = get_page(&server, &link).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("<form method=\"post\">"), "{html}");
    let user: User = server.services.repo.read(&member.user_id).await.unwrap();
    assert_ne!(user.email_verified, Some(true));

    let (status, html) = post_page(&server, &link, &[]).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Email address verified"), "{html}");
    let user: User = server.services.repo.read(&member.user_id).await.unwrap();
    assert_eq!(user.email_verified, Some(true));

    let (status, html) = post_page(&server, &link, &[]).await;
    assert_eq!(status, 400, "{html}");
    assert!(html.contains("Already used"), "{html}");
}

#[tokio::test]
async fn link_secret_not_logged() {
    let capture = Capture::default();
    tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(true)
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .init();

    let server = TestServer::start().await;
    let link = invite_link(&server, "erin@example.com").await;
    let secret = link.rsplit('/').next().unwrap().to_string();
    get_page(&server, &link).await;
    let (status, _) = submit_password(&server, &link, NEW_PASSWORD, NEW_PASSWORD).await;
    assert_eq!(status, 200);

    let logs = capture.text();
    assert!(
        logs.contains("\"route\":\"/setpassword/{id}/{secret}\""),
        "the request log has the route template"
    );
    assert!(
        !logs.contains(&secret),
        "the link's secret appeared in the logs"
    );
    assert!(
        !logs.contains(NEW_PASSWORD),
        "the new password appeared in the logs"
    );
}
