//! CSV batch import of directly managed edge services.
//!
//! The file has a header line naming its columns, in any order and any case:
//!
//! | column      | required | value                                                                   |
//! |-------------|----------|-------------------------------------------------------------------------|
//! | `category`  | yes      | the product: `4`/`neuronex`, `2`/`neuron`, `1`/`ekuiper`, `3`/`nanomq`, `99`/`custom` |
//! | `name`      | yes      | 1–200 characters, unique in the file and the project (regardless of case) |
//! | `nodeType`  | yes      | `Direct` (or `4`): the only mode a file can register                    |
//! | `endpoint`  | yes      | `host:port[/path]`, or a whole `http(s)://` URL agreeing with `scheme`  |
//! | `scheme`    | yes      | `http` or `https`                                                       |
//! | `tagName`   | no       | up to 10 tags separated by `;` or `|`                                   |
//! | `username`  | no       | with `password`: HTTP Basic / login credentials                         |
//! | `password`  | no       | never repeated in a failure reason                                      |
//!
//! [`parse_csv`] streams the file (it never holds more than one record and the accepted rows), stops
//! with [`ImportError::TooLarge`] past [`ImportLimits::max_bytes`] (100 MiB by default, the
//! product's limit), and otherwise answers every line: a row to import, or an [`ImportFailure`]
//! with the line number (the header is line 1; a quoted field spanning lines counts from its first)
//! and the reason. Whether a name is already taken in the project is the store's answer, given at
//! registration (see `ProjectFleet::import_csv`).

use std::collections::HashMap;
use std::io::{self, Read};

use ecp_core::edge::{Credentials, EdgeKind, MAX_TAGS_PER_SERVICE, normalize_tags, validate_endpoint};
use ecp_core::tenancy::validate_resource_name;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// The product's limit on an import file: 100 MB.
pub const DEFAULT_MAX_BYTES: u64 = 100 * 1024 * 1024;

/// Bounds on one import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportLimits {
    /// The most bytes read from the file (default 100 MiB).
    pub max_bytes: u64,
    /// The most data lines (rows and failures together; default 1,000,000).
    pub max_rows: u64,
}

impl Default for ImportLimits {
    fn default() -> Self {
        ImportLimits { max_bytes: DEFAULT_MAX_BYTES, max_rows: 1_000_000 }
    }
}

impl ImportLimits {
    /// Limits of `max_bytes` and `max_rows`.
    pub fn new(max_bytes: u64, max_rows: u64) -> Self {
        ImportLimits { max_bytes, max_rows }
    }
}

/// One valid line of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportRow {
    /// Its line number (the header is line 1).
    pub line: u64,
    /// The service's name.
    pub name: String,
    /// The product.
    pub kind: EdgeKind,
    /// The full base URL (`http://10.0.0.1:8085`).
    pub endpoint: String,
    /// Its tags, checked, deduplicated and sorted.
    pub tags: Vec<String>,
    /// Its credentials (the password redacted in `Debug`).
    pub credentials: Credentials,
}

/// A line that is not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportFailure {
    /// Its line number (the header is line 1).
    pub line: u64,
    /// Why (never containing a password).
    pub reason: String,
}

/// What a file holds: the rows to import and the lines that failed, both in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedImport {
    /// The valid rows.
    pub rows: Vec<ImportRow>,
    /// The bad lines.
    pub failures: Vec<ImportFailure>,
}

/// Why a whole file cannot be imported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The file is larger than [`ImportLimits::max_bytes`].
    #[error("the file exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The file has more data lines than [`ImportLimits::max_rows`].
    #[error("the file has more than {limit} data lines")]
    TooManyRows {
        /// The limit.
        limit: u64,
    },
    /// The header line is missing or wrong.
    #[error("bad header: {0}")]
    Header(String),
    /// The file could not be read.
    #[error("reading the file failed")]
    Io(#[source] io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Category,
    Name,
    NodeType,
    Endpoint,
    Scheme,
    TagName,
    Username,
    Password,
}

impl Column {
    const ALL: [Column; 8] = [
        Column::Category,
        Column::Name,
        Column::NodeType,
        Column::Endpoint,
        Column::Scheme,
        Column::TagName,
        Column::Username,
        Column::Password,
    ];
    const REQUIRED: [Column; 5] = [Column::Category, Column::Name, Column::NodeType, Column::Endpoint, Column::Scheme];

    fn name(self) -> &'static str {
        match self {
            Column::Category => "category",
            Column::Name => "name",
            Column::NodeType => "nodeType",
            Column::Endpoint => "endpoint",
            Column::Scheme => "scheme",
            Column::TagName => "tagName",
            Column::Username => "username",
            Column::Password => "password",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name().eq_ignore_ascii_case(s))
    }
}

