//! `POST /fhir/R4/User/:id/$update-email`: changes a user's email and, when asked, the email
//! in the telecom of each of their profiles, in one batch.

use std::collections::BTreeMap;

use medgate_fhir::resources::{Project, ProjectMembership, TypedResource, User};
use medgate_fhir::search::SearchRequest;
use medgate_store::WriteOp;
use serde_json::{Value, json};
use tracing::info;

use super::parameter;
use crate::Services;
use crate::email::{EmailKind, EmailRequest};
use crate::error::{ServiceError, ServiceResult};
use crate::fhir_rest::FhirCaller;
use crate::login::is_valid_email;
use crate::random::is_uuid;
use crate::repo::WriteContext;

/// How long the link that verifies a new address works, the same window as Medplum's.
const VERIFY_EMAIL_LIFETIME: chrono::Duration = chrono::Duration::days(7);

/// The parameters of `$update-email`.
struct UpdateEmail {
    email: String,
    update_profile_telecom: bool,
    skip_email_verification: bool,
}

impl UpdateEmail {
    fn from_body(body: &Value) -> ServiceResult<Self> {
        if body.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
            return Err(ServiceError::invalid_field(
                "The request body must be a Parameters resource",
                "resourceType",
            ));
        }
        let find = |name: &str| parameter(body, name);
        let flag = |name: &str| {
            find(name)
                .and_then(|parameter| parameter.get("valueBoolean"))
                .and_then(Value::as_bool)
                == Some(true)
        };
        let email = find("email")
            .and_then(|parameter| parameter.get("valueString"))
            .and_then(Value::as_str)
            .map(|email| email.trim().to_lowercase())
            .unwrap_or_default();
        if !is_valid_email(&email) {
            return Err(ServiceError::invalid_field(
                "Valid email address is required",
                "email",
            ));
        }
        Ok(Self {
            email,
            update_profile_telecom: flag("updateProfileTelecom"),
            skip_email_verification: flag("skipEmailVerification"),
        })
    }
}

