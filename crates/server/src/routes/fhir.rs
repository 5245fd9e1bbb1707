//! The FHIR R4 RESTful API under `/fhir/R4` (the "RESTful API" page of FHIR R4) for the
//! resource types medgate stores. Bodies are `application/fhir+json` or `application/json`,
//! and errors are OperationOutcomes. Resource responses carry `ETag: W/"<versionId>"` and
//! `Last-Modified` (FHIR R4, "Resource Metadata and Versioning"), and a create also
//! `Location`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, RawQuery, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use medgate_fhir::OperationOutcome;
use medgate_service::ServiceError;
use medgate_service::fhir_rest::{ConditionalWrite, FhirCaller, parse_condition};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::AppState;
use crate::error::{OutcomeError, fhir_json};
use crate::extract::{Authenticated, JsonBody, parse_json};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/fhir/R4", post(bundle))
        .route("/fhir/R4/", post(bundle))
        .route("/fhir/R4/metadata", get(metadata))
        .route(
            "/fhir/R4/{resource_type}",
            get(search)
                .post(create)
                .put(conditional_update)
                .delete(conditional_delete),
        )
        .route("/fhir/R4/{resource_type}/_search", post(search_form))
        .route(
            "/fhir/R4/{resource_type}/{id}",
            get(read)
                .put(update)
                .patch(patch)
                .delete(delete)
                .post(type_operation),
        )
        .route("/fhir/R4/{resource_type}/{id}/_history", get(history))
        .route(
            "/fhir/R4/{resource_type}/{id}/_history/{version_id}",
            get(vread),
        )
        .route("/fhir/R4/{resource_type}/{id}/{operation}", post(operation))
}

/// The authenticated caller, and whether the request sets `X-Medplum: extended` for
/// Medplum's extended `meta` (`MedplumClient` always sends it).
pub(crate) struct Caller(pub(crate) FhirCaller);

impl FromRequestParts<AppState> for Caller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Authenticated(auth) = Authenticated::from_request_parts(parts, state).await?;
        let extended = parts
            .headers
            .get("x-medplum")
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.trim().eq_ignore_ascii_case("extended"));
        Ok(Self(FhirCaller { auth, extended }))
    }
}

/// Path parameters whose rejection is an OperationOutcome instead of axum's plain text.
pub(crate) struct FhirPath<T>(pub(crate) T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for FhirPath<T> {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(OutcomeError(ServiceError::invalid(format!(
                "Invalid URL path: {}",
                rejection.body_text()
            )))
            .into_response()),
        }
    }
}

/// A JSON body that may be absent altogether, as for a `$rotate-secret` without
/// Parameters. A body that is present is read as [`JsonBody`] reads it.
struct OptionalJsonBody(Option<Value>);

impl FromRequest<AppState> for OptionalJsonBody {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let headers = request.headers();
        let has_body = headers.contains_key(header::TRANSFER_ENCODING)
            || headers
                .get(header::CONTENT_LENGTH)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<u64>().ok())
                .is_some_and(|length| length > 0);
        if !has_body {
            return Ok(Self(None));
        }
        let JsonBody(value) = JsonBody::<Value>::from_request(request, state).await?;
        Ok(Self(Some(value)))
    }
}

/// Formats a FHIR instant as an RFC 9110 §5.6.7 HTTP date (IMF-fixdate, always GMT).
fn http_date(instant: &str) -> Option<String> {
    let at = chrono::DateTime::parse_from_rfc3339(instant).ok()?;
    Some(
        at.with_timezone(&chrono::Utc)
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string(),
    )
}

/// Builds a resource response with the `ETag` and `Last-Modified` headers of its `meta`.
pub(crate) fn resource_response(status: StatusCode, resource: &Value) -> Response {
    let mut response = fhir_json(status, resource);
    let meta = resource.get("meta");
    let version_id = meta
        .and_then(|meta| meta.get("versionId"))
        .and_then(Value::as_str);
    if let Some(etag) =
        version_id.and_then(|version| HeaderValue::from_str(&format!("W/\"{version}\"")).ok())
    {
        response.headers_mut().insert(header::ETAG, etag);
    }
    let last_modified = meta
        .and_then(|meta| meta.get("lastUpdated"))
        .and_then(Value::as_str)
        .and_then(http_date)
        .and_then(|date| HeaderValue::from_str(&date).ok());
    if let Some(last_modified) = last_modified {
        response
            .headers_mut()
            .insert(header::LAST_MODIFIED, last_modified);
    }
    response
}

/// Marks a response that shows a client secret as not cacheable anywhere.
pub(crate) fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Parses the version id from an `If-Match` header: `W/"<versionId>"`, `"<versionId>"` or the
/// bare id. `*` matches any version, so it is no condition. A header that is not text can
/// match no version.
fn if_match(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::IF_MATCH)?;
    let Ok(value) = value.to_str() else {
        return Some(String::new());
    };
    let value = value.trim();
    if value == "*" {
        return None;
    }
    let value = value.strip_prefix("W/").unwrap_or(value);
    Some(value.trim_matches('"').to_string())
}

