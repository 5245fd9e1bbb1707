//! Access policies on the FHIR API, as tables of cases: each case is one request by one
//! caller and the status and result it must get. Visibility cases expand to read, vread,
//! search, history and `_include`, so no path can reveal what another hides.
//!
//! Every world is one server with project P (members with different policies, patients,
//! observations), project Q of another admin, and the bootstrap super admin.

mod common;

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{Member, TestServer, seed};
use medgate_fhir::resources::{ClientApplication, Project, ProjectMembership, User};
use medgate_fhir::{Reference, resources::TypedResource};
use medgate_service::Secret;
use medgate_service::repo::WriteContext;
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

const PASSWORD: &str = "plum-Harbor-93-quartz";

/// How a caller authenticates.
#[derive(Clone)]
enum Credentials {
    Bearer(String),
    Basic { id: String, secret: String },
}

#[derive(Clone)]
struct Caller {
    credentials: Credentials,
    on_behalf_of: Option<String>,
    forwarded_for: Option<String>,
}

impl Caller {
    fn bearer(token: &str) -> Self {
        Self {
            credentials: Credentials::Bearer(token.to_string()),
            on_behalf_of: None,
            forwarded_for: None,
        }
    }

    fn basic(id: &str, secret: &str) -> Self {
        Self {
            credentials: Credentials::Basic {
                id: id.to_string(),
                secret: secret.to_string(),
            },
            on_behalf_of: None,
            forwarded_for: None,
        }
    }

    fn acting_for(&self, target: &str) -> Self {
        Self {
            on_behalf_of: Some(target.to_string()),
            ..self.clone()
        }
    }
}

/// A server with named resources and callers.
struct World {
    server: TestServer,
    project_id: String,
    other_project_id: String,
    ids: HashMap<String, String>,
    callers: HashMap<String, Caller>,
    members: HashMap<String, Member>,
}

