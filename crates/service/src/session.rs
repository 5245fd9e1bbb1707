//! Authenticating API requests: a bearer access token, or a client's id and secret in
//! `Authorization: Basic`, optionally acting for another member of the project through
//! `X-Medplum-On-Behalf-Of`. A token's signature is checked first, then its Login: a token
//! stops working as soon as its Login is revoked or its membership is deactivated, although
//! JWTs themselves cannot be recalled. Every request then gets its computed access, and the
//! IP rules of its policies are checked.

use std::net::IpAddr;
use std::sync::Arc;

use medgate_fhir::Reference;
use medgate_fhir::resources::{Login, Project, ProjectMembership, TypedResource};
use medgate_fhir::search::SearchRequest;
use serde_json::Value;
use tracing::{debug, instrument, warn};

use crate::Services;
use crate::access::{Access, ip_allowed};
use crate::client_auth::{parse_basic, secret_matches};
use crate::clock::fhir_instant;
use crate::error::{ServiceError, ServiceResult};
use crate::keys::JwtError;
use crate::random::is_uuid;
use crate::session_cache::CachedCaller;
use crate::tokens::ACCESS_TOKEN_TYPE;

/// The caller: the Login behind the token and the membership it is bound to.
#[derive(Debug, Clone)]
pub struct AuthContext {
    pub login: Login,
    /// The caller's own membership; its profile is the `meta.author` of their writes.
    pub membership: ProjectMembership,
    pub project: Project,
    pub claims: Value,
    /// The membership the request acts for (`X-Medplum-On-Behalf-Of`), whose policy and
    /// admin flag then apply.
    pub on_behalf_of: Option<ProjectMembership>,
    /// What the request may read and write.
    pub access: Arc<Access>,
}

impl AuthContext {
    pub fn project_id(&self) -> &str {
        &self.project.id
    }

    /// The membership whose policy applies: the on-behalf-of target, or the caller's own.
    pub fn effective_membership(&self) -> &ProjectMembership {
        self.on_behalf_of.as_ref().unwrap_or(&self.membership)
    }

    pub fn is_project_admin(&self) -> bool {
        self.effective_membership().is_admin()
    }

    pub fn is_super_admin(&self) -> bool {
        self.project.is_super_admin()
    }
}

/// Refuses a request from an address the access's IP rules block.
fn check_ip_rules(
    access: &Access,
    membership: &ProjectMembership,
    client_address: Option<IpAddr>,
) -> ServiceResult<()> {
    if client_address.is_some() && !ip_allowed(&access.policy.ip_rules, client_address.as_ref()) {
        warn!(membership_id = %membership.id, "request from a blocked IP address");
        return Err(ServiceError::Forbidden);
    }
    Ok(())
}

/// The parts of a request that authenticate it.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestCredentials<'a> {
    /// The `Authorization` header: `Bearer <token>` or `Basic <base64(id:secret)>`.
    pub authorization: Option<&'a str>,
    /// The `X-Medplum-On-Behalf-Of` header.
    pub on_behalf_of: Option<&'a str>,
    /// The client address, checked against the IP rules of the policies.
    pub client_address: Option<IpAddr>,
}

/// The caller before its access is computed.
struct Principal {
    login: Login,
    membership: ProjectMembership,
    project: Project,
    claims: Value,
}

impl Services {
    /// Verifies a JWT issued by this server: signature, `typ`, issuer and validity window.
    /// A `kid` this process has not loaded yet may belong to a key another process just
    /// created, so the keys are reloaded once before giving up.
    pub async fn verify_own_token(
        &self,
        token: &str,
        expected_type: &str,
    ) -> Result<Value, JwtError> {
        let (header, claims) = match self.keys.verify(token) {
            Err(JwtError::UnknownKey) => {
                if let Err(error) = self.load_keys().await {
                    tracing::error!(%error, "reloading signing keys failed");
                }
                self.keys.verify(token)?
            }
            other => other?,
        };
        if header.get("typ").and_then(Value::as_str) != Some(expected_type) {
            return Err(JwtError::Malformed);
        }
        if claims.get("iss").and_then(Value::as_str) != Some(self.config.issuer.as_str()) {
            return Err(JwtError::Malformed);
        }
        let now = self.now().timestamp();
        let expires = claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or(JwtError::Malformed)?;
        if expires <= now {
            return Err(JwtError::Malformed);
        }
        // A small leeway for clock skew between server processes.
        if claims
            .get("nbf")
            .and_then(Value::as_i64)
            .is_some_and(|nbf| nbf > now + 60)
        {
            return Err(JwtError::Malformed);
        }
        Ok(claims)
    }

