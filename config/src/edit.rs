//! Form values to TOML and back, on a [`DocumentMut`] so that the file's comments and
//! layout outside the edited keys survive an edit from the web UI.
//!
//! These functions check only what a form can get wrong by itself (a key the entry's kind
//! does not have, a number that is not one); the whole document is validated afterwards
//! with [`crate::parse`], whose [`FieldError`] paths (`checks[2].target`,
//! `tunnels[0].peers[1].endpoint`) use the same indexes as [`EntryRef`].

use std::collections::BTreeMap;
use std::fmt;

use toml_edit::{Array, ArrayOfTables, DocumentMut, Item, Table, TableLike, Value};

use crate::schema::{self, Field, FieldType, Section};
use crate::FieldError;

/// What a form field shows: never a secret's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShownValue {
    /// The value as the user would type it (a list one item per line); empty when unset.
    Text(String),
    /// `None` when unset (or not a boolean).
    Bool(Option<bool>),
    /// Whether the secret is set inline.
    SecretSet(bool),
}

/// One table of the file: a single section, an entry of a repeated section, or a peer of
/// a tunnel. Indexes count from 0 in file order, as validation's paths do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryRef {
    /// A section written `[key]`: `appliance`, `admin`, `metrics`, `uplink`, `spool`.
    Single(&'static str),
    /// Entry `index` of a section written `[[key]]`: `checks`, `tunnels`, `connectors`,
    /// `relays`.
    Item { section: &'static str, index: usize },
    /// Peer `peer` of tunnel `tunnel` (`[[tunnels.peers]]`).
    Peer { tunnel: usize, peer: usize },
}

impl EntryRef {
    /// The schema section the entry belongs to (`"tunnels.peers"` for a peer).
    pub fn section_key(&self) -> &'static str {
        match self {
            EntryRef::Single(section) | EntryRef::Item { section, .. } => section,
            EntryRef::Peer { .. } => "tunnels.peers",
        }
    }

    /// The path prefix of the entry's fields in validation errors: `uplink`, `checks[2]`,
    /// `tunnels[1].peers[0]`.
    pub fn path(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for EntryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryRef::Single(section) => f.write_str(section),
            EntryRef::Item { section, index } => write!(f, "{section}[{index}]"),
            EntryRef::Peer { tunnel, peer } => write!(f, "tunnels[{tunnel}].peers[{peer}]"),
        }
    }
}

/// Why an entry could not be read, removed or moved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("{section}: no such section")]
    UnknownSection { section: String },
    /// The reference does not fit the section: an index into `[uplink]`, no index into
    /// `[[checks]]`, a peer of something other than a tunnel.
    #[error("{path}: {problem}")]
    WrongRef { path: String, problem: &'static str },
    #[error("{path}: no such entry")]
    NoSuchEntry { path: String },
    /// The file has something other than a table where the entry should be.
    #[error("{path}: not a table in the file")]
    NotATable { path: String },
}

impl EditError {
    fn into_field_error(self) -> FieldError {
        let (path, message) = match &self {
            EditError::UnknownSection { section } => (section.clone(), "no such section"),
            EditError::WrongRef { path, problem } => (path.clone(), *problem),
            EditError::NoSuchEntry { path } => (path.clone(), "no such entry"),
            EditError::NotATable { path } => (path.clone(), "not a table in the file"),
        };
        FieldError {
            path,
            message: message.to_string(),
        }
    }
}

/// The values of one table for a form: every field of the schema for the entry's kind
/// (all of them when the section has no kinds; the common ones while no kind is set), set
/// or not, in schema order. A secret shows only whether it is set.
pub fn entry_values(
    doc: &DocumentMut,
    at: &EntryRef,
) -> Result<Vec<(&'static str, ShownValue)>, EditError> {
    let section = section_of(at)?;
    let table = find(doc, at)?;
    let kind = table.and_then(|t| kind_of(section, t));
    let shown = section
        .fields_for(kind)
        .map(|field| {
            let item = table.and_then(|t| t.get(field.key));
            (field.key, shown_value(field, item))
        })
        .collect();
    Ok(shown)
}

/// Writes one table from submitted form values: key -> the string as typed. A Bool comes as
/// "true", "false" or "" (unset); a List as one item per line. An empty value removes the
/// key, except that an empty required List is written `[]` (a peer's `allowed_ips = []`).
/// A Secret left empty keeps its value; the pseudo-key `<key>.clear` = "true" removes it.
/// Keys not submitted are left as they are, except that when `kind` changes the keys of
/// the old kind go (a tunnel that stops being `wireguard` loses its peers).
///
/// A key not in the schema for the entry's kind, an integer that does not parse or a
/// boolean that is neither: a [`FieldError`] at the entry's path (`checks[2].rise`), and
/// the document is left unchanged. Returns the entry's path prefix (`checks[2]`).
pub fn set_entry(
    doc: &mut DocumentMut,
    at: &EntryRef,
    values: &BTreeMap<String, String>,
) -> Result<String, Vec<FieldError>> {
    let path = at.path();
    let section = section_of(at).map_err(|e| vec![e.into_field_error()])?;
    let current = find(doc, at).map_err(|e| vec![e.into_field_error()])?;
    let current_kind = current.and_then(|t| t.get("kind")?.as_str().map(str::to_string));
    let plan = plan(section, &path, current_kind.as_deref(), values)?;
    if plan.sets_nothing() && current.is_none() {
        // Nothing to write into a section the file does not have.
        return Ok(path);
    }
    let table = find_or_create_mut(doc, at).map_err(|e| vec![e.into_field_error()])?;
    plan.apply(section, table);
    if let EntryRef::Single(key) = at {
        // An empty `[uplink]` would turn the uplink on without a URL; absent is the default.
        if find(doc, at).ok().flatten().is_some_and(|t| t.is_empty()) {
            doc.remove(key);
        }
    }
    Ok(path)
}

