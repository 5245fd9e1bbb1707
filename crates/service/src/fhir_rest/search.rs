//! One page of a FHIR search with what the `searchset` Bundle reports beside it: the count
//! for `_total`, and the resources that `_include` and `_revinclude` add (FHIR R4
//! search.html#include). `:iterate` is not supported.
//!
//! Included resources come from further searches, each scoped to the caller's project and
//! narrowed by the restriction the caller supplies for the included type, so an include never
//! shows a resource that a search of that type would hide.

use std::collections::HashSet;

use medgate_fhir::search::{
    Filter, FilterOp, Include, MAX_COUNT, Restriction, SUPPORTED_TYPES, SearchRequest, index_values,
};
use medgate_store::SearchScope;
use serde_json::Value;

use super::FhirCaller;
use super::bundle::{self, Page};
use crate::Services;
use crate::error::ServiceResult;

/// Ids or references per included search. Keeps each statement's placeholder count well
/// below the databases' limits.
const IDS_PER_SEARCH: usize = 200;

/// The projects and the restriction that a search and its includes run in.
pub(super) struct SearchScopes<'a> {
    /// The project of the matches; `None` for server-wide searches.
    pub project_id: Option<&'a str>,
    /// The project of included resources; `None` only for super admins.
    pub include_project: Option<&'a str>,
    /// The access restriction of the searched type.
    pub restriction: Option<&'a Restriction>,
}

/// Returns the restriction for an included resource type; `None` allows every resource of
/// the type, `Some(Restriction::Nothing)` none.
pub(super) type RestrictionFor<'a> = &'a (dyn Fn(&str) -> Option<Restriction> + Sync);

impl Services {
    /// Runs a parsed search and returns its `searchset` Bundle: the matches of one page,
    /// their includes with `search.mode: include`, `total` when `_total` requested it, and
    /// `self` and `next` links that repeat every parameter of `query`.
    pub(super) async fn searchset(
        &self,
        caller: &FhirCaller,
        request: &SearchRequest,
        query: &[(String, String)],
        scopes: SearchScopes<'_>,
        restriction_for: RestrictionFor<'_>,
    ) -> ServiceResult<Value> {
        // Fetching one result more than the page size shows whether a next page exists.
        let page_size = request.count;
        let mut page_request = request.clone();
        page_request.count = page_size.saturating_add(1);
        let scope = SearchScope {
            request: &page_request,
            project_id: scopes.project_id,
            restriction: scopes.restriction,
        };
        let mut matches = self.repo.store.search(scope.clone()).await?;
        let has_next = page_size > 0 && matches.len() > page_size as usize;
        matches.truncate(page_size as usize);
        let total = if request.total {
            Some(self.repo.store.count(scope).await?)
        } else {
            None
        };

        let included = self
            .included(request, &matches, scopes.include_project, restriction_for)
            .await?;
        let type_url = self
            .config
            .url(&format!("fhir/R4/{}", request.resource_type));
        let page = Page {
            type_url: &type_url,
            base_url: &self.config.url("fhir/R4/"),
            query,
            offset: request.offset,
            count: page_size,
            has_next,
            total,
        };
        let present = |resources: Vec<Value>| {
            resources
                .into_iter()
                .map(|resource| caller.present(resource))
                .collect()
        };
        Ok(bundle::searchset(
            &page,
            present(matches),
            present(included),
        ))
    }

    /// Finds the resources that `_include` and `_revinclude` add to `matches`, without
    /// duplicates and without the matches themselves.
    async fn included(
        &self,
        request: &SearchRequest,
        matches: &[Value],
        project_id: Option<&str>,
        restriction_for: RestrictionFor<'_>,
    ) -> ServiceResult<Vec<Value>> {
        let mut seen: HashSet<String> = matches.iter().filter_map(type_and_id).collect();
        let mut included = Vec::new();
        for include in &request.includes {
            for (target_type, ids) in referenced_ids(matches, include) {
                for chunk in ids.chunks(IDS_PER_SEARCH) {
                    let filter = Filter {
                        code: "_id".to_string(),
                        op: FilterOp::Equals(chunk.to_vec()),
                    };
                    let found = self
                        .search_included(&target_type, filter, project_id, restriction_for)
                        .await?;
                    keep_unseen(found, &mut seen, &mut included);
                }
            }
        }
        for include in &request.revincludes {
            let references = referencing_targets(matches, &request.resource_type, include);
            for chunk in references.chunks(IDS_PER_SEARCH) {
                let filter = Filter {
                    code: include.param.clone(),
                    op: FilterOp::Equals(chunk.to_vec()),
                };
                let found = self
                    .search_included(&include.source_type, filter, project_id, restriction_for)
                    .await?;
                keep_unseen(found, &mut seen, &mut included);
            }
        }
        Ok(included)
    }

