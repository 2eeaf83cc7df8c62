//! `encore serve`: the origin on HTTP, the live channels from the configuration, and an
//! orderly stop on SIGTERM/SIGINT (stop taking input, close the current segments, publish the
//! final manifests, exit 0).

mod channels;
pub mod config;
mod http;
mod notify;
mod push;
mod signals;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use config::{ChannelSpec, Config};

use crate::jobs::fleet::Abilities;
use crate::jobs::{InputPolicy, Service, Settings, Store};
use crate::origin::{ChannelPublisher, Origin, OriginConfig};
use crate::pipeline::live::Publisher;
use channels::Channels;

impl Publisher for ChannelPublisher {
    fn init(&self, rendition: &str, bytes: Vec<u8>) {
        self.publish_init(rendition, Bytes::from(bytes));
    }
    fn segment(&self, rendition: &str, number: u64, bytes: Vec<u8>) {
        self.publish_segment(rendition, number, Bytes::from(bytes));
    }
    fn manifest(&self, path: &str, text: String) {
        self.publish_manifest(path, Bytes::from(text));
    }
    fn evict_before(&self, number: u64) {
        ChannelPublisher::evict_before(self, number);
    }
    fn end(&self) {
        ChannelPublisher::end(self);
    }
}

/// A channel published to the origin, and also to its archive in object storage
/// (`archive = true`) and to another origin's ingest (`publish_to`).
struct Outlets {
    local: ChannelPublisher,
    archive: Option<crate::objects::LiveArchive>,
    push: Option<push::Push>,
}

impl Publisher for Outlets {
    fn init(&self, rendition: &str, bytes: Vec<u8>) {
        let bytes = Bytes::from(bytes);
        self.local.publish_init(rendition, bytes.clone());
        let path = format!("{rendition}/{}", crate::package::INIT_NAME);
        if let Some(push) = &self.push {
            push.media(path.clone(), bytes.clone());
        }
        if let Some(archive) = &self.archive {
            archive.media(&path, bytes);
        }
    }
    fn segment(&self, rendition: &str, number: u64, bytes: Vec<u8>) {
        let bytes = Bytes::from(bytes);
        self.local.publish_segment(rendition, number, bytes.clone());
        let path = format!("{rendition}/{}", crate::package::segment_name(number));
        if let Some(push) = &self.push {
            push.media(path.clone(), bytes.clone());
        }
        if let Some(archive) = &self.archive {
            archive.media(&path, bytes);
        }
    }
    fn manifest(&self, path: &str, text: String) {
        let bytes = Bytes::from(text);
        self.local.publish_manifest(path, bytes.clone());
        if let Some(push) = &self.push {
            push.manifest(path.to_owned(), bytes.clone());
        }
        if let Some(archive) = &self.archive {
            archive.manifest(path, bytes);
        }
    }
    fn evict_before(&self, number: u64) {
        // The archive keeps every segment (catch-up); the store's lifecycle rules expire them.
        self.local.evict_before(number);
    }
    fn end(&self) {
        self.local.end();
    }
}

/// How long a stop may take before the daemon exits anyway.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// Reads the configuration again, for SIGHUP.
pub type Reload = Box<dyn Fn() -> Result<Config, String> + Send + Sync>;

/// Why the daemon ended other than by an orderly stop.
#[derive(Debug)]
pub enum Exit {
    /// It could not start (configuration, address, store): nothing ran.
    Refused(String),
    /// It ran, but did not stop cleanly (a channel did not finish in time).
    Unclean(String),
}

impl From<String> for Exit {
    fn from(message: String) -> Exit {
        Exit::Refused(message)
    }
}

/// Runs the daemon until SIGTERM or SIGINT; SIGHUP reloads the configuration's channels
/// through `reload`.
pub fn serve(config: Config, reload: Reload) -> Result<(), Exit> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("encore-http")
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(run(config, reload))
}

