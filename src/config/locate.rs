//! Where in the file a TOML error is: one line with the position, the message and, for an
//! unknown key, its section. Kept by hand: `toml` shows the section only in a multi-line
//! snippet, and an operator reads this in a one-line service log.

/// Turns toml's multi-line error into one line: position, message, and for an unknown key
/// the section it was found in (toml itself shows the section only in its source snippet).
pub(super) fn describe_toml_error(text: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim().replace('\n', "; ");
    let Some(span) = err.span() else {
        return message;
    };
    let (line, column) = line_column(text, span.start);
    let message = match message.strip_prefix("unknown field ") {
        Some(rest) => {
            // rest: "`name`, expected one of `a`, `b`" (or "..., there are no fields").
            let (name, expected) = rest.split_once(", ").unwrap_or((rest, ""));
            let place = match section_at(text, span.start) {
                Some(section) => format!("in [{section}]"),
                None => "at the top level (not a known section)".to_owned(),
            };
            if expected.is_empty() {
                format!("unknown key {name} {place}")
            } else {
                format!("unknown key {name} {place}; {expected}")
            }
        }
        None => match key_at(text, span.start) {
            Some(key) => format!("{key}: {message}"),
            None => message,
        },
    };
    format!("line {line}, column {column}: {message}")
}

/// What the line holding byte `offset` defines, for messages about a bad value: the dotted
/// key (`pool.available`) of a `key = value` line, or `[table]` for a header line.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    if let Some(header) = header_name(line) {
        return Some(format!("[{header}]"));
    }
    let key = line.split_once('=')?.0.trim();
    if key.is_empty() || key.starts_with('#') {
        return None;
    }
    Some(match section_at(text, offset) {
        Some(section) => format!("{section}.{key}"),
        None => key.to_owned(),
    })
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The table (`xmpp`, `timeouts`, ...) whose key is at byte `offset`, found from the last
/// `[header]` line before it; `None` at the top level. When `offset` is on a header line the
/// offending key is the header's last part, so the table is the header without it.
fn section_at(text: &str, offset: usize) -> Option<String> {
    let mut section: Option<String> = None;
    let mut line_start = 0;
    for line in text.split_inclusive('\n') {
        let line_end = line_start + line.len();
        let header = header_name(line);
        if offset < line_end || line_end == text.len() {
            if let Some(header) = header {
                // The header line itself holds the unknown key: its parent is the table.
                return header.rsplit_once('.').map(|(parent, _)| parent.to_owned());
            }
            return section;
        }
        if let Some(header) = header {
            section = Some(header);
        }
        line_start = line_end;
    }
    section
}

/// The name in a `[table]` or `[[array]]` header line, without spaces; `None` otherwise.
fn header_name(line: &str) -> Option<String> {
    let line = line.trim();
    let inner = line.strip_prefix('[')?;
    let inner = inner.strip_prefix('[').unwrap_or(inner);
    let end = inner.find(']')?;
    Some(
        inner[..end]
            .split('.')
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("."),
    )
}
