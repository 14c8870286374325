// The emulated NCCL: communicators among the MPI processes of a job (one emulated device each),
// their all-reduce and point-to-point transfers carried as MPI messages on MPI_COMM_WORLD, each
// communicator under a tag of its own. Calls on a stream run in stream order like the emulated
// runtime's other work (when something waits on the stream, or recorded by a capture and
// replayed by a graph launch); a query of the stream finds a transfer whose peer has not come yet
// not ready, as on a GPU.
// A send's stream work ends only once the peer has received it (NCCL documents its send and
// receive as blocking for the GPU: the stream goes on when both sides have met): the bytes go as a
// buffered message, and the receiver answers each with an acknowledgement the sender's stream
// waits for. A group's sends are all issued before its receives, and their acknowledgements are
// awaited after them, so a group pairing a send with a receive never waits on itself (the group
// is expected on one stream, as kvmesh issues it). A receive, and a send's wait for its
// acknowledgement, wait up to KVMESH_EMULATED_NCCL_TIMEOUT_S (default 120 s) and then mark the
// communicator failed (ncclRemoteError), as NCCL reports a peer that is gone. Non-blocking
// communicators (ncclConfig_t.blocking = 0) answer ncclInProgress from ncclCommInitRankConfig
// and ncclCommFinalize and settle as ncclCommGetAsyncError is polled, as NCCL's do. What it
// checks beyond NCCL: buffers inside device allocations, and a receive of exactly the sent size.
// A stuck rank, for tests: KVMESH_EMULATED_NCCL_STALL_RANK=<world rank> stops that rank for good
// (600 s at most) at its KVMESH_EMULATED_NCCL_STALL_AFTER-th transfer (default 1; 0: in its first
// ncclCommInitRankConfig, before it joins), before that transfer begins, or with
// KVMESH_EMULATED_NCCL_STALL_DONE=1 once it is done (its peers then wait elsewhere).
#include <mpi.h>
#include <nccl.h>
#include <sched.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "emulated_device.h"
#include "emulated_runtime.h"

namespace {

constexpr char kIdMagic[] = "kvmesh emulated NCCL id";
// A communicator's tags: kTagBase + 3 * (its maker's world rank * kIdsPerRank + serial), +1 for
// data, +2 for the acknowledgements of received data.
constexpr int kTagBase = 1 << 20;
constexpr int kIdsPerRank = 4096;

struct IdContents {
  char magic[sizeof(kIdMagic)];
  int32_t maker = 0;   // world rank that made the id
  int32_t serial = 0;  // how many ids that rank made before
};
static_assert(sizeof(IdContents) <= NCCL_UNIQUE_ID_BYTES, "the id must fit ncclUniqueId");

double timeout_seconds() {
  const char* named = std::getenv("KVMESH_EMULATED_NCCL_TIMEOUT_S");
  if (named == nullptr || *named == '\0') return 120.0;
  char* end = nullptr;
  const double s = std::strtod(named, &end);
  if (*end != '\0' || !(s > 0)) cuemu::fail("KVMESH_EMULATED_NCCL_TIMEOUT_S must be a positive number of seconds");
  return s;
}

int world_rank() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized == 0) cuemu::fail("emulated NCCL: its communicators are MPI processes, and MPI is not initialized");
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

size_t element_bytes(ncclDataType_t t) {
  switch (t) {
    case ncclInt8: case ncclUint8: return 1;
    case ncclFloat16: case ncclBfloat16: return 2;
    case ncclInt32: case ncclUint32: case ncclFloat32: return 4;
    case ncclInt64: case ncclUint64: case ncclFloat64: return 8;
    default: return 0;
  }
}

// The rank told to get stuck, and where: KVMESH_EMULATED_NCCL_STALL_RANK, _AFTER, _DONE.
struct StallPlan {
  long rank = -1;        // none
  long transfer = 1;     // 0: in its first ncclCommInitRankConfig
  bool once_done = false;  // at the first transfer end from that transfer on, not at its start
};
const StallPlan& stall_plan() {
  static const StallPlan plan{cuemu::env_count("KVMESH_EMULATED_NCCL_STALL_RANK", -1, 0xFFFF),
                              cuemu::env_count("KVMESH_EMULATED_NCCL_STALL_AFTER", 1, 1L << 40),
                              cuemu::env_count("KVMESH_EMULATED_NCCL_STALL_DONE", 0, 1) == 1};
  return plan;
}
long transfers_begun = 0;

