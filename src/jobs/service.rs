//! The node's job service: submission, the scheduler that claims work by capacity, the runs
//! themselves (a VOD pipeline on a blocking thread, progress pumped to the store), leases,
//! recovery after a crash, and the events and webhooks of every state change.
//!
//! Capacity: the hw-profile gives the node's capacity in units (one unit = the reference
//! ladder, 1080p30 into four rungs); a job costs its ladder's output pixel rate against that.
//! Live channels reserve theirs first; VOD jobs share what is left, the head of the queue
//! (priority, then age) first. The head waits for room rather than being overtaken, so a big
//! job is never starved by small ones.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::{broadcast, Notify};

use super::fleet::{Abilities, Heartbeat};
use super::model::{now_ms, rfc3339, JobError, Phase, Progress, State};
use super::options::{InputPolicy, Resolved, WebhookRequest, WEBHOOK_EVENTS};
use super::store::{Attempt, Delivery, JobRow, Store, StoreError};
use crate::pipeline;

/// Progress reaches the store and the event stream at most this often.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// The wait before a retryable failure runs again.
const RETRY_AFTER_MS: i64 = 5_000;

/// What the node's owner configured.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This node's name in attempts and claims (stable across restarts, so it recovers its own).
    pub node: String,
    pub capacity: f64,
    /// The backends usable here, and the fleet's lease time (a claim lives that long without
    /// renewal; a node whose heartbeat is older is gone).
    pub abilities: Abilities,
    /// The hw-profile that matched this machine.
    pub profile: Option<String>,
    /// Every backend the probe looked at: usable or not, and why.
    pub probed: Vec<crate::hw::report::BackendStatus>,
    /// Queued jobs beyond which submissions get 429.
    pub max_queued: i64,
    /// Attempts before an interrupted or retryable job fails.
    pub max_attempts: i64,
    pub webhook_secret: Option<Vec<u8>>,
    pub inputs: InputPolicy,
    pub vod_root: PathBuf,
    /// Where finished outputs are uploaded, when the node has object storage.
    pub objects: Option<crate::objects::Objects>,
    /// Nice steps below the HTTP side at which media work runs (`pipeline::at_lower_priority`).
    pub media_nice: i32,
}

struct Running {
    cancel: Arc<AtomicBool>,
    cost_milli: i64,
}

pub struct Service {
    pub store: Store,
    pub settings: Settings,
    /// Where players reach the origin, for playback URLs (`http://host:port`).
    pub public_base: Mutex<String>,
    running: Mutex<HashMap<String, Running>>,
    live_milli: AtomicI64,
    /// The node is stopping: claim nothing more.
    stopping: AtomicBool,
    /// This node has reached the store for a whole lease time: it may judge other nodes'
    /// leases (lease_keeper).
    judges_leases: AtomicBool,
    /// The queue or the free capacity changed.
    wake: Notify,
    pub(super) webhook_wake: Notify,
    /// The id of a job that has a new event.
    events: broadcast::Sender<String>,
}

/// A job as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JobView {
    pub id: String,
    pub state: State,
    pub created_at: String,
    pub updated_at: String,
    pub input: String,
    pub priority: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    pub options: Resolved,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookRequest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_s: Option<f64>,
    pub cancel_requested: bool,
    pub attempts: Vec<Attempt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
    /// What `encore transcode --json` prints, once succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub summary: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub playback: Option<Playback>,
    /// The output's objects (segments, then manifests), when the node has object storage.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<String>,
    pub webhook_deliveries: Vec<Delivery>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Playback {
    pub hls: String,
    pub dash: String,
}

impl Service {
    pub fn new(store: Store, settings: Settings) -> Arc<Service> {
        Arc::new(Service {
            store,
            settings,
            public_base: Mutex::new(String::new()),
            running: Mutex::new(HashMap::new()),
            live_milli: AtomicI64::new(0),
            stopping: AtomicBool::new(false),
            judges_leases: AtomicBool::new(false),
            wake: Notify::new(),
            webhook_wake: Notify::new(),
            events: broadcast::channel(1024).0,
        })
    }

