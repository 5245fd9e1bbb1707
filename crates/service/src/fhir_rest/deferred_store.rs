//! A [`Store`] that defers writes, so that a transaction Bundle can run every entry through
//! the ordinary service functions and commit all their writes in one [`Store::write`] batch.
//!
//! Reads of a resource written earlier in the transaction return the pending version, so later
//! entries see earlier ones (a membership can name a profile created in the same Bundle).
//! Searches, counts and histories see only committed data.
//!
//! NOTE: so a search in a transaction, the condition of a conditional entry included, does not
//! find a resource created earlier in the same Bundle, and two Users with one email address
//! created in one Bundle both pass the uniqueness check.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use medgate_store::{
    AttemptReservation, Change, LockoutPolicy, OutboxMessage, SearchScope, Store, StoreError,
    StoreResult, WriteOp,
};
use serde_json::Value;
use tokio::sync::broadcast;

/// The current state of a resource written in the transaction: its new content, or `None`
/// once deleted.
type Pending = HashMap<(String, String), Option<Value>>;

#[derive(Default)]
struct State {
    operations: Vec<WriteOp>,
    current: Pending,
}

pub(super) struct DeferredStore {
    committed: Arc<dyn Store>,
    state: Mutex<State>,
}

fn key_of(resource: &Value) -> StoreResult<(String, String)> {
    let field = |name: &'static str| {
        resource
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or(StoreError::MissingField(name))
    };
    Ok((field("resourceType")?, field("id")?))
}

fn version_of(resource: &Value) -> Option<&str> {
    resource.pointer("/meta/versionId").and_then(Value::as_str)
}

