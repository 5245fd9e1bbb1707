//! Issuing the token set for a completed login: access, ID and (for offline scopes) refresh
//! tokens, with Medplum's claims and lifetimes.
//!
//! The three tokens carry different `typ` headers (`at+jwt` from RFC 9068 for access tokens,
//! `refresh+jwt` and `JWT` for ID tokens) and each verifier accepts only its own type, so a
//! refresh or ID token can never be used as a bearer token.

use chrono::Duration;
use medgate_fhir::Reference;
use medgate_fhir::resources::{ClientApplication, Login, Project, ProjectMembership, User};
use serde::Serialize;
use serde_json::{Value, json};

use crate::Services;
use crate::error::{ServiceError, ServiceResult};
use crate::random::uuid_v4;
use crate::secret::Secret;

pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";
pub const REFRESH_TOKEN_TYPE: &str = "refresh+jwt";
pub const ID_TOKEN_TYPE: &str = "JWT";

/// The token endpoint's success body (RFC 6749 §5.1 plus Medplum's and SMART's fields).
#[derive(Debug, Clone, Serialize)]
pub struct TokenResponse {
    pub token_type: &'static str,
    pub expires_in: i64,
    pub scope: String,
    pub id_token: String,
    pub access_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub project: Reference,
    pub profile: Reference,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub need_patient_banner: bool,
    pub smart_style_url: String,
}

/// Parses Medplum's token lifetime strings: digits followed by one of `s m h d w y`.
pub fn parse_lifetime(text: &str) -> Option<Duration> {
    let unit = text.chars().last()?;
    let amount: i64 = text[..text.len() - unit.len_utf8()].parse().ok()?;
    if amount <= 0
        || !text[..text.len() - 1]
            .bytes()
            .all(|byte| byte.is_ascii_digit())
    {
        return None;
    }
    let seconds = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        'w' => 604_800,
        'y' => 31_536_000,
        _ => return None,
    };
    amount.checked_mul(seconds).map(Duration::seconds)
}

pub fn has_scope(scope: &str, wanted: &str) -> bool {
    scope.split_whitespace().any(|item| item == wanted)
}

/// Refresh tokens are issued only for offline access (OpenID Connect Core §11).
pub fn wants_refresh_token(scope: &str) -> bool {
    has_scope(scope, "offline") || has_scope(scope, "offline_access")
}

/// Builds the scope of a new login, `openid` by default. Medplum's `remember` grants a
/// refresh token, which medgate expresses as the `offline_access` scope (OpenID Connect Core
/// §11).
pub fn sign_in_scope(scope: Option<&str>, remember: bool) -> String {
    let mut scope = scope
        .map(|scope| scope.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|scope| !scope.is_empty())
        .unwrap_or_else(|| "openid".to_string());
    if remember && !wants_refresh_token(&scope) {
        scope.push_str(" offline_access");
    }
    scope
}

/// The inputs of a new token set.
pub struct Grant<'a> {
    pub login: &'a Login,
    pub membership: &'a ProjectMembership,
    pub client: Option<&'a ClientApplication>,
    /// The clear refresh secret to embed, when the login has offline access.
    pub refresh_secret: Option<&'a Secret<String>>,
}

