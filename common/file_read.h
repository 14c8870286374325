// read_regular_file: the whole of a small input file (a config, a tokenizer table, an index, a
// request), refusing what is not a regular file before reading a byte, so a FIFO, a device or a
// socket named as input gives an error instead of a hang or an endless read.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace kvmesh {

// Errors: not_found (no such file), invalid_argument (a directory, not a regular file, or over
// max_bytes), io_error (cannot open or read). Every message starts with the path.
Result<std::string> read_regular_file(const std::string& path, uint64_t max_bytes);

}  // namespace kvmesh
