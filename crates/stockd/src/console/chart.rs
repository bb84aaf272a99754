//! Line charts as inline SVG: a few series over time, a zero-based y axis
//! rounded to a readable maximum, a legend. Presentation attributes only (no
//! inline styles), so the content security policy stays strict.

use super::html::esc;
use chrono::{DateTime, Utc};
use std::fmt::Write;

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 180.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 22.0;
/// Series colours, distinguishable for common colour blindness.
const PALETTE: &[&str] = &[
    "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000",
];

/// What the x axis spans, which decides its labels and markers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// Samples up to now: labels "−N min" … "now", a plain line.
    Recent,
    /// One point per day: labels are the first and last day, every point
    /// marked (a single day still shows).
    Days,
}

/// One named line.
pub struct Series {
    pub name: String,
    pub points: Vec<(DateTime<Utc>, f64)>,
}

/// A readable axis maximum ≥ `max` (1, 2 or 5 × a power of ten).
fn nice_max(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    for step in [1.0, 2.0, 5.0, 10.0] {
        if step * magnitude >= max {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

/// Grid lines that land on round values: 1, 5 → fifths; 2 → quarters.
fn grid_steps(y_max: f64) -> u32 {
    let leading = y_max / 10f64.powf(y_max.log10().floor());
    if (leading - 2.0).abs() < 1e-9 {
        4
    } else {
        5
    }
}

fn label(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// The chart's SVG; `id` names it for the page and its tests.
pub fn line_chart(id: &str, title: &str, unit: &str, series: &[Series]) -> String {
    chart(id, title, unit, series, Span::Recent)
}

/// A chart of one value per day.
pub fn daily_chart(id: &str, title: &str, unit: &str, series: &[Series]) -> String {
    chart(id, title, unit, series, Span::Days)
}

fn chart(id: &str, title: &str, unit: &str, series: &[Series], span: Span) -> String {
    let mut out = String::new();
    let all = series.iter().flat_map(|s| s.points.iter());
    let (mut t0, mut t1, mut max) = (None::<DateTime<Utc>>, None::<DateTime<Utc>>, 0f64);
    let mut count = 0usize;
    for (t, v) in all {
        count += 1;
        t0 = Some(t0.map_or(*t, |x| x.min(*t)));
        t1 = Some(t1.map_or(*t, |x| x.max(*t)));
        max = max.max(*v);
    }
    let y_max = nice_max(max);
    let _ = write!(
        out,
        "<figure class=\"chart\" id=\"{id}\" data-points=\"{count}\"><figcaption>{} <span class=\"unit\">({})</span></figcaption>\
         <svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{}\" preserveAspectRatio=\"none\">",
        esc(title),
        esc(unit),
        esc(title)
    );
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let steps = grid_steps(y_max);
    for i in 0..=steps {
        let v = y_max * f64::from(i) / f64::from(steps);
        let y = TOP + plot_h - plot_h * f64::from(i) / f64::from(steps);
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\" stroke-width=\"1\"/>\
             <text x=\"{}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\" fill=\"#555\">{}</text>",
            WIDTH - RIGHT,
            LEFT - 4.0,
            y + 3.0,
            label(v)
        );
    }
    match (t0, t1) {
        (Some(start), Some(end)) => {
            let span_ms = ((end - start).num_milliseconds() as f64).max(1.0);
            let minutes = span_ms / 60_000.0;
            let (first, last) = match span {
                Span::Recent => (
                    if minutes >= 1.0 {
                        format!("−{minutes:.0} min")
                    } else {
                        format!("−{:.0} s", span_ms / 1000.0)
                    },
                    "now".to_string(),
                ),
                Span::Days => (
                    start.format("%Y-%m-%d").to_string(),
                    end.format("%Y-%m-%d").to_string(),
                ),
            };
            let _ = write!(
                out,
                "<text x=\"{LEFT}\" y=\"{}\" font-size=\"10\" fill=\"#555\">{first}</text>\
                 <text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\" fill=\"#555\">{last}</text>",
                HEIGHT - 6.0,
                WIDTH - RIGHT,
                HEIGHT - 6.0
            );
            // One day alone sits in the middle.
            let x_of = |t: &DateTime<Utc>| {
                if end == start {
                    LEFT + plot_w / 2.0
                } else {
                    LEFT + plot_w * ((*t - start).num_milliseconds() as f64 / span_ms)
                }
            };
            for (i, s) in series.iter().enumerate() {
                if s.points.is_empty() {
                    continue;
                }
                let colour = PALETTE[i % PALETTE.len()];
                out.push_str("<polyline fill=\"none\" stroke-width=\"1.5\" stroke=\"");
                out.push_str(colour);
                out.push_str("\" points=\"");
                let y_of = |v: f64| TOP + plot_h - plot_h * (v / y_max).clamp(0.0, 1.0);
                for (t, v) in &s.points {
                    let _ = write!(out, "{:.1},{:.1} ", x_of(t), y_of(*v));
                }
                out.push_str("\"/>");
                if span == Span::Days {
                    for (t, v) in &s.points {
                        let _ = write!(
                            out,
                            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{colour}\"><title>{} {}: {}</title></circle>",
                            x_of(t),
                            y_of(*v),
                            esc(&s.name),
                            t.format("%Y-%m-%d"),
                            label(*v)
                        );
                    }
                }
            }
        }
        _ => {
            let _ = write!(
                out,
                "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\" fill=\"#555\">{}</text>",
                WIDTH / 2.0,
                HEIGHT / 2.0,
                match span {
                    Span::Recent => "collecting samples…",
                    Span::Days => "no figures recorded in these days",
                }
            );
        }
    }
    out.push_str("</svg><ul class=\"legend\">");
    for (i, s) in series.iter().enumerate() {
        let last = s.points.last().map_or("–".to_string(), |(_, v)| label(*v));
        let _ = write!(
            out,
            "<li><svg width=\"10\" height=\"10\" aria-hidden=\"true\"><rect width=\"10\" height=\"10\" fill=\"{}\"/></svg> {} <b>{}</b></li>",
            PALETTE[i % PALETTE.len()],
            esc(&s.name),
            last
        );
    }
    out.push_str("</ul></figure>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(3.2), 5.0);
        assert_eq!(nice_max(120.0), 200.0);
        assert_eq!(nice_max(1000.0), 1000.0);
    }

    #[test]
    fn draws_a_line_per_series() {
        let t = Utc::now();
        let chart = line_chart(
            "c",
            "Events <per> second",
            "1/s",
            &[
                Series {
                    name: "all".into(),
                    points: vec![(t, 1.0), (t + chrono::Duration::seconds(2), 3.0)],
                },
                Series {
                    name: "none".into(),
                    points: vec![],
                },
            ],
        );
        assert_eq!(chart.matches("<polyline").count(), 1);
        assert!(chart.contains("data-points=\"2\""));
        assert!(chart.contains("Events &lt;per&gt; second"));
        let empty = line_chart("e", "x", "y", &[]);
        assert!(empty.contains("collecting samples"));
    }

    #[test]
    fn a_daily_chart_marks_each_day_and_names_the_range() {
        let day = |d: u32| {
            chrono::NaiveDate::from_ymd_opt(2026, 3, d)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc())
                .expect("a day")
        };
        let chart = daily_chart(
            "d",
            "Pushes",
            "per day",
            &[Series {
                name: "woo".into(),
                points: vec![(day(1), 10.0), (day(2), 30.0), (day(4), 20.0)],
            }],
        );
        assert_eq!(chart.matches("<circle").count(), 3);
        assert!(chart.contains(">2026-03-01<"), "{chart}");
        assert!(chart.contains(">2026-03-04<"), "{chart}");
        assert!(chart.contains("woo 2026-03-02: 30"), "{chart}");
        // A single day is drawn as a marker in the middle.
        let one = daily_chart(
            "o",
            "x",
            "y",
            &[Series {
                name: "a".into(),
                points: vec![(day(1), 1.0)],
            }],
        );
        assert!(one.contains("<circle cx=\"320.0\""), "{one}");
        assert!(daily_chart("e", "x", "y", &[]).contains("no figures recorded"));
    }
}
