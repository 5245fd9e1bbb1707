//! Open patient registration (`POST /auth/newpatient`): a user who signed up inside a project
//! with `POST /auth/newuser` becomes a Patient member of it. A project opts in by naming a
//! default access policy for patients, which every membership created here receives.

use medgate_fhir::Reference;
use medgate_fhir::resources::{Project, ProjectMembership, TypedResource, User};
use medgate_fhir::search::SearchRequest;
use medgate_store::WriteOp;
use serde_json::Value;
use tracing::{info, instrument};

use crate::Services;
use crate::error::{ServiceError, ServiceResult};
use crate::login::LoginResponse;
use crate::random::{is_uuid, uuid_v4};
use crate::registration::{check_login_without_membership, profile_for};
use crate::repo::WriteContext;

/// The access a self-registered patient gets in a project.
#[derive(Debug, Clone, PartialEq)]
pub enum PatientAccess {
    /// One policy, for `ProjectMembership.accessPolicy`.
    Policy(Value),
    /// Parameterized policies, for `ProjectMembership.access`.
    Access(Value),
}

/// Finds a project's default access for patients, in Medplum's order: the `Patient` entry of
/// `defaultAccessPolicies` (`{profileType, accessPolicy}`), the `Patient` row of
/// `defaultAccessPolicy` (`{resourceType, accessPolicy | access[]}`, the shape Medplum's
/// open-registration guide shows), then the legacy `defaultPatientAccessPolicy`. `None` means
/// the project does not allow open registration.
pub fn default_patient_access(project: &Project) -> Option<PatientAccess> {
    let entries = |field: &str, type_key: &'static str| {
        project
            .extra
            .get(field)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(move |entry| entry.get(type_key).and_then(Value::as_str) == Some("Patient"))
    };

    if let Some(policy) = entries("defaultAccessPolicies", "profileType").find_map(|entry| {
        entry
            .get("accessPolicy")
            .filter(|policy| policy.is_object())
    }) {
        return Some(PatientAccess::Policy(policy.clone()));
    }
    for entry in entries("defaultAccessPolicy", "resourceType") {
        if let Some(policy) = entry
            .get("accessPolicy")
            .filter(|policy| policy.is_object())
        {
            return Some(PatientAccess::Policy(policy.clone()));
        }
        if let Some(access) = entry
            .get("access")
            .filter(|access| access.as_array().is_some_and(|list| !list.is_empty()))
        {
            return Some(PatientAccess::Access(access.clone()));
        }
    }
    project
        .extra
        .get("defaultPatientAccessPolicy")
        .filter(|policy| policy.is_object())
        .map(|policy| PatientAccess::Policy(policy.clone()))
}

impl Services {
    /// Makes the user of a login without a membership a Patient member of `project_id` and
    /// binds the login to that membership (`POST /auth/newpatient`).
    #[instrument(skip_all, fields(login_id = login_id, project_id = project_id))]
    pub async fn register_patient(
        &self,
        login_id: &str,
        project_id: &str,
    ) -> ServiceResult<LoginResponse> {
        // login and projectId: both required, with Medplum's messages.
        if login_id.is_empty() {
            return Err(ServiceError::invalid_field("Missing login", "login"));
        }
        if project_id.is_empty() {
            return Err(ServiceError::invalid_field(
                "Project ID is required",
                "projectId",
            ));
        }
        if !is_uuid(project_id) {
            return Err(ServiceError::invalid_field(
                "Invalid projectId",
                "projectId",
            ));
        }

        // registration switch: the server can turn self-registration off entirely.
        if !self.config.register_enabled {
            return Err(ServiceError::invalid("Registration is disabled"));
        }

        // login state: an unused login whose user has no profile yet.
        let login = self.read_login(login_id).await?;
        check_login_without_membership(&login)?;
        let project_reference = Reference::new("Project", project_id);
        if login
            .project
            .as_ref()
            .is_some_and(|project| project.reference != project_reference.reference)
        {
            return Err(ServiceError::invalid(
                "Login is restricted to another project",
            ));
        }

        // user: scoped to this very project. Medplum only checks that the user is
        // project-scoped, which lets a user of one project join any other open project.
        let user: User = self.repo.read_reference(&login.user).await?;
        if user.project.as_ref().map(|project| &project.reference)
            != Some(&project_reference.reference)
        {
            return Err(ServiceError::invalid("User must be scoped to the project"));
        }
        self.check_mfa_satisfied(&user, &login)?;

        // project: must allow open registration.
        let project: Project = self.repo.read(project_id).await?;
        let Some(access) = default_patient_access(&project) else {
            return Err(ServiceError::invalid(
                "Project does not allow open registration",
            ));
        };

        // membership: one per user and project; a second sign-up would add a second patient.
        let existing = SearchRequest::new("ProjectMembership")
            .filter("user", &user.reference().reference)
            .filter("project", &project_reference.reference);
        if self
            .repo
            .search_one::<ProjectMembership>(existing)
            .await?
            .is_some()
        {
            return Err(ServiceError::Conflict(
                "User is already a member of this project".to_string(),
            ));
        }

        // policy: checked before anything is written, so a project whose default policy is
        // unusable gets no half-registered patient.
        let (membership, writes) = self.prepare_patient_membership(&user, &project, access)?;
        self.membership_policy(&membership).await?;
        self.repo.store.write(writes).await?;
        let membership_id = membership.id;
        info!(user_id = %user.id, membership_id, "registered a patient");

        // If binding fails, the membership still exists and the patient can sign in.
        let completed = self.set_membership(login, &membership_id).await?;
        Ok(LoginResponse {
            login: completed.login.id,
            code: Some(completed.code),
            memberships: None,
            mfa: None,
        })
    }

