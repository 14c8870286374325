// Arrival schedules: when open-loop requests are due (Poisson or gamma gaps, optional linear
// ramp-up of the rate) and how many requests a closed loop may hold at a time during a ramp.
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

namespace kvmesh::load {

struct ArrivalSpec {
  double rate = 1.0;        // requests per second once ramped up; > 0
  double burstiness = 1.0;  // gamma shape: 1 = Poisson, < 1 burstier, > 1 more regular
  double ramp_up_s = 0.0;   // the rate grows linearly from 0 to `rate` over this long
  uint64_t seed = 0;
};

// Offsets in seconds from the start, increasing: at most `max_n` of them, all below `until_s`.
// Gaps are Gamma(burstiness, 1/burstiness) in "operational time" (mean 1), mapped through the
// inverse of the cumulative rate, so the long-run rate is `rate` whatever the burstiness.
std::vector<double> arrival_offsets(const ArrivalSpec& spec, int64_t max_n,
                                    double until_s = std::numeric_limits<double>::infinity());

// The cumulative rate's inverse: the time by which `u` arrivals are expected.
double ramp_inverse(double u, double rate, double ramp_up_s);

// Closed loop: requests allowed in flight `t` seconds into the run (1 .. cap, linear over the
// ramp). cap <= 0 means no cap and gives a very large number.
int32_t concurrency_at(double t, int32_t cap, double ramp_up_s);

}  // namespace kvmesh::load
