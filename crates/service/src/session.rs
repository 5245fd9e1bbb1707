//! Authenticating API requests with a bearer access token. The token's signature is checked
//! first, then its Login: a token stops working as soon as its Login is revoked or its
//! membership is deactivated, although JWTs themselves cannot be recalled.

use medgate_fhir::resources::{Login, Project, ProjectMembership};
use serde_json::Value;
use tracing::debug;

use crate::Services;
use crate::error::{ServiceError, ServiceResult};
use crate::keys::JwtError;
use crate::tokens::ACCESS_TOKEN_TYPE;

/// Who is calling: the Login behind the token and the membership it is bound to.
#[derive(Debug, Clone)]
pub struct AuthContext {
    pub login: Login,
    pub membership: ProjectMembership,
    pub project: Project,
    pub claims: Value,
}

impl AuthContext {
    pub fn project_id(&self) -> &str {
        &self.project.id
    }

    pub fn is_project_admin(&self) -> bool {
        self.membership.is_admin()
    }

    pub fn is_super_admin(&self) -> bool {
        self.project.is_super_admin()
    }
}

impl Services {
    /// Verifies a JWT issued by this server: signature, `typ`, issuer and validity window.
    /// A `kid` this process has not loaded yet may belong to a key another process just
    /// created, so the keys are reloaded once before giving up.
    pub async fn verify_own_token(
        &self,
        token: &str,
        expected_type: &str,
    ) -> Result<Value, JwtError> {
        let (header, claims) = match self.keys.verify(token) {
            Err(JwtError::UnknownKey) => {
                if let Err(error) = self.load_keys().await {
                    tracing::error!(%error, "reloading signing keys failed");
                }
                self.keys.verify(token)?
            }
            other => other?,
        };
        if header.get("typ").and_then(Value::as_str) != Some(expected_type) {
            return Err(JwtError::Malformed);
        }
        if claims.get("iss").and_then(Value::as_str) != Some(self.config.issuer.as_str()) {
            return Err(JwtError::Malformed);
        }
        let now = self.now().timestamp();
        let expires = claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or(JwtError::Malformed)?;
        if expires <= now {
            return Err(JwtError::Malformed);
        }
        // A small leeway for clock skew between server processes.
        if claims
            .get("nbf")
            .and_then(Value::as_i64)
            .is_some_and(|nbf| nbf > now + 60)
        {
            return Err(JwtError::Malformed);
        }
        Ok(claims)
    }

    /// Authenticates an access token and loads the caller's login, membership and project.
    pub async fn authenticate_bearer(&self, token: &str) -> ServiceResult<AuthContext> {
        let claims = self
            .verify_own_token(token, ACCESS_TOKEN_TYPE)
            .await
            .map_err(|error| {
                debug!(%error, "bearer token rejected");
                ServiceError::Unauthorized
            })?;
        let login_id = claims
            .get("login_id")
            .and_then(Value::as_str)
            .ok_or(ServiceError::Unauthorized)?;
        let login = self.active_login(login_id).await?;
        let membership_reference = login.membership.clone().ok_or(ServiceError::Unauthorized)?;
        let membership: ProjectMembership = self
            .repo
            .read_reference(&membership_reference)
            .await
            .map_err(|_| ServiceError::Unauthorized)?;
        if !membership.is_active() {
            return Err(ServiceError::Unauthorized);
        }
        let project: Project = self
            .repo
            .read_reference(&membership.project)
            .await
            .map_err(|_| ServiceError::Unauthorized)?;
        Ok(AuthContext {
            login,
            membership,
            project,
            claims,
        })
    }

    /// Reads a login that has not been revoked; anything else is `Unauthorized`.
    async fn active_login(&self, login_id: &str) -> ServiceResult<Login> {
        let login: Login = self
            .repo
            .read(login_id)
            .await
            .map_err(|error| match error {
                ServiceError::NotFound | ServiceError::Gone => ServiceError::Unauthorized,
                other => other,
            })?;
        if login.is_revoked() {
            return Err(ServiceError::Unauthorized);
        }
        Ok(login)
    }
}
