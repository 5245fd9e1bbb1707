//! Which writes a `Subscription` fires on, and the Medplum extensions it reads.

use medgate_fhir::search::{SearchRequest, matches};
use serde_json::Value;

/// HMAC-SHA256 key for the `X-Signature` header of each delivery (`valueString`).
pub const SECRET_EXTENSION: &str =
    "https://www.medplum.com/fhir/StructureDefinition/subscription-secret";
/// Delivery attempts before giving up (`valueInteger`).
pub const MAX_ATTEMPTS_EXTENSION: &str =
    "https://medplum.com/fhir/StructureDefinition/subscription-max-attempts";
/// Restricts firing to `create` or `update` (`valueCode`); without it both fire.
pub const INTERACTION_EXTENSION: &str =
    "https://medplum.com/fhir/StructureDefinition/subscription-supported-interaction";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interaction {
    Create,
    Update,
}

impl Interaction {
    fn code(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
        }
    }
}

/// The value of a top-level extension of the subscription.
pub fn extension<'a>(subscription: &'a Value, url: &str, value_key: &str) -> Option<&'a Value> {
    subscription
        .get("extension")?
        .as_array()?
        .iter()
        .find(|extension| extension.get("url").and_then(Value::as_str) == Some(url))?
        .get(value_key)
}

/// Checks whether an active rest-hook subscription fires on this write of `resource`.
/// Criteria that do not parse as a search over one type never match, so a mistyped
/// subscription stays silent instead of failing the write that triggered it.
pub fn fires_on(subscription: &Value, resource: &Value, interaction: Interaction) -> bool {
    if subscription.get("status").and_then(Value::as_str) != Some("active")
        || subscription["channel"]["type"].as_str() != Some("rest-hook")
        || subscription["channel"]["endpoint"]
            .as_str()
            .is_none_or(str::is_empty)
    {
        return false;
    }

    if let Some(code) =
        extension(subscription, INTERACTION_EXTENSION, "valueCode").and_then(Value::as_str)
        && code != interaction.code()
    {
        return false;
    }

    let Some(criteria) = subscription.get("criteria").and_then(Value::as_str) else {
        return false;
    };
    let (resource_type, query) = criteria.split_once('?').unwrap_or((criteria, ""));
    if resource.get("resourceType").and_then(Value::as_str) != Some(resource_type) {
        return false;
    }
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    match SearchRequest::parse(resource_type, &pairs) {
        Ok(request) => matches(resource, &request.filters),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn subscription(criteria: &str, extra: Value) -> Value {
        let mut value = json!({
            "resourceType": "Subscription",
            "status": "active",
            "criteria": criteria,
            "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:1/hook"},
        });
        if let (Some(value), Some(extra)) = (value.as_object_mut(), extra.as_object()) {
            value.extend(extra.clone());
        }
        value
    }

    #[test]
    fn type_and_filters_decide() {
        let membership = json!({"resourceType": "ProjectMembership", "admin": true,
            "user": {"reference": "User/1"}});
        let request = json!({"resourceType": "UserSecurityRequest", "type": "invite",
            "user": {"reference": "User/1"}});
        let by_type = subscription("UserSecurityRequest", json!({}));
        assert!(fires_on(&by_type, &request, Interaction::Create));
        assert!(!fires_on(&by_type, &membership, Interaction::Create));

        let by_user = subscription("ProjectMembership?user=User/1", json!({}));
        assert!(fires_on(&by_user, &membership, Interaction::Update));
        let other_user = subscription("ProjectMembership?user=User/2", json!({}));
        assert!(!fires_on(&other_user, &membership, Interaction::Update));
    }

    #[test]
    fn inactive_or_other_channels_do_not_fire() {
        let patient = json!({"resourceType": "Patient"});
        let off = subscription("Patient", json!({"status": "off"}));
        assert!(!fires_on(&off, &patient, Interaction::Create));
        let websocket = subscription(
            "Patient",
            json!({"channel": {"type": "websocket", "endpoint": "x"}}),
        );
        assert!(!fires_on(&websocket, &patient, Interaction::Create));
        let unparsable = subscription("Patient?no-such-param=1", json!({}));
        assert!(!fires_on(&unparsable, &patient, Interaction::Create));
    }

    #[test]
    fn interaction_extension_limits_firing() {
        let patient = json!({"resourceType": "Patient"});
        let create_only = subscription(
            "Patient",
            json!({"extension": [{"url": INTERACTION_EXTENSION, "valueCode": "create"}]}),
        );
        assert!(fires_on(&create_only, &patient, Interaction::Create));
        assert!(!fires_on(&create_only, &patient, Interaction::Update));
    }
}
