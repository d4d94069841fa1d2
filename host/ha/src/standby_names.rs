//! `synchronous_standby_names`: rendered as Patroni renders it, and parsed in
//! every form PostgreSQL accepts (the running value may be one an operator set).

use std::collections::BTreeSet;

use crate::quorum::NameSet;

/// How PostgreSQL picks the standbys a commit waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `FIRST n (…)`, `n (…)` or a bare list: the first `n` connected, in list order.
    Priority,
    /// `ANY n (…)`: any `n` of the list.
    Quorum,
}

/// A parsed `synchronous_standby_names`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandbyNames {
    /// Priority or quorum.
    pub method: Method,
    /// How many standbys a commit waits for (0: the value is empty).
    pub num: usize,
    /// The names listed, `*` left out.
    pub names: NameSet,
    /// `*` is listed: any standby qualifies.
    pub star: bool,
}

impl StandbyNames {
    /// Commits do not wait.
    pub fn off() -> Self {
        Self {
            method: Method::Priority,
            num: 0,
            names: NameSet::new(),
            star: false,
        }
    }
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Number(usize),
    Star,
    Open,
    Close,
    Comma,
}

fn tokens(value: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = value.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '*' | '(' | ')' | ',' => {
                chars.next();
                out.push(match c {
                    '*' => Token::Star,
                    '(' => Token::Open,
                    ')' => Token::Close,
                    _ => Token::Comma,
                });
            }
            '"' => {
                chars.next();
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            name.push('"');
                        }
                        Some('"') => break,
                        Some(c) => name.push(c),
                        None => return Err(format!("unterminated quoted name in {value:?}")),
                    }
                }
                out.push(Token::Quoted(name));
            }
            c if c.is_alphanumeric() || c == '_' || c == '$' => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if !(c.is_alphanumeric() || c == '_' || c == '$') {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                out.push(match word.parse::<usize>() {
                    Ok(n) if word.chars().all(|c| c.is_ascii_digit()) => Token::Number(n),
                    _ => Token::Word(word),
                });
            }
            other => return Err(format!("unexpected {other:?} in {value:?}")),
        }
    }
    Ok(out)
}

/// Parse a `synchronous_standby_names` value.
pub fn parse(value: &str) -> Result<StandbyNames, String> {
    let tokens = tokens(value)?;
    if tokens.is_empty() {
        return Ok(StandbyNames::off());
    }
    let keyword = |t: &Token, k: &str| matches!(t, Token::Word(w) if w.eq_ignore_ascii_case(k));
    let (method, num, list) = match tokens.as_slice() {
        [k, Token::Number(n), Token::Open, rest @ ..] if keyword(k, "any") => {
            (Method::Quorum, *n, rest)
        }
        [k, Token::Number(n), Token::Open, rest @ ..] if keyword(k, "first") => {
            (Method::Priority, *n, rest)
        }
        [Token::Number(n), Token::Open, rest @ ..] => (Method::Priority, *n, rest),
        list => (Method::Priority, 1, list),
    };
    let list = if tokens.len() > list.len() {
        match list.split_last() {
            Some((Token::Close, inner)) => inner,
            _ => return Err(format!("missing ')' in {value:?}")),
        }
    } else {
        list
    };
    let mut names = NameSet::new();
    let mut star = false;
    for (i, token) in list.iter().enumerate() {
        let expect_name = i % 2 == 0;
        match token {
            Token::Word(w) if expect_name => names.insert(&w.to_lowercase()),
            Token::Quoted(q) if expect_name => names.insert(q),
            Token::Number(n) if expect_name => names.insert(&n.to_string()),
            Token::Star if expect_name => star = true,
            Token::Comma if !expect_name => {}
            _ => {
                return Err(format!(
                    "unexpected token at position {} in {value:?}",
                    i + 1
                ));
            }
        }
    }
    if list.is_empty() || list.len() % 2 == 0 {
        return Err(format!("empty or unfinished list in {value:?}"));
    }
    Ok(StandbyNames {
        method,
        num,
        names,
        star,
    })
}

