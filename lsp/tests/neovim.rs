//! The language server in a real editor: headless Neovim (from PyPI, see
//! `tests/servers/nvim.sh`) opens a script of the example deployment, gets
//! diagnostics as it edits, asks for hover and completion, and renames a
//! local — driven by `tests/neovim/e2e.lua`, which writes what it saw as JSON
//! for the assertions here.
//!
//! Needs `SCL_TEST_NVIM` (the `nvim` executable); `tests/run.sh` sets it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("scratch folder");
    for entry in std::fs::read_dir(from).expect("example folder") {
        let path = entry.expect("entry").path();
        let target = to.join(path.file_name().expect("name"));
        if path.is_dir() {
            copy_folder(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
}

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn neovim_gets_diagnostics_hover_completion_and_renames() {
    let nvim = std::env::var("SCL_TEST_NVIM").unwrap_or_else(|_| {
        panic!(
            "SCL_TEST_NVIM is not set: run tests/run.sh, or \
             `source tests/servers/nvim.sh && start_nvim` first"
        )
    });
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = Scratch(std::env::temp_dir().join(format!("scl-lsp-neovim-{}", std::process::id())));
    copy_folder(&manifest.join("../examples/plant"), &root.0);
    let out = root.0.join("e2e-result.json");
    let script = manifest.join("tests/neovim/e2e.lua");
    let mut child = Command::new(&nvim)
        .args(["--headless", "--clean", "-n", "-i", "NONE"])
        .arg("-c")
        .arg(format!("luafile {}", script.display()))
        .env("SCL_LSP_BIN", env!("CARGO_BIN_EXE_scl-lsp"))
        .env("SCL_E2E_ROOT", &root.0)
        .env("SCL_E2E_OUT", &out)
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {nvim}: {error}"));
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for nvim") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("nvim did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "nvim exited with {status}");
    let text = std::fs::read_to_string(&out).expect("the Lua script wrote its result");
    let result: Value = serde_json::from_str(&text).expect("JSON result");
    assert_eq!(
        result["ok"], true,
        "the Lua script failed: {}",
        result["error"]
    );
    assert_eq!(result["server_name"], "scl-lsp");

    // Diagnostics for the edit, with the code and message of `scl check`.
    let diagnostics = result["diagnostics"].as_array().expect("diagnostics");
    assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
    assert_eq!(diagnostics[0]["code"], "SCL0506");
    assert_eq!(
        diagnostics[0]["message"],
        "template `Pump` has no attribute `Temperatur`"
    );

    // Hover with the module table's documentation.
    let hover = result["hover"].as_str().expect("hover text");
    assert!(
        hover.contains(
            "ExternalSystem.CachedCall(system: string, method: string, params: json) -> Delivery"
        ),
        "{hover}"
    );

    // Completion of the deployment's attribute names inside the string.
    let completion: Vec<&str> = result["completion"]
        .as_array()
        .expect("completion")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(completion, ["Running", "Speed", "Temperature"]);

    // The rename changed every use of `t` and nothing else.
    let renamed = result["renamed"].as_str().expect("buffer after rename");
    assert!(
        renamed.contains("let temperature = Attributes.Get(\"Temperatur\") as float;"),
        "{renamed}"
    );
    assert!(
        renamed.contains("value: temperature,") || renamed.contains("value: temperature }"),
        "{renamed}"
    );
    assert!(renamed.contains("if temperature > limit {"), "{renamed}");
    assert!(
        renamed.contains("[Instance.Code(), temperature]"),
        "{renamed}"
    );
    assert!(!renamed.contains("let t ="), "{renamed}");
    assert_eq!(result["stopped"], true);
}
