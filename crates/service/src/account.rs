//! The signed-in user's own account: `GET /auth/me`, `POST /auth/changepassword`,
//! `POST /auth/revoke` and `POST /oauth2/logout`, plus the public sign-in branding of
//! `GET /auth/clientinfo/:id`.

use medgate_fhir::Reference;
use medgate_fhir::resources::{ClientApplication, Login, TypedResource, User};
use medgate_fhir::search::{MAX_COUNT, SearchRequest};
use medgate_store::{StoreError, WriteOp};
use serde::Serialize;
use serde_json::{Value, json};
use tracing::{info, instrument, warn};

use crate::Services;
use crate::error::{ServiceError, ServiceResult};
use crate::password::{Verification, check_new_password};
use crate::random::is_uuid;
use crate::repo::WriteContext;
use crate::secret::Secret;
use crate::session::AuthContext;
use crate::tokens::ACCESS_TOKEN_TYPE;

/// At most this many sessions are listed by `/auth/me`, the most recent first.
const MAX_LISTED_SESSIONS: usize = 100;

/// How often a password change is retried when another request changes the user or one of
/// its logins between our read and our write.
const PASSWORD_CHANGE_ATTEMPTS: usize = 3;

/// The `GET /auth/me` response, with Medplum's field names.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    pub project: ProjectSummary,
    pub membership: MembershipSummary,
    /// The full profile resource (Practitioner, Patient, ClientApplication, …).
    pub profile: Value,
    /// The membership's UserConfiguration, or the default menu medgate builds.
    pub config: Value,
    /// The effective access policy of the session, with `basedOn` naming its sources.
    pub access_policy: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<UserSummary>,
    /// Present only when the caller is a User.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security: Option<Security>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectSummary {
    pub resource_type: &'static str,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strict_mode: Option<bool>,
    /// `@medplum/core`'s `isSuperAdmin()` reads this field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub super_admin: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MembershipSummary {
    pub resource_type: &'static str,
    pub id: String,
    pub user: Reference,
    pub profile: Reference,
    /// `@medplum/core`'s `isProjectAdmin()` reads this field.
    pub admin: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserSummary {
    pub resource_type: &'static str,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Security {
    pub mfa_enrolled: bool,
    pub sessions: Vec<SessionSummary>,
}

/// One of the user's sessions: a login that is bound to a membership and not revoked.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionSummary {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<String>,
    pub auth_method: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub browser: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
}

/// The sign-in page branding of a client (`signInForm`).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignInBranding {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub welcome_string: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logo: Option<Value>,
}

impl Services {
    /// Describes the caller's session (`GET /auth/me`).
    pub async fn me(&self, auth: &AuthContext) -> ServiceResult<Me> {
        let project = &auth.project;
        // On behalf of someone, the session is theirs: their membership, profile and policy.
        let membership = auth.effective_membership();
        let profile = self.read_profile(&membership.profile).await?;
        let config = self.user_configuration(auth).await?;

        // security: Medplum reports it for User principals only, not for clients or bots.
        let (user, security) = match auth.login.user.resource_type() {
            Some("User") => {
                let user: User = self.repo.read_reference(&auth.login.user).await?;
                let sessions = self.list_sessions(&auth.login.user).await?;
                let summary = UserSummary {
                    resource_type: "User",
                    id: user.id.clone(),
                    email: user.email.clone(),
                };
                let security = Security {
                    mfa_enrolled: user.mfa_enrolled == Some(true),
                    sessions,
                };
                (Some(summary), Some(security))
            }
            _ => (None, None),
        };

        Ok(Me {
            project: ProjectSummary {
                resource_type: "Project",
                id: project.id.clone(),
                name: project.name.clone(),
                description: project.description.clone(),
                strict_mode: project.strict_mode,
                super_admin: project.super_admin,
            },
            membership: MembershipSummary {
                resource_type: "ProjectMembership",
                id: membership.id.clone(),
                user: membership.user.clone(),
                profile: membership.profile.clone(),
                admin: membership.is_admin(),
            },
            profile,
            config,
            access_policy: auth.access.policy.to_json(),
            user,
            security,
        })
    }

    /// Reads a membership's profile resource. A ClientApplication profile loses its secret
    /// hashes, which no response may contain.
    pub async fn read_profile(&self, reference: &Reference) -> ServiceResult<Value> {
        let (resource_type, id) = reference.parts().ok_or(ServiceError::NotFound)?;
        let mut profile = self.repo.store.read(resource_type, id).await?;
        if resource_type == ClientApplication::RESOURCE_TYPE
            && let Some(object) = profile.as_object_mut()
        {
            object.remove("secretHash");
            object.remove("retiringSecretHash");
        }
        Ok(profile)
    }

