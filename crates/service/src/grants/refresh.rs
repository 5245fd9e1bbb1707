//! Refresh token grant (RFC 6749 §6) with rotation and reuse detection (RFC 9700 §4.14.2).
//!
//! Each use rotates the secret. The new secret is SHA-256 of a random salt (stored on the
//! login) and the old secret, so a request that still has the previous secret can derive
//! the current one within a short grace period: concurrent refreshes by one client all get
//! the same new secret, and only one rotation happens. After the grace period, the previous
//! secret is a replay and revokes the whole login.

use medgate_fhir::resources::{ClientApplication, Login, ProjectMembership};
use serde_json::Value;
use tracing::{info, warn};

use super::{TokenRequest, invalid_client, invalid_grant, invalid_request};
use crate::Services;
use crate::error::{ServiceError, ServiceResult};
use crate::random::{secret_hex, sha256_hex};
use crate::repo::WriteContext;
use crate::secret::Secret;
use crate::tokens::{Grant, REFRESH_TOKEN_TYPE, TokenResponse};

/// How many times a rotation is retried when concurrent refreshes change the login.
const MAX_ATTEMPTS: usize = 5;

fn derive_secret(salt: &str, previous: &str) -> String {
    sha256_hex(&format!("{salt}:{previous}"))
}

impl Services {
    pub(super) async fn refresh_token_grant(
        &self,
        request: TokenRequest,
    ) -> ServiceResult<TokenResponse> {
        // token: a refresh token signed by this server, not an access or ID token.
        let Some(token) = request
            .refresh_token
            .as_ref()
            .filter(|token| !token.is_empty())
        else {
            return Err(invalid_request("Invalid refresh token"));
        };
        let claims = self
            .verify_own_token(token.expose(), REFRESH_TOKEN_TYPE)
            .await
            .map_err(|_| invalid_grant("Invalid refresh token"))?;
        let (Some(login_id), Some(presented_secret)) = (
            claims.get("login_id").and_then(Value::as_str),
            claims.get("refresh_secret").and_then(Value::as_str),
        ) else {
            return Err(invalid_grant("Invalid refresh token"));
        };
        let presented_hash = sha256_hex(presented_secret);

        for _ in 0..MAX_ATTEMPTS {
            let mut login: Login = self
                .repo
                .read(login_id)
                .await
                .map_err(|_| invalid_grant("Invalid refresh token"))?;
            if login.is_revoked() {
                return Err(invalid_grant("Token revoked"));
            }
            let client = self.check_refresh_client(&login, &request).await?;

            let current_secret = if login.refresh_secret_hash.as_deref()
                == Some(presented_hash.as_str())
            {
                // rotate: the presented secret is current.
                let salt = secret_hex(self.random(), 16);
                let next = derive_secret(&salt, presented_secret);
                login.previous_refresh_secret_hash = Some(presented_hash.clone());
                login.refresh_secret_hash = Some(sha256_hex(&next));
                login.refresh_secret_rotated_at = Some(self.now().timestamp());
                login.refresh_rotation_salt = Some(salt);
                login.remote_address = request.remote_address.clone().or(login.remote_address);
                login.user_agent = request.user_agent.clone().or(login.user_agent);
                match self.repo.update(&login, &WriteContext::system(None)).await {
                    Ok(updated) => login = updated,
                    // Another refresh rotated first; look again, this time as the previous secret.
                    Err(ServiceError::PreconditionFailed) => continue,
                    Err(error) => return Err(error),
                }
                info!(login_id, "refresh token rotated");
                next
            } else if login.previous_refresh_secret_hash.as_deref() == Some(presented_hash.as_str())
            {
                let rotated_at = login.refresh_secret_rotated_at.unwrap_or_default();
                let within_grace =
                    self.now().timestamp() - rotated_at <= self.config.refresh_grace.num_seconds();
                let derived = login
                    .refresh_rotation_salt
                    .as_deref()
                    .map(|salt| derive_secret(salt, presented_secret))
                    .filter(|derived| {
                        login.refresh_secret_hash.as_deref() == Some(sha256_hex(derived).as_str())
                    });
                match (within_grace, derived) {
                    // grace: a concurrent or retried refresh gets the pair already rotated to.
                    (true, Some(derived)) => derived,
                    _ => {
                        warn!(
                            login_id,
                            "rotated refresh token replayed; revoking the login"
                        );
                        self.revoke_login(login).await?;
                        return Err(invalid_grant("Token revoked"));
                    }
                }
            } else {
                return Err(invalid_grant("Invalid token"));
            };

            let membership_reference = login
                .membership
                .clone()
                .ok_or_else(|| invalid_grant("Invalid refresh token"))?;
            let membership: ProjectMembership =
                self.repo.read_reference(&membership_reference).await?;
            if !membership.is_active() {
                return Err(invalid_grant("Profile not active"));
            }
            self.check_grant_ip(&membership, request.remote_address.as_deref())
                .await?;
            let secret = Secret::new(current_secret);
            return self
                .issue_tokens(Grant {
                    login: &login,
                    membership: &membership,
                    client: client.as_ref(),
                    refresh_secret: Some(&secret),
                })
                .await;
        }
        Err(ServiceError::Internal(format!(
            "refresh of login {login_id} kept conflicting with concurrent refreshes"
        )))
    }

    /// Client checks at refresh: a presented client must be the login's, a presented secret
    /// must be right, and a client that authenticated when redeeming the code must
    /// authenticate again (RFC 6749 §6).
    async fn check_refresh_client(
        &self,
        login: &Login,
        request: &TokenRequest,
    ) -> ServiceResult<Option<ClientApplication>> {
        let login_client_id = login.client.as_ref().and_then(|client| client.id());
        if let Some(credentials) = &request.credentials {
            if Some(credentials.client_id.as_str()) != login_client_id {
                return Err(invalid_grant("Incorrect client"));
            }
            if credentials.has_secret() {
                return self.authenticate_client(credentials).await.map(Some);
            }
        }
        if login.client_authenticated == Some(true) {
            return Err(invalid_client("Invalid client"));
        }
        match login_client_id {
            Some(client_id) => self.find_client(client_id).await.map(Some),
            None => Ok(None),
        }
    }
}
