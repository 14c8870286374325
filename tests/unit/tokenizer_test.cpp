// Tests of the GPT-2 byte-level BPE tokenizer: reference ids, round trips, UTF-8 prefixes,
// tokenizer.json loading and malformed files.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "common/data_dir.h"
#include "common/tokenizer.h"
#include "shipped_tokenizer.h"

namespace kvmesh {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const std::string k_gpt2_dir = std::string(KVMESH_DATA_DIR) + "/gpt2";

class Gpt2TokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { ASSERT_NE(testing::gpt2_tokenizer(), nullptr) << "data/gpt2 unreadable"; }
  static const Tokenizer& tok() { return *testing::gpt2_tokenizer(); }
};

// A model whose embedding has padding rows past the tokenizer's ids (OPT: 50272 rows for 50265
// tokens) is accepted when its description says so, and refused otherwise; a hole inside the
// tokenizer's own ids is refused either way.
TEST_F(Gpt2TokenizerTest, PaddedVocabularyTail) {
  EXPECT_FALSE(check_tokenizer_decodes(tok(), 50264, "m").is_ok());
  EXPECT_TRUE(check_tokenizer_decodes(tok(), 50264, "m", /*padded_tail=*/true).is_ok());
  EXPECT_TRUE(check_tokenizer_decodes(tok(), 50257, "m").is_ok());
}

TEST_F(Gpt2TokenizerTest, ReferenceCases) {
  std::ifstream in(std::string(KVMESH_TEST_DATA_DIR) + "/gpt2-tokenizer-cases.json");
  ASSERT_TRUE(in) << "missing gpt2-tokenizer-cases.json";
  const json cases = json::parse(in);
  ASSERT_FALSE(cases.empty());
  for (const json& c : cases) {
    const std::string text = c["text"].get<std::string>();
    const std::vector<int32_t> ids = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(tok().encode(text), ids) << "text: " << text;
    EXPECT_EQ(tok().decode(ids), text);
  }
}

TEST_F(Gpt2TokenizerTest, VocabularyFacts) {
  EXPECT_EQ(tok().vocab_size(), 50257);
  EXPECT_EQ(tok().eos_token_id(), 50256);
  EXPECT_EQ(tok().token_bytes(50256), "<|endoftext|>");
  EXPECT_EQ(tok().token_bytes(220), " ");
  EXPECT_EQ(tok().token_bytes(198), "\n");
  EXPECT_EQ(tok().token_bytes(-1), "");
  EXPECT_EQ(tok().token_bytes(50257), "");
  EXPECT_EQ(tok().decode({-5, 15496, 1 << 30, 995}), "Hello world");
}

TEST_F(Gpt2TokenizerTest, SpecialTokenIsPlainText) {
  const std::vector<int32_t> ids = tok().encode("<|endoftext|>");
  EXPECT_GT(ids.size(), 1u);
  for (int32_t id : ids) EXPECT_NE(id, tok().eos_token_id());
  EXPECT_EQ(tok().decode(ids), "<|endoftext|>");
}

TEST_F(Gpt2TokenizerTest, PreTokenizerSplits) {
  // Each of these is known to split into these GPT-2 tokens.
  EXPECT_EQ(tok().encode("don't"), (std::vector<int32_t>{9099, 470}));     // "don" "'t"
  EXPECT_EQ(tok().encode(" world"), (std::vector<int32_t>{995}));          // " world"
  EXPECT_EQ(tok().encode("a  b"), (std::vector<int32_t>{64, 220, 275}));  // "a" " " " b"
  EXPECT_EQ(tok().encode("a \n"), (std::vector<int32_t>{64, 220, 198}));  // trailing whitespace
  EXPECT_EQ(tok().encode(""), std::vector<int32_t>{});
}

