//! Just enough of eKuiper's SQL: `CREATE STREAM|TABLE name (fields) WITH (options)` and the sources a
//! `SELECT` reads.

use serde_json::{Map, Value, json};

/// A field type as eKuiper's describe JSON prints it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FieldType {
    /// `bigint`, `float`, `string`, `bytea`, `datetime`, `boolean`.
    Basic(&'static str),
    /// `ARRAY(t)`.
    Array(Box<FieldType>),
    /// `STRUCT(f t, …)`.
    Struct(Vec<(String, FieldType)>),
}

impl FieldType {
    /// `"float"`, `{"Type":"array","ElementType":…}` or `{"Type":"struct","Fields":[…]}`
    /// (`pkg/ast/sourceStmt.go printFieldTypeForJson`).
    pub(crate) fn to_json(&self) -> Value {
        match self {
            FieldType::Basic(name) => json!(name),
            FieldType::Array(inner) => json!({ "Type": "array", "ElementType": inner.to_json() }),
            FieldType::Struct(fields) => json!({ "Type": "struct", "Fields": fields_json(fields) }),
        }
    }
}

fn fields_json(fields: &[(String, FieldType)]) -> Vec<Value> {
    fields.iter().map(|(name, t)| json!({ "FieldType": t.to_json(), "Name": name })).collect()
}

/// A parsed `CREATE STREAM` or `CREATE TABLE`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StreamDef {
    pub(crate) name: String,
    pub(crate) is_table: bool,
    pub(crate) fields: Vec<(String, FieldType)>,
    /// Options under their JSON names (`datasource`, `format`, `confKey`…), empty ones left out.
    pub(crate) options: Map<String, Value>,
}

