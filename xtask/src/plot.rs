//! Benchmark plots with plotters: an SVG and a PNG of each chart. Text is
//! laid out with ab_glyph and a TrueType font found at run time (DejaVu Sans
//! from `fonts-dejavu-core`, which `cargo xtask setup` installs), so nothing
//! is downloaded or embedded at build time.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use plotters::{
    coord::Shift,
    prelude::*,
    style::{FontStyle, register_font},
};

/// One line of a chart: name, (x, y) points, and an optional (lo, hi) range
/// per point drawn as an error bar.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub ranges: Vec<(f64, f64)>,
    pub dashed: bool,
}

pub struct LineChart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub log_x: bool,
    pub log_y: bool,
    pub series: Vec<Series>,
}

const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// Registers a TrueType font as "sans-serif" once; false if none was found.
fn font_ready() -> bool {
    static READY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *READY.get_or_init(|| {
        for f in FONTS {
            if let Ok(bytes) = std::fs::read(f) {
                // plotters keeps the font for the life of the process.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

const COLORS: [RGBColor; 5] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
];

/// Writes `<stem>.svg` and `<stem>.png`; returns the files written.
pub fn line_chart(stem: &Path, chart: &LineChart) -> Result<Vec<PathBuf>> {
    if !font_ready() {
        bail!(
            "no TrueType font for the plot labels (looked for {FONTS:?}; apt-get install fonts-dejavu-core)"
        );
    }
    if let Some(dir) = stem.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut written = Vec::new();
    let svg = stem.with_extension("svg");
    {
        let root = SVGBackend::new(&svg, (900, 560)).into_drawing_area();
        draw(&root, chart)?;
        root.present()
            .map_err(|e| anyhow!("writing {}: {e}", svg.display()))?;
    }
    written.push(svg);
    let png = stem.with_extension("png");
    {
        let root = BitMapBackend::new(&png, (900, 560)).into_drawing_area();
        draw(&root, chart)?;
        root.present()
            .map_err(|e| anyhow!("writing {}: {e}", png.display()))?;
    }
    written.push(png);
    Ok(written)
}

fn bounds(chart: &LineChart) -> ((f64, f64), (f64, f64)) {
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for s in &chart.series {
        for &(x, y) in &s.points {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        for &(lo, hi) in &s.ranges {
            y0 = y0.min(lo);
            y1 = y1.max(hi);
        }
    }
    if !x0.is_finite() {
        return ((1.0, 10.0), (0.0, 1.0));
    }
    let x = if chart.log_x {
        (x0 / 1.5, x1 * 1.5)
    } else {
        (x0, x1)
    };
    let y = if chart.log_y {
        (y0 / 1.3, y1 * 1.3)
    } else {
        (0.0, y1 * 1.12)
    };
    (x, y)
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, chart: &LineChart) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("plotting: {e:?}");
    root.fill(&WHITE).map_err(e)?;
    let ((x0, x1), (y0, y1)) = bounds(chart);
    let mut b = ChartBuilder::on(root);
    b.caption(chart.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(70);
    // Four coordinate combinations: plotters types them apart.
    macro_rules! body {
        ($ctx:expr) => {{
            let mut ctx = $ctx;
            ctx.configure_mesh()
                .x_desc(chart.x_label)
                .y_desc(chart.y_label)
                .x_label_formatter(&|x| fmt_num(*x))
                .y_label_formatter(&|y| {
                    if y1 - y0 >= 20.0 {
                        format!("{y:.0}")
                    } else {
                        format!("{y:.2}")
                    }
                })
                .label_style(("sans-serif", 14))
                .axis_desc_style(("sans-serif", 16))
                .draw()
                .map_err(e)?;
            for (i, s) in chart.series.iter().enumerate() {
                let c = COLORS[i % COLORS.len()];
                let style = c.stroke_width(2);
                let line: Vec<(f64, f64)> = s.points.clone();
                if s.dashed {
                    ctx.draw_series(DashedLineSeries::new(line.clone(), 8, 6, style))
                        .map_err(e)?
                        .label(s.name.clone())
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                        });
                } else {
                    ctx.draw_series(LineSeries::new(line.clone(), style))
                        .map_err(e)?
                        .label(s.name.clone())
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                        });
                }
                ctx.draw_series(
                    line.iter()
                        .map(|&(x, y)| Circle::new((x, y), 4, c.filled())),
                )
                .map_err(e)?;
                if s.ranges.len() == s.points.len() {
                    ctx.draw_series(s.points.iter().zip(&s.ranges).map(|(&(x, _), &(lo, hi))| {
                        PathElement::new(vec![(x, lo), (x, hi)], c.stroke_width(1))
                    }))
                    .map_err(e)?;
                }
            }
            ctx.configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .label_font(("sans-serif", 15))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(e)?;
        }};
    }
    match (chart.log_x, chart.log_y) {
        (true, true) => body!(
            b.build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
                .map_err(e)?
        ),
        (true, false) => body!(
            b.build_cartesian_2d((x0..x1).log_scale(), y0..y1)
                .map_err(e)?
        ),
        (false, true) => body!(
            b.build_cartesian_2d(x0..x1, (y0..y1).log_scale())
                .map_err(e)?
        ),
        (false, false) => body!(b.build_cartesian_2d(x0..x1, y0..y1).map_err(e)?),
    }
    Ok(())
}

/// 50000 → "50k", 1000 → "1k", 10 → "10", 0.5 → "0.5".
fn fmt_num(x: f64) -> String {
    if x >= 1000.0 && (x / 1000.0).fract().abs() < 1e-9 {
        format!("{}k", (x / 1000.0) as u64)
    } else if x >= 1000.0 {
        format!("{:.1}k", x / 1000.0)
    } else if x.fract().abs() < 1e-9 {
        format!("{}", x as i64)
    } else {
        format!("{x:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(fmt_num(50_000.0), "50k");
        assert_eq!(fmt_num(2_500.0), "2.5k");
        assert_eq!(fmt_num(10.0), "10");
    }

    #[test]
    fn writes_svg() {
        let dir = std::env::temp_dir().join(format!("l4lb-plot-{}", std::process::id()));
        let files = line_chart(
            &dir.join("t"),
            &LineChart {
                title: "t",
                x_label: "services",
                y_label: "us",
                log_x: true,
                log_y: false,
                series: vec![Series {
                    name: "a".into(),
                    points: vec![(10.0, 1.0), (1000.0, 2.0)],
                    ranges: vec![(0.9, 1.1), (1.8, 2.2)],
                    dashed: false,
                }],
            },
        )
        .unwrap();
        let svg = std::fs::read_to_string(&files[0]).unwrap();
        assert!(svg.contains("<svg") && svg.contains("services"));
        assert!(files[1].metadata().unwrap().len() > 1000);
        let _ = std::fs::remove_dir_all(dir);
    }
}
