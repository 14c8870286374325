// Random and multi-turn workloads, length fitting through /tokenize, request bodies, seeded
// subsets. (ShareGPT and replay files are read in datasets.cpp.)
#include "client/workloads.h"

#include <algorithm>
#include <numeric>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "client/rng.h"

namespace kvmesh::load {
namespace {

using nlohmann::json;

constexpr int kFitRounds = 8;
constexpr const char* kNotCounted = "lengths in words: the server has no /tokenize; prompt tokens from its usage";

uint64_t mix(uint64_t a, uint64_t b) {
  Rng rng(a * 0x9e3779b97f4a7c15ULL ^ (b + 0x632be59bd9b4e019ULL));
  return rng.next();
}

int64_t count_words(const std::string& text) {
  return std::count(text.begin(), text.end(), ' ');
}

void trim_words(std::string& text, int64_t n) {
  for (int64_t i = 0; i < n && count_words(text) > 1; ++i) text.erase(text.rfind(' '));
}

std::vector<int64_t> count_with(TokenService& tokens, bool chat, const std::vector<std::string>& texts) {
  return chat ? tokens.count_chat(texts) : tokens.count(texts);
}

}  // namespace

int64_t Workload::n_requests() const {
  int64_t n = 0;
  for (const SessionSpec& s : sessions) n += static_cast<int64_t>(s.turns.size());
  return n;
}

const std::vector<std::string>& prompt_words() {
  static const std::vector<std::string> words = [] {
    const char* text =
        "the of and to in is that for it as was with be by on not he this are or his from at which but "
        "have an they you were her she there one all we their can has more been if would so who will no "
        "when what out up said some into them time only then also than new other about two first may like "
        "these over any could after most many such where made years state through world back between people "
        "way well even because good while same year work under last long great each just life know still see "
        "both since part take those high around should very place small end own another might found much down "
        "day home before house must right water old city without never called every come give name does went "
        "less use group thought few fact play point again local book away head word hand power often night "
        "move form light side kind open line air public order week king across room real four close case five "
        "land field free fire early family road sound late table door river market south north east west music "
        "story team center help party church";
    std::vector<std::string> out;
    std::string word;
    for (const char* p = text;; ++p) {
      if (*p == ' ' || *p == '\0') {
        if (!word.empty()) out.push_back(word);
        word.clear();
        if (*p == '\0') break;
      } else {
        word += *p;
      }
    }
    return out;
  }();
  return words;
}

std::vector<std::string> single_token_words(TokenService& tokens, const std::vector<std::string>& words) {
  if (!tokens.can_count()) return words;
  std::string joined;
  for (const std::string& w : words) joined += " " + w;
  const auto all = tokens.count({joined});
  if (!all.empty() && all[0] == static_cast<int64_t>(words.size())) return words;
  std::vector<std::string> spaced;
  for (const std::string& w : words) spaced.push_back(" " + w);
  const auto each = tokens.count(spaced);
  std::vector<std::string> out;
  for (size_t i = 0; i < words.size() && i < each.size(); ++i)
    if (each[i] == 1) out.push_back(words[i]);
  return out;
}

std::string random_text(const std::vector<std::string>& words, int64_t n_words, uint64_t rng_seed) {
  Rng rng(rng_seed);
  std::string text;
  text.reserve(static_cast<size_t>(n_words) * 7);
  for (int64_t i = 0; i < n_words && !words.empty(); ++i) {
    text += ' ';
    text += words[static_cast<size_t>(rng.uniform_int(0, static_cast<int64_t>(words.size()) - 1))];
  }
  return text;
}

int64_t fit_lengths(TokenService& tokens, bool chat, const std::vector<std::string>& words,
                    std::vector<std::string>& texts, const std::vector<int64_t>& targets, uint64_t seed) {
  std::vector<size_t> todo(texts.size());
  std::iota(todo.begin(), todo.end(), size_t{0});
  int64_t stuck = 0;  // could not be counted, or one word already too long
  for (int round = 0; round < kFitRounds && !todo.empty(); ++round) {
    std::vector<std::string> batch;
    for (size_t i : todo) batch.push_back(texts[i]);
    const auto counts = count_with(tokens, chat, batch);
    std::vector<size_t> next;
    for (size_t k = 0; k < todo.size(); ++k) {
      const size_t i = todo[k];
      const int64_t have = k < counts.size() ? counts[k] : -1;
      if (have == targets[i]) continue;
      const int64_t delta = targets[i] - have;
      if (have >= 0 && delta > 0) {
        texts[i] += random_text(words, delta, mix(seed, i * 131 + static_cast<size_t>(round)));
      } else if (have >= 0 && count_words(texts[i]) > 1) {
        trim_words(texts[i], -delta);
      } else {
        ++stuck;
        continue;
      }
      next.push_back(i);
    }
    todo = std::move(next);
  }
  if (todo.empty()) return stuck;
  std::vector<std::string> batch;
  for (size_t i : todo) batch.push_back(texts[i]);
  const auto counts = count_with(tokens, chat, batch);
  int64_t left = stuck;
  for (size_t k = 0; k < todo.size(); ++k) left += k < counts.size() && counts[k] == targets[todo[k]] ? 0 : 1;
  return left;
}

bool build_random(const WorkloadInputs& in, Workload& out, std::string& error) {
  const LoadConfig& c = *in.config;
  const bool exact = in.tokens->can_count();
  const auto words = single_token_words(*in.tokens, prompt_words());
  if (words.size() < 16) {
    error = "the server's tokenizer splits the prompt words (is /tokenize answering?)";
    return false;
  }
  if (in.max_model_len > 0 && c.input_len.hi + c.output_len.hi > in.max_model_len) {
    error = "--input-len + --output-len (" + std::to_string(c.input_len.hi + c.output_len.hi) +
            ") exceeds the model's context of " + std::to_string(in.max_model_len) + " tokens";
    return false;
  }
  std::vector<std::string> texts;
  std::vector<int64_t> targets;
  out.sessions.clear();
  for (int64_t i = 0; i < in.n_sessions; ++i) {
    Rng rng(mix(in.seed, static_cast<uint64_t>(i)));
    const int64_t n_in = rng.uniform_int(c.input_len.lo, c.input_len.hi);
    const int64_t n_out = rng.uniform_int(c.output_len.lo, c.output_len.hi);
    texts.push_back(random_text(words, n_in, rng.next()));
    targets.push_back(n_in);
    SessionSpec s;
    s.turns.push_back(TurnSpec{"", exact ? n_in : -1, static_cast<int32_t>(n_out)});
    out.sessions.push_back(std::move(s));
  }
  const int64_t left = exact ? fit_lengths(*in.tokens, c.chat(), words, texts, targets, in.seed) : 0;
  for (size_t i = 0; i < texts.size(); ++i) out.sessions[i].turns[0].text = std::move(texts[i]);
  out.summary = "random: " + std::to_string(in.n_sessions) + " prompts, input " + std::to_string(c.input_len.lo) +
                (c.input_len.fixed() ? "" : ":" + std::to_string(c.input_len.hi)) + " tokens, output " +
                std::to_string(c.output_len.lo) +
                (c.output_len.fixed() ? "" : ":" + std::to_string(c.output_len.hi)) + " tokens";
  if (left > 0) out.summary += " (" + std::to_string(left) + " prompts off by a token or more)";
  if (!exact) out.summary += std::string(" (") + kNotCounted + ")";
  return true;
}

bool build_multiturn(const WorkloadInputs& in, Workload& out, std::string& error) {
  const LoadConfig& c = *in.config;
  const auto words = single_token_words(*in.tokens, prompt_words());
  if (words.size() < 16) {
    error = "the server's tokenizer splits the prompt words (is /tokenize answering?)";
    return false;
  }
  const int64_t per_turn = c.input_len.hi + c.output_len.hi;
  const int64_t longest = c.system_prompt_len + per_turn * c.turns;
  if (in.max_model_len > 0 && longest > in.max_model_len) {
    error = "a conversation grows to " + std::to_string(longest) + " tokens, over the model's context of " +
            std::to_string(in.max_model_len) + " (lower --turns, --input-len, --output-len or --system-prompt-len)";
    return false;
  }
  out.system_prompts.clear();
  if (c.system_prompt_len > 0) {
    std::vector<int64_t> targets;
    for (int32_t k = 0; k < c.num_system_prompts; ++k) {
      out.system_prompts.push_back(random_text(words, c.system_prompt_len, mix(in.seed ^ 0x5157, k)));
      targets.push_back(c.system_prompt_len);
    }
    if (in.tokens->can_count()) fit_lengths(*in.tokens, false, words, out.system_prompts, targets, in.seed ^ 0x5157);
  }
  out.sessions.clear();
  for (int64_t s = 0; s < in.n_sessions; ++s) {
    Rng rng(mix(in.seed, static_cast<uint64_t>(s)));
    SessionSpec session;
    session.system_index = out.system_prompts.empty() ? -1 : static_cast<int32_t>(s % c.num_system_prompts);
    for (int32_t t = 0; t < c.turns; ++t) {
      const int64_t n_in = rng.uniform_int(c.input_len.lo, c.input_len.hi);
      const int64_t n_out = rng.uniform_int(c.output_len.lo, c.output_len.hi);
      session.turns.push_back(TurnSpec{random_text(words, n_in, rng.next()), -1, static_cast<int32_t>(n_out)});
    }
    out.sessions.push_back(std::move(session));
  }
  out.summary = "multiturn: " + std::to_string(in.n_sessions) + " conversations x " + std::to_string(c.turns) +
                " turns, " + std::to_string(c.num_system_prompts) + " shared system prompt(s) of " +
                std::to_string(c.system_prompt_len) + " tokens, user turns of " + std::to_string(c.input_len.lo) +
                (c.input_len.fixed() ? "" : ":" + std::to_string(c.input_len.hi)) + " tokens";
  if (!in.tokens->can_count()) out.summary += std::string(" (") + kNotCounted + ")";
  return true;
}

bool build_workload(const WorkloadInputs& in, Workload& out, std::string& error) {
  switch (in.config->workload) {
    case WorkloadKind::random: return build_random(in, out, error);
    case WorkloadKind::multiturn: return build_multiturn(in, out, error);
    case WorkloadKind::sharegpt: return build_sharegpt(in, out, error);
    case WorkloadKind::replay: return build_replay(in, out, error);
  }
  error = "unknown workload";
  return false;
}

std::string request_body(const BodyOptions& o, const Workload& workload, const SessionSpec& session, int32_t turn,
                         const std::vector<std::string>& replies) {
  const TurnSpec& t = session.turns[static_cast<size_t>(turn)];
  const std::string* system = session.system_index >= 0 && static_cast<size_t>(session.system_index) <
                                                               workload.system_prompts.size()
                                  ? &workload.system_prompts[static_cast<size_t>(session.system_index)]
                                  : nullptr;
  json body = json::object();
  if (!o.model.empty()) body["model"] = o.model;
  if (o.chat) {
    json messages = json::array();
    if (system) messages.push_back({{"role", "system"}, {"content", *system}});
    for (int32_t k = 0; k < turn; ++k) {
      messages.push_back({{"role", "user"}, {"content", session.turns[static_cast<size_t>(k)].text}});
      messages.push_back({{"role", "assistant"}, {"content", k < static_cast<int32_t>(replies.size()) ? replies[k] : ""}});
    }
    messages.push_back({{"role", "user"}, {"content", t.text}});
    body["messages"] = std::move(messages);
  } else {
    std::string prompt = system ? *system : "";
    for (int32_t k = 0; k < turn; ++k) {
      prompt += session.turns[static_cast<size_t>(k)].text;
      if (k < static_cast<int32_t>(replies.size())) prompt += replies[static_cast<size_t>(k)];
    }
    body["prompt"] = prompt + t.text;
  }
  body["max_tokens"] = t.max_tokens;
  if (o.pin_output) {
    body["min_tokens"] = t.max_tokens;
    body["ignore_eos"] = true;
  }
  body["temperature"] = o.temperature;
  if (o.temperature > 0.0) body["seed"] = o.seed;
  body["stream"] = o.stream;
  if (o.stream) body["stream_options"] = {{"include_usage", true}};
  if (o.token_ids) body["return_token_ids"] = true;
  body.update(o.extra_body);
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::vector<int64_t> choose_subset(int64_t n, int64_t k, uint64_t seed) {
  k = std::clamp<int64_t>(k, 0, n);
  std::unordered_map<int64_t, int64_t> swapped;  // sparse Fisher-Yates
  auto at = [&](int64_t i) {
    auto it = swapped.find(i);
    return it == swapped.end() ? i : it->second;
  };
  Rng rng(mix(seed, 0xd15c));
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(k));
  for (int64_t i = 0; i < k; ++i) {
    const int64_t j = rng.uniform_int(i, n - 1);
    const int64_t vi = at(i), vj = at(j);
    swapped[j] = vi;
    out.push_back(vj);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace kvmesh::load
