//! The FHIR REST API under `/fhir/R4`: CRUD, search and history, who may do what, hidden
//! secret fields, client secrets and `$rotate-secret`, and rejected input.

mod common;

use common::{ADMIN_EMAIL, ADMIN_PASSWORD, Member, TestServer};
use medgate_service::repo::WriteContext;
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

/// Field names that hold secrets or their hashes; no FHIR response may contain them.
const SECRET_FIELDS: &[&str] = &[
    "passwordHash",
    "mfaSecret",
    "secretHash",
    "retiringSecretHash",
    "privateKeyPkcs8",
    "codeHash",
    "cookieHash",
    "refreshSecretHash",
    "previousRefreshSecretHash",
    "refreshRotationSalt",
];

/// A signed-in caller of the FHIR API. Requests send `X-Medplum: extended`, as
/// `MedplumClient` does, unless `extended` is off.
struct Api<'a> {
    server: &'a TestServer,
    token: String,
    extended: bool,
}

impl<'a> Api<'a> {
    fn new(server: &'a TestServer, token: String) -> Self {
        Self {
            server,
            token,
            extended: true,
        }
    }

    fn builder(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            self.server.url(&format!("fhir/R4/{path}"))
        };
        let mut request = self
            .server
            .http
            .request(method, url)
            .bearer_auth(&self.token);
        if self.extended {
            request = request.header("x-medplum", "extended");
        }
        request
    }

    async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> reqwest::Response {
        let mut request = self.builder(method, path);
        if let Some(body) = body {
            request = request
                .header(header::CONTENT_TYPE, "application/fhir+json")
                .body(body.to_string());
        }
        request.send().await.unwrap()
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.send(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.send(Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: &Value) -> reqwest::Response {
        self.send(Method::PUT, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> reqwest::Response {
        self.send(Method::DELETE, path, None).await
    }

    /// Creates a resource and returns it; the create must succeed.
    async fn create(&self, resource: Value) -> Value {
        let resource_type = resource["resourceType"].as_str().unwrap().to_string();
        let response = self.post(&resource_type, &resource).await;
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "create {resource_type}"
        );
        response.json().await.unwrap()
    }

    /// Reads a resource and returns it; the read must succeed.
    async fn read(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "read {path}");
        response.json().await.unwrap()
    }
}

async fn body(response: reqwest::Response) -> Value {
    response.json().await.unwrap()
}

fn entries(bundle: &Value) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["resource"].clone())
        .collect()
}

fn assert_no_secret_fields(text: &str) {
    for field in SECRET_FIELDS {
        assert!(
            !text.contains(&format!("\"{field}\"")),
            "{field} in response: {text}"
        );
    }
}

fn patient(given: &str, family: &str) -> Value {
    json!({"resourceType": "Patient", "name": [{"given": [given], "family": family}]})
}

/// Creates a project with a member and signs them in.
async fn sign_in_member<'a>(server: &'a TestServer, email: &str, admin: bool) -> (Member, Api<'a>) {
    let member = server.create_member(email, admin).await;
    let tokens = server.member_tokens(&member, "openid").await;
    let token = tokens["access_token"].as_str().unwrap().to_string();
    (member, Api::new(server, token))
}

async fn sign_in_super_admin(server: &TestServer) -> Api<'_> {
    Api::new(server, server.admin_access_token().await)
}

/// `client_credentials` at the token endpoint; returns the status.
async fn client_credentials(server: &TestServer, client_id: &str, secret: &str) -> StatusCode {
    server
        .post_form(
            "oauth2/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", secret),
            ],
        )
        .await
        .status()
}

