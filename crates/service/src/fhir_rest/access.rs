//! Who may do what in the FHIR API: the caller's computed access (`crate::access`) applied
//! to the REST interactions.
//!
//! - A type or interaction the policy does not allow at all is 403 (`forbidden`), decided
//!   before anything is read, so it reveals nothing about which ids exist.
//! - A resource of another project, or one outside the policy's criteria, is 404, as if it
//!   did not exist.
//! - Super admins (members of a project with `superAdmin: true`) reach every resource of
//!   every project, protected types included.

use medgate_fhir::search::Restriction;
use serde_json::{Map, Value, json};

use crate::Services;
pub(super) use crate::access::{Interaction, PROTECTED_TYPES};
use crate::error::{ServiceError, ServiceResult};
use crate::session::AuthContext;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    SuperAdmin,
    ProjectAdmin,
    Member,
}

impl Role {
    pub(super) fn of(auth: &AuthContext) -> Self {
        if auth.is_super_admin() {
            Self::SuperAdmin
        } else if auth.is_project_admin() {
            Self::ProjectAdmin
        } else {
            Self::Member
        }
    }
}

/// Checks whether the caller may perform `interaction` on `resource_type` at all, before any
/// resource is read.
pub(super) fn check_interaction(
    auth: &AuthContext,
    resource_type: &str,
    interaction: Interaction,
) -> ServiceResult<()> {
    // Protected types are created by the server only, because a key or a sign-in session
    // written by hand would lack the secrets that a REST write can never set.
    if PROTECTED_TYPES.contains(&resource_type) && interaction == Interaction::Create {
        return Err(ServiceError::Forbidden);
    }
    auth.access.check_type(resource_type, interaction)
}

/// Checks that a resource read from the store belongs to the caller's project. For anyone
/// but a super admin, a resource of another project is not found.
pub(super) fn check_project(
    auth: &AuthContext,
    resource_type: &str,
    resource: &Value,
) -> ServiceResult<()> {
    if Role::of(auth) == Role::SuperAdmin {
        return Ok(());
    }
    if owning_project(resource_type, resource) == Some(auth.project_id()) {
        Ok(())
    } else {
        Err(ServiceError::NotFound)
    }
}

/// Checks that a stored resource of the caller's project is within the policy's reach for
/// `interaction`; a resource outside it is not found, like one of another project.
pub(super) fn check_reach(
    auth: &AuthContext,
    resource: &Value,
    interaction: Interaction,
) -> ServiceResult<()> {
    if auth.access.can(resource, interaction)? {
        Ok(())
    } else {
        Err(ServiceError::NotFound)
    }
}

/// Checks that the caller can see a resource read from the store: its project, then the
/// policy. Use it for every resource a response reveals that no search restriction chose,
/// such as the targets of `_include` or the entries of a batch read.
pub fn check_visible(
    auth: &AuthContext,
    resource: &Value,
    interaction: Interaction,
) -> ServiceResult<()> {
    let resource_type = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    check_project(auth, resource_type, resource)?;
    check_reach(auth, resource, interaction)
}

/// Returns the project a resource belongs to: a Project belongs to itself, any other
/// resource to its `meta.project`.
pub(super) fn owning_project<'a>(resource_type: &str, resource: &'a Value) -> Option<&'a str> {
    if resource_type == "Project" {
        return resource.get("id").and_then(Value::as_str);
    }
    resource
        .get("meta")
        .and_then(|meta| meta.get("project"))
        .and_then(Value::as_str)
}

/// Where a search of one type looks and which stored resources it may return.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchLimits {
    /// The project whose resources are searched; `None` searches every project.
    pub project_id: Option<String>,
    /// The policy's condition, for the store to apply (`SearchScope::restriction`).
    pub restriction: Option<Restriction>,
}

