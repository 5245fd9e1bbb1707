//! The OpenID Connect UserInfo endpoint (OpenID Connect Core 1.0 §5.3), with Medplum's claims
//! taken from the caller's profile resource.
//!
//! medgate's `sub` is the User id, the `sub` of the ID token and the access token, as OpenID
//! Connect Core §5.3.2 requires. Medplum returns the profile id instead.

use chrono::DateTime;
use medgate_fhir::resources::User;
use serde_json::{Map, Value, json};

use crate::Services;
use crate::error::{ServiceError, ServiceResult};
use crate::session::AuthContext;
use crate::tokens::has_scope;

impl Services {
    /// Builds the UserInfo claims of the caller, one group per granted scope (OpenID Connect
    /// Core §5.4): `profile`, `email`, `phone` and `address`. With `openid` alone, only `sub`.
    pub async fn user_info(&self, auth: &AuthContext) -> ServiceResult<Value> {
        let subject = auth.login.user.id().ok_or_else(|| {
            ServiceError::Internal(format!("login {} has no user id", auth.login.id))
        })?;
        // The token's own scope: a later change of the login's scope does not widen it.
        let scope = auth
            .claims
            .get("scope")
            .and_then(Value::as_str)
            .unwrap_or(auth.login.scope.as_str());

        let mut claims = Map::new();
        claims.insert("sub".to_string(), json!(subject));
        let wants = |item: &str| has_scope(scope, item);
        if !(wants("profile") || wants("email") || wants("phone") || wants("address")) {
            return Ok(Value::Object(claims));
        }

        let profile = self.read_profile(&auth.membership.profile).await?;
        if wants("profile") {
            profile_claims(&mut claims, &auth.membership.profile.reference, &profile);
        }
        if wants("email") {
            let email = first_telecom(&profile, "email");
            let user = match auth.login.user.resource_type() {
                Some("User") => Some(self.repo.read_reference::<User>(&auth.login.user).await?),
                _ => None,
            };
            // Verified only when the profile's address is the one the account proved.
            let verified = match (&email, &user) {
                (Some(email), Some(user)) => {
                    user.email_verified == Some(true)
                        && user
                            .email
                            .as_deref()
                            .is_some_and(|known| known.eq_ignore_ascii_case(email))
                }
                _ => false,
            };
            if let Some(email) = email {
                claims.insert("email".to_string(), json!(email));
            }
            claims.insert("email_verified".to_string(), json!(verified));
        }
        if wants("phone") {
            if let Some(phone) = first_telecom(&profile, "phone") {
                claims.insert("phone_number".to_string(), json!(phone));
            }
            claims.insert("phone_number_verified".to_string(), json!(false));
        }
        if wants("address")
            && let Some(address) = profile
                .get("address")
                .and_then(Value::as_array)
                .and_then(|addresses| addresses.first())
        {
            claims.insert(
                "address".to_string(),
                json!({"formatted": format_address(address)}),
            );
        }
        Ok(Value::Object(claims))
    }
}

/// Adds the `profile` scope's claims as Medplum fills them: the name from the first
/// HumanName, the profile reference, and empty strings for what a FHIR profile does not record.
fn profile_claims(claims: &mut Map<String, Value>, reference: &str, profile: &Value) {
    let name = profile
        .get("name")
        .and_then(Value::as_array)
        .and_then(|names| names.first());
    let given = name
        .and_then(|name| name.get("given"))
        .and_then(Value::as_array)
        .map(|given| strings(given).join(" "))
        .unwrap_or_default();
    let family = name
        .and_then(|name| name.get("family"))
        .and_then(Value::as_str)
        .unwrap_or_default();

    claims.insert("profile".to_string(), json!(reference));
    claims.insert(
        "name".to_string(),
        json!(name.map(format_human_name).unwrap_or_default()),
    );
    claims.insert("given_name".to_string(), json!(given));
    claims.insert("middle_name".to_string(), json!(""));
    claims.insert("family_name".to_string(), json!(family));
    claims.insert("locale".to_string(), json!("en-US"));
    if let Some(birth_date) = profile.get("birthDate").and_then(Value::as_str) {
        claims.insert("birthdate".to_string(), json!(birth_date));
    }
    // OpenID Connect Core §5.1: `updated_at` is seconds since the epoch.
    if let Some(updated_at) = profile
        .pointer("/meta/lastUpdated")
        .and_then(Value::as_str)
        .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
    {
        claims.insert("updated_at".to_string(), json!(updated_at.timestamp()));
    }
    for empty in [
        "website",
        "zoneinfo",
        "gender",
        "preferred_username",
        "picture",
        "nickname",
    ] {
        claims.insert(empty.to_string(), json!(""));
    }
}

