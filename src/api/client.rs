//! A blocking client of the `/v1` API, for `encore jobs` and `encore channels`: the daemon is the
//! one place jobs live, so the command line drives it over HTTP like any other client would,
//! and its errors come back as the server's problem details (status, field pointers), not as
//! transport noise.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use reqwest::blocking::{RequestBuilder, Response};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// The longest wait for an answer, or between two reads of the event stream (the server sends a
/// keep-alive every 15 s, so a silent minute means the connection is gone).
const TIMEOUT: Duration = Duration::from_secs(60);
/// Reconnections of an event stream in a row without an event before `follow` gives up (about
/// a minute: long enough for a daemon to restart).
const MAX_RECONNECTS: u32 = 30;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No connection at all (refused, no route, no such host).
    #[error("cannot reach the Encore server at {url}: {reason} (is `encore serve` running?)")]
    Unreachable { url: String, reason: String },
    /// The server answered with an error: its RFC 9457 problem, or what it sent instead.
    #[error("{} {}: {}", .status.as_u16(), .title, problem_message(.detail, .errors))]
    Problem {
        status: StatusCode,
        title: String,
        detail: String,
        /// `errors[]`: (JSON pointer into the body, what is wrong there).
        errors: Vec<(String, String)>,
    },
    /// The connection broke, timed out, or the answer made no sense.
    #[error("{0}")]
    Transport(String),
}

impl ClientError {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Problem { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server refused the request itself (4xx): asking again will not help.
    pub fn is_refusal(&self) -> bool {
        self.status().is_some_and(|s| s.is_client_error())
    }

    /// The problem an error response carries (`application/problem+json`, else its text).
    fn from_response(status: StatusCode, body: &str) -> ClientError {
        let problem: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        let text = |key: &str| problem.get(key).and_then(Value::as_str).map(str::to_string);
        let errors = problem
            .get("errors")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .map(|e| {
                        let field = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("");
                        (field("pointer").to_string(), field("detail").to_string())
                    })
                    .collect()
            })
            .unwrap_or_default();
        let reason = status.canonical_reason().unwrap_or("Error");
        let detail = text("detail").unwrap_or_else(|| {
            let body = body.trim();
            match body.char_indices().nth(300) {
                Some((cut, _)) => format!("{}…", &body[..cut]),
                None if body.is_empty() => "(no details)".into(),
                None => body.to_string(),
            }
        });
        ClientError::Problem {
            status,
            title: reason.to_string(),
            detail,
            errors,
        }
    }
}

