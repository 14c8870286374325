// Test helper: a disk tier of n_slots page slots under `dir`, attached to a KvStore.
#pragma once

#include <string>
#include <utility>

#include "worker/kv_store.h"

namespace kvmesh::testing {

inline Status attach_test_disk(KvStore& store, const std::string& dir, int32_t n_slots) {
  DiskStoreOptions d;
  d.dir = dir;
  d.n_slots = n_slots;
  d.page_bytes = static_cast<int64_t>(store.page_bytes());
  auto disk = DiskStore::open(d);
  if (!disk.is_ok()) return disk.status();
  store.attach_disk(std::move(disk).value());
  return Status::ok();
}

}  // namespace kvmesh::testing
