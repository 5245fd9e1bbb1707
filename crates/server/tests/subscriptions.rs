//! rest-hook Subscriptions: a write that matches an active subscription of the same project
//! is posted to its endpoint, signed when the subscription has a secret, and retried.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::TestServer;
use medgate_service::repo::WriteContext;
use medgate_service::subscriptions::{MAX_ATTEMPTS_EXTENSION, SECRET_EXTENSION};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Delivery {
    headers: HeaderMap,
    body: Bytes,
}

impl Delivery {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|value| value.to_str().unwrap().to_string())
    }
}

#[derive(Clone, Default)]
struct ReceiverState {
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    /// Statuses to return, in order; 200 once they run out.
    statuses: Arc<Mutex<Vec<StatusCode>>>,
}

/// A webhook endpoint on 127.0.0.1 that records each request.
struct Receiver {
    url: String,
    state: ReceiverState,
}

impl Receiver {
    async fn start(statuses: Vec<StatusCode>) -> Self {
        let state = ReceiverState::default();
        *state.statuses.lock().unwrap() = statuses;
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, state }
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.state.deliveries.lock().unwrap().clone()
    }

    async fn wait_for(&self, count: usize) -> Vec<Delivery> {
        for _ in 0..200 {
            let deliveries = self.deliveries();
            if deliveries.len() >= count {
                return deliveries;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "expected {count} deliveries, received {}",
            self.deliveries().len()
        );
    }
}

async fn receive(
    State(state): State<ReceiverState>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    state
        .deliveries
        .lock()
        .unwrap()
        .push(Delivery { headers, body });
    let mut statuses = state.statuses.lock().unwrap();
    if statuses.is_empty() {
        StatusCode::OK
    } else {
        statuses.remove(0)
    }
}

/// HMAC-SHA256 (RFC 2104) written out over SHA-256, independent of the server's code.
fn hmac_sha256_hex(key: &[u8], data: &[u8]) -> String {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner_pad: Vec<u8> = block.iter().map(|byte| byte ^ 0x36).collect();
    let outer_pad: Vec<u8> = block.iter().map(|byte| byte ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&inner_pad)
        .chain_update(data)
        .finalize();
    let outer = Sha256::new()
        .chain_update(&outer_pad)
        .chain_update(inner)
        .finalize();
    outer.iter().map(|byte| format!("{byte:02x}")).collect()
}

