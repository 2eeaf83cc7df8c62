//! The REST control plane under `/v1`: jobs, templates, channels; RFC 9457 problem details for
//! every error; bearer-token auth when a token is configured; `/healthz` and `/readyz`.

mod channels;
pub mod client;
mod console;
mod jobs;
mod nodes;
mod problem;
mod templates;

use std::sync::Arc;

use crate::origin::same_secret;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;

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

/// The OpenAPI document's frame: what the handlers do not say themselves.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Encore",
        description = "Jobs, templates and live channels of an Encore node. Errors are RFC 9457 \
            problem details (application/problem+json). When the node has a token, every /v1 \
            request needs `Authorization: Bearer TOKEN`."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "jobs", description = "VOD transcodes: submit, watch, cancel, retry"),
        (name = "templates", description = "Named sets of job options"),
        (name = "channels", description = "Live channels"),
        (name = "nodes", description = "The fleet: load, health, draining"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document of `/v1`, generated from the handlers and their types.
pub fn openapi() -> utoipa::openapi::OpenApi {
    v1().split_for_parts().1
}

fn v1() -> OpenApiRouter<Api> {
    OpenApiRouter::with_openapi(ApiDoc::openapi()).nest(
        "/v1",
        OpenApiRouter::new()
            .merge(jobs::routes())
            .merge(templates::routes())
            .merge(channels::routes())
            .merge(nodes::routes()),
    )
}

/// `/v1`, `/openapi.json` and `/readyz` (`/healthz` is the origin's, and the API listener's
/// own when apart).
pub fn router(api: Api) -> Router {
    let (v1, doc) = v1().split_for_parts();
    let doc = Arc::new(doc.to_json().expect("the OpenAPI document serializes"));
    let v1 = v1
        .route(
            "/v1/{*rest}",
            any(|| async { Problem::not_found("no such resource") }),
        )
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this resource",
            )
        })
        .route_layer(middleware::from_fn_with_state(api.clone(), authorize))
        .layer(middleware::from_fn(as_problem))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    let metrics = Router::new()
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(api.clone(), authorize));
    v1.merge(metrics)
        .merge(console::routes())
        .route("/readyz", get(ready))
        .route(
            "/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        doc.as_str().to_owned(),
                    )
                }
            }),
        )
        .with_state(api)
}

/// Errors made outside the handlers (a body too large, a path that is not UTF-8) become
/// problem details too.
async fn as_problem(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/problem+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
    let body = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .unwrap_or_default();
    let detail = String::from_utf8_lossy(&body).trim().to_string();
    let mut problem = Problem::new(
        status,
        if detail.is_empty() {
            status.to_string()
        } else {
            detail
        },
    )
    .into_response();
    if let Some(r) = retry_after {
        problem.headers_mut().insert(header::RETRY_AFTER, r);
    }
    problem
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
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            "Bearer".parse().expect("static value"),
        );
        response
    }
}

/// Prometheus text (behind the token, when one is set).
async fn metrics(State(api): State<Api>) -> Response {
    let channels = api.channels.list();
    let samples: Vec<crate::telemetry::ChannelSample> = channels
        .iter()
        .map(|c| crate::telemetry::ChannelSample {
            name: &c.name,
            state: &c.state,
            restarts: c.restarts,
            rungs: c
                .renditions
                .iter()
                .map(|r| (r.id.as_str(), r.realtime_ratio, r.frames_encoded))
                .collect(),
        })
        .collect();
    crate::telemetry::record_channels(&samples);
    let text = crate::telemetry::render(&api.service).await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
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
