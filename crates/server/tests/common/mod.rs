//! A medgate server for HTTP tests: a fresh SQLite database in a temporary directory, a
//! manual clock, and a listener on 127.0.0.1 with a port the OS picks.

#![allow(dead_code)]

pub mod capture;
pub mod smtp;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use medgate_fhir::resources::{ClientApplication, Project};
use medgate_server::AppState;
use medgate_service::clock::ManualClock;
use medgate_service::random::OsRandom;
use medgate_service::repo::WriteContext;
use medgate_service::{Secret, ServiceConfig, Services};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "violet-Lantern-47-orbit";
/// A valid PKCE verifier and its S256 challenge (RFC 7636 Appendix B).
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

pub struct TestServer {
    pub base_url: String,
    pub services: Services,
    pub clock: Arc<ManualClock>,
    /// Follows no redirects, so tests can read `Location`.
    pub http: reqwest::Client,
    pub admin_project_id: String,
    _data: tempfile::TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

pub fn start_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-04T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Decodes a JWT's claims without checking the signature, to look at them.
pub fn claims(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("JWT has claims");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(configure: impl FnOnce(&mut ServiceConfig)) -> Self {
        let data = tempfile::tempdir().unwrap();
        let database_url = format!("sqlite://{}/medgate.db", data.path().display());
        let store = medgate_store::connect(&database_url).await.unwrap();
        Self::start_on(store, data, configure).await
    }

    /// Starts a server on `store`, which may be shared with other test servers as several
    /// server processes share one PostgreSQL database.
    pub async fn start_on(
        store: Arc<dyn medgate_store::Store>,
        data: tempfile::TempDir,
        configure: impl FnOnce(&mut ServiceConfig),
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}/", listener.local_addr().unwrap());
        let mut config = ServiceConfig::new(&base_url);
        config.password_hash_workers = 2;
        config.email.transport =
            medgate_service::email::config::TransportConfig::Directory(data.path().join("mail"));
        // Tests read queued emails from the outbox; the email and subscription tests turn
        // the sender on.
        config.email.run_sender = false;
        configure(&mut config);
        let clock = Arc::new(ManualClock::new(start_time()));
        let services = Services::new(config, store, clock.clone(), Arc::new(OsRandom::new()));
        services
            .bootstrap(ADMIN_EMAIL, Some(Secret::from(ADMIN_PASSWORD)))
            .await
            .unwrap();
        services.load_keys().await.unwrap();
        let (shutdown, receiver) = tokio::sync::oneshot::channel::<()>();
        let state = AppState {
            services: services.clone(),
        };
        tokio::spawn(medgate_server::serve(listener, state, async {
            let _ = receiver.await;
        }));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let admin_project_id = Self::super_admin_project(&services).await;
        Self {
            base_url,
            services,
            clock,
            http,
            admin_project_id,
            _data: data,
            _shutdown: shutdown,
        }
    }

    async fn super_admin_project(services: &Services) -> String {
        let user = services
            .find_user_by_email(ADMIN_EMAIL, None)
            .await
            .unwrap()
            .unwrap();
        let login = medgate_fhir::resources::Login {
            user: medgate_fhir::Reference::new("User", &user.id),
            ..Default::default()
        };
        let memberships = services.memberships_for_login(&login).await.unwrap();
        memberships[0].project.id().unwrap().to_string()
    }