/// Computes the limits of a search of `resource_type` for the caller, or 403 when the
/// policy does not allow `interaction` on the type at all. Every search that returns
/// resources, including `_include` and `_revinclude` targets, goes through these limits.
pub fn search_limits(
    auth: &AuthContext,
    resource_type: &str,
    interaction: Interaction,
) -> ServiceResult<SearchLimits> {
    check_interaction(auth, resource_type, interaction)?;
    if Role::of(auth) == Role::SuperAdmin {
        return Ok(SearchLimits {
            project_id: None,
            restriction: None,
        });
    }
    let restriction = auth.access.restriction(resource_type, interaction)?;
    // A Project belongs to itself, not to a project of its own, so its search is not limited
    // to a project: the admin overlay's criteria name the projects the caller may see.
    let project_id = if resource_type == "Project" {
        None
    } else {
        Some(auth.project_id().to_string())
    };
    Ok(SearchLimits {
        project_id,
        restriction,
    })
}

/// Checks that the caller may write (update or delete) a stored resource they can see;
/// 403 otherwise, because the resource itself was already shown to exist.
pub(super) fn check_writable(
    auth: &AuthContext,
    stored: &Value,
    interaction: Interaction,
) -> ServiceResult<()> {
    if auth.access.can(stored, interaction)? {
        Ok(())
    } else {
        Err(ServiceError::Forbidden)
    }
}

fn reference_value(reference: &str) -> Value {
    json!({ "reference": reference })
}

