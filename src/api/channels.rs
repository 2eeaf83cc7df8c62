//! `/v1/channels`: live channels. Those created here persist and come back after a restart;
//! those of the configuration file are listed too, read-only. The daemon owns the channels;
//! this module only speaks HTTP to it through [`ChannelControl`].

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::future::BoxFuture;
use serde::Serialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{Api, Problem};

/// A channel as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChannelInfo {
    pub name: String,
    /// `config` (the configuration file's, read-only) or `api`.
    #[schema(value_type = String)]
    pub source: &'static str,
    /// starting, on_air, on_slate, stopped, standby (in a fleet: carried by another node, or
    /// by none yet), or failed (a channel that could not start; `error` says why).
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Times a rung or the audio failed and was restarted since the channel started.
    pub restarts: u64,
    pub input: String,
    /// The channel's fields, as given (defaults filled in).
    #[schema(value_type = Object)]
    pub spec: serde_json::Value,
    /// In a fleet: the node that carries the channel now (the others keep it on standby).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub hls: String,
    pub dash: String,
    pub renditions: Vec<RenditionInfo>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RenditionInfo {
    pub id: String,
    /// Media seconds encoded per wall-clock second over the last few seconds (1.0 keeps up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub realtime_ratio: Option<f64>,
    /// Frames encoded since the channel started.
    pub frames_encoded: u64,
}

/// What the daemon does for the API.
pub trait ChannelControl: Send + Sync {
    fn list(&self) -> Vec<ChannelInfo>;
    /// Starts and persists a channel from a JSON body with the configuration's fields.
    fn create(
        self: Arc<Self>,
        body: serde_json::Value,
    ) -> BoxFuture<'static, Result<ChannelInfo, Problem>>;
    /// Stops an API channel (its playlists end with EXT-X-ENDLIST) and forgets it.
    fn remove(self: Arc<Self>, name: String) -> BoxFuture<'static, Result<(), Problem>>;
}

pub fn routes() -> OpenApiRouter<Api> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, remove))
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ChannelList {
    channels: Vec<ChannelInfo>,
}

#[utoipa::path(get, operation_id = "list_channels", path = "/channels", tag = "channels",
    responses(
        (status = 200, description = "Every channel, the configuration file's too", body = ChannelList),
        (status = 401, description = "No or wrong bearer token", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list(State(api): State<Api>) -> Json<ChannelList> {
    Json(ChannelList {
        channels: api.channels.list(),
    })
}

#[utoipa::path(get, operation_id = "show_channel", path = "/channels/{name}", tag = "channels",
    params(("name" = String, Path)),
    responses(
        (status = 200, description = "The channel", body = ChannelInfo),
        (status = 401, description = "No or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
    ))]
async fn show(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Json<ChannelInfo>, Problem> {
    api.channels
        .list()
        .into_iter()
        .find(|c| c.name == name)
        .map(Json)
        .ok_or_else(|| Problem::not_found(format!("no channel {name:?}")))
}

/// Starts a channel; the body has the fields of the configuration file's `[[channels]]`.
#[utoipa::path(post, operation_id = "create_channel", path = "/channels", tag = "channels",
    request_body(content = Object, description = "name, input, format, ladder, codec, segment_duration, dvr_window, …"),
    responses(
        (status = 201, description = "On its way to the air", body = ChannelInfo),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Conflict", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Wrong values, each named by JSON pointer", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable (see Retry-After)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create(State(api): State<Api>, body: Bytes) -> Result<Response, Problem> {
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")))?;
    let info = api.channels.clone().create(value).await?;
    let location = format!("/v1/channels/{}", info.name);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(info),
    )
        .into_response())
}

/// Ends an API channel: its playlists get EXT-X-ENDLIST; it does not come back.
#[utoipa::path(delete, operation_id = "delete_channel", path = "/channels/{name}", tag = "channels",
    params(("name" = String, Path)),
    responses(
        (status = 204, description = "Ended and forgotten"),
        (status = 401, description = "No or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Conflict", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable (see Retry-After)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn remove(State(api): State<Api>, Path(name): Path<String>) -> Result<StatusCode, Problem> {
    api.channels.clone().remove(name).await?;
    Ok(StatusCode::NO_CONTENT)
}
