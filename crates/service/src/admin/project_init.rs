//! `POST /fhir/R4/Project/$init`: a super admin creates a project with its owner, default
//! client and owner membership, as `/auth/newproject` does for a signed-in user.

use medgate_fhir::Reference;
use medgate_fhir::resources::{TypedResource, User};
use medgate_store::WriteOp;
use serde_json::Value;
use tracing::info;

use super::parameter;
use crate::Services;
use crate::error::{ServiceError, ServiceResult};
use crate::fhir_rest::FhirCaller;
use crate::login::is_valid_email;
use crate::random::uuid_v4;
use crate::repo::WriteContext;

impl Services {
    /// Creates a project owned by `owner` (a User reference), by the server-scoped user with
    /// `ownerEmail` (created when there is none), or else by the calling user. Project-scoped
    /// users cannot own a project, because they can never sign in to another one.
    pub async fn project_init(&self, caller: &FhirCaller, body: Value) -> ServiceResult<Value> {
        if !caller.auth.is_super_admin() {
            return Err(ServiceError::Forbidden);
        }
        if body.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
            return Err(ServiceError::invalid_field(
                "The request body must be a Parameters resource",
                "resourceType",
            ));
        }

        // name: required, with the limits of `/auth/newproject`.
        let name = parameter(&body, "name")
            .and_then(|parameter| parameter.get("valueString"))
            .and_then(Value::as_str)
            .map(str::trim)
            .unwrap_or_default();
        if !(4..=72).contains(&name.chars().count()) {
            return Err(ServiceError::invalid_field(
                "Project name must be between 4 and 72 characters",
                "name",
            ));
        }

        let mut writes = Vec::new();
        let owner_reference = parameter(&body, "owner")
            .and_then(|parameter| parameter.get("valueReference"))
            .map(|value| serde_json::from_value::<Reference>(value.clone()).unwrap_or_default());
        let owner_email = parameter(&body, "ownerEmail")
            .and_then(|parameter| parameter.get("valueString"))
            .and_then(Value::as_str)
            .map(|email| email.trim().to_lowercase());
        let owner = match (owner_reference, owner_email) {
            (Some(reference), _) => self.project_owner(&reference).await?,
            (None, Some(email)) => {
                if !is_valid_email(&email) {
                    return Err(ServiceError::invalid_field(
                        "Valid email address is required",
                        "ownerEmail",
                    ));
                }
                match self.find_registered_user(&email, None).await? {
                    Some(user) => user,
                    None => {
                        let user = User {
                            id: uuid_v4(self.random()),
                            email: Some(email),
                            email_verified: Some(false),
                            ..Default::default()
                        };
                        writes.push(WriteOp::Create(
                            self.repo
                                .prepare_create(user.to_json(), &WriteContext::system(None))?,
                        ));
                        user
                    }
                }
            }
            // NOTE: Medplum creates a project without an owner when the caller is a client;
            // medgate rejects that request because every project here gets an owner.
            (None, None) => self.project_owner(&caller.auth.login.user).await?,
        };

        let prepared = self.prepare_project(name, &owner)?;
        writes.extend(prepared.writes);
        self.repo.store.write(writes).await?;
        info!(project_id = %prepared.project_id, owner_id = %owner.id, "created a project with $init");
        let project = self
            .repo
            .store
            .read("Project", &prepared.project_id)
            .await?;
        Ok(caller.present(project))
    }

    /// Reads the user a new project's owner reference names, with Medplum's messages.
    async fn project_owner(&self, reference: &Reference) -> ServiceResult<User> {
        if reference.resource_type() != Some("User") {
            return Err(ServiceError::invalid(
                "Only Users are permitted to be the owner of a new Project",
            ));
        }
        let user: User = match self.repo.read_reference(reference).await {
            Ok(user) => user,
            Err(ServiceError::NotFound | ServiceError::Gone) => {
                return Err(ServiceError::invalid("User not found"));
            }
            Err(error) => return Err(error),
        };
        if user.project.is_some() {
            return Err(ServiceError::invalid(
                "Project owner must not belong to another Project",
            ));
        }
        Ok(user)
    }
}