[[noreturn]] void stop_for_good(const char* where) {
  std::fprintf(stderr, "emulated NCCL: world rank %ld stops at its transfer %ld, %s (KVMESH_EMULATED_NCCL_STALL_RANK)\n",
               stall_plan().rank, transfers_begun, where);
  std::fflush(stderr);
  std::this_thread::sleep_for(std::chrono::seconds(600));
  std::_Exit(3);
}
bool is_stuck_rank() { return stall_plan().rank >= 0 && world_rank() == stall_plan().rank; }

// Called before every transfer (and with at_init, by every communicator init): stops this rank
// when it is the one told to get stuck there.
void maybe_stall(bool at_init = false) {
  if (!is_stuck_rank()) return;
  const StallPlan& plan = stall_plan();
  if (at_init) {
    if (plan.transfer == 0) stop_for_good("before it joins its first communicator");
    return;
  }
  if (++transfers_begun == plan.transfer && !plan.once_done) stop_for_good("before it begins");
}
// Called once a transfer is done.
void maybe_stall_done() {
  if (is_stuck_rank() && stall_plan().once_done && transfers_begun >= stall_plan().transfer)
    stop_for_good("once it is done");
}

// Backs off a polling loop once it has spun a while (the ranks may share fewer cores than they are).
void pause(int spins) {
  if (spins > 100) sched_yield();
}

}  // namespace

// A member's view of one communicator.
struct ncclComm {
  int rank = 0, nranks = 0;
  int handshake_tag = 0, data_tag = 0, ack_tag = 0;
  std::vector<int> world;  // world rank of each member, once the handshake is done
  bool blocking = true;
  ncclResult_t state = ncclInProgress;  // ncclInProgress until the handshake is done
  double timeout_s = 120.0;

  // The handshake: members send their world rank to the id's maker, which sends everyone the table.
  int hello = 0;
  std::vector<int> hellos;  // on the maker: one per other member
  std::vector<MPI_Request> handshake;
  std::vector<bool> handshake_receives;  // which of `handshake` are receives
  bool tables_sent = false;

  struct PendingSend {
    std::vector<char> bytes;
    MPI_Request request = MPI_REQUEST_NULL;
  };
  std::vector<std::unique_ptr<PendingSend>> sends;
  bool finalizing = false;

  // Moves the handshake and the buffered sends on; returns the communicator's state.
  ncclResult_t progress() {
    if (!handshake.empty()) {
      int done = 0;
      MPI_Testall(static_cast<int>(handshake.size()), handshake.data(), &done, MPI_STATUSES_IGNORE);
      if (done) {
        handshake.clear();
        handshake_receives.clear();
        if (rank == 0 && !tables_sent) send_tables();
        else if (state == ncclInProgress) state = ncclSuccess;
      }
    }
    for (size_t i = 0; i < sends.size();) {
      int done = 0;
      MPI_Test(&sends[i]->request, &done, MPI_STATUS_IGNORE);
      if (done) {
        sends[i] = std::move(sends.back());
        sends.pop_back();
      } else {
        ++i;
      }
    }
    if (state == ncclSuccess && finalizing && !sends.empty()) return ncclInProgress;
    return state;
  }

  // On the maker, after every hello: the world rank of each member, to each member.
  void send_tables() {
    world.assign(static_cast<size_t>(nranks), -1);
    world[0] = world_rank();
    for (int h : hellos) {
      const int member = h >> 16, where = h & 0xFFFF;
      if (member <= 0 || member >= nranks || world[static_cast<size_t>(member)] != -1) {
        std::fprintf(stderr, "emulated NCCL: two members joined as rank %d, or one outside the %d ranks\n", member,
                     nranks);
        state = ncclInvalidUsage;
        return;
      }
      world[static_cast<size_t>(member)] = where;
    }
    tables_sent = true;
    for (int m = 1; m < nranks; ++m) {
      handshake.emplace_back();
      handshake_receives.push_back(false);
      MPI_Isend(world.data(), nranks, MPI_INT, world[static_cast<size_t>(m)], handshake_tag, MPI_COMM_WORLD,
                &handshake.back());
    }
    if (handshake.empty()) state = ncclSuccess;
  }

