//! Questions on standard input, worded and answered as click's prompts are in
//! patronictl, so scripts that pipe answers into patronictl work here too.
//! Plain line reads: no terminal needed, and an answer piped in is an answer.

use std::io::{BufRead, Write};

use anyhow::{Context, bail};

fn read_line(question: &str) -> anyhow::Result<String> {
    let mut out = std::io::stdout().lock();
    write!(out, "{question}").context("writing the prompt")?;
    out.flush().context("writing the prompt")?;
    drop(out);
    let mut line = String::new();
    let n = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the answer from standard input")?;
    if n == 0 {
        bail!(
            "Aborted: no answer on standard input to \"{}\" (use --force to skip questions)",
            question.trim_end_matches([' ', ':'])
        );
    }
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// `text [default]: `; an empty answer takes the default.
pub(crate) fn ask(text: &str, default: Option<&str>) -> anyhow::Result<String> {
    let question = match default {
        Some(d) => format!("{text} [{d}]: "),
        None => format!("{text}: "),
    };
    loop {
        let answer = read_line(&question)?;
        let answer = answer.trim();
        if !answer.is_empty() {
            return Ok(answer.to_owned());
        }
        if let Some(d) = default {
            return Ok(d.to_owned());
        }
    }
}

/// `text [y/N]: `; yes only for `y`/`yes`.
pub(crate) fn confirm(text: &str) -> anyhow::Result<bool> {
    loop {
        let answer = read_line(&format!("{text} [y/N]: "))?;
        match answer.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" => return Ok(true),
            "" | "n" | "no" => return Ok(false),
            _ => {
                #[allow(clippy::print_stdout, reason = "the prompt's own error line")]
                {
                    println!("Error: invalid input");
                }
            }
        }
    }
}
