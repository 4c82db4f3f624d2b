//! Deployment bundles: what central pushes to sites.
//!
//! A bundle is the deployment file's text plus the text of every script it
//! names, versioned by a SHA-256 over all of it, so the same definitions reach
//! every site (seed 5.1-1-rt, 5.5-1-rt, 6.1-1-rt) and a site can restart from
//! the bundle it accepted while central is away. Each site reads the instance
//! list from the bundle and runs only its own instances.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::deployment::{Deployment, DeploymentError};
use crate::protocol::Bundle;

/// Builds the bundle of a loaded deployment, reading every script file.
pub fn build(deployment: &Deployment) -> Result<Bundle, String> {
    let mut scripts = BTreeMap::new();
    for relative in script_paths(deployment) {
        let path = deployment.base_dir().join(&relative);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read script {}: {e}", path.display()))?;
        scripts.insert(relative, text);
    }
    Ok(seal(deployment.source.clone(), scripts))
}

/// A bundle with its version computed from its contents.
pub fn seal(deployment: String, scripts: BTreeMap<String, String>) -> Bundle {
    Bundle {
        version: version_of(&deployment, &scripts),
        deployment,
        scripts,
    }
}

/// The version a bundle with these contents must carry.
pub fn version_of(deployment: &str, scripts: &BTreeMap<String, String>) -> String {
    let mut hash = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    };
    field(deployment.as_bytes());
    for (path, text) in scripts {
        field(path.as_bytes());
        field(text.as_bytes());
    }
    hex(&hash.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The script paths as the deployment file writes them.
fn script_paths(deployment: &Deployment) -> Vec<String> {
    let file = &deployment.file;
    let mut paths: Vec<String> = Vec::new();
    for template in file.templates.values() {
        for script in template.scripts.values() {
            paths.push(script.file.get_ref().clone());
        }
    }
    for path in file.shared_scripts.values() {
        paths.push(path.get_ref().clone());
    }
    for method in file.api_methods.values() {
        paths.push(method.script.get_ref().clone());
    }
    paths.sort();
    paths.dedup();
    paths
}

/// Writes a bundle's files under `dir` (the deployment as `deploy.toml`,
/// scripts at their relative paths) and loads it as a deployment. The
/// version is checked against the contents first; script paths must stay
/// inside `dir`.
pub fn materialize(bundle: &Bundle, dir: &Path) -> Result<Deployment, Vec<DeploymentError>> {
    let problem = |message: String| {
        vec![DeploymentError {
            file: dir.join("deploy.toml"),
            line: 0,
            column: 0,
            message,
        }]
    };
    if version_of(&bundle.deployment, &bundle.scripts) != bundle.version {
        return Err(problem(
            "the bundle's version does not match its contents".to_owned(),
        ));
    }
    for (relative, text) in &bundle.scripts {
        let Some(path) = inside(dir, relative) else {
            return Err(problem(format!(
                "script path `{relative}` leaves the bundle directory"
            )));
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| problem(format!("cannot write {}: {e}", parent.display())))?;
        }
        std::fs::write(&path, text)
            .map_err(|e| problem(format!("cannot write {}: {e}", path.display())))?;
    }
    let file = dir.join("deploy.toml");
    std::fs::write(&file, &bundle.deployment)
        .map_err(|e| problem(format!("cannot write {}: {e}", file.display())))?;
    Deployment::from_source(&file, bundle.deployment.clone())
}

/// `dir/relative` when `relative` is a plain relative path (no `..`, no root).
fn inside(dir: &Path, relative: &str) -> Option<PathBuf> {
    let path = Path::new(relative);
    let plain = path.components().all(|c| {
        matches!(
            c,
            std::path::Component::Normal(_) | std::path::Component::CurDir
        )
    });
    plain.then(|| dir.join(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_changes_with_any_script() {
        let mut scripts = BTreeMap::new();
        scripts.insert("a.scl".to_owned(), "fn main() {}".to_owned());
        let first = seal("x = 1".to_owned(), scripts.clone());
        scripts.insert("a.scl".to_owned(), "fn main() { }".to_owned());
        let second = seal("x = 1".to_owned(), scripts);
        assert_ne!(first.version, second.version);
        assert_eq!(first.version.len(), 64);
    }

    #[test]
    fn paths_outside_the_bundle_are_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let mut scripts = BTreeMap::new();
        scripts.insert("../evil.scl".to_owned(), String::new());
        let bundle = seal(String::new(), scripts);
        let errors = materialize(&bundle, dir.path()).expect_err("refused");
        assert!(errors[0].message.contains("leaves the bundle directory"));
    }
}
