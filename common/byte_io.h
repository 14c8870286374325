// ByteWriter / ByteReader: little-endian encoding of plain values with bounds-checked reads,
// for messages between ranks and for on-disk headers.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace kvmesh {

class ByteWriter {
 public:
  template <typename T>
  void put(T value) {
    static_assert(std::is_trivially_copyable_v<T>);
    const size_t at = bytes_.size();
    bytes_.resize(at + sizeof(T));
    std::memcpy(bytes_.data() + at, &value, sizeof(T));
  }
  template <typename T>
  void put_vector(const std::vector<T>& values) {
    put<uint32_t>(static_cast<uint32_t>(values.size()));
    const size_t at = bytes_.size();
    bytes_.resize(at + values.size() * sizeof(T));
    if (!values.empty()) std::memcpy(bytes_.data() + at, values.data(), values.size() * sizeof(T));
  }
  std::string take() { return std::move(bytes_); }
  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

// Every read checks the remaining length; after a failed read ok() is false and values are zero.
class ByteReader {
 public:
  explicit ByteReader(std::string_view bytes) : bytes_(bytes) {}

  template <typename T>
  T get() {
    static_assert(std::is_trivially_copyable_v<T>);
    T value{};
    if (!ok_ || bytes_.size() - pos_ < sizeof(T)) {
      ok_ = false;
      return value;
    }
    std::memcpy(&value, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return value;
  }
  // Reads a length-prefixed vector of at most max_count elements.
  template <typename T>
  std::vector<T> get_vector(uint32_t max_count) {
    const uint32_t n = get<uint32_t>();
    std::vector<T> values;
    if (!ok_ || n > max_count || (bytes_.size() - pos_) / sizeof(T) < n) {
      ok_ = false;
      return values;
    }
    values.resize(n);
    if (n) std::memcpy(values.data(), bytes_.data() + pos_, n * sizeof(T));
    pos_ += n * sizeof(T);
    return values;
  }
  bool ok() const { return ok_; }
  bool at_end() const { return pos_ == bytes_.size(); }
  void fail() { ok_ = false; }

 private:
  std::string_view bytes_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace kvmesh
