//! SVG charts of load-test results, for `docs/benchmarks.md` and for people reading a `compare`.
//!
//! Takes the JSON lines the loadtest prints (per-run `"kind":"run"` lines, which name their server when
//! `compare` ran them, and `"kind":"compare"` summaries), takes the median of each figure per server
//! across repeats, and draws one grouped bar chart per scenario with plotters' SVG backend: Switchboard
//! next to Node on the headline figures, each bar labelled with its value, each figure with the
//! Switchboard / Node ratio under it. Figures of different units get their own panel, so no bar is read
//! against another unit's axis. Scenarios without a layout here are skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::Value;

use crate::compare::median;

/// Width of every chart in pixels: fits GitHub's markdown column without scaling the text down much.
pub(crate) const WIDTH: u32 = 720;
/// Height of every chart in pixels.
const HEIGHT: u32 = 360;

/// Why charts could not be written, so the command line can say which input or file is at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChartError {
    /// Nothing in the input was a run or comparison of a scenario that has a chart.
    #[error("no results to chart ({0})")]
    NoData(String),
    /// An input line is not JSON.
    #[error("{path}:{line}: not a JSON line: {source}")]
    Parse {
        /// The input file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// What serde_json said.
        source: serde_json::Error,
    },
    /// The input could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The input file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A chart could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The output file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// plotters failed while drawing.
    #[error("cannot draw the {scenario} chart: {message}")]
    Draw {
        /// The scenario being drawn.
        scenario: String,
        /// plotters' error, as text (its type is generic over the backend).
        message: String,
    },
}

/// One drawn chart, so callers can write it where they like or test it without files.
#[derive(Debug, Clone)]
pub struct Chart {
    /// The scenario charted; also the file stem `write_charts` uses.
    pub scenario: String,
    /// The SVG document.
    pub svg: String,
}

/// Reads a file of JSON lines (what `compare` prints on stdout), skipping blank lines.
pub fn read_json_lines(path: &Path) -> Result<Vec<Value>, ChartError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ChartError::Read { path: path.to_owned(), source })?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|source| ChartError::Parse {
                path: path.to_owned(),
                line: i + 1,
                source,
            })
        })
        .collect()
}

/// Draws the charts and writes `<scenario>.svg` files into `out_dir` (created if missing).
pub fn write_charts(lines: &[Value], out_dir: &Path) -> Result<Vec<PathBuf>, ChartError> {
    let charts = render(lines)?;
    std::fs::create_dir_all(out_dir)
        .map_err(|source| ChartError::Write { path: out_dir.to_owned(), source })?;
    let mut paths = Vec::with_capacity(charts.len());
    for chart in charts {
        let path = out_dir.join(format!("{}.svg", chart.scenario));
        std::fs::write(&path, chart.svg)
            .map_err(|source| ChartError::Write { path: path.clone(), source })?;
        paths.push(path);
    }
    Ok(paths)
}

/// Draws one chart per charted scenario found in `lines`, in a fixed scenario order.
///
/// Per-run lines win over `compare` summaries of the same scenario (the medians are the same, and runs
/// also carry the parameters); of several summaries of one scenario, the last is used.
pub fn render(lines: &[Value]) -> Result<Vec<Chart>, ChartError> {
    let mut charts = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    for line in lines {
        let Some(scenario) = line.get("scenario").and_then(Value::as_str) else { continue };
        if layout(scenario).is_none() && !skipped.iter().any(|s| s == scenario) {
            skipped.push(scenario.to_owned());
        }
    }
    for layout in LAYOUTS {
        let Some(data) = ScenarioData::collect(layout.scenario, lines) else { continue };
        if let Some(svg) = draw(layout, &data)? {
            charts.push(Chart { scenario: layout.scenario.to_owned(), svg });
        }
    }
    if charts.is_empty() {
        let why = if lines.is_empty() {
            "the input is empty".to_owned()
        } else if skipped.is_empty() {
            "no run or compare line has the charted figures".to_owned()
        } else {
            format!("no chart for scenario {}", skipped.join(", "))
        };
        return Err(ChartError::NoData(why));
    }
    Ok(charts)
}

/// A chart's layout: which figures, grouped into panels of one unit each.
struct Layout {
    scenario: &'static str,
    panels: &'static [Panel],
}

/// Bars sharing one y axis.
struct Panel {
    title: &'static str,
    unit: &'static str,
    /// (figure name in the JSON, label under its group of bars; empty for a panel of one figure).
    figures: &'static [(&'static str, &'static str)],
}

