//! Password links and admin password routes: `/auth/resetpassword`, `/auth/setpassword`,
//! `/auth/verifyemail`, `/admin/projects/:projectId/members/:membershipId/resetpassword`,
//! `/admin/projects/setpassword` and `/admin/super/setpassword`.

mod common;

use chrono::Duration;
use common::{
    Member, TestServer, as_str, assert_all_ok, assert_bad_request, get_with_token, post,
    post_with_token, queued_emails, redeem, seed,
};
use medgate_fhir::Reference;
use medgate_fhir::resources::{ClientApplication, User, UserSecurityRequest};
use medgate_fhir::search::SearchRequest;
use medgate_service::Secret;
use medgate_service::email::{EmailKind, EmailRequest};
use medgate_service::repo::WriteContext;
use medgate_service::security_request::SecurityRequestType;
use serde_json::{Value, json};

const NEW_PASSWORD: &str = "copper-Willow-18-harbor";

/// Writes a request for the user through the service, as the reset and invite flows do, and
/// returns its id and secret.
async fn security_request(
    server: &TestServer,
    request_type: SecurityRequestType,
    user_id: &str,
) -> (String, String) {
    let user: User = server.services.repo.read(user_id).await.unwrap();
    let project_id = user.project.as_ref().and_then(Reference::id);
    let prepared = server
        .services
        .prepare_security_request(request_type, &user, project_id, None)
        .unwrap();
    server
        .services
        .repo
        .store
        .write(vec![prepared.write])
        .await
        .unwrap();
    (prepared.id, prepared.secret.expose().clone())
}

async fn requests_of(server: &TestServer, user_id: &str) -> Vec<UserSecurityRequest> {
    let request =
        SearchRequest::new("UserSecurityRequest").filter("user", &format!("User/{user_id}"));
    server.services.repo.search(&request, None).await.unwrap()
}

async fn set_password(server: &TestServer, id: &str, secret: &str, password: &str) -> (u16, Value) {
    post(
        server,
        "auth/setpassword",
        json!({"id": id, "secret": secret, "password": password}),
    )
    .await
}

/// Splits a set-password link `{appBaseUrl}setpassword/<id>/<secret>` into id and secret.
fn link_parts(server: &TestServer, email: &EmailRequest) -> (String, String) {
    let link = &email.values["link"];
    let rest = link
        .strip_prefix(&format!("{}setpassword/", server.base_url))
        .unwrap_or_else(|| panic!("unexpected link {link}"));
    let (id, secret) = rest.split_once('/').unwrap();
    (id.to_string(), secret.to_string())
}

/// Signs in with `/auth/login`; returns the status and body.
async fn login(server: &TestServer, email: &str, password: &str) -> (u16, Value) {
    post(
        server,
        "auth/login",
        json!({"email": email, "password": password,
            "codeChallenge": common::CHALLENGE, "codeChallengeMethod": "S256"}),
    )
    .await
}

async fn access_token(server: &TestServer, member: &Member) -> String {
    as_str(&server.member_tokens(member, "openid").await["access_token"])
}

/// Creates a user scoped to `project_id` with a Practitioner membership there.
async fn project_user(server: &TestServer, project_id: &str, email: &str) -> (String, String) {
    let user = User {
        first_name: Some("Pat".to_string()),
        last_name: Some("Scoped".to_string()),
        email: Some(email.to_string()),
        password_hash: Some(
            server
                .services
                .passwords
                .hash(&Secret::from("plum-Harbor-93-quartz"))
                .await
                .unwrap(),
        ),
        project: Some(Reference::new("Project", project_id)),
        ..Default::default()
    };
    let user = server
        .services
        .repo
        .create(&user, &WriteContext::system(Some(project_id)))
        .await
        .unwrap();
    let (membership_id, _) = server.add_membership(&user.id, project_id, false).await;
    (user.id, membership_id)
}

// ---------------------------------------------------------------------------------------
// POST /auth/resetpassword

