//! The store test suite. Every case runs on SQLite in a fresh temporary database, and on
//! PostgreSQL in a fresh schema when `MEDGATE_TEST_POSTGRES_URL` is set, so both back ends are
//! held to the same behaviour. Cases do not share rows, so they run in parallel.

use std::future::Future;
use std::io::Write as _;
use std::sync::{Arc, Once};

use medgate_fhir::search::{FilterOp, SearchRequest};
use medgate_store::{
    PostgresStore, SearchScope, SqliteStore, Store, StoreError, StoreResult, WriteOp,
};
use serde_json::{Value, json};
use sqlx::Connection as _;
use tokio::sync::Barrier;
use uuid::Uuid;

const POSTGRES_URL_VAR: &str = "MEDGATE_TEST_POSTGRES_URL";

/// Generates the tests `sqlite::<case>` and `postgres::<case>` for each case function.
macro_rules! store_cases {
    ($($case:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::run_on_sqlite(super::$case).await;
                }
            )+
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::run_on_postgres(super::$case).await;
                }
            )+
        }
    };
}

store_cases!(
    ping_answers,
    create_then_read,
    create_without_version_rejected,
    read_unknown_not_found,
    create_duplicate_id,
    update_without_expected_version,
    update_with_expected_version,
    update_stale_version_conflicts,
    update_unknown_not_found,
    concurrent_updates_one_wins,
    delete_hides_resource,
    delete_unknown_not_found,
    delete_twice_gone,
    read_version_older,
    history_newest_first,
    history_in_write_order,
    version_ids_per_resource,
    batch_rolls_back_on_failure,
    claim_twice_rejected,
    concurrent_claims_one_lands,
    search_email_case_insensitive,
    search_by_reference,
    search_string_prefix,
    search_missing,
    search_by_ids,
    search_project_scope,
    search_paging,
    search_boolean_token,
    update_replaces_index_values,
    update_moves_project,
    search_token_forms,
    search_string_modifiers,
    search_reference_forms,
    search_uri_exact,
    search_date_prefixes,
    search_number_prefixes,
    search_last_updated,
    search_sort_keys,
    search_count_matches,
    search_restriction_kinds,
    search_patient_compartment,
    search_agrees_with_matches,
    search_same_instant_creation_order,
    attempts_lock_at_limit,
    attempts_separate_per_account,
    clear_attempts_resets_count,
    concurrent_reservations_capped,
    outbox_claim_lease_finish,
    outbox_rolls_back_with_batch,
    outbox_retry_and_abandon,
    outbox_concurrent_claims_disjoint,
    notification_fields_not_stored,
    changes_announced_after_commit,
);

#[path = "store_suite/search_cases.rs"]
mod search_cases;
use search_cases::*;

#[path = "store_suite/lockout_cases.rs"]
mod lockout_cases;
use lockout_cases::*;
#[path = "store_suite/outbox_cases.rs"]
mod outbox_cases;
use outbox_cases::*;

#[path = "store_suite/change_cases.rs"]
mod change_cases;
use change_cases::*;

#[path = "store_suite/reindex_cases.rs"]
mod reindex_cases;

/// A schema name with capitals, a space and a quote must reach CREATE SCHEMA and search_path
/// alike, or the tables land elsewhere or the migration fails.
#[tokio::test]
async fn postgres_schema_name_quoted() {
    let Some(url) = postgres_url() else {
        return;
    };
    let schema = format!("Store Test \"{}\"", Uuid::new_v4().simple());

    let check_url = url.clone();
    let check_schema = schema.clone();
    run_in_schema(&url, &schema, |store| async move {
        let created = create(&*store, user("a@example.com"), 1).await;
        assert_eq!(read(&*store, "User", id_of(&created)).await, created);

        let mut connection = sqlx::PgConnection::connect(&check_url)
            .await
            .expect("connect to check the schema");
        let tables: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = 'resources'",
        )
        .bind(&check_schema)
        .fetch_one(&mut connection)
        .await
        .expect("count the tables of the schema");
        let _ = connection.close().await;
        assert_eq!(
            tables, 1,
            "the resources table must be in schema {check_schema}"
        );
    })
    .await;
}

async fn run_on_sqlite<Case, Fut>(case: Case)
where
    Case: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let url = format!("sqlite://{}/db.sqlite", dir.path().display());
    let store = SqliteStore::open(&url)
        .await
        .unwrap_or_else(|error| panic!("open {url}: {error}"));
    case(Arc::new(store)).await;
}

async fn run_on_postgres<Case, Fut>(case: Case)
where
    Case: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(url) = postgres_url() else {
        return;
    };
    let schema = format!("store_test_{}", Uuid::new_v4().simple());
    run_in_schema(&url, &schema, case).await;
}