TEST_F(Gpt2TokenizerTest, RoundTrips) {
  std::string all_bytes;
  for (int b = 0; b < 256; ++b) all_bytes += static_cast<char>(b);
  const std::vector<std::string> texts = {
      "Hello, world!",
      "\xff\xfe invalid \x80\x80 bytes \xc3",                 // stray and truncated bytes
      "\xe2\x82 partial \xf0\x9f\x98 emoji start",            // truncated 3- and 4-byte chars
      "\xed\xa0\x80 surrogate \xc0\xaf overlong \xf5\x80 big",  // ill-formed sequences
      "emoji \xf0\x9f\x98\x80\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd family \xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9",
      std::string(1000, ' ') + "x" + std::string(500, '\n') + std::string(300, '\t'),
      "\xe3\x80\x80\xe3\x80\x80ideographic spaces\xc2\xa0nbsp\xc2\x85nel",
      "<|endoftext|> and <|endoftext|><|endoftext|>",
      "It's we'll they're I'M 'S ''' ' '",
      "caf\xc3\xa9 na\xc3\xafve \xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 \xe4\xbd\xa0\xe5\xa5\xbd \xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7",
      "x\r\n\r\n  \t y \u00bd \u2167 \u0663",
      all_bytes,
      std::string("nul\0inside", 10),
  };
  for (const std::string& text : texts) {
    EXPECT_EQ(tok().decode(tok().encode(text)), text) << "text: " << text;
  }
}

TEST_F(Gpt2TokenizerTest, ManyThreadsAgree) {
  const std::string text = "The quick brown fox jumps over the lazy dog. \xf0\x9f\xa6\x8a 12345 ";
  std::string big;
  for (int i = 0; i < 200; ++i) big += text + std::to_string(i) + " word" + std::to_string(i * 7919);
  const std::vector<int32_t> expected = tok().encode(big);
  std::vector<std::thread> threads;
  std::vector<int> ok(8, 0);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      bool same = true;
      for (int r = 0; r < 5; ++r) same = same && tok().encode(big) == expected;
      ok[t] = same ? 1 : 0;
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 8; ++t) EXPECT_EQ(ok[t], 1) << "thread " << t;
}

TEST_F(Gpt2TokenizerTest, EncodesAMegabyteQuickly) {
  const std::string paragraph =
      "In the beginning the Universe was created. This has made a lot of people very angry and "
      "been widely regarded as a bad move. Many were increasingly of the opinion that they'd all "
      "made a big mistake in coming down from the trees in the first place.\n\n";
  std::string text;
  for (int i = 0; text.size() < (1 << 20); ++i) text += paragraph + "Chapter " + std::to_string(i) + "\n";
  const auto start = std::chrono::steady_clock::now();
  const std::vector<int32_t> ids = tok().encode(text);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("encoded %zu bytes into %zu tokens in %.3f s (%.1f MB/s)\n", text.size(), ids.size(),
              seconds, text.size() / seconds / 1e6);
  EXPECT_LT(seconds, 10.0);  // well under a second in Release; loose for sanitizer builds
  EXPECT_EQ(tok().decode(ids), text);
}

TEST_F(Gpt2TokenizerTest, LongPiecesStayFast) {
  // One pre-token of 256 KiB: the merge loop must not be quadratic.
  for (const std::string& text : {std::string(1 << 18, 'a'), std::string(1 << 18, '!'),
                                  std::string(1 << 18, '\xff')}) {
    const auto start = std::chrono::steady_clock::now();
    const std::vector<int32_t> ids = tok().encode(text);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_LT(seconds, 10.0);
    EXPECT_EQ(tok().decode(ids), text);
  }
}

