//! The token endpoint's grants (RFC 6749 §4.1.3, §4.4, §6). Errors carry RFC 6749 §5.2 codes
//! with Medplum's `error_description` texts.

mod authorization_code;
mod client_credentials;
mod refresh;

use medgate_fhir::resources::ProjectMembership;
use tracing::instrument;

use crate::Services;
use crate::client_auth::{ClientCredentials, parse_basic};
use crate::error::{OAuthErrorCode, ServiceError, ServiceResult};
use crate::secret::Secret;
use crate::tokens::TokenResponse;

/// A token request after form decoding. Client credentials come from the `Authorization`
/// header or the body, already merged by [`client_credentials_from`].
#[derive(Debug, Default)]
pub struct TokenRequest {
    pub grant_type: String,
    pub code: Option<Secret<String>>,
    pub code_verifier: Option<Secret<String>>,
    pub redirect_uri: Option<String>,
    pub refresh_token: Option<Secret<String>>,
    pub scope: Option<String>,
    pub credentials: Option<ClientCredentials>,
    pub remote_address: Option<String>,
    pub user_agent: Option<String>,
}

pub(crate) fn invalid_request(description: &str) -> ServiceError {
    ServiceError::oauth(OAuthErrorCode::InvalidRequest, description)
}

pub(crate) fn invalid_grant(description: &str) -> ServiceError {
    ServiceError::oauth(OAuthErrorCode::InvalidGrant, description)
}

pub(crate) fn invalid_client(description: &str) -> ServiceError {
    ServiceError::oauth(OAuthErrorCode::InvalidClient, description)
}

/// Merges the `Authorization` header and the body's `client_id`/`client_secret`. Both may be
/// present (`@medplum/core` sends an empty `client_id=` beside a Basic header) but must then
/// name the same client.
pub fn client_credentials_from(
    authorization: Option<&str>,
    body_client_id: Option<&str>,
    body_client_secret: Option<Secret<String>>,
) -> ServiceResult<Option<ClientCredentials>> {
    let body_client_id = body_client_id.filter(|id| !id.is_empty());
    let from_header = match authorization {
        None => None,
        Some(value) if value.starts_with("Basic ") => {
            Some(parse_basic(value).ok_or_else(|| invalid_client("Invalid authorization header"))?)
        }
        Some(_) => return Err(invalid_request("Invalid authorization header")),
    };
    match (from_header, body_client_id) {
        (Some(header), Some(body_id)) if header.client_id != body_id => {
            Err(invalid_request("Invalid client"))
        }
        (Some(header), _) => Ok(Some(header)),
        (None, Some(body_id)) => Ok(Some(ClientCredentials {
            client_id: body_id.to_string(),
            client_secret: body_client_secret.filter(|secret| !secret.is_empty()),
        })),
        (None, None)
            if body_client_secret
                .as_ref()
                .is_some_and(|secret| !secret.is_empty()) =>
        {
            Err(invalid_request("Missing client_id"))
        }
        (None, None) => Ok(None),
    }
}

impl Services {
    /// Checks the IP access rules of the membership a grant issues tokens for. Every grant
    /// checks them, refresh and client credentials included, so a blocked address cannot
    /// keep a session alive or start one without signing in.
    pub(crate) async fn check_grant_ip(
        &self,
        membership: &ProjectMembership,
        remote_address: Option<&str>,
    ) -> ServiceResult<()> {
        if self.check_membership_ip(membership, remote_address).await? {
            Ok(())
        } else {
            tracing::warn!(membership_id = %membership.id, "token request from a blocked IP address");
            Err(invalid_grant("IP address not allowed"))
        }
    }

    /// `POST /oauth2/token`: runs the grant named by `grant_type`.
    #[instrument(skip_all, fields(grant_type = %request.grant_type))]
    pub async fn exchange_token(&self, request: TokenRequest) -> ServiceResult<TokenResponse> {
        match request.grant_type.as_str() {
            "" => Err(invalid_request("Missing grant_type")),
            "authorization_code" => self.authorization_code_grant(request).await,
            "refresh_token" => self.refresh_token_grant(request).await,
            "client_credentials" => self.client_credentials_grant(request).await,
            _ => Err(ServiceError::oauth(
                OAuthErrorCode::UnsupportedGrantType,
                "Unsupported grant_type",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn header_and_body_must_agree() {
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("a:s")
        );
        assert!(
            client_credentials_from(Some(&header), Some(""), None)
                .unwrap()
                .is_some()
        );
        assert!(client_credentials_from(Some(&header), Some("a"), None).is_ok());
        assert!(client_credentials_from(Some(&header), Some("b"), None).is_err());
    }

    #[test]
    fn bearer_header_is_rejected() {
        let error = client_credentials_from(Some("Bearer xyz"), None, None).unwrap_err();
        assert_eq!(error.to_string(), "Invalid authorization header");
    }
}
