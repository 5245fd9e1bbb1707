//! The invite's membership: the template from the request, the project's default access
//! policy for the profile type, and Medplum's duplicate rules.

use medgate_fhir::Reference;
use medgate_fhir::resources::{Project, ProjectMembership, TypedResource, User};
use medgate_store::WriteOp;
use serde_json::{Map, Value, json};

use super::ValidInvite;
use crate::Services;
use crate::error::{ServiceError, ServiceResult};
use crate::fhir_rest::FhirCaller;
use crate::fhir_rest::access::default_access_policy;
use crate::repo::WriteContext;

impl Services {
    /// Builds the membership fields from the request: the deprecated top-level fields, then
    /// `membership` over them, then the project's default policy when none is set.
    pub(super) async fn membership_template(
        &self,
        caller: &FhirCaller,
        project: &Project,
        invite: &ValidInvite,
        patient: Option<&Reference>,
        apply_defaults: bool,
    ) -> ServiceResult<Map<String, Value>> {
        let request = &invite.request;
        let mut template = Map::new();
        if let Some(external_id) = &invite.external_id {
            template.insert("externalId".to_string(), json!(external_id));
        }
        if let Some(policy) = &request.access_policy {
            template.insert("accessPolicy".to_string(), json!(policy));
        }
        if let Some(access) = &request.access {
            template.insert("access".to_string(), json!(access));
        }
        if let Some(admin) = request.admin {
            template.insert("admin".to_string(), json!(admin));
        }
        template.insert("invitedBy".to_string(), json!(caller.auth.membership.user));
        for (key, value) in request.membership.iter().flatten() {
            // The server sets these; a template cannot choose them.
            if !matches!(
                key.as_str(),
                "resourceType" | "id" | "meta" | "project" | "user" | "profile"
            ) {
                template.insert(key.clone(), value.clone());
            }
        }

        // policies: each must exist in this project.
        for policy in policies_of(&template)? {
            self.check_policy_in_project(&policy, project).await?;
        }

        // defaults by profile type, when the request names no policy.
        if apply_defaults
            && !template.contains_key("accessPolicy")
            && !template.contains_key("access")
        {
            let project_json = project.to_json();
            if invite.resource_type == "RelatedPerson" {
                let default = project_json["defaultAccessPolicies"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|entry| entry["profileType"] == "RelatedPerson")
                    .map(|entry| entry["accessPolicy"].clone());
                if let (Some(policy), Some(patient)) = (default, patient) {
                    template.insert(
                        "access".to_string(),
                        json!([{"policy": policy, "parameter": [{"name": "patient", "valueReference": patient}]}]),
                    );
                }
            } else {
                let mut probe = template.clone();
                probe.insert(
                    "profile".to_string(),
                    json!({"reference": format!("{}/x", invite.resource_type)}),
                );
                if let Some(policy) = default_access_policy(&project_json, &probe) {
                    template.insert("accessPolicy".to_string(), policy);
                }
            }
        }
        Ok(template)
    }

    /// Returns the write that creates the membership, or updates `existing` (an upsert) with
    /// the template, keeping its id, project, user and profile. An upsert that names another
    /// profile is a conflict.
    pub(super) fn upsert_membership(
        &self,
        project: &Project,
        user: &User,
        existing: Option<ProjectMembership>,
        profile: &Reference,
        template: Map<String, Value>,
    ) -> ServiceResult<WriteOp> {
        let context = WriteContext::system(Some(&project.id));
        let Some(existing) = existing else {
            let mut membership = template;
            membership.insert("resourceType".to_string(), json!("ProjectMembership"));
            membership.insert("project".to_string(), json!(project.reference()));
            membership.insert("user".to_string(), json!(user.reference()));
            membership.insert("profile".to_string(), json!(profile));
            let membership = self
                .repo
                .prepare_create(Value::Object(membership), &context)?;
            return Ok(WriteOp::Create(membership));
        };

        if existing.profile.reference != profile.reference {
            return Err(ServiceError::Conflict(
                "User is already a member of this project with a different profile".to_string(),
            ));
        }
        let mut membership = existing.to_json();
        for (key, value) in template {
            membership[key] = value;
        }
        self.repo.prepare_update(membership, &context)
    }
}

/// Builds the conflict of an invite for a user who is already a member, naming the membership.
pub(super) fn duplicate_membership(existing: &ProjectMembership) -> ServiceError {
    ServiceError::Conflict(format!(
        "User is already a member of this project (ProjectMembership/{})",
        existing.id
    ))
}

/// Lists the policies a membership template names in `accessPolicy` and `access[].policy`.
fn policies_of(template: &Map<String, Value>) -> ServiceResult<Vec<Reference>> {
    let mut policies = Vec::new();
    let invalid = || {
        ServiceError::invalid_field("Invalid access policy reference", "membership.accessPolicy")
    };
    if let Some(policy) = template.get("accessPolicy") {
        policies.push(serde_json::from_value(policy.clone()).map_err(|_| invalid())?);
    }
    if let Some(access) = template.get("access") {
        let entries = access.as_array().ok_or_else(invalid)?;
        for entry in entries {
            let policy = entry.get("policy").ok_or_else(invalid)?;
            policies.push(serde_json::from_value(policy.clone()).map_err(|_| invalid())?);
        }
    }
    Ok(policies)
}
