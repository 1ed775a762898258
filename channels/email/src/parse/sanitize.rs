//! HTML from email made safe to show in the console.
//!
//! ammonia removes scripts, event handlers, forms, frames and unknown tags; style attributes
//! keep only harmless properties. Remote images are not loaded: `<img src="https://...">`
//! becomes `<img data-remote-src="https://...">`, which the console turns back into `src` when
//! the agent asks to load images. `<img src="cid:...">` becomes
//! `<img data-attachment-index="N">` for attachment N of the message ([`resolve_inline_images`]
//! gives it a URL).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

/// Marker values the attribute filter writes; the serialized output then gets the attribute
/// renamed. Attribute values are serialized in double quotes with `"` escaped, so the
/// sequence `src="<marker>` can only be the attribute itself (in text it stays text).
const REMOTE_MARK: &str = "x-contact-hub-remote:";
const CID_MARK: &str = "x-contact-hub-cid:";

const STYLE_PROPERTIES: &[&str] = &[
    "color",
    "background-color",
    "font",
    "font-family",
    "font-size",
    "font-style",
    "font-weight",
    "text-align",
    "text-decoration",
    "text-indent",
    "line-height",
    "letter-spacing",
    "white-space",
    "vertical-align",
    "margin",
    "margin-top",
    "margin-bottom",
    "margin-left",
    "margin-right",
    "padding",
    "padding-top",
    "padding-bottom",
    "padding-left",
    "padding-right",
    "border",
    "border-top",
    "border-bottom",
    "border-left",
    "border-right",
    "border-color",
    "border-style",
    "border-width",
    "border-collapse",
    "width",
    "height",
    "max-width",
    "min-width",
    "display",
];

/// Sanitizes `html`; `cid_index` maps a Content-ID (without `<>`) to its attachment index.
pub fn sanitize_html(html: &str, cid_index: &HashMap<String, usize>) -> String {
    let cids = cid_index.clone();
    let mut builder = ammonia::Builder::default();
    builder
        .add_url_schemes(["cid"])
        .add_generic_attributes(["style", "align", "dir"])
        .add_tags(["font"])
        .add_tag_attributes("img", ["width", "height", "alt", "title", "border"])
        .add_tag_attributes("font", ["color", "face", "size"])
        .add_tag_attributes(
            "table",
            ["width", "border", "cellpadding", "cellspacing", "bgcolor"],
        )
        .add_tag_attributes(
            "td",
            ["width", "height", "colspan", "rowspan", "valign", "bgcolor"],
        )
        .add_tag_attributes("th", ["width", "colspan", "rowspan", "valign", "bgcolor"])
        .add_tag_attributes("tr", ["valign", "bgcolor"])
        .filter_style_properties(STYLE_PROPERTIES.iter().copied().collect::<HashSet<_>>())
        .attribute_filter(move |element, attribute, value| {
            filter_attribute(element, attribute, value, &cids)
        });
    let cleaned = builder.clean(html).to_string();
    cleaned
        .replace(&format!(" src=\"{REMOTE_MARK}"), " data-remote-src=\"")
        .replace(&format!(" src=\"{CID_MARK}"), " data-attachment-index=\"")
}

fn filter_attribute<'u>(
    element: &str,
    attribute: &str,
    value: &'u str,
    cids: &HashMap<String, usize>,
) -> Option<Cow<'u, str>> {
    match (element, attribute) {
        ("img", "src") => {
            let v = value.trim();
            let lower = v.get(..8).unwrap_or(v).to_ascii_lowercase();
            if lower.starts_with("http://") || lower.starts_with("https://") {
                Some(format!("{REMOTE_MARK}{v}").into())
            } else if lower.starts_with("cid:") {
                let id = v[4..].trim().trim_start_matches('<').trim_end_matches('>');
                cids.get(id).map(|i| format!("{CID_MARK}{i}").into())
            } else {
                // data: and relative URLs: nothing to load from outside, but nothing a
                // customer needs either.
                None
            }
        }
        (_, "style") => {
            // Old IE expressions, behaviours, bindings and any url() are dropped whole; the
            // remaining properties go through ammonia's property allow-list.
            let lower = value.to_ascii_lowercase();
            let hostile = [
                "expression",
                "url(",
                "javascript",
                "behavior",
                "binding",
                "@import",
            ]
            .iter()
            .any(|bad| lower.contains(bad));
            (!hostile).then_some(Cow::Borrowed(value))
        }
        _ => Some(Cow::Borrowed(value)),
    }
}

/// Gives inline images a URL: `url_of(index)` for each `data-attachment-index="N"`.
pub fn resolve_inline_images(sanitized: &str, url_of: impl Fn(usize) -> String) -> String {
    let needle = " data-attachment-index=\"";
    let mut out = String::with_capacity(sanitized.len());
    let mut rest = sanitized;
    while let Some(at) = rest.find(needle) {
        let digits_at = at + needle.len();
        let digits = rest[digits_at..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        out.push_str(&rest[..at]);
        if let Ok(index) = rest[digits_at..digits_at + digits].parse::<usize>() {
            let url = url_of(index)
                .replace('&', "&amp;")
                .replace('"', "&quot;")
                .replace('<', "&lt;");
            out.push_str(&format!(" src=\"{url}\""));
        }
        out.push_str(needle);
        rest = &rest[digits_at..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(html: &str) -> String {
        let cids = HashMap::from([("logo@x".to_string(), 2usize)]);
        sanitize_html(html, &cids)
    }

    #[test]
    fn removes_scripts_handlers_and_hostile_styles() {
        let out = clean(
            r#"<p onclick="steal()" style="color: red">Hi<script>alert(1)</script></p>
               <div style="width: expression(alert(1))">x</div>
               <a href="javascript:alert(1)">j</a><a href="https://ok.example/">ok</a>
               <style>body{background:url(http://t/x)}</style><iframe src="https://x"></iframe>"#,
        );
        assert!(!out.contains("script"), "{out}");
        assert!(!out.contains("onclick"));
        assert!(!out.contains("expression"));
        assert!(!out.contains("javascript"));
        assert!(!out.contains("iframe"));
        assert!(!out.contains("background"));
        assert!(
            out.contains("color:red") || out.contains("color: red"),
            "{out}"
        );
        assert!(out.contains(r#"href="https://ok.example/""#));
    }

    #[test]
    fn remote_images_become_data_attributes_and_cid_images_map_to_attachments() {
        let out = clean(
            r#"<img src="https://tracker.example/p.gif?u=1&amp;v=2" alt="t"><img src="cid:logo@x"><img src="cid:unknown"><img src="data:image/png;base64,AAAA">"#,
        );
        assert!(
            out.contains(r#"data-remote-src="https://tracker.example/p.gif?u=1&amp;v=2""#),
            "{out}"
        );
        assert!(!out.contains(" src="), "{out}");
        assert!(out.contains(r#"data-attachment-index="2""#));
        let resolved = resolve_inline_images(&out, |i| format!("/att/{i}?a&b"));
        assert!(
            resolved.contains(r#"src="/att/2?a&amp;b" data-attachment-index="2""#),
            "{resolved}"
        );
    }

    #[test]
    fn marker_text_in_content_stays_text() {
        let out = clean(r#"<p> src="x-contact-hub-remote:http://a</p>"#);
        assert!(!out.contains("<img"));
    }
}
