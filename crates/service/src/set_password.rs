//! Setting a password without knowing the old one: from an invite or reset link
//! (`POST /auth/setpassword`), by a project admin (`POST /admin/projects/setpassword`) or by a
//! super admin (`POST /admin/super/setpassword`). Also confirming an email address from a
//! verification link (`POST /auth/verifyemail`).
//!
//! Every new password revokes all of the user's logins in the same batch, so whoever held a
//! session with the old password loses it. Medplum's newest server does the same for links.

use medgate_fhir::resources::{TypedResource, User, UserSecurityRequest};
use medgate_fhir::search::SearchRequest;
use medgate_store::StoreError;
use tracing::{info, instrument, warn};

use crate::Services;
use crate::error::{ServiceError, ServiceResult};
use crate::login::is_valid_email;
use crate::password::check_new_password;
use crate::random::is_uuid;
use crate::repo::WriteContext;
use crate::secret::Secret;
use crate::security_request::SecurityRequestType;
use crate::session::AuthContext;

/// How often a password write is rebuilt when another request changed the user, one of its
/// logins or the link's request between our read and our write.
const WRITE_ATTEMPTS: usize = 3;

/// `POST /admin/super/setpassword`: the user is server-scoped unless `project_id` is given.
#[derive(Debug, Clone, Default)]
pub struct SuperAdminSetPassword {
    pub email: String,
    pub password: Secret<String>,
    pub project_id: Option<String>,
}

impl Services {
    /// Sets a password from an invite or reset link (`POST /auth/setpassword`). The link
    /// works once and until it expires; the user's email counts as verified afterwards.
    #[instrument(skip_all, fields(request_id = id))]
    pub async fn set_password_with_link(
        &self,
        id: &str,
        secret: &Secret<String>,
        password: &Secret<String>,
    ) -> ServiceResult<()> {
        // id, secret and password: Medplum's messages.
        if !is_uuid(id) {
            return Err(ServiceError::invalid_field("Invalid request ID", "id"));
        }
        if secret.is_empty() {
            return Err(ServiceError::invalid_field("Missing secret", "secret"));
        }
        if let Err(message) = check_new_password(password) {
            return Err(ServiceError::invalid_field(message, "password"));
        }

        // request: unused, of a password type, not expired, and this secret.
        // TODO: read Medplum's legacy `PasswordChangeRequest` resources too. Only a database
        // imported from an old Medplum has them, and their links are answered `Not found`.
        let request = self.read_security_request(id).await?;
        if request.is_used() {
            return Err(ServiceError::invalid("Already used"));
        }
        if request.request_type == SecurityRequestType::VerifyEmail.as_str() {
            return Err(ServiceError::invalid("Invalid request type"));
        }
        self.check_security_request(&request, secret)?;

        let user: User = self.repo.read_reference(&request.user).await?;
        let hash = self.passwords.hash(password).await?;
        self.write_new_password(user, hash, Some(request)).await
    }

    /// Marks the user's email verified from a verification link (`POST /auth/verifyemail`).
    // TODO: return the request's stored `redirectUri` as Medplum's newest server does. The
    // response is `All OK` without it, so an app that expects the redirect stays on its page.
    #[instrument(skip_all, fields(request_id = id))]
    pub async fn verify_email(&self, id: &str, secret: &Secret<String>) -> ServiceResult<()> {
        if !is_uuid(id) {
            return Err(ServiceError::invalid_field("Invalid request ID", "id"));
        }
        if secret.is_empty() {
            return Err(ServiceError::invalid_field("Missing secret", "secret"));
        }

        // request: a verification request, unused, not expired, and this secret.
        let mut request = self.read_security_request(id).await?;
        if request.request_type != SecurityRequestType::VerifyEmail.as_str() {
            return Err(ServiceError::invalid("Invalid user security request type"));
        }
        if request.is_used() {
            return Err(ServiceError::invalid("Already used"));
        }
        self.check_security_request(&request, secret)?;

        // The request is consumed and the user updated in one batch; a concurrent second use
        // of the link fails on the request's version.
        let mut user: User = self.repo.read_reference(&request.user).await?;
        user.email_verified = Some(true);
        request.used = Some(true);
        let system = WriteContext::system(None);
        let batch = vec![
            self.repo.prepare_update(request.to_json(), &system)?,
            self.repo.prepare_update(user.to_json(), &system)?,
        ];
        match self.repo.store.write(batch).await {
            Ok(()) => {
                info!(user_id = %user.id, "email address verified");
                Ok(())
            }
            Err(StoreError::VersionConflict) => Err(ServiceError::invalid("Already used")),
            Err(error) => Err(error.into()),
        }
    }

