//! The authorization endpoint and medgate's sign-in page, driven like a browser would.

mod common;

use common::{CHALLENGE, Member, TestServer, VERIFIER, claims};
use medgate_fhir::resources::ClientApplication;
use medgate_service::repo::WriteContext;
use serde_json::Value;

const REDIRECT: &str = "https://app.example.com/cb";

async fn client_for(server: &TestServer, member: &Member) -> String {
    let client = ClientApplication {
        name: Some("Chart viewer".into()),
        redirect_uris: vec![REDIRECT.into()],
        ..Default::default()
    };
    let created = server
        .services
        .create_client(client, &WriteContext::system(Some(&member.project_id)))
        .await
        .unwrap();
    created.client.id
}

fn authorize_params<'a>(client_id: &'a str, redirect_uri: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("scope", "openid profile"),
        ("state", "st-1"),
        ("nonce", "nonce-1"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ]
}

async fn get_authorize(server: &TestServer, params: &[(&str, &str)]) -> reqwest::Response {
    server
        .http
        .get(server.url("oauth2/authorize"))
        .query(params)
        .send()
        .await
        .unwrap()
}

fn location(response: &reqwest::Response) -> Option<url::Url> {
    response
        .headers()
        .get("location")
        .map(|value| url::Url::parse(value.to_str().unwrap()).unwrap())
}

fn query_value(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

#[tokio::test]
async fn unknown_client_shows_error_page() {
    let server = TestServer::start().await;
    let response = get_authorize(
        &server,
        &authorize_params("00000000-0000-4000-8000-000000000000", REDIRECT),
    )
    .await;
    assert_eq!(response.status(), 400);
    assert!(location(&response).is_none());
    assert!(response.text().await.unwrap().contains("Client not found"));
}

#[tokio::test]
async fn unregistered_redirect_uris_never_redirect() {
    let server = TestServer::start().await;
    let member = server.create_member("redirects@example.com", false).await;
    let client_id = client_for(&server, &member).await;
    let variants = [
        "https://app.example.com/cb/",
        "https://app.example.com/cb?x=1",
        "https://app.example.com:8443/cb",
        "https:app.example.com/cb",
        "https://app.example.com/CB",
        "not a url",
        "",
    ];
    for redirect_uri in variants {
        let response = get_authorize(&server, &authorize_params(&client_id, redirect_uri)).await;
        assert_eq!(response.status(), 400, "{redirect_uri}");
        assert!(
            location(&response).is_none(),
            "{redirect_uri} must not redirect"
        );
        let page = response.text().await.unwrap();
        assert!(page.contains("redirect URI"), "{redirect_uri}: {page}");
    }
}

#[tokio::test]
async fn later_errors_redirect_with_state() {
    let server = TestServer::start().await;
    let member = server.create_member("later@example.com", false).await;
    let client_id = client_for(&server, &member).await;

    let mut params = authorize_params(&client_id, REDIRECT);
    params[0] = ("response_type", "token");
    let response = get_authorize(&server, &params).await;
    assert_eq!(response.status(), 303);
    let url = location(&response).unwrap();
    assert!(url.as_str().starts_with(REDIRECT));
    assert_eq!(
        query_value(&url, "error").as_deref(),
        Some("unsupported_response_type")
    );
    assert_eq!(query_value(&url, "state").as_deref(), Some("st-1"));

    // A client without pkceOptional must send a challenge.
    let params: Vec<_> = authorize_params(&client_id, REDIRECT)
        .into_iter()
        .filter(|(name, _)| !name.starts_with("code_challenge"))
        .collect();
    let url = location(&get_authorize(&server, &params).await).unwrap();
    assert_eq!(
        query_value(&url, "error").as_deref(),
        Some("invalid_request")
    );
    assert_eq!(
        query_value(&url, "error_description").as_deref(),
        Some("Missing code challenge")
    );

    let mut params = authorize_params(&client_id, REDIRECT);
    params.push(("prompt", "none"));
    let url = location(&get_authorize(&server, &params).await).unwrap();
    assert_eq!(
        query_value(&url, "error").as_deref(),
        Some("login_required")
    );
}

#[tokio::test]
async fn sign_in_page_issues_code() {
    let server = TestServer::start().await;
    let member = server.create_member("page@example.com", false).await;
    let client_id = client_for(&server, &member).await;

    let page = get_authorize(&server, &authorize_params(&client_id, REDIRECT)).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("name=\"password\""));
    assert!(html.contains("Chart viewer"));

    let mut form = authorize_params(&client_id, REDIRECT);
    form.push(("email", &member.email));
    form.push(("password", &member.password));
    let response = server.post_form("oauth2/authorize/login", &form).await;
    assert_eq!(response.status(), 303);
    let url = location(&response).unwrap();
    assert_eq!(query_value(&url, "state").as_deref(), Some("st-1"));
    let code = query_value(&url, "code").expect("redirect carries a code");

    // The code is bound to the redirect URI of the request.
    let response = server
        .post_form(
            "oauth2/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", VERIFIER),
                ("redirect_uri", "https://app.example.com/other"),
            ],
        )
        .await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant", "{body}");

    let code = {
        let response = server.post_form("oauth2/authorize/login", &form).await;
        query_value(&location(&response).unwrap(), "code").unwrap()
    };
    let response = server
        .post_form(
            "oauth2/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", VERIFIER),
                ("redirect_uri", REDIRECT),
                ("client_id", &client_id),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let id_token = claims(body["id_token"].as_str().unwrap());
    assert_eq!(id_token["aud"], client_id.as_str());
    assert_eq!(id_token["nonce"], "nonce-1");
}