const ECHO_PANELS: &[Panel] = &[
    Panel {
        title: "server CPU per million round trips",
        unit: "CPU seconds",
        figures: &[("server_cpu_s_per_million", "")],
    },
    Panel {
        title: "latency from scheduled send",
        unit: "ms",
        figures: &[("latency_p50_ms", "p50"), ("latency_p99_ms", "p99"), ("latency_p999_ms", "p99.9")],
    },
];

const LAYOUTS: &[Layout] = &[
    Layout {
        scenario: "connect",
        panels: &[
            Panel { title: "time to connect all", unit: "seconds", figures: &[("connect_time_s", "")] },
            Panel {
                title: "handshake latency",
                unit: "ms",
                figures: &[("connect_p50_ms", "p50"), ("connect_p99_ms", "p99")],
            },
            Panel {
                title: "server RSS per connection",
                unit: "KiB",
                figures: &[("rss_per_connection_kib", "")],
            },
        ],
    },
    Layout { scenario: "echo", panels: ECHO_PANELS },
    Layout { scenario: "polling", panels: ECHO_PANELS },
    Layout {
        scenario: "fanout",
        panels: &[
            Panel {
                title: "deliveries per second",
                unit: "deliveries/s",
                figures: &[("deliveries_per_s", "")],
            },
            Panel {
                title: "server CPU per million deliveries",
                unit: "CPU seconds",
                figures: &[("server_cpu_s_per_million_deliveries", "")],
            },
            Panel {
                title: "latency send → receive",
                unit: "ms",
                figures: &[
                    ("latency_p50_ms", "p50"),
                    ("latency_p99_ms", "p99"),
                    ("latency_p999_ms", "p99.9"),
                ],
            },
        ],
    },
];

fn layout(scenario: &str) -> Option<&'static Layout> {
    LAYOUTS.iter().find(|l| l.scenario == scenario)
}

/// One server's medians in one scenario.
struct Series {
    server: String,
    runs: u32,
    figures: BTreeMap<String, f64>,
    failures: u64,
    incomplete: u32,
}

impl Series {
    fn label(&self) -> &str {
        match self.server.as_str() {
            "switchboard" => "Switchboard",
            "node" => "Node socket.io",
            other => other,
        }
    }

    fn color(&self, index: usize) -> &'static RGBColor {
        match self.server.as_str() {
            "switchboard" => &SWITCHBOARD_COLOR,
            "node" => &NODE_COLOR,
            _ => &OTHER_COLORS[index % OTHER_COLORS.len()],
        }
    }
}

pub(crate) const SWITCHBOARD_COLOR: RGBColor = RGBColor(0xd9, 0x5f, 0x0e);
const NODE_COLOR: RGBColor = RGBColor(0x3c, 0x87, 0x3a);
pub(crate) const OTHER_COLORS: [RGBColor; 3] =
    [RGBColor(0x44, 0x77, 0xaa), RGBColor(0x88, 0x44, 0xaa), RGBColor(0x66, 0x66, 0x66)];
pub(crate) const TEXT: RGBColor = RGBColor(0x22, 0x22, 0x22);
pub(crate) const MUTED: RGBColor = RGBColor(0x55, 0x55, 0x55);
pub(crate) const ALERT: RGBColor = RGBColor(0xc0, 0x10, 0x10);
pub(crate) const GRID: RGBColor = RGBColor(0xdd, 0xdd, 0xdd);

/// Everything one scenario's chart shows.
struct ScenarioData {
    /// Switchboard first, then Node, then any other server in input order.
    series: Vec<Series>,
    /// The first run's parameters, when the input has runs.
    params: Option<Value>,
}

