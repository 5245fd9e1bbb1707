//! FHIR building blocks shared by every layer: references, the `OperationOutcome` error body,
//! the typed Medplum resources that authentication owns, and the search values extracted from
//! resources at write time. No I/O happens here.

pub mod fhirpath;
pub mod json_patch;
pub mod outcome;
pub mod properties;
pub mod reference;
pub mod resources;
pub mod search;

pub use outcome::{IssueCode, OperationOutcome};
pub use reference::Reference;
