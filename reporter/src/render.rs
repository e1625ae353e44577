//! Renders a report as JSON, CSV, Markdown or HTML.

use std::fmt::Write as _;

use crate::report::{Report, Status};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Json,
    Csv,
    Markdown,
    Html,
}

/// The report in `format`.
pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(report).unwrap_or_default() + "\n",
        Format::Csv => csv(report),
        Format::Markdown => markdown(report),
        Format::Html => crate::html::report_page(report),
    }
}

/// RFC 4180 quoting.
pub fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// The CSV columns; new columns are only ever appended.
pub const CSV_HEADER: &str =
    "spec,version,requirement,component,severity,status,passes,failures,errors,skips,failure_ratio,failing_instances,last_failure,component_type\n";

fn csv(report: &Report) -> String {
    let mut out = String::from(CSV_HEADER);
    for spec in &report.specs {
        for c in &spec.cells {
            let fields = [
                spec.spec.clone(),
                spec.version.to_string(),
                c.requirement.clone(),
                c.component.clone(),
                c.severity.clone(),
                c.status.as_str().to_owned(),
                c.passes.to_string(),
                c.failures.to_string(),
                c.errors.to_string(),
                c.skips.to_string(),
                format!("{:.4}", c.failure_ratio),
                c.failing_instances.join(" "),
                c.last_failure.clone(),
                c.component_type.clone(),
            ];
            let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
            out.push_str(&line.join(","));
            out.push('\n');
        }
    }
    out
}

