//! Patient compartments (FHIR R4 "Compartments"): a resource belongs to the compartment of
//! each Patient that one of its compartment parameters refers to, as the CompartmentDefinition
//! "patient" lists them, and a Patient belongs to its own.

use serde_json::Value;

use super::definitions::{compartment_params, find_param};
use super::extract::{IndexValue, param_values};

/// Returns the `Patient/<id>` references of the compartments `resource` belongs to, in the
/// order of the CompartmentDefinition's parameters, without duplicates.
pub fn patient_compartment(resource: &Value) -> Vec<String> {
    let Some(resource_type) = resource.get("resourceType").and_then(Value::as_str) else {
        return Vec::new();
    };
    let mut values = Vec::new();
    for code in compartment_params(resource_type) {
        if let Some(param) = find_param(resource_type, code) {
            values.extend(param_values(param, resource));
        }
    }
    compartment_of(resource_type, resource, &values)
}

/// Picks the Patient references among the already extracted `values` of a resource.
pub(super) fn compartment_of(
    resource_type: &str,
    resource: &Value,
    values: &[IndexValue],
) -> Vec<String> {
    let mut patients = Vec::new();
    if resource_type == "Patient"
        && let Some(id) = resource.get("id").and_then(Value::as_str)
    {
        patients.push(format!("Patient/{id}"));
    }
    for code in compartment_params(resource_type) {
        for value in values.iter().filter(|value| value.code == code) {
            let is_patient = value
                .value
                .strip_prefix("Patient/")
                .is_some_and(|id| !id.is_empty() && !id.contains('/'));
            if is_patient && !patients.contains(&value.value) {
                patients.push(value.value.clone());
            }
        }
    }
    patients
}
