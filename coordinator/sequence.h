// Sequence: the coordinator's state of one generation (tokens, pages, progress, output text).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "coordinator/output_text.h"
#include "coordinator/request.h"

namespace kvmesh {

enum class SeqStatus { waiting, running, finished };

// One member of a sequence group (see sequence_group.h): its own tokens, block table and output.
struct Sequence {
  Sequence(uint64_t id, GenerationRequest request, const Tokenizer* tokenizer);
  // A member that continues `parent` from here: same tokens and progress, and a block table that
  // shares every page of the parent's (the caller takes the references).
  Sequence(uint64_t id, const Sequence& parent, std::vector<int32_t> shared_table);

  uint64_t id;
  GenerationRequest request;            // this member's: its own seed, internal log-prob needs
  int32_t index = 0;                    // which returned sequence it streams as
  SeqStatus status = SeqStatus::waiting;
  std::vector<int32_t> tokens;          // prompt, then generated tokens
  int32_t n_prompt = 0;
  int32_t n_computed = 0;               // leading tokens whose K/V sit in the block table's pages
  std::vector<int32_t> block_table;
  int32_t n_cached_prompt = 0;          // prompt tokens served from the prefix cache
  std::vector<uint64_t> page_hashes;    // hash chain of the full pages of `tokens` computed so far
  int32_t n_registered = 0;             // leading pages of block_table entered in the prefix index
  bool admitted_before = false;         // cached_tokens counts the first admission only
  bool staged_from_disk = false;        // disk pages of its prefix were brought to host once
  int32_t n_preemptions = 0;
  bool cancel_requested = false;
  OutputText text;
  std::vector<PositionLogprobs> prompt_logprobs;  // collected so far (prompt tokens 1..)
  bool prompt_logprobs_sent = false;
  std::chrono::steady_clock::time_point arrival;
  float cumulative_logprob = 0;         // of the generated tokens (best_of, beam search)
  std::vector<PositionLogprobs> output_logprobs;  // per generated token (beam search)
  GenerationOutput output;              // best_of > n: the sample so far, until the group is done

  int32_t n_tokens() const { return static_cast<int32_t>(tokens.size()); }
  int32_t n_generated() const { return n_tokens() - n_prompt; }
  // Tokens still to compute before the next sample (the prompt, or the last sampled token).
  int32_t n_uncomputed() const { return n_tokens() - n_computed; }
  // Extends page_hashes over every full page among the first n_tokens_known tokens.
  void extend_page_hashes(int32_t block_size, int32_t n_tokens_known);
  bool in_prefill() const { return n_uncomputed() > 1; }
  bool wants_prompt_logprobs() const {
    return request.prompt_logprobs >= 0 &&
           static_cast<int32_t>(prompt_logprobs.size()) < n_prompt - 1;
  }
};

}  // namespace kvmesh
