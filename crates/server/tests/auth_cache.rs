//! Bearer requests reuse the caller computed for their Login until a write changes what it
//! was built from. A deactivated membership, a revoked login or an edited access policy
//! applies to the very next request, on this server and on another one sharing the database.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Member, TestServer};
use medgate_fhir::resources::{Login, ProjectMembership};
use medgate_service::repo::WriteContext;
use serde_json::{Value, json};

const POSTGRES_URL_VAR: &str = "MEDGATE_TEST_POSTGRES_URL";

async fn get_status(server: &TestServer, token: &str, path: &str) -> u16 {
    server
        .http
        .get(server.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn member_token(server: &TestServer, member: &Member) -> String {
    server.member_tokens(member, "openid").await["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn set_membership_active(server: &TestServer, membership_id: &str, active: bool) {
    let repo = &server.services.repo;
    let mut membership: ProjectMembership = repo.read(membership_id).await.unwrap();
    membership.active = Some(active);
    repo.update(&membership, &WriteContext::system(None))
        .await
        .unwrap();
}

#[tokio::test]
async fn deactivated_membership_refused_next_request() {
    let server = TestServer::start().await;
    let member = server.create_member("cache@example.com", false).await;
    let token = member_token(&server, &member).await;
    assert_eq!(get_status(&server, &token, "auth/me").await, 200);
    assert_eq!(get_status(&server, &token, "auth/me").await, 200);

    set_membership_active(&server, &member.membership_id, false).await;
    assert_eq!(get_status(&server, &token, "auth/me").await, 401);

    set_membership_active(&server, &member.membership_id, true).await;
    assert_eq!(get_status(&server, &token, "auth/me").await, 200);
}

#[tokio::test]
async fn revoked_login_refused_next_request() {
    let server = TestServer::start().await;
    let member = server.create_member("revoked@example.com", false).await;
    let token = member_token(&server, &member).await;
    assert_eq!(get_status(&server, &token, "auth/me").await, 200);

    let login_id = common::claims(&token)["login_id"]
        .as_str()
        .unwrap()
        .to_string();
    let login: Login = server.services.repo.read(&login_id).await.unwrap();
    server.services.revoke_login(login).await.unwrap();
    assert_eq!(get_status(&server, &token, "auth/me").await, 401);
}

#[tokio::test]
async fn edited_policy_applies_next_request() {
    let server = TestServer::start().await;
    let member = server.create_member("policy@example.com", false).await;
    let context = WriteContext::system(Some(&member.project_id));
    let policy = json!({
        "resourceType": "AccessPolicy",
        "resource": [{"resourceType": "Patient"}],
    });
    let policy = server
        .services
        .repo
        .prepare_create(policy, &context)
        .unwrap();
    server
        .services
        .repo
        .store
        .write(vec![medgate_store::WriteOp::Create(policy.clone())])
        .await
        .unwrap();
    let policy_id = policy["id"].as_str().unwrap().to_string();

    let repo = &server.services.repo;
    let mut membership: ProjectMembership = repo.read(&member.membership_id).await.unwrap();
    membership.access_policy = Some(medgate_fhir::Reference::new("AccessPolicy", &policy_id));
    repo.update(&membership, &WriteContext::system(None))
        .await
        .unwrap();

    let token = member_token(&server, &member).await;
    assert_eq!(get_status(&server, &token, "fhir/R4/Patient").await, 200);
    assert_eq!(
        get_status(&server, &token, "fhir/R4/Observation").await,
        403
    );

    let mut widened: Value = policy.clone();
    widened["resource"] = json!([{"resourceType": "Patient"}, {"resourceType": "Observation"}]);
    let op = repo.prepare_update(widened, &context).unwrap();
    repo.store.write(vec![op]).await.unwrap();
    assert_eq!(
        get_status(&server, &token, "fhir/R4/Observation").await,
        200
    );
}

/// Two servers on one PostgreSQL schema stand for two processes behind a load balancer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_process_write_reaches_cache() {
    let Ok(url) = std::env::var(POSTGRES_URL_VAR) else {
        return;
    };
    let schema = format!("cache_test_{}", uuid::Uuid::new_v4().simple());
    let open = || async {
        Arc::new(
            medgate_store::PostgresStore::open(&url, Some(&schema))
                .await
                .unwrap(),
        ) as Arc<dyn medgate_store::Store>
    };
    let first = TestServer::start_on(open().await, tempfile::tempdir().unwrap(), |_| {}).await;
    // Processes behind one load balancer share the public URL, so they share the issuer.
    let issuer = first.services.config.issuer.clone();
    let second = TestServer::start_on(open().await, tempfile::tempdir().unwrap(), |config| {
        config.issuer = issuer;
    })
    .await;

    let member = first.create_member("shared@example.com", false).await;
    let token = member_token(&first, &member).await;
    assert_eq!(get_status(&second, &token, "auth/me").await, 200);
    assert_eq!(get_status(&second, &token, "auth/me").await, 200);

    set_membership_active(&first, &member.membership_id, false).await;
    let mut status = 200;
    for _ in 0..50 {
        status = get_status(&second, &token, "auth/me").await;
        if status == 401 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut connection = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(&mut connection)
        .await
        .unwrap();
    assert_eq!(status, 401, "the other server refused within 5 seconds");
}
