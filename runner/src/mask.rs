//! Secret masking (PRODUCT.md §4: secret values never appear in stored or shown output, messages
//! or data).
//!
//! A task gets its secrets as environment variables and may print them by accident, so every byte
//! lumo keeps or shows from a task passes through a [`Masker`] first. Output arrives as a byte
//! stream in chunks of arbitrary size, so a secret may be split across two reads; the
//! [`StreamMasker`] holds back just enough bytes to decide, and masks exactly as [`Masker::mask_str`]
//! would mask the whole output at once.
//!
//! Matching is leftmost-longest: at each position the longest secret that matches there wins, so
//! a secret that is a prefix of another (`abc` and `abcdef`) never leaves the tail of the longer
//! one visible.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

/// What a secret value is replaced by.
pub const MASK: &str = "***";

/// Replaces every occurrence of a set of secret values by [`MASK`].
///
/// Cheap to clone (the secrets are shared) and safe to use from several threads.
#[derive(Clone)]
pub struct Masker {
    patterns: Arc<Patterns>,
}

struct Patterns {
    /// Distinct non-empty patterns, longest first: the first full match found at a position is
    /// the longest one there.
    list: Vec<Vec<u8>>,
    /// Whether some pattern starts with this byte: lets the scan skip most bytes in one lookup.
    starts: [bool; 256],
    longest: usize,
}

/// The decision at one position of the input.
enum Step {
    /// A secret of this many bytes starts here.
    Mask(usize),
    /// No secret starts here.
    Literal,
    /// A secret might start here, but the input ends before it could be told apart.
    NeedMore,
}

impl Patterns {
    fn new(values: impl IntoIterator<Item = String>) -> Patterns {
        let mut list: Vec<Vec<u8>> = Vec::new();
        for value in values {
            if value.is_empty() {
                continue;
            }
            // A secret printed inside JSON (a task logging a structured object, or a result's
            // `data`) appears escaped, and each JSON encoder escapes differently; every form
            // is a pattern of its own (duplicates go below).
            for style in JsonStyle::ALL {
                let escaped = json_escaped(&value, style);
                if escaped != value {
                    list.push(escaped.into_bytes());
                }
            }
            list.push(value.into_bytes());
        }
        list.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        list.dedup();
        let mut starts = [false; 256];
        for pattern in &list {
            starts[usize::from(pattern[0])] = true;
        }
        let longest = list.first().map_or(0, Vec::len);
        Patterns {
            list,
            starts,
            longest,
        }
    }

    /// `rest` is the input from the current position on and is never empty. `at_end` says no
    /// more input will follow it.
    fn step(&self, rest: &[u8], at_end: bool) -> Step {
        for pattern in &self.list {
            if rest.len() >= pattern.len() {
                if rest.starts_with(pattern) {
                    return Step::Mask(pattern.len());
                }
            } else if !at_end && pattern.starts_with(rest) {
                // A longer secret could still match once more input arrives; every shorter
                // candidate comes later in the list, so deciding now could pick the wrong one.
                return Step::NeedMore;
            }
        }
        Step::Literal
    }

    /// Masks `input` into `out` and returns how many bytes of `input` were consumed; the rest
    /// (only when `at_end` is false, and always shorter than the longest secret) is the start of
    /// a possible secret and must be presented again with more input after it.
    fn mask_into(&self, input: &[u8], out: &mut Vec<u8>, at_end: bool) -> usize {
        let mut i = 0;
        while i < input.len() {
            let literal_run = input[i..]
                .iter()
                .position(|&b| self.starts[usize::from(b)])
                .unwrap_or(input.len() - i);
            out.extend_from_slice(&input[i..i + literal_run]);
            i += literal_run;
            if i == input.len() {
                break;
            }
            match self.step(&input[i..], at_end) {
                Step::Mask(len) => {
                    out.extend_from_slice(MASK.as_bytes());
                    i += len;
                }
                Step::Literal => {
                    out.push(input[i]);
                    i += 1;
                }
                Step::NeedMore => return i,
            }
        }
        i
    }
}

