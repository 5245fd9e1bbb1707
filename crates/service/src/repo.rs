//! Typed access to the store: assigns ids and `meta` on writes (from the injected clock and
//! random source) and converts between JSON and the typed resources.

use std::sync::Arc;

use medgate_fhir::Reference;
use medgate_fhir::resources::TypedResource;
use medgate_fhir::search::{SearchRequest, patient_compartment};
use medgate_store::{SearchScope, Store, WriteOp};
use serde_json::{Value, json};

use crate::clock::{Clock, fhir_instant};
use crate::error::{ServiceError, ServiceResult};
use crate::random::{Random, uuid_v4, uuid_v7};

#[derive(Clone)]
pub struct Repo {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn Random>,
}

/// The author (`meta.author`) and project of a write.
#[derive(Debug, Clone, Default)]
pub struct WriteContext {
    pub project_id: Option<String>,
    pub author: Option<Reference>,
}

impl WriteContext {
    pub fn system(project_id: Option<&str>) -> Self {
        Self {
            project_id: project_id.map(str::to_string),
            author: Some(Reference {
                reference: "system".to_string(),
                display: None,
            }),
        }
    }
}

impl Repo {
    /// Sets `id` (when absent), `meta.versionId`, `meta.lastUpdated`, `meta.project`,
    /// `meta.author` and `meta.compartment` on a resource about to be created, and returns
    /// the write.
    pub fn prepare_create(
        &self,
        mut resource: Value,
        context: &WriteContext,
    ) -> ServiceResult<Value> {
        let now = self.clock.now();
        if resource
            .get("id")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            // Logins are the append-heavy table; time-ordered ids keep its index compact.
            let id = if resource.get("resourceType").and_then(Value::as_str) == Some("Login") {
                uuid_v7(self.random.as_ref(), now)
            } else {
                uuid_v4(self.random.as_ref())
            };
            resource["id"] = Value::String(id);
        }
        self.stamp_meta(&mut resource, context)?;
        Ok(resource)
    }

    fn stamp_meta(&self, resource: &mut Value, context: &WriteContext) -> ServiceResult<()> {
        // `meta.compartment` lists the Patient compartments the resource belongs to, as
        // Medplum sets it; the resource content decides them, never the client.
        let compartments: Vec<Value> = patient_compartment(resource)
            .into_iter()
            .map(|reference| json!({"reference": reference}))
            .collect();

        let object = resource
            .as_object_mut()
            .ok_or_else(|| ServiceError::invalid("Resource must be a JSON object"))?;
        let meta = object.entry("meta").or_insert_with(|| json!({}));
        if !meta.is_object() {
            return Err(ServiceError::invalid_field(
                "meta must be an object",
                "meta",
            ));
        }
        meta["versionId"] = Value::String(uuid_v4(self.random.as_ref()));
        meta["lastUpdated"] = Value::String(fhir_instant(self.clock.now()));
        match &context.project_id {
            Some(project_id) => meta["project"] = Value::String(project_id.clone()),
            None => {
                meta.as_object_mut().map(|meta| meta.remove("project"));
            }
        }
        if let Some(author) = &context.author {
            meta["author"] = serde_json::to_value(author).unwrap_or(Value::Null);
        }

        if compartments.is_empty() {
            meta.as_object_mut().map(|meta| meta.remove("compartment"));
        } else {
            meta["compartment"] = Value::Array(compartments);
        }
        Ok(())
    }

    /// Stamps a new version onto `resource`, keeping its project, and returns the write that
    /// succeeds only if the stored version is still the one `resource` was read at.
    pub fn prepare_update(
        &self,
        mut resource: Value,
        context: &WriteContext,
    ) -> ServiceResult<WriteOp> {
        let expected_version = resource["meta"]["versionId"].as_str().map(str::to_string);
        let context = WriteContext {
            project_id: resource["meta"]["project"]
                .as_str()
                .map(str::to_string)
                .or_else(|| context.project_id.clone()),
            author: context.author.clone(),
        };
        self.stamp_meta(&mut resource, &context)?;
        Ok(WriteOp::Update {
            resource,
            expected_version,
        })
    }

    pub async fn create<T: TypedResource>(
        &self,
        resource: &T,
        context: &WriteContext,
    ) -> ServiceResult<T> {
        let value = self.prepare_create(resource.to_json(), context)?;
        self.store
            .write(vec![WriteOp::Create(value.clone())])
            .await?;
        T::from_json(value).map_err(corrupt)
    }

    /// Writes a new version if no other request changed the resource since it was read; otherwise
    /// [`ServiceError::PreconditionFailed`].
    pub async fn update<T: TypedResource>(
        &self,
        resource: &T,
        context: &WriteContext,
    ) -> ServiceResult<T> {
        let op = self.prepare_update(resource.to_json(), context)?;
        let WriteOp::Update {
            resource: value, ..
        } = &op
        else {
            unreachable!("prepare_update returns an update")
        };
        let value = value.clone();
        self.store.write(vec![op]).await?;
        T::from_json(value).map_err(corrupt)
    }

    pub async fn read<T: TypedResource>(&self, id: &str) -> ServiceResult<T> {
        let value = self.store.read(T::RESOURCE_TYPE, id).await?;
        T::from_json(value).map_err(corrupt)
    }

    /// Reads the resource a reference points to, if it has type `T`.
    pub async fn read_reference<T: TypedResource>(
        &self,
        reference: &Reference,
    ) -> ServiceResult<T> {
        match reference.parts() {
            Some((resource_type, id)) if resource_type == T::RESOURCE_TYPE => self.read(id).await,
            _ => Err(ServiceError::NotFound),
        }
    }

    pub async fn search<T: TypedResource>(
        &self,
        request: &SearchRequest,
        project_id: Option<&str>,
    ) -> ServiceResult<Vec<T>> {
        let values = self
            .store
            .search(SearchScope {
                request,
                project_id,
                restriction: None,
            })
            .await?;
        values
            .into_iter()
            .map(|value| T::from_json(value).map_err(corrupt))
            .collect()
    }

    pub async fn search_one<T: TypedResource>(
        &self,
        request: SearchRequest,
    ) -> ServiceResult<Option<T>> {
        Ok(self
            .search(&request.count(1), None)
            .await?
            .into_iter()
            .next())
    }
}

fn corrupt(error: serde_json::Error) -> ServiceError {
    ServiceError::Internal(format!("stored resource does not match its type: {error}"))
}
