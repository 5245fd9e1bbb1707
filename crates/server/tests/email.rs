//! Outgoing email: messages queued in the outbox reach a real SMTP server on 127.0.0.1 or
//! the `.eml` directory, with the built-in or project templates, the project's own SMTP
//! server when it has one, and retries through an outage.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::TestServer;
use common::capture::Capture;
use common::smtp::SmtpServer;
use medgate_fhir::resources::Project;
use medgate_service::email::config::{SmtpSettings, TransportConfig};
use medgate_service::email::{EmailKind, EmailRequest};
use medgate_service::repo::WriteContext;
use serde_json::{Value, json};

const LINK: &str = "http://localhost:3000/setpassword/0b6a5f2e-3d1c-4b8e-9f27-8e1f4c2d7a90/3f9c2e7d1b8a4c6e5f0d9b7a2c4e6f8a1b3d5c7e9f0a2b4c6d8e0f1a3b5c7d9e";

fn smtp_settings(smtp: &SmtpServer) -> SmtpSettings {
    SmtpSettings {
        host: "127.0.0.1".to_string(),
        port: smtp.port(),
        secure: None,
        username: Some("mailer".to_string()),
        password: Some(medgate_service::Secret::from("mail-password")),
    }
}

async fn start_with_smtp(smtp: &SmtpServer) -> TestServer {
    let settings = smtp_settings(smtp);
    TestServer::start_with(|config| {
        config.email.transport = TransportConfig::Smtp(settings);
        config.email.from = "Clinic Mail <noreply@clinic.example>".to_string();
        config.email.run_sender = true;
    })
    .await
}

