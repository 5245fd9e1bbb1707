//! MFA settings of a signed-in user: `GET /auth/mfa/status`, `POST /auth/mfa/enroll`,
//! `/auth/mfa/disable` and `/auth/mfa/send-email-challenge`. Each code submitted here counts
//! against the caller's login like a sign-in attempt.

use medgate_fhir::resources::{Login, Project, TypedResource, User};
use serde::Serialize;
use tracing::{info, instrument, warn};

use super::challenge::{email_claim, totp_claim};
use super::email_code::CodeCheck;
use super::{
    MfaMethod, allowed_methods, enrolled_methods, method_names, project_requires_mfa, qr,
    set_enrolled_methods, totp,
};
use crate::Services;
use crate::error::{ServiceError, ServiceResult};
use crate::repo::WriteContext;
use crate::session::AuthContext;

/// `GET /auth/mfa/status`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MfaStatus {
    pub enrolled: bool,
    pub enrolled_methods: Vec<&'static str>,
    pub allowed_methods: Vec<&'static str>,
    pub mfa_required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The `otpauth://` URI with the TOTP secret, only while TOTP is not enrolled. Medplum
    /// returns it always, so anyone with an access token could copy an enrolled
    /// authenticator. Clients treat the field as optional and show it only to enroll.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enroll_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enroll_qr_code: Option<String>,
}

fn invalid(message: &str) -> ServiceError {
    ServiceError::invalid(message)
}

fn parse_method(method: Option<&str>) -> ServiceResult<Option<MfaMethod>> {
    match method.filter(|method| !method.is_empty()) {
        None => Ok(None),
        Some(text) => MfaMethod::parse(text)
            .map(Some)
            .ok_or_else(|| ServiceError::invalid_field("Invalid method", "method")),
    }
}

impl Services {
    /// Gives the user a TOTP secret if they have none, so the enrollment URI stays the same
    /// across requests until the secret changes.
    pub(super) async fn ensure_totp_secret(&self, mut user: User) -> ServiceResult<User> {
        if user.mfa_secret.is_some() {
            return Ok(user);
        }
        user.mfa_secret = Some(totp::generate_secret(self.random()));
        self.update_user(&user).await
    }

    /// Builds the `otpauth://` URI and its QR code. The issuer is `medplum.com` and the account
    /// `Medplum - <email>` as in Medplum, with the project's `brandName` in place of Medplum.
    pub(super) fn totp_enrollment(
        &self,
        user: &User,
        project: Option<&Project>,
    ) -> ServiceResult<(String, String)> {
        let secret = user
            .mfa_secret
            .as_deref()
            .ok_or_else(|| invalid("Secret not found"))?;
        let brand = project
            .and_then(|project| super::project_setting(project, "brandName"))
            .and_then(|setting| setting.get("valueString"))
            .and_then(serde_json::Value::as_str)
            .filter(|brand| !brand.trim().is_empty());
        let account = format!(
            "{} - {}",
            brand.unwrap_or("Medplum"),
            user.email.as_deref().unwrap_or(&user.id)
        );
        let uri = totp::otpauth_uri(brand.unwrap_or("medplum.com"), &account, secret);
        let qr_code = qr::qr_data_url(&uri).ok_or_else(|| {
            ServiceError::Internal("enrollment URI too long for a QR code".into())
        })?;
        Ok((uri, qr_code))
    }

    /// Finds the project whose MFA settings apply to the caller: their user's project, or
    /// the project of the signed-in membership.
    async fn caller_mfa_project(&self, auth: &AuthContext, user: &User) -> Project {
        match self.user_project(user, &[]).await {
            Some(project) => project,
            None => auth.project.clone(),
        }
    }

    /// Whether the caller must keep at least one factor.
    fn mfa_mandatory(user: &User, project: &Project) -> bool {
        user.mfa_required == Some(true) || project_requires_mfa(project)
    }

    /// Writes a user's changed factors together with the login's reset attempt count and
    /// the claim of the TOTP step that authorized the change.
    async fn save_factor_change(
        &self,
        login: Login,
        claim: Option<String>,
        user: &User,
    ) -> ServiceResult<()> {
        let user_write = self.repo.prepare_update(
            user.to_json(),
            &WriteContext::system(user.meta.as_ref().and_then(|meta| meta.project.as_deref())),
        )?;
        match self.complete_mfa(login, claim, vec![user_write]).await {
            Ok(_) => Ok(()),
            // A replayed TOTP code; settings requests use Medplum's shorter message.
            Err(ServiceError::Invalid { message, .. }) if message == "Invalid MFA token" => {
                Err(invalid("Invalid token"))
            }
            Err(error) => Err(error),
        }
    }

    /// `GET /auth/mfa/status`.
    #[instrument(skip_all)]
    pub async fn mfa_status(&self, auth: &AuthContext) -> ServiceResult<MfaStatus> {
        let user = self.settings_user(&auth.login).await?;
        let user = self.ensure_totp_secret(user).await?;
        let project = self.caller_mfa_project(auth, &user).await;
        let enrolled = enrolled_methods(&user);
        let (enroll_uri, enroll_qr_code) = if enrolled.contains(&MfaMethod::Totp) {
            (None, None)
        } else {
            let (uri, qr_code) = self.totp_enrollment(&user, Some(&project))?;
            (Some(uri), Some(qr_code))
        };
        Ok(MfaStatus {
            enrolled: !enrolled.is_empty(),
            enrolled_methods: method_names(&enrolled),
            allowed_methods: method_names(&allowed_methods(Some(&project))),
            mfa_required: Self::mfa_mandatory(&user, &project),
            email: user.email.clone(),
            enroll_uri,
            enroll_qr_code,
        })
    }

