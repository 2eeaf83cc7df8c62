//! The demuxer of a VOD job: reads packets, counts corrupt ones, re-bases timestamp jumps
//! (`rebase.rs`) and hands audio packets to the audio thread.

use crossbeam_channel::Sender;
use ffmpeg_next as ff;

use super::rebase::Rebase;
use crate::ingest;

/// Reads packets, counting corrupt ones, and notes where the demuxed media ends.
pub(super) struct Demux {
    pub(super) audio: Option<Sender<ff::Packet>>,
    pub(super) audio_index: Option<usize>,
    pub(super) zero_seconds: f64,
    pub(super) errors: u64,
    pub(super) read_error: Option<ff::Error>,
    /// Where the demuxed media (any stream) ends, in seconds from the video's start: tells a
    /// truncated file from one whose streams simply end at different times.
    pub(super) end_seconds: f64,
    /// Formats whose timestamps may jump: the video and audio re-based across the jumps.
    pub(super) rebase: Option<Rebase>,
}

impl Demux {
    /// Reads the next packet into `packet`; false at the end of the input or after a read error.
    pub(super) fn next(
        &mut self,
        input: &mut ff::format::context::Input,
        packet: &mut ff::Packet,
    ) -> bool {
        loop {
            match ingest::read_packet(input, packet) {
                Ok(()) => break,
                Err(ff::Error::Eof) => return false,
                Err(ff::Error::InvalidData) => self.errors += 1,
                Err(e) => {
                    self.read_error = Some(e);
                    return false;
                }
            }
        }
        let tb = input.stream(packet.stream()).map(|s| s.time_base());
        if let (Some(rebase), Some(tb)) = (&mut self.rebase, tb) {
            if rebase.is_chosen(packet.stream(), self.audio_index) {
                rebase.apply(packet, tb);
            }
        }
        if let (Some(tb), Some(start)) = (tb, packet.pts().or(packet.dts())) {
            let end = (start + packet.duration().max(0)) as f64 * f64::from(tb);
            self.end_seconds = self.end_seconds.max(end - self.zero_seconds);
        }
        true
    }

    /// Hands an audio packet of the chosen stream to the audio thread.
    pub(super) fn forward_audio(&mut self, packet: &mut ff::Packet) {
        if Some(packet.stream()) != self.audio_index {
            return;
        }
        if let Some(tx) = &self.audio {
            if tx
                .send(std::mem::replace(packet, ff::Packet::empty()))
                .is_err()
            {
                self.audio = None; // the audio thread stopped; its error comes at join
            }
        }
    }
}
