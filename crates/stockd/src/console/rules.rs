//! The rules page: the active document in an editor, validation problems by
//! field path and code, a preview of what applying would change (from → to,
//! with a summary), apply with a message, the versions with their diffs, and
//! rollback. The work is the API's (`crate::api::rules`); this renders it.

use super::html::{self, csrf_field, esc, thousands, url_part};
use super::session::Viewer;
use super::Console;
use crate::api::rules::{self as api, Preview};
use crate::auth::Role;
use crate::error::{ApiError, ErrorDetail};
use crate::input;
use axum::extract::{Query, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use chrono::Utc;
use serde::Deserialize;
use std::fmt::Write;
use stockd_core::event::TEXT_LEN_MAX;
use stockd_core::rules::RulesDocument;

/// Changes listed in a preview (the summary counts all).
pub const PREVIEW_ROWS: usize = 200;

/// What the editor shows besides the document.
#[derive(Default)]
struct EditorState {
    /// The text in the editor (the active document when none was posted).
    text: Option<String>,
    message: String,
    problems: Vec<ErrorDetail>,
    preview: Option<Preview>,
}

fn storage_error(viewer: &Viewer, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "console rules action failed");
    html::error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        Some(viewer),
        "The store did not answer; try again in a moment.",
    )
}

fn redirect(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(to) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

fn problems_list(problems: &[ErrorDetail]) -> String {
    if problems.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<div class=\"problems\" role=\"alert\"><p><b>Nothing was changed.</b> Fix these first:</p><ul id=\"problems\">",
    );
    for p in problems {
        let field = p.field.as_deref().unwrap_or("");
        let _ = write!(
            out,
            "<li data-field=\"{}\"><code class=\"field\">{}</code> {}{}</li>",
            esc(field),
            esc(if field.is_empty() {
                "(document)"
            } else {
                field
            }),
            esc(&p.message),
            p.code.as_deref().map_or(String::new(), |c| format!(
                " <small class=\"code\">{}</small>",
                esc(c)
            ))
        );
    }
    out.push_str("</ul></div>");
    out
}

fn preview_section(viewer: &Viewer, preview: &Preview, text: &str, message: &str) -> String {
    let s = &preview.summary;
    let mut out = format!(
        "<section class=\"card preview\" id=\"preview\"><h2>Preview</h2>\
         <p class=\"summary\" id=\"preview-summary\">Compared with version {}: <b>{}</b> of {} listings change \
         ({} up, {} down).</p>",
        preview
            .active_version
            .map_or("none (the empty document)".to_string(), |v| v.to_string()),
        thousands(s.changed as i64),
        thousands(s.listings as i64),
        thousands(s.increased as i64),
        thousands(s.decreased as i64),
    );
    if !preview.changes.is_empty() {
        out.push_str(
            "<div class=\"scroll\"><table id=\"preview-changes\"><thead><tr><th>Channel</th><th>SKU</th>\
             <th class=\"num\">From</th><th class=\"num\">To</th></tr></thead><tbody>",
        );
        for c in preview.changes.iter().take(PREVIEW_ROWS) {
            let _ = write!(
                out,
                "<tr><td>{}</td><td><a href=\"/stock/{}\">{}</a></td><td class=\"num\">{}</td><td class=\"num\">{} {}</td></tr>",
                esc(c.channel.as_str()),
                url_part(c.sku.as_str()),
                esc(c.sku.as_str()),
                c.from.quantity,
                c.to.quantity,
                if c.to.quantity > c.from.quantity { "↑" } else if c.to.quantity < c.from.quantity { "↓" } else { "" }
            );
        }
        out.push_str("</tbody></table></div>");
        if s.changed > PREVIEW_ROWS {
            let _ = write!(
                out,
                "<p class=\"hint\">The first {PREVIEW_ROWS} of {} changes.</p>",
                thousands(s.changed as i64)
            );
        }
    }
    if viewer.role >= Role::Admin {
        let _ = write!(
            out,
            "<form method=\"post\" action=\"/rules/apply\" class=\"apply\">{}\
             <textarea name=\"rules\" hidden>{}</textarea>\
             <label for=\"apply-message\">Why (kept with the version)</label>\
             <input id=\"apply-message\" name=\"message\" required maxlength=\"{TEXT_LEN_MAX}\" value=\"{}\">\
             <button id=\"apply\">Apply as a new version</button></form>",
            csrf_field(viewer),
            esc(text),
            esc(message)
        );
    }
    out.push_str("</section>");
    out
}

