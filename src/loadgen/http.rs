//! One player's HTTP: its own keep-alive connections (a player is a separate viewer, like a
//! browser tab, so it shares no connection with the others), every answer recorded, and failed
//! requests retried as the run's [`Retry`] policy says.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::Url;

use super::stats::{Kind, Outcome, Recorder};

/// What a player does when a request fails (an HTTP error status or a transport failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Never: a failed segment is skipped, a failed playlist is reloaded on its usual schedule.
    None,
    /// At once, again and again: the retry storm of naive clients.
    Immediate,
    /// After the answer's `Retry-After` (1 s when it has none).
    RetryAfter,
}

impl std::str::FromStr for Retry {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Retry::None),
            "immediate" => Ok(Retry::Immediate),
            "retry-after" => Ok(Retry::RetryAfter),
            other => Err(format!(
                "{other:?}: expected none, immediate or retry-after"
            )),
        }
    }
}

/// The longest a request may take, to its last byte: an Encore origin holds a live-edge
/// request up to two segment durations (20 s at most); a request this slow has long stalled.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The wait when a failed answer names none.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// A request that did not bring back a body.
#[derive(Debug)]
pub struct Failure {
    /// `"404"`, `"timeout"`, …
    pub label: String,
    pub retry_after: Option<Duration>,
}

pub struct Client {
    http: reqwest::Client,
    recorder: Arc<Recorder>,
    retry: Retry,
    timeout: Duration,
}

impl Client {
    /// A player's client. `tls`: load the built-in root certificates (only https targets need
    /// them, and they cost memory in every player).
    pub fn new(recorder: Arc<Recorder>, retry: Retry, tls: bool) -> Result<Client, String> {
        let http = reqwest::Client::builder()
            .http1_only()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(2)
            .pool_idle_timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(5))
            .no_proxy()
            .tls_built_in_root_certs(tls)
            .user_agent(concat!("encore-loadgen/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
        Ok(Client {
            http,
            recorder,
            retry,
            timeout: REQUEST_TIMEOUT,
        })
    }

    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// GET `url`, retried as the policy says until `give_up`; the body when `keep`, else only
    /// counted.
    pub async fn get(
        &self,
        kind: Kind,
        url: &Url,
        keep: bool,
        give_up: Instant,
    ) -> Result<Vec<u8>, Failure> {
        loop {
            let failure = match self.get_once(kind, url, keep).await {
                Ok(body) => return Ok(body),
                Err(f) => f,
            };
            let wait = match self.retry {
                Retry::None => return Err(failure),
                Retry::Immediate => Duration::ZERO,
                Retry::RetryAfter => failure.retry_after.unwrap_or(DEFAULT_RETRY_AFTER),
            };
            if Instant::now() + wait >= give_up {
                return Err(failure);
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// One request, recorded.
    async fn get_once(&self, kind: Kind, url: &Url, keep: bool) -> Result<Vec<u8>, Failure> {
        let sent = Instant::now();
        let mut bytes = 0u64;
        let mut body = Vec::new();
        let result = async {
            let mut response = self
                .http
                .get(url.clone())
                .timeout(self.timeout)
                .send()
                .await
                .map_err(|e| transport(&e))?;
            let status = response.status();
            let ok = status.is_success();
            while let Some(chunk) = response.chunk().await.map_err(|e| transport(&e))? {
                bytes += chunk.len() as u64;
                if keep && ok {
                    body.extend_from_slice(&chunk);
                }
            }
            if ok {
                Ok(())
            } else {
                Err(Failure {
                    label: status.as_u16().to_string(),
                    retry_after: retry_after(response.headers()),
                })
            }
        }
        .await;
        let latency = sent.elapsed();
        match result {
            Ok(()) => {
                self.recorder.request(kind, latency, bytes, Outcome::Ok);
                Ok(body)
            }
            Err(f) => {
                let outcome = Outcome::Failed(&f.label);
                self.recorder.request(kind, latency, bytes, outcome);
                Err(f)
            }
        }
    }
}

/// A transport failure's label: what a reader of the report can act on.
fn transport(e: &reqwest::Error) -> Failure {
    // A connect that timed out is a connect error: the origin did not accept in time.
    let label = if e.is_connect() {
        "connect"
    } else if e.is_timeout() {
        "timeout"
    } else if closed(e) {
        "closed"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "transport"
    };
    Failure {
        label: label.into(),
        retry_after: None,
    }
}

/// The server closed or reset the connection (somewhere in the error's chain).
fn closed(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
            ) {
                return true;
            }
        }
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_closed() {
                return true;
            }
        }
        source = s.source();
    }
    false
}

/// `Retry-After` as seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        h.insert(RETRY_AFTER, later.parse().unwrap());
        let wait = retry_after(&h).unwrap();
        assert!((28..=30).contains(&wait.as_secs()), "{wait:?}");
        h.insert(
            RETRY_AFTER,
            "Sat, 01 Jan 2000 00:00:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn retry_policies_parse() {
        assert_eq!("none".parse::<Retry>(), Ok(Retry::None));
        assert_eq!("immediate".parse::<Retry>(), Ok(Retry::Immediate));
        assert_eq!("retry-after".parse::<Retry>(), Ok(Retry::RetryAfter));
        assert!("often".parse::<Retry>().is_err());
    }
}
