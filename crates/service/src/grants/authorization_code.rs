//! Authorization code grant (RFC 6749 §4.1.3) with PKCE (RFC 7636).
//!
//! Stricter than Medplum: a code expires after a few minutes, is bound to the redirect URI of
//! its authorization request, and can be redeemed once. A second redemption revokes the
//! login, and with it the tokens of the first (RFC 6749 §4.1.2). Redemption is a conditional
//! write on the login's version, so of several concurrent redemptions exactly one succeeds.

use medgate_fhir::resources::{ClientApplication, Login, Project, ProjectMembership};
use medgate_fhir::search::SearchRequest;
use tracing::{info, warn};

use super::{TokenRequest, invalid_grant, invalid_request};
use crate::Services;
use crate::error::{ServiceError, ServiceResult};
use crate::pkce;
use crate::random::{secret_hex, sha256_hex};
use crate::repo::WriteContext;
use crate::secret::Secret;
use crate::tokens::{Grant, TokenResponse, wants_refresh_token};

impl Services {
    pub(super) async fn authorization_code_grant(
        &self,
        request: TokenRequest,
    ) -> ServiceResult<TokenResponse> {
        // code: present and known.
        let Some(code) = request.code.as_ref().filter(|code| !code.is_empty()) else {
            return Err(invalid_request("Missing code"));
        };
        let code_hash = sha256_hex(code.expose());
        let search = SearchRequest::new("Login").filter("code-hash", &code_hash);
        let Some(mut login) = self.repo.search_one::<Login>(search).await? else {
            return Err(invalid_grant("Invalid code"));
        };

        // client: a presented client id must be the one the code was issued to.
        let presented_client_id = request
            .credentials
            .as_ref()
            .map(|credentials| credentials.client_id.as_str());
        let login_client_id = login.client.as_ref().and_then(|client| client.id());
        if presented_client_id.is_some() && presented_client_id != login_client_id {
            return Err(invalid_grant("Invalid client"));
        }

        // profile: the user must have finished choosing a membership.
        let Some(membership_reference) = login.membership.clone() else {
            return Err(invalid_grant("Invalid profile"));
        };

        // replay: a second redemption revokes everything issued from the first.
        if login.is_granted() {
            warn!(login_id = %login.id, "authorization code redeemed twice; revoking the login");
            self.revoke_login(login).await?;
            return Err(invalid_grant("Token already granted"));
        }
        if login.is_revoked() {
            return Err(invalid_grant("Token revoked"));
        }

        // expiry: codes are short-lived (RFC 6749 §4.1.2 recommends at most 10 minutes).
        if login
            .code_expires_at
            .is_none_or(|expires_at| expires_at < self.now().timestamp())
        {
            return Err(invalid_grant("Code expired"));
        }

        // redirect URI: must repeat the authorization request's value (RFC 6749 §4.1.3).
        if let Some(bound) = &login.redirect_uri
            && request.redirect_uri.as_deref() != Some(bound.as_str())
        {
            return Err(invalid_grant("Invalid redirect URI"));
        }

        // client authentication: optional, but a presented secret must be right.
        let client = match login_client_id {
            Some(client_id) => Some(self.find_client(client_id).await?),
            None => None,
        };
        let client_authenticated = match &request.credentials {
            Some(credentials) if credentials.has_secret() => {
                self.authenticate_client(credentials).await?;
                true
            }
            _ => false,
        };

        check_pkce(
            &login,
            client.as_ref(),
            client_authenticated,
            request.code_verifier.as_ref(),
        )?;

        let membership: ProjectMembership = self.repo.read_reference(&membership_reference).await?;
        if !membership.is_active() {
            return Err(invalid_grant("Profile not active"));
        }
        self.check_grant_ip(&membership, request.remote_address.as_deref())
            .await?;
        let project: Project = self.repo.read_reference(&membership.project).await?;

        // Super-admin sessions get no refresh tokens, so they end when the access token does.
        let refresh_secret = (wants_refresh_token(&login.scope) && !project.is_super_admin())
            .then(|| Secret::new(secret_hex(self.random(), 32)));

        login.granted = Some(true);
        login.client_authenticated = client_authenticated.then_some(true);
        login.refresh_secret_hash = refresh_secret
            .as_ref()
            .map(|secret| sha256_hex(secret.expose()));
        let login = match self.repo.update(&login, &WriteContext::system(None)).await {
            Ok(login) => login,
            Err(ServiceError::PreconditionFailed) => {
                return self.lost_redemption_race(&login.id).await;
            }
            Err(error) => return Err(error),
        };
        info!(login_id = %login.id, "authorization code redeemed");

        self.issue_tokens(Grant {
            login: &login,
            membership: &membership,
            client: client.as_ref(),
            refresh_secret: refresh_secret.as_ref(),
        })
        .await
    }

    /// Another request changed the login between our read and our write. If it redeemed the
    /// code, this is a replay and the login is revoked; otherwise the code is simply stale.
    async fn lost_redemption_race(&self, login_id: &str) -> ServiceResult<TokenResponse> {
        let current: Login = self.repo.read(login_id).await?;
        if current.is_granted() {
            warn!(
                login_id,
                "concurrent redemption of one authorization code; revoking the login"
            );
            self.revoke_login(current).await?;
            return Err(invalid_grant("Token already granted"));
        }
        Err(invalid_grant("Invalid code"))
    }
}

/// PKCE at redemption (RFC 7636 §4.6). A challenge needs a matching verifier, a verifier needs
/// a challenge, and without either only a `pkceOptional` client that authenticated (or has no
/// secret at all) may redeem the code.
fn check_pkce(
    login: &Login,
    client: Option<&ClientApplication>,
    client_authenticated: bool,
    verifier: Option<&Secret<String>>,
) -> ServiceResult<()> {
    let verifier = verifier.filter(|verifier| !verifier.is_empty());
    match (login.code_challenge.as_deref(), verifier) {
        (Some(_), None) => Err(invalid_request("Missing code verifier")),
        (Some(challenge), Some(verifier)) => {
            if !pkce::is_well_formed(verifier.expose()) {
                return Err(invalid_request("Invalid code verifier"));
            }
            let method = login
                .code_challenge_method
                .as_deref()
                .and_then(pkce::Method::parse)
                .ok_or_else(|| invalid_grant("Invalid code verifier"))?;
            if !pkce::verify(method, challenge, verifier.expose()) {
                return Err(invalid_grant("Invalid code verifier"));
            }
            Ok(())
        }
        (None, Some(_)) => Err(invalid_grant("Invalid code verifier")),
        (None, None) => {
            let optional = client.is_some_and(|client| {
                client.pkce_optional == Some(true)
                    && (client_authenticated || !client.is_confidential())
            });
            if optional {
                Ok(())
            } else {
                Err(invalid_request("Missing verification context"))
            }
        }
    }
}