/// Opens a store in `schema`, runs `case` on it and drops the schema.
async fn run_in_schema<Case, Fut>(url: &str, schema: &str, case: Case)
where
    Case: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let store = PostgresStore::open(url, Some(schema))
        .await
        .unwrap_or_else(|error| panic!("open {url} with schema {schema}: {error}"));

    // The case runs as its own task so that the schema is dropped even when the case panics.
    let outcome = tokio::spawn(case(Arc::new(store))).await;
    drop_schema(url, schema).await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

/// Returns the PostgreSQL URL of the environment, or reports once that the PostgreSQL tests
/// are skipped.
fn postgres_url() -> Option<String> {
    let url = std::env::var(POSTGRES_URL_VAR).ok();
    if url.is_none() {
        report_postgres_skipped();
    }
    url
}

fn report_postgres_skipped() {
    static REPORTED: Once = Once::new();
    REPORTED.call_once(|| {
        // Written to the stderr handle itself because the test harness hides `eprintln!` output
        // of passing tests, and a run without PostgreSQL must not pass for a full run.
        let _ = writeln!(
            std::io::stderr(),
            "PostgreSQL store tests skipped: set {POSTGRES_URL_VAR} to run them"
        );
    });
}

async fn drop_schema(url: &str, schema: &str) {
    let mut connection = sqlx::PgConnection::connect(url)
        .await
        .unwrap_or_else(|error| panic!("connect to {url} to drop schema {schema}: {error}"));
    let quoted = format!("\"{}\"", schema.replace('"', "\"\""));
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {quoted} CASCADE"))
        .execute(&mut connection)
        .await
        .unwrap_or_else(|error| panic!("drop schema {schema}: {error}"));
    let _ = connection.close().await;
}

// Resources and write operations.

fn new_id() -> String {
    Uuid::new_v4().to_string()
}

/// Formats the `lastUpdated` timestamp `second` seconds after a fixed start. Versions written
/// with increasing seconds sort in write order.
fn at(second: u32) -> String {
    format!("2025-01-01T00:{:02}:{:02}.000Z", second / 60, second % 60)
}

/// Sets `id`, `meta.versionId` and `meta.lastUpdated`, keeping the other `meta` fields.
fn stamp(mut resource: Value, id: &str, version_id: &str, last_updated: &str) -> Value {
    resource["id"] = json!(id);
    resource["meta"]["versionId"] = json!(version_id);
    resource["meta"]["lastUpdated"] = json!(last_updated);
    resource
}

fn id_of(resource: &Value) -> &str {
    resource["id"].as_str().expect("resource has an id")
}

fn version_of(resource: &Value) -> &str {
    resource["meta"]["versionId"]
        .as_str()
        .expect("resource has meta.versionId")
}

fn user(email: &str) -> Value {
    json!({"resourceType": "User", "email": email})
}

/// Creates `resource` with a new id and version and returns it as stored.
async fn create(store: &dyn Store, resource: Value, second: u32) -> Value {
    let resource = stamp(resource, &new_id(), &new_id(), &at(second));
    store
        .write(vec![WriteOp::Create(resource.clone())])
        .await
        .unwrap_or_else(|error| panic!("create {resource}: {error}"));
    resource
}

/// Copies `resource` with a new version id, to be written `second` seconds after the start.
fn next_version(resource: &Value, second: u32) -> Value {
    let id = id_of(resource).to_string();
    stamp(resource.clone(), &id, &new_id(), &at(second))
}

fn update(resource: &Value, expected_version: Option<&str>) -> WriteOp {
    WriteOp::Update {
        resource: resource.clone(),
        expected_version: expected_version.map(str::to_string),
    }
}

fn delete(resource: &Value, version_id: &str, second: u32) -> WriteOp {
    WriteOp::Delete {
        resource_type: resource["resourceType"]
            .as_str()
            .expect("resource has a type")
            .to_string(),
        id: id_of(resource).to_string(),
        version_id: version_id.to_string(),
        last_updated: at(second),
    }
}

fn claim(name: &str) -> WriteOp {
    WriteOp::Claim {
        name: name.to_string(),
        at: at(0),
    }
}

async fn write(store: &dyn Store, batch: Vec<WriteOp>) {
    let description = format!("{batch:?}");
    store
        .write(batch)
        .await
        .unwrap_or_else(|error| panic!("write {description}: {error}"));
}

// Reads and searches.

async fn read(store: &dyn Store, resource_type: &str, id: &str) -> Value {
    store
        .read(resource_type, id)
        .await
        .unwrap_or_else(|error| panic!("read {resource_type}/{id}: {error}"))
}

async fn history(store: &dyn Store, resource: &Value) -> Vec<Value> {
    let resource_type = resource["resourceType"]
        .as_str()
        .expect("resource has a type");
    store
        .history(resource_type, id_of(resource))
        .await
        .unwrap_or_else(|error| panic!("history of {resource_type}/{}: {error}", id_of(resource)))
}

