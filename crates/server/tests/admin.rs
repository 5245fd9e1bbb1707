//! The project administration API (`/admin/projects/:projectId/...`), invites, membership
//! rules, `Project/$init` and `User/$update-email`, against a real server.
//!
//! Most tests use project P of an admin created with `create_member`, and the bootstrap
//! super admin.

mod common;

use common::{Member, TestServer};
use medgate_fhir::resources::{Project, TypedResource, User};
use medgate_fhir::search::SearchRequest;
use medgate_service::repo::WriteContext;
use medgate_store::SearchScope;
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

const PASSWORD: &str = "plum-Harbor-93-quartz";

struct World {
    server: TestServer,
    admin: Member,
    admin_token: String,
    super_token: String,
}

async fn world() -> World {
    let server = TestServer::start().await;
    let admin = server.create_member("padmin@example.com", true).await;
    let admin_token = access_token(&server, &admin).await;
    let super_token = server.admin_access_token().await;
    World {
        server,
        admin,
        admin_token,
        super_token,
    }
}

async fn access_token(server: &TestServer, member: &Member) -> String {
    server.member_tokens(member, "openid").await["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

impl World {
    /// Makes P's admin an admin of another project too and returns a token for that
    /// membership.
    async fn admin_token_in(&self, project_id: &str) -> String {
        self.server
            .add_membership(&self.admin.user_id, project_id, true)
            .await;
        let body = json!({"email": self.admin.email, "password": self.admin.password, "projectId": project_id,
            "codeChallenge": common::CHALLENGE, "codeChallengeMethod": "S256"});
        let login: Value = self
            .server
            .post_json("auth/login", body)
            .await
            .json()
            .await
            .unwrap();
        let code = login["code"]
            .as_str()
            .expect("one membership in that project")
            .to_string();
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("code_verifier", common::VERIFIER),
        ];
        let tokens: Value = self
            .server
            .post_form("oauth2/token", &form)
            .await
            .json()
            .await
            .unwrap();
        tokens["access_token"].as_str().unwrap().to_string()
    }

    fn project(&self) -> &str {
        &self.admin.project_id
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .server
            .http
            .request(method, self.server.url(path))
            .bearer_auth(token)
            .header("x-medplum", "extended");
        if let Some(body) = body {
            request = request
                .header(header::CONTENT_TYPE, "application/fhir+json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn invite(&self, token: &str, body: Value) -> (StatusCode, Value) {
        let path = format!("admin/projects/{}/invite", self.project());
        self.call(Method::POST, &path, token, Some(body)).await
    }

    async fn read(&self, resource_type: &str, id: &str) -> Value {
        self.server
            .services
            .repo
            .store
            .read(resource_type, id)
            .await
            .unwrap()
    }

    /// Counts the resources of one type in the whole store.
    async fn count(&self, resource_type: &str) -> u64 {
        let request = SearchRequest::new(resource_type);
        self.server
            .services
            .repo
            .store
            .count(SearchScope {
                request: &request,
                project_id: None,
                restriction: None,
            })
            .await
            .unwrap()
    }

    async fn counts(&self) -> Vec<u64> {
        let mut counts = Vec::new();
        for resource_type in [
            "User",
            "Patient",
            "Practitioner",
            "RelatedPerson",
            "ProjectMembership",
            "UserSecurityRequest",
        ] {
            counts.push(self.count(resource_type).await);
        }
        counts
    }

    async fn search(&self, resource_type: &str, filters: &[(&str, &str)]) -> Vec<Value> {
        let mut request = SearchRequest::new(resource_type);
        for (name, value) in filters {
            request = request.filter(name, value);
        }
        self.server
            .services
            .repo
            .store
            .search(SearchScope {
                request: &request,
                project_id: None,
                restriction: None,
            })
            .await
            .unwrap()
    }
}

fn issue_text(outcome: &Value) -> String {
    outcome["issue"][0]["details"]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn practitioner(email: &str) -> Value {
    json!({"resourceType": "Practitioner", "firstName": "Bob", "lastName": "Jones",
        "email": email, "sendEmail": false})
}

fn id_of(reference: &Value) -> String {
    reference["reference"]
        .as_str()
        .unwrap()
        .split_once('/')
        .unwrap()
        .1
        .to_string()
}

// ---------------------------------------------------------------------------------------
// Who may call the admin routes

#[tokio::test]
async fn admin_routes_require_authentication() {
    let world = world().await;
    let response = world
        .server
        .http
        .get(
            world
                .server
                .url(&format!("admin/projects/{}", world.project())),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], "unauthorized");
}

#[tokio::test]
async fn admin_reads_own_project() {
    let world = world().await;
    let path = format!("admin/projects/{}", world.project());
    let (status, body) = world
        .call(Method::GET, &path, &world.admin_token, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["project"]["id"], world.project());
    assert_eq!(body["project"]["name"], "Project of padmin@example.com");
}

#[tokio::test]
async fn non_admin_member_is_forbidden() {
    let world = world().await;
    let member = world.server.create_member("plain@example.com", false).await;
    let token = access_token(&world.server, &member).await;
    let path = format!("admin/projects/{}", member.project_id);
    let (status, body) = world.call(Method::GET, &path, &token, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["id"], "forbidden");
    assert_eq!(body["issue"][0]["code"], "forbidden");
}

#[tokio::test]
async fn admin_of_other_project_is_forbidden() {
    let world = world().await;
    let other = world.server.create_member("qadmin@example.com", true).await;
    for (method, path, body) in [
        (
            Method::GET,
            format!("admin/projects/{}", other.project_id),
            None,
        ),
        (
            Method::POST,
            format!("admin/projects/{}/invite", other.project_id),
            Some(practitioner("x@example.com")),
        ),
        (
            Method::POST,
            format!("admin/projects/{}/client", other.project_id),
            Some(json!({"name": "Svc"})),
        ),
        (
            Method::POST,
            format!("admin/projects/{}/settings", other.project_id),
            Some(json!([])),
        ),
        (
            Method::GET,
            format!(
                "admin/projects/{}/members/{}",
                other.project_id, other.membership_id
            ),
            None,
        ),
    ] {
        let (status, _) = world
            .call(method.clone(), &path, &world.admin_token, body)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
    }
    // Nothing was invited into either project.
    assert!(
        world
            .search("User", &[("email", "x@example.com")])
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn super_admin_invites_into_path_project() {
    let world = world().await;
    let (status, membership) = world
        .invite(&world.super_token, practitioner("sa@example.com"))
        .await;
    assert_eq!(status, StatusCode::OK, "{membership}");
    assert_eq!(
        membership["project"]["reference"],
        format!("Project/{}", world.project())
    );
}

// ---------------------------------------------------------------------------------------
// Invite: validation

#[tokio::test]
async fn invite_validation_messages() {
    let world = world().await;
    let cases = [
        (
            json!({"resourceType": "Practitioner", "lastName": "J", "email": "a@example.com"}),
            "First name is required",
            Some("firstName"),
        ),
        (
            json!({"resourceType": "Practitioner", "firstName": "B", "email": "a@example.com"}),
            "Last name is required",
            Some("lastName"),
        ),
        (
            json!({"resourceType": "Practitioner", "firstName": "B", "lastName": "J"}),
            "Either email or externalId is required",
            None,
        ),
        (
            json!({"resourceType": "Organization", "firstName": "B", "lastName": "J", "email": "a@example.com"}),
            "Resource type is required",
            Some("resourceType"),
        ),
        (
            json!({"resourceType": "Practitioner", "firstName": "B", "lastName": "J", "email": "not-an-email"}),
            "Valid email address is required",
            Some("email"),
        ),
        (
            json!({"resourceType": "RelatedPerson", "firstName": "B", "lastName": "J", "email": "a@example.com", "patient": {"reference": "Observation/1"}}),
            "Patient must be a reference to a Patient resource",
            Some("patient"),
        ),
        (
            json!({"resourceType": "RelatedPerson", "firstName": "B", "lastName": "J", "externalId": "rp-1"}),
            "Patient is required to create a RelatedPerson",
            None,
        ),
    ];
    let before = world.counts().await;
    for (body, message, field) in cases {
        let (status, outcome) = world.invite(&world.admin_token, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(issue_text(&outcome), message, "{body}");
        if let Some(field) = field {
            assert_eq!(outcome["issue"][0]["expression"][0], field, "{body}");
        }
    }
    assert_eq!(
        world.counts().await,
        before,
        "a rejected invite wrote something"
    );
}

// ---------------------------------------------------------------------------------------
// Invite: what is created

#[tokio::test]
async fn invite_practitioner_creates_everything() {
    let world = world().await;
    let (status, membership) = world
        .invite(&world.admin_token, practitioner("bob@example.com"))
        .await;
    assert_eq!(status, StatusCode::OK, "{membership}");
    assert_eq!(membership["resourceType"], "ProjectMembership");
    assert_eq!(
        membership["invitedBy"]["reference"],
        format!("User/{}", world.admin.user_id)
    );

    let user = world.read("User", &id_of(&membership["user"])).await;
    assert_eq!(user["email"], "bob@example.com");
    assert!(
        user.get("project").is_none(),
        "a practitioner is server-scoped"
    );
    assert!(user.get("passwordHash").is_none());

    let profile = world
        .read("Practitioner", &id_of(&membership["profile"]))
        .await;
    assert_eq!(profile["name"][0]["family"], "Jones");
    assert_eq!(profile["telecom"][0]["value"], "bob@example.com");
    assert_eq!(profile["meta"]["project"], world.project());

    let requests = world
        .search(
            "UserSecurityRequest",
            &[("user", &format!("User/{}", user["id"].as_str().unwrap()))],
        )
        .await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["type"], "invite");
    assert_eq!(requests[0]["secretHash"].as_str().unwrap().len(), 64);
    assert!(
        requests[0].get("secret").is_none(),
        "the secret is stored only as a hash"
    );
    assert_eq!(requests[0]["meta"]["project"], world.project());
}

#[tokio::test]
async fn invite_scoping_rule() {
    let world = world().await;
    let cases = [
        (
            json!({"resourceType": "Patient", "email": "p1@example.com"}),
            true,
        ),
        (
            json!({"resourceType": "Patient", "email": "p2@example.com", "scope": "server"}),
            false,
        ),
        (
            json!({"resourceType": "Practitioner", "email": "d1@example.com", "scope": "project"}),
            true,
        ),
        (
            json!({"resourceType": "Practitioner", "email": "d2@example.com"}),
            false,
        ),
    ];
    for (mut body, project_scoped) in cases {
        body["firstName"] = json!("Pat");
        body["lastName"] = json!("Doe");
        body["sendEmail"] = json!(false);
        let (status, membership) = world.invite(&world.admin_token, body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body}: {membership}");
        let user = world.read("User", &id_of(&membership["user"])).await;
        if project_scoped {
            assert_eq!(
                user["project"]["reference"],
                format!("Project/{}", world.project()),
                "{body}"
            );
            assert_eq!(user["meta"]["project"], world.project(), "{body}");
        } else {
            assert!(user.get("project").is_none(), "{body}");
        }
    }
}

#[tokio::test]
async fn invite_with_external_id_only() {
    let world = world().await;
    let body = json!({"resourceType": "Patient", "firstName": "Ext", "lastName": "Ernal", "externalId": "mrn-42"});
    let (status, membership) = world.invite(&world.admin_token, body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{membership}");
    assert_eq!(membership["externalId"], "mrn-42");
    let user = world.read("User", &id_of(&membership["user"])).await;
    assert_eq!(
        user["project"]["reference"],
        format!("Project/{}", world.project())
    );
    assert!(user.get("email").is_none());

    // Look-up by external ID finds the membership.
    let found = world
        .server
        .services
        .find_membership_by_external_id(world.project(), "mrn-42")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, membership["id"].as_str().unwrap());

    // The same external ID again is the same person, so a duplicate.
    let (status, outcome) = world.invite(&world.admin_token, body).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(issue_text(&outcome).starts_with("User is already a member of this project"));
}

#[tokio::test]
async fn duplicate_invite_conflicts_without_writes() {
    let world = world().await;
    let (status, first) = world
        .invite(&world.admin_token, practitioner("dup@example.com"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let before = world.counts().await;

    // Another spelling of the same email is the same person.
    let (status, outcome) = world
        .invite(&world.admin_token, practitioner("DUP@Example.com"))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{outcome}");
    assert_eq!(outcome["id"], "conflict");
    let text = issue_text(&outcome);
    assert!(
        text.starts_with("User is already a member of this project"),
        "{text}"
    );
    assert!(
        text.contains(first["id"].as_str().unwrap()),
        "the message names the membership: {text}"
    );
    assert_eq!(
        world.counts().await,
        before,
        "a rejected invite wrote something"
    );
}

#[tokio::test]
async fn upsert_updates_existing_membership() {
    let world = world().await;
    let (_, first) = world
        .invite(&world.admin_token, practitioner("up@example.com"))
        .await;
    let mut body = practitioner("up@example.com");
    body["upsert"] = json!(true);
    body["membership"] = json!({"admin": true});
    let (status, second) = world.invite(&world.admin_token, body).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["id"], first["id"]);
    assert_eq!(second["admin"], true);
    assert_eq!(
        second["profile"]["reference"],
        first["profile"]["reference"]
    );
}

#[tokio::test]
async fn upsert_with_other_profile_conflicts() {
    let world = world().await;
    let (_, _) = world
        .invite(&world.admin_token, practitioner("prof@example.com"))
        .await;
    let (status, other) = world
        .call(
            Method::POST,
            "fhir/R4/Practitioner",
            &world.admin_token,
            Some(json!({"resourceType": "Practitioner"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let mut body = practitioner("prof@example.com");
    body["upsert"] = json!(true);
    body["membership"] = json!({"profile": {"reference": format!("Practitioner/{}", other["id"].as_str().unwrap())}});
    let before = world.counts().await;
    let (status, outcome) = world.invite(&world.admin_token, body).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        issue_text(&outcome),
        "User is already a member of this project with a different profile"
    );
    assert_eq!(world.counts().await, before);
}

#[tokio::test]
async fn force_new_membership_adds_second() {
    let world = world().await;
    let (_, first) = world
        .invite(&world.admin_token, practitioner("two@example.com"))
        .await;
    let mut body = practitioner("two@example.com");
    body["forceNewMembership"] = json!(true);
    let (status, second) = world.invite(&world.admin_token, body).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_ne!(second["id"], first["id"]);
    assert_eq!(second["user"], first["user"]);
}

#[tokio::test]
async fn invite_profile_and_policy_checks() {
    let world = world().await;
    let other = world.server.create_member("qadmin@example.com", true).await;
    let other_profile = other.profile.clone();

    let mut body = practitioner("p@example.com");
    body["membership"] = json!({"profile": {"reference": other_profile}});
    let (status, outcome) = world.invite(&world.admin_token, body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(issue_text(&outcome), "Profile does not belong to project");

    let missing = "AccessPolicy/00000000-0000-4000-8000-000000000000";
    let mut body = practitioner("p@example.com");
    body["membership"] = json!({"accessPolicy": {"reference": missing}});
    let (status, outcome) = world.invite(&world.admin_token, body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        issue_text(&outcome),
        format!("Access policy {missing} does not exist")
    );

    let policy = world
        .server
        .services
        .repo
        .prepare_create(
            json!({"resourceType": "AccessPolicy", "resource": [{"resourceType": "Patient"}]}),
            &WriteContext::system(Some(&other.project_id)),
        )
        .unwrap();
    let policy_reference = format!("AccessPolicy/{}", policy["id"].as_str().unwrap());
    world
        .server
        .services
        .repo
        .store
        .write(vec![medgate_store::WriteOp::Create(policy)])
        .await
        .unwrap();
    let mut body = practitioner("p@example.com");
    body["membership"] = json!({"accessPolicy": {"reference": policy_reference}});
    let (status, outcome) = world.invite(&world.admin_token, body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        issue_text(&outcome),
        format!("Access policy {policy_reference} does not belong to this project")
    );

    let mut body = practitioner("p@example.com");
    body["resourceType"] = json!("Patient");
    body["membership"] = json!({"profile": {"reference": world.admin.profile}});
    let (status, outcome) = world.invite(&world.admin_token, body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        issue_text(&outcome),
        "Profile resourceType does not match request"
    );
    assert!(
        world
            .search("User", &[("email", "p@example.com")])
            .await
            .is_empty()
    );
}

/// Creates an AccessPolicy in a project and returns its reference.
async fn create_policy(world: &World, project_id: &str) -> String {
    let policy = world
        .server
        .services
        .repo
        .prepare_create(
            json!({"resourceType": "AccessPolicy", "resource": [{"resourceType": "Patient"}]}),
            &WriteContext::system(Some(project_id)),
        )
        .unwrap();
    let reference = format!("AccessPolicy/{}", policy["id"].as_str().unwrap());
    world
        .server
        .services
        .repo
        .store
        .write(vec![medgate_store::WriteOp::Create(policy)])
        .await
        .unwrap();
    reference
}

async fn set_project_field(world: &World, field: &str, value: Value) {
    let mut project: Project = world
        .server
        .services
        .repo
        .read(world.project())
        .await
        .unwrap();
    project.extra.insert(field.to_string(), value);
    world
        .server
        .services
        .repo
        .update(&project, &WriteContext::system(Some(world.project())))
        .await
        .unwrap();
}

#[tokio::test]
async fn invite_applies_default_policies() {
    let world = world().await;
    let patient_policy = create_policy(&world, world.project()).await;
    let related_policy = create_policy(&world, world.project()).await;
    let admin_policy = create_policy(&world, world.project()).await;
    set_project_field(
        &world,
        "defaultPatientAccessPolicy",
        json!({"reference": patient_policy}),
    )
    .await;
    set_project_field(
        &world,
        "defaultAccessPolicies",
        json!([
            {"profileType": "RelatedPerson", "accessPolicy": {"reference": related_policy}},
            {"profileType": "Admin", "accessPolicy": {"reference": admin_policy}}
        ]),
    )
    .await;

    let (status, patient) = world
        .invite(&world.admin_token, json!({"resourceType": "Patient", "firstName": "Pat", "lastName": "Doe", "email": "pat@example.com", "sendEmail": false}))
        .await;
    assert_eq!(status, StatusCode::OK, "{patient}");
    assert_eq!(patient["accessPolicy"]["reference"], patient_policy);

    let (status, related) = world
        .invite(&world.admin_token, json!({"resourceType": "RelatedPerson", "firstName": "Rel", "lastName": "Doe", "email": "rel@example.com", "sendEmail": false, "patient": patient["profile"]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{related}");
    assert_eq!(related["access"][0]["policy"]["reference"], related_policy);
    assert_eq!(related["access"][0]["parameter"][0]["name"], "patient");
    assert_eq!(
        related["access"][0]["parameter"][0]["valueReference"]["reference"],
        patient["profile"]["reference"]
    );
    let profile = world
        .read("RelatedPerson", &id_of(&related["profile"]))
        .await;
    assert_eq!(
        profile["patient"]["reference"],
        patient["profile"]["reference"]
    );

    let mut body = practitioner("boss@example.com");
    body["membership"] = json!({"admin": true});
    let (status, admin) = world.invite(&world.admin_token, body).await;
    assert_eq!(status, StatusCode::OK, "{admin}");
    assert_eq!(admin["accessPolicy"]["reference"], admin_policy);
}

#[tokio::test]
async fn related_person_patient_must_exist_in_project() {
    let world = world().await;
    let body = json!({"resourceType": "RelatedPerson", "firstName": "Rel", "lastName": "Doe", "email": "rel@example.com",
        "patient": {"reference": "Patient/00000000-0000-4000-8000-000000000000"}});
    let (status, outcome) = world.invite(&world.admin_token, body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        issue_text(&outcome),
        "Patient Patient/00000000-0000-4000-8000-000000000000 does not exist"
    );
}

// ---------------------------------------------------------------------------------------
// Emails are case-insensitive, and one email never names two users in a project

#[tokio::test]
async fn invited_email_is_case_insensitive() {
    let world = world().await;
    let mut body = practitioner("Alice@Example.com");
    body["password"] = json!(PASSWORD);
    let (status, membership) = world.invite(&world.admin_token, body).await;
    assert_eq!(status, StatusCode::OK, "{membership}");
    let user = world.read("User", &id_of(&membership["user"])).await;
    assert_eq!(user["email"], "alice@example.com");

    // Signing in with another spelling reaches the same user.
    let response = world
        .server
        .post_json(
            "auth/login",
            json!({"email": "alice@example.com", "password": PASSWORD,
            "codeChallenge": common::CHALLENGE, "codeChallengeMethod": "S256"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let login: Value = response.json().await.unwrap();
    assert!(login["code"].is_string(), "{login}");
    let response = world
        .server
        .post_json(
            "auth/login",
            json!({"email": "ALICE@EXAMPLE.COM", "password": PASSWORD,
            "codeChallenge": common::CHALLENGE, "codeChallengeMethod": "S256"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    // Inviting `ALICE@example.COM` into another project reuses the user.
    let other = world.server.create_member("qadmin@example.com", true).await;
    let other_token = access_token(&world.server, &other).await;
    let (status, second) = world
        .call(
            Method::POST,
            &format!("admin/projects/{}/invite", other.project_id),
            &other_token,
            Some(practitioner("ALICE@example.COM")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["user"]["reference"], membership["user"]["reference"]);
    assert_eq!(
        world
            .search("User", &[("email", "alice@example.com")])
            .await
            .len(),
        1
    );
    // An existing user gets no set-password request.
    assert_eq!(
        world
            .search(
                "UserSecurityRequest",
                &[("user", membership["user"]["reference"].as_str().unwrap())]
            )
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn same_email_at_two_scopes_is_rejected() {
    let world = world().await;
    // A server-scoped practitioner is a member of P.
    let (status, _) = world
        .invite(&world.admin_token, practitioner("both@example.com"))
        .await;
    assert_eq!(status, StatusCode::OK);
    // A project-scoped patient with the same email would be a second user in P.
    let before = world.counts().await;
    let body = json!({"resourceType": "Patient", "firstName": "Both", "lastName": "Ways", "email": "both@example.com", "sendEmail": false});
    let (status, outcome) = world.invite(&world.admin_token, body).await;
    assert_eq!(status, StatusCode::CONFLICT, "{outcome}");
    assert_eq!(
        issue_text(&outcome),
        "User is already a member of this project"
    );
    assert_eq!(world.counts().await, before);

    // The other way round: a project-scoped patient first, then a server-scoped invite.
    let body = json!({"resourceType": "Patient", "firstName": "Only", "lastName": "Here", "email": "scoped@example.com", "sendEmail": false});
    let (status, _) = world.invite(&world.admin_token, body).await;
    assert_eq!(status, StatusCode::OK);
    let (status, outcome) = world
        .invite(&world.admin_token, practitioner("scoped@example.com"))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{outcome}");
    assert_eq!(
        world
            .search("User", &[("email", "scoped@example.com")])
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn project_scoped_sign_in_needs_project() {
    let world = world().await;
    let body = json!({"resourceType": "Patient", "firstName": "Pat", "lastName": "Doe", "email": "pat@example.com", "password": PASSWORD, "sendEmail": false});
    let (status, _) = world.invite(&world.admin_token, body).await;
    assert_eq!(status, StatusCode::OK);
    let login = |project: Option<&str>| {
        let mut body = json!({"email": "PAT@example.com", "password": PASSWORD,
            "codeChallenge": common::CHALLENGE, "codeChallengeMethod": "S256"});
        if let Some(project) = project {
            body["projectId"] = json!(project);
        }
        body
    };
    let response = world
        .server
        .post_json("auth/login", login(Some(world.project())))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    // Without the project, a project-scoped user does not exist.
    let response = world.server.post_json("auth/login", login(None)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

// ---------------------------------------------------------------------------------------
// Memberships

#[tokio::test]
async fn inactive_membership_takes_effect_at_once() {
    let world = world().await;
    let member = world
        .server
        .create_member("soon-gone@example.com", false)
        .await;
    let token = access_token(&world.server, &member).await;
    let (status, _) = world.call(Method::GET, "auth/me", &token, None).await;
    assert_eq!(status, StatusCode::OK);

    // The member's project admin switches the membership off.
    let admin_token = world.admin_token_in(&member.project_id).await;
    let path = format!(
        "admin/projects/{}/members/{}",
        member.project_id, member.membership_id
    );
    let (status, mut membership) = world.call(Method::GET, &path, &admin_token, None).await;
    assert_eq!(status, StatusCode::OK, "{membership}");
    membership["active"] = json!(false);
    let (status, updated) = world
        .call(Method::POST, &path, &admin_token, Some(membership))
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["active"], false);

    // The next request with the old token is refused, and so is a new sign-in.
    let (status, _) = world.call(Method::GET, "auth/me", &token, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let response = world
        .server
        .post_json(
            "auth/login",
            json!({"email": member.email, "password": member.password,
            "codeChallenge": common::CHALLENGE, "codeChallengeMethod": "S256"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let outcome: Value = response.json().await.unwrap();
    assert_eq!(issue_text(&outcome), "Profile not active");
}

#[tokio::test]
async fn member_update_checks_identity() {
    let world = world().await;
    let path = format!(
        "admin/projects/{}/members/{}",
        world.project(),
        world.admin.membership_id
    );
    let (_, membership) = world
        .call(Method::GET, &path, &world.admin_token, None)
        .await;
    let mut wrong_id = membership.clone();
    wrong_id["id"] = json!("00000000-0000-4000-8000-000000000000");
    let (status, _) = world
        .call(Method::POST, &path, &world.admin_token, Some(wrong_id))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let mut wrong_type = membership;
    wrong_type["resourceType"] = json!("Patient");
    let (status, _) = world
        .call(Method::POST, &path, &world.admin_token, Some(wrong_type))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn membership_of_other_project_is_forbidden() {
    let world = world().await;
    let other = world.server.create_member("qadmin@example.com", true).await;
    // The path names P, but the membership is in Q.
    let path = format!(
        "admin/projects/{}/members/{}",
        world.project(),
        other.membership_id
    );
    for method in [Method::GET, Method::DELETE] {
        let (status, _) = world
            .call(method.clone(), &path, &world.admin_token, None)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method}");
    }
    assert!(
        world
            .server
            .services
            .repo
            .store
            .read("ProjectMembership", &other.membership_id)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn owner_membership_cannot_be_deleted() {
    let world = world().await;
    let mut project: Project = world
        .server
        .services
        .repo
        .read(world.project())
        .await
        .unwrap();
    project.owner = Some(medgate_fhir::Reference::new("User", &world.admin.user_id));
    world
        .server
        .services
        .repo
        .update(&project, &WriteContext::system(Some(world.project())))
        .await
        .unwrap();
    let path = format!(
        "admin/projects/{}/members/{}",
        world.project(),
        world.admin.membership_id
    );
    let (status, outcome) = world
        .call(Method::DELETE, &path, &world.admin_token, None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        issue_text(&outcome),
        "Cannot delete the owner of the project"
    );
}

#[tokio::test]
async fn deleting_last_membership_deletes_project_user() {
    let world = world().await;
    let body = json!({"resourceType": "Patient", "firstName": "Pat", "lastName": "Doe", "email": "pat@example.com", "sendEmail": false});
    let (_, patient) = world.invite(&world.admin_token, body).await;
    let (_, doctor) = world
        .invite(&world.admin_token, practitioner("doc@example.com"))
        .await;

    for membership in [&patient, &doctor] {
        let path = format!(
            "admin/projects/{}/members/{}",
            world.project(),
            membership["id"].as_str().unwrap()
        );
        let (status, outcome) = world
            .call(Method::DELETE, &path, &world.admin_token, None)
            .await;
        assert_eq!(status, StatusCode::OK, "{outcome}");
        assert_eq!(outcome["id"], "ok");
        assert!(
            world
                .server
                .services
                .repo
                .store
                .read("ProjectMembership", membership["id"].as_str().unwrap())
                .await
                .is_err()
        );
    }
    // The project-scoped patient is gone; the server-scoped practitioner stays.
    let patient_user = world
        .server
        .services
        .repo
        .store
        .read("User", &id_of(&patient["user"]))
        .await;
    assert!(
        matches!(patient_user, Err(medgate_store::StoreError::Gone)),
        "{patient_user:?}"
    );
    assert!(
        world
            .server
            .services
            .repo
            .store
            .read("User", &id_of(&doctor["user"]))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn admin_flag_change_swaps_default_policy() {
    let world = world().await;
    let practitioner_policy = create_policy(&world, world.project()).await;
    let admin_policy = create_policy(&world, world.project()).await;
    set_project_field(
        &world,
        "defaultAccessPolicies",
        json!([
            {"profileType": "Practitioner", "accessPolicy": {"reference": practitioner_policy}},
            {"profileType": "Admin", "accessPolicy": {"reference": admin_policy}}
        ]),
    )
    .await;
    let (_, membership) = world
        .invite(&world.admin_token, practitioner("promo@example.com"))
        .await;
    assert_eq!(membership["accessPolicy"]["reference"], practitioner_policy);

    let mut promoted = membership.clone();
    promoted["admin"] = json!(true);
    let path = format!(
        "admin/projects/{}/members/{}",
        world.project(),
        membership["id"].as_str().unwrap()
    );
    let (status, updated) = world
        .call(Method::POST, &path, &world.admin_token, Some(promoted))
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["admin"], true);
    assert_eq!(updated["accessPolicy"]["reference"], admin_policy);
}

// ---------------------------------------------------------------------------------------
// Clients and project lists

#[tokio::test]
async fn admin_creates_client_with_membership() {
    let world = world().await;
    let path = format!("admin/projects/{}/client", world.project());
    let (status, client) = world
        .call(
            Method::POST,
            &path,
            &world.admin_token,
            Some(json!({"name": "Svc", "description": "Back end"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{client}");
    assert_eq!(client["name"], "Svc");
    assert_eq!(client["meta"]["project"], world.project());
    let secret = client["secret"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 64);
    let client_reference = format!("ClientApplication/{}", client["id"].as_str().unwrap());
    let memberships = world
        .search("ProjectMembership", &[("user", &client_reference)])
        .await;
    assert_eq!(memberships.len(), 1);
    assert_eq!(memberships[0]["profile"]["reference"], client_reference);

    // The secret works for client credentials.
    let response = world
        .server
        .post_form(
            "oauth2/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", client["id"].as_str().unwrap()),
                ("client_secret", &secret),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    let (status, outcome) = world
        .call(Method::POST, &path, &world.admin_token, Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(issue_text(&outcome), "Client name is required");
}

#[tokio::test]
async fn admin_replaces_project_lists() {
    let world = world().await;
    for (path, field, body) in [
        (
            "settings",
            "setting",
            json!([{"name": "allowedMfaMethods", "valueString": "totp"}]),
        ),
        (
            "secrets",
            "secret",
            json!([{"name": "apiKey", "valueString": "s3cr3t"}]),
        ),
        (
            "sites",
            "site",
            json!([{"name": "web", "domain": ["app.example.com"]}]),
        ),
    ] {
        let url = format!("admin/projects/{}/{path}", world.project());
        let (status, project) = world
            .call(Method::POST, &url, &world.admin_token, Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::OK, "{path}: {project}");
        assert_eq!(project[field], body, "{path}");
    }
    let (_, summary) = world
        .call(
            Method::GET,
            &format!("admin/projects/{}", world.project()),
            &world.admin_token,
            None,
        )
        .await;
    assert_eq!(summary["project"]["secret"][0]["name"], "apiKey");
    assert_eq!(
        summary["project"]["site"][0]["domain"][0],
        "app.example.com"
    );

    let url = format!("admin/projects/{}/sites", world.project());
    let (status, outcome) = world
        .call(
            Method::POST,
            &url,
            &world.admin_token,
            Some(json!([{"name": "web"}])),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(issue_text(&outcome), "A site must have a domain list");
}

#[tokio::test]
async fn rotate_secret_checks_client_project() {
    let world = world().await;
    let other = world.server.create_member("qadmin@example.com", true).await;
    let other_token = access_token(&world.server, &other).await;
    let (status, client) = world
        .call(
            Method::POST,
            &format!("admin/projects/{}/client", other.project_id),
            &other_token,
            Some(json!({"name": "Theirs"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    // P's admin has the secret, but the client is in Q.
    let body = json!({"resourceType": "Parameters", "parameter": [{"name": "secret", "valueString": client["secret"]}]});
    let path = format!(
        "fhir/R4/ClientApplication/{}/$rotate-secret",
        client["id"].as_str().unwrap()
    );
    let (status, _) = world
        .call(Method::POST, &path, &world.admin_token, Some(body.clone()))
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another project's client is not found"
    );

    let (status, rotated) = world
        .call(Method::POST, &path, &other_token, Some(body))
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert_ne!(rotated["secret"], client["secret"]);
}

// ---------------------------------------------------------------------------------------
// Project/$init and User/$update-email

#[tokio::test]
async fn super_admin_inits_project() {
    let world = world().await;
    let body = json!({"resourceType": "Parameters", "parameter": [
        {"name": "name", "valueString": "Clinic Two"},
        {"name": "ownerEmail", "valueString": "Owner@Example.com"}
    ]});
    let (status, project) = world
        .call(
            Method::POST,
            "fhir/R4/Project/$init",
            &world.super_token,
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{project}");
    assert_eq!(project["name"], "Clinic Two");
    let owner = world
        .search("User", &[("email", "owner@example.com")])
        .await;
    assert_eq!(owner.len(), 1);
    assert_eq!(
        project["owner"]["reference"],
        format!("User/{}", owner[0]["id"].as_str().unwrap())
    );
    let memberships = world
        .search(
            "ProjectMembership",
            &[(
                "project",
                &format!("Project/{}", project["id"].as_str().unwrap()),
            )],
        )
        .await;
    assert_eq!(memberships.len(), 2, "owner and default client");

    let (status, _) = world
        .call(
            Method::POST,
            "fhir/R4/Project/$init",
            &world.admin_token,
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let scoped = json!({"resourceType": "Patient", "firstName": "Pat", "lastName": "Doe", "email": "pat@example.com", "sendEmail": false});
    let (_, membership) = world.invite(&world.admin_token, scoped).await;
    let body = json!({"resourceType": "Parameters", "parameter": [
        {"name": "name", "valueString": "Clinic Three"},
        {"name": "owner", "valueReference": membership["user"]}
    ]});
    let (status, outcome) = world
        .call(
            Method::POST,
            "fhir/R4/Project/$init",
            &world.super_token,
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        issue_text(&outcome),
        "Project owner must not belong to another Project"
    );
}

fn update_email(email: &str) -> Value {
    json!({"resourceType": "Parameters", "parameter": [
        {"name": "email", "valueString": email},
        {"name": "updateProfileTelecom", "valueBoolean": true}
    ]})
}

#[tokio::test]
async fn admin_updates_project_user_email() {
    let world = world().await;
    let body = json!({"resourceType": "Patient", "firstName": "Pat", "lastName": "Doe", "email": "old@example.com", "sendEmail": false});
    let (_, membership) = world.invite(&world.admin_token, body).await;
    let user_id = id_of(&membership["user"]);
    let path = format!("fhir/R4/User/{user_id}/$update-email");
    let (status, user) = world
        .call(
            Method::POST,
            &path,
            &world.admin_token,
            Some(update_email("New@Example.com")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["email"], "new@example.com");
    assert!(user.get("passwordHash").is_none());
    assert_eq!(user["emailVerified"], false);
    let profile = world.read("Patient", &id_of(&membership["profile"])).await;
    assert_eq!(profile["telecom"][0]["value"], "new@example.com");
    assert_eq!(profile["telecom"].as_array().unwrap().len(), 1);

    // The new address gets a link that verifies it.
    let emails = world.queued_emails().await;
    assert_eq!(emails.len(), 1, "{emails:?}");
    assert_eq!(emails[0]["kind"], "verifyEmail");
    assert_eq!(emails[0]["to"], "new@example.com");
    let link = emails[0]["values"]["link"].as_str().unwrap();
    let path = link
        .strip_prefix(&world.server.url("verifyemail/"))
        .expect(link);
    let (request_id, secret) = path.split_once('/').unwrap();
    let request = world.read("UserSecurityRequest", request_id).await;
    assert_eq!(request["type"], "verify-email");
    assert_eq!(request["user"]["reference"], format!("User/{user_id}"));
    assert_eq!(
        request["secretHash"],
        medgate_service::random::sha256_hex(secret)
    );

    // A server-scoped user is the super admin's to change.
    let (_, doctor) = world
        .invite(&world.admin_token, practitioner("doc@example.com"))
        .await;
    let path = format!("fhir/R4/User/{}/$update-email", id_of(&doctor["user"]));
    let (status, _) = world
        .call(
            Method::POST,
            &path,
            &world.admin_token,
            Some(update_email("doc2@example.com")),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, user) = world
        .call(
            Method::POST,
            &path,
            &world.super_token,
            Some(update_email("doc2@example.com")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(
        world.read("User", &id_of(&doctor["user"])).await["email"],
        "doc2@example.com"
    );

    // Taking another user's email is a conflict.
    let (status, _) = world
        .call(
            Method::POST,
            &path,
            &world.super_token,
            Some(update_email("padmin@example.com")),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn project_admin_sees_only_project_users() {
    let world = world().await;
    let body = json!({"resourceType": "Patient", "firstName": "Pat", "lastName": "Doe", "email": "pat@example.com", "password": PASSWORD, "sendEmail": false});
    let (_, patient) = world.invite(&world.admin_token, body).await;
    let (_, doctor) = world
        .invite(&world.admin_token, practitioner("doc@example.com"))
        .await;
    let (status, user) = world
        .call(
            Method::GET,
            &format!("fhir/R4/User/{}", id_of(&patient["user"])),
            &world.admin_token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(user.get("passwordHash").is_none());
    let (status, _) = world
        .call(
            Method::GET,
            &format!("fhir/R4/User/{}", id_of(&doctor["user"])),
            &world.admin_token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let _ = User::RESOURCE_TYPE;
}

// ---------------------------------------------------------------------------------------
// Invite emails go through the outbox in the invite's own batch

impl World {
    /// Claims every queued email and returns their payloads.
    async fn queued_emails(&self) -> Vec<Value> {
        let now = self.server.services.now();
        self.server
            .services
            .repo
            .store
            .claim_outbox("email", now, now + chrono::Duration::minutes(5), 100)
            .await
            .unwrap()
            .into_iter()
            .map(|message| message.payload)
            .collect()
    }
}

#[tokio::test]
async fn invite_queues_set_password_email() {
    let world = world().await;
    let mut body = practitioner("Mail@Example.com");
    body.as_object_mut().unwrap().remove("sendEmail");
    let (status, membership) = world.invite(&world.admin_token, body).await;
    assert_eq!(status, StatusCode::OK, "{membership}");

    let emails = world.queued_emails().await;
    assert_eq!(emails.len(), 1, "{emails:?}");
    let email = &emails[0];
    assert_eq!(email["kind"], "invite");
    assert_eq!(email["to"], "mail@example.com");
    assert_eq!(email["projectId"], world.project());
    assert_eq!(email["values"]["name"], "Bob Jones");
    assert_eq!(
        email["values"]["projectName"],
        "Project of padmin@example.com"
    );

    // The link names the set-password request and carries the secret whose hash it stores.
    let link = email["values"]["link"].as_str().unwrap();
    let path = link
        .strip_prefix(&world.server.url("setpassword/"))
        .expect(link);
    let (request_id, secret) = path.split_once('/').unwrap();
    let request = world.read("UserSecurityRequest", request_id).await;
    assert_eq!(request["user"], membership["user"]);
    assert_eq!(
        request["secretHash"],
        medgate_service::random::sha256_hex(secret)
    );
}

#[tokio::test]
async fn invite_of_existing_user_queues_welcome() {
    let world = world().await;
    let other = world.server.create_member("qadmin@example.com", true).await;
    let other_token = access_token(&world.server, &other).await;
    let (status, _) = world
        .call(
            Method::POST,
            &format!("admin/projects/{}/invite", other.project_id),
            &other_token,
            Some(practitioner("known@example.com")),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let mut body = practitioner("known@example.com");
    body["sendEmail"] = json!(true);
    let (status, _) = world.invite(&world.admin_token, body).await;
    assert_eq!(status, StatusCode::OK);
    let emails = world.queued_emails().await;
    assert_eq!(
        emails.len(),
        1,
        "sendEmail: false queued nothing: {emails:?}"
    );
    assert_eq!(emails[0]["kind"], "welcome");
    assert_eq!(emails[0]["values"]["link"], world.server.url("signin"));
}

#[tokio::test]
async fn failed_invite_queues_nothing() {
    let world = world().await;
    let mut body = practitioner("once@example.com");
    body["sendEmail"] = json!(true);
    let (status, _) = world.invite(&world.admin_token, body.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(world.queued_emails().await.len(), 1);
    let (status, _) = world.invite(&world.admin_token, body).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(world.queued_emails().await.is_empty());
}

#[tokio::test]
async fn admin_sees_security_request_without_secret() {
    let world = world().await;
    let (_, membership) = world
        .invite(&world.admin_token, practitioner("custom@example.com"))
        .await;
    let path = format!(
        "fhir/R4/UserSecurityRequest?user={}",
        membership["user"]["reference"].as_str().unwrap()
    );
    let (status, bundle) = world
        .call(Method::GET, &path, &world.admin_token, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    let request = &bundle["entry"][0]["resource"];
    assert_eq!(request["type"], "invite");
    assert!(request.get("secretHash").is_none(), "{request}");
    assert!(request.get("secret").is_none(), "{request}");
}

#[tokio::test]
async fn deleted_membership_token_is_refused() {
    let world = world().await;
    let member = world
        .server
        .create_member("leaving@example.com", false)
        .await;
    let tokens = world
        .server
        .member_tokens(&member, "openid offline_access")
        .await;
    let token = tokens["access_token"].as_str().unwrap();
    let admin_token = world.admin_token_in(&member.project_id).await;
    let path = format!(
        "admin/projects/{}/members/{}",
        member.project_id, member.membership_id
    );
    let (status, _) = world.call(Method::DELETE, &path, &admin_token, None).await;
    assert_eq!(status, StatusCode::OK);

    let (status, _) = world.call(Method::GET, "auth/me", token, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let response = world
        .server
        .post_form(
            "oauth2/token",
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // The server-scoped user itself stays.
    assert!(
        world
            .server
            .services
            .repo
            .store
            .read("User", &member.user_id)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn super_admin_reads_any_project() {
    let world = world().await;
    let path = format!("admin/projects/{}", world.project());
    let (status, body) = world
        .call(Method::GET, &path, &world.super_token, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["project"]["id"], world.project());
    let (status, _) = world
        .call(
            Method::GET,
            "admin/projects/00000000-0000-4000-8000-000000000000",
            &world.super_token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn project_admin_cannot_update_server_user() {
    let world = world().await;
    let (_, doctor) = world
        .invite(&world.admin_token, practitioner("srv@example.com"))
        .await;
    let user_id = id_of(&doctor["user"]);
    let mut user = world.read("User", &user_id).await;
    user["firstName"] = json!("Mallory");
    let (status, _) = world
        .call(
            Method::PUT,
            &format!("fhir/R4/User/{user_id}"),
            &world.admin_token,
            Some(user),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(world.read("User", &user_id).await["firstName"], "Bob");
}

#[tokio::test]
async fn update_email_can_skip_verification() {
    let world = world().await;
    let body = json!({"resourceType": "Patient", "firstName": "Pat", "lastName": "Doe", "email": "skip@example.com", "sendEmail": false});
    let (_, membership) = world.invite(&world.admin_token, body).await;
    let path = format!("fhir/R4/User/{}/$update-email", id_of(&membership["user"]));
    let parameters = json!({"resourceType": "Parameters", "parameter": [
        {"name": "email", "valueString": "skipped@example.com"},
        {"name": "skipEmailVerification", "valueBoolean": true}
    ]});
    let (status, user) = world
        .call(Method::POST, &path, &world.admin_token, Some(parameters))
        .await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["emailVerified"], true);
    assert!(world.queued_emails().await.is_empty());
    // Without updateProfileTelecom the profile keeps its address.
    let profile = world.read("Patient", &id_of(&membership["profile"])).await;
    assert_eq!(profile["telecom"][0]["value"], "skip@example.com");
}

#[tokio::test]
async fn upsert_keeps_chosen_policy() {
    let world = world().await;
    let chosen = create_policy(&world, world.project()).await;
    let admin_default = create_policy(&world, world.project()).await;
    set_project_field(
        &world,
        "defaultAccessPolicies",
        json!([{"profileType": "Admin", "accessPolicy": {"reference": admin_default}}]),
    )
    .await;
    let mut body = practitioner("keep@example.com");
    body["membership"] = json!({"accessPolicy": {"reference": chosen}});
    let (status, first) = world.invite(&world.admin_token, body).await;
    assert_eq!(status, StatusCode::OK, "{first}");

    let mut body = practitioner("keep@example.com");
    body["upsert"] = json!(true);
    body["membership"] = json!({"admin": true});
    let (status, second) = world.invite(&world.admin_token, body).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["id"], first["id"]);
    assert_eq!(second["admin"], true);
    assert_eq!(second["accessPolicy"]["reference"], chosen);
}

#[tokio::test]
async fn registration_cannot_shadow_server_member() {
    let world = world().await;
    let policy = create_policy(&world, world.project()).await;
    set_project_field(
        &world,
        "defaultPatientAccessPolicy",
        json!({"reference": policy}),
    )
    .await;
    let (status, _) = world
        .invite(&world.admin_token, practitioner("member@example.com"))
        .await;
    assert_eq!(status, StatusCode::OK);

    let before = world.counts().await;
    let body = json!({"firstName": "Eve", "lastName": "Doe", "email": "Member@example.com",
        "password": PASSWORD, "projectId": world.project(),
        "codeChallenge": common::CHALLENGE, "codeChallengeMethod": "S256"});
    let response = world.server.post_json("auth/newuser", body).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let outcome: Value = response.json().await.unwrap();
    assert_eq!(issue_text(&outcome), "Email already registered");
    assert_eq!(world.counts().await, before);

    // Another email registers into the open project as before.
    let body = json!({"firstName": "Eve", "lastName": "Doe", "email": "eve@example.com",
        "password": PASSWORD, "projectId": world.project(),
        "codeChallenge": common::CHALLENGE, "codeChallengeMethod": "S256"});
    let response = world.server.post_json("auth/newuser", body).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn invite_marks_mfa_required() {
    let world = world().await;
    let mut body = practitioner("mfa@example.com");
    body["mfaRequired"] = json!(true);
    let (status, membership) = world.invite(&world.admin_token, body).await;
    assert_eq!(status, StatusCode::OK, "{membership}");
    let user = world.read("User", &id_of(&membership["user"])).await;
    assert_eq!(user["mfaRequired"], true);

    let (_, other) = world
        .invite(&world.admin_token, practitioner("plain-mfa@example.com"))
        .await;
    let user = world.read("User", &id_of(&other["user"])).await;
    assert!(user.get("mfaRequired").is_none());
}

#[tokio::test]
async fn admin_client_invites_with_basic_auth() {
    let world = world().await;
    let path = format!("admin/projects/{}/client", world.project());
    let (status, client) = world
        .call(
            Method::POST,
            &path,
            &world.admin_token,
            Some(json!({"name": "Provisioner"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let client_id = client["id"].as_str().unwrap();
    let secret = client["secret"].as_str().unwrap();

    // Not an admin yet: the client's membership has no admin flag.
    let invite = |world: &World| {
        world
            .server
            .http
            .post(
                world
                    .server
                    .url(&format!("admin/projects/{}/invite", world.project())),
            )
            .basic_auth(client_id, Some(secret))
            .json(&practitioner("provisioned@example.com"))
            .send()
    };
    assert_eq!(
        invite(&world).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );

    let memberships = world
        .search(
            "ProjectMembership",
            &[("user", &format!("ClientApplication/{client_id}"))],
        )
        .await;
    let mut membership = memberships[0].clone();
    membership["admin"] = json!(true);
    let member_path = format!(
        "admin/projects/{}/members/{}",
        world.project(),
        membership["id"].as_str().unwrap()
    );
    let (status, _) = world
        .call(
            Method::POST,
            &member_path,
            &world.admin_token,
            Some(membership),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let response = invite(&world).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let invited: Value = response.json().await.unwrap();
    assert_eq!(
        invited["invitedBy"]["reference"],
        format!("ClientApplication/{client_id}")
    );
}
