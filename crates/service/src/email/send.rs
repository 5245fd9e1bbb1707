//! Delivery of one queued email: render it with its project's templates and brand, then send
//! it through the project's SMTP server or the server transport.

use medgate_fhir::resources::Project;
use medgate_store::{OutboxMessage, StoreError};

use super::EmailRequest;
use super::templates::{brand_name, project_overrides, render};
use super::transport::{Route, ServerTransport, build_message, route, send_smtp, smtp_transport};
use crate::Services;
use crate::delivery::DeliveryError;

pub struct EmailSender {
    services: Services,
    server_transport: ServerTransport,
}

impl EmailSender {
    pub fn new(services: &Services) -> Result<Self, DeliveryError> {
        Ok(Self {
            server_transport: ServerTransport::new(&services.config.email)?,
            services: services.clone(),
        })
    }

    pub async fn deliver(&self, row: &OutboxMessage) -> Result<(), DeliveryError> {
        let config = &self.services.config.email;
        let request: EmailRequest =
            serde_json::from_value(row.payload.clone()).map_err(|error| {
                DeliveryError::Permanent(format!("the queued email is not readable: {error}"))
            })?;
        let project = self.project(request.project_id.as_deref()).await?;

        let brand = brand_name(project.as_ref(), &config.product_name);
        let overrides = project
            .as_ref()
            .map(|project| project_overrides(project, request.kind))
            .unwrap_or_default();
        let rendered = render(request.kind, &request.values, &brand, &overrides);

        match route(project.as_ref(), config)? {
            Route::Server => {
                let message = build_message(&row.id, &config.from, &brand, &request.to, &rendered)?;
                self.server_transport.send(&row.id, &message).await
            }
            Route::Project { smtp, from } => {
                let message = build_message(&row.id, &from, &brand, &request.to, &rendered)?;
                let transport = smtp_transport(&smtp, config)?;
                send_smtp(&transport, &message).await
            }
        }
    }

    /// Reads the project whose templates and settings apply. A deleted project gets the
    /// server's defaults; a database failure is retried.
    async fn project(&self, project_id: Option<&str>) -> Result<Option<Project>, DeliveryError> {
        let Some(project_id) = project_id else {
            return Ok(None);
        };
        match self.services.repo.read::<Project>(project_id).await {
            Ok(project) => Ok(Some(project)),
            Err(crate::ServiceError::NotFound | crate::ServiceError::Gone) => Ok(None),
            Err(crate::ServiceError::Store(StoreError::NotFound | StoreError::Gone)) => Ok(None),
            Err(error) => Err(DeliveryError::Transient(format!(
                "cannot read project {project_id}: {error}"
            ))),
        }
    }
}
