//! AAC-LC audio: resample any decoded audio to 48 kHz stereo, cut 1024-sample frames, encode.
//!
//! Timestamps are sample counts from the start of the presentation, so audio stays on the same
//! clock as video whatever the source's packet timing.

use ff::{codec, encoder, format::Sample, software::resampling, ChannelLayout};
use ffmpeg_next as ff;

use super::Error;

const BACKEND: &str = "aac";
pub const SAMPLE_RATE: u32 = 48_000;
pub const CHANNELS: u32 = 2;

/// One AAC access unit; `pts` in samples at 48 kHz from presentation start.
#[derive(Debug, Clone)]
pub struct Packet {
    pub data: Vec<u8>,
    pub pts: i64,
    pub duration: u32,
}

pub struct AacEncoder {
    encoder: encoder::Audio,
    resampler: Resampler,
    /// Planar samples waiting to fill a frame (left, right).
    fifo: [Vec<f32>; 2],
    frame_size: usize,
    /// Samples handed to the encoder so far (the next frame's pts).
    sent: i64,
    /// Samples still to drop from the input (audio that starts before the video).
    skip: u64,
    /// Encoder priming samples: its first packets' pts are negative by this much.
    priming: i64,
}

fn failed(message: String) -> Error {
    Error::Encode {
        backend: BACKEND,
        message,
    }
}

impl AacEncoder {
    pub fn open(bitrate: u64) -> Result<Self, Error> {
        let codec = encoder::find_by_name("aac").ok_or_else(|| Error::Unavailable {
            backend: BACKEND,
            reason: "this FFmpeg has no aac encoder".into(),
        })?;
        let mut ctx = codec::context::Context::new_with_codec(codec)
            .encoder()
            .audio()
            .map_err(|e| failed(e.to_string()))?;
        ctx.set_rate(SAMPLE_RATE as i32);
        ctx.set_format(Sample::F32(ff::format::sample::Type::Planar));
        ctx.set_channel_layout(ChannelLayout::STEREO);
        ctx.set_bit_rate(bitrate as usize);
        ctx.set_time_base(ff::Rational::new(1, SAMPLE_RATE as i32));
        ctx.set_flags(codec::Flags::GLOBAL_HEADER);
        let encoder = ctx
            .open_as(codec)
            .map_err(|e| failed(format!("open: {e}")))?;
        let frame_size = (encoder.frame_size() as usize).max(1);
        // SAFETY: the context is open.
        let priming = unsafe { (*encoder.as_ptr()).initial_padding as i64 };
        Ok(AacEncoder {
            encoder,
            resampler: Resampler::default(),
            fifo: [Vec::new(), Vec::new()],
            frame_size,
            sent: 0,
            skip: 0,
            priming,
        })
    }

    /// AudioSpecificConfig for the `esds` box.
    pub fn audio_specific_config(&self) -> Vec<u8> {
        // SAFETY: extradata belongs to the open context and is extradata_size bytes long.
        unsafe {
            let ctx = self.encoder.as_ptr();
            if (*ctx).extradata.is_null() {
                return Vec::new();
            }
            std::slice::from_raw_parts((*ctx).extradata, (*ctx).extradata_size as usize).to_vec()
        }
    }

    /// Aligns the start: positive `seconds` inserts silence (audio starts after video),
    /// negative drops that much input.
    pub fn align_start(&mut self, seconds: f64) {
        let n = (seconds.abs() * SAMPLE_RATE as f64).round() as usize;
        if seconds > 0.0 {
            for ch in &mut self.fifo {
                ch.extend(std::iter::repeat_n(0.0, n));
            }
        } else {
            self.skip = n as u64;
        }
    }

    /// Inserts `seconds` of silence (a gap in the source's audio).
    pub fn push_silence(&mut self, seconds: f64) -> Result<Vec<Packet>, Error> {
        let n = (seconds * SAMPLE_RATE as f64).round() as usize;
        for ch in &mut self.fifo {
            ch.extend(std::iter::repeat_n(0.0, n));
        }
        self.encode_full_frames()
    }

    /// Samples accepted so far, in seconds (the audio clock).
    pub fn buffered_end_seconds(&self) -> f64 {
        (self.sent as f64 + self.fifo[0].len() as f64) / SAMPLE_RATE as f64
    }

    pub fn push(&mut self, frame: &ff::frame::Audio) -> Result<Vec<Packet>, Error> {
        let [left, right] = self.resampler.run(frame)?;
        self.push_planar(&left, &right)
    }