/// Appends a new entry to a repeated section (a peer to tunnel `tunnel` for
/// `"tunnels.peers"`) from form values, as [`set_entry`] reads them, and returns where it
/// is. On an error the document is left unchanged.
pub fn add_entry(
    doc: &mut DocumentMut,
    section: &'static str,
    tunnel: Option<usize>,
    values: &BTreeMap<String, String>,
) -> Result<EntryRef, Vec<FieldError>> {
    let one = |e: EditError| vec![e.into_field_error()];
    let found = schema::section(section).ok_or_else(|| {
        one(EditError::UnknownSection {
            section: section.to_string(),
        })
    })?;
    if !found.repeated {
        return Err(one(EditError::WrongRef {
            path: section.to_string(),
            problem: "a single section has no entries to add: edit it",
        }));
    }
    let is_peer = section == "tunnels.peers";
    if is_peer != tunnel.is_some() {
        return Err(one(EditError::WrongRef {
            path: section.to_string(),
            problem: if is_peer {
                "a peer is added to a tunnel: name the tunnel"
            } else {
                "only peers are added to a tunnel"
            },
        }));
    }
    let (parent_path, key) = match tunnel {
        Some(t) => (format!("tunnels[{t}]"), "peers"),
        None => (String::new(), section),
    };
    if let Some(t) = tunnel {
        let tunnel_ref = EntryRef::Item {
            section: "tunnels",
            index: t,
        };
        let table = find(doc, &tunnel_ref).map_err(one)?;
        let kind = table.and_then(|t| t.get("kind")?.as_str());
        if let Some(kind) = kind.filter(|kind| *kind != "wireguard") {
            return Err(vec![FieldError {
                path: format!("{parent_path}.peers"),
                message: format!("peers belong to wireguard tunnels; this one is {kind}"),
            }]);
        }
    }
    let entries = entries_len(doc, tunnel, key).map_err(one)?;
    let at = match tunnel {
        Some(t) => EntryRef::Peer {
            tunnel: t,
            peer: entries,
        },
        None => EntryRef::Item {
            section: found.key,
            index: entries,
        },
    };
    let plan = plan(found, &at.path(), None, values)?;
    let mut table = Table::new();
    plan.apply(found, &mut table);
    // Inside an inline tunnel (`tunnels = [{ ... }]`) peers are inline too.
    let inline_holder = tunnel.is_some() && matches!(doc.get("tunnels"), Some(Item::Value(_)));
    let holder: &mut dyn TableLike = match tunnel {
        Some(t) => {
            let tunnel_ref = EntryRef::Item {
                section: "tunnels",
                index: t,
            };
            find_mut(doc, &tunnel_ref).map_err(one)?
        }
        None => doc.as_table_mut(),
    };
    match holder.get_mut(key) {
        None => {
            if inline_holder {
                let array = Array::from_iter([table.into_inline_table()]);
                holder.insert(key, Item::Value(Value::Array(array)));
            } else {
                let mut array = ArrayOfTables::new();
                array.push(table);
                holder.insert(key, Item::ArrayOfTables(array));
            }
        }
        Some(Item::ArrayOfTables(array)) => array.push(table),
        Some(Item::Value(Value::Array(array))) => {
            array.push(table.into_inline_table());
        }
        Some(_) => {
            let path = join(&parent_path, key);
            return Err(one(EditError::NotATable { path }));
        }
    }
    Ok(at)
}

/// Removes a table: a single section, an entry, a peer. A repeated section left without
/// entries goes from the file too.
pub fn remove_entry(doc: &mut DocumentMut, at: &EntryRef) -> Result<(), EditError> {
    section_of(at)?;
    if find(doc, at)?.is_none() {
        return Err(EditError::NoSuchEntry { path: at.path() });
    }
    match *at {
        EntryRef::Single(key) => {
            doc.remove(key);
        }
        EntryRef::Item { section, index } => {
            remove_from(doc.as_table_mut(), section, index);
        }
        EntryRef::Peer { tunnel, peer } => {
            let tunnel_ref = EntryRef::Item {
                section: "tunnels",
                index: tunnel,
            };
            remove_from(find_mut(doc, &tunnel_ref)?, "peers", peer);
        }
    }
    Ok(())
}

/// Moves an entry (or a peer, within its tunnel) to position `to` of its list and returns
/// its new reference; the others keep their order.
pub fn move_entry(doc: &mut DocumentMut, at: &EntryRef, to: usize) -> Result<EntryRef, EditError> {
    section_of(at)?;
    if find(doc, at)?.is_none() {
        return Err(EditError::NoSuchEntry { path: at.path() });
    }
    let (holder, key, from, moved) = match *at {
        EntryRef::Single(_) => {
            return Err(EditError::WrongRef {
                path: at.path(),
                problem: "a single section has no place to move to",
            })
        }
        EntryRef::Item { section, index } => (
            doc.as_table_mut() as &mut dyn TableLike,
            section,
            index,
            EntryRef::Item { section, index: to },
        ),
        EntryRef::Peer { tunnel, peer } => {
            let tunnel_ref = EntryRef::Item {
                section: "tunnels",
                index: tunnel,
            };
            let holder = find_mut(doc, &tunnel_ref)?;
            (holder, "peers", peer, EntryRef::Peer { tunnel, peer: to })
        }
    };
    match holder.get_mut(key) {
        Some(Item::ArrayOfTables(array)) if to < array.len() => {
            let table = array.remove(from);
            array.insert(to, table);
            // Tables print in the order of their position in the parsed file; without one
            // they follow the table before them, so the array's order shows.
            for table in array.iter_mut() {
                forget_positions(table);
            }
        }
        Some(Item::Value(Value::Array(array))) if to < array.len() => {
            let value = array.remove(from);
            array.insert_formatted(to, value);
        }
        _ => return Err(EditError::NoSuchEntry { path: moved.path() }),
    }
    Ok(moved)
}

