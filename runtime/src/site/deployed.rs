//! One prepared deployment on a site: modules built and every script and
//! alarm condition compiled, ready to swap in.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use scl_compiler::{Engine, Script};
use scl_lang::ScriptKind;
use scl_lang::checker::{CheckOptions, check};
use scl_lang::types::Type;

use crate::deployment::{AttributeDef, AttributeType};
use crate::modules::{NodeModules, NodeRole};
use crate::protocol::Bundle;

use super::SiteShared;

/// A compiled script of a template or a shared script.
pub(crate) struct Compiled {
    pub script: Script,
    /// `instance`, `alarm` or `shared`, for the execution log.
    pub kind: &'static str,
    pub params: Vec<(String, Type)>,
    pub timeout: Duration,
    /// `args` of the definition, for runs the site starts itself.
    pub args: serde_json::Map<String, serde_json::Value>,
    pub every: Option<Duration>,
    pub on_change: Vec<String>,
}

/// An alarm script's condition, compiled as `fn main(<attributes>) -> bool`.
pub(crate) struct Alarm {
    pub script: String,
    pub condition: Script,
}

pub(crate) struct Template {
    pub attributes: BTreeMap<String, AttributeDef>,
    pub scripts: HashMap<String, Compiled>,
    pub alarms: Vec<Alarm>,
}

/// An instance placed on this site, as the deployment defines it.
pub(crate) struct InstancePlan {
    pub code: String,
    pub template: String,
    /// Template defaults overridden by the instance's values.
    pub initial: BTreeMap<String, serde_json::Value>,
}

pub(crate) struct Deployed {
    pub version: String,
    pub modules: NodeModules,
    /// The webhook subscriptions, buffering into the site's store-and-forward buffer.
    pub webhooks: Arc<crate::webhooks::Webhooks>,
    pub templates: HashMap<String, Template>,
    pub shared_scripts: HashMap<String, Compiled>,
    pub instances: Vec<InstancePlan>,
}

/// Default time limit of a site script run.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