fn strings(values: &[Value]) -> Vec<&str> {
    values.iter().filter_map(Value::as_str).collect()
}

/// Formats a HumanName as display text: prefix, given names, family name and suffix, or
/// `text` when the name has no parts.
fn format_human_name(name: &Value) -> String {
    let mut parts = Vec::new();
    for field in ["prefix", "given"] {
        if let Some(values) = name.get(field).and_then(Value::as_array) {
            parts.extend(strings(values));
        }
    }
    if let Some(family) = name.get("family").and_then(Value::as_str) {
        parts.push(family);
    }
    if let Some(values) = name.get("suffix").and_then(Value::as_array) {
        parts.extend(strings(values));
    }
    if parts.is_empty() {
        return name
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
    }
    parts.join(" ")
}

/// Formats an Address as one line: the street lines, then "city, state, postal code", then
/// the country, separated by commas. An address without parts gives its `text`.
fn format_address(address: &Value) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(lines) = address.get("line").and_then(Value::as_array) {
        parts.extend(strings(lines).into_iter().map(str::to_string));
    }
    let locality: Vec<&str> = ["city", "state", "postalCode"]
        .into_iter()
        .filter_map(|field| address.get(field).and_then(Value::as_str))
        .collect();
    if !locality.is_empty() {
        parts.push(locality.join(", "));
    }
    if let Some(country) = address.get("country").and_then(Value::as_str) {
        parts.push(country.to_string());
    }
    if parts.is_empty() {
        return address
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
    }
    parts.join(", ")
}

/// Finds the value of the profile's first ContactPoint with this `system` (`email`, `phone`).
fn first_telecom(profile: &Value, system: &str) -> Option<String> {
    profile
        .get("telecom")?
        .as_array()?
        .iter()
        .find(|contact| contact.get("system").and_then(Value::as_str) == Some(system))
        .and_then(|contact| contact.get("value"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_name_parts_and_text() {
        let name = json!({"prefix": ["Dr."], "given": ["Alice", "Marie"], "family": "Smith"});
        assert_eq!(format_human_name(&name), "Dr. Alice Marie Smith");
        assert_eq!(
            format_human_name(&json!({"text": "Alice Smith"})),
            "Alice Smith"
        );
    }

    #[test]
    fn address_on_one_line() {
        let address = json!({"line": ["1 Main St", "Apt 2"], "city": "Springfield",
            "state": "IL", "postalCode": "62701", "country": "US"});
        assert_eq!(
            format_address(&address),
            "1 Main St, Apt 2, Springfield, IL, 62701, US"
        );
        assert_eq!(format_address(&json!({"text": "Somewhere"})), "Somewhere");
    }

    #[test]
    fn telecom_by_system() {
        let profile = json!({"telecom": [{"system": "phone", "value": "555"},
            {"system": "email", "value": "a@b.co"}]});
        assert_eq!(first_telecom(&profile, "email").as_deref(), Some("a@b.co"));
        assert_eq!(first_telecom(&profile, "phone").as_deref(), Some("555"));
        assert_eq!(first_telecom(&profile, "fax"), None);
    }
}
