//! The web console at `/`: a static page built into the binary (console/ in the source tree,
//! with its players vendored at pinned versions), which talks to `/v1` and `/metrics` with the
//! token the user gives it. The page itself is public: it holds no data.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// The console's files: name, content type, bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../console/app.css"),
    ),
    (
        "vendor/hls.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/vendor/hls.min.js"),
    ),
    (
        "vendor/dash.all.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/vendor/dash.all.min.js"),
    ),
];

const INDEX: &[u8] = include_bytes!("../../console/index.html");

/// Scripts and styles from the daemon only; media and manifests from any origin the API names
/// (the origin may listen apart from the API); the players' workers and media from blobs.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self' http: https:; media-src 'self' blob: http: https:; \
     worker-src 'self' blob:; frame-ancestors 'none'";

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { file("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/console/{*file}",
            get(|Path(name): Path<String>| async move {
                match FILES.iter().find(|(n, _, _)| *n == name) {
                    Some((_, content_type, bytes)) => file(content_type, bytes),
                    None => (StatusCode::NOT_FOUND, "no such console file\n").into_response(),
                }
            }),
        )
}

fn file(content_type: &str, bytes: &'static [u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // Revalidated each time, so an upgraded daemon serves its own console.
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        ],
        bytes,
    )
        .into_response()
}