impl Services {
    /// Changes a user's email. Super admins may change any user; project admins only the
    /// users scoped to their project, because a server-scoped user may belong to other
    /// projects too.
    pub async fn update_user_email(
        &self,
        caller: &FhirCaller,
        user_id: &str,
        body: Value,
    ) -> ServiceResult<Value> {
        let parameters = UpdateEmail::from_body(&body)?;

        // user: visible to the caller, and editable by them.
        if !is_uuid(user_id) {
            return Err(ServiceError::NotFound);
        }
        let mut user: User = match self.repo.read(user_id).await {
            Err(ServiceError::Gone) => return Err(ServiceError::NotFound),
            other => other?,
        };
        let caller_project = format!("Project/{}", caller.auth.project_id());
        let user_project = user
            .project
            .as_ref()
            .map(|project| project.reference.clone());
        if !caller.auth.is_super_admin() {
            if !caller.auth.is_project_admin() {
                return Err(ServiceError::Forbidden);
            }
            match &user_project {
                Some(project) if *project == caller_project => {}
                Some(_) => return Err(ServiceError::NotFound),
                None => return Err(ServiceError::Forbidden),
            }
        }

        // duplicates: no other user of the same scope may have the email, and no project
        // the user belongs to may have a user with it at the other scope.
        let previous_email = user.email.clone();
        let memberships = self.user_memberships(&user).await?;
        if previous_email.as_deref() != Some(parameters.email.as_str()) {
            let scope = user_project
                .as_deref()
                .and_then(|project| project.strip_prefix("Project/"));
            if self
                .find_registered_user(&parameters.email, scope)
                .await?
                .is_some_and(|other| other.id != user.id)
            {
                return Err(ServiceError::Conflict(
                    "Email already registered".to_string(),
                ));
            }
            for membership in &memberships {
                let project = Project {
                    id: membership.project.id().unwrap_or_default().to_string(),
                    ..Default::default()
                };
                self.check_scope_clash(&project, &parameters.email, user_project.is_some())
                    .await?;
            }
        }

        user.email = Some(parameters.email.clone());
        user.email_verified = Some(parameters.skip_email_verification);
        let context = WriteContext {
            project_id: None,
            author: Some(caller.author()),
        };
        let user_write = self.repo.prepare_update(user.to_json(), &context)?;
        let WriteOp::Update {
            resource: written, ..
        } = &user_write
        else {
            return Err(ServiceError::Internal(
                "prepare_update returned another write".to_string(),
            ));
        };
        let written = written.clone();
        let mut writes = vec![user_write];

        if parameters.update_profile_telecom {
            for membership in &memberships {
                if let Some(write) = self
                    .profile_email_update(
                        membership,
                        previous_email.as_deref(),
                        &parameters.email,
                        &context,
                    )
                    .await?
                {
                    writes.push(write);
                }
            }
        }
        // verification: unless skipped, a verify-email request for the new address and its
        // email, in the same batch.
        if !parameters.skip_email_verification {
            let project_id = user_project
                .as_deref()
                .and_then(|project| project.strip_prefix("Project/"));
            let (request, link) = self.prepare_security_request(
                "verify-email",
                &user,
                project_id,
                VERIFY_EMAIL_LIFETIME,
                "verifyemail",
            )?;
            writes.push(WriteOp::Create(request));
            let name = [user.first_name.as_deref(), user.last_name.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            let email = EmailRequest {
                kind: EmailKind::VerifyEmail,
                project_id: project_id.map(str::to_string),
                to: parameters.email.clone(),
                values: BTreeMap::from([
                    ("name".to_string(), name),
                    ("link".to_string(), link.expose().clone()),
                ]),
            };
            writes.push(self.queue_email(&email)?);
        }
        let profiles_updated = writes
            .iter()
            .filter(|write| matches!(write, WriteOp::Update { .. }))
            .count()
            - 1;
        self.repo.store.write(writes).await?;
        info!(user_id, profiles_updated, "updated a user's email");
        Ok(caller.present(written))
    }

    /// Lists every membership of a user.
    async fn user_memberships(&self, user: &User) -> ServiceResult<Vec<ProjectMembership>> {
        let request = SearchRequest::new("ProjectMembership")
            .filter("user", &user.reference().reference)
            .count(medgate_fhir::search::MAX_COUNT);
        self.repo.search(&request, None).await
    }

    /// Builds the update of a membership's profile whose telecom gets the new email: an
    /// entry with the previous email is changed, otherwise a work email is added.
    async fn profile_email_update(
        &self,
        membership: &ProjectMembership,
        previous: Option<&str>,
        email: &str,
        context: &WriteContext,
    ) -> ServiceResult<Option<WriteOp>> {
        let Some((resource_type, id)) = membership.profile.parts() else {
            return Ok(None);
        };
        if !matches!(resource_type, "Patient" | "Practitioner" | "RelatedPerson") {
            return Ok(None);
        }
        let mut profile = match self.repo.store.read(resource_type, id).await {
            Ok(profile) => profile,
            Err(medgate_store::StoreError::NotFound | medgate_store::StoreError::Gone) => {
                return Ok(None);
            }
            Err(error) => return Err(error.into()),
        };
        let mut telecom = profile["telecom"].as_array().cloned().unwrap_or_default();
        let mut replaced = false;
        for entry in &mut telecom {
            let is_previous = entry["system"] == "email"
                && entry["value"]
                    .as_str()
                    .zip(previous)
                    .is_some_and(|(value, previous)| value.eq_ignore_ascii_case(previous));
            if is_previous {
                entry["value"] = json!(email);
                replaced = true;
            }
        }
        if !replaced {
            telecom.push(json!({"system": "email", "use": "work", "value": email}));
        }
        profile["telecom"] = Value::Array(telecom);
        let context = WriteContext {
            project_id: profile["meta"]["project"].as_str().map(str::to_string),
            author: context.author.clone(),
        };
        Ok(Some(self.repo.prepare_update(profile, &context)?))
    }
}
