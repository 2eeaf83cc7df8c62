//! `encore`: parse the command line, run the subcommand, turn errors into one line and an exit code.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use encore::api::client::{Client, ClientError};
use encore::cli::{human, ChannelsArgs, ChannelsCommand, Cli, Command, JobsArgs, JobsCommand};
use encore::cli::{LoadgenArgs, SubmitArgs, TranscodeArgs};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

/// `encore serve`: 2 when it could not start, 1 when it did not stop cleanly.
fn serve(args: &encore::cli::ServeArgs) -> Result<(), (u8, String)> {
    use encore::daemon::Exit;
    let config = args.config().map_err(|e| (2, e))?;
    let again = args.clone();
    match encore::daemon::serve(config, Box::new(move || again.config())) {
        Ok(()) => Ok(()),
        Err(Exit::Refused(e)) => Err((2, e)),
        Err(Exit::Unclean(e)) => Err((1, e)),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match &cli.command {
        Command::Transcode(args) => transcode(args),
        Command::Serve(args) => serve(args),
        Command::Origin(args) => encore::daemon::origin(&encore::daemon::OriginOnly {
            store: args.store.clone(),
            ingest: args.ingest.clone(),
            listen: args.listen.clone(),
            max_in_flight: args.max_in_flight,
            max_in_flight_per_client: args.max_in_flight_per_client,
        })
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
        Command::Jobs(args) => jobs(args),
        Command::Channels(args) => channels(args),
        Command::Loadgen(args) => loadgen(args),
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
    } else if args.live {
        let options = args.live_options().map_err(|e| (2, e))?;
        let report = encore::bench::live::run(&options, &phase);
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

/// Lines a second on stdout and the summary after them; with `--json`, the lines on stderr and
/// the summary as JSON on stdout. The run's own errors (bad options, a URL that serves no
/// manifest) exit 2; an origin's failures are figures of the report.
fn loadgen(args: &LoadgenArgs) -> Result<(), Failure> {
    let options = args.options().map_err(|e| (2, e))?;
    let mut header = false;
    let mut each_second = |s: &encore::loadgen::Second| {
        let mut text = String::new();
        if !header {
            header = true;
            text = encore::loadgen::Second::header() + "\n";
        }
        text.push_str(&s.line());
        if args.json {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    };
    let summary = encore::loadgen::run(&options, &mut each_second).map_err(|e| (2, e))?;
    if args.json {
        let text = serde_json::to_string_pretty(&summary).map_err(|e| (1, e.to_string()))?;
        println!("{text}");
    } else {
        print!("\n{summary}");
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

/// The error's line (with a hint for a missing token) and its exit code: 2 for what the server
/// refused as the request's fault (4xx), 1 for everything else.
fn client_failure(client: &Client) -> impl Fn(ClientError) -> Failure + '_ {
    move |e| {
        let status = e.status();
        let mut message = e.to_string();
        if status.is_some_and(|s| s.as_u16() == 401) && !client.has_token() {
            message.push_str(" (set ENCORE_API_TOKEN or pass --token-file)");
        }
        let code = if e.is_refusal() { 2 } else { 1 };
        (code, message)
    }
}

/// `--json`: the server's JSON as it came; else the text form.
fn print(json: bool, value: &Value, text: impl FnOnce(&Value) -> String) -> Result<(), Failure> {
    if json {
        let text = serde_json::to_string_pretty(value).map_err(|e| (1, e.to_string()))?;
        println!("{text}");
    } else {
        print!("{}", text(value));
    }
    Ok(())
}

fn jobs(args: &JobsArgs) -> Result<(), Failure> {
    let client = args.client.client().map_err(|e| (2, e))?;
    let fail = client_failure(&client);
    let json = args.client.json;
    match &args.command {
        JobsCommand::Submit(submit) => submit_job(&client, submit, json),
        JobsCommand::List { state, limit } => {
            let page = client.list(state.as_deref(), *limit).map_err(fail)?;
            print(json, &page, human::jobs_table)
        }
        JobsCommand::Show { id } => print(json, &client.show(id).map_err(fail)?, human::job),
        JobsCommand::Cancel { id } => {
            let job = client.cancel(id).map_err(fail)?;
            print(json, &job, |job| match job["state"].as_str() {
                None => format!("{id} removed (it had finished; its output is deleted)\n"),
                Some("running") => {
                    format!("{id} running, cancel requested (it stops within 2 s)\n")
                }
                Some(state) => format!("{id} {state}\n"),
            })
        }
        JobsCommand::Retry { id } => {
            let job = client.retry(id).map_err(fail)?;
            print(json, &job, |job| {
                format!("{id} {}\n", job["state"].as_str().unwrap_or("?"))
            })
        }
    }
}

fn submit_job(client: &Client, args: &SubmitArgs, json: bool) -> Result<(), Failure> {
    let job = client
        .submit(&args.body(), args.idempotency_key.as_deref())
        .map_err(client_failure(client))?;
    let id = job["id"].as_str().unwrap_or_default().to_string();
    if !args.wait {
        return print(json, &job, |_| format!("{id}\n"));
    }
    if !json {
        println!("{id}");
    }
    let job = follow(client, &id)?;
    let state = job["state"].as_str().unwrap_or_default();
    if state == "succeeded" {
        return print(json, &job, human::succeeded);
    }
    if json {
        print(json, &job, |_| String::new())?;
    }
    let error = &job["error"];
    Err(match (error["code"].as_str(), error["message"].as_str()) {
        (Some(code), Some(message)) if code != state => {
            (1, format!("job {id} {state}: {code}: {message}"))
        }
        _ => (1, format!("job {id} {state}")),
    })
}

/// Follows job `id` to its end, with a bar on a terminal (state changes as lines otherwise).
fn follow(client: &Client, id: &str) -> Result<Value, Failure> {
    let bar = progress_bar();
    bar.set_length(1000);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40.cyan/blue} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut on_event = |kind: &str, data: &Value| match kind {
        "progress" => {
            if let Some(percent) = data["percent"].as_f64() {
                bar.set_position((percent * 10.0).round() as u64);
            }
            bar.set_message(human::progress(data));
        }
        "state" => {
            let state = data["state"].as_str().unwrap_or("?");
            if bar.is_hidden() {
                eprintln!("encore: job {id} {state}");
            }
            bar.set_message(state.to_string());
        }
        _ => {}
    };
    let result = client.follow(id, &mut on_event);
    bar.finish_and_clear();
    result.map_err(client_failure(client))
}

fn channels(args: &ChannelsArgs) -> Result<(), Failure> {
    let client = args.client.client().map_err(|e| (2, e))?;
    let fail = client_failure(&client);
    let json = args.client.json;
    match &args.command {
        ChannelsCommand::List => print(
            json,
            &client.channels().map_err(fail)?,
            human::channels_table,
        ),
        ChannelsCommand::Add(add) => {
            let channel = client.add_channel(&add.body()).map_err(fail)?;
            print(json, &channel, human::channel)
        }
        ChannelsCommand::Remove { name } => {
            client.remove_channel(name).map_err(fail)?;
            if !json {
                println!("{name} removed");
            }
            Ok(())
        }
    }
}
