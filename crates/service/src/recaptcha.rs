//! reCAPTCHA checks for the unauthenticated forms that create accounts or send email
//! (`/auth/newuser`, `/auth/resetpassword`). Medplum's rules choose the secret key: the
//! server's own site key uses the server's secret, and any other site key must belong to a
//! project's `site` entry that carries its secret. The token is verified with Google's
//! siteverify API (<https://developers.google.com/recaptcha/docs/verify>).

use std::sync::OnceLock;
use std::time::Duration;

use medgate_fhir::resources::Project;
use medgate_fhir::search::SearchRequest;
use serde::Deserialize;
use serde_json::Value;
use tracing::{instrument, warn};

use crate::Services;
use crate::error::{ServiceError, ServiceResult};
use crate::patient_registration::default_patient_access;
use crate::secret::Secret;

const INVALID_SITE_KEY: &str = "Invalid recaptchaSiteKey";

/// How long the siteverify call may take before the form fails with a 500.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// The form a token was sent with. Registration has one more rule for project site keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecaptchaPurpose {
    Registration,
    PasswordReset,
}

/// The reCAPTCHA fields of a form and where it came from.
#[derive(Debug, Clone, Copy)]
pub struct RecaptchaCheck<'a> {
    pub purpose: RecaptchaPurpose,
    pub site_key: Option<&'a str>,
    pub token: Option<&'a str>,
    /// The form's `projectId`; a project site key must then belong to this project.
    pub project_id: Option<&'a str>,
    pub remote_address: Option<&'a str>,
}

/// The part of Google's siteverify response medgate reads.
#[derive(Debug, Deserialize)]
struct SiteVerifyResponse {
    #[serde(default)]
    success: bool,
}

fn http_client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(VERIFY_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("the reCAPTCHA HTTP client builds with static settings")
    })
}

impl Services {
    /// Verifies the reCAPTCHA token of a form. Without a site key, or with the server's own,
    /// the check is skipped when the server has no secret key, as in Medplum.
    #[instrument(skip_all, fields(purpose = ?check.purpose))]
    pub async fn check_recaptcha(&self, check: RecaptchaCheck<'_>) -> ServiceResult<()> {
        let site_key = check.site_key.filter(|key| !key.is_empty());
        let server = &self.config.recaptcha;

        // secret key: the server's for its own site key, otherwise the project site's. An
        // unknown site key is rejected only when the server requires reCAPTCHA itself, unlike
        // Medplum, because `@medplum/core` apps send their configured site key even to a
        // server without reCAPTCHA, and nothing is required there anyway.
        let server_secret = server
            .secret_key
            .clone()
            .filter(|secret| !secret.is_empty());
        let secret = match site_key {
            None => server_secret,
            Some(key) if server.site_key.as_deref() == Some(key) => server_secret,
            Some(key) => match self.project_recaptcha_secret(key, &check).await {
                Err(ServiceError::Invalid { message, .. })
                    if message == INVALID_SITE_KEY && server_secret.is_none() =>
                {
                    None
                }
                other => Some(other?),
            },
        };
        let Some(secret) = secret.filter(|secret| !secret.is_empty()) else {
            return Ok(());
        };

        // token: required whenever a secret applies.
        let Some(token) = check.token.filter(|token| !token.is_empty()) else {
            return Err(ServiceError::invalid_field(
                "Recaptcha token is required",
                "recaptchaToken",
            ));
        };

        if !self
            .verify_recaptcha_token(&secret, token, check.remote_address)
            .await?
        {
            warn!("reCAPTCHA verification failed");
            return Err(ServiceError::invalid_field(
                "Recaptcha failed",
                "recaptchaToken",
            ));
        }
        Ok(())
    }

    /// Finds the secret key of a project site with this site key, with Medplum's messages.
    async fn project_recaptcha_secret(
        &self,
        site_key: &str,
        check: &RecaptchaCheck<'_>,
    ) -> ServiceResult<Secret<String>> {
        // project: one whose site has this key, and the form's project when it names one.
        let request = SearchRequest::new("Project")
            .filter("recaptcha-site-key", site_key)
            .count(20);
        let projects: Vec<Project> = self.repo.search(&request, None).await?;
        let project_id = check.project_id.filter(|id| !id.is_empty() && *id != "new");
        let project = projects
            .into_iter()
            .find(|project| project_id.is_none_or(|id| project.id == id))
            .ok_or_else(|| ServiceError::invalid_field(INVALID_SITE_KEY, "recaptchaSiteKey"))?;

        // site: the entry with this key must carry its secret.
        let secret = project
            .extra
            .get("site")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|site| site.get("recaptchaSiteKey").and_then(Value::as_str) == Some(site_key))
            .find_map(|site| site.get("recaptchaSecretKey").and_then(Value::as_str))
            .filter(|secret| !secret.is_empty())
            .ok_or_else(|| {
                ServiceError::invalid_field("Invalid recaptchaSecretKey", "recaptchaSiteKey")
            })?;

        // registration: a project's site key only signs patients up where the project
        // allows it.
        if check.purpose == RecaptchaPurpose::Registration
            && default_patient_access(&project).is_none()
        {
            return Err(ServiceError::invalid(
                "Project does not allow open registration",
            ));
        }
        Ok(Secret::new(secret.to_string()))
    }

    /// Asks the siteverify endpoint whether a token is valid. A failed call is the server's
    /// problem, not the caller's, so it is an internal error rather than `Recaptcha failed`.
    async fn verify_recaptcha_token(
        &self,
        secret: &Secret<String>,
        token: &str,
        remote_address: Option<&str>,
    ) -> ServiceResult<bool> {
        let mut form = vec![("secret", secret.expose().as_str()), ("response", token)];
        if let Some(address) = remote_address {
            form.push(("remoteip", address));
        }
        let response = http_client()
            .post(&self.config.recaptcha.verify_url)
            .form(&form)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|error| {
                ServiceError::Internal(format!("reCAPTCHA siteverify request failed: {error}"))
            })?;
        let body: SiteVerifyResponse = response.json().await.map_err(|error| {
            ServiceError::Internal(format!("reCAPTCHA siteverify response is invalid: {error}"))
        })?;
        Ok(body.success)
    }
}
