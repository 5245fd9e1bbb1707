//! `POST /auth/login`, `/auth/profile`, `/auth/scope` and `GET /auth/login/:login`.

mod common;

use common::{ADMIN_EMAIL, ADMIN_PASSWORD, CHALLENGE, TestServer, VERIFIER};
use medgate_fhir::resources::{ClientApplication, User};
use medgate_service::repo::WriteContext;
use serde_json::{Value, json};

async fn post(server: &TestServer, path: &str, body: Value) -> (u16, Value) {
    let response = server.post_json(path, body).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn text(body: &Value) -> &str {
    body["issue"][0]["details"]["text"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test]
async fn login_validation_messages() {
    let server = TestServer::start().await;
    for email in ["", "xyz"] {
        let (status, body) = post(
            &server,
            "auth/login",
            json!({"email": email, "password": "whatever"}),
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(text(&body), "Valid email address is required");
    }
    let (_, body) = post(
        &server,
        "auth/login",
        json!({"email": ADMIN_EMAIL, "password": ""}),
    )
    .await;
    assert_eq!(
        text(&body),
        "Invalid password, must be at least 5 characters"
    );
    assert_eq!(body["issue"][0]["expression"][0], "password");
}

#[tokio::test]
async fn unknown_and_wrong_password_answer_alike() {
    let server = TestServer::start().await;
    let (wrong_status, wrong) = post(
        &server,
        "auth/login",
        json!({"email": ADMIN_EMAIL, "password": "not-the-password"}),
    )
    .await;
    let (unknown_status, unknown) = post(
        &server,
        "auth/login",
        json!({"email": "nobody@example.com", "password": "not-the-password"}),
    )
    .await;
    assert_eq!(wrong_status, 400);
    assert_eq!(unknown_status, 400);
    assert_eq!(wrong, unknown);
    assert_eq!(text(&wrong), "Email or password is invalid");
}

#[tokio::test]
async fn email_is_case_insensitive() {
    let server = TestServer::start().await;
    let body = server
        .login_admin(json!({"email": "ADMIN@Example.COM"}))
        .await;
    assert!(body["code"].is_string());
}

#[tokio::test]
async fn login_with_unknown_client_is_404() {
    let server = TestServer::start().await;
    for client_id in ["123", "00000000-0000-4000-8000-000000000000"] {
        let (status, body) = post(
            &server,
            "auth/login",
            json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "clientId": client_id}),
        )
        .await;
        assert_eq!(status, 404, "{client_id}");
        assert_eq!(text(&body), "Not found");
    }
}

#[tokio::test]
async fn client_and_project_must_agree() {
    let server = TestServer::start().await;
    let member = server.create_member("agree@example.com", false).await;
    let (client, _) = server.create_client(ClientApplication::default()).await;
    let (status, body) = post(
        &server,
        "auth/login",
        json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "clientId": client.id, "projectId": member.project_id}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(text(&body), "Invalid projectId");
}

#[tokio::test]
async fn no_membership_in_project_is_user_not_found() {
    let server = TestServer::start().await;
    let member = server.create_member("elsewhere@example.com", false).await;
    let (status, body) = post(
        &server,
        "auth/login",
        json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "projectId": member.project_id}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(text(&body), "User not found");
}

#[tokio::test]
async fn new_project_login_has_no_code() {
    let server = TestServer::start().await;
    let body = server.login_admin(json!({"projectId": "new"})).await;
    assert!(body["login"].is_string());
    assert!(body.get("code").is_none());
    assert!(body.get("memberships").is_none());
}

#[tokio::test]
async fn pkce_parameters_are_checked() {
    let server = TestServer::start().await;
    let cases = [
        (
            json!({"codeChallengeMethod": "S256"}),
            "Invalid code challenge",
        ),
        (
            json!({"codeChallenge": CHALLENGE}),
            "Invalid code challenge method",
        ),
        (
            json!({"codeChallenge": CHALLENGE, "codeChallengeMethod": "S512"}),
            "Invalid code challenge method",
        ),
        (
            json!({"codeChallenge": "short", "codeChallengeMethod": "plain"}),
            "Invalid code challenge",
        ),
    ];
    for (extra, message) in cases {
        let mut body = json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD});
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        let (status, response) = post(&server, "auth/login", body).await;
        assert_eq!(status, 400, "{extra}");
        assert_eq!(text(&response), message, "{extra}");
    }
}

