use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::StoreResult;

/// PostgreSQL, for several server processes sharing one database.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
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
        let store = Self { pool };
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
    fn quote_identifier_doubles_quotes() {
        assert_eq!(quote_identifier("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn escape_startup_option_escapes_whitespace() {
        assert_eq!(escape_startup_option("\"a b\\c\""), "\"a\\ b\\\\c\"");
    }
}
