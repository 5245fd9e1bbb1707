//! Filters: what a search requires of a parameter's indexed values. A store runs them as SQL
//! and [`super::matches`] in memory; both give each operation the meaning documented here.

/// A comparison prefix of a date or number value (FHIR R4 search.html#prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    /// Starts after: the indexed range starts after the searched range ends.
    Sa,
    /// Ends before: the indexed range ends before the searched range starts.
    Eb,
}

/// One date alternative: a prefix and the searched range `[low, high]`, both normalized
/// instants (see [`super::parse_date_range`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateMatch {
    pub prefix: Prefix,
    pub low: String,
    pub high: String,
}

impl DateMatch {
    /// Checks an indexed range `[low, high]` against the searched one, with FHIR's range
    /// semantics (FHIR R4 search.html#prefix and #date): `eq` needs the searched range to contain the indexed
    /// one, `gt` an indexed range reaching past the searched one, `ge` either of the two.
    pub fn matches(&self, low: &str, high: &str) -> bool {
        let (search_low, search_high) = (self.low.as_str(), self.high.as_str());
        let contained = low >= search_low && high <= search_high;
        match self.prefix {
            Prefix::Eq => contained,
            Prefix::Ne => !contained,
            Prefix::Gt => high > search_high,
            Prefix::Lt => low < search_low,
            Prefix::Ge => high > search_high || contained,
            Prefix::Le => low < search_low || contained,
            Prefix::Sa => low > search_high,
            Prefix::Eb => high < search_low,
        }
    }
}

/// One number alternative. `eq` and `ne` use the range `[low, high)` that the searched value's
/// precision implies, so `100` is `[99.5, 100.5)` (FHIR R4 search.html#number). The other
/// prefixes compare with the value itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NumberMatch {
    pub prefix: Prefix,
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

impl NumberMatch {
    pub fn matches(&self, number: f64) -> bool {
        let within = number >= self.low && number < self.high;
        match self.prefix {
            Prefix::Eq => within,
            Prefix::Ne => !within,
            Prefix::Gt | Prefix::Sa => number > self.value,
            Prefix::Lt | Prefix::Eb => number < self.value,
            Prefix::Ge => number >= self.value,
            Prefix::Le => number <= self.value,
        }
    }
}

/// One token alternative (FHIR R4 search.html#token). A list of plain codes is parsed as
/// [`FilterOp::Equals`] on the indexed code; `Code` appears only beside forms with a system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenMatch {
    /// `code`: the code in any system.
    Code(String),
    /// `system|code`
    SystemCode { system: String, code: String },
    /// `|code`: the code in no system.
    CodeWithoutSystem(String),
    /// `system|`: any code of the system.
    System(String),
}

impl TokenMatch {
    pub fn matches(&self, system: Option<&str>, code: &str) -> bool {
        match self {
            Self::Code(wanted_code) => code == wanted_code,
            Self::SystemCode {
                system: wanted_system,
                code: wanted_code,
            } => system == Some(wanted_system.as_str()) && code == wanted_code,
            Self::CodeWithoutSystem(wanted_code) => system.is_none() && code == wanted_code,
            Self::System(wanted_system) => system == Some(wanted_system.as_str()),
        }
    }
}

/// The comparison a filter applies to a parameter's indexed values. Every operation except
/// `Not` and `Missing` matches a resource when at least one indexed value matches at least one
/// of the alternatives, because a comma-separated list means OR.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterOp {
    /// The indexed value equals an alternative: a token code, a `Type/id` reference, a uri,
    /// or for `_id` and `_project` the resource's id and project.
    Equals(Vec<String>),
    /// A lower-cased string value starts with a lower-cased alternative.
    StartsWith(Vec<String>),
    /// A lower-cased string value contains a lower-cased alternative (`:contains`).
    Contains(Vec<String>),
    /// The string as written in the resource equals an alternative, case included (`:exact`).
    Exact(Vec<String>),
    /// A token's system and code match an alternative.
    Token(Vec<TokenMatch>),
    /// A token's lower-cased display text starts with a lower-cased alternative (`:text`).
    Text(Vec<String>),
    /// A date range matches an alternative; for `_lastUpdated`, the resource's instant.
    Date(Vec<DateMatch>),
    Number(Vec<NumberMatch>),
    /// No indexed value matches the inner operation (`:not`), which includes resources
    /// without any value.
    Not(Box<FilterOp>),
    /// `:missing=true` (no value indexed) or `:missing=false`.
    Missing(bool),
}

impl FilterOp {
    /// Calls `visit` on every text value of the filter, for callers that fill placeholders
    /// into parsed filters. Dates and numbers hold no text.
    pub fn for_each_text_mut(&mut self, visit: &mut impl FnMut(&mut String)) {
        match self {
            Self::Equals(values)
            | Self::StartsWith(values)
            | Self::Contains(values)
            | Self::Exact(values)
            | Self::Text(values) => values.iter_mut().for_each(visit),
            Self::Token(matches) => {
                for token in matches {
                    match token {
                        TokenMatch::SystemCode { system, code } => {
                            visit(system);
                            visit(code);
                        }
                        TokenMatch::Code(code) | TokenMatch::CodeWithoutSystem(code) => visit(code),
                        TokenMatch::System(system) => visit(system),
                    }
                }
            }
            Self::Not(inner) => inner.for_each_text_mut(visit),
            Self::Date(_) | Self::Number(_) | Self::Missing(_) => {}
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// The parameter code, or one of the special codes `_id`, `_lastUpdated`, `_project`
    /// (the resource's `meta.project`) and `_compartment`.
    pub code: String,
    pub op: FilterOp,
}

/// Which resources a caller may see, as an access policy computes it: everything, nothing,
/// or the resources that match every filter of at least one group.
#[derive(Debug, Clone, PartialEq)]
pub enum Restriction {
    Everything,
    Nothing,
    AnyOf(Vec<Vec<Filter>>),
}
