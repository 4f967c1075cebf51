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
//! and the reason. Lines end with `\n`, `\r\n` or a lone `\r`; inside a quoted field every byte
//! is the field's own (a `\r` in a password stays a `\r`). A quote left open, which would read
//! the rest of the file (or its last line end) as one field, fails the line that opens it and
//! every line it runs over, each with its own number. Whether a name is already taken in the project is the store's answer, given at
//! registration (see `ProjectFleet::import_csv`).

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};

use ecp_core::edge::{Credentials, EdgeKind, MAX_TAGS_PER_SERVICE, normalize_tags, validate_endpoint};
use ecp_core::tenancy::validate_resource_name;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// The product's limit on an import file: 100 MB.
pub const DEFAULT_MAX_BYTES: u64 = 100 * 1024 * 1024;

/// Bounds on one import. Build with [`ImportLimits::builder`]; `build()` validates. The default is
/// what `ImportLimits::builder().build()` gives: 100 MiB and 1,000,000 data lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportLimits {
    max_bytes: u64,
    max_rows: u64,
}

impl Default for ImportLimits {
    fn default() -> Self {
        ImportLimits { max_bytes: DEFAULT_MAX_BYTES, max_rows: 1_000_000 }
    }
}

impl ImportLimits {
    /// A builder starting from the defaults: at most 100 MiB ([`DEFAULT_MAX_BYTES`], the
    /// product's limit) and 1,000,000 data lines.
    pub fn builder() -> ImportLimitsBuilder {
        ImportLimitsBuilder(Self::default())
    }

    /// The most bytes read from the file.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The most data lines (rows and failures together).
    pub fn max_rows(&self) -> u64 {
        self.max_rows
    }
}

/// Builds [`ImportLimits`]; setters never fail, [`build`](Self::build) checks.
#[derive(Debug, Clone)]
#[must_use]
pub struct ImportLimitsBuilder(ImportLimits);

impl ImportLimitsBuilder {
    /// The most bytes read from the file (default 100 MiB, [`DEFAULT_MAX_BYTES`]; at least 1).
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.0.max_bytes = bytes;
        self
    }

    /// The most data lines, rows and failures together (default 1,000,000; at least 1).
    pub fn max_rows(mut self, rows: u64) -> Self {
        self.0.max_rows = rows;
        self
    }

    /// The limits.
    ///
    /// # Errors
    /// [`Error::Core`](crate::Error::Core) (invalid input) on `max_bytes` or `max_rows` when it is 0.
    pub fn build(self) -> crate::Result<ImportLimits> {
        let l = self.0;
        if l.max_bytes == 0 {
            return Err(ecp_core::Error::invalid("max_bytes", "must be at least 1").into());
        }
        if l.max_rows == 0 {
            return Err(ecp_core::Error::invalid("max_rows", "must be at least 1").into());
        }
        Ok(l)
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

/// The file as the csv reader sees it: at most `limit` raw bytes, passed on unchanged (a `\r`
/// inside a quoted field stays a `\r`). On the way it notes where physical lines end (`\n`, a
/// lone `\r`, or `\r\n` as one) and where quote characters are, so that each record can be given
/// the line it starts on and told whether its quotes balance. The notes are dropped as records
/// are accounted for, so they never outgrow the csv reader's buffer.
struct Source<R> {
    inner: R,
    remaining: u64,
    exceeded: bool,
    /// The last byte was a `\r`: a `\n` right after it ends the same line.
    after_cr: bool,
    /// Bytes handed to the csv reader.
    emitted: u64,
    last: Option<u8>,
    eof: bool,
    /// Offsets of line ends and of quote characters not yet accounted for.
    line_ends: VecDeque<u64>,
    quotes: VecDeque<u64>,
    /// Line ends before the last accounted offset.
    lines_before: u64,
}

impl<R: Read> Source<R> {
    fn new(inner: R, limit: u64) -> Self {
        Source {
            inner,
            remaining: limit,
            exceeded: false,
            after_cr: false,
            emitted: 0,
            last: None,
            eof: false,
            line_ends: VecDeque::new(),
            quotes: VecDeque::new(),
            lines_before: 0,
        }
    }

    /// Whether a record that ends at byte `end` was the file's last line, without a line end.
    fn unterminated_at(&self, end: u64) -> bool {
        self.at_end(end) && !matches!(self.last, Some(b'\n' | b'\r'))
    }

    /// Whether `end` is the end of the file.
    fn at_end(&self, end: u64) -> bool {
        self.eof && end == self.emitted
    }

    /// Accounts for the bytes up to `end` (a record's end): the number of the physical line
    /// `end` is on (from 1), and how many quote characters the bytes since the previous call hold.
    fn account(&mut self, end: u64) -> (u64, u64) {
        while self.line_ends.front().is_some_and(|o| *o < end) {
            self.line_ends.pop_front();
            self.lines_before += 1;
        }
        let mut quotes = 0;
        while self.quotes.front().is_some_and(|o| *o < end) {
            self.quotes.pop_front();
            quotes += 1;
        }
        (self.lines_before + 1, quotes)
    }
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
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
        for (i, b) in buf[..n].iter().enumerate() {
            let at = self.emitted + i as u64;
            let after_cr = std::mem::replace(&mut self.after_cr, *b == b'\r');
            match b {
                b'\n' if after_cr => {}
                b'\n' | b'\r' => self.line_ends.push_back(at),
                b'"' => self.quotes.push_back(at),
                _ => {}
            }
        }
        self.emitted += n as u64;
        self.last = Some(buf[n - 1]);
        Ok(n)
    }
}

