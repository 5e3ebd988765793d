//! The web console at `/console`: the operator's view in a browser, served by the binary.
//!
//! Server-rendered pages (compile-time-checked `maud` templates, ordinary axum handlers) over
//! the same state, store and admin rule as the API, with a few lines of script embedded in the
//! binary. The first view lists the latest callbacks with the API's filters and pages; one
//! callback shows its fields, its attempt history as a timeline, its payload with personal data
//! masked until the operator reveals it, and a replay button; every dead callback matching a
//! filter can be replayed after a confirmation page.
//!
//! Who may use it follows `--admin-token` (see [`session`]): without one, loopback clients only,
//! as the API; with one, the operator logs in once per browser session. Every page carries a
//! strict Content-Security-Policy (no inline script or style) and `Cache-Control: no-store`.

mod mask;
mod pages;
mod session;

use axum::{
    body::Body,
    extract::{RawQuery, Request, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
    Extension, Router,
};
use chrono::{DateTime, NaiveDateTime, Utc};
use maud::Markup;

use crate::{
    http::{error::ApiError, extract::Path, state::AppState},
    store::{Cursor, Filter, Scope, Status},
    telemetry::Untrusted,
};
use pages::Chrome;
use session::Key;

/// Callbacks per page of the list.
const PAGE_SIZE: usize = 50;
/// How many dead callbacks the replay confirmation counts before it says "or more".
const COUNT_LIMIT: usize = 500;
/// The largest form body the console reads.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The policy every console answer carries: nothing but the console's own script, styles and
/// images; forms post only to it; no framing; no `<base>`.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const CSS: &str = include_str!("static/console.css");
const JS: &str = include_str!("static/console.js");

use pages::AttemptView as Attempt;

/// The console's routes, to be merged into the HTTP root router.
pub(crate) fn router(state: &AppState) -> Router<AppState> {
    let guarded = Router::new()
        .route("/console", get(list))
        .route("/console/callbacks/{id}", get(detail))
        .route("/console/callbacks/{id}/replay", post(replay_one))
        .route("/console/callbacks/{id}/reveal", post(reveal))
        .route("/console/replay", get(confirm_replay).post(replay_matching))
        .route("/console/logout", post(logout))
        .route_layer(middleware::from_fn_with_state(state.clone(), gate));
    Router::new()
        .route("/console/", get(|| async { Redirect::to("/console") }))
        .route("/console/login", get(login_page).post(login))
        .route("/console/static/console.css", get(css))
        .route("/console/static/console.js", get(js))
        .merge(guarded)
        .layer(middleware::map_response(security_headers))
}

/// Adds the security headers to every console answer (pages are never cached).
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Who is using the console, as [`gate`] established it: the key its forms are signed with and
/// the session (the cookie value; empty without an admin token).
#[derive(Clone)]
struct Operator {
    key: Key,
    session: String,
}

impl Operator {
    fn csrf(&self) -> String {
        self.key.csrf(&self.session)
    }

    fn logged_in(&self) -> bool {
        matches!(self.key, Key::Token(_))
    }

    /// Checks that a POST comes from the console's own page of this session.
    fn check_post(&self, headers: &HeaderMap, form: &Form) -> Result<(), ConsoleError> {
        if !session::same_origin(headers) {
            return Err(ConsoleError::new(
                StatusCode::FORBIDDEN,
                "cross_origin",
                "this form was not sent from the console's own pages: open the console and use its buttons",
            ));
        }
        if !self
            .key
            .csrf_matches(&self.session, form.get("csrf").unwrap_or_default())
        {
            return Err(ConsoleError::new(
                StatusCode::FORBIDDEN,
                "invalid_csrf_token",
                "the form's security token is missing or belongs to another session: reload the page and try again",
            ));
        }
        Ok(())
    }
}

/// The admin rule for the console. With `--admin-token`: a valid session cookie, else the login
/// page. Without: the API's loopback rule, asked for by a local host name.
async fn gate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let key = Key::new(state.access().admin_token.as_ref());
    match key {
        Key::Token(_) => {
            let session = session::cookie(request.headers())
                .filter(|value| key.verify(value, Utc::now()))
                .map(str::to_owned);
            let Some(session) = session else {
                if request.method() == Method::GET {
                    return Redirect::to("/console/login").into_response();
                }
                return ConsoleError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "your console session is missing or has expired: log in again at /console/login",
                )
                .into_response();
            };
            request.extensions_mut().insert(Operator { key, session });
            next.run(request).await
        }
        Key::Loopback => {
            if !session::host_is_local(request.headers()) {
                return ConsoleError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "without --admin-token the console answers loopback clients only, at an address such as http://127.0.0.1:PORT/console or http://localhost:PORT/console: open it so, or set --admin-token to use it through a host name",
                )
                .into_response();
            }
            // The API's own loopback rule (trusted proxies and forwarded headers included).
            if let Err(e) = state
                .access()
                .check_admin(request.extensions(), request.headers())
            {
                return ConsoleError::from(e).into_response();
            }
            request.extensions_mut().insert(Operator {
                key,
                session: String::new(),
            });
            next.run(request).await
        }
    }
}