    /// Reads the membership's stored UserConfiguration, or builds Medplum's default menu.
    async fn user_configuration(&self, auth: &AuthContext) -> ServiceResult<Value> {
        let stored = auth
            .membership
            .extra
            .get("userConfiguration")
            .and_then(|reference| reference.get("reference"))
            .and_then(Value::as_str)
            .and_then(|reference| reference.strip_prefix("UserConfiguration/"));
        if let Some(id) = stored {
            match self.repo.store.read("UserConfiguration", id).await {
                Ok(config) => return Ok(config),
                Err(StoreError::NotFound | StoreError::Gone) => {
                    warn!(
                        membership_id = %auth.membership.id,
                        user_configuration_id = id,
                        "membership names a missing UserConfiguration; using the default menu"
                    );
                }
                Err(error) => return Err(error.into()),
            }
        }
        Ok(default_user_configuration(
            auth.is_project_admin(),
            auth.is_super_admin(),
        ))
    }

    /// Lists the user's non-revoked logins that are bound to a membership, the most recent
    /// first.
    async fn list_sessions(&self, user: &Reference) -> ServiceResult<Vec<SessionSummary>> {
        let mut logins: Vec<Login> = self
            .logins_of_user(user)
            .await?
            .into_iter()
            .filter(|login| !login.is_revoked() && login.membership.is_some())
            .collect();
        logins.sort_by(|a, b| last_updated(b).cmp(last_updated(a)));
        Ok(logins
            .into_iter()
            .take(MAX_LISTED_SESSIONS)
            .map(|login| {
                let user_agent = login.user_agent.as_deref().unwrap_or_default();
                SessionSummary {
                    last_updated: login
                        .meta
                        .as_ref()
                        .and_then(|meta| meta.last_updated.clone()),
                    browser: browser_name(user_agent).map(str::to_string),
                    os: os_name(user_agent).map(str::to_string),
                    id: login.id,
                    auth_method: login.auth_method,
                    remote_address: login.remote_address,
                }
            })
            .collect())
    }

    /// Reads every Login of a user, page by page.
    // NOTE: this reads all of the user's logins, revoked ones included, because the store
    // cannot yet filter Logins by revocation or by `_lastUpdated`.
    async fn logins_of_user(&self, user: &Reference) -> ServiceResult<Vec<Login>> {
        let mut logins = Vec::new();
        loop {
            let mut request = SearchRequest::new("Login")
                .filter("user", &user.reference)
                .count(MAX_COUNT);
            request.offset = u32::try_from(logins.len()).unwrap_or(u32::MAX);
            let page: Vec<Login> = self.repo.search(&request, None).await?;
            let full = page.len() == MAX_COUNT as usize;
            logins.extend(page);
            if !full {
                return Ok(logins);
            }
        }
    }

