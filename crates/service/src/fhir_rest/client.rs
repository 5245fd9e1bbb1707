//! ClientApplication through the FHIR API: a create returns the generated secret once, and
//! `$rotate-secret` issues a new one while the previous one keeps working as the retiring
//! secret.

use medgate_fhir::resources::{ClientApplication, TypedResource};
use serde_json::{Map, Value};
use tracing::{info, warn};

use super::FhirCaller;
use super::access::{Role, owning_project};
use crate::Services;
use crate::error::{ServiceError, ServiceResult};
use crate::random::sha256_hex;
use crate::repo::WriteContext;
use crate::secret::Secret;

/// The change a `$rotate-secret` request makes.
enum Rotation {
    /// Issue a new secret. Medplum's form names the current secret, which must match.
    Current(Option<Secret<String>>),
    /// Stop accepting the retiring secret, which must match.
    Retiring(Secret<String>),
}

impl Rotation {
    /// Reads the request body, with Medplum's error texts. No body at all is medgate's plain
    /// rotation. A body is a FHIR `Parameters` resource with either `secret` or
    /// `retiringSecret` as a `valueString`, as Medplum's operation takes it.
    fn from_body(body: Option<Value>) -> ServiceResult<Self> {
        let Some(body) = body else {
            return Ok(Self::Current(None));
        };
        if body.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
            return Err(ServiceError::invalid_field(
                "The request body must be a Parameters resource",
                "resourceType",
            ));
        }
        let value_of = |name: &str| {
            body.get("parameter")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|parameter| parameter.get("name").and_then(Value::as_str) == Some(name))
                .and_then(|parameter| parameter.get("valueString"))
                .and_then(Value::as_str)
                .map(Secret::from)
        };
        match (value_of("secret"), value_of("retiringSecret")) {
            (None, None) => Err(ServiceError::invalid("Secret to rotate must be provided")),
            (Some(_), Some(_)) => Err(ServiceError::invalid(
                "Only one secret can be rotated at a time",
            )),
            (Some(secret), None) => Ok(Self::Current(Some(secret))),
            (None, Some(retiring)) => Ok(Self::Retiring(retiring)),
        }
    }
}

/// Compares a presented secret with a stored SHA-256 hash in constant time.
fn hash_matches(stored: Option<&str>, presented: &Secret<String>) -> bool {
    let presented = sha256_hex(presented.expose());
    stored.is_some_and(|stored| {
        aws_lc_rs::constant_time::verify_slices_are_equal(stored.as_bytes(), presented.as_bytes())
            .is_ok()
    })
}

/// Returns the client as the caller may see it, plus the clear secret under Medplum's
/// field name.
pub(crate) fn with_secret(
    caller: &FhirCaller,
    client: &ClientApplication,
    secret: &Secret<String>,
) -> Value {
    let mut resource = caller.present(client.to_json());
    resource["secret"] = Value::String(secret.expose().clone());
    resource
}

impl Services {
    /// Creates a client with a generated secret and the membership it signs in through.
    pub(super) async fn create_client_resource(
        &self,
        caller: &FhirCaller,
        resource: Map<String, Value>,
        project_id: Option<String>,
    ) -> ServiceResult<Value> {
        let client = ClientApplication::from_json(Value::Object(resource)).map_err(|error| {
            ServiceError::invalid(format!("Invalid ClientApplication: {error}"))
        })?;
        let context = WriteContext {
            project_id,
            author: Some(caller.author()),
        };
        let created = self.create_client(client, &context).await?;
        Ok(with_secret(caller, &created.client, &created.secret))
    }

    /// `POST ClientApplication/{id}/$rotate-secret` for project admins of the client's
    /// project and super admins. A new secret is returned once as `secret`.
    pub async fn fhir_rotate_secret(
        &self,
        caller: &FhirCaller,
        id: &str,
        body: Option<Value>,
    ) -> ServiceResult<Value> {
        // caller: an admin. The client must be in their project unless they are a super
        // admin, which `read_visible` checks: another project's client is not found.
        if caller.role() == Role::Member {
            return Err(ServiceError::Forbidden);
        }
        let stored = self.read_visible(caller, "ClientApplication", id).await?;
        let rotation = Rotation::from_body(body)?;
        let context = WriteContext {
            project_id: owning_project("ClientApplication", &stored).map(str::to_string),
            author: Some(caller.author()),
        };
        let mut client = ClientApplication::from_json(stored).map_err(|error| {
            ServiceError::Internal(format!("stored client does not match its type: {error}"))
        })?;

        match rotation {
            Rotation::Current(presented) => {
                if let Some(presented) = presented
                    && !hash_matches(client.secret_hash.as_deref(), &presented)
                {
                    warn!(
                        client_id = id,
                        "secret rotation named a secret that is not current"
                    );
                    return Err(ServiceError::invalid(
                        "Provided secret does not match client",
                    ));
                }
                let rotated = self.rotate_client_secret(id, &context).await?;
                Ok(with_secret(caller, &rotated.client, &rotated.secret))
            }
            Rotation::Retiring(presented) => {
                if !hash_matches(client.retiring_secret_hash.as_deref(), &presented) {
                    warn!(
                        client_id = id,
                        "secret rotation named a secret that is not retiring"
                    );
                    return Err(ServiceError::invalid(
                        "Provided secret does not match client",
                    ));
                }
                client.retiring_secret_hash = None;
                let client = self.repo.update(&client, &context).await?;
                info!(client_id = %client.id, "retired the previous client secret");
                Ok(caller.present(client.to_json()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parameters(items: &[(&str, &str)]) -> Value {
        let parameter: Vec<Value> = items
            .iter()
            .map(|(name, value)| json!({"name": name, "valueString": value}))
            .collect();
        json!({"resourceType": "Parameters", "parameter": parameter})
    }

    #[test]
    fn rotation_without_body_issues_new_secret() {
        assert!(matches!(
            Rotation::from_body(None),
            Ok(Rotation::Current(None))
        ));
    }

    #[test]
    fn rotation_needs_exactly_one_secret() {
        let neither = Rotation::from_body(Some(parameters(&[]))).err().unwrap();
        assert_eq!(neither.to_string(), "Secret to rotate must be provided");
        let both = Rotation::from_body(Some(parameters(&[
            ("secret", "a"),
            ("retiringSecret", "b"),
        ])))
        .err()
        .unwrap();
        assert_eq!(both.to_string(), "Only one secret can be rotated at a time");
        assert!(matches!(
            Rotation::from_body(Some(parameters(&[("retiringSecret", "b")]))),
            Ok(Rotation::Retiring(_))
        ));
    }

    #[test]
    fn rotation_body_must_be_parameters() {
        assert!(Rotation::from_body(Some(json!({"secret": "a"}))).is_err());
    }

    #[test]
    fn hash_matches_only_same_secret() {
        let stored = sha256_hex("s1");
        assert!(hash_matches(Some(&stored), &Secret::from("s1")));
        assert!(!hash_matches(Some(&stored), &Secret::from("s2")));
        assert!(!hash_matches(None, &Secret::from("s1")));
    }
}