async fn run(config: Config, reload: Reload) -> Result<(), Exit> {
    let mut signals = signals::Signals::install()?;
    crate::ingest::init();
    config.check()?;
    let vod_root = config.data_dir.join("vod");
    std::fs::create_dir_all(&vod_root)
        .map_err(|e| format!("data_dir {}: {e}", config.data_dir.display()))?;
    remove_partial_outputs(&vod_root);
    channels::check_specs(&config.channels)?;
    let token = api_token(&config)?;
    let api_addr = config.api_listen.as_deref().unwrap_or(&config.listen);
    if token.is_none() && !config.insecure_no_auth && !is_loopback(api_addr) {
        return Err(Exit::Refused(format!(
            "refusing to serve the /v1 API on {api_addr} without a token: set ENCORE_API_TOKEN \
             or --api-token-file, move the API to a loopback address with --api-listen, or \
             pass --insecure-no-auth"
        )));
    }

    crate::telemetry::handle();
    let objects = config
        .store
        .as_deref()
        .map(crate::objects::Objects::open)
        .transpose()?;
    let service = start_jobs(&config, &vod_root, objects.clone()).await?;
    let origin = Origin::new(OriginConfig {
        vod_root: Some(vod_root),
        store: objects.clone(),
        max_in_flight: config.max_in_flight,
        max_in_flight_per_client: config.max_in_flight_per_client,
        rebase_user_agents: config.rebase_user_agents.clone(),
        ingest: config.ingest.resolve()?,
        ..OriginConfig::default()
    });
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let base = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"))
        .trim_end_matches('/')
        .to_string();
    *service
        .public_base
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = base.clone();
    // In the fleet's node list, with its address, before it claims anything.
    service.register().await;
    tokio::spawn(service.clone().scheduler());
    println!("encore: serving on http://{addr}");

    let channels = Arc::new(Channels::new(
        origin.clone(),
        service.clone(),
        config.input_roots.clone(),
        base,
        objects,
    ));
    for spec in config.channels.iter().cloned() {
        let name = spec.name.clone();
        let spec_for_print = spec.clone();
        // One channel that cannot start (its encoder, its device) does not stop the others.
        if let Err(e) = channels.start(spec, true).await {
            tracing::error!(channel = %name, "did not start: {e}");
            continue;
        }
        println!("{name} HLS:  http://{addr}/live/{name}/master.m3u8");
        println!("{name} DASH: http://{addr}/live/{name}/manifest.mpd");
        if let Ok(c) = spec_for_print.resolve() {
            println!(
                "{name} DVR:  {} s, about {:.0} MB of memory when full (dvr_max_mb = {})",
                c.dvr_window.as_secs(),
                channels::dvr_megabytes(&c),
                c.dvr_max_bytes / 1_000_000
            );
        }
    }
    restore_api_channels(&service, &channels).await;
    // In a fleet: this node carries the channels whose leases it holds.
    tokio::spawn(channels.clone().keep_leases());

    let api = crate::api::router(crate::api::Api {
        service: service.clone(),
        channels: channels.clone(),
        token,
    });
    let open_files = http::raise_open_files_limit();
    let limits = http::Limits {
        header_timeout: Duration::from_secs_f64(config.header_timeout),
        send_timeout: Duration::from_secs_f64(config.send_timeout),
        max_connections: config
            .max_connections
            .unwrap_or_else(|| http::default_max_connections(open_files)),
    };
    tracing::info!(
        open_files,
        max_connections = limits.max_connections,
        "HTTP limits"
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = Vec::new();
    match &config.api_listen {
        None => servers.push(serve_on(
            listener,
            origin.router().merge(api),
            limits,
            stop_rx.clone(),
        )),
        Some(api_listen) => {
            let api_listener = tokio::net::TcpListener::bind(api_listen)
                .await
                .map_err(|e| format!("cannot listen on {api_listen}: {e}"))?;
            let api_addr = api_listener.local_addr().map_err(|e| e.to_string())?;
            println!("encore: API on http://{api_addr}/v1");
            servers.push(serve_on(listener, origin.router(), limits, stop_rx.clone()));
            let api = api.route("/healthz", axum::routing::get(|| async { "ok\n" }));
            servers.push(serve_on(api_listener, api, limits, stop_rx.clone()));
        }
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // The origin listens and the channels started: a notify-aware supervisor (systemd's
    // Type=notify) may start what depends on Encore now.
    notify::notify(&format!("READY=1\nSTATUS=serving on http://{addr}"));
    if let Some(every) = notify::watchdog_interval() {
        tokio::spawn(keep_alive(every, channels.clone()));
    }

    while signals.next().await == signals::Request::Reload {
        notify::notify("RELOADING=1");
        match reload() {
            Ok(new) => channels.reload(new.channels).await,
            Err(e) => tracing::error!("SIGHUP: configuration not reloaded: {e}"),
        }
        notify::notify("READY=1");
    }
    notify::notify("STOPPING=1");
    signals.exit_on_next_stop();
    tracing::info!("stopping: closing the current segments");
    service.stop().await;
    let late = channels.stop_all(STOP_GRACE).await;
    // The last segments and final manifests reach the origins the channels publish to.
    push::drain(push::DRAIN_GRACE).await;
    let _ = stop_tx.send(true);
    for server in servers {
        let _ = tokio::time::timeout(Duration::from_secs(3), server).await;
    }
    if late.is_empty() {
        Ok(())
    } else {
        Err(Exit::Unclean(format!(
            "channels did not stop within {} s: {}",
            STOP_GRACE.as_secs(),
            late.join(", ")
        )))
    }
}

/// What `encore origin` is given.
#[derive(Debug, Clone)]
pub struct OriginOnly {
    /// `s3://BUCKET/PREFIX` or `file:///FOLDER`.
    pub store: Option<String>,
    /// A TOML file of `[ingest]` keys: publishers that may push live channels here.
    pub ingest: Option<std::path::PathBuf>,
    pub listen: String,
    pub max_in_flight: usize,
    pub max_in_flight_per_client: Option<usize>,
}

/// `encore origin`: the origin alone, serving VOD outputs and live archives from object
/// storage, until SIGTERM or SIGINT. The HTTP limits are the daemon's defaults.
pub fn origin(args: &OriginOnly) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("encore-http")
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        let mut signals = signals::Signals::install()?;
        let store = args
            .store
            .as_deref()
            .map(crate::objects::Objects::open)
            .transpose()?;
        let ingest = match &args.ingest {
            Some(path) => config::IngestSection::load(path)?.resolve()?,
            None => crate::origin::IngestConfig::default(),
        };
        if args.max_in_flight == 0 || args.max_in_flight_per_client == Some(0) {
            return Err("--max-in-flight and --max-in-flight-per-client must be at least 1".into());
        }
        crate::telemetry::handle();
        let publishers = ingest.publishers.len();
        let origin = Origin::new(OriginConfig {
            store,
            ingest,
            max_in_flight: args.max_in_flight,
            max_in_flight_per_client: args.max_in_flight_per_client,
            ..OriginConfig::default()
        });
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let defaults = Config::default();
        let limits = http::Limits {
            header_timeout: Duration::from_secs_f64(defaults.header_timeout),
            send_timeout: Duration::from_secs_f64(defaults.send_timeout),
            max_connections: http::default_max_connections(http::raise_open_files_limit()),
        };
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        // Prometheus text for the origin's own series (requests, ingest counts); no token,
        // as the origin's content itself is public.
        let router = origin.router().route(
            "/metrics",
            axum::routing::get(|| async { crate::telemetry::handle().render() }),
        );
        let server = serve_on(listener, router, limits, stop_rx);
        println!("encore: serving on http://{addr}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        tracing::info!(store = ?args.store, publishers, "origin serving object storage and ingested channels");
        notify::notify(&format!("READY=1\nSTATUS=serving on http://{addr}"));
        while signals.next().await == signals::Request::Reload {}
        notify::notify("STOPPING=1");
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(3), server).await;
        Ok(())
    })
}