/// Sets the `meta` fields that come from the caller's access: `onBehalfOf`, the profile the
/// request acts for, and `accounts` (with Medplum's older single `account`), which on create
/// is the policy's `compartment` and on update the stored accounts. A super admin's create
/// gets no policy compartment, as their policy sets no limits.
pub(super) fn stamp_access_meta(
    auth: &AuthContext,
    resource: &mut Map<String, Value>,
    stored: Option<&Value>,
) {
    let accounts: Vec<Value> = match stored {
        Some(stored) => stored
            .get("meta")
            .and_then(|meta| meta.get("accounts"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        None if !auth.access.is_super_admin() => auth
            .access
            .policy
            .compartment
            .iter()
            .filter(|compartment| compartment.parts().is_some())
            .map(|compartment| reference_value(&compartment.reference))
            .collect(),
        None => Vec::new(),
    };

    let meta = resource
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    if let Some(target) = &auth.on_behalf_of {
        meta.insert(
            "onBehalfOf".to_string(),
            reference_value(&target.profile.reference),
        );
    }
    if let Some(first) = accounts.first() {
        meta.insert("account".to_string(), first.clone());
        meta.insert("accounts".to_string(), Value::Array(accounts.clone()));
    }
}

/// Applies the caller's policy to a version about to be written: hidden and read-only
/// fields keep their stored values, the access `meta` is stamped, and the result must be
/// within the policy's reach and pass its write constraints (403 otherwise). `stored` is the
/// current version on an update.
pub(super) fn apply_write_policy(
    auth: &AuthContext,
    stored: Option<&Value>,
    resource: Map<String, Value>,
    project_id: Option<&str>,
    interaction: Interaction,
) -> ServiceResult<Map<String, Value>> {
    let mut value = Value::Object(resource);
    auth.access.protect_fields(stored, &mut value)?;
    let Value::Object(mut resource) = value else {
        return Err(ServiceError::Internal(
            "a resource stopped being a JSON object".to_string(),
        ));
    };
    stamp_access_meta(auth, &mut resource, stored);

    // The check runs on the version as it will be stored, `meta.project` included.
    let mut written = Value::Object(resource);
    if let (Some(project_id), Some(meta)) = (project_id, written.get_mut("meta")) {
        meta["project"] = Value::String(project_id.to_string());
    }
    auth.access.check_write(stored, &written, interaction)?;
    let Value::Object(resource) = written else {
        return Err(ServiceError::Internal(
            "a resource stopped being a JSON object".to_string(),
        ));
    };
    Ok(resource)
}

/// The profile types of `Project.defaultAccessPolicies`, for a membership.
fn default_policy_profile_type(membership: &Map<String, Value>) -> Option<String> {
    if membership.get("admin").and_then(Value::as_bool) == Some(true) {
        return Some("Admin".to_string());
    }
    membership
        .get("profile")
        .and_then(|profile| profile.get("reference"))
        .and_then(Value::as_str)
        .and_then(|reference| reference.split_once('/'))
        .map(|(resource_type, _)| resource_type.to_string())
}

/// Picks the project's default policy for a new membership: the entry of
/// `Project.defaultAccessPolicies` (also read under the name `defaultAccessPolicy`) for the
/// membership's profile type, with `Admin` for admins, or, for a Patient, the legacy
/// `defaultPatientAccessPolicy`.
pub(crate) fn default_access_policy(
    project: &Value,
    membership: &Map<String, Value>,
) -> Option<Value> {
    let profile_type = default_policy_profile_type(membership)?;
    let defaults = project
        .get("defaultAccessPolicies")
        .or_else(|| project.get("defaultAccessPolicy"))
        .and_then(Value::as_array);
    let by_type = |wanted: &str| {
        defaults
            .into_iter()
            .flatten()
            .find(|entry| entry.get("profileType").and_then(Value::as_str) == Some(wanted))
            .and_then(|entry| entry.get("accessPolicy"))
            .cloned()
    };
    if let Some(policy) = by_type(&profile_type) {
        return Some(policy);
    }
    let profile_resource_type = membership
        .get("profile")
        .and_then(|profile| profile.get("reference"))
        .and_then(Value::as_str)
        .and_then(|reference| reference.split_once('/'))
        .map(|(resource_type, _)| resource_type);
    if profile_type == "Admin"
        && let Some(resource_type) = profile_resource_type
        && let Some(policy) = by_type(resource_type)
    {
        return Some(policy);
    }
    if profile_resource_type == Some("Patient") {
        return project.get("defaultPatientAccessPolicy").cloned();
    }
    None
}

impl Services {
    /// Gives a membership created without any policy the project's default for its profile
    /// type, so new members never fall back to the open legacy policy by accident.
    pub(super) async fn apply_default_access_policy(
        &self,
        membership: &mut Map<String, Value>,
    ) -> ServiceResult<()> {
        if membership.contains_key("accessPolicy") || membership.contains_key("access") {
            return Ok(());
        }
        let Some(project_id) = membership
            .get("project")
            .and_then(|project| project.get("reference"))
            .and_then(Value::as_str)
            .and_then(|reference| reference.strip_prefix("Project/"))
            .map(str::to_string)
        else {
            return Ok(());
        };
        let Some(project) = self.read_existing("Project", &project_id).await? else {
            return Ok(());
        };
        if let Some(policy) = default_access_policy(&project, membership) {
            membership.insert("accessPolicy".to_string(), policy);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn membership(profile: &str, admin: bool) -> Map<String, Value> {
        json!({"resourceType": "ProjectMembership", "profile": {"reference": profile},
            "admin": admin})
        .as_object()
        .cloned()
        .unwrap()
    }

    #[test]
    fn default_policy_by_profile_type() {
        let project = json!({"defaultAccessPolicies": [
            {"profileType": "Practitioner", "accessPolicy": {"reference": "AccessPolicy/pr"}},
            {"profileType": "Admin", "accessPolicy": {"reference": "AccessPolicy/ad"}}
        ], "defaultPatientAccessPolicy": {"reference": "AccessPolicy/pt"}});
        assert_eq!(
            default_access_policy(&project, &membership("Practitioner/1", false)),
            Some(json!({"reference": "AccessPolicy/pr"}))
        );
        assert_eq!(
            default_access_policy(&project, &membership("Practitioner/1", true)),
            Some(json!({"reference": "AccessPolicy/ad"}))
        );
        assert_eq!(
            default_access_policy(&project, &membership("Patient/1", false)),
            Some(json!({"reference": "AccessPolicy/pt"}))
        );
        assert_eq!(
            default_access_policy(&project, &membership("RelatedPerson/1", false)),
            None
        );
    }

    #[test]
    fn singular_field_name_is_read_too() {
        let project = json!({"defaultAccessPolicy": [
            {"profileType": "Patient", "accessPolicy": {"reference": "AccessPolicy/pt"}}
        ]});
        assert_eq!(
            default_access_policy(&project, &membership("Patient/1", false)),
            Some(json!({"reference": "AccessPolicy/pt"}))
        );
    }
}