/// What a case checks beyond the status.
enum Expect {
    Status,
    /// A Bundle whose entries (matches and includes) are exactly these named resources.
    Entries(Vec<String>),
    /// A JSON pointer that must be absent from the body (or from every Bundle entry).
    Missing(&'static str),
    /// A JSON pointer that must be present.
    Present(&'static str),
    /// A JSON pointer and the value it must have; `{key}` in strings names a resource id.
    Equals(&'static str, Value),
}

struct Case {
    name: String,
    caller: &'static str,
    method: Method,
    /// `{key}` is replaced by the id of the named resource.
    path: String,
    body: Option<Value>,
    status: u16,
    expect: Expect,
}

fn case(
    name: &str,
    caller: &'static str,
    method: Method,
    path: &str,
    body: Option<Value>,
    status: u16,
    expect: Expect,
) -> Case {
    Case {
        name: name.to_string(),
        caller,
        method,
        path: path.to_string(),
        body,
        status,
        expect,
    }
}

fn keys(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| (*name).to_string()).collect()
}

fn get(name: &str, caller: &'static str, path: &str, status: u16, expect: Expect) -> Case {
    case(name, caller, Method::GET, path, None, status, expect)
}

/// Expands to the paths that can reveal one resource: read, vread, history and a search by
/// id. `visible` decides whether each shows it (read 200, search one entry) or not (404,
/// empty search). The type must be allowed, so hiding is by criteria or project.
fn visibility(
    name: &str,
    caller: &'static str,
    resource_type: &str,
    key: &str,
    visible: bool,
) -> Vec<Case> {
    let instance = format!("{resource_type}/{{{key}}}");
    let status = if visible { 200 } else { 404 };
    let entries = if visible { keys(&[key]) } else { Vec::new() };
    vec![
        get(
            &format!("{name}: read"),
            caller,
            &instance,
            status,
            Expect::Status,
        ),
        get(
            &format!("{name}: vread"),
            caller,
            &format!("{instance}/_history/{{{key}@version}}"),
            status,
            Expect::Status,
        ),
        get(
            &format!("{name}: history"),
            caller,
            &format!("{instance}/_history"),
            status,
            Expect::Status,
        ),
        get(
            &format!("{name}: search"),
            caller,
            &format!("{resource_type}?_id={{{key}}}"),
            200,
            Expect::Entries(entries),
        ),
    ]
}

/// A type-level denial: read, search and history all 403.
fn denied(name: &str, caller: &'static str, resource_type: &str, key: &str) -> Vec<Case> {
    vec![
        get(
            &format!("{name}: read"),
            caller,
            &format!("{resource_type}/{{{key}}}"),
            403,
            Expect::Status,
        ),
        get(
            &format!("{name}: search"),
            caller,
            resource_type,
            403,
            Expect::Status,
        ),
        get(
            &format!("{name}: history"),
            caller,
            &format!("{resource_type}/{{{key}}}/_history"),
            403,
            Expect::Status,
        ),
    ]
}

fn pointer_text(world: &World, value: &Value) -> Value {
    match value {
        Value::String(text) => Value::String(world.fill(text)),
        Value::Array(items) => {
            Value::Array(items.iter().map(|item| pointer_text(world, item)).collect())
        }
        Value::Object(object) => Value::Object(
            object
                .iter()
                .map(|(key, item)| (key.clone(), pointer_text(world, item)))
                .collect(),
        ),
        other => other.clone(),
    }
}

impl World {
    fn fill(&self, template: &str) -> String {
        let mut text = template.to_string();
        while let Some(start) = text.find('{') {
            let Some(length) = text[start..].find('}') else {
                break;
            };
            let key = &text[start + 1..start + length];
            let value = self
                .ids
                .get(key)
                .unwrap_or_else(|| panic!("no resource named {key}"))
                .clone();
            text.replace_range(start..start + length + 1, &value);
        }
        text
    }

    async fn send(
        &self,
        caller: &Caller,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let url = if path.starts_with("auth/") {
            self.server.url(path)
        } else {
            self.server.url(&format!("fhir/R4/{path}"))
        };
        let mut request = self
            .server
            .http
            .request(method, url)
            .header("x-medplum", "extended");
        request = match &caller.credentials {
            Credentials::Bearer(token) => request.bearer_auth(token),
            Credentials::Basic { id, secret } => request.header(
                header::AUTHORIZATION,
                format!("Basic {}", STANDARD.encode(format!("{id}:{secret}"))),
            ),
        };
        if let Some(target) = &caller.on_behalf_of {
            request = request.header("x-medplum-on-behalf-of", target);
        }
        if let Some(forwarded) = &caller.forwarded_for {
            request = request.header("x-forwarded-for", forwarded);
        }
        if let Some(body) = body {
            request = request
                .header(header::CONTENT_TYPE, "application/fhir+json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Runs every case and reports all failures at once.
    async fn run(&self, cases: Vec<Case>) -> usize {
        let mut failures = Vec::new();
        let count = cases.len();
        for case in cases {
            let caller = self
                .callers
                .get(case.caller)
                .unwrap_or_else(|| panic!("no caller named {}", case.caller));
            let path = self.fill(&case.path);
            let body = case.body.as_ref().map(|body| pointer_text(self, body));
            let (status, response) = self
                .send(caller, case.method.clone(), &path, body.as_ref())
                .await;
            if status.as_u16() != case.status {
                failures.push(format!(
                    "{} ({} {path}): status {status}, expected {}: {response}",
                    case.name, case.method, case.status
                ));
                continue;
            }
            if let Some(problem) = self.check(&case.expect, &response) {
                failures.push(format!("{} ({} {path}): {problem}", case.name, case.method));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {count} cases failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
        eprintln!("{count} policy cases passed");
        count
    }

    fn check(&self, expect: &Expect, response: &Value) -> Option<String> {
        let resources: Vec<&Value> = match response.get("entry").and_then(Value::as_array) {
            Some(entries) => entries.iter().map(|entry| &entry["resource"]).collect(),
            None => vec![response],
        };
        match expect {
            Expect::Status => None,
            Expect::Entries(keys) => {
                let mut wanted: Vec<String> =
                    keys.iter().map(|key| self.ids[key].clone()).collect();
                let mut found: Vec<String> = resources
                    .iter()
                    .filter_map(|resource| resource["id"].as_str().map(str::to_string))
                    .collect();
                wanted.sort();
                found.sort();
                (wanted != found)
                    .then(|| format!("entries {found:?}, expected {keys:?} = {wanted:?}"))
            }
            Expect::Missing(pointer) => resources
                .iter()
                .find(|resource| resource.pointer(pointer).is_some())
                .map(|resource| format!("{pointer} present in {resource}")),
            Expect::Present(pointer) => resources
                .iter()
                .find(|resource| resource.pointer(pointer).is_none())
                .map(|resource| format!("{pointer} missing in {resource}")),
            Expect::Equals(pointer, value) => {
                let wanted = pointer_text(self, value);
                resources
                    .iter()
                    .find(|resource| resource.pointer(pointer) != Some(&wanted))
                    .map(|resource| format!("{pointer} is not {wanted} in {resource}"))
            }
        }
    }
}

/// Creates a server-scoped user with a membership in `project_id` for the given profile;
/// `membership` adds fields such as `accessPolicy`, `access` or `admin`.
async fn add_member(
    server: &TestServer,
    project_id: &str,
    email: &str,
    profile: &str,
    membership: Value,
) -> Member {
    let user = User {
        first_name: Some("Test".to_string()),
        last_name: Some("User".to_string()),
        email: Some(email.to_string()),
        password_hash: Some(
            server
                .services
                .passwords
                .hash(&Secret::from(PASSWORD))
                .await
                .unwrap(),
        ),
        ..Default::default()
    };
    let user = server
        .services
        .repo
        .create(&user, &WriteContext::system(None))
        .await
        .unwrap();
    let mut value = json!({
        "resourceType": "ProjectMembership",
        "project": {"reference": format!("Project/{project_id}")},
        "user": {"reference": format!("User/{}", user.id)},
        "profile": {"reference": profile},
    });
    for (key, item) in membership.as_object().unwrap() {
        value[key] = item.clone();
    }
    let membership = ProjectMembership::from_json(value).unwrap();
    let membership = server
        .services
        .repo
        .create(&membership, &WriteContext::system(Some(project_id)))
        .await
        .unwrap();
    Member {
        email: email.to_string(),
        password: PASSWORD.to_string(),
        user_id: user.id,
        project_id: project_id.to_string(),
        membership_id: membership.id,
        profile: profile.to_string(),
    }
}

async fn token(server: &TestServer, member: &Member, scope: &str) -> String {
    server.member_tokens(member, scope).await["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

impl World {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    async fn start_with(configure: impl FnOnce(&mut medgate_service::ServiceConfig)) -> Self {
        let server = TestServer::start_with(configure).await;
        let project = server
            .services
            .repo
            .create(
                &Project {
                    name: Some("P".to_string()),
                    ..Default::default()
                },
                &WriteContext::system(None),
            )
            .await
            .unwrap();
        let other = server
            .services
            .repo
            .create(
                &Project {
                    name: Some("Q".to_string()),
                    ..Default::default()
                },
                &WriteContext::system(None),
            )
            .await
            .unwrap();
        let root = Caller::bearer(&server.admin_access_token().await);
        let mut world = Self {
            server,
            project_id: project.id,
            other_project_id: other.id,
            ids: HashMap::new(),
            callers: HashMap::new(),
            members: HashMap::new(),
        };
        world.callers.insert("root".to_string(), root);
        world.ids.insert("P".to_string(), world.project_id.clone());
        world
            .ids
            .insert("Q".to_string(), world.other_project_id.clone());
        world
    }

    /// Seeds a resource in P (or Q when `other` is set) under `key`.
    async fn resource(&mut self, key: &str, other: bool, resource: Value) -> String {
        let project_id = if other {
            self.other_project_id.clone()
        } else {
            self.project_id.clone()
        };
        let resource = pointer_text(self, &resource);
        let stored = seed(&self.server, &project_id, resource).await;
        let id = stored["id"].as_str().unwrap().to_string();
        self.ids.insert(key.to_string(), id.clone());
        self.ids.insert(
            format!("{key}@version"),
            stored["meta"]["versionId"].as_str().unwrap().to_string(),
        );
        id
    }

    /// Seeds an AccessPolicy in P under `key`.
    async fn policy(&mut self, key: &str, policy: Value) -> String {
        let mut policy = policy;
        policy["resourceType"] = json!("AccessPolicy");
        self.resource(key, false, policy).await
    }

    /// Adds a member of P with a Practitioner profile (created under `{name}-profile`) and
    /// signs them in with `scope`.
    async fn practitioner(&mut self, name: &'static str, membership: Value, scope: &str) -> Member {
        let profile_key = format!("{name}-profile");
        let id = self
            .resource(
                &profile_key,
                false,
                json!({"resourceType": "Practitioner", "name": [{"family": name}]}),
            )
            .await;
        self.member(name, &format!("Practitioner/{id}"), membership, scope)
            .await
    }

    async fn member(
        &mut self,
        name: &'static str,
        profile: &str,
        membership: Value,
        scope: &str,
    ) -> Member {
        let membership = pointer_text(self, &membership);
        let member = add_member(
            &self.server,
            &self.project_id,
            &format!("{}@members.example.com", name.to_lowercase()),
            profile,
            membership,
        )
        .await;
        let token = token(&self.server, &member, scope).await;
        self.callers
            .insert(name.to_string(), Caller::bearer(&token));
        self.ids
            .insert(format!("{name}-membership"), member.membership_id.clone());
        self.members.insert(name.to_string(), member.clone_member());
        member
    }
}

trait CloneMember {
    fn clone_member(&self) -> Member;
}

impl CloneMember for Member {
    fn clone_member(&self) -> Member {
        Member {
            email: self.email.clone(),
            password: self.password.clone(),
            user_id: self.user_id.clone(),
            project_id: self.project_id.clone(),
            membership_id: self.membership_id.clone(),
            profile: self.profile.clone(),
        }
    }
}

fn patient(state: &str) -> Value {
    json!({"resourceType": "Patient", "name": [{"given": ["Pat"], "family": state}],
        "birthDate": "1970-01-01", "address": [{"state": state}]})
}

fn observation(subject: &str, status: &str, category: &str) -> Value {
    json!({"resourceType": "Observation", "status": status,
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}],
        "code": {"text": "test"}, "subject": {"reference": subject}})
}

/// Seeds the clinical data every world shares: patients in CA, NY and TX, observations,
/// and a patient and an observation in Q.
async fn clinical_data(world: &mut World) {
    world.resource("ca", false, patient("CA")).await;
    world.resource("ny", false, patient("NY")).await;
    world.resource("tx", false, patient("TX")).await;
    world
        .resource(
            "obs-ca",
            false,
            observation("Patient/{ca}", "final", "laboratory"),
        )
        .await;
    world
        .resource(
            "obs-ny",
            false,
            observation("Patient/{ny}", "final", "vital-signs"),
        )
        .await;
    world.resource("q-patient", true, patient("CA")).await;
    world
        .resource(
            "q-obs",
            true,
            observation("Patient/{q-patient}", "final", "laboratory"),
        )
        .await;
    world
        .resource(
            "sd",
            false,
            json!({"resourceType": "StructureDefinition", "url": "http://example.com/sd",
            "name": "Custom", "status": "active", "kind": "resource", "abstract": false,
            "type": "Patient"}),
        )
        .await;
}

#[tokio::test]
async fn type_and_interaction_cases() {
    let mut world = World::start().await;
    clinical_data(&mut world).await;
    world
        .policy(
            "patient-only",
            json!({"resource": [{"resourceType": "Patient"}]}),
        )
        .await;
    world
        .policy(
            "patient-ro",
            json!({"resource": [{"resourceType": "Patient", "readonly": true}]}),
        )
        .await;
    world
        .policy(
            "star-cr",
            json!({"resource": [{"resourceType": "*", "interaction": ["create", "read"]}]}),
        )
        .await;
    world
        .policy("patient-star-ro", json!({"resource": [{"resourceType": "Patient"}, {"resourceType": "*", "readonly": true}]}))
        .await;
    world
        .policy("star", json!({"resource": [{"resourceType": "*"}]}))
        .await;
    world
        .policy(
            "names-admin-types",
            json!({"resource": [{"resourceType": "ProjectMembership"},
            {"resourceType": "User"}, {"resourceType": "Project"}, {"resourceType": "Patient"}]}),
        )
        .await;
    world
        .policy(
            "binary",
            json!({"resource": [{"resourceType": "Binary", "criteria": "Binary?_id=none"}]}),
        )
        .await;
    world
        .resource(
            "binary-1",
            false,
            json!({"resourceType": "Binary", "contentType": "text/plain", "data": "aGk="}),
        )
        .await;
    let policy =
        |key: &str| json!({"accessPolicy": {"reference": format!("AccessPolicy/{{{key}}}")}});
    world
        .practitioner("PatientOnly", policy("patient-only"), "openid")
        .await;
    world
        .practitioner("PatientRo", policy("patient-ro"), "openid")
        .await;
    world
        .practitioner("StarCr", policy("star-cr"), "openid")
        .await;
    world
        .practitioner("PatientStarRo", policy("patient-star-ro"), "openid")
        .await;
    world.practitioner("Star", policy("star"), "openid").await;
    world.practitioner("NoPolicy", json!({}), "openid").await;
    world
        .practitioner("NamesAdmin", policy("names-admin-types"), "openid")
        .await;
    world
        .practitioner("BinaryOnly", policy("binary"), "openid")
        .await;

    let new_patient = || Some(patient("CA"));
    let new_observation = || Some(observation("Patient/{ca}", "final", "laboratory"));
    let mut cases = vec![
        get(
            "patient-ro searches Patient",
            "PatientRo",
            "Patient",
            200,
            Expect::Entries(keys(&["ca", "ny", "tx"])),
        ),
        // [{Patient}]
        case(
            "patient-only creates Patient",
            "PatientOnly",
            Method::POST,
            "Patient",
            new_patient(),
            201,
            Expect::Status,
        ),
        case(
            "patient-only creates Observation",
            "PatientOnly",
            Method::POST,
            "Observation",
            new_observation(),
            403,
            Expect::Status,
        ),
        get(
            "patient-only searches Observation",
            "PatientOnly",
            "Observation",
            403,
            Expect::Status,
        ),
        get(
            "patient-only reads default read-only StructureDefinition",
            "PatientOnly",
            "StructureDefinition/{sd}",
            200,
            Expect::Status,
        ),
        case(
            "patient-only creates StructureDefinition",
            "PatientOnly",
            Method::POST,
            "StructureDefinition",
            Some(
                json!({"resourceType": "StructureDefinition", "url": "http://x", "name": "X", "status": "draft",
                "kind": "resource", "abstract": false, "type": "Patient"}),
            ),
            403,
            Expect::Status,
        ),
        // readonly
        case(
            "patient-ro updates Patient",
            "PatientRo",
            Method::PUT,
            "Patient/{ca}",
            Some(json!({"resourceType": "Patient", "id": "{ca}", "gender": "female"})),
            403,
            Expect::Status,
        ),
        case(
            "patient-ro creates Patient",
            "PatientRo",
            Method::POST,
            "Patient",
            new_patient(),
            403,
            Expect::Status,
        ),
        case(
            "patient-ro deletes Patient",
            "PatientRo",
            Method::DELETE,
            "Patient/{ca}",
            None,
            403,
            Expect::Status,
        ),
        // [{*, interaction: [create, read]}]
        case(
            "star-cr creates Observation",
            "StarCr",
            Method::POST,
            "Observation",
            new_observation(),
            201,
            Expect::Status,
        ),
        get(
            "star-cr reads Observation",
            "StarCr",
            "Observation/{obs-ca}",
            200,
            Expect::Status,
        ),
        get(
            "star-cr searches Observation",
            "StarCr",
            "Observation",
            403,
            Expect::Status,
        ),
        get(
            "star-cr history needs history",
            "StarCr",
            "Observation/{obs-ca}/_history",
            403,
            Expect::Status,
        ),
        get(
            "star-cr vread needs vread",
            "StarCr",
            "Observation/{obs-ca}/_history/{obs-ca@version}",
            403,
            Expect::Status,
        ),
        case(
            "star-cr updates Observation",
            "StarCr",
            Method::PUT,
            "Observation/{obs-ca}",
            Some(
                json!({"resourceType": "Observation", "id": "{obs-ca}", "status": "amended", "code": {"text": "x"}}),
            ),
            403,
            Expect::Status,
        ),
        // [{Patient}, {*, readonly}]
        case(
            "patient-star-ro updates Patient",
            "PatientStarRo",
            Method::PUT,
            "Patient/{tx}",
            Some(
                json!({"resourceType": "Patient", "id": "{tx}", "address": [{"state": "TX"}], "gender": "male"}),
            ),
            200,
            Expect::Status,
        ),
        case(
            "patient-star-ro updates Observation",
            "PatientStarRo",
            Method::PUT,
            "Observation/{obs-ny}",
            Some(
                json!({"resourceType": "Observation", "id": "{obs-ny}", "status": "amended", "code": {"text": "x"}}),
            ),
            403,
            Expect::Status,
        ),
        get(
            "patient-star-ro reads Observation",
            "PatientStarRo",
            "Observation/{obs-ny}",
            200,
            Expect::Status,
        ),
        // binary: criteria are ignored, the type match is enough
        get(
            "binary policy reads a Binary its criteria would exclude",
            "BinaryOnly",
            "Binary/{binary-1}",
            200,
            Expect::Status,
        ),
        get(
            "binary policy searches Binary",
            "BinaryOnly",
            "Binary",
            200,
            Expect::Entries(keys(&["binary-1"])),
        ),
    ];
    // [{*}] and no policy: administration and protected types stay out of reach.
    for caller in ["Star", "NoPolicy", "NamesAdmin"] {
        cases.extend(denied(
            &format!("{caller} ProjectMembership"),
            caller,
            "ProjectMembership",
            &format!("{caller}-membership"),
        ));
        cases.extend(denied(&format!("{caller} Project"), caller, "Project", "P"));
        cases.push(get(
            &format!("{caller} searches User"),
            caller,
            "User",
            403,
            Expect::Status,
        ));
        cases.push(get(
            &format!("{caller} searches Login"),
            caller,
            "Login",
            403,
            Expect::Status,
        ));
        cases.push(get(
            &format!("{caller} searches JsonWebKey"),
            caller,
            "JsonWebKey",
            403,
            Expect::Status,
        ));
        cases.push(get(
            &format!("{caller} searches DomainConfiguration"),
            caller,
            "DomainConfiguration",
            403,
            Expect::Status,
        ));
    }
    cases.extend(visibility(
        "no policy sees its project's Patient",
        "NoPolicy",
        "Patient",
        "ca",
        true,
    ));
    cases.extend(visibility(
        "no policy never sees Q's Patient",
        "NoPolicy",
        "Patient",
        "q-patient",
        false,
    ));
    cases.extend(visibility(
        "star sees its project's Observation",
        "Star",
        "Observation",
        "obs-ca",
        true,
    ));
    cases.extend(visibility(
        "star never sees Q's Observation",
        "Star",
        "Observation",
        "q-obs",
        false,
    ));
    cases.extend(visibility(
        "super admin sees Q's Observation",
        "root",
        "Observation",
        "q-obs",
        true,
    ));
    cases.push(get(
        "super admin searches Login",
        "root",
        "Login",
        200,
        Expect::Status,
    ));
    cases.push(get(
        "NamesAdmin still reads Patient",
        "NamesAdmin",
        "Patient/{ca}",
        200,
        Expect::Status,
    ));
    let count = world.run(cases).await;
    assert!(count >= 60, "{count} cases");
}

#[tokio::test]
async fn criteria_and_parameter_cases() {
    let mut world = World::start().await;
    clinical_data(&mut world).await;
    world
        .resource(
            "org-a",
            false,
            json!({"resourceType": "Organization", "name": "A"}),
        )
        .await;
    world
        .resource(
            "org-b",
            false,
            json!({"resourceType": "Organization", "name": "B"}),
        )
        .await;
    world
        .resource(
            "org-c",
            false,
            json!({"resourceType": "Organization", "name": "C"}),
        )
        .await;
    world.resource("at-a", false, json!({"resourceType": "Patient", "managingOrganization": {"reference": "Organization/{org-a}"}})).await;
    world.resource("at-b", false, json!({"resourceType": "Patient", "managingOrganization": {"reference": "Organization/{org-b}"}})).await;
    world.resource("at-c", false, json!({"resourceType": "Patient", "managingOrganization": {"reference": "Organization/{org-c}"}})).await;
    world.policy("ca-policy", json!({"resource": [{"resourceType": "Patient", "criteria": "Patient?address-state=CA"}]})).await;
    world
        .policy("by-org", json!({"resource": [{"resourceType": "Patient", "criteria": "Patient?organization=%org"}]}))
        .await;
    world
        .policy("by-state", json!({"resource": [{"resourceType": "Patient", "criteria": "Patient?address-state=%state"}]}))
        .await;
    world
        .policy("by-gp", json!({"resource": [{"resourceType": "Patient", "criteria": "Patient?general-practitioner=%profile"}]}))
        .await;
    world
        .policy(
            "patient-default",
            json!({
            "compartment": {"reference": "%patient"},
            "resource": [
                {"resourceType": "Patient", "criteria": "Patient?_id=%patient.id"},
                {"resourceType": "Observation", "criteria": "Observation?_compartment=%patient"}
            ]}),
        )
        .await;
    world
        .policy(
            "obs-include",
            json!({"resource": [
            {"resourceType": "Observation"},
            {"resourceType": "Patient", "criteria": "Patient?address-state=CA"}]}),
        )
        .await;
    world
        .policy(
            "second",
            json!({"resource": [{"resourceType": "Practitioner"}]}),
        )
        .await;

    let policy =
        |key: &str| json!({"accessPolicy": {"reference": format!("AccessPolicy/{{{key}}}")}});
    world
        .practitioner("Ca", policy("ca-policy"), "openid")
        .await;
    world
        .practitioner("ObsInclude", policy("obs-include"), "openid")
        .await;
    world
        .practitioner("Orgs", json!({"access": [
            {"policy": {"reference": "AccessPolicy/{by-org}"}, "parameter": [{"name": "org", "valueReference": {"reference": "Organization/{org-a}"}}]},
            {"policy": {"reference": "AccessPolicy/{by-org}"}, "parameter": [{"name": "org", "valueReference": {"reference": "Organization/{org-b}"}}]}
        ]}), "openid")
        .await;
    world
        .practitioner("Texas", json!({"access": [
            {"policy": {"reference": "AccessPolicy/{by-state}"}, "parameter": [{"name": "state", "valueString": "TX"}]}]}), "openid")
        .await;
    // A parameter value with search syntax stays one value.
    world
        .practitioner("Injected", json!({"access": [
            {"policy": {"reference": "AccessPolicy/{by-state}"}, "parameter": [{"name": "state", "valueString": "XX&address-state=CA,NY"}]}]}), "openid")
        .await;
    let gp = world.practitioner("Gp", policy("by-gp"), "openid").await;
    world
        .resource(
            "gp-patient",
            false,
            json!({"resourceType": "Patient", "generalPractitioner": [{"reference": gp.profile}]}),
        )
        .await;
    world
        .resource(
            "pt1",
            false,
            json!({"resourceType": "Patient", "name": [{"family": "Self"}]}),
        )
        .await;
    world
        .resource(
            "obs-pt1",
            false,
            observation("Patient/{pt1}", "final", "laboratory"),
        )
        .await;
    let pt1 = format!("Patient/{}", world.ids["pt1"]);
    world
        .member("Pt", &pt1, policy("patient-default"), "openid")
        .await;
    world
        .practitioner(
            "TwoPolicies",
            json!({"accessPolicy": {"reference": "AccessPolicy/{ca-policy}"},
            "access": [{"policy": {"reference": "AccessPolicy/{second}"}}]}),
            "openid",
        )
        .await;

    let mut cases = vec![
        get(
            "criteria: search returns only CA",
            "Ca",
            "Patient",
            200,
            Expect::Entries(keys(&["ca"])),
        ),
        get(
            "parameters: two organizations",
            "Orgs",
            "Patient",
            200,
            Expect::Entries(keys(&["at-a", "at-b"])),
        ),
        get(
            "parameters: valueString",
            "Texas",
            "Patient",
            200,
            Expect::Entries(keys(&["tx"])),
        ),
        get(
            "parameters: value with search syntax stays one value",
            "Injected",
            "Patient",
            200,
            Expect::Entries(keys(&[])),
        ),
        get(
            "parameters: %profile",
            "Gp",
            "Patient",
            200,
            Expect::Entries(keys(&["gp-patient"])),
        ),
        get(
            "patient policy: own Patient",
            "Pt",
            "Patient/{pt1}",
            200,
            Expect::Status,
        ),
        get(
            "patient policy: other Patient",
            "Pt",
            "Patient/{ca}",
            404,
            Expect::Status,
        ),
        get(
            "patient policy: own observations only",
            "Pt",
            "Observation",
            200,
            Expect::Entries(keys(&["obs-pt1"])),
        ),
        get(
            "two policies: basedOn lists both",
            "TwoPolicies",
            "auth/me",
            200,
            Expect::Equals(
                "/accessPolicy/basedOn",
                json!([{"reference": "AccessPolicy/{ca-policy}"}, {"reference": "AccessPolicy/{second}"}]),
            ),
        ),
        get(
            "two policies: resources of both",
            "TwoPolicies",
            "auth/me",
            200,
            Expect::Equals(
                "/accessPolicy/resource/1/resourceType",
                json!("Practitioner"),
            ),
        ),
        get(
            "two policies: union reaches Practitioner",
            "TwoPolicies",
            "Practitioner/{Gp-profile}",
            200,
            Expect::Status,
        ),
        get(
            "include: a hidden patient is not included",
            "ObsInclude",
            "Observation?_include=Observation:subject",
            200,
            Expect::Entries(keys(&["obs-ca", "obs-ny", "obs-pt1", "ca"])),
        ),
        get(
            "revinclude: only visible patients bring observations",
            "ObsInclude",
            "Patient?_revinclude=Observation:subject",
            200,
            Expect::Entries(keys(&["ca", "obs-ca"])),
        ),
        get(
            "include: no include of a type not allowed",
            "Ca",
            "Patient?_revinclude=Observation:subject",
            200,
            Expect::Entries(keys(&["ca"])),
        ),
    ];
    cases.extend(visibility(
        "criteria hides NY",
        "Ca",
        "Patient",
        "ny",
        false,
    ));
    cases.extend(visibility("criteria shows CA", "Ca", "Patient", "ca", true));
    cases.extend(visibility(
        "organization c hidden",
        "Orgs",
        "Patient",
        "at-c",
        false,
    ));
    cases.extend(visibility(
        "patient sees own observation",
        "Pt",
        "Observation",
        "obs-pt1",
        true,
    ));
    cases.extend(visibility(
        "patient never sees another's observation",
        "Pt",
        "Observation",
        "obs-ca",
        false,
    ));
    cases.extend(vec![
        case("criteria: create NY", "Ca", Method::POST, "Patient", Some(patient("NY")), 403, Expect::Status),
        case("criteria: create CA", "Ca", Method::POST, "Patient", Some(patient("CA")), 201, Expect::Status),
        case("criteria: move CA to NY", "Ca", Method::PUT, "Patient/{ca}", Some(json!({"resourceType": "Patient", "id": "{ca}", "address": [{"state": "NY"}]})), 403, Expect::Status),
        case("criteria: update NY into CA", "Ca", Method::PUT, "Patient/{ny}", Some(json!({"resourceType": "Patient", "id": "{ny}", "address": [{"state": "CA"}]})), 404, Expect::Status),
        case("criteria: delete NY", "Ca", Method::DELETE, "Patient/{ny}", None, 404, Expect::Status),
        case("criteria: update within CA", "Ca", Method::PUT, "Patient/{ca}", Some(json!({"resourceType": "Patient", "id": "{ca}", "address": [{"state": "CA"}], "gender": "female"})), 200, Expect::Status),
        case("patient policy: observation for another patient", "Pt", Method::POST, "Observation", Some(observation("Patient/{ca}", "final", "laboratory")), 403, Expect::Status),
        case("patient policy: own observation gets compartment and account", "Pt", Method::POST, "Observation", Some(observation("Patient/{pt1}", "final", "laboratory")), 201,
            Expect::Equals("/meta/accounts/0/reference", json!("Patient/{pt1}"))),
        case("patient policy: own observation's compartment lists the patient", "Pt", Method::POST, "Observation", Some(observation("Patient/{pt1}", "final", "laboratory")), 201,
            Expect::Equals("/meta/compartment/0/reference", json!("Patient/{pt1}"))),
    ]);
    let count = world.run(cases).await;
    assert!(count >= 40, "{count} cases");
}

#[tokio::test]
async fn invalid_policy_locks_out_with_medplum_message() {
    let server = TestServer::start().await;
    let project_id = server
        .create_member("owner@example.com", true)
        .await
        .project_id;
    let missing = add_member(
        &server,
        &project_id,
        "missing@example.com",
        "Practitioner/none",
        json!({"accessPolicy": {"reference": "AccessPolicy/8d3c1f52-5a3e-4d5e-9a55-0c2b8a1f0e11"}}),
    )
    .await;
    let response = server
        .post_json(
            "auth/login",
            json!({"email": missing.email, "password": PASSWORD,
                "codeChallenge": common::CHALLENGE, "codeChallengeMethod": "S256"}),
        )
        .await;
    assert_eq!(response.status(), 400);
    let outcome: Value = response.json().await.unwrap();
    assert_eq!(
        outcome["issue"][0]["details"]["text"],
        "Cannot authenticate: Invalid access policy configuration. Please contact your administrator to update your project membership."
    );

    // A policy with a chained criteria cannot even be stored.
    let owner = common::TestServer::admin_access_token(&server).await;
    let response = server
        .http
        .post(server.url("fhir/R4/AccessPolicy"))
        .bearer_auth(owner)
        .header(header::CONTENT_TYPE, "application/fhir+json")
        .body(
            json!({"resourceType": "AccessPolicy", "resource": [{"resourceType": "Patient",
            "criteria": "Patient?organization.name=x"}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let outcome: Value = response.json().await.unwrap();
    assert!(
        outcome["issue"][0]["details"]["text"]
            .as_str()
            .unwrap()
            .contains("chained parameter"),
        "{outcome}"
    );
}

#[tokio::test]
async fn field_and_constraint_cases() {
    let mut world = World::start().await;
    clinical_data(&mut world).await;
    world
        .policy(
            "hidden",
            json!({"resource": [{"resourceType": "Patient",
            "hiddenFields": ["birthDate", "name.given", "meta.author"]}]}),
        )
        .await;
    world
        .policy(
            "readonly",
            json!({"resource": [{"resourceType": "Patient",
            "readonlyFields": ["gender", "name.family"]}]}),
        )
        .await;
    world
        .policy("no-final-edits", json!({"resource": [{"resourceType": "Observation", "writeConstraint": [
            {"language": "text/fhirpath", "expression": "%before.exists() implies %before.status != 'final'"}]}]}))
        .await;
    world
        .policy("final-needs-subject", json!({"resource": [{"resourceType": "Observation", "writeConstraint": [
            {"language": "text/fhirpath", "expression": "status = 'final' implies subject.exists()"}]}]}))
        .await;
    world
        .resource(
            "prelim",
            false,
            observation("Patient/{ca}", "preliminary", "laboratory"),
        )
        .await;
    world
        .resource(
            "ro-patient",
            false,
            json!({"resourceType": "Patient", "gender": "female",
            "name": [{"given": ["Ro"], "family": "Stone"}]}),
        )
        .await;
    let policy =
        |key: &str| json!({"accessPolicy": {"reference": format!("AccessPolicy/{{{key}}}")}});
    world
        .practitioner("Hidden", policy("hidden"), "openid")
        .await;
    world
        .practitioner("Readonly", policy("readonly"), "openid")
        .await;
    world
        .practitioner("NoFinalEdits", policy("no-final-edits"), "openid")
        .await;
    world
        .practitioner("FinalNeedsSubject", policy("final-needs-subject"), "openid")
        .await;

    let cases = vec![
        get(
            "hidden: read",
            "Hidden",
            "Patient/{ca}",
            200,
            Expect::Missing("/birthDate"),
        ),
        get(
            "hidden: search",
            "Hidden",
            "Patient",
            200,
            Expect::Missing("/birthDate"),
        ),
        get(
            "hidden: history",
            "Hidden",
            "Patient/{ca}/_history",
            200,
            Expect::Missing("/birthDate"),
        ),
        get(
            "hidden: vread",
            "Hidden",
            "Patient/{ca}/_history/{ca@version}",
            200,
            Expect::Missing("/birthDate"),
        ),
        get(
            "hidden: nested given",
            "Hidden",
            "Patient/{ca}",
            200,
            Expect::Missing("/name/0/given"),
        ),
        get(
            "hidden: family stays",
            "Hidden",
            "Patient/{ca}",
            200,
            Expect::Equals("/name/0/family", json!("CA")),
        ),
        get(
            "hidden: meta.author even in extended mode",
            "Hidden",
            "Patient?_id={ca}",
            200,
            Expect::Missing("/meta/author"),
        ),
        case(
            "hidden: update keeps stored birthDate",
            "Hidden",
            Method::PUT,
            "Patient/{ny}",
            Some(
                json!({"resourceType": "Patient", "id": "{ny}", "birthDate": "2001-02-03", "name": [{"family": "NY"}], "address": [{"state": "NY"}]}),
            ),
            200,
            Expect::Missing("/birthDate"),
        ),
        get(
            "hidden: stored birthDate unchanged",
            "root",
            "Patient/{ny}",
            200,
            Expect::Equals("/birthDate", json!("1970-01-01")),
        ),
        get(
            "hidden: stored given restored",
            "root",
            "Patient/{ny}",
            200,
            Expect::Equals("/name/0/given", json!(["Pat"])),
        ),
        case(
            "hidden: create stores no birthDate",
            "Hidden",
            Method::POST,
            "Patient",
            Some(patient("WA")),
            201,
            Expect::Missing("/birthDate"),
        ),
        case(
            "readonly: update keeps gender and nested family",
            "Readonly",
            Method::PUT,
            "Patient/{ro-patient}",
            Some(
                json!({"resourceType": "Patient", "id": "{ro-patient}", "gender": "male", "name": [{"given": ["Changed"], "family": "Changed"}]}),
            ),
            200,
            Expect::Equals("/name/0", json!({"given": ["Changed"], "family": "Stone"})),
        ),
        get(
            "readonly: stored gender unchanged",
            "root",
            "Patient/{ro-patient}",
            200,
            Expect::Equals("/gender", json!("female")),
        ),
        case(
            "readonly: create may not set a read-only field",
            "Readonly",
            Method::POST,
            "Patient",
            Some(json!({"resourceType": "Patient", "gender": "male"})),
            400,
            Expect::Status,
        ),
        case(
            "readonly: removing the array that holds one is rejected",
            "Readonly",
            Method::PUT,
            "Patient/{ro-patient}",
            Some(json!({"resourceType": "Patient", "id": "{ro-patient}", "gender": "female"})),
            400,
            Expect::Status,
        ),
        case(
            "constraint: create final",
            "NoFinalEdits",
            Method::POST,
            "Observation",
            Some(observation("Patient/{ca}", "final", "laboratory")),
            201,
            Expect::Status,
        ),
        case(
            "constraint: update final",
            "NoFinalEdits",
            Method::PUT,
            "Observation/{obs-ca}",
            Some(
                json!({"resourceType": "Observation", "id": "{obs-ca}", "status": "amended", "code": {"text": "x"}}),
            ),
            403,
            Expect::Status,
        ),
        case(
            "constraint: preliminary to final",
            "NoFinalEdits",
            Method::PUT,
            "Observation/{prelim}",
            Some(
                json!({"resourceType": "Observation", "id": "{prelim}", "status": "final", "code": {"text": "x"}, "subject": {"reference": "Patient/{ca}"}}),
            ),
            200,
            Expect::Status,
        ),
        case(
            "constraint: final without subject",
            "FinalNeedsSubject",
            Method::POST,
            "Observation",
            Some(json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}})),
            403,
            Expect::Status,
        ),
        case(
            "constraint: final with subject",
            "FinalNeedsSubject",
            Method::POST,
            "Observation",
            Some(observation("Patient/{ca}", "final", "laboratory")),
            201,
            Expect::Status,
        ),
    ];
    world.run(cases).await;
}

#[tokio::test]
async fn admin_and_isolation_cases() {
    let mut world = World::start().await;
    clinical_data(&mut world).await;
    world
        .practitioner("Admin", json!({"admin": true}), "openid")
        .await;
    world
        .practitioner(
            "AdminLab",
            json!({"admin": true}),
            "openid user/Observation.rs",
        )
        .await;
    world.practitioner("Member", json!({}), "openid").await;
    let other_admin = world.server.create_member("b@example.com", true).await;
    let b_token = token(&world.server, &other_admin, "openid").await;
    world
        .callers
        .insert("B".to_string(), Caller::bearer(&b_token));
    world.ids.insert(
        "B-membership".to_string(),
        other_admin.membership_id.clone(),
    );
    world
        .ids
        .insert("B-project".to_string(), other_admin.project_id.clone());
    let request = seed(&world.server, &world.project_id.clone(), json!({"resourceType": "UserSecurityRequest",
        "type": "invite", "user": {"reference": format!("User/{}", world.members["Member"].user_id)}, "secret": "s"}))
        .await;
    world.ids.insert(
        "usr".to_string(),
        request["id"].as_str().unwrap().to_string(),
    );

    let mut cases = vec![
        get(
            "admin searches memberships of P only",
            "Admin",
            "ProjectMembership",
            200,
            Expect::Entries(keys(&[
                "Admin-membership",
                "AdminLab-membership",
                "Member-membership",
            ])),
        ),
        get(
            "admin reads Project P without super-admin fields",
            "Admin",
            "Project/{P}",
            200,
            Expect::Missing("/superAdmin"),
        ),
        get(
            "admin reads Project P without strictMode",
            "Admin",
            "Project/{P}",
            200,
            Expect::Missing("/strictMode"),
        ),
        get(
            "admin reads Project Q",
            "Admin",
            "Project/{Q}",
            404,
            Expect::Status,
        ),
        case(
            "admin deletes Project P",
            "Admin",
            Method::DELETE,
            "Project/{P}",
            None,
            403,
            Expect::Status,
        ),
        case(
            "admin sets features",
            "Admin",
            Method::PUT,
            "Project/{P}",
            Some(
                json!({"resourceType": "Project", "id": "{P}", "name": "P", "features": ["ai"], "superAdmin": true}),
            ),
            200,
            Expect::Missing("/features"),
        ),
        get(
            "features unchanged",
            "root",
            "Project/{P}",
            200,
            Expect::Missing("/features"),
        ),
        get(
            "superAdmin unchanged",
            "root",
            "Project/{P}",
            200,
            Expect::Missing("/superAdmin"),
        ),
        case(
            "admin changes a membership's user and admin",
            "Admin",
            Method::PUT,
            "ProjectMembership/{Member-membership}",
            Some(
                json!({"resourceType": "ProjectMembership", "id": "{Member-membership}", "project": {"reference": "Project/{P}"},
                "user": {"reference": "User/{usr}"}, "profile": {"reference": "Practitioner/{Member-profile}"}, "admin": false}),
            ),
            200,
            Expect::Equals("/admin", json!(false)),
        ),
        get(
            "membership user unchanged",
            "root",
            "ProjectMembership/{Member-membership}",
            200,
            Expect::Present("/user/reference"),
        ),
        get(
            "admin searches UserSecurityRequest",
            "Admin",
            "UserSecurityRequest",
            200,
            Expect::Entries(keys(&["usr"])),
        ),
        case(
            "admin updates UserSecurityRequest",
            "Admin",
            Method::PUT,
            "UserSecurityRequest/{usr}",
            Some(
                json!({"resourceType": "UserSecurityRequest", "id": "{usr}", "type": "reset", "secret": "x",
                "user": {"reference": "User/x"}}),
            ),
            403,
            Expect::Status,
        ),
        get(
            "admin with lab scope keeps memberships",
            "AdminLab",
            "ProjectMembership",
            200,
            Expect::Entries(keys(&[
                "Admin-membership",
                "AdminLab-membership",
                "Member-membership",
            ])),
        ),
        get(
            "admin with lab scope loses Patient",
            "AdminLab",
            "Patient",
            403,
            Expect::Status,
        ),
        get(
            "other admin reads P's Observation",
            "B",
            "Observation/{obs-ca}",
            404,
            Expect::Status,
        ),
        get(
            "other admin reads P's membership",
            "B",
            "ProjectMembership/{Member-membership}",
            404,
            Expect::Status,
        ),
        get(
            "other admin searches P's patients by id",
            "B",
            "Patient?_id={ca}",
            200,
            Expect::Entries(keys(&[])),
        ),
        case(
            "member creates in Q via meta.project",
            "Member",
            Method::POST,
            "Patient",
            Some(json!({"resourceType": "Patient", "id": "chosen", "meta": {"project": "{Q}"}})),
            201,
            Expect::Equals("/meta/project", json!("{P}")),
        ),
        case(
            "member puts at a fresh id",
            "Member",
            Method::PUT,
            "Patient/0a6e4f9e-1c1c-4c56-9a0e-3b3a9d1f0c11",
            Some(json!({"resourceType": "Patient", "id": "0a6e4f9e-1c1c-4c56-9a0e-3b3a9d1f0c11"})),
            404,
            Expect::Status,
        ),
        get(
            "extended read shows author",
            "Member",
            "Patient/{ca}",
            200,
            Expect::Equals("/meta/author/reference", json!("system")),
        ),
    ];
    cases.extend(visibility(
        "admin sees own project's patients",
        "Admin",
        "Patient",
        "ca",
        true,
    ));
    cases.extend(visibility(
        "admin never sees Q's patient",
        "Admin",
        "Patient",
        "q-patient",
        false,
    ));
    cases.extend(visibility(
        "super admin sees P's patient",
        "root",
        "Patient",
        "ca",
        true,
    ));
    world.run(cases).await;
}

#[tokio::test]
async fn smart_scope_cases() {
    let mut world = World::start().await;
    clinical_data(&mut world).await;
    world
        .policy("star", json!({"resource": [{"resourceType": "*"}]}))
        .await;
    world
        .policy(
            "patient-cr",
            json!({"resource": [{"resourceType": "Patient", "interaction": ["create", "read"]}]}),
        )
        .await;
    world
        .resource(
            "pt1",
            false,
            json!({"resourceType": "Patient", "name": [{"family": "Self"}]}),
        )
        .await;
    world
        .resource(
            "obs-pt1",
            false,
            observation("Patient/{pt1}", "final", "laboratory"),
        )
        .await;
    let star = json!({"accessPolicy": {"reference": "AccessPolicy/{star}"}});
    world
        .practitioner("UserObsRs", star.clone(), "openid user/Observation.rs")
        .await;
    world
        .practitioner("PatientStarRead", star.clone(), "openid patient/*.read")
        .await;
    world
        .practitioner(
            "Lab",
            star.clone(),
            "openid user/Observation.rs?category=laboratory",
        )
        .await;
    world
        .practitioner("CreateOnly", star.clone(), "openid user/Observation.c")
        .await;
    world
        .practitioner("ReadNoSearch", star.clone(), "openid user/Patient.r")
        .await;
    world
        .practitioner(
            "ExplicitCr",
            json!({"accessPolicy": {"reference": "AccessPolicy/{patient-cr}"}}),
            "openid user/Patient.rs",
        )
        .await;
    let pt1 = format!("Patient/{}", world.ids["pt1"]);
    world
        .member("PtScoped", &pt1, star.clone(), "openid patient/*.rs")
        .await;
    world
        .member("PtWrite", &pt1, star, "openid patient/Observation.cruds")
        .await;

    let cases = vec![
        get(
            "user/Observation.rs reads",
            "UserObsRs",
            "Observation/{obs-ca}",
            200,
            Expect::Status,
        ),
        get(
            "user/Observation.rs searches",
            "UserObsRs",
            "Observation",
            200,
            Expect::Entries(keys(&["obs-ca", "obs-ny", "obs-pt1"])),
        ),
        case(
            "user/Observation.rs creates",
            "UserObsRs",
            Method::POST,
            "Observation",
            Some(observation("Patient/{ca}", "final", "laboratory")),
            403,
            Expect::Status,
        ),
        get(
            "user/Observation.rs reads Patient",
            "UserObsRs",
            "Patient/{ca}",
            403,
            Expect::Status,
        ),
        get(
            "patient/*.read without a patient in context",
            "PatientStarRead",
            "Patient",
            403,
            Expect::Status,
        ),
        get(
            "patient/*.read reads nothing by id",
            "PatientStarRead",
            "Patient/{ca}",
            403,
            Expect::Status,
        ),
        get(
            "scope query narrows search",
            "Lab",
            "Observation",
            200,
            Expect::Entries(keys(&["obs-ca", "obs-pt1"])),
        ),
        get(
            "scope query hides others by id",
            "Lab",
            "Observation/{obs-ny}",
            404,
            Expect::Status,
        ),
        case(
            "c creates",
            "CreateOnly",
            Method::POST,
            "Observation",
            Some(observation("Patient/{ca}", "final", "laboratory")),
            201,
            Expect::Status,
        ),
        get(
            "c does not read",
            "CreateOnly",
            "Observation/{obs-ca}",
            403,
            Expect::Status,
        ),
        get(
            "c does not search",
            "CreateOnly",
            "Observation",
            403,
            Expect::Status,
        ),
        case(
            "c does not update",
            "CreateOnly",
            Method::PUT,
            "Observation/{obs-ca}",
            Some(
                json!({"resourceType": "Observation", "id": "{obs-ca}", "status": "amended", "code": {"text": "x"}}),
            ),
            403,
            Expect::Status,
        ),
        get(
            "r reads",
            "ReadNoSearch",
            "Patient/{ca}",
            200,
            Expect::Status,
        ),
        get(
            "r reads history",
            "ReadNoSearch",
            "Patient/{ca}/_history",
            200,
            Expect::Status,
        ),
        get(
            "r does not search",
            "ReadNoSearch",
            "Patient",
            403,
            Expect::Status,
        ),
        case(
            "rs scope removes create from explicit interactions",
            "ExplicitCr",
            Method::POST,
            "Patient",
            Some(patient("CA")),
            403,
            Expect::Status,
        ),
        get(
            "patient/*.rs reads own Patient",
            "PtScoped",
            "Patient/{pt1}",
            200,
            Expect::Status,
        ),
        get(
            "patient/*.rs hides another Patient",
            "PtScoped",
            "Patient/{ca}",
            404,
            Expect::Status,
        ),
        get(
            "patient/*.rs searches own observations",
            "PtScoped",
            "Observation",
            200,
            Expect::Entries(keys(&["obs-pt1"])),
        ),
        case(
            "patient/*.rs cannot write",
            "PtScoped",
            Method::POST,
            "Observation",
            Some(observation("{pt1}", "final", "laboratory")),
            403,
            Expect::Status,
        ),
        case(
            "patient/Observation.cruds writes for own patient",
            "PtWrite",
            Method::POST,
            "Observation",
            Some(observation("Patient/{pt1}", "final", "laboratory")),
            201,
            Expect::Status,
        ),
        case(
            "patient/Observation.cruds cannot write for another",
            "PtWrite",
            Method::POST,
            "Observation",
            Some(observation("Patient/{ca}", "final", "laboratory")),
            403,
            Expect::Status,
        ),
    ];
    world.run(cases).await;
}

#[tokio::test]
async fn basic_and_on_behalf_of_cases() {
    let mut world = World::start().await;
    clinical_data(&mut world).await;
    world
        .policy(
            "ca-policy",
            json!({"resource": [{"resourceType": "Patient", "criteria": "Patient?address-state=CA"},
        {"resourceType": "Observation"}]}),
        )
        .await;
    world
        .practitioner("Admin", json!({"admin": true}), "openid")
        .await;
    world
        .practitioner(
            "Ca",
            json!({"accessPolicy": {"reference": "AccessPolicy/{ca-policy}"}}),
            "openid",
        )
        .await;
    world.practitioner("Plain", json!({}), "openid").await;

    // Clients of P: an admin client and a plain one, each with its membership.
    let project_id = world.project_id.clone();
    let mut client_ids = Vec::new();
    for (name, admin) in [("AdminClient", true), ("PlainClient", false)] {
        let created = world
            .server
            .services
            .create_client(
                ClientApplication {
                    name: Some(name.to_string()),
                    ..Default::default()
                },
                &WriteContext::system(Some(&project_id)),
            )
            .await
            .unwrap();
        let client_id = created.client.id.clone();
        let secret = created.secret.expose().clone();
        if admin {
            let request = medgate_fhir::search::SearchRequest::new("ProjectMembership")
                .filter("user", &format!("ClientApplication/{client_id}"));
            let mut membership: ProjectMembership = world
                .server
                .services
                .repo
                .search_one(request)
                .await
                .unwrap()
                .unwrap();
            membership.admin = Some(true);
            world
                .server
                .services
                .repo
                .update(&membership, &WriteContext::system(Some(&project_id)))
                .await
                .unwrap();
        }
        world
            .callers
            .insert(name.to_string(), Caller::basic(&client_id, &secret));
        world.ids.insert(name.to_string(), client_id.clone());
        client_ids.push((client_id, secret));
    }
    let (admin_client, admin_secret) = client_ids[0].clone();
    world.callers.insert(
        "WrongSecret".to_string(),
        Caller::basic(&admin_client, "wrong"),
    );
    let ca_membership = format!("ProjectMembership/{}", world.members["Ca"].membership_id);
    let ca_profile = world.members["Ca"].profile.clone();
    let admin_client_caller = Caller::basic(&admin_client, &admin_secret);
    world.callers.insert(
        "ClientForCa".to_string(),
        admin_client_caller.acting_for(&ca_membership),
    );
    world.callers.insert(
        "ClientForCaProfile".to_string(),
        admin_client_caller.acting_for(&ca_profile),
    );
    let plain_client = world.callers["PlainClient"].clone();
    world.callers.insert(
        "PlainClientForCa".to_string(),
        plain_client.acting_for(&ca_membership),
    );
    let admin_bearer = world.callers["Admin"].clone();
    world.callers.insert(
        "AdminForCa".to_string(),
        admin_bearer.acting_for(&ca_membership),
    );
    let plain_bearer = world.callers["Plain"].clone();
    world.callers.insert(
        "PlainForCa".to_string(),
        plain_bearer.acting_for(&ca_membership),
    );
    let other = world
        .server
        .create_member("q-admin@example.com", true)
        .await;
    world.callers.insert(
        "AdminForOtherProject".to_string(),
        admin_bearer.acting_for(&format!("ProjectMembership/{}", other.membership_id)),
    );
    world.callers.insert(
        "AdminForOtherProfile".to_string(),
        admin_bearer.acting_for(&other.profile),
    );
    world
        .ids
        .insert("Ca-profile-ref".to_string(), ca_profile.clone());

    let mut cases = vec![
        get(
            "basic: search",
            "AdminClient",
            "Patient",
            200,
            Expect::Entries(keys(&["ca", "ny", "tx"])),
        ),
        get(
            "basic: wrong secret",
            "WrongSecret",
            "Patient",
            401,
            Expect::Status,
        ),
        get(
            "basic: /auth/me",
            "PlainClient",
            "auth/me",
            200,
            Expect::Equals("/profile/resourceType", json!("ClientApplication")),
        ),
        get(
            "basic: client sees no administration types",
            "PlainClient",
            "ProjectMembership",
            403,
            Expect::Status,
        ),
        get(
            "on behalf of: non-admin client",
            "PlainClientForCa",
            "Patient",
            403,
            Expect::Status,
        ),
        get(
            "on behalf of: non-admin user",
            "PlainForCa",
            "Patient",
            403,
            Expect::Status,
        ),
        get(
            "on behalf of: target's criteria apply",
            "ClientForCa",
            "Patient",
            200,
            Expect::Entries(keys(&["ca"])),
        ),
        get(
            "on behalf of by profile reference",
            "ClientForCaProfile",
            "Patient",
            200,
            Expect::Entries(keys(&["ca"])),
        ),
        get(
            "on behalf of with a bearer token",
            "AdminForCa",
            "Patient",
            200,
            Expect::Entries(keys(&["ca"])),
        ),
        get(
            "on behalf of: target's memberships are not the admin's",
            "AdminForCa",
            "ProjectMembership",
            403,
            Expect::Status,
        ),
        case(
            "on behalf of: author stays the client",
            "ClientForCa",
            Method::POST,
            "Observation",
            Some(observation("Patient/{ca}", "final", "laboratory")),
            201,
            Expect::Equals(
                "/meta/author/reference",
                json!("ClientApplication/{AdminClient}"),
            ),
        ),
        case(
            "on behalf of: onBehalfOf is the target profile",
            "ClientForCa",
            Method::POST,
            "Observation",
            Some(observation("Patient/{ca}", "final", "laboratory")),
            201,
            Expect::Equals("/meta/onBehalfOf/reference", json!("{Ca-profile-ref}")),
        ),
        get(
            "on behalf of: membership of another project",
            "AdminForOtherProject",
            "Patient",
            404,
            Expect::Status,
        ),
        get(
            "on behalf of: profile of another project",
            "AdminForOtherProfile",
            "Patient",
            403,
            Expect::Status,
        ),
        get(
            "on behalf of: /auth/me shows the target's policy",
            "AdminForCa",
            "auth/me",
            200,
            Expect::Equals(
                "/accessPolicy/basedOn/0/reference",
                json!("AccessPolicy/{ca-policy}"),
            ),
        ),
    ];
    cases.extend(visibility(
        "on behalf of hides NY",
        "ClientForCa",
        "Patient",
        "ny",
        false,
    ));
    cases.extend(visibility(
        "basic client sees NY",
        "AdminClient",
        "Patient",
        "ny",
        true,
    ));
    world.run(cases).await;
}

/// Signs a member in from the test's address; returns the status and body.
async fn sign_in(
    server: &TestServer,
    member: &Member,
    forwarded_for: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = server.http.post(server.url("auth/login")).json(&json!({
        "email": member.email, "password": member.password,
        "codeChallenge": common::CHALLENGE, "codeChallengeMethod": "S256", "scope": "openid offline_access"}));
    if let Some(forwarded_for) = forwarded_for {
        request = request.header("x-forwarded-for", forwarded_for);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn ip_rule_cases() {
    // The server trusts the loopback address as a proxy, so X-Forwarded-For names the
    // client address each request is checked against.
    let mut world = World::start_with(|config| {
        config.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    clinical_data(&mut world).await;
    world
        .policy(
            "block-10-0",
            json!({"resource": [{"resourceType": "*"}],
            "ipAccessRule": [{"name": "office", "value": "10.0.", "action": "block"}]}),
        )
        .await;
    world
        .policy("allow-one", json!({"resource": [{"resourceType": "*"}],
            "ipAccessRule": [{"value": "10.0.3.4", "action": "allow"}, {"value": "*", "action": "block"}]}))
        .await;
    world
        .policy("allow-cidr", json!({"resource": [{"resourceType": "*"}],
            "ipAccessRule": [{"value": "192.168.0.0/16", "action": "allow"}, {"value": "fd00::/8", "action": "allow"},
                {"value": "*", "action": "block"}]}))
        .await;
    let server = &world.server;
    let project_id = world.project_id.clone();
    let policy = |key: &str| json!({"accessPolicy": {"reference": format!("AccessPolicy/{}", world.ids[key])}});
    let blocked = add_member(
        server,
        &project_id,
        "blocked@example.com",
        "Practitioner/x1",
        policy("block-10-0"),
    )
    .await;
    let allowed = add_member(
        server,
        &project_id,
        "allowed@example.com",
        "Practitioner/x2",
        policy("allow-one"),
    )
    .await;
    let cidr = add_member(
        server,
        &project_id,
        "cidr@example.com",
        "Practitioner/x3",
        policy("allow-cidr"),
    )
    .await;

    // Sign-in binds the membership: 400 `IP address not allowed`.
    let (status, body) = sign_in(server, &blocked, Some("10.0.3.4")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["issue"][0]["details"]["text"],
        "IP address not allowed"
    );
    let (status, _) = sign_in(server, &blocked, Some("10.1.3.4")).await;
    assert_eq!(status, 200);
    let (status, _) = sign_in(server, &allowed, Some("10.0.3.4")).await;
    assert_eq!(status, 200);
    let (status, _) = sign_in(server, &allowed, Some("10.0.3.45")).await;
    assert_eq!(status, 400, "a full address is not a prefix");
    let (status, _) = sign_in(server, &cidr, Some("192.168.20.1")).await;
    assert_eq!(status, 200);
    let (status, _) = sign_in(server, &cidr, Some("fd12::7")).await;
    assert_eq!(status, 200);
    let (status, _) = sign_in(server, &cidr, Some("192.169.0.1")).await;
    assert_eq!(status, 400);
    // The left-most entry is what a client can forge; the proxy's view is the right-most.
    let (status, _) = sign_in(server, &cidr, Some("192.168.1.1, 8.8.8.8")).await;
    assert_eq!(status, 400);

    // Token grants: the code from an allowed address, redeemed from a blocked one.
    let (status, login) = sign_in(server, &allowed, Some("10.0.3.4")).await;
    assert_eq!(status, 200);
    let redeem = |forwarded: &'static str, form: Vec<(&'static str, String)>| {
        server
            .http
            .post(server.url("oauth2/token"))
            .header("x-forwarded-for", forwarded)
            .form(&form)
            .send()
    };
    let code = login["code"].as_str().unwrap().to_string();
    let response = redeem(
        "10.9.9.9",
        vec![
            ("grant_type", "authorization_code".into()),
            ("code", code.clone()),
            ("code_verifier", common::VERIFIER.into()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error_description"], "IP address not allowed");
    let response = redeem(
        "10.0.3.4",
        vec![
            ("grant_type", "authorization_code".into()),
            ("code", code),
            ("code_verifier", common::VERIFIER.into()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let tokens: Value = response.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();

    // Refresh from a blocked address.
    let response = redeem(
        "10.9.9.9",
        vec![
            ("grant_type", "refresh_token".into()),
            ("refresh_token", refresh.clone()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error_description"], "IP address not allowed");

    // Every request: the same token from another address is 403.
    for (forwarded, status) in [("10.0.3.4", 200), ("10.9.9.9", 403)] {
        let response = server
            .http
            .get(server.url("fhir/R4/Patient"))
            .bearer_auth(&access)
            .header("x-forwarded-for", forwarded)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{forwarded}");
    }

    // Client credentials from a blocked address.
    let created = server
        .services
        .create_client(
            ClientApplication {
                name: Some("Blocked client".to_string()),
                ..Default::default()
            },
            &WriteContext::system(Some(&project_id)),
        )
        .await
        .unwrap();
    let request = medgate_fhir::search::SearchRequest::new("ProjectMembership")
        .filter("user", &format!("ClientApplication/{}", created.client.id));
    let mut membership: ProjectMembership = server
        .services
        .repo
        .search_one(request)
        .await
        .unwrap()
        .unwrap();
    membership.access_policy = Some(Reference::new("AccessPolicy", &world.ids["block-10-0"]));
    server
        .services
        .repo
        .update(&membership, &WriteContext::system(Some(&project_id)))
        .await
        .unwrap();
    let form = |forwarded: &'static str| {
        redeem(
            forwarded,
            vec![
                ("grant_type", "client_credentials".into()),
                ("client_id", created.client.id.clone()),
                ("client_secret", created.secret.expose().clone()),
            ],
        )
    };
    let response = form("10.0.0.1").await.unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error_description"], "IP address not allowed");
    assert_eq!(form("172.16.0.1").await.unwrap().status(), 200);

    // Basic authentication on the FHIR API from a blocked address.
    let basic = format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", created.client.id, created.secret.expose()))
    );
    for (forwarded, status) in [("172.16.0.1", 200), ("10.0.0.1", 403)] {
        let response = server
            .http
            .get(server.url("fhir/R4/Patient"))
            .header(header::AUTHORIZATION, &basic)
            .header("x-forwarded-for", forwarded)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{forwarded}");
    }
}

#[tokio::test]
async fn untrusted_peer_cannot_forge_its_address() {
    let server = TestServer::start().await;
    let project_id = server
        .create_member("owner@example.com", true)
        .await
        .project_id;
    let policy = seed(&server, &project_id, json!({"resourceType": "AccessPolicy", "resource": [{"resourceType": "*"}],
        "ipAccessRule": [{"value": "10.0.3.4", "action": "allow"}, {"value": "*", "action": "block"}]}))
        .await;
    let member = add_member(&server, &project_id, "forger@example.com", "Practitioner/f1",
        json!({"accessPolicy": {"reference": format!("AccessPolicy/{}", policy["id"].as_str().unwrap())}}))
        .await;
    // No proxy is trusted, so the header is ignored and 127.0.0.1 is blocked.
    let (status, body) = sign_in(&server, &member, Some("10.0.3.4")).await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn default_policy_for_new_memberships() {
    let mut world = World::start().await;
    let policy_id = world
        .policy(
            "patients",
            json!({"resource": [{"resourceType": "Patient", "readonly": true}]}),
        )
        .await;
    world
        .practitioner("Admin", json!({"admin": true}), "openid")
        .await;
    let project_id = world.project_id.clone();
    let mut project: Project = world.server.services.repo.read(&project_id).await.unwrap();
    project.extra.insert(
        "defaultAccessPolicies".to_string(),
        json!([{"profileType": "Practitioner", "accessPolicy": {"reference": format!("AccessPolicy/{policy_id}")}}]),
    );
    world
        .server
        .services
        .repo
        .update(&project, &WriteContext::system(None))
        .await
        .unwrap();
    let user = world
        .server
        .services
        .repo
        .create(
            &User {
                first_name: Some("New".into()),
                last_name: Some("Member".into()),
                email: Some("new@example.com".into()),
                project: Some(Reference::new("Project", &project_id)),
                ..Default::default()
            },
            &WriteContext::system(Some(&project_id)),
        )
        .await
        .unwrap();
    world.ids.insert("new-user".to_string(), user.id);
    world
        .resource(
            "new-profile",
            false,
            json!({"resourceType": "Practitioner"}),
        )
        .await;
    let cases = vec![
        case(
            "membership without policy gets the project default",
            "Admin",
            Method::POST,
            "ProjectMembership",
            Some(
                json!({"resourceType": "ProjectMembership", "project": {"reference": "Project/{P}"},
                "user": {"reference": "User/{new-user}"}, "profile": {"reference": "Practitioner/{new-profile}"}}),
            ),
            201,
            Expect::Equals("/accessPolicy/reference", json!("AccessPolicy/{patients}")),
        ),
        case(
            "membership with a policy keeps it",
            "Admin",
            Method::POST,
            "ProjectMembership",
            Some(
                json!({"resourceType": "ProjectMembership", "project": {"reference": "Project/{P}"},
                "user": {"reference": "User/{new-user}"}, "profile": {"reference": "Practitioner/{new-profile}"},
                "access": [{"policy": {"reference": "AccessPolicy/{patients}"}}]}),
            ),
            201,
            Expect::Missing("/accessPolicy"),
        ),
    ];
    world.run(cases).await;
}
