// Host memory blocks: calloc for small ones, 2 MiB-aligned anonymous mappings advised for
// transparent huge pages for large ones.
#include "worker/host_memory.h"

#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <string>

namespace kvmesh {
namespace {

constexpr size_t kSmallPageBytes = 4096;

size_t round_up(size_t n, size_t unit) { return (n + unit - 1) / unit * unit; }

Status cannot_allocate(size_t bytes, std::string_view what) {
  return resource_exhausted("cannot allocate " + std::to_string(bytes) + " bytes for the " +
                            std::string(what));
}

void unmap(void* p, size_t bytes) { ::munmap(p, round_up(bytes, kSmallPageBytes)); }

// Maps bytes + 2 MiB and returns the aligned part, its head and tail unmapped.
void* map_aligned(size_t bytes) {
  if (bytes > SIZE_MAX / 2) return nullptr;  // no address space has it; the rounding would wrap
  const size_t length = round_up(bytes, kSmallPageBytes);
  const size_t mapped = length + kHugePageBytes;
  void* base = ::mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) return nullptr;
  const auto begin = reinterpret_cast<uintptr_t>(base);
  const uintptr_t aligned = round_up(begin, kHugePageBytes);
  if (aligned > begin) ::munmap(base, aligned - begin);
  const uintptr_t end = aligned + length, mapped_end = begin + mapped;
  if (mapped_end > end) ::munmap(reinterpret_cast<void*>(end), mapped_end - end);
  void* p = reinterpret_cast<void*>(aligned);
#ifdef MADV_HUGEPAGE
  // Advice only: where transparent huge pages are off, the block stays in small pages.
  (void)::madvise(p, length, MADV_HUGEPAGE);
#endif
  return p;
}

}  // namespace

bool host_memory_uses_huge_pages(size_t bytes) { return bytes >= kHugePageBytes; }

Result<Buffer> alloc_host_memory(size_t bytes, std::string_view what) {
  if (host_memory_uses_huge_pages(bytes)) {
    void* p = map_aligned(bytes);
    if (p == nullptr) return cannot_allocate(bytes, what);
    return Buffer(p, bytes, &unmap);
  }
  void* p = std::calloc(bytes > 0 ? bytes : 1, 1);
  if (p == nullptr) return cannot_allocate(bytes, what);
  return Buffer(p, bytes, [](void* q, size_t) { std::free(q); });
}

}  // namespace kvmesh
