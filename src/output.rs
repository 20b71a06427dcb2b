//! Data goes to stdout, diagnostics to stderr; colour only where a person is looking; a closed
//! pipe (`| head`) ends output quietly instead of failing.

use std::io::{self, IsTerminal, Write};

use console::Style;
use serde::Serialize;

use crate::cli::{OutputFormat, UiArgs};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy)]
pub struct Printer {
    stdout_color: bool,
    stderr_color: bool,
    stderr_terminal: bool,
}

/// The outcome of writing data to stdout. A broken pipe means the reader has what it wanted.
fn stdout_written(written: io::Result<()>) -> Result<()> {
    match written {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::Io { path: "<stdout>".into(), source: e }),
    }
}

impl Printer {
    pub fn new(ui: &UiArgs) -> Self {
        let color_allowed = !ui.no_color && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        let stdout_terminal = io::stdout().is_terminal();
        let stderr_terminal = io::stderr().is_terminal();
        // `console` decides on its own otherwise; keep it in line with our choice.
        console::set_colors_enabled(color_allowed && stdout_terminal);
        console::set_colors_enabled_stderr(color_allowed && stderr_terminal);
        Self {
            stdout_color: color_allowed && stdout_terminal,
            stderr_color: color_allowed && stderr_terminal,
            stderr_terminal,
        }
    }

    /// A printer that never colours, for tests and snapshots.
    pub fn plain() -> Self {
        Self { stdout_color: false, stderr_color: false, stderr_terminal: false }
    }

    pub fn stdout_color(&self) -> bool {
        self.stdout_color
    }

    pub fn stderr_is_terminal(&self) -> bool {
        self.stderr_terminal
    }

    /// Whether diagnostics on stderr may be coloured.
    pub fn stderr_color(&self) -> bool {
        self.stderr_color
    }

    /// Writes data to stdout. A broken pipe means the reader has what it wanted.
    pub fn data(&self, text: &str) -> Result<()> {
        let mut out = io::stdout().lock();
        stdout_written(out.write_all(text.as_bytes()).and_then(|()| out.flush()))
    }

    /// Writes data to stdout as `write` makes it, buffered, so that a large report is never
    /// held whole as text.
    pub fn data_with(&self, write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Result<()> {
        let mut out = io::BufWriter::new(io::stdout().lock());
        stdout_written(write(&mut out).and_then(|()| out.flush()))
    }

    /// Writes a diagnostic line to stderr.
    pub fn note(&self, text: &str) {
        let _ = writeln!(io::stderr().lock(), "{text}");
    }

    pub fn warn(&self, text: &str) {
        let label = self.paint_err(Style::new().yellow().bold(), "warning:");
        self.note(&format!("{label} {text}"));
    }

    pub fn paint(&self, style: Style, text: &str) -> String {
        if self.stdout_color { style.force_styling(true).apply_to(text).to_string() } else { text.to_string() }
    }

    pub fn paint_err(&self, style: Style, text: &str) -> String {
        if self.stderr_color { style.force_styling(true).apply_to(text).to_string() } else { text.to_string() }
    }

    /// Asks a yes/no question on the terminal; without one, refuses unless `yes` was given.
    pub fn confirm(&self, yes: bool, question: &str) -> Result<()> {
        if yes {
            return Ok(());
        }
        if !(io::stdin().is_terminal() && self.stderr_terminal) {
            return Err(Error::NotConfirmed(
                "refusing to change anything without confirmation: there is no terminal to ask on; review with --dry-run, then re-run with --yes".into(),
            ));
        }
        let answer = dialoguer::Confirm::new()
            .with_prompt(question)
            .default(false)
            .interact_on(&console::Term::stderr())
            .map_err(|e| Error::NotConfirmed(format!("no answer: {e}")))?;
        if answer { Ok(()) } else { Err(Error::NotConfirmed("declined; nothing was changed".into())) }
    }

    /// Writes a machine-readable document in the requested format; `Text` is the caller's job.
    pub fn document<T: Serialize>(&self, format: OutputFormat, value: &T) -> Result<()> {
        match format {
            // Written as it is serialized: a report of 10,000 workloads is never held as text.
            OutputFormat::Json => {
                let mut out = io::BufWriter::new(io::stdout().lock());
                let written = match serde_json::to_writer_pretty(&mut out, value) {
                    Err(e) if !e.is_io() => return Err(Error::Report { format: "JSON", message: e.to_string() }),
                    serialized => serialized.map_err(io::Error::from),
                };
                stdout_written(written.and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush()))
            }
            OutputFormat::Yaml => {
                let text = serde_saphyr::to_string(value)
                    .map_err(|e| Error::Report { format: "YAML", message: e.to_string() })?;
                self.data(&text)
            }
            OutputFormat::Text => unreachable!("text output is rendered by each command"),
        }
    }
}

