// NcclCollectives: all-reduce and gather in the TP group, send/recv between adjacent PP stages, on
// the backend's stream. The host waits only where a result must be complete (the gathered logits,
// the end of a stage's sends); it waits by polling the stream's event and ncclCommGetAsyncError, so
// a dead peer ends the job (communicators aborted, MPI_Abort) instead of hanging it. Every NCCL
// call, every wait (also once the stream is done) and every control-plane call (MPI, which has no
// timeout) first checks the communicators, so a failed transfer never lets a step go on with its
// data, nor a rank enter an MPI collective with a peer that is stuck. Communicators
// are non-blocking (ncclConfig_t.blocking = 0): a call that answers ncclInProgress is polled until
// the communicator settles, up to the same timeout, so a peer that never joins ncclCommInitRank
// fails the start-up with an error instead of holding every member in it.
#include "worker/cuda/nccl_collectives.h"

#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace kvmesh {
namespace {

constexpr int kIdTag = 7301;  // MPI tag of the communicator id messages

// What a communicator's index 0 sends its members: the id, and whether it could make one.
struct IdMessage {
  int32_t ok = 0;
  ncclUniqueId id;
};

Status nccl_status(ncclResult_t r, const char* what) {
  if (r == ncclSuccess) return Status::ok();
  return internal_error(std::string(what) + ": " + ncclGetErrorString(r));
}

class NcclCollectives final : public Collectives {
 public:
  NcclCollectives(const ParallelLayout& layout, std::unique_ptr<Collectives> control, double timeout_s)
      : layout_(layout), control_(std::move(control)), timeout_s_(timeout_s) {}

  ~NcclCollectives() override {
    for (ncclComm_t* c : {&tp_, &prev_, &next_}) close(c);
    if (done_ != nullptr) (void)cudaEventDestroy(done_);
  }

  Status bind_stream(void* stream) override {
    if (stream == nullptr) return invalid_argument("NCCL collectives need the CUDA backend (--device cuda)");
    stream_ = static_cast<cudaStream_t>(stream);
    if (cudaGetDevice(&device_) != cudaSuccess) return internal_error("cudaGetDevice failed");
    if (cudaEventCreateWithFlags(&done_, cudaEventDisableTiming) != cudaSuccess)
      return internal_error("cudaEventCreate failed (NCCL collectives)");
    // Every rank goes through every exchange it takes part in, even after a failure of its own,
    // so that no peer waits for an id that never comes; the caller agrees on the first error.
    const int tp = layout_.tp, stage = layout_.pp_rank();
    Status first = Status::ok();
    auto keep = [&first](const Status& s) {
      if (first.is_ok()) first = s;
    };
    if (tp > 1) {
      std::vector<int> group;
      for (int r = 0; r < tp; ++r) group.push_back(stage * tp + r);
      keep(init_comm(group, layout_.tp_rank(), &tp_, "TP group"));
    }
    // Pairs of adjacent stages in stage order, so each pair's two ranks meet without a cycle.
    for (int s = 0; s + 1 < layout_.pp; ++s) {
      const int lower = s * tp + layout_.tp_rank();
      if (stage == s) keep(init_comm({lower, lower + tp}, 0, &next_, "PP pair"));
      if (stage == s + 1) keep(init_comm({lower, lower + tp}, 1, &prev_, "PP pair"));
    }
    return first;
  }

  void tp_all_reduce_sum(float* data, int64_t n) override {
    enter();
    // A decode graph whose capture already failed is dropped by every TP rank (they agree on it
    // after recording), so its all-reduce is not issued: the failure stays the recording's.
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(stream_, &capture) == cudaSuccess && capture == cudaStreamCaptureStatusInvalidated)
      return;
    guard(ncclAllReduce(data, data, static_cast<size_t>(n), ncclFloat32, ncclSum, tp_, stream_), tp_,
          "ncclAllReduce");
  }
  void tp_gather(const float* local, int64_t n, float* all) override {
    enter();
    const size_t count = static_cast<size_t>(n);
    guard(ncclGroupStart(), tp_, "ncclGroupStart");
    in_group_ = true;
    if (layout_.tp_rank() == 0) {
      for (int r = 1; r < layout_.tp; ++r)
        guard(ncclRecv(all + r * count, count, ncclFloat32, r, tp_, stream_), tp_, "ncclRecv (gather)");
    } else {
      guard(ncclSend(local, count, ncclFloat32, 0, tp_, stream_), tp_, "ncclSend (gather)");
    }
    in_group_ = false;
    guard(ncclGroupEnd(), tp_, "ncclGroupEnd");
    if (layout_.tp_rank() == 0 &&
        cudaMemcpyAsync(all, local, count * sizeof(float), cudaMemcpyDeviceToDevice, stream_) != cudaSuccess)
      fail("copying the local logits shard", "cudaMemcpyAsync failed");
    wait("tp_gather");
  }
  void pp_send_next(const float* data, int64_t n, int tag) override {
    (void)tag;  // NCCL keeps the order of sends and receives on one communicator
    enter();
    guard(ncclSend(data, static_cast<size_t>(n), ncclFloat32, 1, next_, stream_), next_, "ncclSend (PP)");
  }
  void pp_recv_prev(float* data, int64_t n, int tag) override {
    (void)tag;
    enter();
    guard(ncclRecv(data, static_cast<size_t>(n), ncclFloat32, 0, prev_, stream_), prev_, "ncclRecv (PP)");
  }
  void pp_flush_sends() override {
    if (stream_ == nullptr) return;
    enter();
    wait("the step's transfers");
  }