#[tokio::test]
async fn two_memberships_need_a_choice() {
    let server = TestServer::start().await;
    let member = server.create_member("two@example.com", false).await;
    let (second_membership, _) = server
        .add_membership(&member.user_id, &member.project_id, false)
        .await;
    let other = server.create_member("other@example.com", false).await;

    let (status, login) = post(
        &server,
        "auth/login",
        json!({"email": member.email, "password": member.password, "codeChallenge": CHALLENGE, "codeChallengeMethod": "S256"}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(login.get("code").is_none());
    let memberships = login["memberships"].as_array().unwrap();
    assert_eq!(memberships.len(), 2);
    for membership in memberships {
        assert!(membership["id"].is_string());
        assert!(membership["project"]["reference"].is_string());
        assert!(membership["profile"]["reference"].is_string());
    }
    let login_id = login["login"].as_str().unwrap();

    // The status of the partial login lists the same choices.
    let status: Value = server
        .http
        .get(server.url(&format!("auth/login/{login_id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["memberships"].as_array().unwrap().len(), 2);

    let (_, body) = post(
        &server,
        "auth/profile",
        json!({"login": login_id, "profile": "00000000-0000-4000-8000-000000000000"}),
    )
    .await;
    assert_eq!(text(&body), "Profile not found");
    let (_, body) = post(
        &server,
        "auth/profile",
        json!({"login": login_id, "profile": other.membership_id}),
    )
    .await;
    assert_eq!(text(&body), "Invalid profile");
    let (status, body) = post(
        &server,
        "auth/profile",
        json!({"login": login_id, "profile": second_membership}),
    )
    .await;
    assert_eq!(status, 200);
    let code = body["code"].as_str().unwrap().to_string();
    let (_, body) = post(
        &server,
        "auth/profile",
        json!({"login": login_id, "profile": member.membership_id}),
    )
    .await;
    assert_eq!(text(&body), "Login profile already set");

    let (status, tokens) = {
        let response = server
            .post_form(
                "oauth2/token",
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("code_verifier", VERIFIER),
                ],
            )
            .await;
        (
            response.status().as_u16(),
            response.json::<Value>().await.unwrap(),
        )
    };
    assert_eq!(status, 200, "{tokens}");
    let (_, body) = post(
        &server,
        "auth/profile",
        json!({"login": login_id, "profile": second_membership}),
    )
    .await;
    assert_eq!(text(&body), "Login granted");
    let response = server
        .http
        .get(server.url(&format!("auth/login/{login_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        text(&response.json::<Value>().await.unwrap()),
        "Login already granted"
    );
}

#[tokio::test]
async fn inactive_membership_cannot_sign_in() {
    let server = TestServer::start().await;
    let member = server.create_member("inactive@example.com", false).await;
    let mut membership: medgate_fhir::resources::ProjectMembership = server
        .services
        .repo
        .read(&member.membership_id)
        .await
        .unwrap();
    membership.active = Some(false);
    server
        .services
        .repo
        .update(&membership, &WriteContext::system(None))
        .await
        .unwrap();
    let (status, body) = post(
        &server,
        "auth/login",
        json!({"email": member.email, "password": member.password}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(text(&body), "Profile not active");
}

#[tokio::test]
async fn scope_can_only_narrow() {
    let server = TestServer::start().await;
    let login = server.login_admin(json!({"scope": "openid profile"})).await;
    let login_id = login["login"].as_str().unwrap();
    let (_, body) = post(&server, "auth/scope", json!({"scope": "openid"})).await;
    assert_eq!(text(&body), "Missing login");
    let (_, body) = post(&server, "auth/scope", json!({"login": login_id})).await;
    assert_eq!(text(&body), "Missing scope");
    let (status, _) = post(
        &server,
        "auth/scope",
        json!({"login": "00000000-0000-4000-8000-000000000000", "scope": "openid"}),
    )
    .await;
    assert_eq!(status, 404);
    let (_, body) = post(
        &server,
        "auth/scope",
        json!({"login": login_id, "scope": "openid profile email"}),
    )
    .await;
    assert_eq!(text(&body), "Invalid scope");
    let (status, body) = post(
        &server,
        "auth/scope",
        json!({"login": login_id, "scope": "openid"}),
    )
    .await;
    assert_eq!(status, 200);
    let code = body["code"].as_str().unwrap();
    let tokens: Value = server
        .post_form(
            "oauth2/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("code_verifier", VERIFIER),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tokens["scope"], "openid");
    // The code issued before the scope change no longer works.
    let old = login["code"].as_str().unwrap();
    let response: Value = server
        .post_form(
            "oauth2/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", old),
                ("code_verifier", VERIFIER),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(response["error"], "invalid_grant");
}

#[tokio::test]
async fn bcrypt_hash_is_replaced_on_sign_in() {
    let server = TestServer::start().await;
    let member = server.create_member("legacy@example.com", false).await;
    let mut user: User = server.services.repo.read(&member.user_id).await.unwrap();
    user.password_hash = Some(
        bcrypt::hash_with_result(&member.password, 4)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoA),
    );
    server
        .services
        .repo
        .update(&user, &WriteContext::system(None))
        .await
        .unwrap();

    let (status, _) = post(
        &server,
        "auth/login",
        json!({"email": member.email, "password": member.password}),
    )
    .await;
    assert_eq!(status, 200);
    let user: User = server.services.repo.read(&member.user_id).await.unwrap();
    assert!(user.password_hash.unwrap().starts_with("$argon2id$"));
    let (status, _) = post(
        &server,
        "auth/login",
        json!({"email": member.email, "password": member.password}),
    )
    .await;
    assert_eq!(status, 200, "the new hash verifies the same password");
}

#[tokio::test]
async fn project_scoped_user_wins_in_its_project() {
    let server = TestServer::start().await;
    // A server-scoped user with a membership in project Q.
    let server_scoped = server.create_member("shared@example.com", false).await;
    // A project-scoped user with the same email, member of project P.
    let project_p = server.create_member("owner-p@example.com", false).await;
    let password = "fern-Compass-58-ember";
    let user = User {
        email: Some("shared@example.com".into()),
        project: Some(medgate_fhir::Reference::new(
            "Project",
            &project_p.project_id,
        )),
        password_hash: Some(
            server
                .services
                .passwords
                .hash(&medgate_service::Secret::from(password))
                .await
                .unwrap(),
        ),
        ..Default::default()
    };
    let user = server
        .services
        .repo
        .create(&user, &WriteContext::system(Some(&project_p.project_id)))
        .await
        .unwrap();
    let (scoped_membership, _) = server
        .add_membership(&user.id, &project_p.project_id, false)
        .await;

    let (status, login) = post(
        &server,
        "auth/login",
        json!({"email": "Shared@Example.com", "password": password, "projectId": project_p.project_id}),
    )
    .await;
    assert_eq!(status, 200, "{login}");
    let login = server
        .services
        .read_login(login["login"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(login.user.reference, format!("User/{}", user.id));
    assert_eq!(
        login.membership.unwrap().reference,
        format!("ProjectMembership/{scoped_membership}")
    );

    // Without a project, the server-scoped user is the one found.
    let (status, login) = post(
        &server,
        "auth/login",
        json!({"email": "shared@example.com", "password": server_scoped.password}),
    )
    .await;
    assert_eq!(status, 200, "{login}");
    let login = server
        .services
        .read_login(login["login"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(
        login.user.reference,
        format!("User/{}", server_scoped.user_id)
    );

    // The project-scoped password does not open the server-scoped account.
    let (status, _) = post(
        &server,
        "auth/login",
        json!({"email": "shared@example.com", "password": password}),
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn remember_grants_refresh_token() {
    let server = TestServer::start().await;
    let member = server.create_member("remember@example.com", false).await;
    let (status, login) = post(
        &server,
        "auth/login",
        json!({"email": member.email, "password": member.password, "remember": true,
            "codeChallenge": CHALLENGE, "codeChallengeMethod": "S256"}),
    )
    .await;
    assert_eq!(status, 200);
    let code = login["code"].as_str().unwrap();
    let tokens: Value = server
        .post_form(
            "oauth2/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("code_verifier", VERIFIER),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tokens["scope"], "openid offline_access");
    assert!(tokens["refresh_token"].is_string(), "{tokens}");
}