fn forget_positions(table: &mut Table) {
    table.set_position(None);
    for (_, item) in table.iter_mut() {
        match item {
            Item::Table(inner) => forget_positions(inner),
            Item::ArrayOfTables(array) => array.iter_mut().for_each(forget_positions),
            _ => {}
        }
    }
}

/// What a form submission does to one table, worked out before anything is written.
struct Plan {
    changes: Vec<(&'static str, Change)>,
    /// The new kind, when the submission changes it.
    new_kind: Option<String>,
}

enum Change {
    Set(Value),
    Remove,
}

impl Plan {
    fn sets_nothing(&self) -> bool {
        !self
            .changes
            .iter()
            .any(|(_, change)| matches!(change, Change::Set(_)))
    }

    fn apply(self, section: &Section, table: &mut dyn TableLike) {
        if let Some(kind) = &self.new_kind {
            // The keys of another kind would be errors now.
            let stale: Vec<String> = table
                .iter()
                .map(|(key, _)| key.to_string())
                .filter(|key| {
                    section.field(key).is_some_and(|f| !f.is_for(Some(kind)))
                        || (section.key == "tunnels" && key == "peers" && kind != "wireguard")
                })
                .collect();
            for key in stale {
                table.remove(&key);
            }
        }
        for (key, change) in self.changes {
            match change {
                Change::Remove => {
                    table.remove(key);
                }
                Change::Set(value) => set_value(table, key, value),
            }
        }
    }
}

/// Sets `key`, keeping the comment and spacing around an existing value (and the comment
/// lines above its key).
fn set_value(table: &mut dyn TableLike, key: &str, mut value: Value) {
    match table.get_mut(key) {
        Some(Item::Value(old)) => {
            *value.decor_mut() = old.decor().clone();
            *old = value;
        }
        _ => {
            table.insert(key, Item::Value(value));
        }
    }
}

/// Checks every submitted value against the schema for the entry's kind and works out the
/// changes; all problems are reported together.
fn plan(
    section: &'static Section,
    path: &str,
    current_kind: Option<&str>,
    values: &BTreeMap<String, String>,
) -> Result<Plan, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut error = |key: &str, message: String| {
        errors.push(FieldError {
            path: join(path, key),
            message,
        })
    };
    let submitted_kind = values.get("kind").map(|k| k.trim());
    let mut new_kind = None;
    let kind = if section.kinds.is_empty() {
        None
    } else {
        match submitted_kind {
            Some("") => None,
            Some(kind) if section.kinds.contains(&kind) => {
                if current_kind != Some(kind) {
                    new_kind = Some(kind.to_string());
                }
                Some(kind)
            }
            Some(kind) => {
                error(
                    "kind",
                    format!(
                        "unknown kind \"{kind}\" (expected one of {})",
                        section.kinds.join(", ")
                    ),
                );
                None
            }
            None => current_kind.filter(|kind| section.kinds.contains(kind)),
        }
    };
    let mut changes = Vec::new();
    let mut cleared = Vec::new();
    for (key, raw) in values {
        if let Some(secret) = key.strip_suffix(".clear") {
            let field = section
                .fields_for(kind)
                .find(|f| f.key == secret && f.ty == FieldType::Secret);
            match (field, raw.trim()) {
                (None, _) => error(key, unknown_key(section, kind, secret)),
                (Some(field), "true") => cleared.push(field.key),
                (Some(_), "" | "false") => {}
                (Some(_), _) => error(key, "must be true or false".to_string()),
            }
            continue;
        }
        let Some(field) = section.fields_for(kind).find(|f| f.key == key) else {
            error(key, unknown_key(section, kind, key));
            continue;
        };
        match form_value(field, raw) {
            Ok(Some(change)) => changes.push((field.key, change)),
            Ok(None) => {}
            Err(message) => error(key, message),
        }
    }
    for key in cleared {
        if changes
            .iter()
            .any(|(k, change)| *k == key && matches!(change, Change::Set(_)))
        {
            error(
                key,
                "a new value and clear: give one of the two".to_string(),
            );
        } else {
            changes.push((key, Change::Remove));
        }
    }
    // New keys are written in the schema's order (name and kind first), not the form's.
    changes.sort_by_key(|(key, _)| section.fields.iter().position(|f| f.key == *key));
    if errors.is_empty() {
        Ok(Plan { changes, new_kind })
    } else {
        Err(errors)
    }
}

fn unknown_key(section: &Section, kind: Option<&str>, key: &str) -> String {
    match (section.field(key), kind) {
        (Some(_), Some(kind)) => format!("not used by kind \"{kind}\""),
        (Some(_), None) => "depends on the kind: choose the kind first".to_string(),
        (None, _) => format!("unknown key of {}", section.key),
    }
}