async fn render(
    console: &Console,
    viewer: &Viewer,
    state: EditorState,
    flash: Option<String>,
) -> Response {
    let store = &*console.app.store;
    let active = match store.active_rules().await {
        Ok(a) => a,
        Err(e) => return storage_error(viewer, e),
    };
    let versions = match store.rules_versions().await {
        Ok(v) => v,
        Err(e) => return storage_error(viewer, e),
    };
    let text = state.text.clone().unwrap_or_else(|| {
        let doc = active
            .as_ref()
            .map(|a| a.document.clone())
            .unwrap_or_default();
        serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".into())
    });
    let mut body = String::new();
    match &active {
        Some(a) => {
            let _ = write!(
                body,
                "<p class=\"lead\" id=\"active-version\">Active: version <b>{}</b> — “{}” by {}, {}</p>",
                a.version,
                esc(&a.message),
                esc(&a.author),
                a.created_at.format("%Y-%m-%d %H:%M UTC")
            );
        }
        None => body.push_str(
            "<p class=\"lead\" id=\"active-version\">No rules applied yet: every channel sees its whole pool.</p>",
        ),
    }
    body.push_str(&problems_list(&state.problems));
    let admin = viewer.role >= Role::Admin;
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/rules/preview\" class=\"editor\">{}\
         <label for=\"rules\">Rules document (JSON)</label>\
         <textarea id=\"rules\" name=\"rules\" rows=\"18\" spellcheck=\"false\"{}>{}</textarea>\
         <input type=\"hidden\" name=\"message\" value=\"{}\">{}</form>",
        csrf_field(viewer),
        if admin { "" } else { " readonly" },
        esc(&text),
        esc(&state.message),
        if admin {
            "<button id=\"preview-button\">Preview the impact</button>"
        } else {
            "<p class=\"hint\">Read-only: changing rules needs an admin token.</p>"
        },
    );
    if let Some(preview) = &state.preview {
        body.push_str(&preview_section(viewer, preview, &text, &state.message));
    }
    body.push_str("<h2>Versions</h2><div class=\"scroll\"><table id=\"versions\"><thead><tr><th class=\"num\">Version</th><th>When</th>\
                   <th>Who</th><th>Why</th><th></th></tr></thead><tbody>");
    if versions.is_empty() {
        body.push_str("<tr><td colspan=\"5\">None yet.</td></tr>");
    }
    let newest = versions.last().map(|v| v.version);
    for v in versions.iter().rev() {
        let rollback = if admin && Some(v.version) != newest {
            format!(
                "<form class=\"inline\" method=\"post\" action=\"/rules/rollback\">{}\
                 <input type=\"hidden\" name=\"version\" value=\"{}\">\
                 <input name=\"message\" aria-label=\"Why roll back\" required maxlength=\"{TEXT_LEN_MAX}\" value=\"Roll back to version {}\">\
                 <button>Roll back</button></form>",
                csrf_field(viewer),
                v.version,
                v.version
            )
        } else {
            String::new()
        };
        let _ = write!(
            body,
            "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"actions\">\
             <a href=\"/rules/diff?from={}&amp;to={}\">diff</a> {rollback}</td></tr>",
            v.version,
            v.created_at.format("%Y-%m-%d %H:%M"),
            esc(&v.author),
            esc(&v.message),
            v.version - 1,
            v.version,
        );
    }
    body.push_str("</tbody></table></div>");
    let status = if state.problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    html::html_response(
        status,
        html::page("Rules", "/rules", Some(viewer), flash.as_deref(), &body),
    )
}

