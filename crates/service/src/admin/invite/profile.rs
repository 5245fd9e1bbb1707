//! The invited person's profile: one given in `membership.profile`, an existing one in the
//! project with the invite's email, or a new one.

use medgate_fhir::Reference;
use medgate_fhir::resources::Project;
use medgate_fhir::search::SearchRequest;
use medgate_store::StoreError;
use serde_json::{Value, json};

use super::ValidInvite;
use crate::Services;
use crate::error::{ServiceError, ServiceResult};
use crate::random::{is_uuid, uuid_v4};
use crate::repo::WriteContext;

/// The profile a membership will point to.
pub(super) struct InviteProfile {
    pub reference: Reference,
    /// The prepared create of a new profile; `None` when an existing one is used.
    pub create: Option<Value>,
    /// The Patient a RelatedPerson profile relates to.
    pub patient: Option<Reference>,
}

impl Services {
    pub(super) async fn invite_profile(
        &self,
        project: &Project,
        invite: &ValidInvite,
    ) -> ServiceResult<InviteProfile> {
        let resource_type = invite.resource_type.as_str();

        // membership.profile: an existing resource of this project and of the invited type.
        if let Some(profile) = invite
            .request
            .membership
            .as_ref()
            .and_then(|membership| membership.get("profile"))
        {
            let reference: Reference = serde_json::from_value(profile.clone()).map_err(|_| {
                ServiceError::invalid_field("Invalid profile reference", "membership.profile")
            })?;
            let stored = self
                .read_in_project(&reference, project)
                .await
                .map_err(|error| match error {
                    ProfileError::Missing => ServiceError::invalid(format!(
                        "Profile {} does not exist",
                        reference.reference
                    )),
                    ProfileError::OtherProject => {
                        ServiceError::invalid("Profile does not belong to project")
                    }
                    ProfileError::Service(error) => error,
                })?;
            if stored["resourceType"] != resource_type {
                return Err(ServiceError::invalid(
                    "Profile resourceType does not match request",
                ));
            }
            return Ok(InviteProfile {
                patient: related_patient(&stored),
                reference: profile_reference(&stored),
                create: None,
            });
        }

        // patient: a RelatedPerson relates to a Patient of this project.
        let patient = match invite
            .request
            .patient
            .as_ref()
            .filter(|patient| !patient.reference.is_empty())
        {
            Some(patient) if resource_type == "RelatedPerson" => {
                self.read_in_project(patient, project)
                    .await
                    .map_err(|error| match error {
                        ProfileError::Missing => ServiceError::invalid(format!(
                            "Patient {} does not exist",
                            patient.reference
                        )),
                        ProfileError::OtherProject => {
                            ServiceError::invalid("Patient does not belong to project")
                        }
                        ProfileError::Service(error) => error,
                    })?;
                Some(Reference {
                    reference: patient.reference.clone(),
                    display: None,
                })
            }
            _ => None,
        };

        // email: an existing profile of this project with the email is reused, as Medplum's
        // conditional create does.
        if let Some(email) = &invite.email {
            let request = SearchRequest::new(resource_type)
                .filter("email", email)
                .count(2);
            let matches = self
                .repo
                .store
                .search(medgate_store::SearchScope {
                    request: &request,
                    project_id: Some(&project.id),
                    restriction: None,
                })
                .await?;
            match matches.as_slice() {
                [existing] => {
                    return Ok(InviteProfile {
                        patient: related_patient(existing).or(patient),
                        reference: profile_reference(existing),
                        create: None,
                    });
                }
                [] => {}
                _ => return Err(ServiceError::MultipleMatches),
            }
        }

        if resource_type == "RelatedPerson" && patient.is_none() {
            return Err(ServiceError::invalid(
                "Patient is required to create a RelatedPerson",
            ));
        }

        let mut profile = json!({
            "resourceType": resource_type,
            "id": uuid_v4(self.random()),
            "name": [{"given": [invite.first_name], "family": invite.last_name}],
        });
        if let Some(email) = &invite.email {
            profile["telecom"] = json!([{"system": "email", "use": "work", "value": email}]);
        }
        if let Some(patient) = &patient {
            profile["patient"] = json!(patient);
        }
        let profile = self
            .repo
            .prepare_create(profile, &WriteContext::system(Some(&project.id)))?;
        Ok(InviteProfile {
            reference: profile_reference(&profile),
            create: Some(profile),
            patient,
        })
    }

    /// Reads the resource a reference names and checks that it belongs to `project`.
    async fn read_in_project(
        &self,
        reference: &Reference,
        project: &Project,
    ) -> Result<Value, ProfileError> {
        let Some((resource_type, id)) = reference.parts() else {
            return Err(ProfileError::Missing);
        };
        if !is_uuid(id) || !medgate_fhir::search::SUPPORTED_TYPES.contains(&resource_type) {
            return Err(ProfileError::Missing);
        }
        let stored = match self.repo.store.read(resource_type, id).await {
            Ok(stored) => stored,
            Err(StoreError::NotFound | StoreError::Gone) => return Err(ProfileError::Missing),
            Err(error) => return Err(ProfileError::Service(error.into())),
        };
        if stored["meta"]["project"].as_str() != Some(project.id.as_str()) {
            return Err(ProfileError::OtherProject);
        }
        Ok(stored)
    }
}

enum ProfileError {
    Missing,
    OtherProject,
    Service(ServiceError),
}

/// Builds the reference to a stored profile with its name as `display`, as Medplum writes it.
fn profile_reference(profile: &Value) -> Reference {
    let reference = Reference::new(
        profile["resourceType"].as_str().unwrap_or_default(),
        profile["id"].as_str().unwrap_or_default(),
    );
    let name = &profile["name"][0];
    let display = name["given"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .chain(name["family"].as_str())
        .collect::<Vec<_>>()
        .join(" ");
    if display.is_empty() {
        reference
    } else {
        reference.with_display(display)
    }
}

fn related_patient(profile: &Value) -> Option<Reference> {
    let reference = profile["patient"]["reference"].as_str()?;
    Some(Reference {
        reference: reference.to_string(),
        display: None,
    })
}
