//! The authorization endpoint (RFC 6749 §4.1.1) behind medgate's own sign-in page.
//!
//! The client and redirect URI are checked first. Until both are known to be registered
//! together, no error may redirect (RFC 6749 §4.1.2.1): the page shows it instead. Later
//! errors go back to the client as `error` parameters on its redirect URI.

use medgate_fhir::resources::{ClientApplication, Login};
use tracing::{info, instrument};

use crate::Services;
use crate::error::{ServiceError, ServiceResult};
use crate::login::LoginResponse;
use crate::pkce;
use crate::random::{secret_hex, sha256_hex};
use crate::repo::WriteContext;
use crate::secret::Secret;

/// The parameters of an authorization request, as received.
#[derive(Debug, Clone, Default)]
pub struct AuthorizeRequest {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub prompt: Option<String>,
    pub aud: Option<String>,
    pub request: Option<String>,
    pub launch: Option<String>,
    pub login_hint: Option<String>,
}

/// A request whose every parameter checked out.
#[derive(Debug, Clone)]
pub struct ValidAuthorizeRequest {
    pub client: ClientApplication,
    pub redirect_uri: String,
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub login_hint: Option<String>,
}

#[derive(Debug)]
pub enum AuthorizeError {
    /// The client or redirect URI is not trustworthy: show an error page, never redirect.
    Page(String),
    /// Send the error to the client's registered redirect URI (RFC 6749 §4.1.2.1).
    Redirect {
        redirect_uri: String,
        error: &'static str,
        description: String,
        state: Option<String>,
    },
}

fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|text| !text.is_empty())
}

/// Appends query parameters to a redirect URI, keeping the query it already has.
pub fn redirect_with(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    let mut url = match url::Url::parse(redirect_uri) {
        Ok(url) => url,
        Err(_) => return redirect_uri.to_string(),
    };
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in params {
            query.append_pair(name, value);
        }
    }
    url.to_string()
}

impl Services {
    /// Checks an authorization request in RFC 6749's order: client, redirect URI, then the rest.
    #[instrument(skip_all, fields(client_id = request.client_id.as_deref().unwrap_or_default()))]
    pub async fn validate_authorize(
        &self,
        request: &AuthorizeRequest,
    ) -> Result<ValidAuthorizeRequest, AuthorizeError> {
        // client: must exist.
        let client_id = present(&request.client_id)
            .ok_or_else(|| AuthorizeError::Page("Client not found".to_string()))?;
        let client = match self.find_client(client_id).await {
            Ok(client) => client,
            Err(ServiceError::OAuth { .. }) => {
                return Err(AuthorizeError::Page("Client not found".to_string()));
            }
            Err(error) => return Err(AuthorizeError::Page(internal_page_message(&error))),
        };

        // redirect URI: an absolute URL that equals a registered one character for character.
        // No normalisation, so `/cb/`, `/CB`, `:8443` or `https:host/cb` never match `https://host/cb`.
        let redirect_uri = present(&request.redirect_uri)
            .ok_or_else(|| AuthorizeError::Page("Missing redirect URI".to_string()))?;
        if url::Url::parse(redirect_uri).is_err()
            || !client
                .registered_redirect_uris()
                .any(|registered| registered == redirect_uri)
        {
            return Err(AuthorizeError::Page("Invalid redirect URI".to_string()));
        }
        let redirect = |error: &'static str, description: &str| AuthorizeError::Redirect {
            redirect_uri: redirect_uri.to_string(),
            error,
            description: description.to_string(),
            state: request.state.clone(),
        };

        // client status: a switched-off client may not start sign-ins.
        if !client.is_active() {
            return Err(redirect("unauthorized_client", "Client is not active"));
        }

        // response type: only the authorization code flow.
        if request.response_type.as_deref() != Some("code") {
            return Err(redirect(
                "unsupported_response_type",
                "Invalid response type",
            ));
        }

        // request objects (OpenID Connect Core §6) are not supported.
        if present(&request.request).is_some() {
            return Err(redirect(
                "request_not_supported",
                "Unsupported request parameter",
            ));
        }

        // scope: the client's default when absent.
        let scope = match present(&request.scope) {
            Some(scope) => scope.to_string(),
            None if !client.default_scope.is_empty() => client.default_scope.join(" "),
            None => return Err(redirect("invalid_request", "Missing scope")),
        };

        // audience: SMART's `aud` must name this server (scheme, host and port).
        if let Some(aud) = present(&request.aud)
            && !self.is_own_origin(aud)
        {
            return Err(redirect("invalid_request", "Invalid audience"));
        }

        // launch contexts are not supported yet.
        if present(&request.launch).is_some() {
            return Err(redirect("invalid_request", "Invalid launch"));
        }

        self.check_authorize_pkce(&client, request)
            .map_err(|description| redirect("invalid_request", description))?;

        // TODO: single sign-on sessions, so `prompt=none` can succeed — until then every
        // silent request gets the error the specification requires when no session exists —
        // OpenID Connect Core §3.1.2.6.
        if request.prompt.as_deref() == Some("none") {
            return Err(redirect("login_required", "Login required"));
        }

