//! Access rules of the FHIR API, until access policies are enforced.
//!
//! - A super admin (a member of a project with `superAdmin: true`) reaches every resource of
//!   every project.
//! - A project admin (`ProjectMembership.admin`) reaches the resources of their own project.
//!   Resources of other projects look missing (404), never forbidden, so that a caller
//!   cannot probe which ids exist elsewhere.
//! - Every other member may only read their own profile and their own membership, which
//!   `MedplumClient.getProfile` needs.
//! - `Login` and `JsonWebKey` belong to no project and only super admins reach them.

use serde_json::Value;

use crate::error::{ServiceError, ServiceResult};
use crate::session::AuthContext;

/// Resource types that hold server internals: sign-in sessions and signing keys.
pub(super) const PROTECTED_TYPES: &[&str] = &["JsonWebKey", "Login"];

/// FHIR REST interactions (FHIR R4, "RESTful API"); `vread` and `history` count as reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Interaction {
    Create,
    Read,
    Search,
    Update,
    Delete,
}

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
    let role = Role::of(auth);

    // protected types: super admins read, update and delete them, but only the server
    // creates them, because a key or a sign-in session written by hand would lack the
    // secrets that a REST write can never set.
    // NOTE: a JsonWebKey update or delete changes a process's in-memory signing keys only
    // when that process next reloads them.
    if PROTECTED_TYPES.contains(&resource_type) {
        return match (role, interaction) {
            (Role::SuperAdmin, Interaction::Create) => Err(ServiceError::Forbidden),
            (Role::SuperAdmin, _) => Ok(()),
            _ => Err(ServiceError::Forbidden),
        };
    }

    match role {
        Role::SuperAdmin => Ok(()),
        // A project admin manages their own project but neither creates nor deletes projects.
        Role::ProjectAdmin
            if resource_type == "Project"
                && matches!(interaction, Interaction::Create | Interaction::Delete) =>
        {
            Err(ServiceError::Forbidden)
        }
        Role::ProjectAdmin => Ok(()),
        Role::Member if interaction == Interaction::Read => Ok(()),
        Role::Member => Err(ServiceError::Forbidden),
    }
}

/// Checks that a plain member reads their own profile or their own membership. It runs
/// before the resource is read, so the 403 reveals nothing about whether the id exists.
pub(super) fn check_member_target(
    auth: &AuthContext,
    resource_type: &str,
    id: &str,
) -> ServiceResult<()> {
    if Role::of(auth) != Role::Member {
        return Ok(());
    }
    let own_profile = auth.membership.profile.parts() == Some((resource_type, id));
    let own_membership = resource_type == "ProjectMembership" && id == auth.membership.id;
    if own_profile || own_membership {
        Ok(())
    } else {
        Err(ServiceError::Forbidden)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use medgate_fhir::Reference;
    use medgate_fhir::resources::{Login, Project, ProjectMembership};
    use serde_json::json;

    fn caller(super_admin: bool, admin: bool) -> AuthContext {
        AuthContext {
            login: Login::default(),
            membership: ProjectMembership {
                id: "m1".to_string(),
                project: Reference::new("Project", "p1"),
                user: Reference::new("User", "u1"),
                profile: Reference::new("Practitioner", "pr1"),
                admin: admin.then_some(true),
                ..Default::default()
            },
            project: Project {
                id: "p1".to_string(),
                super_admin: super_admin.then_some(true),
                ..Default::default()
            },
            claims: json!({}),
        }
    }

    #[test]
    fn protected_types_only_for_super_admins() {
        let admin = caller(false, true);
        let super_admin = caller(true, true);
        for interaction in [Interaction::Read, Interaction::Search, Interaction::Update] {
            assert!(check_interaction(&admin, "Login", interaction).is_err());
            assert!(check_interaction(&super_admin, "Login", interaction).is_ok());
        }
        assert!(check_interaction(&super_admin, "JsonWebKey", Interaction::Create).is_err());
    }

    #[test]
    fn project_admin_cannot_create_or_delete_projects() {
        let admin = caller(false, true);
        assert!(check_interaction(&admin, "Project", Interaction::Create).is_err());
        assert!(check_interaction(&admin, "Project", Interaction::Delete).is_err());
        assert!(check_interaction(&admin, "Project", Interaction::Update).is_ok());
        assert!(check_interaction(&admin, "Patient", Interaction::Delete).is_ok());
    }

    #[test]
    fn member_reads_only_own_profile_and_membership() {
        let member = caller(false, false);
        assert!(check_interaction(&member, "Patient", Interaction::Search).is_err());
        assert!(check_member_target(&member, "Practitioner", "pr1").is_ok());
        assert!(check_member_target(&member, "ProjectMembership", "m1").is_ok());
        assert!(check_member_target(&member, "Practitioner", "pr2").is_err());
        assert!(check_member_target(&member, "Patient", "pr1").is_err());
    }

    #[test]
    fn other_project_is_not_found() {
        let admin = caller(false, true);
        let own = json!({"resourceType": "Patient", "meta": {"project": "p1"}});
        let other = json!({"resourceType": "Patient", "meta": {"project": "p2"}});
        assert!(check_project(&admin, "Patient", &own).is_ok());
        assert!(matches!(
            check_project(&admin, "Patient", &other),
            Err(ServiceError::NotFound)
        ));
        let project = json!({"resourceType": "Project", "id": "p1"});
        assert!(check_project(&admin, "Project", &project).is_ok());
    }
}
