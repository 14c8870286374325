// Memory-mapped safetensors reader (single file or sharded index) with full header validation.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"

namespace kvmesh {

struct TensorInfo {
  std::string name;
  DType dtype = DType::f32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offset inside the data section
  uint64_t end = 0;    // one past the last byte
  int64_t numel() const;
  uint64_t nbytes() const { return end - begin; }
};

// The dtype spelling of safetensors headers ("F32", "BF16", ...).
const char* safetensors_dtype_name(DType dtype);

// One .safetensors file, memory-mapped read-only. Every offset is validated at open.
class SafetensorsFile {
 public:
  static Result<std::unique_ptr<SafetensorsFile>> open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(const std::string& name) const;
  // Pointer to a tensor's bytes inside the mapping (valid while this object lives).
  const uint8_t* data(const TensorInfo& info) const;
  // Copies bytes [offset, offset + n) of one tensor's data into dst.
  Status read_bytes(const std::string& name, uint64_t offset, uint64_t n, void* dst) const;
  // Converts elements [elem_begin, elem_begin + n) of an F32/F16/BF16 tensor to fp32 into dst.
  Status read_f32_elems(const TensorInfo& info, uint64_t elem_begin, uint64_t n, float* dst) const;
  uint64_t bytes_read() const { return bytes_read_.load(std::memory_order_relaxed); }

 private:
  SafetensorsFile() = default;
  Status parse_header(const std::string& header);
  std::string path_;
  int fd_ = -1;
  const uint8_t* map_ = nullptr;
  uint64_t map_size_ = 0;
  uint64_t data_offset_ = 0;  // 8 + header length
  std::map<std::string, TensorInfo> tensors_;
  mutable std::atomic<uint64_t> bytes_read_{0};
};

// A checkpoint: model.safetensors, or the shards listed in model.safetensors.index.json.
class Checkpoint {
 public:
  static Result<std::unique_ptr<Checkpoint>> open_dir(const std::string& dir);
  // Opens one .safetensors file as a checkpoint (dir() is its directory).
  static Result<std::unique_ptr<Checkpoint>> open_file(const std::string& path);

  // Finds a tensor by name, trying the name as given, with "transformer." prefixed and stripped.
  const TensorInfo* find(const std::string& name, const SafetensorsFile** file) const;
  // Reads rows [row_begin, row_end) x columns [col_begin, col_end) of a 1-D or 2-D tensor as fp32
  // into dst (row-major, (row_end-row_begin) x (col_end-col_begin)); a 1-D tensor is one row.
  // Reads only the byte ranges it needs. Errors name the file and tensor.
  Status read_f32(const std::string& name, int64_t row_begin, int64_t row_end, int64_t col_begin,
                  int64_t col_end, float* dst) const;
  // The shape of a tensor (error when missing).
  Result<std::vector<int64_t>> shape(const std::string& name) const;
  uint64_t bytes_read() const;
  const std::string& dir() const { return dir_; }
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }
  // Every tensor name across all files, sorted.
  std::vector<std::string> tensor_names() const;

 private:
  Status open_index(const std::string& index_path);
  // Maps each tensor of files_ to its file; names the index already placed are skipped.
  Status register_tensors(const std::map<std::string, std::string>& index_map);
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SafetensorsFile*> owner_;  // tensor name -> the file holding it
};

// Writes tensors to a .safetensors file (used by kvmesh-ckpt and tests).
struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::string bytes;  // raw little-endian data, numel * dtype_size bytes
};
Status write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors);

// Streaming writer: the header is written at create(), then the tensors' bytes in header order
// (any chunking), so a large checkpoint never sits in memory. Writes "<path>.tmp" and renames it
// to path at finish(); without finish() the temporary file is removed.
struct TensorHeader {
  std::string name;
  DType dtype = DType::f32;
  std::vector<int64_t> shape;
};
class SafetensorsWriter {
 public:
  static Result<std::unique_ptr<SafetensorsWriter>> create(
      const std::string& path, const std::vector<TensorHeader>& tensors,
      const std::map<std::string, std::string>& metadata = {});
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  Status append(const void* bytes, uint64_t n);
  Status finish();
  uint64_t data_bytes() const { return data_total_; }

 private:
  SafetensorsWriter() = default;
  std::string path_;
  std::string tmp_path_;
  std::FILE* out_ = nullptr;
  uint64_t data_total_ = 0;    // bytes the header promises
  uint64_t data_written_ = 0;
};

}  // namespace kvmesh