    /// `POST /auth/mfa/enroll`: adds a factor after checking a code from it. TOTP codes
    /// come from the authenticator app; an email code comes from
    /// `/auth/mfa/send-email-challenge`, and enrolling it also verifies the address.
    #[instrument(skip_all)]
    pub async fn enroll_mfa(
        &self,
        auth: &AuthContext,
        method: Option<&str>,
        token: &str,
    ) -> ServiceResult<()> {
        let method = parse_method(method)?.unwrap_or(MfaMethod::Totp);
        let mut user = self.settings_user(&auth.login).await?;
        let mut enrolled = enrolled_methods(&user);

        // method: new, and allowed by the project.
        if enrolled.contains(&method) {
            return Err(invalid("Already enrolled"));
        }
        let project = self.caller_mfa_project(auth, &user).await;
        if !allowed_methods(Some(&project)).contains(&method) {
            return Err(invalid("MFA method not allowed"));
        }

        // code: a TOTP secret must exist (from the status request) and the token is required.
        if method == MfaMethod::Totp && user.mfa_secret.is_none() {
            return Err(invalid("Secret not found"));
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(ServiceError::invalid_field("Missing token", "token"));
        }
        let login = self.read_login(&auth.login.id).await?;
        let login = self.reserve_mfa_attempt(login).await?;
        let claim = match method {
            MfaMethod::Totp => match self.check_totp(&user, token) {
                Some(step) => Some(totp_claim(&user.id, step)),
                None => return Err(invalid("Invalid token")),
            },
            MfaMethod::Email => match self.check_email_code(&login, token).await? {
                CodeCheck::Email => email_claim(&login),
                CodeCheck::Expired => return Err(invalid("MFA code expired")),
                _ => return Err(invalid("Invalid token")),
            },
        };

        enrolled.push(method);
        set_enrolled_methods(&mut user, &enrolled);
        if method == MfaMethod::Email {
            user.email_verified = Some(true);
        }
        self.save_factor_change(login, claim, &user).await?;
        info!(user_id = %user.id, method = method.as_str(), "MFA factor enrolled");
        Ok(())
    }

    /// `POST /auth/mfa/disable`: removes one factor, or all without `method`, after a code
    /// from any enrolled factor. A user who must have MFA cannot remove the last factor.
    #[instrument(skip_all)]
    pub async fn disable_mfa(
        &self,
        auth: &AuthContext,
        method: Option<&str>,
        token: &str,
    ) -> ServiceResult<()> {
        let mut user = self.settings_user(&auth.login).await?;
        let enrolled = enrolled_methods(&user);

        // enrollment: the user and, when given, the method.
        if enrolled.is_empty() {
            return Err(invalid("User not enrolled in MFA"));
        }
        let method = parse_method(method)?;
        if let Some(method) = method
            && !enrolled.contains(&method)
        {
            return Err(invalid("User not enrolled in MFA method"));
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(ServiceError::invalid_field("Missing token", "token"));
        }

        // last factor: MFA that is required stays on.
        let remaining: Vec<MfaMethod> = match method {
            Some(method) => enrolled.iter().copied().filter(|m| *m != method).collect(),
            None => Vec::new(),
        };
        let project = self.caller_mfa_project(auth, &user).await;
        if remaining.is_empty() && Self::mfa_mandatory(&user, &project) {
            return Err(invalid(
                "Cannot remove the last MFA factor because MFA is required",
            ));
        }

        // code: from any enrolled factor.
        let login = self.read_login(&auth.login.id).await?;
        let login = self.reserve_mfa_attempt(login).await?;
        let claim = match self.check_code(&user, &login, token).await? {
            CodeCheck::Totp(step) => Some(totp_claim(&user.id, step)),
            CodeCheck::Email => email_claim(&login),
            CodeCheck::Expired => return Err(invalid("MFA code expired")),
            CodeCheck::Invalid => {
                warn!(user_id = %user.id, "invalid MFA code when disabling a factor");
                return Err(invalid("Invalid token"));
            }
        };

        // Removing TOTP rotates the secret, so the old authenticator entry stops working.
        if !remaining.contains(&MfaMethod::Totp) && enrolled.contains(&MfaMethod::Totp) {
            user.mfa_secret = Some(totp::generate_secret(self.random()));
        }
        set_enrolled_methods(&mut user, &remaining);
        self.save_factor_change(login, claim, &user).await?;
        info!(user_id = %user.id, "MFA factor removed");
        Ok(())
    }

    /// `POST /auth/mfa/send-email-challenge`: emails a code to the caller, stored on their
    /// current login, to enroll the email factor or to confirm a change.
    #[instrument(skip_all)]
    pub async fn send_mfa_email_challenge(&self, auth: &AuthContext) -> ServiceResult<()> {
        let user = self.settings_user(&auth.login).await?;
        let project = self.caller_mfa_project(auth, &user).await;
        if !enrolled_methods(&user).contains(&MfaMethod::Email)
            && !allowed_methods(Some(&project)).contains(&MfaMethod::Email)
        {
            return Err(invalid("MFA method not allowed"));
        }
        let login = self.read_login(&auth.login.id).await?;
        self.send_login_email_code(login, &user).await?;
        Ok(())
    }
}
