//! Persistence for medgate: the [`Store`] trait and its SQLite and PostgreSQL implementations.
//!
//! The store keeps FHIR resources as JSON with every version, and a table of search values
//! extracted at write time. It assigns nothing itself: ids, `meta.versionId` and
//! `meta.lastUpdated` come from the caller, which owns the clock and the random source.
//!
//! Opening a store migrates it and, when the search values were extracted under other rules
//! than `medgate_fhir::search::INDEX_VERSION`, rebuilds them before it returns.

mod error;
mod lockout;
mod postgres;
mod search_sql;
mod sql;
mod sql_store;
mod sqlite;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use medgate_fhir::search::{Restriction, SearchRequest};
use serde_json::Value;

pub use error::StoreError;
pub use lockout::{AttemptReservation, AttemptState, LockoutPolicy};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

pub type StoreResult<T> = Result<T, StoreError>;

/// One write of an atomic batch (see [`Store::write`]).
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Inserts a new resource. Its `id`, `meta.versionId` and `meta.lastUpdated` must be set.
    Create(Value),
    /// Replaces the current version. With `expected_version`, the write happens only if the
    /// stored version still has that id (optimistic concurrency); otherwise the batch fails
    /// with [`StoreError::VersionConflict`].
    Update {
        resource: Value,
        expected_version: Option<String>,
    },
    /// Marks the resource deleted, keeping a deletion entry in its history. The batch fails
    /// with [`StoreError::NotFound`] for an unknown resource and [`StoreError::Gone`] for one
    /// already deleted.
    Delete {
        resource_type: String,
        id: String,
        version_id: String,
        last_updated: String,
    },
    /// Records that a one-time action happened. The batch fails with
    /// [`StoreError::AlreadyClaimed`] when another batch claimed the same name first, even
    /// when both run at the same moment on different server processes.
    Claim { name: String, at: String },
    /// Queues work for a background sender (see [`OutboxMessage`]). The batch fails with
    /// [`StoreError::Duplicate`] when a row with the same id is queued already.
    Enqueue(OutboxMessage),
    /// Adds `fields` to the rest-hook notifications of the resource `resource_type/id` that
    /// the same batch creates or updates. The store itself ignores this op and keeps none of
    /// these values, so a value that must never be stored, such as the one-time secret of a
    /// set-password link, can still reach a project's own email sender.
    AddToNotifications {
        resource_type: String,
        id: String,
        fields: NotificationFields,
    },
}

/// Fields that only notifications carry (see [`WriteOp::AddToNotifications`]). Their values
/// are secrets, so `Debug` prints the field names alone.
#[derive(Clone, PartialEq)]
pub struct NotificationFields(pub serde_json::Map<String, Value>);

impl std::fmt::Debug for NotificationFields {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_list().entries(self.0.keys()).finish()
    }
}

/// A row of the outbox: work that a write queued and a background sender does afterwards,
/// such as an email or a web hook delivery. Queued in the same batch as the resources it
/// belongs to, it exists if and only if they were written.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    /// A unique id; time-ordered ids (UUIDv7) keep the table's index append-only.
    pub id: String,
    /// The sender that handles the row, such as `email`.
    pub kind: String,
    /// The sender's input, as JSON. It may contain a secret link, so a row is removed once it
    /// has been delivered.
    pub payload: Value,
    /// How many times the row has been claimed, this claim included.
    pub attempts: u32,
    /// When the row is (or was, for a claimed row) due.
    pub due_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// A change to stored data, for caches that must forget what it makes stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A resource was created, updated or deleted.
    Resource { resource_type: String, id: String },
    /// Changes may have been missed, for example while the connection that hears other
    /// processes' writes was down: anything cached may be stale.
    Unknown,
}