impl StreamDef {
    /// The describe reply: the untagged Go struct `ast.StreamStmt`.
    pub(crate) fn describe_json(&self) -> Value {
        let fields = if self.fields.is_empty() { Value::Null } else { Value::Array(fields_json(&self.fields)) };
        json!({
            "Name": self.name,
            "StreamFields": fields,
            "Options": self.options,
            "StreamType": u8::from(self.is_table),
            "Statement": null,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    Punct(char),
}

impl Tok {
    fn show(&self) -> String {
        match self {
            Tok::Ident(s) | Tok::Num(s) => s.clone(),
            Tok::Str(s) => format!("\"{s}\""),
            Tok::Punct(c) => c.to_string(),
        }
    }
}

fn tokenize(sql: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '\'' {
            let end =
                chars[i + 1..].iter().position(|&d| d == c).ok_or_else(|| format!("found \"EOF\", expected {c} to close the string"))?;
            out.push(Tok::Str(chars[i + 1..i + 1 + end].iter().collect()));
            i += end + 2;
        } else if c == '`' {
            let end = chars[i + 1..].iter().position(|&d| d == '`').ok_or("found \"EOF\", expected ` to close the name")?;
            out.push(Tok::Ident(chars[i + 1..i + 1 + end].iter().collect()));
            i += end + 2;
        } else if c.is_alphabetic() || c == '_' {
            let len = chars[i..].iter().take_while(|d| d.is_alphanumeric() || **d == '_').count();
            out.push(Tok::Ident(chars[i..i + len].iter().collect()));
            i += len;
        } else if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let len = 1 + chars[i + 1..].iter().take_while(|d| d.is_ascii_digit() || **d == '.').count();
            out.push(Tok::Num(chars[i..i + len].iter().collect()));
            i += len;
        } else {
            out.push(Tok::Punct(c));
            i += 1;
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn found(&self) -> String {
        self.peek().map(Tok::show).unwrap_or_else(|| "EOF".to_owned())
    }

    fn keyword(&mut self, kw: &str) -> Result<(), String> {
        match self.peek() {
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case(kw) => {
                self.pos += 1;
                Ok(())
            }
            _ => Err(format!("found \"{}\", expected {kw}.", self.found())),
        }
    }

    fn punct(&mut self, p: char) -> Result<(), String> {
        match self.peek() {
            Some(Tok::Punct(c)) if *c == p => {
                self.pos += 1;
                Ok(())
            }
            _ => Err(format!("found \"{}\", expected {p}.", self.found())),
        }
    }

    fn is_punct(&self, p: char) -> bool {
        matches!(self.peek(), Some(Tok::Punct(c)) if *c == p)
    }

    fn ident(&mut self, what: &str) -> Result<String, String> {
        match self.peek() {
            Some(Tok::Ident(s)) => {
                let s = s.clone();
                self.pos += 1;
                Ok(s)
            }
            _ => Err(format!("found \"{}\", expected {what}.", self.found())),
        }
    }

    fn field_type(&mut self) -> Result<FieldType, String> {
        let name = self.ident("a field type")?;
        let basic = match name.to_ascii_uppercase().as_str() {
            "BIGINT" => "bigint",
            "FLOAT" => "float",
            "STRING" => "string",
            "BYTEA" => "bytea",
            "DATETIME" => "datetime",
            "BOOLEAN" => "boolean",
            "ARRAY" => {
                self.punct('(')?;
                let inner = self.field_type()?;
                self.punct(')')?;
                return Ok(FieldType::Array(Box::new(inner)));
            }
            "STRUCT" => {
                self.punct('(')?;
                let fields = self.fields()?;
                self.punct(')')?;
                return Ok(FieldType::Struct(fields));
            }
            _ => return Err(format!("found \"{name}\", expected a field type (BIGINT|FLOAT|STRING|BYTEA|DATETIME|BOOLEAN|ARRAY|STRUCT).")),
        };
        Ok(FieldType::Basic(basic))
    }

    /// `f t, f t` up to (not including) the closing parenthesis.
    fn fields(&mut self) -> Result<Vec<(String, FieldType)>, String> {
        let mut fields = Vec::new();
        while !self.is_punct(')') {
            let name = self.ident("a field name")?;
            let t = self.field_type()?;
            fields.push((name, t));
            if !self.is_punct(')') {
                self.punct(',')?;
            }
        }
        Ok(fields)
    }
}

/// Parses `CREATE STREAM|TABLE name (fields) WITH (KEY="value", …)`.
pub(crate) fn parse_create(sql: &str) -> Result<StreamDef, String> {
    let mut p = Parser { toks: tokenize(sql)?, pos: 0 };
    p.keyword("CREATE")?;
    let is_table = match p.peek() {
        Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("STREAM") => false,
        Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("TABLE") => true,
        _ => return Err(format!("found \"{}\", expected STREAM or TABLE.", p.found())),
    };
    p.pos += 1;
    let name = p.ident("a stream name")?;
    p.punct('(')?;
    let fields = p.fields()?;
    p.punct(')')?;
    p.keyword("WITH")?;
    p.punct('(')?;
    let mut options = Map::new();
    while !p.is_punct(')') {
        let key = p.ident("an option key")?;
        p.punct('=')?;
        let value = match p.peek() {
            Some(Tok::Str(s) | Tok::Num(s) | Tok::Ident(s)) => s.clone(),
            _ => return Err(format!("found \"{}\", expected an option value.", p.found())),
        };
        p.pos += 1;
        let bool_of = |v: &str| match v.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(format!("invalid {key} value {v}, expected true or false")),
        };
        let (json_key, json_value) = match key.to_ascii_uppercase().as_str() {
            "DATASOURCE" => ("datasource", json!(value)),
            "KEY" => ("key", json!(value)),
            "FORMAT" => ("format", json!(value)),
            "CONF_KEY" => ("confKey", json!(value)),
            "TYPE" => ("type", json!(value)),
            "STRICT_VALIDATION" => ("strictValidation", json!(bool_of(&value)?)),
            "TIMESTAMP" => ("timestamp", json!(value)),
            "TIMESTAMP_FORMAT" => ("timestampFormat", json!(value)),
            "SHARED" => ("shared", json!(bool_of(&value)?)),
            "SCHEMAID" => ("schemaid", json!(value)),
            "VERSION" => ("version", json!(value)),
            "RETAIN_SIZE" => ("retainSize", json!(value.parse::<i64>().map_err(|_| format!("invalid RETAIN_SIZE value {value}"))?)),
            "KIND" => ("kind", json!(value)),
            "DELIMITER" => ("delimiter", json!(value)),
            _ => {
                return Err(format!(
                    "found \"{key}\", unknown option keys(DATASOURCE|FORMAT|KEY|CONF_KEY|SHARED|STRICT_VALIDATION|TYPE|TIMESTAMP|\
                     TIMESTAMP_FORMAT|RETAIN_SIZE|SCHEMAID|KIND|DELIMITER|VERSION)."
                ));
            }
        };
        // Go's `omitempty`: empty strings, false and 0 are left out.
        let empty = matches!(&json_value, Value::String(s) if s.is_empty()) || json_value == json!(false) || json_value == json!(0);
        if !empty {
            options.insert(json_key.to_owned(), json_value);
        }
        if !p.is_punct(')') {
            p.punct(',')?;
        }
    }
    p.punct(')')?;
    if p.is_punct(';') {
        p.pos += 1;
    }
    if p.peek().is_some() {
        return Err(format!("found \"{}\", expected EOF.", p.found()));
    }
    Ok(StreamDef { name, is_table, fields, options })
}

/// The streams and tables a `SELECT` reads (after `FROM` and `JOIN`).
pub(crate) fn select_sources(sql: &str) -> Result<Vec<String>, String> {
    let toks = tokenize(sql)?;
    match toks.first() {
        Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("SELECT") => {}
        other => return Err(format!("found \"{}\", expected SELECT.", other.map(Tok::show).unwrap_or_else(|| "EOF".to_owned()))),
    }
    let mut sources = Vec::new();
    for pair in toks.windows(2) {
        if let [Tok::Ident(kw), Tok::Ident(name)] = pair
            && (kw.eq_ignore_ascii_case("FROM") || kw.eq_ignore_ascii_case("JOIN"))
            && !sources.contains(name)
        {
            sources.push(name.clone());
        }
    }
    if sources.is_empty() {
        return Err("found \"EOF\", expected FROM.".to_owned());
    }
    Ok(sources)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_streams_and_tables() {
        let def = parse_create(r#"CREATE STREAM demo (temp FLOAT, tags ARRAY(STRING), meta STRUCT(id BIGINT)) WITH (DATASOURCE="t/demo", FORMAT="JSON", SHARED="true");"#)
            .unwrap();
        assert_eq!(def.name, "demo");
        assert!(!def.is_table);
        let json = def.describe_json();
        assert_eq!(json["StreamFields"][0], json!({ "FieldType": "float", "Name": "temp" }));
        assert_eq!(json["StreamFields"][1]["FieldType"], json!({ "Type": "array", "ElementType": "string" }));
        assert_eq!(json["StreamFields"][2]["FieldType"]["Type"], "struct");
        assert_eq!(json["Options"], json!({ "datasource": "t/demo", "format": "JSON", "shared": true }));
        assert_eq!(json["StreamType"], 0);

        let table = parse_create(r#"create table t () WITH (DATASOURCE="x", KIND="lookup")"#).unwrap();
        assert!(table.is_table);
        assert_eq!(table.describe_json()["StreamFields"], Value::Null);

        assert!(parse_create("CREATE STREAM x (a FLOAT)").unwrap_err().contains("expected WITH"));
        assert!(parse_create(r#"CREATE STREAM x () WITH (BOGUS="1")"#).unwrap_err().contains("unknown option"));
        assert!(parse_create("DROP STREAM x").is_err());
    }

    #[test]
    fn finds_select_sources() {
        assert_eq!(select_sources("SELECT * FROM demo WHERE temp > 1").unwrap(), vec!["demo"]);
        assert_eq!(select_sources("select a.x from s1 as a inner join t1 on a.id = t1.id").unwrap(), vec!["s1", "t1"]);
        assert!(select_sources("DELETE FROM x").is_err());
        assert!(select_sources("SELECT 1").is_err());
    }
}
