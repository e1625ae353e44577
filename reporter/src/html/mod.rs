//! Server-rendered HTML: a layout, escaping, and the pieces the pages share. No script and
//! no framework; every value from data or from a request goes through [`esc`].

mod pages;

use std::fmt::Write as _;

pub use pages::*;

use crate::render::colour;
use crate::report::{Cell, GroupSummary, Report, Status, Summary};
use crate::scope::Filters;

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query string value or a path segment (RFC 3986 unreserved kept).
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Milliseconds since the epoch as an RFC 3339 time to the second, UTC; the number itself
/// when it has no such form (humantime cannot format years after 9999).
pub fn time(ms: u64) -> String {
    let mut out = String::new();
    match std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_millis(ms)) {
        Some(t) if write!(out, "{}", humantime::format_rfc3339_seconds(t)).is_ok() => out,
        _ => ms.to_string(),
    }
}

/// The query string (with its `?`) that carries `filters` to another page; empty when none.
pub fn query_string(filters: &Filters) -> String {
    let pairs = [
        ("spec", &filters.spec),
        ("component", &filters.component),
        ("since", &filters.since),
        ("from", &filters.from),
        ("to", &filters.to),
        ("severity", &filters.severity),
    ];
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_deref().filter(|v| !v.is_empty()).map(|v| format!("{k}={}", url_encode(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#222}\
header{background:#263238;color:#fff;padding:.5em 1.5em;display:flex;gap:1.5em;align-items:center;flex-wrap:wrap}\
header a{color:#fff;text-decoration:none}header .who{margin-left:auto;font-size:.9em}\
main{padding:1em 1.5em;max-width:1200px}table{border-collapse:collapse;margin:.5em 0 1em}\
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}th{background:#f5f5f5}\
.chip{display:inline-block;color:#fff;font-weight:600;padding:1px 8px;border-radius:10px;font-size:.85em}\
.req{border-left:8px solid;padding:.4em .8em;margin:.4em 0;background:#fafafa}\
.component{border:1px solid #ddd;border-radius:6px;padding:.5em 1em;margin:1em 0}\
.filters{background:#f5f5f5;padding:.5em;margin-bottom:1em}.filters input{width:9em}\
.notice{background:#e3f2fd;padding:.5em 1em}.problem{background:#ffebee;padding:.5em 1em;white-space:pre-wrap}\
code,pre,textarea{font-family:ui-monospace,monospace}textarea{width:100%;height:24em}.muted{color:#666}";

/// A whole page around `body`.
pub fn layout(title: &str, principal: Option<&str>, body: &str) -> String {
    framed(title, Some(principal), body)
}

/// [`layout`] without the log in / log out corner: for pages that do not know who asks
/// (error pages, exported reports).
pub fn layout_plain(title: &str, body: &str) -> String {
    framed(title, None, body)
}

/// `who`: `None` shows nothing, `Some(None)` the log in link, `Some(Some(name))` the name.
fn framed(title: &str, who: Option<Option<&str>>, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 2048);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{} · specaudit</title><style>{STYLE}</style></head><body><header><strong><a href=\"/\">specaudit</a></strong>\
         <a href=\"/\">overview</a><a href=\"/agents\">agents</a><a href=\"/alarms\">alarms</a><span class=\"who\">",
        esc(title)
    );
    match who {
        Some(Some(name)) => {
            let _ = write!(
                out,
                "{} <form method=\"post\" action=\"/logout\" style=\"display:inline\"><button>log out</button></form>",
                esc(name)
            );
        }
        Some(None) => out.push_str("<a href=\"/login\">log in</a>"),
        None => {}
    }
    let _ = writeln!(out, "</span></header><main>{body}</main></body></html>");
    out
}

/// The filter form; submits to `action` with GET, so filters live in the query string.
pub fn filter_form(action: &str, filters: &Filters, with_spec: bool) -> String {
    let field = |name: &str, value: &Option<String>, hint: &str| {
        format!(
            "<label>{name} <input name=\"{name}\" value=\"{}\" placeholder=\"{}\"></label> ",
            esc(value.as_deref().unwrap_or("")),
            esc(hint)
        )
    };
    let mut out = format!("<form class=\"filters\" method=\"get\" action=\"{}\">", esc(action));
    if with_spec {
        out.push_str(&field("spec", &filters.spec, "all specs"));
    }
    out.push_str(&field("component", &filters.component, "subtree, e.g. frontend"));
    out.push_str(&field("since", &filters.since, "24h"));
    out.push_str(&field("from", &filters.from, "RFC 3339 or ms"));
    out.push_str(&field("to", &filters.to, "now"));
    out.push_str(&field("severity", &filters.severity, "critical,major"));
    out.push_str("<button type=\"submit\">apply</button></form>");
    out
}

/// A coloured status label.
pub fn chip(status: Status) -> String {
    format!(
        "<span class=\"chip status-{s}\" data-status=\"{s}\" style=\"background-color:{c}\">{s}</span>",
        s = status.as_str(),
        c = colour(status)
    )
}

/// The one-line figure of a summary.
pub fn summary_line(s: &Summary) -> String {
    format!(
        "<strong class=\"compliance\">{:.1}%</strong> compliant: {} compliant, {} failing, {} error, {} unknown",
        s.compliance_pct, s.compliant, s.failing, s.error, s.unknown
    )
}

/// A table of group summaries (components or component types).
pub fn group_table(heading: &str, groups: &[GroupSummary]) -> String {
    let mut out = format!(
        "<table><tr><th>{}</th><th>compliance</th><th>compliant</th><th>failing</th><th>error</th><th>unknown</th></tr>",
        esc(heading)
    );
    for g in groups {
        let s = &g.summary;
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{:.1}%</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&g.name),
            s.compliance_pct,
            s.compliant,
            s.failing,
            s.error,
            s.unknown
        );
    }
    out.push_str("</table>");
    out
}

/// The requirement × component matrix.
pub fn cell_table(cells: &[Cell], link_spec: Option<(&str, &str)>) -> String {
    let mut out = String::from(
        "<table class=\"matrix\"><tr><th>requirement</th><th>component</th><th>severity</th><th>status</th><th>passes</th>\
         <th>failures</th><th>errors</th><th>failure ratio</th><th>failing instances</th><th>last failure</th></tr>",
    );
    for c in cells {
        let (req, comp) = match link_spec {
            Some((spec, qs)) => {
                let (path, name) = c.requirement.rsplit_once('/').unwrap_or(("", &c.requirement));
                (
                    format!(
                        "<a href=\"/specs/{}/requirements/{}/{}{}\">{}</a>",
                        url_encode(spec),
                        url_encode(path),
                        url_encode(name),
                        esc(qs),
                        esc(&c.requirement)
                    ),
                    format!(
                        "<a href=\"/specs/{}/components/{}{}\">{}</a>",
                        url_encode(spec),
                        url_encode(&c.component),
                        esc(qs),
                        esc(&c.component)
                    ),
                )
            }
            None => (esc(&c.requirement), esc(&c.component)),
        };
        let _ = write!(
            out,
            "<tr data-requirement=\"{}\" data-component=\"{}\" data-status=\"{}\"><td>{req}</td><td>{comp}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{:.4}</td><td>{}</td><td>{}</td></tr>",
            esc(&c.requirement),
            esc(&c.component),
            c.status.as_str(),
            esc(&c.severity),
            chip(c.status),
            c.passes,
            c.failures,
            c.errors,
            c.failure_ratio,
            esc(&c.failing_instances.join(", ")),
            esc(&c.last_failure)
        );
    }
    out.push_str("</table>");
    out
}

/// A standalone page of a whole report (what `report --format html` prints).
pub fn report_page(report: &Report) -> String {
    let mut body = format!(
        "<h1>Compliance report</h1><p class=\"muted\">{} to {}</p><p>{}</p>{}",
        esc(&time(report.from_ms)),
        esc(&time(report.to_ms)),
        summary_line(&report.summary),
        crate::chart::svg(&report.timeline, report.bucket_ms, report.from_ms, report.to_ms)
    );
    for spec in &report.specs {
        let _ = write!(
            body,
            "<h2>{} <small>version {}</small></h2><p>{}</p>{}{}{}",
            esc(&spec.spec),
            spec.version,
            summary_line(&spec.summary),
            group_table("component type", &spec.component_types),
            coverage_list(&spec.coverage),
            cell_table(&spec.cells, None)
        );
    }
    if !report.alarms.is_empty() {
        body.push_str("<h2>Alarms and waivers</h2>");
        body.push_str(&alarm_table(&report.alarms));
    }
    layout_plain("compliance report", &body)
}

/// The coverage of one spec as a list.
pub fn coverage_list(c: &crate::report::Coverage) -> String {
    let list = |items: &[String]| {
        if items.is_empty() {
            "none".to_owned()
        } else {
            items.iter().map(|i| format!("<code>{}</code>", esc(i))).collect::<Vec<_>>().join(", ")
        }
    };
    format!(
        "<ul class=\"coverage\"><li>components with nothing reported: {}</li><li>requirements with nothing reported: {}</li>\
         <li>silent agents: {}</li><li>agents on a stale spec version: {}</li></ul>",
        list(&c.unreported_components),
        list(&c.unreported_requirements),
        list(&c.silent_agents),
        list(&c.stale_agents)
    )
}

/// Alarm transitions and waivers.
pub fn alarm_table(alarms: &[crate::report::AlarmRecord]) -> String {
    let mut out = String::from(
        "<table class=\"alarms\"><tr><th>time</th><th>state</th><th>severity</th><th>rule</th><th>spec</th><th>component</th>\
         <th>requirement</th><th>summary</th><th>value</th></tr>",
    );
    for a in alarms {
        let _ = write!(
            out,
            "<tr data-state=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&a.state),
            esc(&time(a.ts_ms)),
            esc(&a.state),
            esc(&a.severity),
            esc(&a.rule),
            esc(&a.spec),
            esc(&a.component),
            esc(&a.requirement),
            esc(&a.summary),
            a.value
        );
    }
    out.push_str("</table>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(esc("<a href='x'>\"&"), "&lt;a href=&#39;x&#39;&gt;&quot;&amp;");
        assert_eq!(url_encode("a b/c?d=é"), "a%20b%2Fc%3Fd%3D%C3%A9");
    }

    #[test]
    fn filters_travel_in_the_query_string() {
        let filters = Filters { spec: Some("s".into()), severity: Some("critical,major".into()), ..Filters::default() };
        assert_eq!(query_string(&filters), "?spec=s&severity=critical%2Cmajor");
        assert_eq!(query_string(&Filters::default()), "");
    }

    #[test]
    fn times_are_utc_seconds() {
        assert_eq!(time(1_767_225_600_000), "2026-01-01T00:00:00Z");
        // Stored data is not checked against the scope's bound: never panic on it.
        assert_eq!(time(99_999_999_999_999_999), "99999999999999999");
        assert_eq!(time(u64::MAX), u64::MAX.to_string());
    }
}
