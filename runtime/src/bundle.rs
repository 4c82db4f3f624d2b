//! Deployment bundles: what central pushes to sites.
//!
//! A bundle is the deployment file's text plus the text of every script it
//! names, versioned by a SHA-256 over all of it, so the same definitions reach
//! every site (seed 5.1-1-rt, 5.5-1-rt, 6.1-1-rt) and a site can restart from
//! the bundle it accepted while central is away. Each site reads the instance
//! list from the bundle and runs only its own instances.

use std::collections::BTreeMap;
use std::path::Path;

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

/// Reads a bundle as a deployment. `local_file` is the node's own deployment
/// file: paths of data (the data directory, SQLite files) resolve against
/// its folder, while scripts come from the bundle (see [`Bundle::scripts`]).
/// The version is checked against the contents first, and every script the
/// deployment names must be in the bundle.
pub fn open(bundle: &Bundle, local_file: &Path) -> Result<Deployment, Vec<DeploymentError>> {
    let problem = |message: String| {
        vec![DeploymentError {
            file: local_file.to_path_buf(),
            line: 0,
            column: 0,
            message,
        }]
    };
    if version_of(&bundle.deployment, &bundle.scripts) != bundle.version {
        return Err(problem(format!(
            "bundle {}: its version does not match its contents",
            short(&bundle.version)
        )));
    }
    let deployment = Deployment::from_source(local_file, bundle.deployment.clone())?;
    for relative in script_paths(&deployment) {
        if !bundle.scripts.contains_key(&relative) {
            return Err(problem(format!(
                "bundle {}: script `{relative}` is named by the deployment but not in the bundle",
                short(&bundle.version)
            )));
        }
    }
    Ok(deployment)
}

/// The first 12 digits of a version, for messages and logs.
pub fn short(version: &str) -> &str {
    version.get(..12).unwrap_or(version)
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
    fn tampered_and_incomplete_bundles_are_refused() {
        let file = Path::new("deploy.toml");
        let deployment = "[shared_scripts]\nHelpers = \"h.scl\"\n".to_owned();
        let mut tampered = seal(deployment.clone(), BTreeMap::new());
        tampered.deployment.push('\n');
        let errors = open(&tampered, file).expect_err("tampered");
        assert!(errors[0].message.contains("does not match"));
        let incomplete = seal(deployment.clone(), BTreeMap::new());
        let errors = open(&incomplete, file).expect_err("incomplete");
        assert!(errors[0].message.contains("`h.scl`"), "{errors:?}");
        let mut scripts = BTreeMap::new();
        scripts.insert("h.scl".to_owned(), "fn main() {}".to_owned());
        assert!(open(&seal(deployment, scripts), file).is_ok());
    }
}
