//! A login with shared, expiring, revocable sessions: axum and sessiond-client.
//!
//! ```sh
//! cargo run --release -p sessiond &                      # the session store, on :6380
//! cargo run -p sessiond-client --example axum_login      # this app, on 127.0.0.1:3000
//!
//! curl -i -c jar -b jar -H 'content-type: application/json' \
//!      -d '{"username":"ada","password":"lovelace-1815"}' http://127.0.0.1:3000/login
//! curl -b jar http://127.0.0.1:3000/me                   # {"user":"ada"}
//! curl -b jar http://127.0.0.1:3000/sessions             # this browser and the others
//! curl -b jar -N http://127.0.0.1:3000/events           # leave it open in a second terminal
//! curl -b jar -X POST http://127.0.0.1:3000/logout-others
//! curl -b jar -X POST http://127.0.0.1:3000/logout
//! ```
//!
//! `SESSIOND_URL` (default `sessiond://127.0.0.1:6380`) and `LISTEN` (default
//! `127.0.0.1:3000`) change the two addresses.
//!
//! The session ID lives in a cookie `sid` that scripts cannot read (`HttpOnly`), that other
//! sites' forms do not send (`SameSite=Lax`), and that travels only over HTTPS (`Secure`)
//! unless the app listens on a loopback address, where browsers test over plain HTTP. The
//! server makes the ID, enforces the idle and absolute timeouts, and forgets the session on
//! logout: a stolen cookie stops working the moment its owner logs out anywhere.
//!
//! `/events` is a stream of server-sent events for the logged-in browser, driven by the store's
//! session events (start sessiond with `--notify-keyspace-events S`): `device-logged-out` when
//! another session of the same user ends ("your other devices were logged out"), and
//! `logged-out` when this one ends, by logout on another device or by timeout, after which the
//! app closes the stream, as it would close the session's websockets.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use sessiond_client::{Client, NewSession, SessionEvent, SessionId};
use tokio::sync::broadcast;

/// The cookie holding the session ID.
pub const COOKIE: &str = "sid";

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The session store.
    pub client: Client,
    /// Whether cookies get the `Secure` attribute (everywhere but on localhost).
    pub secure_cookies: bool,
    /// User name to password. A real app keeps salted password hashes (argon2) in a database.
    pub users: Arc<HashMap<String, String>>,
    /// The store's session events, fanned out to every open `/events` stream.
    pub session_events: broadcast::Sender<SessionEvent>,
}

impl AppState {
    /// The demo users: `ada` / `lovelace-1815` and `alan` / `turing-1912`.
    pub fn demo(client: Client, secure_cookies: bool) -> AppState {
        let users = [("ada", "lovelace-1815"), ("alan", "turing-1912")]
            .into_iter()
            .map(|(user, password)| (user.to_owned(), password.to_owned()))
            .collect();
        AppState {
            client,
            secure_cookies,
            users: Arc::new(users),
            session_events: broadcast::channel(256).0,
        }
    }

    /// Subscribes to the store's session events (one connection per store node for the whole
    /// app) and forwards them to the `/events` streams; returns once subscribed. The
    /// subscription does not reconnect by itself: when it drops, this subscribes again, once a
    /// second until it works (events in between are lost, as pub/sub's always are).
    pub async fn watch_session_events(&self) -> sessiond_client::Result<()> {
        let mut events = self.client.sessions().events().await?;
        let (client, sender) = (self.client.clone(), self.session_events.clone());
        tokio::spawn(async move {
            loop {
                while let Some(event) = events.next().await {
                    match event {
                        // No `/events` stream open: nobody to tell.
                        Ok(event) => drop(sender.send(event)),
                        Err(error) => eprintln!("session events: {error}"),
                    }
                }
                events = loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    match client.sessions().events().await {
                        Ok(events) => break events,
                        Err(error) => eprintln!("session events: {error}"),
                    }
                };
            }
        });
        Ok(())
    }
}

/// The routes.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/logout", post(logout))
        .route("/logout-others", post(logout_others))
        .route("/sessions", get(sessions))
        .route("/events", get(events))
        .with_state(state)
}

#[allow(dead_code)] // The tests use `app` and never run `main`.
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("SESSIOND_URL").unwrap_or_else(|_| "sessiond://127.0.0.1:6380".into());
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let client = Client::connect(&url).await?;
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let addr = listener.local_addr()?;
    let state = AppState::demo(client, !addr.ip().is_loopback());
    state.watch_session_events().await?;
    println!("listening on http://{addr}");
    axum::serve(listener, app(state)).await?;
    Ok(())
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

#[derive(Serialize)]
struct Me {
    user: String,
}

#[derive(Serialize)]
struct Device {
    current: bool,
    created_at_ms: u128,
    last_access_ms: u128,
    expires_at_ms: u128,
}

/// Every failure the handlers answer: 401 for no live session, 503 when the store is down.
enum AppError {
    Unauthorized,
    Store(sessiond_client::Error),
}

impl From<sessiond_client::Error> for AppError {
    fn from(error: sessiond_client::Error) -> AppError {
        AppError::Store(error)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match self {
            AppError::Unauthorized => (StatusCode::UNAUTHORIZED, "log in first\n").into_response(),
            AppError::Store(error) => {
                // The details are for the operator's log, not for the visitor.
                eprintln!("session store: {error}");
                (StatusCode::SERVICE_UNAVAILABLE, "try again later\n").into_response()
            }
        }
    }
}

