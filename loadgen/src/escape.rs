//! Text read from a file (labels, file names, targets, warnings) made safe for each
//! place it is shown. A result file is untrusted: a label could carry a terminal escape
//! sequence (retitling the window, recolouring or hiding lines), a carriage return
//! (overwriting the row before it), a newline or a `|` (breaking a table).
//!
//! Invariant: what these functions return contains no control character (C0, DEL, C1)
//! and no bidirectional override, whatever they are given; each control character is
//! shown as a visible escape (`\x1b`, `\n`) so that the text is still recognisable.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Characters that reorder or hide what follows them on a terminal (Unicode
/// bidirectional embeddings, overrides and isolates).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn needs_escape(c: char) -> bool {
    c.is_control() || is_bidi_control(c)
}

/// For a terminal (the text report, compare, warnings on stderr): control characters
/// and bidirectional overrides are shown as escapes, `\n`, `\r`, `\t`, `\x1b`, `\u{202e}`.
pub fn terminal(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() && u32::from(c) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// For a Markdown table cell: [`terminal`], then the characters Markdown gives a
/// meaning (`|` ends the cell, `<` opens HTML, `*` `_` `` ` `` `[` `]` format) are
/// backslash-escaped, and `<` `>` written as entities.
pub fn markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in terminal(s).chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\\' | '|' | '*' | '_' | '`' | '[' | ']' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// For a CSV field (RFC 4180): [`terminal`] (one record per line), quoted when it holds
/// `,` or `"` or starts or ends with a space; a field a spreadsheet would run as a
/// formula (starting with `=`, `+`, `-` or `@`) gets a leading `'`.
pub fn csv(s: &str) -> String {
    let s = terminal(s);
    let s: Cow<'_, str> = if s.starts_with(['=', '+', '-', '@']) { Cow::Owned(format!("'{s}")) } else { s };
    if s.contains([',', '"']) || s.starts_with(' ') || s.ends_with(' ') {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.into_owned()
    }
}

/// For SVG text drawn by plotters: [`terminal`] (XML 1.0 forbids most control
/// characters: one raw ESC makes the file unreadable). plotters itself writes `<`, `>`,
/// `&` and quotes as entities.
pub fn svg(s: &str) -> String {
    terminal(s).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HOSTILE: &str = "evil\u{1b}]0;pwned\u{7}\u{1b}[31mred|pipe\nnew\rCR\u{202e}dis\u{9b}c1";

    #[test]
    fn each_escaper_on_hostile_text() {
        assert_eq!(terminal("plain label, 1 µs"), "plain label, 1 µs");
        assert_eq!(
            terminal(HOSTILE),
            "evil\\x1b]0;pwned\\x07\\x1b[31mred|pipe\\nnew\\rCR\\u{202e}dis\\x9bc1"
        );
        assert_eq!(
            markdown("a|b <i>*x*</i> [l](u) c\\d"),
            "a\\|b &lt;i&gt;\\*x\\*&lt;/i&gt; \\[l\\](u) c\\\\d"
        );
        assert_eq!(markdown("two\nlines"), "two\\\\nlines", "the escape, then its backslash for Markdown");
        assert_eq!(csv("a,1"), "\"a,1\"");
        assert_eq!(csv("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv("-5"), "'-5");
        assert_eq!(csv("line\nbreak"), "line\\nbreak");
        assert_eq!(svg("a\u{1b}b<c"), "a\\x1bb<c");
    }

    proptest! {
        /// Whatever the text, no escaper lets a control character or a bidirectional
        /// override through; Markdown cells hold no bare `|`, CSV fields no line break.
        #[test]
        fn nothing_gets_through(s in "(\\PC|[\\x00-\\x1f\\x7f-\\x9f\\u{202a}-\\u{202e}|,\"=])*") {
            for out in [terminal(&s).into_owned(), markdown(&s), csv(&s), svg(&s)] {
                prop_assert!(!out.chars().any(needs_escape), "{out:?}");
            }
            let mut escaped = false;
            for c in markdown(&s).chars() {
                prop_assert!(escaped || c != '|', "a bare | in {:?}", markdown(&s));
                escaped = !escaped && c == '\\';
            }
            prop_assert!(!csv(&s).contains(['\n', '\r']));
        }
    }
}
