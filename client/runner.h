// run_load: drives one measured (or warm-up) run on one event loop: open-loop arrivals or a
// closed loop, a concurrency cap, ramp-up, a duration, multi-turn follow-ups, injected
// disconnects, Ctrl-C, and the live progress line; returns one RequestRecord per request sent.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "client/http_client.h"
#include "client/metrics_math.h"
#include "client/record.h"
#include "client/workloads.h"

namespace kvmesh::load {

struct RunOptions {
  HttpTarget target;
  bool keep_alive = true;
  std::string path = "/v1/completions";
  BodyOptions body;
  int32_t concurrency = 0;  // 0 = no cap
  double rate = 0.0;        // > 0: open loop (session starts follow arrival_offsets)
  double burstiness = 1.0;
  double ramp_up_s = 0.0;
  double duration_s = 0.0;  // 0 = until the workload is done
  bool cycle = false;       // closed loop: reuse the workload's sessions until duration_s
  double timeout_s = 300.0;
  double think_time_ms = 0.0;
  double disconnect_fraction = 0.0;
  double disconnect_after_ms = 100.0;
  uint64_t seed = 0;
  bool progress = true;     // print progress on stderr
  bool progress_tty = false;  // redraw one line (stderr is a terminal) instead of a line every 5 s
  std::string progress_label = "run";
};

struct RunOutput {
  std::vector<RequestRecord> records;  // in send order; id = index
  std::vector<TimelineSample> timeline;
  double duration_s = 0.0;             // from the start to the last request's end
  int64_t not_sent = 0;                // planned requests left when the run stopped
  int64_t peak_in_flight = 0;
  bool interrupted = false;
};

RunOutput run_load(const Workload& workload, const RunOptions& options);

}  // namespace kvmesh::load