  void buffered_send(const void* data, size_t bytes, int peer) {
    if (state != ncclSuccess) return;
    auto pending = std::make_unique<PendingSend>();
    pending->bytes.assign(static_cast<const char*>(data), static_cast<const char*>(data) + bytes);
    MPI_Isend(pending->bytes.data(), static_cast<int>(bytes), MPI_BYTE, world[static_cast<size_t>(peer)], data_tag,
              MPI_COMM_WORLD, &pending->request);
    sends.push_back(std::move(pending));
  }

  // When the transfer now first in stream order began to wait for its peer (none: it has not).
  // A communicator's transfers run one after another on its stream.
  std::optional<std::chrono::steady_clock::time_point> waiting_since;

  enum class Arrival { arrived, not_yet, failed };
  // Looks for the next message from `peer` under `tag`, and with may_block waits for it. Failed
  // (the communicator too) once the transfer has waited the timeout. `waiting_for` says what
  // for, in the message.
  Arrival await_message(int peer, int tag, const char* waiting_for, bool may_block, MPI_Status* status) {
    const int source = world[static_cast<size_t>(peer)];
    if (!waiting_since) waiting_since = std::chrono::steady_clock::now();
    for (int spins = 0;; ++spins) {
      int arrived = 0;
      MPI_Iprobe(source, tag, MPI_COMM_WORLD, &arrived, status);
      if (arrived) {
        waiting_since.reset();
        return Arrival::arrived;
      }
      (void)progress();
      if (std::chrono::duration<double>(std::chrono::steady_clock::now() - *waiting_since).count() > timeout_s) {
        std::fprintf(stderr, "emulated NCCL: rank %d of %d waited %.0f s for rank %d (world rank %d) %s\n", rank,
                     nranks, timeout_s, peer, source, waiting_for);
        state = ncclRemoteError;
        waiting_since.reset();
        return Arrival::failed;
      }
      if (!may_block) return Arrival::not_yet;
      pause(spins);
    }
  }

