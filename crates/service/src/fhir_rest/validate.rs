//! Structural checks on a resource in a request body, against FHIR R4 "JSON Representation of
//! Resources" and the property table of [`medgate_fhir::properties`]. They check the top level
//! only, so nested elements are stored as sent.

use medgate_fhir::properties::{JsonKind, PropertyKind, property_kind};
use serde_json::{Map, Value};

use crate::error::{ServiceError, ServiceResult};

/// The maximum length of an id (FHIR R4 datatypes, `id`).
const MAX_ID_LENGTH: usize = 64;

/// Checks a resource whose `resourceType` is already known to be `resource_type`. The first
/// problem found is the error, with the property as its expression.
pub(super) fn check_structure(
    resource_type: &str,
    resource: &Map<String, Value>,
) -> ServiceResult<()> {
    // id: a string of up to 64 letters, digits, `-` and `.` (FHIR R4 datatypes, `id`).
    if let Some(id) = resource.get("id") {
        let Some(id) = id.as_str() else {
            return Err(ServiceError::invalid_field("id must be a string", "id"));
        };
        if !is_valid_id(id) {
            return Err(ServiceError::invalid_field(
                format!("Invalid id \"{id}\": an id has 1 to 64 letters, digits, '-' or '.'"),
                "id",
            ));
        }
    }

    // meta: an object, whose versionId and lastUpdated the server sets.
    if resource.get("meta").is_some_and(|meta| !meta.is_object()) {
        return Err(ServiceError::invalid_field(
            "meta must be an object",
            "meta",
        ));
    }

    // properties: each one defined for the type, with a value of the defined JSON kind.
    for (name, value) in resource {
        let Some(expected) = property_kind(resource_type, name) else {
            return Err(ServiceError::invalid_field(
                format!("Invalid additional property \"{name}\" for {resource_type}"),
                name.clone(),
            ));
        };
        check_kind(name, value, expected)?;
    }
    Ok(())
}

fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LENGTH
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'.')
}

/// Checks the JSON kind of one property value. FHIR JSON has no null property values, and an
/// array element is null only where a primitive array and its `_name` extension sibling line
/// up (FHIR R4 "JSON Representation of Resources", primitive elements).
fn check_kind(name: &str, value: &Value, expected: PropertyKind) -> ServiceResult<()> {
    let mismatch = |found: &Value| {
        let expected_text = if expected.array {
            format!("an array of {}", expected.kind.name())
        } else {
            expected.kind.name().to_string()
        };
        ServiceError::invalid_field(
            format!(
                "Invalid JSON type for \"{name}\": expected {expected_text}, but got {}",
                json_type_name(found)
            ),
            name.to_string(),
        )
    };
    if !expected.array {
        return if expected.kind.matches(value) {
            Ok(())
        } else {
            Err(mismatch(value))
        };
    }

    let Value::Array(items) = value else {
        return Err(mismatch(value));
    };
    let null_allowed = name.starts_with('_') || expected.kind != JsonKind::Object;
    for item in items {
        if item.is_null() && null_allowed {
            continue;
        }
        if !expected.kind.matches(item) {
            return Err(mismatch(item));
        }
    }
    Ok(())
}

fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(resource: Value) -> ServiceResult<()> {
        let resource_type = resource["resourceType"].as_str().unwrap().to_string();
        check_structure(&resource_type, resource.as_object().unwrap())
    }

    fn message(resource: Value) -> String {
        check(resource).unwrap_err().to_string()
    }

    #[test]
    fn valid_patient_passes() {
        let patient = json!({"resourceType": "Patient", "id": "a-1.b", "meta": {},
            "active": true, "name": [{"family": "F"}], "birthDate": "2000-01-01",
            "_birthDate": {"extension": []}, "multipleBirthInteger": 2});
        assert!(check(patient).is_ok());
    }

    #[test]
    fn unknown_property_rejected() {
        let text = message(json!({"resourceType": "Patient", "colour": "blue"}));
        assert_eq!(text, "Invalid additional property \"colour\" for Patient");
        // A choice element is valid only under a name of one of its types.
        assert!(check(json!({"resourceType": "Patient", "deceasedString": "x"})).is_err());
    }

    #[test]
    fn id_and_meta_shape() {
        assert_eq!(
            message(json!({"resourceType": "Patient", "id": 7})),
            "id must be a string"
        );
        assert!(check(json!({"resourceType": "Patient", "id": "a/b"})).is_err());
        assert!(check(json!({"resourceType": "Patient", "id": "x".repeat(65)})).is_err());
        assert_eq!(
            message(json!({"resourceType": "Patient", "meta": "v1"})),
            "meta must be an object"
        );
    }

    #[test]
    fn wrong_json_kinds_rejected() {
        let cases = [
            (
                json!({"resourceType": "Patient", "active": "yes"}),
                "expected boolean, but got string",
            ),
            (
                json!({"resourceType": "Patient", "name": {"family": "F"}}),
                "expected an array of object, but got object",
            ),
            (
                json!({"resourceType": "Patient", "name": ["F"]}),
                "expected an array of object, but got string",
            ),
            (
                json!({"resourceType": "Patient", "gender": null}),
                "expected string, but got null",
            ),
            (
                json!({"resourceType": "Patient", "multipleBirthInteger": "2"}),
                "expected number, but got string",
            ),
        ];
        for (resource, expected) in cases {
            let text = message(resource.clone());
            assert!(text.contains(expected), "{resource}: {text}");
        }
    }

    #[test]
    fn null_in_primitive_array_allowed() {
        let policy =
            json!({"resourceType": "ClientApplication", "redirectUris": ["https://a", null]});
        assert!(check(policy).is_ok());
    }
}
