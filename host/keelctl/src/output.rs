//! Printing rows the way patronictl does: a framed table whose top rule carries
//! a title (`+ Cluster: demo (7376…) ---+-----+`), tab-separated values, or a
//! list of objects as JSON or YAML. Pure: every function returns the text.

use comfy_table::{CellAlignment, ContentArrangement, Table};
use serde_json::{Map, Value};

/// The output formats of `-f/--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// A framed table.
    Pretty,
    /// Tab-separated values, a header line first.
    Tsv,
    /// A JSON array of objects.
    Json,
    /// A YAML list of mappings.
    #[value(alias = "yml")]
    Yaml,
    /// The table, members sorted as a replication tree (`topology`).
    #[value(skip)]
    Topology,
}

/// Frame only: top, below the header, bottom (prettytable's `FRAME`).
const FRAME: &str = "||--+-++|    ++++++";
/// A rule between every row, for cells of several lines (prettytable's `ALL`).
const ALL: &str = "||--+-++|-+++++++++";

/// What to print: column names, rows of values, and per-column layout.
#[derive(Debug, Default)]
pub(crate) struct Rows {
    pub(crate) columns: Vec<String>,
    pub(crate) rows: Vec<Vec<Value>>,
    /// Columns aligned right in tables (the rest align left).
    pub(crate) right: Vec<&'static str>,
    /// Injected into the table's top rule; also marks member listings, whose
    /// JSON/YAML objects leave out empty values.
    pub(crate) title: String,
}

/// A value as Python's `str()` prints it.
pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        other => other.to_string(),
    }
}

impl Rows {
    /// Render in `format`. `delimiter` separates TSV fields.
    pub(crate) fn render(&self, format: Format, delimiter: &str) -> String {
        match format {
            Format::Json | Format::Yaml => {
                let elements: Vec<Vec<(&str, &Value)>> = self
                    .rows
                    .iter()
                    .map(|row| {
                        self.columns
                            .iter()
                            .map(String::as_str)
                            .zip(row)
                            .filter(|(_, v)| self.title.is_empty() || !text(v).is_empty())
                            .collect()
                    })
                    .collect();
                if format == Format::Json {
                    let items: Vec<String> = elements.iter().map(|e| python_object(e)).collect();
                    format!("[{}]\n", items.join(", "))
                } else {
                    let list: Vec<Value> = elements
                        .iter()
                        .map(|e| {
                            Value::Object(
                                e.iter()
                                    .map(|(k, v)| ((*k).to_owned(), (*v).clone()))
                                    .collect::<Map<String, Value>>(),
                            )
                        })
                        .collect();
                    yaml(&Value::Array(list))
                }
            }
            Format::Tsv => {
                let mut out = String::new();
                let header = std::iter::once(self.columns.iter().map(|c| c.to_owned()).collect());
                let body = self.rows.iter().map(|r| r.iter().map(text).collect());
                for line in header.chain(body).collect::<Vec<Vec<String>>>() {
                    out.push_str(&line.join(delimiter));
                    out.push('\n');
                }
                out
            }
            Format::Pretty | Format::Topology => self.table(),
        }
    }