    /// Searches `resource_type` for included resources, within the caller's project and the
    /// type's restriction.
    ///
    /// NOTE: each search returns at most `MAX_COUNT` resources, so a `_revinclude` of more
    /// resources than that per chunk of matches is cut short.
    async fn search_included(
        &self,
        resource_type: &str,
        filter: Filter,
        project_id: Option<&str>,
        restriction_for: RestrictionFor<'_>,
    ) -> ServiceResult<Vec<Value>> {
        if !SUPPORTED_TYPES.contains(&resource_type) {
            return Ok(Vec::new());
        }
        let restriction = restriction_for(resource_type);
        if restriction == Some(Restriction::Nothing) {
            return Ok(Vec::new());
        }
        let mut request = SearchRequest::new(resource_type).count(MAX_COUNT);
        request.filters.push(filter);
        let found = self
            .repo
            .store
            .search(SearchScope {
                request: &request,
                project_id,
                restriction: restriction.as_ref(),
            })
            .await?;
        Ok(found)
    }
}

fn type_and_id(resource: &Value) -> Option<String> {
    let resource_type = resource.get("resourceType")?.as_str()?;
    let id = resource.get("id")?.as_str()?;
    Some(format!("{resource_type}/{id}"))
}

fn keep_unseen(found: Vec<Value>, seen: &mut HashSet<String>, included: &mut Vec<Value>) {
    for resource in found {
        if let Some(key) = type_and_id(&resource)
            && seen.insert(key)
        {
            included.push(resource);
        }
    }
}

/// Collects the ids that the include's reference parameter points to in `matches`, per target type,
/// in order of first appearance. Only relative `Type/id` references can be followed.
fn referenced_ids(matches: &[Value], include: &Include) -> Vec<(String, Vec<String>)> {
    let mut by_type: Vec<(String, Vec<String>)> = Vec::new();
    for resource in matches {
        let references = index_values(resource)
            .into_iter()
            .filter(|value| value.code == include.param);
        for reference in references {
            let Some((target_type, id)) = reference.value.split_once('/') else {
                continue;
            };
            if id.is_empty() || id.contains('/') || target_type.contains(':') {
                continue;
            }
            if include
                .target_type
                .as_deref()
                .is_some_and(|wanted| wanted != target_type)
            {
                continue;
            }
            let index = match by_type.iter().position(|(known, _)| known == target_type) {
                Some(index) => index,
                None => {
                    by_type.push((target_type.to_string(), Vec::new()));
                    by_type.len() - 1
                }
            };
            let ids = &mut by_type[index].1;
            if !ids.iter().any(|known| known == id) {
                ids.push(id.to_string());
            }
        }
    }
    by_type
}

/// Returns the `Type/id` references of the matches that a `_revinclude` looks for, or none when its
/// target type is not the searched one.
fn referencing_targets(matches: &[Value], searched_type: &str, include: &Include) -> Vec<String> {
    if include
        .target_type
        .as_deref()
        .is_some_and(|target| target != searched_type)
    {
        return Vec::new();
    }
    matches.iter().filter_map(type_and_id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn include(param: &str, target_type: Option<&str>) -> Include {
        Include {
            source_type: "Observation".to_string(),
            param: param.to_string(),
            target_type: target_type.map(str::to_string),
        }
    }

    #[test]
    fn referenced_ids_grouped_by_type() {
        let matches = [
            json!({"resourceType": "Observation", "id": "o1",
                "performer": [{"reference": "Practitioner/d1"}, {"reference": "Patient/p1"}]}),
            json!({"resourceType": "Observation", "id": "o2",
                "performer": [{"reference": "Practitioner/d1"}, {"reference": "urn:uuid:x"},
                    {"reference": "http://other.example/fhir/Patient/p9"}]}),
        ];
        assert_eq!(
            referenced_ids(&matches, &include("performer", None)),
            vec![
                ("Practitioner".to_string(), vec!["d1".to_string()]),
                ("Patient".to_string(), vec!["p1".to_string()]),
            ]
        );
        assert_eq!(
            referenced_ids(&matches, &include("performer", Some("Patient"))),
            vec![("Patient".to_string(), vec!["p1".to_string()])]
        );
    }

    #[test]
    fn revinclude_targets_the_searched_type() {
        let matches = [json!({"resourceType": "Patient", "id": "p1"})];
        let provenance = Include {
            source_type: "Provenance".to_string(),
            param: "target".to_string(),
            target_type: None,
        };
        assert_eq!(
            referencing_targets(&matches, "Patient", &provenance),
            ["Patient/p1"]
        );
        let other = Include {
            target_type: Some("Observation".to_string()),
            ..provenance
        };
        assert!(referencing_targets(&matches, "Patient", &other).is_empty());
    }
}
