//! The top-level properties of each resource type and the JSON kind of their values, from the
//! table that `scripts/generate-resource-properties.mjs` derives from the FHIR R4 JSON schema
//! (see `crates/fhir/data/NOTICE`).

use std::collections::HashMap;
use std::sync::LazyLock;

const PROPERTIES_JSON: &str = include_str!("../data/resource-properties.json");

/// The JSON type of a FHIR element's value (FHIR R4 "JSON Representation of Resources").
/// Primitives are strings, numbers or booleans, and complex types are objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonKind {
    String,
    Number,
    Boolean,
    Object,
}

impl JsonKind {
    /// Returns the kind's name as JSON Schema spells it, for error messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Number => "number",
            Self::Boolean => "boolean",
            Self::Object => "object",
        }
    }

    /// Returns whether `value` has this kind.
    pub fn matches(self, value: &serde_json::Value) -> bool {
        match self {
            Self::String => value.is_string(),
            Self::Number => value.is_number(),
            Self::Boolean => value.is_boolean(),
            Self::Object => value.is_object(),
        }
    }
}

/// The value a property takes: one value of `kind`, or an array of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PropertyKind {
    pub kind: JsonKind,
    pub array: bool,
}

type Table = HashMap<String, HashMap<String, PropertyKind>>;

static PROPERTIES: LazyLock<Table> = LazyLock::new(load);

fn load() -> Table {
    // The table is part of the source tree and a unit test parses it, so a failure here is a
    // build defect, not an input error.
    let raw: HashMap<String, HashMap<String, String>> =
        serde_json::from_str(PROPERTIES_JSON).expect("resource-properties.json is valid");
    raw.into_iter()
        .map(|(resource_type, properties)| {
            let properties = properties
                .into_iter()
                .map(|(name, kind)| {
                    let parsed = parse_kind(&kind).unwrap_or_else(|| {
                        panic!("resource-properties.json: {resource_type}.{name} has kind {kind}")
                    });
                    (name, parsed)
                })
                .collect();
            (resource_type, properties)
        })
        .collect()
}

fn parse_kind(text: &str) -> Option<PropertyKind> {
    let (name, array) = match text.strip_suffix("[]") {
        Some(name) => (name, true),
        None => (text, false),
    };
    let kind = match name {
        "string" => JsonKind::String,
        "number" => JsonKind::Number,
        "boolean" => JsonKind::Boolean,
        "object" => JsonKind::Object,
        _ => return None,
    };
    Some(PropertyKind { kind, array })
}

/// Returns the kind of the top-level property `name` of `resource_type`, or `None` when the
/// type has no such property or the table does not list the type.
pub fn property_kind(resource_type: &str, name: &str) -> Option<PropertyKind> {
    PROPERTIES.get(resource_type)?.get(name).copied()
}

/// Returns whether the table lists the properties of `resource_type`.
pub fn has_properties(resource_type: &str) -> bool {
    PROPERTIES.contains_key(resource_type)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::SUPPORTED_TYPES;

    #[test]
    fn table_covers_supported_types() {
        for resource_type in SUPPORTED_TYPES.iter() {
            assert!(has_properties(resource_type), "{resource_type}");
            let resource_type_kind = property_kind(resource_type, "resourceType");
            assert_eq!(
                resource_type_kind.map(|kind| kind.kind),
                Some(JsonKind::String),
                "{resource_type}"
            );
        }
    }

    #[test]
    fn patient_properties() {
        let name = property_kind("Patient", "name").unwrap();
        assert_eq!(name.kind, JsonKind::Object);
        assert!(name.array);
        let active = property_kind("Patient", "active").unwrap();
        assert_eq!(active.kind, JsonKind::Boolean);
        assert!(!active.array);
        assert_eq!(
            property_kind("Patient", "multipleBirthInteger").map(|kind| kind.kind),
            Some(JsonKind::Number)
        );
        assert!(property_kind("Patient", "_birthDate").is_some());
        assert!(property_kind("Patient", "valueString").is_none());
        assert!(property_kind("Unknown", "id").is_none());
    }

    #[test]
    fn medgate_fields_listed() {
        assert!(property_kind("ClientApplication", "secretHash").is_some());
        assert_eq!(
            property_kind("Login", "refreshSecretRotatedAt").map(|kind| kind.kind),
            Some(JsonKind::Number)
        );
    }
}
