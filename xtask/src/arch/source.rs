//! Reading a Rust file as the import graph sees it: comments, literals and test-only items
//! removed, then every module path it names (`use` trees and inline `a::b::c` paths).

/// `src` with comments and string and character literals blanked (newlines kept), so that
/// neither can be taken for code.
pub fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, s: &[u8]| {
        out.extend(s.iter().map(|&c| if c == b'\n' { b'\n' } else { b' ' }))
    };
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == b'/' && next == Some(b'/') {
            let end = b[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |p| i + p);
            blank(&mut out, &b[i..end]);
            i = end;
        } else if c == b'/' && next == Some(b'*') {
            let mut depth = 0;
            let mut j = i;
            while j < b.len() {
                if b[j] == b'/' && b.get(j + 1) == Some(&b'*') {
                    depth += 1;
                    j += 2;
                } else if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, &b[i..j.min(b.len())]);
            i = j;
        } else if let Some(len) = raw_string(&b[i..], out.last().copied()) {
            out.extend_from_slice(b"\"\"");
            blank(&mut out, &b[i + 2.min(len)..i + len]);
            i += len;
        } else if c == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            out.push(b'"');
            blank(&mut out, &b[i + 1..j.min(b.len())]);
            out.push(b'"');
            i = j + 1;
        } else if c == b'\'' {
            // A character literal ('x', '\n', '\u{..}') or a lifetime ('a).
            let len = if next == Some(b'\\') {
                b[i + 2..].iter().position(|&c| c == b'\'').map(|p| p + 3)
            } else {
                let ch = src[i + 1..].chars().next().map_or(1, char::len_utf8);
                (b.get(i + 1 + ch) == Some(&b'\'')).then_some(ch + 2)
            };
            match len {
                Some(len) => {
                    out.extend_from_slice(b"' '");
                    blank(&mut out, &b[i..i + len][3.min(len)..]);
                    i += len;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The length of a raw string (`r"…"`, `r#"…"#`, `br"…"`) starting at `b`, if one does.
fn raw_string(b: &[u8], before: Option<u8>) -> Option<usize> {
    if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_') {
        return None;
    }
    let start = match b {
        [b'r', ..] => 1,
        [b'b', b'r', ..] => 2,
        _ => return None,
    };
    let hashes = b[start..].iter().take_while(|&&c| c == b'#').count();
    if b.get(start + hashes) != Some(&b'"') {
        return None;
    }
    let body = start + hashes + 1;
    let close: Vec<u8> = std::iter::once(b'"')
        .chain(std::iter::repeat_n(b'#', hashes))
        .collect();
    let end = b[body..]
        .windows(close.len())
        .position(|w| w == close.as_slice())?;
    Some(body + end + close.len())
}

/// What one file holds for the graph, once stripped.
#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    /// Module paths the code names, as written (`crate::a::B`, `super::c`, `d::E`).
    pub paths: Vec<Vec<String>>,
    /// Child modules declared only for tests (`#[cfg(test)] mod tests;`): their files are
    /// tests, not rooms of the house.
    pub test_modules: Vec<String>,
    /// Paths the file re-exports (`pub use a::B;`): a name taken from this file through one
    /// of them is taken from where it is defined.
    pub reexports: Vec<Vec<String>>,
}

/// The lines of a file that are not tests (`#[cfg(test)]` items left out).
pub fn code_lines(src: &str) -> usize {
    let stripped = strip(src);
    let mut tests = Vec::new();
    let code = drop_test_items(&stripped, &mut tests);
    let total = src.lines().count();
    // A dropped item keeps its newlines but no text: its lines are blank in `code` and not in
    // `stripped`.
    let dropped = stripped
        .lines()
        .zip(code.lines())
        .filter(|(a, b)| !a.trim().is_empty() && b.trim().is_empty())
        .count();
    total - dropped
}

/// Parses a stripped file: test-only items dropped, `use` trees expanded, inline paths found.
pub fn parse(stripped: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let code = drop_test_items(stripped, &mut parsed.test_modules);
    let mut rest = String::with_capacity(code.len());
    let b = code.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if word_at(b, i, "use") {
            let end = code[i..].find(';').map_or(code.len(), |p| i + p);
            let before = code[..i].trim_end();
            let public =
                before.ends_with("pub") || before.ends_with(')') && before.contains("pub(");
            let from = parsed.paths.len();
            expand(&code[i + 3..end], &[], &mut parsed.paths);
            if public {
                let new = parsed.paths[from..].to_vec();
                parsed.reexports.extend(new);
            }
            rest.push_str(&" ".repeat(end + 1 - i));
            i = end + 1;
        } else {
            rest.push(b[i] as char);
            i += 1;
        }
    }
    parsed.paths.extend(inline_paths(&rest));
    parsed
}

/// Whether the keyword `w` stands at `i` as a whole word.
fn word_at(b: &[u8], i: usize, w: &str) -> bool {
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    b[i..].starts_with(w.as_bytes())
        && (i == 0 || !ident(b[i - 1]))
        && b.get(i + w.len()).is_none_or(|&c| !ident(c))
}

