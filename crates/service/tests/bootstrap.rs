//! Bootstrap runs exactly once, even when two server processes start against one empty
//! database at the same moment. Each "process" here has its own store and connection pool.

use std::sync::Arc;

use medgate_fhir::search::SearchRequest;
use medgate_service::clock::SystemClock;
use medgate_service::random::OsRandom;
use medgate_service::{Secret, ServiceConfig, Services};
use medgate_store::{PostgresStore, SearchScope, SqliteStore, Store};

fn services(store: Arc<dyn Store>) -> Services {
    let mut config = ServiceConfig::new("http://localhost:8103/");
    config.password_hash_workers = 1;
    Services::new(
        config,
        store,
        Arc::new(SystemClock),
        Arc::new(OsRandom::new()),
    )
}

async fn count(store: &dyn Store, request: SearchRequest) -> usize {
    store
        .search(SearchScope {
            request: &request,
            project_id: None,
            restriction: None,
        })
        .await
        .unwrap()
        .len()
}

async fn race(first: Arc<dyn Store>, second: Arc<dyn Store>) {
    let (a, b) = tokio::join!(
        async {
            services(first.clone())
                .bootstrap(
                    "admin@example.com",
                    Some(Secret::from("violet-Lantern-47-orbit")),
                )
                .await
        },
        async {
            services(second.clone())
                .bootstrap(
                    "admin@example.com",
                    Some(Secret::from("violet-Lantern-47-orbit")),
                )
                .await
        },
    );
    let created = [a.unwrap().created, b.unwrap().created];
    assert_eq!(
        created.iter().filter(|created| **created).count(),
        1,
        "exactly one process bootstraps"
    );

    let store = first.as_ref();
    assert_eq!(
        count(
            store,
            SearchRequest::new("User").filter("email", "admin@example.com")
        )
        .await,
        1
    );
    assert_eq!(count(store, SearchRequest::new("Project")).await, 1);
    assert_eq!(
        count(store, SearchRequest::new("ProjectMembership")).await,
        1
    );
    assert_eq!(
        count(
            store,
            SearchRequest::new("JsonWebKey").filter("active", "true")
        )
        .await,
        1
    );

    // A later start finds the database bootstrapped and changes nothing.
    let again = services(second)
        .bootstrap("admin@example.com", None)
        .await
        .unwrap();
    assert!(!again.created);
    assert!(again.generated_password.is_none());
}

#[tokio::test]
async fn sqlite_bootstrap_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/medgate.db", dir.path().display());
    let first = SqliteStore::open(&url).await.unwrap();
    let second = SqliteStore::open(&url).await.unwrap();
    race(Arc::new(first), Arc::new(second)).await;
}

#[tokio::test]
async fn postgres_bootstrap_once() {
    let Ok(url) = std::env::var("MEDGATE_TEST_POSTGRES_URL") else {
        eprintln!("postgres_bootstrap_once skipped: set MEDGATE_TEST_POSTGRES_URL to run it");
        return;
    };
    let schema = format!("bootstrap_{}", uuid::Uuid::new_v4().simple());
    // Both processes connect and migrate at the same time, as two servers starting together would.
    let (first, second) = tokio::join!(
        PostgresStore::open(&url, Some(&schema)),
        PostgresStore::open(&url, Some(&schema))
    );
    race(Arc::new(first.unwrap()), Arc::new(second.unwrap())).await;
}