TEST(Utf8CompletePrefix, PartialSequences) {
  EXPECT_EQ(utf8_complete_prefix(""), 0u);
  EXPECT_EQ(utf8_complete_prefix("abc"), 3u);
  EXPECT_EQ(utf8_complete_prefix("a\xc3"), 1u);                   // 2-byte, 1 of 2
  EXPECT_EQ(utf8_complete_prefix("a\xc3\xa9"), 3u);               // é complete
  EXPECT_EQ(utf8_complete_prefix("a\xe2"), 1u);                   // 3-byte, 1 of 3
  EXPECT_EQ(utf8_complete_prefix("a\xe2\x82"), 1u);               // 3-byte, 2 of 3
  EXPECT_EQ(utf8_complete_prefix("a\xe2\x82\xac"), 4u);           // € complete
  EXPECT_EQ(utf8_complete_prefix("a\xf0"), 1u);                   // 4-byte, 1 of 4
  EXPECT_EQ(utf8_complete_prefix("a\xf0\x9f"), 1u);               // 4-byte, 2 of 4
  EXPECT_EQ(utf8_complete_prefix("a\xf0\x9f\x98"), 1u);           // 4-byte, 3 of 4
  EXPECT_EQ(utf8_complete_prefix("a\xf0\x9f\x98\x80"), 5u);       // 😀 complete
  EXPECT_EQ(utf8_complete_prefix("\xf0\x9f\x98\x80\xf0\x9f"), 4u);
  // Invalid bytes count as complete so they never stall a stream.
  EXPECT_EQ(utf8_complete_prefix("a\x80"), 2u);
  EXPECT_EQ(utf8_complete_prefix("a\xff"), 2u);
  EXPECT_EQ(utf8_complete_prefix("a\xc0"), 2u);
  EXPECT_EQ(utf8_complete_prefix("a\xe0\x80"), 3u);  // overlong
  EXPECT_EQ(utf8_complete_prefix("a\xed\xa0"), 3u);  // surrogate
  EXPECT_EQ(utf8_complete_prefix("a\xf4\x90"), 3u);  // past U+10FFFF
  EXPECT_EQ(utf8_complete_prefix("a\xc3\xa9\x80"), 4u);
  EXPECT_EQ(utf8_complete_prefix("\x80\x80\x80\x80"), 4u);
}

// ---- small tokenizers written to a temp dir ----

class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() /
            ("kvmesh_tok_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string write(const std::string& name, const std::string& content) const {
    const std::string file = (path_ / name).string();
    std::ofstream(file, std::ios::binary) << content;
    return file;
  }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