    /// Whether this node may take over what another node's expired lease held: only once it
    /// has reached the store for a whole lease time (after an outage every lease looks expired).
    pub fn judges_leases(&self) -> bool {
        self.judges_leases.load(Ordering::SeqCst)
    }

    /// Nice steps below the HTTP side at which this node's media work runs.
    pub fn media_nice(&self) -> i32 {
        self.settings.media_nice
    }

    /// This node's name in the fleet.
    pub fn node(&self) -> &str {
        &self.settings.node
    }

    pub fn lease_ms(&self) -> i64 {
        self.settings.abilities.lease_ms
    }

    /// Leases and heartbeats are renewed six times per lease (every 5 s at most).
    fn renew_every(&self) -> Duration {
        Duration::from_millis((self.lease_ms() / 6).clamp(200, 5_000) as u64)
    }

    /// Registers this node in the fleet (`started`) or renews its heartbeat.
    async fn heartbeat(&self, started: bool) -> Result<(), StoreError> {
        let beat = Heartbeat {
            url: self
                .public_base
                .lock()
                .map(|b| b.clone())
                .unwrap_or_default(),
            profile: self.settings.profile.clone(),
            capacity_milli: self.capacity_milli(),
            used_milli: self.used_milli(),
            running: self.lock_running().len() as i64,
        };
        self.store
            .heartbeat(
                &self.settings.node,
                &self.settings.abilities,
                &beat,
                started,
            )
            .await
    }

    pub fn capacity_milli(&self) -> i64 {
        (self.settings.capacity * 1000.0).round().max(1.0) as i64
    }

