//! Emailed MFA codes: 6 random digits, valid for `mfa_email_code_lifetime` (20 minutes by
//! default), single use, and stored on the Login only as an argon2id hash. A 6-digit code has a million values, so a fast hash such
//! as SHA-256 would give the code away to anyone who reads the database during its lifetime.

use std::collections::BTreeMap;

use chrono::DateTime;
use medgate_fhir::resources::{EmailMfa, Login, TypedResource, User};
use medgate_store::WriteOp;
use tracing::info;

use super::totp;
use super::{MfaMethod, enrolled_methods};
use crate::Services;
use crate::clock::fhir_instant;
use crate::email::{EmailKind, EmailRequest};
use crate::error::{ServiceError, ServiceResult};
use crate::password::Verification;
use crate::repo::WriteContext;
use crate::secret::Secret;

/// The outcome of checking a submitted code against a user's factors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CodeCheck {
    /// A TOTP code of this time step; the step must be claimed so it works only once.
    Totp(i64),
    /// The login's emailed code.
    Email,
    /// The emailed code matched but has expired.
    Expired,
    Invalid,
}

/// Draws a uniformly random 6-digit code. Values at or above the largest multiple of a
/// million below 2^32 are drawn again, so every code is equally likely.
fn random_code(random: &dyn crate::random::Random) -> String {
    loop {
        let mut bytes = [0u8; 4];
        random.fill(&mut bytes);
        let value = u32::from_be_bytes(bytes);
        if value < 4_294_000_000 {
            return format!("{:06}", value % 1_000_000);
        }
    }
}

impl Services {
    /// Puts a new emailed code on the login, replacing any earlier one, and returns it.
    pub async fn issue_email_code(&self, login: &mut Login) -> ServiceResult<Secret<String>> {
        let code = Secret::new(random_code(self.random()));
        let code_hash = self.passwords.hash(&code).await?;
        login.email_mfa = Some(EmailMfa {
            code_hash,
            expires_at: fhir_instant(self.now() + self.config.mfa_email_code_lifetime),
        });
        Ok(code)
    }

    /// Sends a new code to the user of a login and stores its hash on the login. The email
    /// is queued in the same batch as the login, so it goes out only if the code was saved.
    pub(super) async fn send_login_email_code(
        &self,
        mut login: Login,
        user: &User,
    ) -> ServiceResult<Login> {
        let Some(email) = user.email.clone() else {
            return Err(ServiceError::invalid("User does not have an email address"));
        };
        let code = self.issue_email_code(&mut login).await?;
        let update = self
            .repo
            .prepare_update(login.to_json(), &WriteContext::system(None))?;
        let batch = vec![update, self.mfa_code_email(user, &email, &code)?];
        match self.repo.store.write(batch).await {
            Ok(()) => {}
            Err(medgate_store::StoreError::VersionConflict) => {
                return Err(ServiceError::invalid(
                    "Login was changed by another request",
                ));
            }
            Err(error) => return Err(error.into()),
        }
        info!(login_id = %login.id, user_id = %user.id, "MFA code sent by email");
        self.repo.read(&login.id).await
    }

    /// Builds the outbox write of the email that carries an MFA code.
    fn mfa_code_email(
        &self,
        user: &User,
        to: &str,
        code: &Secret<String>,
    ) -> ServiceResult<WriteOp> {
        let project_id = user.meta.as_ref().and_then(|meta| meta.project.clone());
        let mut values = BTreeMap::new();
        values.insert("name".to_string(), user_name(user));
        values.insert("code".to_string(), code.expose().clone());
        self.queue_email(&EmailRequest {
            kind: EmailKind::MfaCode,
            project_id,
            to: to.to_string(),
            values,
        })
    }

    /// Checks a submitted code against the user's TOTP secret (when TOTP is enrolled, or
    /// nothing is yet) and then the login's emailed code.
    pub(super) async fn check_code(
        &self,
        user: &User,
        login: &Login,
        token: &str,
    ) -> ServiceResult<CodeCheck> {
        let enrolled = enrolled_methods(user);
        if (enrolled.contains(&MfaMethod::Totp) || enrolled.is_empty())
            && let Some(step) = self.check_totp(user, token)
        {
            return Ok(CodeCheck::Totp(step));
        }
        self.check_email_code(login, token).await
    }

    /// Finds the time step of a TOTP code within `mfaAuthenticatorWindow` steps of now.
    pub(super) fn check_totp(&self, user: &User, token: &str) -> Option<i64> {
        totp::matching_step(
            user.mfa_secret.as_deref()?,
            token.trim(),
            self.now(),
            self.config.mfa_authenticator_window,
        )
    }

    /// Checks a code against the login's emailed code and its expiry.
    pub(super) async fn check_email_code(
        &self,
        login: &Login,
        token: &str,
    ) -> ServiceResult<CodeCheck> {
        let Some(email_mfa) = &login.email_mfa else {
            return Ok(CodeCheck::Invalid);
        };
        let candidate = Secret::new(token.trim().to_string());
        let verification = self
            .passwords
            .verify(&candidate, Some(&email_mfa.code_hash))
            .await?;
        if !matches!(verification, Verification::Valid { .. }) {
            return Ok(CodeCheck::Invalid);
        }
        let expired = DateTime::parse_from_rfc3339(&email_mfa.expires_at)
            .map(|expires| expires <= self.now())
            .unwrap_or(true);
        Ok(if expired {
            CodeCheck::Expired
        } else {
            CodeCheck::Email
        })
    }
}

/// Formats the recipient's name for email templates: first and last name, or the email
/// address when the user has no name.
pub(super) fn user_name(user: &User) -> String {
    let parts: Vec<&str> = [user.first_name.as_deref(), user.last_name.as_deref()]
        .into_iter()
        .flatten()
        .filter(|part| !part.is_empty())
        .collect();
    if parts.is_empty() {
        user.email.clone().unwrap_or_default()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_six_digits() {
        let random = crate::random::SeededRandom::new(3);
        for _ in 0..100 {
            let code = random_code(&random);
            assert_eq!(code.len(), 6);
            assert!(code.bytes().all(|byte| byte.is_ascii_digit()));
        }
    }
}
