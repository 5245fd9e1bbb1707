use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use tokio::sync::broadcast;

use crate::StoreResult;
use crate::sql::CHANGE_CAPACITY;

/// SQLite, the embedded default. SQLite allows one writer at a time, so writes go through a
/// pool of one connection and never wait on each other's locks. Reads use their own pool and
/// run beside the writer thanks to WAL mode.
#[derive(Clone)]
pub struct SqliteStore {
    reader: SqlitePool,
    writer: SqlitePool,
    changes: broadcast::Sender<crate::Change>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at a `sqlite://path` URL, migrates it and
    /// brings its search index up to date.
    pub async fn open(url: &str) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let open_readers = || {
            SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options.clone().read_only(true))
        };
        let mut store = Self {
            reader: open_readers().await?,
            writer,
            changes: broadcast::channel(CHANGE_CAPACITY).0,
        };
        store.rebuild_index_if_outdated().await?;
        // Without table statistics SQLite may scan every resource of a type in date order
        // instead of starting from the few index rows a search matches. `PRAGMA optimize`
        // gathers them where they are missing or stale (https://sqlite.org/lang_analyze.html).
        // A connection reads the statistics when it opens, so the readers open afterwards.
        sqlx::query("PRAGMA optimize=0x10002")
            .execute(store.writer())
            .await?;
        store.reader.close().await;
        store.reader = open_readers().await?;
        Ok(store)
    }

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// Does nothing: the embedded database serves one server process, which receives its own
    /// writes through `changes`.
    // NOTE: a second process opening the same file (as `medgate migrate` does) does not
    // receive this one's writes, so only one server process may use an SQLite database.
    async fn announce_to_others(
        &self,
        _tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        _changed: &[(String, String)],
    ) -> StoreResult<()> {
        Ok(())
    }
}

// SQLite has one writer connection, so a batch's transaction already excludes other writes,
// and two outbox claims never overlap.
// Its implicit `rowid` grows with each insert and stays the same on update.
// NOTE: a VACUUM may renumber the rowids of a table without an INTEGER PRIMARY KEY, so
// resources written in the same millisecond could then list in another order.
crate::sql_store::impl_store!(
    SqliteStore,
    sqlx::Sqlite,
    lock_rows = "",
    skip_locked = "",
    insertion_order = "r.rowid"
);
