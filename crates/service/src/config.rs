//! Settings the services need, already resolved from flags, environment and file.

use chrono::Duration;
use medgate_store::LockoutPolicy;

use crate::access::IpNet;

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
    /// Failed password and MFA attempts per account before it is locked, and the lock lengths.
    pub lockout: LockoutPolicy,
    /// Requests per client address per minute on `/auth/*` and `/oauth2/*` (Medplum's
    /// `defaultAuthRateLimit`), or `None` for no limit.
    pub auth_rate_limit: Option<u32>,
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
            base_url,
            require_pkce_s256: false,
            code_lifetime: Duration::minutes(5),
            refresh_grace: Duration::seconds(10),
            default_access_token_lifetime: Duration::hours(1),
            default_refresh_token_lifetime: Duration::weeks(2),
            password_hash_workers: std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(2),
            trusted_proxies: Vec::new(),
            lockout: LockoutPolicy::default(),
            // Medplum's default in its rate-limit middleware; its configuration page says 60.
            auth_rate_limit: Some(DEFAULT_AUTH_RATE_LIMIT),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path.trim_start_matches('/'))
    }
}
