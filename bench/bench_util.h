// Shared helpers for bench programs: timing, memory bandwidth, model creation, table printing.
#pragma once

#include <chrono>
#include <cstdio>
#include <string>

#include "common/clock.h"

namespace kvmesh::bench {


// Best-of-four read bandwidth in GB/s with n_threads over a buffer of `bytes` (by default 1 GiB,
// larger than most caches; the cache share of a smaller buffer counts, as it does for a real working set).
double measure_read_bandwidth_gbs(int n_threads, size_t bytes = size_t(1) << 30);

// Creates (once) a random checkpoint of a named preset under dir; returns its path or "".
std::string ensure_preset_model(const std::string& preset, const std::string& dir);

}  // namespace kvmesh::bench
