//! The operations files beside the Debian package, checked without starting the daemon.
//! Nothing else reads them, so a renamed metric, a changed flag or a moved listener would
//! break them silently:
//! - `packaging/grafana/encore.json`, the Grafana dashboard: every `encore_*` series its
//!   queries name (less a histogram's `_bucket`, `_sum` or `_count`) is one the daemon
//!   registers (the name, quoted, is in a file under `src/`), those it reads as histograms are
//!   recorded as histograms, and it imports with a Prometheus data source input and a
//!   `channel` variable;
//! - `packaging/Containerfile`: its build stage copies what the build reads (what the source
//!   embeds from outside `src/` among it); its runtime stage installs a Debian package for each
//!   FFmpeg library the binary links (what build-deb.sh's Depends names), asks the NVIDIA
//!   runtime for the video and compute driver capabilities, starts the daemon with the flags
//!   of the systemd unit (which `encore`'s own parser accepts) and exposes the packaged
//!   configuration's ports;
//! - `packaging/kubernetes.yaml`: it asks for a GPU and probes `/healthz` and `/readyz`; read
//!   with Python's yaml module where there is one (required under CI: `make test-deps` makes
//!   tests/openapi/.venv), its `encore.toml` is one the daemon accepts, the probes and the
//!   Services reach the listeners that serve those paths, and the API token comes from a
//!   Secret.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use clap::Parser;
use encore::daemon::Config;
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Under CI a missing tool fails the test; elsewhere the part that needs it is skipped.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The port of a listen address (`0.0.0.0:8080` → 8080).
fn port_of(addr: &str) -> u64 {
    addr.rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("{addr:?} has no port"))
}

// The dashboard.

fn dashboard() -> Value {
    serde_json::from_str(&read("packaging/grafana/encore.json"))
        .unwrap_or_else(|e| panic!("packaging/grafana/encore.json is not JSON: {e}"))
}

/// Every query of the dashboard with the title of its panel: the panels' targets, those of the
/// panels inside rows, and the template variables' queries.
fn queries(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("(untitled)");
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push((title.to_string(), expr.to_string()));
                }
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["type"].as_str() != Some("query") {
            continue;
        }
        let name = variable["name"].as_str().unwrap_or("?");
        let query = variable["query"]["query"]
            .as_str()
            .or_else(|| variable["query"].as_str());
        if let Some(query) = query {
            out.push((format!("variable {name}"), query.to_string()));
        }
    }
    out
}

/// The `encore_*` names in a PromQL expression, each less a histogram series' suffix and
/// with whether it was read as a histogram (`_bucket`, `_sum`, `_count`).
fn metric_names(expr: &str) -> Vec<(String, bool)> {
    const PREFIX: &str = "encore_";
    let bytes = expr.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = expr[from..].find(PREFIX) {
        let start = from + at;
        let mut end = start + PREFIX.len();
        while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end] == b'_') {
            end += 1;
        }
        from = end;
        let inside_a_word = start > 0
            && (bytes[start - 1].is_ascii_alphanumeric()
                || matches!(bytes[start - 1], b'_' | b':'));
        if inside_a_word || end == start + PREFIX.len() {
            continue;
        }
        let name = &expr[start..end];
        match ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(*suffix))
        {
            Some(histogram) => out.push((histogram.to_string(), true)),
            None => out.push((name.to_string(), false)),
        }
    }
    out
}

/// Every file under src/, with its text.
fn sources() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path();
            if path.is_dir() {
                walk(&path, out);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.push((path, String::from_utf8_lossy(&bytes).into_owned()));
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo().join("src"), &mut out);
    out
}

/// Whether `text` records `name` as a histogram: `histogram!(`, white space, `"name"`.
fn records_histogram(text: &str, name: &str) -> bool {
    let quoted = format!("\"{name}\"");
    text.match_indices("histogram!(")
        .any(|(at, open)| text[at + open.len()..].trim_start().starts_with(&quoted))
}

