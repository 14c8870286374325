// Sequence: the coordinator's state of one generation (tokens, pages, progress, output text).
#include "coordinator/sequence.h"

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

}  // namespace kvmesh
