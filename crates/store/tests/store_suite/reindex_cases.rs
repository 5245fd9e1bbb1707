//! Rebuilding the search index at open when it was extracted under other rules: the index
//! is emptied and marked as version 0 by hand, and opening the store again restores it.

use std::sync::Arc;

use medgate_fhir::search::INDEX_VERSION;
use medgate_store::{PostgresStore, SqliteStore, Store};
use serde_json::json;
use sqlx::Connection as _;
use uuid::Uuid;

use super::{create, drop_schema, id_of, postgres_url, search_ids};

/// SQL that makes the index look like one from before versioning: no rows, version 0.
const OUTDATE_INDEX: [&str; 2] = [
    "DELETE FROM search_index",
    "UPDATE search_index_version SET version = 0",
];

/// Creates resources, checks they are found, and returns their ids.
async fn fill(store: &dyn Store) -> (String, String) {
    let patient = create(
        store,
        json!({"resourceType": "Patient", "name": [{"family": "Rebuild"}]}),
        1,
    )
    .await;
    let reference = format!("Patient/{}", id_of(&patient));
    let observation = create(
        store,
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": reference}, "effectiveDateTime": "2020-05-01"}),
        2,
    )
    .await;
    (id_of(&patient).to_string(), id_of(&observation).to_string())
}

/// Checks that the searches over both resources find them, or find nothing.
async fn assert_searchable(store: &dyn Store, ids: &(String, String), searchable: bool) {
    let expect = |id: &String| {
        if searchable {
            vec![id.clone()]
        } else {
            Vec::new()
        }
    };
    assert_eq!(
        search_ids(store, "Patient", &[("family", "rebuild")]).await,
        expect(&ids.0)
    );
    let compartment = format!("Patient/{}", ids.0);
    assert_eq!(
        search_ids(
            store,
            "Observation",
            &[("_compartment", compartment.as_str()), ("date", "2020-05")]
        )
        .await,
        expect(&ids.1)
    );
}

#[tokio::test]
async fn sqlite_index_rebuilt_at_open() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let url = format!("sqlite://{}/db.sqlite", dir.path().display());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&url).await.expect("open"));
    let ids = fill(&*store).await;
    assert_searchable(&*store, &ids, true).await;

    let mut connection = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("connect to outdate the index");
    for statement in OUTDATE_INDEX {
        sqlx::query(statement)
            .execute(&mut connection)
            .await
            .unwrap_or_else(|error| panic!("{statement}: {error}"));
    }
    assert_searchable(&*store, &ids, false).await;

    drop(store);
    let reopened = SqliteStore::open(&url).await.expect("reopen");
    assert_searchable(&reopened, &ids, true).await;
    let version: i64 = sqlx::query_scalar("SELECT version FROM search_index_version")
        .fetch_one(&mut connection)
        .await
        .expect("read the index version");
    assert_eq!(version, INDEX_VERSION);
    let _ = connection.close().await;
}

#[tokio::test]
async fn postgres_index_rebuilt_at_open() {
    let Some(url) = postgres_url() else {
        return;
    };
    let schema = format!("reindex_test_{}", Uuid::new_v4().simple());
    let store = PostgresStore::open(&url, Some(&schema))
        .await
        .expect("open");
    let ids = fill(&store).await;
    assert_searchable(&store, &ids, true).await;

    let mut connection = sqlx::PgConnection::connect(&url)
        .await
        .expect("connect to outdate the index");
    sqlx::query(&format!("SET search_path TO \"{schema}\""))
        .execute(&mut connection)
        .await
        .expect("set the search path");
    for statement in OUTDATE_INDEX {
        sqlx::query(statement)
            .execute(&mut connection)
            .await
            .unwrap_or_else(|error| panic!("{statement}: {error}"));
    }
    assert_searchable(&store, &ids, false).await;

    let reopened = PostgresStore::open(&url, Some(&schema))
        .await
        .expect("reopen");
    assert_searchable(&reopened, &ids, true).await;
    let version: i64 = sqlx::query_scalar("SELECT version FROM search_index_version")
        .fetch_one(&mut connection)
        .await
        .expect("read the index version");
    assert_eq!(version, INDEX_VERSION);
    let _ = connection.close().await;
    drop_schema(&url, &schema).await;
}
