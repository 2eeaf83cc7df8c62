//! `/v1/nodes`: the fleet on this store, each node's load and health, and draining for
//! rolling upgrades (a drained node claims no new job; what runs there finishes).

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{Api, Problem};
use crate::jobs::fleet::NodeView;

pub fn routes() -> OpenApiRouter<Api> {
    OpenApiRouter::new()
        .routes(routes!(this_node))
        .routes(routes!(list))
        .routes(routes!(show))
        .routes(routes!(drain))
        .routes(routes!(resume))
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct NodeList {
    nodes: Vec<NodeView>,
}

/// The node answering: what its probe found (each backend usable or not, and why), its
/// capacity and load, and its NVENC sessions.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ThisNode {
    name: String,
    /// The hw-profile that matched this machine.
    profile: Option<String>,
    backends: Vec<BackendView>,
    /// Capacity units, and those in use by its jobs and live channels.
    capacity: f64,
    used: f64,
    /// NVENC encode sessions open, and the driver's cap (none: no cap known).
    nvenc_sessions_open: u32,
    nvenc_sessions_cap: Option<u32>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct BackendView {
    /// nvenc, vaapi or software.
    name: String,
    usable: bool,
    /// Why not, when not usable; a caveat otherwise.
    reason: Option<String>,
}

#[utoipa::path(get, operation_id = "this_node", path = "/node", tag = "nodes",
    responses(
        (status = 200, description = "The node answering", body = ThisNode),
        (status = 401, description = "No or wrong bearer token", body = Problem, content_type = "application/problem+json"),
    ))]
async fn this_node(State(api): State<Api>) -> Json<ThisNode> {
    let settings = &api.service.settings;
    let nvenc = &crate::encode::backend::nvenc::SESSIONS;
    Json(ThisNode {
        name: settings.node.clone(),
        profile: settings.profile.clone(),
        backends: settings
            .probed
            .iter()
            .map(|b| BackendView {
                name: b.name.clone(),
                usable: b.usable,
                reason: b.reason.clone(),
            })
            .collect(),
        capacity: settings.capacity,
        used: api.service.used_milli() as f64 / 1000.0,
        nvenc_sessions_open: nvenc.open(),
        nvenc_sessions_cap: nvenc.cap(),
    })
}

#[utoipa::path(get, operation_id = "list_nodes", path = "/nodes", tag = "nodes",
    responses(
        (status = 200, description = "Every node that registered on this store", body = NodeList),
        (status = 401, description = "No or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable (see Retry-After)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list(State(api): State<Api>) -> Result<Json<NodeList>, Problem> {
    let nodes = api.service.store.nodes(api.service.lease_ms()).await?;
    Ok(Json(NodeList { nodes }))
}

#[utoipa::path(get, operation_id = "show_node", path = "/nodes/{name}", tag = "nodes",
    params(("name" = String, Path)),
    responses(
        (status = 200, description = "The node", body = NodeView),
        (status = 401, description = "No or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such node", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable (see Retry-After)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn show(State(api): State<Api>, Path(name): Path<String>) -> Result<Json<NodeView>, Problem> {
    match api
        .service
        .store
        .node(&name, api.service.lease_ms())
        .await?
    {
        Some(node) => Ok(Json(node)),
        None => Err(no_node(&name)),
    }
}

/// The node claims no new job from now on (it keeps the mark across restarts).
#[utoipa::path(post, operation_id = "drain_node", path = "/nodes/{name}/drain", tag = "nodes",
    params(("name" = String, Path)),
    responses(
        (status = 200, description = "Draining", body = NodeView),
        (status = 401, description = "No or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such node", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable (see Retry-After)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn drain(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Json<NodeView>, Problem> {
    set_draining(&api, &name, true).await
}

/// The node claims jobs again.
#[utoipa::path(post, operation_id = "resume_node", path = "/nodes/{name}/resume", tag = "nodes",
    params(("name" = String, Path)),
    responses(
        (status = 200, description = "Claiming again", body = NodeView),
        (status = 401, description = "No or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such node", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable (see Retry-After)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn resume(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Json<NodeView>, Problem> {
    let node = set_draining(&api, &name, false).await?;
    // Perhaps this very node: look at the queue now.
    api.service.queued();
    Ok(node)
}

async fn set_draining(api: &Api, name: &str, draining: bool) -> Result<Json<NodeView>, Problem> {
    let lease = api.service.lease_ms();
    match api
        .service
        .store
        .set_draining(name, draining, lease)
        .await?
    {
        Some(node) => {
            tracing::info!(node = %name, draining, "node drain set over the API");
            Ok(Json(node))
        }
        None => Err(no_node(name)),
    }
}

fn no_node(name: &str) -> Problem {
    Problem::not_found(format!("no node {name:?} has registered on this store"))
}