fn parse(resource_type: &str, query: &[(&str, &str)]) -> SearchRequest {
    let pairs: Vec<(String, String)> = query
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    SearchRequest::parse(resource_type, &pairs)
        .unwrap_or_else(|error| panic!("parse {resource_type} search {query:?}: {error}"))
}

async fn search_in(
    store: &dyn Store,
    resource_type: &str,
    query: &[(&str, &str)],
    project_id: Option<&str>,
) -> Vec<Value> {
    let request = parse(resource_type, query);
    store
        .search(SearchScope {
            request: &request,
            project_id,
            restriction: None,
        })
        .await
        .unwrap_or_else(|error| {
            panic!("search {resource_type} {query:?} in project {project_id:?}: {error}")
        })
}

/// Searches server-wide and returns the ids found, in the order the store returned them.
async fn search_ids(store: &dyn Store, resource_type: &str, query: &[(&str, &str)]) -> Vec<String> {
    ids(&search_in(store, resource_type, query, None).await)
}

fn ids(resources: &[Value]) -> Vec<String> {
    resources
        .iter()
        .map(|resource| id_of(resource).to_string())
        .collect()
}

fn assert_not_found<T: std::fmt::Debug>(result: StoreResult<T>, operation: &str) {
    assert!(
        matches!(result, Err(StoreError::NotFound)),
        "{operation}: expected NotFound, got {result:?}"
    );
}

// Cases: reads and writes.

async fn ping_answers(store: Arc<dyn Store>) {
    store.ping().await.expect("ping");
}

async fn create_then_read(store: Arc<dyn Store>) {
    let resource = json!({
        "resourceType": "User",
        "email": "alice@example.com",
        "meta": {"project": "project-1", "author": {"reference": "Practitioner/author-1"}},
    });
    let created = create(&*store, resource, 1).await;

    let read = read(&*store, "User", id_of(&created)).await;
    assert_eq!(read["meta"]["versionId"], created["meta"]["versionId"]);
    assert_eq!(read["meta"]["lastUpdated"], json!(at(1)));
    assert_eq!(read["meta"]["project"], json!("project-1"));
    assert_eq!(
        read["meta"]["author"],
        json!({"reference": "Practitioner/author-1"})
    );
    assert_eq!(read, created);
}

async fn create_without_version_rejected(store: Arc<dyn Store>) {
    let id = new_id();
    let resource = json!({"resourceType": "User", "id": id, "meta": {"lastUpdated": at(1)}});

    let result = store.write(vec![WriteOp::Create(resource)]).await;
    assert!(
        matches!(result, Err(StoreError::MissingField("meta.versionId"))),
        "expected MissingField(meta.versionId), got {result:?}"
    );
    assert_not_found(
        store.read("User", &id).await,
        "read after the rejected create",
    );
}

async fn read_unknown_not_found(store: Arc<dyn Store>) {
    assert_not_found(store.read("User", &new_id()).await, "read of an unknown id");
    assert_not_found(
        store.read_version("User", &new_id(), &new_id()).await,
        "read_version of an unknown id",
    );
}

async fn create_duplicate_id(store: Arc<dyn Store>) {
    let original = create(&*store, user("first@example.com"), 1).await;
    let duplicate = stamp(
        user("second@example.com"),
        id_of(&original),
        &new_id(),
        &at(2),
    );

    let result = store.write(vec![WriteOp::Create(duplicate)]).await;
    assert!(
        matches!(result, Err(StoreError::Duplicate)),
        "expected Duplicate, got {result:?}"
    );
    assert_eq!(read(&*store, "User", id_of(&original)).await, original);
    assert_eq!(
        search_ids(&*store, "User", &[("email", "second@example.com")]).await,
        Vec::<String>::new()
    );
}

async fn update_without_expected_version(store: Arc<dyn Store>) {
    let first = create(&*store, user("old@example.com"), 1).await;
    let mut second = next_version(&first, 2);
    second["email"] = json!("new@example.com");

    write(&*store, vec![update(&second, None)]).await;
    assert_eq!(read(&*store, "User", id_of(&first)).await, second);
    assert_eq!(history(&*store, &first).await, vec![second, first]);
}

async fn update_with_expected_version(store: Arc<dyn Store>) {
    let first = create(&*store, user("old@example.com"), 1).await;
    let mut second = next_version(&first, 2);
    second["email"] = json!("new@example.com");

    write(&*store, vec![update(&second, Some(version_of(&first)))]).await;
    assert_eq!(read(&*store, "User", id_of(&first)).await, second);
    assert_eq!(history(&*store, &first).await, vec![second, first]);
}