impl ScenarioData {
    fn collect(scenario: &str, lines: &[Value]) -> Option<Self> {
        let of_scenario = |kind: &'static str| {
            lines.iter().filter(move |l| {
                l.get("kind").and_then(Value::as_str) == Some(kind)
                    && l.get("scenario").and_then(Value::as_str) == Some(scenario)
            })
        };
        let mut data = Self::from_runs(of_scenario("run"))
            .or_else(|| of_scenario("compare").next_back().and_then(Self::from_compare))?;
        data.series.sort_by_key(|s| match s.server.as_str() {
            "switchboard" => 0,
            "node" => 1,
            _ => 2,
        });
        Some(data)
    }

    fn from_runs<'a>(runs: impl Iterator<Item = &'a Value>) -> Option<Self> {
        let mut grouped: Vec<(String, Vec<&Value>)> = Vec::new();
        let mut params = None;
        for run in runs {
            let server =
                run.get("server").and_then(Value::as_str).map_or_else(|| unnamed(run), str::to_owned);
            params = params.or_else(|| run.get("params").cloned());
            match grouped.iter_mut().find(|(s, _)| *s == server) {
                Some((_, list)) => list.push(run),
                None => grouped.push((server, vec![run])),
            }
        }
        let series: Vec<Series> = grouped
            .into_iter()
            .map(|(server, runs)| {
                let mut values: BTreeMap<String, Vec<f64>> = BTreeMap::new();
                for run in &runs {
                    for (name, v) in number_map(run.get("figures")) {
                        values.entry(name).or_default().push(v);
                    }
                }
                Series {
                    server,
                    runs: runs.len() as u32,
                    figures: values.into_iter().filter_map(|(n, v)| Some((n, median(&v)?))).collect(),
                    failures: runs
                        .iter()
                        .map(|r| number_map(r.get("failures")).map(|(_, v)| v).sum::<f64>())
                        .sum::<f64>() as u64,
                    incomplete: runs
                        .iter()
                        .filter(|r| r.get("complete").and_then(Value::as_bool) == Some(false))
                        .count() as u32,
                }
            })
            .collect();
        (!series.is_empty()).then_some(Self { series, params })
    }

    fn from_compare(line: &Value) -> Option<Self> {
        let runs = line.get("repeats").and_then(Value::as_u64).unwrap_or(1) as u32;
        let series: Vec<Series> = ["switchboard", "node"]
            .into_iter()
            .filter_map(|server| {
                let figures: BTreeMap<String, f64> = number_map(line.get(server)).collect();
                let failures = line.pointer(&format!("/failures/{server}"));
                let incomplete = line.pointer(&format!("/incomplete_runs/{server}")).and_then(Value::as_u64);
                (!figures.is_empty()).then(|| Series {
                    server: server.to_owned(),
                    runs,
                    figures,
                    failures: number_map(failures).map(|(_, v)| v).sum::<f64>() as u64,
                    incomplete: incomplete.unwrap_or(0) as u32,
                })
            })
            .collect();
        (!series.is_empty()).then_some(Self { series, params: None })
    }

    /// Switchboard / Node for one figure, when both have it and Node's is not zero.
    fn ratio(&self, figure: &str) -> Option<f64> {
        let value =
            |server: &str| self.series.iter().find(|s| s.server == server)?.figures.get(figure).copied();
        let (s, n) = (value("switchboard")?, value("node")?);
        (n != 0.0).then(|| s / n)
    }

    fn has_both(&self) -> bool {
        ["switchboard", "node"].iter().all(|name| self.series.iter().any(|s| s.server == *name))
    }

    /// A parameter, from the runs' `params` or else from a figure that echoes it.
    fn param(&self, key: &str, figure: &str) -> Option<f64> {
        self.params
            .as_ref()
            .and_then(|p| p.get(key))
            .and_then(Value::as_f64)
            .or_else(|| self.series.iter().find_map(|s| s.figures.get(figure).copied()))
    }

    /// The sizes of the run, in words.
    fn describe(&self, scenario: &str) -> String {
        let mut parts = Vec::new();
        let mut part = |value: Option<f64>, text: &dyn Fn(String) -> String| {
            if let Some(v) = value {
                parts.push(text(thousands(v)));
            }
        };
        match scenario {
            "connect" => {
                part(self.param("connections", "connections"), &|v| format!("{v} connections"));
                part(self.param("hold", "held_s"), &|v| format!("held {v} s"));
            }
            "fanout" => {
                let receivers = self.series.iter().find_map(|s| s.figures.get("receivers").copied());
                part(receivers.or_else(|| self.param("connections", "")), &|v| format!("{v} receivers"));
                part(self.param("messages", "published"), &|v| format!("{v} broadcasts"));
                part(self.param("payload", ""), &|v| format!("{v} B"));
                part(self.param("window", ""), &|v| format!("window {v}"));
            }
            _ => {
                part(self.param("connections", "connections"), &|v| format!("{v} connections"));
                match self.param("rate", "") {
                    Some(rate) => part(Some(rate), &|v| format!("{v}/s")),
                    None => part(self.param("", "throughput_per_s"), &|v| format!("{v}/s acked")),
                }
                part(self.param("payload", ""), &|v| format!("{v} B"));
            }
        }
        parts.join(", ")
    }

    /// How many runs each median comes from, and what the ratio means.
    fn footnote(&self) -> String {
        let runs: Vec<u32> = self.series.iter().map(|s| s.runs).collect();
        let mut text = if runs.iter().all(|&r| r == runs[0]) {
            let each = if self.series.len() > 1 { " per server" } else { "" };
            if runs[0] == 1 { format!("one run{each}") } else { format!("median of {} runs{each}", runs[0]) }
        } else {
            let each: Vec<String> = self.series.iter().map(|s| format!("{} {}", s.label(), s.runs)).collect();
            format!("median of runs ({})", each.join(", "))
        };
        if self.has_both() {
            text.push_str(" · ratio = Switchboard / Node");
        }
        text
    }

    /// What failed, per server that had failures or incomplete runs; `None` when nothing did.
    fn failures(&self) -> Option<String> {
        let each: Vec<String> = self
            .series
            .iter()
            .filter(|s| s.failures > 0 || s.incomplete > 0)
            .map(|s| {
                let name = if s.server == "node" { "Node" } else { s.label() };
                match s.incomplete {
                    0 => format!("{name} {}", s.failures),
                    n => format!("{name} {}, {n} incomplete", s.failures),
                }
            })
            .collect();
        (!each.is_empty()).then(|| format!("FAILURES: {}", each.join("; ")))
    }
}

