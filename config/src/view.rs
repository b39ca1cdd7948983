//! A masked, flattened view of a configuration file, one line per value, and a line diff
//! of two such views: what the UI shows for "staged against running" and in the history.
//! Secrets are masked wherever their key appears; a changed secret shows as changed,
//! never with its value.

use std::collections::HashMap;
use std::time::Duration;

use similar::{Algorithm, DiffTag};
use toml_edit::{DocumentMut, Item, TableLike, Value};

use crate::edit::bare;
use crate::schema::is_secret_key;
use crate::validate::toml_syntax_error;

/// Why a file could not be viewed: only TOML syntax (the message says where, never what
/// the text there is, since it could be a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    #[error("{0}")]
    Syntax(String),
}

/// How a line of the diff differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Removed,
    Same,
}

/// One line of [`diff`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffLine {
    pub change: Change,
    pub text: String,
}

/// What a secret shows as.
const MASK: &str = "(secret)";
/// What a secret whose value differs from the old file's shows as in a diff.
const MASK_CHANGED: &str = "(secret, changed)";
/// Bounds the diff's work on two large, very different files; past it the diff is
/// coarser (longer runs of removed and added lines), never wrong.
const DIFF_BUDGET: Duration = Duration::from_secs(2);

/// One line per value: `checks[db1].target = "10.0.0.1:1521"`. Entries of repeated
/// sections are named by their `name` when they have a unique one (letters, digits,
/// `-_.`, not only digits), else by index (`checks[3]`); peers `tunnels[wg0].peers[hq]`.
/// Keys are sorted within a table, so moving a key in the file changes nothing here;
/// entries keep the file's order. Secrets show as `(secret)`. Fails only on TOML syntax.
pub fn masked_lines(text: &str) -> Result<Vec<String>, ViewError> {
    let lines = flatten(text).map_err(ViewError::Syntax)?;
    Ok(lines.into_iter().map(|line| line.text(MASK)).collect())
}

/// Line diff of the masked views of `old` and `new`. A secret whose value changed shows as
/// the removed `(secret)` and the added `(secret, changed)`; secrets never appear.
pub fn diff(old: &str, new: &str) -> Result<Vec<DiffLine>, ViewError> {
    let old_lines = flatten(old).map_err(|e| ViewError::Syntax(format!("old file: {e}")))?;
    let new_lines = flatten(new).map_err(|e| ViewError::Syntax(format!("new file: {e}")))?;
    let old_secrets: HashMap<&str, &str> = old_lines
        .iter()
        .filter_map(|line| Some((line.path.as_str(), line.secret.as_deref()?)))
        .collect();
    let old_text: Vec<String> = old_lines.iter().map(|line| line.text(MASK)).collect();
    let new_text: Vec<String> = new_lines
        .iter()
        .map(|line| {
            let changed = match (&line.secret, old_secrets.get(line.path.as_str())) {
                (Some(new), Some(old)) => new != old,
                _ => false,
            };
            line.text(if changed { MASK_CHANGED } else { MASK })
        })
        .collect();

    let deadline = std::time::Instant::now().checked_add(DIFF_BUDGET);
    let ops =
        similar::capture_diff_slices_deadline(Algorithm::Myers, &old_text, &new_text, deadline);
    let mut out = Vec::with_capacity(old_text.len().max(new_text.len()));
    let mut emit = |change: Change, lines: &[String]| {
        out.extend(lines.iter().map(|text| DiffLine {
            change,
            text: text.clone(),
        }));
    };
    for op in ops {
        let (tag, old_range, new_range) = op.as_tag_tuple();
        let old_part = old_text.get(old_range).unwrap_or_default();
        let new_part = new_text.get(new_range).unwrap_or_default();
        match tag {
            DiffTag::Equal => emit(Change::Same, old_part),
            DiffTag::Delete => emit(Change::Removed, old_part),
            DiffTag::Insert => emit(Change::Added, new_part),
            DiffTag::Replace => {
                emit(Change::Removed, old_part);
                emit(Change::Added, new_part);
            }
        }
    }
    Ok(out)
}

/// One value of the file at its path.
struct FlatLine {
    path: String,
    /// The value as TOML writes it; `None` for a secret.
    shown: Option<String>,
    /// A secret's value as written, only to compare two files; never shown.
    secret: Option<String>,
}

impl FlatLine {
    fn text(&self, mask: &str) -> String {
        format!("{} = {}", self.path, self.shown.as_deref().unwrap_or(mask))
    }
}

