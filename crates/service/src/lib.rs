//! medgate's flows: sign-in, tokens, registration, bootstrap and the FHIR resources the
//! authentication API owns. Nothing here knows about HTTP; handlers call one function each
//! and map [`ServiceError`] to the wire format of their route.

pub mod access;
pub mod account;
pub mod admin;
pub mod authorize;
pub mod bootstrap;
pub mod client_auth;
pub mod clients;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod email;
pub mod error;
pub mod fhir_rest;
pub mod grants;
pub mod keys;
pub mod lockout;
pub mod login;
pub mod mfa;
pub mod password;
pub mod password_reset;
pub mod patient_registration;
pub mod pkce;
pub mod random;
pub mod rate_limit;
pub mod recaptcha;
pub mod registration;
pub mod repo;
pub mod secret;
pub mod security_request;
pub mod session;
mod session_cache;
pub mod set_password;
pub mod subscriptions;
pub mod tokens;
pub mod userinfo;

use std::sync::Arc;

use medgate_fhir::resources::JsonWebKey;
use medgate_fhir::search::SearchRequest;
use medgate_store::Store;

pub use config::ServiceConfig;
pub use error::{OAuthErrorCode, ServiceError, ServiceResult};
pub use secret::Secret;

use clock::Clock;
use keys::KeyRing;
use password::PasswordHasher;
use random::Random;
use rate_limit::RateLimiter;
use repo::Repo;
use session_cache::AuthCache;

/// Everything a flow needs: settings, the store behind typed access, keys and the
/// password-hashing pool. Cheap to clone.
#[derive(Clone)]
pub struct Services {
    pub config: Arc<ServiceConfig>,
    pub repo: Repo,
    pub keys: KeyRing,
    pub passwords: PasswordHasher,
    /// Wakes the outbox sender when this process queues a row.
    pub outbox_wake: delivery::Wake,
    /// Requests per client address on `/auth/*` and `/oauth2/*`, counted in this process.
    pub auth_rate_limiter: RateLimiter,
    auth_cache: AuthCache,
}

impl Services {
    pub fn new(
        config: ServiceConfig,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Random>,
    ) -> Self {
        let passwords = PasswordHasher::new(config.password_hash_workers, random.clone());
        let outbox_wake = delivery::Wake::default();
        // Every write goes through the subscription hook, whichever flow makes it.
        let store: Arc<dyn Store> = Arc::new(subscriptions::NotifyingStore::new(
            store,
            clock.clone(),
            random.clone(),
            outbox_wake.clone(),
        ));
        Self {
            config: Arc::new(config),
            auth_cache: AuthCache::new(store.subscribe()),
            repo: Repo {
                store,
                clock,
                random,
            },
            keys: KeyRing::default(),
            passwords,
            outbox_wake,
            auth_rate_limiter: RateLimiter::default(),
        }
    }

    /// Loads the active signing keys from the store into memory.
    pub async fn load_keys(&self) -> ServiceResult<()> {
        let request = SearchRequest::new("JsonWebKey")
            .filter("active", "true")
            .count(100);
        let keys: Vec<JsonWebKey> = self.repo.search(&request, None).await?;
        self.keys.replace(&keys)
    }

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.repo.clock.now()
    }

    pub fn random(&self) -> &dyn Random {
        self.repo.random.as_ref()
    }
}