    /// Authenticates an access token and loads the caller's login, membership, project and
    /// access. Neither on-behalf-of nor IP rules apply.
    pub async fn authenticate_bearer(&self, token: &str) -> ServiceResult<AuthContext> {
        self.bearer_context(token, None, None).await
    }

    /// Authenticates an API request from its `Authorization` and `X-Medplum-On-Behalf-Of`
    /// headers, computes its access and checks the IP rules. Missing or invalid credentials
    /// are `Unauthorized`; on-behalf-of by a non-admin, or from a blocked address, is
    /// `Forbidden`.
    #[instrument(skip_all)]
    pub async fn authenticate_request(
        &self,
        credentials: RequestCredentials<'_>,
    ) -> ServiceResult<AuthContext> {
        let authorization = credentials
            .authorization
            .map(str::trim)
            .ok_or(ServiceError::Unauthorized)?;
        if let Some(token) = authorization.strip_prefix("Bearer ") {
            return self
                .bearer_context(
                    token.trim(),
                    credentials.on_behalf_of,
                    credentials.client_address,
                )
                .await;
        }
        if !authorization.starts_with("Basic ") {
            return Err(ServiceError::Unauthorized);
        }
        let principal = self.basic_principal(authorization).await?;
        self.finish_authentication(
            principal,
            credentials.on_behalf_of,
            credentials.client_address,
        )
        .await
    }

    /// Authenticates a bearer token. The caller built from its Login is cached until a write
    /// changes what it was built from (see `session_cache`). Requests on behalf of someone
    /// else are built afresh each time.
    async fn bearer_context(
        &self,
        token: &str,
        on_behalf_of: Option<&str>,
        client_address: Option<IpAddr>,
    ) -> ServiceResult<AuthContext> {
        let claims = self
            .verify_own_token(token, ACCESS_TOKEN_TYPE)
            .await
            .map_err(|error| {
                debug!(%error, "bearer token rejected");
                ServiceError::Unauthorized
            })?;
        let login_id = claims
            .get("login_id")
            .and_then(Value::as_str)
            .ok_or(ServiceError::Unauthorized)?
            .to_string();
        let acts_for_someone = on_behalf_of.is_some_and(|value| !value.trim().is_empty());
        if !acts_for_someone && let Some(cached) = self.auth_cache.get(&login_id) {
            check_ip_rules(&cached.access, &cached.membership, client_address)?;
            return Ok(cached.context(claims));
        }

        let since = self.auth_cache.generation();
        let login = self.active_login(&login_id).await?;
        let membership_reference = login.membership.clone().ok_or(ServiceError::Unauthorized)?;
        let (membership, project) = self.active_membership(&membership_reference).await?;
        let principal = Principal {
            login,
            membership,
            project,
            claims,
        };
        let context = self
            .finish_authentication(principal, on_behalf_of, client_address)
            .await?;
        if !acts_for_someone {
            self.auth_cache.insert(
                CachedCaller {
                    login: context.login.clone(),
                    membership: context.membership.clone(),
                    project: context.project.clone(),
                    access: context.access.clone(),
                },
                since,
            );
        }
        Ok(context)
    }

    /// Authenticates a ClientApplication by `Authorization: Basic` as Medplum does for API
    /// requests: the client must be active, its secret must match, and it must be a member
    /// of a project. Its Login exists only for this request and is never stored.
    async fn basic_principal(&self, authorization: &str) -> ServiceResult<Principal> {
        let credentials = parse_basic(authorization).ok_or(ServiceError::Unauthorized)?;
        let secret = credentials
            .client_secret
            .as_ref()
            .filter(|secret| !secret.is_empty())
            .ok_or(ServiceError::Unauthorized)?;
        let client = self
            .find_client(&credentials.client_id)
            .await
            .map_err(|_| ServiceError::Unauthorized)?;
        if !client.is_active() || !secret_matches(&client, secret) {
            debug!(client_id = %client.id, "basic authentication rejected");
            return Err(ServiceError::Unauthorized);
        }

        let request =
            SearchRequest::new("ProjectMembership").filter("user", &client.reference().reference);
        let membership: ProjectMembership = self
            .repo
            .search_one(request)
            .await?
            .ok_or(ServiceError::Unauthorized)?;
        let (membership, project) = self.active_membership(&membership.reference()).await?;
        let login = Login {
            user: client.reference(),
            client: Some(client.reference()),
            membership: Some(membership.reference()),
            scope: "openid".to_string(),
            auth_method: "client".to_string(),
            auth_time: fhir_instant(self.now()),
            granted: Some(true),
            ..Default::default()
        };
        Ok(Principal {
            login,
            membership,
            project,
            claims: Value::Null,
        })
    }

