//! `/v1/templates/{name}`: named sets of job options. A job names one and overrides fields;
//! it keeps the options it was resolved with, whatever happens to the template later.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{Api, Problem};
use crate::jobs::options::{FieldError, Options};

pub fn routes() -> OpenApiRouter<Api> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show, put, create, remove))
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Template {
    name: String,
    #[serde(flatten)]
    options: Options,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct TemplateList {
    templates: Vec<Template>,
}

pub(super) fn is_template_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

fn valid_name(name: &str) -> Result<(), Problem> {
    if is_template_name(name) {
        Ok(())
    } else {
        Err(Problem::invalid(vec![FieldError::new(
            "",
            "a template name is 1 to 64 of A-Z a-z 0-9 - _ .",
        )]))
    }
}

#[utoipa::path(get, operation_id = "list_templates", path = "/templates", tag = "templates",
    responses(
        (status = 200, description = "Every template", body = TemplateList),
        (status = 401, description = "No or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable (see Retry-After)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list(State(api): State<Api>) -> Result<Json<TemplateList>, Problem> {
    let templates = api
        .service
        .store
        .templates()
        .await?
        .into_iter()
        .map(|(name, text)| Template {
            name,
            options: serde_json::from_str(&text).unwrap_or_default(),
        })
        .collect();
    Ok(Json(TemplateList { templates }))
}

#[utoipa::path(get, operation_id = "show_template", path = "/templates/{name}", tag = "templates",
    params(("name" = String, Path)),
    responses(
        (status = 200, description = "The template", body = Template),
        (status = 401, description = "No or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable (see Retry-After)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn show(State(api): State<Api>, Path(name): Path<String>) -> Result<Json<Template>, Problem> {
    if !is_template_name(&name) {
        return Err(Problem::not_found(format!("no template {name:?}")));
    }
    match api.service.store.template(&name).await? {
        Some(text) => Ok(Json(Template {
            name,
            options: serde_json::from_str(&text).unwrap_or_default(),
        })),
        None => Err(Problem::not_found(format!("no template {name:?}"))),
    }
}

/// Creates (201) or replaces (200) a template.
#[utoipa::path(put, operation_id = "put_template", path = "/templates/{name}", tag = "templates",
    params(("name" = String, Path)),
    request_body = Options,
    responses(
        (status = 200, description = "Replaced", body = Template),
        (status = 201, description = "Created", body = Template),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Wrong values, each named by JSON pointer", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable (see Retry-After)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn put(
    State(api): State<Api>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    valid_name(&name)?;
    let options = Options::parse_template(&body)?;
    let text = serde_json::to_string(&options).expect("plain data serializes");
    let created = api.service.store.put_template(&name, &text).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(Template { name, options })).into_response())
}

/// As PUT.
#[utoipa::path(post, operation_id = "post_template", path = "/templates/{name}", tag = "templates",
    params(("name" = String, Path)),
    request_body = Options,
    responses(
        (status = 200, description = "Replaced", body = Template),
        (status = 201, description = "Created", body = Template),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Wrong values, each named by JSON pointer", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable (see Retry-After)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create(api: State<Api>, name: Path<String>, body: Bytes) -> Result<Response, Problem> {
    put(api, name, body).await
}

#[utoipa::path(delete, operation_id = "delete_template", path = "/templates/{name}", tag = "templates",
    params(("name" = String, Path)),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable (see Retry-After)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn remove(State(api): State<Api>, Path(name): Path<String>) -> Result<StatusCode, Problem> {
    if is_template_name(&name) && api.service.store.delete_template(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::not_found(format!("no template {name:?}")))
    }
}