/// An error answered as an HTML page, with the API's status, code and message.
#[derive(Debug)]
struct ConsoleError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ConsoleError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_parameter", message)
    }
}

impl From<ApiError> for ConsoleError {
    fn from(e: ApiError) -> Self {
        let (status, code) = e.parts();
        if let ApiError::StoreUnavailable(source) = &e {
            tracing::error!(error = %Untrusted(&source.to_string()), "store unavailable");
            return Self::new(
                status,
                code,
                "the store is unavailable: reload the page in a moment, and check /readyz and the receiver's logs if it persists",
            );
        }
        Self::new(status, code, e.to_string())
    }
}

impl From<crate::store::StoreError> for ConsoleError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let chrome = Chrome {
            csrf: None,
            logged_in: false,
        };
        (self.status, pages::error(&chrome, self.code, &self.message)).into_response()
    }
}

/// A form body or query string, decoded.
struct Form(Vec<(String, String)>);

impl Form {
    fn from_query(query: Option<&str>) -> Self {
        Self(
            form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                .into_owned()
                .collect(),
        )
    }

    async fn read(body: Body) -> Result<Self, ConsoleError> {
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| {
                ConsoleError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the form is larger than the console accepts: send it from the console's pages",
                )
            })?;
        Ok(Self(form_urlencoded::parse(&bytes).into_owned().collect()))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The list's filters as the operator typed them (kept as typed, to show them back).
#[derive(Debug, Clone, Default)]
pub(crate) struct FilterForm {
    /// `pending`, `delivered`, `dead` (a field may also hold several, comma-separated).
    pub statuses: Vec<String>,
    /// The callback type, any case.
    pub callback_type: String,
    /// The callback code.
    pub callback_code: String,
    /// The record id.
    pub record: String,
    /// Received at or after (RFC 3339, or a `datetime-local` value taken as UTC).
    pub received_after: String,
    /// Received before.
    pub received_before: String,
    /// The page to show (the previous page's cursor).
    pub cursor: Option<String>,
}

