//! The REST control plane under `/v1`: jobs, templates, channels; RFC 9457 problem details for
//! every error; bearer-token auth when a token is configured; `/healthz` and `/readyz`.

mod channels;
mod jobs;
mod problem;
mod templates;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use sha2::{Digest, Sha256};

pub use channels::{ChannelControl, ChannelInfo, RenditionInfo};
pub use problem::Problem;

use crate::jobs::Service;

/// Request bodies above this are refused (413): job and channel bodies are a few KiB.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

#[derive(Clone)]
pub struct Api {
    pub service: Arc<Service>,
    pub channels: Arc<dyn ChannelControl>,
    /// The bearer token every `/v1` request must carry; none = open.
    pub token: Option<Arc<str>>,
}

/// `/v1` and `/readyz` (`/healthz` is the origin's, and the API listener's own when apart).
pub fn router(api: Api) -> Router {
    let v1 = Router::new()
        .merge(jobs::routes())
        .merge(templates::routes())
        .merge(channels::routes())
        .fallback(|| async { Problem::not_found("no such resource") })
        .method_not_allowed_fallback(|| async {
            Problem::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this resource")
        })
        .layer(middleware::from_fn_with_state(api.clone(), authorize))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    Router::new()
        .nest("/v1", v1)
        .route("/readyz", get(ready))
        .with_state(api)
}

async fn authorize(State(api): State<Api>, request: Request, next: Next) -> Response {
    let Some(token) = api.token.as_deref() else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if same_secret(given, token) {
        next.run(request).await
    } else {
        let mut response = Problem::new(
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required (Authorization: Bearer …)",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("static value"));
        response
    }
}

/// Compares digests, so the time taken says nothing about the token (nor its length).
fn same_secret(given: &str, expected: &str) -> bool {
    let (a, b) = (Sha256::digest(given.as_bytes()), Sha256::digest(expected.as_bytes()));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Ready: the store answers and the node knows its capacity.
async fn ready(State(api): State<Api>) -> Response {
    let store = api.service.store.ping().await;
    let capacity = api.service.settings.capacity;
    let body = serde_json::json!({
        "store": store,
        "capacity_units": capacity,
        "used_units": api.service.used_milli() as f64 / 1000.0,
    });
    let status = if store && capacity > 0.0 {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_compare_by_content_only() {
        assert!(super::same_secret("abc", "abc"));
        assert!(!super::same_secret("abd", "abc"));
        assert!(!super::same_secret("", "abc"));
    }
}
