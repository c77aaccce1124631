//! The loss curve of a run as an SVG picture: train loss (thin) and validation loss (with
//! markers) against the step, on linear axes with labelled ticks.

use std::path::Path;

use crate::error::Result;

fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= n as f64)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + 1e-9 {
        out.push(t);
        t += step;
    }
    out
}

/// Write the picture of `train` and `val` (step, loss) series to `path`.
pub fn write_loss_svg(
    path: &Path,
    title: &str,
    train: &[(u64, f64)],
    val: &[(u64, f64)],
) -> Result<()> {
    let (w, h, ml, mr, mt, mb) = (800.0, 480.0, 70.0, 20.0, 40.0, 50.0);
    let all: Vec<&(u64, f64)> = train
        .iter()
        .chain(val)
        .filter(|p| p.1.is_finite())
        .collect();
    let xmax = all.iter().map(|p| p.0).max().unwrap_or(1).max(1) as f64;
    let ymin = all
        .iter()
        .map(|p| p.1)
        .fold(f64::INFINITY, f64::min)
        .min(f64::INFINITY);
    let ymax = all.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let (ymin, ymax) = if ymin.is_finite() && ymax > ymin {
        (ymin, ymax)
    } else {
        (0.0, 1.0)
    };
    let pad = 0.05 * (ymax - ymin);
    let (y0, y1) = (ymin - pad, ymax + pad);
    let sx = |x: f64| ml + x / xmax * (w - ml - mr);
    let sy = |y: f64| mt + (y1 - y) / (y1 - y0) * (h - mt - mb);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
        w / 2.0,
        title.replace('&', "&amp;").replace('<', "&lt;")
    );
    for t in nice_ticks(y0, y1, 6) {
        s += &format!(
            "<line x1=\"{ml}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{t:.2}</text>\n",
            w - mr,
            ml - 6.0,
            sy(t) + 4.0,
            y = sy(t)
        );
    }
    for t in nice_ticks(0.0, xmax, 8) {
        s += &format!(
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{mt}\" y2=\"{}\" stroke=\"#eee\"/><text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{t}</text>\n",
            h - mb,
            h - mb + 16.0,
            x = sx(t)
        );
    }
    s += &format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">step</text><text x=\"16\" y=\"{}\" transform=\"rotate(-90 16 {})\" text-anchor=\"middle\">loss</text>\n",
        (ml + w - mr) / 2.0,
        h - 10.0,
        h / 2.0,
        h / 2.0
    );
    let line = |pts: &[(u64, f64)], color: &str, width: f64| -> String {
        let d: Vec<String> = pts
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|p| format!("{:.1},{:.1}", sx(p.0 as f64), sy(p.1)))
            .collect();
        format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"{width}\" points=\"{}\"/>\n",
            d.join(" ")
        )
    };
    s += &line(train, "#1f77b4", 1.0);
    s += &line(val, "#d62728", 2.0);
    for p in val.iter().filter(|p| p.1.is_finite()) {
        s += &format!(
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#d62728\"/>\n",
            sx(p.0 as f64),
            sy(p.1)
        );
    }
    s += &format!(
        "<rect x=\"{}\" y=\"{}\" width=\"150\" height=\"44\" fill=\"white\" stroke=\"#999\"/><line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#1f77b4\"/><text x=\"{}\" y=\"{}\">train loss</text><line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#d62728\" stroke-width=\"2\"/><text x=\"{}\" y=\"{}\">validation loss</text>\n</svg>\n",
        w - mr - 160.0, mt + 6.0,
        w - mr - 150.0, w - mr - 120.0, mt + 20.0, mt + 20.0, w - mr - 112.0, mt + 24.0,
        w - mr - 150.0, w - mr - 120.0, mt + 38.0, mt + 38.0, w - mr - 112.0, mt + 42.0,
    );
    crate::data::fsutil::write_atomic(path, s.as_bytes())
}
