//! Open patient registration (`/auth/newuser` with a `projectId`, then `/auth/newpatient`),
//! the `registerEnabled` switch, and reCAPTCHA checks against a siteverify fake on 127.0.0.1.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::post as post_route;
use axum::{Form, Json, Router};
use common::{
    TestServer, as_str, assert_all_ok, assert_bad_request, new_user_body, open_project, post,
    project_with, redeem, seed,
};
use medgate_fhir::Reference;
use medgate_fhir::resources::{Project, ProjectMembership, User};
use medgate_fhir::search::SearchRequest;
use medgate_service::Secret;
use medgate_service::repo::WriteContext;
use serde_json::{Value, json};

/// The token the fake verifier accepts.
const GOOD_TOKEN: &str = "good-token";
const SERVER_SITE_KEY: &str = "server-site-key";
const SERVER_SECRET: &str = "server-recaptcha-secret";

/// A stand-in for Google's siteverify endpoint: a token passes when it is [`GOOD_TOKEN`]
/// and the secret is one of `secrets`. Every request's form is recorded.
struct FakeVerifier {
    url: String,
    requests: Arc<Mutex<Vec<HashMap<String, String>>>>,
}

impl FakeVerifier {
    async fn start(secrets: &[&str]) -> Self {
        #[derive(Clone)]
        struct VerifierState {
            secrets: Vec<String>,
            requests: Arc<Mutex<Vec<HashMap<String, String>>>>,
        }
        async fn siteverify(
            State(state): State<VerifierState>,
            Form(form): Form<HashMap<String, String>>,
        ) -> Json<Value> {
            let success = form.get("response").map(String::as_str) == Some(GOOD_TOKEN)
                && form
                    .get("secret")
                    .is_some_and(|secret| state.secrets.contains(secret));
            state.requests.lock().unwrap().push(form);
            Json(json!({"success": success}))
        }

        let requests = Arc::new(Mutex::new(Vec::new()));
        let state = VerifierState {
            secrets: secrets.iter().map(|secret| secret.to_string()).collect(),
            requests: requests.clone(),
        };
        let app = Router::new()
            .route("/siteverify", post_route(siteverify))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/siteverify", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, requests }
    }

    fn requests(&self) -> Vec<HashMap<String, String>> {
        self.requests.lock().unwrap().clone()
    }
}

/// Starts medgate with a server reCAPTCHA key pair checked by `verifier`.
async fn server_with_recaptcha(verifier: &FakeVerifier) -> TestServer {
    let url = verifier.url.clone();
    TestServer::start_with(move |config| {
        config.recaptcha.site_key = Some(SERVER_SITE_KEY.to_string());
        config.recaptcha.secret_key = Some(Secret::from(SERVER_SECRET));
        config.recaptcha.verify_url = url;
    })
    .await
}

/// Creates an AccessPolicy in `project_id` and returns its reference.
async fn patient_policy(server: &TestServer, project_id: &str) -> Value {
    let policy = json!({"resourceType": "AccessPolicy", "name": "Patients",
        "resource": [{"resourceType": "Patient"}]});
    let policy = seed(server, project_id, policy).await;
    json!({"reference": format!("AccessPolicy/{}", as_str(&policy["id"]))})
}

/// Sets fields of a stored project.
async fn update_project(server: &TestServer, project_id: &str, fields: Value) {
    let mut project: Project = server.services.repo.read(project_id).await.unwrap();
    for (key, value) in fields.as_object().unwrap() {
        if value.is_null() {
            project.extra.remove(key);
        } else {
            project.extra.insert(key.clone(), value.clone());
        }
    }
    server
        .services
        .repo
        .update(&project, &WriteContext::system(None))
        .await
        .unwrap();
}

/// Creates a project whose default patient policy exists; returns its id.
async fn open_project_with_policy(server: &TestServer) -> String {
    let project_id = project_with(server, json!({})).await;
    let policy = patient_policy(server, &project_id).await;
    update_project(
        server,
        &project_id,
        json!({"defaultPatientAccessPolicy": policy}),
    )
    .await;
    project_id
}

