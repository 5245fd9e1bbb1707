//! Reading the policies a membership names and computing the access of a request.

use std::net::IpAddr;

use medgate_fhir::Reference;
use medgate_fhir::resources::{Login, Project, ProjectMembership};
use serde_json::Value;
use tracing::warn;

use super::EffectivePolicy;
use super::admin::apply_admin_overlay;
use super::build::{INVALID_POLICY_MESSAGE, PolicySource, build_policy, parse_parameters};
use super::decide::{Access, Principal};
use super::ip::ip_allowed;
use super::smart::{apply_scopes, parse_smart_scopes};
use crate::Services;
use crate::error::{ServiceError, ServiceResult};
use crate::random::is_uuid;

fn invalid_policy(membership: &ProjectMembership, reason: &str) -> ServiceError {
    warn!(membership_id = %membership.id, reason, "membership has an unusable access policy");
    ServiceError::invalid(INVALID_POLICY_MESSAGE)
}

/// The policy references of a membership with their parameters: `accessPolicy` first, then
/// every `access[]` entry.
fn named_policies(
    membership: &ProjectMembership,
) -> Result<Vec<(Reference, Option<&Value>)>, String> {
    let mut named = Vec::new();
    if let Some(reference) = &membership.access_policy {
        named.push((reference.clone(), None));
    }
    let Some(access) = membership.extra.get("access") else {
        return Ok(named);
    };
    let items = access
        .as_array()
        .ok_or("ProjectMembership.access must be an array")?;
    for item in items {
        let reference = item
            .get("policy")
            .cloned()
            .and_then(|policy| serde_json::from_value::<Reference>(policy).ok())
            .ok_or("ProjectMembership.access.policy is missing")?;
        named.push((reference, item.get("parameter")));
    }
    Ok(named)
}

impl Services {
    /// Reads the policies a membership names. Each must exist and belong to the
    /// membership's project; otherwise the membership cannot be used.
    async fn policy_sources(
        &self,
        membership: &ProjectMembership,
    ) -> ServiceResult<Vec<PolicySource>> {
        let named =
            named_policies(membership).map_err(|reason| invalid_policy(membership, &reason))?;
        let project_id = membership.project.id().unwrap_or_default();
        let mut sources = Vec::with_capacity(named.len());
        for (reference, parameters) in named {
            let id = match reference.parts() {
                Some(("AccessPolicy", id)) if is_uuid(id) => id,
                _ => {
                    return Err(invalid_policy(
                        membership,
                        &format!("{} is not an AccessPolicy reference", reference.reference),
                    ));
                }
            };
            let policy = match self.repo.store.read("AccessPolicy", id).await {
                Ok(policy) => policy,
                Err(medgate_store::StoreError::NotFound | medgate_store::StoreError::Gone) => {
                    return Err(invalid_policy(
                        membership,
                        &format!("{} does not exist", reference.reference),
                    ));
                }
                Err(error) => return Err(error.into()),
            };
            let policy_project = policy
                .get("meta")
                .and_then(|meta| meta.get("project"))
                .and_then(Value::as_str);
            if policy_project != Some(project_id) {
                return Err(invalid_policy(
                    membership,
                    &format!("{} belongs to another project", reference.reference),
                ));
            }
            let parameters = parse_parameters(parameters)
                .map_err(|reason| invalid_policy(membership, &reason))?;
            sources.push(PolicySource {
                reference,
                policy,
                parameters,
            });
        }
        Ok(sources)
    }

    /// Builds the policy of a membership before scopes and the admin overlay.
    pub async fn membership_policy(
        &self,
        membership: &ProjectMembership,
    ) -> ServiceResult<EffectivePolicy> {
        let sources = self.policy_sources(membership).await?;
        build_policy(&membership.profile, &sources)
            .map_err(|reason| invalid_policy(membership, &reason))
    }

    /// Checks the IP access rules of a membership's policies for a client address. Also
    /// fails, with Medplum's invalid-configuration message, when the policy is unusable.
    pub async fn check_membership_ip(
        &self,
        membership: &ProjectMembership,
        address: Option<&str>,
    ) -> ServiceResult<bool> {
        let policy = self.membership_policy(membership).await?;
        let address: Option<IpAddr> = address.and_then(|address| address.parse().ok());
        Ok(ip_allowed(&policy.ip_rules, address.as_ref()))
    }

    /// The patient in context of a login, for `patient/` scopes: the patient of its SMART
    /// launch, or else the membership's profile when that is a Patient.
    async fn patient_in_context(
        &self,
        login: &Login,
        membership: &ProjectMembership,
    ) -> ServiceResult<Option<Reference>> {
        let launch_id = login
            .extra
            .get("launch")
            .and_then(|launch| launch.get("reference"))
            .and_then(Value::as_str)
            .and_then(|reference| reference.strip_prefix("SmartAppLaunch/"));
        if let Some(launch_id) = launch_id.filter(|id| is_uuid(id)) {
            match self.repo.store.read("SmartAppLaunch", launch_id).await {
                Ok(launch) => {
                    let patient = launch
                        .get("patient")
                        .cloned()
                        .and_then(|patient| serde_json::from_value::<Reference>(patient).ok())
                        .filter(|patient| patient.resource_type() == Some("Patient"));
                    if patient.is_some() {
                        return Ok(patient);
                    }
                }
                Err(medgate_store::StoreError::NotFound | medgate_store::StoreError::Gone) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok((membership.profile.resource_type() == Some("Patient"))
            .then(|| membership.profile.clone()))
    }

    /// Computes the access of a request made through `login` as `membership`: the
    /// membership's policies, narrowed by the login's SMART scopes, then the admin overlay.
    pub async fn compute_access(
        &self,
        login: &Login,
        membership: &ProjectMembership,
        project: &Project,
    ) -> ServiceResult<Access> {
        let mut policy = self.membership_policy(membership).await?;

        // Super admins ignore scopes, as in Medplum.
        if !project.is_super_admin() {
            let scopes = parse_smart_scopes(&login.scope);
            let patient = self.patient_in_context(login, membership).await?;
            apply_scopes(&mut policy, &scopes, patient.as_ref())
                .map_err(|reason| invalid_policy(membership, &reason))?;
        }
        apply_admin_overlay(&mut policy, project, membership.is_admin())
            .map_err(|reason| invalid_policy(membership, &reason))?;

        let principal = if project.is_super_admin() {
            Principal::SuperAdmin
        } else {
            Principal::Member
        };
        Ok(Access { principal, policy })
    }
}
