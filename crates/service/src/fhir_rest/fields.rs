//! Fields that a FHIR response must not show and a FHIR write must not set: secrets and their
//! hashes, the fields only super admins control, and the `meta` fields the server assigns.

use serde_json::{Map, Value};

use super::access::Role;

/// Secrets and their hashes, per resource type. They never leave the server, whatever the
/// caller's role, and no REST write can set them. Medplum's clear-text field names
/// (`secret`, `code`, `refreshSecret`, …) are listed too, so that resources imported from
/// Medplum do not show them either.
const SECRET_FIELDS: &[(&str, &[&str])] = &[
    (
        "ClientApplication",
        &[
            "secret",
            "retiringSecret",
            "secretHash",
            "retiringSecretHash",
        ],
    ),
    // The private members of an RSA or EC JWK (RFC 7518 §6.3.2 and §6.2.2).
    (
        "JsonWebKey",
        &["privateKeyPkcs8", "d", "p", "q", "dp", "dq", "qi"],
    ),
    (
        "Login",
        &[
            "code",
            "cookie",
            "refreshSecret",
            "codeHash",
            "cookieHash",
            "refreshSecretHash",
            "previousRefreshSecretHash",
            "refreshRotationSalt",
        ],
    ),
    ("User", &["passwordHash", "mfaSecret"]),
    ("UserSecurityRequest", &["secret", "secretHash"]),
];

/// Fields only super admins may change. Another caller's create drops them and their update
/// keeps the stored values, so a project admin cannot, for example, make their project a
/// super-admin project or mark an email address as verified.
const SUPER_ADMIN_WRITE_FIELDS: &[(&str, &[&str])] = &[
    (
        "Project",
        &[
            "superAdmin",
            "strictMode",
            "features",
            "link",
            "systemSetting",
            "systemSecret",
        ],
    ),
    ("User", &["emailVerified", "mfaEnrolled"]),
];

/// Fields only super admins may see, as in Medplum's project-admin access policy.
const SUPER_ADMIN_READ_FIELDS: &[(&str, &[&str])] =
    &[("Project", &["superAdmin", "strictMode", "systemSecret"])];

/// `meta` fields the server assigns on every write; a request body cannot set them.
const SERVER_META_FIELDS: &[&str] = &[
    "versionId",
    "lastUpdated",
    "project",
    "author",
    "onBehalfOf",
    "compartment",
    "account",
    "accounts",
];

/// `meta` fields a response shows only in Medplum's extended mode (`X-Medplum: extended`).
const EXTENDED_META_FIELDS: &[&str] = &["project", "author", "compartment", "account", "accounts"];

fn fields_of(
    table: &[(&str, &'static [&'static str])],
    resource_type: &str,
) -> &'static [&'static str] {
    table
        .iter()
        .find(|(name, _)| *name == resource_type)
        .map(|(_, fields)| *fields)
        .unwrap_or_default()
}

fn resource_type_of(resource: &Value) -> &str {
    resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Removes every secret and secret hash from a resource. Every FHIR response passes through
/// here, through [`present`].
pub fn strip_secret_fields(resource: &mut Value) {
    let fields = fields_of(SECRET_FIELDS, resource_type_of(resource));
    if let Some(object) = resource.as_object_mut() {
        for field in fields {
            object.remove(*field);
        }
    }
}

/// Shapes a stored resource for a response: no secrets, no super-admin fields for other
/// callers, and Medplum's extended `meta` only when the request asked for it.
pub(super) fn present(mut resource: Value, role: Role, extended: bool) -> Value {
    strip_secret_fields(&mut resource);
    let resource_type = resource_type_of(&resource).to_string();
    let Some(object) = resource.as_object_mut() else {
        return resource;
    };
    if role != Role::SuperAdmin {
        for field in fields_of(SUPER_ADMIN_READ_FIELDS, &resource_type) {
            object.remove(*field);
        }
    }
    if !extended && let Some(Value::Object(meta)) = object.get_mut("meta") {
        for field in EXTENDED_META_FIELDS {
            meta.remove(*field);
        }
    }
    resource
}

/// Returns the fields of `resource_type` that this caller's writes cannot set.
pub(super) fn unwritable_fields(resource_type: &str, role: Role) -> Vec<&'static str> {
    let mut fields = fields_of(SECRET_FIELDS, resource_type).to_vec();
    if role != Role::SuperAdmin {
        fields.extend_from_slice(fields_of(SUPER_ADMIN_WRITE_FIELDS, resource_type));
    }
    fields
}

