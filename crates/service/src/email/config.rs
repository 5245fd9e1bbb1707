//! Server settings for outgoing email and the outbox sender.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::secret::Secret;

#[derive(Debug, Clone)]
pub struct EmailConfig {
    pub transport: TransportConfig,
    /// Sender of every message the server transport sends, e.g. `Clinic <noreply@example.com>`.
    pub from: String,
    /// Product name in the built-in messages, unless a project sets `brandName` or `appName`.
    pub product_name: String,
    /// Lets projects send through their own SMTP server (`smtp*` entries of `Project.secret`).
    pub allow_project_smtp: bool,
    /// Runs the outbox sender in this process. HTTP tests that read queued rows themselves
    /// turn it off, so the sender does not take the rows first.
    pub run_sender: bool,
    /// How often the sender looks for due outbox rows that another instance queued.
    pub poll_interval: Duration,
    /// Attempts per outbox row, the first one included, before the sender gives up. With the
    /// default backoff, 24 attempts span about 17 hours.
    pub max_attempts: u32,
    /// Wait before the first retry; each further retry waits twice as long, up to `max_backoff`.
    pub first_backoff: chrono::Duration,
    pub max_backoff: chrono::Duration,
    /// Limit on one SMTP conversation or webhook request.
    pub send_timeout: Duration,
}

/// Destination of the messages sent through the server transport.
#[derive(Debug, Clone)]
pub enum TransportConfig {
    /// One `<outbox row id>.eml` file per message in this directory; needs no mail server.
    Directory(PathBuf),
    Smtp(SmtpSettings),
}

#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    /// `Some(true)`: TLS from the first byte (implicit TLS, RFC 8314). `Some(false)` or `None`:
    /// STARTTLS (RFC 3207), except that `None` on port 465 means implicit TLS, as in Medplum.
    pub secure: Option<bool>,
    pub username: Option<String>,
    pub password: Option<Secret<String>>,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            transport: TransportConfig::Directory(PathBuf::from("./data/mail")),
            from: "medgate <noreply@localhost>".to_string(),
            product_name: "Medplum".to_string(),
            allow_project_smtp: true,
            run_sender: true,
            poll_interval: Duration::from_secs(5),
            max_attempts: 24,
            first_backoff: chrono::Duration::seconds(30),
            max_backoff: chrono::Duration::hours(1),
            send_timeout: Duration::from_secs(30),
        }
    }
}

impl EmailConfig {
    /// Checks the settings that would fail every message, so the server refuses to start
    /// instead of queueing mail it cannot send.
    pub fn check(&self) -> Result<(), String> {
        lettre::message::Mailbox::from_str(&self.from)
            .map(|_| ())
            .map_err(|error| format!("invalid sender address {:?}: {error}", self.from))
    }

    /// Returns the wait before attempt `attempts + 1`, after `attempts` failed ones.
    pub fn backoff(&self, attempts: u32) -> chrono::Duration {
        let factor = 2_i32.saturating_pow(attempts.saturating_sub(1).min(30));
        self.first_backoff
            .checked_mul(factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let config = EmailConfig::default();
        assert_eq!(config.backoff(1), chrono::Duration::seconds(30));
        assert_eq!(config.backoff(2), chrono::Duration::seconds(60));
        assert_eq!(config.backoff(3), chrono::Duration::seconds(120));
        assert_eq!(config.backoff(8), chrono::Duration::hours(1));
        assert_eq!(config.backoff(40), chrono::Duration::hours(1));
    }
}