async fn fhir_post(server: &TestServer, token: &str, resource_type: &str, body: Value) -> Value {
    let response = server
        .http
        .post(server.url(&format!("fhir/R4/{resource_type}")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 201, "creating a {resource_type} failed: {body}");
    body
}

fn subscription(criteria: &str, endpoint: &str, extensions: Value) -> Value {
    json!({
        "resourceType": "Subscription",
        "status": "active",
        "reason": "test",
        "criteria": criteria,
        "channel": {"type": "rest-hook", "endpoint": endpoint},
        "extension": extensions,
    })
}

/// Starts a server whose outbox sender runs.
async fn start_server() -> TestServer {
    TestServer::start_with(|config| config.email.run_sender = true).await
}

/// Creates a project with one member and returns the member and its access token.
async fn project_member(server: &TestServer, email: &str, admin: bool) -> (common::Member, String) {
    let member = server.create_member(email, admin).await;
    let token = server.member_tokens(&member, "openid").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    (member, token)
}

#[tokio::test]
async fn rest_hook_posts_signed_resource() {
    let server = start_server().await;
    let receiver = Receiver::start(Vec::new()).await;
    let (_, token) = project_member(&server, "admin@clinic.example", true).await;
    let secret = "whsec-7f3a9c";
    fhir_post(
        &server,
        &token,
        "Subscription",
        subscription(
            "Patient",
            &receiver.url,
            json!([{"url": SECRET_EXTENSION, "valueString": secret}]),
        ),
    )
    .await;

    let patient = fhir_post(
        &server,
        &token,
        "Patient",
        json!({"resourceType": "Patient", "name": [{"family": "Hook"}]}),
    )
    .await;

    let deliveries = receiver.wait_for(1).await;
    let delivery = &deliveries[0];
    assert_eq!(delivery.json()["id"], patient["id"]);
    assert_eq!(delivery.json()["name"][0]["family"], "Hook");
    assert_eq!(
        delivery.header("content-type").as_deref(),
        Some("application/fhir+json")
    );
    assert_eq!(
        delivery.header("x-signature"),
        Some(hmac_sha256_hex(secret.as_bytes(), &delivery.body))
    );

    common::let_sender_run().await;
    assert_eq!(receiver.deliveries().len(), 1, "delivered more than once");
}

#[tokio::test]
async fn other_projects_do_not_fire() {
    let server = start_server().await;
    let receiver = Receiver::start(Vec::new()).await;
    let (_, subscriber_token) = project_member(&server, "a@clinic.example", true).await;
    let (_, outsider_token) = project_member(&server, "b@other.example", true).await;
    fhir_post(
        &server,
        &subscriber_token,
        "Subscription",
        subscription("Patient", &receiver.url, json!([])),
    )
    .await;

    fhir_post(
        &server,
        &outsider_token,
        "Patient",
        json!({"resourceType": "Patient", "name": [{"family": "Other"}]}),
    )
    .await;
    let own = fhir_post(
        &server,
        &subscriber_token,
        "Patient",
        json!({"resourceType": "Patient", "name": [{"family": "Own"}]}),
    )
    .await;

    let deliveries = receiver.wait_for(1).await;
    assert_eq!(deliveries[0].json()["id"], own["id"]);
    assert_eq!(deliveries[0].header("x-signature"), None);
    common::let_sender_run().await;
    assert_eq!(
        receiver.deliveries().len(),
        1,
        "another project's Patient was delivered"
    );
}

#[tokio::test]
async fn service_writes_fire_with_criteria() {
    let server = start_server().await;
    let receiver = Receiver::start(Vec::new()).await;
    let member = server.create_member("c@clinic.example", true).await;
    let context = WriteContext::system(Some(&member.project_id));
    let subscription_value = server
        .services
        .repo
        .prepare_create(
            subscription(
                &format!("UserSecurityRequest?user=User/{}", member.user_id),
                &receiver.url,
                json!([]),
            ),
            &context,
        )
        .unwrap();
    server
        .services
        .repo
        .store
        .write(vec![medgate_store::WriteOp::Create(subscription_value)])
        .await
        .unwrap();

    // A request for another user does not match the criteria; one for the member does.
    for user in [
        "User/00000000-0000-4000-8000-000000000000",
        &format!("User/{}", member.user_id),
    ] {
        let request = server
            .services
            .repo
            .prepare_create(
                json!({"resourceType": "UserSecurityRequest", "type": "invite",
                    "user": {"reference": user}}),
                &context,
            )
            .unwrap();
        server
            .services
            .repo
            .store
            .write(vec![medgate_store::WriteOp::Create(request)])
            .await
            .unwrap();
    }

    let deliveries = receiver.wait_for(1).await;
    assert_eq!(
        deliveries[0].json()["user"]["reference"],
        format!("User/{}", member.user_id)
    );
    common::let_sender_run().await;
    assert_eq!(receiver.deliveries().len(), 1);
}

#[tokio::test]
async fn rest_hook_retries_until_success() {
    let server = start_server().await;
    let receiver = Receiver::start(vec![StatusCode::INTERNAL_SERVER_ERROR]).await;
    let (_, token) = project_member(&server, "d@clinic.example", true).await;
    fhir_post(
        &server,
        &token,
        "Subscription",
        subscription("Patient", &receiver.url, json!([])),
    )
    .await;
    fhir_post(
        &server,
        &token,
        "Patient",
        json!({"resourceType": "Patient"}),
    )
    .await;

    receiver.wait_for(1).await;
    common::let_sender_run().await;
    assert_eq!(
        receiver.deliveries().len(),
        1,
        "retried before the backoff ended"
    );

    server
        .clock
        .advance(server.services.config.email.backoff(1));
    server.services.wake_sender();
    let deliveries = receiver.wait_for(2).await;
    assert_eq!(deliveries[0].body, deliveries[1].body);

    server.clock.advance(chrono::Duration::days(1));
    server.services.wake_sender();
    common::let_sender_run().await;
    assert_eq!(
        receiver.deliveries().len(),
        2,
        "delivered again after a success"
    );
}

#[tokio::test]
async fn rest_hook_gives_up_after_max_attempts() {
    let server = start_server().await;
    let failures = vec![StatusCode::SERVICE_UNAVAILABLE; 10];
    let receiver = Receiver::start(failures).await;
    let (_, token) = project_member(&server, "e@clinic.example", true).await;
    fhir_post(
        &server,
        &token,
        "Subscription",
        subscription(
            "Patient",
            &receiver.url,
            json!([{"url": MAX_ATTEMPTS_EXTENSION, "valueInteger": 2}]),
        ),
    )
    .await;
    fhir_post(
        &server,
        &token,
        "Patient",
        json!({"resourceType": "Patient"}),
    )
    .await;

    receiver.wait_for(1).await;
    server
        .clock
        .advance(server.services.config.email.backoff(1));
    server.services.wake_sender();
    receiver.wait_for(2).await;

    for _ in 0..3 {
        server.clock.advance(chrono::Duration::days(1));
        server.services.wake_sender();
        common::let_sender_run().await;
    }
    assert_eq!(
        receiver.deliveries().len(),
        2,
        "attempted after the cap of 2"
    );
}

#[tokio::test]
async fn non_admin_subscriptions_are_not_delivered() {
    let server = start_server().await;
    let receiver = Receiver::start(Vec::new()).await;
    let (_, token) = project_member(&server, "f@clinic.example", false).await;
    fhir_post(
        &server,
        &token,
        "Subscription",
        subscription("Patient", &receiver.url, json!([])),
    )
    .await;
    fhir_post(
        &server,
        &token,
        "Patient",
        json!({"resourceType": "Patient"}),
    )
    .await;

    common::let_sender_run().await;
    assert_eq!(
        receiver.deliveries().len(),
        0,
        "a member without admin rights received every Patient of the project"
    );
}

#[tokio::test]
async fn delivered_resources_omit_secrets() {
    let server = start_server().await;
    let receiver = Receiver::start(Vec::new()).await;
    let member = server.create_member("g@clinic.example", true).await;
    let context = WriteContext::system(Some(&member.project_id));
    let writes = [
        subscription("User", &receiver.url, json!([])),
        // A project-scoped user, as an invite into this project creates one.
        json!({"resourceType": "User", "email": "scoped@clinic.example",
            "project": {"reference": format!("Project/{}", member.project_id)},
            "passwordHash": "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
            "mfaSecret": "JBSWY3DPEHPK3PXP"}),
    ];
    for resource in writes {
        let resource = server
            .services
            .repo
            .prepare_create(resource, &context)
            .unwrap();
        server
            .services
            .repo
            .store
            .write(vec![medgate_store::WriteOp::Create(resource)])
            .await
            .unwrap();
    }

    let deliveries = receiver.wait_for(1).await;
    let user = deliveries[0].json();
    assert_eq!(user["email"], "scoped@clinic.example");
    assert_eq!(
        user.get("passwordHash"),
        None,
        "the password hash left the server"
    );
    assert_eq!(
        user.get("mfaSecret"),
        None,
        "the MFA secret left the server"
    );
}

#[tokio::test]
async fn invite_fires_user_security_request_hook() {
    let server = start_server().await;
    let receiver = Receiver::start(Vec::new()).await;
    let (admin, token) = project_member(&server, "h@clinic.example", true).await;
    fhir_post(
        &server,
        &token,
        "Subscription",
        subscription("UserSecurityRequest", &receiver.url, json!([])),
    )
    .await;

    // With sendEmail false nothing is mailed; the notification tells the project's own
    // endpoint about the invite.
    let response = server
        .http
        .post(server.url(&format!("admin/projects/{}/invite", admin.project_id)))
        .bearer_auth(&token)
        .json(
            &json!({"resourceType": "Patient", "firstName": "Jo", "lastName": "Park",
            "email": "jo@example.com", "sendEmail": false}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let deliveries = receiver.wait_for(1).await;
    let request = deliveries[0].json();
    assert_eq!(request["resourceType"], "UserSecurityRequest");
    assert_eq!(request["type"], "invite");
    assert_eq!(
        request.get("secretHash"),
        None,
        "the secret hash left the server"
    );
}

// ---------------------------------------------------------------------------------------
// Custom emails: with `sendEmail: false` the project's own endpoint gets the clear secret of
// the set-password link in the notification, as Medplum's custom-email Bots do.

/// Files the outbox sender wrote to the mail directory.
fn sent_emails(server: &TestServer) -> usize {
    std::fs::read_dir(server.mail_dir()).map_or(0, Iterator::count)
}

/// Waits until the outbox sender has written `count` emails.
async fn wait_for_sent_emails(server: &TestServer, count: usize) {
    for _ in 0..200 {
        if sent_emails(server) >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "expected {count} sent emails, found {}",
        sent_emails(server)
    );
}

/// Invites a new Patient, which is project-scoped, into the admin's project.
async fn invite_patient(
    server: &TestServer,
    admin: &common::Member,
    token: &str,
    send_email: bool,
) {
    let response = server
        .http
        .post(server.url(&format!("admin/projects/{}/invite", admin.project_id)))
        .bearer_auth(token)
        .json(
            &json!({"resourceType": "Patient", "firstName": "Jo", "lastName": "Park",
            "email": "jo@example.com", "sendEmail": send_email}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "the invite failed");
}

/// Starts a server, a receiver and a project admin's rest-hook Subscription on
/// UserSecurityRequest; returns them with the admin and its access token.
async fn custom_email_setup() -> (TestServer, Receiver, common::Member, String) {
    let server = start_server().await;
    let receiver = Receiver::start(Vec::new()).await;
    let (admin, token) = project_member(&server, "h@clinic.example", true).await;
    fhir_post(
        &server,
        &token,
        "Subscription",
        subscription("UserSecurityRequest", &receiver.url, json!([])),
    )
    .await;
    (server, receiver, admin, token)
}

/// Checks what a delivered request with a `secret` allows and what the server keeps: the
/// stored request has only the hash, and the link built from id and secret sets a password.
async fn check_custom_email_secret(server: &TestServer, delivered: &Value) {
    let id = delivered["id"].as_str().unwrap();
    let secret = delivered["secret"]
        .as_str()
        .unwrap_or_else(|| panic!("the notification has no secret: {delivered}"));
    assert_eq!(
        delivered.get("secretHash"),
        None,
        "the secret hash left the server"
    );

    let stored = server
        .services
        .repo
        .store
        .read("UserSecurityRequest", id)
        .await
        .unwrap();
    assert_eq!(stored.get("secret"), None, "the clear secret was stored");
    assert_eq!(
        stored["secretHash"].as_str().map(str::len),
        Some(64),
        "the stored request has no SHA-256 hash"
    );

    // The project's sender builds Medplum's link `<appBaseUrl>setpassword/<id>/<secret>`, and
    // its set-password page posts the two parts.
    let link = format!(
        "{}setpassword/{id}/{secret}",
        server.services.config.app_base_url
    );
    let parts: Vec<&str> = link.rsplitn(3, '/').collect();
    let (status, body) = common::post(
        server,
        "auth/setpassword",
        json!({"id": parts[1], "secret": parts[0], "password": "amber-Falcon-62-meadow"}),
    )
    .await;
    common::assert_all_ok(status, &body);
}

#[tokio::test]
async fn invite_without_email_delivers_secret() {
    let (server, receiver, admin, token) = custom_email_setup().await;

    invite_patient(&server, &admin, &token, false).await;

    let deliveries = receiver.wait_for(1).await;
    let request = deliveries[0].json();
    assert_eq!(request["resourceType"], "UserSecurityRequest");
    assert_eq!(request["type"], "invite");
    check_custom_email_secret(&server, &request).await;

    common::let_sender_run().await;
    assert!(
        common::queued_emails(&server).await.is_empty(),
        "an email was queued"
    );
    assert_eq!(sent_emails(&server), 0, "an email was sent");
}

#[tokio::test]
async fn reset_without_email_delivers_secret() {
    let (server, receiver, admin, token) = custom_email_setup().await;
    invite_patient(&server, &admin, &token, false).await;
    receiver.wait_for(1).await;

    // A project-scoped user needs the projectId; its reset request belongs to the project.
    let (status, body) = common::post(
        &server,
        "auth/resetpassword",
        json!({"email": "jo@example.com", "projectId": admin.project_id, "sendEmail": false}),
    )
    .await;
    common::assert_all_ok(status, &body);

    let deliveries = receiver.wait_for(2).await;
    let request = deliveries[1].json();
    assert_eq!(request["type"], "reset");
    check_custom_email_secret(&server, &request).await;

    common::let_sender_run().await;
    assert!(
        common::queued_emails(&server).await.is_empty(),
        "an email was queued"
    );
    assert_eq!(sent_emails(&server), 0, "an email was sent");
}

#[tokio::test]
async fn emailed_links_keep_secret_from_hooks() {
    let (server, receiver, admin, token) = custom_email_setup().await;

    invite_patient(&server, &admin, &token, true).await;
    let (status, body) = common::post(
        &server,
        "auth/resetpassword",
        json!({"email": "jo@example.com", "projectId": admin.project_id}),
    )
    .await;
    common::assert_all_ok(status, &body);

    let deliveries = receiver.wait_for(2).await;
    for delivery in &deliveries {
        let request = delivery.json();
        assert_eq!(request["resourceType"], "UserSecurityRequest");
        assert_eq!(
            request.get("secret"),
            None,
            "the secret of an emailed {} link reached the hook",
            request["type"]
        );
        assert_eq!(
            request.get("secretHash"),
            None,
            "the secret hash left the server"
        );
    }
    wait_for_sent_emails(&server, 2).await;
}
