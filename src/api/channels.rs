//! `/v1/channels`: live channels. Those created here persist and come back after a restart;
//! those of the configuration file are listed too, read-only. The daemon owns the channels;
//! this module only speaks HTTP to it through [`ChannelControl`].

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::future::BoxFuture;
use serde::Serialize;

use super::{Api, Problem};

/// A channel as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelInfo {
    pub name: String,
    /// `config` (the configuration file's, read-only) or `api`.
    pub source: &'static str,
    /// starting, on_air, on_slate or stopped.
    pub state: String,
    pub input: String,
    /// The channel's fields, as given (defaults filled in).
    pub spec: serde_json::Value,
    pub hls: String,
    pub dash: String,
    pub renditions: Vec<RenditionInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RenditionInfo {
    pub id: String,
    /// Media seconds encoded per wall-clock second over the last few seconds (1.0 keeps up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub realtime_ratio: Option<f64>,
}

/// What the daemon does for the API.
pub trait ChannelControl: Send + Sync {
    fn list(&self) -> Vec<ChannelInfo>;
    /// Starts and persists a channel from a JSON body with the configuration's fields.
    fn create(self: Arc<Self>, body: serde_json::Value) -> BoxFuture<'static, Result<ChannelInfo, Problem>>;
    /// Stops an API channel (its playlists end with EXT-X-ENDLIST) and forgets it.
    fn remove(self: Arc<Self>, name: String) -> BoxFuture<'static, Result<(), Problem>>;
}

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/channels", get(list).post(create))
        .route("/channels/{name}", get(show).delete(remove))
}

#[derive(Serialize)]
struct ChannelList {
    channels: Vec<ChannelInfo>,
}

async fn list(State(api): State<Api>) -> Json<ChannelList> {
    Json(ChannelList {
        channels: api.channels.list(),
    })
}

async fn show(State(api): State<Api>, Path(name): Path<String>) -> Result<Json<ChannelInfo>, Problem> {
    api.channels
        .list()
        .into_iter()
        .find(|c| c.name == name)
        .map(Json)
        .ok_or_else(|| Problem::not_found(format!("no channel {name:?}")))
}

async fn create(State(api): State<Api>, body: Bytes) -> Result<Response, Problem> {
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")))?;
    let info = api.channels.clone().create(value).await?;
    let location = format!("/v1/channels/{}", info.name);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(info)).into_response())
}

async fn remove(State(api): State<Api>, Path(name): Path<String>) -> Result<StatusCode, Problem> {
    api.channels.clone().remove(name).await?;
    Ok(StatusCode::NO_CONTENT)
}
