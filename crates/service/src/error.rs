//! The service layer's error. Handlers turn it into a response in exactly one place per
//! format (OAuth JSON, OperationOutcome or HTML); services never build responses themselves.
//! FHIR batch and transaction Bundles report a status and an OperationOutcome per entry inside
//! the response body, so [`ServiceError::fhir_outcome`] gives both for the service layer and
//! for the OperationOutcome handlers alike.

use std::borrow::Cow;

use medgate_fhir::OperationOutcome;
use medgate_store::StoreError;

/// Error codes of RFC 6749 §5.2, plus `invalid_token` from RFC 6750 §3.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
}

impl OAuthErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Bad input; `field` names the request field when there is one.
    #[error("{message}")]
    Invalid {
        message: String,
        field: Option<Cow<'static, str>>,
    },
    /// A token-endpoint failure with its RFC 6749 error code and Medplum's description text.
    #[error("{description}")]
    OAuth {
        code: OAuthErrorCode,
        description: String,
    },
    #[error("not found")]
    NotFound,
    #[error("gone")]
    Gone,
    #[error("unauthorized")]
    Unauthorized,
    #[error("forbidden")]
    Forbidden,
    #[error("{0}")]
    Conflict(String),
    #[error("precondition failed")]
    PreconditionFailed,
    /// Too many requests or attempts. With `retry_after_seconds`, the caller may retry after
    /// that long (the HTTP `Retry-After` value of RFC 9110 §10.2.3). Without it, the same
    /// login may not retry at all, as after the MFA codes allowed per login.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_seconds: Option<u64>,
    },
    /// The search of a conditional create, update or delete found more than one resource.
    #[error("multiple resources found matching condition")]
    MultipleMatches,
    /// The failure of entry `index` of a transaction Bundle, which failed the whole Bundle.
    #[error("Bundle.entry[{index}]: {error}")]
    InEntry {
        index: usize,
        error: Box<ServiceError>,
    },
    #[error(transparent)]
    Store(StoreError),
    /// A failure that is not the caller's fault; the text is logged, never returned.
    #[error("{0}")]
    Internal(String),
}

impl ServiceError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid {
            message: message.into(),
            field: None,
        }
    }

    pub fn invalid_field(message: impl Into<String>, field: impl Into<Cow<'static, str>>) -> Self {
        Self::Invalid {
            message: message.into(),
            field: Some(field.into()),
        }
    }

    pub fn oauth(code: OAuthErrorCode, description: impl Into<String>) -> Self {
        Self::OAuth {
            code,
            description: description.into(),
        }
    }
}

impl ServiceError {
    /// Returns the HTTP status code and the OperationOutcome that the FHIR API reports for
    /// this error, or `None` for a failure that is not the caller's fault, which is logged
    /// and returned as a generic 500. The `id`s are Medplum's, which `@medplum/core` reads.
    pub fn fhir_outcome(&self) -> Option<(u16, OperationOutcome)> {
        let outcome = match self {
            Self::Invalid { message, field } => (
                400,
                OperationOutcome::bad_request(message, field.as_deref()),
            ),
            Self::OAuth { description, .. } => {
                (400, OperationOutcome::bad_request(description, None))
            }
            Self::NotFound => (404, OperationOutcome::not_found()),
            Self::Gone => (410, OperationOutcome::gone()),
            Self::Unauthorized => (401, OperationOutcome::unauthorized()),
            Self::Forbidden => (403, OperationOutcome::forbidden()),
            Self::Conflict(message) => (409, OperationOutcome::conflict(message)),
            Self::Store(StoreError::Duplicate) => (
                409,
                OperationOutcome::conflict("A resource with this id already exists"),
            ),
            Self::PreconditionFailed => (412, OperationOutcome::precondition_failed()),
            Self::TooManyRequests { message, .. } => (429, OperationOutcome::throttled(message)),
            Self::MultipleMatches => (412, OperationOutcome::multiple_matches()),
            Self::InEntry { index, error } => {
                let (status, outcome) = error.fhir_outcome()?;
                (status, in_entry(*index, outcome))
            }
            Self::Store(_) | Self::Internal(_) => return None,
        };
        Some(outcome)
    }
}

/// Names the Bundle entry in every issue of an entry's outcome: the text starts with
/// `Bundle.entry[i]`, and the expression points into the entry's resource.
fn in_entry(index: usize, mut outcome: OperationOutcome) -> OperationOutcome {
    let entry = format!("Bundle.entry[{index}]");
    for issue in &mut outcome.issue {
        if let Some(details) = &mut issue.details {
            details.text = format!("{entry}: {}", details.text);
        }
        if issue.expression.is_empty() {
            issue.expression.push(entry.clone());
        } else {
            for expression in &mut issue.expression {
                *expression = format!("{entry}.resource.{expression}");
            }
        }
    }
    outcome
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => Self::NotFound,
            StoreError::Gone => Self::Gone,
            StoreError::VersionConflict => Self::PreconditionFailed,
            other => Self::Store(other),
        }
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;
