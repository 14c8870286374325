// safetensors writing: the streaming SafetensorsWriter (header first, then bytes in order) and
// write_safetensors for tensors already in memory.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "common/safetensors.h"

namespace kvmesh {
namespace {

using ordered_json = nlohmann::ordered_json;

Result<uint64_t> tensor_nbytes(const TensorHeader& t) {
  uint64_t n = dtype_size(t.dtype);
  for (int64_t d : t.shape) {
    if (d < 0) return invalid_argument("tensor '" + t.name + "': negative dimension in shape");
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) {
      return invalid_argument("tensor '" + t.name + "': shape overflows");
    }
  }
  return n;
}

// The header JSON (data_offsets in the order given), padded with spaces to a multiple of 8 bytes.
Result<std::string> build_header(const std::vector<TensorHeader>& tensors,
                                 const std::map<std::string, std::string>& metadata, uint64_t* data_total) {
  ordered_json header = ordered_json::object();
  if (!metadata.empty()) {
    ordered_json meta = ordered_json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const TensorHeader& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__") return invalid_argument("bad tensor name '" + t.name + "'");
    if (!names.insert(t.name).second) return invalid_argument("tensor '" + t.name + "' appears twice");
    KVMESH_ASSIGN_OR_RETURN(uint64_t n, tensor_nbytes(t));
    ordered_json entry = ordered_json::object();
    entry["dtype"] = safetensors_dtype_name(t.dtype);
    entry["shape"] = t.shape;
    entry["data_offsets"] = {offset, offset + n};
    header[t.name] = std::move(entry);
    offset += n;
  }
  *data_total = offset;
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

}  // namespace

Result<std::unique_ptr<SafetensorsWriter>> SafetensorsWriter::create(
    const std::string& path, const std::vector<TensorHeader>& tensors,
    const std::map<std::string, std::string>& metadata) {
  uint64_t data_total = 0;
  auto header = build_header(tensors, metadata, &data_total);
  if (!header.is_ok()) return header.status().with_context(path);
  std::unique_ptr<SafetensorsWriter> w(new SafetensorsWriter());
  w->path_ = path;
  w->tmp_path_ = path + ".tmp";
  w->data_total_ = data_total;
  w->out_ = std::fopen(w->tmp_path_.c_str(), "wb");
  if (w->out_ == nullptr) return io_error(w->tmp_path_ + ": cannot create: " + std::strerror(errno));
  std::setvbuf(w->out_, nullptr, _IOFBF, 1 << 20);
  const uint64_t len = header->size();  // little-endian u64 (the reader asserts a little-endian host)
  if (std::fwrite(&len, 8, 1, w->out_) != 1 || std::fwrite(header->data(), 1, len, w->out_) != len) {
    return io_error(w->tmp_path_ + ": write failed: " + std::strerror(errno));
  }
  return w;
}

Status SafetensorsWriter::append(const void* bytes, uint64_t n) {
  if (out_ == nullptr) return internal_error(path_ + ": append after finish");
  if (n > data_total_ - data_written_) {
    return invalid_argument(path_ + ": " + std::to_string(data_written_ + n) + " data bytes written but the header holds " +
                            std::to_string(data_total_));
  }
  if (n > 0 && std::fwrite(bytes, 1, n, out_) != n) {
    return io_error(tmp_path_ + ": write failed: " + std::strerror(errno));
  }
  data_written_ += n;
  return Status::ok();
}

Status SafetensorsWriter::finish() {
  if (out_ == nullptr) return internal_error(path_ + ": finish called twice");
  if (data_written_ != data_total_) {
    return invalid_argument(path_ + ": only " + std::to_string(data_written_) + " of " +
                            std::to_string(data_total_) + " data bytes were written");
  }
  const bool flushed = std::fflush(out_) == 0;
  const bool closed = std::fclose(out_) == 0;
  out_ = nullptr;
  if (!flushed || !closed) {
    std::remove(tmp_path_.c_str());
    return io_error(tmp_path_ + ": write failed: " + std::strerror(errno));
  }
  std::error_code ec;
  std::filesystem::rename(tmp_path_, path_, ec);
  if (ec) {
    std::remove(tmp_path_.c_str());
    return io_error(path_ + ": cannot rename from " + tmp_path_ + ": " + ec.message());
  }
  return Status::ok();
}

SafetensorsWriter::~SafetensorsWriter() {
  if (out_ != nullptr) {
    std::fclose(out_);
    std::remove(tmp_path_.c_str());
  }
}

Status write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors) {
  std::vector<TensorHeader> headers;
  headers.reserve(tensors.size());
  for (const TensorToWrite& t : tensors) {
    headers.push_back({t.name, t.dtype, t.shape});
    KVMESH_ASSIGN_OR_RETURN(uint64_t n, tensor_nbytes(headers.back()));
    if (n != t.bytes.size()) {
      return invalid_argument(path + ": tensor '" + t.name + "': " + std::to_string(t.bytes.size()) +
                              " bytes given but shape " + shape_string(t.shape.data(), static_cast<int>(t.shape.size())) +
                              " x " + safetensors_dtype_name(t.dtype) + " needs " + std::to_string(n));
    }
  }
  KVMESH_ASSIGN_OR_RETURN(auto writer, SafetensorsWriter::create(path, headers));
  for (const TensorToWrite& t : tensors) KVMESH_RETURN_IF_ERROR(writer->append(t.bytes.data(), t.bytes.size()));
  return writer->finish();
}

}  // namespace kvmesh