/// Escapes data (free text from assertions, specs and alarms) for Markdown text and table
/// cells: it must not end a cell or a line, nor become HTML, an entity, a code span or a
/// link; the backslash is escaped so it cannot undo the escapes.
fn md_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' | '|' | '`' | '[' | ']' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let s = &report.summary;
    let _ = writeln!(out, "# Compliance report\n\n{} to {}{}\n", crate::html::time(report.from_ms), crate::html::time(report.to_ms), scope_note(report));
    let _ = writeln!(out, "Overall: {:.1}% compliant ({} compliant, {} failing, {} error, {} unknown)\n",
        s.compliance_pct, s.compliant, s.failing, s.error, s.unknown);
    for spec in &report.specs {
        let _ = writeln!(out, "## {} (version {}): {:.1}% compliant\n", md_escape(&spec.spec), spec.version, spec.summary.compliance_pct);
        let _ = writeln!(out, "| requirement | component | severity | status | passes | failures | errors | failure ratio | failing instances | last failure |");
        let _ = writeln!(out, "|---|---|---|---|---:|---:|---:|---:|---|---|");
        for c in &spec.cells {
            let _ = writeln!(out, "| {} | {} | {} | {} | {} | {} | {} | {:.4} | {} | {} |", md_escape(&c.requirement), md_escape(&c.component), md_escape(&c.severity),
                c.status.as_str(), c.passes, c.failures, c.errors, c.failure_ratio, md_escape(&c.failing_instances.join(", ")), md_escape(&c.last_failure));
        }
        let _ = writeln!(out, "\n### Compliance by component type\n\n| component type | compliance | compliant | failing | error | unknown |\n|---|---:|---:|---:|---:|---:|");
        for g in &spec.component_types {
            let _ = writeln!(out, "| {} | {:.1}% | {} | {} | {} | {} |", md_escape(&g.name), g.summary.compliance_pct, g.summary.compliant, g.summary.failing, g.summary.error, g.summary.unknown);
        }
        let _ = writeln!(out, "\n### Compliance by component\n\n| component | compliance | compliant | failing | error | unknown |\n|---|---:|---:|---:|---:|---:|");
        for g in &spec.components {
            let _ = writeln!(out, "| {} | {:.1}% | {} | {} | {} | {} |", md_escape(&g.name), g.summary.compliance_pct, g.summary.compliant, g.summary.failing, g.summary.error, g.summary.unknown);
        }
        let c = &spec.coverage;
        let list = |items: &[String]| if items.is_empty() { "none".to_owned() } else { md_escape(&items.join(", ")) };
        let _ = writeln!(out, "\n### Coverage\n\n- components with nothing reported: {}\n- requirements with nothing reported: {}\n- silent agents: {}\n- agents on a stale spec version: {}",
            list(&c.unreported_components), list(&c.unreported_requirements), list(&c.silent_agents), list(&c.stale_agents));
        if !spec.history.is_empty() {
            let _ = writeln!(out, "\n### Versions published in the range\n");
            for h in &spec.history {
                let changes: Vec<String> = h.changes.iter().map(|c| format!("{} {}", c.kind, c.target)).collect();
                let _ = writeln!(out, "- version {} by {} at {}: {} ({})", h.version, md_escape(&h.author), crate::html::time(h.ts_ms),
                    md_escape(&h.comment), md_escape(&changes.join("; ")));
            }
        }
        out.push('\n');
    }
    if !report.alarms.is_empty() {
        let _ = writeln!(out, "## Alarms and waivers\n\n| time | state | severity | spec | component | requirement | summary |\n|---|---|---|---|---|---|---|");
        for a in &report.alarms {
            let _ = writeln!(out, "| {} | {} | {} | {} | {} | {} | {} |", crate::html::time(a.ts_ms), md_escape(&a.state), md_escape(&a.severity), md_escape(&a.spec),
                md_escape(&a.component), md_escape(&a.requirement), md_escape(&a.summary));
        }
        out.push('\n');
    }
    if !report.agents.is_empty() {
        let _ = writeln!(out, "## Agents\n\n| agent | component | instance | specs | last seen | state |\n|---|---|---|---|---|---|");
        for a in &report.agents {
            let specs: Vec<String> = a.specs.iter().map(|s| format!("{}@{}", s.spec, s.version)).collect();
            let state = if a.silent { "silent" } else if !a.stale_specs.is_empty() { "stale version" } else { "ok" };
            let _ = writeln!(out, "| {} | {} | {} | {} | {} | {} |", md_escape(&a.agent_id), md_escape(&a.component), md_escape(&a.instance),
                md_escape(&specs.join(", ")), crate::html::time(a.last_seen_ms), state);
        }
        out.push('\n');
    }
    out
}

fn scope_note(report: &Report) -> String {
    let mut parts = Vec::new();
    if let Some(spec) = &report.scope.spec {
        parts.push(format!("spec {}", md_escape(spec)));
    }
    if let Some(component) = &report.scope.component {
        parts.push(format!("components under {}", md_escape(component)));
    }
    if !report.scope.severities.is_empty() {
        parts.push(format!("severity {}", md_escape(&report.scope.severities.join(", "))));
    }
    if parts.is_empty() { String::new() } else { format!(" ({})", parts.join("; ")) }
}

/// The colour of a status: green compliant, red failing, amber error, grey unknown.
pub fn colour(status: Status) -> &'static str {
    match status {
        Status::Compliant => "#2e7d32",
        Status::Failing => "#c62828",
        Status::Error => "#ef8f00",
        Status::Unknown => "#9e9e9e",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Cell, Coverage, ScopeEcho, SpecReport, Summary};

    pub(crate) fn report() -> Report {
        let cell = Cell {
            requirement: "a/r".into(),
            component: "a".into(),
            component_type: "a".into(),
            severity: "major".into(),
            status: Status::Failing,
            passes: 3,
            failures: 1,
            errors: 0,
            skips: 0,
            failure_ratio: 0.25,
            last_failure: "x, \"quoted\"\nnext <b>".into(),
            failing_instances: vec!["i1".into()],
        };
        let cells = vec![cell];
        Report {
            from_ms: 0,
            to_ms: 1,
            scope: ScopeEcho { spec: None, component: None, severities: vec![] },
            summary: Summary::of(&cells),
            specs: vec![SpecReport {
                spec: "s".into(),
                version: 2,
                summary: Summary::of(&cells),
                components: crate::report::group_by(&cells, |c| &c.component),
                component_types: crate::report::group_by(&cells, |c| &c.component_type),
                coverage: Coverage::default(),
                history: vec![],
                cells,
            }],
            agents: vec![],
            alarms: vec![],
            bucket_ms: 60_000,
            timeline: vec![],
        }
    }

    #[test]
    fn csv_has_a_stable_header_and_quotes_fields() {
        let text = render(&report(), Format::Csv);
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            "spec,version,requirement,component,severity,status,passes,failures,errors,skips,failure_ratio,failing_instances,last_failure,component_type"
        );
        assert!(text.contains("s,2,a/r,a,major,failing,3,1,0,0,0.2500,i1,\"x, \"\"quoted\"\"\nnext <b>\",a\n"), "{text}");
    }

    #[test]
    fn html_colours_follow_the_status_and_escape_text() {
        let text = render(&report(), Format::Html);
        assert!(text.contains("data-status=\"failing\""));
        assert!(text.contains(colour(Status::Failing)));
        assert!(text.contains("&quot;quoted&quot;") && text.contains("&lt;b&gt;") && !text.contains("<b>"));
    }

    #[test]
    fn markdown_has_every_section() {
        let text = render(&report(), Format::Markdown);
        for section in ["# Compliance report", "## s (version 2): 0.0% compliant", "### Compliance by component type", "### Coverage"] {
            assert!(text.contains(section), "missing {section}: {text}");
        }
    }

    #[test]
    fn markdown_escapes_every_data_field() {
        let hostile = "x|y<img src=z>&amp;`code`[l](u)\\|\r\nnext";
        let escaped = "x\\|y&lt;img src=z&gt;&amp;amp;\\`code\\`\\[l\\](u)\\\\\\|  next";
        let mut report = report();
        report.scope.component = Some(hostile.into());
        let spec = &mut report.specs[0];
        spec.spec = hostile.into();
        spec.cells[0].requirement = hostile.into();
        spec.cells[0].component = hostile.into();
        spec.cells[0].last_failure = hostile.into();
        spec.components[0].name = hostile.into();
        spec.component_types[0].name = hostile.into();
        spec.coverage.unreported_components = vec![hostile.into()];
        let text = render(&report, Format::Markdown);
        for bad in ["<img", "`code`", "[l]", "\r", "y|", "&amp;amp;amp"] {
            assert!(!text.contains(bad), "{bad:?} left in: {text}");
        }
        // The heading, the scope note, the matrix row (requirement, component, last
        // failure), both group tables and the coverage list.
        assert!(text.contains(&format!("## {escaped} (version 2)")), "{text}");
        assert!(text.contains(&format!("(components under {escaped})")), "{text}");
        assert!(text.contains(&format!("| {escaped} | {escaped} | major | failing |")), "{text}");
        assert!(text.contains(&format!("| i1 | {escaped} |\n")), "{text}");
        assert_eq!(text.matches(&format!("| {escaped} | 0.0% |")).count(), 2, "{text}");
        assert!(text.contains(&format!("components with nothing reported: {escaped}\n")), "{text}");
    }

    #[test]
    fn json_has_the_documented_fields() {
        let value: serde_json::Value = serde_json::from_str(&render(&report(), Format::Json)).unwrap();
        let cell = &value["specs"][0]["cells"][0];
        let fields: Vec<&str> = cell.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            fields,
            ["component", "component_type", "errors", "failing_instances", "failure_ratio", "failures", "last_failure", "passes", "requirement", "severity", "skips", "status"]
        );
        let top: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(top, ["agents", "alarms", "bucket_ms", "from_ms", "scope", "specs", "summary", "timeline", "to_ms"]);
        let spec: Vec<&str> = value["specs"][0].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(spec, ["cells", "component_types", "components", "coverage", "history", "spec", "summary", "version"]);
        assert_eq!(value["summary"]["failing"], 1);
        assert_eq!(value["specs"][0]["component_types"][0]["name"], "a");
        assert_eq!(value["specs"][0]["component_types"][0]["compliance_pct"], 0.0);
    }
}
