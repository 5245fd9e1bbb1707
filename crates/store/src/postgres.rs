use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::sync::{broadcast, oneshot};

use crate::StoreResult;
use crate::sql::CHANGE_CAPACITY;

/// The prefix of the `NOTIFY` channel on which processes announce their writes.
const CHANNEL_PREFIX: &str = "medgate_changes";

/// PostgreSQL limits identifiers, channel names included, to 63 bytes.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// A `NOTIFY` payload must stay under 8000 bytes; a larger batch is announced as "anything
/// may have changed".
const MAX_PAYLOAD_BYTES: usize = 7900;

/// The payload that means "anything may have changed".
const EVERYTHING: &str = "*";

/// PostgreSQL, for several server processes sharing one database.
///
/// Each write announces the resources it changed with `NOTIFY` in its transaction, so the
/// announcement goes out exactly when the write commits, and a listener task forwards other
/// processes' announcements to [`Store::subscribe`](crate::Store::subscribe).
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    channel: String,
    /// Starts every announcement, so the listener skips this store's own writes, which its
    /// subscribers have heard already.
    instance: String,
    changes: broadcast::Sender<crate::Change>,
    /// Stops the listener task when the last clone of the store is dropped.
    _listener: Arc<oneshot::Sender<()>>,
}

impl PostgresStore {
    /// Connects, migrates and brings the search index up to date. With `schema`, every table
    /// lives in that schema (created if missing), which lets tests share one database without
    /// seeing each other's rows.
    pub async fn open(url: &str, schema: Option<&str>) -> StoreResult<Self> {
        let mut options = PgConnectOptions::from_str(url)?;
        if let Some(schema) = schema {
            // PostgreSQL folds unquoted names to lower case, so CREATE SCHEMA and search_path
            // both quote the name to agree on it.
            let quoted = quote_identifier(schema);
            let bootstrap = PgPoolOptions::new()
                .max_connections(1)
                .connect_with(options.clone())
                .await?;
            // IF NOT EXISTS is not atomic: a process creating the same schema at the same
            // moment can still make this fail with a unique violation, which means it exists.
            let created = sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {quoted}"))
                .execute(&bootstrap)
                .await;
            match created {
                Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {}
                other => {
                    other?;
                }
            }
            bootstrap.close().await;
            options = options.options([("search_path", escape_startup_option(&quoted))]);
        }
        // Plan every statement with its actual values. A generic plan cached while a table
        // was small (a sequential scan) stays in use as the table grows, which made bulk
        // writes slow down with every thousand resources. Planning each time costs far less.
        let options = options.options([("plan_cache_mode", "force_custom_plan")]);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .connect_with(options)
            .await?;
        // The migrator holds an advisory lock, so processes starting together migrate once.
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let channel = change_channel(schema);
        let instance = uuid::Uuid::new_v4().simple().to_string();
        let changes = broadcast::channel(CHANGE_CAPACITY).0;
        // Listening starts before the store is used, so no announcement can be missed.
        let listener = listen(&pool, &channel).await?;
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(forward_changes(
            pool.clone(),
            channel.clone(),
            instance.clone(),
            listener,
            changes.clone(),
            stopped,
        ));
        let store = Self {
            pool,
            channel,
            instance,
            changes,
            _listener: Arc::new(stop),
        };
        store.rebuild_index_if_outdated().await?;
        // Fresh statistics keep the planner from running the index sub-queries of a search
        // once per resource row; autovacuum refreshes them later as the tables grow.
        sqlx::query("ANALYZE resources, search_index")
            .execute(&store.pool)
            .await?;
        Ok(store)
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }

