// The request fields with shapes of their own, and the refusal of fields that cannot be honoured.
#include "coordinator/api_shaped_fields.h"

#include <cmath>
#include <map>
#include <utility>

namespace kvmesh {

// OpenAI fields whose meaning this server cannot honour are refused rather than ignored, so a
// client never takes plain text for what it asked to be constrained: response_format other than
// text, tools the model would have to call (on either route), and (completions) an insertion suffix.
void refuse_unsupported(FieldReader& reader, ApiKind kind) {
  if (const JsonIn* format = reader.find("response_format")) {
    const bool text = format->is_object() && format->value("type", JsonIn()) == "text";
    if (!text) {
      return reader.fail("`response_format` " + shown(*format) +
                             " is not supported; only {\"type\": \"text\"} (plain text) is", "response_format");
    }
  }
  if (kind == ApiKind::completion) {
    const JsonIn* suffix = reader.find("suffix");
    if (suffix && !(suffix->is_string() && suffix->get_ref<const std::string&>().empty()))
      return reader.fail("`suffix` (insertion) is not supported by this model", "suffix");
  }
  const auto is_none = [](const JsonIn* choice) { return choice && *choice == "none"; };
  for (const auto& [tools, choice] : {std::pair{"tools", "tool_choice"}, std::pair{"functions", "function_call"}}) {
    const JsonIn* listed = reader.find(tools);
    const JsonIn* chosen = reader.find(choice);
    const bool calls_possible = listed && !(listed->is_array() && listed->empty());
    if (calls_possible && !is_none(chosen)) {
      return reader.fail(std::string("Tool calling is not supported by this model; omit `") + tools + "` or set `" +
                             choice + "` to \"none\"", tools);
    }
    if (chosen && !is_none(chosen) && *chosen != "auto")
      return reader.fail(std::string("`") + choice + "` " + shown(*chosen) + " asks for a tool call, which this model cannot make", choice);
  }
}

void read_seed(FieldReader& reader, SamplingParams& sampling) {
  const JsonIn* seed = reader.find("seed");
  int64_t x = 0;
  if (!seed) sampling.seed = random_seed();
  else if (seed->is_number_unsigned()) sampling.seed = seed->get<uint64_t>();
  else if (as_int64(*seed, &x)) sampling.seed = static_cast<uint64_t>(x);
  else reader.fail_expected("seed", "an integer", *seed);
}

void read_stop(FieldReader& reader, std::vector<std::string>& stop) {
  const JsonIn* value = reader.find("stop");
  if (!value) return;
  if (value->is_string()) {
    if (value->get_ref<const std::string&>().empty()) return reader.fail("`stop` strings must not be empty", "stop");
    stop.push_back(value->get<std::string>());
    return;
  }
  if (!value->is_array()) return reader.fail_expected("stop", "a string or a list of strings", *value);
  if (value->size() > kMaxStopStrings) {
    return reader.fail("`stop` may hold at most " + std::to_string(kMaxStopStrings) + " strings, got " +
                           std::to_string(value->size()), "stop");
  }
  for (const JsonIn& s : *value) {
    if (!s.is_string()) return reader.fail_expected("stop", "a string or a list of strings", *value);
    if (s.get_ref<const std::string&>().empty()) return reader.fail("`stop` strings must not be empty", "stop");
    stop.push_back(s.get<std::string>());
  }
}

bool read_token_ids(FieldReader& reader, const JsonIn& list, int32_t vocab_size, const std::string& param,
                    std::vector<int32_t>& ids) {
  for (const JsonIn& v : list) {
    int64_t id = 0;
    if (!as_int64(v, &id)) return reader.fail_expected(param, "a list of token ids", v), false;
    if (id < 0 || id >= vocab_size) {
      reader.fail("Token id " + std::to_string(id) + " in `" + param + "` is out of vocabulary (valid ids are [0, " +
                  std::to_string(vocab_size) + "))", param);
      return false;
    }
    ids.push_back(static_cast<int32_t>(id));
  }
  return true;
}

void read_stop_token_ids(FieldReader& reader, const ServedModel& served, std::vector<int32_t>& ids) {
  const JsonIn* value = reader.find("stop_token_ids");
  if (!value) return;
  if (!value->is_array()) return reader.fail_expected("stop_token_ids", "a list of token ids", *value);
  read_token_ids(reader, *value, served.vocab_size, "stop_token_ids", ids);
}

// logit_bias: {"<token id>": bias in [-100, 100], ...}, as OpenAI.
void read_logit_bias(FieldReader& reader, const ServedModel& served, SamplingParams& sampling) {
  const JsonIn* value = reader.find("logit_bias");
  if (!value) return;
  if (!value->is_object()) return reader.fail_expected("logit_bias", "an object mapping token ids to biases", *value);
  std::map<int32_t, float> biases;
  for (auto it = value->begin(); it != value->end(); ++it) {
    const std::string& key = it.key();
    const bool digits = !key.empty() && key.size() <= 10 &&
                        key.find_first_not_of("0123456789") == std::string::npos;
    if (!digits) return reader.fail("`logit_bias` keys must be token ids, got \"" + key + "\"", "logit_bias");
    const int64_t id = std::stoll(key);
    if (id >= served.vocab_size) {
      return reader.fail("Token id " + key + " in `logit_bias` is out of vocabulary (valid ids are [0, " +
                             std::to_string(served.vocab_size) + "))", "logit_bias");
    }
    const JsonIn& bias = it.value();
    if (!bias.is_number() || !(std::fabs(bias.get<double>()) <= kMaxLogitBias)) {
      return reader.fail("`logit_bias` values must be numbers in [-100, 100], got " + shown(bias) + " for token " + key,
                         "logit_bias");
    }
    biases[static_cast<int32_t>(id)] = bias.get<float>();
  }
  for (const auto& [token, bias] : biases)
    if (bias != 0.0f) sampling.logit_bias.push_back({token, bias});
}

void read_stream_options(FieldReader& reader, CompletionRequest& r) {
  const JsonIn* options = reader.find("stream_options");
  if (!options) return;
  if (!options->is_object()) return reader.fail_expected("stream_options", "an object", *options);
  if (!r.stream) {
    return reader.fail("`stream_options` can only be defined when `stream=True`.", "stream_options");
  }
  auto it = options->find("include_usage");
  if (it == options->end() || it->is_null()) return;
  if (!it->is_boolean()) return reader.fail_expected("stream_options.include_usage", "a boolean", *it);
  r.include_usage = it->get<bool>();
}

// early_stopping: true, false or "never" (beam search).
void read_early_stopping(FieldReader& reader, GenerationRequest& params) {
  const JsonIn* value = reader.find("early_stopping");
  if (!value) return;
  if (value->is_boolean()) {
    params.early_stopping = value->get<bool>() ? EarlyStopping::when_full : EarlyStopping::heuristic;
  } else if (value->is_string() && value->get_ref<const std::string&>() == "never") {
    params.early_stopping = EarlyStopping::never;
  } else {
    reader.fail_expected("early_stopping", "true, false or \"never\"", *value);
  }
}

}  // namespace kvmesh
