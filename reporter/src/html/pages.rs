//! The pages of the web UI, from data the handlers fetched.

use std::fmt::Write as _;

use specaudit_core::spec::Spec;

use super::{cell_table, chip, esc, filter_form, query_string, summary_line, time, url_encode};
use crate::query::FailureRow;
use crate::render::colour;
use crate::report::{requirement_status, AgentState, Cell, HistoryEntry, Report, SpecReport, Status};
use crate::scope::Filters;

fn spec_href(spec: &str) -> String {
    format!("/specs/{}", url_encode(spec))
}

/// The overview: every spec in scope with its compliance, the chart, coverage at a glance.
pub fn overview(report: &Report, filters: &Filters) -> String {
    let qs = query_string(&Filters { spec: None, ..filters.clone() });
    let mut out = format!(
        "<h1>Overview</h1>{}<p class=\"muted\">{} to {}</p><p>{}</p>{}",
        filter_form("/", filters, true),
        esc(&time(report.from_ms)),
        esc(&time(report.to_ms)),
        summary_line(&report.summary),
        crate::chart::svg(&report.timeline, report.bucket_ms, report.from_ms, report.to_ms)
    );
    out.push_str(
        "<h2>Specs</h2><table class=\"specs\"><tr><th>spec</th><th>version</th><th>compliance</th><th>compliant</th><th>failing</th>\
         <th>error</th><th>unknown</th><th>unreported requirements</th><th>silent agents</th><th>stale agents</th></tr>",
    );
    for s in &report.specs {
        let _ = write!(
            out,
            "<tr data-spec=\"{n}\"><td><a href=\"{href}{qs}\">{n}</a></td><td>{}</td><td>{:.1}%</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            s.version,
            s.summary.compliance_pct,
            s.summary.compliant,
            s.summary.failing,
            s.summary.error,
            s.summary.unknown,
            s.coverage.unreported_requirements.len(),
            s.coverage.silent_agents.len(),
            s.coverage.stale_agents.len(),
            n = esc(&s.spec),
            href = spec_href(&s.spec),
            qs = esc(&qs),
        );
    }
    out.push_str("</table>");
    for s in &report.specs {
        let _ = write!(out, "<h3>{}: compliance by component type</h3>{}", esc(&s.spec), super::group_table("component type", &s.component_types));
    }
    let firing = report.alarms.iter().filter(|a| a.state == "firing").count();
    let _ = write!(
        out,
        "<p><a href=\"/alarms{qs}\">{} alarm transitions</a> in the range ({firing} firing); <a href=\"/agents{qs}\">{} agents</a>. \
         Data: <a href=\"/api/v1/report{qs}\">JSON</a> · <a href=\"/api/v1/report.csv{qs}\">CSV</a></p>",
        report.alarms.len(),
        report.agents.len(),
        qs = esc(&qs),
    );
    out
}

fn check_text(spec: &Spec, path: &str, name: &str) -> String {
    let requirement = spec.components.get(path).and_then(|c| c.requirements.get(name));
    match requirement.and_then(|r| r.check.as_ref()) {
        Some(check) => match (&check.expr, &check.schema) {
            (Some(expr), _) => format!("check: <code>{}</code>", esc(expr)),
            (None, Some(schema)) => format!("check: JSON Schema <code>{}</code>", esc(&schema.to_string())),
            _ => String::new(),
        },
        None => "asserted by the component's own code".to_owned(),
    }
}

