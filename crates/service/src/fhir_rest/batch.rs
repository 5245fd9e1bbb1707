//! Batch and transaction Bundles posted to the base URL (FHIR R4 "RESTful API", batch and
//! transaction; Bundle.type `batch` and `transaction`).
//!
//! Every entry runs through the same service function as the matching single request, with
//! the same caller, so the same access rules apply. In a batch each entry succeeds or fails on
//! its own. A transaction runs its entries against a [`DeferredStore`] and commits all their
//! writes in one [`medgate_store::Store::write`] batch. So one failed entry, or a concurrent
//! write to a resource it changes, writes nothing.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use medgate_fhir::OperationOutcome;
use serde_json::{Value, json};
use tracing::{error, info};

use super::FhirCaller;
use super::conditional::condition_from_query;
use super::deferred_store::DeferredStore;
use super::references::{resolve_references, transaction_order};
use crate::Services;
use crate::error::{ServiceError, ServiceResult};

/// The maximum number of entries in one Bundle. Each entry is a request of its own, and a
/// transaction keeps all its writes in memory until it commits.
pub const MAX_BUNDLE_ENTRIES: usize = 1000;

/// The interactions an entry may request (Bundle.entry.request.method).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "GET" => Some(Self::Get),
            "POST" => Some(Self::Post),
            "PUT" => Some(Self::Put),
            "PATCH" => Some(Self::Patch),
            "DELETE" => Some(Self::Delete),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }

    /// Returns the group of a transaction entry in FHIR's processing order: deletes, then
    /// creates, then updates and patches, then reads.
    pub(super) fn processing_group(self) -> u8 {
        match self {
            Self::Delete => 0,
            Self::Post => 1,
            Self::Put | Self::Patch => 2,
            Self::Get => 3,
        }
    }
}

/// The target of an entry's `request.url`, relative to the FHIR base URL.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Target {
    /// `[type]` or `[type]?[parameters]`, with the decoded query parameters.
    Type {
        resource_type: String,
        query: Vec<(String, String)>,
    },
    Instance {
        resource_type: String,
        id: String,
    },
    History {
        resource_type: String,
        id: String,
    },
    Version {
        resource_type: String,
        id: String,
        version_id: String,
    },
}

/// One parsed Bundle entry.
#[derive(Debug)]
pub(super) struct Entry {
    pub method: Method,
    pub target: Target,
    pub resource: Option<Value>,
    pub full_url: Option<String>,
    pub if_match: Option<String>,
    pub if_none_exist: Option<String>,
}

/// The result of a successful entry.
#[derive(Debug)]
enum Output {
    /// A resource (or a searchset or history Bundle) with the entry's status code.
    Resource { status: u16, resource: Value },
    /// A delete, which returns no resource.
    Deleted,
}

impl Output {
    fn resource(&self) -> Option<&Value> {
        match self {
            Self::Resource { resource, .. } => Some(resource),
            Self::Deleted => None,
        }
    }
}

/// Formats the HTTP status line that `Bundle.entry.response.status` carries.
fn status_text(status: u16) -> String {
    let reason = match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        410 => "Gone",
        412 => "Precondition Failed",
        422 => "Unprocessable Entity",
        _ => "Internal Server Error",
    };
    format!("{status} {reason}")
}

/// Parses the version id of an `ifMatch` ETag: `W/"<versionId>"`, `"<versionId>"` or bare.
fn version_from_etag(etag: &str) -> Option<String> {
    let etag = etag.trim();
    if etag == "*" {
        return None;
    }
    let etag = etag.strip_prefix("W/").unwrap_or(etag);
    Some(etag.trim_matches('"').to_string())
}

/// Reads the JSON Patch document of a PATCH entry. A Bundle entry carries a resource, so
/// FHIR puts the patch into a Binary with the patch media type and base64 `data`.
fn patch_document(resource: Option<&Value>) -> ServiceResult<Value> {
    let invalid = || {
        ServiceError::invalid_field(
            "A PATCH entry needs a Binary resource with contentType \
             application/json-patch+json and the patch as base64 data",
            "resource",
        )
    };
    let binary = resource.ok_or_else(invalid)?;
    if binary.get("resourceType").and_then(Value::as_str) != Some("Binary")
        || binary.get("contentType").and_then(Value::as_str) != Some("application/json-patch+json")
    {
        return Err(invalid());
    }
    let data = binary
        .get("data")
        .and_then(Value::as_str)
        .ok_or_else(invalid)?;
    let bytes = STANDARD.decode(data).map_err(|error| {
        ServiceError::invalid_field(format!("Invalid base64 in Binary.data: {error}"), "data")
    })?;
    serde_json::from_slice(&bytes).map_err(|error| {
        ServiceError::invalid_field(
            format!("Invalid JSON Patch in Binary.data: {error}"),
            "data",
        )
    })
}

