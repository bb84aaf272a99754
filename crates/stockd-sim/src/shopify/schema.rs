//! The official Admin API schema of each version, and the validation of every document and its
//! variables against it, refused with Shopify's error shape (graphql-ruby's messages and codes:
//! `{"errors":[{"message","locations","path","extensions":{"code"}}]}`, status 200).
//!
//! The schema is Shopify's own dump (`specs/shopify/admin_schema.graphql`, API 2025-01); later
//! versions apply their published changes on top of it:
//! - 2026-01 adds `changeFromQuantity` and `@idempotent(key:)`:
//!   <https://shopify.dev/changelog/compare-and-swap-for-inventory-mutations-with-change-from-quantity>,
//!   <https://shopify.dev/changelog/adding-idempotency-for-inventory-adjustments-and-refund-mutations>.
//! - 2026-04 removes `compareQuantity` and `ignoreCompareQuantity`:
//!   <https://shopify.dev/changelog/finalizing-compare-and-swap-redesign-for-inventory-set-quantities>.
//! - 2026-07 names the set mutation's quantity input `InventorySetQuantityInput`:
//!   <https://shopify.dev/docs/api/admin-graphql/2026-07/input-objects/InventorySetQuantityInput>.
//!
//! Beyond the schema: every connection takes `first` or `last`, at most 250
//! (<https://shopify.dev/api/usage/limits>), and a document's requested cost — scalars 0,
//! objects 1, connections by the page size, mutations 10 — is computed here
//! (<https://shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits>).

use std::sync::OnceLock;

use apollo_compiler::ast::Type;
use apollo_compiler::executable::ExecutableDocument;
use apollo_compiler::schema::{ExtendedType, InputObjectType};
use apollo_compiler::validation::{DiagnosticData, Valid};
use apollo_compiler::{name, Node, Schema};
use serde_json::{json, Map, Value};

use super::document::{Document, Field, GValue, Selection};
use super::{V2026_01, V2026_04, V2026_07};

/// The Admin schema as Shopify publishes it (introspection dump of API 2025-01).
const ADMIN_SCHEMA: &str = include_str!("../../../../specs/shopify/admin_schema.graphql");

/// The versions from which the schema changes, oldest first (0: the dump itself). A version
/// uses the schema of the newest entry not after it.
const SCHEMA_CHANGES: [u32; 4] = [0, V2026_01, V2026_04, V2026_07];

/// What 2026-01 declares, in the schema language.
const ADDED_IN_2026_01: &str = "
directive @idempotent(key: String) on FIELD
input Added { changeFromQuantity: Int }
";

fn dump() -> &'static Valid<Schema> {
    static DUMP: OnceLock<Valid<Schema>> = OnceLock::new();
    DUMP.get_or_init(|| {
        // Shopify's dump redefines the built-in scalars (`scalar ID`, …), which the GraphQL
        // spec says to omit; that redefinition is accepted and nothing else.
        let schema = Schema::builder()
            .ignore_builtin_redefinitions()
            .parse(ADMIN_SCHEMA, "admin_schema.graphql")
            .build()
            .unwrap_or_else(|e| panic!("the embedded Admin schema does not build: {e}"));
        schema
            .validate()
            .unwrap_or_else(|e| panic!("the embedded Admin schema is invalid: {e}"))
    })
}

/// The schema of API `version` (see [`crate::shopify::parse_version`]), built once per process.
pub(super) fn schema_for(version: u32) -> &'static Valid<Schema> {
    static SCHEMAS: [OnceLock<Valid<Schema>>; SCHEMA_CHANGES.len()] =
        [const { OnceLock::new() }; SCHEMA_CHANGES.len()];
    let step = SCHEMA_CHANGES
        .iter()
        .rposition(|from| *from <= version)
        .unwrap_or(0);
    if step == 0 {
        return dump();
    }
    SCHEMAS[step].get_or_init(|| {
        let mut schema = dump().clone().into_inner();
        for change in &SCHEMA_CHANGES[1..=step] {
            apply_changes(&mut schema, *change);
        }
        // Optional fields and a directive added, optional fields removed, one input type
        // copied under a new name: the result stays valid, and `each_version_schema_is_valid`
        // validates every one in full.
        Valid::assume_valid(schema)
    })
}