#[derive(Deserialize)]
pub struct RulesQuery {
    applied: Option<u32>,
    changed: Option<usize>,
}

/// `GET /rules`.
pub async fn page(
    State(console): State<Console>,
    viewer: Viewer,
    Query(query): Query<RulesQuery>,
) -> Response {
    let flash = query.applied.map(|v| {
        format!(
            "Version {v} is active; {} listings change.",
            thousands(query.changed.unwrap_or(0) as i64)
        )
    });
    render(&console, &viewer, EditorState::default(), flash).await
}

#[derive(Deserialize)]
pub struct RulesForm {
    csrf: Option<String>,
    rules: Option<String>,
    message: Option<String>,
}

/// The posted document, or the problems that keep it from being one.
fn parse_document(text: &str) -> Result<RulesDocument, Vec<ErrorDetail>> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        vec![ErrorDetail {
            index: None,
            field: None,
            key: None,
            code: Some("malformed_json".into()),
            message: format!("not valid JSON: {e}"),
        }]
    })?;
    input::parse_rules_document(&value).map_err(|errors| input::rule_details(&errors))
}

fn problems_of(e: ApiError) -> Result<Vec<ErrorDetail>, ApiError> {
    match e {
        ApiError::Invalid {
            details, message, ..
        } => Ok(if details.is_empty() {
            vec![ErrorDetail {
                index: None,
                field: None,
                key: None,
                code: None,
                message,
            }]
        } else {
            details
        }),
        other => Err(other),
    }
}

/// `POST /rules/preview`.
pub async fn preview(
    State(console): State<Console>,
    viewer: Viewer,
    Form(form): Form<RulesForm>,
) -> Response {
    if let Some(refused) = viewer.refusal(form.csrf.as_deref(), Role::Admin) {
        return refused;
    }
    let text = form.rules.unwrap_or_default();
    let message = form.message.unwrap_or_default();
    let mut state = EditorState {
        text: Some(text.clone()),
        message,
        ..EditorState::default()
    };
    match parse_document(&text) {
        Err(problems) => state.problems = problems,
        Ok(doc) => match api::preview(&*console.app.store, &doc, Utc::now()).await {
            Ok(p) => state.preview = Some(p),
            Err(e) => match problems_of(e) {
                Ok(problems) => state.problems = problems,
                Err(e) => return storage_error(&viewer, e),
            },
        },
    }
    render(&console, &viewer, state, None).await
}

/// `POST /rules/apply`.
pub async fn apply(
    State(console): State<Console>,
    viewer: Viewer,
    Form(form): Form<RulesForm>,
) -> Response {
    if let Some(refused) = viewer.refusal(form.csrf.as_deref(), Role::Admin) {
        return refused;
    }
    let text = form.rules.unwrap_or_default();
    let message = form.message.unwrap_or_default();
    let mut state = EditorState {
        text: Some(text.clone()),
        message: message.clone(),
        ..EditorState::default()
    };
    let message = message.trim().to_string();
    if message.is_empty() || message.chars().count() > TEXT_LEN_MAX {
        state.problems = vec![ErrorDetail {
            index: None,
            field: Some("message".into()),
            key: None,
            code: Some("invalid_message".into()),
            message: format!("say why, in 1 to {TEXT_LEN_MAX} characters"),
        }];
        return render(&console, &viewer, state, None).await;
    }
    let doc = match parse_document(&text) {
        Ok(doc) => doc,
        Err(problems) => {
            state.problems = problems;
            return render(&console, &viewer, state, None).await;
        }
    };
    match api::apply(
        &*console.app.store,
        doc,
        message,
        viewer.caller.clone(),
        Utc::now(),
    )
    .await
    {
        Ok(applied) => {
            tracing::info!(caller = %viewer.caller, version = applied.version, "rules applied from the console");
            redirect(&format!(
                "/rules?applied={}&changed={}",
                applied.version, applied.summary.changed
            ))
        }
        Err(e) => match problems_of(e) {
            Ok(problems) => {
                state.problems = problems;
                render(&console, &viewer, state, None).await
            }
            Err(e) => storage_error(&viewer, e),
        },
    }
}