/// Where each known column sits in a record.
struct Header {
    index: [Option<usize>; Column::ALL.len()],
    len: usize,
}

impl Header {
    fn parse(record: &csv::ByteRecord) -> Result<Self, ImportError> {
        let mut index = [None; Column::ALL.len()];
        for (i, raw) in record.iter().enumerate() {
            let text = std::str::from_utf8(raw).map_err(|_| ImportError::Header(format!("column {} is not UTF-8", i + 1)))?;
            let text = text.trim_start_matches('\u{feff}').trim();
            let column = Column::parse(text).ok_or_else(|| {
                let shown: String = text.chars().take(40).collect();
                ImportError::Header(format!("unknown column {shown:?} (expected {})", Column::ALL.map(Column::name).join(",")))
            })?;
            let slot = &mut index[column as usize];
            if slot.is_some() {
                return Err(ImportError::Header(format!("column {} appears twice", column.name())));
            }
            *slot = Some(i);
        }
        let missing: Vec<&str> = Column::REQUIRED.into_iter().filter(|c| index[*c as usize].is_none()).map(Column::name).collect();
        if !missing.is_empty() {
            return Err(ImportError::Header(format!("missing column(s) {}", missing.join(","))));
        }
        Ok(Header { index, len: record.len() })
    }

    /// The trimmed text of a column, empty when the column is absent.
    fn get<'r>(&self, record: &'r csv::ByteRecord, column: Column) -> Result<&'r str, String> {
        let Some(i) = self.index[column as usize] else { return Ok("") };
        let raw = record.get(i).unwrap_or_default();
        std::str::from_utf8(raw).map(str::trim).map_err(|_| format!("column {} is not valid UTF-8", column.name()))
    }
}

/// The file as the csv reader sees it: at most `limit` raw bytes, with `\r\n` and a lone `\r`
/// turned into `\n` so that line numbers count one way whatever the file's line endings.
struct Source<R> {
    inner: R,
    remaining: u64,
    exceeded: bool,
    /// The last byte was a `\r` (now `\n`): a `\n` right after it belongs to it.
    after_cr: bool,
    /// Bytes handed to the csv reader.
    emitted: u64,
    last: Option<u8>,
    eof: bool,
}

impl<R: Read> Source<R> {
    fn new(inner: R, limit: u64) -> Self {
        Source { inner, remaining: limit, exceeded: false, after_cr: false, emitted: 0, last: None, eof: false }
    }

    /// Whether a record that ends at byte `end` was the file's last line, without a newline.
    fn unterminated_at(&self, end: u64) -> bool {
        self.eof && end == self.emitted && self.last != Some(b'\n')
    }
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.remaining == 0 {
                // One byte more tells a file of exactly `limit` bytes from a longer one.
                let mut probe = [0u8; 1];
                if self.inner.read(&mut probe)? == 0 {
                    self.eof = true;
                    return Ok(0);
                }
                self.exceeded = true;
                return Err(io::Error::other("import file too large"));
            }
            let cap = buf.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
            let n = self.inner.read(&mut buf[..cap])?;
            if n == 0 {
                self.eof = true;
                return Ok(0);
            }
            self.remaining -= n as u64;
            let mut kept = 0;
            for i in 0..n {
                let b = buf[i];
                let after_cr = std::mem::replace(&mut self.after_cr, b == b'\r');
                if after_cr && b == b'\n' {
                    continue;
                }
                buf[kept] = if b == b'\r' { b'\n' } else { b };
                kept += 1;
            }
            if kept > 0 {
                self.emitted += kept as u64;
                self.last = Some(buf[kept - 1]);
                return Ok(kept);
            }
        }
    }
}