/// The change one submitted string makes; `Ok(None)` leaves the key as it is.
fn form_value(field: &Field, raw: &str) -> Result<Option<Change>, String> {
    let text = raw.trim();
    let change = match field.ty {
        FieldType::Secret if raw.is_empty() => return Ok(None),
        FieldType::Secret => Change::Set(Value::from(raw)),
        _ if text.is_empty() && !(field.ty == FieldType::List && field.required) => Change::Remove,
        FieldType::Text | FieldType::Choice(_) => Change::Set(Value::from(text)),
        FieldType::Integer => Change::Set(Value::from(integer(text)?)),
        FieldType::Bool => match text {
            "true" => Change::Set(Value::from(true)),
            "false" => Change::Set(Value::from(false)),
            _ => return Err("must be true or false".to_string()),
        },
        FieldType::List => {
            let lines = text.lines().map(str::trim).filter(|line| !line.is_empty());
            let array = if field.list_of_integers() {
                let mut array = Array::new();
                for (n, line) in lines.enumerate() {
                    let number = integer(line).map_err(|e| format!("line {}: {e}", n + 1))?;
                    array.push(number);
                }
                array
            } else {
                Array::from_iter(lines)
            };
            Change::Set(Value::Array(array))
        }
    };
    Ok(Some(change))
}

fn integer(text: &str) -> Result<i64, String> {
    text.parse::<i64>()
        .map_err(|_| format!("\"{text}\" is not a whole number"))
}

fn shown_value(field: &Field, item: Option<&Item>) -> ShownValue {
    let value = item.and_then(Item::as_value);
    match field.ty {
        FieldType::Secret => ShownValue::SecretSet(item.is_some()),
        FieldType::Bool => ShownValue::Bool(value.and_then(Value::as_bool)),
        _ => ShownValue::Text(match value {
            None => String::new(),
            Some(Value::Array(array)) => array.iter().map(form_text).collect::<Vec<_>>().join("\n"),
            Some(value) => form_text(value),
        }),
    }
}

/// A value as typed into a form: a string without quotes, a number in plain digits
/// (`1_000` and `0x10` would not parse back), anything else as TOML writes it.
fn form_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.value().clone(),
        Value::Integer(n) => n.value().to_string(),
        other => bare(other).to_string(),
    }
}

/// The value without the spacing and comment around it.
pub(crate) fn bare(value: &Value) -> Value {
    let mut value = value.clone();
    value.decor_mut().clear();
    value
}

fn section_of(at: &EntryRef) -> Result<&'static Section, EditError> {
    let key = at.section_key();
    let section = schema::section(key).ok_or_else(|| EditError::UnknownSection {
        section: key.to_string(),
    })?;
    let fits = match at {
        EntryRef::Single(_) => !section.repeated,
        EntryRef::Item { .. } => section.repeated && key != "tunnels.peers",
        EntryRef::Peer { .. } => true,
    };
    if !fits {
        return Err(EditError::WrongRef {
            path: at.path(),
            problem: match at {
                EntryRef::Single(_) => "a repeated section: name one of its entries",
                _ => "not a repeated section (or a peer: use EntryRef::Peer)",
            },
        });
    }
    Ok(section)
}

/// The entry's kind, if it is one of the section's.
fn kind_of<'t>(section: &Section, table: &'t dyn TableLike) -> Option<&'t str> {
    table
        .get("kind")?
        .as_str()
        .filter(|kind| section.kinds.contains(kind))
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Index `index` of the entries under `key` of `holder`: `Ok(None)` when there is no such
/// entry, an error when it is not a table.
fn nth<'d>(
    holder: &'d dyn TableLike,
    key: &str,
    index: usize,
    path: &str,
) -> Result<Option<&'d dyn TableLike>, EditError> {
    match holder.get(key) {
        None => Ok(None),
        Some(Item::ArrayOfTables(array)) => Ok(array.get(index).map(|t| t as &dyn TableLike)),
        Some(Item::Value(Value::Array(array))) => match array.get(index) {
            None => Ok(None),
            Some(Value::InlineTable(table)) => Ok(Some(table as &dyn TableLike)),
            Some(_) => Err(EditError::NotATable {
                path: path.to_string(),
            }),
        },
        Some(_) => Err(EditError::NotATable {
            path: path.to_string(),
        }),
    }
}

fn nth_mut<'d>(
    holder: &'d mut dyn TableLike,
    key: &str,
    index: usize,
    path: &str,
) -> Result<Option<&'d mut dyn TableLike>, EditError> {
    let not_a_table = || EditError::NotATable {
        path: path.to_string(),
    };
    match holder.get_mut(key) {
        None => Ok(None),
        Some(Item::ArrayOfTables(array)) => {
            Ok(array.get_mut(index).map(|t| t as &mut dyn TableLike))
        }
        Some(Item::Value(Value::Array(array))) => match array.get_mut(index) {
            None => Ok(None),
            Some(Value::InlineTable(table)) => Ok(Some(table as &mut dyn TableLike)),
            Some(_) => Err(not_a_table()),
        },
        Some(_) => Err(not_a_table()),
    }
}

/// The entry's table; `Ok(None)` only for a single section the file does not have. A
/// missing entry of a repeated section is an error.
fn find<'d>(doc: &'d DocumentMut, at: &EntryRef) -> Result<Option<&'d dyn TableLike>, EditError> {
    let missing = |path: String| EditError::NoSuchEntry { path };
    match *at {
        EntryRef::Single(key) => match doc.get(key) {
            None => Ok(None),
            Some(item) => item
                .as_table_like()
                .map(Some)
                .ok_or_else(|| EditError::NotATable { path: at.path() }),
        },
        EntryRef::Item { section, index } => nth(doc.as_table(), section, index, &at.path())?
            .map(Some)
            .ok_or_else(|| missing(at.path())),
        EntryRef::Peer { tunnel, peer } => {
            let tunnel_path = format!("tunnels[{tunnel}]");
            let table = nth(doc.as_table(), "tunnels", tunnel, &tunnel_path)?
                .ok_or_else(|| missing(tunnel_path))?;
            nth(table, "peers", peer, &at.path())?
                .map(Some)
                .ok_or_else(|| missing(at.path()))
        }
    }
}