/// `code` without `#[cfg(test)]` items; the names of test-only file modules are collected.
fn drop_test_items(code: &str, test_modules: &mut Vec<String>) -> String {
    const MARK: &str = "#[cfg(test)]";
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at]);
        let item = &rest[at + MARK.len()..];
        let b = item.as_bytes();
        let mut depth = 0usize;
        let mut end = item.len();
        for (j, &c) in b.iter().enumerate() {
            match c {
                b'{' => depth += 1,
                b'}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = j + 1;
                        break;
                    }
                }
                b';' if depth == 0 => {
                    end = j + 1;
                    break;
                }
                _ => {}
            }
        }
        let head: Vec<&str> = item[..end].split_whitespace().collect();
        if let Some(m) = head.iter().position(|w| *w == "mod")
            && let Some(name) = head.get(m + 1)
            && name.ends_with(';')
        {
            test_modules.push(name.trim_end_matches(';').to_owned());
        }
        out.extend(
            item[..end]
                .chars()
                .map(|c| if c == '\n' { '\n' } else { ' ' }),
        );
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// Expands a `use` tree (`crate::{a::{B, C as D}, e::*}`) under `prefix` into whole paths.
fn expand(tree: &str, prefix: &[String], out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    let mut path: Vec<String> = prefix.to_vec();
    let mut rest = tree;
    loop {
        rest = rest.trim_start();
        if let Some(inner) = rest.strip_prefix('{') {
            let close = matching_brace(inner);
            for part in split_top(&inner[..close], ',') {
                let part = part.trim();
                if part == "self" {
                    out.push(path.clone());
                } else if !part.is_empty() {
                    expand(part, &path, out);
                }
            }
            return;
        }
        let seg_end = rest.find("::").unwrap_or(rest.len());
        let seg = rest[..seg_end].trim();
        let seg = seg.split_whitespace().next().unwrap_or("");
        if !seg.is_empty() && seg != "*" && seg != "self" {
            path.push(seg.trim_start_matches("::").to_owned());
        }
        if seg_end == rest.len() {
            break;
        }
        rest = &rest[seg_end + 2..];
    }
    if !path.is_empty() {
        out.push(path);
    }
}

/// The index of the `}` closing a block whose `{` was just passed.
fn matching_brace(s: &str) -> usize {
    let mut depth = 1;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    s.len()
}

/// `s` split at `sep` outside braces.
fn split_top(s: &str, sep: char) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            c if c == sep && depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// Every `a::b::c` path in code (at least two segments), turbofish and generics cut off.
fn inline_paths(code: &str) -> Vec<Vec<String>> {
    let b = code.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let starts = ident(b[i]) && (i == 0 || !(ident(b[i - 1]) || b[i - 1] == b':'));
        if !starts {
            i += 1;
            continue;
        }
        let mut segs = Vec::new();
        let mut j = i;
        loop {
            let s = j;
            while j < b.len() && ident(b[j]) {
                j += 1;
            }
            segs.push(code[s..j].to_owned());
            if b.get(j..j + 2) == Some(b"::") && b.get(j + 2).is_some_and(|&c| ident(c)) {
                j += 2;
            } else {
                break;
            }
        }
        if segs.len() > 1 {
            out.push(segs);
        }
        i = j.max(i + 1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(src: &str) -> Vec<String> {
        parse(&strip(src))
            .paths
            .iter()
            .map(|p| p.join("::"))
            .collect()
    }

    #[test]
    fn use_trees_expand_and_literals_and_comments_hide_nothing_real() {
        let src = r##"
            use crate::{a::{B, C as D}, e::*, f::{self, g::H}};
            pub(crate) use super::x::Y;
            // crate::commented::Out
            /* crate::block::Out /* nested */ */
            const S: &str = "crate::in_string::Out";
            const R: &str = r#"crate::raw::Out "quoted""#;
            fn f<'a>(c: char) -> &'a str { let _ = 'x'; let _ = '\''; crate::inline::call(); "" }
        "##;
        assert_eq!(
            paths(src),
            [
                "crate::a::B",
                "crate::a::C",
                "crate::e",
                "crate::f",
                "crate::f::g::H",
                "super::x::Y",
                "crate::inline::call"
            ]
        );
    }

    #[test]
    fn lines_of_tests_do_not_count() {
        let src = "fn a() {}\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn t() {}\n}\n";
        assert_eq!(src.lines().count(), 6);
        assert_eq!(code_lines(src), 1);
    }

    #[test]
    fn test_items_are_not_code_of_the_house() {
        let src = "
            use crate::kept::A;
            #[cfg(test)]
            mod tests;
            #[cfg(test)]
            mod inline {
                use crate::dropped::B;
                fn f() { crate::dropped::c(); }
            }
            #[cfg(test)]
            use crate::dropped::D;
            fn g() { crate::kept::e(); }
        ";
        let p = parse(&strip(src));
        assert_eq!(p.test_modules, ["tests"]);
        let names: Vec<String> = p.paths.iter().map(|p| p.join("::")).collect();
        assert_eq!(names, ["crate::kept::A", "crate::kept::e"]);
        let p = parse(&strip(
            "pub use inner::{X, Y}; pub(crate) use other::Z; use private::W;",
        ));
        let names: Vec<String> = p.reexports.iter().map(|p| p.join("::")).collect();
        assert_eq!(names, ["inner::X", "inner::Y", "other::Z"]);
    }
}
