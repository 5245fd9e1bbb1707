//! `POST /admin/projects/:projectId/invite`: brings a person into a project as a Patient,
//! Practitioner or RelatedPerson, with Medplum's request fields, messages and scoping rule.
//!
//! The user (when new), the profile (when new), the membership, the set-password request
//! and the queued email are written in one batch, so a failed invite leaves nothing behind
//! and a written invite always has its message queued.

mod membership;
mod profile;

use membership::duplicate_membership;
use profile::InviteProfile;

use std::collections::BTreeMap;

use medgate_fhir::Reference;
use medgate_fhir::resources::{Project, ProjectMembership, TypedResource, User};
use medgate_fhir::search::SearchRequest;
use medgate_store::WriteOp;
use serde::Deserialize;
use serde_json::{Map, Value};
use tracing::{info, instrument};

use crate::Services;
use crate::email::{EmailKind, EmailRequest};
use crate::error::{ServiceError, ServiceResult};
use crate::fhir_rest::FhirCaller;
use crate::login::is_valid_email;
use crate::password::check_new_password;
use crate::random::uuid_v4;
use crate::repo::WriteContext;
use crate::secret::Secret;
use crate::security_request::SecurityRequestType;

/// Medplum's `InviteRequest`, including its deprecated top-level `accessPolicy`, `access`
/// and `admin`, which `membership` replaces.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InviteRequest {
    pub resource_type: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub external_id: Option<String>,
    pub password: Option<Secret<String>>,
    pub send_email: Option<bool>,
    pub membership: Option<Map<String, Value>>,
    pub upsert: Option<bool>,
    pub scope: Option<String>,
    pub mfa_required: Option<bool>,
    pub force_new_membership: Option<bool>,
    pub patient: Option<Reference>,
    pub access_policy: Option<Reference>,
    pub access: Option<Vec<Value>>,
    pub admin: Option<bool>,
}

/// An invite request that passed validation, with its email lower-cased.
struct ValidInvite {
    resource_type: String,
    first_name: String,
    last_name: String,
    email: Option<String>,
    external_id: Option<String>,
    /// The user is scoped to the project (`User.project`) rather than to the server.
    project_scoped: bool,
    request: InviteRequest,
}

/// The result of an invite: the membership as stored, and the set-password link of a new
/// user.
pub struct InviteResult {
    pub membership: Value,
    /// `<baseUrl>setpassword/<id>/<secret>`; present only for a new user.
    pub set_password_url: Option<Secret<String>>,
}

