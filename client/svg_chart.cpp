// Inline SVG line charts (svg_chart.h): ranges, ticks, series, markers, labels, reference lines,
// a legend that wraps.
#include "client/svg_chart.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iterator>

namespace kvmesh::load {
namespace {

constexpr double kW = 560, kH = 310, kLeft = 64, kRight = 40, kTop = 44, kBottom = 44;
constexpr double kCharW = 6.2;  // about one character of the 11px sans-serif labels
constexpr double kLegendRow = 13;
const char* const kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                               "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

// SVG coordinates (not shown to the reader).
std::string px(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

double nice_step(double span) {
  const double raw = span / 5.0;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  return (f < 1.5 ? 1.0 : f < 3.5 ? 2.0 : f < 7.5 ? 5.0 : 10.0) * mag;
}

struct Ranges {
  double x0, x1, y0, y1;
};

Ranges ranges_of(const Chart& c) {
  Ranges r{c.x_from_zero ? 0.0 : INFINITY, -INFINITY, 0.0, -INFINITY};
  for (const ChartSeries& s : c.series)
    for (const auto& [x, y] : s.points) r.x0 = std::min(r.x0, x), r.x1 = std::max(r.x1, x), r.y1 = std::max(r.y1, y);
  for (const RefLine& ref : c.refs) {
    if (ref.vertical) r.x0 = std::min(r.x0, ref.value), r.x1 = std::max(r.x1, ref.value);
    else r.y1 = std::max(r.y1, ref.value);
  }
  if (!(r.x1 > r.x0)) r.x0 = std::isfinite(r.x0) ? r.x0 - 1 : 0, r.x1 = r.x0 + 2;
  if (!(r.y1 > r.y0)) r.y1 = r.y0 + 1;
  if (c.pad_x) {
    const double pad = 0.06 * (r.x1 - r.x0);
    r.x0 = c.x_from_zero ? r.x0 : r.x0 - pad;
    r.x1 += pad;
  }
  r.y1 *= 1.08;
  return r;
}

std::string axes(const Ranges& r, const Frame& f, const Chart& c) {
  const double pw = f.right - f.left, ph = f.bottom - f.top;
  std::string s = "<rect x='" + px(f.left) + "' y='" + px(f.top) + "' width='" + px(pw) + "' height='" + px(ph) +
                  "' fill='none' stroke='#999'/>";
  for (int axis = 0; axis < 2; ++axis) {
    const double lo = axis == 0 ? r.x0 : r.y0, hi = axis == 0 ? r.x1 : r.y1;
    const double step = nice_step(hi - lo);
    const int decimals = std::max(0, static_cast<int>(-std::floor(std::log10(step) + 1e-9)));
    for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
      const double t = (v - lo) / (hi - lo);
      const std::string text = fixed(std::abs(v) < step * 1e-6 ? 0.0 : v, decimals);
      if (axis == 0) {
        const double x = f.left + t * pw;
        s += "<line x1='" + px(x) + "' y1='" + px(f.top) + "' x2='" + px(x) + "' y2='" + px(f.bottom) +
             "' stroke='#eee'/><text x='" + px(x) + "' y='" + px(f.bottom + 14) + "' text-anchor='middle'>" + text +
             "</text>";
      } else {
        const double y = f.bottom - t * ph;
        s += "<line x1='" + px(f.left) + "' y1='" + px(y) + "' x2='" + px(f.right) + "' y2='" + px(y) +
             "' stroke='#eee'/><text x='" + px(f.left - 4) + "' y='" + px(y + 4) + "' text-anchor='end'>" + text +
             "</text>";
      }
    }
  }
  s += "<text x='" + px(f.left + pw / 2) + "' y='" + px(kH - 8) + "' text-anchor='middle'>" + esc(c.xlabel) + "</text>";
  s += "<text transform='translate(14," + px(f.top + ph / 2) + ") rotate(-90)' text-anchor='middle'>" +
       esc(c.ylabel) + "</text>";
  return s;
}

std::string text_at(const LabelPlace& p, const std::string& color, const std::string& cls, const std::string& text) {
  return "<text class='" + cls + "' x='" + px(p.x) + "' y='" + px(p.y) + "' fill='" + color + "'" +
         (p.anchor_end ? " text-anchor='end'" : "") + ">" + esc(text) + "</text>";
}

std::string ref_lines(const Chart& c, const Ranges& r, const Frame& f) {
  std::string s;
  for (const RefLine& ref : c.refs) {
    LabelPlace p;
    if (ref.vertical) {
      const double x = f.left + (ref.value - r.x0) / (r.x1 - r.x0) * (f.right - f.left);
      s += "<line class='ref' x1='" + px(x) + "' y1='" + px(f.top) + "' x2='" + px(x) + "' y2='" + px(f.bottom) +
           "' stroke='#444' stroke-dasharray='5,4'/>";
      p = place_label(x, f.top + 18, ref.label.size(), f);
    } else {
      const double y = f.bottom - (ref.value - r.y0) / (r.y1 - r.y0) * (f.bottom - f.top);
      s += "<line class='ref' x1='" + px(f.left) + "' y1='" + px(y) + "' x2='" + px(f.right) + "' y2='" + px(y) +
           "' stroke='#444' stroke-dasharray='5,4'/>";
      p = place_label(f.right - 8 - kCharW * static_cast<double>(ref.label.size()), y, ref.label.size(), f);
    }
    s += text_at(p, "#444", "ref", ref.label);
  }
  return s;
}

}  // namespace

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", std::clamp(decimals, 0, 9), v);
  return buf;
}

