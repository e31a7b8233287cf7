//! The web console at `/console`: one self-contained page (HTML, CSS and JavaScript embedded in
//! the binary, nothing fetched from elsewhere) that uses the public API from the browser.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::sync::LazyLock;

const HTML: &str = include_str!("console/index.html");
const STYLE: &str = include_str!("console/console.css");
const SCRIPT: &str = include_str!("console/console.js");

/// Inlined into one document, so that the page works whatever path prefix serves it (an API
/// Gateway stage, with or without a trailing slash) and loads in one request.
static PAGE: LazyLock<String> = LazyLock::new(|| {
    HTML.replacen("/*STYLE*/", STYLE, 1)
        .replacen("/*SCRIPT*/", SCRIPT, 1)
});

pub async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Only this page's own inline code and same-origin API calls.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
                 frame-ancestors 'none'",
            ),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE.as_str(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_self_contained() {
        assert!(PAGE.contains("const ACTIONS"), "the script is inlined");
        assert!(PAGE.contains("--accent"), "the style is inlined");
        assert!(!PAGE.contains("/*SCRIPT*/") && !PAGE.contains("/*STYLE*/"));
        for loads in ["src=", "href=", "@import", "url("] {
            assert!(
                !PAGE.contains(loads),
                "the page loads nothing else ({loads})"
            );
        }
        assert!(
            PAGE.len() < 40_000,
            "the page stays small: {} bytes",
            PAGE.len()
        );
    }
}
