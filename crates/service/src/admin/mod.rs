//! Medplum's project administration API (`/admin/projects/:projectId/...`): the project's
//! settings, its members, new clients and invites.
//!
//! Medplum ignores `:projectId` for everyone but super admins and acts on the caller's
//! current project. medgate requires the path to name a project the caller administers, so
//! a request never changes a project other than the one it names.

pub mod client;
pub mod invite;
pub mod members;
pub mod project_init;
pub mod update_email;

use chrono::Duration;
use medgate_fhir::resources::{Project, TypedResource, User};
use serde::Serialize;
use serde_json::{Map, Value, json};
use tracing::info;

use crate::Services;
use crate::clock::fhir_instant;
use crate::error::{ServiceError, ServiceResult};
use crate::fhir_rest::FhirCaller;
use crate::random::is_uuid;
use crate::random::{secret_hex, sha256_hex};
use crate::repo::WriteContext;
use crate::secret::Secret;
use crate::session::AuthContext;

/// `Project` fields that `POST …/settings`, `…/secrets` and `…/sites` replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectList {
    Setting,
    Secret,
    Site,
}

impl ProjectList {
    fn field(self) -> &'static str {
        match self {
            Self::Setting => "setting",
            Self::Secret => "secret",
            Self::Site => "site",
        }
    }
}

/// The body of `GET /admin/projects/:projectId`.
#[derive(Debug, Clone, Serialize)]
pub struct ProjectSummary {
    pub project: Map<String, Value>,
}

impl Services {
    /// Reads the project named in an admin path after checking that the caller administers
    /// it: a super admin administers every project, a project admin only the project of the
    /// membership they signed in with. Anyone else, or any other project, is `Forbidden`.
    pub async fn administered_project(
        &self,
        auth: &AuthContext,
        project_id: &str,
    ) -> ServiceResult<Project> {
        if auth.is_super_admin() {
            if !is_uuid(project_id) {
                return Err(ServiceError::NotFound);
            }
            return match self.repo.read(project_id).await {
                Err(ServiceError::Gone) => Err(ServiceError::NotFound),
                other => other,
            };
        }
        if !auth.is_project_admin() || auth.project_id() != project_id {
            return Err(ServiceError::Forbidden);
        }
        Ok(auth.project.clone())
    }

    /// `GET /admin/projects/:projectId`: the project's id, name, settings, secrets and sites.
    pub async fn admin_project_summary(
        &self,
        auth: &AuthContext,
        project_id: &str,
    ) -> ServiceResult<ProjectSummary> {
        let project = self.administered_project(auth, project_id).await?;
        let project = serde_json::to_value(&project).map_err(|error| {
            ServiceError::Internal(format!("project did not serialize: {error}"))
        })?;
        let mut summary = Map::new();
        for field in ["id", "name", "setting", "secret", "site"] {
            if let Some(value) = project.get(field) {
                summary.insert(field.to_string(), value.clone());
            }
        }
        Ok(ProjectSummary { project: summary })
    }

    /// `POST /admin/projects/:projectId/settings`, `…/secrets` and `…/sites`: replaces one
    /// list of the project. The update goes through the FHIR update of the caller, so the
    /// fields only super admins may change stay as they are.
    pub async fn replace_project_list(
        &self,
        caller: &FhirCaller,
        project_id: &str,
        list: ProjectList,
        body: Value,
    ) -> ServiceResult<Value> {
        let project = self.administered_project(&caller.auth, project_id).await?;
        check_project_list(list, &body)?;

        let mut resource = self.repo.store.read("Project", &project.id).await?;
        let Some(object) = resource.as_object_mut() else {
            return Err(ServiceError::Internal(
                "stored project is not an object".to_string(),
            ));
        };
        object.insert(list.field().to_string(), body);
        let updated = self
            .fhir_update(caller, "Project", &project.id, resource, None)
            .await?;
        info!(project_id = %project.id, field = list.field(), "replaced a project list");
        Ok(updated)
    }
}

impl Services {
    /// Builds a `UserSecurityRequest` (`invite`, `reset` or `verify-email`) and the link
    /// that redeems it, `<baseUrl><page>/<id>/<secret>`. The secret is stored only as its
    /// SHA-256 hash, so the link is the only copy.
    pub(crate) fn prepare_security_request(
        &self,
        request_type: &str,
        user: &User,
        project_id: Option<&str>,
        lifetime: Duration,
        page: &str,
    ) -> ServiceResult<(Value, Secret<String>)> {
        let secret = Secret::new(secret_hex(self.random(), 32));
        let request = json!({
            "resourceType": "UserSecurityRequest",
            "type": request_type,
            "user": user.reference(),
            "secretHash": sha256_hex(secret.expose()),
            "expiresAt": fhir_instant(self.now() + lifetime),
        });
        let request = self
            .repo
            .prepare_create(request, &WriteContext::system(project_id))?;
        let id = request["id"].as_str().unwrap_or_default();
        let link = self.config.url(&format!("{page}/{id}/{}", secret.expose()));
        Ok((request, Secret::new(link)))
    }
}

/// Finds the parameter `name` of a FHIR `Parameters` resource.
pub(crate) fn parameter<'a>(body: &'a Value, name: &str) -> Option<&'a Value> {
    body.get("parameter")?
        .as_array()?
        .iter()
        .find(|parameter| parameter.get("name").and_then(Value::as_str) == Some(name))
}

/// Checks a new `setting`, `secret` or `site` list: an array of objects that each have a
/// `name` (FHIR requires it on ProjectSetting and ProjectSite), and for a site its `domain`
/// list.
fn check_project_list(list: ProjectList, body: &Value) -> ServiceResult<()> {
    let Some(entries) = body.as_array() else {
        return Err(ServiceError::invalid(format!(
            "The request body must be a JSON array of Project.{} entries",
            list.field()
        )));
    };
    for (index, entry) in entries.iter().enumerate() {
        let expression = format!("{}[{index}]", list.field());
        let Some(entry) = entry.as_object() else {
            return Err(ServiceError::invalid_field(
                "Each entry must be a JSON object",
                expression,
            ));
        };
        if entry
            .get("name")
            .and_then(Value::as_str)
            .is_none_or(|name| name.trim().is_empty())
        {
            return Err(ServiceError::invalid_field(
                "Each entry must have a name",
                format!("{expression}.name"),
            ));
        }
        if list == ProjectList::Site
            && !entry
                .get("domain")
                .and_then(Value::as_array)
                .is_some_and(|domains| domains.iter().all(Value::is_string))
        {
            return Err(ServiceError::invalid_field(
                "A site must have a domain list",
                format!("{expression}.domain"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn project_lists_need_names() {
        assert!(
            check_project_list(
                ProjectList::Setting,
                &json!([{"name": "a", "valueString": "b"}])
            )
            .is_ok()
        );
        assert!(check_project_list(ProjectList::Setting, &json!({"name": "a"})).is_err());
        let error =
            check_project_list(ProjectList::Secret, &json!([{"valueString": "b"}])).unwrap_err();
        assert_eq!(error.to_string(), "Each entry must have a name");
        let error = check_project_list(ProjectList::Site, &json!([{"name": "web"}])).unwrap_err();
        assert_eq!(error.to_string(), "A site must have a domain list");
        assert!(
            check_project_list(
                ProjectList::Site,
                &json!([{"name": "web", "domain": ["example.com"]}])
            )
            .is_ok()
        );
    }
}
