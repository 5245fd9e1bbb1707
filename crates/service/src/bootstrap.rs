//! First start on an empty database: the super-admin project, its admin user with a
//! Practitioner profile and an admin membership, and the first signing key.
//!
//! Everything is written in one batch together with the claim `bootstrap`. When several
//! processes start at once against one PostgreSQL database, the claim lets exactly one batch
//! commit; the others see [`StoreError::AlreadyClaimed`] and leave the database as it is.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use medgate_fhir::Reference;
use medgate_fhir::resources::{Project, ProjectMembership, TypedResource, User};
use medgate_store::{StoreError, WriteOp};
use serde_json::json;
use tracing::info;

use crate::Services;
use crate::clock::fhir_instant;
use crate::error::{ServiceError, ServiceResult};
use crate::keys::generate_key;
use crate::random::uuid_v4;
use crate::repo::WriteContext;
use crate::secret::Secret;

const BOOTSTRAP_CLAIM: &str = "bootstrap";

pub struct BootstrapOutcome {
    /// False when the database had been bootstrapped already.
    pub created: bool,
    /// The admin password when medgate generated it; shown once, stored nowhere.
    pub generated_password: Option<Secret<String>>,
}

impl Services {
    /// Creates the initial resources unless another process or an earlier start already did.
    pub async fn bootstrap(
        &self,
        admin_email: &str,
        admin_password: Option<Secret<String>>,
    ) -> ServiceResult<BootstrapOutcome> {
        let email = admin_email.trim().to_lowercase();
        if !crate::login::is_valid_email(&email) {
            return Err(ServiceError::invalid(format!(
                "invalid admin email address: {admin_email}"
            )));
        }
        let generated = admin_password.is_none();
        let password = match admin_password {
            Some(password) => password,
            None => {
                let mut bytes = [0u8; 18];
                self.random().fill(&mut bytes);
                Secret::new(URL_SAFE_NO_PAD.encode(bytes))
            }
        };
        if password.expose().len() < crate::password::MIN_PASSWORD_BYTES
            || password.expose().len() > crate::password::MAX_PASSWORD_BYTES
        {
            return Err(ServiceError::invalid(
                "the admin password must be between 8 and 72 bytes",
            ));
        }

        let project_id = uuid_v4(self.random());
        let user_id = uuid_v4(self.random());
        let practitioner_id = uuid_v4(self.random());
        let in_project = WriteContext::system(Some(&project_id));

        let project = Project {
            id: project_id.clone(),
            name: Some("Super Admin".to_string()),
            super_admin: Some(true),
            owner: Some(Reference::new("User", &user_id)),
            ..Default::default()
        };
        let user = User {
            id: user_id.clone(),
            first_name: Some("Medgate".to_string()),
            last_name: Some("Admin".to_string()),
            email: Some(email.clone()),
            email_verified: Some(true),
            password_hash: Some(self.passwords.hash(&password).await?),
            ..Default::default()
        };
        let practitioner = json!({
            "resourceType": "Practitioner",
            "id": practitioner_id,
            "name": [{"given": ["Medgate"], "family": "Admin"}],
            "telecom": [{"system": "email", "use": "work", "value": email}],
        });
        let membership = ProjectMembership {
            project: project.reference(),
            user: user.reference(),
            profile: Reference::new("Practitioner", &practitioner_id).with_display("Medgate Admin"),
            admin: Some(true),
            ..Default::default()
        };

        let batch = vec![
            WriteOp::Claim {
                name: BOOTSTRAP_CLAIM.to_string(),
                at: fhir_instant(self.now()),
            },
            WriteOp::Create(self.repo.prepare_create(project.to_json(), &in_project)?),
            WriteOp::Create(
                self.repo
                    .prepare_create(user.to_json(), &WriteContext::system(None))?,
            ),
            WriteOp::Create(self.repo.prepare_create(practitioner, &in_project)?),
            WriteOp::Create(
                self.repo
                    .prepare_create(membership.to_json(), &in_project)?,
            ),
            WriteOp::Create(
                self.repo
                    .prepare_create(generate_key()?.to_json(), &WriteContext::system(None))?,
            ),
        ];
        match self.repo.store.write(batch).await {
            Ok(()) => {
                info!(
                    project_id,
                    user_id, "bootstrapped the super-admin project and admin user"
                );
                Ok(BootstrapOutcome {
                    created: true,
                    generated_password: generated.then_some(password),
                })
            }
            Err(StoreError::AlreadyClaimed(_)) => Ok(BootstrapOutcome {
                created: false,
                generated_password: None,
            }),
            Err(error) => Err(error.into()),
        }
    }

    /// Adds a new signing key; it signs from the next key reload on, and the old keys stay
    /// published so that tokens they signed still verify.
    pub async fn rotate_signing_key(&self) -> ServiceResult<String> {
        let key = self
            .repo
            .create(&generate_key()?, &WriteContext::system(None))
            .await?;
        info!(kid = %key.id, "created a new signing key");
        self.load_keys().await?;
        Ok(key.id)
    }
}
