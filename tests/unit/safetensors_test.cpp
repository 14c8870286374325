// Tests of common/safetensors: the HF fixture, block reads, write/read round trips, sharded
// checkpoints, and corrupt files and indexes (every error names the file and the problem).
#include "common/safetensors.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace kvmesh {
namespace {

namespace fs = std::filesystem;
const std::string kFixtureDir = KVMESH_TEST_DATA_DIR "/hf-gpt2-4l32d";

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "kvmesh-st-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data()) ? tmpl : "";
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// A safetensors file from raw header text and data bytes; header_len overrides the length field.
std::string raw_file(const std::string& header, size_t data_bytes, int64_t header_len = -1) {
  uint64_t len = header_len >= 0 ? static_cast<uint64_t>(header_len) : header.size();
  std::string out(reinterpret_cast<const char*>(&len), 8);
  return out + header + std::string(data_bytes, '\x11');
}

std::string f32_bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}

std::vector<float> iota(size_t n, float start = 0.0f) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = start + static_cast<float>(i);
  return v;
}

// Opening `bytes` as a file must fail with a message naming the file and containing `needle`.
void expect_open_error(const std::string& bytes, const std::string& needle) {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  write_file(path, bytes);
  auto r = SafetensorsFile::open(path);
  ASSERT_FALSE(r.is_ok()) << needle;
  EXPECT_NE(r.status().message().find(path), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().message();
  auto ck = Checkpoint::open_dir(dir.path());  // the directory path reports the same error
  ASSERT_FALSE(ck.is_ok());
  EXPECT_NE(ck.status().message().find(needle), std::string::npos) << ck.status().message();
}

TEST(Safetensors, FixtureLoads) {
  auto ck = Checkpoint::open_dir(kFixtureDir);
  ASSERT_TRUE(ck.is_ok()) << ck.status().to_string();
  const SafetensorsFile* file = nullptr;
  const TensorInfo* wte = (*ck)->find("wte.weight", &file);
  ASSERT_NE(wte, nullptr);
  EXPECT_EQ(wte->name, "transformer.wte.weight");
  EXPECT_EQ(wte->dtype, DType::f32);
  EXPECT_EQ(wte->shape, (std::vector<int64_t>{50257, 32}));
  EXPECT_EQ(file->path(), kFixtureDir + "/model.safetensors");
  auto expect_shape = [&](const std::string& name, std::vector<int64_t> shape) {
    auto s = (*ck)->shape(name);
    ASSERT_TRUE(s.is_ok()) << s.status().to_string();
    EXPECT_EQ(*s, shape) << name;
  };
  expect_shape("wpe.weight", {512, 32});
  expect_shape("h.0.attn.c_attn.weight", {32, 96});
  expect_shape("transformer.h.3.attn.c_attn.bias", {96});
  expect_shape("h.2.attn.c_proj.weight", {32, 32});
  expect_shape("h.1.mlp.c_fc.weight", {32, 128});
  expect_shape("h.1.mlp.c_proj.weight", {128, 32});
  expect_shape("h.0.ln_1.weight", {32});
  expect_shape("ln_f.bias", {32});
  EXPECT_EQ((*ck)->find("h.4.ln_1.weight", nullptr), nullptr);
  EXPECT_EQ((*ck)->tensor_names().size(), 2u + 4u * 12u + 2u);
}

TEST(Safetensors, ColumnSliceMatchesFullRead) {
  auto ck = Checkpoint::open_dir(kFixtureDir);
  ASSERT_TRUE(ck.is_ok()) << ck.status().to_string();
  const int64_t rows = 32, cols = 96;
  std::vector<float> full(rows * cols);
  ASSERT_TRUE((*ck)->read_f32("h.1.attn.c_attn.weight", 0, rows, 0, cols, full.data()).is_ok());
  const uint64_t before = (*ck)->bytes_read();
  // Rank 1 of TP=4: columns [24, 48) of rows [4, 30).
  std::vector<float> part(26 * 24);
  Status st = (*ck)->read_f32("transformer.h.1.attn.c_attn.weight", 4, 30, 24, 48, part.data());
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  EXPECT_EQ((*ck)->bytes_read() - before, 26u * 24u * 4u);  // only the needed bytes
  for (int64_t r = 4; r < 30; ++r) {
    for (int64_t c = 24; c < 48; ++c) ASSERT_EQ(part[(r - 4) * 24 + (c - 24)], full[r * cols + c]);
  }
  std::vector<float> bias(96), bias_part(10);
  ASSERT_TRUE((*ck)->read_f32("h.1.attn.c_attn.bias", 0, 1, 0, 96, bias.data()).is_ok());
  ASSERT_TRUE((*ck)->read_f32("h.1.attn.c_attn.bias", 0, 1, 40, 50, bias_part.data()).is_ok());
  for (int i = 0; i < 10; ++i) EXPECT_EQ(bias_part[i], bias[40 + i]);
  bool any_nonzero = false;
  for (float v : full) any_nonzero = any_nonzero || v != 0.0f;
  EXPECT_TRUE(any_nonzero);
}

TEST(Safetensors, ReadErrors) {
  auto ck = Checkpoint::open_dir(kFixtureDir);
  ASSERT_TRUE(ck.is_ok());
  std::vector<float> buf(32 * 96);
  Status missing = (*ck)->read_f32("h.9.attn.c_attn.weight", 0, 1, 0, 1, buf.data());
  EXPECT_EQ(missing.code(), StatusCode::not_found);
  EXPECT_NE(missing.message().find("h.9.attn.c_attn.weight"), std::string::npos);
  EXPECT_NE(missing.message().find(kFixtureDir), std::string::npos);
  EXPECT_EQ((*ck)->shape("nope").status().code(), StatusCode::not_found);
  Status oob = (*ck)->read_f32("h.0.attn.c_attn.weight", 0, 33, 0, 96, buf.data());
  EXPECT_EQ(oob.code(), StatusCode::out_of_range);
  EXPECT_NE(oob.message().find("model.safetensors: tensor 'transformer.h.0.attn.c_attn.weight'"), std::string::npos)
      << oob.message();
  EXPECT_FALSE((*ck)->read_f32("h.0.attn.c_attn.weight", 0, 1, 90, 97, buf.data()).is_ok());
  EXPECT_FALSE((*ck)->read_f32("h.0.attn.c_attn.weight", 2, 1, 0, 1, buf.data()).is_ok());
  EXPECT_FALSE((*ck)->read_f32("h.0.attn.c_attn.weight", -1, 1, 0, 1, buf.data()).is_ok());
  EXPECT_FALSE((*ck)->read_f32("h.0.attn.c_attn.bias", 0, 2, 0, 1, buf.data()).is_ok());
  EXPECT_TRUE((*ck)->read_f32("h.0.attn.c_attn.weight", 3, 3, 5, 5, buf.data()).is_ok());  // empty block

  const SafetensorsFile* file = (*ck)->files()[0].get();
  EXPECT_TRUE(file->read_bytes("transformer.ln_f.bias", 120, 8, buf.data()).is_ok());
  EXPECT_EQ(file->read_bytes("transformer.ln_f.bias", 121, 8, buf.data()).code(), StatusCode::out_of_range);
  EXPECT_EQ(file->read_bytes("transformer.ln_f.bias", ~0ull, 2, buf.data()).code(), StatusCode::out_of_range);
  EXPECT_EQ(file->read_bytes("nope", 0, 1, buf.data()).code(), StatusCode::not_found);
}

TEST(Safetensors, WriteReadRoundTripAllFloatDTypes) {
  TempDir dir;
  const std::vector<float> values = iota(12, -3.0f);
  std::string f16, bf16;
  for (float v : values) {
    uint16_t h = float_to_half(v), b = float_to_bf16(v);
    f16.append(reinterpret_cast<const char*>(&h), 2);
    bf16.append(reinterpret_cast<const char*>(&b), 2);
  }
  std::vector<TensorToWrite> tensors = {{"a", DType::f32, {3, 4}, f32_bytes(values)},
                                        {"b", DType::f16, {3, 4}, f16},
                                        {"c", DType::bf16, {12}, bf16},
                                        {"empty", DType::f32, {0, 4}, ""},
                                        {"ids", DType::i32, {2}, std::string(8, '\0')}};
  const std::string path = dir.file("model.safetensors");
  ASSERT_TRUE(write_safetensors(path, tensors).is_ok());
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  std::ifstream in(path, std::ios::binary);
  uint64_t header_len = 0;
  in.read(reinterpret_cast<char*>(&header_len), 8);
  EXPECT_EQ(header_len % 8, 0u);
  auto ck = Checkpoint::open_dir(dir.path());
  ASSERT_TRUE(ck.is_ok()) << ck.status().to_string();
  for (const char* name : {"a", "b", "c"}) {
    std::vector<float> out(6);
    const bool two_d = std::string(name) != "c";
    Status st = two_d ? (*ck)->read_f32(name, 1, 3, 1, 4, out.data()) : (*ck)->read_f32(name, 0, 1, 5, 11, out.data());
    ASSERT_TRUE(st.is_ok()) << st.to_string();
    for (int i = 0; i < 6; ++i) {
      const float expect = two_d ? values[(1 + i / 3) * 4 + 1 + i % 3] : values[5 + i];
      EXPECT_EQ(out[i], expect) << name << " " << i;  // small integers are exact in every dtype
    }
  }
  auto s = (*ck)->shape("empty");
  ASSERT_TRUE(s.is_ok());
  EXPECT_EQ(*s, (std::vector<int64_t>{0, 4}));
  float dummy = 0;
  Status ints = (*ck)->read_f32("ids", 0, 1, 0, 1, &dummy);
  EXPECT_EQ(ints.code(), StatusCode::invalid_argument);
  EXPECT_NE(ints.message().find("I32"), std::string::npos);

  EXPECT_FALSE(write_safetensors(dir.file("bad.safetensors"), {{"a", DType::f32, {3}, "123"}}).is_ok());
  EXPECT_FALSE(write_safetensors(dir.file("dup.safetensors"),
                                 {{"a", DType::f32, {1}, "1234"}, {"a", DType::f32, {1}, "1234"}})
                   .is_ok());
  EXPECT_FALSE(fs::exists(dir.file("bad.safetensors")));
}

// A NaN or infinite weight is refused when read, naming the tensor and the element; the rest of
// the tensor (and finite values next to it) reads as before.
TEST(Safetensors, NonFiniteWeightsAreRefused) {
  TempDir dir;
  std::vector<float> nan_at_5 = iota(8), inf_at_2 = iota(8);
  nan_at_5[5] = std::nanf("");
  inf_at_2[2] = -INFINITY;
  uint16_t inf_half = float_to_half(INFINITY);
  std::string f16(16, '\0');
  std::memcpy(&f16[2 * 7], &inf_half, 2);
  ASSERT_TRUE(write_safetensors(dir.file("model.safetensors"), {{"n", DType::f32, {2, 4}, f32_bytes(nan_at_5)},
                                                                 {"i", DType::f32, {8}, f32_bytes(inf_at_2)},
                                                                 {"h", DType::f16, {8}, f16}})
                  .is_ok());
  auto ck = Checkpoint::open_dir(dir.path());
  ASSERT_TRUE(ck.is_ok()) << ck.status().to_string();
  std::vector<float> out(8);
  Status nan = (*ck)->read_f32("n", 0, 2, 0, 4, out.data());
  EXPECT_EQ(nan.code(), StatusCode::invalid_argument);
  EXPECT_NE(nan.message().find("tensor 'n': element 5 is NaN"), std::string::npos) << nan.message();
  EXPECT_TRUE((*ck)->read_f32("n", 0, 1, 0, 4, out.data()).is_ok()) << "the first row is finite";
  Status inf = (*ck)->read_f32("i", 0, 1, 0, 8, out.data());
  EXPECT_NE(inf.message().find("tensor 'i': element 2 is infinite"), std::string::npos) << inf.message();
  Status half = (*ck)->read_f32("h", 0, 1, 0, 8, out.data());
  EXPECT_NE(half.message().find("tensor 'h': element 7 is infinite"), std::string::npos) << half.message();
}

TEST(Safetensors, ThreeDimensionalTensorIsNotABlock) {
  TempDir dir;
  ASSERT_TRUE(write_safetensors(dir.file("model.safetensors"), {{"t", DType::f32, {2, 2, 2}, f32_bytes(iota(8))}}).is_ok());
  auto ck = Checkpoint::open_dir(dir.path());
  ASSERT_TRUE(ck.is_ok());
  std::vector<float> out(8);
  Status st = (*ck)->read_f32("t", 0, 1, 0, 1, out.data());
  EXPECT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("1-D or 2-D"), std::string::npos) << st.message();
}

