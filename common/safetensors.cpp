// safetensors reading: mmap + header validation (SafetensorsFile), sharded checkpoints (Checkpoint),
// and bounds-checked fp32 reads of row/column blocks. Writing lives in safetensors_writer.cpp.
#include "common/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "common/file_read.h"

namespace kvmesh {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

static_assert(std::endian::native == std::endian::little, "safetensors reader assumes little-endian");

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // 100 MB, as the reference implementation
constexpr uint64_t kMaxIndexBytes = 100ull << 20;

bool parse_st_dtype(const std::string& s, DType* out) {
  static const std::pair<const char*, DType> kNames[] = {
      {"F32", DType::f32}, {"F16", DType::f16}, {"BF16", DType::bf16}, {"I8", DType::i8},
      {"I32", DType::i32}, {"I64", DType::i64}, {"U8", DType::u8}};
  for (const auto& [name, dtype] : kNames) {
    if (s == name) {
      *out = dtype;
      return true;
    }
  }
  return false;
}

bool is_known_unsupported_dtype(const std::string& s) {
  static const char* kNames[] = {"BOOL", "F64", "I16", "U16", "U32", "U64", "F8_E4M3", "F8_E5M2",
                                 "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "C64"};
  for (const char* name : kNames) {
    if (s == name) return true;
  }
  return false;
}

// A JSON value for an error message, shortened.
std::string brief(const json& v) {
  std::string s = v.dump();
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  return shape_string(shape.data(), static_cast<int>(shape.size()));
}

bool is_float_dtype(DType d) { return d == DType::f32 || d == DType::f16 || d == DType::bf16; }

// Parses one header entry: {"dtype": ..., "shape": [...], "data_offsets": [begin, end]}.
Result<TensorInfo> parse_entry(const std::string& where, const std::string& name, const json& v,
                               uint64_t data_size) {
  if (!v.is_object()) return data_loss(where + ": entry is not a JSON object: " + brief(v));
  TensorInfo info;
  info.name = name;
  auto dt = v.find("dtype");
  if (dt == v.end() || !dt->is_string()) return data_loss(where + ": missing or non-string 'dtype'");
  const std::string dtype = dt->get<std::string>();
  if (!parse_st_dtype(dtype, &info.dtype)) {
    if (is_known_unsupported_dtype(dtype)) {
      return invalid_argument(where + ": dtype " + dtype +
                              " is not supported (kvmesh reads F32, F16, BF16, I8, I32, I64, U8)");
    }
    return data_loss(where + ": unknown dtype '" + dtype + "'");
  }
  auto sh = v.find("shape");
  if (sh == v.end() || !sh->is_array()) return data_loss(where + ": missing or non-array 'shape'");
  uint64_t numel = 1;
  bool overflow = false;
  for (const json& d : *sh) {
    if (!d.is_number_unsigned() || d.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      return data_loss(where + ": shape must hold non-negative integers, got " + brief(*sh));
    }
    uint64_t dim = d.get<uint64_t>();
    info.shape.push_back(static_cast<int64_t>(dim));
    // Each partial product must fit int64 too: TensorInfo::numel() multiplies in this order.
    overflow = overflow || __builtin_mul_overflow(numel, dim, &numel) ||
               numel > static_cast<uint64_t>(INT64_MAX);
  }
  uint64_t need = 0;
  if (overflow || __builtin_mul_overflow(numel, dtype_size(info.dtype), &need) ||
      numel > static_cast<uint64_t>(INT64_MAX)) {
    return data_loss(where + ": shape " + shape_str(info.shape) + " x " + dtype + " overflows");
  }
  auto off = v.find("data_offsets");
  if (off == v.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
      !(*off)[1].is_number_unsigned()) {
    return data_loss(where + ": 'data_offsets' must be [begin, end] with non-negative integers");
  }
  info.begin = (*off)[0].get<uint64_t>();
  info.end = (*off)[1].get<uint64_t>();
  const std::string range = "[" + std::to_string(info.begin) + ", " + std::to_string(info.end) + "]";
  if (info.begin > info.end) return data_loss(where + ": data_offsets " + range + " has begin > end");
  if (info.end > data_size) {
    return data_loss(where + ": data_offsets " + range + " run past the data section (" +
                     std::to_string(data_size) + " bytes)");
  }
  if (info.end - info.begin != need) {
    return data_loss(where + ": data_offsets " + range + " hold " + std::to_string(info.end - info.begin) +
                     " bytes but shape " + shape_str(info.shape) + " x " + dtype + " needs " +
                     std::to_string(need));
  }
  return info;
}

}  // namespace

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

const char* safetensors_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32: return "F32";
    case DType::f16: return "F16";
    case DType::bf16: return "BF16";
    case DType::i8: return "I8";
    case DType::i32: return "I32";
    case DType::i64: return "I64";
    case DType::u8: return "U8";
  }
  return "?";
}

