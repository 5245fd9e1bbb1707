//! The FHIR `OperationOutcome` that `/auth`, `/admin` and `/fhir` routes return on errors.
//! The `id` values are the ones Medplum uses, because `@medplum/core` keys on them.

use serde::{Deserialize, Serialize};

/// FHIR `IssueType` codes that medgate produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IssueCode {
    Invalid,
    Informational,
    Login,
    Forbidden,
    NotFound,
    Conflict,
    Deleted,
    Processing,
    MultipleMatches,
    Throttled,
    TooLong,
    Exception,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Issue {
    pub severity: String,
    pub code: IssueCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<IssueDetails>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expression: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssueDetails {
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationOutcome {
    pub resource_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub issue: Vec<Issue>,
}

impl OperationOutcome {
    fn single(id: Option<&str>, severity: &str, code: IssueCode, text: &str) -> Self {
        Self {
            resource_type: "OperationOutcome".to_string(),
            id: id.map(str::to_string),
            issue: vec![Issue {
                severity: severity.to_string(),
                code,
                details: Some(IssueDetails {
                    text: text.to_string(),
                }),
                expression: Vec::new(),
                diagnostics: None,
            }],
        }
    }

    /// A 400 outcome; `field` becomes the issue's `expression` when the error concerns one input.
    pub fn bad_request(text: &str, field: Option<&str>) -> Self {
        let mut outcome = Self::single(None, "error", IssueCode::Invalid, text);
        if let Some(field) = field {
            outcome.issue[0].expression = vec![field.to_string()];
        }
        outcome
    }

    pub fn all_ok() -> Self {
        Self::single(
            Some("ok"),
            "information",
            IssueCode::Informational,
            "All OK",
        )
    }

    pub fn unauthorized() -> Self {
        Self::single(
            Some("unauthorized"),
            "error",
            IssueCode::Login,
            "Unauthorized",
        )
    }

    pub fn forbidden() -> Self {
        Self::single(
            Some("forbidden"),
            "error",
            IssueCode::Forbidden,
            "Forbidden",
        )
    }

    pub fn not_found() -> Self {
        Self::single(Some("not-found"), "error", IssueCode::NotFound, "Not found")
    }

    pub fn gone() -> Self {
        Self::single(Some("gone"), "error", IssueCode::Deleted, "Gone")
    }

    pub fn conflict(text: &str) -> Self {
        Self::single(Some("conflict"), "error", IssueCode::Conflict, text)
    }

    pub fn precondition_failed() -> Self {
        Self::single(
            Some("precondition-failed"),
            "error",
            IssueCode::Processing,
            "Precondition Failed",
        )
    }

    /// Builds the 412 outcome of a conditional interaction whose search found more than one
    /// resource (FHIR R4 "RESTful API", conditional create and update).
    pub fn multiple_matches() -> Self {
        Self::single(
            Some("multiple-matches"),
            "error",
            IssueCode::MultipleMatches,
            "Multiple resources found matching condition",
        )
    }

    pub fn too_many_requests() -> Self {
        Self::single(
            Some("too-many-requests"),
            "error",
            IssueCode::Throttled,
            "Too Many Requests",
        )
    }

    /// A 429 outcome with a text that says what was limited and when to retry.
    pub fn throttled(text: &str) -> Self {
        Self::single(
            Some("too-many-requests"),
            "error",
            IssueCode::Throttled,
            text,
        )
    }

    pub fn payload_too_large(text: &str) -> Self {
        Self::single(None, "error", IssueCode::TooLong, text)
    }

    /// Builds a 500 outcome. The text is generic on purpose, because the cause is logged and
    /// never returned.
    pub fn internal_error(request_id: &str) -> Self {
        let mut outcome =
            Self::single(None, "error", IssueCode::Exception, "Internal server error");
        outcome.issue[0].diagnostics = Some(format!("request id {request_id}"));
        outcome
    }

    /// Returns the first issue's text, which Medplum clients show to the user.
    pub fn text(&self) -> &str {
        self.issue
            .first()
            .and_then(|issue| issue.details.as_ref())
            .map(|details| details.text.as_str())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bad_request_has_expression() {
        let value = serde_json::to_value(OperationOutcome::bad_request(
            "Missing login",
            Some("login"),
        ))
        .unwrap();
        assert_eq!(
            value,
            json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "invalid",
                "details": {"text": "Missing login"}, "expression": ["login"]}]})
        );
    }

    #[test]
    fn not_found_uses_medplum_id() {
        let outcome = OperationOutcome::not_found();
        assert_eq!(outcome.id.as_deref(), Some("not-found"));
        assert_eq!(outcome.text(), "Not found");
    }
}
