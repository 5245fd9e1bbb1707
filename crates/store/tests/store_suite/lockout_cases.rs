//! Cases of the per-account attempt count behind the sign-in lockout.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use medgate_store::{AttemptReservation, LockoutPolicy, Store};
use tokio::sync::Barrier;

fn policy() -> LockoutPolicy {
    LockoutPolicy {
        max_attempts: 3,
        first_lock: Duration::minutes(1),
        max_lock: Duration::minutes(10),
        forget_after: Duration::days(1),
    }
}

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .expect("valid instant")
        .with_timezone(&Utc)
}

async fn reserve(store: &dyn Store, account: &str, now: DateTime<Utc>) -> AttemptReservation {
    store
        .reserve_attempt(account, &policy(), now)
        .await
        .unwrap_or_else(|error| panic!("reserve an attempt for {account}: {error}"))
}

/// Reserves `count` attempts at `now` and asserts that each is granted.
async fn reserve_granted(store: &dyn Store, account: &str, count: usize, now: DateTime<Utc>) {
    for attempt in 1..=count {
        assert_eq!(
            reserve(store, account, now).await,
            AttemptReservation::Granted,
            "attempt {attempt} of {count} for {account}"
        );
    }
}

pub(super) async fn attempts_lock_at_limit(store: Arc<dyn Store>) {
    let now = start();
    reserve_granted(&*store, "User/a", 3, now).await;

    let locked = AttemptReservation::Locked {
        until: now + Duration::minutes(1),
    };
    assert_eq!(reserve(&*store, "User/a", now).await, locked);
    assert_eq!(
        reserve(&*store, "User/a", now + Duration::seconds(59)).await,
        locked,
        "the lock runs for one minute"
    );

    // The lock ends; the next lock of the same account lasts twice as long.
    let later = now + Duration::minutes(1);
    reserve_granted(&*store, "User/a", 3, later).await;
    assert_eq!(
        reserve(&*store, "User/a", later).await,
        AttemptReservation::Locked {
            until: later + Duration::minutes(2)
        }
    );
}

pub(super) async fn attempts_separate_per_account(store: Arc<dyn Store>) {
    let now = start();
    reserve_granted(&*store, "User/a", 3, now).await;
    assert!(matches!(
        reserve(&*store, "User/a", now).await,
        AttemptReservation::Locked { .. }
    ));
    reserve_granted(&*store, "User/b", 3, now).await;
}

pub(super) async fn clear_attempts_resets_count(store: Arc<dyn Store>) {
    let now = start();
    reserve_granted(&*store, "User/a", 2, now).await;
    store
        .clear_attempts("User/a")
        .await
        .expect("clear the attempts");
    reserve_granted(&*store, "User/a", 3, now).await;

    // A success during a lock started by a concurrent attempt ends it, and the level too.
    store
        .clear_attempts("User/a")
        .await
        .expect("clear the attempts");
    reserve_granted(&*store, "User/a", 3, now).await;
    assert_eq!(
        reserve(&*store, "User/a", now).await,
        AttemptReservation::Locked {
            until: now + Duration::minutes(1)
        },
        "after a success the next lock is a first lock again"
    );

    store
        .clear_attempts("User/never-seen")
        .await
        .expect("clearing an account without attempts succeeds");
}

pub(super) async fn concurrent_reservations_capped(store: Arc<dyn Store>) {
    const REQUESTS: usize = 50;
    let now = start();
    let barrier = Arc::new(Barrier::new(REQUESTS));
    let mut tasks = Vec::new();
    for _ in 0..REQUESTS {
        let store = store.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store.reserve_attempt("User/a", &policy(), now).await
        }));
    }

    let mut granted = 0;
    for task in tasks {
        match task.await.expect("reservation task") {
            Ok(AttemptReservation::Granted) => granted += 1,
            Ok(AttemptReservation::Locked { until }) => {
                assert_eq!(until, now + Duration::minutes(1));
            }
            Err(error) => panic!("expected a reservation or a lock, got {error:?}"),
        }
    }
    assert_eq!(
        granted, 3,
        "{REQUESTS} parallel reservations must grant exactly the limit"
    );
}
