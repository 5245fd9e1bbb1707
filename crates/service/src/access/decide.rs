//! Access decisions for one request: whether a type and interaction are allowed at all
//! (Medplum's shallow match), which stored resources a search may return, whether one
//! resource is within reach (the deep match), which fields a response hides, and what a
//! write may change.

use medgate_fhir::fhirpath::{self, Variables};
use medgate_fhir::search::{Filter, FilterOp, Restriction, matches};
use serde_json::Value;
use tracing::warn;

use super::build::INVALID_POLICY_MESSAGE;
use super::fields::{remove_path, restore_path, values_at};
use super::{EffectivePolicy, Interaction, PolicyEntry, is_protected_type};
use crate::error::{ServiceError, ServiceResult};

/// How far the caller reaches before any policy applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    /// A member of a super-admin project: every project, every type, no policy filter.
    SuperAdmin,
    /// Anyone else, limited to their project and their policy.
    Member,
}

/// The computed access of one request.
#[derive(Debug, Clone)]
pub struct Access {
    pub principal: Principal,
    pub policy: EffectivePolicy,
}

/// `meta` fields the server assigns on every write; the write path sets them whatever the
/// request sends, so restoring them here would only fail on bodies without `meta`.
const SERVER_META_PATHS: &[&str] = &[
    "meta.versionId",
    "meta.lastUpdated",
    "meta.project",
    "meta.author",
    "meta.onBehalfOf",
    "meta.compartment",
    "meta.account",
    "meta.accounts",
];

fn is_server_meta(path: &str) -> bool {
    SERVER_META_PATHS.contains(&path)
}

fn invalid_policy(reason: &str) -> ServiceError {
    warn!(reason, "access policy cannot be applied");
    ServiceError::invalid(INVALID_POLICY_MESSAGE)
}

