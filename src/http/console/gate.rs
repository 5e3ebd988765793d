//! Who may use the console: the admin rule in front of its pages ([`gate`]) and the
//! [`Operator`] it lets in, whose forms carry a CSRF token of their session.

use axum::{
    extract::{Request, State},
    http::{HeaderMap, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use chrono::Utc;

use super::{
    error::ConsoleError,
    form::Form,
    pages::Chrome,
    session::{self, Key},
};
use crate::http::state::AppState;

/// Who is using the console, as [`gate`] established it: the key its forms are signed with and
/// the session (the cookie value; empty without an admin token).
#[derive(Clone)]
pub(super) struct Operator {
    key: Key,
    session: String,
}

impl Operator {
    /// The CSRF token of this session, for the forms of a page.
    pub(super) fn csrf(&self) -> String {
        self.key.csrf(&self.session)
    }

    /// What every page's header needs, given this session's CSRF token (from [`Self::csrf`]).
    pub(super) fn chrome<'a>(&self, csrf: &'a str) -> Chrome<'a> {
        Chrome {
            csrf: Some(csrf),
            logged_in: matches!(self.key, Key::Token(_)),
        }
    }

    /// Checks that a POST comes from the console's own page of this session.
    pub(super) fn check_post(&self, headers: &HeaderMap, form: &Form) -> Result<(), ConsoleError> {
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
pub(super) async fn gate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let key = Key::new(state.access.admin_token.as_ref());
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
                .access
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