TEST(Safetensors, CorruptFiles) {
  const std::string ok_header = R"({"w":{"dtype":"F32","shape":[3,3],"data_offsets":[0,36]}})";
  expect_open_error(std::string("\x01\x02\x03\x04", 4), "too short");
  expect_open_error(raw_file(ok_header, 36, 5000), "runs past the end of the file");
  expect_open_error(raw_file(ok_header, 36, int64_t{1} << 40), "100 MB");
  expect_open_error(raw_file(ok_header, 20), "run past the data section");  // truncated data
  expect_open_error(raw_file("hello world", 0), "header is not a JSON object");
  expect_open_error(raw_file("{\"w\": {", 0), "header is not valid JSON");
  expect_open_error(raw_file("[1, 2]", 0), "not a JSON object");
  expect_open_error(raw_file(R"({"w":{"dtype":"F32","shape":[3,3],"data_offsets":[0,100]}})", 100),
                    "tensor 'w': data_offsets [0, 100] hold 100 bytes but shape [3, 3] x F32 needs 36");
  expect_open_error(raw_file(R"({"w":{"dtype":"F32","shape":[3,3],"data_offsets":[64,100]}})", 90),
                    "run past the data section");
  expect_open_error(raw_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8), "begin > end");
  expect_open_error(raw_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                             R"("b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})",
                             24),
                    "tensors 'a' [0, 16] and 'b' [8, 24] overlap");
  expect_open_error(raw_file(R"({"w":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}})", 4), "unknown dtype 'Q7'");
  expect_open_error(raw_file(R"({"w":{"dtype":"BOOL","shape":[1],"data_offsets":[0,1]}})", 1),
                    "dtype BOOL is not supported");
  expect_open_error(raw_file(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4), "non-negative");
  expect_open_error(raw_file(R"({"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", 4), "non-negative");
  expect_open_error(raw_file(R"({"w":{"dtype":"F32","shape":"1","data_offsets":[0,4]}})", 4), "'shape'");
  expect_open_error(raw_file(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", 4), "'dtype'");
  expect_open_error(raw_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", 4), "data_offsets");
  expect_open_error(raw_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,-4]}})", 4), "data_offsets");
  expect_open_error(raw_file(R"({"w":[1,2]})", 4), "tensor 'w': entry is not a JSON object");
  expect_open_error(raw_file(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,4]}})", 4),
                    "overflows");
  expect_open_error(raw_file(R"({"__metadata__":{"format":1}})", 0), "__metadata__");
}

