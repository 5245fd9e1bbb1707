//! The MFA steps of a sign-in, keyed by the login id: `/auth/mfa/verify`,
//! `/auth/mfa/login-enroll` and `/auth/mfa/send-email`.
//!
//! Every submitted code first reserves one of the login's attempts with a versioned write
//! of the Login, and only then is checked. Parallel guesses therefore cannot evaluate more
//! codes than the limit: each one either wins a write or re-reads the count.

use medgate_fhir::resources::{Login, TypedResource, User};
use medgate_store::{StoreError, WriteOp};
use tracing::{info, instrument, warn};

use super::email_code::CodeCheck;
use super::{
    MfaMethod, allowed_methods, enrolled_methods, login_needs_mfa_check, set_enrolled_methods,
};
use crate::Services;
use crate::clock::fhir_instant;
use crate::error::{ServiceError, ServiceResult};
use crate::login::LoginResponse;
use crate::random::sha256_hex;
use crate::repo::WriteContext;

fn invalid(message: &str) -> ServiceError {
    ServiceError::invalid(message)
}

/// The name under which a used TOTP step is claimed, so the code of that step is accepted
/// at most once (RFC 6238 §5.2).
pub(super) fn totp_claim(user_id: &str, step: i64) -> String {
    format!("mfa-totp:{user_id}:{step}")
}

/// The name under which an emailed code is claimed when it is used, so two requests racing
/// with the same code cannot both succeed. Each code has its own salted hash.
pub(super) fn email_claim(login: &Login) -> Option<String> {
    let email_mfa = login.email_mfa.as_ref()?;
    Some(format!("mfa-email:{}", sha256_hex(&email_mfa.code_hash)))
}

/// Rejects login-time MFA requests for logins that cannot take them, with Medplum's texts.
fn check_pending_login(login: &Login) -> ServiceResult<()> {
    if login.is_revoked() {
        return Err(invalid("Login revoked"));
    }
    if login.is_granted() {
        return Err(invalid("Login granted"));
    }
    if login.mfa_verified == Some(true) {
        return Err(invalid("Login already verified"));
    }
    Ok(())
}

impl Services {
    /// `POST /auth/mfa/verify`: checks a TOTP or emailed code for a pending login and
    /// returns the login result (a code, or the memberships to choose from).
    #[instrument(skip_all, fields(login_id = login_id))]
    pub async fn verify_mfa(&self, login_id: &str, token: &str) -> ServiceResult<LoginResponse> {
        // input: Medplum's validation messages.
        if login_id.is_empty() {
            return Err(ServiceError::invalid_field("Missing login", "login"));
        }
        if token.trim().is_empty() {
            return Err(ServiceError::invalid_field("Missing token", "token"));
        }

        // login state: pending, a password login, and recent enough.
        let login = self.read_login(login_id).await?;
        check_pending_login(&login)?;
        if login.auth_method != "password" {
            return Err(invalid("Invalid login authentication method"));
        }
        self.check_login_age(&login)?;

        // user: must have a factor.
        let user = self.login_user(&login).await?;
        if enrolled_methods(&user).is_empty() {
            return Err(invalid("User not enrolled in MFA"));
        }

        // code: counted first, then checked.
        let login = self.reserve_mfa_attempt(login).await?;
        let claim = match self.check_code(&user, &login, token).await? {
            CodeCheck::Totp(step) => Some(totp_claim(&user.id, step)),
            CodeCheck::Email => email_claim(&login),
            CodeCheck::Expired => return Err(invalid("MFA code expired")),
            CodeCheck::Invalid => {
                warn!(login_id, user_id = %user.id, "invalid MFA code");
                return Err(invalid("Invalid MFA token"));
            }
        };
        let login = self.complete_mfa(login, claim, Vec::new()).await?;
        info!(login_id, user_id = %user.id, "MFA verified");
        self.login_result(login).await
    }

