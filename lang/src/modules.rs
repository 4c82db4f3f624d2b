//! Signatures of host modules and host types, as the checker sees them.
//!
//! `lang` only defines the shape of the table; the built-in modules
//! (`ExternalSystem`, `Notify`, ...) are declared once, in `scl-stdlib`, and a
//! host embedding SCL can add its own. The checker reads the table; it never
//! knows what a host function does.

use crate::types::Type;

/// The kind of a script, which decides the modules it may use (language.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScriptKind {
    Api,
    Instance,
    Alarm,
    Shared,
}

impl ScriptKind {
    pub const ALL: [ScriptKind; 4] = [
        ScriptKind::Api,
        ScriptKind::Instance,
        ScriptKind::Alarm,
        ScriptKind::Shared,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ScriptKind::Api => "api",
            ScriptKind::Instance => "instance",
            ScriptKind::Alarm => "alarm",
            ScriptKind::Shared => "shared",
        }
    }

    pub fn parse(text: &str) -> Option<ScriptKind> {
        ScriptKind::ALL.into_iter().find(|k| k.name() == text)
    }
}

/// Index of a host function in [`ModuleTable::functions`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostFnId(pub u32);

/// Who a host function belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// `Module.Function(...)`
    Module(String),
    /// `value.Method(...)` on a value of host type `name`; the receiver is
    /// passed as the first argument.
    HostType(String),
}

/// What a literal string argument names in the deployment, so
/// `scl check --config` can check it and suggest the nearest name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRef {
    ExternalSystem,
    /// A method of the external system named by the argument at this index.
    ExternalMethod {
        system_arg: usize,
    },
    NotificationList,
    Database,
    Instance,
    /// An attribute of the current instance's template.
    Attribute,
    /// An attribute of the instance the receiver was routed to (`Route.To(code)`).
    RoutedAttribute,
    /// An instance script of the current instance's template.
    Script,
    /// An instance script of the routed instance's template.
    RoutedScript,
    SharedScript,
}

#[derive(Clone, Debug)]
pub struct HostFnSig {
    pub owner: Owner,
    pub name: String,
    pub params: Vec<(String, Type)>,
    pub ret: Type,
    /// Which script kinds may call it; empty means every kind.
    pub kinds: Vec<ScriptKind>,
    /// Literal string arguments that name deployment objects: (argument index, what).
    pub name_args: Vec<(usize, NameRef)>,
    /// One or two sentences for hover and docs.
    pub doc: String,
}

impl HostFnSig {
    /// `Module.Function` or `HostType.Method`.
    pub fn qualified_name(&self) -> String {
        match &self.owner {
            Owner::Module(m) | Owner::HostType(m) => format!("{m}.{}", self.name),
        }
    }
}

/// The host-visible world of a script: modules, host types, named types.
#[derive(Clone, Debug, Default)]
pub struct ModuleTable {
    pub functions: Vec<HostFnSig>,
    /// Named types every script sees, such as `Delivery` and `Error`.
    pub types: Vec<(String, Type)>,
}

impl ModuleTable {
    pub fn function(&self, id: HostFnId) -> &HostFnSig {
        &self.functions[id.0 as usize]
    }

    /// Looks up `Module.Function` or `HostType.Method`.
    pub fn lookup(&self, owner: &Owner, name: &str) -> Option<HostFnId> {
        self.functions
            .iter()
            .position(|f| &f.owner == owner && f.name == name)
            .map(|i| HostFnId(i as u32))
    }

    pub fn is_module(&self, name: &str) -> bool {
        self.functions
            .iter()
            .any(|f| matches!(&f.owner, Owner::Module(m) if m == name))
    }

    /// Members of a module or host type, for "did you mean" and completion.
    pub fn members(&self, owner: &Owner) -> impl Iterator<Item = &HostFnSig> {
        self.functions.iter().filter(move |f| &f.owner == owner)
    }

    pub fn named_type(&self, name: &str) -> Option<&Type> {
        self.types.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

/// The names a deployment defines, for `scl check --config`.
#[derive(Clone, Debug, Default)]
pub struct DeploymentNames {
    /// External system name and its method names.
    pub external_systems: Vec<(String, Vec<String>)>,
    pub notification_lists: Vec<String>,
    pub databases: Vec<String>,
    /// Instance code and its template name.
    pub instances: Vec<(String, String)>,
    /// Template name, its attribute names and its script names.
    pub templates: Vec<TemplateNames>,
    pub shared_scripts: Vec<String>,
}

#[derive(Clone, Debug, Default)]
pub struct TemplateNames {
    pub name: String,
    pub attributes: Vec<String>,
    pub scripts: Vec<String>,
}
