//! The benchmark's database: a temporary SQLite file or PostgreSQL database, filled through
//! the same store and service code the server uses, in batches.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use medgate_service::clock::SystemClock;
use medgate_service::random::OsRandom;
use medgate_service::repo::WriteContext;
use medgate_service::{Secret, ServiceConfig, Services};
use medgate_store::WriteOp;
use serde_json::{Value, json};
use sqlx::Connection;

/// Resources written per transaction while seeding.
const BATCH: usize = 1_000;

pub struct Database {
    pub url: String,
    /// The server URL and database name of a temporary PostgreSQL database, to drop at the end.
    postgres: Option<(String, String)>,
}

impl Database {
    pub async fn create(kind: &str, data_dir: &Path) -> anyhow::Result<Self> {
        if kind == "sqlite" {
            return Ok(Self {
                url: format!("sqlite://{}/bench.db", data_dir.display()),
                postgres: None,
            });
        }
        let name = format!("medgate_bench_{}", uuid::Uuid::new_v4().simple());
        let mut connection = sqlx::PgConnection::connect(kind)
            .await
            .with_context(|| format!("cannot connect to {kind}"))?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut connection)
            .await?;
        let base = kind.rsplit_once('/').map(|(base, _)| base).unwrap_or(kind);
        Ok(Self {
            url: format!("{base}/{name}"),
            postgres: Some((kind.to_string(), name)),
        })
    }

    pub fn kind(&self) -> &'static str {
        if self.postgres.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    }

    pub async fn drop(self) -> anyhow::Result<()> {
        if let Some((server, name)) = self.postgres {
            let mut connection = sqlx::PgConnection::connect(&server).await?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut connection)
                .await?;
        }
        Ok(())
    }
}

pub struct Seeded {
    /// The project whose users are project-scoped, so sign-in names it.
    pub project_id: String,
    pub patient_id: String,
    pub patient_email: String,
    pub patient_password: String,
    pub observations_per_patient: usize,
}

struct Writer<'a> {
    services: &'a Services,
    pending: Vec<WriteOp>,
}

impl Writer<'_> {
    async fn add(&mut self, resource: Value, context: &WriteContext) -> anyhow::Result<String> {
        let resource = self.services.repo.prepare_create(resource, context)?;
        let id = resource["id"].as_str().unwrap_or_default().to_string();
        self.pending.push(WriteOp::Create(resource));
        if self.pending.len() >= BATCH {
            self.flush().await?;
        }
        Ok(id)
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        if !self.pending.is_empty() {
            self.services
                .repo
                .store
                .write(std::mem::take(&mut self.pending))
                .await?;
        }
        Ok(())
    }
}

fn patient(index: usize) -> Value {
    json!({"resourceType": "Patient", "name": [{"given": ["Bench"], "family": format!("Patient{index}")}],
        "gender": if index.is_multiple_of(2) { "female" } else { "male" }, "birthDate": "1980-01-01"})
}

fn observation(patient_id: &str, index: usize) -> Value {
    json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": format!("Patient/{patient_id}")},
        "effectiveDateTime": format!("2026-01-{:02}T08:00:00Z", index % 28 + 1),
        "valueQuantity": {"value": 60 + index % 40, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}})
}

fn encounter(patient_id: &str) -> Value {
    json!({"resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": format!("Patient/{patient_id}")}})
}

/// Seeds `resources` resources into one project, a few into ten others, and a patient user
/// limited to its own compartment by an access policy.
pub async fn seed(url: &str, resources: usize, admin_password: &str) -> anyhow::Result<Seeded> {
    let store = medgate_store::connect(url).await?;
    let services = Services::new(
        ServiceConfig::new("http://127.0.0.1/"),
        store,
        Arc::new(SystemClock),
        Arc::new(OsRandom::new()),
    );
    services
        .bootstrap("admin@example.com", Some(Secret::from(admin_password)))
        .await?;
    let mut writer = Writer {
        services: &services,
        pending: Vec::new(),
    };

    let system = WriteContext::system(None);
    let project_id = writer
        .add(json!({"resourceType": "Project", "name": "Bench"}), &system)
        .await?;
    let in_project = WriteContext::system(Some(&project_id));
    for other in 0..10 {
        let other_id = writer
            .add(
                json!({"resourceType": "Project", "name": format!("Other {other}")}),
                &system,
            )
            .await?;
        let context = WriteContext::system(Some(&other_id));
        for index in 0..10 {
            let patient_id = writer.add(patient(index), &context).await?;
            writer
                .add(observation(&patient_id, index), &context)
                .await?;
        }
    }

    let patients = (resources / 10).max(1);
    let observations_per_patient = 6;
    let encounters_per_patient = 3;
    let mut first_patient = None;
    for index in 0..patients {
        let patient_id = writer.add(patient(index), &in_project).await?;
        for observation_index in 0..observations_per_patient {
            writer
                .add(observation(&patient_id, observation_index), &in_project)
                .await?;
        }
        for _ in 0..encounters_per_patient {
            writer.add(encounter(&patient_id), &in_project).await?;
        }
        first_patient.get_or_insert(patient_id);
    }
    let patient_id = first_patient.context("no patient was seeded")?;

    let patient_password = "bench-Patient-58-ember".to_string();
    let patient_email = "patient@bench.example.com".to_string();
    let policy_id = writer
        .add(
            json!({"resourceType": "AccessPolicy", "name": "Own compartment", "resource": [
                {"resourceType": "Patient", "criteria": "Patient?_id=%patient.id"},
                {"resourceType": "Observation", "criteria": "Observation?_compartment=%patient"},
                {"resourceType": "Encounter", "criteria": "Encounter?_compartment=%patient"}
            ]}),
            &in_project,
        )
        .await?;
    let password_hash = services
        .passwords
        .hash(&Secret::new(patient_password.clone()))
        .await?;
    let user_id = writer
        .add(
            json!({"resourceType": "User", "firstName": "Bench", "lastName": "Patient", "email": patient_email,
                "passwordHash": password_hash, "project": {"reference": format!("Project/{project_id}")}}),
            &in_project,
        )
        .await?;
    writer
        .add(
            json!({"resourceType": "ProjectMembership", "project": {"reference": format!("Project/{project_id}")},
                "user": {"reference": format!("User/{user_id}")}, "profile": {"reference": format!("Patient/{patient_id}")},
                "accessPolicy": {"reference": format!("AccessPolicy/{policy_id}")}}),
            &in_project,
        )
        .await?;
    writer.flush().await?;
    Ok(Seeded {
        project_id,
        patient_id,
        patient_email,
        patient_password,
        observations_per_patient,
    })
}