fn request(
    kind: EmailKind,
    project_id: Option<&str>,
    to: &str,
    values: &[(&str, &str)],
) -> EmailRequest {
    EmailRequest {
        kind,
        project_id: project_id.map(str::to_string),
        to: to.to_string(),
        values: values
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// Queues one message the way a flow does: its write alone in a batch.
async fn queue(server: &TestServer, request: &EmailRequest) {
    let op = server.services.queue_email(request).unwrap();
    server.services.repo.store.write(vec![op]).await.unwrap();
}

async fn create_project(server: &TestServer, project: Value) -> Project {
    let project: Project = serde_json::from_value(project).unwrap();
    server
        .services
        .repo
        .create(&project, &WriteContext::system(None))
        .await
        .unwrap()
}

/// Counts the outbox rows of `kind` that are still queued, whenever they are due.
async fn queued_rows(server: &TestServer, kind: &str) -> usize {
    let later = server.services.now() + chrono::Duration::days(365);
    server
        .services
        .repo
        .store
        .claim_outbox(kind, later, later, 100)
        .await
        .unwrap()
        .len()
}

async fn wait_for_file(path: &std::path::Path) -> String {
    for _ in 0..200 {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} was not written", path.display());
}

#[tokio::test]
async fn smtp_invite_has_recipient_subject_link() {
    let smtp = SmtpServer::start().await;
    let server = start_with_smtp(&smtp).await;
    let project = create_project(
        &server,
        json!({"resourceType": "Project", "name": "Clinic"}),
    )
    .await;

    queue(
        &server,
        &request(
            EmailKind::Invite,
            Some(&project.id),
            "new.user@example.com",
            &[("projectName", "Clinic"), ("link", LINK)],
        ),
    )
    .await;

    let mails = smtp.wait_for(1).await;
    let mail = &mails[0];
    assert_eq!(mail.recipients, vec!["new.user@example.com"]);
    assert_eq!(mail.from, "noreply@clinic.example");
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("Welcome to Medplum")
    );
    assert_eq!(mail.header("To").as_deref(), Some("new.user@example.com"));
    assert_eq!(
        mail.header("From").as_deref(),
        Some("\"Clinic Mail\" <noreply@clinic.example>")
    );
    let body = mail.decoded_body();
    assert!(body.contains(LINK), "the link is missing from {body}");
    assert!(body.contains("You were invited to Clinic."), "{body}");
    assert_eq!(mail.username.as_deref(), Some("mailer"));
    assert_eq!(mail.password.as_deref(), Some("mail-password"));

    // A delivered row is deleted, because its payload contains the set-password link.
    common::let_sender_run().await;
    assert_eq!(queued_rows(&server, "email").await, 0);
}

#[tokio::test]
async fn smtp_outage_delivers_once() {
    let smtp = SmtpServer::start().await;
    let server = start_with_smtp(&smtp).await;
    smtp.stop().await;

    queue(
        &server,
        &request(
            EmailKind::PasswordReset,
            None,
            "ann@example.com",
            &[("link", LINK)],
        ),
    )
    .await;
    common::let_sender_run().await;

    // Back up, but the retry is not due until the backoff has passed.
    smtp.restart().await;
    server.services.wake_sender();
    common::let_sender_run().await;
    assert_eq!(
        smtp.mails().len(),
        0,
        "the retry was sent before its backoff ended"
    );

    server
        .clock
        .advance(server.services.config.email.backoff(1));
    server.services.wake_sender();
    let mails = smtp.wait_for(1).await;
    assert_eq!(mails[0].recipients, vec!["ann@example.com"]);
    assert_eq!(
        mails[0].header("Subject").as_deref(),
        Some("Medplum Password Reset")
    );
    assert!(mails[0].decoded_body().contains(LINK));

    server.clock.advance(chrono::Duration::days(1));
    server.services.wake_sender();
    common::let_sender_run().await;
    assert_eq!(
        smtp.mails().len(),
        1,
        "the message was delivered more than once"
    );
    assert_eq!(queued_rows(&server, "email").await, 0);
}

#[tokio::test]
async fn directory_outbox_writes_eml() {
    let server = TestServer::start_with(|config| config.email.run_sender = true).await;
    let op = server
        .services
        .queue_email(&request(
            EmailKind::VerifyEmail,
            None,
            "bob@example.com",
            &[("link", LINK)],
        ))
        .unwrap();
    let medgate_store::WriteOp::Enqueue(message) = &op else {
        panic!("queue_email returns an enqueue write");
    };
    let path = server.mail_dir().join(format!("{}.eml", message.id));
    server.services.repo.store.write(vec![op]).await.unwrap();

    let eml = wait_for_file(&path).await;
    assert!(eml.contains("To: bob@example.com"), "{eml}");
    assert!(eml.contains("Subject: Medplum Email Verification"), "{eml}");
    assert!(
        common::smtp::decode_quoted_printable(&eml).contains(LINK),
        "{eml}"
    );
    let files = std::fs::read_dir(server.mail_dir()).unwrap().count();
    assert_eq!(files, 1, "a temporary file was left behind");
}

#[tokio::test]
async fn project_templates_and_brand() {
    let smtp = SmtpServer::start().await;
    let server = start_with_smtp(&smtp).await;
    let project = create_project(
        &server,
        json!({"resourceType": "Project", "name": "Clinic", "setting": [
            {"name": "brandName", "valueString": "Acme Health"},
            {"name": "emailWelcomeSubject", "valueString": "{{name}}, join {{projectName}}"},
            {"name": "emailWelcomeHtml", "valueString": "<p>Hello {{name}}</p><a href=\"{{link}}\">{{appName}}</a>"},
        ]}),
    )
    .await;

    queue(
        &server,
        &request(
            EmailKind::Welcome,
            Some(&project.id),
            "carol@example.com",
            &[
                ("name", "Carol <script>"),
                ("projectName", "Clinic"),
                ("link", "https://app.example/signin"),
            ],
        ),
    )
    .await;
    queue(
        &server,
        &request(
            EmailKind::MfaCode,
            Some(&project.id),
            "carol@example.com",
            &[("code", "482913")],
        ),
    )
    .await;

    let mails = smtp.wait_for(2).await;
    let welcome = mails
        .iter()
        .find(|mail| mail.data.contains("join Clinic"))
        .expect("the welcome message");
    assert_eq!(
        welcome.header("Subject").as_deref(),
        Some("Carol <script>, join Clinic")
    );
    assert_eq!(
        welcome.header("From").as_deref(),
        Some("\"Clinic Mail\" <noreply@clinic.example>")
    );
    let body = welcome.decoded_body();
    assert!(body.contains("<p>Hello Carol &lt;script&gt;</p>"), "{body}");
    assert!(!body.contains("Hello Carol <script>"), "{body}");
    assert!(
        body.contains("<a href=\"https://app.example/signin\">Acme Health</a>"),
        "{body}"
    );
    // The text part is still the built-in one, with the brand in place of the product name.
    assert!(body.contains("You were invited to Clinic."), "{body}");

    let code = mails
        .iter()
        .find(|mail| mail.data.contains("482913"))
        .expect("the MFA code message");
    assert_eq!(
        code.header("Subject").as_deref(),
        Some("Your Acme Health verification code")
    );
}

#[tokio::test]
async fn project_smtp_sends_through_project_server() {
    let server_smtp = SmtpServer::start().await;
    let project_smtp = SmtpServer::start().await;
    let server = start_with_smtp(&server_smtp).await;
    let project = create_project(
        &server,
        json!({"resourceType": "Project", "name": "Clinic",
        "setting": [{"name": "appName", "valueString": "Clinic Portal"}],
        "secret": [
            {"name": "smtpHost", "valueString": "127.0.0.1"},
            {"name": "smtpPort", "valueInteger": project_smtp.port()},
            {"name": "smtpUsername", "valueString": "clinic"},
            {"name": "smtpPassword", "valueString": "clinic-password"},
            {"name": "smtpFromAddress", "valueString": "hello@clinic.example"},
        ]}),
    )
    .await;

    queue(
        &server,
        &request(
            EmailKind::PasswordReset,
            Some(&project.id),
            "dan@example.com",
            &[("link", LINK)],
        ),
    )
    .await;

    let mails = project_smtp.wait_for(1).await;
    assert_eq!(mails[0].recipients, vec!["dan@example.com"]);
    assert_eq!(mails[0].from, "hello@clinic.example");
    assert_eq!(
        mails[0].header("From").as_deref(),
        Some("\"Clinic Portal\" <hello@clinic.example>")
    );
    assert_eq!(
        mails[0].header("Subject").as_deref(),
        Some("Clinic Portal Password Reset")
    );
    assert_eq!(mails[0].username.as_deref(), Some("clinic"));
    assert_eq!(mails[0].password.as_deref(), Some("clinic-password"));
    assert_eq!(server_smtp.mails().len(), 0);
}

#[tokio::test]
async fn incomplete_project_smtp_fails_closed() {
    let smtp = SmtpServer::start().await;
    let server = start_with_smtp(&smtp).await;
    // smtpHost without smtpPort and smtpFromAddress.
    let broken = create_project(
        &server,
        json!({"resourceType": "Project", "name": "Broken",
            "secret": [{"name": "smtpHost", "valueString": "127.0.0.1"}]}),
    )
    .await;
    let plain = create_project(&server, json!({"resourceType": "Project", "name": "Plain"})).await;

    queue(
        &server,
        &request(
            EmailKind::PasswordReset,
            Some(&broken.id),
            "eve@example.com",
            &[("link", LINK)],
        ),
    )
    .await;
    queue(
        &server,
        &request(
            EmailKind::PasswordReset,
            Some(&plain.id),
            "fay@example.com",
            &[("link", LINK)],
        ),
    )
    .await;

    let mails = smtp.wait_for(1).await;
    assert_eq!(mails[0].recipients, vec!["fay@example.com"]);
    common::let_sender_run().await;
    assert_eq!(
        smtp.mails().len(),
        1,
        "the broken project's message went out through the server transport"
    );
}

#[tokio::test]
async fn retries_stop_after_the_cap() {
    let smtp = SmtpServer::start().await;
    let settings = smtp_settings(&smtp);
    let server = TestServer::start_with(|config| {
        config.email.transport = TransportConfig::Smtp(settings);
        config.email.max_attempts = 2;
        config.email.run_sender = true;
    })
    .await;
    smtp.stop().await;

    queue(
        &server,
        &request(
            EmailKind::PasswordReset,
            None,
            "gus@example.com",
            &[("link", LINK)],
        ),
    )
    .await;
    common::let_sender_run().await;
    // The second and last attempt, after the first backoff.
    server
        .clock
        .advance(server.services.config.email.backoff(1));
    server.services.wake_sender();
    common::let_sender_run().await;

    smtp.restart().await;
    server.clock.advance(chrono::Duration::days(1));
    server.services.wake_sender();
    common::let_sender_run().await;
    assert_eq!(
        smtp.mails().len(),
        0,
        "a message was sent after its last attempt"
    );
    assert_eq!(
        queued_rows(&server, "email").await,
        0,
        "the abandoned row is still queued"
    );
}

#[tokio::test]
async fn failure_logs_omit_link_and_password() {
    // A global subscriber sees every thread. A thread-local one (`set_default`) missed the
    // sender's lines when other tests of this file ran at the same moment. The capture holds
    // their lines too, and none of them may contain a secret either.
    let capture = Capture::default();
    tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .init();
    let smtp = SmtpServer::start().await;
    let server = start_with_smtp(&smtp).await;
    smtp.stop().await;

    let op = server
        .services
        .queue_email(&request(
            EmailKind::PasswordReset,
            None,
            "hal@example.com",
            &[("link", LINK)],
        ))
        .unwrap();
    let medgate_store::WriteOp::Enqueue(message) = &op else {
        panic!("queue_email returns an enqueue write");
    };
    let id = message.id.clone();
    server.services.repo.store.write(vec![op]).await.unwrap();
    // Waits for the failed attempt rather than a fixed time: on a loaded machine the sender
    // can take longer than any short pause.
    let logged = |logs: &str| {
        logs.lines()
            .any(|line| line.contains("will retry") && line.contains(&id))
    };
    for _ in 0..100 {
        if logged(&capture.text()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let logs = capture.text();
    assert!(
        logged(&logs),
        "the failed attempt is logged with the row id"
    );
    assert!(
        !logs.contains(LINK),
        "the set-password link reached the logs"
    );
    assert!(
        !logs.contains("mail-password"),
        "the SMTP password reached the logs"
    );
}

#[tokio::test]
async fn admin_invite_mails_set_password_link() {
    let smtp = SmtpServer::start().await;
    let server = start_with_smtp(&smtp).await;
    let admin = server.create_member("owner@clinic.example", true).await;
    let token = server.member_tokens(&admin, "openid").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();

    let response = server
        .http
        .post(server.url(&format!("admin/projects/{}/invite", admin.project_id)))
        .bearer_auth(&token)
        .json(
            &json!({"resourceType": "Practitioner", "firstName": "Ivy", "lastName": "Lane",
            "email": "ivy@example.com"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let mails = smtp.wait_for(1).await;
    assert_eq!(mails[0].recipients, vec!["ivy@example.com"]);
    assert_eq!(
        mails[0].header("Subject").as_deref(),
        Some("Welcome to Medplum")
    );
    let body = mails[0].decoded_body();
    let link_prefix = format!("{}setpassword/", server.base_url);
    assert!(
        body.contains(&link_prefix),
        "no set-password link in {body}"
    );
    assert!(
        body.contains(&format!("You were invited to Project of {}.", admin.email)),
        "{body}"
    );
}