/// The spec rendered for people, every requirement coloured by its rolled-up status.
pub fn spec_page(spec: &Spec, report: &SpecReport, whole: &Report, filters: &Filters, can_edit: bool, notice: Option<&str>) -> String {
    let name = &report.spec;
    let qs = query_string(&Filters { spec: None, ..filters.clone() });
    let mut out = String::new();
    if let Some(notice) = notice {
        let _ = write!(out, "<p class=\"notice\" id=\"notice\">{}</p>", esc(notice));
    }
    let _ = write!(
        out,
        "<h1 data-spec=\"{n}\" data-version=\"{v}\">{n} <small>version <span id=\"version\">{v}</span></small></h1><p>{}</p>\
         <p class=\"muted\">owners: {}</p><p>{}</p><p><a href=\"{href}/history\">history</a>{}\
          · <a href=\"/api/v1/report{qs_spec}\">JSON</a> · <a href=\"/api/v1/report.csv{qs_spec}\">CSV</a></p>{}{}\
         <p>{} {} {} {}</p>",
        esc(&spec.description),
        if spec.owners.is_empty() { "none (admins only)".to_owned() } else { esc(&spec.owners.join(", ")) },
        summary_line(&report.summary),
        if can_edit { format!(" · <a href=\"{}/edit\">edit</a>", spec_href(name)) } else { String::new() },
        filter_form(&spec_href(name), filters, false),
        crate::chart::svg(&whole.timeline, whole.bucket_ms, whole.from_ms, whole.to_ms),
        chip(Status::Compliant),
        chip(Status::Failing),
        chip(Status::Error),
        chip(Status::Unknown),
        n = esc(name),
        v = report.version,
        href = spec_href(name),
        qs_spec = esc(&query_string(&Filters { spec: Some(name.clone()), ..filters.clone() })),
    );
    for (path, component) in &spec.components {
        let reqs: Vec<(&String, Vec<&Cell>)> = component
            .requirements
            .keys()
            .map(|n| {
                let id = format!("{path}/{n}");
                (n, report.cells.iter().filter(|c| c.requirement == id).collect::<Vec<_>>())
            })
            .filter(|(_, cells)| !cells.is_empty())
            .collect();
        if reqs.is_empty() {
            continue;
        }
        let _ = write!(
            out,
            "<section class=\"component\" data-component=\"{p}\"><h2><a href=\"{href}/components/{pe}{qs}\">{p}</a></h2><p>{}</p>",
            esc(&component.description),
            p = esc(path),
            pe = url_encode(path),
            href = spec_href(name),
            qs = esc(&qs),
        );
        if !component.params.is_empty() {
            let _ = write!(out, "<p class=\"muted\">params: <code>{}</code></p>", esc(&serde_json::Value::Object(component.params.clone()).to_string()));
        }
        for (req_name, cells) in reqs {
            let status = requirement_status(cells.iter().copied());
            let (passes, failures, errors) =
                cells.iter().fold((0, 0, 0), |(p, f, e), c| (p + c.passes, f + c.failures, e + c.errors));
            let ratio = if passes + failures == 0 { 0.0 } else { failures as f64 / (passes + failures) as f64 };
            let id = format!("{path}/{req_name}");
            let requirement = &component.requirements[req_name];
            let _ = write!(
                out,
                "<div class=\"req\" data-requirement=\"{ide}\" data-status=\"{s}\" style=\"border-left-color:{c}\">\
                 <a href=\"{href}/requirements/{pe}/{ne}{qs}\"><strong>{n}</strong></a> {chip} <span class=\"muted\">{sev}</span>\
                 <div>{desc}</div><div class=\"muted\">{check}</div>\
                 <div class=\"figures\">{passes} passes, {failures} failures, {errors} errors, failure ratio {ratio:.4}; reported by:",
                ide = esc(&id),
                s = status.as_str(),
                c = colour(status),
                href = spec_href(name),
                pe = url_encode(path),
                ne = url_encode(req_name),
                qs = esc(&qs),
                n = esc(req_name),
                chip = chip(status),
                sev = esc(requirement.severity().as_str()),
                desc = esc(&requirement.description),
                check = check_text(spec, path, req_name),
            );
            for cell in cells {
                let _ = write!(
                    out,
                    " <span class=\"reporter\" data-component=\"{}\" data-status=\"{}\" title=\"{}\" style=\"border-bottom:3px solid {}\">{}</span>",
                    esc(&cell.component),
                    cell.status.as_str(),
                    esc(&format!("{}: {} passes, {} failures, {} errors {}", cell.status.as_str(), cell.passes, cell.failures, cell.errors, cell.last_failure)),
                    colour(cell.status),
                    esc(&cell.component)
                );
            }
            out.push_str("</div></div>");
        }
        out.push_str("</section>");
    }
    let _ = write!(out, "<h2>Coverage</h2>{}", super::coverage_list(&report.coverage));
    out
}

