//! SMART on FHIR scopes (App Launch 1.0 and 2.0) as a narrowing of the access policy:
//! `context/Type.permissions[?query]`, where context is `patient`, `user` or `system`, the type
//! is a resource type or `*`, and the permissions are v1 `read`, `write` or `*`, or v2 letters
//! from `cruds` in that order.
//!
//! Stricter than Medplum, which treats every scope with a write letter as full access and
//! ignores the context: here each letter allows its own interactions (`c` create, `r` read,
//! vread and history, `u` update, `d` delete, `s` search), and a `patient/` scope reaches only
//! the patient in context.

use medgate_fhir::Reference;

use super::criteria::Criteria;
use super::{EffectivePolicy, Interaction, PolicyEntry, is_project_admin_type, is_protected_type};

/// Who a scope speaks for (SMART App Launch, "Scopes for requesting clinical data").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeContext {
    Patient,
    User,
    System,
}

/// One SMART resource scope.
#[derive(Debug, Clone, PartialEq)]
pub struct SmartScope {
    pub context: ScopeContext,
    /// A resource type or `*`.
    pub resource_type: String,
    pub interactions: Vec<Interaction>,
    /// The `?query` that narrows the scope, without the `?`.
    pub query: Option<String>,
}

fn letters_to_interactions(letters: &str) -> Option<Vec<Interaction>> {
    // v2 letters appear in the order c, r, u, d, s, each at most once.
    let mut last = None;
    let mut interactions = Vec::new();
    for letter in letters.chars() {
        let position = "cruds".find(letter)?;
        if last.is_some_and(|last| position <= last) {
            return None;
        }
        last = Some(position);
        match letter {
            'c' => interactions.push(Interaction::Create),
            'r' => {
                interactions.extend([Interaction::Read, Interaction::Vread, Interaction::History])
            }
            'u' => interactions.push(Interaction::Update),
            'd' => interactions.push(Interaction::Delete),
            _ => interactions.push(Interaction::Search),
        }
    }
    (!interactions.is_empty()).then_some(interactions)
}

fn parse_scope(term: &str) -> Option<SmartScope> {
    let (context, rest) = term.split_once('/')?;
    let context = match context {
        "patient" => ScopeContext::Patient,
        "user" => ScopeContext::User,
        "system" => ScopeContext::System,
        _ => return None,
    };
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query.to_string())),
        None => (rest, None),
    };
    let (resource_type, permissions) = rest.split_once('.')?;
    let is_type = resource_type == "*" || resource_type.chars().all(|c| c.is_ascii_alphanumeric());
    if resource_type.is_empty() || !is_type {
        return None;
    }
    let letters = match permissions {
        "read" => "rs",
        "write" => "cud",
        "*" => "cruds",
        letters => letters,
    };
    Some(SmartScope {
        context,
        resource_type: resource_type.to_string(),
        interactions: letters_to_interactions(letters)?,
        query,
    })
}

/// Parses the SMART resource scopes of a space-separated scope string; other scopes
/// (`openid`, `offline_access`, `launch/patient`, …) are ignored.
pub fn parse_smart_scopes(scope: &str) -> Vec<SmartScope> {
    scope.split_whitespace().filter_map(parse_scope).collect()
}

/// The criteria that limit a `patient/` scope to one patient: the Patient itself, or the
/// resources in its compartment.
fn patient_criteria(resource_type: &str, patient: &Reference) -> Result<Criteria, String> {
    let encode = |value: &str| -> String {
        url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
    };
    let text = match (resource_type, patient.id()) {
        ("Patient", Some(id)) => format!("Patient?_id={}", encode(id)),
        _ => format!(
            "{resource_type}?_compartment={}",
            encode(&patient.reference)
        ),
    };
    Criteria::parse(&text, resource_type)
}

/// Merges one policy entry with one scope, or returns `None` when they share no type or no
/// interaction.
fn merge(
    entry: &PolicyEntry,
    scope: &SmartScope,
    patient: Option<&Reference>,
) -> Result<Option<PolicyEntry>, String> {
    let resource_type = match (entry.resource_type.as_str(), scope.resource_type.as_str()) {
        (entry_type, scope_type) if entry_type == scope_type => entry_type,
        (entry_type, "*") => entry_type,
        // A `*` entry never reaches administration or protected types, through a scope
        // neither.
        ("*", scope_type)
            if !is_project_admin_type(scope_type) && !is_protected_type(scope_type) =>
        {
            scope_type
        }
        _ => return Ok(None),
    };

    let interactions: Vec<Interaction> = scope
        .interactions
        .iter()
        .copied()
        .filter(|interaction| {
            entry
                .interactions
                .as_ref()
                .is_none_or(|allowed| allowed.contains(interaction))
        })
        .collect();
    if interactions.is_empty() {
        return Ok(None);
    }

    let mut merged = entry.clone();
    merged.resource_type = resource_type.to_string();
    merged.interactions = Some(interactions);
    merged.criteria = merged
        .criteria
        .into_iter()
        .map(|criteria| criteria.retyped(resource_type))
        .collect();
    if let Some(query) = &scope.query {
        if resource_type == "*" {
            return Err(format!(
                "scope {}/*.{} cannot have a query",
                context_name(scope.context),
                scope.resource_type
            ));
        }
        merged
            .criteria
            .push(Criteria::from_scope_query(resource_type, query)?);
    }
    if scope.context == ScopeContext::Patient {
        // Without a patient in context a patient scope reaches nothing.
        let Some(patient) = patient else {
            return Ok(None);
        };
        merged
            .criteria
            .push(patient_criteria(resource_type, patient)?);
    }
    Ok(Some(merged))
}