#[test]
fn the_dashboard_queries_only_series_the_daemon_exports() {
    let dashboard = dashboard();
    let queries = queries(&dashboard);
    assert!(
        queries.len() >= 20,
        "the dashboard has only {} queries: {queries:#?}",
        queries.len()
    );
    // Each name, the panels that query it, and whether one reads it as a histogram.
    let mut names: BTreeMap<String, (BTreeSet<String>, bool)> = BTreeMap::new();
    for (panel, expr) in &queries {
        let found = metric_names(expr);
        assert!(
            !found.is_empty(),
            "{panel:?} queries no encore_ series: {expr}"
        );
        for (name, histogram) in found {
            let entry = names.entry(name).or_default();
            entry.0.insert(panel.clone());
            entry.1 |= histogram;
        }
    }
    let sources = sources();
    let where_used = |panels: &BTreeSet<String>| {
        panels
            .iter()
            .map(|p| format!("{p:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let unknown: Vec<String> = names
        .iter()
        .filter(|(name, _)| {
            let quoted = format!("\"{name}\"");
            !sources.iter().any(|(_, text)| text.contains(&quoted))
        })
        .map(|(name, (panels, _))| format!("{name} (in {})", where_used(panels)))
        .collect();
    assert!(
        unknown.is_empty(),
        "packaging/grafana/encore.json queries series the daemon does not register (no \"NAME\" \
         in any file under src/):\n  {}",
        unknown.join("\n  ")
    );
    let not_histograms: Vec<String> = names
        .iter()
        .filter(|(name, (_, histogram))| {
            *histogram
                && !sources
                    .iter()
                    .any(|(_, text)| records_histogram(text, name))
        })
        .map(|(name, (panels, _))| format!("{name} (in {})", where_used(panels)))
        .collect();
    assert!(
        not_histograms.is_empty(),
        "packaging/grafana/encore.json reads these as histograms (_bucket, _sum, _count), but \
         the daemon does not record them with histogram!:\n  {}",
        not_histograms.join("\n  ")
    );
}

#[test]
fn the_dashboard_imports_with_a_prometheus_input_and_a_channel_variable() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"].as_str(), Some("encore"));
    assert_eq!(dashboard["title"].as_str(), Some("Encore"));
    let inputs = dashboard["__inputs"]
        .as_array()
        .expect("__inputs: what Grafana's import asks for");
    assert!(
        inputs
            .iter()
            .any(|i| i["name"].as_str() == Some("DS_PROMETHEUS")
                && i["type"].as_str() == Some("datasource")
                && i["pluginId"].as_str() == Some("prometheus")),
        "a DS_PROMETHEUS data source input: {inputs:#?}"
    );
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list");
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no template variable {name:?}"))
    };
    let channel = variable("channel");
    let query = channel["query"]["query"]
        .as_str()
        .or_else(|| channel["query"].as_str())
        .unwrap_or_default();
    assert!(
        query.starts_with("label_values(encore_channel_on_air") && query.ends_with("channel)"),
        "the channels are those on encore_channel_on_air: {query}"
    );
    variable("instance");

    // Every query goes to the data source chosen at import, and the panel ids (by which
    // Grafana keys panels) are distinct.
    fn walk(panels: &Value, ids: &mut Vec<u64>, sources: &mut BTreeSet<String>) {
        for panel in panels.as_array().into_iter().flatten() {
            ids.push(panel["id"].as_u64().expect("every panel has an id"));
            for target in panel["targets"].as_array().into_iter().flatten() {
                sources.insert(target["datasource"]["uid"].to_string());
            }
            walk(&panel["panels"], ids, sources);
        }
    }
    let (mut ids, mut sources) = (Vec::new(), BTreeSet::new());
    walk(&dashboard["panels"], &mut ids, &mut sources);
    let distinct: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), ids.len(), "panel ids repeat: {ids:?}");
    assert_eq!(
        sources,
        BTreeSet::from(["\"${DS_PROMETHEUS}\"".to_string()]),
        "every query's data source"
    );
}

// The container image.

/// The Containerfile's instructions by stage (from one FROM to the next), without comments,
/// continued lines joined.
fn container_stages() -> Vec<Vec<String>> {
    let text = read("packaging/Containerfile");
    let mut stages: Vec<Vec<String>> = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                let instruction = std::mem::take(&mut current);
                if instruction.starts_with("FROM ") {
                    stages.push(Vec::new());
                }
                if let Some(stage) = stages.last_mut() {
                    stage.push(instruction);
                }
            }
        }
    }
    stages
}