std::string esc(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else if (c == '"') out += "&quot;";
    else if (c == '\'') out += "&#39;";
    else out += c;
  }
  return out;
}

Frame chart_frame() { return Frame{kLeft, kTop, kW - kRight, kH - kBottom}; }

LabelPlace place_label(double x, double y, size_t chars, const Frame& f) {
  const double width = kCharW * static_cast<double>(chars);
  LabelPlace p{x + 5, y - 6, false};
  if (p.x + width > f.right - 2) p = LabelPlace{x - 5, y - 6, true};
  if (p.anchor_end && p.x - width < f.left + 2) p = LabelPlace{f.left + 2, y - 6, false};  // wider than the frame
  if (p.y - 10 < f.top) p.y = y + 15;
  if (p.y > f.bottom - 2) p.y = f.bottom - 2;
  return p;
}

std::string svg_chart(const Chart& c) {
  // The legend first: its rows push the frame down.
  std::string legend;
  double legend_x = kLeft, legend_y = 32;
  for (size_t i = 0; i < c.series.size(); ++i) {
    const double width = 24.0 + kCharW * static_cast<double>(c.series[i].name.size());
    if (legend_x + width > kW - 8 && legend_x > kLeft) legend_x = kLeft, legend_y += kLegendRow;
    legend += "<text x='" + px(legend_x) + "' y='" + px(legend_y) + "' fill='" + kColors[i % std::size(kColors)] +
              "'>&#9632; " + esc(c.series[i].name) + "</text>";
    legend_x += width;
  }
  Frame f = chart_frame();
  f.top += legend_y - 32;
  const Ranges r = ranges_of(c);
  std::string svg = "<svg xmlns='http://www.w3.org/2000/svg' width='" + px(kW) + "' height='" + px(kH) +
                    "' font-family='sans-serif' font-size='11'><text x='" + px(kW / 2) +
                    "' y='16' text-anchor='middle' font-size='13' font-weight='bold'>" + esc(c.title) + "</text>";
  svg += axes(r, f, c) + legend;
  std::string labels;  // drawn last, over the lines
  for (size_t i = 0; i < c.series.size(); ++i) {
    const std::string color = kColors[i % std::size(kColors)];
    const ChartSeries& s = c.series[i];
    std::string pts;
    for (size_t k = 0; k < s.points.size(); ++k) {
      const auto [x, y] = s.points[k];
      const double sx = f.left + (x - r.x0) / (r.x1 - r.x0) * (f.right - f.left);
      const double sy = f.bottom - (y - r.y0) / (r.y1 - r.y0) * (f.bottom - f.top);
      pts += px(sx) + "," + px(sy) + " ";
      if (s.markers) svg += "<circle cx='" + px(sx) + "' cy='" + px(sy) + "' r='3' fill='" + color + "'/>";
      if (k < s.point_labels.size()) labels += text_at(place_label(sx, sy, s.point_labels[k].size(), f), color, "pt", s.point_labels[k]);
    }
    svg += "<polyline fill='none' stroke-width='1.5' stroke='" + color + "' points='" + pts + "'/>";
  }
  return svg + ref_lines(c, r, f) + labels + "</svg>\n";
}

}  // namespace kvmesh::load
