//! The FHIR R4 type knowledge the evaluator has without structure definitions.
//!
//! Without the FHIR model an item's type comes from three places: the `resourceType` of a
//! resource, the key of a choice element (`valueQuantity` is a `Quantity`), and the JSON value
//! itself (boolean, number, string). So `Patient.gender is code` is false here, because a plain
//! JSON string is only known to be a `string`.

use serde_json::Value;

use super::ast::TypeName;
use super::item::{Item, Number, Tag};
use super::temporal::TemporalKind;

/// The types a choice element `name[x]` can take in FHIR R4: the "Open Type Element" list of the
/// Data Types page (datatypes.html#open). The JSON key of such an element is `name` plus the type name with its
/// first letter upper-cased, such as `valueDateTime` or `valueQuantity`.
const CHOICE_TYPES: &[&str] = &[
    "base64Binary",
    "boolean",
    "canonical",
    "code",
    "date",
    "dateTime",
    "decimal",
    "id",
    "instant",
    "integer",
    "markdown",
    "oid",
    "positiveInt",
    "string",
    "time",
    "unsignedInt",
    "uri",
    "url",
    "uuid",
    "Address",
    "Age",
    "Annotation",
    "Attachment",
    "CodeableConcept",
    "Coding",
    "ContactPoint",
    "Count",
    "Distance",
    "Duration",
    "HumanName",
    "Identifier",
    "Money",
    "Period",
    "Quantity",
    "Range",
    "Ratio",
    "Reference",
    "SampledData",
    "Signature",
    "Timing",
    "ContactDetail",
    "Contributor",
    "DataRequirement",
    "Expression",
    "ParameterDefinition",
    "RelatedArtifact",
    "TriggerDefinition",
    "UsageContext",
    "Dosage",
    "Meta",
];

/// Specializations among the choice types, from the FHIR R4 Data Types page: each child is also
/// its parent, so `valueAge is Quantity` and `valueCode is string` are true.
const PARENT_TYPES: &[(&str, &str)] = &[
    ("code", "string"),
    ("id", "string"),
    ("markdown", "string"),
    ("canonical", "uri"),
    ("oid", "uri"),
    ("url", "uri"),
    ("uuid", "uri"),
    ("positiveInt", "integer"),
    ("unsignedInt", "integer"),
    ("Age", "Quantity"),
    ("Count", "Quantity"),
    ("Distance", "Quantity"),
    ("Duration", "Quantity"),
];

/// FHIR R4 resource types that derive from `Resource` but not from `DomainResource`.
const NON_DOMAIN_RESOURCES: &[&str] = &["Binary", "Bundle", "Parameters"];

/// Returns the choice type whose upper-cased name is `suffix`, e.g. `dateTime` for `DateTime`.
pub(super) fn choice_type(suffix: &str) -> Option<&'static str> {
    let mut suffix_chars = suffix.chars();
    let first = suffix_chars.next()?;
    if !first.is_ascii_uppercase() {
        return None;
    }
    let rest = suffix_chars.as_str();
    CHOICE_TYPES.iter().copied().find(|candidate| {
        let mut candidate_chars = candidate.chars();
        candidate_chars
            .next()
            .is_some_and(|c| c.to_ascii_uppercase() == first)
            && candidate_chars.as_str() == rest
    })
}

/// Returns whether a type specifier's namespace is one that FHIRPath over FHIR defines
/// (N1 §10 Types and Reflection).
pub(super) fn is_known_namespace(namespace: &str) -> bool {
    matches!(namespace, "System" | "FHIR")
}

/// Returns whether `item` is of the named type or a specialization of it (N1 §6.3 Types).
///
/// A FHIR primitive matches the FHIRPath System type it maps to, so a JSON string is both a
/// `string` and a `System.String`, and a `valueDateTime` is a `DateTime`.
pub(super) fn is_type(item: &Item, type_name: &TypeName) -> bool {
    let name = type_name.name.as_str();
    match item.tag {
        Tag::System(kind) => name.eq_ignore_ascii_case(temporal_type_name(kind)),
        Tag::Fhir(fhir_type) => type_and_parents(fhir_type)
            .any(|candidate| candidate == name || is_primitive_alias(candidate, name)),
        Tag::Json => match item.value.as_ref() {
            Value::Bool(_) => name.eq_ignore_ascii_case("boolean"),
            Value::String(_) => name.eq_ignore_ascii_case("string"),
            Value::Number(_) => match item.as_number() {
                Some(Number::Integer(_)) => name.eq_ignore_ascii_case("integer"),
                _ => name.eq_ignore_ascii_case("decimal"),
            },
            Value::Object(object) => match object.get("resourceType").and_then(Value::as_str) {
                Some(resource_type) => is_resource_of_type(resource_type, name),
                None => false,
            },
            _ => false,
        },
    }
}