    /// Builds the Patient profile and its membership, and the batch that writes both.
    fn prepare_patient_membership(
        &self,
        user: &User,
        project: &Project,
        access: PatientAccess,
    ) -> ServiceResult<(ProjectMembership, Vec<WriteOp>)> {
        let context = WriteContext::system(Some(&project.id));
        let patient_id = uuid_v4(self.random());
        let patient = self
            .repo
            .prepare_create(profile_for("Patient", &patient_id, user, None), &context)?;

        let mut membership = ProjectMembership {
            id: uuid_v4(self.random()),
            project: project.reference(),
            user: user.reference(),
            profile: Reference::new("Patient", &patient_id),
            ..Default::default()
        };
        match access {
            PatientAccess::Policy(policy) => {
                membership.access_policy =
                    Some(serde_json::from_value(policy).map_err(|error| {
                        ServiceError::Internal(format!(
                            "project {} has an invalid default patient access policy: {error}",
                            project.id
                        ))
                    })?);
            }
            PatientAccess::Access(access) => {
                membership.extra.insert("access".to_string(), access);
            }
        }
        let value = self.repo.prepare_create(membership.to_json(), &context)?;
        let writes = vec![WriteOp::Create(patient), WriteOp::Create(value)];
        Ok((membership, writes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn project(extra: Value) -> Project {
        Project {
            id: "p1".into(),
            extra: extra.as_object().cloned().unwrap_or_default(),
            ..Default::default()
        }
    }

    #[test]
    fn default_access_sources_in_order() {
        let policy = |id: &str| json!({"reference": format!("AccessPolicy/{id}")});
        assert_eq!(default_patient_access(&project(json!({}))), None);
        assert_eq!(
            default_patient_access(&project(
                json!({"defaultPatientAccessPolicy": policy("legacy")})
            )),
            Some(PatientAccess::Policy(policy("legacy")))
        );
        assert_eq!(
            default_patient_access(&project(json!({
                "defaultPatientAccessPolicy": policy("legacy"),
                "defaultAccessPolicies": [
                    {"profileType": "Practitioner", "accessPolicy": policy("staff")},
                    {"profileType": "Patient", "accessPolicy": policy("patients")},
                ],
            }))),
            Some(PatientAccess::Policy(policy("patients")))
        );
        let access = json!([{"policy": policy("own"), "parameter": []}]);
        assert_eq!(
            default_patient_access(&project(json!({
                "defaultAccessPolicy": [{"resourceType": "Patient", "access": access}],
            }))),
            Some(PatientAccess::Access(access))
        );
        assert_eq!(
            default_patient_access(&project(json!({
                "defaultAccessPolicies": [{"profileType": "Practitioner", "accessPolicy": policy("staff")}],
            }))),
            None
        );
    }

    #[test]
    fn patient_copies_name_and_email() {
        let user = User {
            first_name: Some("Pat".into()),
            last_name: Some("Lee".into()),
            email: Some("pat@example.com".into()),
            ..Default::default()
        };
        let patient = profile_for("Patient", "x", &user, None);
        assert_eq!(
            patient["name"],
            json!([{"given": ["Pat"], "family": "Lee"}])
        );
        assert_eq!(
            patient["telecom"],
            json!([{"system": "email", "value": "pat@example.com"}])
        );
    }
}
