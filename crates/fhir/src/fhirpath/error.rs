//! The error type of parsing and evaluating FHIRPath expressions.

/// An error from parsing or evaluating a FHIRPath expression.
///
/// Positions are 0-based character offsets into the expression text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FhirPathError {
    /// The text is not valid FHIRPath, uses a construct this evaluator does not implement,
    /// or nests deeper than the evaluator allows.
    #[error("invalid FHIRPath expression at position {position}: {message}")]
    Parse { position: usize, message: String },

    /// The expression calls a function that this evaluator does not implement.
    #[error("unsupported function: {name} (at position {position})")]
    UnsupportedFunction { name: String, position: usize },

    /// `%name` is neither in the caller's variables nor defined by FHIRPath itself
    /// (N1 §9 Environment variables: accessing an undefined variable is an error).
    #[error("undefined variable: %{name}")]
    UndefinedVariable { name: String },

    /// The expression is valid but failed on this input, e.g. it compared a string with an
    /// integer or passed several items where one is expected.
    #[error("FHIRPath evaluation failed at position {position}: {message}")]
    Evaluation { position: usize, message: String },
}

impl FhirPathError {
    pub(super) fn parse(position: usize, message: impl Into<String>) -> Self {
        Self::Parse {
            position,
            message: message.into(),
        }
    }

    pub(super) fn evaluation(position: usize, message: impl Into<String>) -> Self {
        Self::Evaluation {
            position,
            message: message.into(),
        }
    }
}
