//! The background sender: it claims due outbox rows (emails and rest-hook notifications),
//! delivers them, retries failures with exponential backoff and gives up after a cap.
//!
//! A row is deleted once delivered, because its payload can hold a set-password link. A
//! failed attempt makes the row due again after the backoff, so an outage of the mail server
//! or of a webhook endpoint delays delivery and loses nothing until the cap. Within one
//! process a row is delivered once. NOTE: a process that stops between a successful send
//! and the row's deletion sends the row again after its lease ends (at-least-once), which
//! is why an email's Message-ID is derived from the row id.

use std::sync::Arc;

use medgate_store::OutboxMessage;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::Services;

/// The reason one delivery failed. The text never contains the message, the link or the body.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Retrying cannot help, e.g. an invalid recipient address.
    #[error("{0}")]
    Permanent(String),
    /// The destination may accept the row later (server down, timeout, settings being fixed).
    #[error("{0}")]
    Transient(String),
}

/// The outbox kinds the sender handles, each with its own claim so one kind cannot starve
/// the other.
const KINDS: [&str; 2] = [crate::email::OUTBOX_KIND, crate::subscriptions::OUTBOX_KIND];

/// Rows claimed per query.
const CLAIM_LIMIT: u32 = 20;

/// Wakes the sender right after this process queued a row, instead of at its next poll.
#[derive(Clone, Default)]
pub struct Wake(Arc<Notify>);

impl Wake {
    pub fn notify(&self) {
        self.0.notify_one();
    }
}

/// A running sender; [`SenderHandle::stop`] lets it finish the row in hand and waits for it.
pub struct SenderHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl SenderHandle {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(error) = self.task.await {
            error!(%error, "the outbox sender ended abnormally");
        }
    }
}

impl Services {
    /// Starts the background sender on the current Tokio runtime.
    pub fn start_sender(&self) -> SenderHandle {
        let (stop, stopped) = watch::channel(false);
        let services = self.clone();
        let task = tokio::spawn(async move { run(services, stopped).await });
        SenderHandle { stop, task }
    }

    /// Makes the sender look for due rows now, e.g. after a test moved the clock.
    pub fn wake_sender(&self) {
        self.outbox_wake.notify();
    }
}

async fn run(services: Services, mut stopped: watch::Receiver<bool>) {
    let config = services.config.email.clone();
    let email = match crate::email::send::EmailSender::new(&services) {
        Ok(sender) => sender,
        Err(error) => {
            // Rows stay queued, so fixing the settings and restarting loses nothing.
            error!(%error, "the outbox sender cannot start: invalid email transport settings");
            return;
        }
    };
    let http = match reqwest::Client::builder()
        .timeout(config.send_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(http) => http,
        Err(error) => {
            error!(%error, "the outbox sender cannot start: cannot build the HTTP client");
            return;
        }
    };
    info!("outbox sender started");

    loop {
        // One claim per kind in turn, until no kind has due rows.
        let mut claimed_any = true;
        while claimed_any {
            claimed_any = false;
            for kind in KINDS {
                if *stopped.borrow() {
                    info!("outbox sender stopped");
                    return;
                }
                let rows = match claim(&services, kind).await {
                    Ok(rows) => rows,
                    Err(error) => {
                        warn!(kind, %error, "cannot claim outbox rows; retrying at the next poll");
                        continue;
                    }
                };
                claimed_any |= !rows.is_empty();
                for row in rows {
                    let result = match kind {
                        crate::email::OUTBOX_KIND => email.deliver(&row).await,
                        _ => services.deliver_webhook(&http, &row).await,
                    };
                    finish(&services, &row, result).await;
                }
            }
        }

        tokio::select! {
            _ = stopped.changed() => {}
            () = services.outbox_wake.0.notified() => {}
            () = tokio::time::sleep(config.poll_interval) => {}
        }
    }
}

async fn claim(services: &Services, kind: &str) -> crate::ServiceResult<Vec<OutboxMessage>> {
    let now = services.now();
    // The lease covers one attempt of every claimed row, each bounded by the send timeout.
    let lease = chrono::Duration::from_std(services.config.email.send_timeout * (CLAIM_LIMIT + 1))
        .unwrap_or(chrono::Duration::hours(1));
    Ok(services
        .repo
        .store
        .claim_outbox(kind, now, now + lease, CLAIM_LIMIT)
        .await?)
}

/// Records the outcome of one attempt. Logs name the row, never its payload.
async fn finish(services: &Services, row: &OutboxMessage, result: Result<(), DeliveryError>) {
    let store = &services.repo.store;
    let config = &services.config.email;
    let max_attempts = max_attempts(row, config.max_attempts);
    let outcome = match result {
        Ok(()) => {
            info!(id = %row.id, kind = %row.kind, attempts = row.attempts, "outbox row delivered");
            store.finish_outbox(&row.id).await
        }
        Err(DeliveryError::Permanent(reason)) => {
            error!(id = %row.id, kind = %row.kind, error = %reason, "outbox row cannot be delivered; giving up");
            store.abandon_outbox(&row.id, &reason).await
        }
        Err(DeliveryError::Transient(reason)) if row.attempts >= max_attempts => {
            error!(id = %row.id, kind = %row.kind, attempts = row.attempts, error = %reason,
                "outbox row failed its last attempt; giving up");
            store.abandon_outbox(&row.id, &reason).await
        }
        Err(DeliveryError::Transient(reason)) => {
            let retry_at = services.now() + config.backoff(row.attempts);
            warn!(id = %row.id, kind = %row.kind, attempts = row.attempts, %retry_at,
                error = %reason, "outbox delivery failed; will retry");
            store.retry_outbox(&row.id, retry_at, &reason).await
        }
    };
    if let Err(error) = outcome {
        // The lease ends on its own, so the row is attempted again later.
        error!(id = %row.id, %error, "cannot record the outcome of an outbox row");
    }
}

/// A rest-hook row carries its subscription's `subscription-max-attempts`, if set.
fn max_attempts(row: &OutboxMessage, default: u32) -> u32 {
    row.payload
        .get("maxAttempts")
        .and_then(serde_json::Value::as_u64)
        .and_then(|attempts| u32::try_from(attempts).ok())
        .filter(|attempts| *attempts > 0)
        .unwrap_or(default)
}