#[tokio::test]
async fn reset_same_answer_for_unknown_user() {
    let server = TestServer::start().await;
    let member = server.create_member("known@example.com", false).await;

    let (known_status, known) = post(
        &server,
        "auth/resetpassword",
        json!({"email": "Known@Example.com"}),
    )
    .await;
    let (unknown_status, unknown) = post(
        &server,
        "auth/resetpassword",
        json!({"email": "nobody@example.com"}),
    )
    .await;

    assert_all_ok(known_status, &known);
    assert_all_ok(unknown_status, &unknown);
    assert_eq!(known, unknown);
    let requests = requests_of(&server, &member.user_id).await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].request_type, "reset");
    assert!(
        requests[0].extra.get("secret").is_none(),
        "secret stored in clear"
    );
    assert_eq!(requests[0].secret_hash.as_deref().map(str::len), Some(64));
    assert_eq!(
        requests[0].expires_at.as_deref(),
        Some("2026-12-04T13:00:00.000Z")
    );
    let all: Vec<UserSecurityRequest> = server
        .services
        .repo
        .search(&SearchRequest::new("UserSecurityRequest"), None)
        .await
        .unwrap();
    assert_eq!(all.len(), 1, "the unknown email wrote a request");

    let emails = queued_emails(&server).await;
    assert_eq!(emails.len(), 1, "{emails:?}");
    assert_eq!(emails[0].kind, EmailKind::PasswordReset);
    assert_eq!(emails[0].to, "known@example.com");
    assert_eq!(emails[0].values["name"], "Test User");
    let (id, secret) = link_parts(&server, &emails[0]);
    assert_eq!(id, requests[0].id);

    // Following the emailed link sets the password.
    let (status, body) = set_password(&server, &id, &secret, NEW_PASSWORD).await;
    assert_all_ok(status, &body);
    let (status, body) = login(&server, &member.email, NEW_PASSWORD).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn reset_without_email() {
    let server = TestServer::start().await;
    let member = server.create_member("custom@example.com", false).await;
    let (status, body) = post(
        &server,
        "auth/resetpassword",
        json!({"email": member.email, "sendEmail": false}),
    )
    .await;
    assert_all_ok(status, &body);
    assert_eq!(requests_of(&server, &member.user_id).await.len(), 1);
    assert!(queued_emails(&server).await.is_empty());
}

#[tokio::test]
async fn reset_project_scoped_user_needs_project_id() {
    let server = TestServer::start().await;
    let owner = server.create_member("owner@example.com", true).await;
    let (user_id, _) = project_user(&server, &owner.project_id, "scoped@example.com").await;

    let (status, body) = post(
        &server,
        "auth/resetpassword",
        json!({"email": "scoped@example.com"}),
    )
    .await;
    assert_all_ok(status, &body);
    assert!(requests_of(&server, &user_id).await.is_empty());

    let (status, body) = post(
        &server,
        "auth/resetpassword",
        json!({"email": "scoped@example.com", "projectId": owner.project_id}),
    )
    .await;
    assert_all_ok(status, &body);
    let requests = requests_of(&server, &user_id).await;
    assert_eq!(requests.len(), 1);
    let project = requests[0]
        .meta
        .as_ref()
        .and_then(|meta| meta.project.clone());
    assert_eq!(project.as_deref(), Some(owner.project_id.as_str()));

    // The project's templates and name apply to its users' emails.
    let emails = queued_emails(&server).await;
    assert_eq!(emails.len(), 1, "{emails:?}");
    assert_eq!(
        emails[0].project_id.as_deref(),
        Some(owner.project_id.as_str())
    );
    assert_eq!(
        emails[0].values["projectName"],
        "Project of owner@example.com"
    );
}

