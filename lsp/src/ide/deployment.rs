//! The parts of a deployment file the editor needs: the names scripts may
//! refer to, and which script files the deployment runs with which kind.
//!
//! The language server must not depend on `scl-runtime` (whose
//! `deployment.rs` is the full loader), so this reads only those names from
//! the TOML text, leniently: a section it does not understand is skipped, so
//! that a deployment file being edited still helps the editor. Pure: the
//! caller reads the file and gives its folder.

use std::path::{Path, PathBuf};

use scl_lang::modules::{DeploymentNames, ScriptKind, TemplateNames};
use toml::{Table, Value};

/// A script file the deployment names, with the kind it runs as.
#[derive(Clone, Debug, PartialEq)]
pub struct DeployedScript {
    /// The name the deployment gives it (template script, shared script or API method).
    pub name: String,
    pub kind: ScriptKind,
    /// The file, relative paths resolved against the deployment's folder.
    pub path: PathBuf,
    /// The template, for instance and alarm scripts.
    pub template: Option<String>,
}

/// What the editor knows from a deployment file.
#[derive(Clone, Debug, Default)]
pub struct DeploymentInfo {
    pub names: DeploymentNames,
    pub scripts: Vec<DeployedScript>,
}

impl DeploymentInfo {
    /// The script at `path` (compared after resolving `.` and `..`).
    pub fn script(&self, path: &Path) -> Option<&DeployedScript> {
        let wanted = normalize(path);
        self.scripts
            .iter()
            .find(|script| normalize(&script.path) == wanted)
    }
}

/// Whether TOML text looks like a deployment file: it has `[[site]]`,
/// `[[instance]]` or a `[templates` section.
pub fn looks_like_deployment(text: &str) -> bool {
    text.lines().map(str::trim_start).any(|line| {
        line.starts_with("[[site]]")
            || line.starts_with("[[instance]]")
            || line.starts_with("[templates")
    })
}

/// Reads the names and scripts of a deployment file whose text is `text`
/// and whose folder is `base` (script paths are relative to it).
pub fn parse(text: &str, base: &Path) -> Result<DeploymentInfo, String> {
    let table: Table = text
        .parse()
        .map_err(|error: toml::de::Error| error.message().to_string())?;
    let mut names = DeploymentNames::default();
    let mut scripts = Vec::new();
    for (name, system) in sub_tables(&table, "external_systems") {
        let methods = system
            .get("methods")
            .and_then(Value::as_table)
            .map(|methods| methods.keys().cloned().collect())
            .unwrap_or_default();
        names.external_systems.push((name.clone(), methods));
    }
    names.notification_lists = keys(&table, "notification_lists");
    names.databases = keys(&table, "databases");
    for (name, template) in sub_tables(&table, "templates") {
        let attributes = template
            .get("attributes")
            .and_then(Value::as_table)
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default();
        let mut script_names = Vec::new();
        if let Some(template_scripts) = template.get("scripts").and_then(Value::as_table) {
            for (script_name, script) in template_scripts {
                script_names.push(script_name.clone());
                let file = script.get("file").and_then(Value::as_str);
                let kind = script
                    .get("kind")
                    .and_then(Value::as_str)
                    .and_then(ScriptKind::parse);
                if let (Some(file), Some(kind)) = (file, kind) {
                    scripts.push(DeployedScript {
                        name: script_name.clone(),
                        kind,
                        path: base.join(file),
                        template: Some(name.clone()),
                    });
                }
            }
        }
        names.templates.push(TemplateNames {
            name: name.clone(),
            attributes,
            scripts: script_names,
        });
    }
    if let Some(instances) = table.get("instance").and_then(Value::as_array) {
        for instance in instances {
            let code = instance.get("code").and_then(Value::as_str);
            let template = instance.get("template").and_then(Value::as_str);
            if let (Some(code), Some(template)) = (code, template) {
                names
                    .instances
                    .push((code.to_string(), template.to_string()));
            }
        }
    }
    if let Some(shared) = table.get("shared_scripts").and_then(Value::as_table) {
        for (name, path) in shared {
            names.shared_scripts.push(name.clone());
            if let Some(path) = path.as_str() {
                scripts.push(DeployedScript {
                    name: name.clone(),
                    kind: ScriptKind::Shared,
                    path: base.join(path),
                    template: None,
                });
            }
        }
    }
    for (name, method) in sub_tables(&table, "api_methods") {
        if let Some(path) = method.get("script").and_then(Value::as_str) {
            scripts.push(DeployedScript {
                name: name.clone(),
                kind: ScriptKind::Api,
                path: base.join(path),
                template: None,
            });
        }
    }
    Ok(DeploymentInfo { names, scripts })
}

fn keys(table: &Table, section: &str) -> Vec<String> {
    table
        .get(section)
        .and_then(Value::as_table)
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default()
}

fn sub_tables<'a>(table: &'a Table, section: &str) -> Vec<(&'a String, &'a Table)> {
    table
        .get(section)
        .and_then(Value::as_table)
        .map(|t| {
            t.iter()
                .filter_map(|(k, v)| v.as_table().map(|v| (k, v)))
                .collect()
        })
        .unwrap_or_default()
}

/// `path` with `.` and `..` resolved lexically (files may not exist yet).
fn normalize(path: &Path) -> PathBuf {
    let mut normalized = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                normalized.pop();
            }
            other => normalized.push(other.as_os_str()),
        }
    }
    normalized
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_example_plant() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/plant");
        let text = std::fs::read_to_string(root.join("deploy.toml")).expect("example deployment");
        assert!(looks_like_deployment(&text));
        let info = parse(&text, &root).expect("parses");
        assert_eq!(info.names.external_systems[0].0, "MES");
        assert!(
            info.names.external_systems[0]
                .1
                .contains(&"PostReading".to_string())
        );
        assert_eq!(info.names.notification_lists, ["Operators"]);
        assert_eq!(info.names.databases, ["Historian"]);
        assert_eq!(
            info.names.instances[0],
            ("PUMP-001".to_string(), "Pump".to_string())
        );
        assert!(
            info.names.templates[0]
                .attributes
                .contains(&"Temperature".to_string())
        );
        let read_temp = info
            .script(&root.join("scripts/read_temp.scl"))
            .expect("deployed");
        assert_eq!(read_temp.kind, ScriptKind::Instance);
        assert_eq!(read_temp.template.as_deref(), Some("Pump"));
        let api = info
            .script(&root.join("scripts/api/get_pump_status.scl"))
            .expect("deployed");
        assert_eq!(api.kind, ScriptKind::Api);
    }
}