// ---- SafetensorsFile ---------------------------------------------------------------------------

Result<std::unique_ptr<SafetensorsFile>> SafetensorsFile::open(const std::string& path) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  // Without blocking: a FIFO with no writer would hold open() forever (fstat refuses it next).
  f->fd_ = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (f->fd_ < 0) return file_open_error(path, errno);
  struct stat st {};
  if (::fstat(f->fd_, &st) != 0) return io_error(path + ": fstat failed: " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return file_open_error(path, 0);
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    return data_loss(path + ": file is " + std::to_string(size) +
                     " bytes, too short for a safetensors header length (8 bytes)");
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, f->fd_, 0);
  if (map == MAP_FAILED) return io_error(path + ": mmap failed: " + std::strerror(errno));
  f->map_ = static_cast<const uint8_t*>(map);
  f->map_size_ = size;
  uint64_t header_len = 0;
  std::memcpy(&header_len, f->map_, 8);
  if (header_len > kMaxHeaderBytes) {
    return data_loss(path + ": header length " + std::to_string(header_len) +
                     " is over the 100 MB limit (corrupt or not a safetensors file)");
  }
  if (header_len > size - 8) {
    return data_loss(path + ": header length " + std::to_string(header_len) +
                     " runs past the end of the file (" + std::to_string(size) + " bytes; truncated?)");
  }
  f->data_offset_ = 8 + header_len;
  std::string header(reinterpret_cast<const char*>(f->map_ + 8), header_len);
  KVMESH_RETURN_IF_ERROR(f->parse_header(header));
  return f;
}

