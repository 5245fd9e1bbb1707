//! Access policies: which FHIR resources a caller may read and write.
//!
//! The effective policy of a request is built from the caller's membership (its
//! `accessPolicy` and `access[]` with their parameters), narrowed by the SMART scopes of the
//! login, and completed by the overlay for project admins, in the order Medplum applies them.
//! Several policies merge by union: an interaction is allowed when any entry allows it, and
//! the only deny rule is an IP `block`.
//!
//! Everything here is pure logic over resources already loaded, except `load`, which reads
//! the policies a membership names. Where medgate is stricter than Medplum:
//! - policy parameters are substituted as values into parsed criteria, never by rewriting the
//!   policy's JSON text, so a parameter value cannot add search parameters or alternatives;
//! - `patient/` SMART scopes limit access to the patient in context, and each scope letter
//!   (`c r u d s`) is enforced on its own;
//! - `readonlyFields` and `hiddenFields` hold for nested paths too;
//! - IP rules accept CIDR blocks, and a full address must match exactly.

mod admin;
mod build;
mod criteria;
mod decide;
mod fields;
mod ip;
mod load;
mod smart;

pub use admin::{
    DEFAULT_READ_ONLY_TYPES, PROJECT_ADMIN_TYPES, PROTECTED_TYPES, is_project_admin_type,
    is_protected_type,
};
pub use build::{
    INVALID_POLICY_MESSAGE, Parameter, ParameterValue, PolicySource, build_policy,
    parse_parameters, validate_policy_resource,
};
pub use criteria::Criteria;
pub use decide::{Access, Principal};
pub use fields::{remove_path, restore_path};
pub use ip::{IpAccessRule, IpNet, IpRuleAction, client_address, ip_allowed};
pub use smart::{ScopeContext, SmartScope, parse_smart_scopes};

use medgate_fhir::Reference;
use serde_json::{Map, Value, json};

/// FHIR REST interactions an access policy names (`AccessPolicy.resource.interaction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interaction {
    Create,
    Read,
    Update,
    Delete,
    Search,
    History,
    Vread,
}

impl Interaction {
    pub const ALL: [Self; 7] = [
        Self::Create,
        Self::Read,
        Self::Update,
        Self::Delete,
        Self::Search,
        Self::History,
        Self::Vread,
    ];

    /// The interactions a `readonly: true` entry allows, as Medplum expands it.
    pub const READ: [Self; 4] = [Self::Search, Self::Read, Self::History, Self::Vread];

    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|interaction| interaction.as_str() == code)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Read => "read",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Search => "search",
            Self::History => "history",
            Self::Vread => "vread",
        }
    }

    pub fn is_read(self) -> bool {
        Self::READ.contains(&self)
    }
}

/// One rule of an effective policy, for one resource type or `*`.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyEntry {
    /// A resource type, or `*` for every type except the project-admin and protected ones.
    pub resource_type: String,
    /// The allowed interactions; `None` allows every interaction.
    pub interactions: Option<Vec<Interaction>>,
    /// The search the resources must match, with parameters already substituted.
    pub criteria: Vec<Criteria>,
    /// The deprecated per-entry compartment: resources must list it in `meta.compartment`.
    pub compartment: Option<Reference>,
    pub hidden_fields: Vec<String>,
    pub readonly_fields: Vec<String>,
    /// Whether a create may set the read-only fields, which then only updates cannot change.
    /// The admin overlay needs this for a membership's `user` and a user's `email`; the
    /// fields of a stored policy are read-only from the start.
    pub readonly_settable_on_create: bool,
    /// FHIRPath expressions every write must satisfy, with `%before` and `%after`.
    pub write_constraints: Vec<String>,
    /// The parameters of the policy this entry came from, as FHIRPath variables.
    pub variables: Map<String, Value>,
}

impl PolicyEntry {
    /// An entry with no restriction at all for one type.
    pub fn unrestricted(resource_type: &str) -> Self {
        Self {
            resource_type: resource_type.to_string(),
            interactions: None,
            criteria: Vec::new(),
            compartment: None,
            hidden_fields: Vec::new(),
            readonly_fields: Vec::new(),
            readonly_settable_on_create: false,
            write_constraints: Vec::new(),
            variables: Map::new(),
        }
    }

    /// An unrestricted entry limited to the read interactions.
    pub fn read_only(resource_type: &str) -> Self {
        Self {
            interactions: Some(Interaction::READ.to_vec()),
            ..Self::unrestricted(resource_type)
        }
    }

    /// Checks the type and the interaction only (Medplum's shallow match). `*` never matches
    /// a project-admin or protected type.
    pub fn allows(&self, resource_type: &str, interaction: Interaction) -> bool {
        let type_matches = self.resource_type == resource_type
            || (self.resource_type == "*"
                && !is_project_admin_type(resource_type)
                && !is_protected_type(resource_type));
        type_matches
            && self
                .interactions
                .as_ref()
                .is_none_or(|allowed| allowed.contains(&interaction))
    }

    fn to_json(&self) -> Value {
        let mut entry = Map::new();
        entry.insert("resourceType".into(), json!(self.resource_type));
        if let Some(interactions) = &self.interactions {
            let codes: Vec<&str> = interactions.iter().map(|i| i.as_str()).collect();
            entry.insert("interaction".into(), json!(codes));
        }
        if !self.criteria.is_empty() {
            let texts: Vec<String> = self.criteria.iter().map(Criteria::display).collect();
            entry.insert("criteria".into(), json!(texts.join(" AND ")));
        }
        if let Some(compartment) = &self.compartment {
            entry.insert("compartment".into(), json!(compartment));
        }
        if !self.hidden_fields.is_empty() {
            entry.insert("hiddenFields".into(), json!(self.hidden_fields));
        }
        if !self.readonly_fields.is_empty() {
            entry.insert("readonlyFields".into(), json!(self.readonly_fields));
        }
        if !self.write_constraints.is_empty() {
            let expressions: Vec<Value> = self
                .write_constraints
                .iter()
                .map(|expression| json!({"language": "text/fhirpath", "expression": expression}))
                .collect();
            entry.insert("writeConstraint".into(), Value::Array(expressions));
        }
        Value::Object(entry)
    }
}

/// The policy that applies to one request: the merge of the membership's policies, narrowed
/// by SMART scopes and completed by the admin overlay.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EffectivePolicy {
    /// The source policies, in the order the membership names them.
    pub based_on: Vec<Reference>,
    /// Stamped as an account on the resources the caller creates (`meta.accounts`).
    pub compartment: Option<Reference>,
    pub entries: Vec<PolicyEntry>,
    pub ip_rules: Vec<IpAccessRule>,
}

impl EffectivePolicy {
    /// Renders the policy as an `AccessPolicy` resource, as `/auth/me` returns it.
    pub fn to_json(&self) -> Value {
        let mut policy = Map::new();
        policy.insert("resourceType".into(), json!("AccessPolicy"));
        if !self.based_on.is_empty() {
            policy.insert("basedOn".into(), json!(self.based_on));
        }
        if let Some(compartment) = &self.compartment {
            policy.insert("compartment".into(), json!(compartment));
        }
        let entries: Vec<Value> = self.entries.iter().map(PolicyEntry::to_json).collect();
        policy.insert("resource".into(), Value::Array(entries));
        if !self.ip_rules.is_empty() {
            policy.insert("ipAccessRule".into(), json!(self.ip_rules));
        }
        Value::Object(policy)
    }
}