async fn update_stale_version_conflicts(store: Arc<dyn Store>) {
    let first = create(&*store, user("first@example.com"), 1).await;
    let mut second = next_version(&first, 2);
    second["email"] = json!("second@example.com");
    write(&*store, vec![update(&second, Some(version_of(&first)))]).await;

    let mut stale = next_version(&first, 3);
    stale["email"] = json!("stale@example.com");
    let result = store
        .write(vec![update(&stale, Some(version_of(&first)))])
        .await;
    assert!(
        matches!(result, Err(StoreError::VersionConflict)),
        "expected VersionConflict, got {result:?}"
    );

    // Nothing of the rejected write may remain: content, version or search values.
    assert_eq!(read(&*store, "User", id_of(&first)).await, second);
    assert_eq!(
        history(&*store, &first).await,
        vec![second.clone(), first.clone()]
    );
    assert_not_found(
        store
            .read_version("User", id_of(&first), version_of(&stale))
            .await,
        "read_version of the rejected version",
    );
    assert_eq!(
        search_ids(&*store, "User", &[("email", "stale@example.com")]).await,
        Vec::<String>::new()
    );
    assert_eq!(
        search_ids(&*store, "User", &[("email", "second@example.com")]).await,
        vec![id_of(&first).to_string()]
    );
}

async fn update_unknown_not_found(store: Arc<dyn Store>) {
    let unknown = stamp(user("nobody@example.com"), &new_id(), &new_id(), &at(1));

    assert_not_found(
        store.write(vec![update(&unknown, None)]).await,
        "update of an unknown id",
    );
    assert_not_found(
        store.write(vec![update(&unknown, Some(&new_id()))]).await,
        "update of an unknown id with an expected version",
    );
    assert_not_found(
        store.read("User", id_of(&unknown)).await,
        "read after the failed updates",
    );
}

async fn concurrent_updates_one_wins(store: Arc<dyn Store>) {
    const WRITERS: usize = 10;
    let first = create(&*store, user("first@example.com"), 1).await;
    // The barrier releases every writer at once, so their transactions overlap.
    let barrier = Arc::new(Barrier::new(WRITERS));

    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        let barrier = barrier.clone();
        let mut attempt = next_version(&first, 2);
        attempt["email"] = json!(format!("writer{writer}@example.com"));
        let expected_version = version_of(&first).to_string();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let result = store
                .write(vec![update(&attempt, Some(&expected_version))])
                .await;
            (attempt, result)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (attempt, result) = task.await.expect("writer task");
        match result {
            Ok(()) => winners.push(attempt),
            Err(StoreError::VersionConflict) => {
                assert_not_found(
                    store
                        .read_version("User", id_of(&first), version_of(&attempt))
                        .await,
                    "read_version of a rejected concurrent update",
                );
            }
            Err(error) => panic!("expected success or VersionConflict, got {error:?}"),
        }
    }

    assert_eq!(
        winners.len(),
        1,
        "exactly one of {WRITERS} concurrent updates must succeed"
    );
    let winner = &winners[0];
    assert_eq!(&read(&*store, "User", id_of(&first)).await, winner);
    assert_eq!(
        history(&*store, &first).await,
        vec![winner.clone(), first.clone()]
    );
    let winner_email = winner["email"].as_str().expect("winner has an email");
    assert_eq!(
        search_ids(&*store, "User", &[("email", winner_email)]).await,
        vec![id_of(&first).to_string()]
    );
    assert_eq!(
        search_ids(&*store, "User", &[("email", "first@example.com")]).await,
        Vec::<String>::new()
    );
}

async fn delete_hides_resource(store: Arc<dyn Store>) {
    let first = create(&*store, user("gone@example.com"), 1).await;
    let second = next_version(&first, 2);
    write(&*store, vec![update(&second, None)]).await;
    let deletion_version = new_id();

    write(&*store, vec![delete(&first, &deletion_version, 3)]).await;

    let result = store.read("User", id_of(&first)).await;
    assert!(
        matches!(result, Err(StoreError::Gone)),
        "read after delete: expected Gone, got {result:?}"
    );
    let result = store
        .read_version("User", id_of(&first), &deletion_version)
        .await;
    assert!(
        matches!(result, Err(StoreError::Gone)),
        "read_version of the deletion: expected Gone, got {result:?}"
    );
    assert_eq!(history(&*store, &first).await, vec![second, first.clone()]);
    assert_eq!(
        store
            .read_version("User", id_of(&first), version_of(&first))
            .await
            .expect("read_version before the deletion"),
        first
    );
    assert_eq!(
        search_ids(&*store, "User", &[("email", "gone@example.com")]).await,
        Vec::<String>::new()
    );
    assert_eq!(
        search_ids(&*store, "User", &[("_id", id_of(&first))]).await,
        Vec::<String>::new()
    );
}

async fn delete_unknown_not_found(store: Arc<dyn Store>) {
    let unknown = stamp(user("nobody@example.com"), &new_id(), &new_id(), &at(1));

    assert_not_found(
        store.write(vec![delete(&unknown, &new_id(), 2)]).await,
        "delete of an unknown id",
    );
}

