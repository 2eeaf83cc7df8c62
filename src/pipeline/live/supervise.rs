//! Rung supervision: a rung whose scaler or encoder fails is restarted at the next segment
//! boundary with a new encoder, so one bad moment costs that rung one segment (an `EXT-X-GAP`),
//! never the channel. Restarts are counted in the channel's status and in `/metrics`.
//!
//! While a rung is down its queue is still drained, so the frame clock (and every other rung)
//! never waits on it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use super::publish::{Event, EventSink};
use crate::encode::{self, Backend, Kind};
use crate::pipeline::track::{RungFrame, RungWorker};

/// Restarts of one rendition (or the audio) since the channel started.
#[derive(Debug, Default)]
pub struct Restarts(AtomicU64);

impl Restarts {
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    pub(super) fn add(&self, channel: &str, track: &str) {
        self.0.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("encore_live_restarts_total", "channel" => channel.to_string(), "track" => track.to_string())
            .increment(1);
    }
}

/// How long to wait before opening an encoder again after it failed to open.
const REOPEN_BACKOFF: Duration = Duration::from_millis(500);

/// One rung of a live channel, restarted whenever it fails.
pub(super) struct SupervisedRung {
    pub(super) channel: String,
    pub(super) worker: RungWorker,
    pub(super) track: usize,
    pub(super) events: Sender<Event>,
    /// The rung's encoder settings and the channel's engine, to open a new encoder.
    pub(super) encoder_config: encode::Config,
    pub(super) backend: Kind,
    pub(super) restarts: Arc<Restarts>,
}

impl SupervisedRung {
    /// Runs until the frame queue closes (the channel stopped).
    pub(super) fn run(self, first_encoder: Box<dyn Backend>, frames: Receiver<RungFrame>) {
        let mut encoder = Some(first_encoder);
        let mut resume: Option<RungFrame> = None;
        loop {
            let enc = match encoder.take() {
                Some(e) => e,
                None => match self.reopen(&frames) {
                    Some(e) => e,
                    None => return,
                },
            };
            let enc = fault::maybe_faulty(enc, &self.worker.id);
            let sink = Box::new(EventSink::new(self.track, self.events.clone()));
            let stream = resume.take().into_iter().chain(frames.iter());
            match self.worker.clone().run(enc, stream, sink, true) {
                Ok(_) => return,
                Err(e) => {
                    self.restarts.add(&self.channel, &self.worker.id);
                    tracing::error!(channel = %self.channel, rendition = %self.worker.id,
                        "rung failed: {e}; restarting it at the next segment");
                }
            }
            // Resume at the next segment start, so the rung's next segment is whole and
            // aligned with the others (the one in progress is lost for this rung).
            match frames.iter().find(|f| f.force) {
                Some(f) => resume = Some(f),
                None => return,
            }
        }
    }

    /// A new encoder for the rung; frames keep draining meanwhile. None: the channel stopped.
    fn reopen(&self, frames: &Receiver<RungFrame>) -> Option<Box<dyn Backend>> {
        loop {
            let configs = std::slice::from_ref(&self.encoder_config);
            match encode::select_ladder(&self.backend, &encode::backend::candidates(), configs) {
                Ok(mut encoders) => return encoders.pop(),
                Err(e) => {
                    tracing::error!(channel = %self.channel, rendition = %self.worker.id,
                        "rung encoder does not open again: {e}; retrying");
                    let until = std::time::Instant::now() + REOPEN_BACKOFF;
                    while std::time::Instant::now() < until {
                        match frames.recv_timeout(Duration::from_millis(50)) {
                            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return None,
                            _ => continue,
                        }
                    }
                }
            }
        }
    }
}

/// Encoder failures injected in test builds: `ENCORE_TEST_FAIL_RUNG=RENDITION:FRAMES` makes
/// that rendition's first encoder fail once after FRAMES frames. Release builds have none.
mod fault {
    use crate::encode::Backend;

    #[cfg(debug_assertions)]
    pub(super) fn maybe_faulty(encoder: Box<dyn Backend>, rendition: &str) -> Box<dyn Backend> {
        use std::sync::atomic::{AtomicBool, Ordering};
        static USED: AtomicBool = AtomicBool::new(false);
        let Ok(spec) = std::env::var("ENCORE_TEST_FAIL_RUNG") else {
            return encoder;
        };
        let Some((target, frames)) = spec.split_once(':') else {
            return encoder;
        };
        if target != rendition || USED.swap(true, Ordering::SeqCst) {
            return encoder;
        }
        Box::new(Faulty {
            inner: encoder,
            left: frames.parse().unwrap_or(30),
        })
    }

    #[cfg(not(debug_assertions))]
    pub(super) fn maybe_faulty(encoder: Box<dyn Backend>, _rendition: &str) -> Box<dyn Backend> {
        encoder
    }

    #[cfg(debug_assertions)]
    struct Faulty {
        inner: Box<dyn Backend>,
        left: u64,
    }

    #[cfg(debug_assertions)]
    impl Backend for Faulty {
        fn name(&self) -> &'static str {
            self.inner.name()
        }
        fn encode(
            &mut self,
            frame: &mut ffmpeg_next::frame::Video,
            force_keyframe: bool,
        ) -> Result<Vec<crate::encode::Packet>, crate::encode::Error> {
            if self.left == 0 {
                return Err(crate::encode::Error::Encode {
                    backend: "test",
                    message: "injected failure (ENCORE_TEST_FAIL_RUNG)".into(),
                });
            }
            self.left -= 1;
            self.inner.encode(frame, force_keyframe)
        }
        fn flush(&mut self) -> Result<Vec<crate::encode::Packet>, crate::encode::Error> {
            self.inner.flush()
        }
        fn extradata(&self) -> Vec<u8> {
            self.inner.extradata()
        }
        fn pixel_format(&self) -> ffmpeg_next::format::Pixel {
            self.inner.pixel_format()
        }
        fn device_frames(&self) -> Option<&crate::hw::accel::HwFrames> {
            self.inner.device_frames()
        }
    }
}
