//! Email: what the flows ask to send, and how a request is queued.
//!
//! A flow never talks to a mail server. It builds an [`EmailRequest`] and puts the
//! [`WriteOp`] from [`Services::queue_email`] into the same store batch as the resources the
//! message is about, so the message is queued if and only if they are written. A background
//! sender renders queued requests with the project's templates and delivers them, retrying
//! while the mail server is unreachable.

use std::collections::BTreeMap;

use medgate_store::{OutboxMessage, WriteOp};
use serde::{Deserialize, Serialize};

use crate::random::uuid_v7;
use crate::{ServiceError, ServiceResult, Services};

/// The outbox `kind` of queued emails.
pub const OUTBOX_KIND: &str = "email";

/// The messages medgate sends. Each has a built-in subject and body that a project can
/// override.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EmailKind {
    /// To a new user added to a project, with a link to choose a password.
    Invite,
    /// To an existing user added to a project.
    Welcome,
    /// A link to choose a new password.
    PasswordReset,
    /// A link that confirms the address belongs to the user.
    VerifyEmail,
    /// A one-time sign-in code.
    MfaCode,
    /// A notice that an administrator removed the user's second factor.
    MfaReset,
}

/// One message to send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmailRequest {
    pub kind: EmailKind,
    /// The project whose templates, brand name and mail settings apply; `None` for the
    /// server's own.
    pub project_id: Option<String>,
    pub to: String,
    /// Template variables by name: `name` (the recipient's), `projectName`, `link`, `code`,
    /// as the kind needs.
    pub values: BTreeMap<String, String>,
}

impl Services {
    /// Returns the write that queues `request`; add it to the batch of the resources the
    /// message belongs to.
    pub fn queue_email(&self, request: &EmailRequest) -> ServiceResult<WriteOp> {
        let now = self.repo.clock.now();
        Ok(WriteOp::Enqueue(OutboxMessage {
            id: uuid_v7(self.repo.random.as_ref(), now),
            kind: OUTBOX_KIND.to_string(),
            payload: serde_json::to_value(request).map_err(|error| {
                ServiceError::Internal(format!("cannot encode an email request: {error}"))
            })?,
            attempts: 0,
            due_at: now,
            created_at: now,
        }))
    }
}