/// How one JSON encoder writes the inside of a string literal. All of them escape `"`, `\` and
/// the control characters; they differ in what else they escape:
/// - serde_json and JavaScript's `JSON.stringify`: nothing else;
/// - Python's `json.dumps` (`ensure_ascii`, the default): every non-ASCII character as `\uXXXX`;
/// - Go's `encoding/json`: `<`, `>`, `&`, U+2028 and U+2029 as `\uXXXX`;
/// - PHP's `json_encode`: non-ASCII as `\uXXXX`, and `/` as `\/`;
/// - .NET's `System.Text.Json`: non-ASCII and ``<>&'+`"`` as `\uXXXX` with upper-case hex.
///
/// Rather than name each encoder, every combination is tried: after duplicates are dropped a
/// secret has few forms (a plain alphanumeric one has only itself).
#[derive(Clone, Copy)]
struct JsonStyle {
    /// Every non-ASCII character (and DEL) as `\uXXXX`, UTF-16 surrogate pairs beyond U+FFFF.
    ascii_only: bool,
    /// `<`, `>` and `&` as `\u003c`, `\u003e`, `\u0026`, for JSON embedded in HTML.
    html_safe: bool,
    /// Also `'`, `+`, `` ` `` and `"` as `\uXXXX` (with `html_safe`).
    strict_html_safe: bool,
    /// U+2028 and U+2029 as `\u2028`, `\u2029` even when other non-ASCII stays as it is: they
    /// end a line in JavaScript source.
    line_separators: bool,
    /// `/` as `\/`.
    slash: bool,
    /// `A`-`F` rather than `a`-`f` in `\uXXXX`.
    upper_hex: bool,
}

impl JsonStyle {
    const COUNT: usize = 1 << 6;

    /// Every combination of the options.
    const ALL: [JsonStyle; JsonStyle::COUNT] = {
        let mut all = [JsonStyle::from_bits(0); JsonStyle::COUNT];
        let mut bits = 0;
        while bits < JsonStyle::COUNT {
            all[bits] = JsonStyle::from_bits(bits);
            bits += 1;
        }
        all
    };

    const fn from_bits(bits: usize) -> JsonStyle {
        JsonStyle {
            ascii_only: bits & 1 != 0,
            html_safe: bits & 2 != 0,
            strict_html_safe: bits & 4 != 0,
            line_separators: bits & 8 != 0,
            slash: bits & 16 != 0,
            upper_hex: bits & 32 != 0,
        }
    }

    /// Whether `c` is written as `\uXXXX` (a control character without a short form aside).
    fn escapes_as_unicode(self, c: char) -> bool {
        match c {
            '<' | '>' | '&' => self.html_safe,
            '\'' | '+' | '`' | '"' => self.html_safe && self.strict_html_safe,
            '\u{2028}' | '\u{2029}' => self.line_separators || self.ascii_only,
            '\u{7f}' => self.ascii_only,
            c => !c.is_ascii() && self.ascii_only,
        }
    }
}

/// The form `value` takes inside a JSON string literal written in `style`, without the quotes.
fn json_escaped(value: &str, style: JsonStyle) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        let short = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            '\u{8}' => "\\b",
            '\u{c}' => "\\f",
            '/' if style.slash => "\\/",
            _ => "",
        };
        if style.escapes_as_unicode(c) || (short.is_empty() && c < ' ') {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                // Writing to a `String` cannot fail.
                let _ = if style.upper_hex {
                    write!(out, "\\u{unit:04X}")
                } else {
                    write!(out, "\\u{unit:04x}")
                };
            }
        } else if short.is_empty() {
            out.push(c);
        } else {
            out.push_str(short);
        }
    }
    out
}

impl Masker {
    /// A masker for these secret values. Empty values are ignored (they would match everywhere).
    /// Each value is masked as it is and, where different, in its JSON-escaped form.
    pub fn new<I: IntoIterator<Item = String>>(secret_values: I) -> Masker {
        Masker {
            patterns: Arc::new(Patterns::new(secret_values)),
        }
    }