/// Writes a header and rows in left-aligned columns, each cell padded by a space on either side,
/// lines trimmed at the end: comfy-table's borderless layout (`presets::NOTHING`), which holds
/// every cell of a table twice more while it lays it out (60,000 cells for 10,000 workloads).
/// Cells are single lines.
pub fn write_columns(out: &mut dyn Write, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    use unicode_width::UnicodeWidthStr;
    let mut widths: Vec<usize> = header.iter().map(|h| h.width()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.width());
        }
    }
    let mut line = String::new();
    let mut write_line = |cells: &mut dyn Iterator<Item = &str>| {
        line.clear();
        for (cell, width) in cells.zip(&widths) {
            line.push(' ');
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', width - cell.width() + 1));
        }
        writeln!(out, "{}", line.trim_end())
    };
    write_line(&mut header.iter().copied())?;
    for row in rows {
        write_line(&mut row.iter().map(String::as_str))?;
    }
    Ok(())
}

/// A line diff, indented, each line `-`, `+` or ` ` and painted by `paint` (which may leave it
/// plain).
pub fn diff_lines(before: &str, after: &str, paint: impl Fn(Style, &str) -> String) -> String {
    let mut text = String::new();
    for change in similar::TextDiff::from_lines(before, after).iter_all_changes() {
        let (sign, style) = match change.tag() {
            similar::ChangeTag::Delete => ("-", Style::new().red()),
            similar::ChangeTag::Insert => ("+", Style::new().green()),
            similar::ChangeTag::Equal => (" ", Style::new().dim()),
        };
        text.push_str(&paint(style, &format!("    {sign} {}", change.value().trim_end_matches('\n'))));
        text.push('\n');
    }
    text
}

/// A JSON value as YAML, for diffs people read.
pub fn yaml(value: &serde_json::Value) -> String {
    serde_saphyr::to_string(value).unwrap_or_else(|_| value.to_string())
}

/// A count that may be unknown, as the text outputs show it.
pub fn count(value: Option<i64>) -> String {
    value.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    use comfy_table::{Table, presets};

    use super::*;

    #[test]
    fn columns_are_laid_out_as_comfy_table_lays_them_out() {
        let painted = console::Style::new().red().bold().force_styling(true).apply_to("strip-needed").to_string();
        let header = ["NAMESPACE", "VERDICT", "GUARD"];
        let rows = vec![
            vec!["shop".to_string(), painted, "deny (floor 3)".to_string()],
            vec!["ünïcödé-日本".to_string(), "safe".to_string(), String::new()],
            vec![String::new(), "a cell wider than its header".to_string(), "-".to_string()],
        ];
        let mut table = Table::new();
        table.load_style(presets::NOTHING);
        table.set_header(header.to_vec());
        for row in &rows {
            table.add_row(row.clone());
        }
        let expected: String = table.to_string().lines().map(|l| format!("{}\n", l.trim_end())).collect();
        let mut written = Vec::new();
        write_columns(&mut written, &header, &rows).unwrap();
        assert_eq!(String::from_utf8(written).unwrap(), expected);
    }
}
