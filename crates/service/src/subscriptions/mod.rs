//! FHIR `Subscription`s with a `rest-hook` channel: each write of a resource that matches an
//! active subscription of the same project queues a notification in the same batch, and
//! the background sender posts the resource to `channel.endpoint`.
//!
//! The hook sits in front of the store ([`NotifyingStore`]), so every write path fires it: the
//! FHIR API, transaction Bundles and the flows that write `UserSecurityRequest` or
//! `ProjectMembership` themselves.

mod criteria;
mod webhook;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use medgate_fhir::search::{MAX_COUNT, SearchRequest};
use medgate_store::{
    AttemptReservation, Change, LockoutPolicy, OutboxMessage, SearchScope, Store, StoreError,
    StoreResult, WriteOp,
};
use serde_json::{Map, Value, json};

pub use criteria::{
    INTERACTION_EXTENSION, Interaction, MAX_ATTEMPTS_EXTENSION, SECRET_EXTENSION, fires_on,
};
pub use webhook::signature;

use crate::Services;
use crate::clock::Clock;
use crate::delivery::{DeliveryError, Wake};
use crate::fhir_rest::present_to_project_admin;
use crate::random::{Random, uuid_v7};

/// The outbox `kind` of rest-hook notifications.
pub const OUTBOX_KIND: &str = "webhook";

/// Types whose writes never notify: sign-in bookkeeping written on every token request, and
/// signing keys.
const SILENT_TYPES: &[&str] = &["Login", "JsonWebKey"];

/// The [`WriteOp::AddToNotifications`] fields of a batch, by resource type and id.
type AddedFields<'a> = BTreeMap<(&'a str, &'a str), &'a Map<String, Value>>;

/// A [`Store`] that adds the rest-hook notifications of each batch to the batch itself, and
/// wakes the sender after a batch that queued anything.
pub struct NotifyingStore {
    inner: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
    wake: Wake,
}

impl NotifyingStore {
    pub fn new(
        inner: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Random>,
        wake: Wake,
    ) -> Self {
        Self {
            inner,
            clock,
            random,
            wake,
        }
    }

    /// Builds the notifications a batch causes, each with the [`WriteOp::AddToNotifications`]
    /// fields of its resource. Subscriptions are read once per project in the batch, and only
    /// for projects with a create or update of a type that may notify.
    async fn notifications(
        &self,
        batch: &[WriteOp],
        added_fields: &AddedFields<'_>,
    ) -> StoreResult<Vec<WriteOp>> {
        let mut writes_by_project: BTreeMap<&str, Vec<(&Value, Interaction)>> = BTreeMap::new();
        for op in batch {
            let (resource, interaction) = match op {
                WriteOp::Create(resource) => (resource, Interaction::Create),
                WriteOp::Update { resource, .. } => (resource, Interaction::Update),
                _ => continue,
            };
            let resource_type = resource["resourceType"].as_str().unwrap_or_default();
            if SILENT_TYPES.contains(&resource_type) {
                continue;
            }
            if let Some(project_id) = resource["meta"]["project"].as_str() {
                writes_by_project
                    .entry(project_id)
                    .or_default()
                    .push((resource, interaction));
            }
        }

        let mut notifications = Vec::new();
        for (project_id, writes) in writes_by_project {
            let subscriptions = self.active_rest_hooks(project_id).await?;
            for subscription in &subscriptions {
                for (resource, interaction) in &writes {
                    if fires_on(subscription, resource, *interaction) {
                        let fields = added_fields
                            .get(&(
                                resource["resourceType"].as_str().unwrap_or_default(),
                                resource["id"].as_str().unwrap_or_default(),
                            ))
                            .copied();
                        notifications.push(self.notification(subscription, resource, fields));
                    }
                }
            }
        }
        Ok(notifications)
    }

    async fn active_rest_hooks(&self, project_id: &str) -> StoreResult<Vec<Value>> {
        let request = SearchRequest::new("Subscription")
            .filter("status", "active")
            .filter("type", "rest-hook")
            .count(MAX_COUNT);
        self.inner
            .search(SearchScope {
                request: &request,
                project_id: Some(project_id),
                restriction: None,
            })
            .await
    }

    fn notification(
        &self,
        subscription: &Value,
        resource: &Value,
        added_fields: Option<&Map<String, Value>>,
    ) -> WriteOp {
        let now = self.clock.now();
        let max_attempts =
            criteria::extension(subscription, MAX_ATTEMPTS_EXTENSION, "valueInteger")
                .and_then(Value::as_u64);
        WriteOp::Enqueue(OutboxMessage {
            id: uuid_v7(self.random.as_ref(), now),
            kind: OUTBOX_KIND.to_string(),
            payload: json!({
                "subscription": subscription["id"],
                "resource": resource,
                "maxAttempts": max_attempts,
                "addedFields": added_fields,
            }),
            attempts: 0,
            due_at: now,
            created_at: now,
        })
    }
}

#[async_trait]
impl Store for NotifyingStore {
    async fn read(&self, resource_type: &str, id: &str) -> StoreResult<Value> {
        self.inner.read(resource_type, id).await
    }

    async fn read_version(
        &self,
        resource_type: &str,
        id: &str,
        version_id: &str,
    ) -> StoreResult<Value> {
        self.inner.read_version(resource_type, id, version_id).await
    }

    async fn history(&self, resource_type: &str, id: &str) -> StoreResult<Vec<Value>> {
        self.inner.history(resource_type, id).await
    }

    async fn search(&self, scope: SearchScope<'_>) -> StoreResult<Vec<Value>> {
        self.inner.search(scope).await
    }

    async fn count(&self, scope: SearchScope<'_>) -> StoreResult<u64> {
        self.inner.count(scope).await
    }