/// Gives each of `fields` its stored value, or removes it when the stored resource has none.
pub(super) fn restore_fields(
    incoming: &mut Map<String, Value>,
    stored: Option<&Value>,
    fields: &[&str],
) {
    for field in fields {
        match stored.and_then(|stored| stored.get(*field)) {
            Some(value) => {
                incoming.insert((*field).to_string(), value.clone());
            }
            None => {
                incoming.remove(*field);
            }
        }
    }
}

/// Removes the server-assigned fields from a request body's `meta`, and returns the
/// `meta.project` it asked for, which only a super admin may choose.
pub(super) fn take_server_meta(
    incoming: &mut Map<String, Value>,
) -> Result<Option<String>, &'static str> {
    let Some(meta) = incoming.get_mut("meta") else {
        return Ok(None);
    };
    let Value::Object(meta) = meta else {
        return Err("meta must be an object");
    };
    let requested_project = match meta.get("project") {
        None => None,
        Some(Value::String(project)) => Some(project.clone()),
        Some(_) => return Err("meta.project must be a Project id"),
    };
    for field in SERVER_META_FIELDS {
        meta.remove(*field);
    }
    Ok(requested_project)
}

/// Copies the resource without the `meta` fields the server assigns, so that an update
/// that changes nothing can be detected.
pub(super) fn without_server_meta(resource: &Value) -> Value {
    let mut resource = resource.clone();
    if let Some(object) = resource.as_object_mut() {
        if let Some(Value::Object(meta)) = object.get_mut("meta") {
            for field in SERVER_META_FIELDS {
                meta.remove(*field);
            }
        }
        if object
            .get("meta")
            .is_some_and(|meta| meta.as_object().is_some_and(Map::is_empty))
        {
            object.remove("meta");
        }
    }
    resource
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_stripped() {
        let mut client = json!({"resourceType": "ClientApplication", "name": "a",
            "secretHash": "h1", "retiringSecretHash": "h2", "secret": "s"});
        strip_secret_fields(&mut client);
        assert_eq!(
            client,
            json!({"resourceType": "ClientApplication", "name": "a"})
        );

        let mut login = json!({"resourceType": "Login", "codeHash": "x", "cookieHash": "y",
            "refreshSecretHash": "z", "previousRefreshSecretHash": "w",
            "refreshRotationSalt": "v"});
        strip_secret_fields(&mut login);
        assert_eq!(login, json!({"resourceType": "Login"}));
    }

    #[test]
    fn present_hides_extended_meta_unless_asked() {
        let stored = json!({"resourceType": "Patient", "meta": {"versionId": "1",
            "lastUpdated": "2026-01-01T00:00:00.000Z", "project": "p",
            "author": {"reference": "system"}}});
        let plain = present(stored.clone(), Role::ProjectAdmin, false);
        assert_eq!(
            plain["meta"],
            json!({"versionId": "1", "lastUpdated": "2026-01-01T00:00:00.000Z"})
        );
        let extended = present(stored, Role::ProjectAdmin, true);
        assert_eq!(extended["meta"]["project"], "p");
    }

    #[test]
    fn present_hides_super_admin_fields_from_admins() {
        let project =
            json!({"resourceType": "Project", "id": "p", "superAdmin": false, "name": "n"});
        assert!(
            present(project.clone(), Role::ProjectAdmin, true)
                .get("superAdmin")
                .is_none()
        );
        assert!(
            present(project, Role::SuperAdmin, true)
                .get("superAdmin")
                .is_some()
        );
    }

    #[test]
    fn restore_keeps_stored_values() {
        let stored = json!({"passwordHash": "stored"});
        let mut incoming = json!({"passwordHash": "forged", "mfaSecret": "forged"})
            .as_object()
            .cloned()
            .unwrap();
        restore_fields(&mut incoming, Some(&stored), &["passwordHash", "mfaSecret"]);
        assert_eq!(Value::Object(incoming), json!({"passwordHash": "stored"}));
    }

    #[test]
    fn server_meta_is_taken_out() {
        let mut incoming =
            json!({"meta": {"project": "p2", "versionId": "v", "tag": [{"code": "t"}]}})
                .as_object()
                .cloned()
                .unwrap();
        assert_eq!(take_server_meta(&mut incoming), Ok(Some("p2".to_string())));
        assert_eq!(incoming["meta"], json!({"tag": [{"code": "t"}]}));
    }
}