        Ok(ValidAuthorizeRequest {
            client,
            redirect_uri: redirect_uri.to_string(),
            scope,
            state: request.state.clone(),
            nonce: present(&request.nonce).map(str::to_string),
            code_challenge: present(&request.code_challenge).map(str::to_string),
            code_challenge_method: present(&request.code_challenge_method).map(str::to_string),
            login_hint: present(&request.login_hint).map(str::to_string),
        })
    }

    fn is_own_origin(&self, aud: &str) -> bool {
        let (Ok(aud), Ok(base)) = (url::Url::parse(aud), url::Url::parse(&self.config.base_url))
        else {
            return false;
        };
        aud.scheme() == base.scheme()
            && aud.host_str() == base.host_str()
            && aud.port_or_known_default() == base.port_or_known_default()
    }

    /// PKCE on authorization requests: required unless the client is `pkceOptional`, with a
    /// known method and RFC 7636's challenge shape.
    fn check_authorize_pkce(
        &self,
        client: &ClientApplication,
        request: &AuthorizeRequest,
    ) -> Result<(), &'static str> {
        let challenge = present(&request.code_challenge);
        let method = present(&request.code_challenge_method);
        let Some(challenge) = challenge else {
            if method.is_some() {
                return Err("Invalid code challenge");
            }
            if client.pkce_optional == Some(true) {
                return Ok(());
            }
            return Err("Missing code challenge");
        };
        let method = method.ok_or("Missing code challenge method")?;
        let method = pkce::Method::parse(method).ok_or("Invalid code challenge method")?;
        if method == pkce::Method::Plain && self.config.require_pkce_s256 {
            return Err("Invalid code challenge method");
        }
        if !pkce::is_well_formed(challenge) {
            return Err("Invalid code challenge");
        }
        Ok(())
    }

    /// Ties a partial login to the browser that started it: the returned secret goes into a
    /// cookie, and only a request carrying it may choose the profile.
    pub async fn bind_login_to_browser(&self, login_id: &str) -> ServiceResult<Secret<String>> {
        let mut login: Login = self.read_login(login_id).await?;
        let secret = Secret::new(secret_hex(self.random(), 32));
        login.cookie_hash = Some(sha256_hex(secret.expose()));
        self.repo
            .update(&login, &WriteContext::system(None))
            .await?;
        Ok(secret)
    }

    /// The profile choice of the sign-in page; the browser must present the login's cookie.
    pub async fn choose_profile_in_browser(
        &self,
        request: &ValidAuthorizeRequest,
        login_id: &str,
        membership_id: &str,
        browser_secret: Option<&Secret<String>>,
    ) -> ServiceResult<Secret<String>> {
        let login = self.read_login(login_id).await?;
        check_browser_login(request, &login, browser_secret)?;
        let completed = self.set_membership(login, membership_id).await?;
        info!(login_id, "profile chosen on the sign-in page");
        Ok(completed.code)
    }

    /// Verifies the MFA code of the sign-in page, or with `enroll` enrolls TOTP with it, for
    /// the login this browser started. Returns the next step of the login.
    pub async fn verify_mfa_in_browser(
        &self,
        request: &ValidAuthorizeRequest,
        login_id: &str,
        token: &str,
        enroll: bool,
        browser_secret: Option<&Secret<String>>,
    ) -> ServiceResult<LoginResponse> {
        let login = self.read_login(login_id).await?;
        check_browser_login(request, &login, browser_secret)?;
        if enroll {
            self.login_enroll(login_id, None, Some(token)).await
        } else {
            self.verify_mfa(login_id, token).await
        }
    }
}

/// Checks that a partial login belongs to this authorization request (same client and
/// redirect URI) and to this browser (the cookie set when the password was entered).
fn check_browser_login(
    request: &ValidAuthorizeRequest,
    login: &Login,
    browser_secret: Option<&Secret<String>>,
) -> ServiceResult<()> {
    let same_client =
        login.client.as_ref().and_then(|client| client.id()) == Some(request.client.id.as_str());
    if !same_client || login.redirect_uri.as_deref() != Some(request.redirect_uri.as_str()) {
        return Err(ServiceError::invalid(
            "This sign-in belongs to another application; please sign in again",
        ));
    }

    let bound = match (&login.cookie_hash, browser_secret) {
        (Some(hash), Some(secret)) => aws_lc_rs::constant_time::verify_slices_are_equal(
            hash.as_bytes(),
            sha256_hex(secret.expose()).as_bytes(),
        )
        .is_ok(),
        _ => false,
    };
    if !bound {
        return Err(ServiceError::invalid(
            "This sign-in was started in another browser; please sign in again",
        ));
    }
    Ok(())
}

fn internal_page_message(error: &ServiceError) -> String {
    tracing::error!(%error, "loading the client of an authorization request failed");
    "The sign-in could not be started; please try again later".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_keeps_existing_query() {
        let url = redirect_with(
            "https://app.example.com/cb?x=1",
            &[("code", "abc"), ("state", "s t")],
        );
        assert_eq!(url, "https://app.example.com/cb?x=1&code=abc&state=s+t");
    }
}