impl Services {
    /// Invites a person into the administered project and returns the membership.
    #[instrument(skip_all, fields(project_id = project_id))]
    pub async fn admin_invite(
        &self,
        caller: &FhirCaller,
        project_id: &str,
        request: InviteRequest,
    ) -> ServiceResult<InviteResult> {
        let project = self.administered_project(&caller.auth, project_id).await?;
        let invite = validate(request)?;
        let force_new = invite.request.force_new_membership == Some(true);

        // scope clash: one email must never name two users inside one project, or sign-in
        // there would depend on which of them the look-up finds first.
        if !force_new && let Some(email) = &invite.email {
            self.check_scope_clash(&project, email, invite.project_scoped)
                .await?;
        }

        let existing_user = self.find_invited_user(&project, &invite).await?;
        let mut writes = Vec::new();
        let user = match &existing_user {
            Some(user) => user.clone(),
            None => {
                let user = self.new_invited_user(&project, &invite).await?;
                let context =
                    WriteContext::system(invite.project_scoped.then_some(project.id.as_str()));
                writes.push(WriteOp::Create(
                    self.repo.prepare_create(user.to_json(), &context)?,
                ));
                user
            }
        };

        // existing membership: a duplicate is rejected before anything else is resolved, and
        // an upsert keeps the membership's profile unless the request names another one.
        let existing_membership = if existing_user.is_some() && !force_new {
            self.membership_of(&project, &user).await?
        } else {
            None
        };
        if let Some(existing) = &existing_membership
            && invite.request.upsert != Some(true)
        {
            return Err(duplicate_membership(existing));
        }
        let names_profile = invite
            .request
            .membership
            .as_ref()
            .is_some_and(|membership| membership.contains_key("profile"));
        let profile = match &existing_membership {
            Some(existing) if !names_profile => InviteProfile {
                reference: existing.profile.clone(),
                create: None,
                patient: None,
            },
            _ => self.invite_profile(&project, &invite).await?,
        };
        if let Some(create) = profile.create {
            writes.push(WriteOp::Create(create));
        }

        // Default policies apply to new memberships only, so an upsert never replaces a
        // policy an admin chose earlier.
        let template = self
            .membership_template(
                caller,
                &project,
                &invite,
                profile.patient.as_ref(),
                existing_membership.is_none(),
            )
            .await?;
        let membership = self.upsert_membership(
            &project,
            &user,
            existing_membership,
            &profile.reference,
            template,
        )?;
        let membership_value = match &membership {
            WriteOp::Create(value)
            | WriteOp::Update {
                resource: value, ..
            } => value.clone(),
            _ => {
                return Err(ServiceError::Internal(
                    "membership write is not a create or update".to_string(),
                ));
            }
        };
        writes.push(membership);

        // set-password request: only a new user needs one. Its secret is stored as a SHA-256
        // hash and leaves the server only in the queued email or, when no email is queued, in
        // the rest-hook notifications of the request, so the project can send its own.
        let sends_email = invite.email.is_some() && invite.request.send_email != Some(false);
        let set_password_url = if existing_user.is_none() {
            // The request belongs to the inviting project, so its admins can see it.
            let prepared = self.prepare_security_request(
                SecurityRequestType::Invite,
                &user,
                Some(&project.id),
                None,
            )?;
            if !sends_email {
                writes.push(prepared.secret_for_notifications());
            }
            writes.push(prepared.write);
            Some(prepared.link)
        } else {
            None
        };

        // email: an invite with the set-password link for a new user, a welcome for an
        // existing one, queued in this batch so it is sent if and only if the invite is
        // written.
        if let Some(email) = &invite.email
            && sends_email
        {
            let request = self.invite_email(&project, &invite, email, set_password_url.as_ref());
            writes.push(self.queue_email(&request)?);
        }

        // NOTE: two concurrent invites of one new email can both pass the look-ups above and
        // create two users, because the store has no unique index on User email.
        self.repo.store.write(writes).await?;
        info!(
            user_id = %user.id,
            membership_id = membership_value["id"].as_str().unwrap_or_default(),
            new_user = existing_user.is_none(),
            "invited a user into a project"
        );
        Ok(InviteResult {
            membership: caller.present(membership_value),
            set_password_url,
        })
    }

    /// Rejects an invite whose email already names a member of the project at the other
    /// scope: a server-scoped member when inviting a project-scoped user, or any user scoped
    /// to this project when inviting a server-scoped one.
    pub(crate) async fn check_scope_clash(
        &self,
        project: &Project,
        email: &str,
        project_scoped: bool,
    ) -> ServiceResult<()> {
        let clash = if project_scoped {
            match self.find_registered_user(email, None).await? {
                Some(user) => self.membership_of(project, &user).await?.is_some(),
                None => false,
            }
        } else {
            self.find_registered_user(email, Some(&project.id))
                .await?
                .is_some()
        };
        if clash {
            return Err(ServiceError::Conflict(
                "User is already a member of this project".to_string(),
            ));
        }
        Ok(())
    }