impl Deployed {
    /// Everything that can fail before a deployment is swapped in.
    pub fn prepare(shared: &Arc<SiteShared>, bundle: &Bundle) -> Result<Deployed, Vec<String>> {
        let options = &shared.options;
        let deployment = crate::bundle::open(bundle, &options.config_file)
            .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        if !deployment
            .file
            .site
            .iter()
            .any(|s| s.name.get_ref() == &options.name)
        {
            return Err(vec![format!(
                "the deployment does not define site `{}`",
                options.name
            )]);
        }
        let env = Arc::clone(&options.env);
        let modules = NodeModules::build(
            &deployment,
            NodeRole::Site,
            shared.handle.clone(),
            Some(shared.saf.clone()),
            &|name| env(name),
            shared.events(),
        )
        .map_err(|e| vec![e])?;
        for problem in modules.problems() {
            tracing::warn!(site = %options.name, "{problem}");
        }
        let webhooks = crate::webhooks::Webhooks::build(
            &deployment,
            &|name| env(name),
            Some(shared.saf.clone()),
        )
        .map_err(|e| vec![e])?;
        for problem in webhooks.problems() {
            tracing::warn!(site = %options.name, "{problem}");
        }
        let mut engine = Engine::default();
        scl_stdlib::core_modules::register_core_modules(&mut engine).map_err(|e| vec![e])?;
        modules.register(&mut engine).map_err(|e| vec![e])?;
        super::host::register(&mut engine).map_err(|e| vec![e])?;

        let mut problems = Vec::new();
        let names = deployment.names();
        let table = engine.module_table();
        let file = &deployment.file;
        let compile = |text: &str,
                       path: &str,
                       kind: ScriptKind,
                       template: Option<&str>|
         -> Result<(Script, Vec<(String, Type)>), String> {
            let parsed = scl_lang::parse(text);
            let options = CheckOptions {
                modules: &table,
                kind: Some(kind),
                names: Some(&names),
                template,
                require_main: true,
            };
            let checked = check(&parsed, &options);
            let mut diagnostics = parsed.diagnostics.clone();
            diagnostics.extend(checked.diagnostics.iter().cloned());
            if diagnostics.iter().any(scl_lang::Diagnostic::is_error) {
                let rendered = scl_lang::diagnostics::render_human(path, text, &diagnostics, false);
                return Err(format!("{path} does not compile:\n{rendered}"));
            }
            let program = match checked.into_program() {
                Ok(program) => program,
                Err(diagnostics) => {
                    let rendered =
                        scl_lang::diagnostics::render_human(path, text, &diagnostics, false);
                    return Err(format!("{path} does not compile:\n{rendered}"));
                }
            };
            let script = engine
                .compile_program(&program, text)
                .map_err(|error| format!("{path}: {error}"))?;
            let params = script.params("main").unwrap_or(&[]).to_vec();
            Ok((script, params))
        };

        let mut templates = HashMap::new();
        for (template_name, template) in &file.templates {
            let mut scripts = HashMap::new();
            let mut alarms = Vec::new();
            for (script_name, definition) in &template.scripts {
                let path = definition.file.get_ref();
                let Some(kind) = ScriptKind::parse(definition.kind.get_ref()) else {
                    continue;
                };
                let Some(text) = bundle.scripts.get(path) else {
                    problems.push(format!("script `{path}` is not in the bundle"));
                    continue;
                };
                let (script, params) = match compile(text, path, kind, Some(template_name)) {
                    Ok(compiled) => compiled,
                    Err(problem) => {
                        problems.push(problem);
                        continue;
                    }
                };
                if kind == ScriptKind::Alarm {
                    let Some(when) = &definition.when else {
                        problems.push(format!(
                            "alarm script `{script_name}` of template `{template_name}` has no `when` condition"
                        ));
                        continue;
                    };
                    let source = condition_source(&template.attributes, when);
                    let label = format!("the `when` condition of `{template_name}.{script_name}`");
                    match compile(&source, &label, ScriptKind::Alarm, None) {
                        Ok((condition, _)) => alarms.push(Alarm {
                            script: script_name.clone(),
                            condition,
                        }),
                        Err(problem) => problems.push(problem),
                    }
                }
                let args = definition
                    .args
                    .iter()
                    .map(|(name, value)| (name.clone(), toml_to_json(value)))
                    .collect();
                scripts.insert(
                    script_name.clone(),
                    Compiled {
                        script,
                        kind: kind.name(),
                        params,
                        timeout: definition
                            .timeout_s
                            .map_or(DEFAULT_TIMEOUT, Duration::from_secs),
                        args,
                        every: definition
                            .every_s
                            .filter(|s| *s > 0)
                            .map(Duration::from_secs),
                        on_change: definition.on_change.clone(),
                    },
                );
            }
            templates.insert(
                template_name.clone(),
                Template {
                    attributes: template.attributes.clone(),
                    scripts,
                    alarms,
                },
            );
        }
        let mut shared_scripts = HashMap::new();
        for (name, path) in &file.shared_scripts {
            let path = path.get_ref();
            let Some(text) = bundle.scripts.get(path) else {
                problems.push(format!("script `{path}` is not in the bundle"));
                continue;
            };
            match compile(text, path, ScriptKind::Shared, None) {
                Err(problem) => problems.push(problem),
                Ok((script, params)) => {
                    shared_scripts.insert(
                        name.clone(),
                        Compiled {
                            script,
                            kind: ScriptKind::Shared.name(),
                            params,
                            timeout: DEFAULT_TIMEOUT,
                            args: serde_json::Map::new(),
                            every: None,
                            on_change: Vec::new(),
                        },
                    );
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let instances = file
            .instance
            .iter()
            .filter(|i| i.site.get_ref() == &options.name)
            .filter_map(|i| {
                let template = file.templates.get(i.template.get_ref())?;
                let mut initial: BTreeMap<String, serde_json::Value> = template
                    .attributes
                    .iter()
                    .map(|(name, a)| {
                        let value = a
                            .default
                            .as_ref()
                            .map_or(serde_json::Value::Null, toml_to_json);
                        (name.clone(), coerce(a.ty, value))
                    })
                    .collect();
                for (name, value) in &i.attributes {
                    if let Some(a) = template.attributes.get(name) {
                        initial.insert(name.clone(), coerce(a.ty, toml_to_json(value)));
                    }
                }
                Some(InstancePlan {
                    code: i.code.get_ref().clone(),
                    template: i.template.get_ref().clone(),
                    initial,
                })
            })
            .collect();
        Ok(Deployed {
            version: bundle.version.clone(),
            modules,
            webhooks,
            templates,
            shared_scripts,
            instances,
        })
    }
}

/// `fn main(<every attribute>) -> bool { return (<when>); }`.
fn condition_source(attributes: &BTreeMap<String, AttributeDef>, when: &str) -> String {
    let params: Vec<String> = attributes
        .iter()
        .map(|(name, a)| format!("{name}: {}", type_name(a.ty)))
        .collect();
    format!(
        "fn main({}) -> bool {{\n    return ({when});\n}}\n",
        params.join(", ")
    )
}

/// The SCL type of an attribute type.
pub(crate) fn type_name(ty: AttributeType) -> &'static str {
    match ty {
        AttributeType::Int => "int",
        AttributeType::Float => "float",
        AttributeType::Bool => "bool",
        AttributeType::String => "string",
        AttributeType::Json => "json",
    }
}

/// Whether `value` is a value of attribute type `ty` (`null` is not, except
/// for `json`); integers are accepted for floats.
pub(crate) fn fits(ty: AttributeType, value: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match (ty, value) {
        (AttributeType::Json, _) => true,
        (AttributeType::Int, J::Number(n)) => n.is_i64(),
        (AttributeType::Float, J::Number(_)) => true,
        (AttributeType::Bool, J::Bool(_)) => true,
        (AttributeType::String, J::String(_)) => true,
        _ => false,
    }
}

/// Integers stored in float attributes become floats, so `as float` and
/// the alarm conditions see the declared type.
pub(crate) fn coerce(ty: AttributeType, value: serde_json::Value) -> serde_json::Value {
    match (ty, &value) {
        (AttributeType::Float, serde_json::Value::Number(n)) if !n.is_f64() => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or(value, serde_json::Value::Number),
        _ => value,
    }
}

fn toml_to_json(value: &toml::Value) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}
