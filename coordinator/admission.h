// Admission: every limit a request must fit before it is queued, one rule and one message each:
// the prompt, the context, a group's shape, what cannot be streamed, one step's width, the KV
// cache and the queue. The API layer, the routes and the engine all ask it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "coordinator/request.h"

namespace kvmesh {

// Why a request cannot run: the message, the request field it is about ("" when none), and its
// code (invalid_argument; resource_exhausted when the KV cache cannot hold it).
struct Refusal {
  std::string message;
  std::string param;
  StatusCode code = StatusCode::invalid_argument;
  Status status() const { return Status(code, message); }
};
using Verdict = std::optional<Refusal>;  // nullopt: admitted

// The limits the model and the engine set; a limit of 0 is not checked (the API layer knows the
// model, not the engine).
struct AdmissionLimits {
  int32_t n_positions = 0;       // context: prompt + completion tokens
  int32_t vocab_size = 0;        // token ids are [0, vocab_size)
  int32_t max_num_seqs = 0;      // sequences in one step
  int32_t max_batch_tokens = 0;  // tokens in one step
  int32_t n_pages = 0;           // device KV pages (a group may use them all)
  int32_t block_size = 16;       // tokens per page
  int32_t max_queue = 0;         // sequences that may wait
};

class Admission {
 public:
  explicit Admission(const AdmissionLimits& limits) : limits_(limits) {}

  // The prompt is not empty and every id is in the vocabulary.
  Verdict prompt(const std::vector<int32_t>& ids) const;
  // Prompt plus completion fit the context (max_tokens unset: some room is left); `param` names
  // the prompt's field ("prompt" or "messages").
  Verdict context(int64_t n_prompt, std::optional<int64_t> max_tokens, const std::string& param = "prompt") const;
  // n and best_of, and beam search's width and what it cannot do (stop strings, penalties, a logit
  // bias, an infinite length_penalty).
  Verdict group_shape(const GenerationRequest& request) const;
  // What cannot be streamed: best_of > n, beam search.
  Verdict streaming(const GenerationRequest& request) const;
  // One step holds the whole group (--max-num-seqs, --max-batch-tokens).
  Verdict step_width(const GenerationRequest& request) const;
  // The device pages hold the group's worst case.
  Verdict pages(const GenerationRequest& request) const;
  // A request of n_sequences can ever be queued (--max-queue); several_prompts names the field.
  Verdict queue(int64_t n_sequences, bool several_prompts) const;
  // Every rule of one group the engine queues: prompt, context, shape, width, pages.
  Verdict group(const GenerationRequest& request) const;

  // Device pages a group may need at most: the prompt's full pages once, and every member's own
  // pages for the rest of the prompt and all of max_tokens.
  static int32_t worst_case_pages(const GenerationRequest& request, int32_t block_size);

  const AdmissionLimits& limits() const { return limits_; }

 private:
  AdmissionLimits limits_;
};

}  // namespace kvmesh
