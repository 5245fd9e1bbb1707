//! The CapabilityStatement of `GET /fhir/R4/metadata` (FHIR R4 "RESTful API", capabilities).
//! It lists what this server implements and is the same for every caller. Access policies
//! then decide, per caller, which of these interactions succeed.

use medgate_fhir::search::{SUPPORTED_TYPES, params_of};
use serde_json::{Value, json};

use crate::Services;
use crate::clock::fhir_instant;

/// Types that only the server creates, when a user signs in or a signing key rotates. A
/// REST create of them is rejected for every caller.
const SERVER_CREATED_TYPES: &[&str] = &["JsonWebKey", "Login"];

/// Interactions on one resource type (CapabilityStatement.rest.resource.interaction.code)
/// that the FHIR routes implement. `history-type` is not implemented.
const TYPE_INTERACTIONS: &[&str] = &[
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "create",
    "search-type",
];

/// Whole-system interactions. `search-system` and `history-system` are not implemented.
const SYSTEM_INTERACTIONS: &[&str] = &["batch", "transaction"];

fn resource_entry(resource_type: &str) -> Value {
    let interactions: Vec<Value> = TYPE_INTERACTIONS
        .iter()
        .filter(|&&code| code != "create" || !SERVER_CREATED_TYPES.contains(&resource_type))
        .map(|code| json!({"code": code}))
        .collect();

    // Only parameters whose type the search engine indexes; the others are rejected when used.
    let search_params: Vec<Value> = params_of(resource_type)
        .iter()
        .filter(|param| param.kind.is_supported())
        .map(|param| json!({"name": param.code, "type": param.kind.name()}))
        .collect();

    json!({
        "type": resource_type,
        "interaction": interactions,
        "versioning": "versioned",
        "readHistory": true,
        "updateCreate": false,
        "conditionalCreate": true,
        "conditionalRead": "not-supported",
        "conditionalUpdate": true,
        "conditionalDelete": "single",
        "searchParam": search_params,
    })
}

impl Services {
    /// Builds the server's CapabilityStatement. It depends on nothing but the build and the
    /// configured base URL, so it needs no authentication.
    pub fn fhir_capability_statement(&self) -> Value {
        let resources: Vec<Value> = SUPPORTED_TYPES
            .iter()
            .map(|resource_type| resource_entry(resource_type))
            .collect();
        let system_interactions: Vec<Value> = SYSTEM_INTERACTIONS
            .iter()
            .map(|code| json!({"code": code}))
            .collect();
        json!({
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": fhir_instant(self.now()),
            "kind": "instance",
            "software": {"name": "medgate", "version": env!("CARGO_PKG_VERSION")},
            "implementation": {
                "description": "medgate FHIR R4 server",
                "url": self.config.url("fhir/R4"),
            },
            "fhirVersion": "4.0.1",
            "format": ["application/fhir+json", "json"],
            "patchFormat": ["application/json-patch+json"],
            "rest": [{
                "mode": "server",
                "security": {
                    "service": [{
                        "coding": [{
                            "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                            "code": "SMART-on-FHIR",
                        }],
                    }],
                },
                "resource": resources,
                "interaction": system_interactions,
            }],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patient_lists_interactions_and_parameters() {
        let entry = resource_entry("Patient");
        let codes: Vec<&str> = entry["interaction"]
            .as_array()
            .unwrap()
            .iter()
            .map(|interaction| interaction["code"].as_str().unwrap())
            .collect();
        assert_eq!(codes, TYPE_INTERACTIONS);
        let names: Vec<&str> = entry["searchParam"]
            .as_array()
            .unwrap()
            .iter()
            .map(|param| param["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"name"), "{names:?}");
        assert!(names.contains(&"_id"), "{names:?}");
    }

    #[test]
    fn server_created_types_have_no_create() {
        let entry = resource_entry("Login");
        assert!(
            !entry["interaction"]
                .as_array()
                .unwrap()
                .iter()
                .any(|interaction| interaction["code"] == "create")
        );
    }
}