    /// Capacity units in use by running jobs and live channels.
    pub fn used_milli(&self) -> i64 {
        let jobs: i64 = self.lock_running().values().map(|r| r.cost_milli).sum();
        jobs + self.live_milli.load(Ordering::Relaxed)
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A live channel holds `milli` capacity until [`Service::release_live`].
    pub fn reserve_live(&self, milli: i64) {
        self.live_milli.fetch_add(milli, Ordering::Relaxed);
    }

    pub fn release_live(&self, milli: i64) {
        self.live_milli.fetch_sub(milli, Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// Wakes the scheduler: a job was queued.
    pub fn queued(&self) {
        self.wake.notify_one();
    }

    /// A receiver of "job X has a new event".
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.events.subscribe()
    }

    /// Stops a running job here (a cancel asked on this node or seen in the store).
    pub fn stop_local(&self, id: &str) -> bool {
        match self.lock_running().get(id) {
            Some(r) => {
                r.cancel.store(true, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    pub async fn view(&self, row: JobRow) -> Result<JobView, StoreError> {
        let attempts = self.store.attempts(&row.id).await?;
        let webhook_deliveries = self.store.deliveries(&row.id).await?;
        let progress = row.progress.clone().filter(|_| row.state == State::Running);
        // Outputs live on the node that made them: its address, when another node made them.
        let made_by = attempts
            .last()
            .map(|a| a.node.clone())
            .filter(|n| *n != self.settings.node && row.state == State::Succeeded);
        let elsewhere = match made_by {
            Some(node) => self
                .store
                .node(&node, self.lease_ms())
                .await?
                .map(|n| n.url)
                .filter(|url| !url.is_empty()),
            None => None,
        };
        let playback = (row.state == State::Succeeded).then(|| {
            let base = elsewhere.unwrap_or_else(|| {
                self.public_base
                    .lock()
                    .map(|b| b.clone())
                    .unwrap_or_default()
            });
            Playback {
                hls: format!("{base}/vod/{}/master.m3u8", row.id),
                dash: format!("{base}/vod/{}/manifest.mpd", row.id),
            }
        });
        Ok(JobView {
            state: row.state,
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
            input: row.input,
            priority: row.priority,
            template: row.request.template,
            options: row.options,
            metadata: row.request.metadata,
            webhook: row.request.webhook,
            phase: progress.as_ref().and_then(|p| p.phase),
            percent: progress.as_ref().and_then(|p| p.percent),
            fps: progress.as_ref().map(|p| p.fps),
            speed: progress.as_ref().map(|p| p.speed),
            eta_s: progress.as_ref().and_then(|p| p.eta_s),
            cancel_requested: row.cancel_requested && !row.state.is_final(),
            attempts,
            error: row.error,
            outputs: row
                .summary
                .as_ref()
                .and_then(|s| s.get("outputs"))
                .and_then(|o| serde_json::from_value(o.clone()).ok())
                .unwrap_or_default(),
            summary: row.summary,
            playback,
            webhook_deliveries,
            id: row.id,
        })
    }

    /// Records a state change: an event on the job's stream and, when its webhook asks for
    /// it, a delivery.
    pub async fn state_changed(&self, id: &str) {
        if let Err(e) = self.try_state_changed(id).await {
            tracing::warn!(job = %id, "cannot record the state change: {e}");
        }
    }

    async fn try_state_changed(&self, id: &str) -> Result<(), StoreError> {
        let Some(row) = self.store.job(id).await? else {
            return Ok(());
        };
        self.try_announce(row).await
    }

    /// Records the state of `row` as it is (a job just inserted: `queued`, even when a
    /// scheduler has claimed it since).
    pub async fn announce(&self, row: JobRow) {
        let id = row.id.clone();
        if let Err(e) = self.try_announce(row).await {
            tracing::warn!(job = %id, "cannot record the state change: {e}");
        }
    }

    async fn try_announce(&self, row: JobRow) -> Result<(), StoreError> {
        let id = row.id.clone();
        let id = id.as_str();
        let hook = row.request.webhook.clone();
        let state = row.state;
        let mut view = self.view(row).await?;
        view.webhook_deliveries.clear();
        let data = serde_json::to_string(&view).expect("plain data serializes");
        self.store.append_event(id, "state", &data).await?;
        let _ = self.events.send(id.to_string());
        let event = format!("job.{}", state.as_str());
        if let Some(hook) = hook.filter(|h| h.events.as_ref().is_none_or(|e| e.contains(&event))) {
            debug_assert!(WEBHOOK_EVENTS.contains(&event.as_str()));
            let payload = format!(
                r#"{{"type":"{event}","timestamp":"{}","data":{data}}}"#,
                rfc3339(now_ms())
            );
            let delivery_id = format!("msg_{}", uuid::Uuid::now_v7().simple());
            self.store
                .insert_delivery(&delivery_id, id, &event, &hook.url, &payload)
                .await?;
            self.webhook_wake.notify_one();
        }
        Ok(())
    }

    async fn progressed(&self, id: &str, progress: &Progress) -> Result<(), StoreError> {
        self.store.set_progress(id, progress).await?;
        let mut data = serde_json::to_value(progress).expect("plain data serializes");
        data["state"] = "running".into();
        self.store
            .append_event(id, "progress", &data.to_string())
            .await?;
        let _ = self.events.send(id.to_string());
        Ok(())
    }

    /// Enters this node in the fleet's list (its heartbeat keeps it there).
    pub async fn register(&self) {
        if let Err(e) = self.heartbeat(true).await {
            tracing::warn!("cannot register this node in the store: {e}");
        }
    }

    /// Claims and starts jobs while capacity allows, until the daemon stops.
    pub async fn scheduler(self: Arc<Self>) {
        match self.store.recover_interrupted(&self.settings.node).await {
            Ok(changed) => {
                for (id, state) in changed {
                    tracing::warn!(job = %id, "interrupted by a stop of this node: now {}", state.as_str());
                    self.state_changed(&id).await;
                }
            }
            Err(e) => tracing::error!("cannot recover interrupted jobs: {e}"),
        }
        tokio::spawn(self.clone().lease_keeper());
        while !self.stopping.load(Ordering::SeqCst) {
            let capacity = self.capacity_milli();
            let free = capacity - self.used_milli();
            let lease_until = now_ms() + self.lease_ms();
            match self
                .store
                .claim_next(
                    &self.settings.node,
                    &self.settings.abilities,
                    free,
                    capacity,
                    lease_until,
                )
                .await
            {
                Ok(Some(job)) => {
                    self.lock_running().insert(
                        job.id.clone(),
                        Running {
                            cancel: Arc::new(AtomicBool::new(job.cancel_requested)),
                            cost_milli: job.cost_milli,
                        },
                    );
                    tokio::spawn(self.clone().run(job));
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("cannot claim a job: {e}"),
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// The daemon stops: claim nothing more, stop what runs here, and give it back to the
    /// queue (another node, or this one after its restart, runs it again from the start).
    pub async fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.wake.notify_one();
        for running in self.lock_running().values() {
            running.cancel.store(true, Ordering::Relaxed);
        }
        match self.store.release_node(&self.settings.node).await {
            Ok(released) => {
                for id in released {
                    tracing::info!(job = %id, "stopping: back in the queue");
                    self.state_changed(&id).await;
                }
            }
            Err(e) => tracing::error!("stopping: cannot give the running jobs back: {e}"),
        }
        if let Err(e) = self.store.node_stopped(&self.settings.node).await {
            tracing::warn!("stopping: cannot mark this node stopped: {e}");
        }
    }

    /// Renews this node's leases and heartbeat, passes on cancels asked elsewhere, and gives
    /// back the jobs of nodes whose leases ran out.
    ///
    /// After the store was unreachable (a database restart), every node's leases look expired
    /// when it answers again: this node judges the others only once it has reached the store
    /// for a whole lease time, so that they had the time to renew theirs.
    async fn lease_keeper(self: Arc<Self>) {
        let lease = Duration::from_millis(self.lease_ms() as u64);
        let mut reached_since: Option<std::time::Instant> = Some(std::time::Instant::now());
        let mut last_reached = std::time::Instant::now();
        let mut unreachable = false;
        loop {
            tokio::time::sleep(self.renew_every()).await;
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            let beat = self.heartbeat(false).await;
            let renewed = self
                .store
                .renew_leases(&self.settings.node, now_ms() + self.lease_ms())
                .await;
            match (&beat, &renewed) {
                (Ok(()), Ok(_)) => {
                    if std::mem::take(&mut unreachable) {
                        tracing::info!("the job store answers again");
                    }
                    // A round that waited long for a connection was an outage too.
                    if last_reached.elapsed() > lease / 2 {
                        reached_since = None;
                    }
                    reached_since.get_or_insert_with(std::time::Instant::now);
                    last_reached = std::time::Instant::now();
                }
                (Err(e), _) | (_, Err(e)) => {
                    if !std::mem::replace(&mut unreachable, true) {
                        tracing::warn!("cannot renew this node's leases: {e}");
                    }
                    reached_since = None;
                }
            }
            if let Ok(cancels) = renewed {
                for id in cancels {
                    self.stop_local(&id);
                }
            }
            let judges = reached_since.is_some_and(|t| t.elapsed() >= lease);
            self.judges_leases.store(judges, Ordering::SeqCst);
            if !judges {
                continue;
            }
            // Only expired leases: no node is named "".
            if let Ok(changed) = self.store.recover_interrupted("").await {
                for (id, _) in &changed {
                    self.state_changed(id).await;
                }
                if !changed.is_empty() {
                    self.wake.notify_one();
                }
            }
        }
    }

    /// With object storage: the output folder uploaded (segments first, manifests last), its
    /// objects' URLs added to the summary as `outputs`. A failed upload fails the job as
    /// `output_write_failed`, retryable, naming the object.
    async fn upload_outputs(&self, id: &str, mut summary: Value) -> Result<Value, JobError> {
        let Some(objects) = &self.settings.objects else {
            return Ok(summary);
        };
        let _ = self
            .progressed(
                id,
                &Progress {
                    phase: Some(Phase::Uploading),
                    ..Progress::default()
                },
            )
            .await;
        let written = objects
            .upload_folder(&self.settings.vod_root.join(id), id)
            .await
            .map_err(|e| JobError::new("output_write_failed", e.to_string(), true))?;
        if let Value::Object(map) = &mut summary {
            map.insert("outputs".into(), Value::from(written));
        }
        Ok(summary)
    }

    async fn run(self: Arc<Self>, job: JobRow) {
        self.state_changed(&job.id).await;
        let cancel = self
            .lock_running()
            .get(&job.id)
            .map(|r| r.cancel.clone())
            .unwrap_or_default();
        let _ = self
            .progressed(
                &job.id,
                &Progress {
                    phase: Some(Phase::Probing),
                    ..Progress::default()
                },
            )
            .await;
        // An object input opens as a presigned URL, made now (it expires); never shown.
        let presigned = match crate::objects::InputObject::parse(&job.input) {
            None => None,
            Some(object) => {
                let url = match object {
                    Ok(o) => o.presigned().await,
                    Err(e) => Err(e),
                };
                match url {
                    Ok(url) => Some(url),
                    Err(e) => {
                        let failed = JobError::new("input_unreachable", e, true);
                        return self
                            .finish(&job, Err(failed), std::time::Instant::now())
                            .await;
                    }
                }
            }
        };
        let mut pipeline_job = job.options.pipeline_job(
            presigned.as_deref().unwrap_or(&job.input),
            self.settings.vod_root.join(&job.id),
        );
        // An attempt before a crash may have published; this one replaces it whole.
        pipeline_job.force = true;
        pipeline_job.cancel = Some(cancel);
        let latest: Arc<Mutex<Option<Progress>>> = Arc::default();
        let sink = latest.clone();
        let nice = self.settings.media_nice;
        let mut work = tokio::task::spawn_blocking(move || {
            let run = || {
                pipeline::transcode(&pipeline_job, &|p| {
                    if let Ok(mut slot) = sink.lock() {
                        *slot = Some(Progress::of(p));
                    }
                })
            };
            pipeline::at_lower_priority(nice, run)
                .unwrap_or_else(|e| Err(pipeline::Error::Thread(format!("media thread: {e}"))))
        });
        let started = std::time::Instant::now();
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        let result = loop {
            tokio::select! {
                done = &mut work => break done,
                _ = tick.tick() => {
                    let next = latest.lock().ok().and_then(|mut p| p.take());
                    if let Some(p) = next {
                        metrics::gauge!("encore_job_speed_ratio", "job" => job.id.clone()).set(p.speed);
                        if let Err(e) = self.progressed(&job.id, &p).await {
                            tracing::warn!(job = %job.id, "progress: {e}");
                        }
                    }
                }
            }
        };
        let mut outcome = match result {
            Ok(Ok(summary)) => {
                let mut summary = serde_json::to_value(&summary).expect("plain data serializes");
                if presigned.is_some() {
                    summary["input"] = Value::from(job.input.as_str());
                }
                self.upload_outputs(&job.id, summary).await
            }
            Ok(Err(e)) => Err(JobError::from_pipeline(&e)),
            Err(panic) => Err(JobError::new(
                "internal",
                format!("the job's thread failed: {panic}"),
                false,
            )),
        };
        if let (Err(e), Some(url)) = (&mut outcome, &presigned) {
            e.message = e.message.replace(url.as_str(), &job.input);
        }
        self.finish(&job, outcome, started).await;
    }

    /// Records the outcome of a run (retrying while the store is away) and announces it.
    async fn finish(
        &self,
        job: &JobRow,
        outcome: Result<Value, JobError>,
        started: std::time::Instant,
    ) {
        if let Err(e) = &outcome {
            if e.code != "cancelled" {
                tracing::warn!(job = %job.id, "failed: {}", e.message);
            }
        }
        let label = match &outcome {
            Ok(_) => "succeeded".to_string(),
            Err(e) => e.code.clone(),
        };
        metrics::histogram!("encore_job_duration_seconds", "outcome" => label)
            .record(started.elapsed().as_secs_f64());
        // Recorded once the store answers (it may be restarting); the lease stays renewed
        // meanwhile, since the job is still this node's.
        let mut wait = Duration::from_millis(250);
        let finished = loop {
            let recorded = self
                .store
                .finish(
                    job,
                    &self.settings.node,
                    outcome.as_ref(),
                    Some(RETRY_AFTER_MS),
                )
                .await;
            if recorded.is_ok() || self.stopping.load(Ordering::SeqCst) {
                break recorded;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        };
        self.lock_running().remove(&job.id);
        self.wake.notify_one();
        match finished {
            Ok(Some(_)) => self.state_changed(&job.id).await,
            Ok(None) => tracing::warn!(
                job = %job.id,
                attempt = job.attempts,
                "result refused: this attempt's lease ran out while it ran (the job was given to another attempt)"
            ),
            Err(e) => tracing::error!(job = %job.id, "cannot record the outcome: {e}"),
        }
    }
}
