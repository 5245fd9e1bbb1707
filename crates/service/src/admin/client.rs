//! `POST /admin/projects/:projectId/client`: a ClientApplication and the membership it signs
//! in through, created in one batch.

use medgate_fhir::Reference;
use medgate_fhir::resources::{ClientApplication, Project};
use medgate_store::WriteOp;
use serde::Deserialize;
use serde_json::{Map, Value};
use tracing::info;

use crate::Services;
use crate::error::{ServiceError, ServiceResult};
use crate::fhir_rest::{FhirCaller, with_secret};
use crate::repo::WriteContext;

/// Medplum's `CreateClientRequest`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateClientRequest {
    pub name: Option<String>,
    pub description: Option<String>,
    pub redirect_uri: Option<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    pub access_policy: Option<Reference>,
    pub identity_provider: Option<Value>,
    pub access_token_lifetime: Option<String>,
    pub refresh_token_lifetime: Option<String>,
}

impl Services {
    /// Creates a client in the administered project and returns it with its secret, which
    /// this response shows once. `accessPolicy` goes on the client's membership.
    pub async fn admin_create_client(
        &self,
        caller: &FhirCaller,
        project_id: &str,
        request: CreateClientRequest,
    ) -> ServiceResult<Value> {
        let project = self.administered_project(&caller.auth, project_id).await?;

        // name: Medplum's only required field.
        let name = request.name.as_deref().map(str::trim).unwrap_or_default();
        if name.is_empty() {
            return Err(ServiceError::invalid_field(
                "Client name is required",
                "name",
            ));
        }

        // access policy: it must exist and belong to this project.
        if let Some(policy) = &request.access_policy {
            self.check_policy_in_project(policy, &project).await?;
        }

        let mut extra = Map::new();
        if let Some(description) = request.description.filter(|text| !text.is_empty()) {
            extra.insert("description".to_string(), Value::String(description));
        }
        if let Some(identity_provider) = request.identity_provider {
            extra.insert("identityProvider".to_string(), identity_provider);
        }
        let client = ClientApplication {
            name: Some(name.to_string()),
            redirect_uri: request.redirect_uri.filter(|uri| !uri.is_empty()),
            redirect_uris: request.redirect_uris,
            access_token_lifetime: request.access_token_lifetime,
            refresh_token_lifetime: request.refresh_token_lifetime,
            extra,
            ..Default::default()
        };
        let context = WriteContext {
            project_id: Some(project.id.clone()),
            author: Some(caller.author()),
        };
        let mut prepared = self.prepare_client(client, &context)?;
        if let Some(policy) = &request.access_policy {
            for write in &mut prepared.writes {
                if let WriteOp::Create(resource) = write
                    && resource["resourceType"] == "ProjectMembership"
                {
                    resource["accessPolicy"] = serde_json::to_value(policy).unwrap_or_default();
                }
            }
        }
        self.repo.store.write(prepared.writes).await?;
        info!(client_id = %prepared.client.id, project_id = %project.id, "created a client application");
        Ok(with_secret(caller, &prepared.client, &prepared.secret))
    }

    /// Checks that an access policy exists and, when it belongs to a project, that it is
    /// `project`, with Medplum's messages.
    pub(crate) async fn check_policy_in_project(
        &self,
        policy: &Reference,
        project: &Project,
    ) -> ServiceResult<()> {
        let missing =
            || ServiceError::invalid(format!("Access policy {} does not exist", policy.reference));
        let Some(("AccessPolicy", id)) = policy.parts() else {
            return Err(missing());
        };
        if !crate::random::is_uuid(id) {
            return Err(missing());
        }
        let stored = match self.repo.store.read("AccessPolicy", id).await {
            Ok(stored) => stored,
            Err(medgate_store::StoreError::NotFound | medgate_store::StoreError::Gone) => {
                return Err(missing());
            }
            Err(error) => return Err(error.into()),
        };
        if let Some(policy_project) = stored["meta"]["project"].as_str()
            && policy_project != project.id
        {
            return Err(ServiceError::invalid(format!(
                "Access policy {} does not belong to this project",
                policy.reference
            )));
        }
        Ok(())
    }
}
