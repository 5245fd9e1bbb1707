//! Self-service registration, as Medplum's `POST /auth/newuser` and `POST /auth/newproject`
//! run it. Signing up creates a user and a login without a membership. Creating a project
//! next binds that login to the user's new admin membership and gives it an authorization
//! code.

use medgate_fhir::Reference;
use medgate_fhir::resources::{
    ClientApplication, Login, Project, ProjectMembership, TypedResource, User,
};
use medgate_fhir::search::SearchRequest;
use medgate_store::WriteOp;
use serde::Serialize;
use serde_json::{Map, Value, json};
use tracing::{info, instrument};

use crate::Services;
use crate::clock::fhir_instant;
use crate::error::{ServiceError, ServiceResult};
use crate::login::{LoginResponse, is_valid_email};
use crate::password::check_new_password;
use crate::random::{is_uuid, uuid_v4};
use crate::repo::WriteContext;
use crate::secret::Secret;
use crate::tokens::sign_in_scope;

/// Medplum's registration request (`POST /auth/newuser`), without the reCAPTCHA fields.
#[derive(Debug, Clone, Default)]
pub struct NewUserRequest {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub password: Secret<String>,
    /// `new` for a user about to create a project, a Project id for a user scoped to that
    /// project, or absent for a server-scoped user.
    pub project_id: Option<String>,
    pub client_id: Option<String>,
    pub scope: Option<String>,
    pub nonce: Option<String>,
    pub resource_type: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    /// Medplum's deprecated "keep me signed in" flag, which grants a refresh token.
    pub remember: bool,
    pub remote_address: Option<String>,
    pub user_agent: Option<String>,
}

/// The registration response: only the login id, because the login has no membership yet.
#[derive(Debug, Clone, Serialize)]
pub struct NewUserResponse {
    pub login: String,
}

/// The scope a new user is registered in, resolved from `projectId` and the client's project.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Registration {
    /// A server-scoped user with no project yet.
    Server,
    /// A server-scoped user who creates a project next (`projectId: "new"`).
    NewProject,
    /// A user scoped to an existing project.
    InProject(String),
}

impl Registration {
    fn project_id(&self) -> Option<&str> {
        match self {
            Self::InProject(project_id) => Some(project_id),
            _ => None,
        }
    }

    /// Builds the Login's `project`. Medplum marks a login that goes on to create a project
    /// with the literal reference `Project/new`.
    fn login_project(&self) -> Option<Reference> {
        match self {
            Self::Server => None,
            Self::NewProject => Some(Reference::new("Project", "new")),
            Self::InProject(project_id) => Some(Reference::new("Project", project_id)),
        }
    }
}

