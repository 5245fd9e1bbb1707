//! MFA: TOTP and emailed codes at sign-in and in the settings API, the refusal of codes
//! while MFA is pending, attempt limits and the admin reset. TOTP codes are computed here
//! from the secret with the `hmac` and `sha1` crates, independently of the server's
//! implementation, at the instants of the manual clock.

mod common;

use chrono::Duration;
use common::{CHALLENGE, Member, TestServer, VERIFIER};
use hmac::{Hmac, Mac};
use medgate_fhir::resources::{Login, Project, User};
use medgate_service::repo::WriteContext;
use serde_json::{Value, json};

const ENROLL_ACCOUNT: &str = "otpauth://totp/medplum.com:Medplum%20-%20";

// ---- helpers ----

/// Decodes RFC 4648 base32 without padding.
fn base32_decode(text: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bytes = Vec::new();
    let (mut buffer, mut bits) = (0u64, 0);
    for character in text.bytes() {
        let value = alphabet.iter().position(|c| *c == character).unwrap() as u64;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            bytes.push((buffer >> bits) as u8);
        }
    }
    bytes
}

/// The RFC 6238 code of `secret` for the 30-second step that is `offset` steps from now.
fn totp(server: &TestServer, secret: &str, offset: i64) -> String {
    let step = server.services.now().timestamp() / 30 + offset;
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&base32_decode(secret)).unwrap();
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let at = usize::from(digest[19] & 0x0f);
    let value = u32::from_be_bytes([
        digest[at] & 0x7f,
        digest[at + 1],
        digest[at + 2],
        digest[at + 3],
    ]);
    format!("{:06}", value % 1_000_000)
}

fn text(body: &Value) -> &str {
    body["issue"][0]["details"]["text"]
        .as_str()
        .unwrap_or_default()
}

