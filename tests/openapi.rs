//! `/openapi.json` is a valid OpenAPI document (openapi-spec-validator), and the API keeps its
//! word under a property-based run generated from it (schemathesis, about two thousand
//! requests): no 5xx, no response outside its schema. Both tools come from PyPI into
//! tests/openapi/.venv (`make test-deps`). Run on both stores.

#[path = "common/api.rs"]
mod api;
mod common;
#[path = "common/postgres.rs"]
mod postgres;

use std::path::PathBuf;
use std::process::Command;

use api::{Backend, Node};
use common::tempdir;

fn venv_tool(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/openapi/.venv/bin")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: `make test-deps` installs it (tests/openapi/requirements.txt)",
        path.display()
    );
    path
}

#[test]
fn openapi_document_is_valid_and_the_api_keeps_to_it_on_sqlite() {
    check(false);
}

#[test]
fn openapi_document_is_valid_and_the_api_keeps_to_it_on_postgres() {
    check(true);
}

fn check(pg: bool) {
    let backend = Backend::new(pg);
    let dir = tempdir();
    let token = "openapi-test-token-0123456789";
    let node = Node::start_with_env(dir.path(), &backend, "", &[("ENCORE_API_TOKEN", token)]);
    let doc = node.get("/openapi.json");
    assert_eq!(doc.status, 200);
    assert_eq!(doc.json["openapi"].as_str().map(|v| &v[..2]), Some("3."));
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &doc.text).unwrap();

    let out = Command::new(venv_tool("openapi-spec-validator"))
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openapi-spec-validator: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // schemathesis writes caches into its working folder: keep them in the temporary one.
    let work = dir.path().join("schemathesis");
    std::fs::create_dir_all(&work).unwrap();
    let out = Command::new(venv_tool("schemathesis"))
        .current_dir(&work)
        .env("HYPOTHESIS_STORAGE_DIRECTORY", work.join("hypothesis"))
        .args(["run", &format!("{}/openapi.json", node.base)])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--max-examples", "40", "--seed", "1"])
        .args(["--checks", "not_a_server_error,response_schema_conformance"])
        .args([
            "--generation-database",
            "none",
            "--no-color",
            "--request-timeout",
            "20",
        ])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = report
        .lines()
        .find(|l| l.contains(" generated, "))
        .unwrap_or_default()
        .to_string();
    eprintln!("schemathesis: {generated}");
    let errors: Vec<String> = node
        .stderr_lines()
        .into_iter()
        .filter(|l| l.contains("ERROR") || l.contains("panicked"))
        .collect();
    assert!(errors.is_empty(), "the daemon logged errors: {errors:?}");
}
