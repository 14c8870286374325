// Sequence: the coordinator's state of one generation (tokens, pages, progress, output text).
#include "coordinator/sequence.h"

#include "coordinator/block_manager.h"
#include "coordinator/sequence_group.h"

namespace kvmesh {

Sequence::Sequence(uint64_t id_in, GenerationRequest request_in, const Tokenizer* tokenizer)
    : id(id_in),
      request(std::move(request_in)),
      tokens(request.prompt_ids),
      n_prompt(static_cast<int32_t>(request.prompt_ids.size())),
      text(tokenizer, request.stop),
      arrival(std::chrono::steady_clock::now()) {}

Sequence::Sequence(uint64_t id_in, const Sequence& parent, std::vector<int32_t> shared_table)
    : Sequence(parent) {
  id = id_in;
  block_table = std::move(shared_table);
}

void Sequence::extend_page_hashes(int32_t block_size, int32_t n_tokens_known) {
  const auto n_full = static_cast<size_t>(n_tokens_known / block_size);
  while (page_hashes.size() < n_full) {
    const size_t k = page_hashes.size();
    const uint64_t parent = k == 0 ? 0 : page_hashes[k - 1];
    page_hashes.push_back(page_hash(parent, tokens.data() + k * block_size, block_size, request.cache_salt));
  }
}

SequenceGroup::SequenceGroup(uint64_t id_in, GenerationRequest request_in, OutputSink sink_in)
    : id(id_in), request(std::move(request_in)), sink(std::move(sink_in)),
      index_done(static_cast<size_t>(request.n), false) {}

}  // namespace kvmesh
