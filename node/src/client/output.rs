//! Output for people: aligned tables, cut cells, UTC times, a progress bar.

use std::io::Write;

/// A table printed with its columns aligned.
#[derive(Debug)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<const N: usize>(headers: [&str; N]) -> Table {
        Table { rows: vec![headers.iter().map(|h| (*h).to_owned()).collect()] }
    }

    pub fn row<const N: usize>(&mut self, cells: [String; N]) {
        self.rows.push(cells.into_iter().map(|c| c.replace(['\n', '\t'], " ")).collect());
    }

    pub fn print(&self) {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = std::io::stdout().lock();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        if self.rows.len() == 1 {
            let _ = writeln!(out, "(none)");
        }
    }
}

/// `text` cut to `max` characters, with an ellipsis when cut.
pub fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS` (UTC).
/// A time as RFC 3339 in UTC, to the millisecond (`2026-11-21T08:20:07.417Z`).
pub fn rfc3339(ms: u64) -> String {
    format!("{}.{:03}Z", time_of(ms).replace(' ', "T"), ms % 1000)
}

pub fn time_of(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let (h, m, s) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    // Days to a civil date (proleptic Gregorian), after Howard Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}")
}

/// Redraws a progress bar on stderr: `[#####-----]  52%  3.4/6.5 MiB`.
pub fn progress(done: usize, total: usize) {
    const WIDTH: usize = 30;
    let fraction = if total == 0 { 1.0 } else { done as f64 / total as f64 };
    let filled = (fraction * WIDTH as f64).round() as usize;
    let mib = |bytes: usize| bytes as f64 / (1024.0 * 1024.0);
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "\r[{}{}] {:>3.0}%  {:.1}/{:.1} MiB",
        "#".repeat(filled),
        "-".repeat(WIDTH - filled),
        fraction * 100.0,
        mib(done),
        mib(total)
    );
    if done >= total {
        let _ = writeln!(err);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(time_of(0), "1970-01-01 00:00:00");
        assert_eq!(time_of(1_795_249_207_417), "2026-11-21 08:20:07");
        assert_eq!(time_of(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(rfc3339(1_795_249_207_417), "2026-11-21T08:20:07.417Z");
    }

    #[test]
    fn cells_are_cut_by_characters() {
        assert_eq!(cut("héllo wörld", 5), "héll…");
        assert_eq!(cut("short", 10), "short");
    }
}