async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    FhirPath(resource_type): FhirPath<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, OutcomeError> {
    // If-None-Exist makes the create conditional (FHIR R4 "RESTful API", conditional create).
    if let Some(condition) = headers.get("if-none-exist") {
        let condition = condition.to_str().map_err(|_| {
            ServiceError::invalid("The If-None-Exist header must be a URL query string")
        })?;
        let condition = parse_condition(condition)?;
        let written = state
            .services
            .fhir_conditional_create(&caller, &resource_type, body, &condition)
            .await?;
        return Ok(conditional_response(&state, &resource_type, written));
    }

    let resource = state
        .services
        .fhir_create(&caller, &resource_type, body)
        .await?;
    Ok(created_response(&state, &resource_type, &resource))
}

/// Builds the 201 response of a create, with `Location`.
fn created_response(state: &AppState, resource_type: &str, resource: &Value) -> Response {
    let id = resource
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let location = state
        .services
        .config
        .url(&format!("fhir/R4/{resource_type}/{id}"));
    let mut response = resource_response(StatusCode::CREATED, resource);
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if resource.get("secret").is_some() {
        response = no_store(response);
    }
    response
}

/// Builds the response of a conditional create or update: 201 when it created the resource,
/// 200 otherwise.
fn conditional_response(
    state: &AppState,
    resource_type: &str,
    written: ConditionalWrite,
) -> Response {
    if written.created {
        created_response(state, resource_type, &written.resource)
    } else {
        resource_response(StatusCode::OK, &written.resource)
    }
}

