// Inline SVG line charts for the HTML report: series with optional markers and point labels kept
// inside the frame, dashed reference lines (SLO thresholds, a peak), round axis ticks; and the one
// formatter for every number the report shows.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace kvmesh::load {

// `v` with `decimals` digits after the point (the report's one number format).
std::string fixed(double v, int decimals);

struct ChartSeries {
  explicit ChartSeries(std::string name_, std::vector<std::pair<double, double>> points_ = {})
      : name(std::move(name_)), points(std::move(points_)) {}
  std::string name;
  std::vector<std::pair<double, double>> points;
  bool markers = false;
  std::vector<std::string> point_labels;  // beside the markers, one per point (or none)
};

// A dashed line at x = value (vertical) or y = value, with its label.
struct RefLine {
  double value = 0.0;
  bool vertical = true;
  std::string label;
};

struct Chart {
  Chart(std::string title_, std::string xlabel_, std::string ylabel_, std::vector<ChartSeries> series_ = {},
        std::vector<RefLine> refs_ = {})
      : title(std::move(title_)), xlabel(std::move(xlabel_)), ylabel(std::move(ylabel_)), series(std::move(series_)),
        refs(std::move(refs_)) {}
  std::string title, xlabel, ylabel;
  std::vector<ChartSeries> series;
  std::vector<RefLine> refs;
  bool x_from_zero = false;
  bool pad_x = false;  // room left and right of the first and last points (marker charts)
};

// The plot frame inside every chart.
struct Frame {
  double left, top, right, bottom;
};
Frame chart_frame();

// Where a point's label goes: beside the point at (px, py), flipped left or below so that a label
// of `chars` characters stays inside `frame`. Returns x, y and whether x is the text's end.
struct LabelPlace {
  double x = 0.0, y = 0.0;
  bool anchor_end = false;
};
LabelPlace place_label(double px, double py, size_t chars, const Frame& frame);

std::string esc(const std::string& s);
std::string svg_chart(const Chart& chart);

}  // namespace kvmesh::load
