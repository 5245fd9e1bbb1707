//! Typed views of the Medplum resources that authentication reads and writes. Each keeps the
//! fields it does not name in `extra`, so a round trip through the struct loses nothing.

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

use crate::Reference;

/// Resource types with a typed struct; `RESOURCE_TYPE` is checked when converting from JSON.
pub trait TypedResource: Serialize + DeserializeOwned {
    const RESOURCE_TYPE: &'static str;

    fn id(&self) -> &str;

    /// Converts a stored JSON resource; fails when the type or shape does not match.
    fn from_json(value: Value) -> Result<Self, serde_json::Error> {
        serde_json::from_value(value)
    }

    fn to_json(&self) -> Value {
        let mut value = serde_json::to_value(self).expect("typed resources always serialize");
        value["resourceType"] = Value::String(Self::RESOURCE_TYPE.to_string());
        value
    }

    fn reference(&self) -> Reference {
        Reference::new(Self::RESOURCE_TYPE, self.id())
    }
}

/// `meta` as medgate writes it; `project` is a bare Project id, as in Medplum.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<Reference>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

macro_rules! typed_resource {
    ($name:ident) => {
        impl TypedResource for $name {
            const RESOURCE_TYPE: &'static str = stringify!($name);

            fn id(&self) -> &str {
                &self.id
            }
        }
    };
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Project {
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub super_admin: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict_mode: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Reference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
typed_resource!(Project);

impl Project {
    pub fn is_super_admin(&self) -> bool {
        self.super_admin == Some(true)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// Stored lower-cased; look-ups lower-case their input too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    /// argon2id PHC string, or a bcrypt hash imported from Medplum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// Present for project-scoped users; absent for server-scoped ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_enrolled: Option<bool>,
    /// Base32 TOTP secret; the FHIR API never returns it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_secret: Option<String>,
    /// Enrolled factors, `totp` and `email`. Users enrolled before Medplum had email codes
    /// have `mfaEnrolled` without this list and count as `totp`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mfa_method: Vec<String>,
    /// The user must enroll a factor at the next password sign-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_required: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
typed_resource!(User);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectMembership {
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    pub project: Reference,
    pub user: Reference,
    pub profile: Reference,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_policy: Option<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
typed_resource!(ProjectMembership);

impl ProjectMembership {
    /// Memberships are active unless explicitly switched off.
    pub fn is_active(&self) -> bool {
        self.active != Some(false)
    }

    pub fn is_admin(&self) -> bool {
        self.admin == Some(true)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientApplication {
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// SHA-256 of the current secret, hex. The secret itself is shown once and never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_hash: Option<String>,
    /// SHA-256 of the previous secret, still accepted while clients move to the new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retiring_secret_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirect_uris: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkce_optional: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_lifetime: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_lifetime: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub default_scope: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_in_form: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
typed_resource!(ClientApplication);

impl ClientApplication {
    /// `status` absent or `active` means the client may sign in.
    pub fn is_active(&self) -> bool {
        matches!(self.status.as_deref(), None | Some("active"))
    }

    /// Lists every registered redirect URI: the legacy single field and the list.
    pub fn registered_redirect_uris(&self) -> impl Iterator<Item = &str> {
        self.redirect_uri
            .iter()
            .chain(self.redirect_uris.iter())
            .map(String::as_str)
    }

    /// A confidential client has a secret and must authenticate at the token endpoint.
    pub fn is_confidential(&self) -> bool {
        self.secret_hash.is_some()
    }
}

/// A sign-in session and authorization grant. Codes, cookies and refresh secrets are stored
/// as SHA-256 hashes; the clear values exist only in responses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Login {
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    pub user: Reference,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership: Option<Reference>,
    #[serde(default)]
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    pub auth_method: String,
    pub auth_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_hash: Option<String>,
    /// Unix seconds after which the code can no longer be redeemed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_expires_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge_method: Option<String>,
    /// The redirect URI the authorization request named; the code is bound to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_secret_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_refresh_secret_hash: Option<String>,
    /// Unix seconds of the last refresh-secret rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_secret_rotated_at: Option<i64>,
    /// Random value mixed into the last rotation. With it the server derives the current
    /// secret from the previous one during the grace period, and a client cannot derive it
    /// alone because the value never leaves the database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_rotation_salt: Option<String>,
    /// The client authenticated with its secret when redeeming the code, so it must keep
    /// doing so when refreshing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_authenticated: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_verified: Option<bool>,
    /// The emailed MFA code of this login, as a hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_mfa: Option<EmailMfa>,
    /// MFA codes submitted for this login; each attempt is counted before it is checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
typed_resource!(Login);

/// A pending emailed MFA code (Medplum's `Login.emailMfa`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmailMfa {
    /// Password hash (argon2id) of the 6-digit code.
    pub code_hash: String,
    /// FHIR instant after which the code is refused.
    pub expires_at: String,
}

impl Login {
    pub fn is_revoked(&self) -> bool {
        self.revoked == Some(true)
    }

    pub fn is_granted(&self) -> bool {
        self.granted == Some(true)
    }
}

/// A one-time request sent to a user by email: set a password for an invite
/// (`type: invite`), reset it (`reset`) or confirm the email address (`verify-email`).
/// Medplum stores the secret of the link in `secret`. medgate stores only its SHA-256 in
/// `secretHash`, but still accepts a clear `secret` on requests imported from Medplum.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserSecurityRequest {
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    #[serde(rename = "type")]
    pub request_type: String,
    pub user: Reference,
    /// SHA-256 of the secret in the link, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
    /// FHIR instant after which the link no longer works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
typed_resource!(UserSecurityRequest);

impl UserSecurityRequest {
    pub fn is_used(&self) -> bool {
        self.used == Some(true)
    }
}

/// A server signing key. The private key is PKCS#8 DER, base64; `JsonWebKey` resources are
/// readable by super admins only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JsonWebKey {
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    pub active: bool,
    pub alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_pkcs8: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
typed_resource!(JsonWebKey);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_survive_round_trip() {
        let value = json!({"resourceType": "User", "id": "u1", "email": "a@b.c", "identifier": [{"value": "x"}]});
        let user = User::from_json(value.clone()).unwrap();
        assert_eq!(user.to_json(), value);
    }

    #[test]
    fn membership_active_by_default() {
        let membership = ProjectMembership::from_json(json!({"resourceType": "ProjectMembership",
            "project": {"reference": "Project/p"}, "user": {"reference": "User/u"},
            "profile": {"reference": "Practitioner/x"}}))
        .unwrap();
        assert!(membership.is_active());
        assert!(!membership.is_admin());
    }
}
