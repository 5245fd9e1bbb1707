//! ClientApplications: creation with a generated secret and secret rotation.
//!
//! A secret is 256 random bits, returned once in the response that created it and stored
//! only as a SHA-256 hash.

use medgate_fhir::Reference;
use medgate_fhir::resources::{ClientApplication, ProjectMembership, TypedResource};
use medgate_store::WriteOp;
use tracing::info;

use crate::Services;
use crate::error::{ServiceError, ServiceResult};
use crate::random::{secret_hex, sha256_hex};
use crate::repo::WriteContext;
use crate::secret::Secret;
use crate::tokens::parse_lifetime;

/// A client as stored, plus the secret that is shown this once.
pub struct ClientWithSecret {
    pub client: ClientApplication,
    pub secret: Secret<String>,
}

/// A client ready to be created: the stored form, its secret, and the writes for the client
/// and its membership.
pub struct PreparedClient {
    pub client: ClientApplication,
    pub secret: Secret<String>,
    pub writes: Vec<WriteOp>,
}

/// Checks the fields a client must get right before it is stored.
pub fn validate_client(client: &ClientApplication) -> ServiceResult<()> {
    // lifetimes: Medplum's duration syntax, e.g. `60s`, `1h`, `2w`.
    for (field, value) in [
        ("accessTokenLifetime", &client.access_token_lifetime),
        ("refreshTokenLifetime", &client.refresh_token_lifetime),
    ] {
        if value
            .as_deref()
            .is_some_and(|text| parse_lifetime(text).is_none())
        {
            return Err(ServiceError::invalid_field(
                "Token lifetime must be a valid string representing time duration (eg. 2w, 1h)",
                field,
            ));
        }
    }

    // redirect URIs: absolute URLs, compared character for character at sign-in.
    for uri in client.registered_redirect_uris() {
        if url::Url::parse(uri).is_err() {
            return Err(ServiceError::invalid_field(
                format!("Invalid redirect URI: {uri}"),
                "redirectUris",
            ));
        }
    }
    Ok(())
}

impl Services {
    fn new_secret(&self) -> Secret<String> {
        Secret::new(secret_hex(self.random(), 32))
    }

    /// Creates a client in a project together with the membership it signs in through.
    pub async fn create_client(
        &self,
        client: ClientApplication,
        context: &WriteContext,
    ) -> ServiceResult<ClientWithSecret> {
        let prepared = self.prepare_client(client, context)?;
        self.repo.store.write(prepared.writes).await?;
        info!(
            client_id = %prepared.client.id,
            project_id = context.project_id.as_deref().unwrap_or_default(),
            "created client application"
        );
        Ok(ClientWithSecret {
            client: prepared.client,
            secret: prepared.secret,
        })
    }

    /// Builds the writes that create a client and its membership without running them, so a
    /// caller can commit them in one batch with other resources.
    pub fn prepare_client(
        &self,
        mut client: ClientApplication,
        context: &WriteContext,
    ) -> ServiceResult<PreparedClient> {
        validate_client(&client)?;
        let project_id = context
            .project_id
            .clone()
            .ok_or_else(|| ServiceError::invalid("A client must belong to a project"))?;
        let secret = self.new_secret();
        client.secret_hash = Some(sha256_hex(secret.expose()));
        client.retiring_secret_hash = None;
        let client_value = self.repo.prepare_create(client.to_json(), context)?;
        let client = ClientApplication::from_json(client_value.clone()).map_err(|error| {
            ServiceError::Internal(format!("client did not round-trip: {error}"))
        })?;
        let membership = ProjectMembership {
            project: Reference::new("Project", &project_id),
            user: client.reference(),
            profile: client.reference(),
            ..Default::default()
        };
        let membership_value = self.repo.prepare_create(membership.to_json(), context)?;
        Ok(PreparedClient {
            client,
            secret,
            writes: vec![
                WriteOp::Create(client_value),
                WriteOp::Create(membership_value),
            ],
        })
    }

    /// Issues a new secret; the previous one keeps working as the retiring secret until the
    /// next rotation, so deployed clients can move over without downtime.
    pub async fn rotate_client_secret(
        &self,
        client_id: &str,
        context: &WriteContext,
    ) -> ServiceResult<ClientWithSecret> {
        let mut client: ClientApplication = self.repo.read(client_id).await?;
        let secret = self.new_secret();
        client.retiring_secret_hash = client.secret_hash.take();
        client.secret_hash = Some(sha256_hex(secret.expose()));
        let client = self.repo.update(&client, context).await?;
        info!(client_id = %client.id, "rotated client secret");
        Ok(ClientWithSecret { client, secret })
    }
}
