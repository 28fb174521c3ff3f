//! How the bot writes figures for people: durations and aligned plain-text tables, in one
//! place for the command line (`rooms`, `history`, `stats`) and the status page, so that a
//! duration reads the same wherever it appears.

/// How a column's cells are aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Padded on the right (text).
    Left,
    /// Padded on the left (numbers, and the text before an arrow).
    Right,
}

/// A plain-text table: rows of cells, each column as wide as its widest cell, columns
/// separated by one space, trailing spaces trimmed. No header unless a row is given as one.
#[derive(Debug, Clone)]
pub struct Table {
    /// Each column's alignment; rows with more cells than this align the rest left.
    align: Vec<Align>,
    /// The rows so far.
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these column alignments.
    pub fn new(align: &[Align]) -> Table {
        Table {
            align: align.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// The table as lines, each ending in a newline.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c > 0 {
                    line.push(' ');
                }
                let pad = widths[c].saturating_sub(cell.chars().count());
                match self.align.get(c).copied().unwrap_or(Align::Left) {
                    Align::Left => {
                        line.push_str(cell);
                        line.extend(std::iter::repeat_n(' ', pad));
                    }
                    Align::Right => {
                        line.extend(std::iter::repeat_n(' ', pad));
                        line.push_str(cell);
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `secs` rounded to whole seconds and written the way people read durations: `45s`,
/// `4m 05s`, `1h 02m 03s`.
pub fn duration(secs: f64) -> String {
    let rounded = secs.round();
    let sign = if rounded < 0.0 { "-" } else { "" };
    let total = rounded.abs() as u64;
    let (hours, minutes, seconds) = (total / 3600, total % 3600 / 60, total % 60);
    if hours > 0 {
        format!("{sign}{hours}h {minutes:02}m {seconds:02}s")
    } else if minutes > 0 {
        format!("{sign}{minutes}m {seconds:02}s")
    } else {
        format!("{sign}{seconds}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_durations() {
        assert_eq!(duration(0.0), "0s");
        assert_eq!(duration(0.4), "0s");
        assert_eq!(duration(30.25), "30s");
        assert_eq!(duration(59.5), "1m 00s");
        assert_eq!(duration(245.0), "4m 05s");
        assert_eq!(duration(3723.0), "1h 02m 03s");
        assert_eq!(duration(90000.0), "25h 00m 00s");
        assert_eq!(duration(-5.0), "-5s");
    }

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let mut table = Table::new(&[Align::Right, Align::Left, Align::Right]);
        table.row(["7", "available", "a"]);
        table.row(["1234", "closed", "bbb"]);
        table.row(["8", "é", "c", "extra cell"]);
        assert_eq!(
            table.render(),
            "   7 available   a\n1234 closed    bbb\n   8 é           c extra cell\n"
        );
        assert_eq!(Table::new(&[]).render(), "");
    }
}