    /// The directory the default email transport writes `.eml` files to.
    pub fn mail_dir(&self) -> std::path::PathBuf {
        self._data.path().join("mail")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path.trim_start_matches('/'))
    }

    pub async fn post_json(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// `POST /auth/login` as the admin with an S256 challenge; returns the JSON body.
    pub async fn login_admin(&self, extra: Value) -> Value {
        let mut body = json!({
            "email": ADMIN_EMAIL,
            "password": ADMIN_PASSWORD,
            "codeChallenge": CHALLENGE,
            "codeChallengeMethod": "S256",
        });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            for (key, value) in extra {
                body.insert(key.clone(), value.clone());
            }
        }
        let response = self.post_json("auth/login", body).await;
        assert_eq!(response.status(), 200, "login failed");
        response.json().await.unwrap()
    }

    /// Signs the admin in and redeems the code; returns the token response.
    pub async fn admin_tokens(&self, scope: &str) -> Value {
        let login = self.login_admin(json!({"scope": scope})).await;
        let code = login["code"]
            .as_str()
            .expect("login returned a code")
            .to_string();
        let response = self
            .post_form(
                "oauth2/token",
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("code_verifier", VERIFIER),
                ],
            )
            .await;
        assert_eq!(response.status(), 200, "code redemption failed");
        response.json().await.unwrap()
    }

    pub async fn admin_access_token(&self) -> String {
        self.admin_tokens("openid").await["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Creates a client in the admin's project directly through the service layer.
    pub async fn create_client(&self, client: ClientApplication) -> (ClientApplication, String) {
        let created = self
            .services
            .create_client(client, &WriteContext::system(Some(&self.admin_project_id)))
            .await
            .unwrap();
        (created.client, created.secret.expose().clone())
    }
}

/// A user created for a test, with one membership in a project of its own.
pub struct Member {
    pub email: String,
    pub password: String,
    pub user_id: String,
    pub project_id: String,
    pub membership_id: String,
    pub profile: String,
}

impl TestServer {
    /// Creates a project (not super admin) with a server-scoped user who is a Practitioner
    /// member of it.
    pub async fn create_member(&self, email: &str, admin: bool) -> Member {
        use medgate_fhir::resources::{Project, User};

        let password = "plum-Harbor-93-quartz".to_string();
        let project = Project {
            name: Some(format!("Project of {email}")),
            ..Default::default()
        };
        let project = self
            .services
            .repo
            .create(&project, &WriteContext::system(None))
            .await
            .unwrap();
        let user = User {
            first_name: Some("Test".to_string()),
            last_name: Some("User".to_string()),
            email: Some(email.to_lowercase()),
            password_hash: Some(
                self.services
                    .passwords
                    .hash(&Secret::new(password.clone()))
                    .await
                    .unwrap(),
            ),
            ..Default::default()
        };
        let user = self
            .services
            .repo
            .create(&user, &WriteContext::system(None))
            .await
            .unwrap();
        let membership = self.add_membership(&user.id, &project.id, admin).await;
        Member {
            email: email.to_string(),
            password,
            user_id: user.id,
            project_id: project.id,
            membership_id: membership.0,
            profile: membership.1,
        }
    }

    /// Adds a Practitioner membership for a user to a project; returns its id and profile.
    pub async fn add_membership(
        &self,
        user_id: &str,
        project_id: &str,
        admin: bool,
    ) -> (String, String) {
        use medgate_fhir::Reference;
        use medgate_fhir::resources::ProjectMembership;

        let context = WriteContext::system(Some(project_id));
        let practitioner = self
            .services
            .repo
            .prepare_create(json!({"resourceType": "Practitioner", "name": [{"given": ["Test"], "family": "User"}]}), &context)
            .unwrap();
        let practitioner_id = practitioner["id"].as_str().unwrap().to_string();
        self.services
            .repo
            .store
            .write(vec![medgate_store::WriteOp::Create(practitioner)])
            .await
            .unwrap();
        let membership = ProjectMembership {
            project: Reference::new("Project", project_id),
            user: Reference::new("User", user_id),
            profile: Reference::new("Practitioner", &practitioner_id),
            admin: admin.then_some(true),
            ..Default::default()
        };
        let membership = self
            .services
            .repo
            .create(&membership, &context)
            .await
            .unwrap();
        (membership.id, format!("Practitioner/{practitioner_id}"))
    }

    /// Signs a member in with the given scope and S256 PKCE, redeems the code, returns tokens.
    pub async fn member_tokens(&self, member: &Member, scope: &str) -> Value {
        let response = self
            .post_json(
                "auth/login",
                json!({"email": member.email, "password": member.password, "scope": scope,
                    "codeChallenge": CHALLENGE, "codeChallengeMethod": "S256"}),
            )
            .await;
        assert_eq!(response.status(), 200, "member login failed");
        let login: Value = response.json().await.unwrap();
        let code = login["code"]
            .as_str()
            .expect("single membership gives a code")
            .to_string();
        let response = self
            .post_form(
                "oauth2/token",
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("code_verifier", VERIFIER),
                ],
            )
            .await;
        assert_eq!(response.status(), 200, "code redemption failed");
        response.json().await.unwrap()
    }
}

// ---------------------------------------------------------------------------------------
// Requests and OperationOutcome checks shared by the API tests