impl Services {
    /// Creates a user and a login for it (`POST /auth/newuser`). The login has no membership:
    /// the caller continues with `POST /auth/newproject`.
    #[instrument(skip_all, fields(client_id = request.client_id.as_deref().unwrap_or_default()))]
    pub async fn register_user(&self, request: NewUserRequest) -> ServiceResult<NewUserResponse> {
        let first_name = request.first_name.trim();
        let last_name = request.last_name.trim();
        let email = request.email.trim().to_lowercase();

        // names: Medplum's limits, 1 to 128 characters.
        if !(1..=128).contains(&first_name.chars().count()) {
            return Err(ServiceError::invalid_field(
                "First name must be between 1 and 128 characters",
                "firstName",
            ));
        }
        if !(1..=128).contains(&last_name.chars().count()) {
            return Err(ServiceError::invalid_field(
                "Last name must be between 1 and 128 characters",
                "lastName",
            ));
        }

        // email: stored lower-cased, so `Alice@Example.com` and `alice@example.com` are one
        // account, and at most 72 characters as in Medplum.
        if !is_valid_email(&email) || !(3..=72).contains(&email.chars().count()) {
            return Err(ServiceError::invalid_field(
                "Valid email address between 3 and 72 characters is required",
                "email",
            ));
        }

        // password: length in bytes and the list of common passwords.
        if let Err(message) = check_new_password(&request.password) {
            return Err(ServiceError::invalid_field(message, "password"));
        }

        // client and project: a client implies its project, and an explicit projectId must
        // name the same one.
        let client = self.client_for_login(request.client_id.as_deref()).await?;
        let registration = resolve_registration(client.as_ref(), request.project_id.as_deref())?;
        if let Some(project_id) = registration.project_id() {
            self.check_open_registration(project_id).await?;
        }

        // PKCE: the same rules as at sign-in, so the code can be redeemed later.
        self.check_login_pkce(
            client.as_ref(),
            request.code_challenge.as_deref(),
            request.code_challenge_method.as_deref(),
        )?;

        // duplicates: one account per email in each scope, the project or the server.
        if self
            .find_registered_user(&email, registration.project_id())
            .await?
            .is_some()
        {
            return Err(ServiceError::invalid_field(
                "Email already registered",
                "email",
            ));
        }

        // scope clash: a server-scoped member of the project with this email would be
        // shadowed at sign-in by the new project-scoped user.
        if let Some(project_id) = registration.project_id() {
            let project = Project {
                id: project_id.to_string(),
                ..Default::default()
            };
            match self.check_scope_clash(&project, &email, true).await {
                Err(ServiceError::Conflict(_)) => {
                    return Err(ServiceError::invalid_field(
                        "Email already registered",
                        "email",
                    ));
                }
                other => other?,
            }
        }

        let user = User {
            id: uuid_v4(self.random()),
            first_name: Some(first_name.to_string()),
            last_name: Some(last_name.to_string()),
            email: Some(email),
            email_verified: Some(false),
            password_hash: Some(self.passwords.hash(&request.password).await?),
            project: registration
                .project_id()
                .map(|project_id| Reference::new("Project", project_id)),
            ..Default::default()
        };
        let login = Login {
            user: user.reference(),
            client: client.as_ref().map(TypedResource::reference),
            project: registration.login_project(),
            profile_type: request
                .resource_type
                .clone()
                .filter(|text| !text.is_empty()),
            scope: sign_in_scope(request.scope.as_deref(), request.remember),
            nonce: Some(
                request
                    .nonce
                    .clone()
                    .filter(|nonce| !nonce.is_empty())
                    .unwrap_or_else(|| uuid_v4(self.random())),
            ),
            auth_method: "password".to_string(),
            auth_time: fhir_instant(self.now()),
            code_challenge: request
                .code_challenge
                .clone()
                .filter(|challenge| !challenge.is_empty()),
            code_challenge_method: request
                .code_challenge_method
                .clone()
                .filter(|method| !method.is_empty()),
            remote_address: request.remote_address.clone(),
            user_agent: request.user_agent.clone(),
            ..Default::default()
        };

        // The user and its first login are written together, so a failure leaves neither.
        // NOTE: two concurrent registrations of one email can both pass the duplicate check
        // above, because the store has no unique index on User email.
        // A project-scoped user belongs to its project, so the project's admins can find and
        // manage it; a server-scoped user belongs to no project.
        let user_context = WriteContext::system(registration.project_id());
        let user_value = self.repo.prepare_create(user.to_json(), &user_context)?;
        let login_value = self
            .repo
            .prepare_create(login.to_json(), &WriteContext::system(None))?;
        let login_id = login_value["id"].as_str().unwrap_or_default().to_string();
        self.repo
            .store
            .write(vec![
                WriteOp::Create(user_value),
                WriteOp::Create(login_value),
            ])
            .await?;
        info!(
            user_id = %user.id,
            login_id,
            project_id = registration.project_id(),
            "registered a new user"
        );
        Ok(NewUserResponse { login: login_id })
    }

    /// Creates a project owned by the user of a login without a membership, and binds the
    /// login to the owner's new admin membership (`POST /auth/newproject`).
    #[instrument(skip_all, fields(login_id = login_id))]
    pub async fn register_project(
        &self,
        login_id: &str,
        project_name: &str,
    ) -> ServiceResult<LoginResponse> {
        let project_name = project_name.trim();

        // login: a UUID, with Medplum's message.
        if !is_uuid(login_id) {
            return Err(ServiceError::invalid_field(
                "Login ID is required.",
                "login",
            ));
        }

        // project name: Medplum's limits, 4 to 72 characters.
        if !(4..=72).contains(&project_name.chars().count()) {
            return Err(ServiceError::invalid_field(
                "Project name must be between 4 and 72 characters",
                "projectName",
            ));
        }

        // login state: checked before anything is written, so a refused request creates
        // no project.
        let mut login = self.read_login(login_id).await?;
        if login.membership.is_some() {
            return Err(ServiceError::invalid("Login already has a membership"));
        }
        if login.is_revoked() {
            return Err(ServiceError::invalid("Login revoked"));
        }
        if login.is_granted() {
            return Err(ServiceError::invalid("Login granted"));
        }

        // project restriction: a login started for one project (through its client, for
        // example) cannot become a session in another.
        if let Some(project) = &login.project
            && project.reference != "Project/new"
        {
            return Err(ServiceError::invalid(
                "Login is restricted to another project",
            ));
        }

        // user: project-scoped users can only sign in to their own project, so they could
        // never reach a project they created.
        let user: User = match self.repo.read_reference(&login.user).await {
            Ok(user) => user,
            Err(ServiceError::NotFound | ServiceError::Gone) => {
                return Err(ServiceError::invalid("User not found"));
            }
            Err(error) => return Err(error),
        };
        if user.project.is_some() {
            return Err(ServiceError::invalid(
                "Project-scoped users cannot create projects",
            ));
        }

        // MFA: the response contains a code, so an enrolled user must have passed MFA first.
        // Medplum requires MFA for password sign-ins only.
        if user.mfa_enrolled == Some(true)
            && login.auth_method == "password"
            && login.mfa_verified != Some(true)
        {
            return Err(ServiceError::invalid("MFA verification required"));
        }

        let created = self.prepare_project(project_name, &user)?;
        self.repo.store.write(created.writes).await?;
        info!(
            project_id = %created.project_id,
            user_id = %user.id,
            client_id = %created.client_id,
            "created a project for its owner"
        );

        // If binding fails, the project still exists and the owner can sign in to it.
        login.project = Some(Reference::new("Project", &created.project_id));
        let completed = self.set_membership(login, &created.membership_id).await?;
        Ok(LoginResponse {
            login: completed.login.id,
            code: Some(completed.code),
            memberships: None,
        })
    }