#[tokio::test]
async fn reset_redirect_uri_must_be_registered() {
    let server = TestServer::start().await;
    let member = server.create_member("member@example.com", false).await;
    let client = ClientApplication {
        name: Some("Patient app".to_string()),
        redirect_uris: vec!["https://app.example.com/done".to_string()],
        ..Default::default()
    };
    server
        .services
        .create_client(client, &WriteContext::system(Some(&member.project_id)))
        .await
        .unwrap();

    let (status, body) = post(
        &server,
        "auth/resetpassword",
        json!({"email": member.email, "projectId": member.project_id,
            "redirectUri": "https://evil.example.com/done"}),
    )
    .await;
    assert_bad_request(status, &body, "Invalid redirectUri", Some("redirectUri"));

    // Without a project there are no clients to register it.
    let (status, body) = post(
        &server,
        "auth/resetpassword",
        json!({"email": member.email, "redirectUri": "https://app.example.com/done"}),
    )
    .await;
    assert_bad_request(status, &body, "Invalid redirectUri", Some("redirectUri"));

    // A client of the admin's project does not count for another project.
    let (status, body) = post(
        &server,
        "auth/resetpassword",
        json!({"email": member.email, "projectId": server.admin_project_id,
            "redirectUri": "https://app.example.com/done"}),
    )
    .await;
    assert_bad_request(status, &body, "Invalid redirectUri", Some("redirectUri"));

    let (status, body) = post(
        &server,
        "auth/resetpassword",
        json!({"email": member.email, "projectId": member.project_id,
            "redirectUri": "https://app.example.com/done"}),
    )
    .await;
    assert_all_ok(status, &body);
}

#[tokio::test]
async fn reset_invalid_input() {
    let server = TestServer::start().await;
    let (status, body) = post(
        &server,
        "auth/resetpassword",
        json!({"email": "not-an-email"}),
    )
    .await;
    assert_bad_request(
        status,
        &body,
        "Valid email address between 3 and 72 characters is required",
        Some("email"),
    );
    let (status, body) = post(
        &server,
        "auth/resetpassword",
        json!({"email": "a@example.com", "projectId": "nope"}),
    )
    .await;
    assert_bad_request(status, &body, "Invalid projectId", Some("projectId"));
}

#[tokio::test]
async fn reset_refused_for_sso_domain() {
    let server = TestServer::start().await;
    let configuration = json!({"resourceType": "DomainConfiguration", "domain": "sso.example.com",
        "identityProvider": {"authorizeUrl": "https://idp.example.com/authorize"}});
    seed(&server, &server.admin_project_id, configuration).await;
    let (status, body) = post(
        &server,
        "auth/resetpassword",
        json!({"email": "someone@sso.example.com"}),
    )
    .await;
    assert_bad_request(
        status,
        &body,
        "Cannot reset password for external auth. Contact your system administrator.",
        None,
    );
}

#[tokio::test]
async fn reset_retires_earlier_links() {
    let server = TestServer::start().await;
    let member = server.create_member("twice@example.com", false).await;
    let (first_id, first_secret) =
        security_request(&server, SecurityRequestType::Reset, &member.user_id).await;

    let (status, body) = post(
        &server,
        "auth/resetpassword",
        json!({"email": member.email}),
    )
    .await;
    assert_all_ok(status, &body);

    let (status, body) = set_password(&server, &first_id, &first_secret, NEW_PASSWORD).await;
    assert_bad_request(status, &body, "Already used", None);
    let requests = requests_of(&server, &member.user_id).await;
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests.iter().filter(|request| request.is_used()).count(),
        1
    );
}

// ---------------------------------------------------------------------------------------
// POST /auth/setpassword