// GPT-2's byte -> printable character mapping, as UTF-8.
std::string mapped_byte(int b) {
  const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
  int cp = b;
  if (!printable) {
    cp = 256;
    for (int i = 0; i < b; ++i) {
      if (!((i >= 33 && i <= 126) || (i >= 161 && i <= 172) || (i >= 174))) ++cp;
    }
  }
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

// Bytes 0..255 have ids 0..255; then he=256 ll=257 hell=258 hello=259 Ġhello=260.
json small_vocab() {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[mapped_byte(b)] = b;
  vocab["he"] = 256;
  vocab["ll"] = 257;
  vocab["hell"] = 258;
  vocab["hello"] = 259;
  vocab["\xc4\xa0hello"] = 260;  // "Ġhello"
  return vocab;
}

json small_tokenizer_json(const json& merges) {
  return json{{"version", "1.0"},
              {"added_tokens", json::array({json{{"id", 261}, {"content", "<|endoftext|>"},
                                                 {"special", true}}})},
              {"model", json{{"type", "BPE"}, {"vocab", small_vocab()}, {"merges", merges}}}};
}

void expect_small_tokenizer(const Tokenizer& tok) {
  EXPECT_EQ(tok.encode("hello hello"), (std::vector<int32_t>{259, 260}));
  EXPECT_EQ(tok.encode("help"), (std::vector<int32_t>{256, 'l', 'p'}));
  EXPECT_EQ(tok.encode("hi \xff"), (std::vector<int32_t>{'h', 'i', ' ', 0xff}));
  EXPECT_EQ(tok.decode({259, 260, 261}), "hello hello<|endoftext|>");
  EXPECT_EQ(tok.eos_token_id(), 261);
  EXPECT_EQ(tok.vocab_size(), 262);
  EXPECT_EQ(tok.token_bytes(260), " hello");
}

TEST(TokenizerJson, StringMerges) {
  TempDir dir;
  const json merges = json::array({"h e", "l l", "he ll", "hell o", "\xc4\xa0 hello", "x unknown"});
  auto tok = Tokenizer::from_tokenizer_json(dir.write("tokenizer.json", small_tokenizer_json(merges).dump()));
  ASSERT_TRUE(tok.is_ok()) << tok.status().to_string();
  expect_small_tokenizer(**tok);
}

TEST(TokenizerJson, ArrayMerges) {
  TempDir dir;
  const json merges = json::array({json::array({"h", "e"}), json::array({"l", "l"}),
                                   json::array({"he", "ll"}), "hell o", json::array({"\xc4\xa0", "hello"}),
                                   json::array({"nope", "missing"})});
  auto tok = Tokenizer::from_tokenizer_json(dir.write("tokenizer.json", small_tokenizer_json(merges).dump()));
  ASSERT_TRUE(tok.is_ok()) << tok.status().to_string();
  expect_small_tokenizer(**tok);
}

TEST(TokenizerJson, MergeRankDecides) {
  TempDir dir;
  // Without "h e", "he ll" can never apply: "hell" stays [h, e, ll].
  const json merges = json::array({"l l", "he ll"});
  auto tok = Tokenizer::from_tokenizer_json(dir.write("tokenizer.json", small_tokenizer_json(merges).dump()));
  ASSERT_TRUE(tok.is_ok()) << tok.status().to_string();
  EXPECT_EQ((*tok)->encode("hell"), (std::vector<int32_t>{'h', 'e', 257}));
}

TEST(TokenizerFiles, VocabAndMerges) {
  TempDir dir;
  const std::string vocab = dir.write("vocab.json", small_vocab().dump());
  const std::string merges =
      dir.write("merges.txt", "#version: 0.2\r\nh e\r\nl l\nhe ll\n\nhell o\n\xc4\xa0 hello\n");
  auto tok = Tokenizer::from_vocab_merges(vocab, merges);
  ASSERT_TRUE(tok.is_ok()) << tok.status().to_string();
  EXPECT_EQ((*tok)->encode("hello hello"), (std::vector<int32_t>{259, 260}));
  EXPECT_EQ((*tok)->eos_token_id(), -1);
  EXPECT_EQ((*tok)->vocab_size(), 261);
}

TEST(TokenizerFiles, ModelDirLookupOrder) {
  TempDir dir;
  // Empty dir: falls back to the shipped GPT-2 files.
  auto fallback = Tokenizer::from_model_dir(dir.str(), k_gpt2_dir);
  ASSERT_TRUE(fallback.is_ok()) << fallback.status().to_string();
  EXPECT_EQ((*fallback)->vocab_size(), 50257);
  // vocab.json + merges.txt in the dir.
  dir.write("vocab.json", small_vocab().dump());
  dir.write("merges.txt", "#version: 0.2\nh e\n");
  auto pair = Tokenizer::from_model_dir(dir.str(), k_gpt2_dir);
  ASSERT_TRUE(pair.is_ok()) << pair.status().to_string();
  EXPECT_EQ((*pair)->vocab_size(), 261);
  // tokenizer.json wins.
  dir.write("tokenizer.json", small_tokenizer_json(json::array({"h e"})).dump());
  auto hf = Tokenizer::from_model_dir(dir.str(), k_gpt2_dir);
  ASSERT_TRUE(hf.is_ok()) << hf.status().to_string();
  EXPECT_EQ((*hf)->vocab_size(), 262);
  // Nothing anywhere.
  EXPECT_FALSE(Tokenizer::from_model_dir(dir.str() + "/none", dir.str() + "/none").is_ok());
}

TEST(TokenizerFiles, MalformedTokenizerJsonIsAStatus) {
  TempDir dir;
  auto bad = [&](const std::string& content) {
    const std::string path = dir.write("tokenizer.json", content);
    auto tok = Tokenizer::from_tokenizer_json(path);
    EXPECT_FALSE(tok.is_ok()) << content;
    if (!tok.is_ok()) {
      EXPECT_NE(tok.status().message().find(path), std::string::npos) << tok.status().message();
    }
  };
  const json vocab = small_vocab();
  bad("");
  bad("{not json");
  bad("[1, 2, 3]");
  bad("{}");
  bad(json{{"model", 7}}.dump());
  bad(json{{"model", {{"type", "WordPiece"}, {"vocab", vocab}, {"merges", json::array()}}}}.dump());
  bad(json{{"model", {{"type", "BPE"}, {"merges", json::array()}}}}.dump());
  bad(json{{"model", {{"type", "BPE"}, {"vocab", json::array()}, {"merges", json::array()}}}}.dump());
  bad(json{{"model", {{"type", "BPE"}, {"vocab", {{"a", "zero"}}}, {"merges", json::array()}}}}.dump());
  bad(json{{"model", {{"type", "BPE"}, {"vocab", {{"a", -1}}}, {"merges", json::array()}}}}.dump());
  bad(json{{"model", {{"type", "BPE"}, {"vocab", {{"a", 1.5}}}, {"merges", json::array()}}}}.dump());
  bad(json{{"model", {{"type", "BPE"}, {"vocab", {{"a", 1ll << 40}}}, {"merges", json::array()}}}}.dump());
  bad(json{{"model", {{"type", "BPE"}, {"vocab", json::object()}, {"merges", json::array()}}}}.dump());
  bad(json{{"model", {{"type", "BPE"}, {"vocab", vocab}}}}.dump());
  bad(json{{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", "h e"}}}}.dump());
  bad(json{{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array({5})}}}}.dump());
  bad(json{{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array({"he"})}}}}.dump());
  bad(json{{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array({json::array({"h", "e", "x"})})}}}}.dump());
  bad(json{{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array({json::array({"h", 1})})}}}}.dump());
  bad(json{{"added_tokens", 3}, {"model", {{"vocab", vocab}, {"merges", json::array()}}}}.dump());
  bad(json{{"added_tokens", {json{{"id", "x"}, {"content", "y"}}}},
           {"model", {{"vocab", vocab}, {"merges", json::array()}}}}.dump());
  bad(json{{"added_tokens", {json{{"content", "y"}}}}, {"model", {{"vocab", vocab}, {"merges", json::array()}}}}
          .dump());
}