impl FilterForm {
    fn from_form(form: &Form) -> Self {
        let mut f = Self::default();
        for (name, value) in &form.0 {
            let value = value.trim();
            match name.as_str() {
                "status" => f.statuses.extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_ascii_lowercase),
                ),
                "callback_type" => f.callback_type = value.to_owned(),
                "callback_code" => f.callback_code = value.to_owned(),
                "record" => f.record = value.to_owned(),
                "received_after" => f.received_after = value.to_owned(),
                "received_before" => f.received_before = value.to_owned(),
                "cursor" if !value.is_empty() => f.cursor = Some(value.to_owned()),
                _ => {}
            }
        }
        f.statuses.sort();
        f.statuses.dedup();
        f
    }

    /// The filters as form fields (no cursor, no empty ones).
    pub(crate) fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs: Vec<(&'static str, String)> = self
            .statuses
            .iter()
            .map(|s| ("status", s.clone()))
            .collect();
        for (name, value) in [
            ("callback_type", &self.callback_type),
            ("callback_code", &self.callback_code),
            ("record", &self.record),
            ("received_after", &self.received_after),
            ("received_before", &self.received_before),
        ] {
            if !value.is_empty() {
                pairs.push((name, value.clone()));
            }
        }
        pairs
    }

    /// The filters as a query string, with `cursor` when given.
    pub(crate) fn query_with_cursor(&self, cursor: Option<&str>) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (name, value) in self.pairs() {
            query.append_pair(name, &value);
        }
        if let Some(cursor) = cursor {
            query.append_pair("cursor", cursor);
        }
        query.finish()
    }

    /// The filters in words, for the replay confirmation.
    pub(crate) fn described(&self) -> Vec<(&'static str, String)> {
        self.pairs()
            .into_iter()
            .filter(|(name, _)| *name != "status")
            .map(|(name, value)| {
                let label = match name {
                    "callback_type" => "Type",
                    "callback_code" => "Code",
                    "record" => "Record",
                    "received_after" => "Received after",
                    _ => "Received before",
                };
                (label, value)
            })
            .collect()
    }

    /// The store's filter; an error names the field and its valid values.
    fn filter(&self) -> Result<Filter, ConsoleError> {
        let statuses = self
            .statuses
            .iter()
            .map(|s| {
                Status::from_name(s).ok_or_else(|| {
                    ConsoleError::bad_request(format!(
                        "`{s}` is not a status: use pending, delivered or dead"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let text = |s: &String| Some(s.clone()).filter(|s| !s.is_empty());
        Ok(Filter {
            statuses,
            callback_type: text(&self.callback_type),
            callback_code: text(&self.callback_code),
            record: text(&self.record),
            received_after: parse_time("received after", &self.received_after)?,
            received_before: parse_time("received before", &self.received_before)?,
            sources: Vec::new(),
        })
    }
}

/// A time as typed: RFC 3339, or a `datetime-local` value (`2026-12-01T10:00[:00]`) taken as UTC.
fn parse_time(field: &str, value: &str) -> Result<Option<DateTime<Utc>>, ConsoleError> {
    if value.is_empty() {
        return Ok(None);
    }
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S").map(|t| t.and_utc()))
        .or_else(|_| NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M").map(|t| t.and_utc()))
        .map(Some)
        .map_err(|_| {
            ConsoleError::bad_request(format!(
                "`{value}` is not a time for \"{field}\": use the date picker, or RFC 3339 such as 2026-12-01T10:00:00Z"
            ))
        })
}

/// `GET /console`: the latest callbacks matching the filters, a page at a time.
async fn list(
    State(state): State<AppState>,
    Extension(op): Extension<Operator>,
    RawQuery(query): RawQuery,
) -> Result<Response, ConsoleError> {
    let form = FilterForm::from_form(&Form::from_query(query.as_deref()));
    let csrf = op.csrf();
    let chrome = Chrome {
        csrf: Some(&csrf),
        logged_in: op.logged_in(),
    };
    // The counts are a convenience: a store that cannot give them does not hide the list.
    let stats = state
        .store()
        .stats()
        .await
        .inspect_err(|e| tracing::warn!(error = %Untrusted(&e.to_string()), "console: no stats"))
        .ok();
    let stats = stats.as_ref();
    let shown = match search_page(&state, &form).await {
        Ok((callbacks, next)) => {
            pages::list(&chrome, &form, None, &callbacks, next.as_deref(), stats)
        }
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            let page = pages::list(&chrome, &form, Some(&e.message), &[], None, stats);
            return Ok((StatusCode::BAD_REQUEST, page).into_response());
        }
        Err(e) => return Err(e),
    };
    Ok(shown.into_response())
}

/// One page of the search the form describes, and the next page's cursor.
async fn search_page(
    state: &AppState,
    form: &FilterForm,
) -> Result<(Vec<crate::store::StoredCallback>, Option<String>), ConsoleError> {
    let filter = form.filter()?;
    let cursor = form
        .cursor
        .as_deref()
        .map(|text| {
            Cursor::decode(text)
                .and_then(|c| c.fits(&filter, Scope::Search).map(|()| c))
                .map_err(|_| {
                    ConsoleError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_cursor",
                        "this page link is out of date or was altered: start again from the newest callbacks",
                    )
                })
        })
        .transpose()?;
    let page = state
        .store()
        .search(&filter, PAGE_SIZE, cursor.as_ref())
        .await?;
    Ok((page.callbacks, page.next.map(|c| c.encode())))
}

/// `GET /console/callbacks/{id}`: one callback, its history and its payload (masked).
async fn detail(
    State(state): State<AppState>,
    Extension(op): Extension<Operator>,
    id: Result<Path<String>, ApiError>,
    RawQuery(query): RawQuery,
) -> Result<Markup, ConsoleError> {
    let Path(id) = id?;
    let flash = Form::from_query(query.as_deref())
        .get("replayed")
        .map(|_| "Queued for the handlers again.");
    show(&state, &op, &id, false, flash).await
}

/// `POST /console/callbacks/{id}/reveal`: the same page with the payload unmasked (logged).
async fn reveal(
    State(state): State<AppState>,
    Extension(op): Extension<Operator>,
    id: Result<Path<String>, ApiError>,
    headers: HeaderMap,
    body: Body,
) -> Result<Markup, ConsoleError> {
    let Path(id) = id?;
    op.check_post(&headers, &Form::read(body).await?)?;
    tracing::info!(id = %Untrusted(&id), "console: payload revealed");
    show(&state, &op, &id, true, None).await
}

async fn show(
    state: &AppState,
    op: &Operator,
    id: &str,
    reveal: bool,
    flash: Option<&str>,
) -> Result<Markup, ConsoleError> {
    let cb = state.store().get(id).await?.ok_or_else(|| {
        ConsoleError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no callback has the id `{id}`: it may have been pruned (--retention); find it from the list"),
        )
    })?;
    let history: Vec<Attempt> = state
        .store()
        .history(id)
        .await?
        .into_iter()
        .map(|a| Attempt {
            attempt: a.attempt,
            started_at: a.started_at,
            finished_at: a.finished_at,
            outcome: a.outcome.as_str(),
            error: a.error,
        })
        .collect();
    let (payload, masked) = mask::render(&cb.body, reveal);
    let csrf = op.csrf();
    let chrome = Chrome {
        csrf: Some(&csrf),
        logged_in: op.logged_in(),
    };
    Ok(pages::detail(
        &chrome,
        &pages::Detail {
            cb: &cb,
            history: &history,
            payload: &payload,
            masked,
            revealed: reveal,
            flash,
        },
    ))
}

/// `POST /console/callbacks/{id}/replay`: hand it to the handlers again, then show it.
async fn replay_one(
    State(state): State<AppState>,
    Extension(op): Extension<Operator>,
    id: Result<Path<String>, ApiError>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ConsoleError> {
    let Path(id) = id?;
    op.check_post(&headers, &Form::read(body).await?)?;
    if !state.store().replay(&id).await? {
        return Err(ConsoleError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no callback has the id `{id}`: nothing was replayed"),
        ));
    }
    state.wake().notify_one();
    tracing::info!(id = %Untrusted(&id), "callback replayed from the console");
    let to = format!("/console/callbacks/{}?replayed=1", pages::urlencode(&id));
    Ok(Redirect::to(&to).into_response())
}

/// The filter of a bulk replay: the form's, restricted to dead callbacks.
fn dead_only(form: &FilterForm) -> Result<Filter, ConsoleError> {
    let mut filter = form.filter()?;
    filter.statuses = vec![Status::Dead];
    Ok(filter)
}

/// `GET /console/replay`: how many dead callbacks match, and a button to replay them.
async fn confirm_replay(
    State(state): State<AppState>,
    Extension(op): Extension<Operator>,
    RawQuery(query): RawQuery,
) -> Result<Markup, ConsoleError> {
    let mut form = FilterForm::from_form(&Form::from_query(query.as_deref()));
    form.cursor = None;
    form.statuses = vec!["dead".into()];
    let page = state
        .store()
        .search(&dead_only(&form)?, COUNT_LIMIT, None)
        .await?;
    let csrf = op.csrf();
    let chrome = Chrome {
        csrf: Some(&csrf),
        logged_in: op.logged_in(),
    };
    Ok(pages::confirm_replay(
        &chrome,
        &form,
        Some((page.callbacks.len(), page.next.is_some())),
    ))
}

/// `POST /console/replay`: replay every dead callback matching the confirmed filters.
async fn replay_matching(
    State(state): State<AppState>,
    Extension(op): Extension<Operator>,
    headers: HeaderMap,
    body: Body,
) -> Result<Markup, ConsoleError> {
    let posted = Form::read(body).await?;
    op.check_post(&headers, &posted)?;
    let mut form = FilterForm::from_form(&posted);
    form.cursor = None;
    form.statuses = vec!["dead".into()];
    let replayed = state.store().replay_matching(&dead_only(&form)?).await?;
    state.wake().notify_one();
    tracing::info!(replayed, "dead callbacks replayed from the console");
    let csrf = op.csrf();
    let chrome = Chrome {
        csrf: Some(&csrf),
        logged_in: op.logged_in(),
    };
    Ok(pages::replayed(&chrome, &form, replayed))
}

/// `GET /console/login`: the form (or straight to the list when no admin token is set).
async fn login_page(State(state): State<AppState>) -> Response {
    if state.access().admin_token.is_none() {
        return Redirect::to("/console").into_response();
    }
    pages::login(None).into_response()
}

/// `POST /console/login`: checks the token once, then starts a session.
async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ConsoleError> {
    let key = Key::new(state.access().admin_token.as_ref());
    if !matches!(key, Key::Token(_)) {
        return Ok(Redirect::to("/console").into_response());
    }
    if !session::same_origin(&headers) {
        return Err(ConsoleError::new(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "log in from the console's own login page (/console/login)",
        ));
    }
    let form = Form::read(body).await?;
    if !key.token_matches(form.get("token").unwrap_or_default()) {
        tracing::warn!("console login refused: wrong admin token");
        let page = pages::login(Some(
            "That is not the admin token: enter the --admin-token value (OKRA_ADMIN_TOKEN) this receiver runs with.",
        ));
        return Ok((StatusCode::UNAUTHORIZED, page).into_response());
    }
    let value = key.issue(Utc::now());
    let cookie = session::set_cookie(&value, session::is_https(&headers));
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/console")).into_response())
}

/// `POST /console/logout`: ends the session in this browser.
async fn logout(
    Extension(op): Extension<Operator>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ConsoleError> {
    op.check_post(&headers, &Form::read(body).await?)?;
    Ok((
        [(header::SET_COOKIE, session::clear_cookie())],
        Redirect::to("/console/login"),
    )
        .into_response())
}

async fn css() -> Response {
    static_file("text/css; charset=utf-8", CSS)
}

async fn js() -> Response {
    static_file("text/javascript; charset=utf-8", JS)
}

fn static_file(content_type: &'static str, text: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        text,
    )
        .into_response()
}
