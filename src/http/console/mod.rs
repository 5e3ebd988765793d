//! The web console at `/console`: the operator's view in a browser, served by the binary.
//!
//! Server-rendered pages (compile-time-checked `maud` templates, ordinary axum handlers) over
//! the same state, store and admin rule as the API, with a few lines of script embedded in the
//! binary. The first view lists the latest callbacks with the API's filters and pages; one
//! callback shows its fields, its attempt history as a timeline, its payload with personal data
//! masked until the operator reveals it, and a replay button; every dead callback matching a
//! filter can be replayed after a confirmation page. Each callback shows its source, and the
//! list filters by it. Every time is shown in UTC, labelled, as the server wrote it: a time
//! copied from a page reads back in a filter as the same instant.
//!
//! Who may use it follows `--admin-token` (see [`session`]): without one, loopback clients only,
//! as the API; with one, the operator logs in once per browser session. Every page carries a
//! strict Content-Security-Policy (no inline script or style) and `Cache-Control: no-store`.

mod error;
mod form;
mod gate;
mod mask;
mod pages;
mod session;

use axum::{
    body::Body,
    extract::{RawQuery, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    middleware,
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
    Extension, Router,
};
use chrono::Utc;
use maud::Markup;

use self::{
    error::ConsoleError,
    form::{FilterForm, Form},
    gate::{gate, Operator},
    pages::AttemptView,
    session::Key,
};
use crate::{
    http::{error::ApiError, extract::Path, filter, state::AppState},
    store::{Filter, Scope, Stats, Status, StoredCallback},
    telemetry::Untrusted,
};

/// Callbacks per page of the list.
const PAGE_SIZE: usize = 50;
/// How many dead callbacks the replay confirmation counts before it says "or more".
const COUNT_LIMIT: usize = 500;

/// The policy every console answer carries: nothing but the console's own script, styles and
/// images; forms post only to it; no framing; no `<base>`.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const CSS: &str = include_str!("static/console.css");
const JS: &str = include_str!("static/console.js");

/// The console's routes, to be merged into the HTTP root router.
pub(super) fn router(state: &AppState) -> Router<AppState> {
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

/// `GET /console`: the latest callbacks matching the filters, a page at a time.
async fn list(
    State(state): State<AppState>,
    Extension(op): Extension<Operator>,
    RawQuery(query): RawQuery,
) -> Result<Response, ConsoleError> {
    let form = FilterForm::from_form(&Form::from_query(query.as_deref()));
    let csrf = op.csrf();
    let chrome = op.chrome(&csrf);
    // The counts are a convenience: a store that cannot give them does not hide the list.
    let stats = state
        .store
        .stats()
        .await
        .inspect_err(|e| tracing::warn!(error = %Untrusted(&e.to_string()), "console: no stats"))
        .ok();
    let stats = stats.as_ref();
    let sources = source_names(&state, stats);
    let shown = match search_page(&state, &form).await {
        Ok((callbacks, next)) => pages::list(
            &chrome,
            &form,
            None,
            &callbacks,
            next.as_deref(),
            stats,
            &sources,
        ),
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            let page = pages::list(&chrome, &form, Some(&e.message), &[], None, stats, &sources);
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
) -> Result<(Vec<StoredCallback>, Option<String>), ConsoleError> {
    let filter = form.filter()?;
    check_sources(state, form).await?;
    let cursor = filter::cursor(form.cursor.as_deref(), &filter, Scope::Search).map_err(|_| {
        ConsoleError::new(
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
            "this page link is out of date or was altered: start again from the newest callbacks",
        )
    })?;
    let page = state
        .store
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
    let cb = state.store.get(id).await?.ok_or_else(|| {
        ConsoleError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no callback has the id `{id}`: it may have been pruned (--retention); find it from the list"),
        )
    })?;
    let history: Vec<AttemptView> = state
        .store
        .history(id)
        .await?
        .into_iter()
        .map(|a| AttemptView {
            attempt: a.attempt,
            started_at: a.started_at,
            finished_at: a.finished_at,
            outcome: a.outcome.as_str(),
            error: a.error,
        })
        .collect();
    let (payload, masked) = mask::render(&cb.body, reveal);
    let csrf = op.csrf();
    let chrome = op.chrome(&csrf);
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
    if !state.store.replay(&id).await? {
        return Err(ConsoleError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no callback has the id `{id}`: nothing was replayed"),
        ));
    }
    state.wake.notify_one();
    tracing::info!(id = %Untrusted(&id), "callback replayed from the console");
    let to = format!("/console/callbacks/{}?replayed=1", pages::urlencode(&id));
    Ok(Redirect::to(&to).into_response())
}

/// The sources the filter offers: `okra`, the configured ones, and any other the store holds
/// callbacks of (a source since removed from the sources file), sorted.
fn source_names(state: &AppState, stats: Option<&Stats>) -> Vec<String> {
    let stored = stats.into_iter().flat_map(|s| s.by_source.iter());
    let mut names: Vec<String> = std::iter::once("okra")
        .chain(state.sources.names())
        .chain(stored.map(|(name, _)| name.as_str()))
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Refuses (400) a source the receiver does not know ([`source_names`]), which no callback
/// can match: a misspelt name gets an answer, not an empty list. The store's counts are read
/// only for a name that is neither `okra` nor configured.
async fn check_sources(state: &AppState, form: &FilterForm) -> Result<(), ConsoleError> {
    let configured = |name: &str| name == "okra" || state.sources.get(name).is_some();
    if form.sources.iter().all(|name| configured(name)) {
        return Ok(());
    }
    let known = source_names(state, Some(&state.store.stats().await?));
    match form.sources.iter().find(|name| !known.contains(name)) {
        None => Ok(()),
        Some(name) => Err(ConsoleError::new(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            format!(
                "`{name}` is not a source of this receiver: choose among {} (okra, and the names in the sources file, --sources)",
                known.join(", ")
            ),
        )),
    }
}

/// The filter of a bulk replay: the form's, restricted to dead callbacks.
async fn dead_only(state: &AppState, form: &FilterForm) -> Result<Filter, ConsoleError> {
    let mut filter = form.filter()?;
    check_sources(state, form).await?;
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
        .store
        .search(&dead_only(&state, &form).await?, COUNT_LIMIT, None)
        .await?;
    let csrf = op.csrf();
    let chrome = op.chrome(&csrf);
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
    let replayed = state
        .store
        .replay_matching(&dead_only(&state, &form).await?)
        .await?;
    state.wake.notify_one();
    tracing::info!(replayed, "dead callbacks replayed from the console");
    let csrf = op.csrf();
    let chrome = op.chrome(&csrf);
    Ok(pages::replayed(&chrome, &form, replayed))
}

/// `GET /console/login`: the form (or straight to the list when no admin token is set).
async fn login_page(State(state): State<AppState>) -> Response {
    if state.access.admin_token.is_none() {
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
    let key = Key::new(state.access.admin_token.as_ref());
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
