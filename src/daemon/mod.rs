//! `encore serve`: the origin on HTTP, the live channels from the configuration, and an
//! orderly stop on SIGTERM/SIGINT (stop taking input, close the current segments, publish the
//! final manifests, exit 0).

pub mod config;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

pub use config::{ChannelSpec, Config};

use crate::origin::{ChannelPublisher, ChannelTiming, Origin, OriginConfig};
use crate::pipeline::live::{self, Channel, Publisher};

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

/// How long a stop may take before the daemon exits anyway.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// Runs the daemon until SIGTERM or SIGINT.
pub fn serve(config: Config) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("encore-http")
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(run(config))
}

async fn run(config: Config) -> Result<(), String> {
    crate::ingest::init();
    let vod_root = config.data_dir.join("vod");
    std::fs::create_dir_all(&vod_root)
        .map_err(|e| format!("data_dir {}: {e}", config.data_dir.display()))?;
    let resolved: Vec<live::ChannelConfig> = config
        .channels
        .iter()
        .map(ChannelSpec::resolve)
        .collect::<Result<_, _>>()?;
    let mut names = std::collections::HashSet::new();
    for c in &resolved {
        if !names.insert(c.name.clone()) {
            return Err(format!("channel {:?} is configured twice", c.name));
        }
    }

    let origin = Origin::new(OriginConfig {
        vod_root: Some(vod_root),
        max_in_flight: config.max_in_flight,
        ..OriginConfig::default()
    });
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("encore: serving on http://{addr}");

    let mut channels: Vec<Channel> = Vec::new();
    for c in resolved {
        let timing = ChannelTiming {
            segment_duration: c.segment_duration,
            epoch: SystemTime::UNIX_EPOCH,
            dvr_window: c.dvr_window,
        };
        let publisher = origin.add_channel(&c.name, timing);
        let name = c.name.clone();
        // Opening encoders and rendering the slate block: keep them off the async threads.
        let shared = publisher.clone();
        let started = tokio::task::spawn_blocking(move || live::start(c, Arc::new(shared)))
            .await
            .map_err(|e| e.to_string())?;
        match started {
            Ok(channel) => {
                // Under load the origin refuses the top rung first.
                let order: Vec<&str> = channel.renditions.iter().map(String::as_str).collect();
                publisher.set_rendition_order(&order);
                println!("{name} HLS:  http://{addr}/live/{name}/master.m3u8");
                println!("{name} DASH: http://{addr}/live/{name}/manifest.mpd");
                channels.push(channel);
            }
            Err(e) => {
                origin.remove_channel(&name);
                return Err(format!("channel {name:?}: {e}"));
            }
        }
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();

    let server = axum::serve(listener, origin.router());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        server
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await
    });

    shutdown_signal().await;
    tracing::info!("stopping: closing the current segments");
    for c in &channels {
        c.stop();
    }
    let deadline = tokio::time::Instant::now() + STOP_GRACE;
    while channels.iter().any(|c| !c.is_finished()) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for c in channels {
        if c.is_finished() {
            c.join();
        } else {
            tracing::warn!(channel = %c.name, "did not stop in time");
        }
    }
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