/// Sends a request with an optional bearer token and an optional JSON body, which goes out
/// as `application/fhir+json` like `@medplum/core` sends it. Returns the status and the body.
pub async fn send(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = server.http.request(method, server.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/fhir+json")
            .body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

pub async fn post(server: &TestServer, path: &str, body: Value) -> (u16, Value) {
    send(server, reqwest::Method::POST, path, None, Some(body)).await
}

pub async fn post_with_token(
    server: &TestServer,
    path: &str,
    token: &str,
    body: Value,
) -> (u16, Value) {
    send(server, reqwest::Method::POST, path, Some(token), Some(body)).await
}

pub async fn get_with_token(server: &TestServer, path: &str, token: &str) -> (u16, Value) {
    send(server, reqwest::Method::GET, path, Some(token), None).await
}

pub fn text(body: &Value) -> &str {
    body["issue"][0]["details"]["text"]
        .as_str()
        .unwrap_or_default()
}

pub fn expression(body: &Value) -> &str {
    body["issue"][0]["expression"][0]
        .as_str()
        .unwrap_or_default()
}

pub fn assert_all_ok(status: u16, body: &Value) {
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    assert_eq!(body["id"], "ok", "{body}");
    assert_eq!(text(body), "All OK", "{body}");
}

pub fn assert_bad_request(status: u16, body: &Value, message: &str, field: Option<&str>) {
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    assert_eq!(text(body), message, "{body}");
    if let Some(field) = field {
        assert_eq!(expression(body), field, "{body}");
    }
}

pub fn as_str(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or_else(|| panic!("expected a string, got {value}"))
        .to_string()
}

pub async fn redeem(server: &TestServer, code: &str) -> (u16, Value) {
    let response = server
        .post_form(
            "oauth2/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("code_verifier", VERIFIER),
            ],
        )
        .await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Claims every queued email (so each is returned once) and decodes its request.
pub async fn queued_emails(server: &TestServer) -> Vec<medgate_service::email::EmailRequest> {
    use medgate_service::clock::Clock;

    let now = server.clock.now();
    let messages = server
        .services
        .repo
        .store
        .claim_outbox(
            medgate_service::email::OUTBOX_KIND,
            now,
            now + chrono::Duration::minutes(5),
            100,
        )
        .await
        .unwrap();
    messages
        .into_iter()
        .map(|message| serde_json::from_value(message.payload).unwrap())
        .collect()
}

// ---------------------------------------------------------------------------------------
// Registration

/// The password of users registered by [`new_user_body`].
pub const NEW_USER_PASSWORD: &str = "amber-Falcon-62-meadow";

/// Builds the body of a valid `/auth/newuser` request with an S256 challenge, plus `extra`.
pub fn new_user_body(email: &str, extra: Value) -> Value {
    let mut body = json!({
        "firstName": "Alice",
        "lastName": "Smith",
        "email": email,
        "password": NEW_USER_PASSWORD,
        "codeChallenge": CHALLENGE,
        "codeChallengeMethod": "S256",
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        for (key, value) in extra {
            body.insert(key.clone(), value.clone());
        }
    }
    body
}

/// Creates a project that allows open registration, which registration into a project needs.
pub async fn open_project(server: &TestServer) -> String {
    project_with(
        server,
        json!({"defaultPatientAccessPolicy":
            {"reference": "AccessPolicy/00000000-0000-4000-8000-000000000001"}}),
    )
    .await
}

/// Creates a project with the given extra fields and returns its id.
pub async fn project_with(server: &TestServer, fields: Value) -> String {
    let project = Project {
        name: Some("Clinic".to_string()),
        extra: fields.as_object().cloned().unwrap_or_else(Map::new),
        ..Default::default()
    };
    server
        .services
        .repo
        .create(&project, &WriteContext::system(None))
        .await
        .unwrap()
        .id
}

/// Writes a resource straight into the store, as the system, and returns it.
pub async fn seed(server: &TestServer, project_id: &str, resource: Value) -> Value {
    let resource = server
        .services
        .repo
        .prepare_create(resource, &WriteContext::system(Some(project_id)))
        .unwrap();
    server
        .services
        .repo
        .store
        .write(vec![medgate_store::WriteOp::Create(resource.clone())])
        .await
        .unwrap();
    resource
}

/// Waits long enough for the outbox sender to make an attempt that a test cannot observe
/// directly. Generous, because CI runs many test servers at once on two cores.
pub async fn let_sender_run() {
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
}