async fn search(
    State(state): State<AppState>,
    Caller(caller): Caller,
    FhirPath(resource_type): FhirPath<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, OutcomeError> {
    let pairs = query_pairs(query.as_deref());
    let bundle = state
        .services
        .fhir_search(&caller, &resource_type, &pairs)
        .await?;
    Ok(fhir_json(StatusCode::OK, &bundle))
}

async fn read(
    State(state): State<AppState>,
    Caller(caller): Caller,
    FhirPath((resource_type, id)): FhirPath<(String, String)>,
) -> Result<Response, OutcomeError> {
    let resource = state
        .services
        .fhir_read(&caller, &resource_type, &id)
        .await?;
    Ok(resource_response(StatusCode::OK, &resource))
}

async fn vread(
    State(state): State<AppState>,
    Caller(caller): Caller,
    FhirPath((resource_type, id, version_id)): FhirPath<(String, String, String)>,
) -> Result<Response, OutcomeError> {
    let resource = state
        .services
        .fhir_vread(&caller, &resource_type, &id, &version_id)
        .await?;
    Ok(resource_response(StatusCode::OK, &resource))
}

async fn history(
    State(state): State<AppState>,
    Caller(caller): Caller,
    FhirPath((resource_type, id)): FhirPath<(String, String)>,
) -> Result<Response, OutcomeError> {
    let bundle = state
        .services
        .fhir_history(&caller, &resource_type, &id)
        .await?;
    Ok(fhir_json(StatusCode::OK, &bundle))
}

async fn update(
    State(state): State<AppState>,
    Caller(caller): Caller,
    FhirPath((resource_type, id)): FhirPath<(String, String)>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, OutcomeError> {
    let expected_version = if_match(&headers);
    let resource = state
        .services
        .fhir_update(
            &caller,
            &resource_type,
            &id,
            body,
            expected_version.as_deref(),
        )
        .await?;
    Ok(resource_response(StatusCode::OK, &resource))
}

async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    FhirPath((resource_type, id)): FhirPath<(String, String)>,
) -> Result<Response, OutcomeError> {
    state
        .services
        .fhir_delete(&caller, &resource_type, &id)
        .await?;
    Ok(fhir_json(StatusCode::OK, &OperationOutcome::all_ok()))
}

/// Decodes a URL query string; form decoding turns `+` into a space, as MedplumClient
/// encodes spaces.
fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// Returns the media type of a request without its parameters, lower-cased.
fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn unsupported_media_type(message: &str) -> Response {
    fhir_json(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        &OperationOutcome::bad_request(message, None),
    )
}

/// `POST /fhir/R4/{type}/_search`: search with the parameters in an
/// `application/x-www-form-urlencoded` body, and any in the URL, with the same result as
/// `GET /fhir/R4/{type}?…` (FHIR R4 "Search").
async fn search_form(
    State(state): State<AppState>,
    Caller(caller): Caller,
    FhirPath(resource_type): FhirPath<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OutcomeError> {
    if !body.is_empty() && media_type(&headers) != "application/x-www-form-urlencoded" {
        return Ok(unsupported_media_type(
            "Content-Type must be application/x-www-form-urlencoded",
        ));
    }
    let mut pairs = query_pairs(query.as_deref());
    pairs.extend(url::form_urlencoded::parse(&body).into_owned());
    let bundle = state
        .services
        .fhir_search(&caller, &resource_type, &pairs)
        .await?;
    Ok(fhir_json(StatusCode::OK, &bundle))
}

/// `PATCH /fhir/R4/{type}/{id}` with a JSON Patch document (RFC 6902).
async fn patch(
    State(state): State<AppState>,
    Caller(caller): Caller,
    FhirPath((resource_type, id)): FhirPath<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OutcomeError> {
    if media_type(&headers) != "application/json-patch+json" {
        return Ok(unsupported_media_type(
            "Content-Type must be application/json-patch+json",
        ));
    }
    let document: Value = parse_json(&body)?;
    let expected_version = if_match(&headers);
    let resource = state
        .services
        .fhir_patch(
            &caller,
            &resource_type,
            &id,
            &document,
            expected_version.as_deref(),
        )
        .await?;
    Ok(resource_response(StatusCode::OK, &resource))
}

/// `PUT /fhir/R4/{type}?[search parameters]`: conditional update.
async fn conditional_update(
    State(state): State<AppState>,
    Caller(caller): Caller,
    FhirPath(resource_type): FhirPath<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, OutcomeError> {
    let condition = parse_condition(query.as_deref().unwrap_or_default())?;
    let expected_version = if_match(&headers);
    let written = state
        .services
        .fhir_conditional_update(
            &caller,
            &resource_type,
            body,
            &condition,
            expected_version.as_deref(),
        )
        .await?;
    Ok(conditional_response(&state, &resource_type, written))
}

/// `DELETE /fhir/R4/{type}?[search parameters]`: conditional delete of a single match.
async fn conditional_delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    FhirPath(resource_type): FhirPath<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, OutcomeError> {
    let condition = parse_condition(query.as_deref().unwrap_or_default())?;
    state
        .services
        .fhir_conditional_delete(&caller, &resource_type, &condition)
        .await?;
    Ok(fhir_json(StatusCode::OK, &OperationOutcome::all_ok()))
}

/// `POST /fhir/R4/` with a batch or transaction Bundle.
async fn bundle(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, OutcomeError> {
    let response = state.services.fhir_bundle(&caller, body).await?;
    let shows_secret = response
        .get("entry")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|entry| entry.pointer("/resource/secret").is_some());
    let response = fhir_json(StatusCode::OK, &response);
    Ok(if shows_secret {
        no_store(response)
    } else {
        response
    })
}

/// `GET /fhir/R4/metadata`: the CapabilityStatement, without authentication, as FHIR
/// clients read it before they sign in.
async fn metadata(State(state): State<AppState>) -> Response {
    fhir_json(StatusCode::OK, &state.services.fhir_capability_statement())
}

/// `POST /fhir/R4/{type}/{id}/${operation}`: `ClientApplication/$rotate-secret` and
/// `User/$update-email`.
async fn operation(
    State(state): State<AppState>,
    Caller(caller): Caller,
    FhirPath((resource_type, id, operation)): FhirPath<(String, String, String)>,
    OptionalJsonBody(body): OptionalJsonBody,
) -> Result<Response, OutcomeError> {
    match (resource_type.as_str(), operation.as_str()) {
        ("User", "$update-email") => {
            let body = body.unwrap_or_default();
            let user = state.services.update_user_email(&caller, &id, body).await?;
            Ok(resource_response(StatusCode::OK, &user))
        }
        ("ClientApplication", "$rotate-secret") => {
            let client = state
                .services
                .fhir_rotate_secret(&caller, &id, body)
                .await?;
            Ok(no_store(resource_response(StatusCode::OK, &client)))
        }
        _ => Err(ServiceError::invalid(format!(
            "Unsupported operation {operation} on {resource_type}"
        ))
        .into()),
    }
}

/// `POST /fhir/R4/{type}/${operation}`; only `Project/$init` exists, for super admins.
/// A POST to a resource id is not a FHIR interaction, so it gets 405.
async fn type_operation(
    State(state): State<AppState>,
    Caller(caller): Caller,
    FhirPath((resource_type, operation)): FhirPath<(String, String)>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, OutcomeError> {
    if !operation.starts_with('$') {
        return Ok(fhir_json(
            StatusCode::METHOD_NOT_ALLOWED,
            &OperationOutcome::bad_request("Method not allowed", None),
        ));
    }
    match (resource_type.as_str(), operation.as_str()) {
        ("Project", "$init") => {
            let project = state.services.project_init(&caller, body).await?;
            Ok(created_response(&state, "Project", &project))
        }
        _ => Err(ServiceError::invalid(format!(
            "Unsupported operation {operation} on {resource_type}"
        ))
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_date_is_imf_fixdate() {
        assert_eq!(
            http_date("2026-12-04T12:00:00.000Z").as_deref(),
            Some("Fri, 04 Dec 2026 12:00:00 GMT")
        );
        assert_eq!(http_date("yesterday"), None);
    }

    #[test]
    fn if_match_forms() {
        let mut headers = HeaderMap::new();
        assert_eq!(if_match(&headers), None);
        for (value, expected) in [
            ("W/\"v1\"", Some("v1")),
            ("\"v1\"", Some("v1")),
            ("v1", Some("v1")),
            ("*", None),
        ] {
            headers.insert(header::IF_MATCH, HeaderValue::from_static(value));
            assert_eq!(if_match(&headers).as_deref(), expected, "{value}");
        }
    }
}
