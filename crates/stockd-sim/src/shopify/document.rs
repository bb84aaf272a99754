//! A small GraphQL executable-document parser (October 2021 spec grammar): operations,
//! variable definitions, selection sets with aliases, arguments, directives, fragment spreads
//! and inline fragments. Type-system definitions are rejected. What the executor walks; the
//! schema's validation (`schema`) judges everything the grammar allows.

use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum GValue {
    Var(String),
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    Null,
    Enum(String),
    List(Vec<GValue>),
    Object(Vec<(String, GValue)>),
}

#[derive(Debug, Clone)]
pub(crate) struct Directive {
    pub name: String,
    pub args: Vec<(String, GValue)>,
}

#[derive(Debug, Clone)]
pub(crate) struct Field {
    pub alias: Option<String>,
    pub name: String,
    pub args: Vec<(String, GValue)>,
    pub directives: Vec<Directive>,
    pub selection: Vec<Selection>,
    pub pos: (usize, usize),
}

impl Field {
    pub fn key(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.name)
    }
    pub fn arg(&self, name: &str) -> Option<&GValue> {
        self.args.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Selection {
    Field(Field),
    Spread {
        name: String,
        directives: Vec<Directive>,
    },
    Inline {
        type_cond: Option<String>,
        directives: Vec<Directive>,
        selection: Vec<Selection>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    Query,
    Mutation,
    Subscription,
}

#[derive(Debug, Clone)]
pub(crate) struct VarDef {
    pub name: String,
    /// The type as written, normalised without spaces, e.g. `[ID!]!`.
    pub ty: String,
    pub default: Option<GValue>,
}

#[derive(Debug, Clone)]
pub(crate) struct Operation {
    pub kind: OpKind,
    pub name: Option<String>,
    pub vars: Vec<VarDef>,
    pub selection: Vec<Selection>,
    pub pos: (usize, usize),
}

#[derive(Debug, Clone)]
pub(crate) struct Fragment {
    pub type_cond: String,
    pub selection: Vec<Selection>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Document {
    pub operations: Vec<Operation>,
    pub fragments: HashMap<String, Fragment>,
}

#[derive(Debug, Clone)]
pub(crate) struct ParseError {
    pub message: String,
    pub pos: (usize, usize),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Punct(char),
    Spread,
    Name(String),
    Int(i64),
    Float(f64),
    Str(String),
    Eof,
}

/// A token and its (line, column).
type Spanned = (Tok, (usize, usize));

struct Lexer<'a> {
    src: &'a [u8],
    i: usize,
    line: usize,
    col: usize,
}

impl<'a> Lexer<'a> {
    fn err(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            message: message.into(),
            pos: (self.line, self.col),
        }
    }

    fn bump(&mut self) -> Option<u8> {
        let c = *self.src.get(self.i)?;
        self.i += 1;
        if c == b'\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.i).copied()
    }

    fn tokens(mut self) -> Result<Vec<Spanned>, ParseError> {
        let mut out = Vec::new();
        loop {
            // Whitespace, commas and comments are insignificant.
            while let Some(c) = self.peek() {
                if c == b' '
                    || c == b'\t'
                    || c == b'\n'
                    || c == b'\r'
                    || c == b','
                    || c == 0xEF
                    || c == 0xBB
                    || c == 0xBF
                {
                    self.bump();
                } else if c == b'#' {
                    while let Some(c) = self.peek() {
                        if c == b'\n' {
                            break;
                        }
                        self.bump();
                    }
                } else {
                    break;
                }
            }
            let pos = (self.line, self.col);
            let Some(c) = self.peek() else {
                out.push((Tok::Eof, pos));
                return Ok(out);
            };
            match c {
                b'!' | b'$' | b'(' | b')' | b':' | b'=' | b'@' | b'[' | b']' | b'{' | b'}'
                | b'|' | b'&' => {
                    self.bump();
                    out.push((Tok::Punct(c as char), pos));
                }
                b'.' => {
                    if self.src.get(self.i..self.i + 3) == Some(b"...") {
                        self.bump();
                        self.bump();
                        self.bump();
                        out.push((Tok::Spread, pos));
                    } else {
                        return Err(self.err("Parse error on \".\""));
                    }
                }
                b'"' => {
                    let s = self.string()?;
                    out.push((Tok::Str(s), pos));
                }
                b'-' | b'0'..=b'9' => {
                    let t = self.number()?;
                    out.push((t, pos));
                }
                c if c == b'_' || c.is_ascii_alphabetic() => {
                    let start = self.i;
                    while let Some(c) = self.peek() {
                        if c == b'_' || c.is_ascii_alphanumeric() {
                            self.bump();
                        } else {
                            break;
                        }
                    }
                    let name = String::from_utf8_lossy(&self.src[start..self.i]).into_owned();
                    out.push((Tok::Name(name), pos));
                }
                _ => {
                    let ch = String::from_utf8_lossy(
                        &self.src[self.i..(self.i + 1).min(self.src.len())],
                    )
                    .into_owned();
                    return Err(self.err(format!("Parse error on \"{ch}\"")));
                }
            }
        }
    }

    fn number(&mut self) -> Result<Tok, ParseError> {
        let start = self.i;
        let mut float = false;
        if self.peek() == Some(b'-') {
            self.bump();
        }
        while let Some(c) = self.peek() {
            if c.is_ascii_digit() {
                self.bump();
            } else if c == b'.' || c == b'e' || c == b'E' || ((c == b'+' || c == b'-') && float) {
                float = true;
                self.bump();
            } else {
                break;
            }
        }
        let text = String::from_utf8_lossy(&self.src[start..self.i]).into_owned();
        if float {
            text.parse::<f64>()
                .map(Tok::Float)
                .map_err(|_| self.err(format!("Parse error on \"{text}\"")))
        } else {
            text.parse::<i64>()
                .map(Tok::Int)
                .map_err(|_| self.err(format!("Parse error on \"{text}\"")))
        }
    }

    fn string(&mut self) -> Result<String, ParseError> {
        if self.src.get(self.i..self.i + 3) == Some(b"\"\"\"") {
            self.bump();
            self.bump();
            self.bump();
            let start = self.i;
            loop {
                if self.src.get(self.i..self.i + 3) == Some(b"\"\"\"") {
                    let raw = String::from_utf8_lossy(&self.src[start..self.i]).into_owned();
                    self.bump();
                    self.bump();
                    self.bump();
                    return Ok(raw.trim().to_string());
                }
                if self.bump().is_none() {
                    return Err(self.err("Parse error on unterminated string"));
                }
            }
        }
        self.bump();
        let mut bytes = Vec::new();
        loop {
            match self.bump() {
                None | Some(b'\n') => return Err(self.err("Parse error on unterminated string")),
                Some(b'"') => break,
                Some(b'\\') => match self.bump() {
                    Some(b'"') => bytes.push(b'"'),
                    Some(b'\\') => bytes.push(b'\\'),
                    Some(b'/') => bytes.push(b'/'),
                    Some(b'b') => bytes.push(8),
                    Some(b'f') => bytes.push(12),
                    Some(b'n') => bytes.push(b'\n'),
                    Some(b'r') => bytes.push(b'\r'),
                    Some(b't') => bytes.push(b'\t'),
                    Some(b'u') => {
                        let hex: String = (0..4)
                            .filter_map(|_| self.bump().map(|b| b as char))
                            .collect();
                        let cp = u32::from_str_radix(&hex, 16)
                            .map_err(|_| self.err("Parse error on bad unicode escape"))?;
                        let ch = char::from_u32(cp).unwrap_or('\u{FFFD}');
                        let mut buf = [0u8; 4];
                        bytes.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    }
                    _ => return Err(self.err("Parse error on bad escape")),
                },
                Some(c) => bytes.push(c),
            }
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

struct Parser {
    toks: Vec<Spanned>,
    i: usize,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Punct(c) => format!("\"{c}\""),
        Tok::Spread => "\"...\"".into(),
        Tok::Name(n) => format!("\"{n}\""),
        Tok::Int(n) => format!("\"{n}\""),
        Tok::Float(n) => format!("\"{n}\""),
        Tok::Str(s) => format!("\"{s}\""),
        Tok::Eof => "end of file".into(),
    }
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.i.min(self.toks.len() - 1)].0
    }
    fn pos(&self) -> (usize, usize) {
        self.toks[self.i.min(self.toks.len() - 1)].1
    }
    fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.i < self.toks.len() {
            self.i += 1;
        }
        t
    }
    fn unexpected(&self) -> ParseError {
        let (l, c) = self.pos();
        ParseError {
            message: format!("Parse error on {} at [{l}, {c}]", describe(self.peek())),
            pos: (l, c),
        }
    }
    fn expect(&mut self, c: char) -> Result<(), ParseError> {
        if self.peek() == &Tok::Punct(c) {
            self.next();
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }
    fn is(&self, c: char) -> bool {
        self.peek() == &Tok::Punct(c)
    }
    fn name(&mut self) -> Result<String, ParseError> {
        match self.peek().clone() {
            Tok::Name(n) => {
                self.next();
                Ok(n)
            }
            _ => Err(self.unexpected()),
        }
    }

    fn document(&mut self) -> Result<Document, ParseError> {
        let mut doc = Document::default();
        while self.peek() != &Tok::Eof {
            let pos = self.pos();
            match self.peek().clone() {
                Tok::Punct('{') => {
                    let selection = self.selection_set()?;
                    doc.operations.push(Operation {
                        kind: OpKind::Query,
                        name: None,
                        vars: vec![],
                        selection,
                        pos,
                    });
                }
                Tok::Name(n) if n == "query" || n == "mutation" || n == "subscription" => {
                    self.next();
                    let kind = match n.as_str() {
                        "query" => OpKind::Query,
                        "mutation" => OpKind::Mutation,
                        _ => OpKind::Subscription,
                    };
                    let name = if let Tok::Name(_) = self.peek() {
                        Some(self.name()?)
                    } else {
                        None
                    };
                    let vars = if self.is('(') {
                        self.var_defs()?
                    } else {
                        vec![]
                    };
                    // Directives on operations: the schema's validation judges them.
                    let _ = self.directives()?;
                    let selection = self.selection_set()?;
                    doc.operations.push(Operation {
                        kind,
                        name,
                        vars,
                        selection,
                        pos,
                    });
                }
                Tok::Name(n) if n == "fragment" => {
                    self.next();
                    let name = self.name()?;
                    match self.next() {
                        Tok::Name(on) if on == "on" => {}
                        _ => return Err(self.unexpected()),
                    }
                    let type_cond = self.name()?;
                    let _ = self.directives()?;
                    let selection = self.selection_set()?;
                    doc.fragments.insert(
                        name,
                        Fragment {
                            type_cond,
                            selection,
                        },
                    );
                }
                _ => return Err(self.unexpected()),
            }
        }
        Ok(doc)
    }

    fn var_defs(&mut self) -> Result<Vec<VarDef>, ParseError> {
        self.expect('(')?;
        let mut out = Vec::new();
        while !self.is(')') {
            self.expect('$')?;
            let name = self.name()?;
            self.expect(':')?;
            let ty = self.type_ref()?;
            let default = if self.is('=') {
                self.next();
                Some(self.value(true)?)
            } else {
                None
            };
            let _ = self.directives()?;
            out.push(VarDef { name, ty, default });
        }
        self.expect(')')?;
        Ok(out)
    }

    fn type_ref(&mut self) -> Result<String, ParseError> {
        let mut s = if self.is('[') {
            self.next();
            let inner = self.type_ref()?;
            self.expect(']')?;
            format!("[{inner}]")
        } else {
            self.name()?
        };
        if self.is('!') {
            self.next();
            s.push('!');
        }
        Ok(s)
    }

    fn directives(&mut self) -> Result<Vec<Directive>, ParseError> {
        let mut out = Vec::new();
        while self.is('@') {
            self.next();
            let name = self.name()?;
            let args = if self.is('(') {
                self.arguments()?
            } else {
                vec![]
            };
            out.push(Directive { name, args });
        }
        Ok(out)
    }

    fn arguments(&mut self) -> Result<Vec<(String, GValue)>, ParseError> {
        self.expect('(')?;
        let mut out = Vec::new();
        while !self.is(')') {
            let n = self.name()?;
            self.expect(':')?;
            out.push((n, self.value(false)?));
        }
        self.expect(')')?;
        Ok(out)
    }

    fn value(&mut self, constant: bool) -> Result<GValue, ParseError> {
        match self.peek().clone() {
            Tok::Punct('$') if !constant => {
                self.next();
                Ok(GValue::Var(self.name()?))
            }
            Tok::Int(n) => {
                self.next();
                Ok(GValue::Int(n))
            }
            Tok::Float(f) => {
                self.next();
                Ok(GValue::Float(f))
            }
            Tok::Str(s) => {
                self.next();
                Ok(GValue::Str(s))
            }
            Tok::Name(n) => {
                self.next();
                Ok(match n.as_str() {
                    "true" => GValue::Bool(true),
                    "false" => GValue::Bool(false),
                    "null" => GValue::Null,
                    _ => GValue::Enum(n),
                })
            }
            Tok::Punct('[') => {
                self.next();
                let mut items = Vec::new();
                while !self.is(']') {
                    if self.peek() == &Tok::Eof {
                        return Err(self.unexpected());
                    }
                    items.push(self.value(constant)?);
                }
                self.next();
                Ok(GValue::List(items))
            }
            Tok::Punct('{') => {
                self.next();
                let mut fields = Vec::new();
                while !self.is('}') {
                    let n = self.name()?;
                    self.expect(':')?;
                    fields.push((n, self.value(constant)?));
                }
                self.next();
                Ok(GValue::Object(fields))
            }
            _ => Err(self.unexpected()),
        }
    }

    fn selection_set(&mut self) -> Result<Vec<Selection>, ParseError> {
        self.expect('{')?;
        let mut out = Vec::new();
        while !self.is('}') {
            let pos = self.pos();
            match self.peek().clone() {
                Tok::Spread => {
                    self.next();
                    match self.peek().clone() {
                        Tok::Name(n) if n != "on" => {
                            self.next();
                            let directives = self.directives()?;
                            out.push(Selection::Spread {
                                name: n,
                                directives,
                            });
                        }
                        _ => {
                            let type_cond = if self.peek() == &Tok::Name("on".into()) {
                                self.next();
                                Some(self.name()?)
                            } else {
                                None
                            };
                            let directives = self.directives()?;
                            let selection = self.selection_set()?;
                            out.push(Selection::Inline {
                                type_cond,
                                directives,
                                selection,
                            });
                        }
                    }
                }
                Tok::Name(_) => {
                    let first = self.name()?;
                    let (alias, name) = if self.is(':') {
                        self.next();
                        (Some(first), self.name()?)
                    } else {
                        (None, first)
                    };
                    let args = if self.is('(') {
                        self.arguments()?
                    } else {
                        vec![]
                    };
                    let directives = self.directives()?;
                    let selection = if self.is('{') {
                        self.selection_set()?
                    } else {
                        vec![]
                    };
                    out.push(Selection::Field(Field {
                        alias,
                        name,
                        args,
                        directives,
                        selection,
                        pos,
                    }));
                }
                _ => return Err(self.unexpected()),
            }
        }
        self.next();
        if out.is_empty() {
            return Err(self.unexpected());
        }
        Ok(out)
    }
}

/// Parse an executable GraphQL document.
pub(crate) fn parse(src: &str) -> Result<Document, ParseError> {
    let toks = Lexer {
        src: src.as_bytes(),
        i: 0,
        line: 1,
        col: 1,
    }
    .tokens()?;
    let mut p = Parser { toks, i: 0 };
    let doc = p.document()?;
    if doc.operations.is_empty() {
        return Err(ParseError {
            message: "Parse error on end of file: the document has no operation".into(),
            pos: (1, 1),
        });
    }
    Ok(doc)
}

/// Serializes an executed result in the order its query asked for each field:
/// the GraphQL spec orders a response map by CollectFields (document order,
/// fragments inlined, the first occurrence of a response key wins), which
/// `serde_json::Map` (sorted) cannot keep. Fragments are followed whatever
/// their type condition: a key that a fragment did not select is simply absent.
pub(crate) fn to_json_in_query_order(
    value: &serde_json::Value,
    selection: &[Selection],
    doc: &Document,
) -> String {
    let mut out = String::new();
    write_ordered(&mut out, value, selection, doc);
    out
}

fn write_ordered(
    out: &mut String,
    value: &serde_json::Value,
    selection: &[Selection],
    doc: &Document,
) {
    use serde_json::Value;
    match value {
        Value::Object(map) if !selection.is_empty() => {
            let mut keys: Vec<(&str, Vec<&Selection>)> = Vec::new();
            response_keys(selection, doc, &mut keys, 0);
            out.push('{');
            let mut first = true;
            let mut written = std::collections::HashSet::new();
            for (key, subs) in &keys {
                let Some(v) = map.get(*key) else { continue };
                if !first {
                    out.push(',');
                }
                first = false;
                written.insert(*key);
                out.push_str(&serde_json::Value::String((*key).to_string()).to_string());
                out.push(':');
                let merged: Vec<Selection> = subs.iter().map(|s| (*s).clone()).collect();
                write_ordered(out, v, &merged, doc);
            }
            // Anything the selection does not name (none in a correct executor).
            for (k, v) in map.iter().filter(|(k, _)| !written.contains(k.as_str())) {
                if !first {
                    out.push(',');
                }
                first = false;
                out.push_str(&serde_json::Value::String(k.clone()).to_string());
                out.push(':');
                out.push_str(&v.to_string());
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_ordered(out, item, selection, doc);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The response keys of a selection set in document order, each with the
/// sub-selections of every field that answers to it (fields merge by key).
fn response_keys<'d>(
    selection: &'d [Selection],
    doc: &'d Document,
    keys: &mut Vec<(&'d str, Vec<&'d Selection>)>,
    depth: usize,
) {
    // Fragment cycles are refused by validation; the bound keeps this total.
    if depth > 64 {
        return;
    }
    for s in selection {
        match s {
            Selection::Field(f) => {
                let key = f.key();
                let at = match keys.iter().position(|(k, _)| *k == key) {
                    Some(i) => i,
                    None => {
                        keys.push((key, Vec::new()));
                        keys.len() - 1
                    }
                };
                keys[at].1.extend(f.selection.iter());
            }
            Selection::Spread { name, .. } => {
                if let Some(fragment) = doc.fragments.get(name) {
                    response_keys(&fragment.selection, doc, keys, depth + 1);
                }
            }
            Selection::Inline { selection, .. } => response_keys(selection, doc, keys, depth + 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mutation_with_directive_and_fragments() {
        let doc = parse(
            r#"mutation Set($input: InventorySetQuantitiesInput!) {
              inventorySetQuantities(input: $input) @idempotent(key: "k-1") {
                inventoryAdjustmentGroup { ...G }
                userErrors { code field message }
              }
            }
            fragment G on InventoryAdjustmentGroup { createdAt changes { name delta } }"#,
        )
        .expect("parses");
        let op = &doc.operations[0];
        assert_eq!(op.kind, OpKind::Mutation);
        assert_eq!(op.vars[0].ty, "InventorySetQuantitiesInput!");
        let Selection::Field(f) = &op.selection[0] else {
            panic!("field expected")
        };
        assert_eq!(f.directives[0].name, "idempotent");
        assert_eq!(f.directives[0].args[0].1, GValue::Str("k-1".into()));
        assert!(doc.fragments.contains_key("G"));
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse("{ a(b: ) }").is_err());
        assert!(parse("type Foo { a: Int }").is_err());
        assert!(parse("{ }").is_err());
        assert!(parse("").is_err());
    }
}
