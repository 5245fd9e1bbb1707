//! Resource-type classes, and the overlay that gives project admins their project's
//! administration resources (Medplum's `applyProjectAdminAccessPolicy`).

use medgate_fhir::resources::Project;
use serde_json::Value;

use super::criteria::Criteria;
use super::{EffectivePolicy, Interaction, PolicyEntry};

/// Server internals that only super admins reach: sign-in sessions, signing keys and the
/// email-domain configuration. They belong to no project.
pub const PROTECTED_TYPES: &[&str] = &["DomainConfiguration", "JsonWebKey", "Login"];

/// Administration resources. `*` never matches them, and only the admin overlay grants
/// them, so an ordinary member never reaches them even when a policy names them.
pub const PROJECT_ADMIN_TYPES: &[&str] = &[
    "PasswordChangeRequest",
    "Project",
    "ProjectMembership",
    "User",
    "UserSecurityRequest",
];

/// Types every policy may read unless it names them, so custom profiles and search
/// parameters of the project stay readable.
pub const DEFAULT_READ_ONLY_TYPES: &[&str] = &["SearchParameter", "StructureDefinition"];

pub fn is_protected_type(resource_type: &str) -> bool {
    PROTECTED_TYPES.contains(&resource_type)
}

pub fn is_project_admin_type(resource_type: &str) -> bool {
    PROJECT_ADMIN_TYPES.contains(&resource_type)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_string()).collect()
}

fn project_entry(criteria: &str) -> Result<PolicyEntry, String> {
    let criteria = Criteria::parse(criteria, "Project")?;
    criteria.filters("Project")?;
    Ok(PolicyEntry {
        criteria: vec![criteria],
        ..PolicyEntry::unrestricted("Project")
    })
}

/// The ids of the projects `Project.link` names.
fn linked_project_ids(project: &Project) -> Vec<String> {
    project
        .extra
        .get("link")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|link| link.get("project")?.get("reference")?.as_str())
        .filter_map(|reference| reference.strip_prefix("Project/"))
        .map(str::to_string)
        .collect()
}

/// Applies the overlay for the caller's role. Runs after SMART scopes, so a project admin
/// keeps the administration resources whatever scopes the login has, as in Medplum.
pub(super) fn apply_admin_overlay(
    policy: &mut EffectivePolicy,
    project: &Project,
    project_admin: bool,
) -> Result<(), String> {
    if project.is_super_admin() {
        for resource_type in PROJECT_ADMIN_TYPES {
            if !policy
                .entries
                .iter()
                .any(|entry| entry.resource_type == *resource_type)
            {
                policy
                    .entries
                    .push(PolicyEntry::unrestricted(resource_type));
            }
        }
        return Ok(());
    }

    policy
        .entries
        .retain(|entry| !is_project_admin_type(&entry.resource_type));
    if !project_admin {
        return Ok(());
    }

    // The own project: no delete, and the fields only super admins control stay unchanged
    // or hidden.
    let mut own = project_entry(&format!("Project?_id={}", project.id))?;
    own.interactions = Some(vec![
        Interaction::Read,
        Interaction::Vread,
        Interaction::Update,
        Interaction::History,
        Interaction::Create,
        Interaction::Search,
    ]);
    own.readonly_fields = strings(&["features", "link", "systemSetting"]);
    own.hidden_fields = strings(&["superAdmin", "systemSecret", "strictMode"]);
    policy.entries.push(own);

    let linked = linked_project_ids(project);
    if !linked.is_empty() {
        let mut entry = project_entry(&format!("Project?_id={}", linked.join(",")))?;
        entry.interactions = Some(Interaction::READ.to_vec());
        entry.hidden_fields = strings(&[
            "superAdmin",
            "setting",
            "systemSetting",
            "secret",
            "systemSecret",
            "strictMode",
        ]);
        policy.entries.push(entry);
    }

    policy.entries.push(PolicyEntry {
        readonly_fields: strings(&["project", "user"]),
        readonly_settable_on_create: true,
        ..PolicyEntry::unrestricted("ProjectMembership")
    });
    policy
        .entries
        .push(PolicyEntry::read_only("UserSecurityRequest"));
    policy.entries.push(PolicyEntry {
        hidden_fields: strings(&["passwordHash", "mfaSecret"]),
        readonly_fields: strings(&["email", "emailVerified", "mfaEnrolled", "project"]),
        readonly_settable_on_create: true,
        ..PolicyEntry::unrestricted("User")
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy_naming_admin_types() -> EffectivePolicy {
        EffectivePolicy {
            entries: vec![
                PolicyEntry::unrestricted("ProjectMembership"),
                PolicyEntry::unrestricted("User"),
                PolicyEntry::unrestricted("Patient"),
            ],
            ..Default::default()
        }
    }

    fn project(super_admin: bool) -> Project {
        Project {
            id: "p1".to_string(),
            super_admin: super_admin.then_some(true),
            ..Default::default()
        }
    }

    #[test]
    fn member_loses_admin_types() {
        let mut policy = policy_naming_admin_types();
        apply_admin_overlay(&mut policy, &project(false), false).unwrap();
        let types: Vec<_> = policy
            .entries
            .iter()
            .map(|e| e.resource_type.as_str())
            .collect();
        assert_eq!(types, ["Patient"]);
    }

    #[test]
    fn project_admin_gets_overlay_entries() {
        let mut policy = policy_naming_admin_types();
        apply_admin_overlay(&mut policy, &project(false), true).unwrap();
        let types: Vec<_> = policy
            .entries
            .iter()
            .map(|e| e.resource_type.as_str())
            .collect();
        assert_eq!(
            types,
            [
                "Patient",
                "Project",
                "ProjectMembership",
                "UserSecurityRequest",
                "User"
            ]
        );
        let own = &policy.entries[1];
        assert!(!own.allows("Project", Interaction::Delete));
        assert!(own.hidden_fields.contains(&"superAdmin".to_string()));
        assert_eq!(own.criteria[0].display(), "Project?_id=p1");
        assert!(!policy.entries[3].allows("UserSecurityRequest", Interaction::Update));
        assert!(
            policy.entries[4]
                .hidden_fields
                .contains(&"passwordHash".to_string())
        );
    }

    #[test]
    fn linked_projects_are_read_only() {
        let mut linked = project(false);
        linked.extra.insert(
            "link".to_string(),
            json!([{"project": {"reference": "Project/p2"}}, {"project": {"reference": "Project/p3"}}]),
        );
        let mut policy = EffectivePolicy::default();
        apply_admin_overlay(&mut policy, &linked, true).unwrap();
        let entry = &policy.entries[1];
        assert_eq!(entry.criteria[0].display(), "Project?_id=p2%2Cp3");
        assert!(!entry.allows("Project", Interaction::Update));
    }

    #[test]
    fn super_admin_gets_bare_admin_entries() {
        let mut policy = EffectivePolicy::default();
        apply_admin_overlay(&mut policy, &project(true), false).unwrap();
        assert_eq!(policy.entries.len(), PROJECT_ADMIN_TYPES.len());
        assert!(
            policy
                .entries
                .iter()
                .all(|entry| entry.interactions.is_none())
        );
    }

    #[test]
    fn wildcard_never_matches_admin_or_protected_types() {
        let entry = PolicyEntry::unrestricted("*");
        assert!(entry.allows("Patient", Interaction::Create));
        for resource_type in [
            "Project",
            "User",
            "ProjectMembership",
            "Login",
            "JsonWebKey",
        ] {
            assert!(
                !entry.allows(resource_type, Interaction::Read),
                "{resource_type}"
            );
        }
    }
}