/// Parses an import file: see the [module docs](self).
///
/// # Errors
/// The file as a whole: [`ImportError::Header`], [`ImportError::TooLarge`],
/// [`ImportError::TooManyRows`], [`ImportError::Io`]. Bad lines are not errors; they are in
/// [`ParsedImport::failures`].
pub fn parse_csv(reader: impl Read, limits: &ImportLimits) -> Result<ParsedImport, ImportError> {
    let source = Source::new(reader, limits.max_bytes);
    let mut csv = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(source);
    let io_error = |e: csv::Error, csv: &csv::Reader<Source<_>>| -> ImportError {
        if csv.get_ref().exceeded {
            return ImportError::TooLarge { limit: limits.max_bytes };
        }
        match e.into_kind() {
            csv::ErrorKind::Io(e) => ImportError::Io(e),
            other => ImportError::Io(io::Error::other(format!("{other:?}"))),
        }
    };

    let mut record = csv::ByteRecord::new();
    let header = loop {
        match csv.read_byte_record(&mut record) {
            Ok(false) => return Err(ImportError::Header("the file is empty".into())),
            Ok(true) if record.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)) => continue,
            Ok(true) => break Header::parse(&record)?,
            Err(e) => return Err(io_error(e, &csv)),
        }
    };

    let mut parsed = ParsedImport::default();
    let mut first_line_of: HashMap<String, u64> = HashMap::new();
    let mut lines = 0u64;
    loop {
        match csv.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(io_error(e, &csv)),
        }
        // The reader's own start position counts the blank lines it skipped before the record as
        // part of it, so the line is counted back from the record's end instead.
        let end = csv.position();
        let inner_newlines = record.as_slice().iter().filter(|b| **b == b'\n').count() as u64;
        let terminator = u64::from(!csv.get_ref().unterminated_at(end.byte()));
        let line = end.line().saturating_sub(inner_newlines + terminator).max(2);
        // A blank line (csv yields it as one empty field) is skipped, as spreadsheets write them.
        if record.len() == 1 && record[0].iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        lines += 1;
        if lines > limits.max_rows {
            return Err(ImportError::TooManyRows { limit: limits.max_rows });
        }
        if record.len() != header.len {
            parsed
                .failures
                .push(ImportFailure { line, reason: format!("bad column count: expected {}, found {}", header.len, record.len()) });
            continue;
        }
        match parse_row(&header, &record, line) {
            Ok(row) => {
                let key = row.name.to_lowercase();
                if let Some(first) = first_line_of.get(&key) {
                    parsed
                        .failures
                        .push(ImportFailure { line, reason: format!("duplicate name: {:?} is already on line {first}", row.name) });
                } else {
                    first_line_of.insert(key, line);
                    parsed.rows.push(row);
                }
            }
            Err(reason) => parsed.failures.push(ImportFailure { line, reason }),
        }
    }
    Ok(parsed)
}

fn parse_row(header: &Header, record: &csv::ByteRecord, line: u64) -> Result<ImportRow, String> {
    let category = header.get(record, Column::Category)?;
    let kind = parse_category(category)?;

    let name = header.get(record, Column::Name)?;
    validate_resource_name(name).map_err(|e| e.to_string())?;

    let node_type = header.get(record, Column::NodeType)?;
    if !(node_type.eq_ignore_ascii_case("direct") || node_type == "4") {
        let shown: String = node_type.chars().take(20).collect();
        return Err(format!("unsupported nodeType {shown:?}: a file imports Direct services only"));
    }

    let scheme = header.get(record, Column::Scheme)?.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err("bad URL: scheme must be http or https".into());
    }
    let endpoint = header.get(record, Column::Endpoint)?;
    let endpoint = match endpoint.split_once("://") {
        Some((given, _)) if !given.eq_ignore_ascii_case(&scheme) => {
            return Err(format!("bad URL: the endpoint's scheme does not match the scheme column ({scheme})"));
        }
        Some((_, rest)) => format!("{scheme}://{rest}"),
        None => format!("{scheme}://{endpoint}"),
    };
    validate_endpoint(&endpoint).map_err(|e| format!("bad URL: {e}"))?;

    let tags_text = header.get(record, Column::TagName)?;
    let tags: Vec<String> = tags_text.split([';', '|']).map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect();
    if tags.len() > MAX_TAGS_PER_SERVICE {
        return Err(format!("too many tags: {} (at most {MAX_TAGS_PER_SERVICE})", tags.len()));
    }
    let tags = normalize_tags(tags).map_err(|e| e.to_string())?;

    let username = header.get(record, Column::Username)?;
    // The password is neither trimmed nor ever shown.
    let password = match header.index[Column::Password as usize] {
        Some(i) => std::str::from_utf8(record.get(i).unwrap_or_default()).map_err(|_| "column password is not valid UTF-8".to_owned())?,
        None => "",
    };
    let credentials = match (username.is_empty(), password.is_empty()) {
        (true, true) => Credentials::None,
        (false, false) => Credentials::Basic { username: username.to_owned(), password: SecretString::from(password.to_owned()) },
        (false, true) => return Err("username given without a password".into()),
        (true, false) => return Err("password given without a username".into()),
    };

    Ok(ImportRow { line, name: name.to_owned(), kind, endpoint, tags, credentials })
}