#[tokio::test]
async fn wrong_password_stays_on_page() {
    let server = TestServer::start().await;
    let member = server.create_member("wrong@example.com", false).await;
    let client_id = client_for(&server, &member).await;
    let mut form = authorize_params(&client_id, REDIRECT);
    form.push(("email", &member.email));
    form.push(("password", "not-the-password"));
    let response = server.post_form("oauth2/authorize/login", &form).await;
    assert_eq!(response.status(), 400);
    assert!(location(&response).is_none());
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("Email or password is invalid")
    );

    // An unknown account gets the very same answer.
    let mut form = authorize_params(&client_id, REDIRECT);
    form.push(("email", "nobody@example.com"));
    form.push(("password", "not-the-password"));
    let response = server.post_form("oauth2/authorize/login", &form).await;
    assert_eq!(response.status(), 400);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("Email or password is invalid")
    );
}

fn membership_buttons(html: &str) -> Vec<String> {
    html.split("name=\"membership\" value=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn chooser_requires_same_browser() {
    let server = TestServer::start().await;
    let member = server.create_member("chooser@example.com", false).await;
    server
        .add_membership(&member.user_id, &member.project_id, false)
        .await;
    let client_id = client_for(&server, &member).await;

    let mut form = authorize_params(&client_id, REDIRECT);
    form.push(("email", &member.email));
    form.push(("password", &member.password));
    let response = server.post_form("oauth2/authorize/login", &form).await;
    assert_eq!(response.status(), 200);
    let cookie = response
        .headers()
        .get("set-cookie")
        .expect("chooser binds the browser")
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let html = response.text().await.unwrap();
    let choices = membership_buttons(&html);
    assert_eq!(choices.len(), 2);
    assert!(
        html.contains("Project of chooser@example.com"),
        "the chooser names the project"
    );
    assert!(html.contains("Test User"), "the chooser names the profile");
    let login_id = html
        .split("name=\"login\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();

    let mut choose = authorize_params(&client_id, REDIRECT);
    choose.push(("login", &login_id));
    choose.push(("membership", &choices[0]));

    // Without the cookie, another browser cannot finish this sign-in.
    let response = server.post_form("oauth2/authorize/profile", &choose).await;
    assert_eq!(response.status(), 400);
    assert!(location(&response).is_none());

    let response = server
        .http
        .post(server.url("oauth2/authorize/profile"))
        .header("cookie", &cookie)
        .form(&choose)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert!(query_value(&location(&response).unwrap(), "code").is_some());
}