fn flatten(text: &str) -> Result<Vec<FlatLine>, String> {
    let doc = parse_document(text)?;
    let mut out = Vec::new();
    walk_table(doc.as_table(), "", &mut out);
    Ok(out)
}

/// Parses a file; the error says where the problem is and what it is, without quoting the
/// text (toml_edit's own `Display` shows the line, which may hold a secret).
pub(crate) fn parse_document(text: &str) -> Result<DocumentMut, String> {
    text.parse::<DocumentMut>()
        .map_err(|e| toml_syntax_error(text, e.message(), e.span()))
}

fn walk_table(table: &dyn TableLike, path: &str, out: &mut Vec<FlatLine>) {
    let mut items: Vec<(&str, &Item)> = table.iter().collect();
    if items.is_empty() && !path.is_empty() {
        out.push(FlatLine {
            path: path.to_string(),
            shown: Some("{}".to_string()),
            secret: None,
        });
    }
    items.sort_by_key(|(key, _)| *key);
    for (key, item) in items {
        walk_item(key, item, &join(path, key), out);
    }
}

fn walk_item(key: &str, item: &Item, path: &str, out: &mut Vec<FlatLine>) {
    if is_secret_key(key) {
        if !item.is_none() {
            out.push(FlatLine {
                path: path.to_string(),
                shown: None,
                secret: Some(written(item)),
            });
        }
        return;
    }
    match item {
        Item::None => {}
        Item::Table(table) => walk_table(table, path, out),
        Item::ArrayOfTables(array) => {
            let entries: Vec<&dyn TableLike> = array.iter().map(|t| t as &dyn TableLike).collect();
            walk_entries(&entries, path, out);
        }
        Item::Value(Value::InlineTable(table)) => walk_table(table, path, out),
        Item::Value(Value::Array(array))
            if !array.is_empty() && array.iter().all(Value::is_inline_table) =>
        {
            let entries: Vec<&dyn TableLike> = array
                .iter()
                .filter_map(Value::as_inline_table)
                .map(|t| t as &dyn TableLike)
                .collect();
            walk_entries(&entries, path, out);
        }
        Item::Value(value) => out.push(FlatLine {
            path: path.to_string(),
            shown: Some(render(value)),
            secret: None,
        }),
    }
}

/// The entries of a repeated section, each named by its unique `name` or its index.
fn walk_entries(entries: &[&dyn TableLike], path: &str, out: &mut Vec<FlatLine>) {
    let names: Vec<Option<&str>> = entries
        .iter()
        .map(|entry| {
            entry
                .get("name")
                .and_then(Item::as_str)
                .filter(|n| label_safe(n))
        })
        .collect();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for name in names.iter().flatten() {
        *counts.entry(name).or_default() += 1;
    }
    for (index, (entry, name)) in entries.iter().zip(&names).enumerate() {
        let label = match name {
            Some(name) if counts.get(name) == Some(&1) => name.to_string(),
            _ => index.to_string(),
        };
        walk_table(*entry, &format!("{path}[{label}]"), out);
    }
}

/// A name that reads unambiguously as a label in `checks[...]`.
fn label_safe(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.chars().all(|c| c.is_ascii_digit())
}

/// A value on one line: strings quoted and escaped, arrays and inline tables inline, with
/// the secrets inside them masked.
fn render(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{:?}", s.value()),
        Value::Array(array) => {
            let items: Vec<String> = array.iter().map(render).collect();
            format!("[{}]", items.join(", "))
        }
        Value::InlineTable(table) => {
            let mut items: Vec<(&str, &Value)> = table.iter().collect();
            items.sort_by_key(|(key, _)| *key);
            let items: Vec<String> = items
                .into_iter()
                .map(|(key, value)| {
                    let shown = if is_secret_key(key) {
                        MASK.to_string()
                    } else {
                        render(value)
                    };
                    format!("{} = {shown}", key_text(key))
                })
                .collect();
            format!("{{ {} }}", items.join(", "))
        }
        // `1_000` and `0x3E8` are the same number.
        Value::Integer(n) => n.value().to_string(),
        other => bare(other).to_string(),
    }
}

