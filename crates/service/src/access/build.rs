//! Building the effective policy of a membership from the policies it names, as Medplum's
//! `buildAccessPolicy` does: parameters bound per source policy, entries concatenated in
//! order, `readonly` expanded to the read interactions, the last `compartment` kept, IP rules
//! concatenated, the legacy open policy for a membership without any, and read access to
//! `SearchParameter` and `StructureDefinition` unless a policy names them.

use medgate_fhir::Reference;
use medgate_fhir::fhirpath;
use serde::Deserialize;
use serde_json::Value;

use super::criteria::{Criteria, substitute_text};
use super::ip::IpAccessRule;
use super::{DEFAULT_READ_ONLY_TYPES, EffectivePolicy, Interaction, PolicyEntry};

/// Medplum's text for a membership whose policy cannot be read or used.
pub const INVALID_POLICY_MESSAGE: &str = "Cannot authenticate: Invalid access policy configuration. Please contact your administrator to update your project membership.";

/// The value of a policy parameter (`ProjectMembership.access.parameter`).
#[derive(Debug, Clone, PartialEq)]
pub enum ParameterValue {
    String(String),
    /// A literal reference, `Type/id`.
    Reference(String),
}

impl ParameterValue {
    /// The value as `%name` replaces it.
    pub fn full(&self) -> &str {
        match self {
            Self::String(text) | Self::Reference(text) => text,
        }
    }

    /// The value as `%name.id` replaces it: the id part of a reference.
    pub fn id(&self) -> &str {
        match self {
            Self::String(text) => text,
            Self::Reference(reference) => reference.rsplit('/').next().unwrap_or(reference),
        }
    }
}

/// One named parameter.
pub type Parameter = (String, ParameterValue);