/// Recent failures and errors.
pub fn failure_table(rows: &[FailureRow]) -> String {
    if rows.is_empty() {
        return "<p class=\"muted\">no failures or errors in the range</p>".to_owned();
    }
    let mut out = String::from(
        "<table class=\"failures\"><tr><th>time</th><th>outcome</th><th>requirement</th><th>component</th><th>instance</th><th>task</th><th>message</th></tr>",
    );
    for r in rows {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&time(r.ts_ms)),
            esc(&r.outcome),
            esc(&r.requirement),
            esc(&r.component),
            esc(&r.instance),
            esc(&r.task),
            esc(&r.message)
        );
    }
    out.push_str("</table>");
    out
}

/// One component subtree of a spec: its cells and recent failures.
pub fn component_page(spec: &str, component: &str, report: &SpecReport, failures: &[FailureRow], filters: &Filters) -> String {
    let qs = query_string(&Filters { spec: None, component: None, ..filters.clone() });
    format!(
        "<h1><a href=\"{href}{qs}\">{s}</a> / {c}</h1>{form}<p>{}</p>{}<h2>Requirements</h2>{}<h2>Recent failures</h2>{}",
        summary_line(&report.summary),
        super::group_table("component", &report.components),
        cell_table(&report.cells, Some((spec, &qs))),
        failure_table(failures),
        href = spec_href(spec),
        qs = esc(&qs),
        s = esc(spec),
        c = esc(component),
        form = filter_form(&format!("{}/components/{}", spec_href(spec), url_encode(component)), &Filters { component: None, ..filters.clone() }, false),
    )
}

/// One requirement: its definition, its cells, its recent failures.
pub fn requirement_page(spec: &Spec, id: &str, cells: &[Cell], failures: &[FailureRow], filters: &Filters) -> String {
    let (path, name) = id.rsplit_once('/').unwrap_or(("", id));
    let requirement = spec.components.get(path).and_then(|c| c.requirements.get(name));
    let status = requirement_status(cells);
    let qs = query_string(&Filters { spec: None, ..filters.clone() });
    format!(
        "<h1><a href=\"{href}{qs}\">{s}</a> / {i}</h1><div class=\"req\" data-requirement=\"{i}\" data-status=\"{st}\" style=\"border-left-color:{c}\">\
         {chip} <span class=\"muted\">{sev}</span><div>{desc}</div><div class=\"muted\">{check}</div></div>{form}\
         <h2>By component</h2>{table}<h2>Recent failures</h2>{fail}",
        href = spec_href(&spec.spec),
        qs = esc(&qs),
        s = esc(&spec.spec),
        i = esc(id),
        st = status.as_str(),
        c = colour(status),
        chip = chip(status),
        sev = esc(requirement.map(|r| r.severity().as_str()).unwrap_or("")),
        desc = esc(requirement.map(|r| r.description.as_str()).unwrap_or("")),
        check = check_text(spec, path, name),
        form = filter_form(&format!("{}/requirements/{}/{}", spec_href(&spec.spec), url_encode(path), url_encode(name)), filters, false),
        table = cell_table(cells, Some((&spec.spec, &qs))),
        fail = failure_table(failures),
    )
}