/// A secret's value, for comparing two of them: as it reads, not as it is written (`'x'`
/// and `"x"` are the same secret).
fn written(item: &Item) -> String {
    match item {
        Item::Value(Value::String(s)) => s.value().clone(),
        Item::Value(value) => render(value),
        other => other.to_string(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key_text(key)
    } else {
        format!("{path}.{}", key_text(key))
    }
}

/// A key as TOML would write it: bare when it can be, else quoted.
fn key_text(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = r#"
[uplink]
url = "https://p.example/"   # the platform
token = "tok-123"

[[checks]]
name = "db1"
kind = "oracle-tns"
target = "10.0.0.1:1521"
rise = 2

[[checks]]
name = "dup"
kind = "tcp"

[[checks]]
name = "dup"
kind = "asterisk-ami"
secret = "ami-pass"

[[checks]]
kind = "icmp"

[[tunnels]]
name = "wg0"
addresses = ["10.99.0.1/24", "fd00::1/64"]
private_key = "cHJpdmF0ZQ=="

[[tunnels.peers]]
name = "hq"
preshared_key = "psk-value"
allowed_ips = []

relays = "not a table"
weird = [1, { psk = "inline-psk", x = "y" }]
"a key" = { token = "t2", n = 1.5 }
"#;

    #[test]
    fn lines_name_entries_mask_secrets_and_sort_keys() {
        let lines = masked_lines(SAMPLE).unwrap();
        let expected = [
            "checks[db1].kind = \"oracle-tns\"",
            "checks[db1].name = \"db1\"",
            "checks[db1].rise = 2",
            "checks[db1].target = \"10.0.0.1:1521\"",
            "checks[1].kind = \"tcp\"",
            "checks[1].name = \"dup\"",
            "checks[2].kind = \"asterisk-ami\"",
            "checks[2].name = \"dup\"",
            "checks[2].secret = (secret)",
            "checks[3].kind = \"icmp\"",
            "tunnels[wg0].addresses = [\"10.99.0.1/24\", \"fd00::1/64\"]",
            "tunnels[wg0].name = \"wg0\"",
            "tunnels[wg0].peers[hq].allowed_ips = []",
            "tunnels[wg0].peers[hq].name = \"hq\"",
            "tunnels[wg0].peers[hq].preshared_key = (secret)",
            "tunnels[wg0].private_key = (secret)",
            "tunnels[wg0].peers[hq].relays = \"not a table\"",
            "tunnels[wg0].peers[hq].weird = [1, { psk = (secret), x = \"y\" }]",
            "tunnels[wg0].peers[hq].\"a key\".n = 1.5",
            "tunnels[wg0].peers[hq].\"a key\".token = (secret)",
            "uplink.token = (secret)",
            "uplink.url = \"https://p.example/\"",
        ];
        let mut sorted_expected = expected.to_vec();
        let mut sorted_lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        sorted_expected.sort();
        sorted_lines.sort();
        assert_eq!(sorted_lines, sorted_expected);
        // Entries in file order, sections by key.
        assert!(lines[0].starts_with("checks[db1]"), "{lines:#?}");
        assert!(lines.last().unwrap().starts_with("uplink."), "{lines:#?}");
        for secret in [
            "tok-123",
            "ami-pass",
            "cHJpdmF0ZQ",
            "psk-value",
            "inline-psk",
            "t2\"",
        ] {
            assert!(!lines.concat().contains(secret), "{secret}");
        }
    }

    #[test]
    fn an_unchanged_file_is_all_same_even_with_keys_moved_and_comments_changed() {
        let moved = SAMPLE
            .replace("rise = 2\n", "")
            .replace("name = \"db1\"\n", "name = \"db1\"\nrise = 2 # moved\n")
            .replace("# the platform", "# another comment");
        assert_ne!(moved, SAMPLE);
        for (old, new) in [(SAMPLE, SAMPLE), (SAMPLE, moved.as_str())] {
            let lines = diff(old, new).unwrap();
            assert_eq!(lines.len(), masked_lines(SAMPLE).unwrap().len());
            assert!(lines.iter().all(|l| l.change == Change::Same), "{lines:#?}");
        }
    }

    #[test]
    fn changes_show_as_removed_and_added_lines_and_a_changed_secret_as_changed() {
        let new = SAMPLE
            .replace("tok-123", "tok-456")
            .replace("rise = 2", "rise = 3")
            .replace("kind = \"icmp\"", "kind = \"icmp\"\ntarget = \"gw\"");
        let changed: Vec<(Change, String)> = diff(SAMPLE, &new)
            .unwrap()
            .into_iter()
            .filter(|l| l.change != Change::Same)
            .map(|l| (l.change, l.text))
            .collect();
        assert_eq!(
            changed,
            [
                (Change::Removed, "checks[db1].rise = 2".to_string()),
                (Change::Added, "checks[db1].rise = 3".to_string()),
                (Change::Added, "checks[3].target = \"gw\"".to_string()),
                (Change::Removed, "uplink.token = (secret)".to_string()),
                (
                    Change::Added,
                    "uplink.token = (secret, changed)".to_string()
                ),
            ]
        );
        // A secret added or removed is just a line added or removed.
        let without = SAMPLE.replace("token = \"tok-123\"\n", "");
        let gone = diff(SAMPLE, &without).unwrap();
        let gone: Vec<&DiffLine> = gone.iter().filter(|l| l.change != Change::Same).collect();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].text, "uplink.token = (secret)");
        assert_eq!(gone[0].change, Change::Removed);
    }

    #[test]
    fn how_a_value_is_written_is_not_a_change() {
        let old = "[spool]\nmax_bytes = 1_000_000\n[uplink]\ntoken = 'a-token'\n";
        let new = "[spool]\nmax_bytes = 1000000\n[uplink]\ntoken = \"a-token\"\n";
        let lines = diff(old, new).unwrap();
        assert!(lines.iter().all(|l| l.change == Change::Same), "{lines:#?}");
        assert_eq!(lines[0].text, "spool.max_bytes = 1000000");
    }

    #[test]
    fn syntax_errors_say_where_without_quoting_the_text() {
        let e = masked_lines("a = 1\nsecret = \"hunter2-secret").unwrap_err();
        let message = e.to_string();
        assert!(
            message.starts_with("not valid TOML at line 2, column "),
            "{message}"
        );
        assert!(!message.contains("hunter2"), "{message}");
        let e = diff("a = 1", "psk = hunter2-secret")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("new file: not valid TOML at line 1"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        assert!(diff("[x", "a = 1")
            .unwrap_err()
            .to_string()
            .starts_with("old file:"));
    }

    /// A file with a secret at every place the schema has one, and in inline tables.
    fn with_secrets(secrets: &[String; 8]) -> String {
        let mut doc: DocumentMut = r#"
[uplink]
url = "https://p.example/"
[[checks]]
name = "ami"
kind = "asterisk-ami"
[[checks]]
name = "router"
kind = "saprouter"
[[tunnels]]
name = "wg"
kind = "wireguard"
[[tunnels.peers]]
name = "p"
[[tunnels]]
name = "hq"
kind = "ipsec"
[[connectors]]
name = "hook"
kind = "webhook"
[[relays]]
name = "r"
"#
        .parse()
        .unwrap();
        let value = |i: usize| toml_edit::value(secrets[i].as_str());
        doc["uplink"]["token"] = value(0);
        doc["checks"][0]["secret"] = value(1);
        doc["checks"][1]["route_password"] = value(2);
        doc["tunnels"][0]["private_key"] = value(3);
        doc["tunnels"][0]["peers"][0]["preshared_key"] = value(4);
        doc["tunnels"][1]["psk"] = value(5);
        doc["connectors"][0]["hmac_secret"] = value(6);
        let mut inline = toml_edit::InlineTable::new();
        inline.insert("secret", secrets[7].as_str().into());
        doc["relays"][0]["extra"] = toml_edit::value(inline);
        doc.to_string()
    }

    fn secret() -> impl Strategy<Value = String> {
        // Printable text, quotes and backslashes included, long enough not to occur in
        // the rest of the file by chance.
        "[ -~\u{a0}-\u{2ff}]{12,40}"
    }

    fn leaks(output: &str, secret: &str) -> bool {
        let escaped = format!("{secret:?}");
        output.contains(secret) || output.contains(escaped.trim_matches('"'))
    }

    proptest! {
        #[test]
        fn no_secret_value_ever_appears(
            old in prop::array::uniform8(secret()),
            new in prop::array::uniform8(secret()),
        ) {
            let old_text = with_secrets(&old);
            let new_text = with_secrets(&new);
            let lines = masked_lines(&old_text).unwrap();
            prop_assert_eq!(lines.iter().filter(|l| l.ends_with("= (secret)")).count(), 8);
            let diffed = diff(&old_text, &new_text).unwrap();
            let output = format!(
                "{}\n{}",
                lines.join("\n"),
                diffed.iter().map(|l| l.text.as_str()).collect::<Vec<_>>().join("\n")
            );
            for secret in old.iter().chain(&new) {
                prop_assert!(!leaks(&output, secret), "{} leaked:\n{}", secret, output);
            }
            // Each secret that differs shows as changed, the others as the same.
            let changed = diffed.iter().filter(|l| l.text.ends_with("(secret, changed)")).count();
            let differing = old.iter().zip(&new).filter(|(a, b)| a != b).count();
            prop_assert_eq!(changed, differing);
            let same = diff(&old_text, &old_text).unwrap();
            prop_assert!(same.iter().all(|l| l.change == Change::Same));
        }
    }
}
