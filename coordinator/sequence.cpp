// Sequence: the coordinator's state of one generation (tokens, pages, progress, output text).
#include "coordinator/sequence.h"

#include "coordinator/block_manager.h"

namespace kvmesh {

Sequence::Sequence(uint64_t id_in, GenerationRequest request_in, OutputSink sink_in,
                   const Tokenizer* tokenizer)
    : id(id_in),
      request(std::move(request_in)),
      sink(std::move(sink_in)),
      tokens(request.prompt_ids),
      n_prompt(static_cast<int32_t>(request.prompt_ids.size())),
      text(tokenizer, request.stop),
      arrival(std::chrono::steady_clock::now()) {}

void Sequence::extend_page_hashes(int32_t block_size, int32_t n_tokens_known) {
  const auto n_full = static_cast<size_t>(n_tokens_known / block_size);
  while (page_hashes.size() < n_full) {
    const size_t k = page_hashes.size();
    const uint64_t parent = k == 0 ? 0 : page_hashes[k - 1];
    page_hashes.push_back(page_hash(parent, tokens.data() + k * block_size, block_size, request.cache_salt));
  }
}

}  // namespace kvmesh
