//! One-time links sent by email, stored as `UserSecurityRequest` resources: an invite's or a
//! reset's set-password link and the email-verification link. The link carries the request id
//! and a random secret. Only the secret's SHA-256 is stored, so a database reader cannot use a
//! pending link.

use chrono::{DateTime, Duration, Utc};
use medgate_fhir::resources::{TypedResource, User, UserSecurityRequest};
use medgate_store::{NotificationFields, WriteOp};
use serde_json::{Map, Value};

use crate::Services;
use crate::clock::fhir_instant;
use crate::error::{ServiceError, ServiceResult};
use crate::random::{secret_hex, sha256_hex, uuid_v4};
use crate::repo::WriteContext;
use crate::secret::Secret;

/// The `type` of a UserSecurityRequest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityRequestType {
    Invite,
    Reset,
    VerifyEmail,
}

impl SecurityRequestType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invite => "invite",
            Self::Reset => "reset",
            Self::VerifyEmail => "verify-email",
        }
    }

    /// Returns how long a link stays valid: Medplum's windows, 1 hour for a reset and 7 days
    /// for an invite or an email verification.
    pub fn lifetime(self) -> Duration {
        match self {
            Self::Reset => Duration::hours(1),
            Self::Invite | Self::VerifyEmail => Duration::days(7),
        }
    }

    /// The app page that redeems the link: Medplum's `setpassword` or `verifyemail`.
    fn page(self) -> &'static str {
        match self {
            Self::Invite | Self::Reset => "setpassword",
            Self::VerifyEmail => "verifyemail",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "invite" => Some(Self::Invite),
            "reset" => Some(Self::Reset),
            "verify-email" => Some(Self::VerifyEmail),
            _ => None,
        }
    }
}

/// A new request, not yet written: the write that creates it, its id and the link for the
/// email. The secret exists only in `link` and `secret`.
pub struct PreparedSecurityRequest {
    pub id: String,
    pub secret: Secret<String>,
    /// `{appBaseUrl}setpassword/<id>/<secret>` (Medplum's set-password page), or
    /// `verifyemail/…` for an email verification.
    pub link: Secret<String>,
    pub write: WriteOp,
}

impl PreparedSecurityRequest {
    /// Builds the op that puts the clear secret into the rest-hook notifications of this
    /// request, as Medplum's `secret` field, for a flow that queues no email so the project
    /// sends its own. The store keeps only `secretHash`.
    pub fn secret_for_notifications(&self) -> WriteOp {
        let mut fields = Map::new();
        fields.insert(
            "secret".to_string(),
            Value::String(self.secret.expose().clone()),
        );
        WriteOp::AddToNotifications {
            resource_type: UserSecurityRequest::RESOURCE_TYPE.to_string(),
            id: self.id.clone(),
            fields: NotificationFields(fields),
        }
    }
}

impl Services {
    /// Builds a request of `request_type` for `user` that expires after the type's lifetime.
    /// It belongs to `project_id` (`meta.project`), so that project's admins can see it.
    pub fn prepare_security_request(
        &self,
        request_type: SecurityRequestType,
        user: &User,
        project_id: Option<&str>,
        redirect_uri: Option<String>,
    ) -> ServiceResult<PreparedSecurityRequest> {
        // 32 random bytes; Medplum uses 16.
        let secret = Secret::new(secret_hex(self.random(), 32));
        let request = UserSecurityRequest {
            id: uuid_v4(self.random()),
            request_type: request_type.as_str().to_string(),
            user: user.reference(),
            secret_hash: Some(sha256_hex(secret.expose())),
            redirect_uri,
            expires_at: Some(fhir_instant(self.now() + request_type.lifetime())),
            ..Default::default()
        };
        let value = self
            .repo
            .prepare_create(request.to_json(), &WriteContext::system(project_id))?;
        let link = format!(
            "{}{}/{}/{}",
            self.config.app_base_url,
            request_type.page(),
            request.id,
            secret.expose()
        );
        Ok(PreparedSecurityRequest {
            id: request.id,
            secret,
            link: Secret::new(link),
            write: WriteOp::Create(value),
        })
    }

    /// Reads the request a link names; an unknown or deleted one is `NotFound`.
    pub(crate) async fn read_security_request(
        &self,
        id: &str,
    ) -> ServiceResult<UserSecurityRequest> {
        match self.repo.read::<UserSecurityRequest>(id).await {
            Err(ServiceError::Gone) => Err(ServiceError::NotFound),
            other => other,
        }
    }

