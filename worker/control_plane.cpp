// The control plane between ranks: plan broadcast from rank 0, result return from the sampling rank,
// with polled waits bounded by a deadline (and a light sleep so idle ranks do not spin a core).
#include "worker/control_plane.h"

#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "common/clock.h"

namespace kvmesh {
namespace {

constexpr int kResultLengthTag = 1;
constexpr int kResultBytesTag = 2;

// Polls a request until it completes or timeout_s passes (timeout_s <= 0: no deadline); the error
// names what did not arrive, and from which rank when one is awaited (rank >= 0: that rank, or one
// it waits on, stopped answering).
Status wait_bounded(MPI_Request* request, double timeout_s, const char* what, int rank = -1) {
  const double start = seconds_now();
  for (int polls = 0;; ++polls) {
    int done = 0;
    MPI_Test(request, &done, MPI_STATUS_IGNORE);
    if (done) return Status::ok();
    if (timeout_s > 0 && seconds_now() - start > timeout_s) {
      char bound[64];
      std::snprintf(bound, sizeof bound, " within --step-timeout %g s", timeout_s);
      return unavailable(std::string("a rank stopped answering: ") + what +
                         (rank >= 0 ? " from rank " + std::to_string(rank) : std::string()) + bound);
    }
    if (polls > 2000) std::this_thread::sleep_for(std::chrono::microseconds(polls > 20000 ? 1000 : 50));
  }
}

// KVMESH_DEBUG_FAIL_STEP_RANK=<rank>: that rank's first step with sequences fails after it ran
// (tests of a step that fails on one rank only); -1 when unset.
int debug_fail_step_rank() {
  const char* named = std::getenv("KVMESH_DEBUG_FAIL_STEP_RANK");
  return named == nullptr ? -1 : std::atoi(named);
}

// The told failure, once: `*fail_rank` is this rank's and the step ran sequences.
Status fail_if_told(int* fail_rank, int rank, const StepPlan& plan) {
  if (*fail_rank != rank || plan.seqs.empty()) return Status::ok();
  *fail_rank = -1;
  return internal_error("the step failed on purpose (KVMESH_DEBUG_FAIL_STEP_RANK)");
}

}  // namespace

struct ControlChannel::Comm {
  MPI_Comm comm = MPI_COMM_NULL;
};

ControlChannel ControlChannel::open() {
  auto comm = std::make_unique<Comm>();
  MPI_Comm_dup(MPI_COMM_WORLD, &comm->comm);
  return ControlChannel(std::move(comm));
}

ControlChannel::ControlChannel(std::unique_ptr<Comm> comm) : comm_(std::move(comm)) {}
ControlChannel::ControlChannel(ControlChannel&& other) noexcept = default;

ControlChannel::~ControlChannel() {
  if (comm_ != nullptr && comm_->comm != MPI_COMM_NULL) MPI_Comm_free(&comm_->comm);
}

static Status broadcast_bytes(MPI_Comm comm, std::string* bytes, double timeout_s) {
  unsigned long long length = bytes->size();
  MPI_Request req;
  MPI_Ibcast(&length, 1, MPI_UNSIGNED_LONG_LONG, 0, comm, &req);
  KVMESH_RETURN_IF_ERROR(wait_bounded(&req, timeout_s, "the step plan did not reach every rank"));
  if (length > (1ull << 31)) return invalid_argument("step plan of " + std::to_string(length) + " bytes");
  bytes->resize(length);
  MPI_Ibcast(bytes->data(), static_cast<int>(length), MPI_BYTE, 0, comm, &req);
  return wait_bounded(&req, timeout_s, "the step plan did not reach every rank");
}

static void send_result(MPI_Comm comm, const StepResult& result) {
  std::string reply = encode_step_result(result);
  unsigned long long length = reply.size();
  MPI_Send(&length, 1, MPI_UNSIGNED_LONG_LONG, 0, kResultLengthTag, comm);
  MPI_Send(reply.data(), static_cast<int>(length), MPI_BYTE, 0, kResultBytesTag, comm);
}

DistributedExecutor::DistributedExecutor(std::unique_ptr<Worker> worker, ControlChannel channel,
                                         const ControlOptions& options)
    : worker_(std::move(worker)), channel_(std::move(channel)), options_(options),
      fail_rank_(debug_fail_step_rank()) {}

DistributedExecutor::~DistributedExecutor() {
  if (!shut_down_) (void)shutdown();
}


Status DistributedExecutor::execute(const StepPlan& plan, StepResult* result) {
  std::string bytes = encode_step_plan(plan);
  KVMESH_RETURN_IF_ERROR(broadcast_bytes(channel_.comm().comm, &bytes, options_.step_timeout_s));
  Status local = worker_->execute(plan, result);
  if (local.is_ok()) local = fail_if_told(&fail_rank_, 0, plan);
  const int sampler = worker_->layout().sampler_rank();
  if (sampler == 0) return local;
  // The sampling rank answers every plan, failed or not; its answer is taken even when this rank's
  // step failed, so that the next step's wait gets the next step's answer.
  StepResult remote;
  KVMESH_RETURN_IF_ERROR(receive_result(sampler, &remote));
  KVMESH_RETURN_IF_ERROR(local);
  if (remote.error_code != StatusCode::ok) return Status(remote.error_code, remote.error);
  *result = std::move(remote);
  return Status::ok();
}

Status DistributedExecutor::receive_result(int sampler, StepResult* result) {
  const double wait_started = seconds_now();
  struct CountWait {
    Worker& worker;
    double started;
    ~CountWait() { worker.add_step_wait(seconds_now() - started); }
  } count_wait{*worker_, wait_started};
  unsigned long long length = 0;
  MPI_Request req;
  MPI_Irecv(&length, 1, MPI_UNSIGNED_LONG_LONG, sampler, kResultLengthTag, channel_.comm().comm, &req);
  KVMESH_RETURN_IF_ERROR(wait_bounded(&req, options_.step_timeout_s, "no step result", sampler));
  if (length > (1ull << 31)) return invalid_argument("step result of " + std::to_string(length) + " bytes");
  std::string reply(length, '\0');
  MPI_Irecv(reply.data(), static_cast<int>(length), MPI_BYTE, sampler, kResultBytesTag, channel_.comm().comm, &req);
  KVMESH_RETURN_IF_ERROR(wait_bounded(&req, options_.step_timeout_s, "no step result", sampler));
  KVMESH_ASSIGN_OR_RETURN(*result, decode_step_result(reply));
  return Status::ok();
}

Status DistributedExecutor::shutdown() {
  if (shut_down_) return Status::ok();
  shut_down_ = true;
  StepPlan plan;
  plan.shutdown = true;
  std::string bytes = encode_step_plan(plan);
  return broadcast_bytes(channel_.comm().comm, &bytes, options_.step_timeout_s);
}

void print_rank_timing(const Worker& worker) {
  const StepTiming& t = worker.total_timing();
  std::fprintf(stderr, "kvmesh-timing rank=%d steps=%lld step_s=%.4f busy_s=%.4f busy_share=%.3f\n",
               worker.layout().rank, static_cast<long long>(worker.n_steps()), t.total_s, t.compute_s,
               t.total_s > 0 ? t.compute_s / t.total_s : 0.0);
}

Status run_worker_loop(Worker& worker, ControlChannel channel, const ControlOptions& options) {
  MPI_Comm comm = channel.comm().comm;
  const int rank = worker.layout().rank;
  const bool sampler = worker.layout().is_sampler();
  int fail_rank = debug_fail_step_rank();
  Status status;
  for (;;) {
    std::string bytes;
    status = broadcast_bytes(comm, &bytes, 0.0);  // idle ranks wait for the next plan
    if (!status.is_ok()) break;
    auto plan = decode_step_plan(bytes);
    if (!plan.is_ok()) {
      status = plan.status();
      break;
    }
    if (plan->shutdown) break;
    StepResult result;
    Status step = worker.execute(*plan, &result);
    if (step.is_ok()) step = fail_if_told(&fail_rank, rank, *plan);
    if (!step.is_ok()) {
      // The ranks ran the same collectives (a failing rank goes on with its peers), so they stay
      // in step: the sampling rank reports the failure at once and every rank takes the next plan.
      std::fprintf(stderr, "kvmesh worker rank %d: step %llu failed: %s\n", rank,
                   static_cast<unsigned long long>(plan->step_id), step.to_string().c_str());
      result = StepResult{};
      result.step_id = plan->step_id;
      result.error_code = step.code();
      result.error = "rank " + std::to_string(rank) + ": " + step.message();
    }
    if (sampler) send_result(comm, result);
  }
  if (options.report_timing) print_rank_timing(worker);
  return status;
}

}  // namespace kvmesh
