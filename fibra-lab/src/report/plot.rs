//! SVG plots of a report (`--plots DIR`, and inline in `--report`), drawn with plotters' SVG
//! backend. No font is loaded: plotters estimates text extents itself and the SVG names the
//! generic `sans-serif` family, which every viewer resolves.

use std::fs;
use std::path::Path;

use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::table::number;
use super::{ExperimentResult, Outcome, Report};
use crate::experiments::{short_count, PlotShape, PlotSpec};
use crate::peers::Contender;

/// One rendered plot.
pub struct Plot {
    /// `<experiment>-<stem>.svg`.
    pub file_name: String,
    pub title: &'static str,
    /// The whole SVG document, starting with `<svg`.
    pub svg: String,
}

const WIDTH: u32 = 900;
/// Few enough labels that plotters puts them on powers of ten only.
const LOG_LABELS: usize = 5;
const FONT: &str = "sans-serif";

/// Every plot the report has data for, in experiment order.
pub fn render_all(report: &Report) -> Result<Vec<Plot>, String> {
    let mut plots = Vec::new();
    for result in &report.experiments {
        for spec in result.experiment.plots() {
            if let Some(plot) = render(result, spec)? {
                plots.push(plot);
            }
        }
    }
    Ok(plots)
}

/// Writes each plot to `dir` (created if missing); returns the paths written.
pub fn write_all(dir: &Path, plots: &[Plot]) -> std::io::Result<Vec<std::path::PathBuf>> {
    fs::create_dir_all(dir)?;
    plots
        .iter()
        .map(|plot| {
            let path = dir.join(&plot.file_name);
            fs::write(&path, &plot.svg)?;
            Ok(path)
        })
        .collect()
}

/// The plot of `spec`, or `None` when no contender measured the figure.
pub fn render(result: &ExperimentResult, spec: &PlotSpec) -> Result<Option<Plot>, String> {
    let data = collect(result, spec.key);
    if data.points.is_empty() {
        return Ok(None);
    }
    let mut svg = String::new();
    match spec.shape {
        PlotShape::LinesOverN => lines_over_n(&mut svg, spec, result.experiment.n_axis(), &data),
        PlotShape::Bars { log: true } => {
            let (lo, hi) = log_range(data.points.iter().flat_map(|p| [p.min, p.max]));
            // Headroom on the right for the value labels.
            bars(&mut svg, spec, &data, (lo..hi * 3.0).log_scale(), lo)
        }
        PlotShape::Bars { log: false } => {
            let hi = data.points.iter().map(|p| p.max).fold(0.0, f64::max);
            bars(&mut svg, spec, &data, 0.0..(hi * 1.25).max(1.0), 0.0)
        }
    }
    .map_err(|e| format!("plot {}: {e}", spec.title))?;
    Ok(Some(Plot {
        file_name: format!("{}-{}.svg", result.experiment.name(), spec.stem),
        title: spec.title,
        svg,
    }))
}

/// One contender's median (min–max) on one row.
struct Point {
    row: usize,
    /// The cell's params carry a case (on an N axis: a variant of another row at the same N,
    /// such as io's shared-poller rows).
    has_case: bool,
    contender: Contender,
    n: u64,
    median: f64,
    min: f64,
    max: f64,
}

/// The plotted figure of every row and contender.
struct Data {
    rows: Vec<String>,
    contenders: Vec<Contender>,
    points: Vec<Point>,
    /// (row, contender, "failed" or "skipped") where there is no point.
    missing: Vec<(usize, Contender, &'static str)>,
}

fn collect(result: &ExperimentResult, key: &str) -> Data {
    let mut data = Data {
        rows: result.rows.iter().map(|r| r.label.clone()).collect(),
        contenders: Vec::new(),
        points: Vec::new(),
        missing: Vec::new(),
    };
    for (row, r) in result.rows.iter().enumerate() {
        for cell in &r.cells {
            if !data.contenders.contains(&cell.contender) {
                data.contenders.push(cell.contender);
            }
            match &cell.outcome {
                Outcome::Ok { figures } => {
                    if let Some(s) = figures.get(key) {
                        data.points.push(Point {
                            row,
                            has_case: cell.params.case.is_some(),
                            contender: cell.contender,
                            n: cell.params.n,
                            median: s.median,
                            min: s.min,
                            max: s.max,
                        });
                    }
                }
                Outcome::Failed { .. } => data.missing.push((row, cell.contender, "failed")),
                Outcome::Skipped { .. } => {}
            }
        }
    }
    data
}

/// The same colour for a contender in every plot.
pub fn colour(contender: Contender) -> RGBColor {
    match contender {
        Contender::Fibra => RGBColor(217, 95, 2),
        Contender::FibraHyper => RGBColor(166, 118, 29),
        Contender::FibraHooks => RGBColor(230, 171, 2),
        Contender::Threads => RGBColor(27, 158, 119),
        Contender::Tokio => RGBColor(117, 112, 179),
        Contender::Go => RGBColor(231, 41, 138),
        Contender::May => RGBColor(102, 166, 30),
        Contender::Crash => RGBColor(128, 128, 128),
    }
}

/// A log axis range around the positive values, one notch wider on each side.
fn log_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| *v > 0.0 && v.is_finite())
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if hi == 0.0 {
        return (0.1, 10.0);
    }
    // At least two decades, so the axis shows two labelled powers of ten (plotters' finer
    // log ticks print the next power twice, so only powers are labelled: see LOG_LABELS).
    let widen = (100.0 / (hi / lo)).max(1.0).sqrt().max(2.0);
    (lo / widen, hi * widen)
}

