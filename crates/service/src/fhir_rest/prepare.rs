//! Checks on a request body before it is stored: its shape, and the rules of the resource
//! types that authentication reads (User, ProjectMembership, ClientApplication, …).

use medgate_fhir::Reference;
use medgate_fhir::resources::{
    ClientApplication, JsonWebKey, Login, Project, ProjectMembership, TypedResource, User,
};
use medgate_fhir::search::SearchRequest;
use medgate_store::{SearchScope, StoreError};
use serde_json::{Map, Value};

use super::access::{Role, owning_project};
use super::fields::restore_fields;
use super::validate::check_structure;
use crate::Services;
use crate::clients::validate_client;
use crate::error::{ServiceError, ServiceResult};
use crate::login::is_valid_email;
use crate::session::AuthContext;

/// Resource types a membership's `profile` may name.
const PROFILE_TYPES: &[&str] = &[
    "ClientApplication",
    "Patient",
    "Practitioner",
    "RelatedPerson",
];

/// Resource types a membership's `user` may name.
const ACCOUNT_TYPES: &[&str] = &["ClientApplication", "User"];

/// Checks a request body and returns it as a JSON object. `url_id` is the id in the URL of
/// an update; a create has none.
pub(super) fn check_body(
    resource_type: &str,
    body: Value,
    url_id: Option<&str>,
) -> ServiceResult<Map<String, Value>> {
    // shape: a resource in JSON is an object (FHIR R4, "JSON Representation of Resources").
    let Value::Object(object) = body else {
        return Err(ServiceError::invalid(
            "The request body must be a JSON object",
        ));
    };

    // resourceType: must name the type in the URL. The texts here are Medplum's.
    if object.get("resourceType").and_then(Value::as_str) != Some(resource_type) {
        return Err(ServiceError::invalid_field(
            "Incorrect resource type",
            "resourceType",
        ));
    }

    // id: an update's body carries the id of the URL (FHIR update).
    if let Some(url_id) = url_id
        && object.get("id").and_then(Value::as_str) != Some(url_id)
    {
        return Err(ServiceError::invalid_field("Incorrect ID", "id"));
    }

    // structure: id, meta and every top-level property as the type defines them.
    check_structure(resource_type, &object)?;
    Ok(object)
}

/// Checks that a resource of a typed kind converts to its struct. The sign-in flows read
/// these types through the structs, so a shape they cannot read would break them later.
fn check_typed_shape(resource_type: &str, resource: &Map<String, Value>) -> ServiceResult<()> {
    let value = Value::Object(resource.clone());
    let result = match resource_type {
        "ClientApplication" => ClientApplication::from_json(value).map(drop),
        "JsonWebKey" => JsonWebKey::from_json(value).map(drop),
        "Login" => Login::from_json(value).map(drop),
        "Project" => Project::from_json(value).map(drop),
        "ProjectMembership" => ProjectMembership::from_json(value).map(drop),
        "User" => User::from_json(value).map(drop),
        _ => Ok(()),
    };
    result.map_err(|error| ServiceError::invalid(format!("Invalid {resource_type}: {error}")))
}

/// Returns the `Type/id` parts of a reference field, checked against the allowed types.
fn reference_field<'a>(
    resource: &'a Map<String, Value>,
    field: &'static str,
    allowed_types: &[&str],
) -> ServiceResult<(&'a str, &'a str)> {
    let invalid = || {
        ServiceError::invalid_field(
            format!("{field} must reference one of {}", allowed_types.join(", ")),
            field,
        )
    };
    let reference = resource
        .get(field)
        .and_then(|value| value.get("reference"))
        .and_then(Value::as_str)
        .ok_or_else(invalid)?;
    let (resource_type, id) = reference.split_once('/').ok_or_else(invalid)?;
    if !allowed_types.contains(&resource_type) || id.is_empty() || id.contains('/') {
        return Err(invalid());
    }
    Ok((resource_type, id))
}

impl Services {
    /// Applies the rules of the resource's type to a body about to be written; `stored` is
    /// the current version on an update.
    pub(super) async fn prepare_typed(
        &self,
        auth: &AuthContext,
        resource_type: &str,
        resource: &mut Map<String, Value>,
        stored: Option<&Value>,
    ) -> ServiceResult<()> {
        match resource_type {
            "User" => self.prepare_user(auth, resource).await?,
            "ProjectMembership" => self.prepare_membership(auth, resource, stored).await?,
            _ => {}
        }
        check_typed_shape(resource_type, resource)?;
        if resource_type == "ClientApplication" {
            validate_client(
                &ClientApplication::from_json(Value::Object(resource.clone())).map_err(
                    |error| ServiceError::invalid(format!("Invalid ClientApplication: {error}")),
                )?,
            )?;
        }
        Ok(())
    }