// An empty tensor whose leading dimensions multiply past int64 would overflow numel() on the way
// to 0; one with its 0 first multiplies to 0 at every step and is fine.
TEST(Safetensors, EmptyTensorWithOverflowingLeadingDimsIsRefused) {
  expect_open_error(raw_file(R"({"w":{"dtype":"F32","shape":[3,4611686018427387904,0],"data_offsets":[0,0]}})", 0),
                    "overflows");
  TempDir dir;
  const std::string path = dir.file("x.safetensors");
  write_file(path, raw_file(R"({"w":{"dtype":"F32","shape":[0,4611686018427387904,3],"data_offsets":[0,0]}})", 0));
  auto f = SafetensorsFile::open(path);
  ASSERT_TRUE(f.is_ok()) << f.status().to_string();
  EXPECT_EQ((*f)->find("w")->numel(), 0);
}

TEST(Safetensors, MetadataAndEmptyHeaderAccepted) {
  TempDir dir;
  const std::string path = dir.file("x.safetensors");
  write_file(path, raw_file(R"({"__metadata__":{"format":"pt"},"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}   )", 4));
  auto f = SafetensorsFile::open(path);
  ASSERT_TRUE(f.is_ok()) << f.status().to_string();
  EXPECT_EQ((*f)->tensors().size(), 1u);
  EXPECT_NE((*f)->find("w"), nullptr);
  write_file(path, raw_file("{}", 0));
  EXPECT_TRUE(SafetensorsFile::open(path).is_ok());
}