/// Registers `email` in `project_id` with `/auth/newuser`; returns the login id.
async fn new_user_in(server: &TestServer, email: &str, project_id: &str) -> String {
    let (status, body) = post(
        server,
        "auth/newuser",
        new_user_body(email, json!({"projectId": project_id})),
    )
    .await;
    assert_eq!(status, 200, "newuser failed: {body}");
    as_str(&body["login"])
}

async fn memberships_of(server: &TestServer, user_id: &str) -> Vec<ProjectMembership> {
    let request =
        SearchRequest::new("ProjectMembership").filter("user", &format!("User/{user_id}"));
    server.services.repo.search(&request, None).await.unwrap()
}

async fn user_by_email(server: &TestServer, email: &str) -> User {
    let request = SearchRequest::new("User").filter("email", email);
    let users: Vec<User> = server.services.repo.search(&request, None).await.unwrap();
    assert_eq!(users.len(), 1, "{users:?}");
    users.into_iter().next().unwrap()
}

// ---------------------------------------------------------------------------------------
// POST /auth/newpatient

#[tokio::test]
async fn newpatient_joins_open_project() {
    let server = TestServer::start().await;
    let project_id = project_with(&server, json!({})).await;
    let policy = patient_policy(&server, &project_id).await;
    update_project(
        &server,
        &project_id,
        json!({"defaultPatientAccessPolicy": policy}),
    )
    .await;

    let login = new_user_in(&server, "Patient@Example.com", &project_id).await;
    let (status, body) = post(
        &server,
        "auth/newpatient",
        json!({"login": login, "projectId": project_id}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["login"], login);
    let (status, tokens) = redeem(&server, &as_str(&body["code"])).await;
    assert_eq!(status, 200, "{tokens}");
    assert!(as_str(&tokens["profile"]["reference"]).starts_with("Patient/"));

    let user = user_by_email(&server, "patient@example.com").await;
    assert_eq!(user.project, Some(Reference::new("Project", &project_id)));
    let memberships = memberships_of(&server, &user.id).await;
    assert_eq!(memberships.len(), 1);
    let membership = &memberships[0];
    assert_eq!(
        membership.project.reference,
        format!("Project/{project_id}")
    );
    assert_eq!(
        serde_json::to_value(&membership.access_policy).unwrap(),
        policy
    );
    assert_ne!(membership.admin, Some(true));

    let (_, patient_id) = membership.profile.parts().unwrap();
    let patient = server
        .services
        .repo
        .store
        .read("Patient", patient_id)
        .await
        .unwrap();
    assert_eq!(
        patient["name"],
        json!([{"given": ["Alice"], "family": "Smith"}])
    );
    assert_eq!(patient["telecom"][0]["value"], "patient@example.com");
    assert_eq!(patient["meta"]["project"], project_id.as_str());
}

#[tokio::test]
async fn newpatient_default_access_policies_entry() {
    let server = TestServer::start().await;
    let project_id = project_with(&server, json!({})).await;
    let policy = patient_policy(&server, &project_id).await;
    let staff = patient_policy(&server, &project_id).await;
    update_project(
        &server,
        &project_id,
        json!({"defaultAccessPolicies": [
            {"profileType": "Practitioner", "accessPolicy": staff},
            {"profileType": "Patient", "accessPolicy": policy},
        ]}),
    )
    .await;

    let login = new_user_in(&server, "patient@example.com", &project_id).await;
    let (status, body) = post(
        &server,
        "auth/newpatient",
        json!({"login": login, "projectId": project_id}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let user = user_by_email(&server, "patient@example.com").await;
    let memberships = memberships_of(&server, &user.id).await;
    assert_eq!(
        serde_json::to_value(&memberships[0].access_policy).unwrap(),
        policy
    );
}

#[tokio::test]
async fn newpatient_requires_open_project() {
    let server = TestServer::start().await;
    let project_id = open_project(&server).await;
    let login = new_user_in(&server, "patient@example.com", &project_id).await;
    update_project(
        &server,
        &project_id,
        json!({"defaultPatientAccessPolicy": null}),
    )
    .await;

    let (status, body) = post(
        &server,
        "auth/newpatient",
        json!({"login": login, "projectId": project_id}),
    )
    .await;
    assert_bad_request(
        status,
        &body,
        "Project does not allow open registration",
        None,
    );
    let user = user_by_email(&server, "patient@example.com").await;
    assert!(memberships_of(&server, &user.id).await.is_empty());
}

#[tokio::test]
async fn newpatient_user_of_another_scope() {
    let server = TestServer::start().await;
    let project_a = open_project_with_policy(&server).await;
    let project_b = open_project_with_policy(&server).await;

    // A user registered in project A cannot join project B.
    let login = new_user_in(&server, "a@example.com", &project_a).await;
    let (status, body) = post(
        &server,
        "auth/newpatient",
        json!({"login": login, "projectId": project_b}),
    )
    .await;
    assert_bad_request(
        status,
        &body,
        "Login is restricted to another project",
        None,
    );

    // A server-scoped user is no project's patient.
    let (status, body) = post(
        &server,
        "auth/newuser",
        new_user_body("s@example.com", json!({})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(
        &server,
        "auth/newpatient",
        json!({"login": body["login"], "projectId": project_b}),
    )
    .await;
    assert_bad_request(status, &body, "User must be scoped to the project", None);
}

#[tokio::test]
async fn newpatient_input_and_login_state() {
    let server = TestServer::start().await;
    let project_id = open_project_with_policy(&server).await;
    let login = new_user_in(&server, "patient@example.com", &project_id).await;

    let (status, body) = post(&server, "auth/newpatient", json!({"projectId": project_id})).await;
    assert_bad_request(status, &body, "Missing login", Some("login"));
    let (status, body) = post(&server, "auth/newpatient", json!({"login": login})).await;
    assert_bad_request(status, &body, "Project ID is required", Some("projectId"));
    let (status, body) = post(
        &server,
        "auth/newpatient",
        json!({"login": "00000000-0000-4000-8000-000000000000", "projectId": project_id}),
    )
    .await;
    assert_eq!(status, 404, "{body}");

    let (status, body) = post(
        &server,
        "auth/newpatient",
        json!({"login": login, "projectId": project_id}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(
        &server,
        "auth/newpatient",
        json!({"login": login, "projectId": project_id}),
    )
    .await;
    assert_bad_request(status, &body, "Login already has a membership", None);
}

#[tokio::test]
async fn newpatient_once_per_user() {
    let server = TestServer::start().await;
    let project_id = open_project_with_policy(&server).await;
    let first = new_user_in(&server, "patient@example.com", &project_id).await;
    let (status, body) = post(
        &server,
        "auth/newpatient",
        json!({"login": first, "projectId": project_id}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // A second login of the same user (a sign-in restricted to the project, with the
    // profile type that has no membership yet) cannot add a second patient.
    let user = user_by_email(&server, "patient@example.com").await;
    let login = medgate_fhir::resources::Login {
        user: Reference::new("User", &user.id),
        project: Some(Reference::new("Project", &project_id)),
        scope: "openid".to_string(),
        auth_method: "password".to_string(),
        auth_time: "2026-12-04T12:00:00.000Z".to_string(),
        ..Default::default()
    };
    let login = server
        .services
        .repo
        .create(&login, &WriteContext::system(None))
        .await
        .unwrap();
    let (status, body) = post(
        &server,
        "auth/newpatient",
        json!({"login": login.id, "projectId": project_id}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(memberships_of(&server, &user.id).await.len(), 1);
}

#[tokio::test]
async fn newpatient_unusable_policy_writes_nothing() {
    let server = TestServer::start().await;
    // The default policy names an AccessPolicy that does not exist.
    let project_id = open_project(&server).await;
    let login = new_user_in(&server, "patient@example.com", &project_id).await;
    let (status, body) = post(
        &server,
        "auth/newpatient",
        json!({"login": login, "projectId": project_id}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        common::text(&body).starts_with("Cannot authenticate: Invalid access policy"),
        "{body}"
    );
    let user = user_by_email(&server, "patient@example.com").await;
    assert!(memberships_of(&server, &user.id).await.is_empty());
    let patients = server
        .services
        .repo
        .store
        .count(medgate_store::SearchScope {
            request: &SearchRequest::new("Patient"),
            project_id: Some(&project_id),
            restriction: None,
        })
        .await
        .unwrap();
    assert_eq!(patients, 0);
}

// ---------------------------------------------------------------------------------------
// registerEnabled

#[tokio::test]
async fn register_disabled() {
    let server = TestServer::start_with(|config| config.register_enabled = false).await;
    let project_id = open_project(&server).await;
    let (status, body) = post(
        &server,
        "auth/newuser",
        new_user_body("someone@example.com", json!({"projectId": project_id})),
    )
    .await;
    assert_bad_request(status, &body, "Registration is disabled", None);
    let request = SearchRequest::new("User").filter("email", "someone@example.com");
    let users: Vec<User> = server.services.repo.search(&request, None).await.unwrap();
    assert!(users.is_empty());

    let (status, body) = post(
        &server,
        "auth/newpatient",
        json!({"login": "00000000-0000-4000-8000-000000000000", "projectId": project_id}),
    )
    .await;
    assert_bad_request(status, &body, "Registration is disabled", None);
}

// ---------------------------------------------------------------------------------------
// reCAPTCHA

#[tokio::test]
async fn recaptcha_server_key() {
    let verifier = FakeVerifier::start(&[SERVER_SECRET]).await;
    let server = server_with_recaptcha(&verifier).await;

    let (status, body) = post(
        &server,
        "auth/newuser",
        new_user_body("missing@example.com", json!({})),
    )
    .await;
    assert_bad_request(
        status,
        &body,
        "Recaptcha token is required",
        Some("recaptchaToken"),
    );

    let (status, body) = post(
        &server,
        "auth/newuser",
        new_user_body("bad@example.com", json!({"recaptchaToken": "bad-token"})),
    )
    .await;
    assert_bad_request(status, &body, "Recaptcha failed", Some("recaptchaToken"));

    let (status, body) = post(
        &server,
        "auth/newuser",
        new_user_body(
            "good@example.com",
            json!({"recaptchaToken": GOOD_TOKEN, "recaptchaSiteKey": SERVER_SITE_KEY}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let requests = verifier.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[1]["secret"], SERVER_SECRET);
    assert_eq!(requests[1]["response"], GOOD_TOKEN);
    assert_eq!(requests[1]["remoteip"], "127.0.0.1");
    let request = SearchRequest::new("User").filter("email", "bad@example.com");
    let users: Vec<User> = server.services.repo.search(&request, None).await.unwrap();
    assert!(users.is_empty(), "a failed check created a user");
}

#[tokio::test]
async fn recaptcha_skipped_without_server_secret() {
    let verifier = FakeVerifier::start(&[]).await;
    let url = verifier.url.clone();
    let server = TestServer::start_with(move |config| {
        config.recaptcha.site_key = Some(SERVER_SITE_KEY.to_string());
        config.recaptcha.verify_url = url;
    })
    .await;
    let (status, body) = post(
        &server,
        "auth/newuser",
        new_user_body(
            "free@example.com",
            json!({"recaptchaSiteKey": SERVER_SITE_KEY}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // An unknown site key needs nothing either, as `@medplum/core` apps always send one.
    let (status, body) = post(
        &server,
        "auth/newuser",
        new_user_body(
            "app@example.com",
            json!({"recaptchaSiteKey": "app-site-key"}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(verifier.requests().is_empty());

    // A project's own site key is still checked with the project's secret.
    let project_id = open_project_with_policy(&server).await;
    update_project(
        &server,
        &project_id,
        json!({"site": [{"name": "Portal", "domain": ["portal.example.com"],
            "recaptchaSiteKey": "project-key", "recaptchaSecretKey": "project-secret"}]}),
    )
    .await;
    let (status, body) = post(
        &server,
        "auth/newuser",
        new_user_body(
            "portal@example.com",
            json!({"recaptchaSiteKey": "project-key", "recaptchaToken": GOOD_TOKEN,
                "projectId": project_id}),
        ),
    )
    .await;
    assert_bad_request(status, &body, "Recaptcha failed", Some("recaptchaToken"));
    assert_eq!(verifier.requests()[0]["secret"], "project-secret");
}

#[tokio::test]
async fn recaptcha_project_site_key() {
    let verifier = FakeVerifier::start(&[SERVER_SECRET, "project-secret"]).await;
    let server = server_with_recaptcha(&verifier).await;
    let open = project_with(
        &server,
        json!({"site": [{"name": "Patient portal", "domain": ["portal.example.com"],
            "recaptchaSiteKey": "project-key", "recaptchaSecretKey": "project-secret"}]}),
    )
    .await;
    let policy = patient_policy(&server, &open).await;
    update_project(
        &server,
        &open,
        json!({"defaultPatientAccessPolicy": policy}),
    )
    .await;
    let no_secret = project_with(
        &server,
        json!({"defaultPatientAccessPolicy": policy,
            "site": [{"name": "Kiosk", "domain": ["kiosk.example.com"],
                "recaptchaSiteKey": "kiosk-key"}]}),
    )
    .await;
    let closed = project_with(
        &server,
        json!({"site": [{"name": "Staff", "domain": ["staff.example.com"],
            "recaptchaSiteKey": "staff-key", "recaptchaSecretKey": "project-secret"}]}),
    )
    .await;

    let register = |email: &str, site_key: &str, project_id: &str| {
        new_user_body(
            email,
            json!({"recaptchaToken": GOOD_TOKEN, "recaptchaSiteKey": site_key,
                "projectId": project_id}),
        )
    };

    let (status, body) = post(
        &server,
        "auth/newuser",
        register("a@example.com", "unknown-key", &open),
    )
    .await;
    assert_bad_request(
        status,
        &body,
        "Invalid recaptchaSiteKey",
        Some("recaptchaSiteKey"),
    );

    // The site key of one project does not admit a user into another.
    let (status, body) = post(
        &server,
        "auth/newuser",
        register("a@example.com", "project-key", &no_secret),
    )
    .await;
    assert_bad_request(
        status,
        &body,
        "Invalid recaptchaSiteKey",
        Some("recaptchaSiteKey"),
    );

    let (status, body) = post(
        &server,
        "auth/newuser",
        register("a@example.com", "kiosk-key", &no_secret),
    )
    .await;
    assert_bad_request(
        status,
        &body,
        "Invalid recaptchaSecretKey",
        Some("recaptchaSiteKey"),
    );

    let (status, body) = post(
        &server,
        "auth/newuser",
        register("a@example.com", "staff-key", &closed),
    )
    .await;
    assert_bad_request(
        status,
        &body,
        "Project does not allow open registration",
        None,
    );
    assert!(verifier.requests().is_empty());

    let (status, body) = post(
        &server,
        "auth/newuser",
        register("a@example.com", "project-key", &open),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let requests = verifier.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0]["secret"], "project-secret");

    // Password reset has no open-registration rule.
    let (status, body) = post(
        &server,
        "auth/resetpassword",
        json!({"email": "staff@example.com", "projectId": closed,
            "recaptchaSiteKey": "staff-key", "recaptchaToken": GOOD_TOKEN}),
    )
    .await;
    assert_all_ok(status, &body);
}

#[tokio::test]
async fn recaptcha_password_reset() {
    let verifier = FakeVerifier::start(&[SERVER_SECRET]).await;
    let server = server_with_recaptcha(&verifier).await;
    server.create_member("member@example.com", false).await;

    let (status, body) = post(
        &server,
        "auth/resetpassword",
        json!({"email": "member@example.com"}),
    )
    .await;
    assert_bad_request(
        status,
        &body,
        "Recaptcha token is required",
        Some("recaptchaToken"),
    );
    let (status, body) = post(
        &server,
        "auth/resetpassword",
        json!({"email": "member@example.com", "recaptchaToken": "bad-token"}),
    )
    .await;
    assert_bad_request(status, &body, "Recaptcha failed", Some("recaptchaToken"));
    assert!(common::queued_emails(&server).await.is_empty());

    let (status, body) = post(
        &server,
        "auth/resetpassword",
        json!({"email": "member@example.com", "recaptchaToken": GOOD_TOKEN}),
    )
    .await;
    assert_all_ok(status, &body);
    assert_eq!(common::queued_emails(&server).await.len(), 1);
}
