//! Settings the services need, already resolved from flags, environment and file.

use chrono::Duration;
use medgate_store::LockoutPolicy;

use crate::access::IpNet;
use crate::email::config::EmailConfig;
use crate::secret::Secret;

/// Requests per client address per minute on `/auth/*` and `/oauth2/*` unless configured.
pub const DEFAULT_AUTH_RATE_LIMIT: u32 = 160;

#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Public base URL with a trailing slash, e.g. `http://localhost:8103/`.
    pub base_url: String,
    /// The `iss` of every token; Medplum uses the base URL.
    pub issuer: String,
    /// Refuse PKCE `plain` everywhere. Off by default because `@medplum/core` under Node.js
    /// cannot compute S256 and falls back to `plain`.
    pub require_pkce_s256: bool,
    /// How long an authorization code can be redeemed (RFC 6749 §4.1.2 recommends ≤ 10 min).
    pub code_lifetime: Duration,
    /// Refreshes with the previous refresh secret inside this window get the current pair
    /// instead of revoking the login, so concurrent refreshes by one client do not log it out.
    pub refresh_grace: Duration,
    pub default_access_token_lifetime: Duration,
    pub default_refresh_token_lifetime: Duration,
    /// Concurrent password hashing jobs; hashing is CPU-bound, so about one per core.
    pub password_hash_workers: usize,
    /// Reverse proxies whose `X-Forwarded-For` header names the client address; a request
    /// from any other peer is attributed to the peer itself.
    pub trusted_proxies: Vec<IpNet>,
    /// Outgoing email and the outbox sender.
    pub email: EmailConfig,
    /// TOTP steps of 30 s accepted on each side of the current one for clock drift
    /// (Medplum's `mfaAuthenticatorWindow`, default 1).
    pub mfa_authenticator_window: u32,
    /// MFA codes a login may submit; further attempts get 429 and the user signs in again.
    pub mfa_max_attempts: u32,
    /// How long after the password step a login may still complete MFA.
    pub mfa_login_lifetime: Duration,
    /// How long an emailed MFA code is valid (Medplum: 20 minutes).
    pub mfa_email_code_lifetime: Duration,
    /// Base URL of the web app that hosts the set-password page, with a trailing slash. The
    /// links in emails point there (Medplum's `appBaseUrl`).
    pub app_base_url: String,
    /// `false` refuses `POST /auth/newuser` (Medplum's `registerEnabled`).
    pub register_enabled: bool,
    /// reCAPTCHA checks for registration and password reset. Without a secret key the server's
    /// own site key needs no check, as in Medplum, but project site keys are always checked.
    pub recaptcha: RecaptchaConfig,
    /// Failed password and MFA attempts per account before it is locked, and the lock lengths.
    pub lockout: LockoutPolicy,
    /// Requests per client address per minute on `/auth/*` and `/oauth2/*` (Medplum's
    /// `defaultAuthRateLimit`), or `None` for no limit.
    pub auth_rate_limit: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct RecaptchaConfig {
    pub site_key: Option<String>,
    pub secret_key: Option<Secret<String>>,
    /// Google's siteverify endpoint by default; tests point it at a local verifier.
    pub verify_url: String,
}

impl Default for RecaptchaConfig {
    fn default() -> Self {
        Self {
            site_key: None,
            secret_key: None,
            verify_url: "https://www.google.com/recaptcha/api/siteverify".to_string(),
        }
    }
}

impl ServiceConfig {
    pub fn new(base_url: &str) -> Self {
        let base_url = if base_url.ends_with('/') {
            base_url.to_string()
        } else {
            format!("{base_url}/")
        };
        Self {
            issuer: base_url.clone(),
            base_url: base_url.clone(),
            require_pkce_s256: false,
            code_lifetime: Duration::minutes(5),
            refresh_grace: Duration::seconds(10),
            default_access_token_lifetime: Duration::hours(1),
            default_refresh_token_lifetime: Duration::weeks(2),
            password_hash_workers: std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(2),
            trusted_proxies: Vec::new(),
            email: EmailConfig::default(),
            mfa_authenticator_window: 1,
            mfa_max_attempts: 5,
            mfa_login_lifetime: Duration::hours(1),
            mfa_email_code_lifetime: Duration::minutes(20),
            app_base_url: base_url.clone(),
            register_enabled: true,
            recaptcha: RecaptchaConfig::default(),
            lockout: LockoutPolicy::default(),
            // Medplum's default in its rate-limit middleware; its configuration page says 60.
            auth_rate_limit: Some(DEFAULT_AUTH_RATE_LIMIT),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path.trim_start_matches('/'))
    }
}