/// Tells the service manager's watchdog the daemon is alive, as long as its runtime runs and
/// the channels' registry answers (a deadlock there stops the keep-alives, and the manager
/// restarts the daemon).
async fn keep_alive(every: Duration, channels: Arc<Channels>) {
    loop {
        let registry = channels.clone();
        let answers = tokio::task::spawn_blocking(move || registry.contains(""));
        if tokio::time::timeout(every, answers).await.is_ok() {
            notify::notify("WATCHDOG=1");
        }
        tokio::time::sleep(every).await;
    }
}

fn serve_on(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    limits: http::Limits,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let router = router.route_layer(axum::middleware::from_fn(crate::telemetry::track_requests));
    tokio::spawn(http::serve(listener, router, limits, stop))
}

/// The job store, the node's capacity, the scheduler and the webhook sender.
async fn start_jobs(
    config: &Config,
    vod_root: &Path,
    objects: Option<crate::objects::Objects>,
) -> Result<Arc<Service>, String> {
    let url = match &config.database_url {
        Some(url) => url.clone(),
        None => format!("sqlite://{}", config.data_dir.join("encore.db").display()),
    };
    let store = Store::open(&url)
        .await
        .map_err(|e| format!("job store {}: {e}", redact(&url)))?;
    let probe = tokio::task::spawn_blocking(crate::hw::probe)
        .await
        .map_err(|e| e.to_string())?;
    let capacity = match config.capacity {
        Some(c) if c > 0.0 && c.is_finite() => c,
        Some(c) => return Err(format!("capacity {c}: must be above zero")),
        None => crate::jobs::node_capacity(&probe),
    };
    if !(config.lease_time >= 2.0 && config.lease_time <= 3600.0) {
        return Err(format!(
            "lease_time {}: expected 2 to 3600 seconds",
            config.lease_time
        ));
    }
    let backends = probe
        .backends
        .iter()
        .filter(|b| b.usable)
        .map(|b| b.name.clone())
        .collect();
    let webhook_secret = config
        .webhook_secret
        .as_deref()
        .map(crate::jobs::webhook::secret_bytes)
        .transpose()?;
    let node = config.node_name.clone().unwrap_or_else(host_name);
    tracing::info!(node = %node, capacity, "job store {}", redact(&url));
    let service = Service::new(
        store,
        Settings {
            node,
            capacity,
            abilities: Abilities::new(backends, (config.lease_time * 1000.0) as i64),
            profile: probe.profile.clone(),
            probed: probe.backends.clone(),
            max_queued: config.max_queued_jobs.max(1),
            max_attempts: config.max_attempts.clamp(1, 100),
            webhook_secret,
            inputs: InputPolicy {
                roots: config.input_roots.clone(),
                allow_link_local: config.allow_link_local_inputs,
            },
            vod_root: vod_root.to_path_buf(),
            objects,
            media_nice: config.media_nice,
        },
    );
    tokio::spawn(crate::jobs::webhook::sender(service.clone()));
    Ok(service)
}