impl Services {
    /// Processes a batch or transaction Bundle and returns the `batch-response` or
    /// `transaction-response` Bundle. A failed transaction returns the error of its first
    /// failed entry as [`ServiceError::InEntry`].
    pub async fn fhir_bundle(
        &self,
        caller: &FhirCaller,
        mut bundle: Value,
    ) -> ServiceResult<Value> {
        // shape: a Bundle of type batch or transaction, with at most MAX_BUNDLE_ENTRIES entries.
        if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
            return Err(ServiceError::invalid_field(
                "The request body must be a Bundle",
                "resourceType",
            ));
        }
        let is_batch = match bundle.get("type").and_then(Value::as_str) {
            Some("batch") => true,
            Some("transaction") => false,
            _ => {
                return Err(ServiceError::invalid_field(
                    "Bundle.type must be batch or transaction",
                    "type",
                ));
            }
        };
        let entries = match bundle.get_mut("entry").map(Value::take) {
            None => Vec::new(),
            Some(Value::Array(entries)) => entries,
            Some(_) => {
                return Err(ServiceError::invalid_field(
                    "Bundle.entry must be an array",
                    "entry",
                ));
            }
        };
        if entries.len() > MAX_BUNDLE_ENTRIES {
            return Err(ServiceError::invalid_field(
                format!(
                    "A Bundle may have at most {MAX_BUNDLE_ENTRIES} entries; this one has {}",
                    entries.len()
                ),
                "entry",
            ));
        }

