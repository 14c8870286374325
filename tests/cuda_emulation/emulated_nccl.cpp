// The emulated NCCL: communicators among the MPI processes of a job (one emulated device each),
// their all-reduce and point-to-point transfers carried as MPI messages on MPI_COMM_WORLD, each
// communicator under a tag of its own. Calls on a stream run in stream order like the emulated
// runtime's other work (when something waits on the stream, or recorded by a capture and
// replayed by a graph launch).
// Sends are buffered and return at once (on a GPU the host never waits for a send either); a
// receive waits for its message up to KVMESH_EMULATED_NCCL_TIMEOUT_S (default 120 s), and then
// marks the communicator failed (ncclRemoteError), as NCCL reports a peer that is gone. Non-blocking
// communicators (ncclConfig_t.blocking = 0) answer ncclInProgress from ncclCommInitRankConfig
// and ncclCommFinalize and settle as ncclCommGetAsyncError is polled, as NCCL's do. What it
// checks beyond NCCL: buffers inside device allocations, and a receive of exactly the sent size.
// A stuck rank, for tests: KVMESH_EMULATED_NCCL_STALL_RANK=<world rank> stops that rank for good
// (600 s at most) at its KVMESH_EMULATED_NCCL_STALL_AFTER-th transfer (default 1; 0: in its first
// ncclCommInitRankConfig, before it joins).
#include <mpi.h>
#include <nccl.h>
#include <sched.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "emulated_device.h"
#include "emulated_runtime.h"

namespace {

constexpr char kIdMagic[] = "kvmesh emulated NCCL id";
// A communicator's tags: kTagBase + 2 * (its maker's world rank * kIdsPerRank + serial), +1 for data.
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

// Called before every transfer (and with at_init, by every communicator init): stops this rank
// when it is the one told to get stuck there.
void maybe_stall(bool at_init = false) {
  static const long stall_rank = cuemu::env_count("KVMESH_EMULATED_NCCL_STALL_RANK", -1, 0xFFFF);
  static const long stall_after = cuemu::env_count("KVMESH_EMULATED_NCCL_STALL_AFTER", 1, 1L << 40);
  static long transfers = 0;
  if (stall_rank < 0 || world_rank() != stall_rank) return;
  if (at_init ? stall_after != 0 : ++transfers != stall_after) return;
  std::fprintf(stderr, "emulated NCCL: world rank %ld stops at its transfer %ld (KVMESH_EMULATED_NCCL_STALL_RANK)\n",
               stall_rank, transfers);
  std::fflush(stderr);
  std::this_thread::sleep_for(std::chrono::seconds(600));
  std::_Exit(3);
}

// Backs off a polling loop once it has spun a while (the ranks may share fewer cores than they are).
void pause(int spins) {
  if (spins > 100) sched_yield();
}

}  // namespace

// A member's view of one communicator.
struct ncclComm {
  int rank = 0, nranks = 0;
  int handshake_tag = 0, data_tag = 0;
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
    auto pending = std::make_unique<PendingSend>();
    pending->bytes.assign(static_cast<const char*>(data), static_cast<const char*>(data) + bytes);
    MPI_Isend(pending->bytes.data(), static_cast<int>(bytes), MPI_BYTE, world[static_cast<size_t>(peer)], data_tag,
              MPI_COMM_WORLD, &pending->request);
    sends.push_back(std::move(pending));
  }

  // Receives exactly `bytes` from `peer`, or marks the communicator failed after the timeout.
  void receive(void* data, size_t bytes, int peer) {
    if (state != ncclSuccess) return;
    const int source = world[static_cast<size_t>(peer)];
    const auto start = std::chrono::steady_clock::now();
    MPI_Status status;
    for (int spins = 0;; ++spins) {
      int arrived = 0;
      MPI_Iprobe(source, data_tag, MPI_COMM_WORLD, &arrived, &status);
      if (arrived) break;
      (void)progress();
      if (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > timeout_s) {
        std::fprintf(stderr, "emulated NCCL: rank %d of %d waited %.0f s for rank %d (world rank %d)\n", rank, nranks,
                     timeout_s, peer, source);
        state = ncclRemoteError;
        return;
      }
      pause(spins);
    }
    int count = 0;
    MPI_Get_count(&status, MPI_BYTE, &count);
    if (static_cast<size_t>(count) != bytes) {
      char buf[200];
      std::snprintf(buf, sizeof(buf), "emulated NCCL: rank %d receives %zu bytes from rank %d, which sent %d", rank,
                    bytes, peer, count);
      cuemu::fail(buf);
    }
    MPI_Recv(data, count, MPI_BYTE, source, data_tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
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

void run_point_to_point(const GroupedCall& call) {
  cuemu::run_on_stream(call.stream, [call]() {
    maybe_stall();
    if (call.send)
      call.comm->buffered_send(call.data, call.bytes, call.peer);
    else
      call.comm->receive(call.data, call.bytes, call.peer);
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
  c->handshake_tag = kTagBase + 2 * (contents.maker * kIdsPerRank + contents.serial);
  c->data_tag = c->handshake_tag + 1;
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

// The group's sends first (they are buffered), then its receives, each on its own stream.
ncclResult_t ncclGroupEnd() {
  if (group_depth == 0) return ncclInvalidUsage;
  if (--group_depth > 0) return ncclSuccess;
  std::vector<GroupedCall> calls;
  calls.swap(grouped);
  for (const GroupedCall& call : calls)
    if (call.send) run_point_to_point(call);
  for (const GroupedCall& call : calls)
    if (!call.send) run_point_to_point(call);
  return ncclSuccess;
}

ncclResult_t ncclSend(const void* data, size_t count, ncclDataType_t type, int peer, ncclComm_t comm,
                      cudaStream_t stream) {
  if (const ncclResult_t r = check_call(comm, count, type, peer, data, "ncclSend"); r != ncclSuccess) return r;
  GroupedCall call{true, const_cast<void*>(data), count * element_bytes(type), peer, comm, stream};
  if (group_depth > 0)
    grouped.push_back(call);
  else
    run_point_to_point(call);
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

// Every member sends its values to every other and adds all of them up in rank order, so every
// member ends with the same bits (as NCCL's all-reduce gives). Float32 and float64 only.
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
  cuemu::run_on_stream(stream, [=]() {
    maybe_stall();
    const size_t bytes = count * element_bytes(type);
    std::vector<char> mine(static_cast<const char*>(send), static_cast<const char*>(send) + bytes);
    for (int m = 0; m < comm->nranks; ++m)
      if (m != comm->rank) comm->buffered_send(mine.data(), bytes, m);
    std::vector<char> acc(bytes), theirs(bytes);
    for (int m = 0; m < comm->nranks; ++m) {
      const char* values = mine.data();
      if (m != comm->rank) {
        comm->receive(theirs.data(), bytes, m);
        values = theirs.data();
      }
      if (m == 0)
        std::memcpy(acc.data(), values, bytes);
      else if (type == ncclFloat32)
        reduce_into(reinterpret_cast<float*>(acc.data()), reinterpret_cast<const float*>(values), count, op);
      else
        reduce_into(reinterpret_cast<double*>(acc.data()), reinterpret_cast<const double*>(values), count, op);
    }
    if (comm->state == ncclSuccess) std::memcpy(recv, acc.data(), bytes);
  });
  return ncclSuccess;
}

}  // extern "C"