/// The arguments of a stage's instructions with this keyword (`RUN`, `ENV`, …).
fn args<'a>(stage: &'a [String], keyword: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    stage
        .iter()
        .filter_map(move |i| i.strip_prefix(keyword)?.strip_prefix(' '))
        .map(str::trim)
}

/// The runtime stage's ENTRYPOINT, in exec form.
fn entrypoint(runtime: &[String]) -> Vec<String> {
    let json = args(runtime, "ENTRYPOINT").last().expect("an ENTRYPOINT");
    serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("ENTRYPOINT in exec form (a JSON array): {e}: {json}"))
}

fn flag_value<'a>(argv: &'a [String], flag: &str) -> &'a str {
    let at = argv
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("{flag} in {argv:?}"));
    argv.get(at + 1)
        .unwrap_or_else(|| panic!("{flag} has no value in {argv:?}"))
}

/// What the source embeds from the repository outside src/ (`include_str!`,
/// `include_bytes!`), by top-level folder or file: `console`, `hw-profiles`, `kernels`, …
fn embedded_from_outside_src() -> BTreeSet<String> {
    let root = repo();
    let mut embedded = BTreeSet::new();
    for (file, text) in sources() {
        if file.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        for (at, call) in text
            .match_indices("include_str!(")
            .chain(text.match_indices("include_bytes!("))
        {
            let argument = text[at + call.len()..].trim_start();
            let Some((relative, _)) = argument
                .strip_prefix('"')
                .and_then(|rest| rest.split_once('"'))
            else {
                continue;
            };
            let mut path = file.parent().expect("a file's folder").to_path_buf();
            for part in Path::new(relative).components() {
                match part {
                    Component::ParentDir => {
                        path.pop();
                    }
                    Component::Normal(name) => path.push(name),
                    _ => {}
                }
            }
            if let Some(Component::Normal(top)) = path
                .strip_prefix(&root)
                .ok()
                .and_then(|inside| inside.components().next())
            {
                let top = top.to_string_lossy().into_owned();
                if top != "src" {
                    embedded.insert(top);
                }
            }
        }
    }
    embedded
}

/// The FFmpeg libraries (libav*, libsw*, libpostproc) the binary under test links, by name
/// (`libavcodec`), read with `objdump -p` as build-deb.sh reads them; None without objdump.
fn linked_ffmpeg_libraries() -> Option<BTreeSet<String>> {
    let binary = env!("CARGO_BIN_EXE_encore");
    let out = Command::new("objdump")
        .arg("-p")
        .arg(binary)
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "objdump -p {binary}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| line.trim().strip_prefix("NEEDED"))
            .filter_map(|soname| {
                soname
                    .trim()
                    .split_once(".so")
                    .map(|(name, _)| name.to_string())
            })
            .filter(|name| {
                ["libav", "libsw", "libpostproc"]
                    .iter()
                    .any(|prefix| name.starts_with(prefix))
            })
            .collect(),
    )
}

/// The build stage and the runtime stage.
fn build_and_runtime_stages() -> (Vec<String>, Vec<String>) {
    let mut stages = container_stages();
    assert_eq!(
        stages.len(),
        2,
        "a build stage and a runtime stage: {stages:#?}"
    );
    let runtime = stages.pop().expect("two stages");
    let build = stages.pop().expect("two stages");
    (build, runtime)
}