    fn table(&self) -> String {
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| r.iter().map(text).collect())
            .collect();
        let multiline = cells.iter().flatten().any(|c| c.contains('\n'));
        let mut table = Table::new();
        table
            .load_preset(if multiline { ALL } else { FRAME })
            .set_content_arrangement(ContentArrangement::Disabled)
            .set_header(self.columns.clone());
        for row in cells {
            table.add_row(row);
        }
        for (i, name) in self.columns.iter().enumerate() {
            if self.right.contains(&name.as_str())
                && let Some(column) = table.column_mut(i)
            {
                column.set_cell_alignment(CellAlignment::Right);
            }
        }
        let rendered = table.to_string();
        let mut lines = rendered.lines();
        let mut out = String::new();
        if let Some(top) = lines.next() {
            out.push_str(&with_title(top, &self.title));
            out.push('\n');
        }
        for line in lines {
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

/// Put `title` into a table's top rule, keeping its first character and its
/// length (patronictl's header line).
fn with_title(rule: &str, title: &str) -> String {
    if title.is_empty() {
        return rule.to_owned();
    }
    let chars: Vec<char> = rule.chars().collect();
    let room = chars.len().saturating_sub(2);
    let title: String = title.chars().take(room).collect();
    let used = title.chars().count();
    let mut out = String::new();
    out.extend(chars.first());
    out.push_str(&title);
    out.extend(chars.iter().skip(1 + used));
    out
}

/// One object as Python's `json.dumps` writes it: keys in the given order,
/// `", "` and `": "` separators.
fn python_object(entries: &[(&str, &Value)]) -> String {
    let items: Vec<String> = entries
        .iter()
        .map(|(k, v)| format!("{}: {}", Value::from(*k), python_json(v)))
        .collect();
    format!("{{{}}}", items.join(", "))
}

/// Any value as Python's `json.dumps` writes it.
pub(crate) fn python_json(v: &Value) -> String {
    match v {
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(python_json).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) => {
            let entries: Vec<(&str, &Value)> = map.iter().map(|(k, v)| (k.as_str(), v)).collect();
            python_object(&entries)
        }
        scalar => scalar.to_string(),
    }
}

/// YAML in block style with sorted keys, as `yaml.safe_dump` writes it:
/// sequences in a mapping are not indented, and a string that YAML 1.1 would
/// read as something else (`'on'`, `'010'`, `''`) is quoted, so the output
/// means the same to patronictl, PyYAML and keelctl.
pub(crate) fn yaml(v: &Value) -> String {
    let mut out = yaml_lines(v).join("\n");
    out.push('\n');
    out
}

fn yaml_lines(v: &Value) -> Vec<String> {
    match v {
        Value::Object(map) if !map.is_empty() => {
            let mut lines = Vec::new();
            for (key, value) in map {
                let key = yaml_scalar(&Value::String(key.clone()));
                match value {
                    Value::Object(m) if !m.is_empty() => {
                        lines.push(format!("{key}:"));
                        lines.extend(yaml_lines(value).into_iter().map(|l| format!("  {l}")));
                    }
                    Value::Array(a) if !a.is_empty() => {
                        lines.push(format!("{key}:"));
                        lines.extend(yaml_lines(value));
                    }
                    _ => lines.push(format!("{key}: {}", yaml_scalar(value))),
                }
            }
            lines
        }
        Value::Array(items) if !items.is_empty() => {
            let mut lines = Vec::new();
            for item in items {
                for (i, line) in yaml_lines(item).into_iter().enumerate() {
                    lines.push(if i == 0 {
                        format!("- {line}")
                    } else {
                        format!("  {line}")
                    });
                }
            }
            lines
        }
        scalar => vec![yaml_scalar(scalar)],
    }
}

fn yaml_scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        Value::String(s) if s.contains(|c: char| c.is_control()) => {
            Value::String(s.clone()).to_string()
        }
        Value::String(s) if plain_is_safe(s) => s.clone(),
        Value::String(s) => format!("'{}'", s.replace('\'', "''")),
        other => other.to_string(),
    }
}

/// Whether `s` can be written unquoted and read back as the same string by a
/// YAML 1.1 reader (erring on the side of quoting).
fn plain_is_safe(s: &str) -> bool {
    let first = s.chars().next();
    let date_like =
        s.len() >= 8 && s.as_bytes()[..4].iter().all(u8::is_ascii_digit) && s.as_bytes()[4] == b'-';
    !s.is_empty()
        && s.trim() == s
        && !first.is_some_and(|c| "-?:,[]{}#&*!|>'\"%@`".contains(c))
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.ends_with(':')
        && !date_like
        && crate::config_edit::yaml_value(s).ok() == Some(Value::String(s.to_owned()))
}

