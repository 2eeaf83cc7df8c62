//! `/v1/jobs`: submit (idempotent with `Idempotency-Key`), list, show, cancel, retry, and the
//! job's event stream (Server-Sent Events, resumable with `Last-Event-ID`).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, Stream};
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{Api, Problem};
use crate::jobs::options::{FieldError, Options};
use crate::jobs::store::{Cancel, Inserted, NewJob};
use crate::jobs::{JobRequest, JobView, State as JobState};

const ID: &str = "The job's id";

pub fn routes() -> OpenApiRouter<Api> {
    OpenApiRouter::new()
        .routes(routes!(submit, list))
        .routes(routes!(show, cancel))
        .routes(routes!(retry))
        .routes(routes!(events))
}

const MAX_PAGE: i64 = 200;
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Submits a job: 201 with the job, queued.
#[utoipa::path(post, operation_id = "submit_job", path = "/jobs", tag = "jobs",
    request_body = JobRequest,
    params(("Idempotency-Key" = Option<String>, Header,
        description = "The same key and body return the first job (200); another body gets 409")),
    responses(
        (status = 201, description = "Queued", body = JobView),
        (status = 200, description = "The job this Idempotency-Key made before", body = JobView),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Conflict", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Wrong values, each named by JSON pointer", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many queued jobs (see Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable (see Retry-After)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn submit(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => match v.to_str() {
            Ok(k) if !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY => Some(k.to_string()),
            _ => {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "Idempotency-Key must be 1 to 255 visible ASCII characters",
                ))
            }
        },
    };
    let request = JobRequest::parse(&body)?;
    let service = &api.service;
    let base = match &request.template {
        None => Options::default(),
        Some(name) if !super::templates::is_template_name(name) => {
            return Err(Problem::invalid(vec![FieldError::new(
                "/template",
                format!("no template named {name:?}"),
            )]))
        }
        Some(name) => match service.store.template(name).await? {
            Some(text) => serde_json::from_str(&text).unwrap_or_default(),
            None => {
                return Err(Problem::invalid(vec![FieldError::new(
                    "/template",
                    format!("no template named {name:?}"),
                )]))
            }
        },
    };
    let mut errors = Vec::new();
    let resolved = request
        .options
        .resolve_over(&base)
        .map_err(|e| errors.extend(e))
        .ok();
    let input = service
        .settings
        .inputs
        .check(&request.input)
        .await
        .map_err(|e| errors.push(e))
        .ok();
    if let Some(hook) = &request.webhook {
        if let Err(e) = service
            .settings
            .inputs
            .check_url(&hook.url, "/webhook/url")
            .await
        {
            errors.push(e);
        }
    }
    if request.webhook.is_some() && service.settings.webhook_secret.is_none() {
        errors.push(FieldError::new(
            "/webhook",
            "webhooks need webhook_secret in the daemon's configuration",
        ));
    }
    let (Some(options), Some(input), true) = (resolved, input, errors.is_empty()) else {
        return Err(Problem::invalid(errors));
    };
    let queued = service
        .store
        .count_by_state()
        .await?
        .into_iter()
        .find(|(s, _)| *s == JobState::Queued)
        .map_or(0, |(_, n)| n);
    if queued >= service.settings.max_queued {
        return Err(Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("{queued} jobs are queued, the most this node accepts; try again later"),
        )
        .with_retry_after(30));
    }
    // The key is bound to the request as parsed (canonical JSON: keys sorted).
    let hash = {
        let canonical = serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default();
        hex(&Sha256::digest(canonical.to_string().as_bytes()))
    };
    let cost_milli = (options.cost() * 1000.0).round().max(1.0) as i64;
    let new = NewJob {
        id: uuid::Uuid::now_v7().to_string(),
        input,
        request,
        options,
        cost_milli,
        max_attempts: service.settings.max_attempts,
        idempotency: key.map(|k| (k, hash)),
    };
    match service.store.insert_job(new).await? {
        Inserted::Created(row) => {
            let id = row.id.clone();
            service.announce(row.clone()).await;
            service.queued();
            let view = service.view(row).await?;
            let location = format!("/v1/jobs/{id}");
            Ok((
                StatusCode::CREATED,
                [(header::LOCATION, location)],
                Json(view),
            )
                .into_response())
        }
        Inserted::Existing(row) => {
            Ok((StatusCode::OK, Json(service.view(row).await?)).into_response())
        }
        Inserted::Conflict(id) => Err(Problem::conflict(format!(
            "this Idempotency-Key was used for job {id} with another body"
        ))),
    }
}

