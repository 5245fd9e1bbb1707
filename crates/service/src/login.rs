//! Password sign-in and the steps after it, as Medplum's `/auth/login`, `/auth/profile`,
//! `/auth/scope` and `GET /auth/login/:login` run them. medgate's own sign-in page drives the
//! same functions.
//!
//! A Login starts with the user authenticated and, when the user has several memberships,
//! no profile. Once a membership is chosen the login is complete and gets an authorization
//! code. The code is random, stored only as a SHA-256 hash, valid for a few minutes, and
//! replaced whenever a new one is handed out.

use medgate_fhir::Reference;
use medgate_fhir::resources::{
    ClientApplication, Login, Project, ProjectMembership, TypedResource, User,
};
use medgate_fhir::search::SearchRequest;
use serde::Serialize;
use tracing::{info, instrument, warn};

use crate::Services;
use crate::clock::fhir_instant;
use crate::error::{ServiceError, ServiceResult};
use crate::mfa::MfaPrompt;
use crate::password::Verification;
use crate::pkce;
use crate::random::{is_uuid, secret_hex, sha256_hex, uuid_v4};
use crate::repo::WriteContext;
use crate::secret::Secret;
use crate::tokens::sign_in_scope;

/// Medplum's sign-in request (`POST /auth/login`).
#[derive(Debug, Clone, Default)]
pub struct LoginRequest {
    pub email: String,
    pub password: Secret<String>,
    pub scope: Option<String>,
    pub nonce: Option<String>,
    pub client_id: Option<String>,
    pub project_id: Option<String>,
    pub resource_type: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    /// The redirect URI of an authorization request; the code will be bound to it.
    pub redirect_uri: Option<String>,
    /// Medplum's deprecated flag that requests a refresh token.
    pub remember: bool,
    pub remote_address: Option<String>,
    pub user_agent: Option<String>,
}

/// One entry of the profile chooser.
#[derive(Debug, Clone, Serialize)]
pub struct MembershipChoice {
    pub id: String,
    pub project: Reference,
    pub profile: Reference,
}

/// Medplum's "login result": the login id plus a code, the memberships to choose from, or
/// the MFA step still to do.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoginResponse {
    pub login: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<Secret<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memberships: Option<Vec<MembershipChoice>>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub mfa: Option<MfaPrompt>,
}

impl Serialize for Secret<String> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.expose())
    }
}

/// A membership chosen for a login, with the code the login now has.
pub struct CompletedLogin {
    pub login: Login,
    pub code: Secret<String>,
}

/// Checks the shape of an email address: one `@`, something before it, a dotted domain
/// after it, no spaces. Deliverability is checked by sending mail, not here.
pub fn is_valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && email.len() <= 254
        && !email.chars().any(char::is_whitespace)
}

fn invalid(message: &str) -> ServiceError {
    ServiceError::invalid(message)
}

