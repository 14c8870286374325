// DecodeGraphs: a stage's layers for decode steps as captured graphs, one per batch-size bucket.
// Buckets, recording and the TP group's agreement: docs/gpu.md ("Decode graphs").
#pragma once

#include <functional>
#include <map>
#include <string>

#include "common/status.h"
#include "worker/backend.h"
#include "worker/buffer.h"

namespace kvmesh {

// Activations a stage's layers use besides x, each [rows, width] fp32 in backend memory.
struct LayerScratch {
  float* h = nullptr;     // [T, E]
  float* qkv = nullptr;   // [T, 3 El]
  float* attn = nullptr;  // [T, El]  attention outputs,
  float* mlp = nullptr;   // [T, Il]  MLP activations and
  float* ln = nullptr;    // [T, E]   LayerNorm outputs: in the dtype matrix products take
};

struct LayerWidths {
  int64_t embd = 0, qkv = 0, attn = 0, mlp = 0, ln = 0;
};

class DecodeGraphs {
 public:
  // The model's layers over n rows of x.
  using Layers = std::function<void(const BatchLayout& batch, KvPoolView pool, int64_t n, float* x,
                                    const LayerScratch& scratch)>;
  static constexpr int32_t kMaxRows = 256;

  // Whether a recording succeeded on every rank of the TP group, given this rank's answer
  // (Collectives::tp_all_true); null with one TP rank.
  using AgreeFn = std::function<bool(bool recorded_here)>;

  // max_context: the model's context (every row's bound). Call allocate() before run().
  DecodeGraphs(Backend& backend, const LayerWidths& widths, int32_t max_context, AgreeFn agree = nullptr);

  // The buckets' inputs and activations ([kMaxRows, width] each), from the backend. Errors: the
  // backend could not hold them (then graphs must stay off on every rank of the stage).
  Status allocate();

  // Whether `batch` runs through a graph: graphs are on, every sequence adds one token, and
  // there are at most kMaxRows of them.
  bool covers(const BatchLayout& batch) const;
  // Runs `layers` over x ([T, E], T = the batch's rows) through the batch's bucket. Errors are
  // the backend's. When recording fails on this rank or a peer (one line on stderr), nothing more
  // is recorded, and steps of buckets without a graph run `layers` eagerly over the padded rows.
  Status run(const BatchLayout& batch, KvPoolView pool, float* x, const Layers& layers);

  int n_recorded() const { return n_recorded_; }
  // False once a recording failed: covered steps then run eagerly over their buckets.
  bool recording_works() const { return recording_works_; }
  // The bucket (rows a graph runs) for a decode batch of n rows: 1, 2, 4, then multiples of 8.
  static int32_t bucket_rows(int64_t n);

 private:
  struct Bucket {
    BatchLayout batch;  // the layout the graph's ops read, refilled each step
    bool warmed = false;  // a step of this bucket ran eagerly: the next one records
    bool recorded = false;
  };
  // Records the bucket's graph and agrees with the peers on it; when the backend refused here or
  // on a peer, the bucket stays unrecorded and graphs stop being recorded.
  void record(Bucket& bucket, int32_t rows, KvPoolView pool, const Layers& layers,
              const LayerScratch& scratch);

  Backend& backend_;
  LayerWidths widths_;
  int32_t max_context_;
  AgreeFn agree_;
  bool recording_works_ = true;
  int n_recorded_ = 0;
  void* pool_data_ = nullptr;  // the pool the graphs recorded (one pool per worker)
  Buffer x_, h_, qkv_, attn_, mlp_, ln_;  // [kMaxRows, width] each (fp32-sized), allocated once
  std::map<int32_t, Bucket> buckets_;
};

}  // namespace kvmesh
