//! SVG line charts of values over time, for the soak: panels stacked one above the other, each with
//! its own unit and y axis, sharing the time axis (minutes), a dashed line where the warm-up ends, and
//! the verdict in the header. Drawn with plotters in the style of [`crate::chart`] (same width, fonts
//! and colours), so the soak's chart sits next to the bar charts in `docs/img/bench/`.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::chart::{
    ALERT, ChartError, GRID, MUTED, OTHER_COLORS, SWITCHBOARD_COLOR, WIDTH, bold, font, short,
};

/// Height of one panel in pixels.
const PANEL_HEIGHT: u32 = 190;
/// Pixels above the panels: title, sizes, verdict.
const HEADER: u32 = 66;

/// One line: its legend label and its points (seconds, value).
#[derive(Debug, Clone)]
pub struct Line {
    /// Legend label.
    pub label: String,
    /// (seconds since the start, value); a gap in the readings is simply skipped.
    pub points: Vec<(f64, f64)>,
}

/// Lines sharing one y axis.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Title above the plot.
    pub title: String,
    /// The y axis' unit.
    pub unit: String,
    /// The lines, drawn in the order given (the first in Switchboard's colour).
    pub lines: Vec<Line>,
}

/// A chart's header and where the warm-up ends.
#[derive(Debug, Clone)]
pub struct Header {
    /// First line, bold.
    pub title: String,
    /// Second line: the sizes of the run.
    pub subtitle: String,
    /// Third line: the verdict, in red when `failed`.
    pub status: String,
    /// Whether the run failed its bounds.
    pub failed: bool,
    /// Seconds at which the warm-up ends (a dashed vertical line).
    pub warmup_s: f64,
}

/// Draws the panels under the header; returns the SVG document.
pub fn render(header: &Header, panels: &[Panel]) -> Result<String, ChartError> {
    let failed =
        |e: &dyn std::fmt::Display| ChartError::Draw { scenario: "soak".into(), message: e.to_string() };
    let height = HEADER + PANEL_HEIGHT * panels.len().max(1) as u32;
    let end_s = panels
        .iter()
        .flat_map(|p| p.lines.iter().flat_map(|l| l.points.iter().map(|&(t, _)| t)))
        .fold(header.warmup_s, f64::max);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| failed(&e))?;
        let top_left = Pos::new(HPos::Left, VPos::Top);
        let draw_text = |text: &str, y: i32, style: TextStyle<'_>| {
            root.draw(&Text::new(text.to_owned(), (12, y), style.pos(top_left)))
        };
        draw_text(&header.title, 8, bold(21.0)).map_err(|e| failed(&e))?;
        draw_text(&header.subtitle, 32, font(15.0).color(&MUTED)).map_err(|e| failed(&e))?;
        let status = if header.failed { bold(15.0).color(&ALERT) } else { font(15.0).color(&MUTED) };
        draw_text(&header.status, 49, status).map_err(|e| failed(&e))?;
        let body = root.margin(HEADER, 4, 6, 10);
        for (area, panel) in body.split_evenly((panels.len().max(1), 1)).iter().zip(panels) {
            draw_panel(area, panel, header.warmup_s, end_s.max(1.0)).map_err(|e| failed(&e))?;
        }
        root.present().map_err(|e| failed(&e))?;
    }
    Ok(svg)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type DrawResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;

fn color(i: usize) -> RGBColor {
    if i == 0 { SWITCHBOARD_COLOR } else { OTHER_COLORS[(i - 1) % OTHER_COLORS.len()] }
}

fn draw_panel(area: &Area<'_>, panel: &Panel, warmup_s: f64, end_s: f64) -> DrawResult {
    let values = panel.lines.iter().flat_map(|l| l.points.iter().map(|&(_, v)| v));
    let (low, high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    // From zero, so a flat line looks flat and a rise is seen at its true size.
    let (low, high) = if low.is_finite() { (low.min(0.0), high.max(low + 1.0) * 1.1) } else { (0.0, 1.0) };
    let minutes = end_s / 60.0;
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, bold(16.0))
        .margin_right(12)
        .x_label_area_size(34)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..minutes, low..high)?;
    chart
        .configure_mesh()
        .x_labels(8)
        .y_labels(5)
        .max_light_lines(0)
        .bold_line_style(GRID)
        .x_label_formatter(&|v| short(*v))
        .y_label_formatter(&|v| short(*v))
        .x_desc("minutes")
        .y_desc(panel.unit.as_str())
        .label_style(font(13.0))
        .axis_desc_style(font(14.0))
        .draw()?;
    let warm = warmup_s / 60.0;
    chart.draw_series(DashedLineSeries::new([(warm, low), (warm, high)], 4, 4, MUTED.stroke_width(1)))?;
    for (i, line) in panel.lines.iter().enumerate() {
        let c = color(i);
        chart
            .draw_series(LineSeries::new(line.points.iter().map(|&(t, v)| (t / 60.0, v)), c.stroke_width(2)))?
            .label(line.label.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(GRID)
        .label_font(font(13.0))
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_every_panel_the_header_and_the_warm_up_line() -> Result<(), ChartError> {
        let header = Header {
            title: "soak: 1 h".into(),
            subtitle: "2,000 base".into(),
            status: "RSS +5.5 % > 5 %: FAILED".into(),
            failed: true,
            warmup_s: 300.0,
        };
        let line = |label: &str, v: f64| Line {
            label: label.into(),
            points: (0..=360).map(|i| (f64::from(i) * 10.0, v)).collect(),
        };
        let panels = [
            Panel { title: "server RSS".into(), unit: "MiB".into(), lines: vec![line("RSS", 40.0)] },
            Panel {
                title: "descriptors and sockets".into(),
                unit: "count".into(),
                lines: vec![line("fds", 2_100.0), line("sockets", 2_050.0)],
            },
        ];
        let svg = render(&header, &panels)?;
        for text in ["soak: 1 h", "2,000 base", "FAILED", "server RSS", "descriptors and sockets", "sockets"]
        {
            assert!(svg.contains(text), "{text} missing");
        }
        Ok(())
    }
}