  // Receives exactly `bytes` from `peer` and acknowledges them, or marks the communicator failed
  // after the timeout; false: not yet (only without may_block).
  bool receive(void* data, size_t bytes, int peer, bool may_block) {
    if (state != ncclSuccess) return true;
    const int source = world[static_cast<size_t>(peer)];
    MPI_Status status;
    const Arrival arrival = await_message(peer, data_tag, "to send", may_block, &status);
    if (arrival != Arrival::arrived) return arrival == Arrival::failed;
    int count = 0;
    MPI_Get_count(&status, MPI_BYTE, &count);
    if (static_cast<size_t>(count) != bytes) {
      char buf[200];
      std::snprintf(buf, sizeof(buf), "emulated NCCL: rank %d receives %zu bytes from rank %d, which sent %d", rank,
                    bytes, peer, count);
      cuemu::fail(buf);
    }
    MPI_Recv(data, count, MPI_BYTE, source, data_tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    auto ack = std::make_unique<PendingSend>();
    MPI_Isend(nullptr, 0, MPI_BYTE, source, ack_tag, MPI_COMM_WORLD, &ack->request);
    sends.push_back(std::move(ack));
    return true;
  }

  // Waits until `peer` has received the oldest of the sends to it not yet acknowledged, or marks
  // the communicator failed after the timeout; false: not yet (only without may_block).
  bool await_receipt(int peer, bool may_block) {
    if (state != ncclSuccess) return true;
    MPI_Status status;
    const Arrival arrival = await_message(peer, ack_tag, "to receive what it was sent", may_block, &status);
    if (arrival != Arrival::arrived) return arrival == Arrival::failed;
    MPI_Recv(nullptr, 0, MPI_BYTE, world[static_cast<size_t>(peer)], ack_tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    return true;
  }

  // Cancels the receives still posted (their buffers go with the communicator) and lets go of
  // the sends (the job is ending, or they are complete).
  void drop_pending() {
    for (size_t i = 0; i < handshake.size(); ++i) {
      if (handshake[i] == MPI_REQUEST_NULL) continue;
      if (handshake_receives[i]) {
        MPI_Cancel(&handshake[i]);
        MPI_Wait(&handshake[i], MPI_STATUS_IGNORE);
      } else {
        MPI_Request_free(&handshake[i]);
      }
    }
    for (auto& s : sends)
      if (s->request != MPI_REQUEST_NULL) MPI_Request_free(&s->request);
    handshake.clear();
    handshake_receives.clear();
    sends.clear();
  }
};

namespace {

// Waits for a blocking communicator's calls (the handshake, the flushed sends).
ncclResult_t settle(ncclComm* c) {
  const auto start = std::chrono::steady_clock::now();
  for (int spins = 0;; ++spins) {
    const ncclResult_t s = c->progress();
    if (s != ncclInProgress) return s;
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > c->timeout_s)
      return ncclRemoteError;
    pause(spins);
  }
}

// A point-to-point call of a group, run when the group ends.
struct GroupedCall {
  bool send = false;
  void* data = nullptr;
  size_t bytes = 0;
  int peer = 0;
  ncclComm* comm = nullptr;
  cudaStream_t stream = nullptr;
};
thread_local int group_depth = 0;
thread_local std::vector<GroupedCall> grouped;

ncclResult_t check_call(ncclComm* comm, size_t count, ncclDataType_t type, int peer, const void* data,
                        const char* what) {
  if (comm == nullptr || element_bytes(type) == 0) return ncclInvalidArgument;
  if (comm->state == ncclInProgress) {
    std::fprintf(stderr, "emulated NCCL: %s on a communicator still being initialized\n", what);
    return ncclInvalidUsage;
  }
  if (peer < 0 || peer >= comm->nranks) return ncclInvalidArgument;
  cuemu::check_device_range(data, count * element_bytes(type), what);
  return ncclSuccess;
}

// Issues a send's bytes or a receive on the call's stream.
void run_point_to_point(const GroupedCall& call) {
  if (call.send) {
    cuemu::run_on_stream(call.stream, [call]() {
      maybe_stall();
      call.comm->buffered_send(call.data, call.bytes, call.peer);
    });
    return;
  }
  cuemu::run_on_stream_polled(call.stream, [call](bool may_block) {
    if (!call.comm->waiting_since) maybe_stall();  // once per receive, not per look
    if (!call.comm->receive(call.data, call.bytes, call.peer, may_block)) return false;
    maybe_stall_done();
    return true;
  });
}

// A send's end on its stream: the peer has received it.
void await_receipt(const GroupedCall& send) {
  cuemu::run_on_stream_polled(send.stream, [send](bool may_block) {
    if (!send.comm->await_receipt(send.peer, may_block)) return false;
    maybe_stall_done();
    return true;
  });
}

template <typename T>
void reduce_into(T* acc, const T* x, size_t n, ncclRedOp_t op) {
  for (size_t i = 0; i < n; ++i) {
    switch (op) {
      case ncclSum: acc[i] += x[i]; break;
      case ncclProd: acc[i] *= x[i]; break;
      case ncclMax: acc[i] = acc[i] < x[i] ? x[i] : acc[i]; break;
      case ncclMin: acc[i] = x[i] < acc[i] ? x[i] : acc[i]; break;
      default: break;
    }
  }
}

}  // namespace

extern "C" {

const char* ncclGetErrorString(ncclResult_t r) {
  switch (r) {
    case ncclSuccess: return "no error (emulated NCCL)";
    case ncclUnhandledCudaError: return "unhandled cuda error (emulated NCCL)";
    case ncclSystemError: return "unhandled system error (emulated NCCL)";
    case ncclInternalError: return "internal error (emulated NCCL)";
    case ncclInvalidArgument: return "invalid argument (emulated NCCL)";
    case ncclInvalidUsage: return "invalid usage (emulated NCCL)";
    case ncclRemoteError: return "remote process exited or there was a network error (emulated NCCL)";
    case ncclInProgress: return "NCCL operation in progress (emulated NCCL)";
    default: return "unknown result code (emulated NCCL)";
  }
}

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  static int serial = 0;
  if (id == nullptr) return ncclInvalidArgument;
  if (serial >= kIdsPerRank) return ncclInternalError;
  IdContents contents{};
  std::memcpy(contents.magic, kIdMagic, sizeof(kIdMagic));
  contents.maker = world_rank();
  contents.serial = serial++;
  std::memset(id, 0, sizeof(*id));
  std::memcpy(id->internal, &contents, sizeof(contents));
  return ncclSuccess;
}

ncclResult_t ncclCommInitRankConfig(ncclComm_t* out, int nranks, ncclUniqueId id, int rank, ncclConfig_t* config) {
  if (out == nullptr) return ncclInvalidArgument;
  *out = nullptr;
  maybe_stall(/*at_init=*/true);
  IdContents contents;
  std::memcpy(&contents, id.internal, sizeof(contents));
  if (std::memcmp(contents.magic, kIdMagic, sizeof(kIdMagic)) != 0 || nranks < 1 || rank < 0 || rank >= nranks ||
      nranks > 0xFFFF)
    return ncclInvalidArgument;
  int world_size = 0;
  const int me = world_rank();
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  if (contents.maker < 0 || contents.maker >= world_size) return ncclInvalidArgument;
  // The id's maker is the communicator's rank 0 here (kvmesh makes ids so); others are refused.
  if ((rank == 0) != (contents.maker == me)) {
    std::fprintf(stderr, "emulated NCCL: only the rank that made the id may join as rank 0\n");
    return ncclInvalidUsage;
  }
  auto* c = new ncclComm();
  c->rank = rank;
  c->nranks = nranks;
  c->handshake_tag = kTagBase + 3 * (contents.maker * kIdsPerRank + contents.serial);
  c->data_tag = c->handshake_tag + 1;
  c->ack_tag = c->handshake_tag + 2;
  c->blocking = config == nullptr || config->blocking != 0;
  c->timeout_s = timeout_seconds();
  if (rank == 0) {
    c->hellos.assign(static_cast<size_t>(nranks - 1), 0);
    for (int m = 0; m + 1 < nranks; ++m) {
      c->handshake.emplace_back();
      c->handshake_receives.push_back(true);
      MPI_Irecv(&c->hellos[static_cast<size_t>(m)], 1, MPI_INT, MPI_ANY_SOURCE, c->handshake_tag, MPI_COMM_WORLD,
                &c->handshake.back());
    }
    if (nranks == 1) c->send_tables();
  } else {
    c->hello = rank << 16 | me;
    c->world.assign(static_cast<size_t>(nranks), -1);
    c->handshake.resize(2);
    c->handshake_receives = {false, true};
    MPI_Isend(&c->hello, 1, MPI_INT, contents.maker, c->handshake_tag, MPI_COMM_WORLD, &c->handshake[0]);
    MPI_Irecv(c->world.data(), nranks, MPI_INT, contents.maker, c->handshake_tag, MPI_COMM_WORLD, &c->handshake[1]);
  }
  *out = c;
  if (!c->blocking) return c->progress() == ncclInProgress ? ncclInProgress : c->state;
  return settle(c);
}

ncclResult_t ncclCommInitRank(ncclComm_t* out, int nranks, ncclUniqueId id, int rank) {
  return ncclCommInitRankConfig(out, nranks, id, rank, nullptr);
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* state) {
  if (comm == nullptr || state == nullptr) return ncclInvalidArgument;
  *state = comm->progress();
  return ncclSuccess;
}

ncclResult_t ncclCommFinalize(ncclComm_t comm) {
  if (comm == nullptr) return ncclInvalidArgument;
  comm->finalizing = true;
  if (!comm->blocking) return comm->progress();
  return settle(comm);
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  if (comm == nullptr) return ncclInvalidArgument;
  comm->drop_pending();
  delete comm;
  return ncclSuccess;
}

ncclResult_t ncclCommAbort(ncclComm_t comm) { return ncclCommDestroy(comm); }

ncclResult_t ncclGroupStart() {
  ++group_depth;
  return ncclSuccess;
}

// The group's sends first (their bytes are buffered), then its receives, then the waits for the
// sends' receipts, each on its call's stream.
ncclResult_t ncclGroupEnd() {
  if (group_depth == 0) return ncclInvalidUsage;
  if (--group_depth > 0) return ncclSuccess;
  std::vector<GroupedCall> calls;
  calls.swap(grouped);
  for (const GroupedCall& call : calls)
    if (call.send) run_point_to_point(call);
  for (const GroupedCall& call : calls)
    if (!call.send) run_point_to_point(call);
  for (const GroupedCall& call : calls)
    if (call.send) await_receipt(call);
  return ncclSuccess;
}

ncclResult_t ncclSend(const void* data, size_t count, ncclDataType_t type, int peer, ncclComm_t comm,
                      cudaStream_t stream) {
  if (const ncclResult_t r = check_call(comm, count, type, peer, data, "ncclSend"); r != ncclSuccess) return r;
  GroupedCall call{true, const_cast<void*>(data), count * element_bytes(type), peer, comm, stream};
  if (group_depth > 0) {
    grouped.push_back(call);
  } else {
    run_point_to_point(call);
    await_receipt(call);
  }
  return ncclSuccess;
}

ncclResult_t ncclRecv(void* data, size_t count, ncclDataType_t type, int peer, ncclComm_t comm, cudaStream_t stream) {
  if (const ncclResult_t r = check_call(comm, count, type, peer, data, "ncclRecv"); r != ncclSuccess) return r;
  GroupedCall call{false, data, count * element_bytes(type), peer, comm, stream};
  if (group_depth > 0)
    grouped.push_back(call);
  else
    run_point_to_point(call);
  return ncclSuccess;
}

// Every member sends its values to every other, adds all of them up in rank order, so every
// member ends with the same bits (as NCCL's all-reduce gives), and waits until every other has
// received its values. Float32 and float64 only.
ncclResult_t ncclAllReduce(const void* send, void* recv, size_t count, ncclDataType_t type, ncclRedOp_t op,
                           ncclComm_t comm, cudaStream_t stream) {
  if (const ncclResult_t r = check_call(comm, count, type, 0, send, "ncclAllReduce (send)"); r != ncclSuccess)
    return r;
  cuemu::check_device_range(recv, count * element_bytes(type), "ncclAllReduce (receive)");
  if ((type != ncclFloat32 && type != ncclFloat64) || op < ncclSum || op > ncclMin) return ncclInvalidArgument;
  if (group_depth > 0) {
    std::fprintf(stderr, "emulated NCCL: ncclAllReduce inside a group is not emulated\n");
    return ncclInvalidUsage;
  }
  // Stream work item by item (the sends, each receive, each receipt, the result), so a query
  // stops at the first peer that has not come; the buffers are the call's, kept across replays.
  const size_t bytes = count * element_bytes(type);
  struct Buffers {
    std::vector<char> mine, acc, theirs;
  };
  auto b = std::make_shared<Buffers>();
  b->acc.resize(bytes);
  b->theirs.resize(bytes);
  cuemu::run_on_stream(stream, [=]() {
    maybe_stall();
    b->mine.assign(static_cast<const char*>(send), static_cast<const char*>(send) + bytes);
    for (int m = 0; m < comm->nranks; ++m)
      if (m != comm->rank) comm->buffered_send(b->mine.data(), bytes, m);
  });
  for (int m = 0; m < comm->nranks; ++m) {
    cuemu::run_on_stream_polled(stream, [=](bool may_block) {
      const char* values = b->mine.data();
      if (m != comm->rank) {
        if (!comm->receive(b->theirs.data(), bytes, m, may_block)) return false;
        values = b->theirs.data();
      }
      if (m == 0)
        std::memcpy(b->acc.data(), values, bytes);
      else if (type == ncclFloat32)
        reduce_into(reinterpret_cast<float*>(b->acc.data()), reinterpret_cast<const float*>(values), count, op);
      else
        reduce_into(reinterpret_cast<double*>(b->acc.data()), reinterpret_cast<const double*>(values), count, op);
      return true;
    });
  }
  for (int m = 0; m < comm->nranks; ++m)
    if (m != comm->rank)
      cuemu::run_on_stream_polled(stream, [=](bool may_block) { return comm->await_receipt(m, may_block); });
  cuemu::run_on_stream(stream, [=]() {
    if (comm->state == ncclSuccess) std::memcpy(recv, b->acc.data(), bytes);
    maybe_stall_done();
  });
  return ncclSuccess;
}

}  // extern "C"
