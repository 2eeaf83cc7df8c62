//! Stage 4: manifests, the summary, and the staging folder renamed into place.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::run::Ran;
use super::{Job, RenditionSummary, Summary};
use crate::package::{self, Presentation, Rendition, RenditionKind, Timeline};
use crate::pipeline::{io_error, Error};

pub fn publish(job: &Job, ran: Ran, staging: Staging, started: Instant) -> Result<Summary, Error> {
    let mut renditions: Vec<Rendition> = ran.videos.iter().map(|v| v.rendition(ran.fps)).collect();
    if let Some(a) = &ran.audio {
        renditions.push(a.rendition());
    }
    let presentation = Presentation {
        segment_duration: job.segment_duration,
        renditions,
        timeline: Timeline::Vod,
    };
    write_manifests(&staging.path, &presentation)?;
    if ran.decode_errors > 0 {
        tracing::warn!(
            "{} corrupt packets or frames were skipped; the output is complete without them",
            ran.decode_errors
        );
    }
    let targets = ran
        .videos
        .iter()
        .map(|v| v.rung.bitrate)
        .chain(ran.audio.iter().map(|_| job.audio_bitrate));
    let wall_time = started.elapsed().as_secs_f64();
    let summary = Summary {
        input: job.input.clone(),
        output: job.out.clone(),
        codec: job.codec,
        backend: ran.backend,
        front_end: ran.front_end,
        deinterlace: ran.deinterlace,
        segment_duration: job.segment_duration.as_secs_f64(),
        duration: ran.media_seconds,
        renditions: presentation
            .renditions
            .iter()
            .zip(targets)
            .map(|(r, target)| summarize(r, target))
            .collect(),
        segments: presentation
            .renditions
            .iter()
            .map(|r| r.segments.len())
            .sum(),
        bytes: dir_size(&staging.path),
        wall_time,
        speed: ran.media_seconds / wall_time.max(1e-9),
        frames: ran.frames,
        decode_errors: ran.decode_errors,
        duplicated_frames: ran.duplicated_frames,
        dropped_frames: ran.dropped_frames,
    };
    staging.commit(&job.out, job.force)?;
    Ok(summary)
}

/// Writes the multivariant playlist, every media playlist and the MPD.
pub fn write_manifests(dir: &Path, presentation: &Presentation) -> Result<(), Error> {
    let write = |path: PathBuf, text: String| std::fs::write(&path, text).map_err(io_error(path));
    write(
        dir.join(package::MASTER_PLAYLIST_NAME),
        package::hls::master_playlist(presentation),
    )?;
    for r in &presentation.renditions {
        write(
            dir.join(&r.id).join(package::MEDIA_PLAYLIST_NAME),
            package::hls::media_playlist(presentation, r),
        )?;
    }
    write(
        dir.join(package::MPD_NAME),
        package::dash::mpd(presentation),
    )
}

fn summarize(r: &Rendition, target: u64) -> RenditionSummary {
    let (kind, width, height) = match r.kind {
        RenditionKind::Video { width, height, .. } => ("video", Some(width), Some(height)),
        RenditionKind::Audio { .. } => ("audio", None, None),
    };
    RenditionSummary {
        id: r.id.clone(),
        kind,
        width,
        height,
        codecs: r.codecs.clone(),
        target_bitrate: target,
        peak_bitrate: r.peak_bitrate,
        average_bitrate: r.average_bitrate,
        segments: r.segments.len(),
        bytes: r.segments.iter().map(|s| s.bytes).sum(),
    }
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_size(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// A temporary output folder beside the final one; removed unless committed.
pub struct Staging {
    pub path: PathBuf,
    committed: bool,
}

impl Staging {
    pub fn create(out: &Path) -> Result<Self, Error> {
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(io_error(&parent))?;
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "out".into());
        let path = parent.join(format!(".{name}.encore-partial-{}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(io_error(&path))?;
        }
        std::fs::create_dir(&path).map_err(io_error(&path))?;
        Ok(Staging {
            path,
            committed: false,
        })
    }

    fn commit(mut self, out: &Path, force: bool) -> Result<(), Error> {
        if out.exists() {
            if !force {
                return Err(Error::OutputExists(out.to_path_buf()));
            }
            // Replace: move the old output aside first so the new one lands in one rename.
            let old = self.path.with_extension("old");
            std::fs::rename(out, &old).map_err(io_error(out))?;
            std::fs::rename(&self.path, out).map_err(io_error(out))?;
            let _ = std::fs::remove_dir_all(old);
        } else {
            std::fs::rename(&self.path, out).map_err(io_error(out))?;
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