fn parse_category(text: &str) -> Result<EdgeKind, String> {
    let kind = match text.parse::<u8>() {
        Ok(code) => EdgeKind::from_category(code),
        Err(_) => match text.to_ascii_lowercase().as_str() {
            "customize" => Some(EdgeKind::Custom),
            lower => EdgeKind::parse(lower),
        },
    };
    kind.ok_or_else(|| {
        let shown: String = text.chars().take(20).collect();
        format!("unknown category {shown:?} (expected 1 ekuiper, 2 neuron, 3 nanomq, 4 neuronex or 99 custom)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ParsedImport {
        parse_csv(text.as_bytes(), &ImportLimits::default()).unwrap()
    }

    #[test]
    fn header_in_any_order_and_case() {
        let p = parse("Endpoint,NAME,scheme,nodetype,CATEGORY\n10.0.0.1:8085,a,https,direct,neuronex\n");
        assert!(p.failures.is_empty(), "{:?}", p.failures);
        assert_eq!(p.rows[0].endpoint, "https://10.0.0.1:8085");
        assert_eq!(p.rows[0].kind, EdgeKind::NeuronEx);
        assert_eq!(p.rows[0].line, 2);
    }

    #[test]
    fn bad_headers_fail_the_file() {
        for text in [
            "",
            "\n\n",
            "category,name\n",
            "category,name,nodeType,endpoint,scheme,bogus\n",
            "name,name,category,nodeType,endpoint,scheme\n",
        ] {
            assert!(matches!(parse_csv(text.as_bytes(), &ImportLimits::default()), Err(ImportError::Header(_))), "{text:?}");
        }
    }

    #[test]
    fn each_reason() {
        let text = "category,name,nodeType,endpoint,scheme,tagName,username,password\n\
                    4,ok,Direct,10.0.0.1:8085,http,a;b|c,admin,s3cret-pw\n\
                    8,cat,Direct,10.0.0.1:8085,http,,,\n\
                    4,proxy,Proxy,10.0.0.1:8085,http,,,\n\
                    4,url,Direct,,http,,,\n\
                    4,sch,Direct,10.0.0.1:8085,ftp,,,\n\
                    4,mix,Direct,https://10.0.0.1:8085,http,,,\n\
                    4,tags,Direct,10.0.0.1:8085,http,1;2;3;4;5;6;7;8;9;10;11,,\n\
                    4,badtag,Direct,10.0.0.1:8085,http,elevenchars,,\n\
                    4,OK,Direct,10.0.0.1:8085,http,,,\n\
                    4,nopw,Direct,10.0.0.1:8085,http,,admin,\n\
                    4,nouser,Direct,10.0.0.1:8085,http,,,s3cret-pw\n\
                    4,short,Direct\n\
                    \n\
                    1,\"multi\nline\",Direct,10.0.0.1:9081,http,,,\n";
        for text in [text.to_owned(), text.replace('\n', "\r\n"), text.trim_end().to_owned(), text.replace('\n', "\r")] {
            check_reasons(&text);
        }
    }

    fn check_reasons(text: &str) {
        let p = parse(text);
        assert_eq!(p.rows.len(), 1);
        assert_eq!(p.rows[0].tags, vec!["a", "b", "c"]);
        assert!(matches!(&p.rows[0].credentials, Credentials::Basic { username, .. } if username == "admin"));
        let got: Vec<(u64, &str)> = p.failures.iter().map(|f| (f.line, f.reason.as_str())).collect();
        let want = [
            (3, "unknown category"),
            (4, "nodeType"),
            (5, "bad URL"),
            (6, "bad URL"),
            (7, "does not match"),
            (8, "too many tags"),
            (9, "tag"),
            (10, "already on line 2"),
            (11, "without a password"),
            (12, "without a username"),
            (13, "bad column count"),
            (15, "name"),
        ];
        assert_eq!(got.len(), want.len(), "{got:?}");
        for ((line, reason), (wl, wr)) in got.iter().zip(want) {
            assert_eq!(*line, wl, "{got:?}");
            assert!(reason.contains(wr), "line {line}: {reason:?} lacks {wr:?}");
        }
        assert!(p.failures.iter().all(|f| !f.reason.contains("s3cret")));
        assert!(!format!("{p:?}").contains("s3cret"));
    }

    #[test]
    fn size_limit() {
        let mut text = String::from("category,name,nodeType,endpoint,scheme\n");
        for i in 0..100 {
            text.push_str(&format!("4,e{i},Direct,10.0.0.1:8085,http\n"));
        }
        let exact = ImportLimits::new(text.len() as u64, 1000);
        assert_eq!(parse_csv(text.as_bytes(), &exact).unwrap().rows.len(), 100);
        let small = ImportLimits::new(text.len() as u64 - 1, 1000);
        assert!(matches!(parse_csv(text.as_bytes(), &small), Err(ImportError::TooLarge { .. })));
        assert!(matches!(parse_csv(text.as_bytes(), &ImportLimits::new(1 << 20, 99)), Err(ImportError::TooManyRows { limit: 99 })));
    }
}