/// A name for a run made without `compare`, which does not say which server it loaded: its address.
fn unnamed(run: &Value) -> String {
    let url = run.get("url").and_then(Value::as_str).unwrap_or("");
    let address = url.split("://").nth(1).and_then(|rest| rest.split('/').next()).unwrap_or("");
    if address.is_empty() { "server".to_owned() } else { address.to_owned() }
}

/// The numeric entries of a JSON object (figures and failures are flat objects of numbers).
fn number_map(value: Option<&Value>) -> impl Iterator<Item = (String, f64)> + '_ {
    value
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(name, v)| Some((name.clone(), v.as_f64().filter(|v| v.is_finite())?)))
}

/// What a panel will show: its groups of bars that have at least one value.
struct PanelData<'a> {
    panel: &'a Panel,
    groups: Vec<(&'static str, &'static str)>,
}

impl PanelData<'_> {
    /// Share of the width: a panel of three groups needs more room than one of one.
    fn weight(&self) -> f64 {
        self.groups.len() as f64 + 0.7
    }
}

fn draw(layout: &Layout, data: &ScenarioData) -> Result<Option<String>, ChartError> {
    let panels: Vec<PanelData<'_>> = layout
        .panels
        .iter()
        .map(|panel| PanelData {
            panel,
            groups: panel
                .figures
                .iter()
                .copied()
                .filter(|(name, _)| data.series.iter().any(|s| s.figures.contains_key(*name)))
                .collect(),
        })
        .filter(|p| !p.groups.is_empty())
        .collect();
    if panels.is_empty() {
        return Ok(None);
    }
    let failed = |e: &dyn std::fmt::Display| ChartError::Draw {
        scenario: layout.scenario.to_owned(),
        message: e.to_string(),
    };

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| failed(&e))?;
        draw_header(&root, layout.scenario, data).map_err(|e| failed(&e))?;

        let body = root.margin(HEADER, 4, 6, 10);
        let total: f64 = panels.iter().map(PanelData::weight).sum();
        let width = f64::from(body.dim_in_pixel().0);
        let mut at = 0.0;
        let breaks: Vec<i32> = panels[..panels.len() - 1]
            .iter()
            .map(|p| {
                at += p.weight() / total * width;
                at.round() as i32
            })
            .collect();
        for (area, panel) in body.split_by_breakpoints(breaks, [] as [i32; 0]).iter().zip(&panels) {
            draw_panel(area, panel, data).map_err(|e| failed(&e))?;
        }
        root.present().map_err(|e| failed(&e))?;
    }
    Ok(Some(svg))
}

/// Pixels above the panels: title, sizes, footnote.
const HEADER: i32 = 66;

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type DrawResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;

pub(crate) fn font(size: f64) -> TextStyle<'static> {
    ("sans-serif", size).into_font().color(&TEXT)
}

pub(crate) fn bold(size: f64) -> TextStyle<'static> {
    ("sans-serif", size).into_font().style(FontStyle::Bold).color(&TEXT)
}

