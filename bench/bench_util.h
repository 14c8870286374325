// Shared helpers for bench programs: timing, memory bandwidth, model creation, table printing.
#pragma once

#include <chrono>
#include <cstdio>
#include <string>

#include "coordinator/request.h"

namespace kvmesh::bench {

// A greedy request over a made-up prompt of n_prompt token ids (different per salt) that always
// generates exactly max_tokens tokens.
inline GenerationRequest synthetic_request(int n_prompt, int max_tokens, int salt) {
  GenerationRequest r;
  for (int i = 0; i < n_prompt; ++i) r.prompt_ids.push_back((i * 7919 + salt * 104729) % 50000);
  r.max_tokens = max_tokens;
  r.ignore_eos = true;
  r.sampling.temperature = 0.0f;
  return r;
}

inline double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Best-of-3 read bandwidth in GB/s over a buffer far larger than the caches, with n_threads.
double measure_read_bandwidth_gbs(int n_threads, size_t bytes = size_t(1) << 30);

// Creates (once) a random checkpoint of a named preset under dir; returns its path or "".
std::string ensure_preset_model(const std::string& preset, const std::string& dir);

}  // namespace kvmesh::bench
