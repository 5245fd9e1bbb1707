//! FHIR R4 search: the search parameters of every resource type, the values they index, the
//! parser that turns a query string into a [`SearchRequest`], and in-memory matching.
//!
//! Values are extracted at write time ([`index_values`]) into an index table by evaluating
//! each parameter's FHIRPath expression, so a search is an indexed look-up and never a scan
//! of JSON documents. A store runs the filters as SQL over those values, and [`matches`] runs
//! them in memory over the same values with the same meaning.

mod compartment;
mod date;
mod definitions;
mod extract;
mod filter;
mod matching;
mod parse;
mod values;

pub use compartment::patient_compartment;
pub use date::{DateRange, MAX_INSTANT, MIN_INSTANT, normalize_instant, parse_date_range};
pub use definitions::{
    ParamKind, SUPPORTED_TYPES, SearchParam, compartment_params, find_param, params_of,
};
pub use extract::{COMPARTMENT_CODE, INDEX_VERSION, IndexValue, index_values};
pub use filter::{DateMatch, Filter, FilterOp, NumberMatch, Prefix, Restriction, TokenMatch};
pub use matching::matches;

/// The page size of a search without `_count`.
pub const DEFAULT_COUNT: u32 = 20;
/// The largest page a search returns; a larger `_count` is lowered to it.
pub const MAX_COUNT: u32 = 1000;

/// One key of `_sort` (FHIR R4 search.html#sort).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    /// The parameter code, `_id` or `_lastUpdated`.
    pub code: String,
    pub descending: bool,
    pub column: SortColumn,
}

/// The column a sort key orders by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortColumn {
    Id,
    LastUpdated,
    /// The indexed text of a string, token, reference or uri parameter.
    Value,
    /// The range of a date parameter: ascending by its earliest start, descending by its
    /// latest end.
    DateRange,
    Number,
}

/// One `_include` or `_revinclude` (FHIR R4 search.html#include):
/// `source_type:param[:target_type]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    pub source_type: String,
    /// A reference parameter of `source_type`.
    pub param: String,
    /// Limits the included resources to one type.
    pub target_type: Option<String>,
}

/// A parsed search request.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    pub resource_type: String,
    pub filters: Vec<Filter>,
    /// `_sort` keys in order; without any, results come oldest `lastUpdated` first.
    pub sort: Vec<SortKey>,
    pub count: u32,
    pub offset: u32,
    /// `_total=accurate` or `estimate`: the Bundle reports how many resources match.
    pub total: bool,
    pub includes: Vec<Include>,
    pub revincludes: Vec<Include>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    #[error("Unknown resource type: {0}")]
    UnknownType(String),
    #[error("Unknown search parameter{}: {}", if .0.len() > 1 { "s" } else { "" }, .0.join(", "))]
    UnknownParameters(Vec<String>),
    #[error("Search parameter {param} of type {kind} is not supported")]
    UnsupportedType { param: String, kind: &'static str },
    #[error("Search parameter {0} is not supported")]
    UnsupportedParameter(String),
    #[error("Unsupported search modifier: {0}")]
    UnsupportedModifier(String),
    #[error("Search prefix {prefix} of {param} is not supported")]
    UnsupportedPrefix { param: String, prefix: &'static str },
    #[error("Invalid value for {param}: {value}")]
    InvalidValue { param: String, value: String },
}

impl SearchRequest {
    /// Builds a request with no filters and the default page size.
    pub fn new(resource_type: &str) -> Self {
        Self {
            resource_type: resource_type.to_string(),
            filters: Vec::new(),
            sort: Vec::new(),
            count: DEFAULT_COUNT,
            offset: 0,
            total: false,
            includes: Vec::new(),
            revincludes: Vec::new(),
        }
    }

    /// Adds a filter that matches an indexed value exactly, as stored: a token code, a
    /// `Type/id` reference, or a lower-cased email address.
    pub fn filter(mut self, code: &str, value: &str) -> Self {
        self.filters.push(Filter {
            code: code.to_string(),
            op: FilterOp::Equals(vec![value.to_string()]),
        });
        self
    }

    pub fn missing(mut self, code: &str, missing: bool) -> Self {
        self.filters.push(Filter {
            code: code.to_string(),
            op: FilterOp::Missing(missing),
        });
        self
    }

    pub fn count(mut self, count: u32) -> Self {
        self.count = count;
        self
    }
}

#[cfg(test)]
mod tests;
