//! `scl check` through the real binary: exit codes, output formats, and the
//! deployment file's errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn scl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_scl"))
        .args(args)
        .current_dir(workspace())
        .output()
        .expect("the scl binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_bundled_plant_checks_clean() {
    let output = scl(&["check", "--config", "examples/plant/deploy.toml"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("checked 5 files: no errors"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn a_clean_file_exits_zero() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("ok.scl");
    std::fs::write(&file, "fn main(n: int) -> int {\n    return n * 2;\n}\n").expect("write");
    let output = scl(&["check", file.to_str().expect("utf-8 path")]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
}

#[test]
fn errors_exit_one_with_code_and_position() {
    let output = scl(&["check", "tests/diagnostics/SCL0101_unknown_name.scl"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("SCL0101"), "{stderr}");
    assert!(stderr.contains("SCL0101_unknown_name.scl:3:"), "{stderr}");
}

#[test]
fn json_format_prints_one_object_per_diagnostic() {
    let output = scl(&[
        "check",
        "--format",
        "json",
        "tests/diagnostics/SCL0010_three_errors.scl",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    let objects: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(objects.len(), 3, "{stdout}");
    let lines: Vec<u64> = objects
        .iter()
        .map(|o| o["line"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(lines, vec![2, 6, 11], "{stdout}");
    for object in &objects {
        assert_eq!(object["severity"], "error");
        assert!(
            object["file"]
                .as_str()
                .unwrap_or("")
                .ends_with("SCL0010_three_errors.scl")
        );
    }
}

#[test]
fn kind_argument_enforces_the_kind_table() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("route.scl");
    std::fs::write(
        &file,
        "fn main() -> json {\n    return Route.To(\"P\").GetAttribute(\"A\");\n}\n",
    )
    .expect("write");
    let path = file.to_str().expect("utf-8 path");
    assert_eq!(
        scl(&["check", "--kind", "api", path]).status.code(),
        Some(0)
    );
    let output = scl(&["check", "--kind", "instance", "--format", "json", path]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stdout).contains("SCL0403"),
        "{}",
        text(&output.stdout)
    );
}

#[test]
fn usage_and_io_errors_exit_two() {
    assert_eq!(scl(&["check", "--no-such-flag"]).status.code(), Some(2));
    assert_eq!(
        scl(&["check", "--kind", "robot", "x.scl"]).status.code(),
        Some(2)
    );
    let missing = scl(&["check", "does/not/exist.scl"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("does/not/exist.scl"));
    assert_eq!(scl(&["check"]).status.code(), Some(2));
}

#[test]
fn a_bad_deployment_file_names_the_position() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("deploy.toml");
    std::fs::write(
        &file,
        "data_dir = \"x\"\n\n[central]\nlistn = \"127.0.0.1:1\"\n",
    )
    .expect("write");
    let output = scl(&["check", "--config", file.to_str().expect("utf-8 path")]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("deploy.toml:4:1"), "{stderr}");
    assert!(stderr.contains("listn"), "{stderr}");

    std::fs::write(
        &file,
        "[[site]]\nname = \"plant-a\"\nlisten = \"127.0.0.1:1\"\nurl = \"http://127.0.0.1:1\"\n\n\
         [templates.Pump.attributes]\nSpeed = { type = \"float\" }\n\n\
         [[instance]]\ncode = \"P1\"\ntemplate = \"Pmp\"\nsite = \"plant-b\"\n",
    )
    .expect("write");
    let output = scl(&["check", "--config", file.to_str().expect("utf-8 path")]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("deploy.toml:11:12") && stderr.contains("did you mean `Pump`?"),
        "{stderr}"
    );
    assert!(
        stderr.contains("deploy.toml:12:8") && stderr.contains("did you mean `plant-a`?"),
        "{stderr}"
    );
}

#[test]
fn key_new_prints_a_key_and_its_hash() {
    let output = scl(&["key", "new"]);
    assert_eq!(output.status.code(), Some(0));
    let stdout = text(&output.stdout);
    let key = stdout
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("key:"))
        .map(str::trim)
        .expect("key line");
    let hash = stdout
        .lines()
        .nth(1)
        .and_then(|l| l.strip_prefix("sha256 = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("sha256 line");
    assert_eq!(scl_runtime::keys::sha256_hex(key), hash);
}