    /// `POST /auth/mfa/login-enroll`: enrolls the first factor of a user who must have MFA,
    /// during sign-in. TOTP needs a valid code and completes MFA at once; email sends a code
    /// that `/auth/mfa/verify` then checks.
    #[instrument(skip_all, fields(login_id = login_id))]
    pub async fn login_enroll(
        &self,
        login_id: &str,
        method: Option<&str>,
        token: Option<&str>,
    ) -> ServiceResult<LoginResponse> {
        if login_id.is_empty() {
            return Err(ServiceError::invalid_field("Missing login", "login"));
        }
        let method = match method.filter(|method| !method.is_empty()) {
            None => MfaMethod::Totp,
            Some(text) => MfaMethod::parse(text)
                .ok_or_else(|| ServiceError::invalid_field("Invalid method", "method"))?,
        };

        let login = self.read_login(login_id).await?;
        check_pending_login(&login)?;
        if login.auth_method != "password" {
            return Err(invalid("Invalid login authentication method"));
        }
        self.check_login_age(&login)?;
        let mut user = self.login_user(&login).await?;
        if !enrolled_methods(&user).is_empty() {
            return Err(invalid("Already enrolled"));
        }

        // method: the project's allowed methods apply to new enrollments.
        let projects = self.login_projects(&login).await?;
        let project = self.user_project(&user, &projects).await;
        if !allowed_methods(project.as_ref()).contains(&method) {
            return Err(invalid("MFA method not allowed"));
        }

        if method == MfaMethod::Email {
            set_enrolled_methods(&mut user, &[MfaMethod::Email]);
            let user = self.update_user(&user).await?;
            info!(login_id, user_id = %user.id, "email MFA enrolled at sign-in");
            self.send_login_email_code(login, &user).await?;
            let login = self.read_login(login_id).await?;
            return self.login_result(login).await;
        }

        // TOTP: the secret shown in the enrollment prompt, and a code from it.
        let Some(secret) = user.mfa_secret.clone() else {
            return Err(invalid("Secret not found"));
        };
        let Some(token) = token.map(str::trim).filter(|token| !token.is_empty()) else {
            return Err(ServiceError::invalid_field("Missing token", "token"));
        };
        let login = self.reserve_mfa_attempt(login).await?;
        let Some(step) = super::totp::matching_step(
            &secret,
            token,
            self.now(),
            self.config.mfa_authenticator_window,
        ) else {
            warn!(login_id, user_id = %user.id, "invalid MFA code at enrollment");
            return Err(invalid("Invalid MFA token"));
        };
        set_enrolled_methods(&mut user, &[MfaMethod::Totp]);
        let user_write = self.repo.prepare_update(
            user.to_json(),
            &WriteContext::system(user.meta.as_ref().and_then(|meta| meta.project.as_deref())),
        )?;
        let login = self
            .complete_mfa(login, Some(totp_claim(&user.id, step)), vec![user_write])
            .await?;
        info!(login_id, user_id = %user.id, "TOTP enrolled at sign-in");
        self.login_result(login).await
    }

    /// `POST /auth/mfa/send-email`: sends a new code to a user with the email factor.
    #[instrument(skip_all, fields(login_id = login_id))]
    pub async fn send_mfa_email(&self, login_id: &str) -> ServiceResult<()> {
        if login_id.is_empty() {
            return Err(ServiceError::invalid_field("Missing login", "login"));
        }
        let login = self.read_login(login_id).await?;
        check_pending_login(&login)?;
        self.check_login_age(&login)?;
        let user = self.login_user(&login).await?;
        if !enrolled_methods(&user).contains(&MfaMethod::Email) {
            return Err(invalid("User not enrolled in email MFA"));
        }
        self.send_login_email_code(login, &user).await?;
        Ok(())
    }

    /// A pending login must finish MFA within `mfa_login_lifetime` of its password step.
    fn check_login_age(&self, login: &Login) -> ServiceResult<()> {
        let started = chrono::DateTime::parse_from_rfc3339(&login.auth_time)
            .map_err(|_| invalid("Login expired"))?;
        if started + self.config.mfa_login_lifetime <= self.now() {
            return Err(invalid("Login expired"));
        }
        Ok(())
    }

