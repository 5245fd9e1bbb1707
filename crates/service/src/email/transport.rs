//! Delivery of one rendered message: through SMTP (the server's or a project's own) or into
//! a directory of `.eml` files.

use std::path::Path;
use std::str::FromStr;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use medgate_fhir::resources::Project;
use serde_json::Value;

use super::config::{EmailConfig, SmtpSettings, TransportConfig};
use super::templates::RenderedEmail;
use crate::delivery::DeliveryError;
use crate::secret::Secret;

/// The transport of one message, chosen from the server settings and the project's secrets.
#[derive(Debug)]
pub enum Route {
    Server,
    /// The project's own SMTP server and its sender address.
    Project {
        smtp: SmtpSettings,
        from: String,
    },
}

/// Reads a `Project.secret` entry as text, whichever `value[x]` carries it.
fn project_secret(project: &Project, name: &str) -> Option<String> {
    let entry = project
        .extra
        .get("secret")
        .and_then(Value::as_array)?
        .iter()
        .find(|entry| entry.get("name").and_then(Value::as_str) == Some(name))?;
    let value = [
        "valueString",
        "valueInteger",
        "valueBoolean",
        "valueDecimal",
    ]
    .iter()
    .find_map(|key| entry.get(*key))?;
    match value {
        Value::String(text) => Some(text.trim().to_string()).filter(|text| !text.is_empty()),
        Value::Bool(flag) => Some(flag.to_string()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// Chooses the transport for a project's message. A project that sets `smtpHost` sends only
/// through its own server: when the rest of its settings is incomplete or invalid the
/// message fails instead of going out through the server transport under the server's name.
pub fn route(project: Option<&Project>, config: &EmailConfig) -> Result<Route, DeliveryError> {
    let Some(project) = project.filter(|_| config.allow_project_smtp) else {
        return Ok(Route::Server);
    };
    let Some(host) = project_secret(project, "smtpHost") else {
        return Ok(Route::Server);
    };
    let incomplete = |what: &str| {
        DeliveryError::Transient(format!(
            "project SMTP settings are incomplete: {what}. The project sends no email until \
             its smtp* secrets are fixed"
        ))
    };

    let port = match project_secret(project, "smtpPort") {
        Some(port) => port
            .parse::<u16>()
            .map_err(|_| incomplete("smtpPort must be a port number"))?,
        None => return Err(incomplete("smtpPort is missing")),
    };

    let secure = match project_secret(project, "smtpSecure").as_deref() {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return Err(incomplete("smtpSecure must be true or false")),
    };

    let username = project_secret(project, "smtpUsername");
    let password = project_secret(project, "smtpPassword").map(Secret::new);
    if username.is_some() != password.is_some() {
        return Err(incomplete(
            "smtpUsername and smtpPassword must be set together",
        ));
    }

    let Some(from) = project_secret(project, "smtpFromAddress") else {
        return Err(incomplete("smtpFromAddress is missing"));
    };
    if Mailbox::from_str(&from).is_err() {
        return Err(incomplete("smtpFromAddress is not a valid address"));
    }

    Ok(Route::Project {
        smtp: SmtpSettings {
            host,
            port,
            secure,
            username,
            password,
        },
        from,
    })
}

/// Builds the MIME message. A sender without a display name gets `brand` as one.
pub fn build_message(
    message_id: &str,
    from: &str,
    brand: &str,
    to: &str,
    rendered: &RenderedEmail,
) -> Result<Message, DeliveryError> {
    let mut from = Mailbox::from_str(from)
        .map_err(|error| DeliveryError::Permanent(format!("invalid sender address: {error}")))?;
    if from.name.is_none() {
        from.name = Some(brand.to_string());
    }
    let to = Mailbox::from_str(to)
        .map_err(|error| DeliveryError::Permanent(format!("invalid recipient address: {error}")))?;
    let domain = from.email.domain().to_string();
    Message::builder()
        .from(from)
        .to(to)
        .subject(rendered.subject.clone())
        // The outbox row id makes the Message-ID stable across retries, so a receiver can drop
        // a copy sent again after a crash between the send and the row's deletion.
        .message_id(Some(format!("<{message_id}@{domain}>")))
        .multipart(MultiPart::alternative_plain_html(
            rendered.text.clone(),
            rendered.html.clone(),
        ))
        .map_err(|error| DeliveryError::Permanent(format!("cannot build the message: {error}")))
}

/// Builds an SMTP client for `settings`.
///
/// TLS: implicit TLS when `secure` is true or the port is 465 with `secure` unset, otherwise
/// STARTTLS is required, except towards a loopback host, where it is used only if offered
/// because the connection never leaves the machine.
pub fn smtp_transport(
    settings: &SmtpSettings,
    config: &EmailConfig,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, DeliveryError> {
    let parameters = TlsParameters::new(settings.host.clone()).map_err(|error| {
        DeliveryError::Transient(format!("invalid TLS settings for the SMTP host: {error}"))
    })?;
    let implicit = settings.secure.unwrap_or(settings.port == 465);
    let tls = if implicit {
        Tls::Wrapper(parameters)
    } else if is_loopback(&settings.host) {
        Tls::Opportunistic(parameters)
    } else {
        Tls::Required(parameters)
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)
        .port(settings.port)
        .tls(tls)
        .timeout(Some(config.send_timeout));
    if let (Some(username), Some(password)) = (&settings.username, &settings.password) {
        builder = builder.credentials(Credentials::new(
            username.clone(),
            password.expose().clone(),
        ));
    }
    Ok(builder.build())
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

/// Sends through SMTP. A 5xx reply to the recipient is permanent (RFC 5321 §4.2.1); every
/// other failure (refused connection, timeout, 4xx, authentication) may pass later.
pub async fn send_smtp(
    transport: &AsyncSmtpTransport<Tokio1Executor>,
    message: &Message,
) -> Result<(), DeliveryError> {
    match transport.send(message.clone()).await {
        Ok(_) => Ok(()),
        Err(error)
            if error.is_permanent()
                && error.status().is_some_and(|code| {
                    // Authentication replies (530, 534, 535, 538) report settings an admin can fix.
                    !matches!(u16::from(code), 530 | 534 | 535 | 538)
                }) =>
        {
            Err(DeliveryError::Permanent(format!(
                "SMTP server rejected the message: {error}"
            )))
        }
        Err(error) => Err(DeliveryError::Transient(format!(
            "SMTP delivery failed: {error}"
        ))),
    }
}

/// Writes `<directory>/<id>.eml`. The file is written under a temporary name and renamed,
/// so a reader never sees half a message and a retry replaces the file instead of adding one.
pub async fn write_eml(directory: &Path, id: &str, message: &Message) -> Result<(), DeliveryError> {
    let failed = |error: std::io::Error| {
        DeliveryError::Transient(format!(
            "cannot write to the mail directory {}: {error}",
            directory.display()
        ))
    };
    tokio::fs::create_dir_all(directory).await.map_err(failed)?;
    let temporary = directory.join(format!(".{id}.eml.tmp"));
    tokio::fs::write(&temporary, message.formatted())
        .await
        .map_err(failed)?;
    tokio::fs::rename(&temporary, directory.join(format!("{id}.eml")))
        .await
        .map_err(failed)
}

/// The server transport, built once so SMTP connections are pooled between messages.
pub enum ServerTransport {
    Directory(std::path::PathBuf),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

impl ServerTransport {
    pub fn new(config: &EmailConfig) -> Result<Self, DeliveryError> {
        Ok(match &config.transport {
            TransportConfig::Directory(directory) => Self::Directory(directory.clone()),
            TransportConfig::Smtp(settings) => Self::Smtp(smtp_transport(settings, config)?),
        })
    }

    pub async fn send(&self, id: &str, message: &Message) -> Result<(), DeliveryError> {
        match self {
            Self::Directory(directory) => write_eml(directory, id, message).await,
            Self::Smtp(transport) => send_smtp(transport, message).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn project(secrets: Value) -> Project {
        serde_json::from_value(json!({"resourceType": "Project", "id": "p1", "secret": secrets}))
            .unwrap()
    }

    fn error_text(result: Result<Route, DeliveryError>) -> String {
        match result {
            Err(error) => error.to_string(),
            Ok(route) => panic!("expected an error, got {route:?}"),
        }
    }

    #[test]
    fn project_without_smtp_host_uses_server() {
        let config = EmailConfig::default();
        let route = route(Some(&project(json!([]))), &config).unwrap();
        assert!(matches!(route, Route::Server));
    }

    #[test]
    fn incomplete_project_smtp_fails_closed() {
        let config = EmailConfig::default();
        let host = json!({"name": "smtpHost", "valueString": "smtp.example.com"});
        let port = json!({"name": "smtpPort", "valueInteger": 587});
        let from = json!({"name": "smtpFromAddress", "valueString": "a@example.com"});
        let user = json!({"name": "smtpUsername", "valueString": "a"});

        let missing_port = route(Some(&project(json!([host, from]))), &config);
        assert!(error_text(missing_port).contains("smtpPort is missing"));

        let missing_from = route(Some(&project(json!([host, port]))), &config);
        assert!(error_text(missing_from).contains("smtpFromAddress is missing"));

        let user_only = route(Some(&project(json!([host, port, from, user]))), &config);
        assert!(error_text(user_only).contains("set together"));

        let complete = route(Some(&project(json!([host, port, from]))), &config).unwrap();
        let Route::Project { smtp, from } = complete else {
            panic!("expected the project route");
        };
        assert_eq!((smtp.host.as_str(), smtp.port), ("smtp.example.com", 587));
        assert_eq!(from, "a@example.com");
    }

    #[test]
    fn project_smtp_ignored_when_disallowed() {
        let config = EmailConfig {
            allow_project_smtp: false,
            ..EmailConfig::default()
        };
        let secrets = json!([{"name": "smtpHost", "valueString": "smtp.example.com"}]);
        let route = route(Some(&project(secrets)), &config).unwrap();
        assert!(matches!(route, Route::Server));
    }

    #[test]
    fn sender_gets_brand_as_display_name() {
        let rendered = RenderedEmail {
            subject: "S".to_string(),
            text: "T".to_string(),
            html: "<p>H</p>".to_string(),
        };
        let message = build_message(
            "id1",
            "noreply@example.com",
            "Acme",
            "b@example.com",
            &rendered,
        )
        .unwrap();
        let text = String::from_utf8(message.formatted()).unwrap();
        assert!(text.contains("From: Acme <noreply@example.com>"), "{text}");
        assert!(text.contains("Message-ID: <id1@example.com>"), "{text}");

        let invalid = build_message(
            "id2",
            "noreply@example.com",
            "Acme",
            "not an address",
            &rendered,
        );
        assert!(matches!(invalid, Err(DeliveryError::Permanent(_))));
    }
}
