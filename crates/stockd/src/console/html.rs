//! HTML rendering: one escaping function, the page frame, and small helpers
//! every page uses. Pages build strings with `write!`; anything that came
//! from data passes through `esc` (text and attribute values alike).

use super::session::Viewer;
use crate::auth::Role;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::fmt::{self, Display, Write};

/// Text escaped for HTML element content and quoted attribute values.
pub struct Esc<'a>(pub &'a str);

impl Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

/// Escapes `s` for HTML.
pub fn esc(s: &str) -> Esc<'_> {
    Esc(s)
}

/// A path segment percent-encoded for use in a URL (SKUs may hold `/`, `#`, `?`, …).
pub fn url_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The navigation entries: (path, label).
const NAV: &[(&str, &str)] = &[
    ("/", "Overview"),
    ("/stock", "Stock"),
    ("/channels", "Channels"),
    ("/returns", "Returns"),
    ("/rules", "Rules"),
    ("/quarantine", "Quarantine"),
    ("/inbound", "Rejected"),
];

/// Security headers of every console response: only our own assets, no
/// framing, no caching of pages that show stock.
fn secure(response: &mut Response) {
    let headers = response.headers_mut();
    let set = |headers: &mut axum::http::HeaderMap, name: &'static str, value: &'static str| {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    };
    set(
        headers,
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    );
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "referrer-policy", "same-origin");
    set(headers, "x-frame-options", "DENY");
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// An HTML response with the console's headers.
pub fn html_response(status: StatusCode, body: String) -> Response {
    let mut response = (
        status,
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        body,
    )
        .into_response();
    secure(&mut response);
    response
}

/// A full page: head, navigation (with `active` highlighted), the signed-in
/// caller, a flash message, then `body`.
pub fn page(
    title: &str,
    active: &str,
    viewer: Option<&Viewer>,
    flash: Option<&str>,
    body: &str,
) -> String {
    page_with_head(title, active, viewer, flash, "", body)
}

/// A full page with `head` (trusted markup, never data) added to its head.
pub fn page_with_head(
    title: &str,
    active: &str,
    viewer: Option<&Viewer>,
    flash: Option<&str>,
    head: &str,
    body: &str,
) -> String {
    let mut out = String::with_capacity(body.len() + 2048);
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · stockd</title><link rel=\"stylesheet\" href=\"/console/assets/console.css\">\
         <script src=\"/console/assets/console.js\" defer></script>{head}</head><body>\
         <header><a class=\"brand\" href=\"/\">stockd</a><nav>",
        esc(title)
    );
    if viewer.is_some() {
        for (path, label) in NAV {
            let current = if *path == active {
                " aria-current=\"page\""
            } else {
                ""
            };
            let _ = write!(out, "<a href=\"{path}\"{current}>{label}</a>");
        }
    }
    out.push_str("</nav>");
    if let Some(v) = viewer {
        let _ = write!(
            out,
            "<form class=\"who\" method=\"post\" action=\"/signout\">{}\
             <span id=\"who\">{} · {}</span> <button class=\"link\">Sign out</button></form>",
            csrf_field(v),
            esc(&v.caller),
            v.role.as_str()
        );
    }
    out.push_str("</header><main>");
    if let Some(message) = flash {
        let _ = write!(
            out,
            "<p class=\"flash\" role=\"status\">{}</p>",
            esc(message)
        );
    }
    let _ = write!(out, "<h1>{}</h1>", esc(title));
    out.push_str(body);
    out.push_str("</main></body></html>");
    out
}

/// The hidden CSRF field every form carries.
pub fn csrf_field(viewer: &Viewer) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(&viewer.csrf)
    )
}

/// A one-button form that POSTs to `action` — rendered only for a viewer
/// whose role allows it (the handler checks again).
pub fn action_button(
    viewer: &Viewer,
    needs: Role,
    action: &str,
    label: &str,
    class: &str,
) -> String {
    if viewer.role < needs {
        return String::new();
    }
    format!(
        "<form class=\"inline\" method=\"post\" action=\"{}\">{}<button class=\"{class}\">{}</button></form>",
        esc(action),
        csrf_field(viewer),
        esc(label)
    )
}

/// An error page.
pub fn error_page(status: StatusCode, viewer: Option<&Viewer>, message: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    let body = format!("<p class=\"error\">{}</p>", esc(message));
    html_response(status, page(title, "", viewer, None, &body))
}

/// A number with thousands separators (1234567 → "1,234,567").
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A duration in seconds, short ("850 ms", "4.2 s", "3 min", "2 h").
pub fn duration_s(seconds: f64) -> String {
    if seconds < 1.0 {
        format!("{:.0} ms", seconds * 1000.0)
    } else if seconds < 60.0 {
        format!("{seconds:.1} s")
    } else if seconds < 3600.0 {
        format!("{:.0} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_special_character() {
        assert_eq!(
            esc("<a href=\"x\">Tom & Jerry's</a>").to_string(),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#39;s&lt;/a&gt;"
        );
        assert_eq!(esc("plain").to_string(), "plain");
    }

    #[test]
    fn url_parts_are_percent_encoded() {
        assert_eq!(url_part("A/B C#1"), "A%2FB%20C%231");
        assert_eq!(url_part("SKU-1.x_~"), "SKU-1.x_~");
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(-1000), "-1,000");
        assert_eq!(thousands(12), "12");
        assert_eq!(duration_s(0.25), "250 ms");
        assert_eq!(duration_s(4.24), "4.2 s");
    }
}
