//! A self-contained SVG chart (no plotting dependency): panels stacked vertically, each with its
//! own y axis, shared x axis label, ticks at round values, grid lines, a legend and a title.
//! The run report links one showing train loss and validation bits-per-byte against step.

/// One line on a panel.
pub struct Series<'a> {
    pub name: &'a str,
    pub points: &'a [(f64, f64)],
    pub color: &'a str,
    /// Draw a marker at every point (sparse series such as evaluations).
    pub markers: bool,
}

pub struct Panel<'a> {
    pub y_label: &'a str,
    pub series: Vec<Series<'a>>,
}

/// Round tick positions covering [lo, hi]: steps of 1, 2 or 5 times a power of ten.
pub fn ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return vec![lo];
    }
    let raw = (hi - lo) / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let start = (lo / step).ceil() * step;
    let mut v = Vec::new();
    let mut x = start;
    while x <= hi + step * 1e-9 {
        v.push(if x.abs() < step * 1e-9 { 0.0 } else { x });
        x += step;
    }
    v
}

fn fmt_tick(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-2..1e4).contains(&a) {
        format!("{v:.1e}")
    } else if a >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}").trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.3}").trim_end_matches('0').to_string()
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Render the panels into one SVG document.
pub fn svg(title: &str, x_label: &str, panels: &[Panel<'_>]) -> String {
    let (w, ph, left, right, top, gap, bottom) = (820.0, 260.0, 80.0, 30.0, 50.0, 40.0, 55.0);
    let h = top + panels.len() as f64 * (ph + gap) - gap + bottom;
    let all_x: Vec<f64> =
        panels.iter().flat_map(|p| p.series.iter().flat_map(|s| s.points.iter().map(|q| q.0))).collect();
    let (x0, x1) = all_x.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
    let (x0, x1) = if x0.is_finite() && x1 > x0 { (x0, x1) } else { (0.0, 1.0) };
    let pw = w - left - right;
    let sx = |x: f64| left + (x - x0) / (x1 - x0) * pw;
    let mut o = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"28\" text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\">{}</text>\n",
        w / 2.0,
        esc(title)
    );
    for (pi, panel) in panels.iter().enumerate() {
        let py = top + pi as f64 * (ph + gap);
        let ys: Vec<f64> =
            panel.series.iter().flat_map(|s| s.points.iter().map(|q| q.1)).filter(|y| y.is_finite()).collect();
        let (mut y0, mut y1) = ys.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &y| (a.min(y), b.max(y)));
        if !(y0.is_finite() && y1.is_finite()) {
            (y0, y1) = (0.0, 1.0);
        }
        if y1 - y0 < 1e-12 {
            (y0, y1) = (y0 - 0.5, y1 + 0.5);
        }
        let pad = 0.05 * (y1 - y0);
        let (y0, y1) = (y0 - pad, y1 + pad);
        let sy = |y: f64| py + ph - (y - y0) / (y1 - y0) * ph;
        o += &format!("<rect x=\"{left}\" y=\"{py}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#444\"/>\n");
        for t in ticks(y0, y1, 6) {
            let y = sy(t);
            o += &format!(
                "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
                 <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
                left + pw,
                left - 6.0,
                y + 4.0,
                fmt_tick(t)
            );
        }
        for t in ticks(x0, x1, 8) {
            let x = sx(t);
            o += &format!("<line x1=\"{x:.1}\" y1=\"{py}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#eee\"/>\n", py + ph);
            if pi + 1 == panels.len() {
                o += &format!(
                    "<text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
                    py + ph + 16.0,
                    fmt_tick(t)
                );
            }
        }
        o += &format!(
            "<text transform=\"translate({},{}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
            20.0,
            py + ph / 2.0,
            esc(panel.y_label)
        );
        for (si, s) in panel.series.iter().enumerate() {
            let pts: Vec<String> = s
                .points
                .iter()
                .filter(|q| q.1.is_finite())
                .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
                .collect();
            if pts.len() > 1 {
                o += &format!(
                    "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\"/>\n",
                    s.color,
                    pts.join(" ")
                );
            }
            if s.markers || pts.len() == 1 {
                for p in &pts {
                    let (x, y) = p.split_once(',').unwrap();
                    o += &format!("<circle cx=\"{x}\" cy=\"{y}\" r=\"3\" fill=\"{}\"/>\n", s.color);
                }
            }
            let ly = py + 16.0 + 16.0 * si as f64;
            o += &format!(
                "<line x1=\"{}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{}\" stroke-width=\"2\"/>\
                 <text x=\"{}\" y=\"{}\">{}</text>\n",
                left + pw - 150.0,
                left + pw - 128.0,
                s.color,
                left + pw - 122.0,
                ly + 4.0,
                esc(s.name)
            );
        }
    }
    o += &format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n</svg>\n",
        left + pw / 2.0,
        h - 14.0,
        esc(x_label)
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 10.0, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let t = ticks(0.93, 3.22, 6);
        assert!(t[0] >= 0.93 && *t.last().unwrap() <= 3.22 && t.len() >= 4);
    }

    #[test]
    fn chart_has_axes_labels_and_both_series() {
        let loss: Vec<(f64, f64)> = (0..50).map(|i| (i as f64, 10.0 / (1.0 + i as f64 * 0.1))).collect();
        let bpb = [(0.0, 3.2), (25.0, 1.5), (49.0, 1.2)];
        let s = svg(
            "run",
            "step",
            &[
                Panel {
                    y_label: "train loss",
                    series: vec![Series { name: "loss", points: &loss, color: "#1f77b4", markers: false }],
                },
                Panel {
                    y_label: "val bpb",
                    series: vec![Series { name: "val bpb", points: &bpb, color: "#d62728", markers: true }],
                },
            ],
        );
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        for needle in ["train loss", "val bpb", ">step<", "polyline", "circle"] {
            assert!(s.contains(needle), "missing {needle}");
        }
    }
}
