//! `encore`: parse the command line, run the subcommand, turn errors into one line and an exit code.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use encore::cli::{Cli, Command, TranscodeArgs};
use indicatif::{ProgressBar, ProgressStyle};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match &cli.command {
        Command::Transcode(args) => transcode(args),
        Command::Serve(args) => args
            .config()
            .and_then(encore::daemon::serve)
            .map_err(|e| (2, e)),
        Command::Probe { json } => probe(*json),
        Command::Bench(args) => bench(args),
        Command::Selftest { gpu } => match encore::selftest::run(*gpu) {
            Ok(report) => {
                print!("{report}");
                Ok(())
            }
            Err(report) => {
                print!("{report}");
                Err((1, "selftest failed".into()))
            }
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("encore: error: {message}");
            ExitCode::from(code)
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

type Failure = (u8, String);

fn transcode(args: &TranscodeArgs) -> Result<(), Failure> {
    let bar = progress_bar();
    let report = |p: &encore::pipeline::Progress| {
        if let Some(total) = p.expected_frames {
            bar.set_length(total.max(p.frames));
        }
        bar.set_position(p.frames);
        let secs = p.elapsed.as_secs_f64().max(1e-3);
        let fps = p.frames as f64 / secs;
        let speed = p.media_seconds / secs;
        let eta = p
            .expected_frames
            .filter(|_| fps > 0.0)
            .map(|t| Duration::from_secs_f64(t.saturating_sub(p.frames) as f64 / fps));
        bar.set_message(format!(
            "{fps:.1} fps, {speed:.2}x{}",
            eta.map(|d| format!(", ETA {}s", d.as_secs()))
                .unwrap_or_default()
        ));
    };
    let result = encore::pipeline::transcode(&args.job(), &report);
    bar.finish_and_clear();
    let summary = result.map_err(|e| (e.exit_code() as u8, e.to_string()))?;
    if args.json {
        let text = serde_json::to_string_pretty(&summary).map_err(|e| (1, e.to_string()))?;
        println!("{text}");
    } else {
        eprintln!(
            "encore: wrote {} ({} renditions, {} segments, {:.1} MB) in {:.1} s, {:.2}x real time",
            summary.output.display(),
            summary.renditions.len(),
            summary.segments,
            summary.bytes as f64 / 1e6,
            summary.wall_time,
            summary.speed
        );
        if summary.decode_errors > 0 {
            eprintln!(
                "encore: {} corrupt packets or frames were skipped",
                summary.decode_errors
            );
        }
    }
    Ok(())
}

fn bench(args: &encore::cli::BenchArgs) -> Result<(), Failure> {
    let spinner = if std::io::stderr().is_terminal() {
        let s = ProgressBar::new_spinner();
        s.enable_steady_tick(Duration::from_millis(120));
        s
    } else {
        ProgressBar::hidden()
    };
    let phase = |p: &str| spinner.set_message(p.to_string());
    let (json, text) = if args.origin {
        let options = args.origin_options().map_err(|e| (2, e))?;
        let report = encore::bench::origin::run(&options, &phase);
        spinner.finish_and_clear();
        let report = report.map_err(|e| (1, e))?;
        (serde_json::to_string_pretty(&report), report.to_string())
    } else {
        let options = args.options().map_err(|e| (2, e))?;
        let report = encore::bench::run(&options, &phase);
        spinner.finish_and_clear();
        let report = report.map_err(|e| (1, e))?;
        (serde_json::to_string_pretty(&report), report.to_string())
    };
    if args.json {
        println!("{}", json.map_err(|e| (1, e.to_string()))?);
    } else {
        print!("{text}");
    }
    Ok(())
}

fn probe(json: bool) -> Result<(), Failure> {
    let report = encore::hw::probe();
    if json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| (1, e.to_string()))?;
        println!("{text}");
    } else {
        println!("{report}");
    }
    Ok(())
}

/// A bar on a terminal; nothing when stderr is not one.
fn progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40.cyan/blue} {pos}/{len} frames  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
