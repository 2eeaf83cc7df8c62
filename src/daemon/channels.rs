//! The daemon's live channels: those of the configuration file and those created over the API
//! (stored, and started again after a restart). Each holds its capacity while it runs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::http::StatusCode;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use super::config::ChannelSpec;
use crate::api::{ChannelControl, ChannelInfo, Problem};
use crate::jobs::options::{ladder_cost, FieldError};
use crate::jobs::Service;
use crate::media::Ladder;
use crate::origin::{ChannelTiming, Origin};
use crate::pipeline::live::{self, Channel, ChannelConfig};

struct Entry {
    spec: ChannelSpec,
    from_config: bool,
    channel: Option<Channel>,
    /// Why a configuration's channel is not running (it failed to start).
    error: Option<String>,
    renditions: Vec<String>,
    cost_milli: i64,
}

pub struct Channels {
    origin: Origin,
    service: Arc<Service>,
    input_roots: Vec<PathBuf>,
    /// `http://host:port` of the origin, for the URLs in channel records.
    pub base: String,
    entries: Mutex<BTreeMap<String, Entry>>,
}

impl Channels {
    pub fn new(
        origin: Origin,
        service: Arc<Service>,
        input_roots: Vec<PathBuf>,
        base: String,
    ) -> Channels {
        Channels {
            origin,
            service,
            input_roots,
            base,
            entries: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a channel: opens its encoders off the async threads, publishes to the origin.
    pub async fn start(&self, spec: ChannelSpec, from_config: bool) -> Result<(), String> {
        let config = spec.resolve()?;
        let name = config.name.clone();
        let cost_milli = (channel_cost(&config) * 1000.0).round() as i64;
        let timing = ChannelTiming {
            segment_duration: config.segment_duration,
            epoch: SystemTime::UNIX_EPOCH,
            dvr_window: config.dvr_window,
        };
        let publisher = self.origin.add_channel(&name, timing);
        let shared = publisher.clone();
        let started = tokio::task::spawn_blocking(move || live::start(config, Arc::new(shared)))
            .await
            .map_err(|e| e.to_string())?;
        match started {
            Ok(channel) => {
                // Under load the origin refuses the top rung first.
                let order: Vec<&str> = channel.renditions.iter().map(String::as_str).collect();
                publisher.set_rendition_order(&order);
                self.service.reserve_live(cost_milli);
                let renditions = channel.renditions.clone();
                self.lock().insert(
                    name,
                    Entry {
                        spec,
                        from_config,
                        channel: Some(channel),
                        error: None,
                        renditions,
                        cost_milli,
                    },
                );
                Ok(())
            }
            Err(e) => {
                self.origin.remove_channel(&name);
                let message = format!("channel {name:?}: {e}");
                if from_config {
                    // Shown as failed, and tried again by the next SIGHUP.
                    self.lock().insert(
                        name,
                        Entry {
                            renditions: Vec::new(),
                            spec,
                            from_config,
                            channel: None,
                            error: Some(e.to_string()),
                            cost_milli: 0,
                        },
                    );
                }
                Err(message)
            }
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.lock().contains_key(name)
    }

    /// Stops every channel (closing segments, ending playlists), waiting at most `grace`;
    /// returns the names of those that did not stop in time.
    pub async fn stop_all(&self, grace: Duration) -> Vec<String> {
        let running: Vec<(String, Channel)> = self
            .lock()
            .iter_mut()
            .filter_map(|(n, e)| e.channel.take().map(|c| (n.clone(), c)))
            .collect();
        stop(running, grace).await
    }

    /// Applies the configuration file's channels anew (SIGHUP): new ones start, removed ones
    /// stop, changed ones (and those that had failed) restart, unchanged ones are untouched.
    /// API channels are left alone.
    pub async fn reload(&self, specs: Vec<ChannelSpec>) {
        if let Err(e) = check_specs(&specs) {
            tracing::error!("SIGHUP: configuration not reloaded: {e}");
            return;
        }
        let mut wanted: BTreeMap<String, ChannelSpec> =
            specs.into_iter().map(|s| (s.name.clone(), s)).collect();
        let (mut stopping, mut released, mut unchanged) = (Vec::new(), 0, 0);
        {
            let mut entries = self.lock();
            let ours: Vec<String> = entries
                .iter()
                .filter(|(_, e)| e.from_config)
                .map(|(n, _)| n.clone())
                .collect();
            for name in ours {
                let entry = &entries[&name];
                let running = entry.channel.as_ref().is_some_and(|c| !c.is_finished());
                if running && wanted.get(&name) == Some(&entry.spec) {
                    wanted.remove(&name);
                    unchanged += 1;
                    continue;
                }
                let entry = entries.remove(&name).expect("listed above");
                released += entry.cost_milli;
                if let Some(channel) = entry.channel {
                    stopping.push((name, channel));
                }
            }
            wanted.retain(|name, _| {
                let taken = entries.contains_key(name);
                if taken {
                    tracing::error!(channel = %name, "SIGHUP: an API channel has this name; not started");
                }
                !taken
            });
        }
        let stopped = stopping.len();
        for name in stop(stopping, super::STOP_GRACE).await {
            tracing::warn!(channel = %name, "SIGHUP: the old channel did not stop in time");
        }
        self.service.release_live(released);
        let starting = wanted.len();
        for (name, spec) in wanted {
            if let Err(e) = self.start(spec, true).await {
                tracing::error!(channel = %name, "SIGHUP: did not start: {e}");
            }
        }
        tracing::info!(
            started = starting,
            stopped,
            unchanged,
            "SIGHUP: configuration's channels reloaded"
        );
    }

    fn info(&self, name: &str, e: &Entry) -> ChannelInfo {
        let state = match &e.channel {
            None if e.error.is_some() => "failed",
            None => "stopped",
            Some(c) if c.is_finished() => "stopped",
            Some(c) if !self.origin.channel_has_segments(name) => "starting",
            Some(c) if c.status.on_slate.load(std::sync::atomic::Ordering::Relaxed) => "on_slate",
            Some(_) => "on_air",
        };
        let speeds: Vec<(String, Option<f64>, u64)> = match &e.channel {
            Some(c) => c
                .status
                .rungs
                .iter()
                .map(|(id, s)| (id.clone(), s.ratio(), s.frames()))
                .collect(),
            None => e
                .renditions
                .iter()
                .map(|id| (id.clone(), None, 0))
                .collect(),
        };
        ChannelInfo {
            name: name.to_string(),
            source: if e.from_config { "config" } else { "api" },
            state: state.into(),
            error: e.error.clone(),
            restarts: e.channel.as_ref().map_or(0, |c| c.status.total_restarts()),
            input: e.spec.input.clone(),
            spec: shown_spec(&e.spec),
            hls: format!("{}/live/{name}/master.m3u8", self.base),
            dash: format!("{}/live/{name}/manifest.mpd", self.base),
            renditions: speeds
                .into_iter()
                .map(|(id, ratio, frames)| crate::api::RenditionInfo {
                    id,
                    realtime_ratio: ratio.map(|r| (r * 100.0).round() / 100.0),
                    frames_encoded: frames,
                })
                .collect(),
        }
    }

    /// API channels may read local files (`loop:`) only inside the input roots, and take a
    /// ladder as text, never as a file on this machine.
    fn check_api_spec(&self, spec: &ChannelSpec) -> Result<(), Problem> {
        let mut errors = Vec::new();
        if let Some(path) = spec.input.strip_prefix("loop:") {
            let inside = std::path::Path::new(path)
                .canonicalize()
                .ok()
                .is_some_and(|real| {
                    self.input_roots
                        .iter()
                        .filter_map(|r| r.canonicalize().ok())
                        .any(|root| real.starts_with(root))
                });
            if !inside {
                errors.push(FieldError::new(
                    "/input",
                    "loop: files must be inside an input root",
                ));
            }
        }
        if spec.ladder.as_deref().is_some_and(|l| !l.contains(':')) {
            errors.push(FieldError::new(
                "/ladder",
                "a ladder is HEIGHT:BITRATE,… (files are for the configuration)",
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Problem::invalid(errors))
        }
    }
}

/// A channel's fields as the API shows them: the SRT passphrase and stream id are secrets.
fn shown_spec(spec: &ChannelSpec) -> serde_json::Value {
    let mut value = serde_json::to_value(spec).unwrap_or_default();
    for secret in ["passphrase", "streamid"] {
        if let Some(p) = value.get_mut(secret) {
            *p = serde_json::Value::from("***");
        }
    }
    value
}

/// The memory a channel's DVR window takes when full, in megabytes: every rung and the audio
/// at their target rates for `dvr_window` (bounded by `dvr_max_mb`).
pub(super) fn dvr_megabytes(config: &ChannelConfig) -> f64 {
    let ladder = config
        .ladder
        .clone()
        .unwrap_or_else(|| Ladder::default_for(config.codec));
    let bits_per_second: u64 = ladder
        .rungs
        .iter()
        .filter(|r| r.height <= config.height)
        .map(|r| r.bitrate)
        .sum::<u64>()
        + config.audio_bitrate;
    let full = bits_per_second as f64 / 8.0 * config.dvr_window.as_secs_f64() / 1e6;
    full.min(config.dvr_max_bytes as f64 / 1e6)
}

/// A channel's capacity units: its ladder at its frame rate.
fn channel_cost(config: &ChannelConfig) -> f64 {
    let ladder = config
        .ladder
        .clone()
        .unwrap_or_else(|| Ladder::default_for(config.codec));
    let rungs: Vec<_> = ladder
        .rungs
        .into_iter()
        .filter(|r| r.height <= config.height)
        .collect();
    ladder_cost(&rungs, config.frame_rate.as_f64(), config.codec)
}

/// Names unique and every channel valid, as at start.
pub(super) fn check_specs(specs: &[ChannelSpec]) -> Result<(), String> {
    let mut names = std::collections::HashSet::new();
    for spec in specs {
        spec.resolve()?;
        if !names.insert(spec.name.as_str()) {
            return Err(format!("channel {:?} is configured twice", spec.name));
        }
    }
    Ok(())
}

/// Stops `channels`, waiting at most `grace`; returns those that did not stop in time.
async fn stop(channels: Vec<(String, Channel)>, grace: Duration) -> Vec<String> {
    for (_, c) in &channels {
        c.stop();
    }
    let deadline = tokio::time::Instant::now() + grace;
    while channels.iter().any(|(_, c)| !c.is_finished()) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut late = Vec::new();
    for (name, c) in channels {
        if c.is_finished() {
            c.join();
        } else {
            tracing::warn!(channel = %name, "did not stop in time");
            late.push(name);
        }
    }
    late
}

fn parse_spec(body: serde_json::Value) -> Result<ChannelSpec, Problem> {
    serde_path_to_error::deserialize::<_, ChannelSpec>(body).map_err(|e| {
        let pointer: String = e
            .path()
            .to_string()
            .split('.')
            .filter(|p| !p.is_empty() && *p != "?")
            .map(|p| format!("/{p}"))
            .collect();
        Problem::invalid(vec![FieldError::new(&pointer, e.into_inner().to_string())])
    })
}

impl ChannelControl for Channels {
    fn list(&self) -> Vec<ChannelInfo> {
        self.lock().iter().map(|(n, e)| self.info(n, e)).collect()
    }

    fn create(
        self: Arc<Self>,
        body: serde_json::Value,
    ) -> BoxFuture<'static, Result<ChannelInfo, Problem>> {
        async move {
            let spec = parse_spec(body)?;
            self.check_api_spec(&spec)?;
            spec.resolve()
                .map_err(|e| Problem::invalid(vec![FieldError::new("", e)]))?;
            if self.contains(&spec.name) {
                return Err(Problem::conflict(format!("channel {:?} exists", spec.name)));
            }
            let text = serde_json::to_string(&spec).expect("plain data serializes");
            if !self.service.store.insert_channel(&spec.name, &text).await? {
                return Err(Problem::conflict(format!("channel {:?} exists", spec.name)));
            }
            let name = spec.name.clone();
            if let Err(e) = self.start(spec, false).await {
                let _ = self.service.store.delete_channel(&name).await;
                return Err(Problem::new(StatusCode::UNPROCESSABLE_ENTITY, e));
            }
            // A DELETE may have come in between: then there is nothing to show.
            let entries = self.lock();
            let entry = entries.get(&name).ok_or_else(|| {
                Problem::conflict(format!("channel {name:?} was removed as it started"))
            })?;
            Ok(self.info(&name, entry))
        }
        .boxed()
    }

    fn remove(self: Arc<Self>, name: String) -> BoxFuture<'static, Result<(), Problem>> {
        async move {
            let taken = {
                let mut entries = self.lock();
                match entries.get(&name) {
                    None => return Err(Problem::not_found(format!("no channel {name:?}"))),
                    Some(e) if e.from_config => {
                        return Err(Problem::conflict(format!(
                            "channel {name:?} comes from the configuration file; remove it there"
                        )))
                    }
                    Some(_) => entries.remove(&name).expect("present"),
                }
            };
            self.service.store.delete_channel(&name).await?;
            if let Some(channel) = taken.channel {
                stop(vec![(name.clone(), channel)], super::STOP_GRACE).await;
            }
            self.service.release_live(taken.cost_milli);
            Ok(())
        }
        .boxed()
    }
}