async fn delete_twice_gone(store: Arc<dyn Store>) {
    let resource = create(&*store, user("gone@example.com"), 1).await;
    write(&*store, vec![delete(&resource, &new_id(), 2)]).await;
    let second_deletion = new_id();

    let result = store
        .write(vec![delete(&resource, &second_deletion, 3)])
        .await;
    assert!(
        matches!(result, Err(StoreError::Gone)),
        "second delete: expected Gone, got {result:?}"
    );
    assert_not_found(
        store
            .read_version("User", id_of(&resource), &second_deletion)
            .await,
        "read_version of the rejected deletion",
    );
}

async fn read_version_older(store: Arc<dyn Store>) {
    let first = create(&*store, user("first@example.com"), 1).await;
    let mut second = next_version(&first, 2);
    second["email"] = json!("second@example.com");
    write(&*store, vec![update(&second, None)]).await;

    let read_first = store
        .read_version("User", id_of(&first), version_of(&first))
        .await
        .expect("read_version of the first version");
    let read_second = store
        .read_version("User", id_of(&first), version_of(&second))
        .await
        .expect("read_version of the second version");
    assert_eq!(read_first, first);
    assert_eq!(read_second, second);
    assert_not_found(
        store.read_version("User", id_of(&first), &new_id()).await,
        "read_version of an unknown version",
    );
    assert_not_found(
        store
            .read_version("Project", id_of(&first), version_of(&first))
            .await,
        "read_version under another resource type",
    );
}

async fn history_newest_first(store: Arc<dyn Store>) {
    let first = create(&*store, user("v1@example.com"), 1).await;
    let mut second = next_version(&first, 2);
    second["email"] = json!("v2@example.com");
    write(&*store, vec![update(&second, None)]).await;
    let mut third = next_version(&second, 3);
    third["email"] = json!("v3@example.com");
    write(&*store, vec![update(&third, Some(version_of(&second)))]).await;

    assert_eq!(history(&*store, &first).await, vec![third, second, first]);
    let unknown = stamp(user("nobody@example.com"), &new_id(), &new_id(), &at(1));
    assert_eq!(history(&*store, &unknown).await, Vec::<Value>::new());
}

/// History follows the order of the writes, not `lastUpdated`, which can repeat within a clock
/// tick or go backwards between server processes whose clocks disagree.
async fn history_in_write_order(store: Arc<dyn Store>) {
    let id = new_id();
    // Version ids that sort against the write order, so a tie broken by version id shows.
    let first = stamp(user("v1@example.com"), &id, "version-c", &at(5));
    let second = stamp(user("v2@example.com"), &id, "version-b", &at(5));
    let third = stamp(user("v3@example.com"), &id, "version-a", &at(4));

    write(&*store, vec![WriteOp::Create(first.clone())]).await;
    write(&*store, vec![update(&second, Some("version-c"))]).await;
    write(&*store, vec![update(&third, Some("version-b"))]).await;
    assert_eq!(
        history(&*store, &first).await,
        vec![third.clone(), second, first]
    );
    assert_eq!(read(&*store, "User", &id).await, third);
}

/// A version id names a version of one resource, as in `User/<id>/_history/<versionId>`, so
/// two resources may use the same one.
async fn version_ids_per_resource(store: Arc<dyn Store>) {
    let first = stamp(user("a@example.com"), &new_id(), "1", &at(1));
    let second = stamp(user("b@example.com"), &new_id(), "1", &at(2));

    write(&*store, vec![WriteOp::Create(first.clone())]).await;
    write(&*store, vec![WriteOp::Create(second.clone())]).await;
    let read_first = store
        .read_version("User", id_of(&first), "1")
        .await
        .expect("read_version of the first user");
    let read_second = store
        .read_version("User", id_of(&second), "1")
        .await
        .expect("read_version of the second user");
    assert_eq!(read_first, first);
    assert_eq!(read_second, second);
}

async fn batch_rolls_back_on_failure(store: Arc<dyn Store>) {
    let existing = create(&*store, user("existing@example.com"), 1).await;

    // A create followed by a duplicate create: the first create must not land.
    let fresh = stamp(user("fresh@example.com"), &new_id(), &new_id(), &at(2));
    let duplicate = stamp(
        user("duplicate@example.com"),
        id_of(&existing),
        &new_id(),
        &at(2),
    );
    let result = store
        .write(vec![
            WriteOp::Create(fresh.clone()),
            WriteOp::Create(duplicate),
        ])
        .await;
    assert!(
        matches!(result, Err(StoreError::Duplicate)),
        "expected Duplicate, got {result:?}"
    );
    assert_not_found(
        store.read("User", id_of(&fresh)).await,
        "read of the rolled-back create",
    );
    assert_eq!(
        search_ids(&*store, "User", &[("email", "fresh@example.com")]).await,
        Vec::<String>::new()
    );

    // An update followed by a stale update: the first update must not land.
    let mut changed = next_version(&existing, 3);
    changed["email"] = json!("changed@example.com");
    let stale = next_version(&existing, 3);
    let result = store
        .write(vec![
            update(&changed, None),
            update(&stale, Some(&new_id())),
        ])
        .await;
    assert!(
        matches!(result, Err(StoreError::VersionConflict)),
        "expected VersionConflict, got {result:?}"
    );
    assert_eq!(read(&*store, "User", id_of(&existing)).await, existing);
    assert_eq!(history(&*store, &existing).await, vec![existing.clone()]);
    assert_eq!(
        search_ids(&*store, "User", &[("email", "existing@example.com")]).await,
        vec![id_of(&existing).to_string()]
    );

    // A claim in a failed batch must not count as done.
    let duplicate = stamp(
        user("duplicate@example.com"),
        id_of(&existing),
        &new_id(),
        &at(4),
    );
    let result = store
        .write(vec![claim("bootstrap"), WriteOp::Create(duplicate)])
        .await;
    assert!(
        matches!(result, Err(StoreError::Duplicate)),
        "expected Duplicate, got {result:?}"
    );
    write(&*store, vec![claim("bootstrap")]).await;
}

