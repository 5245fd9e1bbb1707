//! Registration (`/auth/newuser`, `/auth/newproject`), the account routes (`/auth/me`,
//! `/auth/changepassword`, `/auth/revoke`, `/auth/clientinfo`), and `/oauth2/userinfo` and
//! `/oauth2/logout`.

mod common;

use common::{
    ADMIN_EMAIL, ADMIN_PASSWORD, CHALLENGE, TestServer, as_str, assert_all_ok, assert_bad_request,
    claims, get_with_token, new_user_body, open_project, post, post_with_token, redeem, send, text,
};
use medgate_fhir::resources::{ClientApplication, Project, ProjectMembership, User};
use medgate_fhir::search::SearchRequest;
use medgate_service::repo::WriteContext;
use serde_json::{Value, json};

const PASSWORD: &str = common::NEW_USER_PASSWORD;
const NEW_PASSWORD: &str = "copper-Willow-18-harbor";

fn keys(body: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = body
        .as_object()
        .map(|object| object.keys().map(String::as_str).collect())
        .unwrap_or_default();
    keys.sort_unstable();
    keys
}

/// A user registered through the API, owner of a project created through the API.
struct Owner {
    email: String,
    user_id: String,
    project_id: String,
    tokens: Value,
}

impl Owner {
    fn access_token(&self) -> &str {
        self.tokens["access_token"].as_str().unwrap()
    }
}

/// Registers `email` with `extra` request fields, creates a project, redeems the code.
async fn register_owner(server: &TestServer, email: &str, extra: Value) -> Owner {
    let (status, body) = post(server, "auth/newuser", new_user_body(email, extra)).await;
    assert_eq!(status, 200, "newuser failed: {body}");
    let login = as_str(&body["login"]);
    let (status, body) = post(
        server,
        "auth/newproject",
        json!({"login": login, "projectName": "Alice Clinic"}),
    )
    .await;
    assert_eq!(status, 200, "newproject failed: {body}");
    let (status, tokens) = redeem(server, &as_str(&body["code"])).await;
    assert_eq!(status, 200, "code redemption failed: {tokens}");
    let user = server
        .services
        .find_user_by_email(email, None)
        .await
        .unwrap()
        .expect("registered user exists");
    let project_id = as_str(&tokens["project"]["reference"])
        .trim_start_matches("Project/")
        .to_string();
    Owner {
        email: email.to_string(),
        user_id: user.id,
        project_id,
        tokens,
    }
}

/// Signs a user in with `/auth/login`, redeems the code and returns the token response.
async fn sign_in(server: &TestServer, email: &str, password: &str, scope: &str) -> Value {
    let (status, body) = post(
        server,
        "auth/login",
        json!({"email": email, "password": password, "scope": scope,
            "codeChallenge": CHALLENGE, "codeChallengeMethod": "S256"}),
    )
    .await;
    assert_eq!(status, 200, "login failed: {body}");
    let (status, tokens) = redeem(server, &as_str(&body["code"])).await;
    assert_eq!(status, 200, "code redemption failed: {tokens}");
    tokens
}

/// Lists the names of every project on the server.
async fn project_names(server: &TestServer) -> Vec<String> {
    let request = SearchRequest::new("Project").count(1000);
    let projects: Vec<Project> = server.services.repo.search(&request, None).await.unwrap();
    projects
        .into_iter()
        .filter_map(|project| project.name)
        .collect()
}

async fn users_with_email(server: &TestServer, email: &str) -> Vec<User> {
    let request = SearchRequest::new("User").filter("email", email);
    server.services.repo.search(&request, None).await.unwrap()
}

// ---------------------------------------------------------------------------------------
// POST /auth/newuser

#[tokio::test]
async fn newuser_returns_login_only() {
    let server = TestServer::start().await;
    // The body `@medplum/core` 5 sends under Node.js: a plain 128-hex challenge, an empty
    // clientId, `remember` and reCAPTCHA fields.
    let body = json!({
        "firstName": " Alice ",
        "lastName": "Smith",
        "email": "alice@example.com",
        "password": PASSWORD,
        "recaptchaToken": "rc-token",
        "recaptchaSiteKey": "rc-site",
        "remember": true,
        "clientId": "",
        "codeChallengeMethod": "plain",
        "codeChallenge": "a1".repeat(64),
    });
    let (status, body) = post(&server, "auth/newuser", body).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(keys(&body), ["login"]);
    let login = server
        .services
        .read_login(body["login"].as_str().unwrap())
        .await
        .unwrap();
    assert!(login.membership.is_none());
    assert_eq!(login.auth_method, "password");
    assert_eq!(login.code_challenge_method.as_deref(), Some("plain"));

    let user = server
        .services
        .find_user_by_email("alice@example.com", None)
        .await
        .unwrap()
        .expect("user stored");
    assert_eq!(login.user.reference, format!("User/{}", user.id));
    assert_eq!(user.first_name.as_deref(), Some("Alice"));
    assert_eq!(user.last_name.as_deref(), Some("Smith"));
    assert_eq!(user.email_verified, Some(false));
    assert!(user.project.is_none());
    assert!(
        user.password_hash
            .as_deref()
            .unwrap()
            .starts_with("$argon2id$")
    );
}