TEST(TokenizerFiles, MissingOrMalformedVocabMergesIsAStatus) {
  TempDir dir;
  const std::string vocab = dir.write("vocab.json", small_vocab().dump());
  const std::string merges = dir.write("merges.txt", "#version: 0.2\nh e\n");
  auto missing = Tokenizer::from_vocab_merges(dir.str() + "/nope.json", merges);
  ASSERT_FALSE(missing.is_ok());
  EXPECT_EQ(missing.status().code(), StatusCode::not_found);
  EXPECT_NE(missing.status().message().find("nope.json"), std::string::npos);
  EXPECT_FALSE(Tokenizer::from_vocab_merges(vocab, dir.str() + "/nope.txt").is_ok());
  EXPECT_FALSE(Tokenizer::from_vocab_merges(dir.str(), merges).is_ok());  // a directory
  EXPECT_FALSE(Tokenizer::from_tokenizer_json(dir.str() + "/nope.json").is_ok());
  EXPECT_FALSE(Tokenizer::from_vocab_merges(dir.write("v1.json", "{\"a\": 0,"), merges).is_ok());
  EXPECT_FALSE(Tokenizer::from_vocab_merges(dir.write("v2.json", "{}"), merges).is_ok());
  EXPECT_FALSE(Tokenizer::from_vocab_merges(dir.write("v3.json", "[\"a\"]"), merges).is_ok());
  EXPECT_FALSE(Tokenizer::from_vocab_merges(dir.write("v4.json", "{\"a\": null}"), merges).is_ok());
  auto bad_line = Tokenizer::from_vocab_merges(vocab, dir.write("m1.txt", "#version: 0.2\nh e\nhe ll o\n"));
  ASSERT_FALSE(bad_line.is_ok());
  EXPECT_NE(bad_line.status().message().find("m1.txt:3"), std::string::npos) << bad_line.status().message();
  EXPECT_FALSE(Tokenizer::from_vocab_merges(vocab, dir.write("m2.txt", "lonely\n")).is_ok());
  // Merges naming unknown tokens are skipped, not errors.
  auto unknown = Tokenizer::from_vocab_merges(vocab, dir.write("m3.txt", "#version: 0.2\nzz top\nh e\n"));
  ASSERT_TRUE(unknown.is_ok()) << unknown.status().to_string();
  EXPECT_EQ((*unknown)->encode("he"), (std::vector<int32_t>{256}));
}

TEST(ShippedDataDir, EnvironmentOverridesTheBuildPath) {
  ::unsetenv("KVMESH_DATA_DIR");
  EXPECT_EQ(shipped_data_dir(), KVMESH_DATA_DIR);
  ::setenv("KVMESH_DATA_DIR", "/opt/kvmesh/share", 1);
  EXPECT_EQ(shipped_gpt2_tokenizer_dir(), "/opt/kvmesh/share/gpt2");
  auto t = Tokenizer::from_model_dir("/nonexistent-model", shipped_gpt2_tokenizer_dir());
  EXPECT_FALSE(t.is_ok());  // a clear error naming the missing file, not a crash
  ::unsetenv("KVMESH_DATA_DIR");
}

}  // namespace
}  // namespace kvmesh