async fn claim_twice_rejected(store: Arc<dyn Store>) {
    write(&*store, vec![claim("bootstrap")]).await;

    let result = store.write(vec![claim("bootstrap")]).await;
    assert!(
        matches!(&result, Err(StoreError::AlreadyClaimed(name)) if name == "bootstrap"),
        "expected AlreadyClaimed(bootstrap), got {result:?}"
    );
    write(&*store, vec![claim("another-action")]).await;
}

async fn concurrent_claims_one_lands(store: Arc<dyn Store>) {
    const BATCHES: usize = 2;
    const ROUNDS: usize = 5;
    for round in 0..ROUNDS {
        let name = format!("first-start-{round}");
        let barrier = Arc::new(Barrier::new(BATCHES));
        let mut tasks = Vec::new();
        for batch in 0..BATCHES {
            let store = store.clone();
            let barrier = barrier.clone();
            let name = name.clone();
            let project = stamp(
                json!({"resourceType": "Project", "name": format!("round {round} batch {batch}")}),
                &new_id(),
                &new_id(),
                &at(1),
            );
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                let result = store
                    .write(vec![WriteOp::Create(project.clone()), claim(&name)])
                    .await;
                (project, result)
            }));
        }

        let mut landed = 0;
        for task in tasks {
            let (project, result) = task.await.expect("batch task");
            match result {
                Ok(()) => {
                    landed += 1;
                    assert_eq!(read(&*store, "Project", id_of(&project)).await, project);
                }
                Err(StoreError::AlreadyClaimed(claimed)) => {
                    assert_eq!(claimed, name);
                    assert_not_found(
                        store.read("Project", id_of(&project)).await,
                        "read of the project from the rejected batch",
                    );
                }
                Err(error) => panic!("expected success or AlreadyClaimed, got {error:?}"),
            }
        }
        assert_eq!(
            landed, 1,
            "round {round}: exactly one of {BATCHES} batches must land"
        );
    }
}

// Cases: search.

async fn search_email_case_insensitive(store: Arc<dyn Store>) {
    let alice = create(&*store, user("Alice@Example.com"), 1).await;
    create(&*store, user("bob@example.com"), 2).await;

    let request = parse("User", &[("email", "ALICE@example.COM")]);
    assert_eq!(
        request.filters[0].op,
        FilterOp::Equals(vec!["alice@example.com".to_string()])
    );
    assert_eq!(
        search_ids(&*store, "User", &[("email", "ALICE@example.COM")]).await,
        vec![id_of(&alice)]
    );
    assert_eq!(
        search_ids(&*store, "User", &[("email", "alice@example.com")]).await,
        vec![id_of(&alice)]
    );
    assert_eq!(
        search_ids(&*store, "User", &[("email", "alice@example")]).await,
        Vec::<String>::new()
    );
}

async fn search_by_reference(store: Arc<dyn Store>) {
    let membership = |user: &str, project: &str| {
        json!({
            "resourceType": "ProjectMembership",
            "user": {"reference": user},
            "project": {"reference": project},
        })
    };
    let first = create(&*store, membership("User/u1", "Project/p1"), 1).await;
    let second = create(&*store, membership("User/u1", "Project/p2"), 2).await;
    let third = create(&*store, membership("User/u2", "Project/p1"), 3).await;

    assert_eq!(
        search_ids(&*store, "ProjectMembership", &[("user", "User/u1")]).await,
        vec![id_of(&first), id_of(&second)]
    );
    assert_eq!(
        search_ids(&*store, "ProjectMembership", &[("project", "Project/p1")]).await,
        vec![id_of(&first), id_of(&third)]
    );
    assert_eq!(
        search_ids(
            &*store,
            "ProjectMembership",
            &[("user", "User/u1"), ("project", "Project/p1")]
        )
        .await,
        vec![id_of(&first)]
    );
    assert_eq!(
        search_ids(&*store, "ProjectMembership", &[("user", "User/u1,User/u2")]).await,
        vec![id_of(&first), id_of(&second), id_of(&third)]
    );
    assert_eq!(
        search_ids(&*store, "ProjectMembership", &[("user", "User/u3")]).await,
        Vec::<String>::new()
    );
}

