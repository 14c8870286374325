// Request fields with shapes of their own (seed, stop, token-id lists, logit_bias,
// stream_options, early_stopping), and the OpenAI fields refused because the server cannot honour
// them. Each reads one field of a body through a FieldReader, which keeps the first problem.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "coordinator/api_field_reader.h"

namespace kvmesh {

// response_format other than text, tools the model would have to call, a completion's suffix.
void refuse_unsupported(FieldReader& reader, ApiKind kind);
void read_seed(FieldReader& reader, SamplingParams& sampling);  // absent: a random seed
void read_stop(FieldReader& reader, std::vector<std::string>& stop);
// Token ids of a JSON list, each in [0, vocab_size). Records the problem under `param`.
bool read_token_ids(FieldReader& reader, const JsonIn& list, int32_t vocab_size, const std::string& param,
                    std::vector<int32_t>& ids);
void read_stop_token_ids(FieldReader& reader, const ServedModel& served, std::vector<int32_t>& ids);
void read_logit_bias(FieldReader& reader, const ServedModel& served, SamplingParams& sampling);
void read_stream_options(FieldReader& reader, CompletionRequest& r);
void read_early_stopping(FieldReader& reader, GenerationRequest& params);

}  // namespace kvmesh
