//! `/v1/templates/{name}`: named sets of job options. A job names one and overrides fields;
//! it keeps the options it was resolved with, whatever happens to the template later.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::{Api, Problem};
use crate::jobs::options::{FieldError, Options};

pub fn routes() -> Router<Api> {
    Router::new().route("/templates", get(list)).route(
        "/templates/{name}",
        get(show).put(put).post(put).delete(remove),
    )
}

#[derive(Serialize)]
struct Template {
    name: String,
    #[serde(flatten)]
    options: Options,
}

#[derive(Serialize)]
struct TemplateList {
    templates: Vec<Template>,
}

fn valid_name(name: &str) -> Result<(), Problem> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(Problem::invalid(vec![FieldError::new(
            "",
            "a template name is 1 to 64 of A-Z a-z 0-9 - _ .",
        )]))
    }
}

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

async fn show(State(api): State<Api>, Path(name): Path<String>) -> Result<Json<Template>, Problem> {
    match api.service.store.template(&name).await? {
        Some(text) => Ok(Json(Template {
            name,
            options: serde_json::from_str(&text).unwrap_or_default(),
        })),
        None => Err(Problem::not_found(format!("no template {name:?}"))),
    }
}

/// Creates (201) or replaces (200) a template.
async fn put(State(api): State<Api>, Path(name): Path<String>, body: Bytes) -> Result<Response, Problem> {
    valid_name(&name)?;
    let options = Options::parse_template(&body)?;
    let text = serde_json::to_string(&options).expect("plain data serializes");
    let created = api.service.store.put_template(&name, &text).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(Template { name, options })).into_response())
}

async fn remove(State(api): State<Api>, Path(name): Path<String>) -> Result<StatusCode, Problem> {
    if api.service.store.delete_template(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::not_found(format!("no template {name:?}")))
    }
}
