// DiskStore: the disk tier of one rank: one preallocated file <dir>/kvmesh-kv-rank<R>.bin of
// fixed-size slots, each a self-checking header followed by one page. Nothing read back is trusted:
// every header field and the payload checksum are verified before a page counts as loaded.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/status.h"
#include "common/hashing.h"
#include "common/step_executor.h"

namespace kvmesh {


// What makes a page on disk usable by this process: same model and checkpoint, KV dtype, block
// size and TP x PP layout (hash over all of them), and the same rank.
struct DiskIdentity {
  uint64_t fingerprint = 0;
  int32_t rank = 0;
  int32_t tp = 1;
  int32_t pp = 1;
};

// The model fingerprint: model config fields, checkpoint identity (canonical path, config.json and
// model.safetensors.index.json contents, every *.safetensors file's name and size; or the
// synthetic name and seed), KV dtype, block size, TP and PP.
uint64_t kv_model_fingerprint(const std::string& model, uint64_t synthetic_seed,
                              const ModelConfig& config, const CacheConfig& cache, int tp, int pp);

struct DiskStoreOptions {
  std::string dir;          // created (0700) when missing
  int32_t n_slots = 0;      // the file holds n_slots * slot_bytes(page_bytes) bytes
  int64_t page_bytes = 0;
  DiskIdentity identity;
  bool persist = false;     // keep the existing file (scan() rebuilds the index); else truncate
};

using DiskPage = TierCapacity::RecoveredPage;  // (slot, page hash, tokens)

class DiskStore {
 public:
  static constexpr int64_t kHeaderBytes = 128;
  static constexpr int64_t kSlotAlign = 4096;
  // Bytes of one slot in the file: header + page, rounded up to 4 KiB.
  static int64_t slot_bytes(int64_t page_bytes);
  // Slots a byte budget holds.
  static int32_t budget_slots(int64_t disk_bytes, int64_t page_bytes);
  // <dir>/kvmesh-kv-rank<R>.bin: the name depends on the rank only.
  static std::string file_path(const std::string& dir, int32_t rank);

  // Opens (O_NOFOLLOW: a symlink is refused) and preallocates the file. A filesystem with less
  // room than the budget is not an error: the file is sized sparse and writes may fail later.
  static Result<std::unique_ptr<DiskStore>> open(const DiskStoreOptions& options);
  ~DiskStore();
  DiskStore(const DiskStore&) = delete;
  DiskStore& operator=(const DiskStore&) = delete;

  // Writes one page (page_bytes) with its header in a single positioned write. io_error on a
  // write failure (ENOSPC, EIO): the slot then holds no valid page.
  Status store(int32_t slot, uint64_t page_hash, int32_t n_tokens, const void* page);
  // Reads one page into `page` and verifies it: data_loss when any header field or the checksum
  // does not match (then `page` holds garbage), io_error on a read failure.
  Status load(int32_t slot, uint64_t page_hash, int32_t n_tokens, void* page) const;
  // Overwrites a slot's header so no scan or load accepts it again (best effort).
  void invalidate(int32_t slot);
  // Slots whose header is intact and matches this identity (payloads are checked on load).
  std::vector<DiskPage> scan() const;

  int32_t n_slots() const { return n_slots_; }
  int64_t page_bytes() const { return page_bytes_; }
  const std::string& path() const { return path_; }
  // False when the filesystem could not reserve the whole file (writes may hit ENOSPC).
  bool preallocated() const { return preallocated_; }

 private:
  DiskStore() = default;
  Status prepare_file(int64_t file_bytes);
  int64_t slot_offset(int32_t slot) const { return static_cast<int64_t>(slot) * slot_bytes_; }

  int fd_ = -1;
  std::string path_;
  DiskIdentity identity_;
  int32_t n_slots_ = 0;
  int64_t page_bytes_ = 0;
  int64_t slot_bytes_ = 0;
  bool persist_ = false;
  bool preallocated_ = false;
};

// One slot's header: these fields little-endian at fixed offsets in DiskStore::kHeaderBytes bytes
// (zeros after them), the last 8 bytes a hash of the rest.
constexpr uint64_t kDiskSlotMagic = 0x544f4c53564b4d4bull;  // "KMKVSLOT"
constexpr uint32_t kDiskSlotVersion = 1;
struct DiskSlotHeader {
  uint64_t magic = kDiskSlotMagic;
  uint32_t version = kDiskSlotVersion;
  uint32_t header_bytes = DiskStore::kHeaderBytes;
  uint64_t fingerprint = 0;
  int32_t rank = 0, tp = 0, pp = 0, slot = 0;
  uint64_t page_hash = 0;
  int32_t n_tokens = 0;
  uint32_t reserved = 0;
  uint64_t payload_bytes = 0;
  uint64_t payload_checksum = 0;
};
// Writes DiskStore::kHeaderBytes bytes to out.
void encode_slot_header(const DiskSlotHeader& h, uint8_t* out);
// Reads DiskStore::kHeaderBytes bytes: data_loss unless the magic, the header's own hash, the
// version and the size match; then fills *h.
Status decode_slot_header(const uint8_t* in, DiskSlotHeader* h);
// Whether a decoded header belongs to this identity, slot and page size (data_loss if not).
Status check_slot_identity(const DiskSlotHeader& h, const DiskIdentity& id, int32_t slot,
                           int64_t page_bytes);

}  // namespace kvmesh