    /// Announces the changed resources to every process listening on the database,
    /// this one included; PostgreSQL delivers the notification only if the transaction
    /// commits.
    async fn announce_to_others(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        changed: &[(String, String)],
    ) -> StoreResult<()> {
        if changed.is_empty() {
            return Ok(());
        }
        let mut keys = changed
            .iter()
            .map(|(resource_type, id)| format!("{resource_type}/{id}"))
            .collect::<Vec<_>>()
            .join("\n");
        if keys.len() > MAX_PAYLOAD_BYTES {
            keys = EVERYTHING.to_string();
        }
        let payload = format!("{}\n{keys}", self.instance);
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(&self.channel)
            .bind(payload)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

/// Names the channel of one database, or of one schema when several stores share a database.
fn change_channel(schema: Option<&str>) -> String {
    let mut channel = match schema {
        Some(schema) => format!("{CHANNEL_PREFIX}_{schema}"),
        None => CHANNEL_PREFIX.to_string(),
    };
    while channel.len() > MAX_IDENTIFIER_BYTES {
        channel.pop();
    }
    channel
}

async fn listen(pool: &PgPool, channel: &str) -> StoreResult<PgListener> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(channel).await?;
    Ok(listener)
}

/// Turns a notification payload (the announcing store's instance, then one key a line)
/// back into changes, with none for `own_instance`'s announcements.
fn parse_payload(payload: &str, own_instance: &str) -> Vec<crate::Change> {
    let (instance, keys) = payload.split_once('\n').unwrap_or(("", payload));
    if instance == own_instance {
        return Vec::new();
    }
    if keys == EVERYTHING {
        return vec![crate::Change::Unknown];
    }
    keys.split('\n')
        .map(|key| match key.split_once('/') {
            Some((resource_type, id)) => crate::Change::Resource {
                resource_type: resource_type.to_string(),
                id: id.to_string(),
            },
            None => crate::Change::Unknown,
        })
        .collect()
}

/// Forwards announcements until the store is dropped. Whenever the connection is lost,
/// announcements may have been missed, so subscribers receive [`crate::Change::Unknown`]. While it
/// stays down they receive it again every second, so nothing they cache meanwhile lives long.
async fn forward_changes(
    pool: PgPool,
    channel: String,
    instance: String,
    listener: PgListener,
    changes: broadcast::Sender<crate::Change>,
    mut stop: oneshot::Receiver<()>,
) {
    const RETRY_DELAY: Duration = Duration::from_secs(1);
    let mut listener = Some(listener);
    loop {
        let Some(active) = listener.as_mut() else {
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(RETRY_DELAY) => {}
            }
            match listen(&pool, &channel).await {
                Ok(reconnected) => {
                    tracing::info!(channel, "listening for other processes' writes again");
                    listener = Some(reconnected);
                }
                Err(error) => {
                    tracing::warn!(channel, %error, "reconnecting the change listener failed")
                }
            }
            let _ = changes.send(crate::Change::Unknown);
            continue;
        };
        let received = tokio::select! {
            _ = &mut stop => return,
            received = active.try_recv() => received,
        };
        match received {
            Ok(Some(notification)) => {
                for change in parse_payload(notification.payload(), &instance) {
                    let _ = changes.send(change);
                }
            }
            // The listener reconnected and listens again, but missed what came in between.
            Ok(None) => {
                tracing::warn!(
                    channel,
                    "the change listener lost its connection and reconnected"
                );
                let _ = changes.send(crate::Change::Unknown);
            }
            Err(error) => {
                tracing::warn!(channel, %error, "the change listener failed; reconnecting");
                listener = None;
                let _ = changes.send(crate::Change::Unknown);
            }
        }
    }
}

/// Quotes an SQL identifier, doubling any `"` inside it.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Escapes a value for the `options` startup parameter, which PostgreSQL splits at whitespace
/// unless a backslash precedes it.
fn escape_startup_option(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for character in value.chars() {
        if character == '\\' || character.is_whitespace() {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}

crate::sql_store::impl_store!(
    PostgresStore,
    sqlx::Postgres,
    lock_rows = " FOR UPDATE",
    skip_locked = " FOR UPDATE SKIP LOCKED",
    insertion_order = "r.seq"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_channel_fits_identifier_limit() {
        assert_eq!(change_channel(None), "medgate_changes");
        assert_eq!(change_channel(Some("test")), "medgate_changes_test");
        assert_eq!(change_channel(Some(&"s".repeat(100))).len(), 63);
    }

    #[test]
    fn parse_payload_reads_keys() {
        assert_eq!(
            parse_payload("other\nLogin/1\nProject/2", "own"),
            vec![
                crate::Change::Resource {
                    resource_type: "Login".to_string(),
                    id: "1".to_string()
                },
                crate::Change::Resource {
                    resource_type: "Project".to_string(),
                    id: "2".to_string()
                },
            ]
        );
        assert_eq!(
            parse_payload("other\n*", "own"),
            vec![crate::Change::Unknown]
        );
        assert!(parse_payload("own\nLogin/1", "own").is_empty());
    }

    #[test]
    fn quote_identifier_doubles_quotes() {
        assert_eq!(quote_identifier("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn escape_startup_option_escapes_whitespace() {
        assert_eq!(escape_startup_option("\"a b\\c\""), "\"a\\ b\\\\c\"");
    }
}
