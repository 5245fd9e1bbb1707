//! Client credentials grant (RFC 6749 §4.4): a ClientApplication signs in as itself, through
//! its own ProjectMembership.

use medgate_fhir::resources::{Login, ProjectMembership, TypedResource};
use medgate_fhir::search::SearchRequest;
use tracing::info;

use super::{TokenRequest, invalid_client, invalid_request};
use crate::Services;
use crate::clock::fhir_instant;
use crate::error::ServiceResult;
use crate::repo::WriteContext;
use crate::tokens::{Grant, TokenResponse};

impl Services {
    pub(super) async fn client_credentials_grant(
        &self,
        request: TokenRequest,
    ) -> ServiceResult<TokenResponse> {
        // credentials: both parts are required for this grant.
        let Some(credentials) = request
            .credentials
            .filter(|credentials| !credentials.client_id.is_empty())
        else {
            return Err(invalid_request("Missing client_id"));
        };
        if !credentials.has_secret() {
            return Err(invalid_request("Missing client_secret"));
        }
        let client = self.authenticate_client(&credentials).await?;

        // membership: the client acts inside the project where it is a member.
        let membership_request =
            SearchRequest::new("ProjectMembership").filter("user", &client.reference().reference);
        let membership: ProjectMembership = self
            .repo
            .search_one(membership_request)
            .await?
            .ok_or_else(|| invalid_client("Invalid client"))?;
        if !membership.is_active() {
            return Err(invalid_client("Invalid client"));
        }
        self.check_grant_ip(&membership, request.remote_address.as_deref())
            .await?;

        let login = Login {
            user: client.reference(),
            client: Some(client.reference()),
            membership: Some(membership.reference()),
            scope: request
                .scope
                .filter(|scope| !scope.is_empty())
                .unwrap_or_else(|| "openid".to_string()),
            auth_method: "client".to_string(),
            auth_time: fhir_instant(self.now()),
            granted: Some(true),
            client_authenticated: Some(true),
            remote_address: request.remote_address,
            user_agent: request.user_agent,
            ..Default::default()
        };
        let login = self
            .repo
            .create(&login, &WriteContext::system(None))
            .await?;
        info!(login_id = %login.id, client_id = %client.id, "client signed in with client credentials");
        self.issue_tokens(Grant {
            login: &login,
            membership: &membership,
            client: Some(&client),
            refresh_secret: None,
        })
        .await
    }
}