/// Channels created over the API before a restart start again.
async fn restore_api_channels(service: &Service, channels: &Channels) {
    let stored = match service.store.channels().await {
        Ok(stored) => stored,
        Err(e) => {
            tracing::error!("cannot read the stored channels: {e}");
            return;
        }
    };
    for (name, text) in stored {
        if channels.contains(&name) {
            tracing::warn!(channel = %name, "stored channel shadowed by the configuration file's");
            continue;
        }
        let spec: ChannelSpec = match serde_json::from_str(&text) {
            Ok(spec) => spec,
            Err(e) => {
                tracing::error!(channel = %name, "stored channel unreadable: {e}");
                continue;
            }
        };
        if let Err(e) = channels.start(spec, false).await {
            tracing::error!(channel = %name, "stored channel did not start: {e}");
        }
    }
}

/// Staging folders of jobs a crash interrupted: never published, never served.
fn remove_partial_outputs(vod_root: &Path) {
    let Ok(entries) = std::fs::read_dir(vod_root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains(".encore-partial-") {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The API token: ENCORE_API_TOKEN, else the file named in the configuration.
fn api_token(config: &Config) -> Result<Option<Arc<str>>, String> {
    let text = match (std::env::var("ENCORE_API_TOKEN"), &config.api_token_file) {
        (Ok(t), _) if !t.trim().is_empty() => t,
        (_, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| format!("api token file {}: {e}", path.display()))?,
        _ => return Ok(None),
    };
    let token = text.trim();
    if token.len() < 16 {
        return Err("the API token must be at least 16 characters".into());
    }
    Ok(Some(Arc::from(token)))
}

fn is_loopback(addr: &str) -> bool {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "encore".into())
}

/// A database URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
            None => url.to_string(),
        },
        _ => url.to_string(),
    }
}