    async fn write(&self, batch: Vec<WriteOp>) -> StoreResult<()> {
        // The added fields go only into notifications, never to the store.
        let (additions, mut batch): (Vec<WriteOp>, Vec<WriteOp>) = batch
            .into_iter()
            .partition(|op| matches!(op, WriteOp::AddToNotifications { .. }));
        let mut added_fields = AddedFields::new();
        for op in &additions {
            if let WriteOp::AddToNotifications {
                resource_type,
                id,
                fields,
            } = op
            {
                added_fields.insert((resource_type, id), &fields.0);
            }
        }

        let notifications = self.notifications(&batch, &added_fields).await?;
        let queues =
            !notifications.is_empty() || batch.iter().any(|op| matches!(op, WriteOp::Enqueue(_)));
        batch.extend(notifications);
        self.inner.write(batch).await?;
        if queues {
            self.wake.notify();
        }
        Ok(())
    }

    async fn claim_outbox(
        &self,
        kind: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<OutboxMessage>> {
        self.inner.claim_outbox(kind, now, lease_until, limit).await
    }

    async fn finish_outbox(&self, id: &str) -> StoreResult<()> {
        self.inner.finish_outbox(id).await
    }

    async fn retry_outbox(&self, id: &str, due_at: DateTime<Utc>, error: &str) -> StoreResult<()> {
        self.inner.retry_outbox(id, due_at, error).await
    }

    async fn abandon_outbox(&self, id: &str, error: &str) -> StoreResult<()> {
        self.inner.abandon_outbox(id, error).await
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Change> {
        self.inner.subscribe()
    }

    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }

    async fn reserve_attempt(
        &self,
        account: &str,
        policy: &LockoutPolicy,
        now: DateTime<Utc>,
    ) -> StoreResult<AttemptReservation> {
        self.inner.reserve_attempt(account, policy, now).await
    }

    async fn clear_attempts(&self, account: &str) -> StoreResult<()> {
        self.inner.clear_attempts(account).await
    }
}

impl Services {
    /// Posts one queued notification. The subscription is read again first, so a deleted or
    /// deactivated subscription stops its pending deliveries, and a changed secret or
    /// endpoint applies to them.
    pub async fn deliver_webhook(
        &self,
        http: &reqwest::Client,
        row: &OutboxMessage,
    ) -> Result<(), DeliveryError> {
        let Some(subscription_id) = row.payload["subscription"].as_str() else {
            return Err(DeliveryError::Permanent(
                "the queued notification names no subscription".to_string(),
            ));
        };
        let subscription = match self.repo.store.read("Subscription", subscription_id).await {
            Ok(subscription) => subscription,
            Err(StoreError::NotFound | StoreError::Gone) => {
                return Err(DeliveryError::Permanent(format!(
                    "subscription {subscription_id} was deleted"
                )));
            }
            Err(error) => {
                return Err(DeliveryError::Transient(format!(
                    "cannot read subscription {subscription_id}: {error}"
                )));
            }
        };
        if subscription["status"].as_str() != Some("active") {
            return Err(DeliveryError::Permanent(format!(
                "subscription {subscription_id} is no longer active"
            )));
        }
        self.check_subscription_author(subscription_id, &subscription)
            .await?;

        // Fields added by the writing flow, such as the clear secret of a set-password link
        // whose email the project sends itself, go in after the secret filter. Only
        // subscriptions of project admins (checked above) are delivered, as for Medplum's
        // custom-email Bots, which read `UserSecurityRequest.secret`.
        let mut resource = present_to_project_admin(row.payload["resource"].clone());
        if let (Some(object), Some(added_fields)) = (
            resource.as_object_mut(),
            row.payload["addedFields"].as_object(),
        ) {
            object.extend(added_fields.clone());
        }
        let body = serde_json::to_vec(&resource).map_err(|error| {
            DeliveryError::Permanent(format!("the queued resource is not serializable: {error}"))
        })?;
        webhook::post(http, &subscription, body).await
    }
}

impl Services {
    /// Checks that the server itself or an admin of the subscription's project wrote the
    /// subscription. A notification carries every matching resource of the project, whatever
    /// the access policy of the member who subscribed, so only admins' subscriptions are
    /// delivered, as Medplum's custom-email recipe requires an admin Bot.
    async fn check_subscription_author(
        &self,
        subscription_id: &str,
        subscription: &Value,
    ) -> Result<(), DeliveryError> {
        let author = subscription["meta"]["author"]["reference"].as_str();
        if author == Some("system") {
            return Ok(());
        }
        let (Some(author), Some(project_id)) = (author, subscription["meta"]["project"].as_str())
        else {
            return Err(DeliveryError::Permanent(format!(
                "subscription {subscription_id} has no author or project"
            )));
        };

        let request = SearchRequest::new("ProjectMembership")
            .filter("profile", author)
            .filter("project", &format!("Project/{project_id}"))
            .count(MAX_COUNT);
        let memberships = self
            .repo
            .store
            .search(SearchScope {
                request: &request,
                project_id: Some(project_id),
                restriction: None,
            })
            .await
            .map_err(|error| {
                DeliveryError::Transient(format!(
                    "cannot read the memberships of the author of subscription \
                     {subscription_id}: {error}"
                ))
            })?;
        let is_admin = memberships.iter().any(|membership| {
            membership["admin"].as_bool() == Some(true)
                && membership["active"].as_bool() != Some(false)
        });
        if is_admin {
            Ok(())
        } else {
            Err(DeliveryError::Permanent(format!(
                "the author of subscription {subscription_id} is not an admin of its project, \
                 so its notifications are not delivered"
            )))
        }
    }
}
