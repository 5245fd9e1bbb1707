//! The service layer's error. Handlers turn it into a response in exactly one place per
//! format (OAuth JSON, OperationOutcome or HTML); services never build responses themselves.

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
        field: Option<&'static str>,
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

    pub fn invalid_field(message: impl Into<String>, field: &'static str) -> Self {
        Self::Invalid {
            message: message.into(),
            field: Some(field),
        }
    }

    pub fn oauth(code: OAuthErrorCode, description: impl Into<String>) -> Self {
        Self::OAuth {
            code,
            description: description.into(),
        }
    }
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