fn lines_over_n(
    svg: &mut String,
    spec: &PlotSpec,
    x_desc: &str,
    data: &Data,
) -> Result<(), Box<dyn std::error::Error>> {
    let (x_lo, x_hi) = log_range(data.points.iter().map(|p| p.n as f64));
    let (y_lo, y_hi) = log_range(data.points.iter().flat_map(|p| [p.min, p.max]));
    let root = SVGBackend::with_string(svg, (WIDTH, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(spec.title, (FONT, 20))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d((x_lo..x_hi).log_scale(), (y_lo..y_hi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(format!("{} (log)", spec.axis))
        .x_labels(LOG_LABELS)
        .y_labels(LOG_LABELS)
        .x_label_formatter(&|v| short_count(v.round() as u64))
        .y_label_formatter(&|v| number(*v))
        .label_style((FONT, 13))
        .draw()?;
    for &contender in &data.contenders {
        let colour = colour(contender);
        let mut points: Vec<&Point> = data
            .points
            .iter()
            .filter(|p| p.contender == contender && p.median > 0.0 && !p.has_case)
            .collect();
        if points.is_empty() {
            continue;
        }
        points.sort_by_key(|p| p.n);
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|p| (p.n as f64, p.median)),
                colour.stroke_width(2),
            ))?
            .label(contender.name())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
        chart.draw_series(
            points
                .iter()
                .map(|p| Circle::new((p.n as f64, p.median), 4, colour.filled())),
        )?;
        chart.draw_series(points.iter().filter(|p| p.min > 0.0).map(|p| {
            let x = p.n as f64;
            PathElement::new(vec![(x, p.min), (x, p.max)], colour.stroke_width(1))
        }))?;
    }
    chart
        .configure_series_labels()
        .position(emptiest_corner(data, (x_lo, x_hi), (y_lo, y_hi)))
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// The corner of a log–log plot with the fewest points, for the legend.
fn emptiest_corner(data: &Data, x: (f64, f64), y: (f64, f64)) -> SeriesLabelPosition {
    let frac = |v: f64, (lo, hi): (f64, f64)| (v.ln() - lo.ln()) / (hi.ln() - lo.ln());
    let corners = [
        (SeriesLabelPosition::UpperLeft, false, true),
        (SeriesLabelPosition::UpperRight, true, true),
        (SeriesLabelPosition::LowerLeft, false, false),
        (SeriesLabelPosition::LowerRight, true, false),
    ];
    let crowd = |right: bool, upper: bool| {
        data.points
            .iter()
            .filter(|p| p.median > 0.0)
            .filter(|p| {
                let (fx, fy) = (frac(p.n as f64, x), frac(p.median, y));
                (if right { fx > 0.6 } else { fx < 0.4 })
                    && (if upper { fy > 0.6 } else { fy < 0.4 })
            })
            .count()
    };
    corners
        .into_iter()
        .min_by_key(|&(_, right, upper)| crowd(right, upper))
        .map_or(SeriesLabelPosition::UpperLeft, |(pos, _, _)| pos)
}

/// Horizontal bars: one band per row (label on the left), one bar per contender in it, the
/// median as the bar, min–max as a whisker, the median written at the bar's end.
fn bars<X>(
    svg: &mut String,
    spec: &PlotSpec,
    data: &Data,
    x_axis: X,
    base: f64,
) -> Result<(), Box<dyn std::error::Error>>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    const BAR_PX: u32 = 18;
    let rows = data.rows.len();
    let per_row = data.contenders.len().max(1);
    let band_px = BAR_PX * per_row as u32 + 16;
    let height = 110 + band_px * rows as u32;
    let label_px = data
        .rows
        .iter()
        .map(|l| l.chars().count() as u32 * 7 + 20)
        .max()
        .unwrap_or(60)
        .clamp(60, 360);
    let root = SVGBackend::with_string(svg, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(spec.title, (FONT, 20))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(label_px)
        .build_cartesian_2d(x_axis, 0.0..rows as f64)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_desc(spec.axis)
        .x_label_formatter(&|v| number(*v))
        .label_style((FONT, 13))
        .draw()?;

    // Row i's band is [rows-1-i, rows-i] so the first row is on top; bars inside it leave
    // a 0.1 margin above and below.
    let slot = 0.8 / per_row as f64;
    let bar_y = |row: usize, contender: Contender| {
        let j = data
            .contenders
            .iter()
            .position(|&c| c == contender)
            .unwrap_or(0);
        let top = (rows - row) as f64 - 0.1 - slot * j as f64;
        (top - slot * 0.85, top)
    };
    let value_style =
        TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for &contender in &data.contenders {
        let colour = colour(contender);
        let points: Vec<&Point> = data
            .points
            .iter()
            .filter(|p| p.contender == contender)
            .collect();
        if points.is_empty() {
            continue;
        }
        chart
            .draw_series(points.iter().map(|p| {
                let (y0, y1) = bar_y(p.row, contender);
                Rectangle::new([(base, y0), (p.median.max(base), y1)], colour.filled())
            }))?
            .label(contender.name())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], colour.filled()));
        chart.draw_series(points.iter().filter(|p| p.max > p.min).map(|p| {
            let (y0, y1) = bar_y(p.row, contender);
            let y = (y0 + y1) / 2.0;
            PathElement::new(
                vec![(p.min.max(base), y), (p.max, y)],
                BLACK.stroke_width(1),
            )
        }))?;
        for p in &points {
            let (y0, y1) = bar_y(p.row, contender);
            let (x, y) = chart.backend_coord(&(p.max.max(p.median), (y0 + y1) / 2.0));
            root.draw(&Text::new(
                number(p.median),
                (x + 5, y),
                value_style.clone(),
            ))?;
        }
    }
    let missing_style = value_style.color(&RED);
    for &(row, contender, what) in &data.missing {
        let (y0, y1) = bar_y(row, contender);
        let (x, y) = chart.backend_coord(&(base, (y0 + y1) / 2.0));
        let text = format!("{} {what}", contender.name());
        root.draw(&Text::new(text, (x + 5, y), missing_style.clone()))?;
    }
    let label_style =
        TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
    for (row, label) in data.rows.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(base, (rows - row) as f64 - 0.5));
        root.draw(&Text::new(label.clone(), (x - 8, y), label_style.clone()))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::experiments::{Experiment, Params};
    use crate::report::{CellResult, RowResult};
    use crate::stats::Summary;

    fn cell(contender: Contender, n: u64, key: &str, samples: &[f64]) -> CellResult {
        CellResult {
            contender,
            params: Params {
                n,
                workers: 1,
                pin_one_cpu: false,
                case: None,
            },
            outcome: Outcome::Ok {
                figures: BTreeMap::from([(key.to_string(), Summary::of(samples).unwrap())]),
            },
        }
    }

    fn result(experiment: Experiment, key: &str) -> ExperimentResult {
        let failed = CellResult {
            contender: Contender::Threads,
            params: Params {
                n: 10_000,
                workers: 1,
                pin_one_cpu: false,
                case: None,
            },
            outcome: Outcome::Failed {
                reason: "boom <&>".to_string(),
                reps_done: 0,
            },
        };
        ExperimentResult {
            experiment,
            description: experiment.description(),
            note: experiment.note(),
            figures: experiment.figures(),
            timeout_s: 1,
            rows: vec![
                RowResult {
                    label: "N = 1k".to_string(),
                    cells: vec![
                        cell(Contender::Fibra, 1_000, key, &[4_000.0, 4_100.0, 4_300.0]),
                        cell(Contender::Threads, 1_000, key, &[9_000.0]),
                    ],
                },
                RowResult {
                    label: "N = 10k".to_string(),
                    cells: vec![cell(Contender::Fibra, 10_000, key, &[4_200.0]), failed],
                },
            ],
        }
    }

    fn parse_svg(svg: &str) -> roxmltree::Document<'_> {
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        roxmltree::Document::parse(svg).expect("well-formed SVG")
    }

    #[test]
    fn lines_and_bars_render_well_formed_svg() {
        for (experiment, key) in [
            (Experiment::Spawn, crate::experiments::spawn::RSS_KEY),
            (Experiment::Churn, "ns_per_unit"),
        ] {
            let result = result(experiment, key);
            let spec = experiment.plots().iter().find(|s| s.key == key).unwrap();
            let plot = render(&result, spec).unwrap().expect("data to plot");
            let doc = parse_svg(&plot.svg);
            let text: String = doc
                .descendants()
                .filter_map(|n| n.text())
                .collect::<Vec<_>>()
                .join(" ");
            assert!(text.contains("fibra") && text.contains("threads"), "{text}");
            if matches!(spec.shape, PlotShape::Bars { .. }) {
                assert!(text.contains("threads failed"), "{text}");
            }
        }
    }

    #[test]
    fn nothing_to_plot_is_no_plot() {
        let result = result(Experiment::Churn, "some_other_figure");
        let spec = &Experiment::Churn.plots()[0];
        assert!(render(&result, spec).unwrap().is_none());
    }
}
