//! `POST /admin/projects/:projectId/members/:membershipId/mfa/reset`: a project admin removes
//! one factor of a member who lost it. No MFA code is needed, and the last factor of a user
//! who must have MFA may go too, because the user then enrolls again at the next sign-in.

use std::collections::BTreeMap;

use medgate_fhir::resources::{Project, ProjectMembership, TypedResource, User};
use tracing::{info, instrument};

use super::email_code::user_name;
use super::{MfaMethod, enrolled_methods, set_enrolled_methods, totp};
use crate::Services;
use crate::email::{EmailKind, EmailRequest};
use crate::error::{ServiceError, ServiceResult};
use crate::random::is_uuid;
use crate::repo::WriteContext;
use crate::session::AuthContext;

/// The request body: the factor to reset, `totp` when absent.
#[derive(Debug, Clone, Default)]
pub struct MfaResetRequest {
    pub method: Option<String>,
}

impl Services {
    #[instrument(skip_all, fields(project_id = project_id, membership_id = membership_id))]
    pub async fn reset_member_mfa(
        &self,
        auth: &AuthContext,
        project_id: &str,
        membership_id: &str,
        request: &MfaResetRequest,
    ) -> ServiceResult<()> {
        // method: Medplum's validation message.
        let method = match request.method.as_deref() {
            None => MfaMethod::Totp,
            Some(text) => MfaMethod::parse(text).ok_or_else(|| {
                ServiceError::invalid_field(r#"Method must be "totp" or "email""#, "method")
            })?,
        };

        // caller: an admin of this very project, or a super admin.
        let project = self.administered_project(auth, project_id).await?;

        // membership: one of this project's.
        if !is_uuid(membership_id) {
            return Err(ServiceError::NotFound);
        }
        let membership: ProjectMembership = match self.repo.read(membership_id).await {
            Ok(membership) => membership,
            Err(ServiceError::Gone) => return Err(ServiceError::NotFound),
            Err(error) => return Err(error),
        };
        if membership.project.reference != project.reference().reference {
            return Err(ServiceError::Forbidden);
        }

        // user: enrolled in the method.
        let mut user: User = match self.repo.read_reference(&membership.user).await {
            Ok(user) => user,
            Err(ServiceError::NotFound | ServiceError::Gone) => {
                return Err(ServiceError::invalid("User not found"));
            }
            Err(error) => return Err(error),
        };
        let enrolled = enrolled_methods(&user);
        if !enrolled.contains(&method) {
            return Err(ServiceError::invalid(format!(
                "User is not enrolled in MFA method: {}",
                method.as_str()
            )));
        }

        let remaining: Vec<MfaMethod> = enrolled.into_iter().filter(|m| *m != method).collect();
        set_enrolled_methods(&mut user, &remaining);
        if method == MfaMethod::Totp {
            user.mfa_secret = Some(totp::generate_secret(self.random()));
        }
        let user_project = user.meta.as_ref().and_then(|meta| meta.project.clone());
        let mut batch = vec![self.repo.prepare_update(
            user.to_json(),
            &WriteContext::system(user_project.as_deref()),
        )?];
        if let Some(email) = &user.email {
            batch.push(self.mfa_reset_email(&project, &user, email)?);
        }
        self.repo.store.write(batch).await?;
        info!(user_id = %user.id, method = method.as_str(), "MFA factor reset by a project admin");
        Ok(())
    }

    /// Builds the outbox write of the notice that an admin reset one of the user's factors.
    /// It uses the templates of the project whose admin made the reset.
    fn mfa_reset_email(
        &self,
        project: &Project,
        user: &User,
        to: &str,
    ) -> ServiceResult<medgate_store::WriteOp> {
        let mut values = BTreeMap::new();
        values.insert("name".to_string(), user_name(user));
        if let Some(name) = &project.name {
            values.insert("projectName".to_string(), name.clone());
        }
        self.queue_email(&EmailRequest {
            kind: EmailKind::MfaReset,
            project_id: Some(project.id.clone()),
            to: to.to_string(),
            values,
        })
    }
}