#[tokio::test]
async fn newuser_mixed_case_email() {
    let server = TestServer::start().await;
    let owner = register_owner(&server, "Alice.Mixed@Example.COM", json!({})).await;
    assert_eq!(
        users_with_email(&server, "alice.mixed@example.com")
            .await
            .len(),
        1
    );

    for email in ["alice.mixed@example.com", "Alice.Mixed@Example.COM"] {
        let tokens = sign_in(&server, email, PASSWORD, "openid").await;
        assert_eq!(
            claims(tokens["access_token"].as_str().unwrap())["sub"],
            owner.user_id
        );
    }

    let (status, body) = post(
        &server,
        "auth/newuser",
        new_user_body("alice.mixed@example.com", json!({})),
    )
    .await;
    assert_bad_request(status, &body, "Email already registered", Some("email"));
    assert_eq!(
        users_with_email(&server, "alice.mixed@example.com")
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn newuser_name_limits() {
    let server = TestServer::start().await;
    let long = "n".repeat(129);
    let cases = [
        (
            json!({"firstName": ""}),
            "First name must be between 1 and 128 characters",
            "firstName",
        ),
        (
            json!({"firstName": null}),
            "First name must be between 1 and 128 characters",
            "firstName",
        ),
        (
            json!({"firstName": long}),
            "First name must be between 1 and 128 characters",
            "firstName",
        ),
        (
            json!({"lastName": "  "}),
            "Last name must be between 1 and 128 characters",
            "lastName",
        ),
        (
            json!({"lastName": long}),
            "Last name must be between 1 and 128 characters",
            "lastName",
        ),
    ];
    for (extra, message, field) in cases {
        let (status, body) = post(
            &server,
            "auth/newuser",
            new_user_body("names@example.com", extra),
        )
        .await;
        assert_bad_request(status, &body, message, Some(field));
    }
    assert!(
        users_with_email(&server, "names@example.com")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn newuser_email_validation() {
    let server = TestServer::start().await;
    let long = format!("{}@example.com", "a".repeat(61));
    for email in ["", "xyz", "a@b", long.as_str()] {
        let (status, body) = post(&server, "auth/newuser", new_user_body(email, json!({}))).await;
        assert_bad_request(
            status,
            &body,
            "Valid email address between 3 and 72 characters is required",
            Some("email"),
        );
    }
}

#[tokio::test]
async fn newuser_password_policy() {
    let server = TestServer::start().await;
    let cases = [
        (
            "xyz".to_string(),
            "Password must be between 8 and 72 characters",
        ),
        (
            "x".repeat(300),
            "Password must be between 8 and 72 characters",
        ),
        // 40 two-byte characters are 80 bytes, over bcrypt's 72-byte limit.
        (
            "é".repeat(40),
            "Password must be between 8 and 72 characters",
        ),
        (
            "password123".to_string(),
            "Password found in breach database",
        ),
    ];
    for (password, message) in cases {
        let body = new_user_body("policy@example.com", json!({"password": password}));
        let (status, body) = post(&server, "auth/newuser", body).await;
        assert_bad_request(status, &body, message, Some("password"));
    }
    assert!(
        users_with_email(&server, "policy@example.com")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn newuser_duplicate_server_user() {
    let server = TestServer::start().await;
    for email in [ADMIN_EMAIL, "Admin@Example.com"] {
        let (status, body) = post(&server, "auth/newuser", new_user_body(email, json!({}))).await;
        assert_bad_request(status, &body, "Email already registered", Some("email"));
    }
    assert_eq!(users_with_email(&server, ADMIN_EMAIL).await.len(), 1);
}

#[tokio::test]
async fn newuser_duplicate_project_user() {
    let server = TestServer::start().await;
    let project_id = open_project(&server).await;
    let in_project = json!({"projectId": project_id});

    let (status, body) = post(
        &server,
        "auth/newuser",
        new_user_body("bob@example.com", in_project.clone()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let users = users_with_email(&server, "bob@example.com").await;
    assert_eq!(users.len(), 1);
    let project_reference = format!("Project/{project_id}");
    assert_eq!(
        users[0]
            .project
            .as_ref()
            .map(|project| project.reference.as_str()),
        Some(project_reference.as_str())
    );

    let (status, body) = post(
        &server,
        "auth/newuser",
        new_user_body("bob@example.com", in_project),
    )
    .await;
    assert_bad_request(status, &body, "Email already registered", Some("email"));

    // A server-scoped account is a different scope, so the same email is still free there.
    let (status, body) = post(
        &server,
        "auth/newuser",
        new_user_body("bob@example.com", json!({})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(users_with_email(&server, "bob@example.com").await.len(), 2);
}

#[tokio::test]
async fn newuser_project_must_allow_registration() {
    let server = TestServer::start().await;
    let closed = json!({"projectId": server.admin_project_id});
    let (status, body) = post(
        &server,
        "auth/newuser",
        new_user_body("carol@example.com", closed),
    )
    .await;
    assert_bad_request(
        status,
        &body,
        "Project does not allow open registration",
        None,
    );

    for project_id in ["00000000-0000-4000-8000-00000000abcd", "xyz"] {
        let extra = json!({"projectId": project_id});
        let (status, body) = post(
            &server,
            "auth/newuser",
            new_user_body("carol@example.com", extra),
        )
        .await;
        assert_bad_request(status, &body, "Invalid projectId", Some("projectId"));
    }
    assert!(
        users_with_email(&server, "carol@example.com")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn newuser_client_and_project() {
    let server = TestServer::start().await;
    let (client, _) = server.create_client(ClientApplication::default()).await;
    let other_project = open_project(&server).await;

    let extra = json!({"clientId": client.id, "projectId": other_project});
    let (status, body) = post(
        &server,
        "auth/newuser",
        new_user_body("dave@example.com", extra),
    )
    .await;
    assert_bad_request(status, &body, "Client and project do not match", None);

    for client_id in ["123", "00000000-0000-4000-8000-00000000abcd"] {
        let extra = json!({"clientId": client_id});
        let (status, body) = post(
            &server,
            "auth/newuser",
            new_user_body("dave@example.com", extra),
        )
        .await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(text(&body), "Not found");
    }

    // The client implies its project, whose registration is closed.
    let extra = json!({"clientId": client.id});
    let (status, body) = post(
        &server,
        "auth/newuser",
        new_user_body("dave@example.com", extra),
    )
    .await;
    assert_bad_request(
        status,
        &body,
        "Project does not allow open registration",
        None,
    );
    assert!(
        users_with_email(&server, "dave@example.com")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn newuser_pkce_validation() {
    let server = TestServer::start().await;
    let cases = [
        (
            json!({"codeChallenge": null, "codeChallengeMethod": "S256"}),
            "Invalid code challenge",
        ),
        (
            json!({"codeChallengeMethod": null}),
            "Invalid code challenge method",
        ),
        (
            json!({"codeChallengeMethod": "xyz"}),
            "Invalid code challenge method",
        ),
        (json!({"codeChallenge": "short"}), "Invalid code challenge"),
    ];
    for (extra, message) in cases {
        let (status, body) = post(
            &server,
            "auth/newuser",
            new_user_body("erin@example.com", extra),
        )
        .await;
        assert_bad_request(status, &body, message, None);
    }
}

#[tokio::test]
async fn newuser_rejects_wrong_media_type() {
    let server = TestServer::start().await;
    let response = server
        .http
        .post(server.url("auth/newuser"))
        .header("content-type", "text/plain")
        .body(new_user_body("frank@example.com", json!({})).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let (status, body) = send(
        &server,
        reqwest::Method::POST,
        "auth/newuser",
        None,
        Some(json!({"firstName": 7})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(text(&body).starts_with("Invalid request body"), "{body}");
}

#[tokio::test]
async fn newuser_remember_and_email_scope() {
    let server = TestServer::start().await;

    // remember: the first session gets a refresh token.
    let owner = register_owner(&server, "remember@example.com", json!({"remember": true})).await;
    assert!(
        owner.tokens["refresh_token"].is_string(),
        "{}",
        owner.tokens
    );
    assert_eq!(owner.tokens["scope"], "openid offline_access");

    // scope `openid profile email`: the ID token carries the email, and no refresh token.
    let extra = json!({"scope": "openid profile email"});
    let owner = register_owner(&server, "Scoped@Example.com", extra).await;
    let id_token = claims(owner.tokens["id_token"].as_str().unwrap());
    assert_eq!(id_token["email"], "scoped@example.com");
    assert!(
        owner.tokens.get("refresh_token").is_none(),
        "{}",
        owner.tokens
    );
}

// ---------------------------------------------------------------------------------------
// POST /auth/newproject

#[tokio::test]
async fn newproject_then_token_for_new_project() {
    let server = TestServer::start().await;
    let (status, body) = post(
        &server,
        "auth/newuser",
        new_user_body("owner@example.com", json!({"projectId": "new"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let login = as_str(&body["login"]);

    let (status, body) = post(
        &server,
        "auth/newproject",
        json!({"login": login, "projectName": " Harbor Clinic "}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(keys(&body), ["code", "login"]);
    assert_eq!(body["login"], login.as_str());

    let (status, tokens) = redeem(&server, &as_str(&body["code"])).await;
    assert_eq!(status, 200, "{tokens}");
    let project_reference = as_str(&tokens["project"]["reference"]);
    let project_id = project_reference.trim_start_matches("Project/").to_string();
    assert_ne!(project_id, server.admin_project_id);
    assert_eq!(tokens["project"]["display"], "Harbor Clinic");
    let user = server
        .services
        .find_user_by_email("owner@example.com", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        claims(tokens["access_token"].as_str().unwrap())["sub"],
        user.id
    );

    // The project: named, owned by the user, strict.
    let project: Project = server.services.repo.read(&project_id).await.unwrap();
    assert_eq!(project.name.as_deref(), Some("Harbor Clinic"));
    assert_eq!(project.strict_mode, Some(true));
    assert!(!project.is_super_admin());
    assert_eq!(
        project.owner.unwrap().reference,
        format!("User/{}", user.id)
    );

    // The owner's admin membership and Practitioner profile.
    let request = SearchRequest::new("ProjectMembership").filter("project", &project_reference);
    let memberships: Vec<ProjectMembership> =
        server.services.repo.search(&request, None).await.unwrap();
    assert_eq!(memberships.len(), 2, "owner and default client");
    let owner = memberships
        .iter()
        .find(|membership| membership.user.reference == format!("User/{}", user.id))
        .expect("owner membership");
    assert!(owner.is_admin());
    assert_eq!(
        owner.profile.reference,
        as_str(&tokens["profile"]["reference"])
    );
    assert_eq!(owner.profile.display.as_deref(), Some("Alice Smith"));
    let practitioner = server.services.read_profile(&owner.profile).await.unwrap();
    assert_eq!(practitioner["resourceType"], "Practitioner");
    assert_eq!(practitioner["name"][0]["given"][0], "Alice");
    assert_eq!(practitioner["name"][0]["family"], "Smith");
    assert_eq!(practitioner["telecom"][0]["system"], "email");
    assert_eq!(practitioner["telecom"][0]["value"], "owner@example.com");
    assert_eq!(practitioner["meta"]["project"], project_id.as_str());

    // The default client, with a membership whose user and profile are the client.
    let request =
        SearchRequest::new("ClientApplication").filter("name", "harbor clinic default client");
    let clients: Vec<ClientApplication> = server
        .services
        .repo
        .search(&request, Some(&project_id))
        .await
        .unwrap();
    assert_eq!(clients.len(), 1);
    let client = &clients[0];
    assert_eq!(client.name.as_deref(), Some("Harbor Clinic Default Client"));
    assert_eq!(
        client.extra["description"],
        "Default client for Harbor Clinic"
    );
    assert!(client.is_confidential());
    let client_membership = memberships
        .iter()
        .find(|membership| membership.user.reference == format!("ClientApplication/{}", client.id))
        .expect("client membership");
    assert_eq!(client_membership.profile, client_membership.user);
    assert!(client_membership.access_policy.is_none());
}

#[tokio::test]
async fn newproject_validation() {
    let server = TestServer::start().await;
    let (status, body) = post(
        &server,
        "auth/newproject",
        json!({"login": "xyz", "projectName": "Valid Name"}),
    )
    .await;
    assert_bad_request(status, &body, "Login ID is required.", Some("login"));
    let (status, body) = post(&server, "auth/newproject", json!({})).await;
    assert_bad_request(status, &body, "Login ID is required.", Some("login"));

    let (_, body) = post(
        &server,
        "auth/newuser",
        new_user_body("gina@example.com", json!({})),
    )
    .await;
    let login = as_str(&body["login"]);
    for name in ["abc", "   abc   ", &"x".repeat(73)] {
        let (status, body) = post(
            &server,
            "auth/newproject",
            json!({"login": login, "projectName": name}),
        )
        .await;
        assert_bad_request(
            status,
            &body,
            "Project name must be between 4 and 72 characters",
            Some("projectName"),
        );
    }

    let unknown = "00000000-0000-4000-8000-00000000abcd";
    let (status, body) = post(
        &server,
        "auth/newproject",
        json!({"login": unknown, "projectName": "Valid Name"}),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(text(&body), "Not found");
}

#[tokio::test]
async fn newproject_twice_is_rejected() {
    let server = TestServer::start().await;
    let (_, body) = post(
        &server,
        "auth/newuser",
        new_user_body("hank@example.com", json!({})),
    )
    .await;
    let login = as_str(&body["login"]);
    let request = json!({"login": login, "projectName": "First Project"});
    let (status, body) = post(&server, "auth/newproject", request).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        project_names(&server)
            .await
            .contains(&"First Project".to_string())
    );

    let request = json!({"login": login, "projectName": "Second Project"});
    let (status, body) = post(&server, "auth/newproject", request).await;
    assert_bad_request(status, &body, "Login already has a membership", None);
    assert!(
        !project_names(&server)
            .await
            .contains(&"Second Project".to_string())
    );
}

#[tokio::test]
async fn newproject_rejects_unusable_logins() {
    let server = TestServer::start().await;

    // A revoked login.
    let (_, body) = post(
        &server,
        "auth/newuser",
        new_user_body("ivy@example.com", json!({})),
    )
    .await;
    let login_id = as_str(&body["login"]);
    let login = server.services.read_login(&login_id).await.unwrap();
    server.services.revoke_login(login).await.unwrap();
    let request = json!({"login": login_id, "projectName": "Ivy Project"});
    let (status, body) = post(&server, "auth/newproject", request).await;
    assert_bad_request(status, &body, "Login revoked", None);

    // A login of a project-scoped user, restricted to that project.
    let project_id = open_project(&server).await;
    let extra = json!({"projectId": project_id});
    let (status, body) = post(
        &server,
        "auth/newuser",
        new_user_body("jack@example.com", extra),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let request = json!({"login": body["login"], "projectName": "Jack Project"});
    let (status, body) = post(&server, "auth/newproject", request).await;
    assert_bad_request(
        status,
        &body,
        "Login is restricted to another project",
        None,
    );

    let names = project_names(&server).await;
    assert!(!names.contains(&"Ivy Project".to_string()), "{names:?}");
    assert!(!names.contains(&"Jack Project".to_string()), "{names:?}");
}

#[tokio::test]
async fn newproject_for_existing_user() {
    let server = TestServer::start().await;
    // `/auth/login` with `projectId: "new"` returns the login alone, without a code.
    let login = server.login_admin(json!({"projectId": "new"})).await;
    assert_eq!(keys(&login), ["login"]);

    let request = json!({"login": login["login"], "projectName": "Second Home"});
    let (status, body) = post(&server, "auth/newproject", request).await;
    assert_eq!(status, 200, "{body}");
    let (status, tokens) = redeem(&server, &as_str(&body["code"])).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["project"]["display"], "Second Home");

    // The admin now has two memberships to choose from.
    let body = server.login_admin(json!({})).await;
    assert_eq!(
        body["memberships"].as_array().map(Vec::len),
        Some(2),
        "{body}"
    );
}

#[tokio::test]
async fn scope_after_registration() {
    let server = TestServer::start().await;
    let extra = json!({"scope": "openid profile"});
    let (_, body) = post(
        &server,
        "auth/newuser",
        new_user_body("kim@example.com", extra),
    )
    .await;
    let login = as_str(&body["login"]);
    let request = json!({"login": login, "projectName": "Kim Project"});
    let (status, body) = post(&server, "auth/newproject", request).await;
    assert_eq!(status, 200, "{body}");

    let (status, body) = post(&server, "auth/scope", json!({"scope": "openid"})).await;
    assert_bad_request(status, &body, "Missing login", None);
    let (status, body) = post(&server, "auth/scope", json!({"login": login})).await;
    assert_bad_request(status, &body, "Missing scope", None);
    let unknown = json!({"login": "00000000-0000-4000-8000-00000000abcd", "scope": "openid"});
    let (status, _) = post(&server, "auth/scope", unknown).await;
    assert_eq!(status, 404);
    let wider = json!({"login": login, "scope": "openid profile email"});
    let (status, body) = post(&server, "auth/scope", wider).await;
    assert_bad_request(status, &body, "Invalid scope", None);
    let same = json!({"login": login, "scope": "openid profile"});
    let (status, body) = post(&server, "auth/scope", same).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["code"].is_string(), "{body}");
}

// ---------------------------------------------------------------------------------------
// GET /auth/me

#[tokio::test]
async fn me_shape_for_project_owner() {
    let server = TestServer::start().await;
    let owner = register_owner(&server, "me@example.com", json!({})).await;
    let access_claims = claims(owner.access_token());

    let response = server
        .http
        .get(server.url("auth/me"))
        .bearer_auth(owner.access_token())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(content_type.contains("json"), "{content_type}");
    let me: Value = response.json().await.unwrap();
    assert_eq!(
        keys(&me),
        [
            "accessPolicy",
            "config",
            "membership",
            "profile",
            "project",
            "security",
            "user"
        ]
    );

    let project = &me["project"];
    assert_eq!(keys(project), ["id", "name", "resourceType", "strictMode"]);
    assert_eq!(project["resourceType"], "Project");
    assert_eq!(project["id"], owner.project_id.as_str());
    assert_eq!(project["name"], "Alice Clinic");
    assert_eq!(project["strictMode"], true);

    let membership = &me["membership"];
    assert_eq!(
        keys(membership),
        ["admin", "id", "profile", "resourceType", "user"]
    );
    assert_eq!(membership["resourceType"], "ProjectMembership");
    assert!(membership["id"].is_string());
    assert_eq!(
        membership["user"]["reference"],
        format!("User/{}", owner.user_id)
    );
    assert_eq!(membership["profile"]["reference"], access_claims["profile"]);
    assert_eq!(membership["admin"], true);

    let profile = &me["profile"];
    assert_eq!(profile["resourceType"], "Practitioner");
    assert_eq!(
        format!("Practitioner/{}", as_str(&profile["id"])),
        as_str(&access_claims["profile"])
    );
    assert_eq!(profile["name"][0]["family"], "Smith");
    assert_eq!(profile["telecom"][0]["value"], "me@example.com");

    let config = &me["config"];
    assert_eq!(config["resourceType"], "UserConfiguration");
    let titles: Vec<&str> = config["menu"]
        .as_array()
        .unwrap()
        .iter()
        .map(|menu| menu["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Favorites", "Admin"]);
    assert_eq!(
        config["menu"][0]["link"][0],
        json!({"name": "Patient", "target": "/Patient"})
    );
    assert_eq!(config["menu"][1]["link"][4]["target"], "/admin/config");

    assert_eq!(
        me["user"],
        json!({"resourceType": "User", "id": owner.user_id, "email": owner.email})
    );
    assert_eq!(me["security"]["mfaEnrolled"], false);
    let sessions = me["security"]["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["id"], access_claims["login_id"]);
    assert_eq!(sessions[0]["authMethod"], "password");
    assert_eq!(sessions[0]["remoteAddress"], "127.0.0.1");
    assert!(sessions[0]["lastUpdated"].is_string());
}

#[tokio::test]
async fn me_for_super_admin_and_member() {
    let server = TestServer::start().await;
    let token = server.admin_access_token().await;
    let (status, me) = get_with_token(&server, "auth/me", &token).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["project"]["superAdmin"], true);
    assert_eq!(me["project"]["name"], "Super Admin");
    assert_eq!(me["membership"]["admin"], true);
    let menu = me["config"]["menu"].as_array().unwrap();
    let titles: Vec<&str> = menu
        .iter()
        .map(|menu| menu["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Favorites", "Admin", "Super Admin"]);
    assert_eq!(
        menu[1]["link"].as_array().unwrap().len(),
        4,
        "no Config for super admins"
    );
    assert_eq!(
        menu[2]["link"][1],
        json!({"name": "Super Config", "target": "/admin/super"})
    );

    let member = server.create_member("member@example.com", false).await;
    let tokens = server.member_tokens(&member, "openid").await;
    let (status, me) =
        get_with_token(&server, "auth/me", tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{me}");
    assert!(me["project"].get("superAdmin").is_none(), "{me}");
    assert_eq!(me["membership"]["admin"], false);
    assert_eq!(me["membership"]["id"], member.membership_id.as_str());
    assert_eq!(me["config"]["menu"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn me_returns_stored_user_configuration() {
    let server = TestServer::start().await;
    let member = server.create_member("configured@example.com", false).await;
    let config = json!({"resourceType": "UserConfiguration", "name": "Front desk",
        "menu": [{"title": "Desk", "link": [{"name": "Patients", "target": "/Patient"}]}]});
    let config = server
        .services
        .repo
        .prepare_create(config, &WriteContext::system(Some(&member.project_id)))
        .unwrap();
    let config_id = as_str(&config["id"]);
    server
        .services
        .repo
        .store
        .write(vec![medgate_store::WriteOp::Create(config)])
        .await
        .unwrap();
    let mut membership: ProjectMembership = server
        .services
        .repo
        .read(&member.membership_id)
        .await
        .unwrap();
    membership.extra.insert(
        "userConfiguration".to_string(),
        json!({"reference": format!("UserConfiguration/{config_id}")}),
    );
    server
        .services
        .repo
        .update(&membership, &WriteContext::system(None))
        .await
        .unwrap();

    let tokens = server.member_tokens(&member, "openid").await;
    let (status, me) =
        get_with_token(&server, "auth/me", tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["config"]["id"], config_id.as_str());
    assert_eq!(me["config"]["name"], "Front desk");
    assert_eq!(me["config"]["menu"][0]["title"], "Desk");
}

#[tokio::test]
async fn me_for_client_credentials() {
    let server = TestServer::start().await;
    let (client, secret) = server.create_client(ClientApplication::default()).await;
    let response = server
        .post_form(
            "oauth2/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &client.id),
                ("client_secret", &secret),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    let tokens: Value = response.json().await.unwrap();
    let (status, me) =
        get_with_token(&server, "auth/me", tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["profile"]["resourceType"], "ClientApplication");
    assert_eq!(me["profile"]["id"], client.id.as_str());
    assert!(me["profile"].get("secretHash").is_none(), "{me}");
    assert!(me.get("security").is_none(), "{me}");
    assert!(me.get("user").is_none(), "{me}");
    assert_eq!(
        me["membership"]["user"]["reference"],
        format!("ClientApplication/{}", client.id)
    );
}

#[tokio::test]
async fn me_requires_live_session() {
    let server = TestServer::start().await;
    let (status, body) = send(&server, reqwest::Method::GET, "auth/me", None, None).await;
    assert_eq!(status, 401);
    assert_eq!(text(&body), "Unauthorized");
    let (status, _) = get_with_token(&server, "auth/me", "not-a-token").await;
    assert_eq!(status, 401);

    let member = server.create_member("inactive@example.com", false).await;
    let tokens = server.member_tokens(&member, "openid").await;
    let token = tokens["access_token"].as_str().unwrap();
    let (status, _) = get_with_token(&server, "auth/me", token).await;
    assert_eq!(status, 200);
    let mut membership: ProjectMembership = server
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
    let (status, _) = get_with_token(&server, "auth/me", token).await;
    assert_eq!(status, 401);
}

// ---------------------------------------------------------------------------------------
// POST /auth/changepassword

#[tokio::test]
async fn changepassword_validation() {
    let server = TestServer::start().await;
    let owner = register_owner(&server, "pw@example.com", json!({})).await;
    let token = owner.access_token();

    let (status, body) = post_with_token(
        &server,
        "auth/changepassword",
        token,
        json!({"newPassword": NEW_PASSWORD}),
    )
    .await;
    assert_bad_request(status, &body, "Missing oldPassword", Some("oldPassword"));

    let cases = [
        ("short", "Password must be between 8 and 72 characters"),
        ("password123", "Password found in breach database"),
    ];
    for (new_password, message) in cases {
        let body = json!({"oldPassword": PASSWORD, "newPassword": new_password});
        let (status, body) = post_with_token(&server, "auth/changepassword", token, body).await;
        assert_bad_request(status, &body, message, Some("newPassword"));
    }

    let body = json!({"oldPassword": "wrong-password", "newPassword": NEW_PASSWORD});
    let (status, body) = post_with_token(&server, "auth/changepassword", token, body).await;
    assert_bad_request(status, &body, "Incorrect password", Some("oldPassword"));

    // Nothing changed: the old password still signs in and the session still works.
    sign_in(&server, "pw@example.com", PASSWORD, "openid").await;
    let (status, _) = get_with_token(&server, "auth/me", token).await;
    assert_eq!(status, 200);

    let (status, _) = post(
        &server,
        "auth/changepassword",
        json!({"oldPassword": PASSWORD, "newPassword": NEW_PASSWORD}),
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn changepassword_revokes_other_sessions() {
    let server = TestServer::start().await;
    let owner = register_owner(&server, "rotate@example.com", json!({})).await;
    let current = owner.access_token().to_string();
    let other = sign_in(&server, "rotate@example.com", PASSWORD, "openid").await;
    let other = as_str(&other["access_token"]);
    let (status, _) = get_with_token(&server, "auth/me", &other).await;
    assert_eq!(status, 200);

    let body = json!({"oldPassword": PASSWORD, "newPassword": NEW_PASSWORD});
    let (status, body) = post_with_token(&server, "auth/changepassword", &current, body).await;
    assert_all_ok(status, &body);

    let (status, _) = get_with_token(&server, "auth/me", &other).await;
    assert_eq!(status, 401, "the other session is revoked");
    let (status, me) = get_with_token(&server, "auth/me", &current).await;
    assert_eq!(status, 200, "the session that changed the password stays");
    assert_eq!(me["security"]["sessions"].as_array().unwrap().len(), 1);

    let (status, body) = post(
        &server,
        "auth/login",
        json!({"email": "rotate@example.com", "password": PASSWORD}),
    )
    .await;
    assert_bad_request(status, &body, "Email or password is invalid", None);
    sign_in(&server, "rotate@example.com", NEW_PASSWORD, "openid").await;

    let user: User = server.services.repo.read(&owner.user_id).await.unwrap();
    assert!(user.password_hash.unwrap().starts_with("$argon2id$"));
}

#[tokio::test]
async fn changepassword_rejects_clients() {
    let server = TestServer::start().await;
    let (client, secret) = server.create_client(ClientApplication::default()).await;
    let response = server
        .post_form(
            "oauth2/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &client.id),
                ("client_secret", &secret),
            ],
        )
        .await;
    let tokens: Value = response.json().await.unwrap();
    let body = json!({"oldPassword": secret, "newPassword": NEW_PASSWORD});
    let token = tokens["access_token"].as_str().unwrap();
    let (status, body) = post_with_token(&server, "auth/changepassword", token, body).await;
    assert_eq!(status, 403, "{body}");
}

// ---------------------------------------------------------------------------------------
// POST /auth/revoke

#[tokio::test]
async fn revoke_validation() {
    let server = TestServer::start().await;
    let token = server.admin_access_token().await;
    for body in [json!({}), json!({"loginId": "xyz"})] {
        let (status, body) = post_with_token(&server, "auth/revoke", &token, body).await;
        assert_bad_request(status, &body, "Login ID is required.", Some("loginId"));
    }

    let unknown = json!({"loginId": "00000000-0000-4000-8000-00000000abcd"});
    let (status, body) = post_with_token(&server, "auth/revoke", &token, unknown).await;
    assert_eq!(status, 404, "{body}");

    // Another user's login is not found either, and stays live.
    let member = server.create_member("other@example.com", false).await;
    let tokens = server.member_tokens(&member, "openid").await;
    let member_token = as_str(&tokens["access_token"]);
    let login_id = claims(&member_token)["login_id"].clone();
    let body = json!({"loginId": login_id});
    let (status, body) = post_with_token(&server, "auth/revoke", &token, body).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(text(&body), "Not found");
    let (status, _) = get_with_token(&server, "auth/me", &member_token).await;
    assert_eq!(status, 200);

    let (status, _) = post(&server, "auth/revoke", json!({"loginId": login_id})).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn revoke_own_other_session() {
    let server = TestServer::start().await;
    let owner = register_owner(&server, "two@example.com", json!({})).await;
    let current = owner.access_token().to_string();
    let other = sign_in(&server, "two@example.com", PASSWORD, "openid").await;
    let other = as_str(&other["access_token"]);
    let other_login = claims(&other)["login_id"].clone();

    let (_, me) = get_with_token(&server, "auth/me", &current).await;
    let listed: Vec<&Value> = me["security"]["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|session| &session["id"])
        .collect();
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&&other_login), "{listed:?}");

    let body = json!({"loginId": other_login});
    let (status, body) = post_with_token(&server, "auth/revoke", &current, body).await;
    assert_all_ok(status, &body);
    let (status, _) = get_with_token(&server, "auth/me", &other).await;
    assert_eq!(status, 401);
    let (status, me) = get_with_token(&server, "auth/me", &current).await;
    assert_eq!(status, 200);
    let sessions = me["security"]["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["id"], claims(&current)["login_id"]);
}

// ---------------------------------------------------------------------------------------
// GET /auth/clientinfo/:id

#[tokio::test]
async fn clientinfo_returns_branding() {
    let server = TestServer::start().await;
    let logo = json!({"contentType": "image/png", "url": "https://example.com/logo.png"});
    let branded = ClientApplication {
        sign_in_form: Some(json!({"welcomeString": "Welcome to Harbor", "logo": logo})),
        ..Default::default()
    };
    let (branded, _) = server.create_client(branded).await;
    let (plain, _) = server.create_client(ClientApplication::default()).await;

    let path = format!("auth/clientinfo/{}", branded.id);
    let (status, body) = send(&server, reqwest::Method::GET, &path, None, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"welcomeString": "Welcome to Harbor", "logo": logo})
    );

    let path = format!("auth/clientinfo/{}", plain.id);
    let (status, body) = send(&server, reqwest::Method::GET, &path, None, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({}));

    for id in ["00000000-0000-4000-8000-00000000abcd", "xyz"] {
        let path = format!("auth/clientinfo/{id}");
        let (status, body) = send(&server, reqwest::Method::GET, &path, None, None).await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["id"], "not-found");
    }
}

// ---------------------------------------------------------------------------------------
// GET|POST /oauth2/userinfo

#[tokio::test]
async fn userinfo_claims_by_scope() {
    let server = TestServer::start().await;
    let extra = json!({"scope": "openid profile email phone address"});
    let owner = register_owner(&server, "info@example.com", extra).await;
    let profile = as_str(&owner.tokens["profile"]["reference"]);

    // Give the Practitioner a phone number, an address and a birth date.
    let practitioner_id = profile.trim_start_matches("Practitioner/");
    let store = &server.services.repo.store;
    let mut practitioner = store.read("Practitioner", practitioner_id).await.unwrap();
    practitioner["telecom"]
        .as_array_mut()
        .unwrap()
        .push(json!({"system": "phone", "value": "+1 555 0100"}));
    practitioner["address"] = json!([{"line": ["1 Harbor Rd"], "city": "Springfield",
        "state": "IL", "postalCode": "62701"}]);
    practitioner["birthDate"] = json!("1980-02-03");
    let update = server
        .services
        .repo
        .prepare_update(practitioner, &WriteContext::system(None))
        .unwrap();
    store.write(vec![update]).await.unwrap();

    let id_token = claims(owner.tokens["id_token"].as_str().unwrap());
    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        let (status, info) = send(
            &server,
            method,
            "oauth2/userinfo",
            Some(owner.access_token()),
            None,
        )
        .await;
        assert_eq!(status, 200, "{info}");
        assert_eq!(info["sub"], id_token["sub"]);
        assert_eq!(info["sub"], owner.user_id.as_str());
        assert_eq!(info["sub"], claims(owner.access_token())["sub"]);
        assert_eq!(info["profile"], profile.as_str());
        assert_eq!(info["name"], "Alice Smith");
        assert_eq!(info["given_name"], "Alice");
        assert_eq!(info["middle_name"], "");
        assert_eq!(info["family_name"], "Smith");
        assert_eq!(info["locale"], "en-US");
        assert_eq!(info["birthdate"], "1980-02-03");
        assert!(info["updated_at"].is_i64(), "{info}");
        assert_eq!(info["gender"], "");
        assert_eq!(info["email"], "info@example.com");
        assert_eq!(
            info["email_verified"], false,
            "a new user has not verified the email"
        );
        assert_eq!(info["phone_number"], "+1 555 0100");
        assert_eq!(info["phone_number_verified"], false);
        assert_eq!(
            info["address"]["formatted"],
            "1 Harbor Rd, Springfield, IL, 62701"
        );
    }
}

#[tokio::test]
async fn userinfo_openid_only_and_verified_email() {
    let server = TestServer::start().await;
    let tokens = server.admin_tokens("openid").await;
    let token = as_str(&tokens["access_token"]);
    let (status, info) = get_with_token(&server, "oauth2/userinfo", &token).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(keys(&info), ["sub"]);
    assert_eq!(
        info["sub"],
        claims(tokens["id_token"].as_str().unwrap())["sub"]
    );

    // The bootstrap admin's email is verified and is its Practitioner's email.
    let tokens = server.admin_tokens("openid email").await;
    let token = as_str(&tokens["access_token"]);
    let (status, info) = get_with_token(&server, "oauth2/userinfo", &token).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(keys(&info), ["email", "email_verified", "sub"]);
    assert_eq!(info["email"], ADMIN_EMAIL);
    assert_eq!(info["email_verified"], true);
}

#[tokio::test]
async fn userinfo_requires_token() {
    let server = TestServer::start().await;
    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        let (status, body) = send(&server, method, "oauth2/userinfo", None, None).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(text(&body), "Unauthorized");
    }
}

// ---------------------------------------------------------------------------------------
// GET|POST /oauth2/logout

#[tokio::test]
async fn logout_revokes_session() {
    let server = TestServer::start().await;
    let owner = register_owner(
        &server,
        "bye@example.com",
        json!({"scope": "openid offline"}),
    )
    .await;
    let token = owner.access_token().to_string();
    let refresh_token = as_str(&owner.tokens["refresh_token"]);

    // `@medplum/core`'s signOut(): `{}` as application/fhir+json with the bearer token.
    let (status, body) = post_with_token(&server, "oauth2/logout", &token, json!({})).await;
    assert_all_ok(status, &body);
    let (status, _) = get_with_token(&server, "auth/me", &token).await;
    assert_eq!(status, 401);
    let response = server
        .post_form(
            "oauth2/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh_token),
            ],
        )
        .await;
    assert_eq!(
        response.status(),
        400,
        "the refresh token ends with the session"
    );

    // Signing out again, with the token of a session that is already gone, still succeeds.
    let (status, body) = post_with_token(&server, "oauth2/logout", &token, json!({})).await;
    assert_all_ok(status, &body);
}

#[tokio::test]
async fn logout_without_session() {
    let server = TestServer::start().await;
    let (status, body) = send(&server, reqwest::Method::POST, "oauth2/logout", None, None).await;
    assert_all_ok(status, &body);
    let (status, body) = send(&server, reqwest::Method::GET, "oauth2/logout", None, None).await;
    assert_all_ok(status, &body);
    let (status, body) = post(&server, "oauth2/logout", json!({})).await;
    assert_all_ok(status, &body);
    let (status, body) = send(
        &server,
        reqwest::Method::GET,
        "oauth2/logout",
        Some("garbage"),
        None,
    )
    .await;
    assert_all_ok(status, &body);

    // A refresh token is not an access token, so it ends nothing.
    let owner = register_owner(
        &server,
        "keep@example.com",
        json!({"scope": "openid offline"}),
    )
    .await;
    let refresh_token = as_str(&owner.tokens["refresh_token"]);
    let (status, body) = post_with_token(&server, "oauth2/logout", &refresh_token, json!({})).await;
    assert_all_ok(status, &body);
    let (status, _) = get_with_token(&server, "auth/me", owner.access_token()).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn logout_ends_only_its_own_session() {
    let server = TestServer::start().await;
    let first = server.admin_access_token().await;
    let second = server.admin_access_token().await;
    let (status, body) = send(
        &server,
        reqwest::Method::GET,
        "oauth2/logout",
        Some(&first),
        None,
    )
    .await;
    assert_all_ok(status, &body);
    let (status, _) = get_with_token(&server, "auth/me", &first).await;
    assert_eq!(status, 401);
    let (status, _) = get_with_token(&server, "auth/me", &second).await;
    assert_eq!(status, 200);
    // The admin still signs in with the same password.
    sign_in(&server, ADMIN_EMAIL, ADMIN_PASSWORD, "openid").await;
}
