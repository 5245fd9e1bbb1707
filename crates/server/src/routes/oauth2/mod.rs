//! OAuth 2.0 and OpenID Connect endpoints under `/oauth2`.

mod authorize;
mod authorize_mfa;
mod logout;
mod token;
mod userinfo;

use axum::Router;
use axum::routing::{get, post};

use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/oauth2/authorize",
            get(authorize::authorize_get).post(authorize::authorize_post),
        )
        .route("/oauth2/authorize/login", post(authorize::sign_in))
        .route("/oauth2/authorize/profile", post(authorize::choose_profile))
        .route("/oauth2/authorize/mfa", post(authorize_mfa::verify))
        .route("/oauth2/token", post(token::token))
        .route(
            "/oauth2/userinfo",
            get(userinfo::userinfo).post(userinfo::userinfo),
        )
        .route("/oauth2/logout", get(logout::logout).post(logout::logout))
}
