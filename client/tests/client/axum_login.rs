//! The axum example, driven end to end over HTTP: two browsers (cookie jars) log in as the same
//! user, use the protected route, list their devices, log the other device out, and log out;
//! their `/events` streams tell of the other device's logout and close at their own.

#[allow(dead_code)] // `main` is the example's, never called here.
#[path = "../../examples/axum_login.rs"]
mod example;

use std::net::SocketAddr;

use reqwest::StatusCode;
use serde_json::{json, Value};
use sessiond_tests::TestServer;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::connect;

/// The example app on `127.0.0.1:0`, stopped gracefully on drop.
struct App {
    base: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl App {
    async fn start(store: SocketAddr, secure_cookies: bool) -> App {
        let client = connect(store).await;
        let state = example::AppState::demo(client, secure_cookies);
        state.watch_session_events().await.unwrap();
        let app = example::app(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        App {
            base,
            stop: Some(stop),
            task: Some(task),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap()
}

async fn login(
    app: &App,
    browser: &reqwest::Client,
    user: &str,
    password: &str,
) -> reqwest::Response {
    browser
        .post(app.url("/login"))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn me(app: &App, browser: &reqwest::Client) -> StatusCode {
    browser.get(app.url("/me")).send().await.unwrap().status()
}

/// The `sid` cookie a response set, with its attributes.
fn set_cookie(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .expect("a Set-Cookie header")
        .to_str()
        .unwrap()
        .to_owned()
}

fn sid(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .and_then(|pair| pair.strip_prefix("sid="))
        .unwrap()
        .to_owned()
}

/// A request carrying exactly this cookie, as an attacker replaying it would send it.
async fn me_with(app: &App, sid: &str) -> StatusCode {
    reqwest::Client::new()
        .get(app.url("/me"))
        .header(reqwest::header::COOKIE, format!("sid={sid}"))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn login_protected_route_devices_and_logout() {
    let server = TestServer::start();
    let app = App::start(server.addr, false).await;
    let (laptop, phone) = (browser(), browser());

    // Not logged in: 401, and a wrong password does not log in.
    assert_eq!(me(&app, &laptop).await, StatusCode::UNAUTHORIZED);
    let refused = login(&app, &laptop, "ada", "wrong").await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.headers().get(reqwest::header::SET_COOKIE).is_none());
    assert_eq!(
        login(&app, &laptop, "eve", "lovelace-1815").await.status(),
        StatusCode::UNAUTHORIZED
    );

    // Login on the laptop: a cookie scripts cannot read, sent back on the protected route.
    let response = login(&app, &laptop, "ada", "lovelace-1815").await;
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = set_cookie(&response);
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP on localhost: {cookie}"
    );
    let first_sid = sid(&cookie);
    let body: Value = laptop
        .get(app.url("/me"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body, json!({"user": "ada"}));

    // Logging in again regenerates: a new ID, and the earlier one is dead.
    let response = login(&app, &laptop, "ada", "lovelace-1815").await;
    let laptop_sid = sid(&set_cookie(&response));
    assert_ne!(laptop_sid, first_sid);
    assert_eq!(me_with(&app, &first_sid).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me(&app, &laptop).await, StatusCode::OK);

    // The phone logs in too; each browser sees two devices, itself the current one.
    assert_eq!(
        login(&app, &phone, "ada", "lovelace-1815").await.status(),
        StatusCode::OK
    );
    assert_eq!(me(&app, &phone).await, StatusCode::OK);
    let devices: Vec<Value> = laptop
        .get(app.url("/sessions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(devices.len(), 2);
    assert_eq!(devices.iter().filter(|d| d["current"] == true).count(), 1);
    assert!(
        devices.iter().all(|d| d.get("id").is_none()),
        "IDs are credentials: {devices:?}"
    );
    assert!(!serde_json::to_string(&devices)
        .unwrap()
        .contains(&laptop_sid));

    // "Log out my other devices" from the laptop: the phone is out, the laptop stays in.
    let ended: Value = laptop
        .post(app.url("/logout-others"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ended, json!({"ended": 1}));
    assert_eq!(me(&app, &phone).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me(&app, &laptop).await, StatusCode::OK);
    let devices: Vec<Value> = laptop
        .get(app.url("/sessions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(
        phone
            .get(app.url("/sessions"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        phone
            .post(app.url("/logout-others"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );

    // Logout: the cookie is cleared and the session is gone on the server, so a copy of the
    // cookie (say, stolen earlier) is worthless too.
    let response = laptop.post(app.url("/logout")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(set_cookie(&response).contains("Max-Age=0"));
    assert_eq!(me(&app, &laptop).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me_with(&app, &laptop_sid).await, StatusCode::UNAUTHORIZED);
    assert_eq!(server.stored_keys(), 0, "no session left behind");

    app.stop().await;
}

#[tokio::test]
async fn another_users_earlier_session_is_ended_not_inherited() {
    let server = TestServer::start();
    let app = App::start(server.addr, false).await;
    let shared_computer = browser();
    let ada = sid(&set_cookie(
        &login(&app, &shared_computer, "ada", "lovelace-1815").await,
    ));
    let response = login(&app, &shared_computer, "alan", "turing-1912").await;
    let alan = sid(&set_cookie(&response));
    let body: Value = shared_computer
        .get(app.url("/me"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body, json!({"user": "alan"}));
    assert_eq!(me_with(&app, &ada).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me_with(&app, &alan).await, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn cookies_are_secure_off_localhost() {
    let server = TestServer::start();
    let app = App::start(server.addr, true).await;
    let response = login(&app, &browser(), "ada", "lovelace-1815").await;
    let cookie = set_cookie(&response);
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    app.stop().await;
}

/// Reads the server-sent events of `response` until they hold `text`; all read so far.
async fn read_until(response: &mut reqwest::Response, text: &str) -> String {
    let mut read = String::new();
    while !read.contains(text) {
        let chunk = response.chunk().await.unwrap();
        let chunk = chunk.unwrap_or_else(|| panic!("the stream ended before {text:?}: {read:?}"));
        read.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    read
}

#[tokio::test]
async fn events_tell_of_other_devices_and_close_when_the_session_ends() {
    let server = TestServer::start();
    let mut admin = server.raw();
    admin.command(&[b"CONFIG", b"SET", b"notify-keyspace-events", b"S"]);
    assert_eq!(admin.reply(), sessiond_protocol::Frame::simple("OK"));
    let app = App::start(server.addr, false).await;
    let (laptop, phone) = (browser(), browser());
    login(&app, &laptop, "ada", "lovelace-1815").await;
    let phone_sid = sid(&set_cookie(
        &login(&app, &phone, "ada", "lovelace-1815").await,
    ));
    let anonymous = browser().get(app.url("/events")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    // Both streams are open (their headers are in) before the phone's session ends.
    let mut on_laptop = laptop.get(app.url("/events")).send().await.unwrap();
    let mut on_phone = phone.get(app.url("/events")).send().await.unwrap();
    for response in [&on_laptop, &on_phone] {
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[reqwest::header::CONTENT_TYPE],
            "text/event-stream"
        );
    }
    // The phone's session ends on the server (an operator's logout): the server announces it.
    let mut admin = server.raw();
    admin.command(&[b"SESSION.DESTROY", phone_sid.as_bytes()]);
    assert_eq!(admin.reply(), sessiond_protocol::Frame::Integer(1));
    // The phone is told, and its stream closes; the laptop hears of another device.
    read_until(&mut on_phone, "event: logged-out").await;
    assert_eq!(on_phone.chunk().await.unwrap(), None, "the stream closed");
    let laptop_events = read_until(&mut on_laptop, "event: device-logged-out").await;
    assert!(!laptop_events.contains(&phone_sid), "IDs are credentials");
    drop(on_laptop);
    app.stop().await;
}
