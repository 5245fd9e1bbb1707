//! The [`Store`](crate::Store) implementation, written once and expanded for each back end.
//! The SQL is shared (see `sql.rs`); only the sqlx database type differs, and a macro avoids
//! the long list of generic bounds that sqlx would need for one generic implementation.

macro_rules! impl_store {
    ($store:ty, $db:ty) => {
        use async_trait::async_trait;
        use serde_json::Value;
        use sqlx::Row as _;

        use crate::sql::{self, Bind, Row, Statement};
        use crate::{SearchScope, Store, StoreError, WriteOp};

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
            let mut query = sqlx::query::<$db>(&statement.sql);
            for bind in statement.binds {
                query = match bind {
                    Bind::Text(text) => query.bind(text),
                    Bind::Int(number) => query.bind(number),
                };
            }
            query.execute(&mut **tx).await?;
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
            row: &Row,
            resource: Option<&Value>,
        ) -> Result<(), StoreError> {
            sqlx::query::<$db>(sql::DELETE_INDEX)
                .bind(&row.resource_type)
                .bind(&row.id)
                .execute(&mut **tx)
                .await?;
            if let Some(statement) = resource
                .and_then(|resource| sql::insert_index(&row.resource_type, &row.id, resource))
            {
                execute_statement(tx, statement).await?;
            }
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
                    replace_index(tx, &row, Some(&resource)).await
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
                    replace_index(tx, &row, Some(&resource)).await
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
                    replace_index(tx, &row, None).await
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
            }
        }

        fn parse_content(content: &str) -> Result<Value, StoreError> {
            Ok(serde_json::from_str(content)?)
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
                let statement =
                    sql::select_search(scope.request, scope.project_id, scope.restriction);
                let mut query = sqlx::query::<$db>(&statement.sql);
                for bind in statement.binds {
                    query = match bind {
                        Bind::Text(text) => query.bind(text),
                        Bind::Int(number) => query.bind(number),
                    };
                }
                let rows = query.fetch_all(self.reader()).await?;
                rows.iter()
                    .map(|row| parse_content(&row.try_get::<String, _>("content")?))
                    .collect()
            }

            async fn write(&self, batch: Vec<WriteOp>) -> Result<(), StoreError> {
                let mut tx = self.writer().begin().await?;
                for op in batch {
                    apply(&mut tx, op).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query::<$db>("SELECT 1")
                    .execute(self.reader())
                    .await?;
                Ok(())
            }
        }
    };
}

pub(crate) use impl_store;