#[tokio::test]
async fn setpassword_reset_link_works_once() {
    let server = TestServer::start().await;
    let member = server.create_member("once@example.com", false).await;
    let (id, secret) = security_request(&server, SecurityRequestType::Reset, &member.user_id).await;

    let (status, body) = set_password(&server, &id, &secret, NEW_PASSWORD).await;
    assert_all_ok(status, &body);
    let (status, body) = login(&server, &member.email, NEW_PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = login(&server, &member.email, &member.password).await;
    assert_eq!(status, 400, "the old password still works: {body}");
    let user: User = server.services.repo.read(&member.user_id).await.unwrap();
    assert_eq!(user.email_verified, Some(true));

    let (status, body) = set_password(&server, &id, &secret, "other-Password-55-lake").await;
    assert_bad_request(status, &body, "Already used", None);
}

#[tokio::test]
async fn setpassword_concurrent_use_once() {
    let server = TestServer::start().await;
    let member = server.create_member("race@example.com", false).await;
    let (id, secret) = security_request(&server, SecurityRequestType::Reset, &member.user_id).await;

    let first_password = "copper-Willow-18-harbor";
    let second_password = "silver-Maple-27-canyon";
    let (first, second) = tokio::join!(
        set_password(&server, &id, &secret, first_password),
        set_password(&server, &id, &secret, second_password),
    );
    let statuses = [first.0, second.0];
    assert_eq!(
        statuses.iter().filter(|status| **status == 200).count(),
        1,
        "{first:?} {second:?}"
    );
    let refused = if first.0 == 200 { &second } else { &first };
    assert_bad_request(refused.0, &refused.1, "Already used", None);

    // The password of the request that won is the one stored.
    let winner = if first.0 == 200 {
        first_password
    } else {
        second_password
    };
    let (status, body) = login(&server, &member.email, winner).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn setpassword_expires_after_one_hour() {
    let server = TestServer::start().await;
    let member = server.create_member("late@example.com", false).await;
    let (late_id, late_secret) =
        security_request(&server, SecurityRequestType::Reset, &member.user_id).await;

    server.clock.advance(Duration::minutes(59));
    let (id, secret) = security_request(&server, SecurityRequestType::Reset, &member.user_id).await;
    server.clock.advance(Duration::minutes(1));

    let (status, body) = set_password(&server, &late_id, &late_secret, NEW_PASSWORD).await;
    assert_bad_request(status, &body, "Expired", None);
    let (status, body) = set_password(&server, &id, &secret, NEW_PASSWORD).await;
    assert_all_ok(status, &body);
}

#[tokio::test]
async fn setpassword_rejects_bad_requests() {
    let server = TestServer::start().await;
    let member = server.create_member("bad@example.com", false).await;
    let (id, secret) = security_request(&server, SecurityRequestType::Reset, &member.user_id).await;

    let (status, body) = set_password(&server, "not-a-uuid", &secret, NEW_PASSWORD).await;
    assert_bad_request(status, &body, "Invalid request ID", Some("id"));
    let (status, body) = set_password(&server, &id, "", NEW_PASSWORD).await;
    assert_bad_request(status, &body, "Missing secret", Some("secret"));
    let (status, body) = set_password(&server, &id, &secret, "short").await;
    assert_bad_request(
        status,
        &body,
        "Password must be between 8 and 72 characters",
        Some("password"),
    );
    let (status, body) = set_password(&server, &id, &secret, "password123").await;
    assert_bad_request(
        status,
        &body,
        "Password found in breach database",
        Some("password"),
    );
    let (status, body) = set_password(&server, &id, "0".repeat(32).as_str(), NEW_PASSWORD).await;
    assert_bad_request(status, &body, "Incorrect secret", Some("secret"));
    let unknown = "00000000-0000-4000-8000-000000000000";
    let (status, body) = set_password(&server, unknown, &secret, NEW_PASSWORD).await;
    assert_eq!(status, 404, "{body}");

    let (verify_id, verify_secret) =
        security_request(&server, SecurityRequestType::VerifyEmail, &member.user_id).await;
    let (status, body) = set_password(&server, &verify_id, &verify_secret, NEW_PASSWORD).await;
    assert_bad_request(status, &body, "Invalid request type", None);

    // None of the refusals consumed the link.
    let (status, body) = set_password(&server, &id, &secret, NEW_PASSWORD).await;
    assert_all_ok(status, &body);
}

#[tokio::test]
async fn setpassword_completes_invite() {
    let server = TestServer::start().await;
    let member = server.create_member("invited@example.com", false).await;
    let mut user: User = server.services.repo.read(&member.user_id).await.unwrap();
    user.password_hash = None;
    server
        .services
        .repo
        .update(&user, &WriteContext::system(None))
        .await
        .unwrap();
    let (id, secret) =
        security_request(&server, SecurityRequestType::Invite, &member.user_id).await;

    // An invite link lasts 7 days.
    server.clock.advance(Duration::days(6));
    let (status, body) = set_password(&server, &id, &secret, NEW_PASSWORD).await;
    assert_all_ok(status, &body);
    let (status, body) = login(&server, &member.email, NEW_PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["code"].is_string(), "{body}");
}

#[tokio::test]
async fn setpassword_accepts_medplum_invite() {
    // Medplum's invite writes `{type: invite, user, secret}` with the secret in clear text
    // and no `expiresAt`; imported requests of that shape still work for 7 days.
    let server = TestServer::start().await;
    let member = server.create_member("imported@example.com", false).await;
    let request = json!({"resourceType": "UserSecurityRequest", "type": "invite",
        "user": {"reference": format!("User/{}", member.user_id)},
        "secret": "3f2a9c0d5e8b7a61"});
    let request = seed(&server, &member.project_id, request).await;
    let id = as_str(&request["id"]);

    let (status, body) = set_password(&server, &id, "3f2a9c0d5e8b7a60", NEW_PASSWORD).await;
    assert_bad_request(status, &body, "Incorrect secret", Some("secret"));
    server.clock.advance(Duration::days(7));
    let (status, body) = set_password(&server, &id, "3f2a9c0d5e8b7a61", NEW_PASSWORD).await;
    assert_bad_request(status, &body, "Expired", None);
    server.clock.advance(-Duration::seconds(1));
    let (status, body) = set_password(&server, &id, "3f2a9c0d5e8b7a61", NEW_PASSWORD).await;
    assert_all_ok(status, &body);
}

#[tokio::test]
async fn setpassword_revokes_sessions() {
    let server = TestServer::start().await;
    let member = server.create_member("sessions@example.com", false).await;
    let token = access_token(&server, &member).await;
    let (status, _) = get_with_token(&server, "auth/me", &token).await;
    assert_eq!(status, 200);

    let (id, secret) = security_request(&server, SecurityRequestType::Reset, &member.user_id).await;
    let (status, body) = set_password(&server, &id, &secret, NEW_PASSWORD).await;
    assert_all_ok(status, &body);

    let (status, body) = get_with_token(&server, "auth/me", &token).await;
    assert_eq!(status, 401, "{body}");
}

// ---------------------------------------------------------------------------------------
// POST /auth/verifyemail

#[tokio::test]
async fn verifyemail_marks_email_verified() {
    let server = TestServer::start().await;
    let member = server.create_member("verify@example.com", false).await;
    let (id, secret) =
        security_request(&server, SecurityRequestType::VerifyEmail, &member.user_id).await;

    let (status, body) = post(
        &server,
        "auth/verifyemail",
        json!({"id": id, "secret": "f".repeat(32)}),
    )
    .await;
    assert_bad_request(status, &body, "Incorrect secret", Some("secret"));

    let (status, body) = post(
        &server,
        "auth/verifyemail",
        json!({"id": id, "secret": secret}),
    )
    .await;
    assert_all_ok(status, &body);
    let user: User = server.services.repo.read(&member.user_id).await.unwrap();
    assert_eq!(user.email_verified, Some(true));

    let (status, body) = post(
        &server,
        "auth/verifyemail",
        json!({"id": id, "secret": secret}),
    )
    .await;
    assert_bad_request(status, &body, "Already used", None);

    let (reset_id, reset_secret) =
        security_request(&server, SecurityRequestType::Reset, &member.user_id).await;
    let (status, body) = post(
        &server,
        "auth/verifyemail",
        json!({"id": reset_id, "secret": reset_secret}),
    )
    .await;
    assert_bad_request(status, &body, "Invalid user security request type", None);
}

#[tokio::test]
async fn verifyemail_expires() {
    let server = TestServer::start().await;
    let member = server.create_member("slow@example.com", false).await;
    let (id, secret) =
        security_request(&server, SecurityRequestType::VerifyEmail, &member.user_id).await;
    server.clock.advance(Duration::days(7));
    let (status, body) = post(
        &server,
        "auth/verifyemail",
        json!({"id": id, "secret": secret}),
    )
    .await;
    assert_bad_request(status, &body, "Expired", None);
}

// ---------------------------------------------------------------------------------------
// POST /admin/projects/:projectId/members/:membershipId/resetpassword

#[tokio::test]
async fn admin_member_reset() {
    let server = TestServer::start().await;
    let admin = server.create_member("padmin@example.com", true).await;
    let (user_id, membership_id) =
        project_user(&server, &admin.project_id, "staff@example.com").await;
    let token = access_token(&server, &admin).await;

    let path = format!(
        "admin/projects/{}/members/{membership_id}/resetpassword",
        admin.project_id
    );
    let (status, body) = post_with_token(&server, &path, &token, json!({})).await;
    assert_all_ok(status, &body);
    let requests = requests_of(&server, &user_id).await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].request_type, "reset");
    let emails = queued_emails(&server).await;
    assert_eq!(emails.len(), 1, "{emails:?}");
    assert_eq!(emails[0].kind, EmailKind::PasswordReset);
    assert_eq!(emails[0].to, "staff@example.com");
    assert_eq!(link_parts(&server, &emails[0]).0, requests[0].id);
}

