//! The per-account lockout: every password or MFA check of an account first reserves an
//! attempt in the store, which rejects it while the account is locked. The count lives in the
//! database, so parallel requests and several server processes share it.

use chrono::{DateTime, Utc};
use medgate_fhir::Reference;
use medgate_store::AttemptReservation;
use tracing::{instrument, warn};

use crate::Services;
use crate::error::{ServiceError, ServiceResult};

impl Services {
    /// Reserves one password or MFA attempt for `user` before the secret is checked. Returns
    /// [`ServiceError::TooManyRequests`] while the account is locked, without checking
    /// anything. The attempt counts as failed until [`Services::clear_sign_in_attempts`]
    /// records a success, so attempts running in parallel cannot exceed the limit.
    #[instrument(skip_all, fields(user = %user.reference))]
    pub async fn reserve_sign_in_attempt(&self, user: &Reference) -> ServiceResult<()> {
        let now = self.now();
        let reservation = self
            .repo
            .store
            .reserve_attempt(&user.reference, &self.config.lockout, now)
            .await?;
        match reservation {
            AttemptReservation::Granted => Ok(()),
            AttemptReservation::Locked { until } => {
                warn!(locked_until = %until, "attempt rejected: account locked");
                Err(account_locked(until, now))
            }
        }
    }

    /// Forgets the failed attempts and the lock of `user` after a correct password or code.
    pub async fn clear_sign_in_attempts(&self, user: &Reference) -> ServiceResult<()> {
        Ok(self.repo.store.clear_attempts(&user.reference).await?)
    }
}

/// The error while an account is locked. It confirms that the account exists, because an
/// unknown email is never locked. But only a caller who has already made the maximum number
/// of failed attempts sees it, and the legitimate user needs to learn why a correct password
/// is rejected. It does not say whether any password was right or how many attempts follow.
fn account_locked(until: DateTime<Utc>, now: DateTime<Utc>) -> ServiceError {
    let seconds = (until - now).num_seconds().max(1);
    let minutes = (seconds + 59) / 60;
    let unit = if minutes == 1 { "minute" } else { "minutes" };
    ServiceError::TooManyRequests {
        message: format!(
            "Too many failed sign-in attempts; the account is locked, try again in {minutes} {unit}"
        ),
        retry_after_seconds: Some(u64::try_from(seconds).unwrap_or(1)),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    #[test]
    fn lock_message_rounds_minutes_up() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let cases = [
            (1, "1 minute", 1),
            (60, "1 minute", 60),
            (61, "2 minutes", 61),
        ];
        for (seconds, text, retry_after) in cases {
            let ServiceError::TooManyRequests {
                message,
                retry_after_seconds,
            } = account_locked(now + Duration::seconds(seconds), now)
            else {
                panic!("expected TooManyRequests");
            };
            assert!(
                message.ends_with(&format!("try again in {text}")),
                "{message}"
            );
            assert_eq!(retry_after_seconds, Some(retry_after));
        }
    }
}
