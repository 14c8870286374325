// Collectives: the data plane between workers (TP all-reduce and gather, PP send/recv), behind one
// interface: MPI on CPU, NCCL on CUDA, nothing at all for a single rank.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace kvmesh {

class Collectives {
 public:
  virtual ~Collectives() = default;
  // Binds the data plane to the backend's stream (native_stream(); null on CPU). Every rank calls
  // it once, after its backend exists; NCCL creates its communicators here. Buffers passed below
  // are the backend's memory.
  virtual Status bind_stream(void* stream) {
    (void)stream;
    return Status::ok();
  }
  // Sum over the TP group, in place. fp32.
  virtual void tp_all_reduce_sum(float* data, int64_t n) = 0;
  // TP rank 0 receives every rank's `local` (n floats each) into all: [tp, n]; others pass null.
  virtual void tp_gather(const float* local, int64_t n, float* all) = 0;
  // Activations to the next / from the previous PP stage (same TP rank). tag orders micro-batches.
  virtual void pp_send_next(const float* data, int64_t n, int tag) = 0;
  virtual void pp_recv_prev(float* data, int64_t n, int tag) = 0;
  // Waits for every outstanding pp_send_next to complete (buffers may be reused after).
  virtual void pp_flush_sends() = 0;
  // Minimum over all ranks (page counts must agree).
  virtual int64_t world_min(int64_t value) = 0;
  // Every rank passes its own status and gets back the first failing rank's (ok when none
  // failed), so all ranks stop together with the same message.
  virtual Status agree(const Status& local) = 0;
  // Bitwise OR over all ranks, in place (every rank passes the same length): a flag set anywhere
  // is set everywhere (e.g. a cache op that failed on any rank).
  virtual void world_or_flags(std::vector<uint8_t>& flags) = 0;
  // Whether `local` is true on every rank of this rank's TP group (a logical AND on the host).
  // Safe inside a step: only the stage's TP ranks take part, and they run every step alike.
  virtual bool tp_all_true(bool local) { return local; }
  // World rank 0 gets every rank's bytes (index = rank); other ranks get an empty vector.
  virtual std::vector<std::string> gather_to_root(const std::string& local) = 0;
};

// A single rank: every collective is the identity.
std::unique_ptr<Collectives> make_local_collectives();

}  // namespace kvmesh
