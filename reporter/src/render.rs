//! Renders a report as JSON, CSV, Markdown or HTML.

use std::fmt::Write as _;

use crate::report::{Report, Status};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Csv,
    Markdown,
    Html,
}

pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(report).unwrap_or_default() + "\n",
        Format::Csv => csv(report),
        Format::Markdown => markdown(report),
        Format::Html => html(report),
    }
}

/// RFC 4180 quoting.
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

fn csv(report: &Report) -> String {
    let mut out = String::from(
        "spec,version,requirement,component,severity,status,passes,failures,errors,skips,failure_ratio,failing_instances,last_failure\n",
    );
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
            ];
            let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
            out.push_str(&line.join(","));
            out.push('\n');
        }
    }
    out
}

fn md_escape(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Compliance report\n\nOverall: {:.1}% compliant ({} compliant, {} failing, {} error, {} unknown)\n",
        report.summary.compliance_pct, report.summary.compliant, report.summary.failing, report.summary.error, report.summary.unknown);
    for spec in &report.specs {
        let _ = writeln!(out, "## {} (version {}): {:.1}% compliant\n", spec.spec, spec.version, spec.summary.compliance_pct);
        let _ = writeln!(out, "| requirement | component | severity | status | passes | failures | errors | failing instances | last failure |");
        let _ = writeln!(out, "|---|---|---|---|---:|---:|---:|---|---|");
        for c in &spec.cells {
            let _ = writeln!(out, "| {} | {} | {} | {} | {} | {} | {} | {} | {} |", c.requirement, c.component, c.severity,
                c.status.as_str(), c.passes, c.failures, c.errors, md_escape(&c.failing_instances.join(", ")), md_escape(&c.last_failure));
        }
        out.push('\n');
    }
    out
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
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

fn html(report: &Report) -> String {
    let mut out = String::from("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>specaudit compliance</title>\n<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:4px 8px}.status{color:#fff;font-weight:bold}</style></head><body>\n");
    let _ = writeln!(out, "<h1>Compliance: {:.1}%</h1>", report.summary.compliance_pct);
    for spec in &report.specs {
        let _ = writeln!(out, "<h2>{} <small>version {}</small>: {:.1}%</h2>", html_escape(&spec.spec), spec.version, spec.summary.compliance_pct);
        out.push_str("<table><tr><th>requirement</th><th>component</th><th>severity</th><th>status</th><th>passes</th><th>failures</th><th>errors</th><th>last failure</th></tr>\n");
        for c in &spec.cells {
            let _ = writeln!(out, "<tr data-status=\"{s}\"><td>{}</td><td>{}</td><td>{}</td><td class=\"status\" style=\"background:{}\">{s}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                html_escape(&c.requirement), html_escape(&c.component), html_escape(&c.severity), colour(c.status), c.passes, c.failures, c.errors, html_escape(&c.last_failure), s = c.status.as_str());
        }
        out.push_str("</table>\n");
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Cell, SpecReport, Summary};

    fn report() -> Report {
        let cell = Cell {
            requirement: "a/r".into(),
            component: "a".into(),
            severity: "major".into(),
            status: Status::Failing,
            passes: 3,
            failures: 1,
            errors: 0,
            skips: 0,
            failure_ratio: 0.25,
            last_failure: "x, \"quoted\"\nnext".into(),
            failing_instances: vec!["i1".into()],
        };
        let cells = vec![cell];
        Report {
            from_ms: 0,
            to_ms: 1,
            summary: Summary::of(&cells),
            specs: vec![SpecReport { spec: "s".into(), version: 2, summary: Summary::of(&cells), cells }],
        }
    }

    #[test]
    fn csv_has_a_stable_header_and_quotes_fields() {
        let text = render(&report(), Format::Csv);
        let mut lines = text.lines();
        assert_eq!(lines.next().unwrap(), "spec,version,requirement,component,severity,status,passes,failures,errors,skips,failure_ratio,failing_instances,last_failure");
        assert!(text.contains("s,2,a/r,a,major,failing,3,1,0,0,0.2500,i1,\"x, \"\"quoted\"\"\nnext\""), "{text}");
    }

    #[test]
    fn html_colours_follow_the_status() {
        let text = render(&report(), Format::Html);
        assert!(text.contains("data-status=\"failing\""));
        assert!(text.contains(colour(Status::Failing)));
        assert!(text.contains("&quot;quoted&quot;"));
    }

    #[test]
    fn json_has_the_documented_fields() {
        let value: serde_json::Value = serde_json::from_str(&render(&report(), Format::Json)).unwrap();
        let cell = &value["specs"][0]["cells"][0];
        for field in ["requirement", "component", "severity", "status", "passes", "failures", "errors", "failure_ratio", "last_failure", "failing_instances"] {
            assert!(cell.get(field).is_some(), "missing {field}");
        }
        assert_eq!(value["summary"]["failing"], 1);
    }
}
