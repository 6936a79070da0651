//! Benchmark figures as Markdown, kept in BENCHMARKS.md between markers.

use std::path::Path;

/// A peak RSS for a table cell.
pub(crate) fn rss(mib: Option<f64>) -> String {
    mib.map(|m| format!("{m:.0} MiB"))
        .unwrap_or_else(|| "n/a".into())
}

/// Replaces the text between `<!-- {name}:begin -->` and `<!-- {name}:end -->`,
/// appending the section when it is not there yet.
pub(crate) fn replace_section(path: &Path, name: &str, text: &str) -> std::io::Result<()> {
    let begin = format!("<!-- {name}:begin -->");
    let end = format!("<!-- {name}:end -->");
    let current = std::fs::read_to_string(path).unwrap_or_default();
    let section = format!("{begin}\n{text}{end}");
    let updated = match (current.find(&begin), current.find(&end)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{section}{}", &current[..b], &current[e + end.len()..])
        }
        _ => format!("{current}\n{section}\n"),
    };
    std::fs::write(path, updated)
}
