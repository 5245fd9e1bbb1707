//! Multi-factor authentication as Medplum's `/auth/mfa/*` API defines it: TOTP authenticator
//! apps (RFC 6238) and 6-digit codes sent by email. MFA applies to password sign-ins only, as
//! in Medplum; Google, Apple and external identity providers do their own.
//!
//! A password login of an enrolled user stays "MFA pending" until a code is verified, and
//! no authorization code is issued for it before then: [`Services::ensure_mfa_complete`]
//! runs wherever a code is minted. A user who must have MFA but has no factor yet gets the
//! enrollment prompt instead.

mod admin_reset;
mod challenge;
mod email_code;
mod qr;
mod settings;
pub mod totp;

use medgate_fhir::Reference;
use medgate_fhir::resources::{Login, Project, ProjectMembership, User};
use serde::Serialize;
use serde_json::Value;
use tracing::warn;

use crate::Services;
use crate::error::{ServiceError, ServiceResult};
use crate::repo::WriteContext;

pub use admin_reset::MfaResetRequest;
pub use settings::MfaStatus;

/// A second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MfaMethod {
    Totp,
    Email,
}

impl MfaMethod {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "totp" => Some(Self::Totp),
            "email" => Some(Self::Email),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Totp => "totp",
            Self::Email => "email",
        }
    }
}

/// The MFA part of Medplum's login result: either the factors to verify or the enrollment
/// a user must complete first.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MfaPrompt {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mfa_required: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mfa_methods: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mfa_enroll_required: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enroll_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enroll_qr_code: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_mfa_methods: Vec<&'static str>,
}

const MFA_REQUIRED_MESSAGE: &str = "MFA verification required";

/// Reads a `Project.setting` entry by name: `{name, valueString | valueBoolean | …}`.
fn project_setting<'a>(project: &'a Project, name: &str) -> Option<&'a Value> {
    project
        .extra
        .get("setting")?
        .as_array()?
        .iter()
        .find(|setting| setting.get("name").and_then(Value::as_str) == Some(name))
}

/// Parses the project's `allowedMfaMethods`, a comma-separated list. Unset, empty or unknown
/// values mean TOTP only, as in Medplum.
pub fn allowed_methods(project: Option<&Project>) -> Vec<MfaMethod> {
    let listed: Vec<MfaMethod> = project
        .and_then(|project| project_setting(project, "allowedMfaMethods"))
        .and_then(|setting| setting.get("valueString"))
        .and_then(Value::as_str)
        .map(|text| {
            text.split(',')
                .filter_map(|item| MfaMethod::parse(item.trim()))
                .collect()
        })
        .unwrap_or_default();
    if listed.is_empty() {
        vec![MfaMethod::Totp]
    } else {
        listed
    }
}

/// Checks whether the project requires MFA of every member who signs in with a password
/// (setting `mfaRequired`, as a boolean or the text `true`).
pub fn project_requires_mfa(project: &Project) -> bool {
    project_setting(project, "mfaRequired").is_some_and(|setting| {
        setting.get("valueBoolean").and_then(Value::as_bool) == Some(true)
            || setting.get("valueString").and_then(Value::as_str) == Some("true")
    })
}

/// Lists the factors a user has enrolled. Users enrolled before email codes existed have
/// `mfaEnrolled` without `mfaMethod`, which means TOTP.
pub fn enrolled_methods(user: &User) -> Vec<MfaMethod> {
    if user.mfa_enrolled != Some(true) {
        return Vec::new();
    }
    let methods: Vec<MfaMethod> = user
        .mfa_method
        .iter()
        .filter_map(|method| MfaMethod::parse(method))
        .collect();
    if methods.is_empty() {
        vec![MfaMethod::Totp]
    } else {
        methods
    }
}

fn method_names(methods: &[MfaMethod]) -> Vec<&'static str> {
    methods.iter().map(|method| method.as_str()).collect()
}

/// Stores the enrolled factors on the user, keeping `mfaEnrolled` in step with them.
fn set_enrolled_methods(user: &mut User, methods: &[MfaMethod]) {
    user.mfa_method = methods
        .iter()
        .map(|method| method.as_str().to_string())
        .collect();
    user.mfa_enrolled = Some(!methods.is_empty());
}

/// MFA covers password sign-ins only; other identity providers do their own.
fn login_needs_mfa_check(login: &Login) -> bool {
    login.auth_method == "password" && login.mfa_verified != Some(true)
}