    async fn prepare_user(
        &self,
        auth: &AuthContext,
        user: &mut Map<String, Value>,
    ) -> ServiceResult<()> {
        // project: users a project admin writes are scoped to that project, so they can
        // never shadow a server-wide account with the same email address.
        if Role::of(auth) != Role::SuperAdmin {
            let project = Reference::new("Project", auth.project_id());
            user.insert(
                "project".to_string(),
                serde_json::to_value(project).unwrap_or_default(),
            );
        }

        // email: stored lower-case, because sign-in looks addresses up lower-cased.
        let Some(email) = user.get("email") else {
            return Ok(());
        };
        let Some(email) = email.as_str().map(|email| email.trim().to_lowercase()) else {
            return Err(ServiceError::invalid_field(
                "email must be a string",
                "email",
            ));
        };
        if !is_valid_email(&email) {
            return Err(ServiceError::invalid_field(
                "Valid email address is required",
                "email",
            ));
        }
        user.insert("email".to_string(), Value::String(email.clone()));

        // uniqueness: one account per email address within a scope (one project, or the
        // whole server), or sign-in could not tell them apart.
        // NOTE: the search and the write are not atomic, so two concurrent writes of one
        // address can both pass.
        let scope = user
            .get("project")
            .and_then(|project| project.get("reference"))
            .and_then(Value::as_str);
        let mut request = SearchRequest::new("User").filter("email", &email).count(2);
        request = match scope {
            Some(project) => request.filter("project", project),
            None => request.missing("project", true),
        };
        let matches = self
            .repo
            .store
            .search(SearchScope {
                request: &request,
                project_id: None,
                restriction: None,
            })
            .await?;
        let own_id = user.get("id").and_then(Value::as_str);
        if matches
            .iter()
            .any(|other| other.get("id").and_then(Value::as_str) != own_id)
        {
            return Err(ServiceError::Conflict(
                "Email already registered".to_string(),
            ));
        }
        Ok(())
    }

    async fn prepare_membership(
        &self,
        auth: &AuthContext,
        membership: &mut Map<String, Value>,
        stored: Option<&Value>,
    ) -> ServiceResult<()> {
        // project and user: a project admin's memberships stay in their project, and an
        // existing membership keeps its account, as Medplum's project-admin policy has it.
        if Role::of(auth) != Role::SuperAdmin {
            let project = Reference::new("Project", auth.project_id());
            membership.insert(
                "project".to_string(),
                serde_json::to_value(project).unwrap_or_default(),
            );
            if stored.is_some() {
                restore_fields(membership, stored, &["user"]);
            }
        }
        let (_, project_id) = reference_field(membership, "project", &["Project"])?;
        let project_id = project_id.to_string();
        if self.read_existing("Project", &project_id).await?.is_none() {
            return Err(ServiceError::invalid_field(
                format!("Project {project_id} does not exist"),
                "project",
            ));
        }

        // profile: a resource of the same project. Otherwise the member could read another
        // project's resource as their own profile. Missing and foreign profiles get the
        // same error, so the check reveals nothing about other projects.
        let (profile_type, profile_id) = reference_field(membership, "profile", PROFILE_TYPES)?;
        let profile = self.read_existing(profile_type, profile_id).await?;
        if profile
            .as_ref()
            .and_then(|profile| owning_project(profile_type, profile))
            != Some(project_id.as_str())
        {
            return Err(ServiceError::invalid_field(
                "Profile does not belong to project",
                "profile",
            ));
        }

        // user: a server-wide User or one of this project, or a client of this project.
        let (account_type, account_id) = reference_field(membership, "user", ACCOUNT_TYPES)?;
        let account = self.read_existing(account_type, account_id).await?;
        let belongs = match (&account, account_type) {
            (None, _) => false,
            (Some(user), "User") => user
                .get("project")
                .and_then(|project| project.get("reference"))
                .and_then(Value::as_str)
                .is_none_or(|project| project == format!("Project/{project_id}")),
            (Some(client), _) => owning_project(account_type, client) == Some(project_id.as_str()),
        };
        if !belongs {
            return Err(ServiceError::invalid_field(
                "User does not belong to project",
                "user",
            ));
        }
        Ok(())
    }

    /// Reads a current resource, or `None` when it does not exist or was deleted.
    pub(super) async fn read_existing(
        &self,
        resource_type: &str,
        id: &str,
    ) -> ServiceResult<Option<Value>> {
        match self.repo.store.read(resource_type, id).await {
            Ok(resource) => Ok(Some(resource)),
            Err(StoreError::NotFound | StoreError::Gone) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn body_must_be_object_of_url_type() {
        assert!(check_body("Patient", json!([]), None).is_err());
        assert!(check_body("Patient", json!({"resourceType": "Practitioner"}), None).is_err());
        assert!(check_body("Patient", json!({"resourceType": "Patient"}), None).is_ok());
    }

    #[test]
    fn update_body_id_must_match_url() {
        let body = json!({"resourceType": "Patient", "id": "a"});
        assert!(check_body("Patient", body.clone(), Some("a")).is_ok());
        assert!(check_body("Patient", body, Some("b")).is_err());
        assert!(check_body("Patient", json!({"resourceType": "Patient"}), Some("a")).is_err());
    }

    #[test]
    fn typed_shape_rejects_wrong_field_types() {
        let membership = json!({"resourceType": "ProjectMembership", "admin": "yes",
            "project": {"reference": "Project/p"}, "user": {"reference": "User/u"},
            "profile": {"reference": "Practitioner/x"}});
        let object = membership.as_object().unwrap();
        assert!(check_typed_shape("ProjectMembership", object).is_err());
        assert!(check_typed_shape("Patient", object).is_ok());
    }

    #[test]
    fn reference_field_checks_type() {
        let membership =
            json!({"profile": {"reference": "Organization/1"}, "user": {"reference": "User/2"}});
        let object = membership.as_object().unwrap();
        assert!(reference_field(object, "profile", PROFILE_TYPES).is_err());
        assert_eq!(
            reference_field(object, "user", ACCOUNT_TYPES).unwrap(),
            ("User", "2")
        );
    }
}