#[tokio::test]
async fn admin_member_reset_other_project_forbidden() {
    let server = TestServer::start().await;
    let admin = server.create_member("padmin@example.com", true).await;
    let other = server.create_member("other@example.com", true).await;
    let token = access_token(&server, &admin).await;

    // The path names a project the caller does not administer.
    let path = format!(
        "admin/projects/{}/members/{}/resetpassword",
        other.project_id, other.membership_id
    );
    let (status, body) = post_with_token(&server, &path, &token, json!({})).await;
    assert_eq!(status, 403, "{body}");

    // The caller's own project in the path, with a membership of another project.
    let path = format!(
        "admin/projects/{}/members/{}/resetpassword",
        admin.project_id, other.membership_id
    );
    let (status, body) = post_with_token(&server, &path, &token, json!({})).await;
    assert_eq!(status, 403, "{body}");
    assert!(requests_of(&server, &other.user_id).await.is_empty());
    assert!(queued_emails(&server).await.is_empty());

    // A member who is not an admin.
    let plain = server.create_member("plain@example.com", false).await;
    let plain_token = access_token(&server, &plain).await;
    let path = format!(
        "admin/projects/{}/members/{}/resetpassword",
        plain.project_id, plain.membership_id
    );
    let (status, body) = post_with_token(&server, &path, &plain_token, json!({})).await;
    assert_eq!(status, 403, "{body}");

    let (status, _) = post(&server, &path, json!({})).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn admin_member_reset_needs_email() {
    let server = TestServer::start().await;
    let admin = server.create_member("padmin@example.com", true).await;
    let (user_id, membership_id) =
        project_user(&server, &admin.project_id, "noemail@example.com").await;
    let mut user: User = server.services.repo.read(&user_id).await.unwrap();
    user.email = None;
    server
        .services
        .repo
        .update(&user, &WriteContext::system(None))
        .await
        .unwrap();
    let token = access_token(&server, &admin).await;
    let path = format!(
        "admin/projects/{}/members/{membership_id}/resetpassword",
        admin.project_id
    );
    let (status, body) = post_with_token(&server, &path, &token, json!({})).await;
    assert_bad_request(status, &body, "User does not have an email address", None);
}

// ---------------------------------------------------------------------------------------
// POST /admin/projects/setpassword and /admin/super/setpassword

#[tokio::test]
async fn admin_sets_project_user_password() {
    let server = TestServer::start().await;
    let admin = server.create_member("padmin@example.com", true).await;
    project_user(&server, &admin.project_id, "scoped@example.com").await;
    let token = access_token(&server, &admin).await;

    let (status, body) = post_with_token(
        &server,
        "admin/projects/setpassword",
        &token,
        json!({"email": "Scoped@Example.com", "password": NEW_PASSWORD}),
    )
    .await;
    assert_all_ok(status, &body);
    let (status, body) = post(
        &server,
        "auth/login",
        json!({"email": "scoped@example.com", "password": NEW_PASSWORD,
            "projectId": admin.project_id,
            "codeChallenge": common::CHALLENGE, "codeChallengeMethod": "S256"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // A server-scoped member (the admin itself) is not the project's to change.
    let (status, body) = post_with_token(
        &server,
        "admin/projects/setpassword",
        &token,
        json!({"email": admin.email, "password": NEW_PASSWORD}),
    )
    .await;
    assert_bad_request(status, &body, "User not found", None);

    let (status, body) = post_with_token(
        &server,
        "admin/projects/setpassword",
        &token,
        json!({"email": "scoped@example.com", "password": "short"}),
    )
    .await;
    assert_bad_request(
        status,
        &body,
        "Password must be between 8 and 72 characters",
        Some("password"),
    );
}

#[tokio::test]
async fn admin_setpassword_needs_admin() {
    let server = TestServer::start().await;
    let member = server.create_member("plain@example.com", false).await;
    project_user(&server, &member.project_id, "scoped@example.com").await;
    let token = access_token(&server, &member).await;
    let (status, body) = post_with_token(
        &server,
        "admin/projects/setpassword",
        &token,
        json!({"email": "scoped@example.com", "password": NEW_PASSWORD}),
    )
    .await;
    assert_eq!(status, 403, "{body}");
}

#[tokio::test]
async fn admin_setpassword_revokes_sessions() {
    let server = TestServer::start().await;
    let admin = server.create_member("padmin@example.com", true).await;
    let (user_id, _) = project_user(&server, &admin.project_id, "scoped@example.com").await;
    let scoped = Member {
        email: "scoped@example.com".to_string(),
        password: "plum-Harbor-93-quartz".to_string(),
        user_id,
        project_id: admin.project_id.clone(),
        membership_id: String::new(),
        profile: String::new(),
    };
    let (status, body) = post(
        &server,
        "auth/login",
        json!({"email": scoped.email, "password": scoped.password, "projectId": scoped.project_id,
            "codeChallenge": common::CHALLENGE, "codeChallengeMethod": "S256"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, tokens) = redeem(&server, &as_str(&body["code"])).await;
    assert_eq!(status, 200, "{tokens}");
    let scoped_token = as_str(&tokens["access_token"]);

    let token = access_token(&server, &admin).await;
    let (status, body) = post_with_token(
        &server,
        "admin/projects/setpassword",
        &token,
        json!({"email": scoped.email, "password": NEW_PASSWORD}),
    )
    .await;
    assert_all_ok(status, &body);
    let (status, _) = get_with_token(&server, "auth/me", &scoped_token).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn super_setpassword() {
    let server = TestServer::start().await;
    let member = server.create_member("member@example.com", true).await;
    let (scoped_id, _) = project_user(&server, &member.project_id, "scoped@example.com").await;

    // A project admin is not a super admin.
    let token = access_token(&server, &member).await;
    let (status, body) = post_with_token(
        &server,
        "admin/super/setpassword",
        &token,
        json!({"email": member.email, "password": NEW_PASSWORD}),
    )
    .await;
    assert_eq!(status, 403, "{body}");

    let super_token = server.admin_access_token().await;
    let (status, body) = post_with_token(
        &server,
        "admin/super/setpassword",
        &super_token,
        json!({"email": "unknown@example.com", "password": NEW_PASSWORD}),
    )
    .await;
    assert_bad_request(status, &body, "User not found", None);

    let (status, body) = post_with_token(
        &server,
        "admin/super/setpassword",
        &super_token,
        json!({"email": member.email, "password": NEW_PASSWORD}),
    )
    .await;
    assert_all_ok(status, &body);
    let (status, body) = login(&server, &member.email, NEW_PASSWORD).await;
    assert_eq!(status, 200, "{body}");

    // A project-scoped user needs its projectId.
    let (status, body) = post_with_token(
        &server,
        "admin/super/setpassword",
        &super_token,
        json!({"email": "scoped@example.com", "password": NEW_PASSWORD}),
    )
    .await;
    assert_bad_request(status, &body, "User not found", None);
    let (status, body) = post_with_token(
        &server,
        "admin/super/setpassword",
        &super_token,
        json!({"email": "scoped@example.com", "password": NEW_PASSWORD,
            "projectId": member.project_id}),
    )
    .await;
    assert_all_ok(status, &body);
    let user: User = server.services.repo.read(&scoped_id).await.unwrap();
    let verification = server
        .services
        .passwords
        .verify(&Secret::from(NEW_PASSWORD), user.password_hash.as_deref())
        .await
        .unwrap();
    assert_ne!(
        verification,
        medgate_service::password::Verification::Invalid
    );
}