/// Job ids are UUIDs (version 7: they sort by creation); anything else names no job.
fn is_job_id(id: &str) -> bool {
    uuid::Uuid::try_parse(id).is_ok()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Page {
    jobs: Vec<JobView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// Jobs, newest first, a page at a time.
#[utoipa::path(get, operation_id = "list_jobs", path = "/jobs", tag = "jobs",
    params(
        ("state" = Option<JobState>, Query, description = "Only jobs in this state"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "Jobs per page (default 50)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of jobs", body = Page),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Wrong values, each named by JSON pointer", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable (see Retry-After)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list(
    State(api): State<Api>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Page>, Problem> {
    let mut errors = Vec::new();
    for key in query.keys() {
        if !["state", "limit", "cursor"].contains(&key.as_str()) {
            errors.push(FieldError::new(
                "",
                format!("unknown query parameter {key:?}"),
            ));
        }
    }
    let state = match query.get("state") {
        None => None,
        Some(s) => JobState::parse(s).or_else(|| {
            errors.push(FieldError::new(
                "",
                format!("state {s:?}: expected queued, running, succeeded, failed or cancelled"),
            ));
            None
        }),
    };
    let limit = match query.get("limit").map(|l| l.parse::<i64>()) {
        None => 50,
        Some(Ok(l)) if (1..=MAX_PAGE).contains(&l) => l,
        Some(_) => {
            errors.push(FieldError::new(
                "",
                format!("limit must be 1 to {MAX_PAGE}"),
            ));
            50
        }
    };
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    let cursor = query.get("cursor").filter(|c| !c.is_empty());
    if cursor.is_some_and(|c| !is_job_id(c)) {
        return Err(Problem::invalid(vec![FieldError::new(
            "",
            "cursor: not a next_cursor this API gave",
        )]));
    }
    let rows = api
        .service
        .store
        .list_jobs(state, limit + 1, cursor.map(String::as_str))
        .await?;
    let more = rows.len() as i64 > limit;
    let mut jobs = Vec::new();
    for row in rows.into_iter().take(limit as usize) {
        jobs.push(api.service.view(row).await?);
    }
    let next_cursor = more.then(|| jobs.last().map(|j| j.id.clone())).flatten();
    Ok(Json(Page { jobs, next_cursor }))
}

/// One job: state, progress, attempts, error or summary and playback URLs, webhook deliveries.
#[utoipa::path(get, operation_id = "show_job", path = "/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = ID)),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 401, description = "No or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable (see Retry-After)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn show(State(api): State<Api>, Path(id): Path<String>) -> Result<Json<JobView>, Problem> {
    if !is_job_id(&id) {
        return Err(Problem::not_found(format!("no job {id}")));
    }
    match api.service.store.job(&id).await? {
        Some(row) => Ok(Json(api.service.view(row).await?)),
        None => Err(Problem::not_found(format!("no job {id}"))),
    }
}

/// Queued: cancelled now. Running: stopped (202; the state follows within 2 s). Finished: the
/// record and its output are removed (204).
#[utoipa::path(delete, operation_id = "cancel_job", path = "/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = ID)),
    responses(
        (status = 200, description = "It was queued: cancelled", body = JobView),
        (status = 202, description = "It is running: stopping (cancelled within 2 s)", body = JobView),
        (status = 204, description = "It had finished: record and output removed"),
        (status = 401, description = "No or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable (see Retry-After)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn cancel(State(api): State<Api>, Path(id): Path<String>) -> Result<Response, Problem> {
    let service = &api.service;
    if !is_job_id(&id) {
        return Err(Problem::not_found(format!("no job {id}")));
    }
    match service.store.cancel(&id).await? {
        Cancel::Cancelled => {
            service.state_changed(&id).await;
            show(State(api.clone()), Path(id))
                .await
                .map(IntoResponse::into_response)
        }
        Cancel::Requested => {
            service.stop_local(&id);
            let view = show(State(api.clone()), Path(id)).await?;
            Ok((StatusCode::ACCEPTED, view).into_response())
        }
        Cancel::Final(_) => {
            service.store.delete_job(&id).await?;
            let out = service.settings.vod_root.join(&id);
            if out.exists() {
                if let Err(e) = std::fs::remove_dir_all(&out) {
                    tracing::warn!(job = %id, "cannot remove {}: {e}", out.display());
                }
            }
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Cancel::NotFound => Err(Problem::not_found(format!("no job {id}"))),
    }
}

/// A failed or cancelled job back in the queue.
#[utoipa::path(post, operation_id = "retry_job", path = "/jobs/{id}/retry", tag = "jobs",
    params(("id" = String, Path, description = ID)),
    responses(
        (status = 200, description = "Queued again", body = JobView),
        (status = 401, description = "No or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Conflict", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable (see Retry-After)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn retry(State(api): State<Api>, Path(id): Path<String>) -> Result<Response, Problem> {
    let service = &api.service;
    if !is_job_id(&id) {
        return Err(Problem::not_found(format!("no job {id}")));
    }
    if service
        .store
        .retry(&id, service.settings.max_attempts)
        .await?
    {
        service.state_changed(&id).await;
        service.queued();
        return show(State(api.clone()), Path(id))
            .await
            .map(IntoResponse::into_response);
    }
    match service.store.job(&id).await? {
        Some(job) => Err(Problem::conflict(format!(
            "job {id} is {}; only failed or cancelled jobs can be retried",
            job.state.as_str()
        ))),
        None => Err(Problem::not_found(format!("no job {id}"))),
    }
}

/// The stream's position: events already sent, events to send, and whether the job is over.
struct Cursor {
    api: Api,
    id: String,
    last: i64,
    pending: VecDeque<crate::jobs::store::Event>,
    wake: tokio::sync::broadcast::Receiver<String>,
    ended: bool,
}

/// The job's events as Server-Sent Events: `state` (the job) and `progress` (at most 2/s),
/// each with an `id` that `Last-Event-ID` resumes after. Ends after a final state.
#[utoipa::path(get, operation_id = "job_events", path = "/jobs/{id}/events", tag = "jobs",
    params(
        ("id" = String, Path, description = ID),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event"),
    ),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = String),
        (status = 401, description = "No or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable (see Retry-After)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn events(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    if !is_job_id(&id) || api.service.store.job(&id).await?.is_none() {
        return Err(Problem::not_found(format!("no job {id}")));
    }
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let cursor = Cursor {
        wake: api.service.subscribe(),
        api,
        id,
        last,
        pending: VecDeque::new(),
        ended: false,
    };
    let stream = event_stream(cursor);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

fn event_stream(cursor: Cursor) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    stream::unfold(cursor, |mut c| async move {
        loop {
            if let Some(e) = c.pending.pop_front() {
                c.last = e.id;
                if e.kind == "state" && is_final_state(&e.data) {
                    c.ended = true;
                }
                let event = SseEvent::default()
                    .id(e.id.to_string())
                    .event(e.kind)
                    .data(e.data);
                return Some((Ok(event), c));
            }
            if c.ended {
                return None;
            }
            match c.api.service.store.events_after(&c.id, c.last).await {
                Ok(found) if !found.is_empty() => {
                    c.pending.extend(found);
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(job = %c.id, "event stream: {e}");
                    return None;
                }
            }
            // Nothing new: a finished (or deleted) job's stream ends; a live one waits.
            match c.api.service.store.job(&c.id).await {
                Ok(Some(job)) if !job.state.is_final() => {}
                _ => return None,
            }
            let _ = tokio::time::timeout(Duration::from_secs(2), c.wake.recv()).await;
        }
    })
}

fn is_final_state(data: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(data)
        .ok()
        .and_then(|v| {
            v.get("state")
                .and_then(|s| s.as_str())
                .and_then(JobState::parse)
        })
        .is_some_and(JobState::is_final)
}
