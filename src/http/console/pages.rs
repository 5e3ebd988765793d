//! The console's pages, as compile-time-checked `maud` templates. Every value is escaped by
//! `maud` (`(value)` splices text, never markup); there is no inline script or style, so the
//! strict Content-Security-Policy holds.

use chrono::{DateTime, SecondsFormat, Utc};
use maud::{html, Markup, DOCTYPE};

use crate::{
    callback::CallbackType,
    store::{Stats, StoredCallback},
};

use super::form::FilterForm;

/// One handler attempt as the timeline shows it.
pub(super) struct AttemptView {
    /// Which attempt, from 1.
    pub(super) attempt: u32,
    /// When the handlers were called.
    pub(super) started_at: DateTime<Utc>,
    /// When they returned.
    pub(super) finished_at: DateTime<Utc>,
    /// `succeeded`, `failed`, `timed_out` or `panicked`.
    pub(super) outcome: &'static str,
    /// What failed.
    pub(super) error: Option<String>,
}

/// What every page's header needs: whether there is a session to log out of, and its CSRF token.
pub(super) struct Chrome<'a> {
    /// The CSRF token for the forms of this page; `None` on pages before login.
    pub(super) csrf: Option<&'a str>,
    /// Whether the operator logged in with the admin token (shows "Log out").
    pub(super) logged_in: bool,
}