/// Agents with the spec versions they run and when they were last heard of.
pub fn agents_page(agents: &[AgentState], latest: &std::collections::BTreeMap<String, u64>, filters: &Filters) -> String {
    let mut out = format!(
        "<h1>Agents</h1>{}<table class=\"agents\"><tr><th>agent</th><th>component</th><th>instance</th><th>specs (version in use / latest)</th>\
         <th>last seen</th><th>started</th><th>sdk</th><th>state</th></tr>",
        filter_form("/agents", filters, true)
    );
    for a in agents {
        let specs: Vec<String> = a
            .specs
            .iter()
            .map(|s| match latest.get(&s.spec) {
                Some(l) if *l != s.version => format!("{} {} / {}", esc(&s.spec), s.version, l),
                _ => format!("{} {}", esc(&s.spec), s.version),
            })
            .collect();
        let state = if a.silent {
            "silent"
        } else if !a.stale_specs.is_empty() {
            "stale version"
        } else {
            "ok"
        };
        let _ = write!(
            out,
            "<tr data-agent=\"{}\" data-state=\"{state}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{state}</td></tr>",
            esc(&a.agent_id),
            esc(&a.agent_id),
            esc(&a.component),
            esc(&a.instance),
            specs.join("<br>"),
            esc(&time(a.last_seen_ms)),
            esc(&time(a.started_at_ms)),
            esc(&a.sdk_version)
        );
    }
    out.push_str("</table>");
    out
}

/// Alarm transitions and waivers in the range.
pub fn alarms_page(report: &Report, filters: &Filters) -> String {
    format!("<h1>Alarms and waivers</h1>{}{}", filter_form("/alarms", filters, true), super::alarm_table(&report.alarms))
}

/// Every version of a spec, newest first, with requirement-level changes and authors.
pub fn history_page(spec: &str, entries: &[HistoryEntry]) -> String {
    let mut out = format!("<h1><a href=\"{}\">{}</a>: history</h1>", spec_href(spec), esc(spec));
    for h in entries.iter().rev() {
        let _ = write!(
            out,
            "<section class=\"version\" data-version=\"{}\"><h2>version {}{}</h2><p>by <strong class=\"author\">{}</strong> at {}: {}</p><ul>",
            h.version,
            h.version,
            if h.deleted { " (deleted)" } else { "" },
            esc(&h.author),
            esc(&time(h.ts_ms)),
            esc(&h.comment)
        );
        for c in &h.changes {
            let fields = if c.fields.is_empty() { String::new() } else { format!(": {}", esc(&c.fields.join(", "))) };
            let _ = write!(out, "<li class=\"change-{k}\">{k} <code>{}</code>{fields}</li>", esc(&c.target), k = c.kind);
        }
        if h.changes.is_empty() {
            out.push_str("<li class=\"muted\">no requirement changed</li>");
        }
        out.push_str("</ul></section>");
    }
    out
}

/// The edit forms: a full replace and a JSON Patch, both against the version shown.
pub fn edit_page(spec: &str, version: u64, document: &str, problem: Option<&str>) -> String {
    let action = format!("{}/edit", spec_href(spec));
    let mut out = format!("<h1><a href=\"{}\">{}</a>: edit version {version}</h1>", spec_href(spec), esc(spec));
    if let Some(problem) = problem {
        let _ = write!(out, "<div class=\"problem\" id=\"problem\">{}</div>", esc(problem));
    }
    let _ = write!(
        out,
        "<h2>Change with a JSON Patch (RFC 6902)</h2><form method=\"post\" action=\"{a}\" id=\"patch-form\">\
         <input type=\"hidden\" name=\"mode\" value=\"patch\"><input type=\"hidden\" name=\"expect_version\" value=\"{version}\">\
         <textarea name=\"patch\" id=\"patch\" style=\"height:8em\" placeholder='[{{\"op\": \"replace\", \"path\": \"/components/frontend/requirements/tls-min-version/severity\", \"value\": \"major\"}}]'></textarea>\
         <label>comment <input name=\"comment\" id=\"patch-comment\" style=\"width:30em\"></label> <button type=\"submit\" id=\"patch-submit\">publish</button></form>\
         <h2>Replace the whole spec (YAML or JSON)</h2><form method=\"post\" action=\"{a}\" id=\"replace-form\">\
         <input type=\"hidden\" name=\"mode\" value=\"replace\"><input type=\"hidden\" name=\"expect_version\" value=\"{version}\">\
         <textarea name=\"document\" id=\"document\">{doc}</textarea>\
         <label>comment <input name=\"comment\" style=\"width:30em\"></label> <button type=\"submit\">publish</button></form>",
        a = esc(&action),
        doc = esc(document),
    );
    out
}

