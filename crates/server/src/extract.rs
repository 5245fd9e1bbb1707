//! Request extractors whose rejections speak the route's error format instead of axum's
//! plain-text defaults.

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use medgate_fhir::OperationOutcome;
use medgate_service::ServiceError;
use medgate_service::access::client_address;
use medgate_service::session::{AuthContext, RequestCredentials};
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::{OAuthError, OutcomeError, fhir_json, unauthorized};

/// The largest request body accepted; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

fn content_type(parts_headers: &axum::http::HeaderMap) -> String {
    parts_headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| {
            value
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

async fn read_body(request: Request, state: &AppState) -> Result<Bytes, Response> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                fhir_json(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &OperationOutcome::payload_too_large("Request body is larger than 1 MB"),
                )
            } else {
                OutcomeError(ServiceError::invalid("Could not read the request body"))
                    .into_response()
            }
        })
}

/// A JSON body sent as `application/json` or `application/fhir+json` (what `@medplum/core`
/// sends). Other media types get 415; malformed JSON and missing fields get 400, each as an
/// OperationOutcome that says what is wrong.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let media_type = content_type(request.headers());
        if media_type != "application/json" && media_type != "application/fhir+json" {
            return Err(fhir_json(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &OperationOutcome::bad_request(
                    "Content-Type must be application/json or application/fhir+json",
                    None,
                ),
            ));
        }
        let bytes = read_body(request, state).await?;
        parse_json(&bytes)
            .map(JsonBody)
            .map_err(IntoResponse::into_response)
    }
}

/// Parses JSON, describing a failure in terms a client developer can act on.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, OutcomeError> {
    serde_json::from_slice(bytes).map_err(|error| {
        let message = match error.classify() {
            serde_json::error::Category::Data => format!("Invalid request body: {error}"),
            _ => format!("Malformed JSON: {error}"),
        };
        OutcomeError(ServiceError::invalid(message))
    })
}

/// An `application/x-www-form-urlencoded` body for the token endpoint; failures are RFC 6749
/// `invalid_request` errors.
pub struct TokenForm<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for TokenForm<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let invalid = |message: &str| {
            OAuthError(medgate_service::ServiceError::oauth(
                medgate_service::OAuthErrorCode::InvalidRequest,
                message,
            ))
            .into_response()
        };
        if content_type(request.headers()) != "application/x-www-form-urlencoded" {
            return Err(invalid("Unsupported content type"));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    (
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "Request body is larger than 1 MB",
                    )
                        .into_response()
                } else {
                    invalid("Could not read the request body")
                }
            })?;
        serde_urlencoded::from_bytes(&bytes)
            .map(TokenForm)
            .map_err(|error| invalid(&format!("Invalid form body: {error}")))
    }
}

/// An HTML form body for the sign-in pages.
pub struct PageForm<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for PageForm<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let invalid = |message: &str| {
            (
                StatusCode::BAD_REQUEST,
                crate::pages::error_page("Invalid request", message),
            )
                .into_response()
        };
        if content_type(request.headers()) != "application/x-www-form-urlencoded" {
            return Err(invalid(
                "The form must be sent as application/x-www-form-urlencoded.",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|_| invalid("The form could not be read or is larger than 1 MB."))?;
        serde_urlencoded::from_bytes(&bytes)
            .map(PageForm)
            .map_err(|error| invalid(&format!("The form is invalid: {error}")))
    }
}

/// The caller of an API route, authenticated by a bearer access token or by a client's
/// `Authorization: Basic` credentials, possibly acting for another member through
/// `X-Medplum-On-Behalf-Of`. The caller's access policy, IP rules included, is computed here.
pub struct Authenticated(pub AuthContext);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|value| value.to_str().ok())
        };
        let credentials = RequestCredentials {
            authorization: header(header::AUTHORIZATION.as_str()),
            on_behalf_of: header("x-medplum-on-behalf-of"),
            client_address: client_address_of(parts, state),
        };
        match state.services.authenticate_request(credentials).await {
            Ok(context) => Ok(Self(context)),
            Err(ServiceError::Unauthorized) => Err(unauthorized()),
            Err(error) => Err(OutcomeError(error).into_response()),
        }
    }
}

/// The client's address: the socket peer, or, when the peer is a trusted proxy, the
/// right-most `X-Forwarded-For` entry that is not a trusted proxy (RFC 7239 §5.2 describes
/// the same chain for `Forwarded`).
fn client_address_of(parts: &Parts, state: &AppState) -> Option<IpAddr> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip())?;
    let forwarded_for: Vec<&str> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect();
    Some(client_address(
        peer,
        &forwarded_for,
        &state.services.config.trusted_proxies,
    ))
}

/// The caller's network address and user agent, recorded on Logins.
pub struct ClientInfo {
    pub address: Option<String>,
    pub user_agent: Option<String>,
}

impl FromRequestParts<AppState> for ClientInfo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let address = client_address_of(parts, state).map(|address| address.to_string());
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|value| value.to_str().ok())
            .map(|value| value.chars().take(512).collect());
        Ok(Self {
            address,
            user_agent,
        })
    }
}
