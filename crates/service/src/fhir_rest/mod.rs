//! The FHIR R4 RESTful API (the "RESTful API" page of FHIR R4) over the resource types in
//! [`SUPPORTED_TYPES`]: create, read, vread, update, delete, history and search, and
//! `ClientApplication/$rotate-secret`.
//!
//! Who may do what is in `access`, the fields a response hides and a write cannot set are in
//! `fields`, and the rules of the typed resources are in `prepare`. Every resource a caller
//! gets back passes through `fields::present`, which strips secrets and secret hashes.

pub mod access;
mod batch;
mod bundle;
mod capability;
mod client;
mod conditional;
mod deferred_store;
mod fields;
mod patch;
mod prepare;
mod references;
mod search;
mod validate;

use medgate_fhir::Reference;
use medgate_fhir::search::{Restriction, SUPPORTED_TYPES, SearchRequest};
use medgate_store::{SearchScope, StoreError, WriteOp};
use serde_json::{Map, Value};
use tracing::info;

pub use batch::MAX_BUNDLE_ENTRIES;
pub(crate) use client::with_secret;
pub use conditional::{ConditionalWrite, parse_condition};
pub use fields::strip_secret_fields;

use crate::Services;
use crate::access::validate_policy_resource;
use crate::clock::fhir_instant;
use crate::error::{ServiceError, ServiceResult};
use crate::random::{is_uuid, uuid_v4};
use crate::repo::WriteContext;
use crate::session::AuthContext;
use access::{
    Interaction, PROTECTED_TYPES, Role, apply_write_policy, check_interaction, check_project,
    check_reach, check_writable, owning_project, search_limits,
};
use fields::{present, restore_fields, take_server_meta, unwritable_fields, without_server_meta};
use prepare::check_body;
use search::SearchScopes;

/// The caller of a FHIR interaction and the response form they requested.
pub struct FhirCaller {
    pub auth: AuthContext,
    /// Medplum's `X-Medplum: extended`: responses keep `meta.project`, `meta.author` and
    /// Medplum's other extended `meta` fields.
    pub extended: bool,
}

impl FhirCaller {
    fn role(&self) -> Role {
        Role::of(&self.auth)
    }

    /// `meta.author` of what the caller writes: their own profile, as in Medplum, also
    /// when the request acts on behalf of someone else.
    pub(crate) fn author(&self) -> Reference {
        self.auth.membership.profile.clone()
    }

    /// Shapes a stored resource for a response: the policy's hidden fields removed, then
    /// secrets and the fields only super admins see, and the extended `meta` unless asked
    /// for. Every resource a FHIR response contains goes through here.
    pub fn present(&self, resource: Value) -> Value {
        let resource = self.auth.access.hide_fields(resource, Interaction::Read);
        present(resource, self.role(), self.extended)
    }
}

fn check_supported_type(resource_type: &str) -> ServiceResult<()> {
    if SUPPORTED_TYPES.contains(&resource_type) {
        Ok(())
    } else {
        Err(ServiceError::invalid(format!(
            "Unknown resource type: {resource_type}"
        )))
    }
}

/// Rejects an AccessPolicy that could never be applied, with the reason, before it is
/// stored; otherwise every member it names would be locked out.
fn check_access_policy_body(
    resource_type: &str,
    resource: &Map<String, Value>,
) -> ServiceResult<()> {
    if resource_type != "AccessPolicy" {
        return Ok(());
    }
    validate_policy_resource(&Value::Object(resource.clone()))
        .map_err(|reason| ServiceError::invalid(format!("Invalid access policy: {reason}")))
}