    /// Adds 48 kHz stereo samples (equal lengths).
    pub fn push_planar(&mut self, left: &[f32], right: &[f32]) -> Result<Vec<Packet>, Error> {
        let n = left.len().min(right.len());
        let start = (self.skip as usize).min(n);
        self.skip -= start as u64;
        self.fifo[0].extend_from_slice(&left[start..n]);
        self.fifo[1].extend_from_slice(&right[start..n]);
        self.encode_full_frames()
    }

    /// Encodes what is left (the last frame padded with silence) and drains the encoder.
    pub fn flush(&mut self) -> Result<Vec<Packet>, Error> {
        let mut packets = Vec::new();
        let rest = self.fifo[0].len();
        if rest > 0 {
            packets.extend(self.encode_frame(rest)?);
        }
        self.encoder
            .send_eof()
            .map_err(|e| failed(format!("flush: {e}")))?;
        packets.extend(self.drain()?);
        Ok(packets)
    }

    fn encode_full_frames(&mut self) -> Result<Vec<Packet>, Error> {
        let mut packets = Vec::new();
        while self.fifo[0].len() >= self.frame_size {
            packets.extend(self.encode_frame(self.frame_size)?);
        }
        Ok(packets)
    }

    fn encode_frame(&mut self, samples: usize) -> Result<Vec<Packet>, Error> {
        let mut frame = ff::frame::Audio::new(
            Sample::F32(ff::format::sample::Type::Planar),
            self.frame_size,
            ChannelLayout::STEREO,
        );
        frame.set_rate(SAMPLE_RATE);
        for ch in 0..2 {
            let plane = frame.plane_mut::<f32>(ch);
            plane[..samples].copy_from_slice(&self.fifo[ch][..samples]);
            plane[samples..].fill(0.0);
            self.fifo[ch].drain(..samples);
        }
        frame.set_pts(Some(self.sent));
        self.sent += samples as i64;
        self.encoder
            .send_frame(&frame)
            .map_err(|e| failed(format!("send frame: {e}")))?;
        self.drain()
    }

    fn drain(&mut self) -> Result<Vec<Packet>, Error> {
        let mut out = Vec::new();
        let mut packet = ff::Packet::empty();
        loop {
            match self.encoder.receive_packet(&mut packet) {
                Ok(()) => out.push(Packet {
                    data: packet.data().unwrap_or(&[]).to_vec(),
                    // Shift the priming away: the first packet starts at 0, on the video's clock.
                    pts: packet.pts().unwrap_or(0) + self.priming,
                    duration: if packet.duration() > 0 {
                        packet.duration() as u32
                    } else {
                        self.frame_size as u32
                    },
                }),
                Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => break,
                Err(ff::Error::Eof) => break,
                Err(e) => return Err(failed(format!("receive packet: {e}"))),
            }
        }
        Ok(out)
    }
}

/// Converts any decoded audio to 48 kHz stereo planar f32, rebuilding itself when the
/// source's format changes mid-stream.
#[derive(Default)]
pub struct Resampler {
    context: Option<(resampling::Context, (Sample, ChannelLayout, u32))>,
}

impl Resampler {
    pub fn run(&mut self, frame: &ff::frame::Audio) -> Result<[Vec<f32>; 2], Error> {
        let layout = if frame.channel_layout().bits() == 0 {
            ChannelLayout::default(frame.channels() as i32)
        } else {
            frame.channel_layout()
        };
        let key = (frame.format(), layout, frame.rate());
        if self.context.as_ref().map(|(_, k)| *k) != Some(key) {
            let ctx = resampling::Context::get(
                frame.format(),
                layout,
                frame.rate(),
                Sample::F32(ff::format::sample::Type::Planar),
                ChannelLayout::STEREO,
                SAMPLE_RATE,
            )
            .map_err(|e| {
                failed(format!(
                    "resampler for {:?} {} Hz: {e}",
                    frame.format(),
                    frame.rate()
                ))
            })?;
            self.context = Some((ctx, key));
        }
        let (ctx, _) = self.context.as_mut().expect("set above");
        let capacity = frame.samples() * SAMPLE_RATE as usize / frame.rate().max(1) as usize + 256;
        let mut out = ff::frame::Audio::new(
            Sample::F32(ff::format::sample::Type::Planar),
            capacity,
            ChannelLayout::STEREO,
        );
        let result = if frame.channel_layout() == layout {
            ctx.run(frame, &mut out)
        } else {
            let mut input = frame.clone();
            input.set_channel_layout(layout);
            ctx.run(&input, &mut out)
        };
        result.map_err(|e| failed(format!("resample: {e}")))?;
        let n = out.samples();
        Ok([
            out.plane::<f32>(0)[..n].to_vec(),
            out.plane::<f32>(1)[..n].to_vec(),
        ])
    }
}