fn draw_header(root: &Area<'_>, scenario: &str, data: &ScenarioData) -> DrawResult {
    let top_left = Pos::new(HPos::Left, VPos::Top);
    let title = if data.has_both() {
        format!("{scenario}: Switchboard vs Node socket.io")
    } else {
        let names: Vec<&str> = data.series.iter().map(Series::label).collect();
        format!("{scenario}: {}", names.join(", "))
    };
    root.draw(&Text::new(title, (12, 8), bold(21.0).pos(top_left)))?;
    let sizes = data.describe(scenario);
    root.draw(&Text::new(sizes, (12, 32), font(15.0).pos(top_left).color(&MUTED)))?;
    let footnote = data.footnote();
    root.draw(&Text::new(footnote, (12, 49), font(15.0).pos(top_left).color(&MUTED)))?;
    let top_right = Pos::new(HPos::Right, VPos::Top);
    let status = match data.failures() {
        Some(text) => Text::new(text, (WIDTH as i32 - 12, 49), bold(15.0).pos(top_right).color(&ALERT)),
        None => Text::new(
            "no failures".to_owned(),
            (WIDTH as i32 - 12, 49),
            font(15.0).pos(top_right).color(&MUTED),
        ),
    };
    root.draw(&status)?;

    // Legend, right-aligned on the title line.
    let mut x = WIDTH as i32 - 12;
    for (i, series) in data.series.iter().enumerate().rev() {
        let label = series.label();
        let text_width = (label.chars().count() as f64 * 7.0).round() as i32;
        x -= text_width;
        root.draw(&Text::new(label.to_owned(), (x, 10), font(16.0).pos(top_left)))?;
        root.draw(&Rectangle::new([(x - 18, 10), (x - 6, 22)], series.color(i).filled()))?;
        x -= 34;
    }
    Ok(())
}

fn draw_panel(area: &Area<'_>, panel: &PanelData<'_>, data: &ScenarioData) -> DrawResult {
    let values =
        panel.groups.iter().flat_map(|(name, _)| data.series.iter().filter_map(|s| s.figures.get(*name)));
    let (low, high) = values.fold((0.0_f64, 0.0_f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    // Headroom for the value labels above (and below, for a negative figure) the bars.
    let high = match (high > 0.0, low < 0.0) {
        (true, _) => high * 1.18,
        (false, true) => -low * 0.2,
        (false, false) => 1.0,
    };
    let low = if low < 0.0 { low * 1.35 } else { 0.0 };
    let groups = panel.groups.len();
    let ratios = data.has_both();
    let named_groups = panel.groups.iter().any(|(_, label)| !label.is_empty());
    let label_rows = usize::from(named_groups) + usize::from(ratios);

    let (title_area, plot_area) = area.split_vertically(PANEL_TITLE);
    let (width, _) = title_area.dim_in_pixel();
    let centre = Pos::new(HPos::Center, VPos::Top);
    for (i, line) in wrap(panel.panel.title, width).iter().enumerate() {
        let at = (width as i32 / 2, 4 + 17 * i as i32);
        title_area.draw(&Text::new(line.clone(), at, bold(16.0).pos(centre)))?;
    }

    let mut chart = ChartBuilder::on(&plot_area)
        .margin_top(6)
        .margin_right(6)
        .x_label_area_size(8 + 16 * label_rows as i32)
        .y_label_area_size(58)
        .build_cartesian_2d(0.0..groups as f64, low..high)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_labels(5)
        .y_max_light_lines(0)
        .bold_line_style(GRID)
        .y_label_formatter(&|v| short(*v))
        .y_desc(panel.panel.unit)
        .label_style(font(14.0))
        .axis_desc_style(font(15.0))
        .draw()?;

    let series = data.series.len() as f64;
    let slot = 0.8 / series;
    let above = Pos::new(HPos::Center, VPos::Bottom);
    let below = Pos::new(HPos::Center, VPos::Top);
    for (g, (name, label)) in panel.groups.iter().enumerate() {
        let g = g as f64;
        for (i, s) in data.series.iter().enumerate() {
            let Some(&v) = s.figures.get(*name) else { continue };
            let x0 = g + 0.1 + slot * i as f64;
            let x1 = x0 + slot * 0.9;
            chart.draw_series(std::iter::once(Rectangle::new([(x0, 0.0), (x1, v)], s.color(i).filled())))?;
            let (offset, pos) = if v < 0.0 { (3, below) } else { (-3, above) };
            chart.draw_series(std::iter::once(
                EmptyElement::at(((x0 + x1) / 2.0, v))
                    + Text::new(short(v), (0, offset), font(14.0).pos(pos)),
            ))?;
        }
        // Group name and ratio under the axis.
        let mut y = 6;
        let base = || EmptyElement::at((g + 0.5, low));
        if !label.is_empty() {
            chart.draw_series(std::iter::once(base() + Text::new(*label, (0, y), font(15.0).pos(below))))?;
            y += 16;
        }
        if let Some(r) = data.ratio(name).filter(|_| ratios) {
            let text = format!("ratio {}", ratio_text(r));
            chart.draw_series(std::iter::once(
                base() + Text::new(text, (0, y), font(14.0).pos(below).color(&MUTED)),
            ))?;
        }
    }
    Ok(())
}

/// Pixels above each panel's plot for its title (two lines at most).
const PANEL_TITLE: u32 = 40;

/// Splits a panel title into lines that fit `width` pixels (about 8 per bold character), two at most.
fn wrap(title: &str, width: u32) -> Vec<String> {
    let fits = (width as usize / 8).max(8);
    let mut lines: Vec<String> = Vec::new();
    for word in title.split_whitespace() {
        let full = lines.len() == 2;
        match lines.last_mut() {
            Some(line) if full || line.chars().count() + 1 + word.chars().count() <= fits => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_owned()),
        }
    }
    lines
}

/// A ratio to two significant digits (one decimal from 10 up): the runs are not more precise than that.
fn ratio_text(r: f64) -> String {
    if r.abs() >= 10.0 {
        return format!("{r:.1}");
    }
    if r == 0.0 || !r.is_finite() {
        return "0".to_owned();
    }
    let decimals = (1 - r.abs().log10().floor() as i32).clamp(1, 6) as usize;
    format!("{r:.decimals$}")
}

/// A value as a bar label: three significant digits, k and M for the large ones.
pub(crate) fn short(v: f64) -> String {
    match v.abs() {
        a if a >= 1e6 => format!("{}M", sig3(v / 1e6)),
        a if a >= 1e4 => format!("{}k", sig3(v / 1e3)),
        _ => sig3(v),
    }
}

/// Three significant digits, trailing zeros dropped.
fn sig3(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return "0".to_owned();
    }
    let decimals = (2 - v.abs().log10().floor() as i32).clamp(0, 6) as usize;
    let text = format!("{v:.decimals$}");
    let text = if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.') } else { &text };
    // An axis tick a rounding error below zero.
    if text == "-0" { "0".to_owned() } else { text.to_owned() }
}

