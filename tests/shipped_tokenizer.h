// The shipped GPT-2 tokenizer (data/gpt2), loaded once per test program; null when unreadable.
#pragma once

#include <memory>

#include "common/tokenizer.h"

namespace kvmesh::testing {

inline std::shared_ptr<const Tokenizer> gpt2_tokenizer() {
  static std::shared_ptr<const Tokenizer> tok = [] {
    auto t = Tokenizer::from_vocab_merges(KVMESH_DATA_DIR "/gpt2/vocab.json",
                                          KVMESH_DATA_DIR "/gpt2/merges.txt");
    return t.is_ok() ? std::shared_ptr<const Tokenizer>(std::move(t).value()) : nullptr;
  }();
  return tok;
}

}  // namespace kvmesh::testing