/// The login form: the token is sent once and kept in an HttpOnly cookie.
pub fn login_page(problem: Option<&str>) -> String {
    let mut out = String::from("<h1>Log in</h1>");
    if let Some(problem) = problem {
        let _ = write!(out, "<p class=\"problem\" id=\"problem\">{}</p>", esc(problem));
    }
    out.push_str(
        "<form method=\"post\" action=\"/login\" id=\"login\"><label>token <input type=\"password\" name=\"token\" id=\"token\" \
         autocomplete=\"current-password\" style=\"width:30em\"></label> <button type=\"submit\" id=\"login-submit\">log in</button></form>\
         <p class=\"muted\">The token is kept in an HttpOnly, SameSite=Strict cookie for this site; API clients send it as \
         <code>Authorization: Bearer …</code>.</p>",
    );
    out
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::report::{cells, group_by, Coverage, Observed, ScopeEcho, Summary};
    use crate::scope::Scope;

    const SPEC: &str = "apiVersion: specaudit/v1\nspec: s\ncomponents:\n  a:\n    description: \"<script>alert(1)</script>\"\n    requirements:\n      ok: {}\n      bad: {}\n      err: {}\n      none: {}\n";

    #[test]
    fn every_requirement_wears_the_colour_of_its_status_and_text_is_escaped() {
        let spec = Spec::parse(SPEC).unwrap();
        let scope = Scope { spec: None, component: None, from_ms: 0, to_ms: 60_000, severities: vec![] };
        let seen = |passes, failures, errors| Observed { severity: "major".into(), passes, failures, errors, ..Observed::default() };
        let observed = BTreeMap::from([
            (("a/ok".to_owned(), "a".to_owned()), seen(3, 0, 0)),
            (("a/bad".to_owned(), "a".to_owned()), seen(3, 1, 0)),
            (("a/err".to_owned(), "a".to_owned()), seen(3, 0, 1)),
        ]);
        let cells = cells(&spec, &scope, &observed, &BTreeSet::new());
        let spec_report = SpecReport {
            spec: "s".into(),
            version: 7,
            summary: Summary::of(&cells),
            components: group_by(&cells, |c| &c.component),
            component_types: group_by(&cells, |c| &c.component_type),
            coverage: Coverage::default(),
            history: vec![],
            cells,
        };
        let whole = Report {
            from_ms: 0,
            to_ms: 60_000,
            scope: ScopeEcho { spec: None, component: None, severities: vec![] },
            summary: spec_report.summary.clone(),
            specs: vec![],
            agents: vec![],
            alarms: vec![],
            bucket_ms: 60_000,
            timeline: vec![],
        };
        let page = spec_page(&spec, &spec_report, &whole, &Filters::default(), false, Some("version <8> was published"));
        for (id, status) in [("a/ok", Status::Compliant), ("a/bad", Status::Failing), ("a/err", Status::Error), ("a/none", Status::Unknown)] {
            let div = format!("data-requirement=\"{id}\" data-status=\"{}\" style=\"border-left-color:{}\"", status.as_str(), colour(status));
            assert!(page.contains(&div), "{id}: {page}");
        }
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !page.contains("<script>"));
        assert!(page.contains("version &lt;8&gt; was published"));
        assert!(page.contains("<span id=\"version\">7</span>"));
        assert!(!page.contains("/edit\""), "no editor link without the right to edit");
    }
}
