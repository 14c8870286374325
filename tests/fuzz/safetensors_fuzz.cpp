// Fuzzes the safetensors reader (SafetensorsFile::open, every read, Checkpoint::open_file). Input:
// a mode byte, then the whole file (even) or header text, a 0 byte and the data section (odd: the
// 8-byte header length is written for it, so mutations reach the JSON checks).
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common/safetensors.h"
#include "fuzz_check.h"

namespace kvmesh {
namespace {

constexpr uint64_t kMaxReadElems = 1 << 16;

// The file bytes a fuzz input stands for.
std::string file_bytes(const uint8_t* data, size_t size) {
  std::string rest(reinterpret_cast<const char*>(data + 1), size - 1);
  if ((data[0] & 1) == 0) return rest;
  const size_t split = rest.find('\0');
  const std::string header = rest.substr(0, split);
  const std::string payload = split == std::string::npos ? "" : rest.substr(split + 1);
  const uint64_t n = header.size();
  std::string file(reinterpret_cast<const char*>(&n), 8);
  return file + header + payload;
}

// One in-memory file, rewritten for each input and opened by its /proc path.
const std::string& memory_file(const std::string& bytes) {
  static const int fd = ::memfd_create("safetensors_fuzz", MFD_CLOEXEC);
  static const std::string path = "/proc/self/fd/" + std::to_string(fd);
  FUZZ_CHECK(fd >= 0);
  FUZZ_CHECK(::ftruncate(fd, 0) == 0);
  FUZZ_CHECK(::pwrite(fd, bytes.data(), bytes.size(), 0) == static_cast<ssize_t>(bytes.size()));
  return path;
}

bool is_float(DType d) { return d == DType::f32 || d == DType::f16 || d == DType::bf16; }

// Every tensor lies inside the data section (the bytes after the 8-byte length and the header).
void read_every_tensor(const SafetensorsFile& file, const std::string& contents) {
  uint64_t header_len = 0;
  std::memcpy(&header_len, contents.data(), 8);
  const char* data = contents.data() + 8 + header_len;
  const uint64_t data_size = contents.size() - 8 - header_len;
  for (const auto& [name, info] : file.tensors()) {
    FUZZ_CHECK(info.begin <= info.end && info.end <= data_size);
    FUZZ_CHECK(static_cast<uint64_t>(info.numel()) * dtype_size(info.dtype) == info.nbytes());
    std::vector<uint8_t> bytes(info.nbytes());
    FUZZ_CHECK(file.read_bytes(name, 0, info.nbytes(), bytes.data()).is_ok());
    FUZZ_CHECK(bytes.empty() || std::memcmp(bytes.data(), data + info.begin, bytes.size()) == 0);
    FUZZ_CHECK(!file.read_bytes(name, info.nbytes(), 1, bytes.data()).is_ok());
    FUZZ_CHECK(!file.read_bytes(name, 1, UINT64_MAX, bytes.data()).is_ok());
    const uint64_t numel = static_cast<uint64_t>(info.numel());
    std::vector<float> elems(std::min(numel, kMaxReadElems));
    const Status read = file.read_f32_elems(info, 0, elems.size(), elems.data());
    FUZZ_CHECK(read.is_ok() || read.code() == StatusCode::invalid_argument);
    FUZZ_CHECK(read.is_ok() || !is_float(info.dtype) || !elems.empty());
    FUZZ_CHECK(!file.read_f32_elems(info, numel, 1, elems.data()).is_ok());
  }
}

void read_through_checkpoint(const std::string& path) {
  auto ck = Checkpoint::open_file(path);
  if (!ck.is_ok()) return;
  const Checkpoint& c = *ck.value();
  for (const std::string& name : c.tensor_names()) {
    auto shape = c.shape(name);
    FUZZ_CHECK(shape.is_ok());
    const std::vector<int64_t>& s = shape.value();
    if (s.empty() || s.size() > 2) continue;
    const int64_t rows = s.size() == 1 ? 1 : s[0];
    const int64_t cols = s.back();
    if (rows * cols > static_cast<int64_t>(kMaxReadElems)) continue;
    std::vector<float> block(static_cast<size_t>(rows * cols));
    (void)c.read_f32(name, 0, rows, 0, cols, block.data());
    if (cols > 1) (void)c.read_f32(name, 0, rows, 1, cols, block.data());
    if (rows < INT64_MAX) FUZZ_CHECK(!c.read_f32(name, 0, rows + 1, 0, cols, block.data()).is_ok());
    if (cols < INT64_MAX) FUZZ_CHECK(!c.read_f32(name, 0, rows, 0, cols + 1, block.data()).is_ok());
  }
}

}  // namespace
}  // namespace kvmesh

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kvmesh;
  if (size == 0) return 0;
  const std::string bytes = file_bytes(data, size);
  const std::string& path = memory_file(bytes);
  auto file = SafetensorsFile::open(path);
  if (file.is_ok()) read_every_tensor(*file.value(), bytes);
  read_through_checkpoint(path);
  return 0;
}
