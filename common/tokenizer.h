// GPT-2 byte-level BPE: pre-tokenizer, merges, encode and decode (vocab.json+merges.txt or tokenizer.json).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace kvmesh {

class Tokenizer {
 public:
  // vocab.json + merges.txt (the original GPT-2 files).
  static Result<std::unique_ptr<Tokenizer>> from_vocab_merges(const std::string& vocab_path,
                                                             const std::string& merges_path);
  // Hugging Face tokenizer.json of a GPT-2-style BPE model.
  static Result<std::unique_ptr<Tokenizer>> from_tokenizer_json(const std::string& path);
  // Looks in a model directory for tokenizer.json, then vocab.json + merges.txt, then falls back
  // to the GPT-2 files shipped with kvmesh (fallback_dir) when the directory has none of them. A
  // tokenizer file that is there but unusable (a dangling link, a FIFO, only one of the pair) is
  // an error.
  static Result<std::unique_ptr<Tokenizer>> from_model_dir(const std::string& model_dir,
                                                           const std::string& fallback_dir);

  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Text (UTF-8; invalid bytes are encoded byte by byte) to token ids. Special tokens such as
  // <|endoftext|> are plain text.
  std::vector<int32_t> encode(std::string_view text) const;
  // A prompt's ids: encode(text), after the BOS id when one is set (set_prompt_bos).
  std::vector<int32_t> encode_prompt(std::string_view text) const;
  // The id put before every prompt (a model description's bos_token_id when its family does
  // so, as Hugging Face's OPT tokenizer does); -1: none (the default).
  void set_prompt_bos(int32_t id);
  int32_t prompt_bos() const;
  // Token ids to bytes. The result may end inside a multi-byte UTF-8 character; ids outside the
  // vocabulary decode to nothing.
  std::string decode(const std::vector<int32_t>& ids) const;
  // The bytes of one token ("" for an unknown id).
  std::string token_bytes(int32_t id) const;
  int32_t vocab_size() const;
  int32_t eos_token_id() const;  // id of <|endoftext|>, or -1

 private:
  Tokenizer();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// invalid_argument when the tokenizer cannot decode every id a model with `model_vocab_size`
// logits can produce (a vocabulary smaller than the model's, or with holes), naming how many and
// the first; `where` (the model directory) starts the message. padded_tail: ids past the
// tokenizer's own are padding rows of the model (ModelConfig::vocab_padded), not missing.
Status check_tokenizer_decodes(const Tokenizer& tokenizer, int32_t model_vocab_size, const std::string& where,
                               bool padded_tail = false);

// Length of the longest prefix of `bytes` that is complete UTF-8 (a partial character at the end
// is left out; invalid bytes count as complete so they never stall a stream).
size_t utf8_complete_prefix(std::string_view bytes);

}  // namespace kvmesh
