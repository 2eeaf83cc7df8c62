//! Quality of one encoded rung against the source scaled to the rung's size: SSIM (all planes),
//! PSNR of the luma plane, and VMAF where FFmpeg has it, all measured by the FFmpeg CLI's own
//! filters, so the figures are the ones an FFmpeg user would get.

use std::path::Path;
use std::process::Command;

use serde::Serialize;

/// What one rung scored.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Quality {
    /// SSIM over Y, U and V (FFmpeg's `All`), 0 to 1.
    pub ssim: f64,
    /// PSNR of the luma plane, dB.
    pub psnr_y: f64,
    /// VMAF (0–100), when FFmpeg is built with libvmaf.
    pub vmaf: Option<f64>,
}

/// Whether the FFmpeg CLI has the `libvmaf` filter.
pub fn has_vmaf() -> bool {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-filters"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(" libvmaf "))
}

/// Scores `encoded` (`width`x`height`) against `source`, scaled with bicubic swscale as the
/// ladders are.
pub fn measure(
    encoded: &Path,
    source: &Path,
    width: u32,
    height: u32,
    vmaf: bool,
) -> Result<Quality, String> {
    // Both inputs from their first frame; the reference scaled to the rung.
    let mut graph = format!(
        "[0:v]format=yuv420p,setpts=PTS-STARTPTS[d];\
         [1:v]scale=w={width}:h={height}:flags=bicubic,format=yuv420p,setpts=PTS-STARTPTS[r];\
         [d]split={n}[d0][d1]{d2};[r]split={n}[r0][r1]{r2};[d0][r0]ssim;[d1][r1]psnr",
        n = if vmaf { 3 } else { 2 },
        d2 = if vmaf { "[d2]" } else { "" },
        r2 = if vmaf { "[r2]" } else { "" },
    );
    if vmaf {
        graph += ";[d2][r2]libvmaf";
    }
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-nostdin", "-i"])
        .arg(encoded)
        .arg("-i")
        .arg(source)
        .args(["-lavfi", &graph, "-f", "null", "-"])
        .output()
        .map_err(|e| format!("the ffmpeg CLI is needed to measure quality: {e}"))?;
    let log = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!(
            "ffmpeg could not compare {} with the source: {}",
            encoded.display(),
            log.lines().last().unwrap_or_default()
        ));
    }
    parse(&log).ok_or_else(|| format!("no SSIM/PSNR summary in ffmpeg's log: {log}"))
}

/// Reads the summary lines the `ssim`, `psnr` and `libvmaf` filters log at the end:
/// `SSIM Y:0.97 (15.2) U:… V:… All:0.965 (14.6)`, `PSNR y:38.1 u:… average:…`,
/// `VMAF score: 91.2`.
pub(crate) fn parse(log: &str) -> Option<Quality> {
    let after = |line: &str, key: &str| -> Option<f64> {
        let rest = &line[line.find(key)? + key.len()..];
        let number: String = rest
            .trim_start()
            .chars()
            .take_while(|c| !c.is_whitespace())
            .collect();
        number.parse().ok()
    };
    let ssim = log
        .lines()
        .filter(|l| l.contains("SSIM Y:"))
        .find_map(|l| after(l, "All:"))?;
    let psnr_y = log
        .lines()
        .filter(|l| l.contains("PSNR y:"))
        .find_map(|l| after(l, "PSNR y:"))?;
    let vmaf = log.lines().find_map(|l| after(l, "VMAF score:"));
    Some(Quality { ssim, psnr_y, vmaf })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ffmpegs_summary_lines_are_read() {
        let log = "\
[Parsed_ssim_6 @ 0x55] SSIM Y:0.981234 (17.262) U:0.990000 (20.0) V:0.991000 (20.4) All:0.985346 (18.341)
[Parsed_psnr_7 @ 0x56] PSNR y:38.123456 u:44.0 v:44.5 average:39.6 min:36.1 max:41.0
";
        let q = parse(log).unwrap();
        assert_eq!((q.ssim, q.psnr_y, q.vmaf), (0.985346, 38.123456, None));
        let lossless = "SSIM Y:1.000000 (inf) All:1.000000 (inf)\nPSNR y:inf u:inf\n";
        assert!(parse(lossless).unwrap().psnr_y.is_infinite());
        assert!(parse("nothing here").is_none());
        let with_vmaf = format!("{log}[libvmaf @ 0x57] VMAF score: 93.512\n");
        assert_eq!(parse(&with_vmaf).unwrap().vmaf, Some(93.512));
    }
}