/// The field errors when there are some (`/codec: unknown codec …`), else the detail.
fn problem_message(detail: &str, errors: &[(String, String)]) -> String {
    if errors.is_empty() {
        return detail.to_string();
    }
    errors
        .iter()
        .map(|(pointer, detail)| match pointer.as_str() {
            "" => detail.clone(),
            p => format!("{p}: {detail}"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    /// The last `id:` seen on the stream (it carries over to later events, as the spec says).
    pub id: Option<String>,
    /// `event:`, `message` when absent.
    pub kind: String,
    pub data: String,
}

/// Turns the lines of a `text/event-stream` into events (comments and unknown fields ignored).
#[derive(Debug, Default)]
pub struct SseParser {
    id: Option<String>,
    kind: Option<String>,
    data: Option<String>,
}

impl SseParser {
    /// Feeds one line (without its line ending); an empty line ends an event.
    pub fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            let kind = self.kind.take();
            let data = self.data.take()?;
            return Some(SseEvent {
                id: self.id.clone(),
                kind: kind.unwrap_or_else(|| "message".into()),
                data,
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" if !value.contains('\0') => self.id = Some(value.to_string()),
            "event" => self.kind = Some(value.to_string()),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            _ => {}
        }
        None
    }
}

/// The `state` of a job's JSON, when it is one no job leaves by itself.
fn final_state(job: &Value) -> Option<&str> {
    job.get("state")
        .and_then(Value::as_str)
        .filter(|s| matches!(*s, "succeeded" | "failed" | "cancelled"))
}

pub struct Client {
    /// `http://host:port`, no trailing slash.
    base: String,
    token: Option<String>,
    http: reqwest::blocking::Client,
}

impl Client {
    /// A client of the server at `server` (`http(s)://host:port`; `host:port` means http).
    pub fn new(server: &str, token: Option<String>) -> Result<Client, ClientError> {
        let server = server.trim().trim_end_matches('/');
        let base = if server.contains("://") {
            server.to_string()
        } else {
            format!("http://{server}")
        };
        if !base.starts_with("http://") && !base.starts_with("https://") {
            return Err(ClientError::Transport(format!(
                "{base}: the server address is http://HOST:PORT or https://HOST"
            )));
        }
        let http = reqwest::blocking::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("encore/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Transport(format!("cannot make an HTTP client: {e}")))?;
        Ok(Client { base, token, http })
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let r = self.http.request(method, format!("{}/v1{path}", self.base));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// Sends `request`; an error status becomes [`ClientError::Problem`].
    fn send(&self, request: RequestBuilder) -> Result<Response, ClientError> {
        let response = request.send().map_err(|e| self.transport(&e))?;
        let status = response.status();
        if status.is_client_error() || status.is_server_error() {
            let body = response.text().unwrap_or_default();
            return Err(ClientError::from_response(status, &body));
        }
        Ok(response)
    }

    /// Sends `request` and reads its JSON (`null` for an empty body, as a 204 has).
    fn call(&self, request: RequestBuilder) -> Result<Value, ClientError> {
        let response = self.send(request)?;
        let text = response.text().map_err(|e| self.transport(&e))?;
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text)
            .map_err(|e| ClientError::Transport(format!("the server's answer is not JSON: {e}")))
    }

    fn transport(&self, e: &reqwest::Error) -> ClientError {
        // The innermost cause says it best ("Connection refused (os error 111)").
        let mut cause: &dyn std::error::Error = e;
        while let Some(source) = cause.source() {
            cause = source;
        }
        if e.is_connect() {
            ClientError::Unreachable {
                url: self.base.clone(),
                reason: cause.to_string(),
            }
        } else if e.is_timeout() {
            ClientError::Transport(format!(
                "the Encore server at {} did not answer within {} s",
                self.base,
                TIMEOUT.as_secs()
            ))
        } else {
            ClientError::Transport(format!("the connection to {} failed: {cause}", self.base))
        }
    }

    /// `POST /v1/jobs`: the job as created (or as first created, for a repeated key).
    pub fn submit(
        &self,
        body: &Value,
        idempotency_key: Option<&str>,
    ) -> Result<Value, ClientError> {
        let mut r = self.request(Method::POST, "/jobs").json(body);
        if let Some(key) = idempotency_key {
            r = r.header("idempotency-key", key);
        }
        self.call(r)
    }

    /// `GET /v1/jobs`: one page, `{"jobs": [...], "next_cursor": ...}`, newest first.
    pub fn list(&self, state: Option<&str>, limit: Option<u32>) -> Result<Value, ClientError> {
        let mut query = Vec::new();
        if let Some(s) = state {
            query.push(("state", s.to_string()));
        }
        if let Some(l) = limit {
            query.push(("limit", l.to_string()));
        }
        self.call(self.request(Method::GET, "/jobs").query(&query))
    }

    pub fn show(&self, id: &str) -> Result<Value, ClientError> {
        self.call(self.request(Method::GET, &format!("/jobs/{}", segment(id))))
    }

    /// `DELETE /v1/jobs/{id}`: the job (cancelled, or still running with `cancel_requested`),
    /// or `null` when it had finished and was removed.
    pub fn cancel(&self, id: &str) -> Result<Value, ClientError> {
        self.call(self.request(Method::DELETE, &format!("/jobs/{}", segment(id))))
    }

    pub fn retry(&self, id: &str) -> Result<Value, ClientError> {
        self.call(self.request(Method::POST, &format!("/jobs/{}/retry", segment(id))))
    }

    /// `GET /v1/channels`: `{"channels": [...]}`.
    pub fn channels(&self) -> Result<Value, ClientError> {
        self.call(self.request(Method::GET, "/channels"))
    }

    pub fn add_channel(&self, body: &Value) -> Result<Value, ClientError> {
        self.call(self.request(Method::POST, "/channels").json(body))
    }

    pub fn remove_channel(&self, name: &str) -> Result<Value, ClientError> {
        self.call(self.request(Method::DELETE, &format!("/channels/{}", segment(name))))
    }

    /// Reads job `id`'s events, each to `on_event(kind, data)`, until the job reaches a final
    /// state; returns the job as that last state event showed it. A dropped connection is
    /// opened again with `Last-Event-ID`, so no event is seen twice or missed.
    pub fn follow(
        &self,
        id: &str,
        on_event: &mut dyn FnMut(&str, &Value),
    ) -> Result<Value, ClientError> {
        let mut last_id: Option<String> = None;
        let mut failures = 0;
        loop {
            let mut r = self.request(Method::GET, &format!("/jobs/{}/events", segment(id)));
            if let Some(last) = &last_id {
                r = r.header("last-event-id", last);
            }
            let outcome = self
                .send(r.header("accept", "text/event-stream"))
                .and_then(|response| read_stream(response, &mut last_id, on_event));
            let lost = match outcome {
                Ok(StreamEnd::Final(job)) => return Ok(job),
                Ok(StreamEnd::Closed { progressed }) => {
                    if progressed {
                        failures = 0;
                    }
                    // The server ends a stream only after a final state: one seen before this
                    // connection, or a job removed meanwhile. Else the connection broke.
                    match self.show(id) {
                        Ok(job) if final_state(&job).is_some() => return Ok(job),
                        Ok(_) => format!("the event stream of job {id} ended early"),
                        Err(e) if e.is_refusal() => return Err(e),
                        Err(e) => e.to_string(),
                    }
                }
                Err(e) if e.is_refusal() => return Err(e),
                Err(e) => e.to_string(),
            };
            failures += 1;
            if failures > MAX_RECONNECTS {
                return Err(ClientError::Transport(format!(
                    "{lost}; gave up after {MAX_RECONNECTS} reconnections"
                )));
            }
            std::thread::sleep(Duration::from_millis(500 * u64::from(failures.min(4))));
        }
    }
}

enum StreamEnd {
    /// A state event with a final state: the job.
    Final(Value),
    /// The connection ended (or broke) before; `progressed` when any event came first.
    Closed { progressed: bool },
}

fn read_stream(
    response: Response,
    last_id: &mut Option<String>,
    on_event: &mut dyn FnMut(&str, &Value),
) -> Result<StreamEnd, ClientError> {
    let mut parser = SseParser::default();
    let mut progressed = false;
    for line in BufReader::new(response).lines() {
        let Ok(line) = line else { break };
        let Some(event) = parser.line(line.trim_end_matches('\r')) else {
            continue;
        };
        if event.id.is_some() {
            last_id.clone_from(&event.id);
        }
        progressed = true;
        let data: Value = serde_json::from_str(&event.data).map_err(|e| {
            ClientError::Transport(format!("an event's data is not JSON: {e}: {}", event.data))
        })?;
        on_event(&event.kind, &data);
        if event.kind == "state" && final_state(&data).is_some() {
            return Ok(StreamEnd::Final(data));
        }
    }
    Ok(StreamEnd::Closed { progressed })
}

/// `s` as one path segment: ids and channel names are plain, but a stray `/` or `?` must not
/// name another resource.
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(text: &str) -> Vec<SseEvent> {
        let mut parser = SseParser::default();
        text.lines().filter_map(|l| parser.line(l)).collect()
    }

    #[test]
    fn sse_lines_make_events() {
        let got = events(
            ": keep-alive\n\nid: 7\nevent: state\ndata: {\"state\":\"queued\"}\n\n\
             id:8\nevent:progress\ndata:{\"percent\":1}\n\ndata: a\ndata: b\n\n",
        );
        assert_eq!(
            got,
            [
                SseEvent {
                    id: Some("7".into()),
                    kind: "state".into(),
                    data: r#"{"state":"queued"}"#.into()
                },
                SseEvent {
                    id: Some("8".into()),
                    kind: "progress".into(),
                    data: r#"{"percent":1}"#.into()
                },
                // No id of its own: the last one carries over; no event: a message.
                SseEvent {
                    id: Some("8".into()),
                    kind: "message".into(),
                    data: "a\nb".into()
                },
            ]
        );
    }

    #[test]
    fn an_event_without_data_is_not_dispatched() {
        assert!(events("event: state\n\n: comment\n\n").is_empty());
        // …and its type does not leak into the next event.
        assert_eq!(events("event: state\n\ndata: x\n\n")[0].kind, "message");
    }

    #[test]
    fn problems_name_their_fields() {
        let body = r#"{"type":"about:blank","title":"Unprocessable Entity","status":422,
            "detail":"/codec: unknown codec \"vp9\" (expected avc or hevc)",
            "errors":[{"pointer":"/codec","detail":"unknown codec \"vp9\" (expected avc or hevc)"}]}"#;
        let e = ClientError::from_response(StatusCode::UNPROCESSABLE_ENTITY, body);
        assert_eq!(
            e.to_string(),
            r#"422 Unprocessable Entity: /codec: unknown codec "vp9" (expected avc or hevc)"#
        );
        let e = ClientError::from_response(StatusCode::BAD_GATEWAY, "<html>proxy</html>");
        assert_eq!(e.to_string(), "502 Bad Gateway: <html>proxy</html>");
    }

    /// Answers each connection with the next of `replies` (then closes it); sends back the
    /// request heads it read.
    fn fake_server(replies: Vec<String>) -> (String, std::sync::mpsc::Receiver<String>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for reply in replies {
                let (mut conn, _) = listener.accept().unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap() == 1 {
                    head.push(byte[0]);
                }
                tx.send(String::from_utf8_lossy(&head).to_lowercase())
                    .unwrap();
                conn.write_all(reply.as_bytes()).unwrap();
            }
        });
        (base, rx)
    }

    #[test]
    fn follow_resumes_after_a_dropped_stream() {
        let stream = |body: &str| {
            format!("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n{body}")
        };
        let running = r#"{"id":"j1","state":"running"}"#;
        let (base, heads) = fake_server(vec![
            // The first stream breaks after two events, before the job ends…
            stream("id: 1\nevent: state\ndata: {\"state\":\"running\"}\n\nid: 2\nevent: progress\ndata: {\"percent\":50}\n\n"),
            // …the job is still running…
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{running}",
                running.len()
            ),
            // …so the stream is opened again after the last event seen.
            stream("id: 3\nevent: state\ndata: {\"state\":\"succeeded\",\"id\":\"j1\"}\n\n"),
        ]);
        let client = Client::new(&base, Some("t0k3n".into())).unwrap();
        let mut seen = Vec::new();
        let job = client
            .follow("j1", &mut |kind, data| seen.push(format!("{kind} {data}")))
            .unwrap();
        assert_eq!(job["state"], "succeeded");
        assert_eq!(
            seen,
            [
                r#"state {"state":"running"}"#,
                r#"progress {"percent":50}"#,
                r#"state {"id":"j1","state":"succeeded"}"#
            ]
        );
        let heads: Vec<String> = heads.iter().collect();
        assert!(
            heads[0].starts_with("get /v1/jobs/j1/events "),
            "{}",
            heads[0]
        );
        assert!(
            heads[0].contains("authorization: bearer t0k3n"),
            "{}",
            heads[0]
        );
        assert!(!heads[0].contains("last-event-id"), "{}", heads[0]);
        assert!(heads[1].starts_with("get /v1/jobs/j1 "), "{}", heads[1]);
        assert!(heads[2].contains("last-event-id: 2\r\n"), "{}", heads[2]);
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(segment("0190a1b2-c3d4"), "0190a1b2-c3d4");
        assert_eq!(segment("a/b?c d"), "a%2Fb%3Fc%20d");
    }
}