    /// Registration into an existing project needs the project's consent, which Medplum
    /// expresses as a default patient access policy. Without this check anyone could create
    /// accounts inside any project whose id they know.
    async fn check_open_registration(&self, project_id: &str) -> ServiceResult<()> {
        let project: Project = match self.repo.read(project_id).await {
            Ok(project) => project,
            Err(ServiceError::NotFound | ServiceError::Gone) => {
                return Err(ServiceError::invalid_field(
                    "Invalid projectId",
                    "projectId",
                ));
            }
            Err(error) => return Err(error),
        };
        if !project.extra.contains_key("defaultPatientAccessPolicy") {
            return Err(ServiceError::invalid(
                "Project does not allow open registration",
            ));
        }
        Ok(())
    }

    /// Finds the user registered with this email in exactly this scope: among the project's
    /// users when a project is given, otherwise among the server-scoped users.
    pub(crate) async fn find_registered_user(
        &self,
        email: &str,
        project_id: Option<&str>,
    ) -> ServiceResult<Option<User>> {
        let request = SearchRequest::new("User").filter("email", email);
        let request = match project_id {
            Some(project_id) => request.filter("project", &format!("Project/{project_id}")),
            None => request.missing("project", true),
        };
        self.repo.search_one(request).await
    }

    /// Builds the writes of a new project (Medplum's `createProject`): the Project, the
    /// owner's Practitioner profile and admin membership, and a default client with its own
    /// membership.
    pub(crate) fn prepare_project(
        &self,
        name: &str,
        owner: &User,
    ) -> ServiceResult<PreparedProject> {
        let project_id = uuid_v4(self.random());
        let practitioner_id = uuid_v4(self.random());
        let membership_id = uuid_v4(self.random());
        let context = WriteContext::system(Some(&project_id));

        // NOTE: Medplum also creates a "Default Patient Access Policy" and sets it as the
        // project's `defaultPatientAccessPolicy`, which opens the project to patient
        // self-registration. medgate leaves that decision to the project admin.
        let project = Project {
            id: project_id.clone(),
            name: Some(name.to_string()),
            owner: Some(owner.reference()),
            strict_mode: Some(true),
            ..Default::default()
        };
        let full_name = full_name(owner);
        let practitioner = practitioner_for(&practitioner_id, owner);
        let mut profile = Reference::new("Practitioner", &practitioner_id);
        if !full_name.is_empty() {
            profile = profile.with_display(full_name);
        }
        let membership = ProjectMembership {
            id: membership_id.clone(),
            project: project.reference(),
            user: owner.reference(),
            profile,
            admin: Some(true),
            ..Default::default()
        };

        // The default client's secret is not returned here, so an admin rotates it to get one.
        let mut client_fields = Map::new();
        client_fields.insert(
            "description".to_string(),
            Value::String(format!("Default client for {name}")),
        );
        let client = ClientApplication {
            name: Some(format!("{name} Default Client")),
            extra: client_fields,
            ..Default::default()
        };
        let client = self.prepare_client(client, &context)?;

        let mut writes = vec![
            WriteOp::Create(self.repo.prepare_create(project.to_json(), &context)?),
            WriteOp::Create(self.repo.prepare_create(practitioner, &context)?),
            WriteOp::Create(self.repo.prepare_create(membership.to_json(), &context)?),
        ];
        writes.extend(client.writes);
        Ok(PreparedProject {
            project_id,
            membership_id,
            client_id: client.client.id,
            writes,
        })
    }
}

/// A new project's ids and the writes that create it in one batch.
pub(crate) struct PreparedProject {
    pub(crate) project_id: String,
    pub(crate) membership_id: String,
    pub(crate) client_id: String,
    pub(crate) writes: Vec<WriteOp>,
}

