//! Guessing and abuse: the per-account lockout of password checks, shared by parallel
//! requests, and the per-client rate limit of `/auth/*` and `/oauth2/*`.

mod common;

use chrono::Duration;
use common::{CHALLENGE, Member, TestServer};
use medgate_fhir::resources::ClientApplication;
use medgate_service::repo::WriteContext;
use serde_json::{Value, json};

const WRONG_PASSWORD: &str = "not-the-Password-42";
const INVALID_TEXT: &str = "Email or password is invalid";

fn text(body: &Value) -> &str {
    body["issue"][0]["details"]["text"]
        .as_str()
        .unwrap_or_default()
}

async fn sign_in(server: &TestServer, email: &str, password: &str) -> (u16, Value) {
    let response = server
        .post_json(
            "auth/login",
            json!({"email": email, "password": password,
                "codeChallenge": CHALLENGE, "codeChallengeMethod": "S256"}),
        )
        .await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Sends `count` wrong passwords one after another and asserts each is checked and refused.
async fn fail_sign_ins(server: &TestServer, member: &Member, count: usize) {
    for attempt in 1..=count {
        let (status, body) = sign_in(server, &member.email, WRONG_PASSWORD).await;
        assert_eq!(status, 400, "attempt {attempt}: {body}");
        assert_eq!(text(&body), INVALID_TEXT, "attempt {attempt}");
    }
}

/// Asserts that the right password is refused because the account is locked, and returns the
/// `Retry-After` seconds.
async fn assert_locked(server: &TestServer, member: &Member) -> u64 {
    let response = server
        .post_json(
            "auth/login",
            json!({"email": member.email, "password": member.password,
                "codeChallenge": CHALLENGE, "codeChallengeMethod": "S256"}),
        )
        .await;
    assert_eq!(
        response.status(),
        429,
        "a locked account refuses the right password"
    );
    let retry_after = response
        .headers()
        .get("retry-after")
        .expect("a lock answer carries Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert_eq!(body["issue"][0]["code"], "throttled");
    assert!(
        text(&body).starts_with("Too many failed sign-in attempts"),
        "{body}"
    );
    retry_after
}

async fn assert_signs_in(server: &TestServer, member: &Member) {
    let (status, body) = sign_in(server, &member.email, &member.password).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["code"].is_string(), "{body}");
}

#[tokio::test]
async fn parallel_guesses_capped_at_five() {
    const GUESSES: usize = 50;
    let server = TestServer::start().await;
    let member = server.create_member("parallel@example.com", false).await;

    let guesses = (0..GUESSES).map(|_| sign_in(&server, &member.email, WRONG_PASSWORD));
    let answers = futures::future::join_all(guesses).await;

    let checked = answers.iter().filter(|(status, _)| *status == 400).count();
    let locked = answers.iter().filter(|(status, _)| *status == 429).count();
    assert_eq!(
        checked, 5,
        "exactly five passwords are checked before the lock"
    );
    assert_eq!(
        locked,
        GUESSES - 5,
        "every other guess is refused unchecked"
    );
    for (status, body) in &answers {
        if *status == 400 {
            assert_eq!(text(body), INVALID_TEXT);
        }
    }

    assert_locked(&server, &member).await;
    server.clock.advance(Duration::minutes(1));
    assert_signs_in(&server, &member).await;
}

#[tokio::test]
async fn lock_ends_after_one_minute() {
    let server = TestServer::start().await;
    let member = server.create_member("expiry@example.com", false).await;
    fail_sign_ins(&server, &member, 5).await;

    assert_eq!(assert_locked(&server, &member).await, 60);
    server.clock.advance(Duration::seconds(59));
    assert_eq!(assert_locked(&server, &member).await, 1);
    server.clock.advance(Duration::seconds(1));
    assert_signs_in(&server, &member).await;
}

#[tokio::test]
async fn lock_length_doubles() {
    let server = TestServer::start().await;
    let member = server.create_member("doubling@example.com", false).await;
    for (round, seconds) in [(1, 60), (2, 120), (3, 240)] {
        fail_sign_ins(&server, &member, 5).await;
        assert_eq!(
            assert_locked(&server, &member).await,
            seconds,
            "lock {round} lasts {seconds} s"
        );
        server.clock.advance(Duration::seconds(seconds as i64));
    }

    // A success resets the level: the next lock is a first lock again.
    assert_signs_in(&server, &member).await;
    fail_sign_ins(&server, &member, 5).await;
    assert_eq!(assert_locked(&server, &member).await, 60);
}

#[tokio::test]
async fn success_clears_failed_attempts() {
    let server = TestServer::start().await;
    let member = server.create_member("clears@example.com", false).await;
    fail_sign_ins(&server, &member, 4).await;
    assert_signs_in(&server, &member).await;
    fail_sign_ins(&server, &member, 4).await;
    assert_signs_in(&server, &member).await;
}

#[tokio::test]
async fn unknown_email_never_locks() {
    let server = TestServer::start().await;
    for attempt in 1..=8 {
        let (status, body) = sign_in(&server, "nobody@example.com", WRONG_PASSWORD).await;
        assert_eq!(status, 400, "attempt {attempt}: {body}");
        assert_eq!(text(&body), INVALID_TEXT, "attempt {attempt}");
    }
}

#[tokio::test]
async fn lock_applies_per_account() {
    let server = TestServer::start().await;
    let locked = server.create_member("locked@example.com", false).await;
    let other = server.create_member("other@example.com", false).await;
    fail_sign_ins(&server, &locked, 5).await;
    assert_locked(&server, &locked).await;
    assert_signs_in(&server, &other).await;
}

#[tokio::test]
async fn configured_attempts_apply() {
    let server = TestServer::start_with(|config| config.lockout.max_attempts = 2).await;
    let member = server.create_member("two@example.com", false).await;
    fail_sign_ins(&server, &member, 2).await;
    assert_locked(&server, &member).await;
}

#[tokio::test]
async fn change_password_shares_lock() {
    let server = TestServer::start().await;
    let member = server.create_member("change@example.com", false).await;
    let tokens = server.member_tokens(&member, "openid").await;
    let access_token = tokens["access_token"].as_str().unwrap();
    let change = |old: &str| {
        server
            .http
            .post(server.url("auth/changepassword"))
            .bearer_auth(access_token)
            .json(&json!({"oldPassword": old, "newPassword": "fresh-Meadow-58-cobalt"}))
            .send()
    };

    for attempt in 1..=5 {
        let response = change(WRONG_PASSWORD).await.unwrap();
        assert_eq!(response.status(), 400, "attempt {attempt}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(text(&body), "Incorrect password", "attempt {attempt}");
    }
    let response = change(&member.password).await.unwrap();
    assert_eq!(
        response.status(),
        429,
        "the right old password waits for the lock"
    );
    assert_locked(&server, &member).await;

    server.clock.advance(Duration::minutes(1));
    let response = change(&member.password).await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn sign_in_page_shows_lock() {
    const REDIRECT: &str = "https://app.example.com/cb";
    let server = TestServer::start().await;
    let member = server.create_member("page-lock@example.com", false).await;
    let client = ClientApplication {
        redirect_uris: vec![REDIRECT.into()],
        ..Default::default()
    };
    let client_id = server
        .services
        .create_client(client, &WriteContext::system(Some(&member.project_id)))
        .await
        .unwrap()
        .client
        .id;
    let form = |password: &str| {
        vec![
            ("response_type", "code".to_string()),
            ("client_id", client_id.clone()),
            ("redirect_uri", REDIRECT.to_string()),
            ("scope", "openid".to_string()),
            ("code_challenge", CHALLENGE.to_string()),
            ("code_challenge_method", "S256".to_string()),
            ("email", member.email.clone()),
            ("password", password.to_string()),
        ]
    };

    for attempt in 1..=5 {
        let response = server
            .http
            .post(server.url("oauth2/authorize/login"))
            .form(&form(WRONG_PASSWORD))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "attempt {attempt}");
    }
    let response = server
        .http
        .post(server.url("oauth2/authorize/login"))
        .form(&form(&member.password))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let html = response.text().await.unwrap();
    assert!(html.contains("Too many failed sign-in attempts"), "{html}");
    assert!(
        html.contains("name=\"password\""),
        "the form stays for a later try"
    );
}

#[tokio::test]
async fn rate_limit_answers_429_with_headers() {
    let server = TestServer::start_with(|config| config.auth_rate_limit = Some(3)).await;

    for remaining in [2, 1, 0] {
        let response = server.post_json("auth/login", json!({})).await;
        assert_eq!(response.status(), 400, "bad input is still answered");
        assert_eq!(
            response.headers()["ratelimit"],
            format!("\"requests\";r={remaining};t=60").as_str()
        );
        assert_eq!(
            response.headers()["ratelimit-policy"],
            "\"requests\";q=3;w=60"
        );
    }

    server.clock.advance(Duration::seconds(15));
    let response = server.post_json("auth/login", json!({})).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["ratelimit"], "\"requests\";r=0;t=45");
    assert_eq!(response.headers()["retry-after"], "45");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], "too-many-requests");
    assert_eq!(body["issue"][0]["code"], "throttled");
    assert_eq!(text(&body), "Too Many Requests");
    let diagnostics: Value =
        serde_json::from_str(body["issue"][0]["diagnostics"].as_str().unwrap()).unwrap();
    assert_eq!(diagnostics["limit"], 3);

    // The token endpoint answers in OAuth JSON.
    let response = server
        .post_form("oauth2/token", &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(response.status(), 429);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error_description"], "Too Many Requests");

    // /auth/me and the FHIR API are not counted.
    let response = server.http.get(server.url("auth/me")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.headers().get("ratelimit").is_none());
    let response = server
        .http
        .get(server.url(".well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    server.clock.advance(Duration::seconds(45));
    let response = server.post_json("auth/login", json!({})).await;
    assert_eq!(response.status(), 400, "a new window starts");
    assert_eq!(response.headers()["ratelimit"], "\"requests\";r=2;t=60");
}

#[tokio::test]
async fn rate_limit_counts_forwarded_clients_apart() {
    let server = TestServer::start_with(|config| {
        config.auth_rate_limit = Some(1);
        config.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let from = |client: &'static str| {
        server
            .http
            .post(server.url("auth/login"))
            .header("x-forwarded-for", client)
            .json(&json!({}))
            .send()
    };
    assert_eq!(from("198.51.100.1").await.unwrap().status(), 400);
    assert_eq!(from("198.51.100.1").await.unwrap().status(), 429);
    assert_eq!(from("198.51.100.2").await.unwrap().status(), 400);
}

#[tokio::test]
async fn rate_limit_off_sends_no_header() {
    let server = TestServer::start_with(|config| config.auth_rate_limit = None).await;
    let response = server.post_json("auth/login", json!({})).await;
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("ratelimit").is_none());
}

#[tokio::test]
async fn project_limit_applies_to_its_tokens() {
    use medgate_fhir::resources::Project;

    let server = TestServer::start_with(|config| config.auth_rate_limit = Some(100)).await;
    let access_token = server.admin_access_token().await;
    let mut project: Project = server
        .services
        .repo
        .read(&server.admin_project_id)
        .await
        .unwrap();
    project.extra.insert(
        "systemSetting".to_string(),
        json!([{"name": "authRateLimit", "valueInteger": 4}]),
    );
    server
        .services
        .repo
        .update(&project, &WriteContext::system(None))
        .await
        .unwrap();
    let userinfo = || {
        server
            .http
            .get(server.url("oauth2/userinfo"))
            .bearer_auth(&access_token)
            .send()
    };

    // The sign-in and the code redemption were requests 1 and 2 of this client's window.
    for remaining in [1, 0] {
        let response = userinfo().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["ratelimit"],
            format!("\"requests\";r={remaining};t=60").as_str()
        );
        assert_eq!(
            response.headers()["ratelimit-policy"],
            "\"requests\";q=4;w=60"
        );
    }
    assert_eq!(userinfo().await.unwrap().status(), 429);

    let response = server.post_json("auth/login", json!({})).await;
    assert_eq!(
        response.status(),
        400,
        "without a token the server limit applies"
    );
    assert_eq!(
        response.headers()["ratelimit-policy"],
        "\"requests\";q=100;w=60"
    );
}
