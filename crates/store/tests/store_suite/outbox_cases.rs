//! The outbox: rows queued with a batch, claimed with a lease, retried, finished and
//! abandoned, and never handed to two claimers at once.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use medgate_store::{NotificationFields, OutboxMessage, Store, StoreError, WriteOp};
use serde_json::json;

use super::{new_id, stamp, update, user, write};

fn at(second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::seconds(i64::from(second))
}

fn message(id: &str, second: u32) -> OutboxMessage {
    OutboxMessage {
        id: id.to_string(),
        kind: "email".to_string(),
        payload: json!({"to": format!("{id}@example.com")}),
        attempts: 0,
        due_at: at(second),
        created_at: at(second),
    }
}

async fn claim(store: &dyn Store, now: u32, lease_until: u32, limit: u32) -> Vec<OutboxMessage> {
    store
        .claim_outbox("email", at(now), at(lease_until), limit)
        .await
        .expect("claim outbox rows")
}

fn ids(messages: &[OutboxMessage]) -> Vec<&str> {
    messages.iter().map(|message| message.id.as_str()).collect()
}

pub(super) async fn outbox_claim_lease_finish(store: Arc<dyn Store>) {
    write(&*store, vec![WriteOp::Enqueue(message("m1", 10))]).await;

    assert!(claim(&*store, 9, 100, 10).await.is_empty(), "not due yet");
    assert!(
        store
            .claim_outbox("webhook", at(10), at(100), 10)
            .await
            .unwrap()
            .is_empty(),
        "another kind's sender does not see the row"
    );

    let claimed = claim(&*store, 10, 100, 10).await;
    assert_eq!(ids(&claimed), ["m1"]);
    assert_eq!(claimed[0].attempts, 1);
    assert_eq!(claimed[0].payload, json!({"to": "m1@example.com"}));
    assert_eq!(claimed[0].created_at, at(10));

    assert!(claim(&*store, 99, 200, 10).await.is_empty(), "leased");
    let taken_over = claim(&*store, 100, 200, 10).await;
    assert_eq!(ids(&taken_over), ["m1"], "due again when the lease ends");
    assert_eq!(taken_over[0].attempts, 2);

    store.finish_outbox("m1").await.unwrap();
    assert!(claim(&*store, 1000, 2000, 10).await.is_empty());
    store
        .finish_outbox("m1")
        .await
        .expect("finishing twice is harmless");
}

pub(super) async fn outbox_rolls_back_with_batch(store: Arc<dyn Store>) {
    let failed = store
        .write(vec![
            WriteOp::Enqueue(message("m1", 0)),
            update(
                &stamp(
                    user("missing@example.com"),
                    &new_id(),
                    &new_id(),
                    &super::at(1),
                ),
                None,
            ),
        ])
        .await;
    assert!(matches!(failed, Err(StoreError::NotFound)), "{failed:?}");
    assert!(
        claim(&*store, 10, 20, 10).await.is_empty(),
        "a failed batch queues nothing"
    );

    write(&*store, vec![WriteOp::Enqueue(message("m1", 0))]).await;
    let duplicate = store.write(vec![WriteOp::Enqueue(message("m1", 0))]).await;
    assert!(
        matches!(duplicate, Err(StoreError::Duplicate)),
        "{duplicate:?}"
    );
}

pub(super) async fn outbox_retry_and_abandon(store: Arc<dyn Store>) {
    write(
        &*store,
        vec![
            WriteOp::Enqueue(message("m1", 0)),
            WriteOp::Enqueue(message("m2", 1)),
        ],
    )
    .await;
    let claimed = claim(&*store, 5, 10, 1).await;
    assert_eq!(
        ids(&claimed),
        ["m1"],
        "the longest due first, up to the limit"
    );

    store
        .retry_outbox("m1", at(50), "connection refused")
        .await
        .unwrap();
    assert_eq!(ids(&claim(&*store, 20, 1000, 10).await), ["m2"]);
    let retried = claim(&*store, 50, 60, 10).await;
    assert_eq!(ids(&retried), ["m1"]);
    assert_eq!(retried[0].attempts, 2);

    store.abandon_outbox("m1", "gave up").await.unwrap();
    store
        .retry_outbox("m1", at(70), "late retry")
        .await
        .unwrap();
    assert!(
        claim(&*store, 1000, 2000, 10)
            .await
            .iter()
            .all(|message| message.id != "m1"),
        "an abandoned row is never claimed again"
    );
}

pub(super) async fn outbox_concurrent_claims_disjoint(store: Arc<dyn Store>) {
    let queued: Vec<WriteOp> = (0..40)
        .map(|index| WriteOp::Enqueue(message(&format!("m{index:02}"), 0)))
        .collect();
    write(&*store, queued).await;

    let claimers = (0..4).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claimed = claim(&*store, 10, 1000, 3).await;
                if claimed.is_empty() {
                    return mine;
                }
                mine.extend(claimed.into_iter().map(|message| message.id));
            }
        })
    });
    let mut all = Vec::new();
    for claimer in claimers {
        all.extend(claimer.await.expect("claimer task"));
    }
    let distinct: BTreeSet<&String> = all.iter().collect();
    assert_eq!(all.len(), 40, "every row claimed once: {all:?}");
    assert_eq!(distinct.len(), 40);
}

/// Fields for notifications go nowhere in the store: not into the resource, its history or
/// the outbox, and not into the batch's `Debug` output.
pub(super) async fn notification_fields_not_stored(store: Arc<dyn Store>) {
    let id = new_id();
    let resource = stamp(
        user("n@example.com"),
        &id,
        &new_id(),
        "2025-01-01T00:00:00.000Z",
    );
    let mut fields = serde_json::Map::new();
    fields.insert("secret".to_string(), json!("clear-secret-value"));
    let batch = vec![
        WriteOp::AddToNotifications {
            resource_type: "User".to_string(),
            id: id.clone(),
            fields: NotificationFields(fields),
        },
        WriteOp::Create(resource.clone()),
    ];
    assert!(
        !format!("{batch:?}").contains("clear-secret-value"),
        "Debug printed a notification field's value"
    );
    write(&*store, batch).await;

    let stored = store.read("User", &id).await.unwrap();
    assert_eq!(stored, resource, "the stored resource changed");
    let history = store.history("User", &id).await.unwrap();
    assert_eq!(history, [resource], "the history gained an entry");
    assert!(
        store
            .claim_outbox("webhook", at(0), at(100), 10)
            .await
            .unwrap()
            .is_empty(),
        "the store queued a notification itself"
    );
}