impl Services {
    /// Fails with `MFA verification required` when a login must not receive an
    /// authorization code yet: a password login whose user is enrolled, must enroll, or is
    /// a member of a project that requires MFA, and that has not passed MFA.
    pub async fn ensure_mfa_complete(&self, login: &Login) -> ServiceResult<()> {
        if !login_needs_mfa_check(login) {
            return Ok(());
        }
        let user = self.login_user(login).await?;
        if user.mfa_enrolled == Some(true) || user.mfa_required == Some(true) {
            warn!(login_id = %login.id, "authorization code rejected while MFA is pending");
            return Err(ServiceError::invalid(MFA_REQUIRED_MESSAGE));
        }
        if let Some(membership) = &login.membership {
            let membership: ProjectMembership = self.repo.read_reference(membership).await?;
            let project: Project = self.repo.read_reference(&membership.project).await?;
            if project_requires_mfa(&project) {
                warn!(login_id = %login.id, "authorization code rejected while MFA is pending");
                return Err(ServiceError::invalid(MFA_REQUIRED_MESSAGE));
            }
        }
        Ok(())
    }

    /// Computes the MFA step of Medplum's login result, or `None` when the login may go on
    /// to the profile choice or a code. Rules in Medplum's order: a user who must have MFA
    /// but has no factor enrolls first, and an enrolled user verifies a code. When email is
    /// the only factor, the first code is sent here.
    pub async fn mfa_prompt(&self, login: &Login) -> ServiceResult<Option<MfaPrompt>> {
        if !login_needs_mfa_check(login) {
            return Ok(None);
        }
        let user = self.login_user(login).await?;
        let enrolled = enrolled_methods(&user);

        if !enrolled.is_empty() {
            if enrolled == [MfaMethod::Email] && login.email_mfa.is_none() {
                self.send_login_email_code(login.clone(), &user).await?;
            }
            return Ok(Some(MfaPrompt {
                mfa_required: Some(true),
                mfa_methods: method_names(&enrolled),
                email: user.email.clone(),
                ..Default::default()
            }));
        }

        let projects = self.login_projects(login).await?;
        let required = user.mfa_required == Some(true) || projects.iter().any(project_requires_mfa);
        if !required {
            return Ok(None);
        }
        let project = self.user_project(&user, &projects).await;
        let user = self.ensure_totp_secret(user).await?;
        let (enroll_uri, enroll_qr_code) = self.totp_enrollment(&user, project.as_ref())?;
        Ok(Some(MfaPrompt {
            mfa_enroll_required: Some(true),
            enroll_uri: Some(enroll_uri),
            enroll_qr_code: Some(enroll_qr_code),
            allowed_mfa_methods: method_names(&allowed_methods(project.as_ref())),
            ..Default::default()
        }))
    }

    /// Loads the projects a login may end up in: its own project, or those of the user's
    /// memberships that the login could choose.
    async fn login_projects(&self, login: &Login) -> ServiceResult<Vec<Project>> {
        let mut references: Vec<Reference> = Vec::new();
        match &login.project {
            Some(project) if project.reference != "Project/new" => {
                references.push(project.clone());
            }
            _ => {
                for membership in self.memberships_for_login(login).await? {
                    if !references.contains(&membership.project) {
                        references.push(membership.project);
                    }
                }
            }
        }
        let mut projects = Vec::with_capacity(references.len());
        for reference in &references {
            match self.repo.read_reference::<Project>(reference).await {
                Ok(project) => projects.push(project),
                Err(ServiceError::NotFound | ServiceError::Gone) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(projects)
    }

    /// Finds the project whose MFA settings and brand apply to a user: the project of a
    /// project-scoped user, else the only project of the sign-in, else none.
    async fn user_project(&self, user: &User, candidates: &[Project]) -> Option<Project> {
        if let Some(reference) = &user.project {
            return self.repo.read_reference(reference).await.ok();
        }
        match candidates {
            [only] => Some(only.clone()),
            _ => None,
        }
    }

    pub(crate) async fn login_user(&self, login: &Login) -> ServiceResult<User> {
        match self.repo.read_reference::<User>(&login.user).await {
            Ok(user) => Ok(user),
            Err(ServiceError::NotFound | ServiceError::Gone) => {
                Err(ServiceError::invalid("User not found"))
            }
            Err(error) => Err(error),
        }
    }

    async fn update_user(&self, user: &User) -> ServiceResult<User> {
        let project_id = user.meta.as_ref().and_then(|meta| meta.project.clone());
        self.repo
            .update(user, &WriteContext::system(project_id.as_deref()))
            .await
    }
}