#[test]
fn the_image_is_built_on_debian_12_from_what_the_build_reads() {
    let (build, runtime) = build_and_runtime_stages();
    // Both on Debian 12, so the runtime has the FFmpeg the binary was linked against.
    assert!(
        build[0].starts_with("FROM rust:") && build[0].contains("bookworm"),
        "the build stage: the Rust image for Debian 12: {}",
        build[0]
    );
    assert!(
        runtime[0].starts_with("FROM debian:12-slim"),
        "the runtime stage: {}",
        runtime[0]
    );
    let build_steps = args(&build, "RUN").collect::<Vec<_>>().join("\n");
    for step in [
        "bash packaging/install-deps.sh",
        "cargo build --release --locked",
    ] {
        assert!(build_steps.contains(step), "the build stage runs {step:?}");
    }
    // It copies what the build reads: the crate, what the source embeds from outside src/,
    // and benches/ (Cargo.toml declares a bench target, which cargo looks for).
    let copied: BTreeSet<&str> = args(&build, "COPY")
        .flat_map(|c| {
            let words: Vec<&str> = c
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            words[..words.len().saturating_sub(1)].to_vec()
        })
        .map(|source| source.trim_start_matches("./").trim_end_matches('/'))
        .collect();
    let embedded = embedded_from_outside_src();
    assert!(
        embedded.contains("hw-profiles"),
        "the hw-profiles are embedded: {embedded:?}"
    );
    let needed = ["Cargo.toml", "Cargo.lock", "build.rs", "src", "benches"]
        .into_iter()
        .chain(embedded.iter().map(String::as_str));
    let missing: Vec<&str> = needed
        .filter(|n| !copied.contains(n) && !copied.contains("."))
        .collect();
    assert!(
        missing.is_empty(),
        "the build stage does not copy {missing:?}, which the build reads (it copies {copied:?})"
    );
    let absent: Vec<&&str> = copied
        .iter()
        .filter(|source| !repo().join(source).exists())
        .collect();
    assert!(
        absent.is_empty(),
        "the build stage copies {absent:?}, which the repository does not have"
    );
}

#[test]
fn the_image_has_the_libraries_the_binary_links_and_asks_for_the_gpu_video_engines() {
    let (_, runtime) = build_and_runtime_stages();
    // A package for each FFmpeg library: lib<name><ABI number>, as Debian names them.
    let packages: Vec<&str> = args(&runtime, "RUN")
        .filter(|run| run.contains("apt-get install"))
        .flat_map(|run| run.split_whitespace())
        .collect();
    let installs = |library: &str| {
        packages.iter().any(|p| {
            p.strip_prefix(library)
                .is_some_and(|abi| !abi.is_empty() && abi.bytes().all(|b| b.is_ascii_digit()))
        })
    };
    for library in [
        "libavcodec",
        "libavformat",
        "libavfilter",
        "libavutil",
        "libswscale",
        "libswresample",
    ] {
        assert!(
            installs(library),
            "the runtime stage installs {library}N: {packages:?}"
        );
    }
    match linked_ffmpeg_libraries() {
        Some(linked) => {
            assert!(
                linked.contains("libavcodec"),
                "objdump found no FFmpeg library in the binary: {linked:?}"
            );
            let missing: Vec<&String> = linked.iter().filter(|l| !installs(l.as_str())).collect();
            assert!(
                missing.is_empty(),
                "the binary links {missing:?}, which the Containerfile's runtime stage does not \
                 install (build-deb.sh's Depends would name them): {packages:?}"
            );
        }
        None => {
            assert!(
                !in_ci(),
                "objdump is missing (binutils: `make test-deps` installs it)"
            );
            eprintln!("skip: no objdump to read the libraries the binary links");
        }
    }

    let env: BTreeMap<&str, &str> = args(&runtime, "ENV")
        .flat_map(|e| e.split_whitespace())
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let capabilities = env
        .get("NVIDIA_DRIVER_CAPABILITIES")
        .expect("ENV NVIDIA_DRIVER_CAPABILITIES")
        .trim_matches('"');
    for needed in ["video", "compute"] {
        assert!(
            capabilities
                .split(',')
                .any(|c| c.trim() == needed || c.trim() == "all"),
            "NVIDIA_DRIVER_CAPABILITIES={capabilities} lacks {needed} (NVENC/NVDEC need video, \
             CUDA compute)"
        );
    }
    assert!(env.contains_key("NVIDIA_VISIBLE_DEVICES"), "{env:?}");
}