/// A search restricted to one project, or to none for server-wide look-ups.
#[derive(Debug, Clone)]
pub struct SearchScope<'a> {
    pub request: &'a SearchRequest,
    pub project_id: Option<&'a str>,
    /// Which resources the caller may see at all (from its access policy); `None` means all.
    pub restriction: Option<&'a Restriction>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads the current version; [`StoreError::NotFound`] or [`StoreError::Gone`] otherwise.
    async fn read(&self, resource_type: &str, id: &str) -> StoreResult<Value>;

    /// Reads one version by its `meta.versionId`.
    async fn read_version(
        &self,
        resource_type: &str,
        id: &str,
        version_id: &str,
    ) -> StoreResult<Value>;

    /// Every version of a resource, the most recently written first, whatever their
    /// `meta.lastUpdated`. Deletion entries are omitted.
    async fn history(&self, resource_type: &str, id: &str) -> StoreResult<Vec<Value>>;

    /// Returns one page of the current, non-deleted resources matching every filter, in the
    /// order of the request's `_sort` keys and then oldest `meta.lastUpdated` first, with
    /// resources written in the same millisecond in the order they were created.
    async fn search(&self, scope: SearchScope<'_>) -> StoreResult<Vec<Value>>;

    /// Counts the current, non-deleted resources matching every filter, whatever the page.
    async fn count(&self, scope: SearchScope<'_>) -> StoreResult<u64>;

    /// Applies every operation in one transaction: all of them happen, or none.
    async fn write(&self, batch: Vec<WriteOp>) -> StoreResult<()>;

    /// Claims up to `limit` rows of `kind` that are due at `now`, longest due first, and
    /// returns them with their attempt counts raised by one. Each claimed row becomes due
    /// again at `lease_until`, so when its sender stops before finishing, another sender
    /// takes it over then. Two processes claiming at the same moment never get the same row.
    async fn claim_outbox(
        &self,
        kind: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<OutboxMessage>>;

    /// Removes a delivered row. Unknown ids are ignored: the row may have been finished by a
    /// sender that took it over after the lease ended.
    async fn finish_outbox(&self, id: &str) -> StoreResult<()>;

    /// Makes a row due again at `due_at` after a failed attempt, keeping `error` for
    /// operators. The error text must not hold the payload or any secret.
    async fn retry_outbox(&self, id: &str, due_at: DateTime<Utc>, error: &str) -> StoreResult<()>;

    /// Gives up on a row: it is never claimed again, its payload is erased and `error` is
    /// kept for operators.
    async fn abandon_outbox(&self, id: &str, error: &str) -> StoreResult<()>;

    /// Announces every change committed from now on: this process's writes before
    /// [`Store::write`] returns, and on PostgreSQL other processes' writes moments after they
    /// commit. A receiver that falls behind gets a lag error, which means changes were missed,
    /// like [`Change::Unknown`].
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Change>;

    /// Checks that the database responds.
    async fn ping(&self) -> StoreResult<()>;

    /// Reserves one password or MFA attempt for `account` before it is checked, by counting
    /// it under `policy` in one transaction. Reservations of one account are serialized, even
    /// across server processes, so no more attempts are granted than the policy allows.
    async fn reserve_attempt(
        &self,
        account: &str,
        policy: &LockoutPolicy,
        now: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<AttemptReservation>;

    /// Forgets the attempts, the lock and the lock level of `account` after a successful check.
    async fn clear_attempts(&self, account: &str) -> StoreResult<()>;
}

/// Opens the store named by a `sqlite://…` or `postgres://…` URL and applies pending migrations.
pub async fn connect(database_url: &str) -> StoreResult<std::sync::Arc<dyn Store>> {
    if database_url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(SqliteStore::open(database_url).await?))
    } else if database_url.starts_with("postgres:") || database_url.starts_with("postgresql:") {
        Ok(std::sync::Arc::new(
            PostgresStore::open(database_url, None).await?,
        ))
    } else {
        Err(StoreError::InvalidUrl(
            "the database URL must start with sqlite:// or postgres://".to_string(),
        ))
    }
}