async fn post(server: &TestServer, path: &str, body: Value) -> (u16, Value) {
    let response = server.post_json(path, body).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn post_auth(server: &TestServer, token: &str, path: &str, body: Value) -> (u16, Value) {
    let response = server
        .http
        .post(server.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn mfa_status(server: &TestServer, token: &str) -> Value {
    let response = server
        .http
        .get(server.url("auth/mfa/status"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn secret_of(status: &Value) -> String {
    let uri = url::Url::parse(status["enrollUri"].as_str().unwrap()).unwrap();
    uri.query_pairs()
        .find(|(name, _)| name == "secret")
        .unwrap()
        .1
        .into_owned()
}

async fn access_token(server: &TestServer, member: &Member) -> String {
    server.member_tokens(member, "openid").await["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn password_login(server: &TestServer, member: &Member) -> Value {
    let (status, body) = post(
        server,
        "auth/login",
        json!({"email": member.email, "password": member.password,
            "codeChallenge": CHALLENGE, "codeChallengeMethod": "S256"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn redeem(server: &TestServer, code: &str) -> u16 {
    server
        .post_form(
            "oauth2/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("code_verifier", VERIFIER),
            ],
        )
        .await
        .status()
        .as_u16()
}

/// Enrolls TOTP for a member through the settings API and returns the secret and a fresh
/// access token. The clock then moves one step on, so the enrollment code is not reused.
async fn enroll_totp(server: &TestServer, member: &Member) -> (String, String) {
    let token = access_token(server, member).await;
    let secret = secret_of(&mfa_status(server, &token).await);
    let (status, body) = post_auth(
        server,
        &token,
        "auth/mfa/enroll",
        json!({"token": totp(server, &secret, 0)}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    server.clock.advance(Duration::seconds(30));
    (secret, token)
}

async fn update_user(server: &TestServer, user_id: &str, change: impl FnOnce(&mut User)) {
    let mut user: User = server.services.repo.read(user_id).await.unwrap();
    change(&mut user);
    server
        .services
        .repo
        .update(&user, &WriteContext::system(None))
        .await
        .unwrap();
}

async fn set_project_settings(server: &TestServer, project_id: &str, settings: Value) {
    let mut project: Project = server.services.repo.read(project_id).await.unwrap();
    project.extra.insert("setting".to_string(), settings);
    server
        .services
        .repo
        .update(&project, &WriteContext::system(Some(project_id)))
        .await
        .unwrap();
}

/// Takes the emails queued since the last call from the outbox, as their JSON requests.
async fn queued_emails(server: &TestServer) -> Vec<Value> {
    let now = server.services.now() + Duration::days(1);
    server
        .services
        .repo
        .store
        .claim_outbox("email", now, now + Duration::days(1000), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|message| message.payload)
        .collect()
}

/// The code of the one MFA email queued since the last call, checked to go to `to`.
async fn emailed_code(server: &TestServer, to: &str) -> String {
    let emails = queued_emails(server).await;
    assert_eq!(emails.len(), 1, "{emails:?}");
    assert_eq!(emails[0]["kind"], "mfaCode");
    assert_eq!(emails[0]["to"], to);
    let code = emails[0]["values"]["code"].as_str().unwrap().to_string();
    assert_eq!(code.len(), 6);
    code
}

/// The id of the Login behind an access token.
fn login_of(token: &str) -> String {
    common::claims(token)["login_id"]
        .as_str()
        .unwrap()
        .to_string()
}

// ---- TOTP ----

#[tokio::test]
async fn totp_enrollment_and_sign_in() {
    let server = TestServer::start().await;
    let member = server.create_member("totp@example.com", false).await;
    let token = access_token(&server, &member).await;

    // Enrolling before the status request has created a secret.
    let (status, body) = post_auth(
        &server,
        &token,
        "auth/mfa/enroll",
        json!({"token": "123456"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(text(&body), "Secret not found");

    let first = mfa_status(&server, &token).await;
    assert_eq!(first["enrolled"], false);
    assert_eq!(first["allowedMethods"], json!(["totp"]));
    assert_eq!(first["email"], "totp@example.com");
    let uri = first["enrollUri"].as_str().unwrap();
    assert!(
        uri.starts_with(&format!("{ENROLL_ACCOUNT}totp@example.com?secret=")),
        "{uri}"
    );
    assert!(uri.ends_with("&issuer=medplum.com"));
    assert_eq!(secret_of(&first).len(), 16, "80-bit secret");
    assert!(
        first["enrollQrCode"]
            .as_str()
            .unwrap()
            .starts_with("data:image/png;base64,iVBORw0KGgo")
    );
    let second = mfa_status(&server, &token).await;
    assert_eq!(second["enrollUri"], first["enrollUri"]);
    let secret = secret_of(&first);

    for (token_value, message) in [("", "Missing token"), ("1234567890", "Invalid token")] {
        let (status, body) = post_auth(
            &server,
            &token,
            "auth/mfa/enroll",
            json!({"token": token_value}),
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(text(&body), message);
    }
    let (status, _) = post_auth(
        &server,
        &token,
        "auth/mfa/enroll",
        json!({"token": totp(&server, &secret, 0)}),
    )
    .await;
    assert_eq!(status, 200);
    let (_, body) = post_auth(
        &server,
        &token,
        "auth/mfa/enroll",
        json!({"token": totp(&server, &secret, 0)}),
    )
    .await;
    assert_eq!(text(&body), "Already enrolled");
    let status = mfa_status(&server, &token).await;
    assert_eq!(status["enrolled"], true);
    assert_eq!(status["enrolledMethods"], json!(["totp"]));

    // Sign-in now stops at MFA, without a code.
    server.clock.advance(Duration::seconds(30));
    let login = password_login(&server, &member).await;
    assert_eq!(login["mfaRequired"], true);
    assert_eq!(login["mfaMethods"], json!(["totp"]));
    assert_eq!(login["email"], "totp@example.com");
    assert!(login.get("code").is_none());
    let login_id = login["login"].as_str().unwrap();

    let (_, body) = post(
        &server,
        "auth/mfa/verify",
        json!({"login": login_id, "token": ""}),
    )
    .await;
    assert_eq!(text(&body), "Missing token");
    let wrong = if totp(&server, &secret, 0) == "000000" {
        "000001"
    } else {
        "000000"
    };
    let (_, body) = post(
        &server,
        "auth/mfa/verify",
        json!({"login": login_id, "token": wrong}),
    )
    .await;
    assert_eq!(text(&body), "Invalid MFA token");
    let (status, body) = post(
        &server,
        "auth/mfa/verify",
        json!({"login": login_id, "token": totp(&server, &secret, 0)}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["login"], login_id);
    assert_eq!(redeem(&server, body["code"].as_str().unwrap()).await, 200);

    let (_, body) = post(
        &server,
        "auth/mfa/verify",
        json!({"login": login_id, "token": totp(&server, &secret, 1)}),
    )
    .await;
    assert_eq!(text(&body), "Login granted");
}

#[tokio::test]
async fn totp_code_accepted_once() {
    let server = TestServer::start().await;
    let member = server.create_member("replay@example.com", false).await;
    let (secret, _) = enroll_totp(&server, &member).await;
    let code = totp(&server, &secret, 0);

    let first = password_login(&server, &member).await;
    let (status, _) = post(
        &server,
        "auth/mfa/verify",
        json!({"login": first["login"], "token": code}),
    )
    .await;
    assert_eq!(status, 200);

    // The same code on a second login inside its window is a replay.
    let second = password_login(&server, &member).await;
    let (status, body) = post(
        &server,
        "auth/mfa/verify",
        json!({"login": second["login"], "token": code}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(text(&body), "Invalid MFA token");

    // The next step's code works.
    server.clock.advance(Duration::seconds(30));
    let (status, body) = post(
        &server,
        "auth/mfa/verify",
        json!({"login": second["login"], "token": totp(&server, &secret, 0)}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["code"].is_string());
}

#[tokio::test]
async fn totp_window_bounds_drift() {
    let server = TestServer::start().await;
    let member = server.create_member("window@example.com", false).await;
    let (secret, _) = enroll_totp(&server, &member).await;
    // Away from the step used at enrollment, which would count as a replay.
    server.clock.advance(Duration::seconds(60));

    // Default window 1: the neighbouring steps work, two steps away does not.
    for (offset, accepted) in [(-2, false), (2, false), (-1, true), (1, true)] {
        let login = password_login(&server, &member).await;
        let (status, body) = post(
            &server,
            "auth/mfa/verify",
            json!({"login": login["login"], "token": totp(&server, &secret, offset)}),
        )
        .await;
        assert_eq!(status == 200, accepted, "offset {offset}: {body}");
    }
}

#[tokio::test]
async fn totp_window_from_config() {
    let server = TestServer::start_with(|config| config.mfa_authenticator_window = 0).await;
    let member = server.create_member("strict@example.com", false).await;
    let (secret, _) = enroll_totp(&server, &member).await;

    let login = password_login(&server, &member).await;
    let (status, _) = post(
        &server,
        "auth/mfa/verify",
        json!({"login": login["login"], "token": totp(&server, &secret, 1)}),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = post(
        &server,
        "auth/mfa/verify",
        json!({"login": login["login"], "token": totp(&server, &secret, 0)}),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn verify_needs_enrolled_user() {
    let server = TestServer::start().await;
    let member = server.create_member("plain@example.com", false).await;
    let login = password_login(&server, &member).await;
    assert!(login["code"].is_string(), "no MFA, code at once");
    let (status, body) = post(
        &server,
        "auth/mfa/verify",
        json!({"login": login["login"], "token": "123456"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(text(&body), "User not enrolled in MFA");
}

#[tokio::test]
async fn disable_removes_totp_and_rotates_secret() {
    let server = TestServer::start().await;
    let member = server.create_member("disable@example.com", false).await;
    let token = access_token(&server, &member).await;

    let (_, body) = post_auth(
        &server,
        &token,
        "auth/mfa/disable",
        json!({"token": "123456"}),
    )
    .await;
    assert_eq!(text(&body), "User not enrolled in MFA");

    let (secret, token) = enroll_totp(&server, &member).await;
    let enrolled = mfa_status(&server, &token).await;
    assert_eq!(enrolled["enrolled"], true);
    assert!(
        enrolled.get("enrollUri").is_none() && enrolled.get("enrollQrCode").is_none(),
        "an enrolled secret is never shown again: {enrolled}"
    );
    let cases = [
        (json!({}), "Missing token"),
        (
            json!({"token": "123456", "method": "sms"}),
            "Invalid method",
        ),
        (
            json!({"token": "123456", "method": "email"}),
            "User not enrolled in MFA method",
        ),
        (json!({"token": "1234567890"}), "Invalid token"),
    ];
    for (body, message) in cases {
        let (status, response) = post_auth(&server, &token, "auth/mfa/disable", body).await;
        assert_eq!(status, 400);
        assert_eq!(text(&response), message);
    }
    let (status, body) = post_auth(
        &server,
        &token,
        "auth/mfa/disable",
        json!({"token": totp(&server, &secret, 0)}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let status = mfa_status(&server, &token).await;
    assert_eq!(status["enrolled"], false);
    let new_uri = status["enrollUri"]
        .as_str()
        .expect("a new secret to enroll");
    assert!(!new_uri.contains(&secret), "the secret was rotated");

    let login = password_login(&server, &member).await;
    assert!(login["code"].is_string());
}

#[tokio::test]
async fn last_factor_kept_when_required() {
    let server = TestServer::start().await;
    let member = server.create_member("keep@example.com", false).await;
    let (secret, token) = enroll_totp(&server, &member).await;
    update_user(&server, &member.user_id, |user| {
        user.mfa_required = Some(true)
    })
    .await;

    let (status, body) = post_auth(
        &server,
        &token,
        "auth/mfa/disable",
        json!({"token": totp(&server, &secret, 0), "method": "totp"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        text(&body),
        "Cannot remove the last MFA factor because MFA is required"
    );
    assert_eq!(mfa_status(&server, &token).await["enrolled"], true);
}

// ---- enrollment at sign-in ----

#[tokio::test]
async fn required_user_enrolls_at_sign_in() {
    let server = TestServer::start().await;
    let member = server.create_member("forced@example.com", false).await;
    update_user(&server, &member.user_id, |user| {
        user.mfa_required = Some(true)
    })
    .await;

    let login = password_login(&server, &member).await;
    assert_eq!(login["mfaEnrollRequired"], true);
    assert_eq!(login["allowedMfaMethods"], json!(["totp"]));
    assert!(
        login["enrollQrCode"]
            .as_str()
            .unwrap()
            .starts_with("data:image/png;base64,")
    );
    assert!(login.get("code").is_none());
    let secret = secret_of(&login);
    let login_id = login["login"].as_str().unwrap();

    let (_, body) = post(&server, "auth/mfa/login-enroll", json!({"login": login_id})).await;
    assert_eq!(text(&body), "Missing token");
    let (_, body) = post(
        &server,
        "auth/mfa/login-enroll",
        json!({"login": login_id, "method": "email", "token": "1"}),
    )
    .await;
    assert_eq!(text(&body), "MFA method not allowed");
    let (status, body) = post(
        &server,
        "auth/mfa/login-enroll",
        json!({"login": login_id, "token": totp(&server, &secret, 0)}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(redeem(&server, body["code"].as_str().unwrap()).await, 200);

    // Enrolled now: the next sign-in asks for a code.
    let login = password_login(&server, &member).await;
    assert_eq!(login["mfaRequired"], true);
    let (_, body) = post(
        &server,
        "auth/mfa/login-enroll",
        json!({"login": login["login"], "token": "123456"}),
    )
    .await;
    assert_eq!(text(&body), "Already enrolled");
}

#[tokio::test]
async fn project_requirement_applies_to_members() {
    let server = TestServer::start().await;
    let member = server
        .create_member("project-rule@example.com", false)
        .await;
    set_project_settings(
        &server,
        &member.project_id,
        json!([{"name": "mfaRequired", "valueBoolean": true}]),
    )
    .await;
    let login = password_login(&server, &member).await;
    assert_eq!(login["mfaEnrollRequired"], true, "{login}");
    assert!(login.get("code").is_none());
}

// ---- no code while MFA is pending ----

#[tokio::test]
async fn pending_mfa_withholds_every_code() {
    let server = TestServer::start().await;
    let member = server.create_member("pending@example.com", false).await;
    let (_, _) = enroll_totp(&server, &member).await;
    let login = password_login(&server, &member).await;
    let login_id = login["login"].as_str().unwrap();

    let (status, body) = post(
        &server,
        "auth/profile",
        json!({"login": login_id, "profile": member.membership_id}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(text(&body), "MFA verification required");

    let (status, body) = post(
        &server,
        "auth/scope",
        json!({"login": login_id, "scope": "openid"}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.get("code").is_none(), "{body}");

    let response = server
        .http
        .get(server.url(&format!("auth/login/{login_id}")))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["mfaRequired"], true, "{body}");
    assert!(body.get("code").is_none());

    let (status, body) = post(
        &server,
        "auth/newproject",
        json!({"login": login_id, "projectName": "Side project"}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.get("code").is_none(), "{body}");

    // Directly through the service, binding the membership is refused as well.
    let stored: Login = server.services.repo.read(login_id).await.unwrap();
    let error = server
        .services
        .set_membership(stored, &member.membership_id)
        .await
        .err()
        .expect("set_membership must refuse");
    assert_eq!(error.to_string(), "MFA verification required");
}

// ---- emailed codes ----

async fn allow_email(server: &TestServer, member: &Member) {
    set_project_settings(
        server,
        &member.project_id,
        json!([{"name": "allowedMfaMethods", "valueString": "totp,email"}]),
    )
    .await;
}

#[tokio::test]
async fn email_method_needs_project_permission() {
    let server = TestServer::start().await;
    let member = server.create_member("no-email@example.com", false).await;
    let token = access_token(&server, &member).await;
    let (_, body) = post_auth(
        &server,
        &token,
        "auth/mfa/enroll",
        json!({"method": "email", "token": "123456"}),
    )
    .await;
    assert_eq!(text(&body), "MFA method not allowed");
    let (_, body) = post_auth(&server, &token, "auth/mfa/send-email-challenge", json!({})).await;
    assert_eq!(text(&body), "MFA method not allowed");
}

#[tokio::test]
async fn email_codes_single_use_and_expiring() {
    let server = TestServer::start().await;
    let member = server.create_member("mail@example.com", false).await;
    allow_email(&server, &member).await;
    let token = access_token(&server, &member).await;

    // Enrollment: a code from the challenge, stored on the caller's login.
    let (status, _) = post_auth(&server, &token, "auth/mfa/send-email-challenge", json!({})).await;
    assert_eq!(status, 200);
    let code = emailed_code(&server, &member.email).await;
    let stored: Login = server.services.repo.read(&login_of(&token)).await.unwrap();
    let stored = serde_json::to_string(&stored).unwrap();
    assert!(!stored.contains(&code), "code is stored only as a hash");
    let (_, body) = post_auth(
        &server,
        &token,
        "auth/mfa/enroll",
        json!({"method": "email", "token": "000000"}),
    )
    .await;
    assert_eq!(text(&body), "Invalid token");
    let (status, body) = post_auth(
        &server,
        &token,
        "auth/mfa/enroll",
        json!({"method": "email", "token": code}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let user: User = server.services.repo.read(&member.user_id).await.unwrap();
    assert_eq!(user.email_verified, Some(true));
    assert_eq!(user.mfa_method, vec!["email".to_string()]);

    // Sign-in: email is the only factor, so the first code is sent at once.
    let login = password_login(&server, &member).await;
    assert_eq!(login["mfaMethods"], json!(["email"]));
    let login_id = login["login"].as_str().unwrap().to_string();
    let stored: Login = server.services.repo.read(&login_id).await.unwrap();
    assert!(stored.email_mfa.is_some(), "code sent automatically");

    // Expiry after 20 minutes.
    let code = emailed_code(&server, &member.email).await;
    server.clock.advance(Duration::minutes(20));
    let (_, body) = post(
        &server,
        "auth/mfa/verify",
        json!({"login": login_id, "token": code}),
    )
    .await;
    assert_eq!(text(&body), "MFA code expired");

    // A new code works once.
    let (status, _) = post(&server, "auth/mfa/send-email", json!({"login": login_id})).await;
    assert_eq!(status, 200);
    let code = emailed_code(&server, &member.email).await;
    server.clock.advance(Duration::minutes(19));
    let (status, body) = post(
        &server,
        "auth/mfa/verify",
        json!({"login": login_id, "token": code}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["code"].is_string());
    let (_, body) = post(
        &server,
        "auth/mfa/verify",
        json!({"login": login_id, "token": code}),
    )
    .await;
    assert_eq!(text(&body), "Login already verified");
    let stored: Login = server.services.repo.read(&login_id).await.unwrap();
    assert!(stored.email_mfa.is_none(), "code consumed");
}

#[tokio::test]
async fn send_email_needs_email_factor() {
    let server = TestServer::start().await;
    let member = server.create_member("totp-only@example.com", false).await;
    let _ = enroll_totp(&server, &member).await;
    let login = password_login(&server, &member).await;
    let (status, body) = post(
        &server,
        "auth/mfa/send-email",
        json!({"login": login["login"]}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(text(&body), "User not enrolled in email MFA");
    let (_, body) = post(&server, "auth/mfa/send-email", json!({})).await;
    assert_eq!(text(&body), "Missing login");
}

// ---- attempt limit ----

#[tokio::test]
async fn attempts_capped_per_login() {
    let server = TestServer::start().await;
    let member = server.create_member("guess@example.com", false).await;
    let (secret, _) = enroll_totp(&server, &member).await;
    let login = password_login(&server, &member).await;
    let wrong = if totp(&server, &secret, 0) == "000000" {
        "000001"
    } else {
        "000000"
    };

    for _ in 0..5 {
        let (status, _) = post(
            &server,
            "auth/mfa/verify",
            json!({"login": login["login"], "token": wrong}),
        )
        .await;
        assert_eq!(status, 400);
    }
    // The limit holds even for the right code.
    let (status, body) = post(
        &server,
        "auth/mfa/verify",
        json!({"login": login["login"], "token": totp(&server, &secret, 0)}),
    )
    .await;
    assert_eq!(status, 429, "{body}");
}

#[tokio::test]
async fn parallel_guesses_stay_within_cap() {
    let server = TestServer::start().await;
    let member = server.create_member("parallel@example.com", false).await;
    let (secret, _) = enroll_totp(&server, &member).await;
    let login = password_login(&server, &member).await;
    let wrong = if totp(&server, &secret, 0) == "000000" {
        "000001"
    } else {
        "000000"
    };

    let requests = (0..20).map(|_| {
        server.post_json(
            "auth/mfa/verify",
            json!({"login": login["login"], "token": wrong}),
        )
    });
    let statuses: Vec<u16> = futures::future::join_all(requests)
        .await
        .into_iter()
        .map(|response| response.status().as_u16())
        .collect();
    let checked = statuses.iter().filter(|status| **status == 400).count();
    let refused = statuses.iter().filter(|status| **status == 429).count();
    assert_eq!(checked, 5, "{statuses:?}");
    assert_eq!(refused, 15, "{statuses:?}");
}

// ---- admin reset ----

#[tokio::test]
async fn admin_resets_member_totp() {
    let server = TestServer::start().await;
    let admin = server.create_member("boss@example.com", true).await;
    let member = server.create_member("worker@example.com", false).await;
    let _ = enroll_totp(&server, &member).await;
    // The worker is also a member of the admin's project.
    let (membership_id, _) = server
        .add_membership(&member.user_id, &admin.project_id, false)
        .await;
    let before: User = server.services.repo.read(&member.user_id).await.unwrap();
    let admin_token = access_token(&server, &admin).await;
    let path = format!(
        "admin/projects/{}/members/{membership_id}/mfa/reset",
        admin.project_id
    );

    let (status, body) = post_auth(&server, &admin_token, &path, json!({"method": "sms"})).await;
    assert_eq!(status, 400);
    assert_eq!(text(&body), r#"Method must be "totp" or "email""#);

    let (status, body) = post_auth(&server, &admin_token, &path, json!({})).await;
    assert_eq!(status, 200, "{body}");
    let emails = queued_emails(&server).await;
    assert_eq!(emails.len(), 1, "{emails:?}");
    assert_eq!(emails[0]["kind"], "mfaReset");
    assert_eq!(emails[0]["to"], "worker@example.com");
    assert_eq!(emails[0]["projectId"], admin.project_id.as_str());
    let after: User = server.services.repo.read(&member.user_id).await.unwrap();
    assert_eq!(after.mfa_enrolled, Some(false));
    assert!(after.mfa_method.is_empty());
    assert_ne!(after.mfa_secret, before.mfa_secret);

    let (status, body) = post_auth(&server, &admin_token, &path, json!({"method": "totp"})).await;
    assert_eq!(status, 400);
    assert_eq!(text(&body), "User is not enrolled in MFA method: totp");
}

#[tokio::test]
async fn admin_reset_forbidden_outside_own_project() {
    let server = TestServer::start().await;
    let admin = server.create_member("owner@example.com", true).await;
    let other_admin = server.create_member("stranger@example.com", true).await;
    let plain = server.create_member("colleague@example.com", false).await;
    let (membership_id, _) = server
        .add_membership(&plain.user_id, &admin.project_id, false)
        .await;
    let path = format!(
        "admin/projects/{}/members/{membership_id}/mfa/reset",
        admin.project_id
    );

    // An admin of another project, with the path of this one.
    let token = access_token(&server, &other_admin).await;
    let (status, _) = post_auth(&server, &token, &path, json!({})).await;
    assert_eq!(status, 403);

    // The same admin naming their own project and a foreign membership.
    let foreign = format!(
        "admin/projects/{}/members/{membership_id}/mfa/reset",
        other_admin.project_id
    );
    let (status, _) = post_auth(&server, &token, &foreign, json!({})).await;
    assert_eq!(status, 403);

    // A member of a project who is not its admin.
    let member = server.create_member("staff@example.com", false).await;
    let token = access_token(&server, &member).await;
    let own = format!(
        "admin/projects/{}/members/{}/mfa/reset",
        member.project_id, member.membership_id
    );
    let (status, _) = post_auth(&server, &token, &own, json!({})).await;
    assert_eq!(status, 403);
}

// ---- sign-in page ----

const REDIRECT: &str = "https://app.example.com/cb";

/// Registers a client in the member's project and returns the authorization parameters.
async fn page_params(server: &TestServer, member: &Member) -> Vec<(String, String)> {
    let client = medgate_fhir::resources::ClientApplication {
        name: Some("Chart viewer".into()),
        redirect_uris: vec![REDIRECT.into()],
        ..Default::default()
    };
    let created = server
        .services
        .create_client(client, &WriteContext::system(Some(&member.project_id)))
        .await
        .unwrap();
    [
        ("response_type", "code"),
        ("client_id", created.client.id.as_str()),
        ("redirect_uri", REDIRECT),
        ("scope", "openid"),
        ("state", "st-1"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .map(|(name, value)| (name.to_string(), value.to_string()))
    .collect()
}

/// Submits the password on the sign-in page; returns the page, its cookie and the login id.
async fn page_password(
    server: &TestServer,
    member: &Member,
    params: &[(String, String)],
) -> (String, String, String) {
    let mut form = params.to_vec();
    form.push(("email".into(), member.email.clone()));
    form.push(("password".into(), member.password.clone()));
    let response = server
        .http
        .post(server.url("oauth2/authorize/login"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "MFA page instead of a redirect");
    assert!(response.headers().get("location").is_none());
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let html = response.text().await.unwrap();
    let marker = "name=\"login\" value=\"";
    let start = html.find(marker).expect("login field") + marker.len();
    let login_id = html[start..start + 36].to_string();
    (html, cookie, login_id)
}

async fn page_code(
    server: &TestServer,
    params: &[(String, String)],
    cookie: Option<&str>,
    login_id: &str,
    token: &str,
    enroll: bool,
) -> reqwest::Response {
    let mut form = params.to_vec();
    form.push(("login".into(), login_id.into()));
    form.push(("token".into(), token.into()));
    if enroll {
        form.push(("enroll".into(), "totp".into()));
    }
    let mut request = server
        .http
        .post(server.url("oauth2/authorize/mfa"))
        .form(&form);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn sign_in_page_asks_for_code() {
    let server = TestServer::start().await;
    let member = server.create_member("page-mfa@example.com", false).await;
    let (secret, _) = enroll_totp(&server, &member).await;
    let params = page_params(&server, &member).await;

    let (html, cookie, login_id) = page_password(&server, &member, &params).await;
    assert!(html.contains("Two-step verification"), "{html}");

    // Another browser, without the cookie, cannot finish this sign-in.
    let response = page_code(
        &server,
        &params,
        None,
        &login_id,
        &totp(&server, &secret, 0),
        false,
    )
    .await;
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("location").is_none());

    let wrong = if totp(&server, &secret, 0) == "000000" {
        "000001"
    } else {
        "000000"
    };
    let response = page_code(&server, &params, Some(&cookie), &login_id, wrong, false).await;
    assert_eq!(response.status(), 400);
    let html = response.text().await.unwrap();
    assert!(html.contains("Invalid MFA token"), "{html}");

    let response = page_code(
        &server,
        &params,
        Some(&cookie),
        &login_id,
        &totp(&server, &secret, 0),
        false,
    )
    .await;
    assert_eq!(response.status(), 303);
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let code = location
        .query_pairs()
        .find(|(name, _)| name == "code")
        .unwrap()
        .1
        .into_owned();
    let status = server
        .post_form(
            "oauth2/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", VERIFIER),
                ("redirect_uri", REDIRECT),
            ],
        )
        .await
        .status();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn sign_in_page_enrolls_totp() {
    let server = TestServer::start().await;
    let member = server.create_member("page-enroll@example.com", false).await;
    update_user(&server, &member.user_id, |user| {
        user.mfa_required = Some(true)
    })
    .await;
    let params = page_params(&server, &member).await;

    let (html, cookie, login_id) = page_password(&server, &member, &params).await;
    assert!(html.contains("<img src=\"data:image/png;base64,"), "{html}");
    let user: User = server.services.repo.read(&member.user_id).await.unwrap();
    let secret = user.mfa_secret.expect("secret created for the enrollment");

    let response = page_code(
        &server,
        &params,
        Some(&cookie),
        &login_id,
        &totp(&server, &secret, 0),
        true,
    )
    .await;
    assert_eq!(response.status(), 303);
    let user: User = server.services.repo.read(&member.user_id).await.unwrap();
    assert_eq!(user.mfa_enrolled, Some(true));
}

#[tokio::test]
async fn email_enrollment_at_sign_in() {
    let server = TestServer::start().await;
    let member = server.create_member("forced-mail@example.com", false).await;
    allow_email(&server, &member).await;
    update_user(&server, &member.user_id, |user| {
        user.mfa_required = Some(true)
    })
    .await;

    let login = password_login(&server, &member).await;
    assert_eq!(login["allowedMfaMethods"], json!(["totp", "email"]));
    let login_id = login["login"].as_str().unwrap();
    let (status, body) = post(
        &server,
        "auth/mfa/login-enroll",
        json!({"login": login_id, "method": "email"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["mfaRequired"], true);
    assert_eq!(body["mfaMethods"], json!(["email"]));
    assert!(body.get("code").is_none());

    let code = emailed_code(&server, &member.email).await;
    let (status, body) = post(
        &server,
        "auth/mfa/verify",
        json!({"login": login_id, "token": code}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(redeem(&server, body["code"].as_str().unwrap()).await, 200);
}

#[tokio::test]
async fn pending_login_expires() {
    let server = TestServer::start().await;
    let member = server.create_member("slow@example.com", false).await;
    let (secret, _) = enroll_totp(&server, &member).await;
    let login = password_login(&server, &member).await;

    server.clock.advance(Duration::hours(1));
    let (status, body) = post(
        &server,
        "auth/mfa/verify",
        json!({"login": login["login"], "token": totp(&server, &secret, 0)}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(text(&body), "Login expired");
}

#[tokio::test]
async fn racing_email_code_succeeds_once() {
    let server = TestServer::start().await;
    let member = server.create_member("race@example.com", false).await;
    allow_email(&server, &member).await;
    update_user(&server, &member.user_id, |user| {
        user.mfa_enrolled = Some(true);
        user.mfa_method = vec!["email".to_string()];
    })
    .await;
    let login = password_login(&server, &member).await;
    let code = emailed_code(&server, &member.email).await;

    let requests = (0..5).map(|_| {
        server.post_json(
            "auth/mfa/verify",
            json!({"login": login["login"], "token": code}),
        )
    });
    let responses = futures::future::join_all(requests).await;
    let successes = responses
        .iter()
        .filter(|response| response.status() == 200)
        .count();
    assert_eq!(successes, 1);
}

#[tokio::test]
async fn invite_with_mfa_required() {
    let server = TestServer::start().await;
    let admin = server.create_member("inviter@example.com", true).await;
    let token = access_token(&server, &admin).await;
    let password = "quill-Meadow-58-amber";
    let (status, membership) = post_auth(
        &server,
        &token,
        &format!("admin/projects/{}/invite", admin.project_id),
        json!({"resourceType": "Practitioner", "firstName": "Ines", "lastName": "Vega",
            "email": "invited@example.com", "password": password, "sendEmail": false,
            "mfaRequired": true}),
    )
    .await;
    assert_eq!(status, 200, "{membership}");

    let (status, login) = post(
        &server,
        "auth/login",
        json!({"email": "invited@example.com", "password": password,
            "codeChallenge": CHALLENGE, "codeChallengeMethod": "S256"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(login["mfaEnrollRequired"], true, "{login}");
    assert!(login.get("code").is_none());
}

/// Wrong codes count against the account across logins, so signing in again with the
/// password gives no fresh guesses: the account locks after five failed checks.
#[tokio::test]
async fn wrong_codes_lock_the_account() {
    let server = TestServer::start().await;
    let member = server.create_member("codes-lock@example.com", false).await;
    let (secret, _) = enroll_totp(&server, &member).await;
    let wrong = if totp(&server, &secret, 0) == "000000" {
        "000001"
    } else {
        "000000"
    };

    let mut statuses = Vec::new();
    for _ in 0..3 {
        let login = password_login(&server, &member).await;
        for _ in 0..2 {
            let (status, _) = post(
                &server,
                "auth/mfa/verify",
                json!({"login": login["login"], "token": wrong}),
            )
            .await;
            statuses.push(status);
        }
    }
    assert_eq!(statuses[..5], [400, 400, 400, 400, 400], "{statuses:?}");
    assert_eq!(statuses[5], 429, "{statuses:?}");

    let response = server
        .post_json(
            "auth/login",
            json!({"email": member.email, "password": member.password,
                "codeChallenge": common::CHALLENGE, "codeChallengeMethod": "S256"}),
        )
        .await;
    assert_eq!(
        response.status(),
        429,
        "the right password waits for the lock"
    );
}
