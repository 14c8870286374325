// Input files that are not regular files (a FIFO with no writer, a device, a dangling link) are
// refused with an error naming the path, before any read: read_regular_file itself, and the model
// files that go through it or check the same (config.json, model.safetensors, the shard index,
// the tokenizer files). A FIFO would otherwise hold open() forever, and /dev/zero would be read
// until memory runs out.
#include "common/file_read.h"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <string>

#include "common/config.h"
#include "common/data_dir.h"
#include "common/safetensors.h"
#include "common/tokenizer.h"
#include "temp_dir.h"

namespace kvmesh {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// Runs `open_it` on a path that is a FIFO with no writer. Should it block in open() anyway, the
// FIFO is opened for writing after 10 s so the reader sees an empty file, and the test fails.
Status without_blocking(const std::string& fifo, const std::function<Status()>& open_it) {
  auto result = std::async(std::launch::async, open_it);
  if (result.wait_for(std::chrono::seconds(10)) == std::future_status::ready) return result.get();
  const int writer = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
  if (writer >= 0) ::close(writer);
  ADD_FAILURE() << fifo << ": opening it blocked for 10 s";
  return result.get();
}

void expect_refused(const Status& s, const std::string& path, const std::string& reason) {
  EXPECT_FALSE(s.is_ok()) << path;
  EXPECT_NE(s.message().find(path), std::string::npos) << s.to_string();
  EXPECT_NE(s.message().find(reason), std::string::npos) << s.to_string();
}

TEST(ReadRegularFile, ReadsAFileWhole) {
  TempDir dir;
  const std::string path = dir.path() + "/a.json";
  write_text(path, std::string("{\"a\": 1}\n\0tail", 14));
  auto text = read_regular_file(path, 14);
  ASSERT_TRUE(text.is_ok()) << text.status().to_string();
  EXPECT_EQ(*text, std::string("{\"a\": 1}\n\0tail", 14));
  write_text(path, "");
  EXPECT_EQ(read_regular_file(path, 0).value(), "");
}

TEST(ReadRegularFile, RefusesWhatIsNotASmallRegularFile) {
  TempDir dir;
  const std::string missing = dir.path() + "/missing.json";
  EXPECT_EQ(read_regular_file(missing, 100).status().code(), StatusCode::not_found);
  expect_refused(read_regular_file(dir.path(), 100).status(), dir.path(), "is a directory");
  const std::string big = dir.path() + "/big.json";
  write_text(big, std::string(101, 'x'));
  auto over = read_regular_file(big, 100);
  EXPECT_EQ(over.status().code(), StatusCode::invalid_argument);
  expect_refused(over.status(), big, "101 bytes, over the limit of 100");
  const std::string fifo = dir.path() + "/fifo.json";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const Status from_fifo = without_blocking(fifo, [&] { return read_regular_file(fifo, 100).status(); });
  EXPECT_EQ(from_fifo.code(), StatusCode::invalid_argument);
  expect_refused(from_fifo, fifo, "not a regular file");
  const std::string device = dir.path() + "/zero.json";
  fs::create_symlink("/dev/zero", device);
  expect_refused(read_regular_file(device, 100).status(), device, "not a regular file");
  const std::string dangling = dir.path() + "/dangling.json";
  fs::create_symlink(dir.path() + "/gone.json", dangling);
  EXPECT_EQ(read_regular_file(dangling, 100).status().code(), StatusCode::not_found);
}

TEST(ModelFilesThatAreNotRegularFiles, AreRefusedWithoutBlocking) {
  TempDir dir;
  const std::string config = dir.path() + "/config.json", weights = dir.path() + "/model.safetensors",
                    index = dir.path() + "/model.safetensors.index.json";
  for (const std::string& path : {config, weights, index}) ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0) << path;
  expect_refused(without_blocking(config, [&] { return load_model_config(config).status(); }), config,
                 "not a regular file");
  expect_refused(without_blocking(weights, [&] { return SafetensorsFile::open(weights).status(); }), weights,
                 "not a regular file");
  expect_refused(without_blocking(index, [&] { return Checkpoint::open_dir(dir.path()).status(); }), index,
                 "not a regular file");
}

// The error names what is there instead of the weights: a dangling or looping link, a directory.
TEST(ModelFilesThatAreNotRegularFiles, WeightsThatAreLinksOrDirectoriesAreNamed) {
  {
    TempDir dir;
    const std::string weights = dir.path() + "/model.safetensors";
    fs::create_symlink(dir.path() + "/blobs/abc", weights);
    const Status s = Checkpoint::open_dir(dir.path()).status();
    EXPECT_EQ(s.code(), StatusCode::not_found);
    expect_refused(s, weights, "is a dangling symbolic link (to '" + dir.path() + "/blobs/abc')");
  }
  {
    TempDir dir;
    const std::string weights = dir.path() + "/model.safetensors", other = dir.path() + "/other";
    fs::create_symlink(other, weights);
    fs::create_symlink(weights, other);
    expect_refused(Checkpoint::open_dir(dir.path()).status(), weights, "is a symbolic link loop");
  }
  {
    TempDir dir;
    const std::string weights = dir.path() + "/model.safetensors";
    fs::create_directory(weights);
    expect_refused(Checkpoint::open_dir(dir.path()).status(), weights, "is a directory, not a regular file");
    const std::string index = dir.path() + "/model.safetensors.index.json";
    fs::create_symlink(index, index);  // a link to itself
    expect_refused(Checkpoint::open_dir(dir.path()).status(), index, "is a symbolic link loop");
  }
  TempDir dir;
  const std::string fifo = dir.path() + "/f";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_EQ(non_regular_kind(fifo), "a FIFO");
  EXPECT_EQ(non_regular_kind("/dev/null"), "a character device");
  EXPECT_EQ(non_regular_kind(dir.path()), "a directory");
  EXPECT_EQ(non_regular_kind(dir.path() + "/none"), "");
}

TEST(ModelFilesThatAreNotRegularFiles, TokenizerFilesThereButUnusableAreErrorsNotAFallBack) {
  const std::string shipped = shipped_gpt2_tokenizer_dir();
  {
    TempDir dir;
    const std::string path = dir.path() + "/tokenizer.json";
    ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
    expect_refused(without_blocking(path, [&] { return Tokenizer::from_model_dir(dir.path(), shipped).status(); }),
                   path, "not a regular file");
  }
  {
    TempDir dir;  // a link into a cache whose blob never arrived
    const std::string path = dir.path() + "/tokenizer.json";
    fs::create_symlink(dir.path() + "/blobs/0123", path);
    expect_refused(Tokenizer::from_model_dir(dir.path(), shipped).status(), path, "no such file");
  }
  {
    TempDir dir;  // half of a pair
    write_text(dir.path() + "/vocab.json", "{\"a\": 0}");
    expect_refused(Tokenizer::from_model_dir(dir.path(), shipped).status(), dir.path() + "/merges.txt",
                   "no such file");
  }
  {
    TempDir dir;  // none at all: GPT-2's
    auto fallback = Tokenizer::from_model_dir(dir.path(), shipped);
    ASSERT_TRUE(fallback.is_ok()) << fallback.status().to_string();
    EXPECT_EQ((*fallback)->vocab_size(), 50257);
  }
}

}  // namespace
}  // namespace kvmesh
