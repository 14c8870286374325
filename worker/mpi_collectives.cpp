// MPI implementation of Collectives: TP groups are consecutive ranks (one communicator per group),
// PP activations go point to point to the same TP rank of the next stage.
#include "worker/mpi_collectives.h"

#include <mpi.h>

#include <climits>
#include <string>
#include <vector>

namespace kvmesh {
namespace {

int as_count(int64_t n) {
  KVMESH_CHECK_MSG(n >= 0 && n <= INT_MAX, "MPI message too large");
  return static_cast<int>(n);
}

class MpiCollectives final : public Collectives {
 public:
  explicit MpiCollectives(const ParallelLayout& layout) : layout_(layout) {
    MPI_Comm_dup(MPI_COMM_WORLD, &data_);
    MPI_Comm_split(MPI_COMM_WORLD, layout.pp_rank(), layout.tp_rank(), &tp_);
  }
  ~MpiCollectives() override {
    MPI_Comm_free(&tp_);
    MPI_Comm_free(&data_);
  }

  void tp_all_reduce_sum(float* data, int64_t n) override {
    MPI_Allreduce(MPI_IN_PLACE, data, as_count(n), MPI_FLOAT, MPI_SUM, tp_);
  }
  void tp_gather(const float* local, int64_t n, float* all) override {
    MPI_Gather(local, as_count(n), MPI_FLOAT, all, as_count(n), MPI_FLOAT, 0, tp_);
  }
  // Blocking: without an MPI progress thread a non-blocking send of a large message would only
  // start at the next MPI call (after this stage's next micro-batch), so the stages would not
  // overlap. The next stage is already waiting in its receive, so the send returns at once for the
  // first micro-batch and as soon as the next stage is ready for each later one.
  void pp_send_next(const float* data, int64_t n, int tag) override {
    MPI_Send(data, as_count(n), MPI_FLOAT, layout_.rank + layout_.tp, tag, data_);
  }
  void pp_recv_prev(float* data, int64_t n, int tag) override {
    MPI_Recv(data, as_count(n), MPI_FLOAT, layout_.rank - layout_.tp, tag, data_, MPI_STATUS_IGNORE);
  }
  void pp_flush_sends() override {}  // sends complete before pp_send_next returns
  int64_t world_min(int64_t value) override {
    long long v = value, out = 0;
    MPI_Allreduce(&v, &out, 1, MPI_LONG_LONG, MPI_MIN, data_);
    return out;
  }
  Status agree(const Status& local) override {
    int world = 0;
    MPI_Comm_size(data_, &world);
    const int mine = local.is_ok() ? world : layout_.rank;
    int first_failed = world;
    MPI_Allreduce(&mine, &first_failed, 1, MPI_INT, MPI_MIN, data_);
    if (first_failed == world) return Status::ok();
    // The failing rank shares its code and message.
    int code = static_cast<int>(local.code());
    std::string message = local.message();
    int len = static_cast<int>(message.size());
    MPI_Bcast(&code, 1, MPI_INT, first_failed, data_);
    MPI_Bcast(&len, 1, MPI_INT, first_failed, data_);
    message.resize(static_cast<size_t>(len));
    MPI_Bcast(message.data(), len, MPI_CHAR, first_failed, data_);
    return Status(static_cast<StatusCode>(code), "rank " + std::to_string(first_failed) + ": " + message);
  }
  bool tp_all_true(bool local) override {
    int mine = local ? 1 : 0, all = 0;
    MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, tp_);
    return all == 1;
  }
  void world_or_flags(std::vector<uint8_t>& flags) override {
    if (flags.empty()) return;
    MPI_Allreduce(MPI_IN_PLACE, flags.data(), as_count(static_cast<int64_t>(flags.size())),
                  MPI_UNSIGNED_CHAR, MPI_BOR, data_);
  }
  std::vector<std::string> gather_to_root(const std::string& local) override {
    int world = 0, rank = 0;
    MPI_Comm_size(data_, &world);
    MPI_Comm_rank(data_, &rank);
    const int length = as_count(static_cast<int64_t>(local.size()));
    std::vector<int> lengths(rank == 0 ? world : 0), offsets(rank == 0 ? world : 0);
    MPI_Gather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, 0, data_);
    std::string all;
    if (rank == 0) {
      int64_t total = 0;
      for (int r = 0; r < world; ++r) {
        offsets[r] = as_count(total);
        total += lengths[r];
      }
      all.resize(static_cast<size_t>(as_count(total)));
    }
    MPI_Gatherv(local.data(), length, MPI_BYTE, all.data(), lengths.data(), offsets.data(),
                MPI_BYTE, 0, data_);
    std::vector<std::string> out;
    for (int r = 0; rank == 0 && r < world; ++r)
      out.push_back(all.substr(static_cast<size_t>(offsets[r]), static_cast<size_t>(lengths[r])));
    return out;
  }

 private:
  ParallelLayout layout_;
  MPI_Comm data_ = MPI_COMM_NULL;  // point-to-point activations and world reductions
  MPI_Comm tp_ = MPI_COMM_NULL;    // this rank's TP group
};

}  // namespace

std::unique_ptr<Collectives> make_mpi_collectives(const ParallelLayout& layout) {
  return std::make_unique<MpiCollectives>(layout);
}

}  // namespace kvmesh