/// The local time as patronictl prints it: seconds plus `precision` digits of
/// the fraction (none when 0).
pub(crate) fn timestamp(precision: usize) -> String {
    let now = chrono::Local::now()
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string();
    // Python's `[:precision - 7]` on a six-digit fraction.
    let cut = 7 - precision.min(6);
    now[..now.len() - cut].to_owned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sample(title: &str) -> Rows {
        Rows {
            columns: vec!["Member".into(), "TL".into(), "Lag".into()],
            rows: vec![
                vec![json!("m1"), json!(1), json!("")],
                vec![json!("member-2"), json!(12), json!(0)],
            ],
            right: vec!["TL", "Lag"],
            title: title.into(),
        }
    }

    #[test]
    fn the_title_sits_in_the_top_rule() {
        let text = sample(" Cluster: demo ").render(Format::Pretty, "\t");
        let expected = "\
+ Cluster: demo +-----+
| Member   | TL | Lag |
+----------+----+-----+
| m1       |  1 |     |
| member-2 | 12 |   0 |
+----------+----+-----+
";
        assert_eq!(text, expected);
    }

    #[test]
    fn a_long_title_is_cut_to_the_table() {
        assert_eq!(with_title("+----+--+", " Cluster: x "), "+ Cluste+");
        assert_eq!(with_title("+--+", ""), "+--+");
    }

    #[test]
    fn json_is_pythons_and_member_listings_drop_empty_values() {
        let text = sample(" t ").render(Format::Json, "\t");
        assert_eq!(
            text,
            "[{\"Member\": \"m1\", \"TL\": 1}, {\"Member\": \"member-2\", \"TL\": 12, \"Lag\": 0}]\n"
        );
        let all = sample("").render(Format::Json, "\t");
        assert!(all.contains("\"Lag\": \"\""), "{all}");
    }

    #[test]
    fn tsv_and_yaml() {
        assert_eq!(
            sample("").render(Format::Tsv, "\t"),
            "Member\tTL\tLag\nm1\t1\t\nmember-2\t12\t0\n"
        );
        let y = sample(" t ").render(Format::Yaml, "\t");
        assert_eq!(
            y,
            "- Member: m1\n  TL: 1\n- Lag: 0\n  Member: member-2\n  TL: 12\n"
        );
    }

    #[test]
    fn multiline_cells_get_rules_between_rows() {
        let rows = Rows {
            columns: vec!["Member".into(), "Tags".into()],
            rows: vec![
                vec![json!("a"), json!("x: 1\ny: 2")],
                vec![json!("b"), json!("")],
            ],
            ..Rows::default()
        };
        let text = rows.render(Format::Pretty, "\t");
        assert_eq!(
            text.lines().filter(|l| l.starts_with('+')).count(),
            4,
            "{text}"
        );
    }

    #[test]
    fn yaml_is_what_pyyaml_safe_dump_writes() {
        let config = json!({"ttl": 30, "pause": null, "postgresql": {"parameters": {
            "wal_log_hints": "on", "work_mem": "7MB", "x": "", "y": "2024-01-01", "z": "a: b",
            "n": "010", "s": " sp", "c": "hot_standby,replica", "f": 1.5, "e": {}, "l": []}},
            "slots": [{"a": 1, "b": "yes"}, ["x", "y"]], "tags": {"nofailover": true}});
        // Generated with PyYAML's safe_dump(default_flow_style=False).
        let expected = "\
pause: null
postgresql:
  parameters:
    c: hot_standby,replica
    e: {}
    f: 1.5
    l: []
    n: '010'
    s: ' sp'
    wal_log_hints: 'on'
    work_mem: 7MB
    x: ''
    y: '2024-01-01'
    z: 'a: b'
slots:
- a: 1
  b: 'yes'
- - x
  - y
tags:
  nofailover: true
ttl: 30
";
        assert_eq!(yaml(&config), expected);
        assert_eq!(yaml(&json!({})), "{}\n");
        let back: Value = serde_yaml_ng::from_str(&yaml(&config)).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn timestamps_have_the_requested_precision() {
        assert_eq!(timestamp(0).len(), "2024-01-01 00:00:00".len());
        assert_eq!(timestamp(6).len(), "2024-01-01 00:00:00.12345".len());
    }
}