    async fn active_membership(
        &self,
        reference: &Reference,
    ) -> ServiceResult<(ProjectMembership, Project)> {
        let membership: ProjectMembership = self
            .repo
            .read_reference(reference)
            .await
            .map_err(|_| ServiceError::Unauthorized)?;
        if !membership.is_active() {
            return Err(ServiceError::Unauthorized);
        }
        let project: Project = self
            .repo
            .read_reference(&membership.project)
            .await
            .map_err(|_| ServiceError::Unauthorized)?;
        Ok((membership, project))
    }

    async fn finish_authentication(
        &self,
        principal: Principal,
        on_behalf_of: Option<&str>,
        client_address: Option<IpAddr>,
    ) -> ServiceResult<AuthContext> {
        let Principal {
            login,
            membership,
            project,
            claims,
        } = principal;

        let target = match on_behalf_of
            .map(str::trim)
            .filter(|value| !value.is_empty())
        {
            Some(value) => Some(self.on_behalf_of_target(&membership, value).await?),
            None => None,
        };

        // IP rules: the caller's own policies always apply, and the target's too when acting
        // for someone, so neither can be reached from an address it blocks.
        if let Some(target) = &target {
            let own = self.membership_policy(&membership).await?;
            if client_address.is_some() && !ip_allowed(&own.ip_rules, client_address.as_ref()) {
                warn!(membership_id = %membership.id, "request from a blocked IP address");
                return Err(ServiceError::Forbidden);
            }
            debug!(target_membership_id = %target.id, "request acts on behalf of another member");
        }
        let effective = target.as_ref().unwrap_or(&membership);
        let access = self.compute_access(&login, effective, &project).await?;
        check_ip_rules(&access, effective, client_address)?;

        Ok(AuthContext {
            login,
            membership,
            project,
            claims,
            on_behalf_of: target,
            access: Arc::new(access),
        })
    }

    /// Finds the membership named by `X-Medplum-On-Behalf-Of`: `ProjectMembership/<id>`, or
    /// the profile of a membership, such as `Practitioner/<id>`. Only project admins may act
    /// for someone else, and only for members of their own project. As in Medplum, a
    /// membership id that is not visible is not found, and a profile with no membership in
    /// the project is forbidden.
    async fn on_behalf_of_target(
        &self,
        caller: &ProjectMembership,
        value: &str,
    ) -> ServiceResult<ProjectMembership> {
        if !caller.is_admin() {
            return Err(ServiceError::Forbidden);
        }
        let reference = Reference {
            reference: value.to_string(),
            display: None,
        };
        let Some((resource_type, id)) = reference.parts() else {
            return Err(ServiceError::invalid(
                "X-Medplum-On-Behalf-Of must be ProjectMembership/<id> or a profile reference such as Practitioner/<id>",
            ));
        };
        let target = if resource_type == "ProjectMembership" {
            if !is_uuid(id) {
                return Err(ServiceError::NotFound);
            }
            let membership: ProjectMembership = match self.repo.read(id).await {
                Ok(membership) => membership,
                Err(ServiceError::Gone) => return Err(ServiceError::NotFound),
                Err(error) => return Err(error),
            };
            if membership.project.reference != caller.project.reference {
                return Err(ServiceError::NotFound);
            }
            membership
        } else {
            let request = SearchRequest::new("ProjectMembership")
                .filter("profile", value)
                .filter("project", &caller.project.reference);
            self.repo
                .search_one(request)
                .await?
                .ok_or(ServiceError::Forbidden)?
        };
        if !target.is_active() {
            return Err(ServiceError::Forbidden);
        }
        Ok(target)
    }

    /// Reads a login that has not been revoked; anything else is `Unauthorized`.
    async fn active_login(&self, login_id: &str) -> ServiceResult<Login> {
        let login: Login = self
            .repo
            .read(login_id)
            .await
            .map_err(|error| match error {
                ServiceError::NotFound | ServiceError::Gone => ServiceError::Unauthorized,
                other => other,
            })?;
        if login.is_revoked() {
            return Err(ServiceError::Unauthorized);
        }
        Ok(login)
    }
}
