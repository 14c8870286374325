// The emulated device's threads: every thread of a block is a fiber on one host thread; the
// scheduler releases __syncthreads when every live thread of the block waits there, and a warp
// barrier (shuffles) when every lane of the warp does. Blocks run one after another.
#include <setjmp.h>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif
#include <ucontext.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "emulated_device.h"

namespace cuemu {

uint3 t_idx, b_idx;
namespace {
uint64_t block_serial = 0;  // counts the blocks run, so each one's shared memory is poisoned once
}  // namespace
dim3 b_dim, g_dim;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "\n*** emulated CUDA device: %s\n", what);
  std::fflush(stderr);
  std::abort();
}

// Each fiber's stack is made once with makecontext; after that fibers and the scheduler switch
// with _setjmp/_longjmp (no system call per switch). A fiber runs the kernel body once per block
// and then parks until the next block.
namespace {
enum State { kReady, kAtBlock, kAtWarp, kDone };
struct Fiber {
  jmp_buf ctx;
  State state = kDone;
  char* stack = nullptr;
};
constexpr size_t kStackBytes = 256 * 1024;
constexpr unsigned kMaxThreads = 1024;
Fiber fibers[kMaxThreads];
uint64_t slots[kMaxThreads];
unsigned n_made = 0, making = 0;
jmp_buf sched_jb;
ucontext_t maker_uc, fiber_uc;
unsigned current = 0;
bool in_fiber = false;
const std::function<void()>* body = nullptr;

void set_thread(unsigned linear) {
  t_idx.x = linear % b_dim.x;
  t_idx.y = (linear / b_dim.x) % b_dim.y;
  t_idx.z = linear / (b_dim.x * b_dim.y);
}

// AddressSanitizer is told of every switch between stacks (no false reports, real ones kept).
const void* sched_bottom = nullptr;
size_t sched_size = 0;
#if defined(__SANITIZE_ADDRESS__)
void leaving_for(const void* bottom, size_t size) { __sanitizer_start_switch_fiber(nullptr, bottom, size); }
void arrived(const void** from_bottom, size_t* from_size) {
  __sanitizer_finish_switch_fiber(nullptr, from_bottom, from_size);
}
#else
void leaving_for(const void*, size_t) {}
void arrived(const void**, size_t*) {}
#endif

void park(Fiber& f) {
  if (_setjmp(f.ctx) == 0) {
    leaving_for(sched_bottom, sched_size);
    _longjmp(sched_jb, 1);
  }
  arrived(nullptr, nullptr);
}

void fiber_main() {
  arrived(&sched_bottom, &sched_size);  // the scheduler's stack, which every park returns to
  Fiber& f = fibers[making];
  park(f);  // made: back to the maker
  for (;;) {
    (*body)();
    f.state = kDone;
    park(f);
  }
}

void make_fibers(unsigned n) {
  while (n_made < n) {
    Fiber& f = fibers[n_made];
    f.stack = static_cast<char*>(std::malloc(kStackBytes));
    getcontext(&fiber_uc);
    fiber_uc.uc_stack.ss_sp = f.stack;
    fiber_uc.uc_stack.ss_size = kStackBytes;
    fiber_uc.uc_link = nullptr;
    makecontext(&fiber_uc, fiber_main, 0);
    making = n_made;
    if (_setjmp(sched_jb) == 0) {
      leaving_for(f.stack, kStackBytes);
      swapcontext(&maker_uc, &fiber_uc);
    }
    arrived(nullptr, nullptr);
    ++n_made;
  }
}

void yield(State s) {
  if (!in_fiber) fail("barrier outside a kernel");
  fibers[current].state = s;
  park(fibers[current]);
}

void resume(unsigned i) {
  current = i;
  set_thread(i);
  if (_setjmp(sched_jb) == 0) {
    leaving_for(fibers[i].stack, kStackBytes);
    _longjmp(fibers[i].ctx, 1);
  }
  arrived(nullptr, nullptr);
}

void run_block_fibers(unsigned n) {
  make_fibers(n);
  for (unsigned i = 0; i < n; ++i) fibers[i].state = kReady;
  in_fiber = true;
  for (;;) {
    for (unsigned i = 0; i < n; ++i)
      if (fibers[i].state == kReady) resume(i);
    unsigned live = 0, at_block = 0;
    for (unsigned i = 0; i < n; ++i) {
      live += fibers[i].state != kDone;
      at_block += fibers[i].state == kAtBlock;
    }
    if (live == 0) break;
    bool released = false;
    if (at_block == live) {
      for (unsigned i = 0; i < n; ++i)
        if (fibers[i].state == kAtBlock) fibers[i].state = kReady;
      released = true;
    } else {
      for (unsigned w = 0; w * 32 < n; ++w) {
        unsigned lanes = 0, waiting = 0, done = 0;
        for (unsigned i = w * 32; i < n && i < w * 32 + 32; ++i) {
          ++lanes;
          waiting += fibers[i].state == kAtWarp;
          done += fibers[i].state == kDone;
        }
        if (waiting > 0 && done > 0) fail("warp shuffle with lanes that have exited");
        if (waiting > 0 && waiting == lanes) {
          for (unsigned i = w * 32; i < n && i < w * 32 + 32; ++i) fibers[i].state = kReady;
          released = true;
        }
      }
    }
    if (!released) fail("deadlock: the block's threads wait at different barriers");
  }
  in_fiber = false;
}

}  // namespace