/// An integer with thousands separators (`5,000`); others as they are.
fn thousands(v: f64) -> String {
    if v.fract() != 0.0 || v.abs() >= 1e15 {
        return format!("{v}");
    }
    let digits = format!("{}", v.abs() as u64);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 { format!("-{out}") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_labels() {
        assert_eq!(short(0.154), "0.154");
        assert_eq!(short(44.6667), "44.7");
        assert_eq!(short(2.0), "2");
        assert_eq!(short(5000.0), "5000");
        assert_eq!(short(595_884.97), "596k");
        assert_eq!(short(12_345.0), "12.3k");
        assert_eq!(short(1_250_000.0), "1.25M");
        assert_eq!(short(-0.208), "-0.208");
        assert_eq!(short(0.0), "0");
        assert_eq!(short(-1.0e-17), "0");
    }

    #[test]
    fn titles_wrap_to_two_lines() {
        assert_eq!(wrap("latency", 100), ["latency"]);
        assert_eq!(wrap("server CPU per million deliveries", 160), ["server CPU per", "million deliveries"]);
        assert_eq!(wrap("a b c d e f g h i j k l m n o p", 64), ["a b c d", "e f g h i j k l m n o p"]);
    }

    #[test]
    fn thousands_and_ratios() {
        assert_eq!(thousands(5000.0), "5,000");
        assert_eq!(thousands(200.0), "200");
        assert_eq!(thousands(1_000_000.0), "1,000,000");
        assert_eq!(thousands(2.5), "2.5");
        assert_eq!(ratio_text(0.4752), "0.48");
        assert_eq!(ratio_text(13.05), "13.1");
        assert_eq!(ratio_text(0.0671), "0.067");
        assert_eq!(ratio_text(0.6), "0.60");
        assert_eq!(ratio_text(1.0), "1.0");
        assert_eq!(ratio_text(2.345), "2.3");
    }
}