    /// Sets the password of a user scoped to the caller's project
    /// (`POST /admin/projects/setpassword`). Only project admins may, and only for their
    /// project's own users: a server-scoped user's password is theirs alone.
    #[instrument(skip_all, fields(project_id = %auth.project_id()))]
    pub async fn admin_set_password(
        &self,
        auth: &AuthContext,
        email: &str,
        password: &Secret<String>,
    ) -> ServiceResult<()> {
        if !auth.is_project_admin() && !auth.is_super_admin() {
            return Err(ServiceError::Forbidden);
        }
        let email = check_set_password_input(email, password)?;

        let request = SearchRequest::new("User")
            .filter("email", &email)
            .filter("project", &format!("Project/{}", auth.project_id()));
        let user: User = self
            .repo
            .search_one(request)
            .await?
            .ok_or_else(|| ServiceError::invalid("User not found"))?;
        let hash = self.passwords.hash(password).await?;
        self.write_new_password(user, hash, None).await
    }

    /// Sets any user's password (`POST /admin/super/setpassword`); super admins only.
    #[instrument(skip_all, fields(project_id = request.project_id.as_deref()))]
    pub async fn super_admin_set_password(
        &self,
        auth: &AuthContext,
        request: &SuperAdminSetPassword,
    ) -> ServiceResult<()> {
        if !auth.is_super_admin() {
            return Err(ServiceError::Forbidden);
        }
        let email = check_set_password_input(&request.email, &request.password)?;

        // user: project-scoped in the given project, otherwise server-scoped.
        let search = SearchRequest::new("User").filter("email", &email);
        let search = match request.project_id.as_deref().filter(|id| !id.is_empty()) {
            Some(project_id) => search.filter("project", &format!("Project/{project_id}")),
            None => search.missing("project", true),
        };
        let user: User = self
            .repo
            .search_one(search)
            .await?
            .ok_or_else(|| ServiceError::invalid("User not found"))?;
        let hash = self.passwords.hash(&request.password).await?;
        self.write_new_password(user, hash, None).await
    }

    /// Stores a new password hash, revokes every login of the user and, for a link, consumes
    /// its request, all in one batch. A link's request already used by a concurrent call ends
    /// the attempt with `Already used`; any other conflict rebuilds the batch.
    async fn write_new_password(
        &self,
        mut user: User,
        hash: String,
        mut link: Option<UserSecurityRequest>,
    ) -> ServiceResult<()> {
        for _ in 0..WRITE_ATTEMPTS {
            user.password_hash = Some(hash.clone());
            if link.is_some() {
                user.email_verified = Some(true);
            }
            let (mut batch, revoked) = self.password_update_batch(&user, None).await?;
            if let Some(request) = &mut link {
                request.used = Some(true);
                let write = self
                    .repo
                    .prepare_update(request.to_json(), &WriteContext::system(None))?;
                batch.insert(0, write);
            }
            match self.repo.store.write(batch).await {
                Ok(()) => {
                    info!(
                        user_id = %user.id,
                        request_id = link.as_ref().map(|request| request.id.as_str()),
                        revoked_logins = revoked,
                        "password set; logins revoked"
                    );
                    return Ok(());
                }
                Err(StoreError::VersionConflict) => {
                    if let Some(request) = &link {
                        let current = self.read_security_request(&request.id).await?;
                        if current.is_used() {
                            warn!(request_id = %request.id, "link used by a concurrent request");
                            return Err(ServiceError::invalid("Already used"));
                        }
                        link = Some(current);
                    }
                    user = self.repo.read(&user.id).await?;
                }
                Err(error) => return Err(error.into()),
            }
        }
        Err(ServiceError::Internal(format!(
            "setting the password of user {} failed: {WRITE_ATTEMPTS} attempts conflicted with other writes",
            user.id
        )))
    }
}

/// Checks the email and new password of the admin routes; returns the lower-cased email.
fn check_set_password_input(email: &str, password: &Secret<String>) -> ServiceResult<String> {
    let email = email.trim().to_lowercase();
    if !is_valid_email(&email) {
        return Err(ServiceError::invalid_field(
            "Valid email address is required",
            "email",
        ));
    }
    if let Err(message) = check_new_password(password) {
        return Err(ServiceError::invalid_field(message, "password"));
    }
    Ok(email)
}