    /// Checks that a request has not expired and that `secret` is its secret, with Medplum's
    /// messages `Expired` and `Incorrect secret`.
    pub(crate) fn check_security_request(
        &self,
        request: &UserSecurityRequest,
        secret: &Secret<String>,
    ) -> ServiceResult<()> {
        if self.now() >= expiry(request)? {
            return Err(ServiceError::invalid("Expired"));
        }
        if !secret_matches(request, secret) {
            return Err(ServiceError::invalid_field("Incorrect secret", "secret"));
        }
        Ok(())
    }
}

/// When a request expires: its `expiresAt`, or for a request without one (written by an older
/// Medplum) its last update plus the lifetime of its type.
fn expiry(request: &UserSecurityRequest) -> ServiceResult<DateTime<Utc>> {
    let parse = |text: &str| {
        DateTime::parse_from_rfc3339(text)
            .map(|at| at.with_timezone(&Utc))
            .map_err(|error| {
                ServiceError::Internal(format!(
                    "UserSecurityRequest {} has an invalid instant {text:?}: {error}",
                    request.id
                ))
            })
    };
    if let Some(expires_at) = &request.expires_at {
        return parse(expires_at);
    }
    let last_updated = request
        .meta
        .as_ref()
        .and_then(|meta| meta.last_updated.as_deref())
        .ok_or_else(|| {
            ServiceError::Internal(format!(
                "UserSecurityRequest {} has neither expiresAt nor meta.lastUpdated",
                request.id
            ))
        })?;
    let lifetime = SecurityRequestType::parse(&request.request_type)
        .map_or(Duration::hours(1), SecurityRequestType::lifetime);
    Ok(parse(last_updated)? + lifetime)
}

/// Compares a presented secret with the stored hash in constant time. A request imported from
/// Medplum has its secret in clear text in `secret`, which is hashed for the same comparison.
fn secret_matches(request: &UserSecurityRequest, secret: &Secret<String>) -> bool {
    let stored = match (&request.secret_hash, request.extra.get("secret")) {
        (Some(hash), _) => hash.clone(),
        (None, Some(serde_json::Value::String(clear))) => sha256_hex(clear),
        _ => return false,
    };
    let presented = sha256_hex(secret.expose());
    aws_lc_rs::constant_time::verify_slices_are_equal(stored.as_bytes(), presented.as_bytes())
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use medgate_fhir::Reference;
    use medgate_fhir::resources::Meta;
    use serde_json::json;

    fn request(request_type: &str) -> UserSecurityRequest {
        UserSecurityRequest {
            id: "r1".into(),
            request_type: request_type.into(),
            user: Reference::new("User", "u1"),
            ..Default::default()
        }
    }

    #[test]
    fn expiry_prefers_expires_at() {
        let mut reset = request("reset");
        reset.expires_at = Some("2026-12-04T13:00:00.000Z".into());
        reset.meta = Some(Meta {
            last_updated: Some("2026-01-01T00:00:00.000Z".into()),
            ..Default::default()
        });
        assert_eq!(
            fhir_instant(expiry(&reset).unwrap()),
            "2026-12-04T13:00:00.000Z"
        );
    }

    #[test]
    fn expiry_of_legacy_requests_by_type() {
        let meta = Some(Meta {
            last_updated: Some("2026-12-04T12:00:00.000Z".into()),
            ..Default::default()
        });
        let mut reset = request("reset");
        reset.meta = meta.clone();
        assert_eq!(
            fhir_instant(expiry(&reset).unwrap()),
            "2026-12-04T13:00:00.000Z"
        );
        let mut invite = request("invite");
        invite.meta = meta;
        assert_eq!(
            fhir_instant(expiry(&invite).unwrap()),
            "2026-12-11T12:00:00.000Z"
        );
    }

    #[test]
    fn secret_matches_hash_or_imported_clear_text() {
        let mut hashed = request("reset");
        hashed.secret_hash = Some(sha256_hex("abc"));
        assert!(secret_matches(&hashed, &Secret::from("abc")));
        assert!(!secret_matches(&hashed, &Secret::from("abd")));

        let mut imported = request("invite");
        imported.extra.insert("secret".into(), json!("abc"));
        assert!(secret_matches(&imported, &Secret::from("abc")));
        assert!(!secret_matches(&imported, &Secret::from("")));

        assert!(!secret_matches(&request("reset"), &Secret::from("")));
    }
}
