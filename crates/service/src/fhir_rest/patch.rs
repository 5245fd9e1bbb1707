//! FHIR patch with JSON Patch (FHIR R4 "RESTful API", patch; RFC 6902). The patch applies to
//! the resource as the caller reads it, and the result goes through
//! [`Services::fhir_update`], so a patch can change only what an update by the same caller
//! could change.

use medgate_fhir::json_patch;
use serde_json::Value;

use super::{FhirCaller, version_id};
use crate::Services;
use crate::error::{ServiceError, ServiceResult};

/// How often a patch without `If-Match` is retried when another request wrote the resource
/// between the read and the update.
const MAX_ATTEMPTS: usize = 3;

impl Services {
    /// Applies a JSON Patch document to a resource and stores the result as a new version.
    /// With `if_match` (the version id of an `If-Match` header) the patch applies only to that
    /// version.
    pub async fn fhir_patch(
        &self,
        caller: &FhirCaller,
        resource_type: &str,
        id: &str,
        patch: &Value,
        if_match: Option<&str>,
    ) -> ServiceResult<Value> {
        let operations =
            json_patch::parse(patch).map_err(|error| ServiceError::invalid(error.to_string()))?;

        let mut attempt = 1;
        loop {
            let current = self.fhir_read(caller, resource_type, id).await?;
            let current_version = version_id(&current)?;
            if if_match.is_some_and(|expected| expected != current_version) {
                return Err(ServiceError::PreconditionFailed);
            }

            let patched = json_patch::apply(&current, &operations)
                .map_err(|error| ServiceError::invalid(error.to_string()))?;
            check_identity(resource_type, id, &patched)?;

            // The update writes only if the resource is still at the version patched here, so
            // a concurrent write is never lost. Without If-Match the client asked for no
            // particular version, and the patch applies again to the newer one.
            let result = self
                .fhir_update(caller, resource_type, id, patched, Some(&current_version))
                .await;
            match result {
                Err(ServiceError::PreconditionFailed)
                    if if_match.is_none() && attempt < MAX_ATTEMPTS =>
                {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

/// Checks that a patched resource is still the resource of the URL: an object whose
/// `resourceType` and `id` the patch left as they were.
fn check_identity(resource_type: &str, id: &str, patched: &Value) -> ServiceResult<()> {
    if !patched.is_object() {
        return Err(ServiceError::invalid(
            "The patch must leave a JSON object as the resource",
        ));
    }
    if patched.get("resourceType").and_then(Value::as_str) != Some(resource_type) {
        return Err(ServiceError::invalid_field(
            format!("A patch cannot change resourceType; it must stay {resource_type}"),
            "resourceType",
        ));
    }
    if patched.get("id").and_then(Value::as_str) != Some(id) {
        return Err(ServiceError::invalid_field(
            format!("A patch cannot change id; it must stay {id}"),
            "id",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identity_must_stay() {
        let patched = json!({"resourceType": "Patient", "id": "a"});
        assert!(check_identity("Patient", "a", &patched).is_ok());
        let other_id = json!({"resourceType": "Patient", "id": "b"});
        assert_eq!(
            check_identity("Patient", "a", &other_id)
                .unwrap_err()
                .to_string(),
            "A patch cannot change id; it must stay a"
        );
        let no_type = json!({"id": "a"});
        assert!(check_identity("Patient", "a", &no_type).is_err());
        assert!(check_identity("Patient", "a", &json!([])).is_err());
    }
}