#[test]
fn the_image_starts_the_daemon_as_the_unit_does() {
    let (_, runtime) = build_and_runtime_stages();
    // With the unit's flags, which `encore serve` takes.
    let entry = entrypoint(&runtime);
    let unit = read("packaging/encore.service");
    let exec_start: Vec<String> = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("the unit's ExecStart")
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(
        entry, exec_start,
        "the image's ENTRYPOINT and packaging/encore.service's ExecStart"
    );
    match encore::cli::Cli::try_parse_from(&entry) {
        Ok(cli) => assert!(
            matches!(cli.command, encore::cli::Command::Serve(_)),
            "{entry:?} is not `encore serve`"
        ),
        Err(e) => panic!("encore does not take {entry:?}: {e}"),
    }

    // Its files where the Debian package puts them.
    let copies: Vec<Vec<&str>> = args(&runtime, "COPY")
        .map(|c| {
            c.split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect::<Vec<_>>()
        })
        .collect();
    let copied_to = |source: &str, dest: &str| {
        copies.iter().any(|c| {
            c.len() >= 2
                && c[0].trim_end_matches('/').ends_with(source)
                && c[c.len() - 1].trim_end_matches('/') == dest
        })
    };
    assert!(
        copied_to("target/release/encore", entry[0].as_str()),
        "the binary at {}",
        entry[0]
    );
    let config_path = flag_value(&entry, "--config");
    assert!(
        copied_to("packaging/encore.toml", config_path),
        "packaging/encore.toml at {config_path}: {copies:?}"
    );
    assert!(read("packaging/build-deb.sh").contains("/usr/share/encore/hw-profiles"));
    assert!(
        copied_to("hw-profiles", "/usr/share/encore/hw-profiles"),
        "hw-profiles/ at /usr/share/encore/hw-profiles: {copies:?}"
    );

    // Its state on a volume, not as root, on the ports of the configuration it ships.
    let data_dir = flag_value(&entry, "--data-dir");
    assert!(
        args(&runtime, "VOLUME").any(|v| v.contains(data_dir)),
        "a VOLUME at the data folder {data_dir}"
    );
    let user = args(&runtime, "USER").last().expect("a USER: not root");
    let user = user.split(':').next().unwrap_or_default();
    assert!(user != "root" && user != "0", "USER {user}");
    let packaged: Config = toml::from_str(&read("packaging/encore.toml"))
        .unwrap_or_else(|e| panic!("packaging/encore.toml: {e}"));
    let exposed: BTreeSet<u64> = args(&runtime, "EXPOSE")
        .flat_map(|e| e.split_whitespace())
        .filter_map(|p| p.split('/').next()?.parse::<u64>().ok())
        .collect();
    for addr in std::iter::once(&packaged.listen).chain(packaged.api_listen.as_ref()) {
        assert!(
            exposed.contains(&port_of(addr)),
            "EXPOSE {exposed:?} lacks the port of {addr} (packaging/encore.toml)"
        );
    }
}

// The Kubernetes example.

/// packaging/kubernetes.yaml's documents as JSON, read by Python's yaml module: the system
/// python3's, else the one in tests/openapi/.venv (`make test-deps`). None when neither has it
/// (a failure under CI).
fn kubernetes_documents() -> Option<Vec<Value>> {
    const DUMP: &str = "import json, sys, yaml\n\
                        docs = yaml.safe_load_all(open(sys.argv[1]))\n\
                        json.dump([d for d in docs if d is not None], sys.stdout)";
    let file = repo().join("packaging/kubernetes.yaml");
    for python in [
        PathBuf::from("python3"),
        repo().join("tests/openapi/.venv/bin/python"),
    ] {
        let has_yaml = Command::new(&python)
            .args(["-c", "import yaml"])
            .output()
            .is_ok_and(|out| out.status.success());
        if !has_yaml {
            continue;
        }
        let out = Command::new(&python)
            .args(["-c", DUMP])
            .arg(&file)
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
        assert!(
            out.status.success(),
            "packaging/kubernetes.yaml is not YAML: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return Some(serde_json::from_slice(&out.stdout).expect("the documents as JSON"));
    }
    assert!(
        !in_ci(),
        "no python3 with the yaml module to read packaging/kubernetes.yaml (`make test-deps` \
         makes tests/openapi/.venv)"
    );
    eprintln!("skip: no python3 with the yaml module to read packaging/kubernetes.yaml");
    None
}

fn of_kind<'a>(documents: &'a [Value], kind: &str) -> Vec<&'a Value> {
    documents
        .iter()
        .filter(|d| d["kind"].as_str() == Some(kind))
        .collect()
}