impl Services {
    /// Signs a user in with email and password (`POST /auth/login`).
    #[instrument(skip_all, fields(client_id = request.client_id.as_deref().unwrap_or_default()))]
    pub async fn password_login(&self, request: LoginRequest) -> ServiceResult<LoginResponse> {
        let email = request.email.trim().to_lowercase();

        // email: Medplum's validator message.
        if !is_valid_email(&email) {
            return Err(ServiceError::invalid_field(
                "Valid email address is required",
                "email",
            ));
        }

        // password: at least 5 characters, for accounts imported from old Medplum servers.
        if request.password.expose().chars().count() < 5 {
            return Err(ServiceError::invalid_field(
                "Invalid password, must be at least 5 characters",
                "password",
            ));
        }

        let client = self.client_for_login(request.client_id.as_deref()).await?;
        let project_id = resolve_project(client.as_ref(), request.project_id.as_deref())?;
        self.check_login_pkce(
            client.as_ref(),
            request.code_challenge.as_deref(),
            request.code_challenge_method.as_deref(),
        )?;

        let user = self
            .find_user_by_email(&email, project_id.as_deref())
            .await?;

        // lockout: a known account spends one reserved attempt on this check, and a locked
        // one is rejected before its password is checked. The count is keyed by user, so typed
        // addresses add no rows. An unknown email runs a write of the same kind instead, a
        // delete that matches nothing, so both cases take about the same time.
        match &user {
            Some(user) => self.reserve_sign_in_attempt(&user.reference()).await?,
            None => {
                let nobody = Reference::new("User", &uuid_v4(self.random()));
                self.clear_sign_in_attempts(&nobody).await?;
            }
        }

        let hash = user.as_ref().and_then(|user| user.password_hash.clone());
        let verification = self
            .passwords
            .verify(&request.password, hash.as_deref())
            .await?;
        let (user, needs_rehash) = match (user, verification) {
            (Some(user), Verification::Valid { needs_rehash }) if hash.is_some() => {
                (user, needs_rehash)
            }
            _ => {
                // An unknown account and a wrong password get the same response in the same time.
                warn!("password sign-in failed");
                return Err(ServiceError::invalid_field(
                    "Email or password is invalid",
                    "password",
                ));
            }
        };
        // A user with a second factor keeps this attempt counted until the code is right, so
        // a caller who knows only the password cannot reset the count of MFA guesses.
        if crate::mfa::enrolled_methods(&user).is_empty() {
            self.clear_sign_in_attempts(&user.reference()).await?;
        }
        let user = if needs_rehash {
            self.rehash_password(user, &request.password).await
        } else {
            user
        };

        let login = Login {
            user: user.reference(),
            client: client.as_ref().map(TypedResource::reference),
            project: project_id
                .as_deref()
                .map(|id| Reference::new("Project", id)),
            profile_type: request.resource_type.clone(),
            scope: sign_in_scope(request.scope.as_deref(), request.remember),
            nonce: Some(
                request
                    .nonce
                    .clone()
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
            redirect_uri: request.redirect_uri.clone(),
            remote_address: request.remote_address.clone(),
            user_agent: request.user_agent.clone(),
            ..Default::default()
        };
        let login = self
            .repo
            .create(&login, &WriteContext::system(None))
            .await?;
        info!(login_id = %login.id, user_id = %user.id, "user signed in with password");
        self.login_result(login).await
    }

    /// Picks the next step of a login whose user is authenticated: MFA, project creation, a
    /// single membership, or a choice.
    pub(crate) async fn login_result(&self, login: Login) -> ServiceResult<LoginResponse> {
        if let Some(prompt) = self.mfa_prompt(&login).await? {
            return Ok(LoginResponse {
                login: login.id,
                mfa: Some(prompt),
                ..Default::default()
            });
        }
        if login
            .project
            .as_ref()
            .map(|project| project.reference.as_str())
            == Some("Project/new")
        {
            return Ok(LoginResponse {
                login: login.id,
                code: None,
                memberships: None,
                mfa: None,
            });
        }
        let memberships = self.memberships_for_login(&login).await?;
        match memberships.as_slice() {
            [] => Err(invalid("User not found")),
            [only] => {
                let completed = self.set_membership(login, &only.id).await?;
                Ok(LoginResponse {
                    login: completed.login.id,
                    code: Some(completed.code),
                    memberships: None,
                    mfa: None,
                })
            }
            _ => Ok(LoginResponse {
                login: login.id,
                code: None,
                memberships: Some(self.membership_choices(&memberships).await),
                mfa: None,
            }),
        }
    }

    /// Lists the memberships a login may choose from: the user's, restricted to the login's
    /// project and profile type when it has them.
    pub async fn memberships_for_login(
        &self,
        login: &Login,
    ) -> ServiceResult<Vec<ProjectMembership>> {
        let mut request = SearchRequest::new("ProjectMembership")
            .filter("user", &login.user.reference)
            .count(100);
        if let Some(project) = &login.project {
            request = request.filter("project", &project.reference);
        }
        let memberships: Vec<ProjectMembership> = self.repo.search(&request, None).await?;
        Ok(memberships
            .into_iter()
            .filter(|membership| match &login.profile_type {
                Some(profile_type) => {
                    membership.profile.resource_type() == Some(profile_type.as_str())
                }
                None => true,
            })
            .collect())
    }

    /// Finds a user by email with Medplum's scoping rule. Inside a project, a user scoped to
    /// that project wins. Otherwise it is the server-scoped user with that email.
    pub async fn find_user_by_email(
        &self,
        email: &str,
        project_id: Option<&str>,
    ) -> ServiceResult<Option<User>> {
        let email = email.to_lowercase();
        if let Some(project_id) = project_id.filter(|id| *id != "new") {
            let request = SearchRequest::new("User")
                .filter("email", &email)
                .filter("project", &format!("Project/{project_id}"));
            if let Some(user) = self.repo.search_one(request).await? {
                return Ok(Some(user));
            }
        }
        let request = SearchRequest::new("User")
            .filter("email", &email)
            .missing("project", true);
        self.repo.search_one(request).await
    }

    async fn rehash_password(&self, mut user: User, password: &Secret<String>) -> User {
        let result = async {
            user.password_hash = Some(self.passwords.hash(password).await?);
            self.repo.update(&user, &WriteContext::system(None)).await
        }
        .await;
        match result {
            Ok(updated) => {
                info!(user_id = %updated.id, "replaced bcrypt password hash with argon2id");
                updated
            }
            Err(error) => {
                // The sign-in still succeeds; the next one tries again.
                warn!(user_id = %user.id, %error, "rehashing password failed");
                user
            }
        }
    }

    pub(crate) async fn client_for_login(
        &self,
        client_id: Option<&str>,
    ) -> ServiceResult<Option<ClientApplication>> {
        let Some(client_id) = client_id.filter(|id| !id.is_empty()) else {
            return Ok(None);
        };
        if !is_uuid(client_id) {
            return Err(ServiceError::NotFound);
        }
        match self.repo.read::<ClientApplication>(client_id).await {
            Ok(client) => Ok(Some(client)),
            Err(ServiceError::Gone) => Err(ServiceError::NotFound),
            Err(error) => Err(error),
        }
    }

    /// Checks PKCE parameters at sign-in and registration. Clients with `pkceOptional` skip
    /// the check, as in Medplum.
    pub(crate) fn check_login_pkce(
        &self,
        client: Option<&ClientApplication>,
        challenge: Option<&str>,
        method: Option<&str>,
    ) -> ServiceResult<()> {
        if client.is_some_and(|client| client.pkce_optional == Some(true)) {
            return Ok(());
        }
        pkce::check_parameters(challenge, method, self.config.require_pkce_s256).map_err(invalid)
    }

    /// Binds a login to one of the user's memberships and gives it a fresh code. Medplum's
    /// checks, in its order.
    pub async fn set_membership(
        &self,
        login: Login,
        membership_id: &str,
    ) -> ServiceResult<CompletedLogin> {
        // login state: a revoked, redeemed or already bound login cannot change profile.
        if login.is_revoked() {
            return Err(invalid("Login revoked"));
        }
        if login.is_granted() {
            return Err(invalid("Login granted"));
        }
        if login.membership.is_some() {
            return Err(invalid("Login profile already set"));
        }

        // membership: must exist, belong to the login's user and project, and be active.
        let membership: ProjectMembership = match self.repo.read(membership_id).await {
            Ok(membership) => membership,
            Err(ServiceError::NotFound | ServiceError::Gone) => {
                return Err(invalid("Profile not found"));
            }
            Err(error) => return Err(error),
        };
        if membership.user.reference != login.user.reference {
            return Err(invalid("Invalid profile"));
        }
        if let Some(project) = &login.project
            && project.reference != membership.project.reference
        {
            return Err(invalid("Invalid profile"));
        }
        if !membership.is_active() {
            return Err(invalid("Profile not active"));
        }

        // project features: Google sign-in may be mandatory for a project.
        let project: Project = self.repo.read_reference(&membership.project).await?;
        if project
            .features
            .iter()
            .any(|feature| feature == "google-auth-required")
            && login.auth_method != "google"
        {
            return Err(invalid("Google authentication is required"));
        }

        // access policy: it must be usable, and its IP rules must allow the client.
        if !self
            .check_membership_ip(&membership, login.remote_address.as_deref())
            .await?
        {
            warn!(login_id = %login.id, membership_id = %membership.id, "sign-in from a blocked IP address");
            return Err(invalid("IP address not allowed"));
        }

        let mut login = login;
        login.membership = Some(membership.reference());
        let code = self.assign_code(&mut login).await?;
        let login = self.update_login(&login).await?;
        info!(login_id = %login.id, membership_id = %membership.id, "login bound to membership");
        Ok(CompletedLogin { login, code })
    }

    /// Gives a login a new authorization code, replacing any earlier one. Every code is
    /// minted here, so this is where a login with MFA pending is stopped.
    async fn assign_code(&self, login: &mut Login) -> ServiceResult<Secret<String>> {
        self.ensure_mfa_complete(login).await?;
        let code = Secret::new(secret_hex(self.random(), 16));
        login.code_hash = Some(sha256_hex(code.expose()));
        login.code_expires_at = Some((self.now() + self.config.code_lifetime).timestamp());
        login.granted = None;
        Ok(code)
    }

    /// Writes a login only if no other request changed it since it was read, and otherwise
    /// fails with a 400 that tells the client to retry.
    async fn update_login(&self, login: &Login) -> ServiceResult<Login> {
        match self.repo.update(login, &WriteContext::system(None)).await {
            Err(ServiceError::PreconditionFailed) => {
                Err(invalid("Login was changed by another request"))
            }
            other => other,
        }
    }

    /// Reads a login named by a client; a malformed or unknown id is `Not found`.
    pub async fn read_login(&self, login_id: &str) -> ServiceResult<Login> {
        if !is_uuid(login_id) {
            return Err(ServiceError::NotFound);
        }
        match self.repo.read::<Login>(login_id).await {
            Err(ServiceError::Gone) => Err(ServiceError::NotFound),
            other => other,
        }
    }

    /// `POST /auth/profile`: chooses the membership of a login with several.
    #[instrument(skip_all, fields(login_id = login_id))]
    pub async fn choose_profile(
        &self,
        login_id: &str,
        membership_id: &str,
    ) -> ServiceResult<LoginResponse> {
        let login = self.read_login(login_id).await?;
        let completed = self.set_membership(login, membership_id).await?;
        Ok(LoginResponse {
            login: completed.login.id,
            code: Some(completed.code),
            memberships: None,
            mfa: None,
        })
    }

    /// `POST /auth/scope`: narrows the scope of a complete login and issues a new code.
    #[instrument(skip_all, fields(login_id = login_id))]
    pub async fn narrow_scope(&self, login_id: &str, scope: &str) -> ServiceResult<LoginResponse> {
        let mut login = self.read_login(login_id).await?;
        if login.is_revoked() {
            return Err(invalid("Login revoked"));
        }
        if login.is_granted() {
            return Err(invalid("Login granted"));
        }
        if login.membership.is_none() {
            return Err(invalid("Login profile not set"));
        }

        // scope: only a subset of what the user signed in with (RFC 6749 §6 for refresh
        // applies the same rule).
        let granted: Vec<&str> = login.scope.split_whitespace().collect();
        if scope
            .split_whitespace()
            .any(|item| !granted.contains(&item))
        {
            return Err(invalid("Invalid scope"));
        }
        login.scope = scope.split_whitespace().collect::<Vec<_>>().join(" ");
        let code = self.assign_code(&mut login).await?;
        let login = self.update_login(&login).await?;
        Ok(LoginResponse {
            login: login.id,
            code: Some(code),
            memberships: None,
            mfa: None,
        })
    }

    /// `GET /auth/login/:login`: reports the state of a partial login. A complete login gets a
    /// new code, which replaces the previous one.
    pub async fn login_status(&self, login_id: &str) -> ServiceResult<LoginResponse> {
        if !is_uuid(login_id) {
            return Err(ServiceError::invalid_field("Login ID is required", "login"));
        }
        let mut login = self.read_login(login_id).await?;
        if login.is_granted() {
            return Err(invalid("Login already granted"));
        }
        if login.is_revoked() {
            return Err(invalid("Login revoked"));
        }
        if let Some(prompt) = self.mfa_prompt(&login).await? {
            return Ok(LoginResponse {
                login: login.id,
                mfa: Some(prompt),
                ..Default::default()
            });
        }
        if login.membership.is_some() {
            let code = self.assign_code(&mut login).await?;
            let login = self.update_login(&login).await?;
            return Ok(LoginResponse {
                login: login.id,
                code: Some(code),
                memberships: None,
                mfa: None,
            });
        }
        let memberships = self.memberships_for_login(&login).await?;
        Ok(LoginResponse {
            login: login.id,
            code: None,
            memberships: Some(self.membership_choices(&memberships).await),
            mfa: None,
        })
    }

    /// Describes memberships for a chooser, with the project's name and the profile's name as
    /// `display` where the references have none, so people can tell the entries apart.
    async fn membership_choices(&self, memberships: &[ProjectMembership]) -> Vec<MembershipChoice> {
        let mut choices = Vec::with_capacity(memberships.len());
        for membership in memberships {
            let mut project = membership.project.clone();
            if project.display.is_none()
                && let Ok(found) = self.repo.read_reference::<Project>(&project).await
            {
                project.display = found.name;
            }
            let mut profile = membership.profile.clone();
            if profile.display.is_none()
                && let Some((resource_type, id)) = profile.parts()
                && let Ok(resource) = self.repo.store.read(resource_type, id).await
            {
                profile.display = display_name(&resource);
            }
            choices.push(MembershipChoice {
                id: membership.id.clone(),
                project,
                profile,
            });
        }
        choices
    }

    /// Marks a login revoked; every token issued from it stops working.
    pub async fn revoke_login(&self, mut login: Login) -> ServiceResult<()> {
        if login.is_revoked() {
            return Ok(());
        }
        login.revoked = Some(true);
        // A concurrent change to the login must not undo the revocation: retry on conflict.
        for _ in 0..10 {
            match self.repo.update(&login, &WriteContext::system(None)).await {
                Ok(_) => {
                    info!(login_id = %login.id, "login revoked");
                    return Ok(());
                }
                Err(ServiceError::PreconditionFailed) => {
                    login = self.repo.read(&login.id).await?;
                    if login.is_revoked() {
                        return Ok(());
                    }
                    login.revoked = Some(true);
                }
                Err(error) => return Err(error),
            }
        }
        Err(ServiceError::Internal(format!(
            "could not revoke login {} after retries",
            login.id
        )))
    }
}

/// Formats the first `HumanName` of a profile resource (or a client's `name`) for display.
fn display_name(resource: &serde_json::Value) -> Option<String> {
    if let Some(name) = resource.get("name").and_then(serde_json::Value::as_str) {
        return Some(name.to_string());
    }
    let name = resource.get("name")?.get(0)?;
    if let Some(text) = name.get("text").and_then(serde_json::Value::as_str) {
        return Some(text.to_string());
    }
    let mut parts: Vec<&str> = name
        .get("given")
        .and_then(serde_json::Value::as_array)
        .map(|given| given.iter().filter_map(serde_json::Value::as_str).collect())
        .unwrap_or_default();
    if let Some(family) = name.get("family").and_then(serde_json::Value::as_str) {
        parts.push(family);
    }
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// The project a login is restricted to: the client's project, which an explicit
/// `projectId` must agree with, or the explicit `projectId` alone.
fn resolve_project(
    client: Option<&ClientApplication>,
    project_id: Option<&str>,
) -> ServiceResult<Option<String>> {
    let project_id = project_id.filter(|id| !id.is_empty());
    let client_project = client
        .and_then(|client| client.meta.as_ref())
        .and_then(|meta| meta.project.clone());
    match (client_project, project_id) {
        // `new` starts a project creation, which a client bound to a project cannot do.
        (None, Some("new")) => Ok(Some("new".to_string())),
        (Some(client_project), Some(requested)) if requested != client_project => {
            Err(invalid("Invalid projectId"))
        }
        (Some(client_project), _) => Ok(Some(client_project)),
        (None, Some(requested)) if is_uuid(requested) => Ok(Some(requested.to_string())),
        (None, Some(_)) => Err(invalid("Invalid projectId")),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names() {
        let practitioner =
            serde_json::json!({"name": [{"given": ["Alice", "B."], "family": "Smith"}]});
        assert_eq!(
            display_name(&practitioner).as_deref(),
            Some("Alice B. Smith")
        );
        let client = serde_json::json!({"name": "Chart viewer"});
        assert_eq!(display_name(&client).as_deref(), Some("Chart viewer"));
        assert_eq!(display_name(&serde_json::json!({})), None);
    }

    #[test]
    fn email_shapes() {
        for good in ["a@b.co", "alice.smith+x@example.com"] {
            assert!(is_valid_email(good), "{good}");
        }
        for bad in ["", "xyz", "a@b", "@b.co", "a b@c.de", "a@.co", "a@b.co."] {
            assert!(!is_valid_email(bad), "{bad}");
        }
    }

    #[test]
    fn client_project_wins_and_must_agree() {
        let client = ClientApplication {
            meta: Some(medgate_fhir::resources::Meta {
                project: Some("p1".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            resolve_project(Some(&client), None).unwrap(),
            Some("p1".into())
        );
        assert!(
            resolve_project(Some(&client), Some("00000000-0000-4000-8000-000000000000")).is_err()
        );
        assert_eq!(
            resolve_project(None, Some("new")).unwrap(),
            Some("new".into())
        );
    }
}