    /// Finds the user an invite names: by email in the invite's scope, or, without an
    /// email, the user of the project membership with the invite's external ID.
    async fn find_invited_user(
        &self,
        project: &Project,
        invite: &ValidInvite,
    ) -> ServiceResult<Option<User>> {
        if let Some(email) = &invite.email {
            let scope = invite.project_scoped.then_some(project.id.as_str());
            return self.find_registered_user(email, scope).await;
        }
        let Some(external_id) = &invite.external_id else {
            return Ok(None);
        };
        if invite.request.force_new_membership == Some(true) {
            return Ok(None);
        }
        let Some(membership) = self
            .find_membership_by_external_id(&project.id, external_id)
            .await?
        else {
            return Ok(None);
        };
        match self.repo.read_reference::<User>(&membership.user).await {
            Ok(user) => Ok(Some(user)),
            Err(ServiceError::NotFound | ServiceError::Gone) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Finds the membership of a project with this `externalId`, the identifier of the
    /// person in an outside system (SCIM `externalId`).
    pub async fn find_membership_by_external_id(
        &self,
        project_id: &str,
        external_id: &str,
    ) -> ServiceResult<Option<ProjectMembership>> {
        let request = SearchRequest::new("ProjectMembership")
            .filter("project", &format!("Project/{project_id}"))
            .filter("external-id", external_id);
        self.repo.search_one(request).await
    }

    /// Builds a new invited user. Without a password in the request the user has none and
    /// cannot sign in until they redeem the set-password link.
    async fn new_invited_user(
        &self,
        project: &Project,
        invite: &ValidInvite,
    ) -> ServiceResult<User> {
        let password_hash = match &invite.request.password {
            Some(password) => Some(self.passwords.hash(password).await?),
            None => None,
        };
        // Medplum also generates `mfaSecret` here. medgate creates the secret when the user
        // is first asked to enroll, at sign-in or from `/auth/mfa/status`.
        let mfa_required = invite.request.mfa_required.filter(|required| *required);
        Ok(User {
            id: uuid_v4(self.random()),
            first_name: Some(invite.first_name.clone()),
            last_name: Some(invite.last_name.clone()),
            email: invite.email.clone(),
            email_verified: invite.email.as_ref().map(|_| false),
            password_hash,
            project: invite.project_scoped.then(|| project.reference()),
            mfa_required,
            ..Default::default()
        })
    }

    /// Builds the invite email (new user, with the set-password link) or the welcome email
    /// (existing user, with the sign-in link).
    fn invite_email(
        &self,
        project: &Project,
        invite: &ValidInvite,
        to: &str,
        set_password_url: Option<&Secret<String>>,
    ) -> EmailRequest {
        let mut values = BTreeMap::new();
        values.insert(
            "name".to_string(),
            format!("{} {}", invite.first_name, invite.last_name),
        );
        values.insert(
            "projectName".to_string(),
            project.name.clone().unwrap_or_default(),
        );
        let kind = match set_password_url {
            Some(url) => {
                values.insert("link".to_string(), url.expose().clone());
                EmailKind::Invite
            }
            None => {
                values.insert("link".to_string(), self.config.url("signin"));
                EmailKind::Welcome
            }
        };
        EmailRequest {
            kind,
            project_id: Some(project.id.clone()),
            to: to.to_string(),
            values,
        }
    }

    /// Finds the user's membership in a project, if any.
    async fn membership_of(
        &self,
        project: &Project,
        user: &User,
    ) -> ServiceResult<Option<ProjectMembership>> {
        let request = SearchRequest::new("ProjectMembership")
            .filter("user", &user.reference().reference)
            .filter("project", &project.reference().reference);
        self.repo.search_one(request).await
    }
}

/// Checks an invite with Medplum's messages, one field at a time, and applies the scoping
/// rule.
fn validate(request: InviteRequest) -> ServiceResult<ValidInvite> {
    // resourceType: the three profile types a person can have.
    let resource_type = request.resource_type.clone().unwrap_or_default();
    if !matches!(
        resource_type.as_str(),
        "Patient" | "Practitioner" | "RelatedPerson"
    ) {
        return Err(ServiceError::invalid_field(
            "Resource type is required",
            "resourceType",
        ));
    }

    // names: both required.
    let first_name = request
        .first_name
        .as_deref()
        .map(str::trim)
        .unwrap_or_default();
    if first_name.is_empty() {
        return Err(ServiceError::invalid_field(
            "First name is required",
            "firstName",
        ));
    }
    let last_name = request
        .last_name
        .as_deref()
        .map(str::trim)
        .unwrap_or_default();
    if last_name.is_empty() {
        return Err(ServiceError::invalid_field(
            "Last name is required",
            "lastName",
        ));
    }

    // email or externalId: at least one. Emails are compared lower-cased everywhere, so
    // `Alice@Example.com` and `alice@example.com` are one person.
    let email = request
        .email
        .as_deref()
        .map(|email| email.trim().to_lowercase())
        .filter(|email| !email.is_empty());
    let external_id = request
        .external_id
        .as_deref()
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_string);
    if let Some(email) = &email
        && !is_valid_email(email)
    {
        return Err(ServiceError::invalid_field(
            "Valid email address is required",
            "email",
        ));
    }
    if email.is_none() && external_id.is_none() {
        return Err(ServiceError::invalid(
            "Either email or externalId is required",
        ));
    }

    // patient: a literal reference to a Patient.
    if let Some(patient) = &request.patient
        && !patient.reference.is_empty()
        && !matches!(patient.parts(), Some(("Patient", _)))
    {
        return Err(ServiceError::invalid_field(
            "Patient must be a reference to a Patient resource",
            "patient",
        ));
    }

    // password: the same rules as every other new password.
    if let Some(password) = &request.password
        && let Err(message) = check_new_password(password)
    {
        return Err(ServiceError::invalid_field(message, "password"));
    }

    // scope: `project` or `server` when given.
    let scope = request.scope.as_deref();
    if !matches!(scope, None | Some("project") | Some("server")) {
        return Err(ServiceError::invalid_field(
            "Scope must be \"project\" or \"server\"",
            "scope",
        ));
    }

    // Medplum's scoping rule: patients, people known by an external ID, and anyone invited
    // with `scope: "project"` belong to the project. Practitioners and related persons
    // belong to the server unless the request sets `scope: "project"`.
    let project_scoped = (resource_type == "Patient" && scope != Some("server"))
        || external_id.is_some()
        || scope == Some("project");

    Ok(ValidInvite {
        first_name: first_name.to_string(),
        last_name: last_name.to_string(),
        resource_type,
        email,
        external_id,
        project_scoped,
        request,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(body: Value) -> InviteRequest {
        serde_json::from_value(body).unwrap()
    }

    fn error_of(body: Value) -> String {
        match validate(request(body)) {
            Err(error) => error.to_string(),
            Ok(_) => "valid".to_string(),
        }
    }

    #[test]
    fn validation_messages() {
        assert_eq!(
            error_of(
                json!({"resourceType": "Organization", "firstName": "A", "lastName": "B", "email": "a@b.co"})
            ),
            "Resource type is required"
        );
        assert_eq!(
            error_of(json!({"resourceType": "Patient", "lastName": "B", "email": "a@b.co"})),
            "First name is required"
        );
        assert_eq!(
            error_of(
                json!({"resourceType": "Patient", "firstName": "A", "lastName": " ", "email": "a@b.co"})
            ),
            "Last name is required"
        );
        assert_eq!(
            error_of(json!({"resourceType": "Patient", "firstName": "A", "lastName": "B"})),
            "Either email or externalId is required"
        );
        assert_eq!(
            error_of(
                json!({"resourceType": "Patient", "firstName": "A", "lastName": "B", "email": "nope"})
            ),
            "Valid email address is required"
        );
        assert_eq!(
            error_of(
                json!({"resourceType": "RelatedPerson", "firstName": "A", "lastName": "B", "email": "a@b.co", "patient": {"reference": "Practitioner/1"}})
            ),
            "Patient must be a reference to a Patient resource"
        );
        assert_eq!(
            error_of(
                json!({"resourceType": "Patient", "firstName": "A", "lastName": "B", "email": "a@b.co", "password": "short"})
            ),
            "Password must be between 8 and 72 characters"
        );
        assert_eq!(
            error_of(
                json!({"resourceType": "Patient", "firstName": "A", "lastName": "B", "email": "a@b.co", "scope": "galaxy"})
            ),
            "Scope must be \"project\" or \"server\""
        );
    }

    #[test]
    fn scoping_rule() {
        let scoped = |body: Value| validate(request(body)).unwrap().project_scoped;
        let base = |extra: Value| {
            let mut body = json!({"firstName": "A", "lastName": "B", "email": "A@B.co"});
            for (key, value) in extra.as_object().unwrap() {
                body[key] = value.clone();
            }
            body
        };
        assert!(scoped(base(json!({"resourceType": "Patient"}))));
        assert!(!scoped(base(
            json!({"resourceType": "Patient", "scope": "server"})
        )));
        assert!(!scoped(base(json!({"resourceType": "Practitioner"}))));
        assert!(scoped(base(
            json!({"resourceType": "Practitioner", "scope": "project"})
        )));
        assert!(scoped(base(
            json!({"resourceType": "Practitioner", "externalId": "x-1"})
        )));
        assert!(!scoped(base(json!({"resourceType": "RelatedPerson"}))));
        assert_eq!(
            validate(request(base(json!({"resourceType": "Patient"}))))
                .unwrap()
                .email
                .as_deref(),
            Some("a@b.co")
        );
    }
}
