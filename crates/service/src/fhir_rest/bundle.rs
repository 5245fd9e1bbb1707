//! The Bundles that search (`searchset`) and history (`history`) return.

use serde_json::{Value, json};

/// The position of a page of search results, for the Bundle's `self` and `next` links.
pub(super) struct Page<'a> {
    /// `{baseUrl}fhir/R4/{type}`, without a query.
    pub type_url: &'a str,
    /// `{baseUrl}fhir/R4/`, for the `fullUrl` of included resources of any type.
    pub base_url: &'a str,
    /// The request's query parameters, decoded.
    pub query: &'a [(String, String)],
    pub offset: u32,
    pub count: u32,
    pub has_next: bool,
    /// The number of matches on all pages, when `_total` requested it.
    pub total: Option<u64>,
}

fn full_url(type_url: &str, resource: &Value) -> String {
    let id = resource
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    format!("{type_url}/{id}")
}

fn url_with_query<'a>(type_url: &str, query: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in query {
        serializer.append_pair(key, value);
    }
    let query = serializer.finish();
    if query.is_empty() {
        type_url.to_string()
    } else {
        format!("{type_url}?{query}")
    }
}

/// Builds a `searchset` Bundle (FHIR R4, "Search") with `self` and, when more results exist,
/// `next` links. The `next` link repeats the query with `_offset` moved past this page. Each
/// entry's `search.mode` distinguishes a match from a resource that `_include` or
/// `_revinclude` added.
pub(super) fn searchset(page: &Page<'_>, matches: Vec<Value>, included: Vec<Value>) -> Value {
    let entry = |resource: Value, mode: &str| {
        let resource_type = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let type_url = format!("{}{resource_type}", page.base_url);
        json!({
            "fullUrl": full_url(&type_url, &resource),
            "resource": resource,
            "search": {"mode": mode},
        })
    };
    let entries: Vec<Value> = matches
        .into_iter()
        .map(|resource| entry(resource, "match"))
        .chain(
            included
                .into_iter()
                .map(|resource| entry(resource, "include")),
        )
        .collect();
    let pairs = || {
        page.query
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
    };
    let mut links =
        vec![json!({"relation": "self", "url": url_with_query(page.type_url, pairs())})];
    if page.has_next {
        let next_offset = page.offset.saturating_add(page.count).to_string();
        let without_offset = pairs().filter(|(key, _)| *key != "_offset");
        let next = url_with_query(
            page.type_url,
            without_offset.chain(std::iter::once(("_offset", next_offset.as_str()))),
        );
        links.push(json!({"relation": "next", "url": next}));
    }
    let mut bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": entries,
        "link": links,
    });
    if let Some(total) = page.total {
        bundle["total"] = json!(total);
    }
    bundle
}

/// Builds a `history` Bundle (FHIR R4, "RESTful API", history), newest version first. Each
/// entry carries `request` and `response`: the oldest version appears as a create, every
/// later one as an update.
pub(super) fn history(type_url: &str, resource_type: &str, versions: Vec<Value>) -> Value {
    let oldest = versions.len().saturating_sub(1);
    let entries: Vec<Value> = versions
        .into_iter()
        .enumerate()
        .map(|(index, resource)| {
            let (request, status) = if index == oldest {
                (json!({"method": "POST", "url": resource_type}), "201")
            } else {
                let id = resource
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let url = format!("{resource_type}/{id}");
                (json!({"method": "PUT", "url": url}), "200")
            };
            json!({
                "fullUrl": full_url(type_url, &resource),
                "request": request,
                "response": {"status": status},
                "resource": resource,
            })
        })
        .collect();
    json!({
        "resourceType": "Bundle",
        "type": "history",
        "entry": entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_link_moves_offset() {
        let query = vec![
            ("name".to_string(), "My App".to_string()),
            ("_offset".to_string(), "2".to_string()),
            ("_count".to_string(), "2".to_string()),
        ];
        let page = Page {
            type_url: "http://x/fhir/R4/Patient",
            base_url: "http://x/fhir/R4/",
            query: &query,
            offset: 2,
            count: 2,
            has_next: true,
            total: None,
        };
        let bundle = searchset(
            &page,
            vec![json!({"resourceType": "Patient", "id": "a"})],
            Vec::new(),
        );
        assert_eq!(bundle["entry"][0]["fullUrl"], "http://x/fhir/R4/Patient/a");
        assert_eq!(bundle["entry"][0]["search"]["mode"], "match");
        assert!(bundle.get("total").is_none());
        assert_eq!(
            bundle["link"][0]["url"],
            "http://x/fhir/R4/Patient?name=My+App&_offset=2&_count=2"
        );
        assert_eq!(
            bundle["link"][1]["url"],
            "http://x/fhir/R4/Patient?name=My+App&_count=2&_offset=4"
        );
    }

    #[test]
    fn last_page_has_no_next() {
        let page = Page {
            type_url: "http://x/fhir/R4/Patient",
            base_url: "http://x/fhir/R4/",
            query: &[],
            offset: 0,
            count: 20,
            has_next: false,
            total: Some(0),
        };
        let bundle = searchset(&page, Vec::new(), Vec::new());
        assert_eq!(bundle["link"].as_array().unwrap().len(), 1);
        assert_eq!(bundle["link"][0]["url"], "http://x/fhir/R4/Patient");
        assert_eq!(bundle["total"], 0);
    }

    #[test]
    fn included_entries_marked() {
        let page = Page {
            type_url: "http://x/fhir/R4/Observation",
            base_url: "http://x/fhir/R4/",
            query: &[],
            offset: 0,
            count: 20,
            has_next: false,
            total: Some(1),
        };
        let bundle = searchset(
            &page,
            vec![json!({"resourceType": "Observation", "id": "o"})],
            vec![json!({"resourceType": "Patient", "id": "p"})],
        );
        assert_eq!(bundle["entry"][1]["fullUrl"], "http://x/fhir/R4/Patient/p");
        assert_eq!(bundle["entry"][1]["search"]["mode"], "include");
        assert_eq!(bundle["total"], 1);
    }

    #[test]
    fn history_marks_oldest_as_create() {
        let versions = vec![
            json!({"resourceType": "Patient", "id": "a", "meta": {"versionId": "2"}}),
            json!({"resourceType": "Patient", "id": "a", "meta": {"versionId": "1"}}),
        ];
        let bundle = history("http://x/fhir/R4/Patient", "Patient", versions);
        assert_eq!(bundle["entry"][0]["request"]["method"], "PUT");
        assert_eq!(bundle["entry"][0]["request"]["url"], "Patient/a");
        assert_eq!(bundle["entry"][1]["request"]["method"], "POST");
        assert_eq!(bundle["entry"][1]["request"]["url"], "Patient");
    }
}
