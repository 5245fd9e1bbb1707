//! Password hashing and the password policy.
//!
//! New hashes are argon2id with m=19 MiB, t=2, p=1 (the OWASP Password Storage Cheat Sheet
//! minimum). bcrypt hashes imported from Medplum (`$2a$`/`$2b$`/`$2y$`) still verify, and the
//! caller rehashes them with argon2id after the next successful sign-in. Hashing is CPU-bound,
//! so it runs on blocking threads behind a semaphore sized to the cores: a flood of sign-ins
//! waits in line instead of starving token requests of CPU.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use tokio::sync::Semaphore;

use crate::error::{ServiceError, ServiceResult};
use crate::random::Random;
use crate::secret::Secret;

pub const MIN_PASSWORD_BYTES: usize = 8;
/// bcrypt reads only the first 72 bytes; Medplum caps passwords there, and so does medgate so
/// that a password works the same on both.
pub const MAX_PASSWORD_BYTES: usize = 72;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    Valid { needs_rehash: bool },
    Invalid,
}

#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    random: Arc<dyn Random>,
    /// A hash of a random password, verified when the account does not exist so that the
    /// answer takes as long as for a real account.
    decoy_hash: Arc<String>,
}

fn argon2id() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_blocking(password: &str, salt: [u8; 16]) -> ServiceResult<String> {
    let salt = SaltString::encode_b64(&salt)
        .map_err(|error| ServiceError::Internal(format!("salt: {error}")))?;
    argon2id()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| ServiceError::Internal(format!("argon2 hashing failed: {error}")))
}

fn verify_blocking(password: &str, hash: &str) -> Verification {
    if hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$") {
        return match bcrypt::verify(password, hash) {
            Ok(true) => Verification::Valid { needs_rehash: true },
            _ => Verification::Invalid,
        };
    }
    let Ok(parsed) = PasswordHash::new(hash) else {
        return Verification::Invalid;
    };
    match argon2id().verify_password(password.as_bytes(), &parsed) {
        Ok(()) => Verification::Valid {
            needs_rehash: parsed.algorithm.as_str() != "argon2id",
        },
        Err(_) => Verification::Invalid,
    }
}

impl PasswordHasher {
    pub fn new(workers: usize, random: Arc<dyn Random>) -> Self {
        let mut decoy = [0u8; 32];
        random.fill(&mut decoy);
        let mut salt = [0u8; 16];
        random.fill(&mut salt);
        let decoy_hash = hash_blocking(&crate::random::hex(&decoy), salt)
            .expect("argon2 hashes a decoy password");
        Self {
            permits: Arc::new(Semaphore::new(workers.max(1))),
            random,
            decoy_hash: Arc::new(decoy_hash),
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> ServiceResult<T> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| ServiceError::Internal("password hashing pool closed".to_string()))?;
        tokio::task::spawn_blocking(job).await.map_err(|error| {
            ServiceError::Internal(format!("password hashing task failed: {error}"))
        })
    }

    pub async fn hash(&self, password: &Secret<String>) -> ServiceResult<String> {
        let mut salt = [0u8; 16];
        self.random.fill(&mut salt);
        let password = password.expose().clone();
        self.run(move || hash_blocking(&password, salt)).await?
    }

    /// Verifies against `hash`, or against the decoy when there is no account, so both cases
    /// cost the same time.
    pub async fn verify(
        &self,
        password: &Secret<String>,
        hash: Option<&str>,
    ) -> ServiceResult<Verification> {
        let password = password.expose().clone();
        let (hash, real) = match hash {
            Some(hash) => (hash.to_string(), true),
            None => (self.decoy_hash.as_ref().clone(), false),
        };
        let verification = self.run(move || verify_blocking(&password, &hash)).await?;
        Ok(if real {
            verification
        } else {
            Verification::Invalid
        })
    }
}

/// Checks a new password against the length limits and a list of common passwords, returning
/// Medplum's message for the failed rule.
pub fn check_new_password(password: &Secret<String>) -> Result<(), &'static str> {
    let password = password.expose();
    if password.len() < MIN_PASSWORD_BYTES || password.len() > MAX_PASSWORD_BYTES {
        return Err("Password must be between 8 and 72 characters");
    }
    // zxcvbn's dictionaries are built from leaked-password lists, so a score of 0 or 1 (under
    // a million guesses) means the password, or a trivial variation of one, is in such a list.
    // This runs offline, unlike Medplum's query to the Have I Been Pwned range API.
    let strength = zxcvbn::zxcvbn(password, &[]);
    if (strength.score() as u8) < 2 {
        return Err("Password found in breach database");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRandom;

    fn hasher() -> PasswordHasher {
        PasswordHasher::new(1, Arc::new(SeededRandom::new(3)))
    }

    #[tokio::test]
    async fn argon2_round_trip() {
        let hasher = hasher();
        let hash = hasher
            .hash(&Secret::from("correct horse battery"))
            .await
            .unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        let right = hasher
            .verify(&Secret::from("correct horse battery"), Some(&hash))
            .await
            .unwrap();
        assert_eq!(
            right,
            Verification::Valid {
                needs_rehash: false
            }
        );
        let wrong = hasher
            .verify(&Secret::from("wrong horse battery"), Some(&hash))
            .await
            .unwrap();
        assert_eq!(wrong, Verification::Invalid);
    }

    #[tokio::test]
    async fn bcrypt_verifies_and_needs_rehash() {
        let hash = bcrypt::hash_with_result("medplum_admin", 4)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoA);
        let verification = hasher()
            .verify(&Secret::from("medplum_admin"), Some(&hash))
            .await
            .unwrap();
        assert_eq!(verification, Verification::Valid { needs_rehash: true });
    }

    #[tokio::test]
    async fn missing_account_never_verifies() {
        let verification = hasher()
            .verify(&Secret::from("anything at all"), None)
            .await
            .unwrap();
        assert_eq!(verification, Verification::Invalid);
    }

    #[test]
    fn policy_rejects_short_long_and_common() {
        assert!(check_new_password(&Secret::from("short")).is_err());
        assert!(check_new_password(&Secret::from("x".repeat(73))).is_err());
        assert_eq!(
            check_new_password(&Secret::from("password123")),
            Err("Password found in breach database")
        );
        assert!(check_new_password(&Secret::from("violet-Lantern-47-orbit")).is_ok());
    }

    #[test]
    fn policy_counts_bytes_not_characters() {
        // 40 two-byte characters are 80 bytes, over bcrypt's 72-byte limit.
        assert!(check_new_password(&Secret::from("é".repeat(40))).is_err());
    }
}