Status SafetensorsFile::parse_header(const std::string& header) {
  size_t first = header.find_first_not_of(" \t\r\n");
  if (first == std::string::npos || header[first] != '{') {
    return data_loss(path_ + ": header is not a JSON object (does not start with '{')");
  }
  json j;
  try {
    j = json::parse(header);
  } catch (const json::exception& e) {
    return data_loss(path_ + ": header is not valid JSON: " + e.what());
  }
  if (!j.is_object()) return data_loss(path_ + ": header is not a JSON object");
  const uint64_t data_size = map_size_ - data_offset_;
  for (const auto& [name, v] : j.items()) {
    if (name == "__metadata__") {
      bool ok = v.is_object();
      for (const auto& m : v.items()) ok = ok && m.value().is_string();
      if (!ok) return data_loss(path_ + ": __metadata__ must be an object of strings");
      continue;
    }
    KVMESH_ASSIGN_OR_RETURN(TensorInfo info,
                            parse_entry(path_ + ": tensor '" + name + "'", name, v, data_size));
    tensors_.emplace(name, std::move(info));
  }
  std::vector<const TensorInfo*> ranges;
  for (const auto& [name, info] : tensors_) {
    if (info.end > info.begin) ranges.push_back(&info);
  }
  std::sort(ranges.begin(), ranges.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < ranges.size(); ++i) {
    const TensorInfo* a = ranges[i - 1];
    const TensorInfo* b = ranges[i];
    if (b->begin < a->end) {
      return data_loss(path_ + ": tensors '" + a->name + "' [" + std::to_string(a->begin) + ", " +
                       std::to_string(a->end) + "] and '" + b->name + "' [" + std::to_string(b->begin) +
                       ", " + std::to_string(b->end) + "] overlap");
    }
  }
  return Status::ok();
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(const_cast<uint8_t*>(map_), map_size_);
  if (fd_ >= 0) ::close(fd_);
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

const uint8_t* SafetensorsFile::data(const TensorInfo& info) const { return map_ + data_offset_ + info.begin; }

Status SafetensorsFile::read_bytes(const std::string& name, uint64_t offset, uint64_t n, void* dst) const {
  const TensorInfo* info = find(name);
  if (info == nullptr) return not_found(path_ + ": tensor '" + name + "' not found");
  const uint64_t size = info->nbytes();
  if (offset > size || n > size - offset) {
    return out_of_range(path_ + ": tensor '" + name + "': bytes [" + std::to_string(offset) + ", " +
                        std::to_string(offset) + " + " + std::to_string(n) + ") outside its " +
                        std::to_string(size) + " bytes");
  }
  if (n > 0) std::memcpy(dst, data(*info) + offset, n);
  bytes_read_.fetch_add(n, std::memory_order_relaxed);
  return Status::ok();
}

Status SafetensorsFile::read_f32_elems(const TensorInfo& info, uint64_t elem_begin, uint64_t n,
                                       float* dst) const {
  const std::string where = path_ + ": tensor '" + info.name + "'";
  if (find(info.name) != &info) return internal_error(where + ": TensorInfo is not from this file");
  if (!is_float_dtype(info.dtype)) {
    return invalid_argument(where + ": dtype " + safetensors_dtype_name(info.dtype) +
                            " cannot be read as fp32");
  }
  const uint64_t es = dtype_size(info.dtype);
  const uint64_t numel = info.nbytes() / es;
  if (elem_begin > numel || n > numel - elem_begin) {
    return out_of_range(where + ": elements [" + std::to_string(elem_begin) + ", +" + std::to_string(n) +
                        ") outside its " + std::to_string(numel));
  }
  if (n > 0) convert_to_f32(data(info) + elem_begin * es, info.dtype, dst, n);
  bytes_read_.fetch_add(n * es, std::memory_order_relaxed);
  // A NaN or infinite weight would make every output it reaches NaN: refuse it here, by name.
  uint32_t non_finite = 0;  // an all-ones exponent; an integer OR the compiler vectorises
  for (uint64_t i = 0; i < n; ++i) {
    uint32_t bits = 0;
    std::memcpy(&bits, &dst[i], sizeof(bits));
    non_finite |= (bits & 0x7f800000u) == 0x7f800000u ? 1u : 0u;
  }
  if (non_finite != 0) {
    uint64_t bad = 0;
    while (bad < n && std::isfinite(dst[bad])) ++bad;
    return invalid_argument(where + ": element " + std::to_string(elem_begin + bad) + " is " +
                            (std::isnan(dst[bad]) ? "NaN" : "infinite") + "; the checkpoint is damaged");
  }
  return Status::ok();
}

// ---- Checkpoint --------------------------------------------------------------------------------

Result<std::unique_ptr<Checkpoint>> Checkpoint::open_dir(const std::string& dir) {
  auto ck = std::make_unique<Checkpoint>();
  ck->dir_ = dir;
  std::error_code ec;
  // Anything at the path counts, even a dangling link: opening it names what is wrong with it.
  const auto present = [&ec](const fs::path& p) { return fs::symlink_status(p, ec).type() != fs::file_type::not_found; };
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";
  if (present(index)) {
    KVMESH_RETURN_IF_ERROR(ck->open_index(index.string()));
    return ck;
  }
  const fs::path single = fs::path(dir) / "model.safetensors";
  if (present(single)) {
    KVMESH_ASSIGN_OR_RETURN(auto file, SafetensorsFile::open(single.string()));
    ck->files_.push_back(std::move(file));
    KVMESH_RETURN_IF_ERROR(ck->register_tensors({}));
    return ck;
  }
  if (!fs::is_directory(dir, ec)) return not_found(dir + ": no such checkpoint directory");
  return not_found(dir + ": neither model.safetensors nor model.safetensors.index.json is there");
}

Result<std::unique_ptr<Checkpoint>> Checkpoint::open_file(const std::string& path) {
  auto ck = std::make_unique<Checkpoint>();
  ck->dir_ = fs::path(path).parent_path().string();
  KVMESH_ASSIGN_OR_RETURN(auto file, SafetensorsFile::open(path));
  ck->files_.push_back(std::move(file));
  KVMESH_RETURN_IF_ERROR(ck->register_tensors({}));
  return ck;
}

Status Checkpoint::open_index(const std::string& index_path) {
  KVMESH_ASSIGN_OR_RETURN(std::string text, read_regular_file(index_path, kMaxIndexBytes));
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    return data_loss(index_path + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) return data_loss(index_path + ": not a JSON object");
  auto wm = j.find("weight_map");
  if (wm == j.end() || !wm->is_object()) return data_loss(index_path + ": missing 'weight_map' object");
  if (wm->empty()) return data_loss(index_path + ": 'weight_map' is empty");
  std::map<std::string, std::string> index_map;  // tensor -> shard file name
  std::set<std::string> shards;
  for (const auto& [tensor, shard] : wm->items()) {
    if (!shard.is_string()) return data_loss(index_path + ": tensor '" + tensor + "': shard is not a string");
    std::string name = shard.get<std::string>();
    if (name.empty() || name.find('/') != std::string::npos || name.find('\\') != std::string::npos ||
        name.find("..") != std::string::npos || name.find('\0') != std::string::npos) {
      return invalid_argument(index_path + ": tensor '" + tensor + "': shard '" + name +
                              "' must be a plain file name inside " + dir_);
    }
    index_map.emplace(tensor, name);
    shards.insert(name);
  }
  std::map<std::string, const SafetensorsFile*> by_shard;
  for (const std::string& shard : shards) {
    KVMESH_ASSIGN_OR_RETURN(auto file, SafetensorsFile::open((fs::path(dir_) / shard).string()));
    by_shard[shard] = file.get();
    files_.push_back(std::move(file));
  }
  for (const auto& [tensor, shard] : index_map) {
    const SafetensorsFile* file = by_shard.at(shard);
    if (file->find(tensor) == nullptr) {
      return data_loss(index_path + ": tensor '" + tensor + "' is mapped to " + file->path() +
                       ", which does not contain it");
    }
    owner_[tensor] = file;
  }
  return register_tensors(index_map);
}

Status Checkpoint::register_tensors(const std::map<std::string, std::string>& index_map) {
  for (const auto& file : files_) {
    for (const auto& [name, info] : file->tensors()) {
      if (index_map.count(name) != 0) continue;
      auto [it, inserted] = owner_.emplace(name, file.get());
      if (!inserted && it->second != file.get()) {
        return data_loss(dir_ + ": tensor '" + name + "' is in both " + it->second->path() + " and " +
                         file->path());
      }
    }
  }
  return Status::ok();
}

const TensorInfo* Checkpoint::find(const std::string& name, const SafetensorsFile** file) const {
  static const std::string kPrefix = "transformer.";
  std::vector<std::string> candidates = {name, kPrefix + name};
  if (name.rfind(kPrefix, 0) == 0) candidates.push_back(name.substr(kPrefix.size()));
  for (const std::string& c : candidates) {
    auto it = owner_.find(c);
    if (it == owner_.end()) continue;
    if (file != nullptr) *file = it->second;
    return it->second->find(c);
  }
  return nullptr;
}

Status Checkpoint::read_f32(const std::string& name, int64_t row_begin, int64_t row_end, int64_t col_begin,
                            int64_t col_end, float* dst) const {
  const SafetensorsFile* file = nullptr;
  const TensorInfo* info = find(name, &file);
  if (info == nullptr) return not_found(dir_ + ": tensor '" + name + "' not found in the checkpoint");
  const std::string where = file->path() + ": tensor '" + info->name + "'";
  int64_t rows = 0;
  int64_t cols = 0;
  if (info->shape.size() == 1) {
    rows = 1;
    cols = info->shape[0];
  } else if (info->shape.size() == 2) {
    rows = info->shape[0];
    cols = info->shape[1];
  } else {
    return invalid_argument(where + ": read_f32 needs a 1-D or 2-D tensor, shape is " + shape_str(info->shape));
  }
  if (row_begin < 0 || row_begin > row_end || row_end > rows || col_begin < 0 || col_begin > col_end ||
      col_end > cols) {
    return out_of_range(where + ": block rows [" + std::to_string(row_begin) + ", " + std::to_string(row_end) +
                        ") x columns [" + std::to_string(col_begin) + ", " + std::to_string(col_end) +
                        ") is outside shape " + shape_str(info->shape));
  }
  const int64_t width = col_end - col_begin;
  if (width == cols) {  // whole rows: one contiguous range
    return file->read_f32_elems(*info, static_cast<uint64_t>(row_begin * cols),
                                static_cast<uint64_t>((row_end - row_begin) * cols), dst);
  }
  for (int64_t r = row_begin; r < row_end; ++r) {
    KVMESH_RETURN_IF_ERROR(file->read_f32_elems(*info, static_cast<uint64_t>(r * cols + col_begin),
                                                static_cast<uint64_t>(width), dst + (r - row_begin) * width));
  }
  return Status::ok();
}

Result<std::vector<int64_t>> Checkpoint::shape(const std::string& name) const {
  const TensorInfo* info = find(name, nullptr);
  if (info == nullptr) return not_found(dir_ + ": tensor '" + name + "' not found in the checkpoint");
  return info->shape;
}

uint64_t Checkpoint::bytes_read() const {
  uint64_t n = 0;
  for (const auto& f : files_) n += f->bytes_read();
  return n;
}

std::vector<std::string> Checkpoint::tensor_names() const {
  std::vector<std::string> names;
  names.reserve(owner_.size());
  for (const auto& [name, file] : owner_) names.push_back(name);
  return names;
}

}  // namespace kvmesh
