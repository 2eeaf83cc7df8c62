//! The daemon's live channels: those of the configuration file and those created over the API
//! (stored, and started again after a restart). Each holds its capacity while it runs.
//!
//! In a fleet (a shared PostgreSQL store) each channel runs on one node at a time, the holder
//! of its lease row (jobs/fleet.rs): every node that can carry a channel keeps it on standby,
//! and [`Channels::keep_leases`] renews the leases of the channels running here and takes
//! those whose holder stopped renewing. The channel then starts here at the live edge: its
//! numbers are locked to the clock, so players (through the archive in object storage, or any
//! node's origin) continue with the same segment numbers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::http::StatusCode;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use super::config::ChannelSpec;
use crate::api::{ChannelControl, ChannelInfo, Problem};
use crate::jobs::model::now_ms;
use crate::jobs::options::{ladder_cost, FieldError};
use crate::jobs::Service;
use crate::media::Ladder;
use crate::objects::{LiveArchive, Objects};
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
    /// Its archive in object storage, while it runs here with `archive = true`.
    archive: Option<LiveArchive>,
    /// In a fleet: the node that holds the channel's lease, as last read.
    carried_by: Option<String>,
    /// In a fleet: after a failed start, not tried here again before this instant.
    retry_at: Option<Instant>,
    /// In a fleet: its lease is being taken and its encoders opened; nobody else may.
    starting: bool,
}

impl Entry {
    /// Known here, not running here (a fleet's standby).
    fn standby(spec: ChannelSpec, from_config: bool) -> Entry {
        Entry {
            spec,
            from_config,
            channel: None,
            error: None,
            renditions: Vec::new(),
            cost_milli: 0,
            archive: None,
            carried_by: None,
            retry_at: None,
            starting: false,
        }
    }

    fn running(&self) -> bool {
        self.channel.as_ref().is_some_and(|c| !c.is_finished())
    }
}

/// After a failed start, a fleet node leaves the channel to the others this long.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

pub struct Channels {
    origin: Origin,
    service: Arc<Service>,
    input_roots: Vec<PathBuf>,
    /// `http://host:port` of the origin, for the URLs in channel records.
    pub base: String,
    entries: Mutex<BTreeMap<String, Entry>>,
    /// Where channels with `archive = true` are archived.
    objects: Option<Objects>,
    /// A fleet: each channel runs on the node holding its lease (module docs).
    leased: bool,
    /// The daemon is stopping: take no channel.
    stopping: AtomicBool,
}