fn version_id(resource: &Value) -> ServiceResult<String> {
    resource
        .get("meta")
        .and_then(|meta| meta.get("versionId"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| ServiceError::Internal("stored resource has no meta.versionId".to_string()))
}

impl Services {
    fn type_url(&self, resource_type: &str) -> String {
        self.config.url(&format!("fhir/R4/{resource_type}"))
    }

    /// Creates a resource (FHIR create) in the caller's project. A ClientApplication
    /// gets a generated secret, which this response shows once as `secret`.
    pub async fn fhir_create(
        &self,
        caller: &FhirCaller,
        resource_type: &str,
        body: Value,
    ) -> ServiceResult<Value> {
        check_supported_type(resource_type)?;
        check_interaction(&caller.auth, resource_type, Interaction::Create)?;
        let mut resource = check_body(resource_type, body, None)?;
        let requested_project = take_server_meta(&mut resource)
            .map_err(|message| ServiceError::invalid_field(message, "meta"))?;
        restore_fields(
            &mut resource,
            None,
            &unwritable_fields(resource_type, caller.role()),
        );

        // The server assigns the id and ignores one in the body, as FHIR create requires.
        let id = uuid_v4(self.random());
        resource.insert("id".to_string(), Value::String(id.clone()));

        check_access_policy_body(resource_type, &resource)?;
        self.prepare_typed(&caller.auth, resource_type, &mut resource, None)
            .await?;
        if resource_type == "ProjectMembership" {
            self.apply_default_access_policy(&mut resource).await?;
        }
        let project_id = self
            .write_project(caller, resource_type, &resource, requested_project, None)
            .await?;
        let resource = apply_write_policy(
            &caller.auth,
            None,
            resource,
            project_id.as_deref(),
            Interaction::Create,
        )?;
        if resource_type == "ClientApplication" {
            return self
                .create_client_resource(caller, resource, project_id)
                .await;
        }

        let context = WriteContext {
            project_id,
            author: Some(caller.author()),
        };
        let resource = self
            .repo
            .prepare_create(Value::Object(resource), &context)?;
        self.repo
            .store
            .write(vec![WriteOp::Create(resource.clone())])
            .await?;
        info!(resource_type, id, "created a resource through the FHIR API");
        Ok(caller.present(resource))
    }

    /// Reads the current version of a resource (FHIR read).
    pub async fn fhir_read(
        &self,
        caller: &FhirCaller,
        resource_type: &str,
        id: &str,
    ) -> ServiceResult<Value> {
        check_supported_type(resource_type)?;
        check_interaction(&caller.auth, resource_type, Interaction::Read)?;
        let resource = self.read_visible(caller, resource_type, id).await?;
        Ok(caller.present(resource))
    }

    /// Reads one version of a resource (FHIR vread).
    pub async fn fhir_vread(
        &self,
        caller: &FhirCaller,
        resource_type: &str,
        id: &str,
        version_id: &str,
    ) -> ServiceResult<Value> {
        check_supported_type(resource_type)?;
        check_interaction(&caller.auth, resource_type, Interaction::Vread)?;
        if !is_uuid(id) || !is_uuid(version_id) {
            return Err(ServiceError::NotFound);
        }
        // An old version is shown only while the resource itself is within reach, so a
        // resource moved out of the caller's criteria takes its history with it.
        self.newest_visible_version(caller, resource_type, id, Interaction::Vread)
            .await?;
        let version = self
            .repo
            .store
            .read_version(resource_type, id, version_id)
            .await?;
        check_project(&caller.auth, resource_type, &version)?;
        Ok(caller.present(version))
    }

    /// Lists every version of a resource, newest first (FHIR instance history).
    /// The history stays readable after the resource is deleted.
    pub async fn fhir_history(
        &self,
        caller: &FhirCaller,
        resource_type: &str,
        id: &str,
    ) -> ServiceResult<Value> {
        check_supported_type(resource_type)?;
        check_interaction(&caller.auth, resource_type, Interaction::History)?;
        if !is_uuid(id) {
            return Err(ServiceError::NotFound);
        }
        let versions = self
            .newest_visible_version(caller, resource_type, id, Interaction::History)
            .await?;
        let versions = versions
            .into_iter()
            .map(|version| caller.present(version))
            .collect();
        Ok(bundle::history(
            &self.type_url(resource_type),
            resource_type,
            versions,
        ))
    }

    /// Replaces a resource with a new version (FHIR update). With `if_match` (the
    /// version id from an `If-Match` header) the update applies only to that version.
    /// An update that changes nothing returns the current version and writes none.
    pub async fn fhir_update(
        &self,
        caller: &FhirCaller,
        resource_type: &str,
        id: &str,
        body: Value,
        if_match: Option<&str>,
    ) -> ServiceResult<Value> {
        check_supported_type(resource_type)?;
        check_interaction(&caller.auth, resource_type, Interaction::Update)?;
        let mut resource = check_body(resource_type, body, Some(id))?;
        let stored = self.read_visible(caller, resource_type, id).await?;
        check_writable(&caller.auth, &stored, Interaction::Update)?;

        // If-Match: the client updates the version it read, or nothing (FHIR R4 "RESTful
        // API", "Managing Resource Contention").
        let stored_version = version_id(&stored)?;
        if if_match.is_some_and(|expected| expected != stored_version) {
            return Err(ServiceError::PreconditionFailed);
        }

        let requested_project = take_server_meta(&mut resource)
            .map_err(|message| ServiceError::invalid_field(message, "meta"))?;
        restore_fields(
            &mut resource,
            Some(&stored),
            &unwritable_fields(resource_type, caller.role()),
        );
        check_access_policy_body(resource_type, &resource)?;
        self.prepare_typed(&caller.auth, resource_type, &mut resource, Some(&stored))
            .await?;
        let project_id = self
            .write_project(
                caller,
                resource_type,
                &resource,
                requested_project,
                Some(&stored),
            )
            .await?;
        let resource = apply_write_policy(
            &caller.auth,
            Some(&stored),
            resource,
            project_id.as_deref(),
            Interaction::Update,
        )?;
        let mut resource = Value::Object(resource);
        if without_server_meta(&resource) == without_server_meta(&stored)
            && project_id.as_deref() == owning_project(resource_type, &stored)
        {
            return Ok(caller.present(stored));
        }

        // The store rejects the write if another request wrote a version after `stored`
        // was read.
        if !resource.get("meta").is_some_and(Value::is_object) {
            resource["meta"] = Value::Object(Map::new());
        }
        resource["meta"]["versionId"] = Value::String(stored_version);
        let context = WriteContext {
            project_id,
            author: Some(caller.author()),
        };
        let op = self.repo.prepare_update(resource, &context)?;
        let WriteOp::Update {
            resource: written, ..
        } = &op
        else {
            return Err(ServiceError::Internal(
                "prepare_update returned another write".to_string(),
            ));
        };
        let written = written.clone();
        self.repo.store.write(vec![op]).await?;
        info!(resource_type, id, "updated a resource through the FHIR API");
        Ok(caller.present(written))
    }

    /// Deletes a resource, keeping its history (FHIR delete); later reads get 410.
    /// Deleting a deleted resource succeeds, as FHIR allows. A ClientApplication's
    /// memberships are deleted with it, so it no longer shows as a project member.
    pub async fn fhir_delete(
        &self,
        caller: &FhirCaller,
        resource_type: &str,
        id: &str,
    ) -> ServiceResult<()> {
        check_supported_type(resource_type)?;
        check_interaction(&caller.auth, resource_type, Interaction::Delete)?;
        match self.read_visible(caller, resource_type, id).await {
            Ok(stored) => check_writable(&caller.auth, &stored, Interaction::Delete)?,
            Err(ServiceError::Gone) => return Ok(()),
            Err(error) => return Err(error),
        }

        let mut batch = vec![self.delete_op(resource_type, id)];
        if resource_type == "ClientApplication" {
            let request = SearchRequest::new("ProjectMembership")
                .filter("user", &format!("ClientApplication/{id}"))
                .count(medgate_fhir::search::MAX_COUNT);
            let memberships = self
                .repo
                .store
                .search(SearchScope {
                    request: &request,
                    project_id: None,
                    restriction: None,
                })
                .await?;
            for membership in memberships {
                if let Some(membership_id) = membership.get("id").and_then(Value::as_str) {
                    batch.push(self.delete_op("ProjectMembership", membership_id));
                }
            }
        }
        self.repo.store.write(batch).await?;
        info!(resource_type, id, "deleted a resource through the FHIR API");
        Ok(())
    }

    /// Searches resources of one type (FHIR search) and returns a `searchset` Bundle.
    /// `query` contains the decoded query parameters. An unknown parameter is rejected.
    pub async fn fhir_search(
        &self,
        caller: &FhirCaller,
        resource_type: &str,
        query: &[(String, String)],
    ) -> ServiceResult<Value> {
        check_supported_type(resource_type)?;
        check_interaction(&caller.auth, resource_type, Interaction::Search)?;
        let request = SearchRequest::parse(resource_type, query)
            .map_err(|error| ServiceError::invalid(error.to_string()))?;

        // scope: a super admin searches every project; anyone else their own project,
        // narrowed by the policy's restriction for the type.
        let limits = search_limits(&caller.auth, resource_type, Interaction::Search)?;

        // Included resources stay in the caller's project, whatever the searched type, and
        // only of types the caller may search, within the policy's restriction for them.
        let include_project = (caller.role() != Role::SuperAdmin).then(|| caller.auth.project_id());
        let restriction_for = |included_type: &str| match search_limits(
            &caller.auth,
            included_type,
            Interaction::Search,
        ) {
            Ok(limits) => limits.restriction,
            Err(_) => Some(Restriction::Nothing),
        };
        let scopes = SearchScopes {
            project_id: limits.project_id.as_deref(),
            include_project,
            restriction: limits.restriction.as_ref(),
        };
        self.searchset(caller, &request, query, scopes, &restriction_for)
            .await
    }

    /// Reads the current version of a resource the caller may see. A resource of another
    /// project is not found, for a deleted one too, so a 410 reveals nothing about other
    /// projects.
    async fn read_visible(
        &self,
        caller: &FhirCaller,
        resource_type: &str,
        id: &str,
    ) -> ServiceResult<Value> {
        // Every id medgate assigns is a UUID, so anything else cannot exist.
        if !is_uuid(id) {
            return Err(ServiceError::NotFound);
        }
        match self.repo.store.read(resource_type, id).await {
            Ok(resource) => {
                check_project(&caller.auth, resource_type, &resource)?;
                check_reach(&caller.auth, &resource, Interaction::Read)?;
                Ok(resource)
            }
            Err(StoreError::Gone) => {
                // The deletion entry has no content, so the last version names the project.
                self.newest_visible_version(caller, resource_type, id, Interaction::Read)
                    .await?;
                Err(ServiceError::Gone)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Reads every version of a resource, newest first, if the newest one (the last before
    /// a deletion) is in the caller's project and within their policy's reach; otherwise
    /// the resource is not found.
    async fn newest_visible_version(
        &self,
        caller: &FhirCaller,
        resource_type: &str,
        id: &str,
        interaction: Interaction,
    ) -> ServiceResult<Vec<Value>> {
        let versions = self.repo.store.history(resource_type, id).await?;
        let newest = versions.first().ok_or(ServiceError::NotFound)?;
        check_project(&caller.auth, resource_type, newest)?;
        check_reach(&caller.auth, newest, interaction)?;
        Ok(versions)
    }

    /// Decides the project a written resource belongs to, its `meta.project`. Only a super
    /// admin chooses it, so no other caller can move a resource out of their project or
    /// create one elsewhere.
    async fn write_project(
        &self,
        caller: &FhirCaller,
        resource_type: &str,
        resource: &Map<String, Value>,
        requested: Option<String>,
        stored: Option<&Value>,
    ) -> ServiceResult<Option<String>> {
        // Sign-in sessions and signing keys belong to no project.
        if PROTECTED_TYPES.contains(&resource_type) {
            return Ok(None);
        }

        // A Project belongs to itself and a membership to the project it grants.
        if resource_type == "Project" {
            return Ok(resource
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string));
        }
        if resource_type == "ProjectMembership" {
            return Ok(resource
                .get("project")
                .and_then(|project| project.get("reference"))
                .and_then(Value::as_str)
                .and_then(|reference| reference.strip_prefix("Project/"))
                .map(str::to_string));
        }

        if caller.role() != Role::SuperAdmin {
            return Ok(Some(caller.auth.project_id().to_string()));
        }
        if let Some(project_id) = requested {
            if !is_uuid(&project_id) || self.read_existing("Project", &project_id).await?.is_none()
            {
                return Err(ServiceError::invalid_field(
                    format!("Project {project_id} does not exist"),
                    "meta.project",
                ));
            }
            return Ok(Some(project_id));
        }
        // Without a choice, an update keeps the stored project (none for a server-wide
        // User) and a create uses the caller's.
        match stored {
            Some(stored) => Ok(owning_project(resource_type, stored).map(str::to_string)),
            None => Ok(Some(caller.auth.project_id().to_string())),
        }
    }

    pub(crate) fn delete_op(&self, resource_type: &str, id: &str) -> WriteOp {
        WriteOp::Delete {
            resource_type: resource_type.to_string(),
            id: id.to_string(),
            version_id: uuid_v4(self.random()),
            last_updated: fhir_instant(self.now()),
        }
    }
}
