//! The search parameters of every resource type medgate stores, loaded from the tables that
//! `scripts/generate-search-parameters.mjs` derives from the FHIR R4 SearchParameter
//! definitions (see `crates/fhir/data/NOTICE`), with each FHIRPath expression parsed once.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::Deserialize;

use crate::fhirpath::{self, Expression};

const RESOURCE_TYPES_JSON: &str = include_str!("../../data/resource-types.json");
const PARAMETERS_JSON: &str = include_str!("../../data/search-parameters.json");
const COMPARTMENT_JSON: &str = include_str!("../../data/patient-compartment.json");

/// The base that the generated table gives parameters of every resource type (`_id`, `_tag`, …).
const ANY_TYPE: &str = "Resource";

/// The type of a search parameter (FHIR R4 search.html#ptypes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamKind {
    Number,
    Date,
    String,
    Token,
    Reference,
    Composite,
    Quantity,
    Uri,
    Special,
}

impl ParamKind {
    /// Returns the type's name as FHIR spells it, for error messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Number => "number",
            Self::Date => "date",
            Self::String => "string",
            Self::Token => "token",
            Self::Reference => "reference",
            Self::Composite => "composite",
            Self::Quantity => "quantity",
            Self::Uri => "uri",
            Self::Special => "special",
        }
    }

    /// Checks whether medgate indexes and searches parameters of this type. Quantity searches need
    /// unit conversion (UCUM), composite ones pair values within one element, and `special`
    /// ones (Location `near`) need geometry, none of which the index rows keep.
    pub fn is_supported(self) -> bool {
        !matches!(self, Self::Composite | Self::Quantity | Self::Special)
    }
}

/// One row of the generated table, as stored in the JSON file.
#[derive(Deserialize)]
struct ParamRow {
    base: String,
    code: String,
    #[serde(rename = "type")]
    kind: ParamKind,
    expression: String,
    #[serde(default)]
    target: Vec<String>,
}

/// A search parameter of one resource type.
#[derive(Debug)]
pub struct SearchParam {
    pub code: String,
    pub kind: ParamKind,
    /// The FHIRPath expression, relative to the resource.
    pub expression_text: String,
    /// The parsed expression, or `None` when the evaluator cannot parse it; such a parameter
    /// indexes no values.
    pub(crate) expression: Option<Expression>,
    /// The resource types a reference parameter may point to.
    pub targets: Vec<String>,
}

#[derive(Deserialize)]
struct ResourceTypes {
    r4: Vec<String>,
    medplum: Vec<String>,
}

struct Definitions {
    resource_types: Vec<&'static str>,
    /// Parameters per resource type, including those of base `Resource`.
    by_type: HashMap<String, Vec<SearchParam>>,
    compartment: HashMap<String, Vec<String>>,
}

static DEFINITIONS: LazyLock<Definitions> = LazyLock::new(load);

/// Resource types the server accepts: every FHIR R4 resource type and the Medplum types of
/// authentication (User, Project, ProjectMembership, ClientApplication, Login, …).
pub static SUPPORTED_TYPES: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| DEFINITIONS.resource_types.clone());

fn load() -> Definitions {
    // The tables are part of the source tree and a unit test parses them, so a failure here
    // is a build defect, not an input error.
    let types: ResourceTypes =
        serde_json::from_str(RESOURCE_TYPES_JSON).expect("resource-types.json is valid");
    let rows: Vec<ParamRow> =
        serde_json::from_str(PARAMETERS_JSON).expect("search-parameters.json is valid");
    let compartment: HashMap<String, Vec<String>> =
        serde_json::from_str(COMPARTMENT_JSON).expect("patient-compartment.json is valid");

    let mut resource_types: Vec<&'static str> = types
        .r4
        .into_iter()
        .chain(types.medplum)
        .map(|name| &*Box::leak(name.into_boxed_str()))
        .collect();
    resource_types.sort_unstable();
    resource_types.dedup();

    let (common, specific): (Vec<ParamRow>, Vec<ParamRow>) =
        rows.into_iter().partition(|row| row.base == ANY_TYPE);
    let mut by_type: HashMap<String, Vec<SearchParam>> = HashMap::new();
    for resource_type in &resource_types {
        let params = common.iter().map(build_param).collect();
        by_type.insert(resource_type.to_string(), params);
    }
    for row in &specific {
        if let Some(params) = by_type.get_mut(&row.base) {
            params.push(build_param(row));
        }
    }
    Definitions {
        resource_types,
        by_type,
        compartment,
    }
}

fn build_param(row: &ParamRow) -> SearchParam {
    // `resolve()` needs no store here: it turns a relative reference into a stand-in with
    // `resourceType` and `id`, which is all that `resolve() is Patient` and Medplum's
    // `profile.resolve().resourceType` read.
    let expression = if row.kind.is_supported() {
        fhirpath::parse(&row.expression).ok()
    } else {
        None
    };
    SearchParam {
        code: row.code.clone(),
        kind: row.kind,
        expression_text: row.expression.clone(),
        expression,
        targets: row.target.clone(),
    }
}

/// Finds the parameter `code` of `resource_type`.
pub fn find_param(resource_type: &str, code: &str) -> Option<&'static SearchParam> {
    DEFINITIONS
        .by_type
        .get(resource_type)?
        .iter()
        .find(|param| param.code == code)
}

/// Returns every search parameter of `resource_type`, none for an unknown type.
pub fn params_of(resource_type: &str) -> &'static [SearchParam] {
    DEFINITIONS
        .by_type
        .get(resource_type)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// Returns the reference parameters that put a resource of `resource_type` into a Patient's
/// compartment (FHIR R4 CompartmentDefinition "patient").
pub fn compartment_params(resource_type: &str) -> &'static [String] {
    DEFINITIONS
        .compartment
        .get(resource_type)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_load() {
        assert!(SUPPORTED_TYPES.contains(&"Observation"));
        assert!(SUPPORTED_TYPES.contains(&"ProjectMembership"));
        assert!(!SUPPORTED_TYPES.contains(&"Resource"));
        assert!(!SUPPORTED_TYPES.contains(&"Bot"));
        assert_eq!(compartment_params("Observation"), ["subject", "performer"]);
    }

    #[test]
    fn common_parameters_apply_to_every_type() {
        for resource_type in ["Patient", "User", "Observation"] {
            assert!(
                find_param(resource_type, "_id").is_some(),
                "{resource_type}"
            );
            assert!(
                find_param(resource_type, "_tag").is_some(),
                "{resource_type}"
            );
        }
    }

    #[test]
    fn medgate_parameters_override_medplum() {
        let email = find_param("User", "email").unwrap();
        assert_eq!(email.kind, ParamKind::Token);
        assert!(find_param("Login", "code-hash").is_some());
        assert!(find_param("Login", "code").is_none());
    }

    /// Every expression of a supported type must parse, or its parameter silently indexes
    /// nothing.
    #[test]
    fn supported_expressions_parse() {
        let mut failures = Vec::new();
        for resource_type in SUPPORTED_TYPES.iter() {
            for param in params_of(resource_type) {
                if param.kind.is_supported() && param.expression.is_none() {
                    let error = fhirpath::parse(&param.expression_text).err();
                    failures.push(format!(
                        "{resource_type}.{} `{}`: {error:?}",
                        param.code, param.expression_text
                    ));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