#[derive(Deserialize)]
pub struct RollbackForm {
    csrf: Option<String>,
    version: Option<u32>,
    message: Option<String>,
}

/// `POST /rules/rollback`.
pub async fn rollback(
    State(console): State<Console>,
    viewer: Viewer,
    Form(form): Form<RollbackForm>,
) -> Response {
    if let Some(refused) = viewer.refusal(form.csrf.as_deref(), Role::Admin) {
        return refused;
    }
    let message = form.message.unwrap_or_default().trim().to_string();
    let Some(version) = form.version else {
        return html::error_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(&viewer),
            "Which version?",
        );
    };
    if message.is_empty() || message.chars().count() > TEXT_LEN_MAX {
        return html::error_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(&viewer),
            &format!("Say why, in 1 to {TEXT_LEN_MAX} characters."),
        );
    }
    match api::rollback(
        &*console.app.store,
        version,
        message,
        viewer.caller.clone(),
        Utc::now(),
    )
    .await
    {
        Ok(applied) => {
            tracing::info!(caller = %viewer.caller, version = applied.version, from = version, "rules rolled back from the console");
            redirect(&format!(
                "/rules?applied={}&changed={}",
                applied.version, applied.summary.changed
            ))
        }
        Err(ApiError::NotFound { message, .. }) => {
            html::error_page(StatusCode::NOT_FOUND, Some(&viewer), &message)
        }
        Err(e) => match problems_of(e) {
            Ok(problems) => {
                let state = EditorState {
                    problems,
                    ..EditorState::default()
                };
                render(&console, &viewer, state, None).await
            }
            Err(e) => storage_error(&viewer, e),
        },
    }
}

#[derive(Deserialize)]
pub struct DiffQuery {
    from: u32,
    to: u32,
}

fn json_text(v: &serde_json::Value) -> String {
    if v.is_null() {
        "–".into()
    } else {
        v.to_string()
    }
}

/// `GET /rules/diff?from=&to=`.
pub async fn diff(
    State(console): State<Console>,
    viewer: Viewer,
    Query(query): Query<DiffQuery>,
) -> Response {
    let diff = match api::diff(&*console.app.store, query.from, query.to).await {
        Ok(d) => d,
        Err(ApiError::NotFound { message, .. }) => {
            return html::error_page(StatusCode::NOT_FOUND, Some(&viewer), &message)
        }
        Err(e) => return storage_error(&viewer, e),
    };
    let mut body = String::from(
        "<div class=\"scroll\"><table id=\"diff\"><thead><tr><th>Field</th><th>From</th><th>To</th></tr></thead><tbody>",
    );
    if diff.changes.is_empty() {
        body.push_str("<tr><td colspan=\"3\">The two versions are the same.</td></tr>");
    }
    for c in &diff.changes {
        let _ = write!(
            body,
            "<tr><td><code>{}</code></td><td class=\"from\">{}</td><td class=\"to\">{}</td></tr>",
            esc(&c.path),
            esc(&json_text(&c.from)),
            esc(&json_text(&c.to))
        );
    }
    body.push_str("</tbody></table></div><p><a href=\"/rules\">← Rules</a></p>");
    html::html_response(
        StatusCode::OK,
        html::page(
            &format!("Rules: version {} → {}", diff.from, diff.to),
            "/rules",
            Some(&viewer),
            None,
            &body,
        ),
    )
}