/// Creates a Patient in a project directly through the service layer.
async fn seed_patient(server: &TestServer, project_id: &str) -> String {
    let patient = server
        .services
        .repo
        .prepare_create(
            patient("Seeded", "Patient"),
            &WriteContext::system(Some(project_id)),
        )
        .unwrap();
    let id = patient["id"].as_str().unwrap().to_string();
    server
        .services
        .repo
        .store
        .write(vec![medgate_store::WriteOp::Create(patient)])
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn admin_crud_round_trip() {
    let server = TestServer::start().await;
    let (alice, api) = sign_in_member(&server, "alice@example.com", true).await;

    // create: 201 with Location, ETag, Last-Modified and the caller's project and author.
    let response = api.post("Patient", &patient("Ada", "Lovelace")).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let headers = response.headers().clone();
    let created = body(response).await;
    let id = created["id"].as_str().unwrap().to_string();
    let version = created["meta"]["versionId"].as_str().unwrap().to_string();
    let location = server.url(&format!("fhir/R4/Patient/{id}"));
    assert_eq!(headers[header::LOCATION], location.as_str());
    assert_eq!(headers[header::ETAG], format!("W/\"{version}\"").as_str());
    assert!(headers.contains_key(header::LAST_MODIFIED));
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/fhir+json")
    );
    assert_eq!(created["meta"]["project"], alice.project_id.as_str());
    assert_eq!(
        created["meta"]["author"]["reference"],
        alice.profile.as_str()
    );

    // read
    let response = api.get(&format!("Patient/{id}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::ETAG],
        format!("W/\"{version}\"").as_str()
    );
    assert_eq!(body(response).await["name"][0]["family"], "Lovelace");

    // update: a new version
    let mut changed = created.clone();
    changed["name"][0]["family"] = json!("King");
    let response = api.put(&format!("Patient/{id}"), &changed).await;
    assert_eq!(response.status(), StatusCode::OK);
    let updated = body(response).await;
    assert_ne!(updated["meta"]["versionId"], version.as_str());
    assert_eq!(updated["name"][0]["family"], "King");

    // search by name and by _id
    let bundle = api.read("Patient?name=ada").await;
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "searchset");
    assert_eq!(bundle["entry"][0]["fullUrl"], location.as_str());
    assert_eq!(bundle["link"][0]["relation"], "self");
    assert_eq!(entries(&bundle).len(), 1);
    let bundle = api.read(&format!("Patient?_id={id}")).await;
    assert_eq!(entries(&bundle)[0]["id"], id.as_str());
    let bundle = api.read("Patient?name=grace").await;
    assert!(entries(&bundle).is_empty());

    // history and vread
    let history = api.read(&format!("Patient/{id}/_history")).await;
    assert_eq!(history["type"], "history");
    assert_eq!(entries(&history).len(), 2);
    let first = api.read(&format!("Patient/{id}/_history/{version}")).await;
    assert_eq!(first["name"][0]["family"], "Lovelace");

    // delete: later reads are 410, search no longer finds it, a second delete is fine
    let response = api.delete(&format!("Patient/{id}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = api.get(&format!("Patient/{id}")).await;
    assert_eq!(response.status(), StatusCode::GONE);
    assert_eq!(body(response).await["issue"][0]["code"], "deleted");
    let bundle = api.read(&format!("Patient?_id={id}")).await;
    assert!(entries(&bundle).is_empty());
    let response = api.delete(&format!("Patient/{id}")).await;
    assert_eq!(response.status(), StatusCode::OK);

    // plain application/json is accepted too
    let response = api
        .builder(Method::POST, "Patient")
        .header(header::CONTENT_TYPE, "application/json")
        .body(patient("Grace", "Hopper").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn create_ignores_client_id_and_project() {
    let server = TestServer::start().await;
    let (alice, api) = sign_in_member(&server, "alice@example.com", true).await;
    let other = server.create_member("bob@example.com", true).await;

    let chosen_id = "8d3c1f52-5a3e-4d5e-9a55-0c2b8a1f0e11";
    let mut resource = patient("Ada", "Lovelace");
    resource["id"] = json!(chosen_id);
    resource["meta"] =
        json!({"project": other.project_id, "author": {"reference": "Practitioner/forged"}});
    let created = api.create(resource).await;

    assert_ne!(created["id"], chosen_id);
    assert_eq!(created["meta"]["project"], alice.project_id.as_str());
    assert_eq!(
        created["meta"]["author"]["reference"],
        alice.profile.as_str()
    );
}

#[tokio::test]
async fn extended_header_controls_meta() {
    let server = TestServer::start().await;
    let (_, mut api) = sign_in_member(&server, "alice@example.com", true).await;
    let created = api.create(patient("Ada", "Lovelace")).await;
    let path = format!("Patient/{}", created["id"].as_str().unwrap());

    api.extended = false;
    let plain = api.read(&path).await;
    assert!(plain["meta"]["versionId"].is_string());
    assert!(plain["meta"]["lastUpdated"].is_string());
    assert!(plain["meta"].get("project").is_none());
    assert!(plain["meta"].get("author").is_none());

    api.extended = true;
    let extended = api.read(&path).await;
    assert!(extended["meta"]["project"].is_string());
    assert!(extended["meta"]["author"].is_object());
}

#[tokio::test]
async fn member_without_policy_reaches_ordinary_types_only() {
    let server = TestServer::start().await;
    let (member, api) = sign_in_member(&server, "carol@example.com", false).await;
    let patient_id = seed_patient(&server, &member.project_id).await;

    // No policy is Medplum's legacy open policy: every ordinary type of the project.
    let profile = api.read(&member.profile).await;
    assert_eq!(
        format!("Practitioner/{}", profile["id"].as_str().unwrap()),
        member.profile
    );
    api.read(&format!("Patient/{patient_id}")).await;
    assert_eq!(entries(&api.read("Patient").await).len(), 1);
    api.create(patient("New", "Patient")).await;

    // Administration and protected types stay out of reach.
    let denied = [
        api.get(&format!("ProjectMembership/{}", member.membership_id))
            .await,
        api.get("ProjectMembership").await,
        api.get(&format!("Project/{}", member.project_id)).await,
        api.get("User").await,
        api.get("Login").await,
    ];
    for response in denied {
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(body(response).await["id"], "forbidden");
    }
}

#[tokio::test]
async fn other_projects_resources_are_not_found() {
    let server = TestServer::start().await;
    let (_, alice) = sign_in_member(&server, "alice@example.com", true).await;
    let (_, bob) = sign_in_member(&server, "bob@example.com", true).await;
    let created = alice.create(patient("Ada", "Lovelace")).await;
    let id = created["id"].as_str().unwrap().to_string();
    let path = format!("Patient/{id}");

    assert_eq!(bob.get(&path).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        bob.put(&path, &created).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(bob.delete(&path).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        bob.get(&format!("{path}/_history")).await.status(),
        StatusCode::NOT_FOUND
    );
    let version = created["meta"]["versionId"].as_str().unwrap();
    assert_eq!(
        bob.get(&format!("{path}/_history/{version}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let bundle = bob.read(&format!("Patient?_id={id}")).await;
    assert!(entries(&bundle).is_empty());

    // Deleted, it still looks missing to the other project, not gone.
    assert_eq!(alice.delete(&path).await.status(), StatusCode::OK);
    assert_eq!(bob.get(&path).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(alice.get(&path).await.status(), StatusCode::GONE);
}

#[tokio::test]
async fn super_admin_reaches_every_project() {
    let server = TestServer::start().await;
    let (_, alice) = sign_in_member(&server, "alice@example.com", true).await;
    let created = alice.create(patient("Ada", "Lovelace")).await;
    let id = created["id"].as_str().unwrap();

    let root = sign_in_super_admin(&server).await;
    assert_eq!(root.read(&format!("Patient/{id}")).await["id"], id);
    let bundle = root.read(&format!("Patient?_id={id}")).await;
    assert_eq!(entries(&bundle).len(), 1);
}

#[tokio::test]
async fn protected_types_only_for_super_admins() {
    let server = TestServer::start().await;
    let (_, alice) = sign_in_member(&server, "alice@example.com", true).await;
    let root = sign_in_super_admin(&server).await;

    for path in [
        "Login",
        "JsonWebKey",
        "JsonWebKey/8d3c1f52-5a3e-4d5e-9a55-0c2b8a1f0e11",
    ] {
        assert_eq!(
            alice.get(path).await.status(),
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }

    for resource_type in ["JsonWebKey", "Login"] {
        let response = root.get(resource_type).await;
        assert_eq!(response.status(), StatusCode::OK);
        let text = response.text().await.unwrap();
        assert_no_secret_fields(&text);
        let bundle: Value = serde_json::from_str(&text).unwrap();
        assert!(
            !entries(&bundle).is_empty(),
            "{resource_type} search is empty"
        );
    }

    // Keys are created by key rotation only, which a REST body could not do: it cannot
    // carry the private key.
    let key = json!({"resourceType": "JsonWebKey", "active": true, "alg": "RS256"});
    assert_eq!(
        root.post("JsonWebKey", &key).await.status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn client_secret_shown_once() {
    let server = TestServer::start().await;
    let (alice, api) = sign_in_member(&server, "alice@example.com", true).await;

    let response = api
        .post(
            "ClientApplication",
            &json!({"resourceType": "ClientApplication", "name": "Billing Service", "accessTokenLifetime": "1h"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    let text = response.text().await.unwrap();
    assert_no_secret_fields(&text);
    let created: Value = serde_json::from_str(&text).unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    let secret = created["secret"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 64);
    assert_eq!(created["meta"]["project"], alice.project_id.as_str());

    // later reads and searches never show it
    let response = api.get(&format!("ClientApplication/{id}")).await;
    let text = response.text().await.unwrap();
    assert!(!text.contains(&secret));
    assert!(!text.contains("\"secret\""));
    assert_no_secret_fields(&text);
    let text = api.get("ClientApplication").await.text().await.unwrap();
    assert!(!text.contains(&secret));
    assert_no_secret_fields(&text);

    // MedplumClient encodes a space in a query as `+`.
    let bundle = api.read("ClientApplication?name=Billing+Serv").await;
    assert_eq!(entries(&bundle).len(), 1);

    // the client signs in through its own membership
    let bundle = api
        .read(&format!("ProjectMembership?user=ClientApplication/{id}"))
        .await;
    assert_eq!(entries(&bundle).len(), 1);
    assert_eq!(
        client_credentials(&server, &id, &secret).await,
        StatusCode::OK
    );
    assert_eq!(
        client_credentials(&server, &id, "0".repeat(64).as_str()).await,
        StatusCode::UNAUTHORIZED
    );

    // deleting the client removes its membership and ends its sign-ins
    assert_eq!(
        api.delete(&format!("ClientApplication/{id}"))
            .await
            .status(),
        StatusCode::OK
    );
    let bundle = api
        .read(&format!("ProjectMembership?user=ClientApplication/{id}"))
        .await;
    assert!(entries(&bundle).is_empty());
    assert_eq!(
        client_credentials(&server, &id, &secret).await,
        StatusCode::UNAUTHORIZED
    );
}

async fn create_client(api: &Api<'_>) -> (String, String) {
    let created = api
        .create(json!({"resourceType": "ClientApplication", "name": "Worker"}))
        .await;
    (
        created["id"].as_str().unwrap().to_string(),
        created["secret"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn rotate_secret_keeps_previous_as_retiring() {
    let server = TestServer::start().await;
    let (_, api) = sign_in_member(&server, "alice@example.com", true).await;
    let (id, first) = create_client(&api).await;
    let path = format!("ClientApplication/{id}/$rotate-secret");

    let response = api.send(Method::POST, &path, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    let text = response.text().await.unwrap();
    assert_no_secret_fields(&text);
    let rotated: Value = serde_json::from_str(&text).unwrap();
    let second = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(second, first);

    assert_eq!(
        client_credentials(&server, &id, &second).await,
        StatusCode::OK
    );
    assert_eq!(
        client_credentials(&server, &id, &first).await,
        StatusCode::OK
    );
    let read = api.read(&format!("ClientApplication/{id}")).await;
    assert!(read.get("secret").is_none());

    // A second rotation retires the second secret and ends the first.
    let response = api.send(Method::POST, &path, None).await;
    let third = body(response).await["secret"].as_str().unwrap().to_string();
    assert_eq!(
        client_credentials(&server, &id, &third).await,
        StatusCode::OK
    );
    assert_eq!(
        client_credentials(&server, &id, &second).await,
        StatusCode::OK
    );
    assert_eq!(
        client_credentials(&server, &id, &first).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn rotate_secret_only_by_admins_of_the_project() {
    let server = TestServer::start().await;
    let (_, alice) = sign_in_member(&server, "alice@example.com", true).await;
    let (_, bob) = sign_in_member(&server, "bob@example.com", true).await;
    let (_, carol) = sign_in_member(&server, "carol@example.com", false).await;
    let (id, secret) = create_client(&alice).await;
    let path = format!("ClientApplication/{id}/$rotate-secret");

    let response = carol.send(Method::POST, &path, None).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = bob.send(Method::POST, &path, None).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        client_credentials(&server, &id, &secret).await,
        StatusCode::OK
    );

    let response = alice
        .send(
            Method::POST,
            "ClientApplication/8d3c1f52-5a3e-4d5e-9a55-0c2b8a1f0e11/$rotate-secret",
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = alice
        .send(Method::POST, &format!("Patient/{id}/$rotate-secret"), None)
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

fn rotate_parameters(items: &[(&str, &str)]) -> Value {
    let parameter: Vec<Value> = items
        .iter()
        .map(|(name, value)| json!({"name": name, "valueString": value}))
        .collect();
    json!({"resourceType": "Parameters", "parameter": parameter})
}

#[tokio::test]
async fn rotate_secret_with_parameters() {
    let server = TestServer::start().await;
    let (_, api) = sign_in_member(&server, "alice@example.com", true).await;
    let (id, first) = create_client(&api).await;
    let path = format!("ClientApplication/{id}/$rotate-secret");

    let cases = [
        (rotate_parameters(&[]), "Secret to rotate must be provided"),
        (
            rotate_parameters(&[("secret", &first), ("retiringSecret", &first)]),
            "Only one secret can be rotated at a time",
        ),
        (
            rotate_parameters(&[("secret", "wrong")]),
            "Provided secret does not match client",
        ),
        (
            rotate_parameters(&[("retiringSecret", &first)]),
            "Provided secret does not match client",
        ),
    ];
    for (parameters, text) in cases {
        let response = api.post(&path, &parameters).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{text}");
        assert_eq!(body(response).await["issue"][0]["details"]["text"], text);
    }

    // secret = the current one: a new secret, the old one retiring
    let response = api
        .post(&path, &rotate_parameters(&[("secret", &first)]))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let second = body(response).await["secret"].as_str().unwrap().to_string();
    assert_eq!(
        client_credentials(&server, &id, &first).await,
        StatusCode::OK
    );

    // retiringSecret = the old one: it stops working, the current one stays
    let response = api
        .post(&path, &rotate_parameters(&[("retiringSecret", &first)]))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(body(response).await.get("secret").is_none());
    assert_eq!(
        client_credentials(&server, &id, &first).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        client_credentials(&server, &id, &second).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn secret_fields_never_appear_and_cannot_be_written() {
    let server = TestServer::start().await;
    let root = sign_in_super_admin(&server).await;
    let admin_user = server
        .services
        .find_user_by_email(ADMIN_EMAIL, None)
        .await
        .unwrap()
        .unwrap();
    let path = format!("User/{}", admin_user.id);

    // read and search
    let text = root.get(&path).await.text().await.unwrap();
    assert_no_secret_fields(&text);
    let user: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(user["email"], ADMIN_EMAIL);
    let text = root.get("User").await.text().await.unwrap();
    assert_no_secret_fields(&text);
    let text = root
        .get(&format!("{path}/_history"))
        .await
        .text()
        .await
        .unwrap();
    assert_no_secret_fields(&text);

    // An update with a forged hash keeps the stored one: the password still works.
    let mut forged = user.clone();
    forged["passwordHash"] = json!("$argon2id$v=19$m=19456,t=2,p=1$forged$forged");
    forged["firstName"] = json!("Renamed");
    let response = root.put(&path, &forged).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_no_secret_fields(&response.text().await.unwrap());
    let login = server
        .post_json(
            "auth/login",
            json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD,
                "codeChallenge": common::CHALLENGE, "codeChallengeMethod": "S256"}),
        )
        .await;
    assert_eq!(login.status(), StatusCode::OK);

    // A client's hashes survive an update that tries to replace or remove them.
    let (_, alice) = sign_in_member(&server, "alice@example.com", true).await;
    let (id, secret) = create_client(&alice).await;
    let mut client = alice.read(&format!("ClientApplication/{id}")).await;
    client["secretHash"] = json!("0".repeat(64));
    client["retiringSecretHash"] = json!("1".repeat(64));
    client["secret"] = json!("chosen-by-the-client");
    client["name"] = json!("Renamed");
    let response = alice.put(&format!("ClientApplication/{id}"), &client).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert_no_secret_fields(&text);
    assert!(!text.contains("chosen-by-the-client"));
    assert_eq!(
        client_credentials(&server, &id, &secret).await,
        StatusCode::OK
    );
    assert_eq!(
        client_credentials(&server, &id, "chosen-by-the-client").await,
        StatusCode::UNAUTHORIZED
    );

    // A created User never gets a hash from the body.
    let created = alice
        .create(
            json!({"resourceType": "User", "firstName": "Dan", "lastName": "Doe",
            "email": "dan@example.com", "passwordHash": "forged"}),
        )
        .await;
    let stored = server
        .services
        .repo
        .read::<medgate_fhir::resources::User>(created["id"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(stored.password_hash, None);
}

#[tokio::test]
async fn if_match_guards_updates() {
    let server = TestServer::start().await;
    let (_, api) = sign_in_member(&server, "alice@example.com", true).await;
    let created = api.create(patient("Ada", "Lovelace")).await;
    let path = format!("Patient/{}", created["id"].as_str().unwrap());
    let version = created["meta"]["versionId"].as_str().unwrap().to_string();
    let mut changed = created.clone();
    changed["name"][0]["family"] = json!("King");

    let response = api
        .builder(Method::PUT, &path)
        .header(header::CONTENT_TYPE, "application/fhir+json")
        .header(header::IF_MATCH, "W/\"not-the-version\"")
        .body(changed.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(body(response).await["id"], "precondition-failed");

    let response = api
        .builder(Method::PUT, &path)
        .header(header::CONTENT_TYPE, "application/fhir+json")
        .header(header::IF_MATCH, format!("W/\"{version}\""))
        .body(changed.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // The version it matched is no longer the current one.
    changed["name"][0]["family"] = json!("Byron");
    let response = api
        .builder(Method::PUT, &path)
        .header(header::CONTENT_TYPE, "application/fhir+json")
        .header(header::IF_MATCH, format!("W/\"{version}\""))
        .body(changed.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PRECONDITION_FAILED);
}

#[tokio::test]
async fn update_without_changes_keeps_version() {
    let server = TestServer::start().await;
    let (_, api) = sign_in_member(&server, "alice@example.com", true).await;
    let created = api.create(patient("Ada", "Lovelace")).await;
    let path = format!("Patient/{}", created["id"].as_str().unwrap());

    let updated = body(api.put(&path, &created).await).await;
    assert_eq!(updated["meta"]["versionId"], created["meta"]["versionId"]);
    let history = api.read(&format!("{path}/_history")).await;
    assert_eq!(entries(&history).len(), 1);
}

#[tokio::test]
async fn bad_input_is_rejected_with_outcome() {
    let server = TestServer::start().await;
    let (_, api) = sign_in_member(&server, "alice@example.com", true).await;
    let created = api.create(patient("Ada", "Lovelace")).await;
    let patient_path = format!("Patient/{}", created["id"].as_str().unwrap());
    let client = api
        .create(json!({"resourceType": "ClientApplication", "name": "Worker"}))
        .await;
    let client_path = format!("ClientApplication/{}", client["id"].as_str().unwrap());
    let mut bad_lifetime = client.clone();
    bad_lifetime["refreshTokenLifetime"] = json!("forever");
    bad_lifetime.as_object_mut().unwrap().remove("secret");
    let mut other_id = created.clone();
    other_id["id"] = json!("8d3c1f52-5a3e-4d5e-9a55-0c2b8a1f0e11");

    let raw = |method: Method, path: &str, content_type: &str, text: &str| {
        api.builder(method, path)
            .header(header::CONTENT_TYPE, content_type)
            .body(text.to_string())
    };
    let cases: Vec<(&str, reqwest::RequestBuilder, StatusCode)> = vec![
        (
            "malformed JSON",
            raw(
                Method::POST,
                "Patient",
                "application/fhir+json",
                "{\"resourceType\":",
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            "body not an object",
            raw(Method::POST, "Patient", "application/json", "[1, 2]"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "wrong resourceType",
            raw(
                Method::POST,
                "Patient",
                "application/fhir+json",
                &json!({"resourceType": "Practitioner"}).to_string(),
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            "id mismatch",
            raw(
                Method::PUT,
                &patient_path,
                "application/fhir+json",
                &other_id.to_string(),
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            "missing id on update",
            raw(
                Method::PUT,
                &patient_path,
                "application/fhir+json",
                &patient("No", "Id").to_string(),
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            "meta not an object",
            raw(
                Method::POST,
                "Patient",
                "application/fhir+json",
                &json!({"resourceType": "Patient", "meta": "x"}).to_string(),
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            "typed field of wrong type",
            raw(
                Method::POST,
                "ProjectMembership",
                "application/fhir+json",
                &json!({"resourceType": "ProjectMembership", "admin": "yes"}).to_string(),
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            "bad client lifetime on create",
            raw(
                Method::POST,
                "ClientApplication",
                "application/fhir+json",
                &json!({"resourceType": "ClientApplication", "accessTokenLifetime": "forever"})
                    .to_string(),
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            "bad client lifetime on update",
            raw(
                Method::PUT,
                &client_path,
                "application/fhir+json",
                &bad_lifetime.to_string(),
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            "unsupported media type",
            raw(Method::POST, "Patient", "text/plain", "{}"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "unknown search parameter",
            api.builder(Method::GET, "Patient?shoe-size=9"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "bad _count",
            api.builder(Method::GET, "Patient?_count=many"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "negative _count",
            api.builder(Method::GET, "Patient?_count=-1"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown resource type",
            api.builder(Method::GET, "Shoe"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown resource type on read",
            api.builder(Method::GET, "Shoe/8d3c1f52-5a3e-4d5e-9a55-0c2b8a1f0e11"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "id that is no UUID",
            api.builder(Method::GET, "Patient/not-a-uuid"),
            StatusCode::NOT_FOUND,
        ),
        (
            "unknown id",
            api.builder(Method::GET, "Patient/8d3c1f52-5a3e-4d5e-9a55-0c2b8a1f0e11"),
            StatusCode::NOT_FOUND,
        ),
        (
            "unknown operation",
            api.builder(Method::POST, &format!("{patient_path}/$everything")),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (case, request, status) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{case}");
        let content_type = response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            content_type.starts_with("application/fhir+json"),
            "{case}: {content_type}"
        );
        let outcome = body(response).await;
        assert_eq!(outcome["resourceType"], "OperationOutcome", "{case}");
    }

    let outcome = body(api.get("Shoe").await).await;
    assert!(
        outcome["issue"][0]["details"]["text"]
            .as_str()
            .unwrap()
            .contains("Shoe")
    );
    let outcome = body(
        api.post("Patient", &json!({"resourceType": "Practitioner"}))
            .await,
    )
    .await;
    assert_eq!(
        outcome["issue"][0]["details"]["text"],
        "Incorrect resource type"
    );
    let outcome = body(api.put(&patient_path, &other_id).await).await;
    assert_eq!(outcome["issue"][0]["details"]["text"], "Incorrect ID");

    let response = server
        .http
        .get(server.url("fhir/R4/Patient"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn user_email_is_stored_lower_case() {
    let server = TestServer::start().await;
    let (alice, api) = sign_in_member(&server, "alice@example.com", true).await;

    let created = api
        .create(
            json!({"resourceType": "User", "firstName": "Bob", "lastName": "Jones",
            "email": "Bob@Example.COM"}),
        )
        .await;
    assert_eq!(created["email"], "bob@example.com");
    assert_eq!(
        created["project"]["reference"],
        format!("Project/{}", alice.project_id).as_str()
    );
    let bundle = api.read("User?email=BOB@example.com").await;
    assert_eq!(entries(&bundle).len(), 1);

    // A project admin cannot change a user's address: it is read-only for them.
    let mut changed = created.clone();
    changed["email"] = json!("Robert@Example.COM");
    let updated = body(
        api.put(
            &format!("User/{}", created["id"].as_str().unwrap()),
            &changed,
        )
        .await,
    )
    .await;
    assert_eq!(updated["email"], "bob@example.com");

    // The address is taken in this project, whatever its case.
    let response = api
        .post(
            "User",
            &json!({"resourceType": "User", "firstName": "Rob", "lastName": "Jones",
                "email": "BOB@example.com"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let response = api
        .post(
            "User",
            &json!({"resourceType": "User", "firstName": "X", "lastName": "Y", "email": "not-an-email"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn project_admin_cannot_raise_privileges() {
    let server = TestServer::start().await;
    let (alice, api) = sign_in_member(&server, "alice@example.com", true).await;
    let root = sign_in_super_admin(&server).await;
    let path = format!("Project/{}", alice.project_id);

    // Own project: readable and updatable, but superAdmin stays as it is.
    let project = api.read(&path).await;
    assert!(project.get("superAdmin").is_none());
    let mut raised = project.clone();
    raised["superAdmin"] = json!(true);
    raised["features"] = json!(["bots"]);
    raised["description"] = json!("Updated");
    let response = api.put(&path, &raised).await;
    assert_eq!(response.status(), StatusCode::OK);
    let stored = root.read(&path).await;
    assert_eq!(stored["description"], "Updated");
    assert_ne!(stored["superAdmin"], true);
    assert!(stored.get("features").is_none());

    // Only the own project is visible; creating and deleting projects is not allowed.
    let bundle = api.read("Project").await;
    let ids: Vec<_> = entries(&bundle).iter().map(|p| p["id"].clone()).collect();
    assert_eq!(ids, vec![json!(alice.project_id)]);
    let response = api
        .post(
            "Project",
            &json!({"resourceType": "Project", "name": "Mine"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(api.delete(&path).await.status(), StatusCode::FORBIDDEN);
    let super_project = format!("Project/{}", server.admin_project_id);
    assert_eq!(
        api.get(&super_project).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn membership_references_stay_in_project() {
    let server = TestServer::start().await;
    let (alice, api) = sign_in_member(&server, "alice@example.com", true).await;
    let bob = server.create_member("bob@example.com", true).await;

    let user = api
        .create(
            json!({"resourceType": "User", "firstName": "Eve", "lastName": "Doe",
            "email": "eve@example.com"}),
        )
        .await;
    let user_reference = format!("User/{}", user["id"].as_str().unwrap());
    let own_patient = api.create(patient("Eve", "Doe")).await;
    let own_profile = format!("Patient/{}", own_patient["id"].as_str().unwrap());

    // a profile from another project is rejected
    let response = api
        .post(
            "ProjectMembership",
            &json!({"resourceType": "ProjectMembership", "project": {"reference": format!("Project/{}", alice.project_id)},
                "user": {"reference": user_reference}, "profile": {"reference": bob.profile}}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        body(response).await["issue"][0]["details"]["text"],
        "Profile does not belong to project"
    );

    // a membership naming another project lands in the caller's project
    let created = api
        .create(json!({"resourceType": "ProjectMembership", "project": {"reference": format!("Project/{}", bob.project_id)},
            "user": {"reference": user_reference}, "profile": {"reference": own_profile}}))
        .await;
    let own_project = format!("Project/{}", alice.project_id);
    assert_eq!(created["project"]["reference"], own_project.as_str());
    assert_eq!(created["meta"]["project"], alice.project_id.as_str());

    // the account of an existing membership does not change
    let mut changed = created.clone();
    changed["user"] = json!({"reference": format!("User/{}", bob.user_id)});
    changed["admin"] = json!(true);
    let updated = body(
        api.put(
            &format!("ProjectMembership/{}", created["id"].as_str().unwrap()),
            &changed,
        )
        .await,
    )
    .await;
    assert_eq!(updated["user"]["reference"], user_reference.as_str());
    assert_eq!(updated["admin"], true);
}

#[tokio::test]
async fn search_pages_with_next_link() {
    let server = TestServer::start().await;
    let (_, api) = sign_in_member(&server, "alice@example.com", true).await;
    for given in ["One", "Two", "Three"] {
        api.create(patient(given, "Pager")).await;
    }

    let first = api.read("Patient?family=pager&_count=2").await;
    assert_eq!(entries(&first).len(), 2);
    let links = first["link"].as_array().unwrap();
    let next = links
        .iter()
        .find(|link| link["relation"] == "next")
        .expect("a next link")["url"]
        .as_str()
        .unwrap()
        .to_string();

    let second = api.read(&next).await;
    assert_eq!(entries(&second).len(), 1);
    assert!(
        second["link"]
            .as_array()
            .unwrap()
            .iter()
            .all(|link| link["relation"] != "next")
    );
    let seen: Vec<_> = entries(&first)
        .iter()
        .chain(entries(&second).iter())
        .map(|patient| patient["id"].clone())
        .collect();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter()
            .all(|id| seen.iter().filter(|other| *other == id).count() == 1)
    );
}