/// One policy a membership names, already read, with the parameters of its `access` entry.
#[derive(Debug, Clone)]
pub struct PolicySource {
    pub reference: Reference,
    pub policy: Value,
    pub parameters: Vec<Parameter>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredPolicy {
    #[serde(default)]
    compartment: Option<Reference>,
    #[serde(default)]
    resource: Vec<StoredEntry>,
    #[serde(default)]
    ip_access_rule: Vec<IpAccessRule>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredEntry {
    resource_type: String,
    #[serde(default)]
    compartment: Option<Reference>,
    #[serde(default)]
    criteria: Option<String>,
    #[serde(default)]
    readonly: Option<bool>,
    #[serde(default)]
    interaction: Option<Vec<String>>,
    #[serde(default)]
    hidden_fields: Vec<String>,
    #[serde(default)]
    readonly_fields: Vec<String>,
    /// `writeCriteria` is the name of an earlier schema.
    #[serde(default, alias = "writeCriteria")]
    write_constraint: Vec<StoredExpression>,
}

#[derive(Debug, Deserialize)]
struct StoredExpression {
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    expression: Option<String>,
}

/// Parses `ProjectMembership.access[].parameter[]`: each needs a `name` and a
/// `valueString` or a `valueReference`.
pub fn parse_parameters(parameters: Option<&Value>) -> Result<Vec<Parameter>, String> {
    let Some(parameters) = parameters else {
        return Ok(Vec::new());
    };
    let Some(items) = parameters.as_array() else {
        return Err("access.parameter must be an array".to_string());
    };
    items
        .iter()
        .map(|item| {
            let name = item
                .get("name")
                .and_then(Value::as_str)
                .filter(|name| !name.is_empty())
                .ok_or("access.parameter.name is missing")?;
            if let Some(text) = item.get("valueString").and_then(Value::as_str) {
                return Ok((name.to_string(), ParameterValue::String(text.to_string())));
            }
            if let Some(reference) = item
                .get("valueReference")
                .and_then(|value| value.get("reference"))
                .and_then(Value::as_str)
            {
                return Ok((
                    name.to_string(),
                    ParameterValue::Reference(reference.to_string()),
                ));
            }
            Err(format!(
                "access.parameter {name} needs valueString or valueReference"
            ))
        })
        .collect()
}

/// The bindings of one source: its own parameters, then `%profile`, then `%patient`, which
/// defaults to the profile as in Medplum.
fn bindings_of(source: &PolicySource, profile: &Reference) -> Vec<Parameter> {
    let mut bindings = source.parameters.clone();
    let profile = ParameterValue::Reference(profile.reference.clone());
    if !bindings.iter().any(|(name, _)| name == "profile") {
        bindings.push(("profile".to_string(), profile.clone()));
    }
    if !bindings.iter().any(|(name, _)| name == "patient") {
        bindings.push(("patient".to_string(), profile));
    }
    bindings
}

fn bind_reference(reference: &Reference, bindings: &[Parameter]) -> Reference {
    Reference {
        reference: substitute_text(&reference.reference, bindings),
        display: reference.display.clone(),
    }
}

fn build_entry(raw: StoredEntry, bindings: &[Parameter]) -> Result<PolicyEntry, String> {
    let resource_type = raw.resource_type;
    if resource_type.is_empty() {
        return Err("resource.resourceType is missing".to_string());
    }

    // interaction wins over readonly, as in Medplum.
    let interactions = match (raw.interaction, raw.readonly) {
        (Some(codes), _) => Some(
            codes
                .iter()
                .map(|code| {
                    Interaction::parse(code)
                        .ok_or_else(|| format!("unknown interaction {code:?} for {resource_type}"))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        (None, Some(true)) => Some(Interaction::READ.to_vec()),
        (None, _) => None,
    };

    let criteria = match raw.criteria {
        Some(text) => {
            let criteria = Criteria::parse(&text, &resource_type)?.bind(bindings);
            // Concrete types are checked now; `*` criteria are checked per searched type.
            if resource_type != "*" {
                criteria.filters(&resource_type)?;
            }
            vec![criteria]
        }
        None => Vec::new(),
    };

    let write_constraints = raw
        .write_constraint
        .into_iter()
        .map(|constraint| match (constraint.language.as_deref(), constraint.expression) {
            (Some("text/fhirpath") | None, Some(expression)) => {
                fhirpath::parse(&expression).map_err(|error| {
                    format!("writeConstraint {expression:?} of {resource_type}: {error}")
                })?;
                Ok(expression)
            }
            (language, _) => Err(format!(
                "writeConstraint of {resource_type} needs a text/fhirpath expression, not {language:?}"
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;

    Ok(PolicyEntry {
        interactions,
        criteria,
        compartment: raw
            .compartment
            .map(|compartment| bind_reference(&compartment, bindings)),
        hidden_fields: raw.hidden_fields,
        readonly_fields: raw.readonly_fields,
        readonly_settable_on_create: false,
        write_constraints,
        variables: Criteria::variables(bindings),
        resource_type,
    })
}

/// Builds the effective policy of a membership whose profile is `profile` from the policies
/// it names, in order. Returns why a policy cannot be used, for the log.
pub fn build_policy(
    profile: &Reference,
    sources: &[PolicySource],
) -> Result<EffectivePolicy, String> {
    let mut policy = EffectivePolicy::default();
    for source in sources {
        let bindings = bindings_of(source, profile);
        let stored: StoredPolicy = serde_json::from_value(source.policy.clone())
            .map_err(|error| format!("{}: {error}", source.reference.reference))?;
        for raw in stored.resource {
            let entry = build_entry(raw, &bindings)
                .map_err(|error| format!("{}: {error}", source.reference.reference))?;
            policy.entries.push(entry);
        }
        if let Some(compartment) = stored.compartment {
            policy.compartment = Some(bind_reference(&compartment, &bindings));
        }
        policy.ip_rules.extend(stored.ip_access_rule);
        policy.based_on.push(source.reference.clone());
    }

    // Legacy open policy: a membership that names no policy reaches every ordinary type.
    if sources.is_empty() {
        policy.entries.push(PolicyEntry::unrestricted("*"));
    }

    for resource_type in DEFAULT_READ_ONLY_TYPES {
        if !policy
            .entries
            .iter()
            .any(|entry| entry.resource_type == *resource_type)
        {
            policy.entries.push(PolicyEntry::read_only(resource_type));
        }
    }
    Ok(policy)
}

/// Checks an AccessPolicy resource before it is stored, so that a policy that could never
/// be used is rejected with the reason instead of locking its members out later.
pub fn validate_policy_resource(policy: &Value) -> Result<(), String> {
    let source = PolicySource {
        reference: Reference::new("AccessPolicy", "new"),
        policy: policy.clone(),
        parameters: Vec::new(),
    };
    build_policy(&Reference::new("Practitioner", "validation"), &[source]).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn source(id: &str, policy: Value, parameters: Vec<Parameter>) -> PolicySource {
        PolicySource {
            reference: Reference::new("AccessPolicy", id),
            policy,
            parameters,
        }
    }

    fn profile() -> Reference {
        Reference::new("Patient", "pt1")
    }

    #[test]
    fn no_policy_is_open_with_read_only_defaults() {
        let policy = build_policy(&profile(), &[]).unwrap();
        let types: Vec<_> = policy
            .entries
            .iter()
            .map(|e| e.resource_type.as_str())
            .collect();
        assert_eq!(types, ["*", "SearchParameter", "StructureDefinition"]);
        assert_eq!(policy.entries[0].interactions, None);
        assert_eq!(
            policy.entries[1].interactions,
            Some(Interaction::READ.to_vec())
        );
    }

    #[test]
    fn readonly_expands_unless_interaction_given() {
        let policy = json!({"resource": [
            {"resourceType": "Patient", "readonly": true},
            {"resourceType": "Observation", "readonly": true, "interaction": ["create"]}
        ]});
        let built = build_policy(&profile(), &[source("a", policy, vec![])]).unwrap();
        assert_eq!(
            built.entries[0].interactions,
            Some(Interaction::READ.to_vec())
        );
        assert_eq!(
            built.entries[1].interactions,
            Some(vec![Interaction::Create])
        );
    }

    #[test]
    fn named_default_type_is_not_added_again() {
        let policy = json!({"resource": [{"resourceType": "StructureDefinition"}]});
        let built = build_policy(&profile(), &[source("a", policy, vec![])]).unwrap();
        let count = built
            .entries
            .iter()
            .filter(|e| e.resource_type == "StructureDefinition")
            .count();
        assert_eq!(count, 1);
        assert_eq!(built.entries[0].interactions, None);
    }

    #[test]
    fn merge_order_compartment_ip_rules() {
        let first = json!({"compartment": {"reference": "Organization/a"},
            "resource": [{"resourceType": "Patient"}],
            "ipAccessRule": [{"value": "10.0.", "action": "block"}]});
        let second = json!({"compartment": {"reference": "%patient"},
            "resource": [{"resourceType": "Practitioner"}],
            "ipAccessRule": [{"value": "*", "action": "allow"}]});
        let built = build_policy(
            &profile(),
            &[source("a", first, vec![]), source("b", second, vec![])],
        )
        .unwrap();
        assert_eq!(built.entries[0].resource_type, "Patient");
        assert_eq!(built.entries[1].resource_type, "Practitioner");
        assert_eq!(
            built.compartment,
            Some(Reference::new("Patient", "pt1")),
            "the last compartment, with %patient bound to the profile"
        );
        assert_eq!(built.ip_rules.len(), 2);
        assert_eq!(
            built.based_on,
            vec![
                Reference::new("AccessPolicy", "a"),
                Reference::new("AccessPolicy", "b")
            ]
        );
    }

    #[test]
    fn parameters_bind_per_source() {
        let policy = json!({"resource": [{"resourceType": "Patient",
            "criteria": "Patient?identifier=%org"}]});
        let built = build_policy(
            &profile(),
            &[
                source(
                    "a",
                    policy.clone(),
                    vec![(
                        "org".into(),
                        ParameterValue::Reference("Organization/a".into()),
                    )],
                ),
                source(
                    "a",
                    policy,
                    vec![(
                        "org".into(),
                        ParameterValue::Reference("Organization/b".into()),
                    )],
                ),
            ],
        )
        .unwrap();
        let first = built.entries[0].criteria[0].filters("Patient").unwrap();
        let second = built.entries[1].criteria[0].filters("Patient").unwrap();
        assert_ne!(first, second);
        assert_eq!(built.entries[0].variables["org"], "Organization/a");
    }

    #[test]
    fn patient_parameter_overrides_profile_default() {
        let policy = json!({"resource": [{"resourceType": "Patient",
            "criteria": "Patient?_id=%patient.id"}]});
        let parameters = vec![(
            "patient".to_string(),
            ParameterValue::Reference("Patient/other".into()),
        )];
        let built = build_policy(
            &Reference::new("Practitioner", "pr1"),
            &[source("a", policy, parameters)],
        )
        .unwrap();
        assert_eq!(built.entries[0].criteria[0].display(), "Patient?_id=other");
    }

    #[test]
    fn unusable_policies_are_rejected() {
        for policy in [
            json!({"resource": [{"resourceType": "Patient", "interaction": ["destroy"]}]}),
            json!({"resource": [{"resourceType": "Patient", "criteria": "Patient?organization.name=x"}]}),
            json!({"resource": [{"resourceType": "Patient", "criteria": "Patient?shoe-size=9"}]}),
            json!({"resource": [{"resourceType": "Patient", "writeConstraint": [{"language": "text/cql", "expression": "x"}]}]}),
            json!({"resource": "Patient"}),
            json!({"resource": [{"resourceType": "Patient", "writeConstraint": [{"language": "text/fhirpath", "expression": "status = "}]}]}),
        ] {
            assert!(validate_policy_resource(&policy).is_err(), "{policy}");
        }
    }

    #[test]
    fn parameters_parse() {
        let parameters = json!([
            {"name": "org", "valueReference": {"reference": "Organization/a"}},
            {"name": "state", "valueString": "TX"}
        ]);
        let parsed = parse_parameters(Some(&parameters)).unwrap();
        assert_eq!(parsed[0].1.id(), "a");
        assert_eq!(parsed[1].1.full(), "TX");
        assert!(parse_parameters(Some(&json!([{"name": "x"}]))).is_err());
    }
}