    /// Whether there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.patterns.list.is_empty()
    }

    /// `s` with every secret replaced by [`MASK`].
    pub fn mask_str(&self, s: &str) -> String {
        if self.is_empty() {
            return s.to_owned();
        }
        let mut out = Vec::with_capacity(s.len());
        self.patterns.mask_into(s.as_bytes(), &mut out, true);
        // Secrets are whole UTF-8 strings, and a UTF-8 string can only match at a character
        // boundary, so replacing them keeps the text valid UTF-8.
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// `v` with every string, every object key and every number that holds a secret masked.
    ///
    /// A number or boolean that holds a secret becomes the masked text as a string
    /// (`987654321` with secret `987654321` is `"***"`): left a number, it would be stored
    /// as it is. A boolean only does when a secret is exactly `true` or `false`: a secret that
    /// merely occurs in the word (`ru`) says nothing about the value.
    pub fn mask_json(&self, v: &Value) -> Value {
        if self.is_empty() {
            return v.clone();
        }
        match v {
            Value::String(s) => Value::String(self.mask_str(s)),
            Value::Number(n) => {
                let text = n.to_string();
                let masked = self.mask_str(&text);
                if masked == text {
                    v.clone()
                } else {
                    Value::String(masked)
                }
            }
            Value::Bool(b) => {
                if self.mask_str(if *b { "true" } else { "false" }) == MASK {
                    Value::String(MASK.to_owned())
                } else {
                    v.clone()
                }
            }
            Value::Array(items) => Value::Array(items.iter().map(|i| self.mask_json(i)).collect()),
            Value::Object(map) => {
                let mut masked = serde_json::Map::with_capacity(map.len());
                for (key, value) in map {
                    let mut key = self.mask_str(key);
                    // Keys that differ only in their secrets (`a-tok1`, `a-tok2`) mask to the
                    // same text; number the later ones rather than lose their values.
                    if masked.contains_key(&key) {
                        let base = key;
                        let mut n = 2;
                        key = loop {
                            let candidate = format!("{base} ({n})");
                            if !masked.contains_key(&candidate) {
                                break candidate;
                            }
                            n += 1;
                        };
                    }
                    masked.insert(key, self.mask_json(value));
                }
                Value::Object(masked)
            }
            Value::Null => Value::Null,
        }
    }

    /// A masker for one byte stream (a task's output) that arrives in chunks.
    pub fn stream(&self) -> StreamMasker {
        StreamMasker {
            patterns: Arc::clone(&self.patterns),
            pending: Vec::new(),
        }
    }

    /// The length in bytes of the longest pattern (secret or escaped form); 0 when empty.
    pub fn longest_secret(&self) -> usize {
        self.patterns.longest
    }
}

impl fmt::Debug for Masker {
    // Never print the secrets themselves.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Masker")
            .field("patterns", &self.patterns.list.len())
            .finish()
    }
}

/// Masks a byte stream that arrives in arbitrary chunks, with the same result as masking the
/// whole stream at once. Holds back at most (longest secret − 1) bytes between calls.
pub struct StreamMasker {
    patterns: Arc<Patterns>,
    /// Input that could be the start of a secret, waiting for the bytes after it.
    pending: Vec<u8>,
}

impl StreamMasker {
    /// Masks `chunk` (after whatever was held back) and appends what can be decided to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        if self.patterns.list.is_empty() {
            out.extend_from_slice(chunk);
            return;
        }
        if self.pending.is_empty() {
            let consumed = self.patterns.mask_into(chunk, out, false);
            self.pending.extend_from_slice(&chunk[consumed..]);
        } else {
            self.pending.extend_from_slice(chunk);
            let consumed = self.patterns.mask_into(&self.pending, out, false);
            self.pending.drain(..consumed);
        }
    }

    /// Ends the stream: appends what was held back, masked where it completes a secret and
    /// otherwise as it was (the start of a secret that never finished is not a secret).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.patterns.mask_into(&self.pending, out, true);
        self.pending.clear();
    }

    /// How many bytes are held back, waiting for more input.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