/// A name as it goes into `synchronous_standby_names`.
fn quote(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if plain && name != "first" && name != "any" {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// Patroni's priority rendering: one name as is, several as `N (a,b)`, sorted.
pub(crate) fn render_priority(names: &BTreeSet<String>) -> String {
    let quoted: Vec<String> = names.iter().map(|n| quote(n)).collect();
    match quoted.len() {
        0 => String::new(),
        1 => quoted[0].clone(),
        n => format!("{n} ({})", quoted.join(",")),
    }
}

/// Patroni's quorum rendering: `ANY num (a,b)`, sorted; no names but a number
/// waits for any standby (`ANY 1 (*)`); neither is empty.
pub(crate) fn render_quorum(num: usize, names: &NameSet) -> String {
    if names.is_empty() {
        return if num >= 1 {
            format!("ANY {num} (*)")
        } else {
            String::new()
        };
    }
    let mut quoted: Vec<String> = names.iter().map(quote).collect();
    quoted.sort();
    format!("ANY {num} ({})", quoted.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[&str]) -> NameSet {
        v.iter().copied().collect()
    }

    #[test]
    fn names_are_rendered_as_patroni_does() {
        let sorted = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>();
        assert_eq!(render_priority(&sorted(&[])), "");
        assert_eq!(render_priority(&sorted(&["b"])), "b");
        assert_eq!(render_priority(&sorted(&["pg-2", "a"])), "2 (a,\"pg-2\")");
        assert_eq!(render_priority(&sorted(&["first"])), "\"first\"");
        assert_eq!(render_priority(&sorted(&["Node1"])), "\"Node1\"");
        assert_eq!(render_quorum(0, &set(&[])), "");
        assert_eq!(render_quorum(1, &set(&[])), "ANY 1 (*)");
        assert_eq!(render_quorum(1, &set(&["b"])), "ANY 1 (b)");
        assert_eq!(
            render_quorum(2, &set(&["pg-2", "a", "any"])),
            "ANY 2 (\"any\",\"pg-2\",a)"
        );
    }

    #[test]
    fn every_form_postgres_accepts_parses() {
        let p = |s: &str| parse(s).unwrap();
        assert_eq!(p(""), StandbyNames::off());
        assert_eq!(p("  "), StandbyNames::off());
        let star = p("*");
        assert!(star.star && star.names.is_empty() && star.num == 1);
        let one = p("Node1");
        assert_eq!((one.method, one.num), (Method::Priority, 1));
        assert!(one.names.contains("node1"));
        let list = p("a, b");
        assert_eq!((list.num, list.names.len()), (1, 2));
        let first = p("FIRST 2 (a,\"B c\",d)");
        assert_eq!((first.method, first.num), (Method::Priority, 2));
        assert!(first.names.contains("B c"));
        let bare = p("2 (a,b)");
        assert_eq!((bare.method, bare.num), (Method::Priority, 2));
        let any = p("any 1 (\"pg-1\", pg2)");
        assert_eq!((any.method, any.num), (Method::Quorum, 1));
        assert_eq!(any.names, set(&["pg-1", "pg2"]));
        let any_star = p("ANY 1 (*)");
        assert!(any_star.star && any_star.names.is_empty());
        // What we render, we read back.
        let rendered = render_quorum(2, &set(&["pg-2", "a", "any"]));
        assert_eq!(p(&rendered).names, set(&["pg-2", "a", "any"]));
        // A member literally named `first` or `any`.
        assert!(p("any").names.contains("any"));
    }

    #[test]
    fn malformed_values_are_refused_with_the_value_named() {
        for bad in [
            "ANY 1 (a,b",
            "2 (a,,b)",
            "a b",
            "\"open",
            "ANY 1 ()",
            "a,",
            "x;y",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }
}