async fn search_string_prefix(store: Arc<dyn Store>) {
    let practitioner = |given: &str, family: &str| json!({"resourceType": "Practitioner", "name": [{"given": [given], "family": family}]});
    let smith = create(&*store, practitioner("Anna", "Smith"), 1).await;
    let smithers = create(&*store, practitioner("Ben", "Smithers"), 2).await;
    let smythe = create(&*store, practitioner("Carl", "Smythe"), 3).await;
    let percent = create(&*store, practitioner("Dora", "Per%cent"), 4).await;
    create(&*store, practitioner("Emil", "Perxcent"), 5).await;
    let underscore = create(&*store, practitioner("Fay", "Under_score"), 6).await;
    create(&*store, practitioner("Gus", "Underxscore"), 7).await;
    let backslash = create(&*store, practitioner("Hal", "Back\\slash"), 8).await;
    create(&*store, practitioner("Ida", "Backxslash"), 9).await;
    // A Patient with the same name must not show up in a Practitioner search.
    create(
        &*store,
        json!({"resourceType": "Patient", "name": [{"family": "Smith"}]}),
        10,
    )
    .await;

    let name = |query: &'static str| [("name", query)];
    assert_eq!(
        search_ids(&*store, "Practitioner", &name("smi")).await,
        vec![id_of(&smith), id_of(&smithers)]
    );
    assert_eq!(
        search_ids(&*store, "Practitioner", &name("SMITH")).await,
        vec![id_of(&smith), id_of(&smithers)]
    );
    assert_eq!(
        search_ids(&*store, "Practitioner", &name("ann")).await,
        vec![id_of(&smith)]
    );
    assert_eq!(
        search_ids(&*store, "Practitioner", &[("family", "sm")]).await,
        vec![id_of(&smith), id_of(&smithers), id_of(&smythe)]
    );
    // `:exact` compares the name as written, case included (FHIR R4 search.html#modifiers).
    assert_eq!(
        search_ids(&*store, "Practitioner", &[("name:exact", "Smith")]).await,
        vec![id_of(&smith)]
    );
    assert_eq!(
        search_ids(&*store, "Practitioner", &[("name:exact", "smith")]).await,
        Vec::<String>::new()
    );

    // LIKE wildcards and the escape character in a query match only themselves.
    assert_eq!(
        search_ids(&*store, "Practitioner", &name("per%")).await,
        vec![id_of(&percent)]
    );
    assert_eq!(
        search_ids(&*store, "Practitioner", &name("%")).await,
        Vec::<String>::new()
    );
    assert_eq!(
        search_ids(&*store, "Practitioner", &name("under_")).await,
        vec![id_of(&underscore)]
    );
    assert_eq!(
        search_ids(&*store, "Practitioner", &name("_")).await,
        Vec::<String>::new()
    );
    assert_eq!(
        search_ids(&*store, "Practitioner", &name("back\\")).await,
        vec![id_of(&backslash)]
    );
}

async fn search_missing(store: Arc<dyn Store>) {
    let with_project = json!({"resourceType": "User", "email": "a@example.com", "project": {"reference": "Project/p1"}});
    let with_project = create(&*store, with_project, 1).await;
    let without_project = create(&*store, user("b@example.com"), 2).await;

    assert_eq!(
        search_ids(&*store, "User", &[("project:missing", "true")]).await,
        vec![id_of(&without_project)]
    );
    assert_eq!(
        search_ids(&*store, "User", &[("project:missing", "false")]).await,
        vec![id_of(&with_project)]
    );
}

async fn search_by_ids(store: Arc<dyn Store>) {
    let first = create(&*store, user("a@example.com"), 1).await;
    let second = create(&*store, user("b@example.com"), 2).await;
    let third = create(&*store, user("c@example.com"), 3).await;

    let first_and_third = format!("{},{}", id_of(&first), id_of(&third));
    assert_eq!(
        search_ids(&*store, "User", &[("_id", first_and_third.as_str())]).await,
        vec![id_of(&first), id_of(&third)]
    );
    assert_eq!(
        search_ids(&*store, "User", &[("_id", id_of(&second))]).await,
        vec![id_of(&second)]
    );
    assert_eq!(
        search_ids(&*store, "User", &[("_id", new_id().as_str())]).await,
        Vec::<String>::new()
    );
    // An id of another resource type does not match.
    assert_eq!(
        search_ids(&*store, "Project", &[("_id", id_of(&first))]).await,
        Vec::<String>::new()
    );
}