/// The line ends inside a record's fields (`\r\n` counts once).
fn line_ends_in(record: &csv::ByteRecord) -> u64 {
    record
        .iter()
        .map(|field| {
            let mut n = 0u64;
            let mut after_cr = false;
            for b in field {
                if *b == b'\r' || (*b == b'\n' && !after_cr) {
                    n += 1;
                }
                after_cr = *b == b'\r';
            }
            n
        })
        .sum()
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
            Ok(true) => {
                let end = csv.position().byte();
                csv.get_mut().account(end);
                if record.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)) {
                    continue;
                }
                break Header::parse(&record)?;
            }
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
        let end = csv.position().byte();
        let (end_line, quotes) = csv.get_mut().account(end);
        // A quote left open runs to the end of the file, its last line end included.
        let open_to_end = quotes % 2 == 1 && csv.get_ref().at_end(end);
        let terminated = !(csv.get_ref().unterminated_at(end) || open_to_end);
        let line = end_line.saturating_sub(u64::from(terminated) + line_ends_in(&record)).max(2);
        // The last line the record covers: the file's own last line end, swallowed by an open
        // quote, ends the line before the (empty) one it starts.
        let swallowed_end = !terminated && record.iter().next_back().and_then(<[u8]>::last).is_some_and(|b| matches!(b, b'\n' | b'\r'));
        let last_line = end_line.saturating_sub(u64::from(terminated) + u64::from(swallowed_end)).max(line);
        // A blank line (csv yields it as one empty field) is skipped, as spreadsheets write them.
        if record.len() == 1 && record[0].iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        lines += 1;
        if lines > limits.max_rows {
            return Err(ImportError::TooManyRows { limit: limits.max_rows });
        }
        // A quote left open swallows the lines after it into one field (at the end of the file,
        // at least the file's last line end): answer each line rather than import a row whose
        // field holds the rest of the file.
        if quotes % 2 == 1 && (last_line > line || csv.get_ref().at_end(end)) {
            parsed
                .failures
                .push(ImportFailure { line, reason: format!("unbalanced quote: a quoted field opened here runs to line {last_line}") });
            for swallowed in line + 1..=last_line {
                lines += 1;
                if lines > limits.max_rows {
                    return Err(ImportError::TooManyRows { limit: limits.max_rows });
                }
                parsed
                    .failures
                    .push(ImportFailure { line: swallowed, reason: format!("inside the quoted field left open on line {line}") });
            }
            continue;
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

    /// A `\r` (or `\r\n`) inside a quoted field is the field's own: it reaches the password as
    /// it was written, and the lines after it keep their numbers.
    #[test]
    fn line_breaks_inside_quotes_are_kept_as_written() {
        use secrecy::ExposeSecret;
        for (pw, ending) in [("p\rw", "\n"), ("p\r\nw", "\r\n"), ("p\nw", "\r"), ("p\r\rw", "\n")] {
            let text = format!(
                "category,name,nodeType,endpoint,scheme,username,password{ending}4,a,Direct,h:1,http,admin,\"{pw}\"{ending}4,b,Direct,h:2,http,,{ending}"
            );
            let p = parse(&text);
            assert!(p.failures.is_empty(), "{pw:?} {ending:?}: {:?}", p.failures);
            let Credentials::Basic { password, .. } = &p.rows[0].credentials else { panic!("{pw:?}") };
            assert_eq!(password.expose_secret(), pw, "{ending:?}");
            let breaks = pw.replace("\r\n", "\n").chars().filter(|c| *c == '\r' || *c == '\n').count() as u64;
            assert_eq!((p.rows[0].line, p.rows[1].line), (2, 3 + breaks), "{pw:?} {ending:?}");
        }
    }

    /// One stray quote does not swallow the rest of the file unanswered: the line that opens it
    /// and every line it runs over get a failure each, and nothing after it is imported.
    #[test]
    fn a_stray_quote_answers_every_line_it_swallows() {
        for ending in ["\n", "\r\n", "\r"] {
            let text = [
                "category,name,nodeType,endpoint,scheme,username,password",
                "4,ok,Direct,h:1,http,,",
                "4,\"oops,Direct,h:2,http,,",
                "4,c,Direct,h:3,http,,",
                "",
                "4,d,Direct,h:4,http,admin,pw",
            ]
            .join(ending);
            for text in [text.clone(), format!("{text}{ending}")] {
                let p = parse(&text);
                assert_eq!(p.rows.iter().map(|r| r.line).collect::<Vec<_>>(), vec![2], "{text:?}");
                let got: Vec<u64> = p.failures.iter().map(|f| f.line).collect();
                assert_eq!(got, vec![3, 4, 5, 6], "{text:?}: {:?}", p.failures);
                assert!(p.failures[0].reason.contains("unbalanced quote"), "{:?}", p.failures[0]);
                assert!(p.failures[1].reason.contains("left open on line 3"), "{:?}", p.failures[1]);
            }
        }
        // In the password column too: the rest of the file does not become a password.
        let p = parse("category,name,nodeType,endpoint,scheme,username,password\n4,a,Direct,h:1,http,admin,\"pw\n4,b,Direct,h:2,http,,\n");
        assert!(p.rows.is_empty(), "{:?}", p.rows);
        assert_eq!(p.failures.iter().map(|f| f.line).collect::<Vec<_>>(), vec![2, 3]);
        assert!(!format!("{p:?}").contains("pw"), "{p:?}");
    }

    #[test]
    fn size_limit() {
        let mut text = String::from("category,name,nodeType,endpoint,scheme\n");
        for i in 0..100 {
            text.push_str(&format!("4,e{i},Direct,10.0.0.1:8085,http\n"));
        }
        let limits = |bytes: u64, rows: u64| ImportLimits::builder().max_bytes(bytes).max_rows(rows).build().unwrap();
        let exact = limits(text.len() as u64, 1000);
        assert_eq!(parse_csv(text.as_bytes(), &exact).unwrap().rows.len(), 100);
        let small = limits(text.len() as u64 - 1, 1000);
        assert!(matches!(parse_csv(text.as_bytes(), &small), Err(ImportError::TooLarge { .. })));
        assert!(matches!(parse_csv(text.as_bytes(), &limits(1 << 20, 99)), Err(ImportError::TooManyRows { limit: 99 })));
    }

    #[test]
    fn limits_are_checked() {
        let d = ImportLimits::builder().build().unwrap();
        assert_eq!(d, ImportLimits::default());
        assert_eq!((d.max_bytes(), d.max_rows()), (DEFAULT_MAX_BYTES, 1_000_000));
        for (bad, field) in [(ImportLimits::builder().max_bytes(0), "max_bytes"), (ImportLimits::builder().max_rows(0), "max_rows")] {
            match bad.build() {
                Err(crate::Error::Core(ecp_core::Error::InvalidInput { field: f, .. })) => assert_eq!(f, field),
                other => panic!("{other:?}"),
            }
        }
    }
}