    /// Changes the caller's password (`POST /auth/changepassword`) and revokes every other
    /// login of the user, so a stolen session ends with the old password. Medplum keeps the
    /// other sessions.
    #[instrument(skip_all, fields(login_id = %auth.login.id))]
    pub async fn change_password(
        &self,
        auth: &AuthContext,
        old_password: &Secret<String>,
        new_password: &Secret<String>,
    ) -> ServiceResult<()> {
        // oldPassword: required.
        if old_password.is_empty() {
            return Err(ServiceError::invalid_field(
                "Missing oldPassword",
                "oldPassword",
            ));
        }

        // newPassword: length in bytes and the list of common passwords.
        if let Err(message) = check_new_password(new_password) {
            return Err(ServiceError::invalid_field(message, "newPassword"));
        }

        // principal: only a User has a password, because clients and bots use secrets.
        if auth.login.user.resource_type() != Some(User::RESOURCE_TYPE) {
            return Err(ServiceError::Forbidden);
        }
        let mut user: User = self.repo.read_reference(&auth.login.user).await?;

        // oldPassword: must match the stored hash. An account without a password (signed up
        // through an identity provider) verifies against a decoy and fails the same way. The
        // check spends an attempt of the account's sign-in lockout, so a stolen session
        // cannot guess the password faster than the sign-in page allows.
        self.reserve_sign_in_attempt(&auth.login.user).await?;
        let mut verified_hash = user.password_hash.clone();
        let verification = self
            .passwords
            .verify(old_password, verified_hash.as_deref())
            .await?;
        if verification == Verification::Invalid {
            warn!(user_id = %user.id, "password change with an incorrect old password");
            return Err(ServiceError::invalid_field(
                "Incorrect password",
                "oldPassword",
            ));
        }
        self.clear_sign_in_attempts(&auth.login.user).await?;

        // The new hash and the revocations are one batch, so no session survives a password
        // change that committed. A batch fails when another request changed the user or one
        // of the logins in between, and is then rebuilt from fresh reads.
        let new_hash = self.passwords.hash(new_password).await?;
        for _ in 0..PASSWORD_CHANGE_ATTEMPTS {
            user.password_hash = Some(new_hash.clone());
            let (batch, revoked) = self
                .password_update_batch(&user, Some(&auth.login.id))
                .await?;
            match self.repo.store.write(batch).await {
                Ok(()) => {
                    info!(
                        user_id = %user.id,
                        revoked_logins = revoked,
                        "password changed; other logins revoked"
                    );
                    return Ok(());
                }
                Err(StoreError::VersionConflict) => {
                    user = self.repo.read_reference(&auth.login.user).await?;
                    // Another request changed the hash since we verified the old password:
                    // a concurrent password change, or a bcrypt hash replaced at sign-in.
                    if user.password_hash != verified_hash {
                        let verification = self
                            .passwords
                            .verify(old_password, user.password_hash.as_deref())
                            .await?;
                        if verification == Verification::Invalid {
                            return Err(ServiceError::invalid_field(
                                "Incorrect password",
                                "oldPassword",
                            ));
                        }
                        verified_hash = user.password_hash.clone();
                    }
                }
                Err(error) => return Err(error.into()),
            }
        }
        Err(ServiceError::Internal(format!(
            "password change for user {} failed: {PASSWORD_CHANGE_ATTEMPTS} attempts conflicted with other writes",
            user.id
        )))
    }

    /// Builds the writes that store `user` (with its new password hash) and revoke every
    /// login of the user except `keep_login`, and counts the revoked logins. Each write
    /// expects the version it read, so the batch fails with [`StoreError::VersionConflict`]
    /// when another request changed one of them first.
    pub(crate) async fn password_update_batch(
        &self,
        user: &User,
        keep_login: Option<&str>,
    ) -> ServiceResult<(Vec<WriteOp>, usize)> {
        let system = WriteContext::system(None);
        let mut batch = vec![self.repo.prepare_update(user.to_json(), &system)?];
        let mut revoked = 0;
        for mut login in self.logins_of_user(&user.reference()).await? {
            if login.is_revoked() || Some(login.id.as_str()) == keep_login {
                continue;
            }
            login.revoked = Some(true);
            batch.push(self.repo.prepare_update(login.to_json(), &system)?);
            revoked += 1;
        }
        Ok((batch, revoked))
    }

    /// Revokes one of the caller's own logins (`POST /auth/revoke`). Another user's login
    /// is `Not found`, as in Medplum, so that login ids cannot be probed.
    #[instrument(skip_all, fields(login_id = login_id))]
    pub async fn revoke_own_login(&self, auth: &AuthContext, login_id: &str) -> ServiceResult<()> {
        // loginId: a UUID, with Medplum's message.
        if !is_uuid(login_id) {
            return Err(ServiceError::invalid_field(
                "Login ID is required.",
                "loginId",
            ));
        }

        // ownership: the login must belong to the caller's user.
        let login = self.read_login(login_id).await?;
        if login.user.reference != auth.login.user.reference {
            return Err(ServiceError::NotFound);
        }
        self.revoke_login(login).await
    }