void syncthreads() { yield(kAtBlock); }
void warp_barrier() { yield(kAtWarp); }
void* shuffle_slot(unsigned linear) { return &slots[linear]; }
unsigned linear_tid() { return t_idx.x + b_dim.x * (t_idx.y + b_dim.y * t_idx.z); }

namespace {
bool waited[kMaxThreads];  // by linear thread: called grid_dependency_wait in this block
}  // namespace

void grid_dependency_wait() {
  if (in_fiber) waited[linear_tid()] = true;
}

std::function<void()> checking_overlap_waits(std::function<void()> body) {
  return [body = std::move(body)]() {
    const unsigned me = linear_tid();
    waited[me] = false;
    body();
    if (waited[me]) return;
    char what[256];
    std::snprintf(what, sizeof(what),
                  "thread (%u, %u, %u) of block (%u, %u, %u) of a kernel launched to overlap the kernel before it "
                  "ended without waiting for that kernel (wait_for_previous_kernel)",
                  t_idx.x, t_idx.y, t_idx.z, b_idx.x, b_idx.y, b_idx.z);
    fail(what);
  };
}

// Shared memory starts each block as garbage on a GPU; here as all-ones bytes (NaN floats, -1
// integers), so a block that reads what none of its threads wrote gets numbers a test notices.
void poison_shared(void* p, size_t n) {
  static std::unordered_map<void*, uint64_t> poisoned_in;  // the block that last poisoned it
  uint64_t& serial = poisoned_in[p];
  if (serial == block_serial) return;
  std::memset(p, 0xFF, n);
  serial = block_serial;
}

void run_kernel(const Cfg& cfg, const std::function<void()>& fn) {
  static std::mutex kernel_mu;
  std::lock_guard<std::mutex> lock(kernel_mu);
  g_dim = cfg.grid;
  b_dim = cfg.block;
  const unsigned n = cfg.block.x * cfg.block.y * cfg.block.z;
  body = &fn;
  for (unsigned z = 0; z < cfg.grid.z; ++z)
    for (unsigned y = 0; y < cfg.grid.y; ++y)
      for (unsigned x = 0; x < cfg.grid.x; ++x) {
        b_idx = {x, y, z};
        ++block_serial;
        run_block_fibers(n);
      }
}

}  // namespace cuemu