fn temporal_type_name(kind: TemporalKind) -> &'static str {
    match kind {
        TemporalKind::Date => "date",
        TemporalKind::DateTime => "dateTime",
        TemporalKind::Time => "time",
    }
}

/// Returns whether a FHIR primitive and a System type differ only in case, such as
/// `string`/`String` or `dateTime`/`DateTime`. FHIR maps each such primitive to that type.
fn is_primitive_alias(fhir_type: &str, name: &str) -> bool {
    fhir_type.starts_with(|c: char| c.is_ascii_lowercase()) && fhir_type.eq_ignore_ascii_case(name)
}

fn type_and_parents(fhir_type: &'static str) -> impl Iterator<Item = &'static str> {
    let parent = PARENT_TYPES
        .iter()
        .find(|(child, _)| *child == fhir_type)
        .map(|(_, parent)| *parent);
    std::iter::once(fhir_type).chain(parent)
}

fn is_resource_of_type(resource_type: &str, name: &str) -> bool {
    name == resource_type
        || name == "Resource"
        || (name == "DomainResource" && !NON_DOMAIN_RESOURCES.contains(&resource_type))
}

/// Returns whether `name` has the shape of a FHIR resource type name, for reading literal
/// references.
pub(super) fn looks_like_resource_type(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name.chars().all(|c| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use serde_json::json;

    use super::*;

    fn type_name(name: &str) -> TypeName {
        TypeName {
            namespace: None,
            name: name.to_string(),
        }
    }

    fn tagged(value: Value, fhir_type: &'static str) -> Item<'static> {
        Item {
            value: Cow::Owned(value),
            tag: Tag::Fhir(fhir_type),
        }
    }

    #[test]
    fn choice_type_from_key_suffix() {
        assert_eq!(choice_type("DateTime"), Some("dateTime"));
        assert_eq!(choice_type("String"), Some("string"));
        assert_eq!(choice_type("Quantity"), Some("Quantity"));
        assert_eq!(choice_type("CodeableConcept"), Some("CodeableConcept"));
        assert_eq!(choice_type("dateTime"), None);
        assert_eq!(choice_type("Organization"), None);
        assert_eq!(choice_type(""), None);
    }

    #[test]
    fn is_type_of_resources() {
        let patient = json!({"resourceType": "Patient"});
        let bundle = json!({"resourceType": "Bundle"});
        let item = Item::borrowed(&patient);
        assert!(is_type(&item, &type_name("Patient")));
        assert!(is_type(&item, &type_name("Resource")));
        assert!(is_type(&item, &type_name("DomainResource")));
        assert!(!is_type(&item, &type_name("Practitioner")));
        assert!(!is_type(&item, &type_name("patient")));
        assert!(!is_type(
            &Item::borrowed(&bundle),
            &type_name("DomainResource")
        ));
    }

    #[test]
    fn is_type_of_json_primitives() {
        assert!(is_type(&Item::boolean(true), &type_name("boolean")));
        assert!(is_type(&Item::boolean(true), &type_name("Boolean")));
        assert!(is_type(&Item::string("x"), &type_name("String")));
        assert!(!is_type(&Item::string("x"), &type_name("code")));
        assert!(is_type(&Item::integer(1), &type_name("Integer")));
        assert!(!is_type(&Item::integer(1), &type_name("Decimal")));
        assert!(is_type(&Item::owned(json!(1.5)), &type_name("decimal")));
        assert!(!is_type(&Item::owned(json!({})), &type_name("Quantity")));
    }

    #[test]
    fn is_type_of_choice_elements() {
        let age = tagged(json!({"value": 3}), "Age");
        assert!(is_type(&age, &type_name("Age")));
        assert!(is_type(&age, &type_name("Quantity")));
        assert!(!is_type(&age, &type_name("Range")));

        let code = tagged(json!("final"), "code");
        assert!(is_type(&code, &type_name("code")));
        assert!(is_type(&code, &type_name("string")));
        assert!(is_type(&code, &type_name("String")));

        let date_time = tagged(json!("2020"), "dateTime");
        assert!(is_type(&date_time, &type_name("dateTime")));
        assert!(is_type(&date_time, &type_name("DateTime")));
        assert!(!is_type(&date_time, &type_name("date")));
    }

    #[test]
    fn is_type_of_system_temporals() {
        let date = Item::temporal(TemporalKind::Date, "2020");
        assert!(is_type(&date, &type_name("Date")));
        assert!(is_type(&date, &type_name("date")));
        assert!(!is_type(&date, &type_name("DateTime")));
    }

    #[test]
    fn resource_type_shape() {
        assert!(looks_like_resource_type("Patient"));
        assert!(!looks_like_resource_type("patient"));
        assert!(!looks_like_resource_type("Pat-ient"));
        assert!(!looks_like_resource_type(""));
    }
}