TEST(Safetensors, MissingFilesAndDirectories) {
  TempDir dir;
  auto missing = SafetensorsFile::open(dir.file("nope.safetensors"));
  EXPECT_EQ(missing.status().code(), StatusCode::not_found);
  EXPECT_NE(missing.status().message().find("nope.safetensors"), std::string::npos);
  auto empty_dir = Checkpoint::open_dir(dir.path());
  EXPECT_EQ(empty_dir.status().code(), StatusCode::not_found);
  EXPECT_NE(empty_dir.status().message().find(dir.path()), std::string::npos);
  EXPECT_EQ(Checkpoint::open_dir(dir.file("no-such-dir")).status().code(), StatusCode::not_found);
  fs::create_directory(dir.file("model.safetensors"));  // a directory where the file should be
  EXPECT_FALSE(Checkpoint::open_dir(dir.path()).is_ok());
}

// Two shards + index; returns the directory's index path.
void write_sharded(const TempDir& dir, const std::string& index_json) {
  ASSERT_TRUE(write_safetensors(dir.file("model-00001-of-00002.safetensors"),
                                {{"transformer.wte.weight", DType::f32, {4, 3}, f32_bytes(iota(12))},
                                 {"transformer.h.0.ln_1.weight", DType::f32, {3}, f32_bytes(iota(3, 100))}})
                  .is_ok());
  ASSERT_TRUE(write_safetensors(dir.file("model-00002-of-00002.safetensors"),
                                {{"transformer.h.1.ln_1.weight", DType::f32, {3}, f32_bytes(iota(3, 200))}})
                  .is_ok());
  write_file(dir.file("model.safetensors.index.json"), index_json);
}