fn context_name(context: ScopeContext) -> &'static str {
    match context {
        ScopeContext::Patient => "patient",
        ScopeContext::User => "user",
        ScopeContext::System => "system",
    }
}

/// Narrows the policy to what the scopes allow: every entry is intersected with every scope
/// that shares its type, and the results are merged by union. Without SMART scopes the
/// policy is unchanged. `patient` is the patient in context for `patient/` scopes.
pub(super) fn apply_scopes(
    policy: &mut EffectivePolicy,
    scopes: &[SmartScope],
    patient: Option<&Reference>,
) -> Result<(), String> {
    if scopes.is_empty() {
        return Ok(());
    }
    let mut entries = Vec::new();
    for entry in &policy.entries {
        for scope in scopes {
            if let Some(merged) = merge(entry, scope, patient)? {
                entries.push(merged);
            }
        }
    }
    policy.entries = entries;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(entries: Vec<PolicyEntry>) -> EffectivePolicy {
        EffectivePolicy {
            entries,
            ..Default::default()
        }
    }

    #[test]
    fn parse_v1_and_v2_scopes() {
        let scopes = parse_smart_scopes(
            "openid patient/Observation.read user/*.cud system/Patient.rs?name=x launch",
        );
        assert_eq!(scopes.len(), 3);
        assert_eq!(scopes[0].context, ScopeContext::Patient);
        assert_eq!(
            scopes[0].interactions,
            vec![
                Interaction::Read,
                Interaction::Vread,
                Interaction::History,
                Interaction::Search
            ]
        );
        assert_eq!(scopes[1].resource_type, "*");
        assert_eq!(
            scopes[1].interactions,
            vec![
                Interaction::Create,
                Interaction::Update,
                Interaction::Delete
            ]
        );
        assert_eq!(scopes[2].query.as_deref(), Some("name=x"));
    }

    #[test]
    fn malformed_scopes_are_ignored() {
        for scope in [
            "user/Patient.sr",
            "user/Patient.rr",
            "user/Patient.x",
            "admin/Patient.read",
            "user/.read",
            "user/Patient",
        ] {
            assert!(parse_smart_scopes(scope).is_empty(), "{scope}");
        }
    }

    #[test]
    fn each_letter_is_enforced() {
        let mut narrowed = policy(vec![PolicyEntry::unrestricted("*")]);
        apply_scopes(
            &mut narrowed,
            &parse_smart_scopes("user/Observation.c"),
            None,
        )
        .unwrap();
        let entry = &narrowed.entries[0];
        assert_eq!(entry.resource_type, "Observation");
        assert!(entry.allows("Observation", Interaction::Create));
        assert!(!entry.allows("Observation", Interaction::Read));
        assert!(!entry.allows("Observation", Interaction::Update));
        assert!(!entry.allows("Patient", Interaction::Create));
    }

    #[test]
    fn read_scope_narrows_explicit_interactions() {
        let mut narrowed = policy(vec![PolicyEntry {
            interactions: Some(vec![Interaction::Create, Interaction::Read]),
            ..PolicyEntry::unrestricted("Patient")
        }]);
        apply_scopes(&mut narrowed, &parse_smart_scopes("user/Patient.rs"), None).unwrap();
        assert_eq!(
            narrowed.entries[0].interactions,
            Some(vec![Interaction::Read])
        );
    }

    #[test]
    fn scope_query_is_appended() {
        let mut narrowed = policy(vec![PolicyEntry::unrestricted("Patient")]);
        apply_scopes(
            &mut narrowed,
            &parse_smart_scopes("user/Patient.rs?gender=female"),
            None,
        )
        .unwrap();
        assert_eq!(
            narrowed.entries[0].criteria[0].display(),
            "Patient?gender=female"
        );
    }

    #[test]
    fn patient_scope_limits_to_patient_in_context() {
        let patient = Reference::new("Patient", "pt1");
        let mut narrowed = policy(vec![PolicyEntry::unrestricted("*")]);
        apply_scopes(
            &mut narrowed,
            &parse_smart_scopes("patient/*.rs"),
            Some(&patient),
        )
        .unwrap();
        assert_eq!(
            narrowed.entries[0].criteria[0].display(),
            "*?_compartment=Patient%2Fpt1"
        );

        let mut without_patient = policy(vec![PolicyEntry::unrestricted("*")]);
        apply_scopes(
            &mut without_patient,
            &parse_smart_scopes("patient/*.rs"),
            None,
        )
        .unwrap();
        assert!(without_patient.entries.is_empty());
    }

    #[test]
    fn unrelated_entries_are_dropped() {
        let mut narrowed = policy(vec![
            PolicyEntry::unrestricted("Patient"),
            PolicyEntry::unrestricted("Practitioner"),
        ]);
        apply_scopes(&mut narrowed, &parse_smart_scopes("user/Patient.*"), None).unwrap();
        assert_eq!(narrowed.entries.len(), 1);
        assert_eq!(narrowed.entries[0].resource_type, "Patient");
    }

    #[test]
    fn wildcard_scope_skips_admin_types() {
        let mut narrowed = policy(vec![PolicyEntry::unrestricted("*")]);
        apply_scopes(
            &mut narrowed,
            &parse_smart_scopes("user/ProjectMembership.rs user/Login.rs"),
            None,
        )
        .unwrap();
        assert!(narrowed.entries.is_empty());
    }
}