        if is_batch {
            Ok(self.run_batch(caller, entries).await)
        } else {
            self.run_transaction(caller, entries).await
        }
    }

    /// Runs each entry on its own; a failure becomes that entry's response.
    async fn run_batch(&self, caller: &FhirCaller, entries: Vec<Value>) -> Value {
        let mut responses = Vec::with_capacity(entries.len());
        for (index, raw) in entries.iter().enumerate() {
            let result = match self.parse_entry(raw) {
                Ok(entry) => run_entry(self, caller, entry).await,
                Err(error) => Err(error),
            };
            if let Err(failure) = &result
                && failure.fhir_outcome().is_none()
            {
                error!(index, error = %failure, "a batch entry failed");
            }
            responses.push(self.response_entry(result));
        }
        json!({"resourceType": "Bundle", "type": "batch-response", "entry": responses})
    }

    /// Runs every entry against pending writes and commits them together.
    async fn run_transaction(&self, caller: &FhirCaller, raw: Vec<Value>) -> ServiceResult<Value> {
        let in_entry = |index: usize| {
            move |error: ServiceError| ServiceError::InEntry {
                index,
                error: Box::new(error),
            }
        };
        let mut entries = Vec::with_capacity(raw.len());
        for (index, raw) in raw.iter().enumerate() {
            entries.push(self.parse_entry(raw).map_err(in_entry(index))?);
        }
        let order = transaction_order(&entries)?;
        let mut entries: Vec<Option<Entry>> = entries.into_iter().map(Some).collect();

        let deferred = Arc::new(DeferredStore::new(self.repo.store.clone()));
        let mut pending = self.clone();
        pending.repo.store = deferred.clone();

        // `urn:uuid:` fullUrls of entries processed so far, and the `Type/id` they became.
        let mut resolved: HashMap<String, String> = HashMap::new();
        let mut outputs: Vec<Option<Output>> = (0..entries.len()).map(|_| None).collect();
        for index in order {
            let Some(mut entry) = entries[index].take() else {
                continue;
            };
            resolve_references(&mut entry, &resolved).map_err(in_entry(index))?;
            let full_url = entry.full_url.clone();
            let output = run_entry(&pending, caller, entry)
                .await
                .map_err(in_entry(index))?;
            if let (Some(full_url), Some(reference)) =
                (full_url, output.resource().and_then(reference_to))
                && full_url.starts_with("urn:")
            {
                resolved.insert(full_url, reference);
            }
            outputs[index] = Some(output);
        }

        let writes = deferred.take_operations();
        let write_count = writes.len();
        if !writes.is_empty() {
            self.repo.store.write(writes).await?;
        }
        info!(
            entries = outputs.len(),
            writes = write_count,
            "committed a transaction Bundle"
        );

        let responses: Vec<Value> = outputs
            .into_iter()
            .map(|output| self.response_entry(output.ok_or_else(missing_output)))
            .collect();
        Ok(json!({"resourceType": "Bundle", "type": "transaction-response", "entry": responses}))
    }

    fn parse_entry(&self, raw: &Value) -> ServiceResult<Entry> {
        let request = raw.get("request").ok_or_else(|| {
            ServiceError::invalid_field("Bundle.entry.request is required", "request")
        })?;
        let method_text = request
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let method = Method::parse(method_text).ok_or_else(|| {
            ServiceError::invalid_field(
                format!(
                    "Unsupported request.method \"{method_text}\"; expected GET, POST, PUT, PATCH or DELETE"
                ),
                "request.method",
            )
        })?;
        let url = request
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| ServiceError::invalid_field("request.url is required", "request.url"))?;
        let target = self.parse_target(url)?;
        let resource = raw.get("resource").cloned();
        if matches!(method, Method::Post | Method::Put) && resource.is_none() {
            return Err(ServiceError::invalid_field(
                format!("A {} entry needs a resource", method.name()),
                "resource",
            ));
        }
        let text_of = |name: &str| request.get(name).and_then(Value::as_str);
        Ok(Entry {
            method,
            target,
            resource,
            full_url: raw
                .get("fullUrl")
                .and_then(Value::as_str)
                .map(str::to_string),
            if_match: text_of("ifMatch").and_then(version_from_etag),
            if_none_exist: text_of("ifNoneExist").map(str::to_string),
        })
    }

    /// Parses `request.url`: relative to the FHIR base URL, or absolute below it.
    fn parse_target(&self, url: &str) -> ServiceResult<Target> {
        let base = self.config.url("fhir/R4/");
        let relative = url.strip_prefix(base.as_str()).unwrap_or(url);
        let relative = relative.trim_start_matches('/');
        let invalid = || {
            ServiceError::invalid_field(
                format!(
                    "Unsupported request.url \"{url}\"; expected [type], [type]?[parameters], \
                     [type]/[id], [type]/[id]/_history or [type]/[id]/_history/[versionId] \
                     relative to {base}"
                ),
                "request.url",
            )
        };
        let (path, query) = match relative.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (relative, None),
        };
        let segments: Vec<&str> = path.split('/').collect();
        if segments.iter().any(|segment| segment.is_empty()) {
            return Err(invalid());
        }
        let text = |segment: &str| segment.to_string();
        let target = match (segments.as_slice(), query) {
            ([resource_type], query) => Target::Type {
                resource_type: text(resource_type),
                query: url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                    .into_owned()
                    .collect(),
            },
            ([resource_type, id], None) => Target::Instance {
                resource_type: text(resource_type),
                id: text(id),
            },
            ([resource_type, id, "_history"], None) => Target::History {
                resource_type: text(resource_type),
                id: text(id),
            },
            ([resource_type, id, "_history", version_id], None) => Target::Version {
                resource_type: text(resource_type),
                id: text(id),
                version_id: text(version_id),
            },
            _ => return Err(invalid()),
        };
        Ok(target)
    }

    /// Builds a response entry (Bundle.entry.response, and the resource when there is one).
    fn response_entry(&self, result: ServiceResult<Output>) -> Value {
        let (status, resource) = match result {
            Ok(Output::Resource { status, resource }) => (status, resource),
            Ok(Output::Deleted) => {
                return json!({"response": {"status": status_text(200),
                    "outcome": OperationOutcome::all_ok()}});
            }
            Err(failure) => {
                let (status, outcome) = failure
                    .fhir_outcome()
                    .unwrap_or_else(|| (500, internal_error_outcome()));
                return json!({"response": {"status": status_text(status), "outcome": outcome}});
            }
        };

        let mut response = json!({"status": status_text(status)});
        let mut entry = json!({});
        let meta = resource.get("meta");
        let version_id = meta
            .and_then(|meta| meta.get("versionId"))
            .and_then(Value::as_str);
        if let (Some(reference), Some(version_id)) = (reference_to(&resource), version_id) {
            entry["fullUrl"] = json!(self.config.url(&format!("fhir/R4/{reference}")));
            response["etag"] = json!(format!("W/\"{version_id}\""));
            if status == 201 {
                response["location"] = json!(format!("{reference}/_history/{version_id}"));
            }
        }
        if let Some(last_updated) = meta.and_then(|meta| meta.get("lastUpdated")) {
            response["lastModified"] = last_updated.clone();
        }
        entry["resource"] = resource;
        entry["response"] = response;
        entry
    }
}

