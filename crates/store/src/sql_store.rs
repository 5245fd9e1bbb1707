//! The [`Store`](crate::Store) implementation, written once and expanded for each back end.
//! The SQL is shared (see `sql.rs` and `search_sql.rs`), and only the sqlx database type and
//! the row lock differ. A macro avoids the long list of generic bounds that sqlx would need
//! for one generic implementation.

macro_rules! impl_store {
    (
        $store:ty,
        $db:ty,
        lock_rows = $lock_rows:expr,
        skip_locked = $skip_locked:expr,
        insertion_order = $insertion_order:expr
    ) => {
        use async_trait::async_trait;
        use medgate_fhir::search::INDEX_VERSION;
        use serde_json::Value;
        use sqlx::Row as _;
        use tracing::{error, info};

        use crate::lockout::{from_millis, to_millis};
        use crate::search_sql;
        use crate::sql::{self, Bind, Row, Statement};
        use crate::{
            AttemptReservation, AttemptState, LockoutPolicy, Change, OutboxMessage, SearchScope,
            Store, StoreError, WriteOp,
        };

        /// Resources re-indexed per transaction when the extraction rules change.
        const REINDEX_BATCH: i64 = 500;

        fn bind_all<'q>(
            mut query: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>>,
            binds: Vec<Bind>,
        ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>> {
            for bind in binds {
                query = match bind {
                    Bind::Text(text) => query.bind(text),
                    Bind::OptionalText(text) => query.bind(text),
                    Bind::Int(number) => query.bind(number),
                    Bind::Float(number) => query.bind(number),
                    Bind::OptionalFloat(number) => query.bind(number),
                };
            }
            query
        }

        fn map_insert_error(error: sqlx::Error) -> StoreError {
            match &error {
                sqlx::Error::Database(database) if database.is_unique_violation() => {
                    StoreError::Duplicate
                }
                _ => StoreError::Database(error),
            }
        }

        async fn execute_statement(
            tx: &mut sqlx::Transaction<'_, $db>,
            statement: Statement,
        ) -> Result<(), StoreError> {
            bind_all(sqlx::query::<$db>(&statement.sql), statement.binds)
                .execute(&mut **tx)
                .await?;
            Ok(())
        }

        async fn write_version(
            tx: &mut sqlx::Transaction<'_, $db>,
            row: &Row,
            deleted: bool,
        ) -> Result<(), StoreError> {
            sqlx::query::<$db>(sql::INSERT_VERSION)
                .bind(&row.version_id)
                .bind(&row.resource_type)
                .bind(&row.id)
                .bind(&row.last_updated)
                .bind(deleted)
                .bind(&row.content)
                .execute(&mut **tx)
                .await
                .map_err(map_insert_error)?;
            Ok(())
        }

        async fn replace_index(
            tx: &mut sqlx::Transaction<'_, $db>,
            resource_type: &str,
            id: &str,
            resource: Option<&Value>,
        ) -> Result<(), StoreError> {
            sqlx::query::<$db>(sql::DELETE_INDEX)
                .bind(resource_type)
                .bind(id)
                .execute(&mut **tx)
                .await?;
            if let Some(resource) = resource {
                for statement in sql::insert_index(resource_type, id, resource) {
                    execute_statement(tx, statement).await?;
                }
            }
            Ok(())
        }

        /// Rebuilds every current resource's index rows when they were extracted under
        /// other rules than [`INDEX_VERSION`], in batches of one transaction each, and then
        /// records the version. Each batch locks its rows (on PostgreSQL), so a concurrent
        /// update cannot be overwritten with rows of the version read before it.
        async fn rebuild_outdated_index(
            pool: &sqlx::Pool<$db>,
        ) -> Result<(), StoreError> {
            let stored: i64 = sqlx::query_scalar::<$db, i64>(sql::SELECT_INDEX_VERSION)
                .fetch_one(pool)
                .await?;
            if stored == INDEX_VERSION {
                return Ok(());
            }
            info!(from = stored, to = INDEX_VERSION, "rebuilding the search index");
            let batch_sql = format!("{}{}", sql::SELECT_REINDEX_BATCH, $lock_rows);
            let mut after = (String::new(), String::new());
            let mut rebuilt = 0_u64;
            let mut unreadable = 0_u64;
            loop {
                let mut tx = pool.begin().await?;
                let rows = sqlx::query::<$db>(&batch_sql)
                    .bind(&after.0)
                    .bind(&after.1)
                    .bind(REINDEX_BATCH)
                    .fetch_all(&mut *tx)
                    .await?;
                let Some(last) = rows.last() else {
                    tx.commit().await?;
                    break;
                };
                after = (last.try_get("resource_type")?, last.try_get("id")?);
                for row in &rows {
                    let resource_type: String = row.try_get("resource_type")?;
                    let id: String = row.try_get("id")?;
                    let content: String = row.try_get("content")?;
                    let resource = match serde_json::from_str::<Value>(&content) {
                        Ok(resource) => Some(resource),
                        Err(parse_error) => {
                            // The resource stays readable as stored, and unsearchable.
                            error!(resource_type, id, error = %parse_error,
                                "stored resource is not valid JSON; it keeps no search values");
                            unreadable += 1;
                            None
                        }
                    };
                    replace_index(&mut tx, &resource_type, &id, resource.as_ref()).await?;
                }
                tx.commit().await?;
                rebuilt += rows.len() as u64;
                info!(resources = rebuilt, "search index rebuild in progress");
            }
            sqlx::query::<$db>(sql::UPDATE_INDEX_VERSION)
                .bind(INDEX_VERSION)
                .execute(pool)
                .await?;
            info!(resources = rebuilt, unreadable, version = INDEX_VERSION,
                "rebuilt the search index");
            Ok(())
        }

        async fn apply(tx: &mut sqlx::Transaction<'_, $db>, op: WriteOp) -> Result<(), StoreError> {
            match op {
                WriteOp::Create(resource) => {
                    let row = Row::from_resource(&resource)?;
                    sqlx::query::<$db>(sql::INSERT_RESOURCE)
                        .bind(&row.resource_type)
                        .bind(&row.id)
                        .bind(&row.version_id)
                        .bind(&row.project_id)
                        .bind(&row.last_updated)
                        .bind(&row.content)
                        .execute(&mut **tx)
                        .await
                        .map_err(map_insert_error)?;
                    write_version(tx, &row, false).await?;
                    replace_index(tx, &row.resource_type, &row.id, Some(&resource)).await
                }
                WriteOp::Update {
                    resource,
                    expected_version,
                } => {
                    let row = Row::from_resource(&resource)?;
                    let sql_text = if expected_version.is_some() {
                        sql::UPDATE_RESOURCE_IF_VERSION
                    } else {
                        sql::UPDATE_RESOURCE
                    };
                    let mut query = sqlx::query::<$db>(sql_text)
                        .bind(&row.resource_type)
                        .bind(&row.id)
                        .bind(&row.version_id)
                        .bind(&row.project_id)
                        .bind(&row.last_updated)
                        .bind(&row.content);
                    if let Some(expected) = &expected_version {
                        query = query.bind(expected);
                    }
                    let updated = query.execute(&mut **tx).await?.rows_affected();
                    if updated == 0 {
                        let exists = sqlx::query::<$db>(sql::SELECT_CURRENT)
                            .bind(&row.resource_type)
                            .bind(&row.id)
                            .fetch_optional(&mut **tx)
                            .await?
                            .is_some();
                        return Err(if exists {
                            StoreError::VersionConflict
                        } else {
                            StoreError::NotFound
                        });
                    }
                    write_version(tx, &row, false).await?;
                    replace_index(tx, &row.resource_type, &row.id, Some(&resource)).await
                }
                WriteOp::Delete {
                    resource_type,
                    id,
                    version_id,
                    last_updated,
                } => {
                    let deleted = sqlx::query::<$db>(sql::DELETE_RESOURCE)
                        .bind(&resource_type)
                        .bind(&id)
                        .bind(&version_id)
                        .bind(&last_updated)
                        .execute(&mut **tx)
                        .await?
                        .rows_affected();
                    if deleted == 0 {
                        // The row is either missing or already deleted, which a read reports as Gone.
                        let exists = sqlx::query::<$db>(sql::SELECT_CURRENT)
                            .bind(&resource_type)
                            .bind(&id)
                            .fetch_optional(&mut **tx)
                            .await?
                            .is_some();
                        return Err(if exists {
                            StoreError::Gone
                        } else {
                            StoreError::NotFound
                        });
                    }
                    let row = Row {
                        resource_type,
                        id,
                        version_id,
                        last_updated,
                        project_id: None,
                        content: "{}".to_string(),
                    };
                    write_version(tx, &row, true).await?;
                    replace_index(tx, &row.resource_type, &row.id, None).await
                }
                WriteOp::Claim { name, at } => {
                    let claimed = sqlx::query::<$db>(sql::CLAIM)
                        .bind(&name)
                        .bind(&at)
                        .execute(&mut **tx)
                        .await?
                        .rows_affected();
                    if claimed == 0 {
                        return Err(StoreError::AlreadyClaimed(name));
                    }
                    Ok(())
                }
                WriteOp::Enqueue(message) => {
                    sqlx::query::<$db>(sql::INSERT_OUTBOX)
                        .bind(&message.id)
                        .bind(&message.kind)
                        .bind(serde_json::to_string(&message.payload)?)
                        .bind(sql::outbox_instant(message.due_at))
                        .bind(sql::outbox_instant(message.created_at))
                        .execute(&mut **tx)
                        .await
                        .map_err(map_insert_error)?;
                    Ok(())
                }
                // Only the notifying layer in front of the store reads these fields, and
                // they must never reach the database.
                WriteOp::AddToNotifications { .. } => Ok(()),
            }
        }

        fn outbox_message(row: &<$db as sqlx::Database>::Row) -> Result<OutboxMessage, StoreError> {
            let attempts: i64 = row.try_get("attempts")?;
            Ok(OutboxMessage {
                id: row.try_get("id")?,
                kind: row.try_get("kind")?,
                payload: parse_content(&row.try_get::<String, _>("payload")?)?,
                attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                due_at: sql::parse_outbox_instant(&row.try_get::<String, _>("due_at")?)?,
                created_at: sql::parse_outbox_instant(&row.try_get::<String, _>("created_at")?)?,
            })
        }

        fn parse_content(content: &str) -> Result<Value, StoreError> {
            Ok(serde_json::from_str(content)?)
        }

        impl $store {
            /// Brings the search index up to the current extraction rules; runs at open.
            async fn rebuild_index_if_outdated(&self) -> Result<(), StoreError> {
                rebuild_outdated_index(self.writer()).await
            }
        }

        #[async_trait]
        impl Store for $store {
            async fn read(&self, resource_type: &str, id: &str) -> Result<Value, StoreError> {
                let row = sqlx::query::<$db>(sql::SELECT_CURRENT)
                    .bind(resource_type)
                    .bind(id)
                    .fetch_optional(self.reader())
                    .await?
                    .ok_or(StoreError::NotFound)?;
                if row.try_get::<bool, _>("deleted")? {
                    return Err(StoreError::Gone);
                }
                parse_content(&row.try_get::<String, _>("content")?)
            }

            async fn read_version(
                &self,
                resource_type: &str,
                id: &str,
                version_id: &str,
            ) -> Result<Value, StoreError> {
                let row = sqlx::query::<$db>(sql::SELECT_VERSION)
                    .bind(resource_type)
                    .bind(id)
                    .bind(version_id)
                    .fetch_optional(self.reader())
                    .await?
                    .ok_or(StoreError::NotFound)?;
                if row.try_get::<bool, _>("deleted")? {
                    return Err(StoreError::Gone);
                }
                parse_content(&row.try_get::<String, _>("content")?)
            }

            async fn history(
                &self,
                resource_type: &str,
                id: &str,
            ) -> Result<Vec<Value>, StoreError> {
                let rows = sqlx::query::<$db>(sql::SELECT_HISTORY)
                    .bind(resource_type)
                    .bind(id)
                    .fetch_all(self.reader())
                    .await?;
                rows.iter()
                    .map(|row| parse_content(&row.try_get::<String, _>("content")?))
                    .collect()
            }

            async fn search(&self, scope: SearchScope<'_>) -> Result<Vec<Value>, StoreError> {
                let statement = search_sql::select_search(
                    scope.request,
                    scope.project_id,
                    scope.restriction,
                    $insertion_order,
                );
                let rows = bind_all(sqlx::query::<$db>(&statement.sql), statement.binds)
                    .fetch_all(self.reader())
                    .await?;
                rows.iter()
                    .map(|row| parse_content(&row.try_get::<String, _>("content")?))
                    .collect()
            }

            async fn count(&self, scope: SearchScope<'_>) -> Result<u64, StoreError> {
                let statement =
                    search_sql::count_search(scope.request, scope.project_id, scope.restriction);
                let row = bind_all(sqlx::query::<$db>(&statement.sql), statement.binds)
                    .fetch_one(self.reader())
                    .await?;
                let count: i64 = row.try_get(0)?;
                Ok(u64::try_from(count).unwrap_or_default())
            }

            async fn write(&self, batch: Vec<WriteOp>) -> Result<(), StoreError> {
                let changed = sql::changed_keys(&batch);
                let mut tx = self.writer().begin().await?;
                for op in batch {
                    apply(&mut tx, op).await?;
                }
                self.announce_to_others(&mut tx, &changed).await?;
                tx.commit().await?;
                for (resource_type, id) in changed {
                    // Sending fails only when no subscriber exists, and then nothing needs the change.
                    let _ = self.changes.send(Change::Resource { resource_type, id });
                }
                Ok(())
            }

            fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Change> {
                self.changes.subscribe()
            }

            async fn claim_outbox(
                &self,
                kind: &str,
                now: chrono::DateTime<chrono::Utc>,
                lease_until: chrono::DateTime<chrono::Utc>,
                limit: u32,
            ) -> Result<Vec<OutboxMessage>, StoreError> {
                let statement = sql::CLAIM_OUTBOX.replace("{lock}", $skip_locked);
                let rows = sqlx::query::<$db>(&statement)
                    .bind(kind)
                    .bind(sql::outbox_instant(now))
                    .bind(sql::outbox_instant(lease_until))
                    .bind(i64::from(limit))
                    .fetch_all(self.writer())
                    .await?;
                let mut messages = rows
                    .iter()
                    .map(outbox_message)
                    .collect::<Result<Vec<_>, _>>()?;
                // RETURNING gives no order; callers get the oldest rows first.
                messages.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
                Ok(messages)
            }

            async fn finish_outbox(&self, id: &str) -> Result<(), StoreError> {
                sqlx::query::<$db>(sql::FINISH_OUTBOX)
                    .bind(id)
                    .execute(self.writer())
                    .await?;
                Ok(())
            }

            async fn retry_outbox(
                &self,
                id: &str,
                due_at: chrono::DateTime<chrono::Utc>,
                error: &str,
            ) -> Result<(), StoreError> {
                sqlx::query::<$db>(sql::RETRY_OUTBOX)
                    .bind(id)
                    .bind(sql::outbox_instant(due_at))
                    .bind(error)
                    .execute(self.writer())
                    .await?;
                Ok(())
            }

            async fn abandon_outbox(&self, id: &str, error: &str) -> Result<(), StoreError> {
                sqlx::query::<$db>(sql::ABANDON_OUTBOX)
                    .bind(id)
                    .bind(error)
                    .execute(self.writer())
                    .await?;
                Ok(())
            }

            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query::<$db>("SELECT 1")
                    .execute(self.reader())
                    .await?;
                Ok(())
            }

            async fn reserve_attempt(
                &self,
                account: &str,
                policy: &LockoutPolicy,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<AttemptReservation, StoreError> {
                // The row is created first so that the SELECT can lock it: on PostgreSQL a
                // concurrent reservation of the same account waits at the lock and then reads
                // the count this one wrote. SQLite's single writer connection serializes the
                // whole transaction anyway.
                let mut tx = self.writer().begin().await?;
                sqlx::query::<$db>(sql::INSERT_ATTEMPTS)
                    .bind(account)
                    .bind(to_millis(now))
                    .execute(&mut *tx)
                    .await?;
                let row = sqlx::query::<$db>(&format!("{}{}", sql::SELECT_ATTEMPTS, $lock_rows))
                    .bind(account)
                    .fetch_one(&mut *tx)
                    .await?;
                let state = AttemptState {
                    attempts: row.try_get("attempts")?,
                    locks: row.try_get("locks")?,
                    locked_until: row
                        .try_get::<Option<i64>, _>("locked_until")?
                        .map(from_millis),
                    last_attempt_at: from_millis(row.try_get("last_attempt_at")?),
                };
                let (reservation, next) = policy.reserve(state, now);
                if let Some(next) = next {
                    sqlx::query::<$db>(sql::UPDATE_ATTEMPTS)
                        .bind(account)
                        .bind(next.attempts)
                        .bind(next.locks)
                        .bind(next.locked_until.map(to_millis))
                        .bind(to_millis(next.last_attempt_at))
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(reservation)
            }

            async fn clear_attempts(&self, account: &str) -> Result<(), StoreError> {
                sqlx::query::<$db>(sql::DELETE_ATTEMPTS)
                    .bind(account)
                    .execute(self.writer())
                    .await?;
                Ok(())
            }
        }
    };
}

pub(crate) use impl_store;