impl DeferredStore {
    pub(super) fn new(committed: Arc<dyn Store>) -> Self {
        Self {
            committed,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while the lock was held leaves a state that no later entry may build on,
        // but the transaction fails with that panic anyway.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the deferred writes, in the order they were made.
    pub(super) fn take_operations(&self) -> Vec<WriteOp> {
        std::mem::take(&mut self.state().operations)
    }

    fn pending(&self, resource_type: &str, id: &str) -> Option<Option<Value>> {
        self.state()
            .current
            .get(&(resource_type.to_string(), id.to_string()))
            .cloned()
    }

    /// Records one write in the pending state, checking what the committed store would check
    /// for resources written earlier in this transaction.
    fn hold(&self, state: &mut State, operation: &WriteOp) -> StoreResult<()> {
        match operation {
            WriteOp::Create(resource) => {
                let key = key_of(resource)?;
                if state.current.contains_key(&key) {
                    return Err(StoreError::Duplicate);
                }
                state.current.insert(key, Some(resource.clone()));
            }
            WriteOp::Update {
                resource,
                expected_version,
            } => {
                let key = key_of(resource)?;
                if let Some(pending) = state.current.get(&key) {
                    let Some(pending) = pending else {
                        return Err(StoreError::Gone);
                    };
                    if expected_version
                        .as_deref()
                        .is_some_and(|expected| Some(expected) != version_of(pending))
                    {
                        return Err(StoreError::VersionConflict);
                    }
                }
                state.current.insert(key, Some(resource.clone()));
            }
            WriteOp::Delete {
                resource_type, id, ..
            } => {
                let key = (resource_type.clone(), id.clone());
                if let Some(None) = state.current.get(&key) {
                    return Err(StoreError::Gone);
                }
                state.current.insert(key, None);
            }
            WriteOp::Claim { .. } | WriteOp::Enqueue(_) | WriteOp::AddToNotifications { .. } => {}
        }
        Ok(())
    }
}

#[async_trait]
impl Store for DeferredStore {
    async fn read(&self, resource_type: &str, id: &str) -> StoreResult<Value> {
        match self.pending(resource_type, id) {
            Some(Some(resource)) => Ok(resource),
            Some(None) => Err(StoreError::Gone),
            None => self.committed.read(resource_type, id).await,
        }
    }

    async fn read_version(
        &self,
        resource_type: &str,
        id: &str,
        version_id: &str,
    ) -> StoreResult<Value> {
        if let Some(Some(resource)) = self.pending(resource_type, id)
            && version_of(&resource) == Some(version_id)
        {
            return Ok(resource);
        }
        self.committed
            .read_version(resource_type, id, version_id)
            .await
    }

    async fn history(&self, resource_type: &str, id: &str) -> StoreResult<Vec<Value>> {
        self.committed.history(resource_type, id).await
    }

    async fn search(&self, scope: SearchScope<'_>) -> StoreResult<Vec<Value>> {
        self.committed.search(scope).await
    }

    async fn count(&self, scope: SearchScope<'_>) -> StoreResult<u64> {
        self.committed.count(scope).await
    }

    /// Defers the batch. A batch that fails the checks on pending resources changes
    /// nothing, as a failed [`Store::write`] would.
    async fn write(&self, batch: Vec<WriteOp>) -> StoreResult<()> {
        let mut state = self.state();
        let before = state.current.clone();
        for operation in &batch {
            if let Err(error) = self.hold(&mut state, operation) {
                state.current = before;
                return Err(error);
            }
        }
        state.operations.extend(batch);
        Ok(())
    }

    // The outbox is not part of a transaction's view: senders work on committed rows.
    async fn claim_outbox(
        &self,
        kind: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<OutboxMessage>> {
        self.committed
            .claim_outbox(kind, now, lease_until, limit)
            .await
    }

    async fn finish_outbox(&self, id: &str) -> StoreResult<()> {
        self.committed.finish_outbox(id).await
    }

    async fn retry_outbox(&self, id: &str, due_at: DateTime<Utc>, error: &str) -> StoreResult<()> {
        self.committed.retry_outbox(id, due_at, error).await
    }

    async fn abandon_outbox(&self, id: &str, error: &str) -> StoreResult<()> {
        self.committed.abandon_outbox(id, error).await
    }

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.committed.subscribe()
    }

    async fn ping(&self) -> StoreResult<()> {
        self.committed.ping().await
    }

    /// Counts at once: an attempt counts whether or not the transaction commits.
    async fn reserve_attempt(
        &self,
        account: &str,
        policy: &LockoutPolicy,
        now: DateTime<Utc>,
    ) -> StoreResult<AttemptReservation> {
        self.committed.reserve_attempt(account, policy, now).await
    }

    async fn clear_attempts(&self, account: &str) -> StoreResult<()> {
        self.committed.clear_attempts(account).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A committed store that is empty, so every read falls through to "not found".
    struct Empty;

    #[async_trait]
    impl Store for Empty {
        async fn read(&self, _: &str, _: &str) -> StoreResult<Value> {
            Err(StoreError::NotFound)
        }
        async fn read_version(&self, _: &str, _: &str, _: &str) -> StoreResult<Value> {
            Err(StoreError::NotFound)
        }
        async fn history(&self, _: &str, _: &str) -> StoreResult<Vec<Value>> {
            Ok(Vec::new())
        }
        async fn search(&self, _: SearchScope<'_>) -> StoreResult<Vec<Value>> {
            Ok(Vec::new())
        }
        async fn count(&self, _: SearchScope<'_>) -> StoreResult<u64> {
            Ok(0)
        }
        async fn write(&self, _: Vec<WriteOp>) -> StoreResult<()> {
            panic!("a deferred store never writes through")
        }
        async fn claim_outbox(
            &self,
            _: &str,
            _: DateTime<Utc>,
            _: DateTime<Utc>,
            _: u32,
        ) -> StoreResult<Vec<OutboxMessage>> {
            Ok(Vec::new())
        }
        async fn finish_outbox(&self, _: &str) -> StoreResult<()> {
            Ok(())
        }
        async fn retry_outbox(&self, _: &str, _: DateTime<Utc>, _: &str) -> StoreResult<()> {
            Ok(())
        }
        async fn abandon_outbox(&self, _: &str, _: &str) -> StoreResult<()> {
            Ok(())
        }
        fn subscribe(&self) -> broadcast::Receiver<Change> {
            broadcast::channel(1).1
        }
        async fn ping(&self) -> StoreResult<()> {
            Ok(())
        }
        async fn reserve_attempt(
            &self,
            _: &str,
            _: &LockoutPolicy,
            _: DateTime<Utc>,
        ) -> StoreResult<AttemptReservation> {
            panic!("no test here signs in")
        }
        async fn clear_attempts(&self, _: &str) -> StoreResult<()> {
            panic!("no test here signs in")
        }
    }

    fn patient(version: &str) -> Value {
        json!({"resourceType": "Patient", "id": "p", "meta": {"versionId": version}})
    }

    #[tokio::test]
    async fn reads_see_pending_writes() {
        let store = DeferredStore::new(Arc::new(Empty));
        assert!(matches!(
            store.read("Patient", "p").await,
            Err(StoreError::NotFound)
        ));
        store
            .write(vec![WriteOp::Create(patient("v1"))])
            .await
            .unwrap();
        assert_eq!(store.read("Patient", "p").await.unwrap(), patient("v1"));
        store
            .write(vec![WriteOp::Update {
                resource: patient("v2"),
                expected_version: Some("v1".to_string()),
            }])
            .await
            .unwrap();
        assert_eq!(
            store.read_version("Patient", "p", "v2").await.unwrap(),
            patient("v2")
        );
        store
            .write(vec![WriteOp::Delete {
                resource_type: "Patient".to_string(),
                id: "p".to_string(),
                version_id: "v3".to_string(),
                last_updated: "2026-01-01T00:00:00Z".to_string(),
            }])
            .await
            .unwrap();
        assert!(matches!(
            store.read("Patient", "p").await,
            Err(StoreError::Gone)
        ));
        assert_eq!(store.take_operations().len(), 3);
    }

    #[tokio::test]
    async fn failed_batch_changes_nothing() {
        let store = DeferredStore::new(Arc::new(Empty));
        store
            .write(vec![WriteOp::Create(patient("v1"))])
            .await
            .unwrap();
        let conflicting = vec![
            WriteOp::Update {
                resource: patient("v2"),
                expected_version: Some("v1".to_string()),
            },
            WriteOp::Update {
                resource: patient("v3"),
                expected_version: Some("v1".to_string()),
            },
        ];
        assert!(matches!(
            store.write(conflicting).await,
            Err(StoreError::VersionConflict)
        ));
        assert_eq!(store.read("Patient", "p").await.unwrap(), patient("v1"));
        assert_eq!(store.take_operations().len(), 1);
    }
}
