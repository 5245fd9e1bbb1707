//! The per-account lockout rule: how many password or MFA attempts an account gets before it
//! is locked, and for how long. The store applies it inside one transaction per attempt (see
//! [`Store::reserve_attempt`](crate::Store::reserve_attempt)), so parallel requests and several
//! server processes share one count.

use chrono::{DateTime, Duration, Utc};

/// Limits of the per-account lockout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Attempts an account gets before it is locked. The attempt that reaches this number is
    /// still checked, and it starts the lock unless it succeeds.
    pub max_attempts: u32,
    /// Length of the first lock. Each further lock lasts twice as long as the one before.
    pub first_lock: Duration,
    /// Upper bound of a lock's length.
    pub max_lock: Duration,
    /// Idle time after which the failed attempts and the lock level of an account are
    /// forgotten, so that a lock from long ago does not lengthen the next one.
    pub forget_after: Duration,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            first_lock: Duration::minutes(1),
            max_lock: Duration::hours(1),
            forget_after: Duration::days(1),
        }
    }
}

/// The stored attempt count of one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptState {
    /// Attempts reserved since the last success or the last lock, including those still
    /// being checked.
    pub attempts: i64,
    /// Locks since the last success; the next lock lasts `first_lock * 2^locks`.
    pub locks: i64,
    pub locked_until: Option<DateTime<Utc>>,
    pub last_attempt_at: DateTime<Utc>,
}

/// The result of [`Store::reserve_attempt`](crate::Store::reserve_attempt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptReservation {
    /// The caller may check one password or code now.
    Granted,
    /// The account is locked until the given instant; nothing may be checked before it.
    Locked { until: DateTime<Utc> },
}

impl LockoutPolicy {
    /// Decides one reservation: returns the result and the state to store (`None` when
    /// nothing changes).
    pub fn reserve(
        &self,
        state: AttemptState,
        now: DateTime<Utc>,
    ) -> (AttemptReservation, Option<AttemptState>) {
        if let Some(until) = state.locked_until.filter(|until| *until > now) {
            return (AttemptReservation::Locked { until }, None);
        }

        let mut next = state;
        if now - state.last_attempt_at >= self.forget_after {
            next.attempts = 0;
            next.locks = 0;
        }
        next.attempts += 1;
        next.last_attempt_at = now;
        next.locked_until = None;

        // The attempt that reaches the limit starts the lock at once, so requests arriving
        // while it is checked are rejected. A success clears the lock again.
        if next.attempts >= i64::from(self.max_attempts.max(1)) {
            next.locked_until = Some(now + self.lock_length(next.locks));
            next.locks += 1;
            next.attempts = 0;
        }
        (AttemptReservation::Granted, Some(next))
    }

    /// Length of the lock that follows `earlier_locks` locks: doubled each time, capped.
    pub fn lock_length(&self, earlier_locks: i64) -> Duration {
        // 2^20 times any sensible first lock exceeds any sensible cap, and the shift cannot
        // overflow.
        let factor = 1_i32 << earlier_locks.clamp(0, 20);
        self.first_lock
            .checked_mul(factor)
            .unwrap_or(self.max_lock)
            .min(self.max_lock)
    }
}

/// Converts an instant to the milliseconds since 1970 that the attempt table stores.
pub(crate) fn to_millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// Converts stored milliseconds back to an instant; out-of-range values become the epoch.
pub(crate) fn from_millis(millis: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(millis).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn fresh(now: DateTime<Utc>) -> AttemptState {
        AttemptState {
            attempts: 0,
            locks: 0,
            locked_until: None,
            last_attempt_at: now,
        }
    }

    #[test]
    fn fifth_attempt_starts_lock() {
        let policy = LockoutPolicy::default();
        let now = start();
        let mut state = fresh(now);
        for attempt in 1..=5 {
            let (reservation, next) = policy.reserve(state, now);
            assert_eq!(
                reservation,
                AttemptReservation::Granted,
                "attempt {attempt}"
            );
            state = next.unwrap();
        }
        assert_eq!(state.locked_until, Some(now + Duration::minutes(1)));
        assert_eq!(state.locks, 1);
        assert_eq!(state.attempts, 0);

        let (reservation, next) = policy.reserve(state, now + Duration::seconds(59));
        assert_eq!(
            reservation,
            AttemptReservation::Locked {
                until: now + Duration::minutes(1)
            }
        );
        assert_eq!(next, None);
    }

    #[test]
    fn lock_lengths_double_then_cap() {
        let policy = LockoutPolicy::default();
        let minutes: Vec<i64> = (0..8)
            .map(|locks| policy.lock_length(locks).num_minutes())
            .collect();
        assert_eq!(minutes, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(policy.lock_length(i64::MAX), Duration::hours(1));
    }

    #[test]
    fn idle_account_forgets_level() {
        let policy = LockoutPolicy::default();
        let now = start();
        let state = AttemptState {
            attempts: 3,
            locks: 4,
            locked_until: Some(now),
            last_attempt_at: now,
        };
        let later = now + Duration::days(1);
        let (reservation, next) = policy.reserve(state, later);
        assert_eq!(reservation, AttemptReservation::Granted);
        let next = next.unwrap();
        assert_eq!((next.attempts, next.locks), (1, 0));
    }
}