fn resource_type_of(resource: &Value) -> &str {
    resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Checks whether a resource lists a compartment in `meta.compartment`.
fn in_compartment(resource: &Value, compartment: &str) -> bool {
    resource
        .get("meta")
        .and_then(|meta| meta.get("compartment"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|item| item.get("reference").and_then(Value::as_str) == Some(compartment))
}

impl PolicyEntry {
    /// The conditions a stored resource of `resource_type` must meet under this entry, or
    /// an empty list when the entry does not restrict it.
    fn conditions(&self, resource_type: &str) -> Result<Vec<Filter>, String> {
        let mut filters = Vec::new();
        for criteria in &self.criteria {
            filters.extend(criteria.filters(resource_type)?);
        }
        if let Some(compartment) = &self.compartment {
            filters.push(Filter {
                code: "_compartment".to_string(),
                op: FilterOp::Equals(vec![compartment.reference.clone()]),
            });
        }
        Ok(filters)
    }

    /// Checks one resource against the entry (Medplum's deep match). A Binary needs the
    /// type-level match only, as in Medplum, where `Binary.securityContext` steers access.
    fn reaches(&self, resource: &Value, interaction: Interaction) -> Result<bool, String> {
        let resource_type = resource_type_of(resource);
        if !self.allows(resource_type, interaction) {
            return Ok(false);
        }
        if resource_type == "Binary" {
            return Ok(true);
        }
        if let Some(compartment) = &self.compartment
            && !in_compartment(resource, &compartment.reference)
        {
            return Ok(false);
        }
        let mut filters = Vec::new();
        for criteria in &self.criteria {
            filters.extend(criteria.filters(resource_type)?);
        }
        Ok(matches(resource, &filters))
    }
}

impl Access {
    pub fn is_super_admin(&self) -> bool {
        self.principal == Principal::SuperAdmin
    }

    /// Checks the type and interaction before any resource is read. Protected types are for
    /// super admins only.
    pub fn allows_type(&self, resource_type: &str, interaction: Interaction) -> bool {
        if self.is_super_admin() {
            return true;
        }
        if is_protected_type(resource_type) {
            return false;
        }
        self.policy
            .entries
            .iter()
            .any(|entry| entry.allows(resource_type, interaction))
    }

    /// Like [`Access::allows_type`], as an error: 403 when the type is out of reach.
    pub fn check_type(&self, resource_type: &str, interaction: Interaction) -> ServiceResult<()> {
        if self.allows_type(resource_type, interaction) {
            Ok(())
        } else {
            Err(ServiceError::Forbidden)
        }
    }

    /// The condition stored resources of `resource_type` must meet to be returned by
    /// `interaction`: the alternatives of every entry that allows it, OR-ed. `None` means no
    /// condition, for super admins.
    pub fn restriction(
        &self,
        resource_type: &str,
        interaction: Interaction,
    ) -> ServiceResult<Option<Restriction>> {
        if self.is_super_admin() {
            return Ok(None);
        }
        if !self.allows_type(resource_type, interaction) {
            return Ok(Some(Restriction::Nothing));
        }
        if resource_type == "Binary" {
            return Ok(Some(Restriction::Everything));
        }
        let mut alternatives = Vec::new();
        for entry in &self.policy.entries {
            if !entry.allows(resource_type, interaction) {
                continue;
            }
            let conditions = entry
                .conditions(resource_type)
                .map_err(|reason| invalid_policy(&reason))?;
            if conditions.is_empty() {
                return Ok(Some(Restriction::Everything));
            }
            alternatives.push(conditions);
        }
        Ok(Some(if alternatives.is_empty() {
            Restriction::Nothing
        } else {
            Restriction::AnyOf(alternatives)
        }))
    }

    /// Returns the first entry that reaches `resource` for `interaction`; entry order
    /// matters, because that entry also decides the hidden and read-only fields.
    pub fn matching_entry(
        &self,
        resource: &Value,
        interaction: Interaction,
    ) -> ServiceResult<Option<&PolicyEntry>> {
        for entry in &self.policy.entries {
            if entry
                .reaches(resource, interaction)
                .map_err(|reason| invalid_policy(&reason))?
            {
                return Ok(Some(entry));
            }
        }
        Ok(None)
    }

    /// Checks that `resource` is within reach for `interaction`. Super admins reach
    /// everything.
    pub fn can(&self, resource: &Value, interaction: Interaction) -> ServiceResult<bool> {
        if self.is_super_admin() {
            return Ok(true);
        }
        if is_protected_type(resource_type_of(resource)) {
            return Ok(false);
        }
        Ok(self.matching_entry(resource, interaction)?.is_some())
    }

    /// Removes the hidden fields of the entry that reaches `resource`. They are removed for
    /// super admins too, when their policy has any, as in Medplum.
    ///
    /// A resource no entry reaches, such as an old version in a history, loses the hidden
    /// fields of every entry for its type, so no version shows what the current one hides.
    pub fn hide_fields(&self, mut resource: Value, interaction: Interaction) -> Value {
        let hidden = match self.matching_entry(&resource, interaction) {
            Ok(Some(entry)) => entry.hidden_fields.clone(),
            _ => {
                let resource_type = resource_type_of(&resource).to_string();
                self.policy
                    .entries
                    .iter()
                    .filter(|entry| {
                        Interaction::ALL
                            .iter()
                            .any(|i| entry.allows(&resource_type, *i))
                    })
                    .flat_map(|entry| entry.hidden_fields.clone())
                    .collect()
            }
        };
        for path in &hidden {
            remove_path(&mut resource, path);
        }
        resource
    }

    /// Checks a version about to be written: it must be within reach for `interaction`
    /// (create or update), and every `writeConstraint` of the entry that reaches it must
    /// evaluate to `true`, with `%before` the stored version (empty on create) and `%after`
    /// the new one. Together with the check of the stored version before an update, nobody
    /// moves a resource into or out of their criteria.
    pub fn check_write(
        &self,
        stored: Option<&Value>,
        written: &Value,
        interaction: Interaction,
    ) -> ServiceResult<()> {
        if self.is_super_admin() {
            return Ok(());
        }
        if is_protected_type(resource_type_of(written)) {
            return Err(ServiceError::Forbidden);
        }
        let Some(entry) = self.matching_entry(written, interaction)? else {
            return Err(ServiceError::Forbidden);
        };
        if entry.write_constraints.is_empty() {
            return Ok(());
        }
        let mut variables: Variables = entry
            .variables
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        variables.insert("before".to_string(), stored.cloned().unwrap_or(Value::Null));
        variables.insert("after".to_string(), written.clone());
        for expression in &entry.write_constraints {
            let parsed = fhirpath::parse(expression).map_err(|error| {
                invalid_policy(&format!("writeConstraint {expression:?}: {error}"))
            })?;
            match parsed.evaluate_bool(written, &variables) {
                Ok(Some(true)) => {}
                Ok(_) => return Err(ServiceError::Forbidden),
                Err(error) => {
                    warn!(%error, expression, "writeConstraint failed to evaluate; rejecting the write");
                    return Err(ServiceError::Forbidden);
                }
            }
        }
        Ok(())
    }

    /// Keeps a write from changing the hidden and read-only fields of the entry that reaches
    /// the stored version (or, for a create, the new resource). An update gets the stored
    /// values back; a create loses hidden fields and is rejected when it sets a read-only
    /// one. Super admins write every field.
    pub fn protect_fields(
        &self,
        stored: Option<&Value>,
        incoming: &mut Value,
    ) -> ServiceResult<()> {
        if self.is_super_admin() {
            return Ok(());
        }
        let entry = match stored {
            Some(stored) => self.matching_entry(stored, Interaction::Update)?,
            None => self.matching_entry(incoming, Interaction::Create)?,
        };
        let Some(entry) = entry else {
            return Ok(());
        };
        match stored {
            Some(stored) => {
                let protected = entry
                    .readonly_fields
                    .iter()
                    .chain(&entry.hidden_fields)
                    .filter(|path| !is_server_meta(path));
                for path in protected {
                    restore_path(incoming, stored, path).map_err(|path| {
                        ServiceError::invalid(format!(
                            "The update changes the protected field {path}, which the access policy keeps as stored; keep its array in place or leave it out"
                        ))
                    })?;
                }
            }
            None => {
                let readonly: &[String] = if entry.readonly_settable_on_create {
                    &[]
                } else {
                    &entry.readonly_fields
                };
                for path in readonly {
                    if !values_at(incoming, path).is_empty() {
                        return Err(ServiceError::invalid(format!(
                            "Field {path} is read-only under the access policy; create the resource without it"
                        )));
                    }
                }
                for path in &entry.hidden_fields {
                    remove_path(incoming, path);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::criteria::Criteria;
    use super::*;
    use serde_json::json;

    fn entry(resource_type: &str, criteria: Option<&str>) -> PolicyEntry {
        PolicyEntry {
            criteria: criteria
                .map(|text| vec![Criteria::parse(text, resource_type).unwrap()])
                .unwrap_or_default(),
            ..PolicyEntry::unrestricted(resource_type)
        }
    }

    fn member(entries: Vec<PolicyEntry>) -> Access {
        Access {
            principal: Principal::Member,
            policy: EffectivePolicy {
                entries,
                ..Default::default()
            },
        }
    }

    fn patient(id: &str, gender: &str) -> Value {
        json!({"resourceType": "Patient", "id": id, "gender": gender,
            "birthDate": "2000-01-01", "name": [{"given": ["A"], "family": "B"}]})
    }

    #[test]
    fn protected_types_only_for_super_admins() {
        let access = member(vec![entry("*", None)]);
        assert!(!access.allows_type("Login", Interaction::Read));
        assert!(!access.allows_type("JsonWebKey", Interaction::Search));
        assert!(!access.allows_type("DomainConfiguration", Interaction::Read));
        let root = Access {
            principal: Principal::SuperAdmin,
            policy: EffectivePolicy::default(),
        };
        assert!(root.allows_type("Login", Interaction::Read));
        assert_eq!(
            root.restriction("Login", Interaction::Search).unwrap(),
            None
        );
    }

    #[test]
    fn restriction_ors_entries_and_ands_criteria() {
        let access = member(vec![
            entry("Patient", Some("Patient?gender=female")),
            entry("Patient", Some("Patient?_id=p9")),
            entry("Practitioner", None),
        ]);
        let Some(Restriction::AnyOf(groups)) =
            access.restriction("Patient", Interaction::Search).unwrap()
        else {
            panic!("expected alternatives");
        };
        assert_eq!(groups.len(), 2);
        assert_eq!(
            access
                .restriction("Practitioner", Interaction::Search)
                .unwrap(),
            Some(Restriction::Everything)
        );
        assert_eq!(
            access
                .restriction("Observation", Interaction::Search)
                .unwrap(),
            Some(Restriction::Nothing)
        );
    }

    #[test]
    fn entry_without_criteria_lifts_restriction() {
        let access = member(vec![
            entry("Patient", Some("Patient?gender=female")),
            entry("Patient", None),
        ]);
        assert_eq!(
            access.restriction("Patient", Interaction::Search).unwrap(),
            Some(Restriction::Everything)
        );
    }

    #[test]
    fn deep_match_uses_criteria_and_interaction() {
        let mut read_only = entry("Patient", Some("Patient?gender=female"));
        read_only.interactions = Some(Interaction::READ.to_vec());
        let access = member(vec![read_only]);
        assert!(
            access
                .can(&patient("p1", "female"), Interaction::Read)
                .unwrap()
        );
        assert!(
            !access
                .can(&patient("p2", "male"), Interaction::Read)
                .unwrap()
        );
        assert!(
            !access
                .can(&patient("p1", "female"), Interaction::Update)
                .unwrap()
        );
    }

    #[test]
    fn compartment_entry_checks_meta_compartment() {
        let mut scoped = entry("Patient", None);
        scoped.compartment = Some(medgate_fhir::Reference::new("Organization", "o1"));
        let access = member(vec![scoped]);
        let mut inside = patient("p1", "female");
        inside["meta"] = json!({"compartment": [{"reference": "Organization/o1"}]});
        assert!(access.can(&inside, Interaction::Read).unwrap());
        assert!(
            !access
                .can(&patient("p2", "female"), Interaction::Read)
                .unwrap()
        );
        let Some(Restriction::AnyOf(groups)) =
            access.restriction("Patient", Interaction::Search).unwrap()
        else {
            panic!("expected alternatives");
        };
        assert_eq!(groups[0][0].code, "_compartment");
    }

    #[test]
    fn compartment_criteria_match_in_memory() {
        let access = member(vec![entry(
            "Patient",
            Some("Patient?_compartment=Patient/p1"),
        )]);
        let mut own = patient("p1", "female");
        own["meta"] = json!({"compartment": [{"reference": "Patient/p1"}]});
        assert!(access.can(&own, Interaction::Read).unwrap());
        assert!(
            !access
                .can(&patient("p2", "female"), Interaction::Read)
                .unwrap()
        );
    }

    #[test]
    fn binary_ignores_criteria() {
        let access = member(vec![entry("Binary", None)]);
        let binary = json!({"resourceType": "Binary", "id": "b1"});
        assert!(access.can(&binary, Interaction::Read).unwrap());
        assert_eq!(
            access.restriction("Binary", Interaction::Search).unwrap(),
            Some(Restriction::Everything)
        );
    }

    #[test]
    fn first_matching_entry_hides_fields() {
        let mut hiding = entry("Patient", Some("Patient?gender=female"));
        hiding.hidden_fields = vec!["birthDate".into(), "name.given".into()];
        let access = member(vec![hiding, entry("Patient", None)]);
        let shown = access.hide_fields(patient("p1", "female"), Interaction::Read);
        assert!(shown.get("birthDate").is_none());
        assert_eq!(shown["name"], json!([{"family": "B"}]));
        let other = access.hide_fields(patient("p2", "male"), Interaction::Read);
        assert!(other.get("birthDate").is_some());
    }

    #[test]
    fn update_restores_protected_fields() {
        let mut protecting = entry("Patient", None);
        protecting.readonly_fields = vec!["gender".into()];
        protecting.hidden_fields = vec!["birthDate".into()];
        let access = member(vec![protecting]);
        let stored = patient("p1", "female");
        let mut incoming = json!({"resourceType": "Patient", "id": "p1", "gender": "male",
            "name": [{"family": "C"}]});
        access.protect_fields(Some(&stored), &mut incoming).unwrap();
        assert_eq!(incoming["gender"], "female");
        assert_eq!(incoming["birthDate"], "2000-01-01");
        assert_eq!(incoming["name"], json!([{"family": "C"}]));
    }

    #[test]
    fn create_rejects_read_only_and_drops_hidden() {
        let mut protecting = entry("Patient", None);
        protecting.readonly_fields = vec!["gender".into()];
        protecting.hidden_fields = vec!["birthDate".into()];
        let access = member(vec![protecting]);
        let mut with_hidden = json!({"resourceType": "Patient", "birthDate": "2000-01-01"});
        access.protect_fields(None, &mut with_hidden).unwrap();
        assert!(with_hidden.get("birthDate").is_none());
        let mut with_read_only = json!({"resourceType": "Patient", "gender": "male"});
        assert!(access.protect_fields(None, &mut with_read_only).is_err());
    }

    fn observation(status: &str) -> Value {
        json!({"resourceType": "Observation", "id": "o1", "status": status,
            "code": {"text": "x"}})
    }

    #[test]
    fn write_constraint_sees_before_and_after() {
        let constrained = PolicyEntry {
            write_constraints: vec![
                "%before.exists() implies %before.status != 'final'".to_string(),
            ],
            ..PolicyEntry::unrestricted("Observation")
        };
        let access = member(vec![constrained]);
        let final_one = observation("final");
        let preliminary = observation("preliminary");
        assert!(
            access
                .check_write(None, &final_one, Interaction::Create)
                .is_ok()
        );
        assert!(matches!(
            access.check_write(Some(&final_one), &final_one, Interaction::Update),
            Err(ServiceError::Forbidden)
        ));
        assert!(
            access
                .check_write(Some(&preliminary), &final_one, Interaction::Update)
                .is_ok()
        );
    }

    #[test]
    fn write_constraint_uses_policy_variables() {
        let mut variables = serde_json::Map::new();
        variables.insert("patient".into(), json!("Patient/p1"));
        let constrained = PolicyEntry {
            write_constraints: vec!["subject.reference = %patient".to_string()],
            variables,
            ..PolicyEntry::unrestricted("Observation")
        };
        let access = member(vec![constrained]);
        let mut own = observation("final");
        own["subject"] = json!({"reference": "Patient/p1"});
        let mut other = observation("final");
        other["subject"] = json!({"reference": "Patient/p2"});
        assert!(access.check_write(None, &own, Interaction::Create).is_ok());
        assert!(
            access
                .check_write(None, &other, Interaction::Create)
                .is_err()
        );
    }

    #[test]
    fn write_outside_criteria_is_forbidden() {
        let access = member(vec![entry("Patient", Some("Patient?gender=female"))]);
        assert!(
            access
                .check_write(None, &patient("p1", "female"), Interaction::Create)
                .is_ok()
        );
        assert!(matches!(
            access.check_write(None, &patient("p1", "male"), Interaction::Create),
            Err(ServiceError::Forbidden)
        ));
    }

    #[test]
    fn star_criteria_for_unknown_parameter_is_invalid_policy() {
        let star = PolicyEntry {
            criteria: vec![Criteria::parse("*?shoe-size=9", "*").unwrap()],
            ..PolicyEntry::unrestricted("*")
        };
        let access = member(vec![star]);
        let error = access
            .restriction("Patient", Interaction::Search)
            .unwrap_err();
        assert_eq!(error.to_string(), INVALID_POLICY_MESSAGE);
    }
}