  // Control-plane calls wait on every peer over MPI, which has no timeout: a rank whose
  // communicator already failed ends the job instead of entering one with a stuck peer.
  int64_t world_min(int64_t value) override {
    check_communicators("world_min");
    return control_->world_min(value);
  }
  Status agree(const Status& local) override {
    check_communicators("agree");
    return control_->agree(local);
  }
  bool tp_all_true(bool local) override {
    check_communicators("tp_all_true");
    return control_->tp_all_true(local);
  }
  void world_or_flags(std::vector<uint8_t>& flags) override {
    check_communicators("world_or_flags");
    control_->world_or_flags(flags);
  }
  std::vector<std::string> gather_to_root(const std::string& local) override {
    check_communicators("gather_to_root");
    return control_->gather_to_root(local);
  }

 private:
  // Creates a communicator of the world ranks `members` (this rank is members[index]). Index 0
  // makes the id and sends it to the others over MPI, with whether it could: when it could not,
  // every member returns an error instead of entering ncclCommInitRankConfig.
  Status init_comm(const std::vector<int>& members, int index, ncclComm_t* comm, const char* what) {
    IdMessage message{};
    if (index == 0) {
      const Status made = nccl_status(ncclGetUniqueId(&message.id), "ncclGetUniqueId");
      message.ok = made.is_ok() ? 1 : 0;
      for (size_t i = 1; i < members.size(); ++i)
        MPI_Send(&message, sizeof(message), MPI_BYTE, members[i], kIdTag, MPI_COMM_WORLD);
      if (!made.is_ok()) return made.with_context(what);
    } else {
      MPI_Recv(&message, sizeof(message), MPI_BYTE, members[0], kIdTag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      if (message.ok == 0)
        return internal_error(std::string(what) + ": rank " + std::to_string(members[0]) +
                              " could not make the NCCL communicator id");
    }
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    const ncclResult_t started =
        ncclCommInitRankConfig(comm, static_cast<int>(members.size()), message.id, index, &config);
    Status s = started == ncclInProgress ? Status::ok() : nccl_status(started, "ncclCommInitRankConfig");
    if (s.is_ok()) s = settled(*comm, "ncclCommInitRankConfig");
    if (!s.is_ok()) {
      if (*comm != nullptr) (void)ncclCommAbort(*comm);
      *comm = nullptr;
      // A member that never joined is stuck or gone: the start-up's next MPI agreement would
      // wait for it forever, so the job ends here.
      if (s.code() == StatusCode::unavailable) fail(what, s.to_string().c_str());
      return s.with_context(what);
    }
    return Status::ok();
  }

  // Polls a non-blocking communicator until no call of it is in progress. Errors: it reported an
  // error, or it was still in progress after the timeout (a peer never came).
  Status settled(ncclComm_t comm, const char* what) const { return settled(comm, what, timeout_s_); }
  Status settled(ncclComm_t comm, const char* what, double timeout_s) const {
    if (comm == nullptr) return internal_error(std::string(what) + ": no communicator");
    const auto start = std::chrono::steady_clock::now();
    for (int spins = 0;; ++spins) {
      ncclResult_t state = ncclSuccess;
      const ncclResult_t queried = ncclCommGetAsyncError(comm, &state);
      if (queried != ncclSuccess) return nccl_status(queried, "ncclCommGetAsyncError");
      if (state == ncclSuccess) return Status::ok();
      if (state != ncclInProgress) return nccl_status(state, what);
      const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (waited > timeout_s)
        return unavailable(std::string(what) + " still in progress after " + std::to_string(static_cast<int>(timeout_s)) +
                           " s (a peer rank is gone or stuck)");
      if (spins > 1000) std::this_thread::sleep_for(std::chrono::microseconds(spins > 100000 ? 1000 : 50));
    }
  }

  // Finalizes and frees a communicator, or aborts it when it does not settle soon (a peer that
  // already exited never finalizes, and the process should not linger for the step timeout).
  void close(ncclComm_t* comm) const {
    if (*comm == nullptr) return;
    constexpr double kFinalizeSeconds = 20.0;
    const ncclResult_t r = ncclCommFinalize(*comm);
    if ((r == ncclSuccess || r == ncclInProgress) &&
        settled(*comm, "ncclCommFinalize", std::min(timeout_s_, kFinalizeSeconds)).is_ok())
      (void)ncclCommDestroy(*comm);
    else
      (void)ncclCommAbort(*comm);
    *comm = nullptr;
  }

  void enter() {
    if (cudaSetDevice(device_) != cudaSuccess) fail("cudaSetDevice", "failed");
    check_communicators("the next call");
  }
  // Ends the job when a communicator reports an error (a peer gone, a transfer aborted). NCCL
  // may finish a failed collective's kernels, so a completed stream is no proof of success.
  void check_communicators(const char* what) {
    for (ncclComm_t comm : {tp_, prev_, next_}) {
      if (comm == nullptr) continue;
      ncclResult_t async = ncclSuccess;
      const ncclResult_t queried = ncclCommGetAsyncError(comm, &async);
      if (queried != ncclSuccess) fail(what, ncclGetErrorString(queried));
      if (async != ncclSuccess && async != ncclInProgress) fail(what, ncclGetErrorString(async));
    }
  }
  // Checks an NCCL call. In progress: inside a group the group's end settles it; otherwise the
  // communicator must settle before the next call or kernel on its stream.
  void guard(ncclResult_t r, ncclComm_t comm, const char* what) {
    if (r == ncclInProgress) {
      if (in_group_) return;
      const Status s = settled(comm, what);
      if (!s.is_ok()) fail(what, s.to_string().c_str());
      return;
    }
    if (r != ncclSuccess) fail(what, ncclGetErrorString(r));
  }
  // Waits for the stream up to the timeout, watching the communicators for asynchronous errors,
  // before and after the stream is done.
  void wait(const char* what) {
    if (cudaEventRecord(done_, stream_) != cudaSuccess) fail(what, "cudaEventRecord failed");
    const auto start = std::chrono::steady_clock::now();
    for (int spins = 0;; ++spins) {
      const cudaError_t q = cudaEventQuery(done_);
      check_communicators(what);
      if (q == cudaSuccess) return;
      if (q != cudaErrorNotReady) fail(what, cudaGetErrorString(q));
      const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (waited > timeout_s_)
        fail(what, ("not finished after " + std::to_string(static_cast<int>(timeout_s_)) +
                    " s (a peer rank is gone or stuck)").c_str());
      if (spins > 1000) std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
  [[noreturn]] void fail(const char* what, const char* why) {
    std::fprintf(stderr, "kvmesh rank %d: NCCL %s failed: %s; aborting the communicators and the job\n",
                 layout_.rank, what, why);
    std::fflush(stderr);
    for (ncclComm_t* c : {&tp_, &prev_, &next_}) {
      if (*c != nullptr) (void)ncclCommAbort(*c);
      *c = nullptr;
    }
    MPI_Abort(MPI_COMM_WORLD, 1);
    std::abort();
  }

  ParallelLayout layout_;
  std::unique_ptr<Collectives> control_;
  double timeout_s_;
  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t done_ = nullptr;
  ncclComm_t tp_ = nullptr;
  ncclComm_t prev_ = nullptr;  // with the previous stage (this rank is index 1)
  ncclComm_t next_ = nullptr;  // with the next stage (this rank is index 0)
  bool in_group_ = false;      // between ncclGroupStart and ncclGroupEnd
};

}  // namespace

std::unique_ptr<Collectives> make_nccl_collectives(const ParallelLayout& layout,
                                                   std::unique_ptr<Collectives> control,
                                                   double timeout_s) {
  return std::make_unique<NcclCollectives>(layout, std::move(control), timeout_s);
}

}  // namespace kvmesh