    /// Ends the session of an access token (`POST /oauth2/logout`). A missing, invalid or
    /// expired token, or an already revoked login, leaves nothing to do and is no error,
    /// because `@medplum/core`'s `signOut()` must succeed whatever the session's state.
    #[instrument(skip_all)]
    pub async fn logout(&self, access_token: Option<&Secret<String>>) -> ServiceResult<()> {
        let Some(token) = access_token else {
            return Ok(());
        };
        let Ok(claims) = self
            .verify_own_token(token.expose(), ACCESS_TOKEN_TYPE)
            .await
        else {
            return Ok(());
        };
        let Some(login_id) = claims.get("login_id").and_then(Value::as_str) else {
            return Ok(());
        };

        // The membership is not checked: a session whose membership was deactivated must
        // still end, or it would come back when the membership is reactivated.
        match self.repo.read::<Login>(login_id).await {
            Ok(login) => self.revoke_login(login).await,
            Err(ServiceError::NotFound | ServiceError::Gone) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Reads the branding of a client's sign-in form (`GET /auth/clientinfo/:id`). The route
    /// is public, like the page that shows the branding.
    pub async fn client_branding(&self, client_id: &str) -> ServiceResult<SignInBranding> {
        if !is_uuid(client_id) {
            return Err(ServiceError::NotFound);
        }
        let client: ClientApplication = match self.repo.read(client_id).await {
            Ok(client) => client,
            Err(ServiceError::Gone) => return Err(ServiceError::NotFound),
            Err(error) => return Err(error),
        };
        let form = client.sign_in_form.unwrap_or(Value::Null);
        Ok(SignInBranding {
            welcome_string: form.get("welcomeString").cloned(),
            logo: form.get("logo").cloned(),
        })
    }
}

fn last_updated(login: &Login) -> &str {
    login
        .meta
        .as_ref()
        .and_then(|meta| meta.last_updated.as_deref())
        .unwrap_or_default()
}

/// Medplum's default UserConfiguration for a membership without one: a Favorites menu, an
/// Admin menu for project admins and a Super Admin menu in the super-admin project.
pub fn default_user_configuration(admin: bool, super_admin: bool) -> Value {
    let links = |items: &[(&str, &str)]| -> Value {
        items
            .iter()
            .map(|(name, target)| json!({"name": name, "target": target}))
            .collect()
    };
    let mut menu = vec![json!({
        "title": "Favorites",
        "link": links(&[
            ("Patient", "/Patient"),
            ("Practitioner", "/Practitioner"),
            ("Organization", "/Organization"),
            ("ServiceRequest", "/ServiceRequest"),
            ("DiagnosticReport", "/DiagnosticReport"),
            ("Questionnaire", "/Questionnaire"),
        ]),
    })];
    if admin {
        let mut admin_links = vec![
            ("Project", "/admin/project"),
            ("AccessPolicy", "/AccessPolicy"),
            ("Subscriptions", "/Subscription"),
            ("Batch", "/batch"),
        ];
        // Medplum shows the project config page to admins of ordinary projects only.
        if !super_admin {
            admin_links.push(("Config", "/admin/config"));
        }
        menu.push(json!({"title": "Admin", "link": links(&admin_links)}));
    }
    if super_admin {
        menu.push(json!({
            "title": "Super Admin",
            "link": links(&[("Projects", "/Project"), ("Super Config", "/admin/super")]),
        }));
    }
    json!({"resourceType": "UserConfiguration", "menu": menu})
}

/// Guesses the browser family from a User-Agent header, for the session list. The order
/// matters, because Edge and Opera also claim to be Chrome, and Chrome claims to be Safari.
fn browser_name(user_agent: &str) -> Option<&'static str> {
    [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
    ]
    .into_iter()
    .find(|(token, _)| user_agent.contains(token))
    .map(|(_, name)| name)
}

/// Guesses the operating system from a User-Agent header. iOS and Android come before macOS
/// and Linux, whose tokens their User-Agents also contain.
fn os_name(user_agent: &str) -> Option<&'static str> {
    [
        ("iPhone", "iOS"),
        ("iPad", "iOS"),
        ("Android", "Android"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("Linux", "Linux"),
    ]
    .into_iter()
    .find(|(token, _)| user_agent.contains(token))
    .map(|(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn titles(config: &Value) -> Vec<&str> {
        config["menu"]
            .as_array()
            .unwrap()
            .iter()
            .map(|menu| menu["title"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn default_menu_by_role() {
        assert_eq!(
            titles(&default_user_configuration(false, false)),
            ["Favorites"]
        );
        let admin = default_user_configuration(true, false);
        assert_eq!(titles(&admin), ["Favorites", "Admin"]);
        assert_eq!(admin["menu"][1]["link"][4]["target"], "/admin/config");
        let super_admin = default_user_configuration(true, true);
        assert_eq!(titles(&super_admin), ["Favorites", "Admin", "Super Admin"]);
        assert_eq!(super_admin["menu"][1]["link"].as_array().unwrap().len(), 4);
    }

    #[test]
    fn user_agent_families() {
        let chrome_on_mac = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 \
            (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
        assert_eq!(browser_name(chrome_on_mac), Some("Chrome"));
        assert_eq!(os_name(chrome_on_mac), Some("macOS"));
        let edge_on_windows = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
            (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0";
        assert_eq!(browser_name(edge_on_windows), Some("Edge"));
        assert_eq!(os_name(edge_on_windows), Some("Windows"));
        let safari_on_iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) \
            AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
        assert_eq!(browser_name(safari_on_iphone), Some("Safari"));
        assert_eq!(os_name(safari_on_iphone), Some("iOS"));
        assert_eq!(browser_name("node"), None);
        assert_eq!(os_name("node"), None);
    }
}