/// The entry's table to change; it must exist.
fn find_mut<'d>(
    doc: &'d mut DocumentMut,
    at: &EntryRef,
) -> Result<&'d mut dyn TableLike, EditError> {
    let missing = || EditError::NoSuchEntry { path: at.path() };
    match *at {
        EntryRef::Single(key) => doc
            .get_mut(key)
            .ok_or_else(missing)?
            .as_table_like_mut()
            .ok_or_else(|| EditError::NotATable { path: at.path() }),
        EntryRef::Item { section, index } => {
            nth_mut(doc.as_table_mut(), section, index, &at.path())?.ok_or_else(missing)
        }
        EntryRef::Peer { tunnel, peer } => {
            let tunnel_path = format!("tunnels[{tunnel}]");
            let table = nth_mut(doc.as_table_mut(), "tunnels", tunnel, &tunnel_path)?
                .ok_or(EditError::NoSuchEntry { path: tunnel_path })?;
            nth_mut(table, "peers", peer, &at.path())?.ok_or_else(missing)
        }
    }
}

fn find_or_create_mut<'d>(
    doc: &'d mut DocumentMut,
    at: &EntryRef,
) -> Result<&'d mut dyn TableLike, EditError> {
    if let EntryRef::Single(key) = *at {
        if doc.get(key).is_none() {
            doc.insert(key, Item::Table(Table::new()));
        }
    }
    find_mut(doc, at)
}

/// How many entries `key` has (of the root, or of tunnel `tunnel`).
fn entries_len(doc: &DocumentMut, tunnel: Option<usize>, key: &str) -> Result<usize, EditError> {
    let (holder, path): (&dyn TableLike, String) = match tunnel {
        Some(t) => {
            let tunnel_ref = EntryRef::Item {
                section: "tunnels",
                index: t,
            };
            let table = find(doc, &tunnel_ref)?.ok_or(EditError::NoSuchEntry {
                path: tunnel_ref.path(),
            })?;
            (table, format!("tunnels[{t}].{key}"))
        }
        None => (doc.as_table(), key.to_string()),
    };
    match holder.get(key) {
        None => Ok(0),
        Some(Item::ArrayOfTables(array)) => Ok(array.len()),
        Some(Item::Value(Value::Array(array))) => Ok(array.len()),
        Some(_) => Err(EditError::NotATable { path }),
    }
}

