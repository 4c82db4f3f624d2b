//! The registry of diagnostic codes. A code, once given, keeps its meaning
//! forever; `docs/diagnostics.md` is generated from this table (and a test
//! keeps the two in step).

/// A stable diagnostic code with its documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Code {
    /// `SCLnnnn`
    pub id: &'static str,
    /// A short kebab-case name.
    pub name: &'static str,
    /// What the diagnostic means and why it is an error, in a sentence or two.
    pub explanation: &'static str,
    /// A small program that triggers it.
    pub example: &'static str,
}

macro_rules! codes {
    ($($konst:ident = $id:literal, $name:literal, $explanation:literal, $example:literal;)*) => {
        $(
            pub const $konst: Code = Code {
                id: $id,
                name: $name,
                explanation: $explanation,
                example: $example,
            };
        )*
        /// Every code, in numeric order.
        pub const ALL: &[Code] = &[$($konst),*];
    };
}

codes! {
    // Lexical.
    INVALID_CHARACTER = "SCL0001", "invalid-character",
        "A character that cannot start any token of SCL.",
        "fn main() -> int { return 1 # 2; }";
    UNTERMINATED_STRING = "SCL0002", "unterminated-string",
        "A string literal has no closing quote before the end of the line or file.",
        "fn main() -> string { return \"abc; }";
    UNTERMINATED_COMMENT = "SCL0003", "unterminated-comment",
        "A `/*` block comment (comments nest) is not closed before the end of the file.",
        "/* never closed\nfn main() {}";
    INVALID_ESCAPE = "SCL0004", "invalid-escape",
        "A backslash in a string is followed by something other than n, t, r, \\\\, \\\", $, 0 or u{...} with a valid code point.",
        "fn main() -> string { return \"a\\qb\"; }";
    INTEGER_TOO_LARGE = "SCL0005", "integer-too-large",
        "An integer literal does not fit in a 64-bit signed integer.",
        "fn main() -> int { return 99999999999999999999; }";
    MALFORMED_NUMBER = "SCL0006", "malformed-number",
        "A numeric literal is cut short or badly formed, such as `0x` or `1e`.",
        "fn main() -> float { return 1e; }";

    // Syntax.
    UNEXPECTED_TOKEN = "SCL0010", "unexpected-token",
        "The parser found a token where the grammar does not allow it; the message lists what it expected.",
        "fn main() -> int { return 1 +; }";
    UNCLOSED_DELIMITER = "SCL0011", "unclosed-delimiter",
        "An opening `(`, `[` or `{` has no matching closing delimiter.",
        "fn main() -> int { return (1 + 2; }";
    MISSING_SEMICOLON = "SCL0012", "missing-semicolon",
        "A statement must end with `;`.",
        "fn main() -> int { let x = 1 return x; }";
    INVALID_ASSIGNMENT_TARGET = "SCL0013", "invalid-assignment-target",
        "Only a variable, a list element `xs[i]` or a map entry `m[k]` can be assigned to.",
        "fn main() { f() = 1; }\nfn f() -> int { return 1; }";
    EXPECTED_ITEM = "SCL0014", "expected-item",
        "At the top level of a file only `fn` and `type` declarations are allowed.",
        "let x = 1;\nfn main() {}";

    // Names.
    UNKNOWN_NAME = "SCL0101", "unknown-name",
        "A name is used that no `let`, `var`, parameter, loop or catch variable in scope declares.",
        "fn main() -> int { return y; }";
    UNKNOWN_FUNCTION = "SCL0102", "unknown-function",
        "A call names a function that is neither declared in the file nor built in.",
        "fn main() -> int { return fib(3); }";
    UNKNOWN_TYPE = "SCL0103", "unknown-type",
        "A type name is neither built in nor declared with `type`.",
        "fn main(x: Pump) {}";
    DUPLICATE_DEFINITION = "SCL0104", "duplicate-definition",
        "Two functions, types, parameters or record fields have the same name, or a variable is declared twice in one block.",
        "fn f() {}\nfn f() {}\nfn main() {}";
    UNKNOWN_MODULE_MEMBER = "SCL0105", "unknown-module-member",
        "A built-in module (or host type) has no function (or method) of this name.",
        "fn main() { Log.Debug(\"x\"); }";
    UNKNOWN_FIELD = "SCL0106", "unknown-field",
        "A record type has no field of this name.",
        "fn main() -> int { let r = { a: 1 }; return r.b; }";
    UNKNOWN_METHOD = "SCL0107", "unknown-method",
        "Values of this type have no method of this name.",
        "fn main() -> int { let s = \"abc\"; return s.size(); }";
    MISSING_MAIN = "SCL0108", "missing-main",
        "A script needs one `fn main(...)`: its parameters and return type are the script's.",
        "fn helper() {}";
    RECURSIVE_TYPE = "SCL0110", "recursive-type",
        "A `type` declaration refers to itself; SCL records cannot be recursive.",
        "type Node = { next: Node? }\nfn main() {}";

    // Types.
    TYPE_MISMATCH = "SCL0201", "type-mismatch",
        "An expression has a different type from the one its place requires; there are no implicit conversions except to `json` and to `T?`.",
        "fn main() -> int { let x: int = \"a\"; return x; }";
    WRONG_ARGUMENT_COUNT = "SCL0202", "wrong-argument-count",
        "A function or method is called with more or fewer arguments than it declares.",
        "fn f(a: int) -> int { return a; }\nfn main() -> int { return f(1, 2); }";
    INVALID_OPERANDS = "SCL0203", "invalid-operands",
        "An operator is used on types it does not apply to (for example `+` on `int` and `float`; convert with `float(i)` first).",
        "fn main() -> float { return 1 + 2.5; }";
    NOT_INDEXABLE = "SCL0204", "not-indexable",
        "Only lists (by `int`), maps (by `string`) and `json` (by either) can be indexed.",
        "fn main() -> int { let x = 5; return x[0]; }";
    INVALID_AS = "SCL0205", "invalid-as",
        "`as` converts a `json` value (or a list or map of `json`) to a JSON-representable type; anything else is a mistake.",
        "fn main() -> int { let x = 5; return x as int; }";
    CANNOT_INFER = "SCL0206", "cannot-infer",
        "The type of an empty list `[]`, an empty `{}` or `null` cannot be inferred here; write the variable's type.",
        "fn main() { let xs = []; }";
    OPTIONAL_NOT_UNWRAPPED = "SCL0207", "optional-not-unwrapped",
        "A value of type `T?` is used where `T` is required; give a default with `??` or compare with `null` first.",
        "fn main() -> int { let m: map<int> = {}; return m.get(\"a\"); }";
    RECORD_FIELDS = "SCL0208", "record-fields",
        "A record literal is missing fields the expected record type has, or has fields it does not.",
        "type P = { a: int, b: int }\nfn main() -> P { return { a: 1 }; }";
    VOID_VALUE = "SCL0209", "void-value",
        "A call of a function that returns `void` is used as a value.",
        "fn f() {}\nfn main() -> int { let x = f(); return 1; }";
    INVALID_CONVERSION = "SCL0210", "invalid-conversion",
        "A built-in conversion (`float`, `int`, `string`) is applied to a type it does not accept.",
        "fn main() -> float { return float(true); }";

    // Statements and control flow.
    ASSIGN_TO_IMMUTABLE = "SCL0301", "assign-to-immutable",
        "A `let` binding (or a parameter or loop variable) cannot be assigned; declare it with `var`.",
        "fn main() -> int { let x = 1; x = 2; return x; }";
    MISSING_RETURN = "SCL0302", "missing-return",
        "A function with a return type can reach its end without `return` or `throw`.",
        "fn f(x: int) -> int { if x > 0 { return 1; } }\nfn main() {}";
    BREAK_OUTSIDE_LOOP = "SCL0303", "break-outside-loop",
        "`break` and `continue` are only allowed inside `while` and `for`.",
        "fn main() { break; }";
    RETURN_MISMATCH = "SCL0304", "return-mismatch",
        "`return` without a value in a function that returns one, or with a value in a `void` function.",
        "fn main() { return 1; }";
    UNREACHABLE_CODE = "SCL0305", "unreachable-code",
        "A statement follows `return`, `throw`, `break` or `continue` in the same block and can never run (a warning).",
        "fn main() -> int { return 1; let x = 2; }";
    INVALID_THROW = "SCL0306", "invalid-throw",
        "`throw` takes a `string` message or an `Error` value (from `error(code, message)` or a `catch`).",
        "fn main() { throw 42; }";
    INVALID_MAIN = "SCL0307", "invalid-main",
        "`main`'s parameters and result cross the JSON boundary, so their types must be JSON-representable (no host values such as `Connection`).",
        "fn main(c: Connection) {}";

    // Script kinds.
    MODULE_NOT_ALLOWED = "SCL0401", "module-not-allowed",
        "The script's kind may not use this module (see the kind table in docs/language.md).",
        "// kind: api\nfn main() { Attributes.Set(\"Speed\", 1.0); }";
    SHARED_CALL_IN_API = "SCL0402", "shared-call-in-api",
        "API scripts run on central and cannot call site-side shared scripts.",
        "// kind: api\nfn main() -> json { return Shared.Call(\"Helpers\", {}); }";
    ROUTE_OUTSIDE_API = "SCL0403", "route-outside-api",
        "`Route.To` is the way central reaches instances; only `api` scripts may use it.",
        "// kind: instance\nfn main() -> json { return Route.To(\"PUMP-001\").GetAttribute(\"Speed\"); }";

    // Deployment names (with --config).
    UNKNOWN_EXTERNAL_SYSTEM = "SCL0501", "unknown-external-system",
        "No external system of this name is defined in the deployment.",
        "fn main() -> json { return ExternalSystem.Call(\"MESS\", \"GetOrder\", {}); }";
    UNKNOWN_EXTERNAL_METHOD = "SCL0502", "unknown-external-method",
        "The external system has no method of this name in the deployment.",
        "fn main() -> json { return ExternalSystem.Call(\"MES\", \"GetOrders\", {}); }";
    UNKNOWN_NOTIFICATION_LIST = "SCL0503", "unknown-notification-list",
        "No notification list of this name is defined in the deployment.",
        "fn main() { Notify.To(\"Operator\").Send(\"s\", \"b\"); }";
    UNKNOWN_DATABASE = "SCL0504", "unknown-database",
        "No database connection of this name is defined in the deployment.",
        "fn main() { Database.Connection(\"Histrian\").Execute(\"SELECT 1\", []); }";
    UNKNOWN_INSTANCE = "SCL0505", "unknown-instance",
        "No instance with this code is defined in the deployment.",
        "// kind: api\nfn main() -> json { return Route.To(\"PUMP-999\").GetAttribute(\"Speed\"); }";
    UNKNOWN_ATTRIBUTE = "SCL0506", "unknown-attribute",
        "The instance's template defines no attribute of this name.",
        "// kind: instance\nfn main() -> json { return Attributes.Get(\"Sped\"); }";
    UNKNOWN_SCRIPT = "SCL0507", "unknown-script",
        "The instance's template defines no script of this name.",
        "// kind: instance\nfn main() -> json { return Scripts.Call(\"ReadTmp\", {}); }";
    UNKNOWN_SHARED_SCRIPT = "SCL0508", "unknown-shared-script",
        "No shared script of this name is defined in the deployment.",
        "// kind: instance\nfn main() -> json { return Shared.Call(\"Helper\", {}); }";
}

/// Looks a code up by its `SCLnnnn` id.
pub fn by_id(id: &str) -> Option<Code> {
    ALL.iter().copied().find(|c| c.id == id)
}

/// Renders the whole registry as the `docs/diagnostics.md` page.
pub fn render_markdown() -> String {
    let mut out = String::from(
        "# Diagnostic codes\n\n\
         Generated from `lang/src/codes.rs` (`cargo run -p scl-runtime -- codes > docs/diagnostics.md`);\n\
         a test fails when this page and the registry differ. A code keeps its meaning forever.\n",
    );
    for code in ALL {
        out.push_str(&format!(
            "\n## {} `{}`\n\n{}\n\n```scl\n{}\n```\n",
            code.id, code.name, code.explanation, code.example
        ));
    }
    out
}
