//! Printing results: a small aligned-table formatter, pretty JSON, and cell formatting helpers.
//!
//! Tables are for people (a header row, columns padded to their widest cell, two spaces apart,
//! no trailing spaces); JSON is for scripts (the API's own types, pretty printed).

use serde::Serialize;

use crate::args::OutputFormat;

/// Rows of text cells under a header, rendered with aligned columns.
#[derive(Debug, Clone)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    /// A table printed after this one, a blank line apart.
    next: Option<Box<Table>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
            next: None,
        }
    }

    /// This table, then `next` after a blank line (at the end of those already following).
    pub fn then(mut self, next: Table) -> Table {
        self.next = Some(Box::new(match self.next.take() {
            Some(already) => already.then(next),
            None => next,
        }));
        self
    }

    /// Add a row; missing cells are blank, extra cells are dropped.
    pub fn push(&mut self, mut row: Vec<String>) {
        row.resize(self.header.len(), String::new());
        self.rows.push(row);
    }

    /// The table as lines of text, each ending with a newline.
    pub fn render(&self) -> String {
        let widths = self.widths();
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', width - cell.chars().count()));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        if let Some(next) = &self.next {
            out.push('\n');
            out.push_str(&next.render());
        }
        out
    }

    fn widths(&self) -> Vec<usize> {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        widths
    }
}

/// Print `value` as pretty JSON, or the table `table` builds, on stdout.
pub fn emit<T: Serialize>(format: OutputFormat, value: &T, table: impl FnOnce() -> Table) {
    match format {
        OutputFormat::Json => {
            let text = serde_json::to_string_pretty(value).expect("API types serialize to JSON");
            println!("{text}");
        }
        OutputFormat::Table => print!("{}", table().render()),
    }
}

/// An optional number, `-` when absent.
pub fn opt(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// A price in cents as units and cents: `1999` is `19.99`.
pub fn cents(value: u64) -> String {
    format!("{}.{:02}", value / 100, value % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned_without_trailing_spaces() {
        let mut table = Table::new(&["ID", "NAME", "X"]);
        table.push(vec!["1".into(), "long name".into(), "".into()]);
        table.push(vec!["100".into(), "é".into()]);
        assert_eq!(
            table.render(),
            "ID   NAME       X\n1    long name\n100  é\n"
        );
    }

    #[test]
    fn cells_format() {
        assert_eq!(opt(None), "-");
        assert_eq!(opt(Some(7)), "7");
        assert_eq!(cents(1999), "19.99");
        assert_eq!(cents(5), "0.05");
        assert_eq!(cents(100), "1.00");
    }
}
