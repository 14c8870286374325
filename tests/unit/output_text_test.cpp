// OutputText: streamed text stays valid UTF-8 and stop strings are cut, even across tokens.
#include <gtest/gtest.h>

#include "common/tokenizer.h"
#include "coordinator/output_text.h"

namespace kvmesh {
namespace {

const Tokenizer& tok() {
  static auto t = Tokenizer::from_vocab_merges(KVMESH_DATA_DIR "/gpt2/vocab.json",
                                               KVMESH_DATA_DIR "/gpt2/merges.txt");
  return *t.value();
}

std::string stream(OutputText& out, const std::vector<int32_t>& ids, bool* stopped) {
  std::string text;
  *stopped = false;
  for (int32_t id : ids) {
    if (out.append(id, true)) {
      *stopped = true;
      break;
    }
    text += out.take_ready();
  }
  return text + out.take_rest();
}

TEST(OutputText, StopStringAcrossTokensIsCut) {
  auto ids = tok().encode("Hello world, this is the END of it");
  OutputText out(&tok(), {"the END"});
  bool stopped;
  EXPECT_EQ(stream(out, ids, &stopped), "Hello world, this is ");
  EXPECT_TRUE(stopped);
  EXPECT_EQ(out.matched_stop(), "the END");
}

TEST(OutputText, HeldBackPrefixIsReleasedWhenItDoesNotMatch) {
  auto ids = tok().encode("abc the EN and more");
  OutputText out(&tok(), {"the END"});
  bool stopped;
  EXPECT_EQ(stream(out, ids, &stopped), "abc the EN and more");
  EXPECT_FALSE(stopped);
}

TEST(OutputText, PartialCharactersWaitForTheirLastByte) {
  auto ids = tok().encode("日本語");  // several tokens split inside characters
  ASSERT_GT(ids.size(), 3u);
  OutputText out(&tok(), {});
  std::string all;
  for (int32_t id : ids) {
    out.append(id, true);
    std::string piece = out.take_ready();
    EXPECT_EQ(sanitize_utf8(piece), piece) << "a streamed piece is not valid UTF-8";
    all += piece;
  }
  all += out.take_rest();
  EXPECT_EQ(all, "日本語");
}

TEST(OutputText, InvalidBytesBecomeReplacementCharacters) {
  EXPECT_EQ(sanitize_utf8("a\xff" "b"), "a\xef\xbf\xbd" "b");
  EXPECT_EQ(sanitize_utf8("\xe6\x97"), "\xef\xbf\xbd\xef\xbf\xbd");
}

}  // namespace
}  // namespace kvmesh
