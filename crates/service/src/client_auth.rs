//! Client authentication at the token endpoint: `client_secret_basic` and
//! `client_secret_post` (RFC 6749 §2.3.1). Secrets are stored as SHA-256 hashes: they are
//! 256-bit random values, so a fast hash is enough and no salt is needed.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use medgate_fhir::resources::ClientApplication;

use crate::Services;
use crate::error::{OAuthErrorCode, ServiceError, ServiceResult};
use crate::random::{is_uuid, sha256_hex};
use crate::secret::Secret;

/// Credentials as the client presented them.
#[derive(Debug, Clone, Default)]
pub struct ClientCredentials {
    pub client_id: String,
    pub client_secret: Option<Secret<String>>,
}

impl ClientCredentials {
    pub fn has_secret(&self) -> bool {
        self.client_secret
            .as_ref()
            .is_some_and(|secret| !secret.is_empty())
    }
}

/// Decodes the value of an `Authorization: Basic …` header. Both parts are form-decoded as
/// RFC 6749 §2.3.1 requires (openid-client sends `-` in a UUID as `%2D`).
pub fn parse_basic(header: &str) -> Option<ClientCredentials> {
    let encoded = header.strip_prefix("Basic ")?.trim();
    let decoded = String::from_utf8(STANDARD.decode(encoded).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let decode = |part: &str| -> Option<String> {
        let plus_as_space = part.replace('+', " ");
        url::form_urlencoded::parse(format!("x={plus_as_space}").as_bytes())
            .next()
            .map(|(_, value)| value.into_owned())
    };
    Some(ClientCredentials {
        client_id: decode(id)?,
        client_secret: Some(Secret::new(decode(secret)?)),
    })
}

/// Compares a presented secret with both stored hashes. Both comparisons always run, in
/// constant time, so the answer time does not tell which one matched.
pub fn secret_matches(client: &ClientApplication, secret: &Secret<String>) -> bool {
    let presented = sha256_hex(secret.expose());
    let matches = |stored: &Option<String>| {
        stored.as_deref().is_some_and(|stored| {
            aws_lc_rs::constant_time::verify_slices_are_equal(
                stored.as_bytes(),
                presented.as_bytes(),
            )
            .is_ok()
        })
    };
    let current = matches(&client.secret_hash);
    let retiring = matches(&client.retiring_secret_hash);
    current | retiring
}

fn invalid_client(description: &str) -> ServiceError {
    ServiceError::oauth(OAuthErrorCode::InvalidClient, description)
}

impl Services {
    /// Loads a client by id; any failure is `invalid_client` with Medplum's `Invalid client`.
    pub async fn find_client(&self, client_id: &str) -> ServiceResult<ClientApplication> {
        if !is_uuid(client_id) {
            return Err(invalid_client("Invalid client"));
        }
        match self.repo.read::<ClientApplication>(client_id).await {
            Ok(client) => Ok(client),
            Err(ServiceError::NotFound | ServiceError::Gone) => {
                Err(invalid_client("Invalid client"))
            }
            Err(other) => Err(other),
        }
    }

    /// Authenticates a client with its secret: the client must exist, be active, have a
    /// secret, and the presented secret must match the current or the retiring one.
    pub async fn authenticate_client(
        &self,
        credentials: &ClientCredentials,
    ) -> ServiceResult<ClientApplication> {
        let client = self.find_client(&credentials.client_id).await?;

        // status: absent or `active` may sign in; `off` and anything else may not.
        if !client.is_active() {
            return Err(invalid_client("Invalid client"));
        }

        // a client without a secret cannot authenticate with one.
        if client.secret_hash.is_none() {
            return Err(invalid_client("Invalid client"));
        }

        let Some(secret) = credentials
            .client_secret
            .as_ref()
            .filter(|secret| !secret.is_empty())
        else {
            return Err(invalid_client("Missing client_secret"));
        };
        if !secret_matches(&client, secret) {
            tracing::warn!(client_id = %client.id, "client secret did not match");
            return Err(invalid_client("Invalid secret"));
        }
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_is_form_decoded() {
        let header = format!("Basic {}", STANDARD.encode("abc%2Ddef:s%3Acret+x"));
        let credentials = parse_basic(&header).unwrap();
        assert_eq!(credentials.client_id, "abc-def");
        assert_eq!(credentials.client_secret.unwrap().expose(), "s:cret x");
    }

    #[test]
    fn basic_rejects_other_schemes_and_garbage() {
        assert!(parse_basic("Bearer xyz").is_none());
        assert!(parse_basic("Basic !!!").is_none());
        assert!(parse_basic(&format!("Basic {}", STANDARD.encode("no-colon"))).is_none());
    }

    #[test]
    fn retiring_secret_matches() {
        let client = ClientApplication {
            secret_hash: Some(sha256_hex("new")),
            retiring_secret_hash: Some(sha256_hex("old")),
            ..Default::default()
        };
        assert!(secret_matches(&client, &Secret::from("new")));
        assert!(secret_matches(&client, &Secret::from("old")));
        assert!(!secret_matches(&client, &Secret::from("other")));
    }
}