    /// Counts one MFA attempt on the login, or fails with 429 once the limit is reached.
    /// The count is written with the login's version, so concurrent attempts retry against
    /// the new count instead of overwriting it.
    pub(super) async fn reserve_mfa_attempt(&self, mut login: Login) -> ServiceResult<Login> {
        for _ in 0..20 {
            let used = login.mfa_attempts.unwrap_or(0);
            if used >= self.config.mfa_max_attempts {
                warn!(login_id = %login.id, "MFA attempt limit reached");
                return Err(too_many_mfa_attempts());
            }
            login.mfa_attempts = Some(used + 1);
            match self.repo.update(&login, &WriteContext::system(None)).await {
                Ok(updated) => {
                    // The account's lock counts MFA codes too, across all of the user's
                    // logins, so signing in again does not buy more guesses. The first code
                    // of a sign-in uses the attempt that its password step kept counted (see
                    // `password_login`). The versioned write above gives each request its
                    // own `used`, so only one request can be that first code.
                    if used > 0 || !login_needs_mfa_check(&updated) {
                        self.reserve_sign_in_attempt(&updated.user).await?;
                    }
                    return Ok(updated);
                }
                Err(ServiceError::PreconditionFailed) => {
                    login = self.repo.read(&login.id).await?;
                }
                Err(error) => return Err(error),
            }
        }
        Err(too_many_mfa_attempts())
    }

    /// Marks a login as having passed MFA, consumes its emailed code, resets its attempt
    /// count, and claims the code used, all in one batch with `extra` writes. A claim that
    /// another request already made means the code was used before.
    pub(super) async fn complete_mfa(
        &self,
        mut login: Login,
        claim: Option<String>,
        extra: Vec<WriteOp>,
    ) -> ServiceResult<Login> {
        for _ in 0..20 {
            if login.is_revoked() {
                return Err(invalid("Login revoked"));
            }
            login.mfa_verified = Some(true);
            login.email_mfa = None;
            login.mfa_attempts = None;
            let update = self
                .repo
                .prepare_update(login.to_json(), &WriteContext::system(None))?;
            let WriteOp::Update { resource, .. } = &update else {
                unreachable!("prepare_update returns an update")
            };
            let written = Login::from_json(resource.clone())
                .map_err(|error| ServiceError::Internal(error.to_string()))?;
            let mut batch = vec![update];
            batch.extend(extra.iter().cloned());
            if let Some(name) = &claim {
                batch.push(WriteOp::Claim {
                    name: name.clone(),
                    at: fhir_instant(self.now()),
                });
            }
            match self.repo.store.write(batch).await {
                Ok(()) => {
                    self.clear_sign_in_attempts(&written.user).await?;
                    return Ok(written);
                }
                Err(StoreError::AlreadyClaimed(_)) => {
                    warn!(login_id = %login.id, "MFA code used a second time");
                    return Err(invalid("Invalid MFA token"));
                }
                Err(StoreError::VersionConflict) if extra.is_empty() => {
                    // Another request changed the login; one that completed MFA first wins.
                    login = self.repo.read(&login.id).await?;
                    if login.mfa_verified == Some(true) {
                        return Err(invalid("Login already verified"));
                    }
                }
                Err(StoreError::VersionConflict) => {
                    return Err(invalid("Login was changed by another request"));
                }
                Err(error) => return Err(error.into()),
            }
        }
        Err(invalid("Login was changed by another request"))
    }

    /// Reads the current user of a login for a settings request.
    pub(super) async fn settings_user(&self, login: &Login) -> ServiceResult<User> {
        if login.user.resource_type() != Some("User") {
            return Err(invalid("MFA is only available to users"));
        }
        self.login_user(login).await
    }
}

/// Builds the error for a login that used up its MFA codes: the user must sign in again.
fn too_many_mfa_attempts() -> ServiceError {
    ServiceError::TooManyRequests {
        message: "Too many attempts; please sign in again later".to_string(),
        retry_after_seconds: None,
    }
}