/// Runs one entry through the service function of its interaction on `services`, which is
/// the server's own or, in a transaction, one whose writes are held back.
async fn run_entry(
    services: &Services,
    caller: &FhirCaller,
    entry: Entry,
) -> ServiceResult<Output> {
    let resource_of = |status: u16| move |resource: Value| Output::Resource { status, resource };
    let body = entry.resource;
    match (entry.method, entry.target) {
        (
            Method::Get,
            Target::Type {
                resource_type,
                query,
            },
        ) => services
            .fhir_search(caller, &resource_type, &query)
            .await
            .map(resource_of(200)),
        (Method::Get, Target::Instance { resource_type, id }) => services
            .fhir_read(caller, &resource_type, &id)
            .await
            .map(resource_of(200)),
        (Method::Get, Target::History { resource_type, id }) => services
            .fhir_history(caller, &resource_type, &id)
            .await
            .map(resource_of(200)),
        (
            Method::Get,
            Target::Version {
                resource_type,
                id,
                version_id,
            },
        ) => services
            .fhir_vread(caller, &resource_type, &id, &version_id)
            .await
            .map(resource_of(200)),
        (
            Method::Post,
            Target::Type {
                resource_type,
                query,
            },
        ) if query.is_empty() => {
            let body = body.unwrap_or_default();
            match entry.if_none_exist {
                Some(condition) => {
                    let condition = super::conditional::parse_condition(&condition)?;
                    let written = services
                        .fhir_conditional_create(caller, &resource_type, body, &condition)
                        .await?;
                    let status = if written.created { 201 } else { 200 };
                    Ok(resource_of(status)(written.resource))
                }
                None => services
                    .fhir_create(caller, &resource_type, body)
                    .await
                    .map(resource_of(201)),
            }
        }
        (Method::Put, Target::Instance { resource_type, id }) => services
            .fhir_update(
                caller,
                &resource_type,
                &id,
                body.unwrap_or_default(),
                entry.if_match.as_deref(),
            )
            .await
            .map(resource_of(200)),
        (
            Method::Put,
            Target::Type {
                resource_type,
                query,
            },
        ) => {
            let condition = condition_from_query(query)?;
            let written = services
                .fhir_conditional_update(
                    caller,
                    &resource_type,
                    body.unwrap_or_default(),
                    &condition,
                    entry.if_match.as_deref(),
                )
                .await?;
            let status = if written.created { 201 } else { 200 };
            Ok(resource_of(status)(written.resource))
        }
        (Method::Patch, Target::Instance { resource_type, id }) => {
            let patch = patch_document(body.as_ref())?;
            services
                .fhir_patch(
                    caller,
                    &resource_type,
                    &id,
                    &patch,
                    entry.if_match.as_deref(),
                )
                .await
                .map(resource_of(200))
        }
        (Method::Delete, Target::Instance { resource_type, id }) => services
            .fhir_delete(caller, &resource_type, &id)
            .await
            .map(|()| Output::Deleted),
        (
            Method::Delete,
            Target::Type {
                resource_type,
                query,
            },
        ) => {
            let condition = condition_from_query(query)?;
            services
                .fhir_conditional_delete(caller, &resource_type, &condition)
                .await
                .map(|()| Output::Deleted)
        }
        (method, _) => Err(ServiceError::invalid_field(
            format!(
                "{} is not supported on this request.url; POST takes [type], PUT and DELETE \
                 take [type]/[id] or [type]?[parameters], PATCH takes [type]/[id]",
                method.name()
            ),
            "request.url",
        )),
    }
}

/// Returns `Type/id` of a resource that has both.
fn reference_to(resource: &Value) -> Option<String> {
    let resource_type = resource.get("resourceType").and_then(Value::as_str)?;
    let id = resource.get("id").and_then(Value::as_str)?;
    Some(format!("{resource_type}/{id}"))
}

/// Builds the outcome of an entry that failed through no fault of the caller. The cause is
/// logged, never returned.
fn internal_error_outcome() -> OperationOutcome {
    let mut outcome = OperationOutcome::bad_request("Internal server error", None);
    outcome.issue[0].code = medgate_fhir::IssueCode::Exception;
    outcome
}

fn missing_output() -> ServiceError {
    ServiceError::Internal("a transaction entry produced no output".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_forms() {
        assert_eq!(version_from_etag("W/\"v1\"").as_deref(), Some("v1"));
        assert_eq!(version_from_etag("\"v1\"").as_deref(), Some("v1"));
        assert_eq!(version_from_etag("v1").as_deref(), Some("v1"));
        assert_eq!(version_from_etag("*"), None);
    }

    #[test]
    fn patch_document_from_binary() {
        let patch = json!([{"op": "replace", "path": "/active", "value": false}]);
        let binary = json!({"resourceType": "Binary", "contentType": "application/json-patch+json",
            "data": STANDARD.encode(patch.to_string())});
        assert_eq!(patch_document(Some(&binary)).unwrap(), patch);

        let wrong_type = json!({"resourceType": "Binary", "contentType": "application/json",
            "data": STANDARD.encode(patch.to_string())});
        assert!(patch_document(Some(&wrong_type)).is_err());
        assert!(patch_document(None).is_err());
        let not_base64 = json!({"resourceType": "Binary",
            "contentType": "application/json-patch+json", "data": "%%%"});
        assert!(patch_document(Some(&not_base64)).is_err());
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_text(201), "201 Created");
        assert_eq!(status_text(412), "412 Precondition Failed");
    }
}
