//! `GET|POST /oauth2/userinfo` (OpenID Connect Core 1.0 §5.3).

use axum::Json;
use axum::extract::State;
use serde_json::Value;

use crate::AppState;
use crate::error::OutcomeError;
use crate::extract::Authenticated;

pub async fn userinfo(
    State(state): State<AppState>,
    Authenticated(auth): Authenticated,
) -> Result<Json<Value>, OutcomeError> {
    Ok(Json(state.services.user_info(&auth).await?))
}