/// Removes entry `index` of `key`; the key goes when it was the last.
fn remove_from(holder: &mut dyn TableLike, key: &str, index: usize) {
    let now_empty = match holder.get_mut(key) {
        Some(Item::ArrayOfTables(array)) if index < array.len() => {
            array.remove(index);
            array.is_empty()
        }
        Some(Item::Value(Value::Array(array))) if index < array.len() => {
            array.remove(index);
            array.is_empty()
        }
        _ => false,
    };
    if now_empty {
        holder.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const PLANT_01: &str = include_str!("../examples/plant-01.toml");

    fn examples_dir() -> &'static Path {
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples"))
    }

    fn form(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn doc(text: &str) -> DocumentMut {
        text.parse().expect("test documents are valid TOML")
    }

    /// What a user would type for each field, distinct per key.
    fn typed(field: &Field) -> String {
        match field.ty {
            FieldType::Text => format!("x-{}", field.key),
            FieldType::Secret => format!("s3cret \"{}\"", field.key),
            FieldType::Integer => "7".to_string(),
            FieldType::Bool => "true".to_string(),
            FieldType::Choice(values) => values.last().copied().unwrap_or("").to_string(),
            FieldType::List if field.list_of_integers() => "200\n 204 \n".to_string(),
            FieldType::List => format!("a-{}\n\nb", field.key),
        }
    }

    fn shown(field: &Field) -> ShownValue {
        match field.ty {
            FieldType::Secret => ShownValue::SecretSet(true),
            FieldType::Bool => ShownValue::Bool(Some(true)),
            FieldType::List if field.list_of_integers() => ShownValue::Text("200\n204".into()),
            FieldType::List => ShownValue::Text(format!("a-{}\nb", field.key)),
            _ => ShownValue::Text(typed(field)),
        }
    }

    /// Parsing reports no key as unknown or of another kind, and no value of a wrong type.
    fn assert_keys_and_types_accepted(text: &str) {
        let Err(e) = crate::parse(text, Path::new("/nonexistent")) else {
            return;
        };
        let wrong: Vec<_> = e
            .field_errors()
            .into_iter()
            .filter(|e| {
                e.message.starts_with("unknown key")
                    || e.message.starts_with("invalid type")
                    || e.message.contains("not used by")
                    || e.message.contains("not valid TOML")
            })
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}\n{text}");
    }

    #[test]
    fn every_field_of_every_section_and_kind_round_trips() {
        let mut doc = doc("# the header stays\n[appliance]\nname = \"a\"\n");
        for section in schema::sections() {
            let kinds: Vec<Option<&str>> = if section.kinds.is_empty() {
                vec![None]
            } else {
                section.kinds.iter().map(|k| Some(*k)).collect()
            };
            for kind in kinds {
                let fields: Vec<&Field> = section.fields_for(kind).collect();
                let mut values: BTreeMap<String, String> = fields
                    .iter()
                    .map(|f| (f.key.to_string(), typed(f)))
                    .collect();
                if let Some(kind) = kind {
                    values.insert("kind".into(), kind.into());
                }
                let at = match section.key {
                    "tunnels.peers" => {
                        // A wireguard tunnel to hold the peer.
                        let tunnel = form(&[("name", "t"), ("kind", "wireguard")]);
                        let tunnel = add_entry(&mut doc, "tunnels", None, &tunnel).unwrap();
                        let EntryRef::Item { index, .. } = tunnel else {
                            panic!("a tunnel is an item: {tunnel:?}")
                        };
                        add_entry(&mut doc, section.key, Some(index), &values).unwrap()
                    }
                    key if section.repeated => add_entry(&mut doc, key, None, &values).unwrap(),
                    key => {
                        let at = EntryRef::Single(key);
                        assert_eq!(set_entry(&mut doc, &at, &values).unwrap(), key);
                        at
                    }
                };
                let got = entry_values(&doc, &at).unwrap();
                let expected: Vec<(&str, ShownValue)> = fields
                    .iter()
                    .map(|f| match (f.key, kind) {
                        ("kind", Some(kind)) => (f.key, ShownValue::Text(kind.to_string())),
                        _ => (f.key, shown(f)),
                    })
                    .collect();
                assert_eq!(got, expected, "{at}");
            }
        }
        let text = doc.to_string();
        assert!(text.starts_with("# the header stays\n"), "{text}");
        assert!(text.contains("[[tunnels.peers]]"), "{text}");
        assert_keys_and_types_accepted(&text);
    }

    #[test]
    fn an_edited_example_still_validates_and_only_the_edited_lines_change() {
        let mut doc = doc(PLANT_01);
        let at = EntryRef::Item {
            section: "checks",
            index: 0,
        };
        let path = set_entry(
            &mut doc,
            &at,
            &form(&[("rise", "4"), ("source", "192.0.2.10")]),
        );
        assert_eq!(path.unwrap(), "checks[0]");
        let text = doc.to_string();
        crate::parse(&text, examples_dir()).expect("still valid");

        let before: Vec<&str> = PLANT_01.lines().collect();
        let after: Vec<&str> = text.lines().collect();
        // The value changed in place, its comment kept; one line added to the table.
        assert!(after.contains(&"rise = 4                       # successes before up (default 1)"));
        assert!(
            !after.contains(&"rise = 2                       # successes before up (default 1)")
        );
        assert_eq!(after.len(), before.len() + 1);
        let changed: Vec<_> = after.iter().filter(|line| !before.contains(line)).collect();
        assert_eq!(
            changed,
            [
                &"rise = 4                       # successes before up (default 1)",
                &"source = \"192.0.2.10\""
            ]
        );
        // Every comment of the file is still there.
        for comment in before.iter().filter(|l| l.trim_start().starts_with('#')) {
            assert!(after.contains(comment), "lost {comment}");
        }
    }

    #[test]
    fn numbers_show_as_they_parse_back() {
        let doc = doc("[spool]\nmax_bytes = 1_073_741_824\n");
        let shown = entry_values(&doc, &EntryRef::Single("spool")).unwrap();
        assert_eq!(
            shown,
            [("max_bytes", ShownValue::Text("1073741824".into()))]
        );
        let doc = self::doc("[[checks]]\nkind = \"http\"\nexpect_status = [0xC8, 302]\n");
        let at = EntryRef::Item {
            section: "checks",
            index: 0,
        };
        let shown = entry_values(&doc, &at).unwrap();
        let status = shown.iter().find(|(key, _)| *key == "expect_status");
        assert_eq!(status.unwrap().1, ShownValue::Text("200\n302".into()));
    }

    #[test]
    fn secrets_are_kept_when_left_empty_replaced_and_cleared() {
        let mut doc =
            doc("[uplink]\nurl = \"https://x.example/\"\ntoken = \"old-token\" # set by ops\n");
        let at = EntryRef::Single("uplink");
        assert_eq!(
            entry_values(&doc, &at).unwrap()[1],
            ("token", ShownValue::SecretSet(true))
        );
        set_entry(&mut doc, &at, &form(&[("token", ""), ("timeout", "5s")])).unwrap();
        assert!(doc
            .to_string()
            .contains("token = \"old-token\" # set by ops\n"));
        set_entry(&mut doc, &at, &form(&[("token", " new token ")])).unwrap();
        assert!(doc
            .to_string()
            .contains("token = \" new token \" # set by ops\n"));
        set_entry(&mut doc, &at, &form(&[("token.clear", "false")])).unwrap();
        assert!(doc.to_string().contains("new token"));
        set_entry(&mut doc, &at, &form(&[("token.clear", "true")])).unwrap();
        assert!(!doc.to_string().contains("token ="), "{doc}");
        assert_eq!(
            entry_values(&doc, &at).unwrap()[1],
            ("token", ShownValue::SecretSet(false))
        );

        let both = set_entry(
            &mut doc,
            &at,
            &form(&[("token", "t"), ("token.clear", "true")]),
        );
        assert_eq!(both.unwrap_err()[0].path, "uplink.token");
        // Clearing what is not a secret is an unknown key.
        let errors = set_entry(&mut doc, &at, &form(&[("url.clear", "true")])).unwrap_err();
        assert_eq!(errors[0].path, "uplink.url.clear");
    }

    #[test]
    fn values_that_do_not_parse_change_nothing_and_name_their_field() {
        let mut doc = doc(PLANT_01);
        let at = EntryRef::Item {
            section: "checks",
            index: 2,
        };
        let values = form(&[
            ("rise", "two"),
            ("fall", "3"),
            ("insecure_skip_verify", "yes"),
            ("expect_status", "200\nok"),
        ]);
        let errors = set_entry(&mut doc, &at, &values).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "checks[2].expect_status",
                "checks[2].insecure_skip_verify",
                "checks[2].rise"
            ]
        );
        assert_eq!(errors[2].message, "\"two\" is not a whole number");
        assert!(
            errors[0].message.starts_with("line 2:"),
            "{}",
            errors[0].message
        );
        assert_eq!(doc.to_string(), PLANT_01);
    }

    #[test]
    fn keys_outside_the_schema_or_the_kind_are_refused() {
        let mut doc = doc(PLANT_01);
        let tcp = EntryRef::Item {
            section: "checks",
            index: 3,
        };
        let values = form(&[("colour", "red"), ("url", "http://x/"), ("peers", "x")]);
        let errors = set_entry(&mut doc, &tcp, &values).unwrap_err();
        let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "checks[3].colour: unknown key of checks",
                "checks[3].peers: unknown key of checks",
                "checks[3].url: not used by kind \"tcp\"",
            ]
        );
        let tunnel = EntryRef::Item {
            section: "tunnels",
            index: 0,
        };
        let errors = set_entry(&mut doc, &tunnel, &form(&[("peers", "")])).unwrap_err();
        assert_eq!(errors[0].path, "tunnels[0].peers");
        let errors = set_entry(&mut doc, &tcp, &form(&[("kind", "smtp")])).unwrap_err();
        assert_eq!(errors[0].path, "checks[3].kind");
        assert_eq!(doc.to_string(), PLANT_01);
    }

    #[test]
    fn a_new_kind_drops_the_keys_of_the_old_one() {
        let mut doc = doc(PLANT_01);
        let at = EntryRef::Item {
            section: "checks",
            index: 1,
        };
        set_entry(
            &mut doc,
            &at,
            &form(&[("kind", "tcp"), ("target", "db:1521")]),
        )
        .unwrap();
        let table = find(&doc, &at).unwrap().unwrap();
        assert!(table.get("service_name").is_none());
        assert_eq!(table.get("fall").and_then(Item::as_integer), Some(2));

        // A tunnel that stops being wireguard loses its key and its peers.
        let tunnel = EntryRef::Item {
            section: "tunnels",
            index: 0,
        };
        set_entry(&mut doc, &tunnel, &form(&[("kind", "ipsec")])).unwrap();
        let table = find(&doc, &tunnel).unwrap().unwrap();
        for gone in ["peers", "private_key_file", "listen_port"] {
            assert!(table.get(gone).is_none(), "{gone} kept");
        }
        assert!(table.get("addresses").is_some() && table.get("mtu").is_some());
        assert!(!doc.to_string().contains("[[tunnels.peers]]"));
    }

    #[test]
    fn peers_are_added_edited_and_validated_at_their_path() {
        let mut doc = doc(PLANT_01);
        let values = form(&[
            ("name", "branch"),
            ("public_key", "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="),
            ("allowed_ips", ""),
            ("endpoint", "no port here"),
        ]);
        let at = add_entry(&mut doc, "tunnels.peers", Some(0), &values).unwrap();
        assert_eq!(at, EntryRef::Peer { tunnel: 0, peer: 2 });
        assert_eq!(at.path(), "tunnels[0].peers[2]");
        let text = doc.to_string();
        // An empty required list is written, not left out.
        assert!(text.contains("allowed_ips = []"), "{text}");
        // The new peer follows the tunnel's other peers, before the next section.
        let peer = text.find("name = \"branch\"").unwrap();
        assert!(peer > text.find("name = \"support-jump\"").unwrap());
        assert!(peer < text.find("[[connectors]]").unwrap_or(text.len()));
        let errors = crate::parse(&text, examples_dir())
            .unwrap_err()
            .field_errors();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["tunnels[0].peers[2].endpoint"]);

        set_entry(
            &mut doc,
            &at,
            &form(&[("endpoint", "gw.example.net:51820")]),
        )
        .unwrap();
        crate::parse(&doc.to_string(), examples_dir()).expect("fixed");

        let mut ipsec = self::doc(include_str!("../examples/plant-02.toml"));
        let errors = add_entry(&mut ipsec, "tunnels.peers", Some(0), &values).unwrap_err();
        assert_eq!(errors[0].path, "tunnels[0].peers");
        let errors = add_entry(&mut doc, "tunnels.peers", None, &values).unwrap_err();
        assert_eq!(errors[0].path, "tunnels.peers");
        let errors = add_entry(&mut doc, "tunnels.peers", Some(9), &values).unwrap_err();
        assert_eq!(errors[0].to_string(), "tunnels[9]: no such entry");
    }

    #[test]
    fn entries_are_removed_and_moved() {
        let mut doc = doc(PLANT_01);
        let names = |doc: &DocumentMut| -> Vec<String> {
            let text = doc.to_string();
            let parsed: toml::Table = text.parse().unwrap();
            parsed["checks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["name"].as_str().unwrap().to_string())
                .collect()
        };
        let before = names(&doc);
        let first = EntryRef::Item {
            section: "checks",
            index: 0,
        };
        remove_entry(&mut doc, &first).unwrap();
        assert_eq!(names(&doc), before[1..]);
        let moved = move_entry(&mut doc, &first, 2).unwrap();
        assert_eq!(
            moved,
            EntryRef::Item {
                section: "checks",
                index: 2
            }
        );
        let mut expected = before[1..].to_vec();
        let name = expected.remove(0);
        expected.insert(2, name);
        assert_eq!(names(&doc), expected);
        crate::parse(&doc.to_string(), examples_dir()).expect("still valid");

        // Moving a tunnel keeps its peers under it.
        let mut doc = self::doc(
            "[[tunnels]]\nname = \"a\"\n[[tunnels.peers]]\nname = \"a1\"\n\
             [[tunnels]]\nname = \"b\"\n[[tunnels.peers]]\nname = \"b1\"\n[[relays]]\nname = \"r\"\n",
        );
        let b = EntryRef::Item {
            section: "tunnels",
            index: 1,
        };
        move_entry(&mut doc, &b, 0).unwrap();
        let text = doc.to_string();
        let parsed: toml::Table = text.parse().unwrap();
        let tunnels = parsed["tunnels"].as_array().unwrap();
        assert_eq!(tunnels[0]["name"].as_str(), Some("b"));
        assert_eq!(tunnels[0]["peers"][0]["name"].as_str(), Some("b1"));
        assert_eq!(tunnels[1]["peers"][0]["name"].as_str(), Some("a1"));
        assert!(
            text.trim_end().ends_with("[[relays]]\nname = \"r\""),
            "{text}"
        );
        let peer = EntryRef::Peer { tunnel: 0, peer: 0 };
        remove_entry(&mut doc, &peer).unwrap();
        assert!(!doc.to_string().contains("b1"));
        assert_eq!(
            remove_entry(&mut doc, &peer),
            Err(EditError::NoSuchEntry {
                path: "tunnels[0].peers[0]".into()
            })
        );
        assert!(move_entry(&mut doc, &b, 5).is_err());
        // The last relay goes, and the section with it.
        remove_entry(
            &mut doc,
            &EntryRef::Item {
                section: "relays",
                index: 0,
            },
        )
        .unwrap();
        assert!(!doc.to_string().contains("relays"));
        remove_entry(&mut doc, &EntryRef::Single("admin")).unwrap_err();
    }

    #[test]
    fn single_sections_appear_and_go_with_their_values() {
        let mut doc = doc("[appliance]\nname = \"a\"\n");
        let uplink = EntryRef::Single("uplink");
        assert!(entry_values(&doc, &uplink)
            .unwrap()
            .iter()
            .all(|(_, v)| matches!(v, ShownValue::Text(t) if t.is_empty())
                || *v == ShownValue::SecretSet(false)));
        set_entry(&mut doc, &uplink, &form(&[("url", ""), ("token", "")])).unwrap();
        assert_eq!(doc.to_string(), "[appliance]\nname = \"a\"\n");
        set_entry(&mut doc, &uplink, &form(&[("url", "https://p.example/")])).unwrap();
        assert!(doc
            .to_string()
            .ends_with("[uplink]\nurl = \"https://p.example/\"\n"));
        set_entry(&mut doc, &uplink, &form(&[("url", "")])).unwrap();
        assert_eq!(doc.to_string(), "[appliance]\nname = \"a\"\n");
    }

    #[test]
    fn inline_arrays_are_edited_in_place() {
        let mut doc = doc(
            "checks = [{ name = \"a\", kind = \"tcp\", target = \"h:1\" }]\n\
             tunnels = [{ name = \"t\", kind = \"wireguard\", interface = \"wg0\" }]\n",
        );
        let at = EntryRef::Item {
            section: "checks",
            index: 0,
        };
        set_entry(&mut doc, &at, &form(&[("rise", "2")])).unwrap();
        let added = add_entry(
            &mut doc,
            "checks",
            None,
            &form(&[("name", "b"), ("kind", "icmp")]),
        );
        assert_eq!(
            added.unwrap(),
            EntryRef::Item {
                section: "checks",
                index: 1
            }
        );
        let peer = add_entry(&mut doc, "tunnels.peers", Some(0), &form(&[("name", "p")]));
        assert_eq!(peer.unwrap(), EntryRef::Peer { tunnel: 0, peer: 0 });
        let parsed: toml::Table = doc.to_string().parse().unwrap();
        assert_eq!(parsed["checks"][0]["rise"].as_integer(), Some(2));
        assert_eq!(parsed["checks"][1]["kind"].as_str(), Some("icmp"));
        assert_eq!(parsed["tunnels"][0]["peers"][0]["name"].as_str(), Some("p"));
    }

    #[test]
    fn references_must_fit_their_section() {
        let mut doc = doc(PLANT_01);
        let wrong = [
            EntryRef::Single("checks"),
            EntryRef::Single("nope"),
            EntryRef::Item {
                section: "uplink",
                index: 0,
            },
            EntryRef::Item {
                section: "tunnels.peers",
                index: 0,
            },
        ];
        for at in wrong {
            assert!(entry_values(&doc, &at).is_err(), "{at}");
            assert!(set_entry(&mut doc, &at, &form(&[("name", "x")])).is_err());
            assert!(remove_entry(&mut doc, &at).is_err());
        }
        let missing = EntryRef::Item {
            section: "checks",
            index: 999,
        };
        assert_eq!(
            entry_values(&doc, &missing).unwrap_err().to_string(),
            "checks[999]: no such entry"
        );
        assert!(add_entry(&mut doc, "uplink", None, &form(&[])).is_err());
        let not_a_table = self::doc("uplink = 3\nchecks = [1]\n");
        assert!(matches!(
            entry_values(&not_a_table, &EntryRef::Single("uplink")),
            Err(EditError::NotATable { .. })
        ));
        assert!(matches!(
            entry_values(
                &not_a_table,
                &EntryRef::Item {
                    section: "checks",
                    index: 0
                }
            ),
            Err(EditError::NotATable { .. })
        ));
        assert_eq!(doc.to_string(), PLANT_01);
    }
}
