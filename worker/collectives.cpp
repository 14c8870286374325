// The single-rank Collectives: every operation is the identity.
#include "worker/collectives.h"

#include <algorithm>

namespace kvmesh {
namespace {

class LocalCollectives final : public Collectives {
 public:
  void tp_all_reduce_sum(float*, int64_t) override {}
  void tp_gather(const float* local, int64_t n, float* all) override {
    if (all != local) std::copy_n(local, n, all);
  }
  void pp_send_next(const float*, int64_t, int) override {
    KVMESH_CHECK_MSG(false, "no next pipeline stage on a single rank");
  }
  void pp_recv_prev(float*, int64_t, int) override {
    KVMESH_CHECK_MSG(false, "no previous pipeline stage on a single rank");
  }
  void pp_flush_sends() override {}
  int64_t world_min(int64_t value) override { return value; }
  Status agree(const Status& local) override { return local; }
  void world_or_flags(std::vector<uint8_t>&) override {}
  std::vector<std::string> gather_to_root(const std::string& local) override { return {local}; }
};

}  // namespace

std::unique_ptr<Collectives> make_local_collectives() { return std::make_unique<LocalCollectives>(); }

}  // namespace kvmesh