/// The example's encore.toml (from its ConfigMap), read and checked as the daemon would.
fn example_config(documents: &[Value]) -> (&str, Config) {
    let text = of_kind(documents, "ConfigMap")
        .into_iter()
        .find_map(|c| c["data"]["encore.toml"].as_str())
        .expect("a ConfigMap with encore.toml");
    let config: Config =
        toml::from_str(text).unwrap_or_else(|e| panic!("the ConfigMap's encore.toml: {e}"));
    config
        .check()
        .unwrap_or_else(|e| panic!("the ConfigMap's encore.toml: {e}"));
    for channel in &config.channels {
        if let Err(e) = channel.resolve() {
            panic!("the ConfigMap's channel {}: {e}", channel.name);
        }
    }
    (text, config)
}

/// The StatefulSet and its (first) container.
fn stateful_set(documents: &[Value]) -> (&Value, &Value) {
    let sets = of_kind(documents, "StatefulSet");
    assert_eq!(sets.len(), 1, "one StatefulSet");
    let container = &sets[0]["spec"]["template"]["spec"]["containers"][0];
    assert!(
        container["command"].is_null(),
        "the image's ENTRYPOINT starts the daemon (args may add flags)"
    );
    (sets[0], container)
}

/// A container port by number or by name.
fn container_port(container: &Value, port: &Value) -> u64 {
    let ports = container["ports"]
        .as_array()
        .expect("the container's ports");
    port.as_u64()
        .or_else(|| {
            ports
                .iter()
                .find(|p| p["name"] == *port)
                .and_then(|p| p["containerPort"].as_u64())
        })
        .unwrap_or_else(|| panic!("port {port} is none of the container's: {ports:?}"))
}

#[test]
fn the_kubernetes_example_asks_for_a_gpu_and_probes_the_listeners_that_answer() {
    let text = read("packaging/kubernetes.yaml");
    for needed in ["nvidia.com/gpu", "/healthz", "/readyz"] {
        assert!(
            text.contains(needed),
            "packaging/kubernetes.yaml names {needed}"
        );
    }
    let Some(documents) = kubernetes_documents() else {
        return;
    };
    // The API reachable from other pods, behind a token.
    let (_, config) = example_config(&documents);
    let api_listen = config
        .api_listen
        .clone()
        .expect("api_listen: the API on its own port");
    let api_host = api_listen.rsplit_once(':').map_or("", |(host, _)| host);
    assert!(
        api_host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| !ip.is_loopback()),
        "api_listen {api_listen}: reachable from other pods"
    );
    assert!(!config.insecure_no_auth, "insecure_no_auth in the example");
    assert!(
        config.api_token_file.is_some(),
        "api_token_file: the daemon refuses a non-loopback API without a token"
    );
    let (origin_port, api_port) = (port_of(&config.listen), port_of(&api_listen));

    let (set, container) = stateful_set(&documents);
    let gpus = &container["resources"]["limits"]["nvidia.com/gpu"];
    assert!(
        gpus.as_u64() == Some(1) || gpus.as_str() == Some("1"),
        "resources.limits: nvidia.com/gpu: 1, not {gpus}"
    );
    // /healthz on the origin (and on the API's listener when apart); /readyz on the API's.
    let probe = |name: &str| -> Option<(String, u64)> {
        let get = &container[name]["httpGet"];
        let path = get["path"].as_str()?.to_string();
        Some((path, container_port(container, &get["port"])))
    };
    for name in ["livenessProbe", "startupProbe"] {
        if let Some((path, port)) = probe(name) {
            assert!(
                path == "/healthz" && (port == origin_port || port == api_port),
                "{name}: GET {path} on {port}; /healthz is on {origin_port} and {api_port}"
            );
        }
    }
    assert!(
        probe("livenessProbe").is_some(),
        "a livenessProbe (httpGet)"
    );
    assert_eq!(
        probe("readinessProbe"),
        Some(("/readyz".to_string(), api_port)),
        "readinessProbe: /readyz is served on the API's listener"
    );

    // Services for both listeners, on the StatefulSet's pods.
    let labels = &set["spec"]["template"]["metadata"]["labels"];
    let services = of_kind(&documents, "Service");
    let mut served = BTreeSet::new();
    for service in &services {
        let name = service["metadata"]["name"].as_str().unwrap_or("?");
        let selector = service["spec"]["selector"]
            .as_object()
            .unwrap_or_else(|| panic!("Service {name}: a selector"));
        for (key, value) in selector {
            assert_eq!(
                &labels[key.as_str()],
                value,
                "Service {name} selects the StatefulSet's pods by {key}"
            );
        }
        for port in service["spec"]["ports"].as_array().into_iter().flatten() {
            let target = match &port["targetPort"] {
                Value::Null => &port["port"],
                target => target,
            };
            served.insert(container_port(container, target));
        }
    }
    assert!(
        served.contains(&origin_port) && served.contains(&api_port),
        "Services for the origin ({origin_port}) and the API ({api_port}): {served:?}"
    );
    if let Some(governing) = set["spec"]["serviceName"].as_str() {
        assert!(
            services
                .iter()
                .any(|s| s["metadata"]["name"].as_str() == Some(governing)),
            "the StatefulSet's serviceName {governing} is one of the Services"
        );
    }
}