async fn search_project_scope(store: Arc<dyn Store>) {
    let in_project = |email: &str, project: &str| json!({"resourceType": "User", "email": email, "meta": {"project": project}});
    let first = create(&*store, in_project("a@example.com", "p1"), 1).await;
    let second = create(&*store, in_project("b@example.com", "p2"), 2).await;
    let third = create(&*store, in_project("c@example.com", "p1"), 3).await;
    let unscoped = create(&*store, user("d@example.com"), 4).await;

    assert_eq!(
        ids(&search_in(&*store, "User", &[], Some("p1")).await),
        vec![id_of(&first), id_of(&third)]
    );
    assert_eq!(
        ids(&search_in(&*store, "User", &[], Some("p2")).await),
        vec![id_of(&second)]
    );
    assert_eq!(
        ids(&search_in(&*store, "User", &[], None).await),
        vec![
            id_of(&first),
            id_of(&second),
            id_of(&third),
            id_of(&unscoped)
        ]
    );
    assert_eq!(
        ids(&search_in(&*store, "User", &[("email", "b@example.com")], Some("p1")).await),
        Vec::<String>::new()
    );
    assert_eq!(
        ids(&search_in(&*store, "User", &[("email", "c@example.com")], Some("p1")).await),
        vec![id_of(&third)]
    );
}

async fn search_paging(store: Arc<dyn Store>) {
    let mut created = Vec::new();
    for second in 1..=5 {
        let resource = create(&*store, user(&format!("user{second}@example.com")), second).await;
        created.push(id_of(&resource).to_string());
    }

    assert_eq!(search_ids(&*store, "User", &[]).await, created);
    assert_eq!(
        search_ids(&*store, "User", &[("_count", "2")]).await,
        created[0..2]
    );
    assert_eq!(
        search_ids(&*store, "User", &[("_count", "2"), ("_offset", "2")]).await,
        created[2..4]
    );
    assert_eq!(
        search_ids(&*store, "User", &[("_count", "2"), ("_offset", "4")]).await,
        created[4..5]
    );
    assert_eq!(
        search_ids(&*store, "User", &[("_offset", "5")]).await,
        Vec::<String>::new()
    );
    assert_eq!(
        search_ids(&*store, "User", &[("_count", "0")]).await,
        Vec::<String>::new()
    );
}

async fn search_boolean_token(store: Arc<dyn Store>) {
    let active = create(
        &*store,
        json!({"resourceType": "JsonWebKey", "active": true}),
        1,
    )
    .await;
    let inactive = create(
        &*store,
        json!({"resourceType": "JsonWebKey", "active": false}),
        2,
    )
    .await;

    assert_eq!(
        search_ids(&*store, "JsonWebKey", &[("active", "true")]).await,
        vec![id_of(&active)]
    );
    assert_eq!(
        search_ids(&*store, "JsonWebKey", &[("active", "false")]).await,
        vec![id_of(&inactive)]
    );
}

async fn update_replaces_index_values(store: Arc<dyn Store>) {
    let first = json!({"resourceType": "User", "email": "old@example.com", "project": {"reference": "Project/p1"}});
    let first = create(&*store, first, 1).await;
    let mut second = next_version(&first, 2);
    second["email"] = json!("new@example.com");
    second
        .as_object_mut()
        .expect("resource is an object")
        .remove("project");

    write(&*store, vec![update(&second, Some(version_of(&first)))]).await;
    assert_eq!(
        search_ids(&*store, "User", &[("email", "old@example.com")]).await,
        Vec::<String>::new()
    );
    assert_eq!(
        search_ids(&*store, "User", &[("email", "new@example.com")]).await,
        vec![id_of(&first)]
    );
    assert_eq!(
        search_ids(&*store, "User", &[("project", "Project/p1")]).await,
        Vec::<String>::new()
    );
    assert_eq!(
        search_ids(&*store, "User", &[("project:missing", "true")]).await,
        vec![id_of(&first)]
    );
}

/// Moves a user between projects. The conditional UPDATE names its placeholders out of order (`$3` first, `$7` last), so a
/// back end that bound them by position would store the fields in the wrong columns.
async fn update_moves_project(store: Arc<dyn Store>) {
    let first =
        json!({"resourceType": "User", "email": "a@example.com", "meta": {"project": "p1"}});
    let first = create(&*store, first, 1).await;
    let mut second = next_version(&first, 2);
    second["meta"]["project"] = json!("p2");

    write(&*store, vec![update(&second, Some(version_of(&first)))]).await;
    assert_eq!(
        ids(&search_in(&*store, "User", &[], Some("p1")).await),
        Vec::<String>::new()
    );
    assert_eq!(
        ids(&search_in(&*store, "User", &[], Some("p2")).await),
        vec![id_of(&first)]
    );
    assert_eq!(read(&*store, "User", id_of(&first)).await, second);
    let mut third = next_version(&second, 3);
    third["meta"]["project"] = json!("p1");
    write(&*store, vec![update(&third, None)]).await;
    assert_eq!(
        ids(&search_in(&*store, "User", &[], Some("p1")).await),
        vec![id_of(&first)]
    );
}
