// Fuzzes the KV disk tier's slot header (decode_slot_header, check_slot_identity) and DiskStore's
// scan and load, which must accept exactly the slots those accept. Input: a mode byte (bit 0: fix
// the header's own hash; bit 1: slot 0 or 1), then the 128 header bytes and the page, zero-padded.
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "fuzz_check.h"
#include "worker/disk_store.h"

namespace kvmesh {
namespace {

constexpr int64_t kPageBytes = 64;
constexpr int32_t kSlots = 2;
const DiskIdentity kIdentity{0x1234abcd5678ef90ull, 0, 2, 1};

// A store in a fresh temporary directory (removed at exit) and a second descriptor to write it.
struct FuzzStore {
  std::string dir;
  std::unique_ptr<DiskStore> store;
  int fd = -1;

  FuzzStore() {
    std::string pattern = (std::filesystem::temp_directory_path() / "kvmesh-disk-slot-fuzz-XXXXXX").string();
    FUZZ_CHECK(::mkdtemp(pattern.data()) != nullptr);
    dir = pattern;
    DiskStoreOptions o;
    o.dir = dir;
    o.n_slots = kSlots;
    o.page_bytes = kPageBytes;
    o.identity = kIdentity;
    auto opened = DiskStore::open(o);
    FUZZ_CHECK(opened.is_ok());
    store = std::move(opened).value();
    fd = ::open(store->path().c_str(), O_WRONLY | O_CLOEXEC);
    FUZZ_CHECK(fd >= 0);
  }
  ~FuzzStore() {
    ::close(fd);
    store.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

FuzzStore& fuzz_store() {
  static FuzzStore s;
  return s;
}

// The header's own checks against what the decoded fields say; true when the slot is usable.
bool header_accepted(const uint8_t* header, int32_t slot, DiskSlotHeader* h) {
  if (!decode_slot_header(header, h).is_ok()) return false;
  FUZZ_CHECK(h->magic == kDiskSlotMagic && h->version == kDiskSlotVersion);
  FUZZ_CHECK(h->header_bytes == DiskStore::kHeaderBytes);
  uint8_t again[DiskStore::kHeaderBytes];
  encode_slot_header(*h, again);
  FUZZ_CHECK(std::memcmp(again, header, 72) == 0);  // the fields; zeros follow them when written
  DiskSlotHeader h2;
  FUZZ_CHECK(decode_slot_header(again, &h2).is_ok());
  FUZZ_CHECK(std::memcmp(&h2, h, sizeof h2) == 0);
  if (!check_slot_identity(*h, kIdentity, slot, kPageBytes).is_ok()) return false;
  FUZZ_CHECK(h->fingerprint == kIdentity.fingerprint && h->rank == kIdentity.rank && h->slot == slot);
  FUZZ_CHECK(h->payload_bytes == static_cast<uint64_t>(kPageBytes) && h->n_tokens >= 0);
  return true;
}

}  // namespace
}  // namespace kvmesh

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kvmesh;
  if (size == 0) return 0;
  std::vector<uint8_t> bytes(DiskStore::kHeaderBytes + kPageBytes, 0);
  std::memcpy(bytes.data(), data + 1, std::min(size - 1, bytes.size()));
  uint8_t* header = bytes.data();
  const uint8_t* page = header + DiskStore::kHeaderBytes;
  constexpr int64_t kHashAt = DiskStore::kHeaderBytes - 8;
  if (data[0] & 1) {
    const uint64_t self = hash64(header, kHashAt);
    std::memcpy(header + kHashAt, &self, 8);
  }
  const int32_t slot = (data[0] >> 1) & 1;

  DiskSlotHeader h;
  const bool accepted = header_accepted(header, slot, &h);
  FuzzStore& s = fuzz_store();
  const off_t at = static_cast<off_t>(slot) * DiskStore::slot_bytes(kPageBytes);
  FUZZ_CHECK(::pwrite(s.fd, bytes.data(), bytes.size(), at) == static_cast<ssize_t>(bytes.size()));

  bool scanned = false;
  for (const DiskPage& p : s.store->scan()) {
    if (p.slot != slot) continue;
    scanned = true;
    FUZZ_CHECK(accepted && p.page_hash == h.page_hash && p.n_tokens == h.n_tokens);
  }
  FUZZ_CHECK(scanned == accepted);
  std::vector<uint8_t> loaded(kPageBytes);
  const Status load = s.store->load(slot, h.page_hash, h.n_tokens, loaded.data());
  const bool payload_ok = h.payload_checksum == hash64(page, kPageBytes);
  FUZZ_CHECK(load.is_ok() == (accepted && payload_ok));
  if (load.is_ok()) FUZZ_CHECK(std::memcmp(loaded.data(), page, kPageBytes) == 0);
  if (!load.is_ok()) FUZZ_CHECK(load.code() == StatusCode::data_loss);
  s.store->invalidate(slot);
  return 0;
}
