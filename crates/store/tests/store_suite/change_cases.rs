//! Change announcements: a store announces to its subscribers which resources each committed
//! batch changed, and on PostgreSQL another process's store receives them too.

use std::sync::Arc;
use std::time::Duration;

use medgate_store::{Change, PostgresStore, Store};
use tokio::sync::broadcast;
use uuid::Uuid;

use super::{
    at, create, delete, drop_schema, id_of, new_id, next_version, postgres_url, stamp, update,
    user, write,
};

fn changed(resource_type: &str, id: &str) -> Change {
    Change::Resource {
        resource_type: resource_type.to_string(),
        id: id.to_string(),
    }
}

async fn next_change(changes: &mut broadcast::Receiver<Change>) -> Change {
    tokio::time::timeout(Duration::from_secs(5), changes.recv())
        .await
        .expect("a change within 5 seconds")
        .expect("the change feed is open")
}

pub(super) async fn changes_announced_after_commit(store: Arc<dyn Store>) {
    let mut changes = store.subscribe();

    let created = create(&*store, user("a@example.com"), 1).await;
    let id = id_of(&created).to_string();
    assert_eq!(next_change(&mut changes).await, changed("User", &id));

    let second = next_version(&created, 2);
    write(
        &*store,
        vec![update(&second, None), delete(&second, &new_id(), 3)],
    )
    .await;
    assert_eq!(next_change(&mut changes).await, changed("User", &id));
    assert_eq!(next_change(&mut changes).await, changed("User", &id));

    let duplicate = stamp(user("b@example.com"), &id, &new_id(), &at(4));
    let failed = store
        .write(vec![medgate_store::WriteOp::Create(duplicate)])
        .await;
    assert!(failed.is_err(), "the id is taken");
    assert!(
        changes.try_recv().is_err(),
        "a failed batch announces nothing"
    );
}

/// Two stores on one PostgreSQL schema stand for two server processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_changes_reach_other_process() {
    let Some(url) = postgres_url() else {
        return;
    };
    let schema = format!("store_test_{}", Uuid::new_v4().simple());
    let writer = PostgresStore::open(&url, Some(&schema))
        .await
        .expect("open the writing store");
    let listener = PostgresStore::open(&url, Some(&schema))
        .await
        .expect("open the listening store");
    let mut changes = listener.subscribe();

    let outcome = tokio::spawn(async move {
        let created = create(&writer, user("a@example.com"), 1).await;
        next_change(&mut changes).await == changed("User", id_of(&created))
    })
    .await;
    drop_schema(&url, &schema).await;
    assert!(
        outcome.expect("the case ran"),
        "the other store heard the write"
    );
}
