// Host memory blocks (worker/host_memory.h): zero-filled and writable end to end at every size;
// large ones 2 MiB aligned, advised for transparent huge pages (the "hg" flag the kernel shows
// for the mapping) and unmapped when freed; sizes no machine has get an error naming the block.
#include "worker/host_memory.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/stat.h>

namespace kvmesh {
namespace {

constexpr size_t kPage = 4096;

void expect_zeroed_and_writable(const Buffer& b, size_t bytes) {
  auto* p = static_cast<unsigned char*>(b.data());
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(b.bytes(), bytes);
  if (bytes == 0) return;
  for (size_t i = 0; i < bytes; i += kPage) EXPECT_EQ(p[i], 0) << "byte " << i << " of " << bytes;
  EXPECT_EQ(p[bytes - 1], 0) << "last byte of " << bytes;
  for (size_t i = 0; i < bytes; i += kPage) p[i] = 1;
  p[bytes - 1] = 2;
}

// The "VmFlags:" line of the mapping in /proc/self/smaps that holds `address`, or "" if none does.
std::string mapping_flags(const void* address) {
  const auto a = reinterpret_cast<uintptr_t>(address);
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    uintptr_t begin = 0, end = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> begin >> dash >> end && dash == '-') {
      inside = begin <= a && a < end;
      continue;
    }
    if (inside && line.rfind("VmFlags:", 0) == 0) return line;
  }
  return "";
}

bool is_mapped(const void* address) {
  const auto a = reinterpret_cast<uintptr_t>(address);
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    uintptr_t begin = 0, end = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> begin >> dash >> end && begin <= a && a < end) return true;
  }
  return false;
}

TEST(HostMemory, SmallBlocksAreZeroedAndWritable) {
  for (size_t bytes : {size_t(0), size_t(1), size_t(100), kPage, kHugePageBytes - 1}) {
    EXPECT_FALSE(host_memory_uses_huge_pages(bytes)) << bytes;
    auto block = alloc_host_memory(bytes, "test block");
    ASSERT_TRUE(block.is_ok()) << block.status().message();
    expect_zeroed_and_writable(*block, bytes);
  }
}

TEST(HostMemory, LargeBlocksAreAlignedToHugePagesZeroedAndWritable) {
  for (size_t bytes : {kHugePageBytes, kHugePageBytes + 1, 5 * kHugePageBytes + 123,
                       size_t(64) << 20}) {
    EXPECT_TRUE(host_memory_uses_huge_pages(bytes)) << bytes;
    auto block = alloc_host_memory(bytes, "test block");
    ASSERT_TRUE(block.is_ok()) << block.status().message();
    EXPECT_EQ(reinterpret_cast<uintptr_t>(block->data()) % kHugePageBytes, 0u) << bytes;
    expect_zeroed_and_writable(*block, bytes);
  }
}

TEST(HostMemory, LargeBlocksAreAdvisedForHugePages) {
  struct stat st {};
  if (stat("/sys/kernel/mm/transparent_hugepage", &st) != 0)
    GTEST_SKIP() << "this kernel has no transparent huge pages";
  auto block = alloc_host_memory(size_t(8) << 20, "test block");
  ASSERT_TRUE(block.is_ok()) << block.status().message();
  const std::string flags = mapping_flags(block->data());
  ASSERT_NE(flags, "") << "no mapping holds the block";
  EXPECT_NE((flags + " ").find(" hg "), std::string::npos) << flags;
}

TEST(HostMemory, FreedLargeBlocksAreUnmapped) {
  void* data = nullptr;
  {
    auto block = alloc_host_memory(3 * kHugePageBytes + 5, "test block");
    ASSERT_TRUE(block.is_ok()) << block.status().message();
    data = block->data();
    EXPECT_TRUE(is_mapped(data));
  }
  EXPECT_FALSE(is_mapped(data));
}

TEST(HostMemory, SizesNoMachineHasGetAnErrorNamingTheBlock) {
  for (size_t bytes : {size_t(1) << 62, SIZE_MAX - 100, SIZE_MAX}) {
    auto block = alloc_host_memory(bytes, "weights of layer 3");
    ASSERT_FALSE(block.is_ok()) << bytes;
    EXPECT_NE(block.status().message().find("weights of layer 3"), std::string::npos)
        << block.status().message();
    EXPECT_NE(block.status().message().find(std::to_string(bytes)), std::string::npos)
        << block.status().message();
  }
}

}  // namespace
}  // namespace kvmesh
