// DiskStore: round trips, every header check (corrupted payload or header, another model, rank or
// page), persistence scans, symlink refusal, the file lock, and ENOSPC on a tiny tmpfs.
#include <fcntl.h>
#include <gtest/gtest.h>

#include "temp_dir.h"
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "worker/disk_store.h"

namespace kvmesh {
namespace {

namespace fs = std::filesystem;

using ::kvmesh::testing::TempDir;

constexpr int64_t kPageBytes = 5000;  // not a multiple of anything on purpose

std::vector<uint8_t> random_page(uint32_t seed, int64_t n = kPageBytes) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> page(static_cast<size_t>(n));
  for (auto& b : page) b = static_cast<uint8_t>(rng());
  return page;
}

DiskStoreOptions options_for(const std::string& dir, int32_t n_slots = 4, bool persist = false) {
  DiskStoreOptions o;
  o.dir = dir;
  o.n_slots = n_slots;
  o.page_bytes = kPageBytes;
  o.identity = {0x1234abcd5678ef90ull, 0, 2, 1};
  o.persist = persist;
  return o;
}

std::unique_ptr<DiskStore> open_ok(const DiskStoreOptions& o) {
  auto store = DiskStore::open(o);
  EXPECT_TRUE(store.is_ok()) << store.status().to_string();
  return store.is_ok() ? std::move(store).value() : nullptr;
}

// Flips one byte of a file at offset.
void flip_byte(const std::string& path, int64_t offset) {
  const int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  uint8_t b = 0;
  ASSERT_EQ(::pread(fd, &b, 1, offset), 1);
  b ^= 0x5a;
  ASSERT_EQ(::pwrite(fd, &b, 1, offset), 1);
  ::close(fd);
}

TEST(Hash64, MatchesXxh64Vectors) {
  // Reference values from libxxhash 0.8.1 (XXH64).
  EXPECT_EQ(hash64("", 0), 0xef46db3751d8e999ull);
  EXPECT_EQ(hash64("abc", 3), 0x44bc2cf5ad770999ull);
  EXPECT_EQ(hash64("abc", 3, 7), 0x9e755206156676d7ull);
  const std::string a37(37, 'a');
  EXPECT_EQ(hash64(a37.data(), a37.size()), 0xa859ba1fc96ba5a7ull);
  std::vector<uint8_t> seq(100);
  for (int i = 0; i < 100; ++i) seq[i] = static_cast<uint8_t>(i);
  EXPECT_EQ(hash64(seq.data(), seq.size()), 0x6ac1e58032166597ull);
  EXPECT_EQ(hash64(seq.data(), seq.size(), 7), 0x80653e7e9b887cddull);
}

TEST(DiskStore, GeometryAndFileName) {
  EXPECT_EQ(DiskStore::slot_bytes(5000), 8192);
  EXPECT_EQ(DiskStore::slot_bytes(4096 - 128), 4096);
  EXPECT_EQ(DiskStore::budget_slots(8192 * 3 + 100, 5000), 3);
  EXPECT_EQ(DiskStore::budget_slots(0, 5000), 0);
  EXPECT_EQ(DiskStore::file_path("/x", 3), "/x/kvmesh-kv-rank3.bin");
}

TEST(DiskStore, RoundTripAndPreallocation) {
  TempDir dir;
  const std::string sub = dir.path() + "/a/b";  // created on open, 0700
  auto store = open_ok(options_for(sub));
  ASSERT_NE(store, nullptr);
  struct stat st {};
  ASSERT_EQ(::stat(sub.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(::stat(store->path().c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 4 * DiskStore::slot_bytes(kPageBytes));
  EXPECT_TRUE(store->preallocated());

  const auto page = random_page(1), other = random_page(2);
  ASSERT_TRUE(store->store(2, 77, 16, page.data()).is_ok());
  ASSERT_TRUE(store->store(3, 78, 5, other.data()).is_ok());
  std::vector<uint8_t> back(kPageBytes);
  ASSERT_TRUE(store->load(2, 77, 16, back.data()).is_ok());
  EXPECT_EQ(back, page);
  ASSERT_TRUE(store->load(3, 78, 5, back.data()).is_ok());
  EXPECT_EQ(back, other);
}

TEST(DiskStore, EveryHeaderFieldIsChecked) {
  TempDir dir;
  auto store = open_ok(options_for(dir.path()));
  ASSERT_NE(store, nullptr);
  const auto page = random_page(3);
  ASSERT_TRUE(store->store(1, 77, 16, page.data()).is_ok());
  std::vector<uint8_t> back(kPageBytes);
  EXPECT_EQ(store->load(1, 78, 16, back.data()).code(), StatusCode::data_loss);  // page hash
  EXPECT_EQ(store->load(1, 77, 15, back.data()).code(), StatusCode::data_loss);  // tokens
  EXPECT_EQ(store->load(0, 77, 16, back.data()).code(), StatusCode::data_loss);  // empty slot
  EXPECT_TRUE(store->load(1, 77, 16, back.data()).is_ok());
  store->invalidate(1);
  EXPECT_EQ(store->load(1, 77, 16, back.data()).code(), StatusCode::data_loss);
}

TEST(DiskStore, SlotHeaderEncodeDecodeAndIdentity) {
  const DiskIdentity id{0x1234abcd5678ef90ull, 1, 2, 1};
  DiskSlotHeader h;
  h.fingerprint = id.fingerprint;
  h.rank = 1, h.tp = 2, h.pp = 1, h.slot = 3, h.n_tokens = 16;
  h.page_hash = 77, h.payload_bytes = kPageBytes, h.payload_checksum = 99;
  uint8_t bytes[DiskStore::kHeaderBytes];
  encode_slot_header(h, bytes);
  DiskSlotHeader back;
  ASSERT_TRUE(decode_slot_header(bytes, &back).is_ok());
  EXPECT_EQ(back.page_hash, 77u);
  EXPECT_EQ(back.n_tokens, 16);
  EXPECT_EQ(back.payload_checksum, 99u);
  EXPECT_TRUE(check_slot_identity(back, id, 3, kPageBytes).is_ok());
  EXPECT_EQ(check_slot_identity(back, id, 2, kPageBytes).code(), StatusCode::data_loss);
  EXPECT_EQ(check_slot_identity(back, id, 3, kPageBytes + 1).code(), StatusCode::data_loss);
  EXPECT_EQ(check_slot_identity(back, {id.fingerprint, 0, 2, 1}, 3, kPageBytes).code(), StatusCode::data_loss);
  back.n_tokens = -1;
  EXPECT_EQ(check_slot_identity(back, id, 3, kPageBytes).code(), StatusCode::data_loss);
  bytes[40] ^= 1;  // any field: the header's own hash no longer matches
  EXPECT_EQ(decode_slot_header(bytes, &back).code(), StatusCode::data_loss);
  bytes[0] ^= 1;
  EXPECT_NE(decode_slot_header(bytes, &back).message().find("bad magic"), std::string::npos);
}

TEST(DiskStore, CorruptedPayloadOrHeaderFailsTheLoad) {
  TempDir dir;
  auto store = open_ok(options_for(dir.path()));
  ASSERT_NE(store, nullptr);
  const int64_t slot_bytes = DiskStore::slot_bytes(kPageBytes);
  const auto page = random_page(4);
  std::vector<uint8_t> back(kPageBytes);
  for (int64_t at : {DiskStore::kHeaderBytes + 0, DiskStore::kHeaderBytes + kPageBytes - 1,
                     int64_t{3}, int64_t{20}, int64_t{44}, int64_t{60}, int64_t{66}, int64_t{100}}) {
    ASSERT_TRUE(store->store(2, 9, 16, page.data()).is_ok());
    ASSERT_TRUE(store->load(2, 9, 16, back.data()).is_ok());
    flip_byte(store->path(), 2 * slot_bytes + at);
    const Status s = store->load(2, 9, 16, back.data());
    EXPECT_EQ(s.code(), StatusCode::data_loss) << "byte " << at << ": " << s.to_string();
  }
}

TEST(DiskStore, TornWriteIsDetected) {
  TempDir dir;
  auto store = open_ok(options_for(dir.path()));
  ASSERT_NE(store, nullptr);
  const auto old_page = random_page(5), new_page = random_page(6);
  ASSERT_TRUE(store->store(0, 1, 16, new_page.data()).is_ok());
  // The new header landed, the tail of the payload is still the old page's.
  const int fd = ::open(store->path().c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  const int64_t half = kPageBytes / 2;
  ASSERT_EQ(::pwrite(fd, old_page.data() + half, kPageBytes - half, DiskStore::kHeaderBytes + half),
            kPageBytes - half);
  ::close(fd);
  std::vector<uint8_t> back(kPageBytes);
  EXPECT_EQ(store->load(0, 1, 16, back.data()).code(), StatusCode::data_loss);
}

TEST(DiskStore, PersistScanAfterReopen) {
  TempDir dir;
  const auto p0 = random_page(7), p3 = random_page(8);
  {
    auto store = open_ok(options_for(dir.path()));
    ASSERT_NE(store, nullptr);
    EXPECT_TRUE(store->scan().empty());
    ASSERT_TRUE(store->store(0, 100, 16, p0.data()).is_ok());
    ASSERT_TRUE(store->store(3, 103, 7, p3.data()).is_ok());
  }
  {
    auto store = open_ok(options_for(dir.path(), 4, /*persist=*/true));
    ASSERT_NE(store, nullptr);
    const auto pages = store->scan();
    ASSERT_EQ(pages.size(), 2u);
    EXPECT_EQ(pages[0].slot, 0);
    EXPECT_EQ(pages[0].page_hash, 100u);
    EXPECT_EQ(pages[0].n_tokens, 16);
    EXPECT_EQ(pages[1].slot, 3);
    EXPECT_EQ(pages[1].page_hash, 103u);
    EXPECT_EQ(pages[1].n_tokens, 7);
    std::vector<uint8_t> back(kPageBytes);
    ASSERT_TRUE(store->load(3, 103, 7, back.data()).is_ok());
    EXPECT_EQ(back, p3);
  }
  {  // A smaller budget keeps the slots that still fit.
    auto store = open_ok(options_for(dir.path(), 2, /*persist=*/true));
    ASSERT_NE(store, nullptr);
    ASSERT_EQ(store->scan().size(), 1u);
  }
  {  // Without persistence the file starts empty.
    auto store = open_ok(options_for(dir.path(), 4, /*persist=*/false));
    ASSERT_NE(store, nullptr);
    EXPECT_TRUE(store->scan().empty());
  }
}

TEST(DiskStore, PagesOfAnotherModelOrRankAreNotServed) {
  TempDir dir;
  const auto page = random_page(9);
  {
    auto store = open_ok(options_for(dir.path()));
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->store(1, 5, 16, page.data()).is_ok());
  }
  std::vector<uint8_t> back(kPageBytes);
  {  // Another model fingerprint.
    auto o = options_for(dir.path(), 4, true);
    o.identity.fingerprint ^= 1;
    auto store = open_ok(o);
    ASSERT_NE(store, nullptr);
    EXPECT_TRUE(store->scan().empty());
    EXPECT_EQ(store->load(1, 5, 16, back.data()).code(), StatusCode::data_loss);
  }
  {  // Another layout.
    auto o = options_for(dir.path(), 4, true);
    o.identity.tp = 1;
    auto store = open_ok(o);
    ASSERT_NE(store, nullptr);
    EXPECT_TRUE(store->scan().empty());
    EXPECT_EQ(store->load(1, 5, 16, back.data()).code(), StatusCode::data_loss);
  }
  // Rank 0's file copied to rank 1's name.
  fs::copy_file(DiskStore::file_path(dir.path(), 0), DiskStore::file_path(dir.path(), 1));
  auto o = options_for(dir.path(), 4, true);
  o.identity.rank = 1;
  auto store = open_ok(o);
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(store->scan().empty());
  EXPECT_EQ(store->load(1, 5, 16, back.data()).code(), StatusCode::data_loss);
}

TEST(DiskStore, SymlinkIsRefused) {
  TempDir dir;
  const std::string target = dir.path() + "/elsewhere.bin";
  { std::ofstream(target) << "precious"; }
  fs::create_symlink(target, DiskStore::file_path(dir.path(), 0));
  auto store = DiskStore::open(options_for(dir.path()));
  ASSERT_FALSE(store.is_ok());
  EXPECT_NE(store.status().message().find("symbolic link"), std::string::npos)
      << store.status().to_string();
  EXPECT_EQ(fs::file_size(target), 8u);  // untouched
}

TEST(DiskStore, NonRegularFileAndSecondUserAreRefused) {
  TempDir dir;
  fs::create_directory(DiskStore::file_path(dir.path(), 0));
  EXPECT_FALSE(DiskStore::open(options_for(dir.path())).is_ok());
  TempDir dir2;
  auto first = open_ok(options_for(dir2.path()));
  ASSERT_NE(first, nullptr);
  auto second = DiskStore::open(options_for(dir2.path(), 4, true));
  ASSERT_FALSE(second.is_ok());
  EXPECT_EQ(second.status().code(), StatusCode::unavailable);
}

TEST(DiskStore, NoSpaceFailsStoresNotStartup) {
  TempDir dir;
  const std::string mnt = dir.path() + "/tiny";
  fs::create_directory(mnt);
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=1m") != 0) {
    GTEST_SKIP() << "cannot mount a 1 MiB tmpfs here (" << std::strerror(errno)
                 << "); the ENOSPC path is not exercised";
  }
  int failed = 0, stored = 0;
  {
    auto o = options_for(mnt, 512);  // 4 MiB of slots on a 1 MiB filesystem
    auto store = open_ok(o);
    if (store) {
      EXPECT_FALSE(store->preallocated());
      for (int32_t slot = 0; slot < o.n_slots; ++slot) {
        const auto page = random_page(static_cast<uint32_t>(slot));
        const Status s = store->store(slot, 1000 + slot, 16, page.data());
        if (s.is_ok()) {
          ++stored;
          std::vector<uint8_t> back(kPageBytes);
          EXPECT_TRUE(store->load(slot, 1000 + slot, 16, back.data()).is_ok());
        } else {
          ++failed;
          EXPECT_EQ(s.code(), StatusCode::io_error) << s.to_string();
        }
      }
    }
  }
  ::umount(mnt.c_str());
  EXPECT_GT(stored, 0);
  EXPECT_GT(failed, 0);
}

}  // namespace
}  // namespace kvmesh