fn input_object_mut<'s>(schema: &'s mut Schema, name: &str) -> &'s mut InputObjectType {
    match schema.types.get_mut(name) {
        Some(ExtendedType::InputObject(object)) => object.make_mut(),
        _ => panic!("the Admin schema defines no input {name}"),
    }
}

fn apply_changes(schema: &mut Schema, version: u32) {
    match version {
        V2026_01 => {
            let added = Schema::builder()
                .parse(ADDED_IN_2026_01, "2026-01.graphql")
                .build()
                .unwrap_or_else(|e| panic!("the 2026-01 additions do not build: {e}"));
            let directive = added.directive_definitions["idempotent"].clone();
            schema
                .directive_definitions
                .insert(directive.name.clone(), directive);
            let Some(input) = added.get_input_object("Added") else {
                unreachable!("declared above")
            };
            let field = input.fields["changeFromQuantity"].clone();
            for ty in ["InventoryQuantityInput", "InventoryChangeInput"] {
                input_object_mut(schema, ty)
                    .fields
                    .insert(field.name.clone(), field.clone());
            }
        }
        V2026_04 => {
            input_object_mut(schema, "InventoryQuantityInput")
                .fields
                .shift_remove("compareQuantity");
            input_object_mut(schema, "InventorySetQuantitiesInput")
                .fields
                .shift_remove("ignoreCompareQuantity");
        }
        V2026_07 => {
            let renamed = name!("InventorySetQuantityInput");
            let mut quantity = match schema.types.get("InventoryQuantityInput") {
                Some(ExtendedType::InputObject(object)) => object.clone(),
                _ => panic!("the Admin schema defines no input InventoryQuantityInput"),
            };
            quantity.make_mut().name = renamed.clone();
            schema
                .types
                .insert(renamed.clone(), ExtendedType::InputObject(quantity));
            let set = input_object_mut(schema, "InventorySetQuantitiesInput");
            if let Some(quantities) = set.fields.get_mut("quantities") {
                quantities.make_mut().ty =
                    Node::new(Type::NonNullList(Box::new(Type::NonNullNamed(renamed))));
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

/// One GraphQL error in Shopify's shape.
pub(super) fn gql_error(
    message: impl Into<String>,
    pos: Option<(usize, usize)>,
    path: &[String],
    ext: Value,
) -> Value {
    let mut e = Map::new();
    e.insert("message".into(), json!(message.into()));
    if let Some((l, c)) = pos {
        e.insert("locations".into(), json!([{"line": l, "column": c}]));
    }
    if !path.is_empty() {
        e.insert("path".into(), json!(path));
    }
    if !ext.is_null() {
        e.insert("extensions".into(), ext);
    }
    Value::Object(e)
}

/// `query Name`, `mutation` …: how graphql-ruby names an operation in messages and paths.
pub(super) fn operation_label(kind: super::document::OpKind, name: Option<&str>) -> String {
    let kind = match kind {
        super::document::OpKind::Query => "query",
        super::document::OpKind::Mutation => "mutation",
        super::document::OpKind::Subscription => "subscription",
    };
    match name {
        Some(name) => format!("{kind} {name}"),
        None => kind.to_string(),
    }
}

/// Validates `query` against `schema`; every rule the document breaks becomes one error.
pub(super) fn validate_document(
    schema: &Valid<Schema>,
    query: &str,
    doc: &Document,
    op_label: &str,
) -> Result<(), Vec<Value>> {
    match ExecutableDocument::parse_and_validate(schema, query, "query.graphql") {
        Ok(_) => Ok(()),
        Err(invalid) => Err(invalid
            .errors
            .iter()
            .map(|d| {
                let at = d
                    .line_column_range()
                    .map(|r| (r.start.line, r.start.column));
                shopify_error(d.error, at, doc, op_label)
            })
            .collect()),
    }
}

/// The names a diagnostic quotes between backticks, in order.
fn quoted(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// A validation failure as graphql-ruby words it. The rule comes from the validator; its
/// names from the diagnostic's text.
fn shopify_error(
    error: &DiagnosticData,
    at: Option<(usize, usize)>,
    doc: &Document,
    op_label: &str,
) -> Value {
    let rule = error.unstable_error_name().unwrap_or("");
    let text = error.to_string();
    let names = quoted(&text);
    let name = |i: usize| names.get(i).cloned().unwrap_or_default();
    let path = at.map(|at| field_path(doc, at)).unwrap_or_default();
    let (message, ext) = match rule {
        "UndefinedField" => {
            let (ty, field) = (name(0), name(1));
            (
                format!("Field '{field}' doesn't exist on type '{ty}'"),
                json!({"code": "undefinedField", "typeName": ty, "fieldName": field}),
            )
        }
        "UndefinedArgument" => {
            let (argument, owner) = (name(0), name(1));
            match owner.strip_prefix('@') {
                Some(directive) => (
                    format!("Directive '@{directive}' doesn't accept argument '{argument}'"),
                    json!({"code": "argumentNotAccepted", "name": directive, "typeName": "Directive", "argumentName": argument}),
                ),
                None => {
                    let field = owner.rsplit('.').next().unwrap_or(&owner).to_string();
                    (
                        format!("Field '{field}' doesn't accept argument '{argument}'"),
                        json!({"code": "argumentNotAccepted", "name": field, "typeName": "Field", "argumentName": argument}),
                    )
                }
            }
        }
        "RequiredArgument" => {
            // `QueryRoot.inventoryItem(id:)` or `@skip(if:)`.
            let coordinate = name(0);
            let (owner, argument) = coordinate
                .trim_end_matches(":)")
                .split_once('(')
                .map(|(o, a)| (o.to_string(), a.to_string()))
                .unwrap_or((coordinate.clone(), String::new()));
            let field = owner.rsplit('.').next().unwrap_or(&owner).to_string();
            let class = if field.starts_with('@') {
                "Directive"
            } else {
                "Field"
            };
            (
                format!("{class} '{field}' is missing required arguments: {argument}"),
                json!({"code": "missingRequiredArguments", "className": class, "name": field, "arguments": argument}),
            )
        }
        "UndefinedDirective" => {
            let directive = name(0).trim_start_matches('@').to_string();
            (
                format!("Directive @{directive} is not defined"),
                json!({"code": "undefinedDirective", "directiveName": directive}),
            )
        }
        "UndefinedFragment" => {
            let fragment = name(0);
            (
                format!("Fragment {fragment} was used, but not defined"),
                json!({"code": "useAndDefineFragment", "fragmentName": fragment}),
            )
        }
        "UnusedFragment" => {
            let fragment = name(0);
            (
                format!("Fragment {fragment} was defined, but not used"),
                json!({"code": "useAndDefineFragment", "fragmentName": fragment}),
            )
        }
        "UndefinedVariable" => {
            let variable = name(0).trim_start_matches('$').to_string();
            (
                format!("Variable ${variable} is used by {op_label} but not declared"),
                json!({"code": "variableNotDefined", "variableName": variable}),
            )
        }
        "UnusedVariable" => {
            let variable = name(0).trim_start_matches('$').to_string();
            (
                format!("Variable ${variable} is declared by {op_label} but not used"),
                json!({"code": "variableNotUsed", "variableName": variable}),
            )
        }
        "DisallowedVariableUsage" => {
            let variable = name(0).trim_start_matches('$').to_string();
            let (declared, argument, expected) = (name(1), name(2), name(3));
            (
                format!("Type mismatch on variable ${variable} and argument {argument} ({declared} / {expected})"),
                json!({"code": "variableMismatch", "variableName": variable, "typeName": declared, "argumentName": argument, "errorMessage": "Type mismatch"}),
            )
        }
        "" if text.starts_with("syntax error") => (
            format!("Parse error: {}", text.trim_start_matches("syntax error: ")),
            Value::Null,
        ),
        _ => (
            error.unstable_compat_message().unwrap_or(text),
            json!({"code": rule_code(rule)}),
        ),
    };
    gql_error(message, at, &path, ext)
}

/// graphql-ruby's code for the remaining static rules; a rule it has no name for keeps the
/// validator's, in graphql-ruby's casing.
fn rule_code(rule: &str) -> String {
    let code = match rule {
        "MissingSubselection" | "SubselectionOnScalarType" | "SubselectionOnEnumType" => {
            "selectionMismatch"
        }
        "InvalidFragmentSpread" => "cannotSpreadFragment",
        "InvalidFragmentTarget" => "fragmentOnNonCompositeType",
        "UndefinedTypeInNamedFragmentTypeCondition"
        | "UndefinedTypeInInlineFragmentTypeCondition" => "undefinedType",
        "UndefinedDefinition" | "VariableInputType" => "variableRequiresValidType",
        "UnsupportedLocation" => "directiveCannotBeApplied",
        "UnsupportedValueType"
        | "IntCoercionError"
        | "FloatCoercionError"
        | "UndefinedInputValue"
        | "UndefinedEnumValue"
        | "RequiredField" => "argumentLiteralsIncompatible",
        "ConflictingFieldType" | "ConflictingFieldName" | "ConflictingFieldArgument" => {
            "fieldConflict"
        }
        "RecursiveFragmentDefinition" => "infiniteLoop",
        "" => "validationFailed",
        other => {
            let mut chars = other.chars();
            return chars
                .next()
                .map(|first| first.to_ascii_lowercase().to_string() + chars.as_str())
                .unwrap_or_default();
        }
    };
    code.to_string()
}

/// graphql-ruby's `path` of an error at a field: the operation (or fragment) and the response
/// keys down to that field. Empty when nothing starts at `at`.
fn field_path(doc: &Document, at: (usize, usize)) -> Vec<String> {
    fn walk(selection: &[Selection], at: (usize, usize), path: &mut Vec<String>) -> bool {
        for s in selection {
            let found = match s {
                Selection::Field(f) => {
                    path.push(f.key().to_string());
                    if f.pos == at || walk(&f.selection, at, path) {
                        return true;
                    }
                    path.pop();
                    false
                }
                Selection::Inline { selection, .. } => walk(selection, at, path),
                Selection::Spread { .. } => false,
            };
            if found {
                return true;
            }
        }
        false
    }
    for op in &doc.operations {
        let mut path = vec![operation_label(op.kind, op.name.as_deref())];
        if walk(&op.selection, at, &mut path) {
            return path;
        }
    }
    for (name, fragment) in &doc.fragments {
        let mut path = vec![format!("fragment {name}")];
        if walk(&fragment.selection, at, &mut path) {
            return path;
        }
    }
    Vec::new()
}

// ---------------------------------------------------------------------------------------------
// Variables

/// One reason a variable's value does not fit its type, at a path inside the value.
pub(super) struct Problem {
    pub(super) path: Vec<Value>,
    pub(super) explanation: String,
}

/// Coerces a variable's JSON value to type `ty` (as written, e.g. `[ID!]!`) with the schema's
/// input types, collecting graphql-ruby's problems; the result is the coerced value.
pub(super) fn coerce(
    schema: &Schema,
    v: &Value,
    ty: &str,
    path: &mut Vec<Value>,
    problems: &mut Vec<Problem>,
) -> Value {
    let (inner, non_null) = match ty.strip_suffix('!') {
        Some(t) => (t, true),
        None => (ty, false),
    };
    if v.is_null() {
        if non_null {
            problems.push(Problem {
                path: path.clone(),
                explanation: "Expected value to not be null".into(),
            });
        }
        return Value::Null;
    }
    if let Some(elem) = inner.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        // A single value where a list is expected is a list of one (input coercion).
        let items: Vec<Value> = match v {
            Value::Array(a) => a.clone(),
            other => vec![other.clone()],
        };
        let mut out = Vec::new();
        for (i, it) in items.iter().enumerate() {
            path.push(json!(i));
            out.push(coerce(schema, it, elem, path, problems));
            path.pop();
        }
        return Value::Array(out);
    }
    let bad = |problems: &mut Vec<Problem>, path: &Vec<Value>| {
        problems.push(Problem {
            path: path.clone(),
            explanation: format!("Could not coerce value {v} to {inner}"),
        });
        Value::Null
    };
    match inner {
        "Int" => match v.as_i64() {
            Some(n) if i32::try_from(n).is_ok() && !v.is_f64() => json!(n),
            _ => bad(problems, path),
        },
        "Float" => match v.as_f64() {
            Some(f) => json!(f),
            None => bad(problems, path),
        },
        "String" => match v {
            Value::String(_) => v.clone(),
            _ => bad(problems, path),
        },
        "ID" => match v {
            Value::String(_) => v.clone(),
            Value::Number(n) if n.is_i64() || n.is_u64() => json!(n.to_string()),
            _ => bad(problems, path),
        },
        "Boolean" => match v {
            Value::Bool(_) => v.clone(),
            _ => bad(problems, path),
        },
        named => match schema.types.get(named) {
            // Shopify's own scalars (`DateTime`, `URL`, `Decimal`, …) are taken as sent.
            Some(ExtendedType::Scalar(_)) => v.clone(),
            Some(ExtendedType::Enum(e)) => match v.as_str() {
                Some(s) if e.values.contains_key(s) => v.clone(),
                _ => bad(problems, path),
            },
            Some(ExtendedType::InputObject(object)) => {
                let Value::Object(m) = v else {
                    return bad(problems, path);
                };
                let mut out = Map::new();
                for (k, x) in m {
                    path.push(json!(k));
                    match object.fields.get(k.as_str()) {
                        None => problems.push(Problem {
                            path: path.clone(),
                            explanation: format!("Field is not defined on {named}"),
                        }),
                        Some(field) => {
                            let c = coerce(schema, x, &field.ty.to_string(), path, problems);
                            out.insert(k.clone(), c);
                        }
                    }
                    path.pop();
                }
                for (n, field) in &object.fields {
                    if field.ty.is_non_null()
                        && field.default_value.is_none()
                        && !m.contains_key(n.as_str())
                    {
                        path.push(json!(n.as_str()));
                        problems.push(Problem {
                            path: path.clone(),
                            explanation: "Expected value to not be null".into(),
                        });
                        path.pop();
                    }
                }
                Value::Object(out)
            }
            _ => bad(problems, path),
        },
    }
}

pub(super) fn literal_to_json(v: &GValue, vars: &Map<String, Value>) -> Value {
    match v {
        GValue::Var(n) => vars.get(n).cloned().unwrap_or(Value::Null),
        GValue::Int(i) => json!(i),
        GValue::Float(f) => json!(f),
        GValue::Str(s) | GValue::Enum(s) => json!(s),
        GValue::Bool(b) => json!(b),
        GValue::Null => Value::Null,
        GValue::List(l) => Value::Array(l.iter().map(|x| literal_to_json(x, vars)).collect()),
        GValue::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), literal_to_json(x, vars)))
                .collect(),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Requested cost and connection limits

/// What a field returns, as far as cost and paging are concerned.
enum Shape<'s> {
    Leaf,
    Object(&'s str),
    List(&'s str),
    Connection(&'s str),
}

fn shape<'s>(schema: &'s Schema, parent: &str, field: &str) -> Option<Shape<'s>> {
    let def = schema.type_field(parent, field).ok()?;
    let target = def.ty.inner_named_type().as_str();
    Some(match schema.types.get(target)? {
        ExtendedType::Scalar(_) | ExtendedType::Enum(_) => Shape::Leaf,
        _ if def.ty.is_list() => Shape::List(target),
        _ if target.ends_with("Connection") => Shape::Connection(target),
        _ => Shape::Object(target),
    })
}

/// Walks a valid document's operation: its requested cost, and the errors of connections
/// without `first`/`last` or with more than 250.
pub(super) struct CostWalk<'a> {
    pub(super) schema: &'a Schema,
    pub(super) doc: &'a Document,
    pub(super) vars: &'a Map<String, Value>,
    pub(super) errors: Vec<Value>,
    depth: usize,
}

impl<'a> CostWalk<'a> {
    pub(super) fn new(schema: &'a Schema, doc: &'a Document, vars: &'a Map<String, Value>) -> Self {
        CostWalk {
            schema,
            doc,
            vars,
            errors: Vec::new(),
            depth: 0,
        }
    }

    /// The requested cost of `sels` on type `ty`.
    pub(super) fn selection(
        &mut self,
        ty: &str,
        sels: &[Selection],
        path: &mut Vec<String>,
    ) -> f64 {
        self.depth += 1;
        if self.depth > 40 {
            self.errors.push(gql_error(
                "Query has depth too deep",
                None,
                path,
                Value::Null,
            ));
            self.depth -= 1;
            return 0.0;
        }
        let mut cost = 0.0;
        for sel in sels {
            match sel {
                Selection::Field(f) => {
                    path.push(f.key().to_string());
                    cost += self.field(ty, f, path);
                    path.pop();
                }
                Selection::Spread { name, .. } => {
                    let doc = self.doc;
                    if let Some(fragment) = doc.fragments.get(name) {
                        let t = self.narrowed(ty, &fragment.type_cond);
                        cost += self.selection(&t, &fragment.selection, path);
                    }
                }
                Selection::Inline {
                    type_cond,
                    selection,
                    ..
                } => {
                    let t = match type_cond {
                        Some(cond) => self.narrowed(ty, cond),
                        None => ty.to_string(),
                    };
                    cost += self.selection(&t, selection, path);
                }
            }
        }
        self.depth -= 1;
        cost
    }

    /// The type a fragment's fields are read on: its condition when that narrows `ty`.
    fn narrowed(&self, ty: &str, cond: &str) -> String {
        if self.schema.is_subtype(ty, cond) {
            cond.to_string()
        } else {
            ty.to_string()
        }
    }

    fn field(&mut self, ty: &str, f: &Field, path: &mut Vec<String>) -> f64 {
        let Some(shape) = shape(self.schema, ty, &f.name) else {
            // `__typename` and introspection cost nothing.
            return 0.0;
        };
        let mutation_root = self
            .schema
            .schema_definition
            .mutation
            .as_ref()
            .is_some_and(|m| m.name == ty);
        match shape {
            Shape::Leaf => 0.0,
            Shape::Object(t) => {
                let child = self.selection(t, &f.selection, path);
                if mutation_root {
                    // A mutation costs a flat 10 points.
                    10.0
                } else {
                    1.0 + child
                }
            }
            Shape::List(t) => {
                let child = self.selection(t, &f.selection, path);
                let query_root = self
                    .schema
                    .schema_definition
                    .query
                    .as_ref()
                    .is_some_and(|q| q.name == ty);
                if f.name == "nodes" && query_root {
                    let n = match f.arg("ids") {
                        Some(GValue::List(l)) => l.len() as f64,
                        _ => 1.0,
                    };
                    n * (1.0 + child)
                } else if ty.ends_with("Connection") && f.name == "edges" {
                    // Inside a connection, edges are priced per node by the connection.
                    child
                } else {
                    1.0 + child
                }
            }
            Shape::Connection(t) => {
                self.page_size_checked(f, path);
                let child = self.selection(t, &f.selection, path);
                let first = match (f.arg("first"), f.arg("last")) {
                    (Some(GValue::Int(n)), _) | (_, Some(GValue::Int(n))) => *n as f64,
                    _ => 1.0,
                };
                // Scaling by the page size is Shopify's published rule for connections;
                // its exact form is not published: 2 + first × node cost.
                2.0 + first * child.max(1.0)
            }
        }
    }

    /// Every connection takes `first` or `last`, between 0 and 250.
    fn page_size_checked(&mut self, f: &Field, path: &[String]) {
        let given = |name: &str| {
            f.arg(name)
                .map(|v| literal_to_json(v, self.vars))
                .filter(|v| !v.is_null())
        };
        let (first, last) = (given("first"), given("last"));
        if first.is_none() && last.is_none() {
            self.errors.push(gql_error(
                format!(
                    "you must provide one of first or last for the {} connection",
                    f.name
                ),
                Some(f.pos),
                path,
                Value::Null,
            ));
        }
        for v in [first, last].into_iter().flatten() {
            if v.as_i64().is_none_or(|n| !(0..=250).contains(&n)) {
                self.errors.push(gql_error(
                    format!(
                        "The argument `first` or `last` on {} must be between 0 and 250",
                        f.name
                    ),
                    Some(f.pos),
                    path,
                    Value::Null,
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_version_schema_is_valid() {
        for version in SCHEMA_CHANGES {
            let schema = schema_for(version).clone().into_inner();
            if let Err(e) = schema.validate() {
                panic!("the schema of {version} is invalid: {e}");
            }
        }
    }

    #[test]
    fn versions_change_the_inventory_inputs() {
        let fields = |version: u32, ty: &str| -> Vec<String> {
            schema_for(version)
                .get_input_object(ty)
                .map(|o| o.fields.keys().map(|k| k.to_string()).collect())
                .unwrap_or_default()
        };
        let has = |version, ty, field: &str| fields(version, ty).iter().any(|f| f == field);
        assert!(has(202510, "InventoryQuantityInput", "compareQuantity"));
        assert!(!has(202510, "InventoryQuantityInput", "changeFromQuantity"));
        assert!(!schema_for(202510)
            .directive_definitions
            .contains_key("idempotent"));
        assert!(has(
            V2026_01,
            "InventoryQuantityInput",
            "changeFromQuantity"
        ));
        assert!(has(V2026_01, "InventoryChangeInput", "changeFromQuantity"));
        assert!(schema_for(V2026_01)
            .directive_definitions
            .contains_key("idempotent"));
        assert!(has(
            V2026_01,
            "InventorySetQuantitiesInput",
            "ignoreCompareQuantity"
        ));
        assert!(!has(V2026_04, "InventoryQuantityInput", "compareQuantity"));
        assert!(!has(
            V2026_04,
            "InventorySetQuantitiesInput",
            "ignoreCompareQuantity"
        ));
        assert!(has(
            V2026_07,
            "InventorySetQuantityInput",
            "changeFromQuantity"
        ));
        assert!(!has(
            V2026_07,
            "InventorySetQuantityInput",
            "compareQuantity"
        ));
        let quantities = schema_for(V2026_07)
            .get_input_object("InventorySetQuantitiesInput")
            .map(|o| o.fields["quantities"].ty.to_string());
        assert_eq!(quantities.as_deref(), Some("[InventorySetQuantityInput!]!"));
    }

    #[test]
    fn backticked_names_in_order() {
        assert_eq!(
            quoted("type `QueryRoot` does not have a field `x`"),
            vec!["QueryRoot", "x"]
        );
        assert!(quoted("no names").is_empty());
    }

    #[test]
    fn remaining_rules_keep_their_name_in_graphql_ruby_casing() {
        assert_eq!(rule_code("UniqueArgument"), "uniqueArgument");
        assert_eq!(rule_code("MissingSubselection"), "selectionMismatch");
    }
}
