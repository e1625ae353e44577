//! The pass/fail-over-time chart as inline SVG: one stacked bar per bucket (passes green,
//! errors amber, failures red), no script, so it renders anywhere a page does.

use std::fmt::Write as _;

use crate::html::{esc, time};
use crate::render::colour;
use crate::report::{Bucket, Status};

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 160.0;
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 20.0;

/// The chart of `buckets` (each `bucket_ms` wide) over `[from_ms, to_ms]`.
pub fn svg(buckets: &[Bucket], bucket_ms: u64, from_ms: u64, to_ms: u64) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
         role=\"img\" aria-label=\"passes, errors and failures over time\">",
        w = WIDTH,
        h = HEIGHT
    );
    let plot_w = WIDTH - LEFT - 4.0;
    let plot_h = HEIGHT - BOTTOM - 8.0;
    let span = (to_ms.saturating_sub(from_ms)).max(bucket_ms.max(1)) as f64;
    let max = buckets.iter().map(|b| b.passes + b.failures + b.errors).max().unwrap_or(0);
    let _ = write!(
        out,
        "<line x1=\"{LEFT}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\" stroke=\"#999\"/>\
         <text x=\"{tx}\" y=\"14\" font-size=\"10\" text-anchor=\"end\">{max}</text>\
         <text x=\"{tx}\" y=\"{y}\" font-size=\"10\" text-anchor=\"end\">0</text>",
        y = 8.0 + plot_h,
        x2 = LEFT + plot_w,
        tx = LEFT - 4.0,
    );
    if max == 0 {
        let _ = write!(out, "<text x=\"{}\" y=\"{}\" font-size=\"12\" fill=\"#666\">nothing reported in this range</text>", LEFT + 8.0, HEIGHT / 2.0);
    }
    let bar_w = (plot_w * bucket_ms as f64 / span).max(1.0);
    for b in buckets {
        let x = LEFT + plot_w * (b.start_ms.saturating_sub(from_ms)) as f64 / span;
        if x > LEFT + plot_w || max == 0 || b.passes + b.failures + b.errors == 0 {
            continue;
        }
        // One group per bar, with one tooltip for its three counts.
        let _ = write!(
            out,
            "<g><title>{}: {} passes, {} errors, {} failures</title>",
            esc(&time(b.start_ms)),
            b.passes,
            b.errors,
            b.failures
        );
        let mut y = 8.0 + plot_h;
        for (count, status) in [(b.passes, Status::Compliant), (b.errors, Status::Error), (b.failures, Status::Failing)] {
            if count == 0 {
                continue;
            }
            let h = plot_h * count as f64 / max as f64;
            y -= h;
            let _ = write!(
                out,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"{c}\"/>",
                w = (bar_w - 0.5).max(0.5),
                c = colour(status),
            );
        }
        out.push_str("</g>");
    }
    let _ = write!(
        out,
        "<text x=\"{LEFT}\" y=\"{ly}\" font-size=\"10\">{from}</text><text x=\"{rx}\" y=\"{ly}\" font-size=\"10\" text-anchor=\"end\">{to}</text></svg>",
        ly = HEIGHT - 4.0,
        rx = LEFT + plot_w,
        from = esc(&time(from_ms)),
        to = esc(&time(to_ms)),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_are_stacked_in_the_status_colours() {
        let buckets = [
            Bucket { start_ms: 0, passes: 8, failures: 2, errors: 0 },
            Bucket { start_ms: 60_000, passes: 5, failures: 0, errors: 5 },
        ];
        let svg = svg(&buckets, 60_000, 0, 120_000);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<rect").count(), 4);
        assert!(svg.contains(colour(Status::Failing)) && svg.contains(colour(Status::Error)));
        assert!(svg.contains(">10</text>"), "the axis shows the tallest bar");
    }

    #[test]
    fn an_empty_range_says_so() {
        assert!(svg(&[], 60_000, 0, 60_000).contains("nothing reported"));
    }
}
