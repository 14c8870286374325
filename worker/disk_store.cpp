// DiskStore: one preallocated file per rank of fixed-size slots (header + page), written with one
// positioned write per slot and verified field by field on every read; plus the hash (XXH64) used
// for payload checksums and the model fingerprint.
#include "worker/disk_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#include "common/file_read.h"
#include "common/synthetic_models.h"

namespace kvmesh {
namespace {

constexpr int64_t kHeaderChecksumAt = DiskStore::kHeaderBytes - 8;

std::string errno_text(int err) { return std::strerror(err); }

template <typename T>
void put_at(uint8_t* out, size_t at, T v) { std::memcpy(out + at, &v, sizeof(T)); }
template <typename T>
T get_at(const uint8_t* in, size_t at) {
  T v;
  std::memcpy(&v, in + at, sizeof(T));
  return v;
}

// Positioned vectored I/O until every byte moved; short transfers continue where they stopped.
Status io_all(int fd, iovec* iov, int n_iov, int64_t offset, bool write) {
  while (n_iov > 0) {
    const ssize_t n = write ? ::pwritev(fd, iov, n_iov, offset) : ::preadv(fd, iov, n_iov, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return io_error(std::string(write ? "write: " : "read: ") + errno_text(errno));
    if (n == 0) return write ? io_error("write: no progress") : data_loss("slot past the end of the file");
    offset += n;
    size_t left = static_cast<size_t>(n);
    while (n_iov > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      ++iov;
      --n_iov;
    }
    if (n_iov > 0) {
      iov->iov_base = static_cast<uint8_t*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
  return Status::ok();
}

// mkdir -p with mode 0700 for every component created.
Status make_dirs(const std::string& dir) {
  for (size_t at = 1; at <= dir.size(); ++at) {
    if (at != dir.size() && dir[at] != '/') continue;
    const std::string prefix = dir.substr(0, at);
    if (::mkdir(prefix.c_str(), 0700) != 0 && errno != EEXIST)
      return io_error("cannot create KV disk directory " + prefix + ": " + errno_text(errno));
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return invalid_argument("KV disk directory " + dir + " is not a directory");
  return Status::ok();
}

}  // namespace

// ---- slot headers ----

void encode_slot_header(const DiskSlotHeader& h, uint8_t* out) {
  std::memset(out, 0, DiskStore::kHeaderBytes);
  put_at(out, 0, h.magic);
  put_at(out, 8, h.version);
  put_at(out, 12, h.header_bytes);
  put_at(out, 16, h.fingerprint);
  put_at(out, 24, h.rank);
  put_at(out, 28, h.tp);
  put_at(out, 32, h.pp);
  put_at(out, 36, h.slot);
  put_at(out, 40, h.page_hash);
  put_at(out, 48, h.n_tokens);
  put_at(out, 52, h.reserved);
  put_at(out, 56, h.payload_bytes);
  put_at(out, 64, h.payload_checksum);
  put_at(out, kHeaderChecksumAt, hash64(out, kHeaderChecksumAt));
}

Status decode_slot_header(const uint8_t* in, DiskSlotHeader* h) {
  if (get_at<uint64_t>(in, 0) != kDiskSlotMagic) return data_loss("no page header (bad magic)");
  if (get_at<uint64_t>(in, kHeaderChecksumAt) != hash64(in, kHeaderChecksumAt))
    return data_loss("page header checksum mismatch");
  h->magic = kDiskSlotMagic;
  h->version = get_at<uint32_t>(in, 8);
  h->header_bytes = get_at<uint32_t>(in, 12);
  if (h->version != kDiskSlotVersion) return data_loss("page header version " + std::to_string(h->version));
  if (h->header_bytes != DiskStore::kHeaderBytes) return data_loss("page header size mismatch");
  h->fingerprint = get_at<uint64_t>(in, 16);
  h->rank = get_at<int32_t>(in, 24);
  h->tp = get_at<int32_t>(in, 28);
  h->pp = get_at<int32_t>(in, 32);
  h->slot = get_at<int32_t>(in, 36);
  h->page_hash = get_at<uint64_t>(in, 40);
  h->n_tokens = get_at<int32_t>(in, 48);
  h->reserved = get_at<uint32_t>(in, 52);
  h->payload_bytes = get_at<uint64_t>(in, 56);
  h->payload_checksum = get_at<uint64_t>(in, 64);
  return Status::ok();
}

Status check_slot_identity(const DiskSlotHeader& h, const DiskIdentity& id, int32_t slot,
                           int64_t page_bytes) {
  if (h.fingerprint != id.fingerprint) return data_loss("page from another model or configuration");
  if (h.rank != id.rank) return data_loss("page of rank " + std::to_string(h.rank));
  if (h.tp != id.tp || h.pp != id.pp) return data_loss("page from another TP x PP layout");
  if (h.slot != slot) return data_loss("page written for slot " + std::to_string(h.slot));
  if (h.payload_bytes != static_cast<uint64_t>(page_bytes)) return data_loss("page size mismatch");
  if (h.n_tokens < 0 || h.reserved != 0) return data_loss("malformed page header");
  return Status::ok();
}

namespace {

// Appends length-prefixed fields to a byte string that is hashed once.
struct FingerprintBytes {
  std::string bytes;
  template <typename T>
  void add(T v) { bytes.append(reinterpret_cast<const char*>(&v), sizeof(T)); }
  void add_string(const std::string& s) {
    add<uint64_t>(s.size());
    bytes += s;
  }
};

// A small file's text, or "" when it is missing or not a readable regular file.
std::string file_text(const std::filesystem::path& path) {
  constexpr uint64_t kMaxIdentityFileBytes = 100ull << 20;
  auto text = read_regular_file(path.string(), kMaxIdentityFileBytes);
  return text.is_ok() ? std::move(text).value() : std::string();
}

// The checkpoint's identity: where it is, its config and index texts, its weight files' sizes.
void add_checkpoint_identity(const std::string& model, FingerprintBytes* f) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path canonical = fs::weakly_canonical(model, ec);
  f->add_string(ec ? model : canonical.string());
  const fs::path dir = fs::is_directory(canonical, ec) ? canonical : canonical.parent_path();
  f->add_string(file_text(dir / "config.json"));
  f->add_string(file_text(dir / "model.safetensors.index.json"));
  std::vector<std::pair<std::string, uint64_t>> weights;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().extension() != ".safetensors") continue;
    std::error_code size_ec;
    const uint64_t size = fs::file_size(entry.path(), size_ec);
    weights.emplace_back(entry.path().filename().string(), size_ec ? 0 : size);
  }
  std::sort(weights.begin(), weights.end());
  for (const auto& [name, size] : weights) {
    f->add_string(name);
    f->add(size);
  }
}

}  // namespace

uint64_t kv_model_fingerprint(const std::string& model, uint64_t synthetic_seed,
                              const ModelConfig& c, const CacheConfig& cache, int tp, int pp) {
  FingerprintBytes f;
  f.add_string("kvmesh-kv-v1");
  f.add(c.n_layer);
  f.add(c.n_embd);
  f.add(c.n_head);
  f.add(c.n_inner);
  f.add(c.n_positions);
  f.add(c.vocab_size);
  f.add(c.layer_norm_epsilon);
  f.add(static_cast<int32_t>(c.activation));
  f.add_string(c.model_type);
  f.add(static_cast<int32_t>(c.position_offset));
  f.add(static_cast<int32_t>(c.scale_attention));
  f.add(static_cast<int32_t>(c.qkv_bias));
  f.add(static_cast<int32_t>(c.tied_head));
  for (int w : c.layer_window) f.add(static_cast<int32_t>(w));
  if (is_synthetic_model(model)) {
    f.add_string(model);
    f.add(synthetic_seed);
  } else {
    add_checkpoint_identity(model, &f);
  }
  f.add(static_cast<int32_t>(cache.kv_dtype));
  f.add(static_cast<int32_t>(cache.block_size));
  f.add(static_cast<int32_t>(tp));
  f.add(static_cast<int32_t>(pp));
  return hash64(f.bytes.data(), f.bytes.size());
}

int64_t DiskStore::slot_bytes(int64_t page_bytes) {
  return (kHeaderBytes + page_bytes + kSlotAlign - 1) / kSlotAlign * kSlotAlign;
}

int32_t DiskStore::budget_slots(int64_t disk_bytes, int64_t page_bytes) {
  if (disk_bytes <= 0 || page_bytes <= 0) return 0;
  return static_cast<int32_t>(std::min<int64_t>(disk_bytes / slot_bytes(page_bytes), 1 << 30));
}

std::string DiskStore::file_path(const std::string& dir, int32_t rank) {
  return dir + "/kvmesh-kv-rank" + std::to_string(rank) + ".bin";
}

Result<std::unique_ptr<DiskStore>> DiskStore::open(const DiskStoreOptions& o) {
  if (o.dir.empty()) return invalid_argument("a KV disk budget needs a disk directory");
  if (o.n_slots < 0 || o.page_bytes <= 0) return invalid_argument("bad KV disk geometry");
  KVMESH_RETURN_IF_ERROR(make_dirs(o.dir));
  auto store = std::unique_ptr<DiskStore>(new DiskStore());
  store->path_ = file_path(o.dir, o.identity.rank);
  store->fd_ = ::open(store->path_.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (store->fd_ < 0) {
    const int err = errno;
    if (err == ELOOP) return invalid_argument(store->path_ + " is a symbolic link; refusing to use it");
    return io_error("cannot open " + store->path_ + ": " + errno_text(err));
  }
  struct stat st {};
  if (::fstat(store->fd_, &st) != 0 || !S_ISREG(st.st_mode))
    return invalid_argument(store->path_ + " is not a regular file; refusing to use it");
  if (::flock(store->fd_, LOCK_EX | LOCK_NB) != 0)
    return unavailable(store->path_ + " is in use by another process");
  store->identity_ = o.identity;
  store->n_slots_ = o.n_slots;
  store->page_bytes_ = o.page_bytes;
  store->slot_bytes_ = slot_bytes(o.page_bytes);
  store->persist_ = o.persist;
  KVMESH_RETURN_IF_ERROR(store->prepare_file(static_cast<int64_t>(o.n_slots) * store->slot_bytes_));
  return store;
}

DiskStore::~DiskStore() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the lock
}

Status DiskStore::prepare_file(int64_t file_bytes) {
  if (!persist_ && ::ftruncate(fd_, 0) != 0)
    return io_error("cannot truncate " + path_ + ": " + errno_text(errno));
  const int err = file_bytes > 0 ? ::posix_fallocate(fd_, 0, file_bytes) : 0;
  preallocated_ = err == 0;
  // Less room than the budget (or no fallocate): size the file anyway; writes may fail later.
  struct stat st {};
  if (::fstat(fd_, &st) != 0) return io_error("cannot stat " + path_ + ": " + errno_text(errno));
  if (st.st_size != file_bytes && ::ftruncate(fd_, file_bytes) != 0)
    return io_error("cannot size " + path_ + ": " + errno_text(errno));
  return Status::ok();
}

Status DiskStore::store(int32_t slot, uint64_t page_hash, int32_t n_tokens, const void* page) {
  KVMESH_CHECK(slot >= 0 && slot < n_slots_);
  DiskSlotHeader h;
  h.fingerprint = identity_.fingerprint;
  h.rank = identity_.rank;
  h.tp = identity_.tp;
  h.pp = identity_.pp;
  h.slot = slot;
  h.page_hash = page_hash;
  h.n_tokens = n_tokens;
  h.payload_bytes = static_cast<uint64_t>(page_bytes_);
  h.payload_checksum = hash64(page, static_cast<size_t>(page_bytes_));
  uint8_t header[kHeaderBytes];
  encode_slot_header(h, header);
  // One write: a torn write leaves a header whose payload checksum fails.
  iovec iov[2] = {{header, sizeof(header)}, {const_cast<void*>(page), static_cast<size_t>(page_bytes_)}};
  Status s = io_all(fd_, iov, 2, slot_offset(slot), /*write=*/true);
  if (!s.is_ok()) return s.with_context(path_ + " slot " + std::to_string(slot));
  return Status::ok();
}

Status DiskStore::load(int32_t slot, uint64_t page_hash, int32_t n_tokens, void* page) const {
  KVMESH_CHECK(slot >= 0 && slot < n_slots_);
  const std::string where = path_ + " slot " + std::to_string(slot);
  uint8_t header[kHeaderBytes];
  iovec iov[2] = {{header, sizeof(header)}, {page, static_cast<size_t>(page_bytes_)}};
  Status s = io_all(fd_, iov, 2, slot_offset(slot), /*write=*/false);
  if (!s.is_ok()) return s.with_context(where);
  DiskSlotHeader h;
  s = decode_slot_header(header, &h);
  if (s.is_ok()) s = check_slot_identity(h, identity_, slot, page_bytes_);
  if (s.is_ok() && h.page_hash != page_hash) s = data_loss("page hash mismatch");
  if (s.is_ok() && h.n_tokens != n_tokens) s = data_loss("token count mismatch");
  if (s.is_ok() && h.payload_checksum != hash64(page, static_cast<size_t>(page_bytes_)))
    s = data_loss("page checksum mismatch");
  return s.is_ok() ? s : s.with_context(where);
}

void DiskStore::invalidate(int32_t slot) {
  if (slot < 0 || slot >= n_slots_) return;
  uint8_t zeros[kHeaderBytes] = {};
  iovec iov[1] = {{zeros, sizeof(zeros)}};
  (void)io_all(fd_, iov, 1, slot_offset(slot), /*write=*/true);
}

std::vector<DiskPage> DiskStore::scan() const {
  std::vector<DiskPage> pages;
  uint8_t header[kHeaderBytes];
  for (int32_t slot = 0; slot < n_slots_; ++slot) {
    iovec iov[1] = {{header, sizeof(header)}};
    if (!io_all(fd_, iov, 1, slot_offset(slot), /*write=*/false).is_ok()) continue;
    DiskSlotHeader h;
    if (!decode_slot_header(header, &h).is_ok()) continue;
    if (!check_slot_identity(h, identity_, slot, page_bytes_).is_ok()) continue;
    pages.push_back({slot, h.page_hash, h.n_tokens});
  }
  return pages;
}

}  // namespace kvmesh
