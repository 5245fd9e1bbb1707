use serde::{Deserialize, Serialize};

/// A FHIR `Reference` in its literal form, `<ResourceType>/<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Reference {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reference: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

impl Reference {
    pub fn new(resource_type: &str, id: &str) -> Self {
        Self {
            reference: format!("{resource_type}/{id}"),
            display: None,
        }
    }

    pub fn with_display(mut self, display: impl Into<String>) -> Self {
        self.display = Some(display.into());
        self
    }

    /// Splits the literal reference into its resource type and id, when it has that form.
    pub fn parts(&self) -> Option<(&str, &str)> {
        let (resource_type, id) = self.reference.split_once('/')?;
        if resource_type.is_empty() || id.is_empty() || id.contains('/') {
            return None;
        }
        Some((resource_type, id))
    }

    pub fn resource_type(&self) -> Option<&str> {
        self.parts().map(|(resource_type, _)| resource_type)
    }

    pub fn id(&self) -> Option<&str> {
        self.parts().map(|(_, id)| id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_of_literal_reference() {
        let reference = Reference::new("Patient", "123");
        assert_eq!(reference.parts(), Some(("Patient", "123")));
    }

    #[test]
    fn parts_reject_malformed_reference() {
        for text in ["Patient", "/123", "Patient/", "Patient/1/_history/2"] {
            let reference = Reference {
                reference: text.to_string(),
                display: None,
            };
            assert_eq!(reference.parts(), None, "{text}");
        }
    }
}
