//! The precision run's lateness drawn as an SVG histogram, written beside the printed table.

use crate::report::{format_ms, Stats};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

const SIZE: (u32, u32) = (800, 420);
/// About this many bars across the range of the sample.
const BARS: f64 = 40.0;

/// A bar width of 1, 2 or 5 times a power of ten, in milliseconds.
fn bar_width_ms(max_ms: f64) -> f64 {
    let raw = (max_ms / BARS).max(0.01);
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|factor| factor * power)
        .find(|width| *width >= raw)
        .unwrap_or(10.0 * power)
}

/// Counts per bar: `(bar start in ms, count)`.
fn bars(samples_us: &[i64], width_ms: f64) -> Vec<(f64, u32)> {
    let mut counts: Vec<u32> = Vec::new();
    for &sample in samples_us {
        let index = ((sample.max(0) as f64 / 1000.0) / width_ms).floor() as usize;
        if counts.len() <= index {
            counts.resize(index + 1, 0);
        }
        counts[index] += 1;
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(i, count)| (i as f64 * width_ms, count))
        .collect()
}

/// The SVG document: bars of the sample, with p50, p95, p99 and max marked.
pub fn svg(samples_us: &[i64], stats: &Stats, title: &str) -> Result<String, String> {
    let max_ms = stats.max.max(0) as f64 / 1000.0;
    let width = bar_width_ms(max_ms);
    let bars = bars(samples_us, width);
    let x_end = (bars.len() as f64 * width).max(width);
    let tallest = bars.iter().map(|(_, count)| *count).max().unwrap_or(1);
    let mut document = String::new();
    {
        let root = SVGBackend::with_string(&mut document, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..x_end, 0u32..tallest + tallest / 10 + 1)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc("lateness (ms): arrival at the receiver minus the task's time")
            .y_desc("tasks")
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(
                bars.iter()
                    .filter(|(_, count)| *count > 0)
                    .map(|&(start, count)| {
                        Rectangle::new(
                            [(start, 0), (start + width * 0.9, count)],
                            RGBColor(35, 87, 198).filled(),
                        )
                    }),
            )
            .map_err(|e| e.to_string())?;
        let marks = [
            ("p50", stats.p50, RGBColor(27, 127, 59)),
            ("p95", stats.p95, RGBColor(176, 111, 0)),
            ("p99", stats.p99, RGBColor(179, 38, 30)),
            ("max", stats.max, RGBColor(91, 101, 118)),
        ];
        for (name, micros, color) in marks {
            let at = micros.max(0) as f64 / 1000.0;
            chart
                .draw_series(LineSeries::new(
                    [(at, 0), (at, tallest)],
                    color.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(format!("{name} {}", format_ms(micros)))
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(document)
}

/// Writes the histogram under `dir` and returns its path.
pub fn write(
    dir: &Path,
    run_id: &str,
    samples_us: &[i64],
    stats: &Stats,
) -> Result<PathBuf, String> {
    let title = format!("Precision run {run_id}: {} tasks", stats.count);
    let document = svg(samples_us, stats, &title)?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(format!("lateness-{run_id}.svg"));
    std::fs::write(&path, document).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(std::path::absolute(&path).unwrap_or(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_widths_are_round_numbers() {
        assert_eq!(bar_width_ms(5.2), 0.2);
        assert_eq!(bar_width_ms(40.0), 1.0);
        assert_eq!(bar_width_ms(900.0), 50.0);
        assert_eq!(bar_width_ms(0.0), 0.01);
    }

    #[test]
    fn samples_fall_in_their_bars() {
        assert_eq!(
            bars(&[0, 900, 1_000, 2_500, -3], 1.0),
            [(0.0, 3), (1.0, 1), (2.0, 1)]
        );
    }

    #[test]
    fn the_svg_has_the_bars_and_the_marks() {
        let samples: Vec<i64> = (0..200).map(|i| 1_000 + i * 20).collect();
        let stats = Stats::of(&samples).unwrap();
        let document = svg(&samples, &stats, "test run").unwrap();
        assert!(document.starts_with("<svg"), "{}", &document[..80]);
        assert!(document.contains("test run"));
        assert!(document.matches("<rect").count() > 10);
        for mark in ["p50 3.0 ms", "p95", "p99", "max 5.0 ms"] {
            assert!(document.contains(mark), "{mark} is labelled");
        }
    }
}