impl Channels {
    pub fn new(
        origin: Origin,
        service: Arc<Service>,
        input_roots: Vec<PathBuf>,
        base: String,
        objects: Option<Objects>,
    ) -> Channels {
        let leased = service.store.is_shared();
        Channels {
            origin,
            service,
            input_roots,
            base,
            entries: Mutex::new(BTreeMap::new()),
            objects,
            leased,
            stopping: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a channel; in a fleet, puts it on standby here and starts it if its lease is
    /// free (or already this node's).
    pub async fn start(&self, spec: ChannelSpec, from_config: bool) -> Result<(), String> {
        if !self.leased {
            return self.launch(spec, from_config, false).await;
        }
        spec.resolve()?;
        self.check_archive(&spec)?;
        let name = spec.name.clone();
        {
            let mut entries = self.lock();
            // One that runs or starts here already (the keeper found it first) is left alone.
            if entries
                .get(&name)
                .is_some_and(|e| e.running() || e.starting)
            {
                return Ok(());
            }
            entries.insert(name.clone(), Entry::standby(spec, from_config));
        }
        // Only a free lease (or this node's own) here: expired ones are the keeper's to judge.
        self.try_take(&name, false).await
    }

    fn check_archive(&self, spec: &ChannelSpec) -> Result<(), String> {
        if spec.archive && self.objects.is_none() {
            return Err(format!(
                "channel {:?}: archive = true needs an object store (store = \"s3://…\")",
                spec.name
            ));
        }
        Ok(())
    }

    /// Runs a channel here: opens its encoders off the async threads, publishes to the origin
    /// (and to its archive). `takeover`: it ran on another node until now, and its players
    /// wait: it joins the segment in progress if it can.
    async fn launch(
        &self,
        spec: ChannelSpec,
        from_config: bool,
        takeover: bool,
    ) -> Result<(), String> {
        let mut config = spec.resolve()?;
        config.join_segment_in_progress = takeover;
        self.check_archive(&spec)?;
        let name = config.name.clone();
        let cost_milli = (channel_cost(&config) * 1000.0).round() as i64;
        let timing = ChannelTiming {
            segment_duration: config.segment_duration,
            epoch: SystemTime::UNIX_EPOCH,
            dvr_window: config.dvr_window,
        };
        let publisher = self.origin.add_channel(&name, timing);
        let archive = match (&self.objects, spec.archive) {
            (Some(objects), true) => Some(LiveArchive::start(objects.clone(), &name)),
            _ => None,
        };
        let push = match (&spec.publish_to, &spec.publish_token) {
            (Some(url), Some(token)) => Some(super::push::Push::start(
                url,
                token,
                &name,
                config.segment_duration,
            )),
            _ => None,
        };
        let shared: Arc<dyn live::Publisher> = if archive.is_none() && push.is_none() {
            Arc::new(publisher.clone())
        } else {
            Arc::new(super::Outlets {
                local: publisher.clone(),
                archive: archive.clone(),
                push,
            })
        };
        let nice = self.service.media_nice();
        // Every way a start fails ends in the same cleanup below.
        let started: Result<live::Channel, String> = match tokio::task::spawn_blocking(move || {
            crate::pipeline::at_lower_priority(nice, || live::start(config, shared))
        })
        .await
        {
            Ok(Ok(result)) => result.map_err(|e| e.to_string()),
            Ok(Err(e)) => Err(format!("no thread for the channel: {e}")),
            Err(e) => Err(e.to_string()),
        };
        match started {
            Ok(channel) => {
                // Under load the origin refuses the top rung first.
                let order: Vec<&str> = channel.renditions.iter().map(String::as_str).collect();
                publisher.set_rendition_order(&order);
                let renditions = channel.renditions.clone();
                let unwanted = {
                    let mut entries = self.lock();
                    // In a fleet the entry was there as it started; gone now means removed
                    // meanwhile (SIGHUP, an API delete): the channel stops again.
                    if self.leased && !entries.contains_key(&name) {
                        Some(channel)
                    } else {
                        self.service.reserve_live(cost_milli);
                        entries.insert(
                            name.clone(),
                            Entry {
                                channel: Some(channel),
                                renditions,
                                cost_milli,
                                archive,
                                carried_by: self.leased.then(|| self.service.node().to_owned()),
                                starting: self.leased,
                                ..Entry::standby(spec, from_config)
                            },
                        );
                        None
                    }
                };
                if let Some(channel) = unwanted {
                    stop(vec![(name.clone(), channel)], super::STOP_GRACE).await;
                    self.origin.remove_channel(&name);
                }
                Ok(())
            }
            Err(e) => {
                self.origin.remove_channel(&name);
                let message = format!("channel {name:?}: {e}");
                if from_config || self.leased {
                    // Shown as failed, and tried again by the next SIGHUP (in a fleet: left
                    // to the other nodes for a while).
                    self.lock().insert(
                        name,
                        Entry {
                            error: Some(e),
                            retry_at: Some(Instant::now() + RETRY_AFTER_FAILURE),
                            ..Entry::standby(spec, from_config)
                        },
                    );
                }
                Err(message)
            }
        }
    }

    /// In a fleet: takes the lease of `name` if it is free, this node's, or (with `judge`)
    /// expired, and starts the channel here. A start that fails gives it back.
    async fn try_take(&self, name: &str, judge: bool) -> Result<(), String> {
        if self.stopping.load(Ordering::SeqCst) {
            return Ok(());
        }
        let node = self.service.node();
        let (spec, from_config, takeover) = match self.lock().get_mut(name) {
            Some(e)
                if e.channel.is_none()
                    && !e.starting
                    && e.retry_at.is_none_or(|t| Instant::now() >= t) =>
            {
                e.starting = true;
                let elsewhere = e.carried_by.as_deref().is_some_and(|n| n != node);
                (e.spec.clone(), e.from_config, elsewhere)
            }
            _ => return Ok(()),
        };
        let launched = self
            .take_and_launch(name, spec, from_config, takeover, judge)
            .await;
        if let Some(e) = self.lock().get_mut(name) {
            e.starting = false;
        }
        launched
    }

    async fn take_and_launch(
        &self,
        name: &str,
        spec: ChannelSpec,
        from_config: bool,
        takeover: bool,
        judge: bool,
    ) -> Result<(), String> {
        let node = self.service.node();
        let now = now_ms();
        let until = now + self.service.lease_ms();
        match self
            .service
            .store
            .take_channel(name, node, now, until, judge)
            .await
        {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(e) => {
                tracing::debug!(channel = %name, "cannot read the channel's lease: {e}");
                return Ok(());
            }
        }
        if self.stopping.load(Ordering::SeqCst) {
            self.release_leases(&[name.to_owned()]).await;
            return Ok(());
        }
        tracing::info!(channel = %name, node, "channel lease taken: the channel runs here");
        let launched = self.launch(spec, from_config, takeover).await;
        if launched.is_err() {
            self.release_leases(&[name.to_owned()]).await;
            return launched;
        }
        if !self.contains(name) {
            // Removed while it started (launch stopped it again).
            self.release_leases(&[name.to_owned()]).await;
        } else if self.stopping.load(Ordering::SeqCst) {
            // Started after the daemon's stop collected its channels.
            self.stop_here(name, false).await;
        }
        Ok(())
    }

    /// In a fleet, until the daemon stops: renews the leases of the channels running here,
    /// stops those another node took (this node was judged gone), follows the channels
    /// created and removed over other nodes' APIs, and takes the channels nobody carries.
    pub async fn keep_leases(self: Arc<Self>) {
        if !self.leased {
            return;
        }
        // Several times per lease: a takeover waits for the lease to run out, then this.
        let every = Duration::from_millis((self.service.lease_ms() / 8).clamp(100, 2_000) as u64);
        let lease = Duration::from_millis(self.service.lease_ms() as u64);
        let mut unreachable = false;
        // As for jobs (jobs/service.rs): after the store was out of reach (or slow to answer:
        // an outage too), every lease looks expired; judge them only after a whole lease time
        // of answers, when their holders have renewed.
        let mut reached_since: Option<Instant> = None;
        let mut wait = every;
        while !self.stopping.load(Ordering::SeqCst) {
            tokio::time::sleep(wait).await;
            let asked = Instant::now();
            let reached = self.follow_stored_channels().await;
            if !reached || asked.elapsed() > lease / 2 {
                reached_since = None;
            } else {
                reached_since.get_or_insert(asked);
            }
            let judge =
                self.service.judges_leases() && reached_since.is_some_and(|t| t.elapsed() >= lease);
            let (running, idle): (Vec<String>, Vec<String>) = {
                let entries = self.lock();
                let names = entries.keys().cloned();
                names.partition(|n| entries[n].running())
            };
            let node = self.service.node();
            // Renewals first: a slow start below must not let this node's leases run out.
            for name in running {
                let until = now_ms() + self.service.lease_ms();
                match self.service.store.renew_channel(&name, node, until).await {
                    Ok(true) => unreachable = false,
                    Ok(false) => {
                        tracing::warn!(
                            channel = %name,
                            "another node carries this channel now: stopping it here"
                        );
                        self.stop_here(&name, false).await;
                    }
                    // Cut off from the store: the channel goes on (a database restart must
                    // not take every channel of the fleet off the air). Others take it only
                    // once they have reached the store for a whole lease.
                    Err(e) => {
                        if !std::mem::replace(&mut unreachable, true) {
                            tracing::warn!(channel = %name, "cannot renew the channel's lease: {e}");
                        }
                    }
                }
            }
            for name in idle {
                if let Err(e) = self.try_take(&name, judge).await {
                    tracing::error!(channel = %name, "did not start: {e}");
                }
            }
            wait = every;
            if let Ok(leases) = self.service.store.channel_leases().await {
                let mut entries = self.lock();
                for (name, entry) in entries.iter_mut() {
                    let lease = leases.iter().find(|l| &l.channel == name);
                    entry.carried_by = lease.map(|l| l.node.clone());
                    // Another node's lease: try again just after it runs out, not up to a
                    // round later.
                    let left = lease
                        .filter(|l| l.node != node && !entry.running())
                        .map(|l| l.expires_at - now_ms() + 20)
                        .filter(|left| *left > 0);
                    if let Some(left) = left {
                        wait = wait.min(Duration::from_millis(left as u64));
                    }
                }
            }
        }
    }

    /// In a fleet: API channels are created and removed on any node; each node keeps its
    /// standby list as the store has it. False when the store did not answer.
    async fn follow_stored_channels(&self) -> bool {
        // Only those known before the read can be judged removed: one created here meanwhile
        // is in the store, not yet in what was read.
        let known: Vec<String> = self
            .lock()
            .iter()
            .filter(|(_, e)| !e.from_config)
            .map(|(n, _)| n.clone())
            .collect();
        let Ok(stored) = self.service.store.channels().await else {
            return false;
        };
        let gone: Vec<String> = known
            .into_iter()
            .filter(|n| !stored.iter().any(|(s, _)| s == n))
            .collect();
        for name in gone {
            self.stop_here(&name, true).await;
            self.lock().remove(&name);
        }
        for (name, text) in stored {
            if self.contains(&name) {
                continue;
            }
            match serde_json::from_str::<ChannelSpec>(&text) {
                Ok(spec) => {
                    self.lock().insert(name, Entry::standby(spec, false));
                }
                Err(e) => tracing::error!(channel = %name, "stored channel unreadable: {e}"),
            }
        }
        true
    }

    /// In a fleet: stops `name` here and keeps it on standby. `ended`: the channel ends
    /// (removed), so its archive gets the final playlists; otherwise it goes on elsewhere and
    /// the archive is left as the other node writes it.
    async fn stop_here(&self, name: &str, ended: bool) {
        let taken = {
            let mut entries = self.lock();
            let Some(entry) = entries.get_mut(name) else {
                return;
            };
            let cost = std::mem::take(&mut entry.cost_milli);
            let archive = entry.archive.take();
            entry.channel.take().map(|c| (c, cost, archive))
        };
        let Some((channel, cost, archive)) = taken else {
            return;
        };
        if let (Some(archive), false) = (archive, ended) {
            archive.close();
        }
        stop(vec![(name.to_owned(), channel)], super::STOP_GRACE).await;
        // Requests here now go to the archive (if any), written by the node carrying it.
        self.origin.remove_channel(name);
        self.service.release_live(cost);
        self.release_leases(&[name.to_owned()]).await;
    }

    /// In a fleet: this node no longer carries `names`; another may take them at once.
    async fn release_leases(&self, names: &[String]) {
        if !self.leased {
            return;
        }
        for name in names {
            let released = self
                .service
                .store
                .release_channel(name, self.service.node())
                .await;
            if let Err(e) = released {
                // The lease runs out by itself.
                tracing::warn!(channel = %name, "cannot give the channel's lease back: {e}");
            }
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.lock().contains_key(name)
    }

    /// Stops every channel (closing segments, ending playlists), waiting at most `grace`;
    /// returns the names of those that did not stop in time.
    /// In a fleet the channels go on elsewhere: their archives are not ended, and their
    /// leases are given back so that another node takes them at once.
    pub async fn stop_all(&self, grace: Duration) -> Vec<String> {
        self.stopping.store(true, Ordering::SeqCst);
        let running: Vec<(String, Channel)> = self
            .lock()
            .iter_mut()
            .filter_map(|(n, e)| {
                if self.leased {
                    if let Some(archive) = e.archive.take() {
                        archive.close();
                    }
                }
                e.channel.take().map(|c| (n.clone(), c))
            })
            .collect();
        let names: Vec<String> = running.iter().map(|(n, _)| n.clone()).collect();
        let late = stop(running, grace).await;
        self.release_leases(&names).await;
        late
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
                if let Some(archive) = entry.archive.filter(|_| self.leased) {
                    // Restarted here or elsewhere: not the end of the channel.
                    archive.close();
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
        let names: Vec<String> = stopping.iter().map(|(n, _)| n.clone()).collect();
        for name in stop(stopping, super::STOP_GRACE).await {
            tracing::warn!(channel = %name, "SIGHUP: the old channel did not stop in time");
        }
        self.release_leases(&names).await;
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
            None if self.leased => "standby",
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
            node: e.carried_by.clone(),
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
    for secret in ["passphrase", "streamid", "publish_token"] {
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
                self.release_leases(std::slice::from_ref(&name)).await;
            }
            self.service.release_live(taken.cost_milli);
            Ok(())
        }
        .boxed()
    }
}
