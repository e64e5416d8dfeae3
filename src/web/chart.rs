//! The chart of one sampling parameter per story step, drawn as SVG: the table's mean ± std
//! band and mean line, and the values of the candidates chosen along the current story.

use web_sys::Element;

use crate::data::params::{Param, ParamSummary, StepTable};
use crate::data::records::CandidateRecord;
use crate::web::dom::{clear, document};

const SVG: &str = "http://www.w3.org/2000/svg";
const WIDTH: f64 = 280.0;
const HEIGHT: f64 = 160.0;
const MARGIN: f64 = 28.0;
/// Steps shown at least (more when the story is longer).
const MIN_STEPS: u32 = 10;

fn svg(tag: &str, class: &str, attributes: &[(&str, String)]) -> Element {
    let element = document()
        .create_element_ns(Some(SVG), tag)
        .expect("SVG elements can be created");
    if !class.is_empty() {
        let _ = element.set_attribute("class", class);
    }
    for (name, value) in attributes {
        let _ = element.set_attribute(name, value);
    }
    element
}

/// Draws `param` into `container`.
pub fn render(container: &Element, table: &StepTable, param: Param, chosen: &[&CandidateRecord]) {
    clear(container);
    let steps = (chosen.len() as u32).max(MIN_STEPS);
    let rows: Vec<(u32, ParamSummary)> = (1..=steps)
        .map(|step| (step, param.of(&table.row(step)).clone()))
        .collect();
    let points: Vec<(u32, f64)> = chosen
        .iter()
        .map(|r| (r.step, param.value_in(&r.params)))
        .collect();
    let lows = rows.iter().map(|(_, s)| s.mean - s.std);
    let highs = rows.iter().map(|(_, s)| s.mean + s.std);
    let values = points.iter().map(|(_, v)| *v);
    let low = lows.chain(values.clone()).fold(f64::INFINITY, f64::min);
    let high = highs.chain(values).fold(f64::NEG_INFINITY, f64::max);
    // A little room above and below; a flat series gets a unit range.
    let pad = if high > low { (high - low) * 0.1 } else { 0.5 };
    let (low, high) = (low - pad, high + pad);
    let x = |step: u32| {
        MARGIN + (f64::from(step) - 1.0) / f64::from(steps - 1) * (WIDTH - MARGIN - 8.0)
    };
    let y = |v: f64| HEIGHT - MARGIN + 8.0 - (v - low) / (high - low) * (HEIGHT - MARGIN - 8.0);

    let root = svg(
        "svg",
        "",
        &[
            ("viewBox", format!("0 0 {WIDTH} {HEIGHT}")),
            ("role", "img".into()),
            (
                "aria-label",
                format!(
                    "{} per step: table mean ± std and the chosen values",
                    param.name()
                ),
            ),
        ],
    );
    let upper: Vec<String> = rows
        .iter()
        .map(|(s, r)| format!("{:.1},{:.1}", x(*s), y(r.mean + r.std)))
        .collect();
    let lower: Vec<String> = rows
        .iter()
        .rev()
        .map(|(s, r)| format!("{:.1},{:.1}", x(*s), y(r.mean - r.std)))
        .collect();
    let band = [upper, lower].concat().join(" ");
    let _ = root.append_child(&svg("polygon", "band", &[("points", band)]));
    let mean: Vec<String> = rows
        .iter()
        .map(|(s, r)| format!("{:.1},{:.1}", x(*s), y(r.mean)))
        .collect();
    let _ = root.append_child(&svg("polyline", "mean", &[("points", mean.join(" "))]));
    let baseline = y(low);
    let _ = root.append_child(&svg(
        "line",
        "axis",
        &[
            ("x1", format!("{MARGIN}")),
            ("x2", format!("{WIDTH}")),
            ("y1", format!("{baseline:.1}")),
            ("y2", format!("{baseline:.1}")),
        ],
    ));
    for (text, vx, vy) in [
        (format!("{high:.2}"), 2.0, 12.0),
        (format!("{low:.2}"), 2.0, baseline),
        ("step 1".to_string(), MARGIN, HEIGHT - 4.0),
        (format!("step {steps}"), WIDTH - 44.0, HEIGHT - 4.0),
    ] {
        let label = svg(
            "text",
            "",
            &[("x", format!("{vx:.1}")), ("y", format!("{vy:.1}"))],
        );
        label.set_text_content(Some(&text));
        let _ = root.append_child(&label);
    }
    for (step, v) in points {
        let dot = svg(
            "circle",
            "chosen",
            &[
                ("cx", format!("{:.1}", x(step))),
                ("cy", format!("{:.1}", y(v))),
                ("r", "3.5".into()),
            ],
        );
        let title = svg("title", "", &[]);
        title.set_text_content(Some(&format!("step {step}: {v:.3}")));
        let _ = dot.append_child(&title);
        let _ = root.append_child(&dot);
    }
    let _ = container.append_child(&root);
}