#[test]
fn the_kubernetes_example_mounts_the_token_the_configuration_and_a_data_volume() {
    let Some(documents) = kubernetes_documents() else {
        return;
    };
    let (toml_text, config) = example_config(&documents);
    let (set, container) = stateful_set(&documents);
    let mounts = container["volumeMounts"]
        .as_array()
        .expect("the container's volumeMounts");
    // The name of the volume mounted over a path (the deepest mount holding it).
    let volume_at = |path: &Path| -> &Value {
        let mount = mounts
            .iter()
            .filter(|m| m["mountPath"].as_str().is_some_and(|p| path.starts_with(p)))
            .max_by_key(|m| m["mountPath"].as_str().map_or(0, str::len))
            .unwrap_or_else(|| panic!("no volume mounted at {}", path.display()));
        &mount["name"]
    };
    let volume = |name: &Value| -> &Value {
        set["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| &v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name} in the pod"))
    };

    // The token file from a Secret that has it.
    let token_file = config
        .api_token_file
        .clone()
        .expect("api_token_file: the daemon refuses a non-loopback API without a token");
    let secret = volume(volume_at(token_file.as_path()))["secret"]["secretName"]
        .as_str()
        .unwrap_or_else(|| panic!("{} is not from a Secret", token_file.display()));
    let key = token_file
        .file_name()
        .and_then(|n| n.to_str())
        .expect("the token file's name");
    assert!(
        of_kind(&documents, "Secret").iter().any(|s| {
            s["metadata"]["name"].as_str() == Some(secret)
                && (!s["stringData"][key].is_null() || !s["data"][key].is_null())
        }),
        "a Secret {secret} with the key {key}"
    );

    // The configuration where the image's ENTRYPOINT reads it, from the ConfigMap.
    let (_, runtime) = build_and_runtime_stages();
    let entry = entrypoint(&runtime);
    let config_path = Path::new(flag_value(&entry, "--config"));
    let config_map = volume(volume_at(config_path))["configMap"]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("{} is not from a ConfigMap", config_path.display()));
    assert!(
        of_kind(&documents, "ConfigMap").iter().any(|c| {
            c["metadata"]["name"].as_str() == Some(config_map)
                && c["data"]["encore.toml"].as_str() == Some(toml_text)
        }),
        "{} comes from the ConfigMap with encore.toml",
        config_path.display()
    );

    // The data folder on a claim of its own.
    let data = volume_at(Path::new(flag_value(&entry, "--data-dir")));
    assert!(
        set["spec"]["volumeClaimTemplates"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|claim| &claim["metadata"]["name"] == data),
        "the data folder on a volumeClaimTemplate, not {data}"
    );
}