const std::string kGoodIndex = R"({"metadata": {"total_size": 72}, "weight_map": {
  "transformer.wte.weight": "model-00001-of-00002.safetensors",
  "transformer.h.0.ln_1.weight": "model-00001-of-00002.safetensors",
  "transformer.h.1.ln_1.weight": "model-00002-of-00002.safetensors"}})";

TEST(Safetensors, ShardedCheckpoint) {
  TempDir dir;
  write_sharded(dir, kGoodIndex);
  auto ck = Checkpoint::open_dir(dir.path());
  ASSERT_TRUE(ck.is_ok()) << ck.status().to_string();
  EXPECT_EQ((*ck)->files().size(), 2u);
  std::vector<float> out(3);
  ASSERT_TRUE((*ck)->read_f32("h.1.ln_1.weight", 0, 1, 0, 3, out.data()).is_ok());
  EXPECT_EQ(out, (std::vector<float>{200, 201, 202}));
  ASSERT_TRUE((*ck)->read_f32("wte.weight", 2, 4, 1, 2, out.data()).is_ok());
  EXPECT_EQ(out[0], 7.0f);
  EXPECT_EQ(out[1], 10.0f);
  const SafetensorsFile* file = nullptr;
  ASSERT_NE((*ck)->find("transformer.h.1.ln_1.weight", &file), nullptr);
  EXPECT_EQ(file->path(), dir.file("model-00002-of-00002.safetensors"));
}

void expect_index_error(const std::string& index_json, const std::string& needle) {
  TempDir dir;
  write_sharded(dir, index_json);
  auto ck = Checkpoint::open_dir(dir.path());
  ASSERT_FALSE(ck.is_ok()) << needle;
  EXPECT_NE(ck.status().message().find(needle), std::string::npos) << ck.status().message();
}

TEST(Safetensors, BadShardedIndexes) {
  expect_index_error(R"({"weight_map": {"transformer.wte.weight": "model-00003-of-00002.safetensors"}})",
                     "model-00003-of-00002.safetensors: cannot open");
  expect_index_error(R"({"weight_map": {"transformer.wte.weight": "../model-00001-of-00002.safetensors"}})",
                     "must be a plain file name");
  expect_index_error(R"({"weight_map": {"transformer.wte.weight": "/etc/passwd"}})", "must be a plain file name");
  expect_index_error(R"({"weight_map": {"transformer.wte.weight": ".."}})", "must be a plain file name");
  expect_index_error(R"({"weight_map": {"transformer.wpe.weight": "model-00001-of-00002.safetensors"}})",
                     "tensor 'transformer.wpe.weight' is mapped to");
  expect_index_error(R"({"weight_map": {"transformer.wte.weight": 3}})", "not a string");
  expect_index_error(R"({"weight_map": {}})", "empty");
  expect_index_error(R"({"metadata": {}})", "weight_map");
  expect_index_error("{not json", "model.safetensors.index.json: not valid JSON");
}

// Random corruption of a valid file: every variant opens or fails cleanly, and whatever opens reads
// in bounds.
TEST(Safetensors, FuzzedHeadersNeverCrash) {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  ASSERT_TRUE(write_safetensors(path, {{"a", DType::f32, {2, 3}, f32_bytes(iota(6))},
                                       {"b", DType::bf16, {4}, std::string(8, '\x3f')}})
                  .is_ok());
  std::ifstream in(path, std::ios::binary);
  const std::string good((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::mt19937 rng(42);
  int opened = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string bytes = good;
    if (iter < static_cast<int>(good.size())) {
      bytes.resize(iter);  // every truncation
    } else {
      const int flips = 1 + static_cast<int>(rng() % 3);
      for (int k = 0; k < flips; ++k) bytes[rng() % bytes.size()] = static_cast<char>(rng() % 256);
    }
    write_file(path, bytes);
    auto f = SafetensorsFile::open(path);
    if (!f.is_ok()) {
      EXPECT_NE(f.status().message().find(path), std::string::npos) << f.status().message();
      continue;
    }
    ++opened;
    for (const auto& [name, info] : (*f)->tensors()) {
      std::vector<uint8_t> buf(info.nbytes());
      EXPECT_TRUE((*f)->read_bytes(name, 0, info.nbytes(), buf.data()).is_ok());
    }
  }
  EXPECT_GT(opened, 0);
}

}  // namespace
}  // namespace kvmesh
