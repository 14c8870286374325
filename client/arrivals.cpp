// Arrival offsets (gamma gaps through a linear ramp) and the closed-loop concurrency ramp.
#include "client/arrivals.h"

#include <algorithm>
#include <cmath>

#include "client/rng.h"

namespace kvmesh::load {

double ramp_inverse(double u, double rate, double ramp_up_s) {
  if (ramp_up_s <= 0.0) return u / rate;
  // Lambda(t) = rate t^2 / (2 S) for t < S, then rate S / 2 + rate (t - S).
  const double at_ramp_end = rate * ramp_up_s / 2.0;
  if (u < at_ramp_end) return std::sqrt(2.0 * ramp_up_s * u / rate);
  return ramp_up_s + (u - at_ramp_end) / rate;
}

std::vector<double> arrival_offsets(const ArrivalSpec& spec, int64_t max_n, double until_s) {
  std::vector<double> out;
  if (!(spec.rate > 0.0) || max_n <= 0) return out;
  if (max_n < 10000000) out.reserve(static_cast<size_t>(max_n));
  Rng rng(spec.seed * 0x9e3779b97f4a7c15ULL + 0xa11);
  const double shape = spec.burstiness > 0.0 ? spec.burstiness : 1.0;
  double u = 0.0;
  for (int64_t i = 0; i < max_n; ++i) {
    u += rng.gamma(shape) / shape;
    const double t = ramp_inverse(u, spec.rate, spec.ramp_up_s);
    if (!(t < until_s)) break;
    out.push_back(t);
  }
  return out;
}

int32_t concurrency_at(double t, int32_t cap, double ramp_up_s) {
  if (cap <= 0) return std::numeric_limits<int32_t>::max();
  if (ramp_up_s <= 0.0 || t >= ramp_up_s) return cap;
  const double frac = std::max(0.0, t) / ramp_up_s;
  return std::clamp(static_cast<int32_t>(1.0 + (cap - 1) * frac), 1, cap);
}

}  // namespace kvmesh::load
