//! FFmpeg's scale filters as a ladder: one libavfilter graph splits each picture into one
//! branch per rung: `scale_cuda` on NVIDIA (when the ladder kernel cannot load, is turned off,
//! or cannot take a picture), `scale_vaapi` on VA-API, and the software `scale` (which runs
//! the same graph code anywhere, for tests).

use std::sync::Arc;

use ffmpeg_next as ff;

use super::upload::ToDevice;
use super::{failed, Error, LadderFront};
use crate::hw::accel::{self, HwDevice};
use crate::media::pixel;

/// Surfaces added to each scale_vaapi output pool: a rung queue (8) plus the encoder's pictures in
/// flight (up to `async_depth` and the reorder depth), with margin.
const VAAPI_EXTRA_SURFACES: u32 = 32;

/// Which FFmpeg scale filter a [`FilterLadder`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleFilter {
    /// `scale` (swscale) then `format`: the graph's plumbing, runnable anywhere.
    Software,
    /// `scale_cuda` on CUDA frames.
    Cuda,
    /// `scale_vaapi` on VA-API surfaces.
    Vaapi,
}

impl ScaleFilter {
    fn rung(self, width: u32, height: u32, layout: ff::format::Pixel) -> String {
        let format = pixel::name(layout);
        match self {
            ScaleFilter::Software => format!("scale=w={width}:h={height},format={format}"),
            // passthrough=0: a rung of the source's size gets its own frame, so NVDEC's fixed
            // surfaces are never held by the rung queues; format= gives every rung the layout
            // the encoder's pool has.
            ScaleFilter::Cuda => {
                format!("scale_cuda=w={width}:h={height}:format={format}:passthrough=0")
            }
            // scale_vaapi's output pool is fixed (10 surfaces by default): room for the rung
            // queue and the encoder's frames in flight.
            ScaleFilter::Vaapi => format!(
                "scale_vaapi=w={width}:h={height}:format={format}:extra_hw_frames={VAAPI_EXTRA_SURFACES}"
            ),
        }
    }
}

type GraphKey = (ff::format::Pixel, ff::format::Pixel, u32, u32);

/// A libavfilter graph: `split` into one branch per rung, each with the scale filter, each
/// ending in its own sink. Built at the first picture (hardware frames bring their frames context).
pub struct FilterLadder {
    filter: ScaleFilter,
    sizes: Vec<(u32, u32)>,
    layout: ff::format::Pixel,
    to_device: Option<ToDevice>,
    download: bool,
    /// The graph and what it was built for: (format, layout, width, height) of its input.
    graph: Option<(ff::filter::Graph, GraphKey)>,
}

impl FilterLadder {
    /// `layout`: the rung frames' pixel layout (NV12, P010; software: the encoder's format).
    /// `device`: where software-decoded pictures are uploaded first (hardware filters).
    pub fn new(
        filter: ScaleFilter,
        sizes: Vec<(u32, u32)>,
        layout: ff::format::Pixel,
        device: Option<&HwDevice>,
        download: bool,
    ) -> Self {
        FilterLadder {
            filter,
            sizes,
            layout,
            // Both scale filters convert layouts themselves (format=): uploads use the rungs'.
            to_device: device.map(|d| ToDevice {
                device: d.clone(),
                layout,
                pool: None,
            }),
            download,
            graph: None,
        }
    }

    /// The graph's description, e.g. `[in]split=2[s0][s1];[s0]scale_cuda=w=1280:h=720[out0];…`.
    pub fn spec(&self) -> String {
        let n = self.sizes.len();
        let mut spec = format!("[in]split={n}");
        for i in 0..n {
            spec += &format!("[s{i}]");
        }
        for (i, (w, h)) in self.sizes.iter().enumerate() {
            spec += &format!(";[s{i}]{}[out{i}]", self.filter.rung(*w, *h, self.layout));
        }
        spec
    }

    fn build(&self, frame: &ff::frame::Video) -> Result<ff::filter::Graph, String> {
        crate::hw::filter::build(
            frame,
            ff::Rational::new(1, 90_000),
            &self.spec(),
            self.sizes.len(),
        )
    }
}

impl LadderFront for FilterLadder {
    fn describe(&self) -> String {
        let (decode, scale) = match self.filter {
            ScaleFilter::Software => ("software decode", "scale filter"),
            ScaleFilter::Cuda => ("NVDEC", "scale_cuda"),
            ScaleFilter::Vaapi => ("VA-API decode", "scale_vaapi"),
        };
        format!(
            "{decode}, {scale}{}",
            if self.download {
                ", one download per rung frame"
            } else {
                ""
            }
        )
    }

    fn rungs(
        &mut self,
        frame: &Arc<ff::frame::Video>,
    ) -> Result<Vec<Arc<ff::frame::Video>>, Error> {
        let stage = match self.filter {
            ScaleFilter::Software => "scale",
            ScaleFilter::Cuda => "scale_cuda",
            ScaleFilter::Vaapi => "scale_vaapi",
        };
        let frame = match &mut self.to_device {
            Some(to_device) => to_device.frame(frame)?,
            None => frame.clone(),
        };
        let key = (
            frame.format(),
            accel::frame_layout(&frame),
            frame.width(),
            frame.height(),
        );
        if self.graph.as_ref().map(|(_, k)| *k) != Some(key) {
            let graph = self.build(&frame).map_err(failed(stage))?;
            self.graph = Some((graph, key));
        }
        let (graph, _) = self.graph.as_mut().expect("built above");
        crate::hw::filter::push(graph, Some(&frame)).map_err(failed(stage))?;
        let mut out = Vec::with_capacity(self.sizes.len());
        for i in 0..self.sizes.len() {
            let mut picture = crate::hw::filter::pull(graph, i)
                .map_err(|e| failed(stage)(format!("rung {i}: {e}")))?
                .ok_or_else(|| failed(stage)(format!("rung {i}: no picture")))?;
            picture.set_pts(frame.pts());
            if self.download {
                picture = accel::download(&picture).map_err(|e| failed("download")(e.0))?;
            }
            out.push(Arc::new(picture));
        }
        Ok(out)
    }
}