/// The frame around every page.
pub(super) fn layout(title: &str, chrome: &Chrome<'_>, refresh: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · okra-callbacks" }
                link rel="stylesheet" href="/console/static/console.css";
                script src="/console/static/console.js" defer {}
            }
            body data-refresh=[refresh.then_some("2")] {
                header.top {
                    a.brand href="/console" { "okra-callbacks" }
                    nav {
                        a href="/console" { "Callbacks" }
                        a href="/console?status=dead" { "Dead" }
                        a href="/console?status=pending" { "Pending" }
                        @if chrome.logged_in {
                            @if let Some(csrf) = chrome.csrf {
                                form.inline method="post" action="/console/logout" {
                                    input type="hidden" name="csrf" value=(csrf);
                                    button.link type="submit" { "Log out" }
                                }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A time as every page shows it: UTC, to the second, labelled (`2026-12-07 11:42:05 UTC`),
/// which the filters read back as the same instant; RFC 3339 to the millisecond in `datetime`.
pub(super) fn time(t: DateTime<Utc>) -> Markup {
    let machine = t.to_rfc3339_opts(SecondsFormat::Millis, true);
    html! { time datetime=(machine) { (t.format("%Y-%m-%d %H:%M:%S UTC")) } }
}

fn status_badge(status: crate::store::Status) -> Markup {
    html! { span class={ "badge " (status.as_str()) } { (status.as_str()) } }
}

/// The first view: filters, the latest callbacks, the next page.
pub(super) fn list(
    chrome: &Chrome<'_>,
    form: &FilterForm,
    error: Option<&str>,
    callbacks: &[StoredCallback],
    next: Option<&str>,
    stats: Option<&Stats>,
    sources: &[String],
) -> Markup {
    let body = html! {
        h1 { "Callbacks" }
        @if let Some(stats) = stats {
            p.stats id="stats" {
                a href="/console?status=pending" { span.badge.pending { "pending" } " " (stats.pending) }
                a href="/console?status=dead" { span.badge.dead { "dead" } " " (stats.dead) }
                a href="/console?status=delivered" { span.badge.delivered { "delivered" } " " (stats.delivered) }
                @if let Some(oldest) = stats.oldest_pending_at {
                    span.hint { "oldest pending received " (time(oldest)) }
                }
            }
        }
        (filters(form, sources))
        @if let Some(error) = error {
            p.error role="alert" { (error) }
        }
        @if callbacks.is_empty() && error.is_none() {
            p.empty { "No callback matches these filters." }
        } @else if !callbacks.is_empty() {
            table.callbacks {
                thead { tr {
                    th { "Received" } th { "Status" } th { "Source" } th { "Type" } th { "Code" }
                    th { "Record" } th { "Attempts" } th { "Id" }
                } }
                tbody {
                    @for cb in callbacks {
                        tr {
                            td data-label="Received" { (time(cb.received_at)) }
                            td data-label="Status" { (status_badge(cb.status)) }
                            td.source data-label="Source" { (source_link(&cb.source)) }
                            td data-label="Type" { (cb.callback_type) }
                            td data-label="Code" { (cb.callback_code.as_deref().unwrap_or("—")) }
                            td.record data-label="Record" {
                                (record_link(cb))
                            }
                            td data-label="Attempts" { (cb.attempts) }
                            td.id data-label="Id" {
                                a href={ "/console/callbacks/" (urlencode(&cb.id)) } { (cb.id) }
                            }
                        }
                    }
                }
            }
        }
        nav.pages {
            @if let Some(next) = next {
                a.button rel="next" href={ "/console?" (form.query_with_cursor(Some(next))) } { "Older →" }
            }
            @if form.cursor.is_some() {
                a href={ "/console?" (form.query_with_cursor(None)) } { "Back to the newest" }
            }
            a href={ "/console/replay?" (form.query_with_cursor(None)) } { "Replay the dead ones matching these filters…" }
        }
    };
    layout("Callbacks", chrome, false, body)
}

/// A callback's record, linked to the list of that record's callbacks (a record is its
/// source's own: another source's record of the same id is another record).
fn record_link(cb: &StoredCallback) -> Markup {
    let href = format!(
        "/console?source={}&record={}",
        urlencode(&cb.source),
        urlencode(&cb.record)
    );
    html! { a href=(href) { (cb.record) } }
}

/// A source's name, linked to the list of its callbacks.
fn source_link(source: &str) -> Markup {
    html! { a href={ "/console?source=" (urlencode(source)) } { (source) } }
}

/// The filter form, as in `GET /v1/callbacks`; `sources` are the names to choose from.
fn filters(form: &FilterForm, sources: &[String]) -> Markup {
    html! {
        form.filters method="get" action="/console" {
            fieldset.statuses {
                legend { "Status" }
                @for status in ["pending", "delivered", "dead"] {
                    label {
                        input type="checkbox" name="status" value=(status)
                            checked[form.statuses.iter().any(|s| s == status)];
                        " " (status)
                    }
                }
            }
            fieldset.sources {
                legend { "Source" }
                @for source in sources {
                    label {
                        input type="checkbox" name="source" value=(source)
                            checked[form.sources.contains(source)];
                        " " (source)
                    }
                }
            }
            label { "Type"
                input type="text" name="callback_type" list="callback-types" autocapitalize="characters"
                    value=(form.callback_type) placeholder="any";
            }
            datalist id="callback-types" {
                @for kind in CallbackType::ALL { option value=(kind.as_str()) {} }
            }
            label { "Code" input type="text" name="callback_code" value=(form.callback_code) placeholder="any"; }
            label { "Record" input type="text" name="record" value=(form.record) placeholder="any"; }
            // Text, not a date picker: a time copied from the list pastes in as the same instant.
            label { "Received after (UTC)"
                input type="text" name="received_after" value=(form.received_after)
                    placeholder="2026-12-07 11:42:05 UTC" autocomplete="off";
            }
            label { "Received before (UTC)"
                input type="text" name="received_before" value=(form.received_before)
                    placeholder="2026-12-07 11:42:05 UTC" autocomplete="off";
            }
            div.actions {
                button type="submit" { "Filter" }
                a href="/console" { "Clear" }
            }
        }
    }
}

/// What the detail page shows of one callback.
pub(super) struct Detail<'a> {
    /// The callback.
    pub(super) cb: &'a StoredCallback,
    /// Its attempts, oldest first.
    pub(super) history: &'a [AttemptView],
    /// The payload as shown (masked unless revealed).
    pub(super) payload: &'a str,
    /// How many keys were masked (0 once revealed).
    pub(super) masked: usize,
    /// Whether the payload is shown revealed.
    pub(super) revealed: bool,
    /// A message about what just happened (e.g. "Queued for the handlers again").
    pub(super) flash: Option<&'a str>,
}

/// One callback: fields, status, history as a timeline, payload, replay.
pub(super) fn detail(chrome: &Chrome<'_>, d: &Detail<'_>) -> Markup {
    let cb = d.cb;
    let csrf = chrome.csrf.unwrap_or_default();
    let path = format!("/console/callbacks/{}", urlencode(&cb.id));
    let body = html! {
        p.back { a href="/console" { "← Callbacks" } }
        h1 { "Callback " span.id { (cb.id) } }
        @if let Some(flash) = d.flash { p.flash role="status" { (flash) } }
        dl.fields {
            dt { "Status" } dd id="status" { (status_badge(cb.status)) }
            dt { "Source" } dd id="source" { (source_link(&cb.source)) }
            dt { "Record" } dd.record { (record_link(cb)) }
            dt { "Type" } dd { (cb.callback_type) }
            dt { "Code" } dd { (cb.callback_code.as_deref().unwrap_or("—")) }
            dt { "Received" } dd { (time(cb.received_at)) }
            dt { "Attempts" } dd { (cb.attempts) }
            @if let Some(error) = &cb.last_error { dt { "Last error" } dd.error-text { (error) } }
            @if cb.status == crate::store::Status::Pending {
                @if let Some(at) = cb.next_attempt_at { dt { "Next attempt" } dd { (time(at)) } }
            }
            @if let Some(at) = cb.finished_at { dt { "Finished" } dd { (time(at)) } }
        }
        form.replay method="post" action={ (path) "/replay" } {
            input type="hidden" name="csrf" value=(csrf);
            button id="replay" type="submit" disabled[cb.status == crate::store::Status::Pending] {
                "Replay"
            }
            span.hint { "hands it to the handlers again, with a fresh attempt budget" }
        }
        section.history {
            h2 { "History" }
            @if d.history.is_empty() {
                p.empty { "No attempt yet." }
            } @else {
                ol.timeline {
                    @for a in d.history {
                        li class={ "attempt " (a.outcome) } {
                            span.dot {}
                            div {
                                strong { "Attempt " (a.attempt) } " "
                                span class={ "badge " (a.outcome) } { (a.outcome.replace('_', " ")) }
                                div.when {
                                    (time(a.started_at))
                                    " · " ((a.finished_at - a.started_at).num_milliseconds()) " ms"
                                }
                                @if let Some(error) = &a.error { div.error-text { (error) } }
                            }
                        }
                    }
                }
            }
        }
        section.payload {
            h2 { "Payload" }
            @if d.revealed {
                p.note { "Personal data is shown. Leave this page when you are done." }
                a href=(path) { "Mask it again" }
            } @else if d.masked > 0 {
                form.inline method="post" action={ (path) "/reveal" } {
                    "Personal data is masked (" (d.masked) " field" @if d.masked != 1 { "s" } "). "
                    input type="hidden" name="csrf" value=(csrf);
                    button id="reveal" type="submit" { "Reveal" }
                }
            }
            pre id="payload" { code { (d.payload) } }
        }
    };
    let refresh = cb.status == crate::store::Status::Pending && !d.revealed;
    layout(&format!("Callback {}", cb.id), chrome, refresh, body)
}

/// The confirmation before replaying every dead callback matching a filter.
pub(super) fn confirm_replay(
    chrome: &Chrome<'_>,
    form: &FilterForm,
    matching: Option<(usize, bool)>,
) -> Markup {
    let body = html! {
        h1 { "Replay dead callbacks" }
        p { "Every " strong { "dead" } " callback matching these filters will be handed to the handlers again:" }
        (describe(form))
        @match matching {
            Some((0, _)) => p.empty { "No dead callback matches these filters: nothing to replay." },
            Some((n, more)) => p id="matching" { strong { (n) @if more { " or more" } } " dead callback" @if n != 1 || more { "s" } " match." },
            None => {},
        }
        @if !matches!(matching, Some((0, _))) {
            form method="post" action="/console/replay" {
                input type="hidden" name="csrf" value=(chrome.csrf.unwrap_or_default());
                (hidden_filters(form))
                button.danger id="confirm" type="submit" { "Replay them" }
                " "
                a href={ "/console?" (form.query_with_cursor(None)) } { "Cancel" }
            }
        }
    };
    layout("Replay dead callbacks", chrome, false, body)
}

/// The answer to a confirmed bulk replay.
pub(super) fn replayed(chrome: &Chrome<'_>, form: &FilterForm, n: u64) -> Markup {
    let mut pending = form.clone();
    pending.statuses = vec!["pending".into()];
    let body = html! {
        h1 { "Replayed" }
        p id="replayed" role="status" { strong { (n) } " dead callback" @if n != 1 { "s" } " handed to the handlers again." }
        (describe(form))
        p { a href={ "/console?" (pending.query_with_cursor(None)) } { "See them while they are pending" } }
    };
    layout("Replayed", chrome, false, body)
}

fn describe(form: &FilterForm) -> Markup {
    let rows = form.described();
    html! {
        @if rows.is_empty() {
            p { "No filter: every dead callback." }
        } @else {
            dl.fields {
                @for (name, value) in rows { dt { (name) } dd { (value) } }
            }
        }
    }
}

fn hidden_filters(form: &FilterForm) -> Markup {
    html! {
        @for (name, value) in form.pairs() {
            input type="hidden" name=(name) value=(value);
        }
    }
}

/// The login form (only when `--admin-token` is set).
pub(super) fn login(error: Option<&str>) -> Markup {
    let chrome = Chrome {
        csrf: None,
        logged_in: false,
    };
    let body = html! {
        h1 { "Log in" }
        p { "Enter the admin token (" code { "--admin-token" } "). It is checked once; this browser then keeps a session until it closes." }
        @if let Some(error) = error { p.error role="alert" { (error) } }
        form.login method="post" action="/console/login" {
            label { "Admin token"
                input id="token" type="password" name="token" autocomplete="current-password" required autofocus;
            }
            button id="login" type="submit" { "Log in" }
        }
    };
    layout("Log in", &chrome, false, body)
}

/// An error page: the same message as the API's error body, as HTML.
pub(super) fn error(chrome: &Chrome<'_>, code: &str, message: &str) -> Markup {
    let body = html! {
        h1 { "Something went wrong" }
        p.error role="alert" { (message) }
        p.code { "(" code { (code) } ")" }
        p { a href="/console" { "Back to the callbacks" } }
    };
    layout("Error", chrome, false, body)
}

/// Percent-encodes a value for a URL path segment or query value.
pub(super) fn urlencode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