impl fmt::Debug for StreamMasker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamMasker")
            .field("patterns", &self.patterns.list.len())
            .field("pending", &self.pending.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn masker(secrets: &[&str]) -> Masker {
        Masker::new(secrets.iter().map(|s| s.to_string()))
    }

    /// Streams `input` split at `cuts` (sorted byte offsets) and checks the result against
    /// masking it whole, and the hold-back bound after every chunk.
    fn stream_in_pieces(m: &Masker, input: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut stream = m.stream();
        let mut out = Vec::new();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
            stream.push(&input[start..cut], &mut out);
            assert!(
                stream.pending_len() < m.longest_secret().max(1),
                "held back {} bytes",
                stream.pending_len()
            );
            start = cut;
        }
        stream.finish(&mut out);
        out
    }

    #[test]
    fn masks_every_occurrence() {
        let m = masker(&["hunter2"]);
        assert_eq!(
            m.mask_str("pw=hunter2, again hunter2!"),
            "pw=***, again ***!"
        );
        assert_eq!(m.mask_str("no secret here"), "no secret here");
        assert_eq!(m.mask_str("hunter"), "hunter");
    }

    #[test]
    fn empty_values_are_ignored() {
        let m = masker(&["", ""]);
        assert!(m.is_empty());
        assert_eq!(m.mask_str("anything"), "anything");
        let m = masker(&["", "x1"]);
        assert!(!m.is_empty());
        assert_eq!(m.mask_str("ax1b"), "a***b");
    }

    #[test]
    fn longest_match_wins_for_prefixes_and_overlaps() {
        let m = masker(&["abc", "abcdef"]);
        assert_eq!(m.mask_str("xabcdefy"), "x***y");
        assert_eq!(m.mask_str("xabcdey"), "x***dey");
        // Overlapping secrets: the leftmost match is taken, then scanning goes on after it.
        let m = masker(&["abc", "bcd"]);
        assert_eq!(m.mask_str("abcd"), "***d");
        assert_eq!(m.mask_str("xbcd"), "x***");
    }

    #[test]
    fn json_escaped_form_is_masked_too() {
        let secret = "pa\"ss\\wo\nrd";
        let m = masker(&[secret]);
        let printed = serde_json::to_string(&json!({ "password": secret })).unwrap();
        assert!(!printed.contains(secret));
        assert_eq!(m.mask_str(&printed), r#"{"password":"***"}"#);
        assert_eq!(m.mask_str(secret), "***");
    }

    /// Regression: only serde_json's escaping was masked, so a secret printed by Python's
    /// `json.dumps` (non-ASCII as `\uXXXX`) or Go's `encoding/json` (`<>&` as `\u003c`...)
    /// leaked. The expected texts are what those encoders print.
    #[test]
    fn ascii_escaped_json_forms_are_masked_too() {
        let cases: &[(&str, &[&str])] = &[
            (
                "pässwörd-ünï",
                &[
                    // Python `json.dumps`, and upper-case hex as Java and .NET write it.
                    r#"{"p": "p\u00e4ssw\u00f6rd-\u00fcn\u00ef"}"#,
                    r#"{"p": "p\u00E4ssw\u00F6rd-\u00FCn\u00EF"}"#,
                ],
            ),
            // Beyond U+FFFF: a UTF-16 surrogate pair.
            (
                "key🔑x",
                &[r#"{"p": "key\ud83d\udd11x"}"#, r#""key\uD83D\uDD11x""#],
            ),
            // Go's HTML-safe form, and .NET's, which also escapes `+` and `"`.
            ("a<b>&c=d", &[r#"{"p":"a\u003cb\u003e\u0026c=d"}"#]),
            (
                "a\"<+>",
                &[
                    r#"{"p":"a\"\u003c+\u003e"}"#,
                    r#"{"p":"a\u0022\u003C\u002B\u003E"}"#,
                ],
            ),
            // Go keeps non-ASCII but escapes the JavaScript line separators; Python escapes all.
            ("é\u{2028}x", &[r#""é\u2028x""#, r#""\u00e9\u2028x""#]),
            // Control characters without a short form, with a quote and a backslash; DEL only
            // where everything non-printable is escaped (Python).
            (
                "a\u{1}\"\\\u{7f}b",
                &[r#""a\u0001\"\\\u007fb""#, "\"a\\u0001\\\"\\\\\u{7f}b\""],
            ),
            // PHP writes `/` as `\/`.
            ("ab/cd+ef=", &[r#"{"p":"ab\/cd+ef="}"#]),
        ];
        for (secret, printed) in cases {
            let m = masker(&[secret]);
            assert_eq!(m.mask_str(secret), "***");
            for text in *printed {
                let masked = m.mask_str(text);
                assert!(
                    masked.contains("***") && !masked.contains(secret),
                    "{secret:?} in {text}: {masked}"
                );
                assert_eq!(
                    masked.matches("***").count(),
                    1,
                    "{secret:?} in {text}: {masked}"
                );
            }
        }
        // Masked whole, not in part: nothing of the escaped form is left around the mask.
        let m = masker(&["pässwörd-ünï"]);
        assert_eq!(
            m.mask_str(r#"{"p": "p\u00e4ssw\u00f6rd-\u00fcn\u00ef"}"#),
            r#"{"p": "***"}"#
        );
    }

    #[test]
    fn each_form_of_a_secret_is_one_pattern() {
        assert_eq!(masker(&["plain-Secret_123"]).patterns.list.len(), 1);
        // As it is, and `\u` with lower- and upper-case hex.
        assert_eq!(masker(&["pässwörd"]).patterns.list.len(), 3);
        // Digits only in the hex: the case makes no difference.
        assert_eq!(masker(&["ő"]).patterns.list.len(), 2);
        // The same secret twice: `ab/c`, `ab\/c`.
        assert_eq!(masker(&["ab/c", "ab/c"]).patterns.list.len(), 2);
        // A secret equal to another's escaped form: `ab\/c` once, plus its own `ab\\/c` and
        // `ab\\\/c`.
        assert_eq!(masker(&["ab/c", "ab\\/c"]).patterns.list.len(), 4);
    }

    #[test]
    fn non_ascii_text_stays_valid() {
        let m = masker(&["sécrét"]);
        assert_eq!(m.mask_str("é sécrét ü"), "é *** ü");
    }

    #[test]
    fn json_values_and_keys_are_masked() {
        let m = masker(&["s3cr3t"]);
        let v = json!({
            "token": "Bearer s3cr3t",
            "s3cr3t": [1, true, null, "s3cr3t", {"nested": "xs3cr3tx"}],
        });
        assert_eq!(
            m.mask_json(&v),
            json!({
                "token": "Bearer ***",
                "***": [1, true, null, "***", {"nested": "x***x"}],
            })
        );
    }

    /// Regression: a secret returned as a number in a result's `data` was stored as it was.
    #[test]
    fn numbers_and_booleans_holding_a_secret_are_masked() {
        let m = masker(&["987654321"]);
        assert_eq!(
            m.mask_json(
                &json!({ "n": 987654321, "f": 1987654321.5, "other": 42, "neg": -987654321 })
            ),
            json!({ "n": "***", "f": "1***.5", "other": 42, "neg": "-***" })
        );
        let m = masker(&["true", "ru"]);
        assert_eq!(
            m.mask_json(&json!([true, false, "true"])),
            json!(["***", false, "***"])
        );
        let m = masker(&["ru"]);
        assert_eq!(m.mask_json(&json!([true])), json!([true]));
    }

    #[test]
    fn keys_that_mask_alike_keep_every_value() {
        let m = masker(&["tok1", "tok2"]);
        assert_eq!(
            m.mask_json(&json!({ "a-tok1": 1, "a-tok2": 2, "a-*** (2)": 3, "b": 4 })),
            json!({ "a-***": 1, "a-*** (2)": 2, "a-*** (2) (2)": 3, "b": 4 })
        );
    }

    #[test]
    fn debug_never_shows_secrets() {
        let m = masker(&["topsecret"]);
        assert!(!format!("{m:?}").contains("topsecret"));
        assert!(!format!("{:?}", m.stream()).contains("topsecret"));
    }

    #[test]
    fn stream_equals_whole_for_every_single_and_double_split() {
        let cases: &[(&[&str], &str)] = &[
            (&["secret"], "a secret, another secret and secrets; secre"),
            (&["abc", "abcdef"], "abcdefabcabcdeabcdef ab abc"),
            (&["abc", "bcd", "cde"], "abcdebcdcdeabcd"),
            (&["aa", "aaa"], "aaaaaaaaaa"),
            (&["sec\"ret", "x"], r#"{"k":"sec\"ret"} sec"ret xx"#),
            (&["ünï"], "üünïün"),
            (&["tail-prefix"], "ends with tail-pre"),
            // Escaped forms split anywhere, next to the raw form and a prefix of the escape.
            (
                &["pä<ss"],
                r#"pä<ss "p\u00e4<ss" "p\u00E4\u003Css" "pä\u003css" p\u00e"#,
            ),
            (&["k🔑"], r#"k🔑 "k\ud83d\udd11" k\ud83d\udd1"#),
        ];
        for (secrets, input) in cases {
            let m = masker(secrets);
            let whole = m.mask_str(input);
            let bytes = input.as_bytes();
            for a in 0..=bytes.len() {
                let got = stream_in_pieces(&m, bytes, &[a]);
                assert_eq!(
                    String::from_utf8_lossy(&got),
                    whole,
                    "{secrets:?} split at {a}"
                );
                for b in a..=bytes.len() {
                    let got = stream_in_pieces(&m, bytes, &[a, b]);
                    assert_eq!(
                        String::from_utf8_lossy(&got),
                        whole,
                        "{secrets:?} split at {a} and {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn stream_byte_by_byte_masks_split_secret() {
        let m = masker(&["secret"]);
        let input = b"xx secret yy sec";
        let cuts: Vec<usize> = (1..input.len()).collect();
        let got = stream_in_pieces(&m, input, &cuts);
        assert_eq!(got, b"xx *** yy sec");
    }

    #[test]
    fn stream_without_secrets_passes_through() {
        let m = masker(&[]);
        let mut s = m.stream();
        let mut out = Vec::new();
        s.push(b"abc", &mut out);
        assert_eq!(out, b"abc");
        s.finish(&mut out);
        assert_eq!(out, b"abc");
    }
}
