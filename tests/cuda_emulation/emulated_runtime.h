// What the emulated runtime offers the emulated libraries beside the CUDA API: host work in stream
// order (queued on the stream until something waits on it, or recorded while the stream captures),
// and such work that may have to wait for a peer; and the count of calls the host has made.
#pragma once

#include <cuda_runtime.h>

#include <functional>
#include <map>
#include <string>

namespace cuemu {

void run_on_stream(cudaStream_t stream, std::function<void()> work);

// Stream work that may wait for something outside this process (a peer's message). Asked with
// may_block false (cudaEventQuery, cudaStreamQuery), it either does its work and returns true or,
// when what it waits for has not happened, does nothing and returns false: the stream then
// reports cudaErrorNotReady and the work is asked again at the next wait. Asked with may_block
// true (any other wait), it returns true once done, however long that takes.
using PolledWork = std::function<bool(bool may_block)>;
void run_on_stream_polled(cudaStream_t stream, PolledWork work);

// Runtime and library calls the host has made since the last reset, by name ("cudaMemcpyAsync",
// "cublasLtMatmul"; every kernel launch, captured or not, as "kernel launch"): what a step asks of
// the runtime, for tests that bound it. Every exported call counts itself.
void count_runtime_call(const char* name);
std::map<std::string, long> runtime_calls();
void reset_runtime_calls();

}  // namespace cuemu
