//! The audio clock: takes 1024 samples from the feed at each step of the wall clock, by their
//! position on the output clock (silence where there are none), encodes AAC and cuts segments
//! on the same epoch-locked grid as video.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::clock::ChannelClock;
use super::{Feed, MEDIA_EPOCH_SECONDS, OUTPUT_DELAY};
use crate::encode::{self, audio::AacEncoder};
use crate::package::cmaf;
use crate::pipeline::segmenter::{Segmenter, Unit};
use crate::pipeline::track::{aac_track, Sink, TrackOutput};
use crate::pipeline::Error;

/// Pulls sound from the feed on the wall clock (silence when there is none) and encodes it.
pub(super) struct AudioClock {
    pub(super) feed: Arc<Feed>,
    pub(super) stopping: Arc<AtomicBool>,
    pub(super) start_seconds: f64,
    pub(super) segment_duration: Duration,
    pub(super) bitrate: u64,
    pub(super) sink: Box<dyn Sink>,
    pub(super) clock: Arc<ChannelClock>,
}

impl AudioClock {
    pub(super) fn run(self) -> Result<(), Error> {
        let rate = encode::audio::SAMPLE_RATE as f64;
        let mut encoder = AacEncoder::open(self.bitrate)?;
        let track = aac_track(&encoder, self.bitrate)?;
        let mut output = TrackOutput::new(track, self.sink)?
            .with_time_origin(MEDIA_EPOCH_SECONDS * encode::audio::SAMPLE_RATE as u64);
        let mut segmenter = Segmenter::new(encode::audio::SAMPLE_RATE, self.segment_duration, 1024)
            .without_tail_merge();
        let start = (self.start_seconds * rate).round() as i64;
        let chunk = 1024usize;
        let mut position = start;
        let mut write =
            |packets: Vec<encode::audio::Packet>, output: &mut TrackOutput| -> Result<(), Error> {
                for p in packets {
                    let pts = start + p.pts;
                    if let Some(segment) = segmenter.push(Unit {
                        data: p.data,
                        pts,
                        dts: pts,
                        sync: true,
                    }) {
                        output.write(segment, cmaf::SegmentFlags::default())?;
                    }
                }
                Ok(())
            };
        loop {
            let due = (position + chunk as i64) as f64 / rate + OUTPUT_DELAY.as_secs_f64();
            self.clock.sleep_until(due, &self.stopping);
            if self.stopping.load(Ordering::SeqCst) || self.feed.ended.load(Ordering::SeqCst) {
                break;
            }
            let [left, right] = super::feed::lock(&self.feed.audio).take(position, chunk);
            write(encoder.push_planar(&left, &right)?, &mut output)?;
            position += chunk as i64;
        }
        write(encoder.flush()?, &mut output)?;
        let rest = segmenter.finish();
        let count = rest.len();
        for (i, segment) in rest.into_iter().enumerate() {
            output.write(
                segment,
                cmaf::SegmentFlags {
                    slate: false,
                    last: i + 1 == count,
                },
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crossbeam_channel::{bounded, Sender};

    use super::super::clock::tests::{step, stepped_wall};
    use super::*;
    use crate::package::SegmentEntry;

    /// Hands each finished segment's entry to the test.
    struct Entries(Sender<SegmentEntry>);

    impl Sink for Entries {
        fn init(&mut self, _bytes: Vec<u8>, _codecs: &str) -> Result<(), Error> {
            Ok(())
        }
        fn segment(&mut self, entry: SegmentEntry, _bytes: Vec<u8>) -> Result<(), Error> {
            let _ = self.0.send(entry);
            Ok(())
        }
    }

    /// The wall clock steps back 30 s after the first segment: the next segments still come
    /// one per D, numbered in sequence, their media time continuing (tfdt monotonic).
    #[test]
    fn a_wall_clock_stepped_back_does_not_stop_the_sound() {
        crate::hw::init_ffmpeg();
        let (offset, wall) = stepped_wall();
        let clock = Arc::new(ChannelClock::with_wall("test", wall));
        let stopping = Arc::new(AtomicBool::new(false));
        let (tx, entries) = bounded(16);
        let audio = AudioClock {
            feed: Arc::new(Feed::default()),
            stopping: stopping.clone(),
            start_seconds: clock.now().floor() + 1.0,
            segment_duration: Duration::from_secs(1),
            bitrate: 64_000,
            sink: Box::new(Entries(tx)),
            clock,
        };
        let thread = std::thread::spawn(move || audio.run());
        // One segment a second; one not there 5 s after it was due never comes.
        let next = || {
            entries
                .recv_timeout(Duration::from_secs(5))
                .expect("the audio clock stopped")
        };
        let mut previous = next();
        step(&offset, -30.0);
        for _ in 0..2 {
            let e = next();
            assert_eq!(e.number, previous.number + 1);
            assert_eq!(
                e.start,
                previous.start + previous.duration,
                "tfdt continues"
            );
            previous = e;
        }
        stopping.store(true, Ordering::SeqCst);
        thread.join().unwrap().unwrap();
    }
}
