// The emulated device itself: barriers and shuffles across fibers give the block sums the GPU
// would, CUB's block reduction answers in thread 0 only, capture records work that graph launches
// replay with the host memory of launch time, and the checks that make the emulated GPU tests
// worth running fire: threads waiting at different barriers, copies past an allocation, a
// synchronisation inside a capture, shared memory no thread of the block wrote (NaN), and a kernel
// launched to overlap the kernel before it with a thread that never waits for it; and streams run
// their work only when something waits for it.
#include <gtest/gtest.h>

#include <cub/block/block_reduce.cuh>

#include <cmath>
#include <cstring>
#include <vector>

#include "worker/cuda/elem.cuh"
#include "worker/cuda/launch.cuh"

namespace kvmesh {
namespace {

__global__ void block_sums_kernel(const float* x, float* out) {
  __shared__ float scratch[32];
  const float total = block_sum(x[blockIdx.x * blockDim.x + threadIdx.x], scratch);
  if (threadIdx.x == 0) out[blockIdx.x] = total;
}

__global__ void reduce_kernel(int32_t* out) {
  using Reduce = cub::BlockReduce<int32_t, 64>;
  __shared__ Reduce::TempStorage temp;
  const int32_t sum = Reduce(temp).Sum(static_cast<int32_t>(threadIdx.x));
  out[threadIdx.x] = sum;
}

// Half a warp shuffles while the other half waits at __syncthreads: neither barrier completes.
__global__ void divergent_barriers_kernel(float* out) {
  if (threadIdx.x % 32 < 16) {
    out[threadIdx.x] = warp_sum(1.0f);
  } else {
    __syncthreads();
  }
}

__global__ void add_kernel(const float* a, float* out) { out[threadIdx.x] += a[threadIdx.x]; }

// Thread t reads slot t + 1 after a barrier, though only the block's first half wrote its slots.
__global__ void half_written_shared_kernel(float* out) {
  __shared__ float slots[64];
  if (threadIdx.x < 32) slots[threadIdx.x] = static_cast<float>(blockIdx.x);
  __syncthreads();
  out[blockIdx.x * 64 + threadIdx.x] = slots[(threadIdx.x + 1) % 64];
}

// Thread t doubles out[t] after waiting for the kernel before; with `skip` >= 0, thread `skip`
// returns first, without waiting.
__global__ void double_after_wait_kernel(float* out, int skip) {
  if (static_cast<int>(threadIdx.x) == skip) return;
  begin_after_previous_kernel();
  out[threadIdx.x] *= 2.0f;
}

template <typename T>
T* device_alloc(size_t n) {
  void* p = nullptr;
  EXPECT_EQ(cudaMalloc(&p, n * sizeof(T)), cudaSuccess);
  return static_cast<T*>(p);
}

TEST(EmulatedDevice, SharedMemoryNoThreadWroteReadsAsNaNInEveryBlock) {
  const int blocks = 2, threads = 64;
  float* dout = device_alloc<float>(blocks * threads);
  half_written_shared_kernel<<<blocks, threads, 0, nullptr>>>(dout);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  std::vector<float> out(blocks * threads);
  ASSERT_EQ(cudaMemcpy(out.data(), dout, out.size() * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  for (int b = 0; b < blocks; ++b)
    for (int t = 0; t < threads; ++t) {
      const float got = out[b * threads + t];
      if ((t + 1) % 64 < 32)
        EXPECT_EQ(got, static_cast<float>(b)) << "block " << b << " thread " << t;
      else
        EXPECT_TRUE(std::isnan(got)) << "block " << b << " thread " << t << " read " << got;
    }
  cudaFree(dout);
}

// A non-blocking stream's work runs when the host waits for it or for an event recorded after
// it, or when another stream waiting on such an event runs: not when it is issued, and not for
// a synchronous copy, which waits only for blocking streams.
TEST(EmulatedDevice, StreamWorkRunsWhenSomethingWaitsForIt) {
  cudaStream_t compute = nullptr, copy = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaStreamCreateWithFlags(&copy, cudaStreamNonBlocking), cudaSuccess);
  cudaEvent_t written = nullptr;
  ASSERT_EQ(cudaEventCreate(&written), cudaSuccess);
  void* pinned = nullptr;
  ASSERT_EQ(cudaMallocHost(&pinned, 4 * sizeof(float)), cudaSuccess);
  float* host = static_cast<float*>(pinned);
  float* ones = device_alloc<float>(4);
  float* dout = device_alloc<float>(4);
  const std::vector<float> one(4, 1.0f);
  ASSERT_EQ(cudaMemcpy(ones, one.data(), 4 * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemset(dout, 0, 4 * sizeof(float)), cudaSuccess);
  for (int i = 0; i < 4; ++i) host[i] = -1.0f;

  add_kernel<<<1, 4, 0, compute>>>(ones, dout);
  std::vector<float> out(4);
  ASSERT_EQ(cudaMemcpy(out.data(), dout, 4 * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(out, std::vector<float>(4, 0.0f)) << "a synchronous copy does not wait for a non-blocking stream";

  // The copy stream waits on the compute stream's event: running it runs the kernel first.
  ASSERT_EQ(cudaEventRecord(written, compute), cudaSuccess);
  ASSERT_EQ(cudaStreamWaitEvent(copy, written, 0), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(host, dout, 4 * sizeof(float), cudaMemcpyDeviceToHost, copy), cudaSuccess);
  EXPECT_EQ(host[0], -1.0f) << "an async copy into pinned memory runs when something waits for it";
  ASSERT_EQ(cudaStreamSynchronize(copy), cudaSuccess);
  EXPECT_EQ(std::vector<float>(host, host + 4), std::vector<float>(4, 1.0f));

  // Without the event the copy may run before the kernel: here it does.
  add_kernel<<<1, 4, 0, compute>>>(ones, dout);
  ASSERT_EQ(cudaMemcpyAsync(host, dout, 4 * sizeof(float), cudaMemcpyDeviceToHost, copy), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(copy), cudaSuccess);
  EXPECT_EQ(host[0], 1.0f) << "the unordered kernel ran before the copy";
  ASSERT_EQ(cudaEventRecord(written, compute), cudaSuccess);
  ASSERT_EQ(cudaEventSynchronize(written), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(out.data(), dout, 4 * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(out, std::vector<float>(4, 2.0f));

  (void)cudaEventDestroy(written);
  (void)cudaFree(ones);
  (void)cudaFree(dout);
  (void)cudaFreeHost(pinned);
  (void)cudaStreamDestroy(compute);
  (void)cudaStreamDestroy(copy);
}

// Elapsed time between events is the host time between the moments their stream reached them:
// not ready before both are reached, refused for events made without timing.
TEST(EmulatedDevice, EventTimesAreWhenTheStreamReachedThem) {
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  cudaEvent_t start = nullptr, end = nullptr, untimed = nullptr;
  ASSERT_EQ(cudaEventCreate(&start), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&end), cudaSuccess);
  ASSERT_EQ(cudaEventCreateWithFlags(&untimed, cudaEventDisableTiming), cudaSuccess);
  constexpr size_t kBytes = 64u << 20;
  char* a = device_alloc<char>(kBytes);
  char* b = device_alloc<char>(kBytes);
  ASSERT_EQ(cudaEventRecord(start, stream), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(b, a, kBytes, cudaMemcpyDeviceToDevice, stream), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(end, stream), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(untimed, stream), cudaSuccess);
  float ms = -1.0f;
  EXPECT_EQ(cudaEventElapsedTime(&ms, start, end), cudaErrorNotReady) << "nothing waited for the stream yet";
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  ASSERT_EQ(cudaEventElapsedTime(&ms, start, end), cudaSuccess);
  EXPECT_GT(ms, 0.0f) << "a 64 MB copy ran between the two";
  EXPECT_EQ(cudaEventElapsedTime(&ms, start, untimed), cudaErrorInvalidResourceHandle);
  (void)cudaEventDestroy(start);
  (void)cudaEventDestroy(end);
  (void)cudaEventDestroy(untimed);
  (void)cudaFree(a);
  (void)cudaFree(b);
  (void)cudaStreamDestroy(stream);
}

TEST(EmulatedDevice, BlockSumsOverWarpsAndBarriers) {
  const int blocks = 3, threads = 256;
  std::vector<float> x(blocks * threads);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 97);
  float* dx = device_alloc<float>(x.size());
  float* dout = device_alloc<float>(blocks);
  ASSERT_EQ(cudaMemcpy(dx, x.data(), x.size() * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  block_sums_kernel<<<blocks, threads, 0, nullptr>>>(dx, dout);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  std::vector<float> out(blocks);
  ASSERT_EQ(cudaMemcpy(out.data(), dout, blocks * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  for (int b = 0; b < blocks; ++b) {
    double want = 0.0;
    for (int t = 0; t < threads; ++t) want += x[b * threads + t];
    EXPECT_EQ(out[b], static_cast<float>(want)) << "block " << b;
  }
  (void)cudaFree(dx);
  (void)cudaFree(dout);
}

TEST(EmulatedDevice, BlockReduceAnswersInThreadZeroOnly) {
  int32_t* dout = device_alloc<int32_t>(64);
  reduce_kernel<<<1, 64, 0, nullptr>>>(dout);
  std::vector<int32_t> out(64);
  ASSERT_EQ(cudaMemcpy(out.data(), dout, 64 * sizeof(int32_t), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(out[0], 63 * 64 / 2);
  for (int t = 1; t < 64; ++t) EXPECT_NE(out[t], out[0]) << "thread " << t << " got the block's sum";
  (void)cudaFree(dout);
}

TEST(EmulatedDevice, BadLaunchConfigurationIsAnError) {
  float* dout = device_alloc<float>(1);
  add_kernel<<<1, 2048, 0, nullptr>>>(dout, dout);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  (void)cudaFree(dout);
}

TEST(EmulatedDevice, GraphsReplayWhatWasCapturedWithTodaysHostBytes) {
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  void* pinned = nullptr;
  ASSERT_EQ(cudaMallocHost(&pinned, 4 * sizeof(float)), cudaSuccess);
  float* host = static_cast<float*>(pinned);
  float* da = device_alloc<float>(4);
  float* dout = device_alloc<float>(4);
  ASSERT_EQ(cudaMemset(dout, 0, 4 * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(da, host, 4 * sizeof(float), cudaMemcpyHostToDevice, stream), cudaSuccess);
  add_kernel<<<1, 4, 0, stream>>>(da, dout);
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  std::vector<float> out(4);
  ASSERT_EQ(cudaMemcpy(out.data(), dout, 4 * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(out, std::vector<float>(4, 0.0f)) << "a capture runs nothing";
  for (int i = 0; i < 4; ++i) host[i] = static_cast<float>(i + 1);
  ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);  // before the host bytes change
  for (int i = 0; i < 4; ++i) host[i] = 10.0f;
  ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(out.data(), dout, 4 * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(out, (std::vector<float>{11.0f, 12.0f, 13.0f, 14.0f}));
  (void)cudaGraphExecDestroy(exec);
  (void)cudaGraphDestroy(graph);

  // A synchronisation inside a capture invalidates it, as on a GPU.
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed), cudaSuccess);
  EXPECT_NE(cudaStreamSynchronize(stream), cudaSuccess);
  EXPECT_EQ(cudaStreamEndCapture(stream, &graph), cudaErrorStreamCaptureInvalidated);
  // So does a copy from pageable memory.
  float pageable[4] = {0, 0, 0, 0};
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed), cudaSuccess);
  EXPECT_NE(cudaMemcpyAsync(da, pageable, sizeof(pageable), cudaMemcpyHostToDevice, stream), cudaSuccess);
  EXPECT_EQ(cudaStreamEndCapture(stream, &graph), cudaErrorStreamCaptureInvalidated);
  (void)cudaFree(da);
  (void)cudaFree(dout);
  (void)cudaFreeHost(pinned);
  (void)cudaStreamDestroy(stream);
}

TEST(EmulatedDeviceDeathTest, ThreadsAtDifferentBarriersAreADeadlock) {
  float* dout = device_alloc<float>(64);
  EXPECT_DEATH(divergent_barriers_kernel<<<1, 32, 0, nullptr>>>(dout), "deadlock");
  (void)cudaFree(dout);
}

TEST(EmulatedDevice, OverlappingLaunchesRunInStreamOrder) {
  float* d = device_alloc<float>(32);
  std::vector<float> host(32, 1.5f);
  ASSERT_EQ(cudaMemcpy(d, host.data(), 32 * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  EXPECT_EQ(launch_kernel(double_after_wait_kernel, 1, 32, KernelStream(nullptr, true), d, -1), cudaSuccess);
  EXPECT_EQ(launch_kernel(double_after_wait_kernel, 1, 32, KernelStream(nullptr, true), d, -1), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(host.data(), d, 32 * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  for (float v : host) EXPECT_EQ(v, 6.0f);
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  const char* why = "";
  EXPECT_TRUE(launch_overlap_works(stream, &why)) << why;
  (void)cudaStreamDestroy(stream);
  (void)cudaFree(d);
}

TEST(EmulatedDeviceDeathTest, AnOverlappingKernelThatDoesNotWaitAborts) {
  float* d = device_alloc<float>(32);
  // The plain launch has nothing to wait for; the overlapping one must wait in every thread.
  EXPECT_EQ(launch_kernel(double_after_wait_kernel, 1, 32, KernelStream(nullptr, false), d, 5), cudaSuccess);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_DEATH(
      {
        (void)launch_kernel(double_after_wait_kernel, 1, 32, KernelStream(nullptr, true), d, 5);
        (void)cudaDeviceSynchronize();
      },
      "thread \\(5, 0, 0\\) of block \\(0, 0, 0\\) of a kernel launched to overlap");
  (void)cudaFree(d);
}

TEST(EmulatedDeviceDeathTest, CopiesPastAnAllocationAbort) {
  float* d = device_alloc<float>(4);
  std::vector<float> host(5, 1.0f);
  EXPECT_DEATH((void)cudaMemcpy(d, host.data(), 5 * sizeof(float), cudaMemcpyHostToDevice),
               "destination is not device memory");
  EXPECT_DEATH((void)cudaMemcpy(host.data(), d + 1, 4 * sizeof(float), cudaMemcpyDeviceToHost),
               "source is not device memory");
  (void)cudaFree(d);
}

}  // namespace
}  // namespace kvmesh
