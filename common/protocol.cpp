// Serialization of StepPlan and StepResult: versioned, little-endian, bounds-checked on decode.
#include "common/protocol.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "common/byte_io.h"

namespace kvmesh {
namespace {

constexpr uint32_t kMaxSeqs = 1u << 16;
constexpr uint32_t kMaxTokens = 1u << 24;
constexpr uint32_t kMaxOps = 1u << 22;
constexpr uint32_t kMaxErrorBytes = 1u << 16;
constexpr uint8_t kPlanKind = 1;
constexpr uint8_t kResultKind = 2;

void put_header(ByteWriter& w, uint8_t kind) {
  w.put<uint32_t>(kProtocolMagic);
  w.put<uint16_t>(kProtocolVersion);
  w.put<uint8_t>(kind);
}

Status check_header(ByteReader& r, uint8_t kind) {
  const auto magic = r.get<uint32_t>();
  const auto version = r.get<uint16_t>();
  const auto got_kind = r.get<uint8_t>();
  if (!r.ok() || magic != kProtocolMagic) return invalid_argument("step message: bad magic");
  if (version != kProtocolVersion)
    return invalid_argument("step message: protocol version " + std::to_string(version) +
                            ", expected " + std::to_string(kProtocolVersion));
  if (got_kind != kind) return invalid_argument("step message: unexpected message kind");
  return Status::ok();
}

void put_sampling(ByteWriter& w, const SamplingParams& p) {
  w.put(p.temperature);
  w.put(p.top_p);
  w.put(p.top_k);
  w.put(p.min_p);
  w.put(p.presence_penalty);
  w.put(p.frequency_penalty);
  w.put(p.repetition_penalty);
  w.put(p.seed);
  w.put(p.n_logprobs);
  w.put_vector(p.logit_bias);
}

SamplingParams get_sampling(ByteReader& r) {
  SamplingParams p;
  p.temperature = r.get<float>();
  p.top_p = r.get<float>();
  p.top_k = r.get<int32_t>();
  p.min_p = r.get<float>();
  p.presence_penalty = r.get<float>();
  p.frequency_penalty = r.get<float>();
  p.repetition_penalty = r.get<float>();
  p.seed = r.get<uint64_t>();
  p.n_logprobs = r.get<int32_t>();
  if (p.n_logprobs > kMaxTopLogprobs || p.n_logprobs < -1) r.fail();
  p.logit_bias = r.get_vector<TokenBias>(kMaxTokens);
  for (const TokenBias& b : p.logit_bias)
    if (b.token < 0 || !(std::fabs(b.bias) <= kMaxLogitBias)) r.fail();
  return p;
}

void put_seq(ByteWriter& w, const SeqWork& s) {
  w.put(s.seq_id);
  w.put(s.n_past);
  w.put_vector(s.token_ids);
  w.put_vector(s.block_table);
  w.put<uint8_t>(s.sample ? 1 : 0);
  w.put(s.prompt_logprobs);
  w.put(s.next_prompt_token);
  put_sampling(w, s.sampling);
  w.put_vector(s.history_ids);
  w.put(s.n_history_prompt);
  w.put_vector(s.banned_token_ids);
}

SeqWork get_seq(ByteReader& r) {
  SeqWork s;
  s.seq_id = r.get<uint64_t>();
  s.n_past = r.get<int32_t>();
  s.token_ids = r.get_vector<int32_t>(kMaxTokens);
  s.block_table = r.get_vector<int32_t>(kMaxTokens);
  const auto sample = r.get<uint8_t>();
  if (sample > 1) r.fail();
  s.sample = sample == 1;
  s.prompt_logprobs = r.get<int32_t>();
  if (s.prompt_logprobs > kMaxLogprobs || s.prompt_logprobs < -1) r.fail();
  s.next_prompt_token = r.get<int32_t>();
  s.sampling = get_sampling(r);
  s.history_ids = r.get_vector<int32_t>(kMaxTokens);
  s.n_history_prompt = r.get<int32_t>();
  s.banned_token_ids = r.get_vector<int32_t>(kMaxTokens);
  return s;
}

void put_logprobs(ByteWriter& w, const PositionLogprobs& p) {
  w.put(p.chosen);
  w.put_vector(p.top);
}

PositionLogprobs get_logprobs(ByteReader& r) {
  PositionLogprobs p;
  p.chosen = r.get<TokenLogprob>();
  p.top = r.get_vector<TokenLogprob>(kMaxTopLogprobs);
  return p;
}

}  // namespace

std::string encode_step_plan(const StepPlan& plan) {
  ByteWriter w;
  put_header(w, kPlanKind);
  w.put(plan.step_id);
  w.put<uint8_t>(plan.shutdown ? 1 : 0);
  w.put_vector(plan.cache_ops);
  w.put<uint32_t>(static_cast<uint32_t>(plan.seqs.size()));
  for (const SeqWork& s : plan.seqs) put_seq(w, s);
  return w.take();
}

Result<StepPlan> decode_step_plan(std::string_view bytes) {
  ByteReader r(bytes);
  KVMESH_RETURN_IF_ERROR(check_header(r, kPlanKind));
  StepPlan plan;
  plan.step_id = r.get<uint64_t>();
  const auto shutdown = r.get<uint8_t>();
  plan.shutdown = shutdown == 1;
  if (shutdown > 1) r.fail();
  plan.cache_ops = r.get_vector<CacheOp>(kMaxOps);
  for (const CacheOp& op : plan.cache_ops)
    if (static_cast<uint8_t>(op.kind) > static_cast<uint8_t>(CacheOpKind::disk_load)) r.fail();
  const auto n_seqs = r.get<uint32_t>();
  if (n_seqs > kMaxSeqs) r.fail();
  for (uint32_t i = 0; i < n_seqs && r.ok(); ++i) plan.seqs.push_back(get_seq(r));
  if (!r.ok() || !r.at_end()) return invalid_argument("step plan: malformed or truncated message");
  return plan;
}

std::string encode_step_result(const StepResult& result) {
  ByteWriter w;
  put_header(w, kResultKind);
  w.put(result.step_id);
  w.put<uint32_t>(static_cast<uint32_t>(result.seqs.size()));
  for (const SeqResult& s : result.seqs) {
    w.put(s.seq_id);
    w.put(s.token);
    put_logprobs(w, s.token_logprobs);
    w.put<uint32_t>(static_cast<uint32_t>(s.prompt_logprobs.size()));
    for (const auto& p : s.prompt_logprobs) put_logprobs(w, p);
  }
  w.put_vector(result.failed_cache_ops);
  w.put(result.timings);
  w.put<int32_t>(static_cast<int32_t>(result.error_code));
  const size_t n_error = std::min<size_t>(result.error.size(), kMaxErrorBytes);
  w.put_vector(std::vector<char>(result.error.begin(), result.error.begin() + static_cast<std::ptrdiff_t>(n_error)));
  return w.take();
}

Result<StepResult> decode_step_result(std::string_view bytes) {
  ByteReader r(bytes);
  KVMESH_RETURN_IF_ERROR(check_header(r, kResultKind));
  StepResult result;
  result.step_id = r.get<uint64_t>();
  const auto n_seqs = r.get<uint32_t>();
  if (n_seqs > kMaxSeqs) r.fail();
  for (uint32_t i = 0; i < n_seqs && r.ok(); ++i) {
    SeqResult s;
    s.seq_id = r.get<uint64_t>();
    s.token = r.get<int32_t>();
    s.token_logprobs = get_logprobs(r);
    const auto n_prompt = r.get<uint32_t>();
    if (n_prompt > kMaxTokens) r.fail();
    for (uint32_t k = 0; k < n_prompt && r.ok(); ++k) s.prompt_logprobs.push_back(get_logprobs(r));
    result.seqs.push_back(std::move(s));
  }
  result.failed_cache_ops = r.get_vector<int32_t>(kMaxOps);
  result.timings = r.get<StepTimings>();
  const auto code = r.get<int32_t>();
  if (code < 0 || code > static_cast<int32_t>(StatusCode::internal)) r.fail();
  result.error_code = static_cast<StatusCode>(code);
  const std::vector<char> error = r.get_vector<char>(kMaxErrorBytes);
  result.error.assign(error.begin(), error.end());
  if (!r.ok() || !r.at_end()) return invalid_argument("step result: malformed or truncated message");
  return result;
}

}  // namespace kvmesh