/// Checks the credentials, then creates the session: an earlier session of this browser (an
/// anonymous one, or the same user's) moves to a new ID so that an ID planted before login is
/// worthless; another user's earlier session is ended instead of inherited.
async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(credentials): Json<Credentials>,
) -> Result<Response, AppError> {
    let known = state
        .users
        .get(&credentials.username)
        .is_some_and(|password| same(password.as_bytes(), credentials.password.as_bytes()));
    if !known {
        return Ok((StatusCode::UNAUTHORIZED, "wrong user name or password\n").into_response());
    }
    let user = credentials.username;
    let sessions = state.client.sessions();
    let mut id = None;
    if let Some(earlier) = session_cookie(&headers) {
        match sessions.info(&earlier).await? {
            Some(info) if info.user.is_none() || info.user.as_deref() == Some(user.as_str()) => {
                id = sessions.regenerate_for_user(&earlier, &user).await?;
            }
            Some(_) => {
                sessions.destroy(&earlier).await?;
            }
            None => {}
        }
    }
    let id = match id {
        Some(id) => {
            sessions.set(&id, [("user", user.as_str())]).await?;
            id
        }
        None => {
            sessions
                .create(NewSession::default().user(&user).field("user", &user))
                .await?
        }
    };
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax{}",
        if state.secure_cookies { "; Secure" } else { "" }
    );
    Ok((set_cookie(&cookie), Json(Me { user })).into_response())
}

/// The protected route: 401 without a live session.
async fn me(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Me>, AppError> {
    let (_, user) = current(&state, &headers).await?;
    Ok(Json(Me { user }))
}

/// Ends this session (if any) and clears the cookie.
async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, AppError> {
    if let Some(id) = session_cookie(&headers) {
        state.client.sessions().destroy(&id).await?;
    }
    let cookie = format!(
        "{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{}",
        if state.secure_cookies { "; Secure" } else { "" }
    );
    Ok((StatusCode::NO_CONTENT, set_cookie(&cookie)).into_response())
}

/// "Log out my other devices": ends every session of the user but this one.
async fn logout_others(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, AppError> {
    let (id, user) = current(&state, &headers).await?;
    let ended = state
        .client
        .sessions()
        .destroy_all_for_user(&user, Some(&id))
        .await?;
    Ok(Json(serde_json::json!({ "ended": ended })))
}

/// The user's sessions ("your devices"). Reading their metadata does not refresh them, and
/// their IDs (credentials) are never sent.
async fn sessions(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Vec<Device>>, AppError> {
    let (current_id, user) = current(&state, &headers).await?;
    let sessions = state.client.sessions();
    let mut devices = Vec::new();
    for id in sessions.list_for_user(&user).await? {
        // One may end between the list and its info: skip it.
        if let Some(info) = sessions.info(&id).await? {
            let ms = |at: std::time::SystemTime| {
                at.duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis()
            };
            devices.push(Device {
                current: id == current_id,
                created_at_ms: ms(info.created_at),
                last_access_ms: ms(info.last_access),
                expires_at_ms: ms(info.expires_at),
            });
        }
    }
    Ok(Json(devices))
}

/// Server-sent events for this browser: `device-logged-out` when another session of its user
/// ends, and `logged-out` when its own session ends, which also closes the stream.
async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    // Subscribed before the session is checked, so that an end right after the check is seen.
    let events = state.session_events.subscribe();
    let (id, user) = current(&state, &headers).await?;
    let stream = futures_util::stream::unfold(Some((events, id)), move |state| {
        let user = user.clone();
        async move {
            let (mut events, mut id) = state?;
            loop {
                let event = match events.recv().await {
                    Ok(event) => event,
                    // Too slow to keep up: some events were dropped; carry on with the next.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                };
                match &event {
                    // A login on this browser moved its session to a new ID: follow it.
                    SessionEvent::Regenerated { old_id, new_id, .. } if *old_id == id => {
                        id = new_id.clone();
                    }
                    // The last item: the next poll gets `None`, and the stream closes.
                    ended if ended.is_end() && *ended.id() == id => {
                        return Some((Ok(Event::default().event("logged-out").data("")), None));
                    }
                    ended if ended.is_end() && ended.user() == Some(user.as_str()) => {
                        let notice = Event::default()
                            .event("device-logged-out")
                            .data("another device of yours was logged out");
                        return Some((Ok(notice), Some((events, id))));
                    }
                    _ => {}
                }
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// The live session of the request and its user (reading it refreshes its idle timer).
async fn current(state: &AppState, headers: &HeaderMap) -> Result<(SessionId, String), AppError> {
    let id = session_cookie(headers).ok_or(AppError::Unauthorized)?;
    let data = state
        .client
        .sessions()
        .get(&id)
        .await?
        .ok_or(AppError::Unauthorized)?;
    let user = data
        .get_str("user")
        .ok_or(AppError::Unauthorized)?
        .to_owned();
    Ok((id, user))
}

fn session_cookie(headers: &HeaderMap) -> Option<SessionId> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == COOKIE && !value.is_empty())
        .map(|(_, value)| SessionId::new(value))
}

fn set_cookie(cookie: &str) -> [(header::HeaderName, HeaderValue); 1] {
    // An ID is base64url and the attributes are fixed text: always a valid header value.
    let value = HeaderValue::from_str(cookie).unwrap_or(HeaderValue::from_static(""));
    [(header::SET_COOKIE, value)]
}

/// Compares in time independent of where the inputs differ, so response times do not reveal
/// how much of a password was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
