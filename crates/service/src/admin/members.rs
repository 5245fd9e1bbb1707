//! `GET`, `POST` and `DELETE /admin/projects/:projectId/members/:membershipId`.

use medgate_fhir::resources::{Project, ProjectMembership, TypedResource, User};
use medgate_fhir::search::SearchRequest;
use serde_json::Value;
use tracing::info;

use crate::Services;
use crate::error::{ServiceError, ServiceResult};
use crate::fhir_rest::FhirCaller;
use crate::fhir_rest::access::default_access_policy;
use crate::random::is_uuid;

impl Services {
    /// Reads a membership of the administered project. A membership of another project is
    /// `Forbidden`, as in Medplum.
    async fn project_member(
        &self,
        caller: &FhirCaller,
        project_id: &str,
        membership_id: &str,
    ) -> ServiceResult<(Project, ProjectMembership)> {
        let project = self.administered_project(&caller.auth, project_id).await?;
        if !is_uuid(membership_id) {
            return Err(ServiceError::NotFound);
        }
        let membership: ProjectMembership = self.repo.read(membership_id).await?;
        if membership.project.reference != project.reference().reference {
            return Err(ServiceError::Forbidden);
        }
        Ok((project, membership))
    }

    /// `GET /admin/projects/:projectId/members/:membershipId`.
    pub async fn admin_read_member(
        &self,
        caller: &FhirCaller,
        project_id: &str,
        membership_id: &str,
    ) -> ServiceResult<Value> {
        let (_, membership) = self
            .project_member(caller, project_id, membership_id)
            .await?;
        Ok(caller.present(membership.to_json()))
    }

    /// `POST /admin/projects/:projectId/members/:membershipId`: replaces a membership. The
    /// body must be that membership (`resourceType` and `id`), otherwise `Forbidden` as in
    /// Medplum. When the `admin` flag changes and the membership has the project's default
    /// policy for its old role, it gets the default for its new role.
    pub async fn admin_update_member(
        &self,
        caller: &FhirCaller,
        project_id: &str,
        membership_id: &str,
        body: Value,
    ) -> ServiceResult<Value> {
        let (project, stored) = self
            .project_member(caller, project_id, membership_id)
            .await?;
        if body.get("resourceType").and_then(Value::as_str) != Some("ProjectMembership")
            || body.get("id").and_then(Value::as_str) != Some(membership_id)
        {
            return Err(ServiceError::Forbidden);
        }
        let mut body = body;
        let Some(updated) = body.as_object_mut() else {
            return Err(ServiceError::Forbidden);
        };

        // role change: swap the default policies of the Practitioner and Admin roles, but
        // never a policy the admin chose.
        let now_admin = updated.get("admin").and_then(Value::as_bool) == Some(true);
        if now_admin != stored.is_admin() {
            let project = project.to_json();
            let stored_map = stored.to_json().as_object().cloned().unwrap_or_default();
            let old_default = default_access_policy(&project, &stored_map);
            let requested_policy = updated.get("accessPolicy").cloned();
            if old_default.is_some() && requested_policy == old_default {
                match default_access_policy(&project, updated) {
                    Some(policy) => {
                        updated.insert("accessPolicy".to_string(), policy);
                    }
                    None => {
                        updated.remove("accessPolicy");
                    }
                }
            }
        }

        let membership = self
            .fhir_update(caller, "ProjectMembership", membership_id, body, None)
            .await?;
        info!(membership_id, project_id, "updated a project membership");
        Ok(membership)
    }

    /// `DELETE /admin/projects/:projectId/members/:membershipId`. The owner's membership
    /// cannot be deleted. A user scoped to this project with no other membership is deleted
    /// together with it, in one batch, because it could never sign in again.
    pub async fn admin_delete_member(
        &self,
        caller: &FhirCaller,
        project_id: &str,
        membership_id: &str,
    ) -> ServiceResult<()> {
        let (project, membership) = self
            .project_member(caller, project_id, membership_id)
            .await?;
        if project
            .owner
            .as_ref()
            .is_some_and(|owner| owner.reference == membership.user.reference)
        {
            return Err(ServiceError::invalid(
                "Cannot delete the owner of the project",
            ));
        }

        let mut batch = vec![self.delete_op("ProjectMembership", &membership.id)];
        if let Some(user) = self.orphaned_project_user(&project, &membership).await? {
            batch.push(self.delete_op("User", &user.id));
        }
        let deletes_user = batch.len() > 1;
        self.repo.store.write(batch).await?;
        info!(
            membership_id,
            project_id, deletes_user, "deleted a project membership"
        );
        Ok(())
    }

    /// Returns the membership's user when it is scoped to `project` and this is its only
    /// membership.
    async fn orphaned_project_user(
        &self,
        project: &Project,
        membership: &ProjectMembership,
    ) -> ServiceResult<Option<User>> {
        if membership.user.resource_type() != Some("User") {
            return Ok(None);
        }
        let user: User = match self.repo.read_reference(&membership.user).await {
            Ok(user) => user,
            Err(ServiceError::NotFound | ServiceError::Gone) => return Ok(None),
            Err(error) => return Err(error),
        };
        if user
            .project
            .as_ref()
            .map(|reference| reference.reference.as_str())
            != Some(project.reference().reference.as_str())
        {
            return Ok(None);
        }
        let request = SearchRequest::new("ProjectMembership")
            .filter("user", &membership.user.reference)
            .count(2);
        let memberships: Vec<ProjectMembership> = self.repo.search(&request, None).await?;
        let others = memberships.iter().any(|other| other.id != membership.id);
        Ok((!others).then_some(user))
    }
}