/// Resolves the scope of a new user. A client implies its project, and an explicit
/// `projectId` must then be the same (Medplum's `Client and project do not match`).
fn resolve_registration(
    client: Option<&ClientApplication>,
    project_id: Option<&str>,
) -> ServiceResult<Registration> {
    let requested = project_id.filter(|id| !id.is_empty());
    let client_project = client
        .and_then(|client| client.meta.as_ref())
        .and_then(|meta| meta.project.clone());
    match (client.is_some(), client_project, requested) {
        (true, Some(client_project), Some(requested)) if requested != client_project => {
            Err(ServiceError::invalid("Client and project do not match"))
        }
        (true, None, Some(_)) => Err(ServiceError::invalid("Client and project do not match")),
        (_, Some(client_project), _) => Ok(Registration::InProject(client_project)),
        (_, None, Some("new")) => Ok(Registration::NewProject),
        (_, None, Some(requested)) if is_uuid(requested) => {
            Ok(Registration::InProject(requested.to_string()))
        }
        (_, None, Some(_)) => Err(ServiceError::invalid_field(
            "Invalid projectId",
            "projectId",
        )),
        (_, None, None) => Ok(Registration::Server),
    }
}

fn full_name(user: &User) -> String {
    [user.first_name.as_deref(), user.last_name.as_deref()]
        .into_iter()
        .flatten()
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Builds the owner's Practitioner profile from the User's name and email, as Medplum does.
fn practitioner_for(id: &str, user: &User) -> Value {
    let mut name = Map::new();
    if let Some(first_name) = user.first_name.as_deref().filter(|text| !text.is_empty()) {
        name.insert("given".to_string(), json!([first_name]));
    }
    if let Some(last_name) = user.last_name.as_deref().filter(|text| !text.is_empty()) {
        name.insert("family".to_string(), json!(last_name));
    }
    let mut practitioner = json!({"resourceType": "Practitioner", "id": id});
    if !name.is_empty() {
        practitioner["name"] = json!([name]);
    }
    if let Some(email) = &user.email {
        practitioner["telecom"] = json!([{"system": "email", "use": "work", "value": email}]);
    }
    practitioner
}

#[cfg(test)]
mod tests {
    use super::*;
    use medgate_fhir::resources::Meta;

    fn client_in(project_id: &str) -> ClientApplication {
        ClientApplication {
            meta: Some(Meta {
                project: Some(project_id.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn client_project_must_match_project_id() {
        let project_a = "00000000-0000-4000-8000-00000000000a";
        let project_b = "00000000-0000-4000-8000-00000000000b";
        let client = client_in(project_b);
        let error = resolve_registration(Some(&client), Some(project_a)).unwrap_err();
        assert_eq!(error.to_string(), "Client and project do not match");
        let error = resolve_registration(Some(&client), Some("new")).unwrap_err();
        assert_eq!(error.to_string(), "Client and project do not match");
        assert_eq!(
            resolve_registration(Some(&client), None).unwrap(),
            Registration::InProject(project_b.to_string())
        );
        assert_eq!(
            resolve_registration(Some(&client), Some(project_b)).unwrap(),
            Registration::InProject(project_b.to_string())
        );
    }

    #[test]
    fn project_id_without_client() {
        assert_eq!(
            resolve_registration(None, None).unwrap(),
            Registration::Server
        );
        assert_eq!(
            resolve_registration(None, Some("")).unwrap(),
            Registration::Server
        );
        assert_eq!(
            resolve_registration(None, Some("new")).unwrap(),
            Registration::NewProject
        );
        let error = resolve_registration(None, Some("xyz")).unwrap_err();
        assert_eq!(error.to_string(), "Invalid projectId");
    }

    #[test]
    fn remember_adds_offline_access() {
        assert_eq!(sign_in_scope(None, false), "openid");
        assert_eq!(sign_in_scope(Some("  "), false), "openid");
        assert_eq!(sign_in_scope(None, true), "openid offline_access");
        assert_eq!(
            sign_in_scope(Some("openid offline"), true),
            "openid offline"
        );
    }

    #[test]
    fn practitioner_copies_name_and_email() {
        let user = User {
            first_name: Some("Alice".into()),
            last_name: Some("Smith".into()),
            email: Some("alice@example.com".into()),
            ..Default::default()
        };
        let practitioner = practitioner_for("p1", &user);
        assert_eq!(
            practitioner["name"],
            json!([{"given": ["Alice"], "family": "Smith"}])
        );
        assert_eq!(practitioner["telecom"][0]["value"], "alice@example.com");
        assert_eq!(full_name(&user), "Alice Smith");
    }
}