impl Services {
    /// Signs a token set for a login bound to a membership.
    pub async fn issue_tokens(&self, grant: Grant<'_>) -> ServiceResult<TokenResponse> {
        let Grant {
            login,
            membership,
            client,
            refresh_secret,
        } = grant;
        let now = self.now();
        let issued_at = now.timestamp();
        let client_id = client.map(|client| client.id.clone());

        let access_lifetime = client
            .and_then(|client| client.access_token_lifetime.as_deref())
            .and_then(parse_lifetime)
            .unwrap_or(self.config.default_access_token_lifetime);
        let refresh_lifetime = client
            .and_then(|client| client.refresh_token_lifetime.as_deref())
            .and_then(parse_lifetime)
            .unwrap_or(self.config.default_refresh_token_lifetime);

        let user_id = login
            .user
            .id()
            .ok_or_else(|| ServiceError::Internal(format!("login {} has no user id", login.id)))?;
        let profile = membership.profile.reference.clone();

        let mut access = json!({
            "iss": self.config.issuer,
            "aud": self.config.issuer,
            "sub": user_id,
            "username": user_id,
            "scope": login.scope,
            "profile": profile,
            "login_id": login.id,
            "iat": issued_at,
            "nbf": issued_at,
            "exp": issued_at + access_lifetime.num_seconds(),
            "jti": uuid_v4(self.random()),
        });
        if let Some(client_id) = &client_id {
            access["client_id"] = Value::String(client_id.clone());
        }

        let mut id_token = json!({
            "iss": self.config.issuer,
            "aud": client_id.clone().unwrap_or_else(|| self.config.issuer.clone()),
            "sub": user_id,
            "fhirUser": profile,
            "login_id": login.id,
            "auth_time": chrono::DateTime::parse_from_rfc3339(&login.auth_time)
                .map(|time| time.timestamp())
                .unwrap_or(issued_at),
            "iat": issued_at,
            "exp": issued_at + self.config.default_access_token_lifetime.num_seconds(),
            "jti": uuid_v4(self.random()),
        });
        if let Some(client_id) = &client_id {
            id_token["client_id"] = Value::String(client_id.clone());
        }
        if let Some(nonce) = &login.nonce {
            id_token["nonce"] = Value::String(nonce.clone());
        }
        if has_scope(&login.scope, "email")
            && login.user.resource_type() == Some("User")
            && let Ok(user) = self.repo.read::<User>(user_id).await
            && let Some(email) = user.email
        {
            id_token["email"] = Value::String(email);
        }

        let refresh_token = match refresh_secret {
            Some(secret) => {
                let mut claims = json!({
                    "iss": self.config.issuer,
                    "aud": self.config.issuer,
                    "login_id": login.id,
                    "refresh_secret": secret.expose(),
                    "iat": issued_at,
                    "exp": issued_at + refresh_lifetime.num_seconds(),
                    "jti": uuid_v4(self.random()),
                });
                if let Some(client_id) = &client_id {
                    claims["client_id"] = Value::String(client_id.clone());
                }
                Some(self.keys.sign(REFRESH_TOKEN_TYPE, &claims)?)
            }
            None => None,
        };

        let project = self.project_reference(&membership.project).await;
        let patient = match membership.profile.parts() {
            Some(("Patient", id)) => Some(id.to_string()),
            _ => None,
        };
        Ok(TokenResponse {
            token_type: "Bearer",
            expires_in: access_lifetime.num_seconds(),
            scope: login.scope.clone(),
            id_token: self.keys.sign(ID_TOKEN_TYPE, &id_token)?,
            access_token: self.keys.sign(ACCESS_TOKEN_TYPE, &access)?,
            refresh_token,
            project,
            profile: membership.profile.clone(),
            need_patient_banner: patient.is_some(),
            patient,
            smart_style_url: self.config.url("fhir/R4/.well-known/smart-styles.json"),
        })
    }

    /// Returns the project reference with its name as `display`, which `@medplum/core` 5 reads.
    async fn project_reference(&self, reference: &Reference) -> Reference {
        match self.repo.read_reference::<Project>(reference).await {
            Ok(project) => match project.name {
                Some(name) => reference.clone().with_display(name),
                None => reference.clone(),
            },
            Err(_) => reference.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_parse() {
        assert_eq!(parse_lifetime("60s"), Some(Duration::seconds(60)));
        assert_eq!(parse_lifetime("1h"), Some(Duration::hours(1)));
        assert_eq!(parse_lifetime("2w"), Some(Duration::weeks(2)));
        for bad in ["300", "medplum", "", "h", "-1h", "1.5h", "0s"] {
            assert_eq!(parse_lifetime(bad), None, "{bad}");
        }
    }

    #[test]
    fn offline_scopes_get_refresh_tokens() {
        assert!(wants_refresh_token("openid offline"));
        assert!(wants_refresh_token("openid offline_access"));
        assert!(!wants_refresh_token("openid offline_accessx"));
    }
}
