// Byte sizes with units as flags take them ("256MiB", "8GiB", "64MB").
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace kvmesh {

// "256MiB" -> 268435456. Units (case-insensitive): B, K/KiB, M/MiB, G/GiB, T/TiB (powers of 1024),
// KB, MB, GB, TB (powers of 1000); a bare number is bytes; a decimal point is allowed ("1.5GiB").
Result<int64_t> parse_byte_size(const std::string& text);

}  // namespace kvmesh
